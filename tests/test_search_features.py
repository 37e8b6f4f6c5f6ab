"""scripts/search_features.py over a folder made by extract_features.py: nearest rows by cosine
similarity, a query video outside the folder computed with the folder's protocol and checkpoint,
the filmstrip picture, and one-line errors."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.pictures import assert_picture
from tests.test_extract_features import tiny
from tests.videos import make_video, write_bytes

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "search_features.py"


def search_module():
    if "search_features" not in sys.modules:
        spec = importlib.util.spec_from_file_location("search_features", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["search_features"] = module
        spec.loader.exec_module(module)
    return sys.modules["search_features"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(features folder, its videos, its checkpoint): 5 videos of different lengths and one file
    that is not a video, extracted with a width-8 checkpoint."""
    import extract_features
    from engine import checkpoint as ckpt_io
    from models import build_backbone
    base = tmp_path_factory.mktemp("search")
    videos = base / "videos"
    videos.mkdir()
    for i, frames in enumerate((40, 48, 56, 64, 72)):
        make_video(str(videos / f"v{i}.avi"), frames, width=64 + 16 * (i % 2), height=48)
    write_bytes(str(videos / "broken.avi"), b"garbage")
    torch.manual_seed(3)
    checkpoint = base / "ckpt.pth"
    ckpt_io.atomic_save({"format": ckpt_io.FORMAT, "format_version": ckpt_io.FORMAT_VERSION,
                         "model": {f"backbone.{k}": v for k, v in
                                   build_backbone("r3d18", width=8).state_dict().items()},
                         "meta": {"backbone": "r3d18", "width": 8, "color": "bgr"}}, checkpoint)
    out = base / "features"
    assert extract_features.main(["--videos", str(videos), *tiny(out),
                                  "--checkpoint", str(checkpoint)]) == 0
    return out, videos, checkpoint


def test_rows_ranked_by_cosine_similarity(folder, capsys):
    out, _, _ = folder
    search = search_module()
    assert search.main([str(out), "--query", "2", "-k", "10", "--picture", "none"]) == 0
    lines = capsys.readouterr().out.splitlines()
    hits = [line.split() for line in lines[2:]]
    features = np.load(out / "features.npy")
    sims = features @ features[2]
    rows = [int(h[2]) for h in hits]
    from engine.extract import read_index
    broken = [int(r["row"]) for r in read_index(out) if r["status"] != "ok"]
    assert len(broken) == 1 and broken[0] not in rows and 2 not in rows
    assert rows == sorted(set(range(6)) - {2, broken[0]}, key=lambda r: -sims[r])
    assert [float(h[1]) for h in hits] == pytest.approx([sims[r] for r in rows], abs=1e-4)


def test_query_video_outside_the_folder_uses_its_checkpoint_and_protocol(folder, tmp_path):
    """A copy of a folder video under another name: its feature, computed now, is the row's."""
    out, videos, checkpoint = folder
    copy = tmp_path / "copy_of_v3.avi"
    shutil.copy(videos / "v3.avi", copy)
    picture = tmp_path / "pic.png"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out), "--query", str(copy), "-k", "3",
                           "--picture", str(picture)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert "not in the folder: computed now" in lines[0] and checkpoint.name in lines[0]
    rank, cosine, row, path = lines[2].split()
    assert Path(path).name == "v3.avi" and float(cosine) == pytest.approx(1.0, abs=1e-5)
    assert len(lines) == 2 + 3 + 1 and lines[-1] == f"picture: {picture}"
    assert_picture(picture, 80, 400)


def test_errors_are_one_line(folder, tmp_path):
    out, videos, checkpoint = folder
    from tests.faults.helpers import assert_clean_error, run_script
    assert_clean_error(run_script("scripts/search_features.py", out, "--query", "99"),
                       "--query 99: the folder has rows 0..5")
    bad_row = [line for line in (out / "index.csv").read_text().splitlines() if "broken" in line]
    row = bad_row[0].split(",")[0]
    assert_clean_error(run_script("scripts/search_features.py", out, "--query", row),
                       "has no features", "cannot open it")
    other = tmp_path / "other.pth"
    torch.save({"conv": torch.zeros(1)}, other)
    new = make_video(str(tmp_path / "new.avi"), 50)
    assert_clean_error(run_script("scripts/search_features.py", out, "--query", new,
                                  "--checkpoint", other),
                       f"{other} is not the checkpoint the folder's features were made with")
    assert_clean_error(run_script("scripts/search_features.py", tmp_path, "--query", "0"),
                       "holds no features")
