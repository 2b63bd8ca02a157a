"""Guided-filter upsampling after Wu et al., "Fast End-to-End Trainable Guided Filter" (CVPR 2018): run the
expensive network on a downscaled photo, fit a local linear model from the downscaled guide to the downscaled
output (He and Sun's fast guided filter), and apply the upsampled model to the full-resolution guide.

* :class:`FastGuidedFilter`: the filter itself (fixed radius, learnable ``eps``).
* :class:`GuidedCAN`: the Deep Guided Filter: a :class:`~fip.models.ContextAggregationNet` at low resolution, a
  learned per-pixel guidance map and the filter, trained end to end (``fip build``'s ``lowres`` stage).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from fip.errors import InputError
from fip.models.can import ContextAggregationNet, NormMode, check_input


def box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Box mean over ``(2 * radius + 1)``-pixel squares, borders reflected: ``kornia.filters.box_blur``'s result
    (the tests compare them), ~6x faster here as one depthwise convolution over a padded map. The map must be
    larger than ``radius`` on each side (reflection needs it)."""
    r, channels = radius, x.shape[1]
    kernel = x.new_full((channels, 1, 2 * r + 1, 2 * r + 1), 1.0 / (2 * r + 1) ** 2)
    return F.conv2d(F.pad(x, (r, r, r, r), mode="reflect"), kernel, groups=channels)


class FastGuidedFilter(nn.Module):
    """``out_high = A_high * guide_high + b_high``, where per channel ``(A, b)`` is the guided filter's local linear
    fit of ``target_low`` from ``guide_low`` in ``(2 * radius + 1)``-pixel boxes, bilinearly upsampled.

    Args:
        radius: box radius in low-resolution pixels.
        eps: regularization of the fit (larger = smoother ``A``); learnable, kept positive.
        fit_hidden: if positive, ``A`` is ``cov / (var + eps)`` plus a learned correction from ``(cov, var)``
            (1x1 convolutions with this many hidden channels, at low resolution; Wu et al.'s "conv guided
            filter" learns ``A`` this way). It starts at zero: the untrained filter is the plain one.

    Inputs are ``(B, C, h, w)``, ``(B, C, h, w)`` and ``(B, C, H, W)``; the output is ``(B, C, H, W)``.
    """

    def __init__(self, radius: int = 1, eps: float = 1e-4, fit_hidden: int = 0, channels: int = 3):
        super().__init__()
        self.radius, self.fit_hidden = radius, fit_hidden
        self.log_eps = nn.Parameter(torch.tensor(float(eps)).log())
        self.fit = None
        if fit_hidden > 0:
            self.fit = nn.Sequential(
                nn.Conv2d(2 * channels, fit_hidden, 1),
                nn.LeakyReLU(0.2),
                nn.Conv2d(fit_hidden, fit_hidden, 1),
                nn.LeakyReLU(0.2),
                nn.Conv2d(fit_hidden, channels, 1),
            )
            nn.init.zeros_(self.fit[4].weight)
            nn.init.zeros_(self.fit[4].bias)

    def _box(self, x: torch.Tensor) -> torch.Tensor:
        return box_mean(x, self.radius)

    def coefficients(self, guide_low: torch.Tensor, target_low: torch.Tensor) -> torch.Tensor:
        """The box-averaged linear model at low resolution: ``(B, 2C, h, w)``, ``A`` channels then ``b``."""
        channels = guide_low.shape[1]
        means = self._box(torch.cat([guide_low, target_low, guide_low * target_low, guide_low * guide_low], dim=1))
        mean_i, mean_p, mean_ip, mean_ii = means.split(channels, dim=1)
        cov_ip = mean_ip - mean_i * mean_p
        var_i = mean_ii - mean_i * mean_i
        a = cov_ip / (var_i + self.log_eps.exp())
        if self.fit is not None:
            a = a + self.fit(torch.cat([cov_ip, var_i], dim=1))
        b = mean_p - a * mean_i
        return self._box(torch.cat([a, b], dim=1))

    def forward(
        self, guide_low: torch.Tensor, target_low: torch.Tensor, guide_high: torch.Tensor, band: int | None = None
    ) -> torch.Tensor:
        """``band``: compute the full-resolution output that many rows at a time (:func:`apply_linear_model`)."""
        return apply_linear_model(
            self.coefficients(guide_low, target_low),
            *guide_high.shape[2:],
            lambda top, bottom: guide_high[:, :, top:bottom],
            band,
        )


def apply_linear_model(
    coefficients: torch.Tensor,
    height: int,
    width: int,
    guide_rows: Callable[[int, int], torch.Tensor],
    band: int | None = None,
    colour: bool = False,
) -> torch.Tensor:
    """``A * guide + b`` at ``height x width`` from the low-resolution ``coefficients``, bilinearly upsampled:
    per channel (``A`` channels then ``b``, :meth:`FastGuidedFilter.coefficients`), or with ``colour`` a 3x3 matrix
    ``A`` per pixel (:func:`colour_guided_coefficients`). ``guide_rows(top, bottom)`` gives those rows of the
    full-resolution guide; with ``band``, they are asked for and computed that many rows at a time (the same
    result), so no full-size map but the output exists for the whole photo at once."""
    if colour and coefficients.shape[1] != COLOUR_COEFFICIENTS:
        raise InputError(f"colour coefficients have {COLOUR_COEFFICIENTS} channels; got {coefficients.shape[1]}")
    combine = _combine_colour if colour else _combine_channels
    if band is None or band >= height:
        coefficients = F.interpolate(coefficients, size=(height, width), mode="bilinear", align_corners=False)
        return combine(coefficients, guide_rows(0, height))
    channels = 3 if combine is _combine_colour else coefficients.shape[1] // 2
    out = coefficients.new_empty(coefficients.shape[0], channels, height, width)
    for top in range(0, height, band):
        bottom = min(height, top + band)
        out[:, :, top:bottom] = combine(
            upsample_rows(coefficients, height, width, top, bottom), guide_rows(top, bottom)
        )
    return out


def _combine_channels(coefficients: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    a, b = coefficients.chunk(2, dim=1)
    return a * guide + b


def _combine_colour(coefficients: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
    """``A @ guide + b`` per pixel: ``coefficients`` holds the 3x3 matrix ``A`` row by row, then ``b``."""
    batch, _, height, width = coefficients.shape
    a = coefficients[:, :9].view(batch, 3, 3, height, width)
    return (a * guide.unsqueeze(1)).sum(dim=2) + coefficients[:, 9:]


COLOUR_COEFFICIENTS = 12  # a 3x3 matrix and a 3-vector per pixel


def colour_guided_coefficients(
    guide_low: torch.Tensor, target_low: torch.Tensor, radius: int = 1, eps: float = 1e-4
) -> torch.Tensor:
    """He et al.'s colour guided filter, fitted at low resolution: in every ``(2 * radius + 1)``-pixel box, each
    output channel as an affine function of the three guide channels, ``q = A @ I + b``, with ``A`` regularized
    by ``eps`` (larger: smoother). Unlike the per-channel filter, a colour edge in the guide can carry an edge of
    any output channel, so operators that move colours (tone mapping, stylization, dehazing) upsample well.

    Args:
        guide_low: ``(B, 3, h, w)`` the guide (the photo) at low resolution.
        target_low: ``(B, 3, h, w)`` the result to upsample, at the same size.

    Returns:
        ``(B, 12, h, w)`` box-averaged coefficients: ``A`` row by row (output channel, then guide channel), then
        ``b``; :func:`apply_linear_model` applies them to the full-size guide.
    """
    if guide_low.shape[1] != 3 or target_low.shape[1] != 3 or guide_low.shape[2:] != target_low.shape[2:]:
        raise InputError(
            f"the colour guided filter takes a 3-channel guide and target of one size; got "
            f"{tuple(guide_low.shape)} and {tuple(target_low.shape)}"
        )
    dtype = guide_low.dtype
    guide, target = guide_low.float(), target_low.float()
    products = [guide[:, i : i + 1] * guide[:, j : j + 1] for i, j in _UPPER]
    cross = [target[:, c : c + 1] * guide[:, i : i + 1] for c in range(3) for i in range(3)]
    # Box means in float32 (fast); the covariances and 3x3 inverses of near-singular boxes in float64.
    means = box_mean(torch.cat([guide, target, *products, *cross], dim=1), radius).to(_SOLVE_DTYPE)
    mean_i, mean_p = means[:, 0:3], means[:, 3:6]
    var = [means[:, 6 + k] - mean_i[:, i] * mean_i[:, j] + (eps if i == j else 0.0) for k, (i, j) in enumerate(_UPPER)]
    s00, s01, s02, s11, s12, s22 = var
    # The inverse of the symmetric 3x3 matrix by its adjugate, elementwise over the boxes.
    c00, c01, c02 = s11 * s22 - s12 * s12, s02 * s12 - s01 * s22, s01 * s12 - s02 * s11
    c11, c12, c22 = s00 * s22 - s02 * s02, s01 * s02 - s00 * s12, s00 * s11 - s01 * s01
    determinant = s00 * c00 + s01 * c01 + s02 * c02
    inverse = [[c00, c01, c02], [c01, c11, c12], [c02, c12, c22]]
    a_rows, b_rows = [], []
    for c in range(3):
        cov = [means[:, 12 + 3 * c + i] - mean_i[:, i] * mean_p[:, c] for i in range(3)]
        row = [
            (inverse[i][0] * cov[0] + inverse[i][1] * cov[1] + inverse[i][2] * cov[2]) / determinant for i in range(3)
        ]
        a_rows += row
        b_rows.append(mean_p[:, c] - row[0] * mean_i[:, 0] - row[1] * mean_i[:, 1] - row[2] * mean_i[:, 2])
    coefficients = torch.stack(a_rows + b_rows, dim=1).float()
    return box_mean(coefficients, radius).to(dtype)


def fit_coefficients(
    guide_low: torch.Tensor, target_low: torch.Tensor, colour: bool, radius: int = 1, eps: float = 1e-4
) -> torch.Tensor:
    """The guided filter's box-averaged linear model of ``target_low`` from ``guide_low`` (both ``(B, 3, h, w)``),
    for :func:`apply_linear_model`: with ``colour`` He et al.'s colour filter (:func:`colour_guided_coefficients`,
    12 maps), else the per-channel filter with this fixed ``eps`` (:meth:`FastGuidedFilter.coefficients`, 6 maps)."""
    if colour:
        return colour_guided_coefficients(guide_low, target_low, radius, eps)
    return FastGuidedFilter(radius, eps).to(guide_low.device).coefficients(guide_low, target_low)


_SOLVE_DTYPE = torch.float64  # float32 inverses of near-grey boxes reach NaN at eps 1e-5
_UPPER = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))  # the distinct entries of a symmetric 3x3 matrix


def upsample_rows(x: torch.Tensor, height: int, width: int, top: int, bottom: int) -> torch.Tensor:
    """Rows ``top:bottom`` of ``F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)``,
    computed without the other rows: full-resolution work in bands of bounded memory."""
    rows = x.shape[2]
    source = ((torch.arange(top, bottom, dtype=torch.float64) + 0.5) * (rows / height) - 0.5).clamp(min=0.0)
    first = source.floor().long().clamp(max=rows - 1)
    second = (first + 1).clamp(max=rows - 1)
    weight = (source - first).to(x.dtype).view(1, 1, -1, 1)
    band = torch.lerp(x[:, :, first], x[:, :, second], weight)
    # Height already at its final size: interpolating to it again is the identity, so this only resizes columns.
    return F.interpolate(band, size=(bottom - top, width), mode="bilinear", align_corners=False)


class GuideMap(nn.Module):
    """A learned per-pixel guidance image: ``rgb + conv1x1(LeakyReLU(conv1x1(rgb)))`` (Wu et al. learn the guide
    with 1x1 convolutions too). The last layer starts at zero, so the untrained map is the photo itself and
    training starts from the plain guided filter.

    Args:
        hidden: channels of the hidden layer.

    Input and output ``(B, 3, H, W)``; pixel-wise, so it costs ~6 * hidden multiply-adds per pixel.
    """

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.hidden = hidden
        self.body = nn.Sequential(nn.Conv2d(3, hidden, 1), nn.LeakyReLU(0.2), nn.Conv2d(hidden, 3, 1))
        nn.init.zeros_(self.body[2].weight)
        nn.init.zeros_(self.body[2].bias)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        # The 1x1 convolutions as two matrix products over the flattened pixels: the same numbers, ~4x faster here
        # than Conv2d on a 3-channel NCHW map (5 vs 22 ms for 256 rows of a 1080p frame).
        first, last = self.body[0], self.body[2]
        batch = rgb.shape[0]
        flat = rgb.reshape(batch, 3, -1)
        hidden = torch.baddbmm(
            first.bias.view(1, -1, 1), first.weight.view(1, self.hidden, 3).expand(batch, -1, -1), flat
        )
        hidden = F.leaky_relu(hidden, 0.2)
        out = torch.baddbmm(last.bias.view(1, -1, 1), last.weight.view(1, 3, self.hidden).expand(batch, -1, -1), hidden)
        return rgb + out.view_as(rgb)


class GuidedCAN(nn.Module):
    """The Deep Guided Filter around a CAN: ``can`` runs on the photo area-downscaled by ``factor``; the fast
    guided filter, guided by :class:`GuideMap` of the photo at both resolutions, brings its output back to full
    resolution. Every part is trained together against full-resolution targets, so the network learns what to
    produce at low resolution for the filter to upsample well (it starts from a full-resolution model:
    ``warm_start`` loads a plain CAN's weights into ``can``).

    Args:
        in_channels, width, depth, norm, conv_bias: the CAN's (:class:`~fip.models.ContextAggregationNet`).
        factor: linear downscaling factor (3: a 1080p frame runs the CAN at 640x360, ~1/9 of the work).
        radius, eps, fit_hidden: the filter's (:class:`FastGuidedFilter`).
        guide_hidden: hidden channels of the guidance map.

    Input ``(B, in_channels, H, W)`` in [0, 1] (RGB first; extra maps go to the CAN only); output
    ``(B, 3, H, W)``, not clipped.
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 24,
        depth: int = 9,
        norm: NormMode | str = NormMode.IMAGE,
        factor: float = 3.0,
        radius: int = 1,
        eps: float = 1e-4,
        fit_hidden: int = 0,
        guide_hidden: int = 16,
        conv_bias: bool = False,
    ):
        super().__init__()
        if factor < 1.0:
            raise InputError(f"the downscaling factor must be at least 1; got {factor}")
        self.can = ContextAggregationNet(in_channels, width, depth, norm, conv_bias=conv_bias)
        self.guide = GuideMap(guide_hidden)
        self.filter = FastGuidedFilter(radius, eps, fit_hidden)
        self.factor = float(factor)
        self.in_channels, self.width, self.depth, self.conv_bias = in_channels, width, depth, conv_bias

    def downscale(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` area-downscaled by ``factor`` (at least ``radius + 1`` and 4 pixels a side: the filter's boxes
        reflect at the borders)."""
        height, width = x.shape[2:]
        least = max(4, self.filter.radius + 1)
        size = (max(least, round(height / self.factor)), max(least, round(width / self.factor)))
        return F.interpolate(x, size=size, mode="area")

    def upsample(
        self, small: torch.Tensor, low: torch.Tensor, x: torch.Tensor, band: int | None = None
    ) -> torch.Tensor:
        """The full-resolution output from ``low``, the CAN's output on ``small = downscale(x)``. ``band``: compute
        it that many rows at a time (the same result), so the full-resolution guidance map, whose hidden layer
        has ``guide_hidden`` channels, never exists for the whole photo at once."""
        coefficients = self.filter.coefficients(self.guide(small[:, :3]), low.to(small.dtype))
        return apply_linear_model(
            coefficients, *x.shape[2:], lambda top, bottom: self.guide(x[:, :3, top:bottom]), band
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels)
        small = self.downscale(x)
        return self.upsample(small, self.can(small), x)

    def forward_in_context(self, x: torch.Tensor, contexts: list[torch.Tensor]) -> torch.Tensor:
        """``x`` (full-resolution crops) with the CAN normalized by the statistics of ``contexts``: the crops'
        photos downscaled (:meth:`ContextAggregationNet.forward_in_context`). At inference those statistics come
        from a ~0.05 MP preview (the card's ``preview_megapixels``): for 1080p training photos
        ``data.context_scale: 0.17`` gives previews of that size."""
        check_input(x, self.in_channels)
        small = self.downscale(x)
        return self.upsample(small, self.can.forward_in_context(small, contexts), x)
