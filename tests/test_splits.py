"""Split readers on generated official-format files (UCF101, HMDB51, Kinetics-400, folders)."""
import os

import pytest

from dataloaders.splits import (DATASETS, DatasetError, build_video_list, folder_split,
                                hmdb51_split, kinetics400_split, ucf101_split)

UCF_CLASSES = ["ApplyEyeMakeup", "Basketball", "HandstandPushups"]


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        handle.write(text)


def ucf_file(cls, group, clip):
    stem = "HandStandPushups" if cls == "HandstandPushups" else cls  # the official file-name quirk
    return f"{cls}/v_{stem}_g{group:02d}_c{clip:02d}.avi"


@pytest.fixture
def ucf_root(tmp_path):
    """Three classes, groups 1-3; split s tests on group s and trains on the two others."""
    root = tmp_path / "ucf"
    write(root / "ucfTrainTestlist" / "classInd.txt",
          "".join(f"{i + 1} {c}\n" for i, c in enumerate(UCF_CLASSES)))
    for split in (1, 2, 3):
        train, test = [], []
        for label, cls in enumerate(UCF_CLASSES):
            for group in (1, 2, 3):
                for clip in (1, 2):
                    name = ucf_file(cls, group, clip)
                    if group == split:
                        test.append(f"{name}\r\n")  # Windows line ends, as in the official files
                    else:
                        train.append(f"{name} {label + 1}\r\n")
        write(root / "ucfTrainTestlist" / f"trainlist0{split}.txt", "".join(train))
        write(root / "ucfTrainTestlist" / f"testlist0{split}.txt", "".join(test) + "\n")
    for label, cls in enumerate(UCF_CLASSES):
        for group in (1, 2, 3):
            for clip in (1, 2):
                touch(root / "UCF-101" / ucf_file(cls, group, clip))
    return root


def test_ucf101_three_splits(ucf_root):
    for split in (1, 2, 3):
        train, classes = ucf101_split(str(ucf_root), split, "train")
        test, _ = ucf101_split(str(ucf_root), split, "test")
        assert classes == UCF_CLASSES
        assert len(train) == 3 * 2 * 2 and len(test) == 3 * 2
        assert {int(p.split("_g")[1][:2]) for p, _ in test} == {split}
        assert not {p for p, _ in train} & {p for p, _ in test}
        for path, label in train + test:
            assert path.split("/")[0] == UCF_CLASSES[label]
    train, _ = ucf101_split(str(ucf_root), 1, "train")
    assert train[0] == ("ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi", 0)  # file order kept
    assert train[-1] == ("HandstandPushups/v_HandStandPushups_g03_c02.avi", 2)


def test_build_video_list_ucf101_absolute_paths(ucf_root):
    videos, classes = build_video_list("ucf101", str(ucf_root), 2, "test")
    assert len(videos) == 6 and classes == UCF_CLASSES
    for path, label in videos:
        assert os.path.isabs(path) and os.path.isfile(path)
        assert path.startswith(str(ucf_root / "UCF-101"))
    same, _ = build_video_list("synthetic", str(ucf_root), 2, "test")
    assert same == videos


def test_ucf101_missing_root_and_files(tmp_path, ucf_root):
    with pytest.raises(DatasetError, match="prepare_ucf101.sh"):
        ucf101_split(str(tmp_path / "nowhere"))
    os.remove(ucf_root / "ucfTrainTestlist" / "testlist03.txt")
    with pytest.raises(DatasetError, match="testlist03.txt does not exist"):
        ucf101_split(str(ucf_root), 3, "test")
    with pytest.raises(DatasetError, match="split must be"):
        ucf101_split(str(ucf_root), 4)
    os.remove(ucf_root / "UCF-101" / ucf_file("Basketball", 2, 1))
    with pytest.raises(DatasetError, match=r"1 of 12 videos .* missing"):
        build_video_list("ucf101", str(ucf_root), 1, "train")
    videos, _ = build_video_list("ucf101", str(ucf_root), 1, "train", check_files=False)
    assert len(videos) == 12


@pytest.mark.parametrize("line, message", [
    ("Basketball/v_Basketball_g01_c01.avi", ":2: expected"),
    ("Basketball/v_Basketball_g01_c01.avi two", ":2: class index 'two'"),
    ("Volleyball/v_Volleyball_g01_c01.avi 2", ":2: unknown class 'Volleyball'"),
    ("Basketball/v_Basketball_g01_c01.avi 3", ":2: class index 3 disagrees"),
])
def test_ucf101_bad_lines_name_file_and_line(ucf_root, line, message):
    path = ucf_root / "ucfTrainTestlist" / "trainlist01.txt"
    write(path, f"ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi 1\n{line}\n")
    with pytest.raises(DatasetError) as info:
        ucf101_split(str(ucf_root), 1, "train")
    assert str(path) in str(info.value) and message in str(info.value)


def test_ucf101_bad_class_index_file(ucf_root):
    write(ucf_root / "ucfTrainTestlist" / "classInd.txt", "1 A\n3 B\n")
    with pytest.raises(DatasetError, match="classInd.txt:2: class index 3 out of order"):
        ucf101_split(str(ucf_root))


HMDB_CLASSES = ["brush_hair", "cartwheel", "smile"]


@pytest.fixture
def hmdb_root(tmp_path):
    """Per class and split: 3 train (id 1), 2 test (id 2), 1 unused (id 0) videos."""
    root = tmp_path / "hmdb"
    for cls in HMDB_CLASSES:
        for split in (1, 2, 3):
            lines = [f"{cls}_{split}_{k}.avi {ident} \n" for k, ident in enumerate([1, 2, 0, 1, 2, 1])]
            write(root / "testTrainMulti_7030_splits" / f"{cls}_test_split{split}.txt", "".join(lines))
            for k in range(6):
                touch(root / cls / f"{cls}_{split}_{k}.avi")
    return root


def test_hmdb51_ids(hmdb_root):
    for split in (1, 2, 3):
        train, classes = hmdb51_split(str(hmdb_root), split, "train")
        test, _ = hmdb51_split(str(hmdb_root), split, "test")
        assert classes == HMDB_CLASSES
        assert len(train) == 9 and len(test) == 6
        assert all(f"_{split}_" in path for path, _ in train + test)
        assert not any(path.endswith("_2.avi") for path, _ in train + test)  # id 0 is unused
    train, _ = hmdb51_split(str(hmdb_root), 1, "train")
    assert train[:3] == [("brush_hair/brush_hair_1_0.avi", 0), ("brush_hair/brush_hair_1_3.avi", 0),
                         ("brush_hair/brush_hair_1_5.avi", 0)]
    videos, _ = build_video_list("hmdb51", str(hmdb_root), 1, "test")
    assert all(os.path.isfile(p) for p, _ in videos)


def test_hmdb51_errors(tmp_path, hmdb_root):
    with pytest.raises(DatasetError, match="HMDB51 root"):
        hmdb51_split(str(tmp_path / "none"))
    path = hmdb_root / "testTrainMulti_7030_splits" / "smile_test_split2.txt"
    write(path, "a.avi 1\nb.avi 7\n")
    with pytest.raises(DatasetError, match=r"smile_test_split2.txt:2: expected"):
        hmdb51_split(str(hmdb_root), 2, "train")


def test_kinetics_folders_and_csv(tmp_path):
    root = tmp_path / "k400"
    for cls in ("abseiling", "air drumming"):
        for k in range(2):
            touch(root / "train" / cls / f"{cls[:3]}{k}_000010_000020.mp4")
    videos, classes = kinetics400_split(str(root), 1, "train")
    assert classes == ["abseiling", "air drumming"] and len(videos) == 4
    rows = ["label,youtube_id,time_start,time_end,split",
            "abseiling,abs0,10,20,train", "air drumming,air1,10,20,train",
            "air drumming,gone,5,15,train"]
    write(root / "train.csv", "\n".join(rows) + "\n")
    videos, classes = kinetics400_split(str(root), 1, "train")
    assert videos == [("train/abseiling/abs0_000010_000020.mp4", 0),
                      ("train/air drumming/air1_000010_000020.mp4", 1)]  # the absent one dropped
    write(root / "annotations" / "validate.csv", "label,youtube_id,time_start,time_end\n"
          "abseiling,val0,0,10\nswimming,val1,0,10\n")
    touch(root / "val" / "abseiling" / "val0_000000_000010.mp4")
    with pytest.raises(DatasetError, match=r"validate.csv:3: unknown class 'swimming'"):
        kinetics400_split(str(root), 1, "val")
    write(root / "bad.csv", "name,id\n")
    with pytest.raises(DatasetError, match="split"):
        kinetics400_split(str(root), 2, "train")


def test_folder_split_is_deterministic_and_disjoint(tmp_path):
    root = tmp_path / "folders"
    for cls in ("b", "a"):
        for k in range(10):
            touch(root / cls / f"{k}.mp4")
    touch(root / "a" / "notes.txt")
    everything, classes = folder_split(str(root), subset="all")
    assert classes == ["a", "b"] and len(everything) == 20
    train, _ = folder_split(str(root), 1, "train")
    test, _ = folder_split(str(root), 1, "test")
    assert len(test) == 6 and sorted(train + test) == sorted(everything)
    assert folder_split(str(root), 1, "test")[0] == test
    assert folder_split(str(root), 2, "test")[0] != test
    with pytest.raises(DatasetError, match="no class folders"):
        folder_split(str(tmp_path / "folders" / "a"))


def test_unknown_dataset_lists_known_ones(tmp_path):
    with pytest.raises(DatasetError) as info:
        build_video_list("ucf102", str(tmp_path))
    for name in DATASETS:
        assert name in str(info.value)
