"""Colour operations of the clip augmentation (spec section 2), in place on float clips.

Every operation works on x [m, C, T, H, W] in [0, 1] with one factor per clip ([m] tensors) and
`rgb`, the tensor channel index of R, G and B. Formulas as torchvision's float kernels (blend, then
clamp to [0, 1]). Branches use float masks: boolean tensors and torch.where are several times
slower than arithmetic on CPU. dataloaders.augment draws the parameters and applies these in the
release's order.

Channel order of the colour formulas (`color_ops`). The release hands OpenCV's BGR uint8 array to
PIL (ToPILImage) without reordering, so PIL's RGB formulas (grayscale / "L" weights, the grey
reference of saturation and contrast, the HSV hue shift) run on B, G, R as if they were R, G, B.
color_ops="release" (the default) does the same: the formulas read tensor channels 0, 1, 2 as R, G,
B whatever `channel_order` says, so on BGR frames grayscale = 0.299 B + 0.587 G + 0.114 R and the
hue shift turns the other way round the colour wheel. color_ops="true_channels" computes them for
the true order given by `channel_order` (the channels are found by name). Brightness, gamma,
channel drop, flip and erase do not depend on the order. With RGB frames the two settings coincide.
"""
from __future__ import annotations

import threading

import torch

CHANNEL_ORDERS = {"bgr": (2, 1, 0), "rgb": (0, 1, 2)}  # tensor channel index of R, G, B
# Which channels the colour formulas take as R, G, B: "release" = the stored channels 0, 1, 2, as
# PIL does with the release's BGR arrays; "true_channels" = found by name from the channel order.
COLOR_OPS = ("release", "true_channels")
GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # PIL's "L" conversion (ITU-R 601-2 luma)


def formula_channels(channel_order: str, color_ops: str = "release") -> tuple[int, int, int]:
    """The tensor channels the colour formulas read as R, G and B.

    Args:
        channel_order: "bgr" or "rgb", the frames' real order.
        color_ops: "release" (stored channels 0, 1, 2 as R, G, B, as PIL on the release's BGR
            arrays) or "true_channels" (the real R, G, B of `channel_order`).
    Returns:
        (index of R, index of G, index of B).
    """
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {sorted(CHANNEL_ORDERS)}, got {channel_order!r}")
    if color_ops not in COLOR_OPS:
        raise ValueError(f"color_ops must be one of {list(COLOR_OPS)}, got {color_ops!r}")
    return CHANNEL_ORDERS["rgb" if color_ops == "release" else channel_order]

def _per_clip(values: torch.Tensor) -> torch.Tensor:
    return values.view(-1, 1, 1, 1, 1)


def _gray(x: torch.Tensor, rgb: tuple[int, int, int]) -> torch.Tensor:
    """Luma [m, 1, T, H, W]."""
    r, g, b = (x[:, i] for i in rgb)
    gray = torch.mul(r, GRAY_WEIGHTS[0])
    gray.add_(g, alpha=GRAY_WEIGHTS[1]).add_(b, alpha=GRAY_WEIGHTS[2])
    return gray.unsqueeze(1)


def _blend_(x: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> None:
    """x = clamp(f * x + (1 - f) * other, 0, 1); other broadcasts over channels (and pixels)."""
    f = _per_clip(factor)
    # (1 - f) * other first: addcmul_ with an operand broadcast over the pixels is 5x slower on CPU
    x.mul_(f).add_(other * (1 - f)).clamp_(0, 1)


def adjust_contrast_(x, factor, rgb) -> None:
    """Blend with each frame's mean grey level."""
    _blend_(x, _gray(x, rgb).mean(dim=(-2, -1), keepdim=True), factor)  # mean [m, 1, T, 1, 1]


def adjust_saturation_(x, factor, rgb) -> None:
    _blend_(x, _gray(x, rgb), factor)


def adjust_brightness_(x, factor, rgb=None) -> None:
    x.mul_(_per_clip(factor)).clamp_(0, 1)


_WORKSPACE = threading.local()


def _buffers(like: torch.Tensor, count: int) -> list[torch.Tensor]:
    """`count` scratch tensors shaped like `like`: cached per thread on CPU (several fresh
    large temporaries alive at once cost page faults there), fresh elsewhere (GPU allocators cache).
    """
    if like.device.type != "cpu":
        return [torch.empty(like.shape, dtype=like.dtype, device=like.device) for _ in range(count)]
    cache = getattr(_WORKSPACE, "cache", None)
    if cache is None or len(cache) > 8:
        cache = _WORKSPACE.cache = {}
    key = (tuple(like.shape), like.dtype)
    if len(cache.get(key, ())) < count:
        cache[key] = [torch.empty(like.shape, dtype=like.dtype) for _ in range(count)]
    return cache[key][:count]


def adjust_hue_(x, shift, rgb) -> None:
    """Rotates hue by `shift` (fraction of a turn) through HSV, like torchvision's adjust_hue.

    Hue in sixths of a turn: (g - b) / C, 2 + (b - r) / C or 4 + (r - g) / C when R, G or B is the
    maximum (C = max - min, the chroma). Back to RGB: channel = max - C * clamp(min(k, 4 - k), 0, 1)
    with k = (hue + n) mod 6, n = 5, 3, 1 for R, G, B (shifting hue keeps value and chroma).
    """
    r, g, b = (x[:, i] for i in rgb)                                   # [m, T, H, W] each
    maxc, chroma, is_r, is_g, hue6, tmp = _buffers(r, 6)
    torch.maximum(torch.maximum(r, g, out=maxc), b, out=maxc)
    torch.minimum(torch.minimum(r, g, out=chroma), b, out=chroma)
    torch.sub(maxc, chroma, out=chroma)
    torch.ge(r, maxc, out=is_r)                                        # 1.0 where R is the maximum
    torch.ge(g, maxc, out=is_g).addcmul_(is_g, is_r, value=-1)         # G is, and R is not
    torch.sub(g, b, out=hue6).mul_(is_r)
    hue6.addcmul_(torch.sub(b, r, out=tmp).add_(chroma, alpha=2), is_g)
    is_b = is_r.add_(is_g).neg_().add_(1)
    hue6.addcmul_(torch.sub(r, g, out=tmp).add_(chroma, alpha=4), is_b)
    hue6.div_(torch.clamp_min(chroma, 1e-12, out=tmp))                 # grey pixels: 0 / tiny = 0
    hue6.add_(6 * shift.view(-1, 1, 1, 1))
    hue6.sub_(torch.mul(hue6, 1 / 6, out=tmp).floor_(), alpha=6)       # into [0, 6)
    k, weight = is_g, is_b                                             # reused buffers
    for channel, n in zip(rgb, (5.0, 3.0, 1.0)):                       # r, g, b no longer needed
        torch.add(hue6, n, out=k)                                      # in [n, n + 6)
        k.sub_(torch.ge(k, 6.0, out=tmp), alpha=6)                     # k mod 6
        torch.minimum(k, torch.mul(k, -1, out=weight).add_(4), out=weight).clamp_(0, 1)
        torch.addcmul(maxc, chroma, weight, value=-1, out=x[:, channel])


def adjust_gamma_(x, gamma, rgb=None) -> None:
    """x ** gamma, as exp(gamma * log x) (twice as fast as pow on CPU; 0 stays 0)."""
    x.log_().mul_(_per_clip(gamma)).exp_().clamp_(0, 1)


def grayscale_gamma_(x, gamma, rgb, gamma_rows: list[int]) -> None:
    """Grayscale, then gamma on the rows listed: computed on one channel (the three are equal)."""
    gray = _gray(x, rgb)                                               # [m, 1, T, H, W]
    apply_rows(gray, gamma_rows, adjust_gamma_, gamma, rgb)
    x.copy_(gray.expand_as(x))


def apply_rows(x: torch.Tensor, rows: list[int], op, factor: torch.Tensor | None, rgb) -> None:
    """Applies the in-place `op` to the selected rows of x (python row indices within x)."""
    if not rows:
        return
    if len(rows) == x.shape[0]:
        op(x, factor, rgb)
        return
    index = torch.tensor(rows, device=x.device)
    selected = x[index]                                                # a copy
    op(selected, None if factor is None else factor[index], rgb)
    x[index] = selected
