"""Running plans: the one forward path behind ``fip apply``, ``fip eval``, ``fip bench``, the demo and the API.

:func:`run_plan` runs any :class:`~fip.runtime.plan.Plan` on one photo given as :class:`Views`. Every approximator
kind goes through it: a context aggregation network at full resolution (its statistics from the photo, a preview
or running averages; whole or in tiles), a network at low resolution with guided-filter upsampling, a trained
guided (Deep Guided Filter) network, a bilateral-grid network, an ONNX Runtime int8 file, and the reference
operator at low resolution with colour-guided upsampling. Networks are prepared once per
:class:`~fip.models.catalogue.Model` object and device, and reused (models opened by name are kept for the process).
"""

from __future__ import annotations

import copy
import functools
import math
import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from fip.errors import FipError, InputError
from fip.imaging import resize_area, srgb_decode
from fip.models.can import ContextAggregationNet, FoldedCAN, downscaled, fold, image_statistics
from fip.models.cards import Approximator, Upsampler
from fip.models.catalogue import Model
from fip.models.grid import BilateralGridNet
from fip.models.guided import GuidedCAN, apply_linear_model, fit_coefficients
from fip.models.inputs import input_scale, normalize_input, scales_output
from fip.raw import Photo, photo_from_srgb
from fip.registry import InputKind, get_operator
from fip.runtime import kernels
from fip.runtime.devices import dtype_for
from fip.runtime.onnx import OrtNet, PerPhotoInt8
from fip.runtime.plan import Plan


class Views:
    """One photo as the engine consumes it.

    Args:
        srgb: ``(1, 3, H, W)`` float32 sRGB in [0, 1], on any device: what the networks take and every upsampler
            is guided by. Any size, odd ones included.
        photo: the photo's three views (:class:`fip.raw.Photo`: sRGB, linear, Bayer mosaic), or a function that
            reads them when first needed; without it they are made from ``srgb``, as image files are read.
    """

    def __init__(self, srgb: torch.Tensor, photo: Photo | Callable[[], Photo] | None = None):
        if srgb.ndim != 4 or srgb.shape[:2] != (1, 3):
            raise InputError(f"expected a (1, 3, H, W) sRGB tensor; got {tuple(srgb.shape)}")
        self.srgb = srgb
        self._photo = photo

    @classmethod
    def of_photo(cls, photo: Photo, srgb: np.ndarray | None = None) -> Views:
        """The views of ``photo``; ``srgb`` (default: the photo's) may be its native-size sRGB (odd sides kept)."""
        return cls(to_batch(photo.srgb if srgb is None else srgb), photo)

    @classmethod
    def of_array(cls, srgb: np.ndarray) -> Views:
        return cls(to_batch(srgb))

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.srgb.shape[2:])  # type: ignore[return-value]

    @property
    def from_srgb(self) -> bool:
        """Whether the photo's views are (or will be) made from the sRGB image alone, as image files are read:
        then a resized sRGB view is the sRGB image resized, with no linear view or mosaic to make first."""
        return self._photo is None or (isinstance(self._photo, Photo) and not self._photo.is_raw)

    def photo(self) -> Photo:
        """The photo's three views (read by the loader given, or made from the sRGB tensor), once."""
        if callable(self._photo):
            self._photo = self._photo()
        if self._photo is None:
            self._photo = photo_from_srgb(_numpy(self.srgb))
        return self._photo


def to_batch(image: np.ndarray) -> torch.Tensor:
    """An ``(H, W, C)`` image as the ``(1, C, H, W)`` float32 tensor the networks take (a view, no copy, when the
    array is float32 and contiguous: channels_last memory)."""
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]


def to_image(batch: torch.Tensor) -> np.ndarray:
    """``(1, 3, H, W)`` -> ``(H, W, 3)`` float32 NumPy on the CPU, clipped to [0, 1]."""
    return batch[0].detach().float().clamp(0.0, 1.0).permute(1, 2, 0).cpu().contiguous().numpy()


def run_plan(
    plan: Plan,
    model: Model,
    views: Views,
    maps: tuple[float, ...] | None = None,
    network: torch.nn.Module | None = None,
) -> torch.Tensor:
    """Run ``plan`` for ``model`` on one photo; returns ``(1, 3, H, W)`` float32 in [0, 1] on the plan's device.

    Args:
        plan: from :func:`fip.runtime.plan.make_plan` for this photo's size.
        model: the model the plan was made for.
        views: the photo.
        maps: constant extra input maps for a network of several tasks (default: those of the plan's operator and
            parameters, ``model.maps(plan.operator, plan.params)``).
        network: the approximator's network already on the device (default: the model's, prepared once).

    Raises:
        FipError: the photo does not match the plan, or the device ran out of memory (the message says what to do).
    """
    if views.size != tuple(plan.size):
        raise InputError(
            f"the plan is for a {plan.size[1]}x{plan.size[0]} photo; this one is "
            f"{views.size[1]}x{views.size[0]}: make a plan for it"
        )
    device = torch.device(plan.device)
    approximator = model.card.approximator(plan.approximator)
    if maps is None:
        maps = model.maps(plan.operator, plan.params)
    try:
        with torch.inference_mode():
            if approximator.runs_reference:
                upsampler = approximator.upsampler
                guide = prepared(model, upsampler.guide, device) if upsampler and upsampler.guide else None
                out = reference_lowres(
                    plan.operator,
                    plan.params,
                    views,
                    upsampler,
                    plan.working_size,
                    plan.band_rows,
                    device,
                    guide,
                )
            else:
                if network is None:
                    entry = model.card.networks[approximator.network]
                    if entry.kind == "onnx" and entry.quantized_from is not None:
                        network = _per_photo_int8(model, approximator.network, device)
                    elif entry.kind == "onnx":
                        network = _onnx_session(
                            str(model.network(approximator.network)), entry.receptive_radius or 0, device
                        )
                    else:
                        network = prepared(model, approximator.network, device)
                out = forward_approximator(
                    approximator,
                    network,
                    views.srgb.to(device),
                    maps,
                    plan.working_size,
                    plan.tile,
                    plan.band_rows,
                    plan.compile,
                    plan_dtype(plan),
                )
            return out.float().clamp_(0.0, 1.0)
    except (MemoryError, torch.OutOfMemoryError) as exc:
        raise FipError(_out_of_memory(plan)) from exc
    except RuntimeError as exc:
        if "alloc" in str(exc).lower() or "out of memory" in str(exc).lower():
            raise FipError(_out_of_memory(plan)) from exc
        raise


def plan_dtype(plan: Plan) -> torch.dtype | None:
    """The torch dtype ``plan``'s network runs in (``None``: int8, which ONNX Runtime runs)."""
    return None if plan.precision == "int8" else getattr(torch, plan.precision)


def _out_of_memory(plan: Plan) -> str:
    height, width = plan.size
    return (
        f"ran out of memory running {plan.approximator!r} on a {width}x{height} photo on {plan.device}: pass "
        "--tile 512 (or a smaller tile), --max-megapixels to downscale first, or choose a low-resolution "
        "approximator"
    )


# -- networks -----------------------------------------------------------------------------------------------------


def forward_approximator(
    approximator: Approximator,
    network: torch.nn.Module | OrtNet,
    x: torch.Tensor,
    maps: tuple[float, ...] | None = None,
    working_size: tuple[int, int] | None = None,
    tile: int | None = None,
    band_rows: int | None = None,
    compile: bool = False,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """A network approximator on one photo ``x`` (``(1, 3, H, W)`` float32 sRGB on ``network``'s device).

    Args:
        approximator: what to run (precision, statistics, scale, upsampler).
        network: its network, float32, on the device (or an ONNX Runtime session).
        maps: constant extra input maps for a network of several tasks.
        working_size: where a low-resolution approximator works (``None``: at full size).
        tile, band_rows: memory bounds (same result).
        compile: run the network through ``torch.compile``.
        dtype: the precision its network runs in (a plan's; default: the approximator's on this device).

    Returns:
        ``(1, 3, H, W)``, not clipped.
    """
    if isinstance(network, OrtNet):
        x = with_maps(x, maps)
        return forward_halo_tiles(network, x, tile) if tile else network(x)
    if isinstance(network, PerPhotoInt8):
        scale = input_scale(network.input_norm, x)
        x = with_maps(normalize_input(network.input_norm, x, scale), maps)
        photo_net = network.for_photo(x, approximator.preview_megapixels or 0.1)
        out = forward_halo_tiles(photo_net, x, tile) if tile else photo_net(x)
        return out * scale if scales_output(network.input_norm) else out
    if isinstance(network, BilateralGridNet):  # constant work per pixel, in bands; float32 (it is memory-bound)
        return network(with_maps(x, maps), band=band_rows)
    input_norm = getattr(network, "input_norm", None)
    scale = input_scale(input_norm, x)  # of the whole photo, before any tile or preview
    x = with_maps(normalize_input(input_norm, x, scale), maps)
    dtype = dtype or dtype_for(approximator.precision, x.device)
    statistics, preview = approximator.statistics, approximator.preview_megapixels
    if isinstance(network, GuidedCAN):
        if working_size is None:  # too small a photo to downscale: its network at full size
            out = run_can(network.can, x, statistics, dtype, preview, tile, compile)
        else:
            small = network.downscale(x)
            low = run_can(network.can, small, statistics, dtype, preview, None, compile)
            out = guided_upsample(network, small, low.float(), x, band_rows)
    elif working_size is not None:
        small = F.interpolate(x, size=working_size, mode="area")
        low = run_can(network, small, statistics, dtype, preview, None, compile)
        out = upsample(small[:, :3], low.float(), x[:, :3], approximator.upsampler, band_rows)
    else:
        out = run_can(network, x, statistics, dtype, preview, tile, compile)
    return out * scale if scales_output(input_norm) else out


def with_maps(x: torch.Tensor, maps: tuple[float, ...] | None) -> torch.Tensor:
    """``x`` (``(1, C, H, W)``) with the constant conditioning ``maps`` appended as channels (``x`` without them)."""
    if not maps:
        return x
    planes = torch.as_tensor(maps, dtype=x.dtype, device=x.device).view(1, -1, 1, 1).expand(1, -1, *x.shape[2:])
    return torch.cat([x, planes], dim=1)


_PREPARED: weakref.WeakKeyDictionary[Model, dict[str, torch.nn.Module]] = weakref.WeakKeyDictionary()
_PREPARED_LOCK = threading.Lock()


def prepared(model: Model, key: str, device: torch.device) -> torch.nn.Module:
    """``model``'s network ``key`` on ``device`` in float32 and channels_last, made once per model and device."""
    with _PREPARED_LOCK:
        cache = _PREPARED.setdefault(model, {})
        name = f"{key}@{device}"
        if name not in cache:
            net = model.network(key)
            cache[name] = copy.deepcopy(net).to(device=device, memory_format=torch.channels_last).eval()
        return cache[name]


def _per_photo_int8(model: Model, key: str, device: torch.device) -> PerPhotoInt8:
    entry = model.card.networks[key]
    return PerPhotoInt8(
        model.network(key),
        prepared(model, entry.quantized_from, torch.device("cpu")),
        entry.receptive_radius or 0,
        device,
    )


@functools.lru_cache(maxsize=8)
def _onnx_session(path: str, receptive_radius: int, device: torch.device) -> OrtNet:
    return OrtNet(path, receptive_radius, device)


def run_can(
    net: ContextAggregationNet,
    x: torch.Tensor,
    statistics: str | None,
    dtype: torch.dtype = torch.float32,
    preview_megapixels: float | None = None,
    tile: int | None = None,
    compile: bool = False,
) -> torch.Tensor:
    """``net(x)`` for one photo, with the normalization statistics ``statistics`` names (see
    :class:`~fip.models.cards.Approximator`), in ``dtype``; ``tile``: bound memory, same result. ``net`` is left
    unchanged (folded or converted copies are made)."""
    if statistics == "image" and dtype == torch.float32:
        if tile is not None:
            return forward_layer_tiles(net, x, tile)
        run = _compiled(net) if compile else net
        return run(x.contiguous(memory_format=torch.channels_last))
    if statistics == "running" or net.folds_exactly:
        folded = fold(net)
    else:  # "preview" (and "image" in a lower precision: the photo's own statistics, folded)
        preview = x if statistics == "image" else downscaled(x, preview_megapixels or 0.1)
        folded = fold(net, image_statistics(net, preview))
    folded = folded.to(device=x.device, dtype=dtype, memory_format=torch.channels_last)
    x = x.to(dtype)
    if tile is not None:
        return forward_halo_tiles(folded, x, tile)
    if compile:
        return _compiled_folded()(x.contiguous(memory_format=torch.channels_last), *_folded_parameters(folded))
    return folded(x.contiguous(memory_format=torch.channels_last))


def _folded_parameters(folded: FoldedCAN) -> tuple[Any, ...]:
    convs = [m for m in folded.features if isinstance(m, torch.nn.Conv2d)]
    return (
        [c.weight for c in convs],
        [c.bias for c in convs],
        tuple(c.dilation[0] for c in convs),
        folded.output.weight,
        folded.output.bias,
    )


def _folded_forward(
    x: torch.Tensor,
    weights: list[torch.Tensor],
    biases: list[torch.Tensor],
    dilations: tuple[int, ...],
    out_weight: torch.Tensor,
    out_bias: torch.Tensor,
) -> torch.Tensor:
    """A folded CAN as a function of its weights, so one compiled graph serves every photo's folded weights."""
    for weight, bias, dilation in zip(weights, biases, dilations):
        x = F.leaky_relu(F.conv2d(x, weight, bias, padding=dilation, dilation=dilation), 0.2)
    return F.conv2d(x, out_weight, out_bias)


@functools.cache
def _compiled_folded() -> Callable[..., torch.Tensor]:
    return torch.compile(_folded_forward, dynamic=True)


@functools.lru_cache(maxsize=8)
def _compiled(net: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    return torch.compile(net, dynamic=True)


def forward_layer_tiles(net: ContextAggregationNet, x: torch.Tensor, tile: int = 512) -> torch.Tensor:
    """Exactly ``net(x)`` for a batch of one, computed layer by layer with each convolution run tile by tile.

    The per-image statistics of :class:`~fip.models.AdaptiveNorm` are taken over the whole feature map, never per
    tile, so the result equals the untiled forward pass (up to float rounding); only the convolution workspace is
    bounded by the tile size. Memory is two full feature maps (``width`` channels each) plus one tile.
    """
    if x.shape[0] != 1:
        raise InputError(f"forward_layer_tiles takes one image at a time; got a batch of {x.shape[0]}")
    features = x
    for layer in [*net.features, net.output]:
        if isinstance(layer, torch.nn.Conv2d):
            halo = layer.dilation[0] * (layer.kernel_size[0] // 2)
            height, width = features.shape[2:]
            out = features.new_empty(1, layer.out_channels, height, width)
            padded = F.pad(features, (halo,) * 4)
            for y0 in range(0, height, tile):
                for x0 in range(0, width, tile):
                    y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
                    window = padded[:, :, y0 : y1 + 2 * halo, x0 : x1 + 2 * halo]
                    out[:, :, y0:y1, x0:x1] = F.conv2d(window, layer.weight, layer.bias, dilation=layer.dilation)
            features = out
        else:  # AdaptiveNorm takes its statistics over the whole map; LeakyReLU is pointwise
            features = layer(features)
    return features


def forward_halo_tiles(net: FoldedCAN | OrtNet, x: torch.Tensor, tile: int) -> torch.Tensor:
    """Exactly ``net(x)`` for a network without whole-image statistics, run tile by tile end to end: each tile is
    computed from its crop plus a halo of the network's receptive radius, so memory is bounded by the tile size."""
    halo = net.receptive_radius
    height, width = x.shape[2:]
    out = x.new_empty(x.shape[0], 3, height, width, dtype=torch.float32)
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            ya, xa = max(0, y0 - halo), max(0, x0 - halo)
            crop = x[:, :, ya : min(height, y1 + halo), xa : min(width, x1 + halo)]
            piece = net(crop.contiguous(memory_format=torch.channels_last))
            out[:, :, y0:y1, x0:x1] = piece[:, :, y0 - ya : y1 - ya, x0 - xa : x1 - xa]
    return out


# -- upsampling and the reference at low resolution ------------------------------------------------------------------


def guided_upsample(
    network: GuidedCAN, small: torch.Tensor, low: torch.Tensor, x: torch.Tensor, band: int | None
) -> torch.Tensor:
    """``network.upsample(small, low, x, band)``; on the CPU, its guidance map and linear model by the fused
    kernels."""
    if not kernels.usable(x):
        return network.upsample(small, low, x, band=band)
    coefficients = network.filter.coefficients(network.guide(small[:, :3]), low.to(small.dtype))
    return kernels.apply_linear_model(coefficients, kernels.guide_map(network.guide, x[:, :3]), colour=False)


def upsample(
    guide_small: torch.Tensor,
    result_small: torch.Tensor,
    guide: torch.Tensor,
    upsampler: Upsampler,
    band: int | None,
    guide_map: torch.nn.Module | None = None,
) -> torch.Tensor:
    """``result_small`` at ``guide``'s size: a guided filter fitted between ``guide_small`` (``guide`` downscaled)
    and ``result_small``, applied to ``guide`` (all ``(1, 3, ., .)`` float32) in bands of ``band`` rows. With
    ``guide_map`` (the upsampler's learned :class:`~fip.models.guided.GuideMap`), the filter is fitted and applied
    to that map of both guides (on the CPU by the fused kernel, else ``band`` rows at a time)."""
    if guide_map is not None and kernels.usable(guide):
        guide_small, guide = kernels.guide_map(guide_map, guide_small), kernels.guide_map(guide_map, guide)
    elif guide_map is not None:
        guide_small = guide_map(guide_small)
        step = band or guide.shape[2]
        guide = torch.cat([guide_map(guide[:, :, top : top + step]) for top in range(0, guide.shape[2], step)], dim=2)
    height, width = guide.shape[2:]
    colour, fused = upsampler.kind == "colour-guided", kernels.usable(guide)
    if colour and fused:
        coefficients = kernels.colour_guided_fit(guide_small, result_small, upsampler.radius, upsampler.eps)
    else:
        coefficients = fit_coefficients(guide_small, result_small, colour, upsampler.radius, upsampler.eps)
    if fused:
        return kernels.apply_linear_model(coefficients, guide, colour)
    return apply_linear_model(coefficients, height, width, lambda top, bottom: guide[:, :, top:bottom], band, colour)


def reference_lowres(
    operator: str,
    params: dict[str, Any],
    views: Views,
    upsampler: Upsampler | None,
    working_size: tuple[int, int] | None,
    band_rows: int | None,
    device: torch.device,
    guide: torch.nn.Module | None = None,
) -> torch.Tensor:
    """The reference operator on the photo at ``working_size`` (its lengths scaled with the photo:
    :meth:`~fip.registry.OperatorSpec.params_at_scale`), brought back to full size by ``upsampler`` (with its
    learned ``guide`` map, if it has one) on ``device``; for a photo too small to downscale (no working size), the
    reference itself at full size."""
    spec = get_operator(operator)
    height, width = views.size
    if working_size is None:
        view = _numpy(views.srgb) if spec.input is InputKind.SRGB else views.photo().view(spec.input)
        image = spec.apply(view, params)
        return _fit(torch.from_numpy(image).permute(2, 0, 1)[None], height, width).to(device)
    guide_small, result = reference_small(operator, params, views, working_size)
    return upsample(guide_small.to(device), result.to(device), views.srgb.to(device), upsampler, band_rows, guide)


def reference_small(
    operator: str, params: dict[str, Any], views: Views, working_size: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The photo in sRGB at ``working_size`` and the reference operator's result on it (its lengths scaled with the
    photo: :meth:`~fip.registry.OperatorSpec.params_at_scale`), both ``(1, 3, h, w)`` float32 on the CPU: what
    :func:`upsample` brings back to full size."""
    spec = get_operator(operator)
    height, width = views.size
    small_srgb, view = _small_views(views, spec.input, working_size)
    scale = math.sqrt(working_size[0] * working_size[1] / (height * width))
    result = spec.apply(view, spec.params_at_scale(params, scale))
    return to_batch(small_srgb), to_batch(result)


def _small_views(views: Views, kind: InputKind, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | Any]:
    """The sRGB view and the ``kind`` view of ``views.photo().resized(*size)``, making only those two: for a photo
    read from sRGB, neither the mosaic nor (for an sRGB operator) the linear view exists at full size."""
    if not views.from_srgb or kind is InputKind.BAYER:
        small = views.photo().resized(*size)
        return small.srgb, small.view(kind)
    height, width = views.size
    image = _numpy(views.srgb)[: height - height % 2, : width - width % 2]  # the even crop photo_from_srgb makes
    small_srgb = resize_area(image, *size)
    return small_srgb, small_srgb if kind is InputKind.SRGB else resize_area(srgb_decode(image), *size)


def _numpy(batch: torch.Tensor) -> np.ndarray:
    return batch[0].detach().float().cpu().permute(1, 2, 0).contiguous().numpy()


def _fit(batch: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``batch`` at ``height x width``: a result computed on the even-cropped photo (a mosaic needs even sides)
    gets its last row or column repeated."""
    pad_rows, pad_cols = height - batch.shape[2], width - batch.shape[3]
    if pad_rows or pad_cols:
        batch = F.pad(batch, (0, pad_cols, 0, pad_rows), mode="replicate")
    return batch


__all__ = [
    "Views",
    "downscaled",
    "forward_approximator",
    "forward_halo_tiles",
    "forward_layer_tiles",
    "plan_dtype",
    "prepared",
    "reference_lowres",
    "reference_small",
    "run_can",
    "run_plan",
    "to_batch",
    "to_image",
    "upsample",
    "with_maps",
]
