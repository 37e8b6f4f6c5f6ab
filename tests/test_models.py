"""Tests for models/: backbones, projection head, TCLR model and weight loading (CPU, tiny inputs)."""

import argparse
import copy

import pytest
import torch
import torch.nn as nn
import torchvision

from models import (
    BACKBONES,
    CheckpointError,
    ProjectionHead,
    TCLRModel,
    build_backbone,
    load_backbone_weights,
)

SMALL_WIDTH = 8


def _spec_layer4_change(tv_model: nn.Module, width: int = 64) -> nn.Module:
    """Spec section 3, written independently of models/: what the release does to torchvision's
    model (tclr_pretraining/model.py build_r3d_backbone, nn_retrieval/model.py
    build_rpd_encoder_ret): the WHOLE layer4[0].conv1[0] (R3D: the 3x3x3 conv; R(2+1)D: the
    Conv2Plus1D pair) becomes one dilated Conv3d, the downsample conv gets stride (1, 2, 2). The
    new convs are built after torchvision's init, so they keep PyTorch's default init."""
    block = tv_model.layer4[0]
    block.conv1[0] = nn.Conv3d(
        4 * width, 8 * width, kernel_size=(3, 3, 3), stride=(1, 2, 2), padding=(2, 1, 1),
        dilation=(2, 1, 1), bias=False,
    )
    block.downsample[0] = nn.Conv3d(4 * width, 8 * width, kernel_size=(1, 1, 1), stride=(1, 2, 2),
                                    bias=False)
    return tv_model


def _tv_features(tv_model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision trunk up to layer4, averaged over space: [B, 512, T']."""
    return _tv_feature_map(tv_model, x).mean(dim=(3, 4))


def _randomise_bn_stats(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial running statistics, so eval-mode features depend on them being loaded."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=gen))
            m.running_var.copy_(1 + 0.5 * torch.rand(m.running_var.shape, generator=gen))


def _tv_feature_map(tv_model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torchvision trunk up to layer4, unpooled: [B, 512, T', H', W']."""
    for name in ("stem", "layer1", "layer2", "layer3", "layer4"):
        x = getattr(tv_model, name)(x)
    return x


@pytest.fixture(scope="module")
def tv_r3d() -> nn.Module:
    torch.manual_seed(0)
    model = _spec_layer4_change(torchvision.models.video.r3d_18(weights=None))
    _randomise_bn_stats(model)
    return model.eval()


@pytest.fixture(scope="module")
def tv_r2plus1d() -> nn.Module:
    """The release's R(2+1)D-18 (nn_retrieval/model.py), from torchvision's r2plus1d_18."""
    torch.manual_seed(0)
    model = _spec_layer4_change(torchvision.models.video.r2plus1d_18(weights=None))
    _randomise_bn_stats(model, seed=1)
    return model.eval()


# ----------------------------------------------------------------------------- backbones


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_shape_finite_and_gradients(name):
    torch.manual_seed(0)
    backbone = build_backbone(name, width=SMALL_WIDTH)
    out = backbone(torch.rand(2, 3, 16, 32, 32))
    assert out.shape == (2, 8 * SMALL_WIDTH, 4)  # T = 16 -> 4 timesteps
    assert backbone.out_channels == 8 * SMALL_WIDTH
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    for pname, param in backbone.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_backbone_width16_and_longer_clips(name):
    backbone = build_backbone(name, width=16).eval()
    with torch.no_grad():
        assert backbone(torch.rand(1, 3, 16, 16, 16)).shape == (1, 128, 4)
        assert backbone(torch.rand(1, 3, 32, 16, 16)).shape == (1, 128, 8)  # T / 4 in general
        assert backbone.feature_map(torch.rand(1, 3, 16, 32, 32)).shape == (1, 128, 4, 2, 2)


def test_unknown_backbone_lists_known_names():
    with pytest.raises(ValueError, match="r3d18.*") as info:
        build_backbone("resnet50")
    for name in ("c3d", "r2plus1d18", "r3d18"):
        assert name in str(info.value)


@pytest.mark.parametrize("name, expected", [("r3d18", 33_166_272), ("r2plus1d18", 31_300_587)])
def test_trunk_parameter_count(name, expected, tv_r3d, tv_r2plus1d):
    reference = tv_r3d if name == "r3d18" else tv_r2plus1d
    tv_count = sum(p.numel() for key, p in reference.named_parameters() if not key.startswith("fc."))
    assert tv_count == expected  # the release's trunk without fc, counted on torchvision's model
    backbone = build_backbone(name)
    assert sum(p.numel() for p in backbone.parameters()) == expected
    assert backbone.out_channels == 512


@pytest.mark.parametrize("name, tv_builder", [("r3d18", "r3d_18"), ("r2plus1d18", "r2plus1d_18")])
def test_width64_matches_torchvision_with_layer4_change(name, tv_builder, tv_r3d, tv_r2plus1d):
    tv_model = tv_r3d if name == "r3d18" else tv_r2plus1d
    ours = build_backbone(name).eval()
    expected = {k: tuple(v.shape) for k, v in tv_model.state_dict().items() if not k.startswith("fc.")}
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == expected
    assert expected["layer4.0.conv1.0.weight"] == (512, 256, 3, 3, 3)
    conv = ours.layer4[0].conv1[0]
    assert (conv.stride, conv.padding, conv.dilation) == ((1, 2, 2), (2, 1, 1), (2, 1, 1))

    # torchvision-format state dict (with fc) loads unchanged and computes the same features
    report = load_backbone_weights(ours, tv_model.state_dict())
    assert report.source == "torchvision" and report.color is None
    assert sorted(report.ignored) == ["fc.bias", "fc.weight"] and report.missing == []
    x = torch.rand(1, 3, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), _tv_features(tv_model, x), rtol=1e-4, atol=1e-5)


def test_release_r2plus1d_weights_load_strictly_and_match_feature_maps(tv_r2plus1d):
    """The release's Kinetics-400 R(2+1)D-18 layout: key layer4.0.conv1.0.weight [512, 256, 3, 3, 3]."""
    release = {"module." + key: value for key, value in tv_r2plus1d.state_dict().items()}
    assert tuple(release["module.layer4.0.conv1.0.weight"].shape) == (512, 256, 3, 3, 3)
    ours = build_backbone("r2plus1d18").eval()
    bare = {key: value for key, value in tv_r2plus1d.state_dict().items() if not key.startswith("fc.")}
    ours.load_state_dict(bare, strict=True)  # same names and shapes, nothing left over

    ours = build_backbone("r2plus1d18").eval()
    report = load_backbone_weights(ours, {"state_dict": release, "epoch": 100})
    assert report.source == "release" and report.missing == []
    assert len(report.loaded) == len(ours.state_dict())
    x = torch.rand(2, 3, 16, 32, 32)
    with torch.no_grad():
        fmap = ours.feature_map(x)
        assert fmap.shape == (2, 512, 4, 2, 2)
        torch.testing.assert_close(fmap, _tv_feature_map(tv_r2plus1d, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name, width", [("r3d18", 64), ("r2plus1d18", 64), ("r2plus1d18", 16)])
def test_replaced_layer4_convs_keep_pytorch_default_init(name, width):
    """The release builds torchvision's model, then replaces two layer4 convs: those keep
    Conv3d's default kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)), std
    bound/sqrt(3); torchvision's Kaiming normal (fan_out = 2 * fan_in, relu) would give std
    sqrt(2/fan_out) = bound, 1.73x that, with about a third of the values beyond the bound."""
    torch.manual_seed(0)
    block = build_backbone(name, width=width).layer4[0]
    in_c, out_c = 4 * width, 8 * width
    for conv, taps in ((block.conv1[0], 27), (block.downsample[0], 1)):
        weight = conv.weight.detach()
        bound = 1 / (in_c * taps) ** 0.5
        assert weight.abs().max() <= bound
        assert abs(weight.std().item() - bound / 3 ** 0.5) < 0.03 * bound / 3 ** 0.5
        kaiming_normal_std = (2 / (out_c * taps)) ** 0.5
        assert weight.std().item() < 0.7 * kaiming_normal_std  # sqrt(1/3) = 0.58 of it here
    # every other conv keeps torchvision's Kaiming normal (fan_out): layer4[0].conv2 is 3x3x3
    # (R3D) or a (2+1)D pair whose temporal conv is 3x1x1 with out_c outputs
    conv2 = block.conv2[0] if name == "r3d18" else block.conv2[0][3]
    fan_out = conv2.out_channels * conv2.weight[0, 0].numel()
    assert abs(conv2.weight.std().item() - (2 / fan_out) ** 0.5) < 0.03 * (2 / fan_out) ** 0.5


def _old_r2plus1d_layout(width: int) -> dict:
    """R(2+1)D-18 state dict in this project's earlier layer4 layout: layer4[0].conv1[0] a (2+1)D
    pair (spatial conv .0, BN .1, dilated temporal conv .3) instead of one 3x3x3 conv."""
    state = build_backbone("r2plus1d18", width=width).state_dict()
    in_c, out_c, mid = 4 * width, 8 * width, 7
    del state["layer4.0.conv1.0.weight"]
    state["layer4.0.conv1.0.0.weight"] = torch.zeros(mid, in_c, 1, 3, 3)
    for key in ("weight", "bias", "running_mean", "running_var"):
        state[f"layer4.0.conv1.0.1.{key}"] = torch.zeros(mid)
    state["layer4.0.conv1.0.3.weight"] = torch.zeros(out_c, mid, 3, 1, 1)
    return state


def test_old_r2plus1d_layout_fails_naming_the_layout_change(tmp_path):
    from engine.checkpoint import FORMAT, load_checkpoint

    old = _old_r2plus1d_layout(SMALL_WIDTH)
    with pytest.raises(CheckpointError, match="earlier layer4 layout") as info:
        load_backbone_weights(build_backbone("r2plus1d18", width=SMALL_WIDTH), old)
    assert "'layer4.0.conv1.0.3.weight'" in str(info.value) and "'layer4.0.conv1.0.weight'" in str(info.value)

    # a pretraining checkpoint of this project (resume path) fails the same way, naming the file
    path = tmp_path / "latest.pth"
    torch.save({"format": FORMAT, "model": {"backbone." + k: v for k, v in old.items()},
                "meta": {"backbone": "r2plus1d18", "width": SMALL_WIDTH, "kind": "pretrain"}}, path)
    with pytest.raises(CheckpointError, match="earlier layer4 layout") as info:
        load_checkpoint(path)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="earlier layer4 layout"):
        load_backbone_weights(build_backbone("r2plus1d18", width=SMALL_WIDTH), path)


# ----------------------------------------------------------------------------- head and TCLR model


def _tiny_tclr(fused: bool) -> TCLRModel:
    torch.manual_seed(0)
    backbone = build_backbone("c3d", width=SMALL_WIDTH)
    return TCLRModel(backbone, ProjectionHead(backbone.out_channels), fused=fused)


def test_projection_head_names_and_normalisation():
    head = ProjectionHead(16)
    names = [name for name, _ in head.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "bn1.weight", "bn1.bias", "fc2.weight", "bn2.weight", "bn2.bias"]
    fmap = torch.randn(3, 16, 4)  # [N, C, T']
    assert head.global_rep(fmap).shape == (3, 128)
    local = head.local_reps(fmap)
    assert local.shape == (3, 4, 128)
    torch.testing.assert_close(local.norm(dim=-1), torch.ones(3, 4))
    head.eval()
    torch.testing.assert_close(head.local_reps(fmap, separate_timesteps=True), head.local_reps(fmap))


@pytest.mark.parametrize("fused", [False, True])
def test_tclr_model_shapes_and_number_of_passes(fused):
    model = _tiny_tclr(fused)
    clips = torch.rand(2, 2, 5, 3, 16, 16, 16)  # [B, V, 1+K, C, T, H, W]
    sparse_global, sparse_local, dense_global = model(clips)
    assert sparse_global.shape == (2, 2, 128)  # [V, B, D]
    assert sparse_local.shape == (2, 2, 4, 128)  # [V, B, K, D]
    assert dense_global.shape == (2, 2, 4, 128)  # [V, B, K, D]
    for reps in (sparse_global, sparse_local, dense_global):
        torch.testing.assert_close(reps.norm(dim=-1), torch.ones(reps.shape[:-1]))
    passes = model.backbone.bn1.num_batches_tracked.item()
    assert passes == (1 if fused else 10)  # the release runs V * (1 + K) = 10 backbone passes


def test_tclr_model_per_group_equals_fused_in_eval_mode():
    model = _tiny_tclr(fused=False).eval()
    clips = torch.rand(2, 2, 5, 3, 16, 16, 16)
    with torch.no_grad():
        per_group = model(clips)
        model.fused = True
        fused = model(clips)
        # which clip lands where: view 1, video 0, local clip 3 (index 3 on the clip axis)
        fmap = model.backbone(clips[0:1, 1, 3])
        expected = model.head.global_rep(fmap)[0]
        torch.testing.assert_close(per_group[2][1, 0, 2], expected, rtol=1e-4, atol=1e-5)
        fmap = model.backbone(clips[1:2, 0, 0])
        torch.testing.assert_close(per_group[1][0, 1], model.head.local_reps(fmap)[0], rtol=1e-4, atol=1e-5)
    for a, b in zip(per_group, fused):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_tclr_model_rejects_mismatched_local_clips():
    model = _tiny_tclr(fused=False)
    with pytest.raises(ValueError, match="K = 3"):
        model(torch.rand(2, 2, 4, 3, 16, 16, 16))
    with pytest.raises(ValueError, match="B, V, 1\\+K"):
        model(torch.rand(2, 5, 3, 16, 16, 16))


# ----------------------------------------------------------------------------- weight loading


class _ReleaseMLP(nn.Module):
    """The release's head parameters (names fc1, bn1, fc2, bn2)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(512, 512, bias=True)
        self.bn1 = nn.BatchNorm1d(512)
        self.bn2 = nn.BatchNorm1d(128)
        self.fc2 = nn.Linear(512, 128, bias=False)


def _release_checkpoint(tv_model: nn.Module) -> dict:
    """A pretraining checkpoint in the release's layout: DataParallel(nn.Sequential(backbone, mlp))."""
    state = nn.Sequential(tv_model, _ReleaseMLP()).state_dict()
    state = {"module." + key: value for key, value in state.items()}
    return {"state_dict": state, "epoch": 3, "amp_scaler": argparse.Namespace(scale=65536.0)}


def test_release_checkpoint_loads_and_gives_identical_features(tv_r3d, tmp_path):
    path = tmp_path / "release.pth"
    torch.save(_release_checkpoint(tv_r3d), path)
    backbone = build_backbone("r3d18").eval()
    with pytest.raises(CheckpointError, match="--trust-checkpoint") as info:
        load_backbone_weights(backbone, path)
    assert str(path) in str(info.value)

    report = load_backbone_weights(backbone, path, trust_checkpoint=True)
    assert report.source == "release" and report.color == "bgr"
    assert len(report.loaded) == len(backbone.state_dict()) and report.missing == []
    head_and_fc = {"module.0.fc.weight", "module.0.fc.bias", "module.1.fc1.weight", "module.1.bn2.running_var"}
    assert head_and_fc <= set(report.ignored)
    x = torch.rand(2, 3, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(backbone(x), _tv_features(tv_r3d, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layout", ["sequential", "linear_eval"])
def test_release_layout_variants(layout, tv_r3d):
    if layout == "sequential":  # no DataParallel: keys '0.<name>' and '1.<name>'
        state = nn.Sequential(tv_r3d, _ReleaseMLP()).state_dict()
    else:  # linear evaluation: the classifier itself (backbone names + fc), under DataParallel
        state = {"module." + key: value for key, value in tv_r3d.state_dict().items()}
    backbone = build_backbone("r3d18")
    report = load_backbone_weights(backbone, {"state_dict": state})
    assert report.source == "release" and len(report.loaded) == len(backbone.state_dict())
    torch.testing.assert_close(backbone.layer4[0].conv1[0].weight, tv_r3d.layer4[0].conv1[0].weight)


def test_project_checkpoint_color_and_ignored_keys():
    torch.manual_seed(0)
    source = build_backbone("r3d18", width=SMALL_WIDTH)
    model = TCLRModel(source, ProjectionHead(source.out_channels))
    checkpoint = {
        "format": "tclr-repro",
        "format_version": 1,
        "model": model.state_dict(),
        "meta": {"backbone": "r3d18", "width": SMALL_WIDTH, "color": "rgb", "kind": "pretrain"},
    }
    target = build_backbone("r3d18", width=SMALL_WIDTH)
    report = load_backbone_weights(target, checkpoint)
    assert report.source == "tclr-repro" and report.color == "rgb"
    assert report.ignored and all(key.startswith("head.") for key in report.ignored)
    torch.testing.assert_close(target.stem[0].weight, source.stem[0].weight)

    with pytest.raises(CheckpointError, match="c3d"):
        load_backbone_weights(build_backbone("c3d", width=SMALL_WIDTH), checkpoint)


def test_wrong_architecture_names_key_and_shapes():
    r2plus1d = build_backbone("r2plus1d18", width=SMALL_WIDTH).state_dict()
    with pytest.raises(CheckpointError) as info:
        load_backbone_weights(build_backbone("r3d18", width=SMALL_WIDTH), r2plus1d)
    message = str(info.value)
    assert "stem.0.weight" in message and "(6, 3, 1, 7, 7)" in message and "(8, 3, 3, 7, 7)" in message
    assert "r2plus1d18" in message

    c3d = build_backbone("c3d", width=SMALL_WIDTH).state_dict()
    with pytest.raises(CheckpointError, match="missing.*c3d"):
        load_backbone_weights(build_backbone("r3d18", width=SMALL_WIDTH), c3d)


def test_unreadable_files_fail_clearly(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(build_backbone("c3d", width=SMALL_WIDTH).state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_backbone_weights(build_backbone("c3d", width=SMALL_WIDTH), path)
    assert str(path) in str(info.value)

    with pytest.raises(CheckpointError, match="not found") as info:
        load_backbone_weights(build_backbone("c3d", width=SMALL_WIDTH), tmp_path / "absent.pth")
    assert "absent.pth" in str(info.value)


# ------------------------------------------------------ activation checkpointing, memory format


def _train_step(model: nn.Module, clips: list[torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Forward every clip batch (like TCLRModel's per-group passes), one backward; (loss, grads)."""
    model.train()
    gen = torch.Generator().manual_seed(1)
    loss = 0.0
    for x in clips:
        out = model(x)  # [B, C, T']
        loss = loss + (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_grad_checkpoint_same_loss_gradients_and_running_stats(name):
    torch.manual_seed(0)
    plain = build_backbone(name, width=SMALL_WIDTH).double()
    assert plain.grad_checkpoint is False
    ckpt = copy.deepcopy(plain)
    ckpt.grad_checkpoint = True
    clips = [torch.rand(2, 3, 8, 16, 16, dtype=torch.float64) for _ in range(2)]

    first_bn = next(m for m in ckpt.modules() if isinstance(m, nn.BatchNorm3d))
    calls = []
    first_bn.register_forward_pre_hook(lambda *_: calls.append(1))
    loss_plain, grads_plain = _train_step(plain, clips)
    loss_ckpt, grads_ckpt = _train_step(ckpt, clips)
    assert len(calls) == 2 * len(clips)  # the stage really was recomputed in backward

    torch.testing.assert_close(loss_ckpt, loss_plain, rtol=1e-12, atol=1e-12)
    for pname, grad in grads_plain.items():
        torch.testing.assert_close(grads_ckpt[pname], grad, rtol=1e-10, atol=1e-12, msg=pname)
    state_plain, state_ckpt = plain.state_dict(), ckpt.state_dict()
    for key, value in state_plain.items():  # running_mean/var moved once per forward, counters equal
        torch.testing.assert_close(state_ckpt[key], value, rtol=1e-12, atol=1e-12, msg=key)
    assert first_bn.num_batches_tracked.item() == len(clips)


def test_grad_checkpoint_inactive_in_eval_and_no_grad():
    backbone = build_backbone("c3d", width=SMALL_WIDTH)
    backbone.grad_checkpoint = True
    calls = []
    backbone.bn1.register_forward_pre_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        backbone.train()(torch.rand(1, 3, 8, 16, 16))
    backbone.eval()(torch.rand(1, 3, 8, 16, 16)).sum().backward()
    assert len(calls) == 2 and backbone.bn1.num_batches_tracked.item() == 1


def test_grad_checkpoint_in_tclr_model_same_loss_and_gradients():
    from losses import tclr_loss

    torch.manual_seed(0)
    backbone = build_backbone("c3d", width=SMALL_WIDTH)
    plain = TCLRModel(backbone, ProjectionHead(backbone.out_channels)).double()
    ckpt = copy.deepcopy(plain)
    ckpt.backbone.grad_checkpoint = True
    clips = torch.rand(2, 2, 3, 3, 8, 16, 16, dtype=torch.float64)  # [B, V, 1+K, C, T, H, W], K = 2
    losses = []
    for model in (plain, ckpt):
        loss = tclr_loss(*model.train()(clips))["total"]
        loss.backward()
        losses.append(loss.detach())
    torch.testing.assert_close(losses[1], losses[0], rtol=1e-12, atol=1e-12)
    for (pname, p_plain), p_ckpt in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(p_ckpt.grad, p_plain.grad, rtol=1e-10, atol=1e-12, msg=pname)
    for (key, b_plain), b_ckpt in zip(plain.named_buffers(), ckpt.buffers()):
        torch.testing.assert_close(b_ckpt, b_plain, rtol=1e-12, atol=1e-12, msg=key)


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_channels_last_3d_gives_the_same_output(name):
    torch.manual_seed(0)
    contiguous = build_backbone(name, width=SMALL_WIDTH).double()
    _randomise_bn_stats(contiguous)
    channels_last = copy.deepcopy(contiguous).to(memory_format=torch.channels_last_3d)
    first_conv = next(m for m in channels_last.modules() if isinstance(m, nn.Conv3d))
    assert first_conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    x = torch.rand(2, 3, 8, 16, 16, dtype=torch.float64)
    x_cl = x.to(memory_format=torch.channels_last_3d)
    for train in (False, True):
        contiguous.train(train)
        channels_last.train(train)
        with torch.no_grad():
            expected = contiguous(x)
            for inp in (x, x_cl):
                torch.testing.assert_close(channels_last(inp), expected, rtol=1e-10, atol=1e-12)
