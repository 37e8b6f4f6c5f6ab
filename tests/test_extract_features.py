"""extract_features.py on small synthetic videos (narrow R3D-18, 32 px, 2 clips): the same features
as nn_retrieval.py, resume after a kill, incremental runs, undecodable videos as rows, one
checkpoint and protocol per folder, torchrun sharding, per-clip/float16/pooled outputs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.videos import make_video, write_bytes, write_truncated
from tests.ports import torchrun
from tests.checkpoints import tiny_pretrain_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def tiny(out: Path, *extra: str) -> list[str]:
    """Flags of a quick extraction: width-8 R3D-18, 32 px, 2 clips, one process on the CPU."""
    return ["--backbone", "r3d18", "--width", "8", "--resolution", "32", "--num-clips", "2",
            "--batch-size", "4", "--num-workers", "0", "--device", "cpu", "--progress", "false",
            "--out-dir", str(out), *extra]


def synthetic_test_split(root: Path) -> list[str]:
    return ["--dataset", "synthetic", "--data-root", str(root), "--split", "1", "--subset", "test"]


def run_extract(*args: str) -> int:
    import extract_features
    return extract_features.main([str(a) for a in args])


def load(out: Path) -> tuple[np.ndarray, list[dict], dict]:
    from engine.extract import read_index
    return (np.load(out / "features.npy", mmap_mode="r"), read_index(out),
            json.loads((out / "meta.json").read_text()))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A pretraining checkpoint in this project's format (backbone + head, width 8, BGR)."""
    return tiny_pretrain_checkpoint(tmp_path_factory.mktemp("ckpt") / "latest.pth", seed=7)


@pytest.fixture
def video_dir(tmp_path) -> Path:
    """Three short videos in a folder tree, one with an upper-case extension."""
    folder = tmp_path / "videos"
    (folder / "sub").mkdir(parents=True)
    make_video(str(folder / "a.avi"), 48)
    make_video(str(folder / "sub" / "b.AVI"), 40)
    make_video(str(folder / "c.mp4"), 44, fourcc="mp4v")
    (folder / "notes.txt").write_text("not a video")
    return folder


class CountVideos:
    """Counts the videos whose features engine.features.video_features computes."""

    def __init__(self, monkeypatch):
        from engine import features
        self.count, real = 0, features.video_features

        def counting(backbone, clips, *args, **kwargs):
            self.count += clips.shape[0]
            return real(backbone, clips, *args, **kwargs)
        monkeypatch.setattr(features, "video_features", counting)


# --------------------------------------------------------------------------------------------
# The same features as nn_retrieval.py
# --------------------------------------------------------------------------------------------

def test_features_equal_nn_retrieval_features(tiny_ucf, tmp_path, checkpoint):
    import nn_retrieval
    ret = tmp_path / "ret"
    assert nn_retrieval.main(synthetic_test_split(tiny_ucf)[:4] + tiny(ret)[:-2] + [
        "--out-dir", str(ret), "--checkpoint", str(checkpoint), "--num-grid-queries", "0",
        "--embedding-points", "0", "--synthetic-classes", "4", "--synthetic-videos-per-class",
        "6", "--synthetic-frames", "72", "--synthetic-width", "64",
        "--synthetic-height", "48"]) == 0
    (cache,) = (ret / "features").glob("test-*.pt")
    expected = torch.load(cache, weights_only=True)["features"]           # [N, 256]
    out = tmp_path / "feat"
    assert run_extract(*synthetic_test_split(tiny_ucf), *tiny(out),
                       "--checkpoint", checkpoint) == 0
    features, index, meta = load(out)
    from dataloaders.splits import build_video_list
    videos, _ = build_video_list("synthetic", str(tiny_ucf), split=1, subset="test")
    assert [row["path"] for row in index] == [p for p, _ in videos]
    assert features.shape == tuple(expected.shape) == (len(videos), 64 * 4)
    assert torch.equal(torch.from_numpy(np.array(features)), expected)
    assert {row["status"] for row in index} == {"ok"}
    from engine.rundir import file_sha256
    assert meta["weights"]["sha256"] == file_sha256(checkpoint)
    assert meta["protocol"]["kind"] == "retrieval" and meta["protocol"]["num_clips"] == 2
    assert meta["complete"] is True and meta["command"] and meta["git"]
    assert set(meta["versions"]) >= {"torch", "numpy", "opencv"}
    frames, fps = int(index[0]["frames"]), float(index[0]["fps"])
    assert frames == 72 and fps > 0 and float(index[0]["seconds"]) == pytest.approx(frames / fps,
                                                                                    abs=1e-3)


# --------------------------------------------------------------------------------------------
# Resumable and incremental
# --------------------------------------------------------------------------------------------

def test_resume_after_kill_computes_only_the_rest(tiny_ucf, tmp_path, monkeypatch):
    from engine import features
    from tests.faults.helpers import EntryPoint, run_script, wait_for
    args = [*synthetic_test_split(tiny_ucf), *tiny(tmp_path / "out"), "--checkpoint", "random",
            "--batch-size", "1", "--shard-size", "1"]
    real = features.video_features

    def slow(*a, **k):
        import time
        time.sleep(0.4)
        return real(*a, **k)
    monkeypatch.setattr(features, "video_features", slow)
    proc = EntryPoint("extract_features.py", args)
    shards = tmp_path / "out" / "shards"
    wait_for(lambda: len(list(shards.glob("*.npz"))) >= 2, 240, "two shards", proc)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(60).returncode == -signal.SIGKILL
    kept = sorted(shards.glob("*.npz"))
    total = len((tiny_ucf / "ucfTrainTestlist" / "testlist01.txt").read_text().split())
    assert 2 <= len(kept) < total and not (tmp_path / "out" / "features.npy").exists()
    monkeypatch.setattr(features, "video_features", real)
    rerun = run_script("extract_features.py", *args)
    assert rerun.returncode == 0, rerun.output[-3000:]
    assert f"{len(kept)} already in" in rerun.output
    assert f"{total - len(kept)} to compute" in rerun.output
    assert len(list(shards.glob("*.npz"))) == total          # one new shard per missing video
    assert all(p.exists() for p in kept)
    fresh = tmp_path / "fresh"
    args[args.index("--out-dir") + 1] = str(fresh)
    assert run_script("extract_features.py", *args).returncode == 0
    got, index, meta = load(tmp_path / "out")
    assert np.array_equal(got, load(fresh)[0]) and len(index) == total
    assert [r["computed"] for r in meta["runs"]] == [total, total - len(kept)]


def test_new_video_is_the_only_one_computed(video_dir, tmp_path, monkeypatch):
    import time
    # every run "within the same second" in this one process: shard names must still differ
    monkeypatch.setattr(time, "strftime", lambda fmt, *args: "20260101-000000")
    out = tmp_path / "out"
    args = ["--videos", video_dir, *tiny(out), "--checkpoint", "random"]
    assert run_extract(*args) == 0
    before, index, _ = load(out)
    before = np.array(before)
    assert [Path(r["path"]).name for r in index] == ["a.avi", "c.mp4", "b.AVI"]
    make_video(str(video_dir / "sub" / "0_new.mkv"), 36, fourcc="FFV1")
    counter = CountVideos(monkeypatch)
    assert run_extract(*args) == 0
    after, index, _ = load(out)
    assert counter.count == 1
    names = [Path(r["path"]).name for r in index]
    assert names == ["a.avi", "c.mp4", "0_new.mkv", "b.AVI"]
    assert np.array_equal(after[[0, 1, 3]], before)
    assert np.linalg.norm(after[2]) == pytest.approx(1.0, abs=1e-5)
    # nothing new, nothing changed: no forward pass
    assert run_extract(*args) == 0 and counter.count == 1
    # a video rewritten in place (size and mtime change) is computed again
    make_video(str(video_dir / "a.avi"), 52)
    assert run_extract(*args) == 0 and counter.count == 2


def test_undecodable_videos_are_rows_with_a_reason(video_dir, tmp_path):
    write_bytes(str(video_dir / "garbage.mp4"), b"\x00\x01 definitely not a video" * 10)
    write_bytes(str(video_dir / "empty.webm"), b"")
    write_truncated(str(video_dir / "a.avi"), str(video_dir / "half.avi"), 0.02)
    make_video(str(video_dir / "short.avi"), 5)
    out = tmp_path / "out"
    assert run_extract("--videos", video_dir, *tiny(out), "--checkpoint", "random") == 0
    features, index, meta = load(out)
    rows = {Path(r["path"]).name: r for r in index}
    assert set(rows) == {"a.avi", "c.mp4", "b.AVI", "garbage.mp4", "empty.webm", "half.avi",
                         "short.avi"}
    assert rows["empty.webm"]["status"] == "failed" and "empty file" in rows["empty.webm"]["reason"]
    assert "cannot open" in rows["garbage.mp4"]["reason"]
    assert rows["half.avi"]["status"] == "failed" and rows["half.avi"]["reason"]
    assert rows["short.avi"]["status"] == "failed" and "frames" in rows["short.avi"]["reason"]
    assert meta["num_failed"] == 4
    for name, row in rows.items():
        norm = np.linalg.norm(features[int(row["row"])])
        assert norm == (pytest.approx(1.0, abs=1e-5) if row["status"] == "ok" else 0.0), name


# --------------------------------------------------------------------------------------------
# One checkpoint and one protocol per folder
# --------------------------------------------------------------------------------------------

def test_two_checkpoints_into_one_folder_refused(video_dir, tmp_path, checkpoint):
    from tests.faults.helpers import assert_clean_error, run_script
    out = tmp_path / "out"
    assert run_extract("--videos", video_dir, *tiny(out), "--checkpoint", "random") == 0
    before = (out / "features.npy").read_bytes(), (out / "meta.json").read_text()
    other = run_script("extract_features.py", "--videos", video_dir, *tiny(out),
                       "--checkpoint", checkpoint)
    assert_clean_error(other, f"--out-dir {out} holds features of other weights",
                       "weights.init 'random' there, 'checkpoint' now", "--overwrite true")
    protocol = run_script("extract_features.py", "--videos", video_dir, *tiny(out),
                          "--checkpoint", "random", "--num-clips", "3")
    assert_clean_error(protocol, "protocol.num_clips 2 there, 3 now")
    assert ((out / "features.npy").read_bytes(), (out / "meta.json").read_text()) == before
    # the same content under another path is the same checkpoint; --overwrite replaces
    moved = tmp_path / "moved.pth"
    shutil.copy(checkpoint, moved)
    assert run_extract("--videos", video_dir, *tiny(out), "--checkpoint", checkpoint,
                       "--overwrite", "true") == 0
    assert run_extract("--videos", video_dir, *tiny(out), "--checkpoint", moved) == 0
    _, _, meta = load(out)
    assert meta["weights"]["init"] == "checkpoint" and len(meta["runs"]) == 1
    assert not (out / ".replaced").exists()


# --------------------------------------------------------------------------------------------
# torchrun
# --------------------------------------------------------------------------------------------

def test_torchrun_two_processes_equal_one_process(tiny_ucf, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    args = [*synthetic_test_split(tiny_ucf), "--checkpoint", "random", "--batch-size", "2",
            "--shard-size", "2"]
    assert run_extract(*args, *tiny(one)[:-2], "--batch-size", "2", "--out-dir", one) == 0
    proc = torchrun("extract_features.py", *args, *tiny(two)[:-2], "--batch-size", "2",
                    "--out-dir", str(two))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    first, index1, _ = load(one)
    second, index2, meta = load(two)
    assert index1 == index2
    assert np.allclose(first, second, atol=1e-6, rtol=0)
    assert meta["runs"][-1]["world_size"] == 2
    ranks = {p.name.split("-r")[1].split("-")[0] for p in (two / "shards").glob("*.npz")}
    assert ranks == {"0", "1"}                                  # both processes computed


# --------------------------------------------------------------------------------------------
# Options and inputs
# --------------------------------------------------------------------------------------------

def test_per_clip_float16_pooled_and_list_file(video_dir, tmp_path):
    listing = tmp_path / "videos.txt"
    listing.write_text(f"# my videos\nvideos/c.mp4\n\n{video_dir / 'a.avi'}  # absolute\n"
                       "videos/c.mp4\n")
    out = tmp_path / "out"
    assert run_extract("--list", listing, *tiny(out), "--checkpoint", "random", "--feature",
                       "pooled", "--per-clip", "true", "--dtype", "float16") == 0
    features, index, meta = load(out)
    assert [Path(r["path"]).name for r in index] == ["c.mp4", "a.avi"]
    assert features.dtype == np.float16 and features.shape == (2, 2, 64)   # [N, clips, C]
    assert np.allclose(np.linalg.norm(features.astype(np.float32), axis=-1), 1.0, atol=2e-3)
    assert meta["protocol"]["per_clip"] is True and meta["dtype"] == "float16"


def test_bad_inputs_are_one_line_errors(tmp_path):
    from tests.faults.helpers import assert_clean_error, run_script
    assert_clean_error(run_script("extract_features.py", "--videos", tmp_path / "none",
                                  "--checkpoint", "random", "--out-dir", tmp_path / "o"),
                       f"--videos {tmp_path / 'none'}: no such folder")
    (tmp_path / "empty").mkdir()
    assert_clean_error(run_script("extract_features.py", "--videos", tmp_path / "empty",
                                  "--checkpoint", "random", "--out-dir", tmp_path / "o"),
                       "no video files under it")
    assert_clean_error(run_script("extract_features.py", "--videos", tmp_path / "empty"),
                       "--checkpoint random")
    assert not (tmp_path / "o").exists()


def test_help_is_grouped():
    proc = subprocess.run([sys.executable, "extract_features.py", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0
    text = proc.stdout
    for section in ("input:", "features:", "model:", "runtime:"):
        assert f"\n{section}" in text, section
    assert text.index("\ninput:") < text.index("  --videos STR") < text.index("\nfeatures:")
    assert "--sparse-stride" not in text and "--synthetic-design" not in text
