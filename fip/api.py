"""fip's Python API: load a fast approximation as a PyTorch module, or apply one to an image.

    import fip

    module = fip.load("smooth.l0", device="cuda")        # a torch.nn.Module
    y = module(x)                                       # x: (B, 3, H, W) float in [0, 1], sRGB

    out = fip.apply("smooth.l0", photo)                 # NumPy, PIL or torch in, the same kind out
    out = fip.apply("smooth.l0", photo, variant="reference-lowres", params={"lambda_": 0.05})
    out = fip.apply("smooth.l0", photo, prefer="speed", min_psnr=33)   # auto trades quality for speed

Both run through the engine (:mod:`fip.runtime`): the same plans, and the same ``auto`` as ``fip apply`` and the demo.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from fip.errors import InputError
from fip.imaging import shape_hint
from fip.models.catalogue import Model, open_model
from fip.runtime.devices import resolve_device
from fip.runtime.engine import make_plan
from fip.runtime.execute import Views, run_plan
from fip.runtime.plan import AUTO, Plan, Preference

TYPICAL_SIZE = (1080, 1920)  # the photo size ``load`` resolves ``auto`` for; cards are timed at this size


class FastOperator(nn.Module):
    """One approximator of a model as a PyTorch module: a slow operator made fast.

    ``forward(x)`` takes ``(B, 3, H, W)`` or ``(3, H, W)`` float sRGB in [0, 1] (any size of at least 2x2, on the
    module's device) and returns the approximation in the same shape and dtype, clipped to [0, 1]. Each image of a
    batch is processed on its own (the networks normalize with each photo's own statistics). Build one with
    :func:`fip.load`; move it with ``.to(device)``. Network approximators run PyTorch code only, so the module
    can go through ``torch.compile``; ``int8`` (ONNX Runtime) and the approximators that run the reference operator
    (``reference-lowres``, ``reference-halfres``, ``reference``: NumPy on the CPU) run outside PyTorch.

    Attributes:
        model: the model (:class:`fip.models.catalogue.Model`; its card says what it is and how well it does).
        approximator: the approximator's name.
        plan: the plan ``load`` resolved, for a 1920x1080 photo (see :meth:`plan_for` for other sizes).
    """

    def __init__(self, model: Model, plan: Plan):
        super().__init__()
        self.model, self.plan, self.approximator = model, plan, plan.approximator
        self.operator, self.params = plan.operator, plan.params
        self._maps = model.maps(plan.operator, plan.params)
        spec = model.card.approximator(plan.approximator)
        self.net: nn.Module | None = None
        for key in spec.network_keys:
            network = model.network(key)  # a damaged file fails here, at load (a learned guide's too)
            if key == spec.network and isinstance(network, nn.Module):  # the module's own copy: it moves and
                self.net = copy.deepcopy(network).eval()  # trains with the module
        self._plans: dict[tuple[int, int, str], Plan] = {}
        self.register_buffer("_anchor", torch.zeros(()), persistent=False)  # follows .to(device)

    def extra_repr(self) -> str:
        return f"model={self.model.name!r}, approximator={self.approximator!r}, operator={self.operator!r}"

    @property
    def device(self) -> torch.device:
        return self._anchor.device

    @torch.compiler.disable  # planning reads the device and the card: Python, kept out of compiled graphs
    def plan_for(self, height: int, width: int) -> Plan:
        """The plan this module runs for an image of ``height x width`` on its device: tiled or in bands where the
        device's memory requires, as ``fip apply`` plans; made once per size and device."""
        key = (height, width, str(self.device))
        if key not in self._plans:
            plan = make_plan(
                self.model, self.approximator, (height, width), self.device, operator=self.operator, params=self.params
            )
            if torch.device(self.plan.device).type == self.device.type:
                # The precision load resolved: auto's pick runs as its timings measured it.
                plan = dataclasses.replace(plan, precision=self.plan.precision)
            self._plans[key] = plan
        return self._plans[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise InputError(
                f"a FastOperator takes a torch tensor (B, 3, H, W) or (3, H, W); got a {type(x).__name__}: "
                "use fip.apply for NumPy arrays and PIL images"
            )
        if x.ndim not in (3, 4) or x.shape[-3] != 3:
            raise InputError(f"expected a (B, 3, H, W) or (3, H, W) float tensor in [0, 1]; got shape {tuple(x.shape)}")
        if x.numel() == 0:
            raise InputError(f"the tensor {tuple(x.shape)} holds no image: give at least one of at least 2x2 pixels")
        if self.net is not None and next(self.net.parameters()).dtype != torch.float32:
            raise InputError(
                "a FastOperator keeps its network in float32 and runs it in its approximator's precision; "
                "load variant='bf16' for 16-bit arithmetic instead of converting the module"
            )
        if not x.is_floating_point():
            raise InputError(f"expected a float tensor in [0, 1]; got {x.dtype}: divide by 255 (or 65535) first")
        batch = x if x.ndim == 4 else x[None]
        plan = self.plan_for(*batch.shape[2:])
        with torch.no_grad():
            out = torch.cat(
                [
                    run_plan(plan, self.model, Views(image[None].float().to(self.device)), self._maps, self.net)
                    for image in batch
                ]
            )
        out = out.to(dtype=x.dtype)
        return out if x.ndim == 4 else out[0]


def load(
    name_or_path: str | os.PathLike[str] | Model,
    device: str | torch.device | None = None,
    *,
    variant: str = AUTO,
    operator: str | None = None,
    prefer: str | Preference | None = None,
    min_psnr: float | None = None,
) -> FastOperator:
    """A fast approximation as a :class:`FastOperator` (a ``torch.nn.Module``) on ``device``.

    Args:
        name_or_path: an operator's name (``"smooth.l0"``: the model installed for it), a model's name
            (``"fip/smooth.l0"``, ``"paper/L0_smoothing"``), a model folder, or a network file (``.pt``, ``.ckpt``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; default CUDA when available, else the CPU.
        variant: ``"auto"`` (the engine's choice for this device class, as ``prefer`` says) or an approximator's
            name (``fip models`` lists them).
        operator: the operator, for a network of several (``"paper/combined"``).
        prefer: what ``auto`` trades: ``"quality"`` (the fastest within 0.1 dB of the best approximator on the
            validation photos), ``"balanced"`` (default: the fastest within 0.5 dB of the best, or at least 40 dB)
            or ``"speed"`` (the fastest scoring at least 32 dB, or ``min_psnr``; the best where none does). Each
            runs the reference itself where that was measured faster.
        min_psnr: ``auto`` runs no approximator that scored under this PSNR (dB) on the validation photos (the
            reference itself where none reaches it).

    Raises:
        fip.FipError: an unknown name, an approximator the device cannot run, a damaged file, a preference that is
            not one (:class:`~fip.runtime.plan.PreferenceError`).
    """
    preference = _preference(prefer, min_psnr)
    model = name_or_path if isinstance(name_or_path, Model) else open_model(name_or_path)
    torch_device = resolve_device(device)
    plan = make_plan(
        model, variant, TYPICAL_SIZE, torch_device, operator=operator, memory_budget=1 << 62, preference=preference
    )
    return FastOperator(model, plan).to(torch_device)


def _preference(prefer: str | Preference | None, min_psnr: float | None) -> Preference | None:
    return None if prefer is None and min_psnr is None else Preference.of(prefer, min_psnr)


def apply(
    operator_or_model: str | os.PathLike[str] | Model | FastOperator,
    image: Any,
    *,
    variant: str = AUTO,
    device: str | torch.device | None = None,
    params: Mapping[str, Any] | None = None,
    operator: str | None = None,
    prefer: str | Preference | None = None,
    min_psnr: float | None = None,
) -> Any:
    """Approximate an operator on one image (or a batch of tensors) and return the result as the same kind.

    Args:
        operator_or_model: an operator's or model's name or folder (as :func:`load` takes), a
            :class:`~fip.models.catalogue.Model`, or a module from :func:`load`.
        image: a NumPy array ``(H, W, 3)`` of uint8, uint16 or float in [0, 1]; a PIL image of any mode Pillow
            converts to RGB (16-bit grey ``I;16`` and ``I`` read as 0..65535, float ``F`` as 0..1, as fip reads
            such files); or a torch tensor ``(3, H, W)`` or ``(B, 3, H, W)`` float in [0, 1]. sRGB, at least 2x2.
        variant: ``"auto"`` or an approximator's name.
        device: where it runs; default: a tensor's own device, else CUDA when available, else the CPU.
        params: operator parameters; networks serve the values they were trained for, and ``auto`` then runs the
            operator itself (at reduced resolution where that is within its bar: ``reference-lowres``,
            ``reference-halfres``), which follows any values.
        operator: for a network of several operators (``"paper/combined"``): which one.
        prefer: what ``auto`` trades: ``"quality"``, ``"balanced"`` (default) or ``"speed"``, as :func:`load`.
        min_psnr: ``auto`` runs no approximator that scored under this PSNR (dB), as :func:`load`.

    Returns:
        The approximation: a NumPy array of the input's dtype and shape, a PIL RGB image (8 bits a channel,
        whatever the input's mode), or a tensor of the input's shape, dtype and device.

    Raises:
        InputError: an image of another shape, type, dtype or range, or an empty batch (the message says how to
            convert it).
    """
    preference = _preference(prefer, min_psnr)
    if isinstance(operator_or_model, FastOperator):
        if params is not None or variant != AUTO or preference is not None:
            raise InputError(
                "a module from fip.load runs the approximator and parameters it was loaded with; pass "
                "the model's name to fip.apply to choose others (or load it with prefer=)"
            )
        return _as_kind(image, lambda rgb: operator_or_model(rgb.to(operator_or_model.device)))
    model = operator_or_model if isinstance(operator_or_model, Model) else open_model(operator_or_model)
    if isinstance(image, torch.Tensor) and device is None:
        device = image.device
    torch_device = resolve_device(device)
    options = {"operator": operator, "params": dict(params) if params else None, "preference": preference}
    plans: dict[tuple[int, int], tuple[Plan, tuple[float, ...]]] = {}

    def run(batch: torch.Tensor) -> torch.Tensor:
        outputs = []
        for item in batch:
            views = Views(item[None])
            if views.size not in plans:  # one plan per photo size
                plan = make_plan(model, variant, views.size, torch_device, **options)
                plans[views.size] = plan, model.maps(plan.operator, plan.params)
            plan, maps = plans[views.size]
            outputs.append(run_plan(plan, model, views, maps))
        return torch.cat(outputs)

    return _as_kind(image, run)


def _as_kind(image: Any, run: Any) -> Any:
    """Convert ``image`` to a ``(B, 3, H, W)`` float32 batch, ``run`` it, and convert the result back."""
    if isinstance(image, torch.Tensor):
        if image.ndim not in (3, 4) or image.shape[-3] != 3 or not image.is_floating_point():
            raise InputError(
                f"a tensor image must be (3, H, W) or (B, 3, H, W) float in [0, 1]; got "
                f"{tuple(image.shape)} {image.dtype}"
            )
        batch = image if image.ndim == 4 else image[None]
        if batch.shape[0] == 0:
            raise InputError(
                f"the tensor {tuple(image.shape)} holds no image: give at least one of at least 2x2 pixels"
            )
        _check_range(batch)
        out = run(batch.float()).to(device=image.device, dtype=image.dtype)
        return out if image.ndim == 4 else out[0]
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        array = _pil_rgb(image)
        _check_range(_to_batch(array))
        out = run(_to_batch(array))[0].permute(1, 2, 0).cpu().numpy()
        return Image.fromarray(np.round(out * 255.0).astype(np.uint8), mode="RGB")
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"a NumPy image must be (H, W, 3); got shape {image.shape}. {shape_hint(image.shape)}")
        if image.dtype == np.uint8:
            scale = 255.0
        elif image.dtype == np.uint16:
            scale = 65535.0
        elif np.issubdtype(image.dtype, np.floating):
            scale = None
        else:
            raise InputError(f"a NumPy image must be uint8, uint16 or float in [0, 1]; got {image.dtype}")
        array = image.astype(np.float32) / scale if scale else image.astype(np.float32)
        batch = _to_batch(array)
        _check_range(batch)
        out = run(batch)[0].permute(1, 2, 0).cpu().numpy()
        if scale:
            return np.round(out * scale).astype(image.dtype)
        return out.astype(image.dtype)
    raise InputError(f"fip.apply takes a NumPy array, a PIL image or a torch tensor; got {type(image).__name__}")


def _pil_rgb(image: Any) -> np.ndarray:
    """A PIL image as ``(H, W, 3)`` float32 in [0, 1], as fip's file reader reads the same pixels: 16-bit and
    32-bit integer grey (``I;16*``, ``I``) over 0..65535, float grey (``F``) over 0..1, any other mode through
    Pillow's conversion to RGB (alpha dropped)."""
    mode = image.mode
    if mode.startswith("I") or mode == "F":
        grey = np.asarray(image).astype(np.float32)
        low, high = (float(grey.min()), float(grey.max())) if grey.size else (0.0, 0.0)
        top = 1.0 if mode == "F" else 65535.0
        if not np.isfinite(grey).all() or low < 0 or high > top:
            fix = "scale it to 0..1 first" if mode == "F" else "convert it to I;16 or 8-bit L first"
            raise InputError(
                f"a PIL image of mode {mode} must hold values in [0, {top:g}]; got [{low:g}, {high:g}]: "
                f"{fix}, or pass a NumPy array"
            )
        return np.repeat((grey / top)[..., None], 3, axis=2)
    try:
        rgb = (image.convert("LA") if mode == "La" else image).convert("RGB")  # Pillow has no La -> RGB
    except ValueError as exc:
        raise InputError(
            f"fip cannot convert a PIL image of mode {mode} to RGB ({exc}): convert it to RGB yourself first"
        ) from None
    return np.asarray(rgb, dtype=np.float32) / 255.0


def _to_batch(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)[None]


def _check_range(batch: torch.Tensor) -> None:
    if min(batch.shape[2:]) < 2:
        raise InputError(f"the image is {batch.shape[3]}x{batch.shape[2]} pixels; fip needs at least 2x2")
    if not torch.isfinite(batch).all() or batch.min() < 0 or batch.max() > 1:
        raise InputError(
            f"image values must lie in [0, 1] without NaN; got [{batch.min().item():g}, "
            f"{batch.max().item():g}]. Divide 8-bit values by 255 first."
        )


__all__ = ["FastOperator", "apply", "load"]
