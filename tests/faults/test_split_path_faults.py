"""Split-file path faults (issue 25, item 5). Policy (dataloaders/splits.py): every split entry is
normalised (``./Class/x.avi`` is ``Class/x.avi``) before it is labelled and before the overlap and
duplicate checks; an entry that is absolute or whose ``..`` leaves its class folder or the dataset
root is an error naming the split file and line. The jobs and ``python -m dataloaders.check`` share
the readers, so both refuse the same entries.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dataloaders import check
from dataloaders.splits import DatasetError, build_video_list, check_split_lists

from .helpers import assert_clean_error, quick_eval_args, run_script

LISTS = "ucfTrainTestlist"


@pytest.fixture
def ucf(tiny_ucf, tmp_path) -> Path:
    """A copy of tiny_ucf whose split files a test may edit."""
    root = tmp_path / "ucf"
    shutil.copytree(tiny_ucf, root)
    return root


def first_test_entry(root: Path) -> str:
    return (root / LISTS / "testlist01.txt").read_text().split()[0]


def class_index(root: Path, name: str) -> int:
    for line in (root / LISTS / "classInd.txt").read_text().splitlines():
        index, cls = line.split()
        if cls == name:
            return int(index)
    raise AssertionError(name)


def append_train_line(root: Path, line: str) -> int:
    """Append ``line`` to trainlist01.txt; returns its line number."""
    path = root / LISTS / "trainlist01.txt"
    text = path.read_text()
    if not text.endswith("\n"):
        text += "\n"
    path.write_text(text + line + "\n")
    return len([row for row in path.read_text().splitlines() if row.strip()])


def both_lists(root: Path):
    train, _ = build_video_list("ucf101", str(root), 1, "train")
    test, _ = build_video_list("ucf101", str(root), 1, "test")
    return train, test


def test_dot_slash_entry_is_caught_by_the_overlap_check(ucf, capsys):
    """``./Class/x.avi`` in the train list names the test list's ``Class/x.avi``: refused."""
    entry = first_test_entry(ucf)
    cls = entry.split("/")[0]
    append_train_line(ucf, f"./{entry} {class_index(ucf, cls)}")
    train, test = both_lists(ucf)
    assert (str(ucf / "UCF-101" / entry), class_index(ucf, cls) - 1) in train
    with pytest.raises(DatasetError, match="listed in both the train and the test list"):
        check_split_lists(train, test, "tiny")
    assert check.main(["--dataset", "ucf101", "--root", str(ucf), "--workers", "1",
                       "--no-progress"]) == 2
    assert entry.split("/")[1] in capsys.readouterr().err


def test_dot_slash_duplicate_is_one_video(ucf):
    """A train entry repeated as ``Class/./x.avi`` is a duplicate line of the same video."""
    path = ucf / LISTS / "trainlist01.txt"
    name, index = path.read_text().split()[:2]
    cls, file = name.split("/")
    append_train_line(ucf, f"{cls}/./{file} {index}")
    train, test = both_lists(ucf)
    notes = check_split_lists(train, test, "tiny")
    assert len(notes) == 1 and "names 1 videos more than once" in notes[0], notes


@pytest.mark.parametrize("make_entry, fragment", [
    # labelled by its first folder, read from another class's folder: a test video, wrong label
    (lambda entry, other: f"{other}/../{entry}", "leaves its class folder"),
    (lambda entry, other: f"../{entry}", "leaves the dataset root"),
    (lambda entry, other: f"{other}/../../UCF-101/{entry}", "leaves its class folder"),
    (lambda entry, other: f"/tmp/{entry}", "is an absolute path"),
    (lambda entry, other: f"./{entry.split('/')[1]}", "names no file inside a class folder"),
], ids=["other-class-dotdot", "above-root", "out-and-back-in", "absolute", "no-class-folder"])
def test_entry_leaving_its_class_folder_names_file_and_line(ucf, capsys, make_entry, fragment):
    entry = first_test_entry(ucf)
    other = next(c for c in ("Shrink", "Expand", "BlinkSlow", "BlinkFast")
                 if c != entry.split("/")[0])
    bad = make_entry(entry, other)
    number = append_train_line(ucf, f"{bad} {class_index(ucf, other)}")
    where = f"{ucf / LISTS / 'trainlist01.txt'}:{number}"
    with pytest.raises(DatasetError) as raised:
        build_video_list("ucf101", str(ucf), 1, "train")
    assert where in str(raised.value) and fragment in str(raised.value), raised.value
    assert bad in str(raised.value)
    assert check.main(["--dataset", "ucf101", "--root", str(ucf), "--workers", "1",
                       "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and where in err, err


def test_hmdb51_entry_leaving_its_class_folder(tmp_path):
    from dataloaders import synthetic
    root = tmp_path / "hmdb"
    synthetic.generate(str(root), classes=2, videos_per_class=4, frames=24, width=32, height=24,
                       seed=0, layout="hmdb51", progress=False)
    lists = sorted((root / "testTrainMulti_7030_splits").glob("*_test_split1.txt"))
    other = lists[1].name.split("_test_split")[0]
    victim = sorted((root / other).iterdir())[0].name
    text = lists[0].read_text().rstrip("\n") + f"\n../{other}/{victim} 1\n"
    lists[0].write_text(text)
    number = len([row for row in text.splitlines() if row.strip()])
    with pytest.raises(DatasetError, match=rf"{lists[0].name}:{number}: .*leaves its class folder"):
        build_video_list("hmdb51", str(root), 1, "train")


def test_linear_job_refuses_a_dot_slash_test_video(ucf, tmp_path):
    """The jobs read the same normalised entries: linear evaluation stops before writing."""
    entry = first_test_entry(ucf)
    append_train_line(ucf, f"./{entry} {class_index(ucf, entry.split('/')[0])}")
    out = tmp_path / "linear"
    result = run_script("train_linear.py", *quick_eval_args(ucf, out))
    assert_clean_error(result, "listed in both the train and the test list", entry.split("/")[1])
    assert not out.exists()
