"""The order of the colour operations pinned by hand-worked examples (spec section 2).

The release's order: contrast (before, half the time), hue, saturation, brightness, contrast (after,
the other half), then grayscale (3 channels) and gamma. One uniform BGR pixel [200, 100, 50] under
the default color_ops "release" (PIL's formulas read the stored channels 0, 1, 2 as R, G, B; grey =
0.299 c0 + 0.587 c1 + 0.114 c2). On a uniform frame contrast blends with the pixel's own grey.
"""

from __future__ import annotations

import torch

from dataloaders.augment import apply_clip_augmentation
from tests.test_augment import H, S, W, plain_params

PIXEL = (200, 100, 50)


def augment_pixel(**changes) -> torch.Tensor:
    """The output grey levels [3] of a uniform 2-frame clip of PIXEL with these parameters."""
    frames = torch.tensor(PIXEL, dtype=torch.uint8).view(1, 1, 3, 1, 1).expand(1, 2, 3, H, W)
    out = apply_clip_augmentation(frames.contiguous(), plain_params(1, **changes), S)[0]
    flat = out.flatten(1)                                                  # [3, T*S*S]
    assert torch.equal(flat.amin(1), flat.amax(1)), "a uniform clip must stay uniform"
    return flat[:, 0] * 255


def test_every_colour_op_in_the_release_order_by_hand():
    """contrast 0.5 (before), hue +0.1, saturation 0.5, brightness 1.2, grayscale, gamma 0.8.

    contrast: grey 0.299*200 + 0.587*100 + 0.114*50 = 124.2 -> (x + 124.2) / 2 = [162.1, 112.1,
      87.1].
    hue: max c0 162.1, min c2 87.1, chroma 75; hue = (c1 - c2) / 75 = 1/3 sixth, + 0.6 sixth =
      0.9333 (between red and yellow: c0 stays 162.1, c2 stays 87.1) -> c1 = 87.1 + 75 * 0.9333 =
      157.1: [162.1, 157.1, 87.1].
    saturation: grey 0.299*162.1 + 0.587*157.1 + 0.114*87.1 = 150.615 -> [156.3575, 153.8575,
      118.8575].
    brightness: x 1.2 -> [187.629, 184.629, 142.629].
    grayscale: 0.299*187.629 + 0.587*184.629 + 0.114*142.629 = 180.738 (= 1.2 * 150.615: the
      saturation blend keeps the grey level).
    gamma: 255 * (180.738 / 255) ** 0.8 = 193.619 in all three channels.
    Saturation before hue would give 164.889 before gamma (179.91 after): another number.
    """
    out = augment_pixel(contrast_stage=1, contrast=0.5, hue_on=True, hue=0.1, saturation_on=True,
                        saturation=0.5, brightness_on=True, brightness=1.2, grayscale=True,
                        gamma_on=True, gamma=0.8)
    torch.testing.assert_close(out, torch.full((3,), 193.619), atol=0.01, rtol=0)


def test_colour_ops_with_contrast_after_by_hand():
    """hue +0.1, saturation 0.5, brightness 1.2, contrast 0.5 (after), no grayscale.

    hue: max c0 200, min c2 50, chroma 150; hue (100 - 50) / 150 = 1/3 sixth + 0.6 = 0.9333 ->
      c1 = 50 + 150 * 0.9333 = 190: [200, 190, 50].
    saturation: grey 59.8 + 111.53 + 5.7 = 177.03 -> [188.515, 183.515, 113.515].
    brightness: x 1.2 -> [226.218, 220.218, 136.218].
    contrast after: grey 1.2 * 177.03 = 212.436 -> [219.327, 216.327, 174.327].
    With contrast before hue (stage 1) the same factors give [187.629, 184.629, 142.629] (the
    first test's route without grayscale).
    """
    out = augment_pixel(hue_on=True, hue=0.1, saturation_on=True, saturation=0.5,
                        brightness_on=True, brightness=1.2, contrast_stage=2, contrast=0.5)
    torch.testing.assert_close(out, torch.tensor([219.327, 216.327, 174.327]), atol=0.01, rtol=0)
