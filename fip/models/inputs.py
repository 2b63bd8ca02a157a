"""Input normalizations: a per-photo rescaling of the RGB input that a network is trained and run behind.

A CAN sees a photo only through its pixels and, in its adaptive normalizations, the mean and variance of each
feature map. Some operators hinge on one global quantity that those cannot give. The dehazing operators estimate
the airlight ``A`` (the colour of the haze) from the brightest pixels of the dark channel and work in ``I / A``;
``airlight`` divides the input by the same estimate, which hands the network that quantity and removes it from what
it must learn. ``tone.mapping`` maps its photo's brightest 0.5 % to white whatever the exposure; ``exposure`` divides
the input by the photo's own bright level, so a photo and a darker copy of it look alike to the network. The
measurements behind these choices are in the research log (docs/research-log.md).

The normalization belongs to the network (``ContextAggregationNet(input_norm=...)``, saved with its weights):
:func:`fip.runtime.execute.run_plan` applies it to the whole photo before any tiling or statistics preview, and the
training data (``PairDataModule(input_norm=...)``) apply it to each whole photo before cropping, so both see the
photo-level estimate.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from fip.errors import InputError

AIRLIGHT_PATCH = 15  # the dark channel's window, pixels, as fip's dehazing operators use
AIRLIGHT_FRACTION = 0.001  # the brightest share of the dark channel among which the airlight pixel is chosen
AIRLIGHT_FLOOR = 0.05  # a channel of the airlight below this would blow the input up by more than 20x
EXPOSURE_QUANTILE = 0.995  # tone.mapping maps the brightest 0.5 % of its photo to white
EXPOSURE_FLOOR = 0.05  # a black photo is not blown up by more than 20x
LUMA = (0.2126, 0.7152, 0.0722)  # Rec. 709 weights

INPUT_NORMS = {
    "airlight": "RGB divided by the photo's airlight (He et al.'s dark-channel estimate, as the dehazing operators)",
    "airlight_scaled": "as airlight, and the output multiplied back by it: for outputs that are the airlight times "
    "a function of I / A (dark-channel dehazing: J = A ((I / A - 1) / t + 1))",
    "exposure": "RGB divided by the photo's 99.5th percentile of luma (Rec. 709 weights on the sRGB values): for "
    "outputs that do not change with the photo's exposure (tone.mapping maps its brightest 0.5 % to white)",
}


def check_input_norm(kind: str | None) -> str | None:
    """``kind`` if it names an input normalization (or is ``None``); else an error listing them."""
    if kind is not None and kind not in INPUT_NORMS:
        raise InputError(f"unknown input normalization {kind!r}; choose one of {', '.join(INPUT_NORMS)} (or none)")
    return kind


def airlight(rgb: torch.Tensor, patch: int = AIRLIGHT_PATCH, fraction: float = AIRLIGHT_FRACTION) -> torch.Tensor:
    """He et al.'s airlight: among the brightest ``fraction`` of the dark channel (minimum over the colours, then
    over a ``patch`` x ``patch`` window), the pixel of the largest R + G + B.

    Args:
        rgb: ``(B, 3, H, W)`` float sRGB in [0, 1].

    Returns:
        ``(B, 3, 1, 1)``, each channel at least ``AIRLIGHT_FLOOR``.
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise InputError(f"airlight takes (B, 3, H, W) RGB; got shape {tuple(rgb.shape)}")
    rgb = rgb.float()
    # An erosion whose window ignores the border, as OpenCV's erode does; a square's minimum is the minimum of its
    # rows' minima, so it runs as two passes of `patch` each instead of one of `patch` squared.
    dark = -rgb.amin(dim=1, keepdim=True)
    dark = F.max_pool2d(dark, (1, patch), stride=1, padding=(0, patch // 2))
    dark = -F.max_pool2d(dark, (patch, 1), stride=1, padding=(patch // 2, 0))
    dark = dark[..., : rgb.shape[2], : rgb.shape[3]]  # an even patch would add a row and a column
    count = max(1, int(rgb.shape[2] * rgb.shape[3] * fraction))
    candidates = dark.flatten(1).topk(count, dim=1).indices  # (B, count)
    pixels = rgb.flatten(2).gather(2, candidates.unsqueeze(1).expand(-1, 3, -1))  # (B, 3, count)
    best = pixels.sum(dim=1).argmax(dim=1)
    chosen = pixels[torch.arange(rgb.shape[0]), :, best]  # (B, 3)
    return chosen.clamp_min(AIRLIGHT_FLOOR)[..., None, None]


def exposure(rgb: torch.Tensor, quantile: float = EXPOSURE_QUANTILE) -> torch.Tensor:
    """The ``quantile`` of each photo's luma (Rec. 709 weights on the sRGB values), the same for the three channels.

    The sRGB curve is close to a 2.2 power, so dividing its values by ``c`` is close to dividing the light by
    ``c ** 2.2``: a photo and an unclipped copy of it some stops darker divide to nearly the same input (on
    tests/test_inputs.py's image, within 0.02 one stop down and 0.05 two stops down).

    Args:
        rgb: ``(B, 3, H, W)`` float sRGB in [0, 1].

    Returns:
        ``(B, 3, 1, 1)``, at least ``EXPOSURE_FLOOR``.
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise InputError(f"exposure takes (B, 3, H, W) RGB; got shape {tuple(rgb.shape)}")
    luma = (rgb.float() * rgb.new_tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)).sum(dim=1).flatten(1)
    # kthvalue, not torch.quantile, which refuses inputs over 16M values (a 24-megapixel photo).
    k = min(luma.shape[1], max(1, round(quantile * luma.shape[1])))
    level = luma.kthvalue(k, dim=1).values.clamp_min(EXPOSURE_FLOOR)
    return level.view(-1, 1, 1, 1).expand(-1, 3, 1, 1)


_ESTIMATES = {"airlight": airlight, "airlight_scaled": airlight, "exposure": exposure}  # one per INPUT_NORMS key


def input_scale(kind: str | None, x: torch.Tensor) -> torch.Tensor | None:
    """What ``kind`` divides the RGB of ``x`` (``(B, C, H, W)``, RGB first) by: ``(B, 3, 1, 1)``, each photo's own
    estimate; ``None`` for no normalization."""
    kind = check_input_norm(kind)
    if kind is None:
        return None
    return _ESTIMATES[kind](x[:, :3]).to(x.dtype)


def scales_output(kind: str | None) -> bool:
    """Whether ``kind`` multiplies the network's output back by the input's scale (and so divides the targets)."""
    return kind == "airlight_scaled"


def normalize_input(kind: str | None, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """``x`` (``(B, C, H, W)``, RGB first, then any constant maps) with its RGB divided by ``scale``
    (default: :func:`input_scale`); ``None`` returns ``x`` itself."""
    scale = input_scale(kind, x) if scale is None else scale
    if scale is None:
        return x
    return torch.cat([x[:, :3] / scale, x[:, 3:]], dim=1)
