"""Tests for engine/analysis.py (temporal diversity) and scripts/temporal_diversity.py (CPU, tiny)."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from engine.analysis import (
    SimilarityAccumulator,
    checkpoint_labels,
    evenly_spaced,
    mean_off_diagonal,
    similarity_figure,
    timestep_similarity,
)
from tests.pictures import assert_picture

ROOT = Path(__file__).resolve().parent.parent


def _script():
    """scripts/temporal_diversity.py as a module (scripts/ is not a package)."""
    path = ROOT / "scripts" / "temporal_diversity.py"
    spec = importlib.util.spec_from_file_location("temporal_diversity", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- known answers


def test_identical_timesteps_give_all_ones():
    gen = torch.Generator().manual_seed(0)
    vectors = torch.rand(3, 16, 1, generator=gen)  # [N, C, 1]
    scales = torch.tensor([1.0, 2.0, 0.5, 7.0])  # cosine ignores the length
    fmap = vectors * scales  # [N, C, T' = 4]
    sim = timestep_similarity(fmap)
    torch.testing.assert_close(sim, torch.ones(4, 4, dtype=torch.float64))
    assert mean_off_diagonal(sim) == pytest.approx(1.0)


def test_orthogonal_timesteps_give_identity():
    fmap = torch.zeros(2, 6, 3)  # [N, C, T']: timestep t lives on channel t (and t + 3 for clip 1)
    for t in range(3):
        fmap[0, t, t] = 1.0 + t
        fmap[1, t + 3, t] = 0.5
    sim = timestep_similarity(fmap)
    torch.testing.assert_close(sim, torch.eye(3, dtype=torch.float64))
    assert mean_off_diagonal(sim) == pytest.approx(0.0)


def test_hand_computed_two_by_two_averaged_over_clips():
    # clip 0: timesteps (1, 0) and (1, 1) -> cos = 1/sqrt(2); clip 1: (0, 2) and (3, 0) -> cos = 0
    fmap = torch.tensor([[[1.0, 1.0], [0.0, 1.0]], [[0.0, 3.0], [2.0, 0.0]]])  # [N=2, C=2, T'=2]
    off = (1 / math.sqrt(2) + 0.0) / 2
    expected = torch.tensor([[1.0, off], [off, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(timestep_similarity(fmap), expected)
    assert mean_off_diagonal(expected) == pytest.approx(off)


def test_mean_off_diagonal_and_zero_timesteps():
    matrix = torch.tensor([[9.0, 1.0, 2.0], [3.0, 9.0, 4.0], [5.0, 6.0, 9.0]])
    assert mean_off_diagonal(matrix) == pytest.approx(21 / 6)
    with pytest.raises(ValueError, match="side >= 2"):
        mean_off_diagonal(torch.ones(1, 1))
    with pytest.raises(ValueError, match="N >= 1"):
        timestep_similarity(torch.ones(4, 2))
    fmap = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # second timestep all zero -> similarity 0
    expected = torch.tensor([[1.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(timestep_similarity(fmap), expected)


def test_accumulator_weights_each_video_once():
    gen = torch.Generator().manual_seed(0)
    first, second = torch.rand(2, 3, 8, 4, generator=gen), torch.rand(1, 3, 8, 4, generator=gen)
    acc = SimilarityAccumulator()
    acc.add(first)  # [B=2, clips=3, C=8, T'=4]
    acc.add(second)
    videos = [first[0], first[1], second[0]]
    expected = sum(timestep_similarity(v) for v in videos) / 3
    assert acc.num_videos == 3
    torch.testing.assert_close(acc.result(), expected)


def test_accumulator_leaves_out_masked_clips():
    """A very short video's unpaddable clips (clip_mask False) do not enter its matrix."""
    gen = torch.Generator().manual_seed(1)
    fmaps = torch.rand(1, 3, 8, 4, generator=gen)             # [B=1, clips=3, C=8, T'=4]
    acc = SimilarityAccumulator()
    acc.add(fmaps, torch.tensor([[True, False, True]]))
    torch.testing.assert_close(acc.result(), timestep_similarity(fmaps[0, [0, 2]]))


def test_labels_subsets_and_image():
    names = ["random", "runs/tclr/checkpoints/best.pth", "runs/ic/checkpoints/best.pth",
             "w/my model.pth", "x/my model.pth"]
    assert checkpoint_labels(names) == ["random", "tclr_best", "ic_best", "my_model", "my_model_2"]
    assert evenly_spaced(list(range(10)), 3) == [0, 4, 9]  # ends included, spread evenly
    assert evenly_spaced([1, 2], 0) == [1, 2] and evenly_spaced([1, 2], 5) == [1, 2]
    document = {"protocol": {"videos": 7}, "checkpoints": [
        {"label": "random", "matrix": torch.full((4, 4), 0.8).tolist(), "mean_offdiag": 0.8},
        {"label": "tclr_best", "matrix": torch.eye(4).tolist(), "mean_offdiag": 0.0}]}
    fig = similarity_figure(document)                  # both checkpoints side by side
    panels = [ax for ax in fig.get_axes() if ax.images]
    assert [ax.get_title() for ax in panels] == ["random\nmean off-diagonal 0.800",
                                                 "tclr_best\nmean off-diagonal 0.000"]
    assert all(ax.images[0].get_clim() == (0.0, 1.0) for ax in panels)    # one shared scale
    assert "over 7 test videos" in fig._suptitle.get_text()
    only = similarity_figure(document, ["tclr_best"])
    assert len([ax for ax in only.get_axes() if ax.images]) == 1


# ----------------------------------------------------------------------------- the script


def _save_checkpoint(path: Path) -> None:
    """A pretraining checkpoint in this project's format, with weights unlike the random init."""
    from models import build_backbone

    torch.manual_seed(123)
    backbone = build_backbone("r3d18", width=8)
    torch.save({"format": "tclr-repro", "format_version": 1,
                "model": {f"backbone.{k}": v for k, v in backbone.state_dict().items()},
                "meta": {"backbone": "r3d18", "width": 8, "color": "bgr", "kind": "pretrain"}}, path)


def test_parse_args_reuses_retrieval_config():
    script = _script()
    cfg, checkpoints, max_videos, print_only = script.parse_args(
        ["random", "--width", "8", "a.pth", "--max-videos", "3", "--num-clips", "2"])
    assert checkpoints == ["random", "a.pth"] and max_videos == 3 and not print_only
    assert cfg.width == 8 and cfg.num_clips == 2 and cfg.out_dir == script.DEFAULT_OUT_DIR
    with pytest.raises(Exception, match="positional"):
        script.parse_args(["random", "--checkpoint", "a.pth"])


def test_script_on_tiny_dataset_writes_png_json_and_tensorboard(tiny_ucf, tmp_path):
    ckpt = tmp_path / "demo" / "checkpoints" / "best.pth"
    ckpt.parent.mkdir(parents=True)
    _save_checkpoint(ckpt)
    out = tmp_path / "out"
    argv = ["random", str(ckpt), "--dataset", "ucf101", "--data-root", str(tiny_ucf), "--width", "8",
            "--resolution", "32", "--num-clips", "2", "--max-videos", "4", "--batch-size", "2",
            "--num-workers", "0", "--device", "cpu", "--progress", "false", "--out-dir", str(out)]
    assert _script().main(argv) == 0

    document = json.loads((out / "temporal_diversity.json").read_text())
    entries = document["checkpoints"]
    assert [e["label"] for e in entries] == ["random", "demo_best"]
    assert [e["checkpoint"] for e in entries] == ["random", str(ckpt)]
    for entry in entries:
        matrix = torch.tensor(entry["matrix"], dtype=torch.float64)
        assert matrix.shape == (4, 4) and entry["num_videos"] == 4  # T' = clip_len 16 / 4
        torch.testing.assert_close(matrix.diagonal(), torch.ones(4, dtype=torch.float64))
        assert 0.0 <= entry["mean_offdiag"] <= 1.0
        # the mean of the 12 off-diagonal entries of the 4 x 4 matrix, summed here by hand
        off = [matrix[i, j].item() for i in range(4) for j in range(4) if i != j]
        assert entry["mean_offdiag"] == pytest.approx(sum(off) / 12, abs=1e-12)
        image = assert_picture(out / f"similarity_{entry['label']}.png", 300, 400)
    assert entries[0]["matrix"] != entries[1]["matrix"]  # the checkpoint's weights were used
    both = assert_picture(out / "similarity_all.png", 300, 400)      # the two side by side
    assert both.shape[1] > image.shape[1]
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
