"""Clip-consistent augmentation (spec section 2) on uint8 frame tensors, CPU or CUDA, batched.

Random parameters are sampled separately from their application:

    params = sample_strong_params(generator, n, height, width)        # one row per clip, CPU tensors
    clips = apply_clip_augmentation(frames, params)                    # frames on any device

so that DataLoader workers can ship raw uint8 frames plus parameters and the training step can
augment on the GPU with the same result as the CPU path (up to float rounding). One row of parameters
is applied identically to every frame of its clip.

Order of the operations (the release's): square crop + bilinear resize; contrast (before, p/2);
hue; saturation; brightness; contrast (after, p/2); grayscale (3 channels) + gamma, or one colour
channel set to 0; horizontal flip; conversion to float in [0, 1]; random erasing (set to 0). The
flip is carried out right after the resize instead, on uint8: every colour operation acts per pixel
(contrast through the frame's mean), so the result is the same and the flip is four times cheaper.

Differences from the release's PIL pipeline (measured on random clips, tests/test_augment.py: about
half a grey level on average, at most ~4 levels without hue; PIL's 8-bit HSV hue differs by up to
~16 levels at some pixels), and the documented choices:
* The resize is torchvision's antialiased bilinear resize of the uint8 crop, a port of PIL's
  resampling filter, so it matches PIL's BILINEAR resize to within rounding. On CUDA torchvision
  resizes in float and rounds to uint8, on CPU it uses its fixed-point uint8 kernel: results can
  differ by one grey level at a few pixels.
* The colour operations run in float32 without rounding to uint8 between steps (PIL rounds after
  each). Contrast uses the frame's exact mean grey level (PIL rounds it to an integer).
* Channel order of the colour formulas (`color_ops`): "release" (the default) applies PIL's RGB
  formulas to the stored channels 0, 1, 2, as the release does with its BGR arrays;
  "true_channels" applies them to the real R, G, B. See dataloaders.color, which holds the colour
  operations.
* The erase box (height and width each U{9..18} at 112 px output, top-left U{0..size-1}, clipped
  at the border like the release's) is scaled by size / 112 for other output sizes.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF

from dataloaders.color import (adjust_brightness_, adjust_contrast_, adjust_hue_, adjust_saturation_,
                               apply_rows, formula_channels, grayscale_gamma_)

REFERENCE_SIZE = 112                  # the output size the release's erase sizes are stated for


@dataclass(frozen=True)
class AugmentRecipe:
    """Ranges and probabilities of one augmentation family (spec section 2)."""

    crop_scale: tuple[float, float]  # square side c * H, c ~ U(lo, hi)
    p_contrast: float                # half applied before the hue/saturation/brightness step, half after
    contrast: tuple[float, float]
    p_hue: float
    hue: tuple[float, float]
    p_saturation: float
    saturation: tuple[float, float]
    p_brightness: float
    brightness: tuple[float, float]
    p_grayscale: float               # shares one uniform with the channel drop (exclusive events)
    p_gamma: float                   # probability of gamma given grayscale
    gamma: tuple[float, float]
    p_channel_drop: float
    p_flip: float
    p_erase: float
    erase_size: tuple[int, int]      # inclusive range of box height and width at 112 px output


STRONG = AugmentRecipe(crop_scale=(0.6, 1.0), p_contrast=0.25, contrast=(0.75, 1.25),
                       p_hue=0.3, hue=(-0.1, 0.1), p_saturation=0.3, saturation=(0.75, 1.25),
                       p_brightness=0.3, brightness=(0.75, 1.25), p_grayscale=0.175, p_gamma=0.75,
                       gamma=(0.75, 1.25), p_channel_drop=0.125, p_flip=0.5, p_erase=0.5,
                       erase_size=(9, 18))
WEAK = AugmentRecipe(crop_scale=(0.6, 1.0), p_contrast=0.125, contrast=(0.9, 1.1),
                     p_hue=0.15, hue=(-0.05, 0.05), p_saturation=0.15, saturation=(0.9, 1.1),
                     p_brightness=0.15, brightness=(0.9, 1.1), p_grayscale=0.1, p_gamma=0.75,
                     gamma=(0.85, 1.15), p_channel_drop=0.0, p_flip=0.5, p_erase=0.25,
                     erase_size=(9, 18))


@dataclass
class AugmentParams:
    """Random parameters of n clips; every field is a tensor of shape [n].

    Crop fields are in source pixels, erase fields in output pixels. contrast_stage: 0 = no contrast,
    1 = before the hue/saturation/brightness step, 2 = after. drop_channel: tensor channel index set
    to 0, or -1.
    """

    crop_top: torch.Tensor
    crop_left: torch.Tensor
    crop_size: torch.Tensor
    contrast_stage: torch.Tensor
    contrast: torch.Tensor
    hue_on: torch.Tensor
    hue: torch.Tensor
    saturation_on: torch.Tensor
    saturation: torch.Tensor
    brightness_on: torch.Tensor
    brightness: torch.Tensor
    grayscale: torch.Tensor
    gamma_on: torch.Tensor
    gamma: torch.Tensor
    drop_channel: torch.Tensor
    flip: torch.Tensor
    erase_on: torch.Tensor
    erase_top: torch.Tensor
    erase_left: torch.Tensor
    erase_height: torch.Tensor
    erase_width: torch.Tensor

    def _map(self, fn) -> "AugmentParams":
        return AugmentParams(**{f.name: fn(getattr(self, f.name)) for f in dataclasses.fields(self)})

    def __len__(self) -> int:
        return int(self.crop_top.shape[0])

    def __getitem__(self, rows) -> "AugmentParams":
        """The parameters of the selected rows (a slice, index tensor or boolean mask)."""
        return self._map(lambda t: t[rows])

    def to(self, device, non_blocking: bool = False) -> "AugmentParams":
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> "AugmentParams":
        """Called by DataLoader(pin_memory=True)."""
        return self._map(lambda t: t.pin_memory())

    @staticmethod
    def cat(params: list["AugmentParams"]) -> "AugmentParams":
        """Concatenates the rows of several parameter sets (e.g. the items of a batch)."""
        names = [f.name for f in dataclasses.fields(AugmentParams)]
        return AugmentParams(**{n: torch.cat([getattr(p, n) for p in params]) for n in names})


def _uniform(gen: torch.Generator, n: int, bounds: tuple[float, float]) -> torch.Tensor:
    low, high = bounds
    return low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)


def _randint(gen: torch.Generator, n: int, high_inclusive: torch.Tensor) -> torch.Tensor:
    """U{0 .. high_inclusive[i]} per row (high_inclusive int64 [n], >= 0)."""
    u = torch.rand(n, generator=gen, dtype=torch.float64)
    return torch.minimum((u * (high_inclusive + 1)).floor().long(), high_inclusive)


def erase_size_range(recipe: AugmentRecipe, size: int) -> tuple[int, int]:
    """The recipe's erase box side range scaled from 112 px to `size` px output (at least 1 px)."""
    low = max(1, round(recipe.erase_size[0] * size / REFERENCE_SIZE))
    high = max(low, round(recipe.erase_size[1] * size / REFERENCE_SIZE))
    return low, high


def sample_params(recipe: AugmentRecipe, gen: torch.Generator, n: int, height: int, width: int,
                  size: int = REFERENCE_SIZE) -> AugmentParams:
    """Draws independent parameters for n clips of height x width frames (CPU tensors).

    Crop: side = int(c * H) with c ~ U(crop_scale), kept inside the frame; left ~ U{0 .. W - c*W},
    top ~ U{0 .. H - c*H} (spec section 2). Event flags come from 8 uniforms per clip, as in the
    release: contrast, hue, saturation, brightness, grayscale/channel drop, gamma, flip, erase.
    """
    u = torch.rand(n, 8, generator=gen, dtype=torch.float64)
    c = _uniform(gen, n, recipe.crop_scale)
    side = (c * height).floor().long().clamp(1, min(height, width))
    left_max = torch.minimum((width - c * width).floor().long(), width - side).clamp_min(0)
    top_max = torch.minimum((height - c * height).floor().long(), height - side).clamp_min(0)
    drop_from = 1.0 - recipe.p_channel_drop
    gray = (u[:, 4] >= drop_from - recipe.p_grayscale) & (u[:, 4] < drop_from)
    drop = u[:, 4] >= drop_from if recipe.p_channel_drop > 0 else torch.zeros(n, dtype=torch.bool)
    half = recipe.p_contrast / 2
    erase_low, erase_high = erase_size_range(recipe, size)
    f32 = torch.float32
    return AugmentParams(
        crop_top=_randint(gen, n, top_max), crop_left=_randint(gen, n, left_max), crop_size=side,
        contrast_stage=torch.where(u[:, 0] < half, 1, torch.where(u[:, 0] < 2 * half, 2, 0)),
        contrast=_uniform(gen, n, recipe.contrast).to(f32),
        hue_on=u[:, 1] < recipe.p_hue, hue=_uniform(gen, n, recipe.hue).to(f32),
        saturation_on=u[:, 2] < recipe.p_saturation,
        saturation=_uniform(gen, n, recipe.saturation).to(f32),
        brightness_on=u[:, 3] < recipe.p_brightness,
        brightness=_uniform(gen, n, recipe.brightness).to(f32),
        grayscale=gray, gamma_on=gray & (u[:, 5] >= 1.0 - recipe.p_gamma),
        gamma=_uniform(gen, n, recipe.gamma).to(f32),
        drop_channel=torch.where(drop, torch.randint(0, 3, (n,), generator=gen), -1),
        flip=u[:, 6] >= 1.0 - recipe.p_flip,
        erase_on=u[:, 7] < recipe.p_erase,
        erase_top=torch.randint(0, size, (n,), generator=gen),
        erase_left=torch.randint(0, size, (n,), generator=gen),
        erase_height=torch.randint(erase_low, erase_high + 1, (n,), generator=gen),
        erase_width=torch.randint(erase_low, erase_high + 1, (n,), generator=gen),
    )


def sample_strong_params(gen: torch.Generator, n: int, height: int, width: int,
                         size: int = REFERENCE_SIZE) -> AugmentParams:
    """Pretraining ("strong") parameters for n clips (spec section 2)."""
    return sample_params(STRONG, gen, n, height, width, size)


def sample_weak_params(gen: torch.Generator, n: int, height: int, width: int,
                       size: int = REFERENCE_SIZE) -> AugmentParams:
    """Classifier-training ("weak") parameters for n clips: half the probabilities, narrower ranges."""
    return sample_params(WEAK, gen, n, height, width, size)


def _erase(x: torch.Tensor, p: AugmentParams, first: int, boxes: list) -> None:
    """Sets each selected clip's box (all frames, all channels) to 0, clipped at the border.

    boxes: the rows' (on, top, left, height, width) as Python ints; one clip is erased by slicing,
    several with one mask over p's rows first.. (no per-clip kernel launches on a GPU).
    """
    if len(boxes) == 1:
        on, top, left, height, width = boxes[0]
        if on:
            x[:, :, :, top:top + height, left:left + width] = 0.0
        return
    rows = slice(first, first + len(boxes))
    top, left = p.erase_top[rows], p.erase_left[rows]
    size_h, size_w = x.shape[-2:]
    ys = torch.arange(size_h, device=x.device)
    xs = torch.arange(size_w, device=x.device)
    in_rows = (ys >= top[:, None]) & (ys < (top + p.erase_height[rows])[:, None])          # [m, H]
    in_cols = (xs >= left[:, None]) & (xs < (left + p.erase_width[rows])[:, None])         # [m, W]
    box = in_rows[:, :, None] & in_cols[:, None, :] & p.erase_on[rows, None, None]         # [m, H, W]
    x.masked_fill_(box[:, None, None], 0.0)


class _Plan:
    """Python-side view of the parameters: which rows each operation touches, boxes as ints.

    Read once per call (one device sync when the parameters live on a GPU).
    """

    def __init__(self, p: AugmentParams):
        def rows(mask):
            return [i for i, on in enumerate(mask.tolist()) if on]
        self.crop = torch.stack([p.crop_top, p.crop_left, p.crop_size], 1).tolist()
        self.erase = torch.stack([p.erase_on.long(), p.erase_top, p.erase_left, p.erase_height,
                                  p.erase_width], 1).tolist()
        self.flip = p.flip.tolist()
        self.rows = {
            "contrast_before": rows(p.contrast_stage == 1), "hue": rows(p.hue_on),
            "saturation": rows(p.saturation_on), "brightness": rows(p.brightness_on),
            "contrast_after": rows(p.contrast_stage == 2), "grayscale": rows(p.grayscale),
            "gamma": rows(p.gamma_on), "drop": rows(p.drop_channel >= 0),
        }
        self.drop_channel = p.drop_channel.tolist()

    def local(self, name: str, first: int, last: int) -> list[int]:
        return [i - first for i in self.rows[name] if first <= i < last]


def _colour(x: torch.Tensor, p: AugmentParams, plan: _Plan, first: int, rgb) -> None:
    """The colour operations of rows first.. of x, in the release's order, in place."""
    last = first + x.shape[0]
    rows = slice(first, last)
    steps = [("contrast_before", adjust_contrast_, p.contrast), ("hue", adjust_hue_, p.hue),
             ("saturation", adjust_saturation_, p.saturation),
             ("brightness", adjust_brightness_, p.brightness),
             ("contrast_after", adjust_contrast_, p.contrast)]
    for name, op, factor in steps:
        apply_rows(x, plan.local(name, first, last), op, factor[rows], rgb)
    gray = plan.local("grayscale", first, last)
    if gray:  # gamma only ever follows grayscale: positions of the gamma rows among the gray rows
        gamma_rows = [gray.index(row) for row in plan.local("gamma", first, last)]
        apply_rows(x, gray, functools.partial(grayscale_gamma_, gamma_rows=gamma_rows),
                    p.gamma[rows], rgb)
    for row in plan.local("drop", first, last):
        x[row, plan.drop_channel[first + row]] = 0.0


def _clip_frames(frames: torch.Tensor, index: list[int]) -> torch.Tensor:
    """frames[index] for a pool [F, ...]: a strided view (no copy) when index is an arithmetic run."""
    step = index[1] - index[0] if len(index) > 1 else 1
    if step > 0 and all(b - a == step for a, b in zip(index, index[1:])):
        return frames[index[0]:index[-1] + 1:step]
    return frames[torch.tensor(index, device=frames.device)]


def _crop_resize_into(out: torch.Tensor, frames: torch.Tensor, frame_index: list | None,
                      plan: _Plan, first: int, size: int) -> None:
    """Crops each clip's square, resizes it (antialiased bilinear on uint8), flips it when asked,
    and writes it as float in [0, 1].

    The flip is done here, on uint8, rather than after the colour operations as in the release: the
    colour operations act per pixel (contrast on the frame mean), so the order does not matter.

    out: float32 [m, C, T, S, S] (written); frames: uint8 [m, T, C, H, W], or a pool [F, C, H, W]
    with frame_index (lists of T ints for every row of the call).
    """
    for local in range(out.shape[0]):
        row = first + local
        top, left, side = plan.crop[row]
        if frame_index is None:
            clip = frames[local]                                               # [T, C, H, W]
        else:
            clip = _clip_frames(frames, frame_index[row])                      # [T, C, H, W]
        resized = TF.resize(clip[:, :, top:top + side, left:left + side], [size, size], antialias=True)
        if plan.flip[row]:
            resized = resized.flip(-1)
        out[local].copy_(resized.permute(1, 0, 2, 3)).mul_(1.0 / 255.0)        # [C, T, S, S]


def apply_clip_augmentation(frames: torch.Tensor, params: AugmentParams, size: int = REFERENCE_SIZE,
                            channel_order: str = "bgr", frame_index: torch.Tensor | None = None,
                            chunk: int | None = None, color_ops: str = "release") -> torch.Tensor:
    """Augments n clips, each with its own row of parameters, identically over its frames.

    Args:
        frames: uint8, either [n, T, C, H, W] (one clip per parameter row), or a pool of frames
            [F, C, H, W] when frame_index is given. Any device; params are moved to it.
        params: n rows (from sample_strong_params / sample_weak_params for this H and W).
        size: output side S.
        channel_order: "bgr" or "rgb", the order of the frames' channels (kept in the output).
        frame_index: int64 [n, T] indices into the pool, or None.
        chunk: clips processed together; default 1 on CPU (cache-friendly), all on other devices.
        color_ops: "release" (PIL's RGB formulas on the stored channels, as the release) or
            "true_channels" (formulas on the real R, G, B); see formula_channels.
    Returns:
        float32 [n, C, T, S, S] in [0, 1].
    """
    rgb = formula_channels(channel_order, color_ops)
    if frames.dtype != torch.uint8:
        raise TypeError(f"frames must be uint8, got {frames.dtype}")
    n = len(params)
    steps = frames.shape[1] if frame_index is None else frame_index.shape[1]
    device = frames.device
    plan = _Plan(params)
    index_rows = None if frame_index is None else frame_index.tolist()
    params = params.to(device)
    chunk = chunk or (1 if device.type == "cpu" else max(n, 1))
    out = torch.empty(n, frames.shape[-3], steps, size, size, dtype=torch.float32, device=device)
    for first in range(0, n, chunk):
        last = min(first + chunk, n)
        x = out[first:last]                                                     # [m, C, T, S, S]
        source = frames[first:last] if frame_index is None else frames
        _crop_resize_into(x, source, index_rows, plan, first, size)
        _colour(x, params, plan, first, rgb)
        _erase(x, params, first, plan.erase[first:last])
    return out


def augment_pretrain_clips(frames: torch.Tensor, params: AugmentParams, size: int = REFERENCE_SIZE,
                           channel_order: str = "bgr", color_ops: str = "release") -> torch.Tensor:
    """Augments a batch of raw TCLR clips (augment_on="device") into the model's input.

    Args:
        frames: uint8 [B, 1+K, T, C, H, W], the raw clips of B samples (any device).
        params: B * V * (1+K) rows, item-major, then augmentation v, then clip k (as collated).
        channel_order, color_ops: as apply_clip_augmentation.
    Returns:
        float32 [B, V, 1+K, C, T, S, S].
    """
    batch, clips, steps, channels, height, width = frames.shape
    if len(params) % (batch * clips):
        raise ValueError(f"{len(params)} parameter rows do not fit {batch} samples of {clips} clips")
    views = len(params) // (batch * clips)
    pool = frames.reshape(batch * clips * steps, channels, height, width)   # [B*(1+K)*T, C, H, W]
    row = torch.arange(batch * views * clips)
    clip_id = (row // (views * clips)) * clips + row % clips                # [B*V*(1+K)]
    frame_index = clip_id[:, None] * steps + torch.arange(steps)[None, :]   # [B*V*(1+K), T]
    out = apply_clip_augmentation(pool, params, size, channel_order, frame_index,
                                  color_ops=color_ops)
    return out.view(batch, views, clips, channels, steps, size, size)


EVAL_CROP = 0.8  # the release's evaluation centre square, as a fraction of the frame height


def apply_eval_transform(frames: torch.Tensor, size: int = REFERENCE_SIZE, crop: float = EVAL_CROP,
                         flip: bool = False) -> torch.Tensor:
    """Evaluation transform: centre square of side int(crop * H), resized to size (spec section 7).

    Args:
        frames: uint8 [..., T, C, H, W], any device.
    Returns:
        float32 [..., C, T, S, S] in [0, 1].
    """
    *lead, steps, channels, height, width = frames.shape
    side = min(int(crop * height), width)
    flat = frames.reshape(-1, channels, height, width)
    flat = TF.resize(TF.center_crop(flat, [side, side]), [size, size], antialias=True)
    if flip:
        flat = flat.flip(-1)
    clips = flat.view(*lead, steps, channels, size, size).movedim(-3, -4)   # [..., C, T, S, S]
    return clips.float().div_(255.0).contiguous()
