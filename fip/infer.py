"""Loading trained approximators and running them on photos: the one inference entry point that the CLI, the
evaluation and the demo share.

A model is named by:

* ``paper/<Operator>``: the authors' released networks (:mod:`fip.models.paper`);
* ``fip/<operator>``: the model fip ships for that operator, with its siblings (:func:`model_for_operator`),
  for example ``fip/smooth.rtv``, which warm-starts ``style.stylize``'s training;
* a Lightning checkpoint (``*.ckpt``) written by ``fip train``;
* a fip model file (``*.pt``) written by :func:`export_model`: the network's weights and configuration, the
  operator and its parameters, and nothing of the training code.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fip.conditioning import Conditioning, from_json
from fip.errors import FipError, InputError
from fip.models.can import AdaptiveNorm, ContextAggregationNet, FoldedCAN, NormMode, fold, image_statistics
from fip.models.guided import GuidedCAN
from fip.models.inputs import input_scale, normalize_input, scales_output
from fip.variants import (
    AUTO_LOWRES_MAX_MEGAPIXELS,
    AUTO_MAX_LOSS_DB,
    AUTO_ORDER,
    LOWRES_MEGAPIXELS,
    STATS_MEGAPIXELS,
    Variant,
)

MODEL_FORMAT = "fip-model-1"


@dataclass
class LoadedModel:
    """A network ready for inference and what it approximates."""

    net: ContextAggregationNet | GuidedCAN
    name: str
    operator: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    conditioning: Conditioning | None = None
    pruned: LoadedModel | None = None  # its pruned, fine-tuned sibling (running statistics), if one ships
    int8: Path | None = None  # that sibling quantized to int8, as an ONNX file
    lowres: LoadedModel | None = None  # its Deep Guided Filter sibling (GuidedCAN), trained end to end, if one ships
    metrics: dict[str, float] = field(default_factory=dict)  # what the model file records (e.g. test PSNR)
    scores: dict[str, float] = field(default_factory=dict)  # PSNR vs the reference per variant, where measured

    def variants(self) -> list[Variant]:
        """The variants this model can run (see :class:`~fip.variants.Variant`)."""
        if isinstance(self.net, GuidedCAN):  # a low-resolution model file loaded by itself: FULL = exact statistics
            return [Variant.AUTO, Variant.FULL, Variant.LOWRES]
        have = [Variant.AUTO, Variant.FULL, Variant.FAST, Variant.BF16, Variant.LOWRES]
        return have + [Variant.PRUNED] * (self.pruned is not None) + [Variant.INT8] * (self.int8 is not None)

    def loss_db(self, variant: Variant) -> float:
        """How much PSNR against the reference ``variant`` loses compared with the model itself, as measured
        (``scores``, from ``scripts/measure_variants.py``): the better of its two statistics modes, ``FULL`` and
        ``FAST`` (a model trained with preview statistics scores higher with them); the approximations (``BF16``,
        ``LOWRES``, ...) do not set the bar. Infinite when not measured, 0 for ``FULL`` when nothing is."""
        exact = [self.scores[v.value] for v in (Variant.FULL, Variant.FAST) if v.value in self.scores]
        if not exact or variant.value not in self.scores:
            return 0.0 if variant is Variant.FULL else float("inf")
        return max(exact) - self.scores[variant.value]

    def resolve(self, variant: Variant | str, megapixels: float | None = None) -> Variant:
        """``variant`` itself, or for ``AUTO`` the fastest one this model has within ``AUTO_MAX_LOSS_DB`` of the
        better of ``FULL`` and ``FAST`` as measured (:meth:`loss_db`); ``LOWRES`` only for photos of known size,
        and without a trained ``lowres`` sibling only up to ``AUTO_LOWRES_MAX_MEGAPIXELS`` (it was measured at
        ~2 MP, and that form keeps its network at 0.25 MP whatever the photo's size; the trained one scales with
        the photo). An error names the variants it has."""
        try:
            variant = Variant(variant)
        except ValueError:
            raise InputError(f"unknown variant {variant!r}; choose one of {', '.join(v.value for v in Variant)}") from None
        if variant is Variant.AUTO and isinstance(self.net, GuidedCAN):
            return Variant.LOWRES
        if variant is Variant.AUTO:  # FAST, the last of AUTO_ORDER, is the fallback whatever it measured
            large = megapixels is not None and megapixels > AUTO_LOWRES_MAX_MEGAPIXELS and self.lowres is None
            within = (v for v in AUTO_ORDER[:-1] if v in self.variants() and self.loss_db(v) <= AUTO_MAX_LOSS_DB
                      and not (v is Variant.LOWRES and (large or megapixels is None)))  # fmt: skip
            return next(within, AUTO_ORDER[-1])
        if variant not in self.variants() and isinstance(self.net, GuidedCAN):
            raise FipError(f"{self.name} is a low-resolution (guided-filter) model: it runs as 'lowres' (or 'auto'), or "
                           "as 'full' with exact statistics in its low-resolution network")  # fmt: skip
        if variant not in self.variants():
            raise FipError(f"{self.name} has no {variant.value!r} variant (no pruned model ships for it; "
                           f"scripts/ship_compact.py makes one); it has: {', '.join(v.value for v in self.variants())}")  # fmt: skip
        return variant

    def maps(self, operator: str | None = None, params: dict[str, Any] | None = None) -> tuple[float, ...] | None:
        """The extra input maps that ask this network for ``operator`` with ``params`` (``None``: RGB only)."""
        if self.conditioning is None:
            return None
        operator = operator or self.operator
        if operator is None:
            raise FipError(f"{self.name} serves several operators ({', '.join(self.conditioning.operators)}): "
                           "name one (--operator)")  # fmt: skip
        return self.conditioning.maps(operator, params if params is not None else self.params)


def net_config(net: ContextAggregationNet | GuidedCAN) -> dict[str, Any]:
    """The constructor arguments that rebuild ``net`` (a ``guided`` entry for a :class:`GuidedCAN`)."""
    norm = next((m.mode.value for m in net.modules() if hasattr(m, "mode")), NormMode.IMAGE.value)
    config = {"in_channels": net.in_channels, "width": net.width, "depth": net.depth, "norm": norm}
    if net.conv_bias:  # only then: files without the key load as the paper's bias-free network
        config["conv_bias"] = True
    if getattr(net, "input_norm", None):  # likewise: files without it load as networks of the plain input
        config["input_norm"] = net.input_norm
    if isinstance(net, GuidedCAN):
        config["guided"] = {"factor": net.factor, "radius": net.filter.radius, "fit_hidden": net.filter.fit_hidden,
                            "guide_hidden": net.guide.hidden}  # fmt: skip
    return config


def _from_state(state: dict[str, torch.Tensor], config: dict[str, Any]) -> ContextAggregationNet | GuidedCAN:
    config = dict(config)
    guided = config.pop("guided", None)
    net = GuidedCAN(**config, **guided) if guided is not None else ContextAggregationNet(**config)
    net.load_state_dict(state)
    return net.eval().to(memory_format=torch.channels_last)  # the layout run_model uses


def load_model(name_or_path: str | os.PathLike[str]) -> LoadedModel:
    """Load a model by name or path (see the module docstring); raises a :class:`FipError` naming the problem."""
    text = str(name_or_path)
    if text.startswith("paper/"):
        from fip.models.paper import FIP_OPERATOR, load_paper_model

        paper_name = text.removeprefix("paper/").removeprefix("combined:")  # combined:X: the combined net as X
        conditioning = None
        if paper_name == "combined":
            from fip.conditioning import OneHot
            from fip.models.paper import COMBINED_ORDER

            conditioning = OneHot(tuple(FIP_OPERATOR[name] for name in COMBINED_ORDER))
        net = load_paper_model(text).to(memory_format=torch.channels_last)  # the layout run_model uses
        return LoadedModel(net, text, FIP_OPERATOR.get(paper_name), conditioning=conditioning)
    path = Path(text).expanduser()
    operator = text.removeprefix("fip/")
    # A file wins (fip/models/... is also a path in a checkout); a name with a "/" or a model file's suffix is a
    # missing file, not an operator.
    if text.startswith("fip/") and not path.is_file() and "/" not in operator and path.suffix not in (".pt", ".ckpt"):
        if operator not in shipped_operators():
            raise FipError(f"fip ships no model for {operator!r}; shipped: {', '.join(shipped_operators())}")
        return model_for_operator(operator)
    if not path.is_file():
        raise FipError(
            f"model {text!r} is neither 'paper/<Operator>', 'fip/<operator>' nor an existing .ckpt or .pt file"
        )
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt file or another format
        raise FipError(f"{path} is not a fip model or Lightning checkpoint ({type(exc).__name__}: {exc})") from exc
    if stored.get("format") == MODEL_FORMAT:
        net = _from_state(stored["state_dict"], stored["net"])
        conditioning = from_json(stored.get("conditioning"))
        return LoadedModel(net, str(path), stored.get("operator"), stored.get("params", {}), conditioning,
                           metrics=stored.get("metrics", {}))  # fmt: skip
    if "fip" in stored and "state_dict" in stored:  # a Lightning checkpoint written by fip.lit.Approximator
        state = {k.removeprefix("net."): v for k, v in stored["state_dict"].items() if k.startswith("net.")}
        meta = stored["fip"]
        net = _from_state(state, meta["net"])
        conditioning = from_json(meta.get("conditioning"))
        return LoadedModel(net, str(path), meta.get("operator"), meta.get("params", {}), conditioning)
    raise FipError(f"{path} holds no fip model: expected a file from `fip train` or fip.infer.export_model")


def export_model(model: LoadedModel, path: str | os.PathLike[str], metrics: dict[str, float] | None = None) -> Path:
    """Write ``model`` as a small, self-contained fip model file (atomically)."""
    import io

    from fip.files import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save(
        {
            "format": MODEL_FORMAT,
            "net": net_config(model.net),
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()},
            "operator": model.operator,
            "params": model.params,
            "conditioning": model.conditioning.to_json() if model.conditioning else None,
            "metrics": metrics or {},
        },
        buffer,
    )
    return atomic_write_bytes(path, buffer.getvalue())


def forward_tiled(net: ContextAggregationNet, x: torch.Tensor, tile: int = 512) -> torch.Tensor:
    """Exactly ``net(x)`` for a batch of one, computed layer by layer with each convolution run tile by tile.

    The per-image statistics of :class:`~fip.models.AdaptiveNorm` are taken over the whole feature map, never per
    tile, so the result equals the untiled forward pass (up to float rounding); only the convolution workspace is
    bounded by the tile size. Memory is two full feature maps (``width`` channels each) plus one tile.
    """
    if x.shape[0] != 1:
        raise InputError(f"forward_tiled takes one image at a time; got a batch of {x.shape[0]}")
    layers = list(net.features) + [net.output]
    features = x
    with torch.inference_mode():
        for layer in layers:
            if isinstance(layer, torch.nn.Conv2d):
                halo = layer.dilation[0] * (layer.kernel_size[0] // 2)
                height, width = features.shape[2:]
                out = torch.empty(1, layer.out_channels, height, width, dtype=features.dtype)
                padded = torch.nn.functional.pad(features, (halo,) * 4)
                bias = layer.bias
                for y in range(0, height, tile):
                    for x0 in range(0, width, tile):
                        y1, x1 = min(y + tile, height), min(x0 + tile, width)
                        window = padded[:, :, y : y1 + 2 * halo, x0 : x1 + 2 * halo]
                        out[:, :, y:y1, x0:x1] = torch.nn.functional.conv2d(
                            window, layer.weight, bias, dilation=layer.dilation
                        )
                features = out
            elif isinstance(layer, AdaptiveNorm):
                features = layer(features)  # statistics over the whole map
            else:
                features = layer(features)
    return features


def _downscaled(x: torch.Tensor, megapixels: float) -> torch.Tensor:
    height, width = x.shape[2:]
    scale = (megapixels * 1e6 / max(1, height * width)) ** 0.5
    if scale >= 1.0:
        return x
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    return torch.nn.functional.interpolate(x, size=size, mode="area")


def _channels_last(net: torch.nn.Module) -> torch.nn.Module:
    """``net`` with channels_last weights: itself when they already are (models from :func:`load_model`), else a
    converted copy, so the caller's network is never changed."""
    weight = next((p for p in net.parameters() if p.dim() == 4 and p.shape[2] > 1), None)
    if weight is None or weight.is_contiguous(memory_format=torch.channels_last):
        return net
    return copy.deepcopy(net).to(memory_format=torch.channels_last)


def forward_tiles(net: FoldedCAN, x: torch.Tensor, tile: int) -> torch.Tensor:
    """Exactly ``net(x)`` for a network without whole-image statistics, run tile by tile end to end: each tile is
    computed from its crop plus a halo of the network's receptive radius, so memory is bounded by the tile size."""
    halo = net.receptive_radius
    height, width = x.shape[2:]
    out = torch.empty(x.shape[0], 3, height, width, dtype=x.dtype)
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            ya, xa = max(0, y0 - halo), max(0, x0 - halo)
            crop = x[:, :, ya : min(height, y1 + halo), xa : min(width, x1 + halo)]
            piece = net(crop.contiguous(memory_format=torch.channels_last))
            out[:, :, y0:y1, x0:x1] = piece[:, :, y0 - ya : y1 - ya, x0 - xa : x1 - xa]
    return out


def _forward(net: torch.nn.Module, x: torch.Tensor, variant: Variant, tile: int | None,
             stats_megapixels: float | None = None) -> torch.Tensor:  # fmt: skip
    """``net(x)`` the way ``variant`` runs it; statistics previews at ``stats_megapixels`` (``STATS_MEGAPIXELS``)."""
    from fip.ort import OrtNet

    if isinstance(net, OrtNet):  # already compiled to its precision and layout
        return forward_tiles(net, x, tile) if tile is not None else net(x)
    if isinstance(net, GuidedCAN):  # the Deep Guided Filter: its CAN at low resolution (folded, bf16 unless FULL)
        small = net.downscale(x)
        low = _forward(net.can, small, Variant.FULL if variant is Variant.FULL else Variant.BF16, tile,
                       GUIDED_STATS_MEGAPIXELS)  # fmt: skip
        return net.upsample(small, low, x, band=_band_rows(tile))
    if variant is Variant.LOWRES:
        from fip.models.guided import FastGuidedFilter

        small = _downscaled(x, LOWRES_MEGAPIXELS)
        if small is x or min(small.shape[2:]) < 4:  # nothing to gain, or too small for the filter's boxes
            return _forward(net, x, Variant.FAST, tile)
        low = _forward(net, small, Variant.BF16, None)  # bf16 costs nothing measurable here (docs/speed.md)
        return FastGuidedFilter(radius=1, eps=1e-4)(small[:, :3], low, x[:, :3], band=_band_rows(tile))
    owned = False  # whether `net` is a module made here (free to convert in place)
    if variant in (Variant.FAST, Variant.BF16) and isinstance(net, ContextAggregationNet):
        if net.folds_exactly:
            net = fold(net)  # running statistics fold exactly; no preview pass
        else:
            preview = _downscaled(x, stats_megapixels or STATS_MEGAPIXELS)
            if preview is x and variant is Variant.FAST:  # a small image: the exact pass costs no more
                return _forward(net, x, Variant.FULL, tile)
            net = fold(net, image_statistics(net, preview))
        owned = True
    if variant is Variant.BF16:
        net = (net if owned else copy.deepcopy(net)).to(torch.bfloat16)
        owned, x = True, x.to(torch.bfloat16)
    if tile is not None:
        out = forward_tiles(net, x, tile) if isinstance(net, FoldedCAN) else forward_tiled(net, x, tile)
        return out.float()
    # channels_last: 1.3x faster than NCHW for CAN24 at 1080p on this project's CPU (6.7 s vs 8.7 s).
    net = net.to(memory_format=torch.channels_last) if owned else _channels_last(net)
    return net(x.contiguous(memory_format=torch.channels_last)).float()


GUIDED_BAND_ROWS = 256  # full-resolution rows the guided filter's last step computes at a time


def _band_rows(tile: int | None) -> int:
    """Rows per band of a guided filter's full-size step: ``tile`` bounds memory further, never loosens it."""
    return min(tile or GUIDED_BAND_ROWS, GUIDED_BAND_ROWS)

# The guided network's statistics pass: half of FAST's preview (at 1080p the 0.1 MP pass took 66 of the
# low-resolution network's 107 ms); over the four FiveK photos it moved the shipped models' PSNR by -0.06 to +0.08 dB
# (docs/speed.md, finding 6).
GUIDED_STATS_MEGAPIXELS = 0.05


def to_batch(image: np.ndarray) -> torch.Tensor:
    """An ``(H, W, C)`` image as the ``(1, C, H, W)`` float32 tensor the networks take."""
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]


def run_model(
    net: torch.nn.Module,
    image: np.ndarray,
    extra: np.ndarray | None = None,
    tile: int | None = None,
    variant: Variant | str = Variant.FULL,
) -> np.ndarray:
    """Run ``net`` on one ``(H, W, 3)`` sRGB image in [0, 1] (plus optional ``(C, )`` constant extra input maps,
    e.g. one-hot operator maps); returns ``(H, W, 3)`` float32 in [0, 1]. Any size works, odd ones included.
    ``tile``: bound memory, same result: the folded variants run tile by tile end to end (:func:`forward_tiles`,
    memory ~ one tile), the paper-exact one layer by layer (:func:`forward_tiled`, memory ~ two whole-image
    feature maps, since its statistics span the image).
    ``variant``: see :class:`Variant`."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"expected an (H, W, 3) image; got shape {image.shape}")
    try:
        variant = Variant(variant)
    except ValueError:
        raise InputError(f"unknown variant {variant!r}; choose one of {', '.join(v.value for v in Variant)}") from None
    if variant in (Variant.AUTO, Variant.PRUNED, Variant.INT8) and not _is_ort(net):
        raise InputError(f"the {variant.value!r} variant picks among a model's networks: call "
                         "run_loaded(model, ...) with a LoadedModel, not run_model with one network")  # fmt: skip
    # Before the maps, tiles and statistics previews: the normalization is the whole photo's.
    x, input_norm = to_batch(image), getattr(net, "input_norm", None)
    scale = input_scale(input_norm, x)
    x = normalize_input(input_norm, x, scale)
    if extra is not None:
        maps = torch.as_tensor(extra, dtype=torch.float32).view(1, -1, 1, 1).expand(1, -1, *x.shape[2:])
        x = torch.cat([x, maps], dim=1)
    with torch.inference_mode():
        out = _forward(net, x, variant, tile)
        if scales_output(input_norm):
            out = out * scale
        return out[0].clamp(0.0, 1.0).permute(1, 2, 0).contiguous().numpy()


def run_loaded(
    model: LoadedModel,
    image: np.ndarray,
    extra: np.ndarray | None = None,
    tile: int | None = None,
    variant: Variant | str = Variant.FULL,
) -> np.ndarray:
    """:func:`run_model` with ``model``'s network for ``variant``: its pruned sibling for ``PRUNED``, that sibling's
    int8 ONNX file for ``INT8``, its trained guided-filter sibling for ``LOWRES`` (photos over
    ``LOWRES_MEGAPIXELS``; without one, the network at low resolution and a fixed guided filter), the fastest
    available for ``AUTO``."""
    megapixels = image.shape[0] * image.shape[1] / 1e6
    variant = model.resolve(variant, megapixels)
    if variant is Variant.LOWRES and model.lowres is not None and megapixels > LOWRES_MEGAPIXELS:
        return run_model(model.lowres.net, image, extra, tile, variant)
    if variant is Variant.PRUNED:
        return run_model(model.pruned.net, image, extra, tile, Variant.BF16)
    if variant is Variant.INT8:
        return run_model(_ort_net(model.int8, model.pruned.net.receptive_radius), image, extra, tile, variant)
    return run_model(model.net, image, extra, tile, variant)


def _is_ort(net: object) -> bool:
    from fip.ort import OrtNet

    return isinstance(net, OrtNet)


def _ort_net(path: Path, receptive_radius: int) -> torch.nn.Module:
    """One ONNX Runtime session per file, reused while the file is unchanged."""
    return _ort_session(Path(path), Path(path).stat().st_mtime_ns, receptive_radius)


@functools.lru_cache(maxsize=8)
def _ort_session(path: Path, modified_ns: int, receptive_radius: int) -> torch.nn.Module:
    from fip.ort import OrtNet

    return OrtNet(path, receptive_radius)


SHIPPED_DIR = Path(__file__).parent / "models" / "weights" / "fip"
SIBLINGS = (".pruned", ".lowres")  # OPERATOR.pruned.pt and OPERATOR.lowres.pt ship beside OPERATOR.pt


def shipped_operators() -> list[str]:
    """The operators fip ships a trained model file for, sorted."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.pt") if not p.stem.endswith(SIBLINGS))


def model_for_operator(operator: str) -> LoadedModel:
    """The shipped approximator of ``operator``: fip's trained model file if one ships, else the authors' network
    of the same paper operator."""
    from fip.models.paper import FIP_OPERATOR, paper_network_for

    shipped = SHIPPED_DIR / f"{operator}.pt"
    if shipped.is_file():
        model = load_model(shipped)
        if (pruned := SHIPPED_DIR / f"{operator}.pruned.pt").is_file():
            model.pruned = load_model(pruned)
            int8 = SHIPPED_DIR / f"{operator}.pruned.int8.onnx"
            model.int8 = int8 if int8.is_file() else None
        if (lowres := SHIPPED_DIR / f"{operator}.lowres.pt").is_file():
            model.lowres = load_model(lowres)
        if (scores := SHIPPED_DIR / f"{operator}.variants.json").is_file():
            try:
                model.scores = {k: float(v) for k, v in json.loads(scores.read_text())["psnr"].items()}
            except (ValueError, KeyError, TypeError, AttributeError) as exc:  # unreadable: auto falls back to fast
                logging.getLogger(__name__).warning("ignoring %s (%s: %s)", scores, type(exc).__name__, exc)
        return model
    if (paper := paper_network_for(operator)) is not None:
        return load_model(paper)
    with_paper = {name for name in FIP_OPERATOR.values() if paper_network_for(name)}
    available = sorted(set(shipped_operators()) | with_paper)
    raise FipError(f"no model ships for operator {operator!r} yet; operators with a model: {', '.join(available)}")


@dataclass
class ApplyResult:
    source: Path
    output: Path | None
    seconds: float = 0.0
    size: tuple[int, int] | None = None
    error: str | None = None


def apply_to_files(
    model: LoadedModel,
    inputs: list[Path],
    out_dir: Path,
    *,
    max_megapixels: float | None = None,
    tile: int | None = None,
    bits: int = 8,
    overwrite: bool = False,
    variant: Variant | str = Variant.FULL,
    operator: str | None = None,
) -> list[ApplyResult]:
    """Run ``model`` on photos or raw files and write ``out_dir/<stem>.png``.

    Images keep their size (odd sizes too); raw files are rendered as in :mod:`fip.raw`. Photos above
    ``max_megapixels`` are downscaled to it first. An existing output is never overwritten unless ``overwrite``;
    an unreadable input is reported in its result and the others go on. ``operator`` picks the task of a
    network trained for several (one-hot maps).
    """
    import time

    from fip.files import atomic_write_bytes
    from fip.imaging import encode_png, resize_area
    from fip.raw import load_srgb

    maps = model.maps(operator)
    results = []
    for path in inputs:
        path = Path(path)
        output = Path(out_dir) / f"{path.stem}.png"
        if output.exists() and not overwrite:
            results.append(ApplyResult(path, None, error=f"{output} exists; pass --overwrite to replace it"))
            continue
        try:
            image = load_srgb(path)
        except FipError as exc:
            results.append(ApplyResult(path, None, error=str(exc)))
            continue
        height, width = image.shape[:2]
        if max_megapixels is not None and height * width > max_megapixels * 1e6:
            scale = (max_megapixels * 1e6 / (height * width)) ** 0.5
            image = resize_area(image, max(1, int(height * scale)), max(1, int(width * scale)))
        start = time.perf_counter()
        result = run_loaded(model, image, maps, tile=tile, variant=variant)
        seconds = time.perf_counter() - start
        atomic_write_bytes(output, encode_png(result, bits=bits))
        results.append(ApplyResult(path, output, seconds, result.shape[:2]))
    return results
