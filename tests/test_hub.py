"""hubconf.py: torch.hub.load(REPO, name, source="local", checkpoint=...) gives the backbone with the
checkpoint's weights (strictly), in eval mode, and a transform equal to the evaluation pipeline's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.videos import make_video
from tests.checkpoints import tiny_pretrain_checkpoint

ROOT = Path(__file__).resolve().parent.parent


def hub(name: str, **kwargs):
    return torch.hub.load(str(ROOT), name, source="local", **kwargs)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """This project's format: TCLR model (backbone + head) of width 8, BGR."""
    return tiny_pretrain_checkpoint(tmp_path_factory.mktemp("hub") / "best.pth", seed=11)


def test_entry_points_and_dependencies():
    import importlib
    hubconf = importlib.import_module("hubconf")
    for name in ("r3d18", "r2plus1d18", "c3d"):
        assert callable(getattr(hubconf, name)) and getattr(hubconf, name).__doc__
    for module in hubconf.dependencies:                 # torch.hub checks these are importable
        importlib.import_module(module)


def test_loads_every_backbone_tensor_strictly_in_eval_mode(checkpoint):
    model = hub("r3d18", checkpoint=str(checkpoint))
    saved = torch.load(checkpoint, weights_only=True)["model"]
    state = model.state_dict()
    assert model.width == 8 and not model.training                  # width from the checkpoint
    for key, value in state.items():
        assert torch.equal(value, saved["backbone." + key]), key
    assert model.load_report.source == "tclr-repro" and model.transform.color == "bgr"


def test_a_missing_key_or_another_architecture_is_refused(checkpoint, tmp_path):
    from models import CheckpointError
    saved = torch.load(checkpoint, weights_only=True)
    del saved["model"]["backbone.layer3.0.conv1.0.weight"]
    broken = tmp_path / "broken.pth"
    torch.save(saved, broken)
    with pytest.raises(CheckpointError, match="layer3.0.conv1.0.weight' is missing"):
        hub("r3d18", checkpoint=str(broken))
    with pytest.raises(CheckpointError, match="--backbone r3d18 --width 8"):
        hub("c3d", checkpoint=str(checkpoint))
    with pytest.raises(CheckpointError, match="checkpoint='random'"):
        hub("r3d18")


@pytest.mark.parametrize("name", ["r3d18", "r2plus1d18", "c3d"])
def test_random_entry_forward(name):
    model = hub(name, checkpoint="random", width=8, resolution=32)
    clip = np.random.default_rng(0).integers(0, 256, (16, 48, 64, 3), dtype=np.uint8)
    with torch.no_grad():
        fmap = model(model.transform(clip)[None])
    assert fmap.shape == (1, model.out_channels, 4) and torch.isfinite(fmap).all()


@pytest.mark.parametrize("color", ["bgr", "rgb"])
def test_transform_matches_the_evaluation_pipeline(tmp_path, color):
    """One evaluation clip of a real encoded video: MultiClipDataset's tensor equals the transform
    of the same frames decoded as OpenCV gives them (BGR)."""
    from dataloaders.datasets import MultiClipDataset
    from dataloaders.sampling import EvalClipSampler
    from dataloaders.video import read_frames
    path = make_video(str(tmp_path / "v.avi"), 60, width=64, height=48)
    expected = MultiClipDataset([(path, 0)], num_clips=3, size=32, color=color)[0]["clips"]
    indices = EvalClipSampler(3, 16, 2).draw(60)                         # [3, 16]
    transform = hub("r3d18", checkpoint="random", width=8, color=color, resolution=32).transform
    for clip, idx in zip(expected, indices):
        frames = read_frames(path, idx, color="bgr")                     # uint8 [16, H, W, 3]
        assert torch.equal(transform(frames), clip)
        assert torch.equal(transform(list(frames)), clip)                # a list of cv2 frames
    with pytest.raises(ValueError, match=r"uint8 clip \[T, H, W, 3\]"):
        transform(np.zeros((16, 3, 48, 64), np.uint8))


def test_transform_and_features_equal_the_feature_function(checkpoint, tmp_path):
    """The docstring's recipe over the protocol's clips gives engine.features' video feature."""
    from dataloaders.sampling import EvalClipSampler
    from dataloaders.video import read_frames
    from engine.features import FeatureProtocol, feature_of_video
    path = make_video(str(tmp_path / "v.avi"), 70, width=64, height=48)
    model = hub("r3d18", checkpoint=str(checkpoint), resolution=32)
    protocol = FeatureProtocol(num_clips=2, resolution=32)
    clips = torch.stack([model.transform(read_frames(path, idx)) for idx in
                         EvalClipSampler(2, 16, 2).draw(70)])               # [2, 3, 16, 32, 32]
    with torch.no_grad():
        mean = model(clips).flatten(1).mean(0)                              # [256]
    recipe = torch.nn.functional.normalize(mean, dim=0)
    assert torch.allclose(recipe, feature_of_video(model, path, protocol), atol=1e-6)
