"""Fused CPU kernels (numba) for the guided-filter upsamplers of the low-resolution approximators.

The torch implementations in :mod:`fip.models.guided` make one pass over memory per elementwise operation: the
colour guided filter's fit is ~100 of them, its 3x3 solve in float64, and applying the upsampled linear model at
full size ~20 passes over 12 full-size maps. Here each is one parallel loop over rows that keeps its intermediates
in registers and a row buffer:

* :func:`colour_guided_fit`: the box statistics, the regularized 3x3 solve (float64) and the box mean of the
  coefficients; :func:`fip.models.guided.colour_guided_coefficients`'s result.
* :func:`apply_linear_model`: the coefficients bilinearly upsampled (``align_corners=False``) and applied to the
  full-size guide, per channel or as a 3x3 matrix per pixel; :func:`fip.models.guided.apply_linear_model`'s result.
* :func:`guide_map`: a learned guidance map (:class:`fip.models.guided.GuideMap`, two 1x1 layers) per pixel.
* :func:`srgb_decode`: sRGB to linear light by a fine table (:func:`fip.imaging.srgb_decode` uses it).

They take and return CPU float32 tensors without gradients (inference only); the engine uses them for CPU plans
and the torch code everywhere else (GPU, training). numba compiles them on first use and caches the machine code
beside this file (or in its user cache directory when that is read-only), so only a new install pays the compile.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
import tempfile
import threading
import warnings

import numpy as np
import torch

_COMPILED: dict[str, object] = {}
_BROKEN: list[Exception] = []  # why the kernels could not be built, once known


def colour_guided_fit(guide_low: torch.Tensor, target_low: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """The colour guided filter's box-averaged coefficients, ``(1, 12, h, w)`` float32, from a ``(1, 3, h, w)``
    guide and target: :func:`fip.models.guided.colour_guided_coefficients` (same inputs, same layout), fused."""
    guide, target = _planes(guide_low), _planes(target_low)
    if guide.shape != target.shape or guide.shape[0] != 3 or min(guide.shape[1:]) <= radius:
        raise ValueError(
            f"the colour guided fit takes a 3-channel guide and target of one size, each side larger "
            f"than the radius {radius}; got {guide.shape} and {target.shape}"
        )
    kernels = _kernels()
    with _threads():
        raw = kernels["fit"](np.concatenate([guide, target]), _FIRST, _SECOND, radius, float(eps))
        return torch.from_numpy(kernels["box"](raw, radius))[None]


def apply_linear_model(coefficients: torch.Tensor, guide: torch.Tensor, colour: bool) -> torch.Tensor:
    """``A * guide + b`` at ``guide``'s size, ``(1, 3, H, W)`` float32, from low-resolution ``coefficients``
    bilinearly upsampled: per channel (6 maps, ``A`` then ``b``) or, with ``colour``, a 3x3 matrix per pixel
    (12 maps); :func:`fip.models.guided.apply_linear_model` for the same inputs, fused."""
    maps, planes = _planes(coefficients), _planes(guide)
    expected = 12 if colour else 2 * planes.shape[0]
    if maps.shape[0] != expected:
        raise ValueError(
            f"expected {expected} coefficient maps for a {planes.shape[0]}-channel guide; got {maps.shape[0]}"
        )
    height, width = planes.shape[1:]
    rows = _source_positions(maps.shape[1], height)
    cols = _source_positions(maps.shape[2], width)
    with _threads():
        out = _kernels()["apply"](maps, planes, *rows, *cols, colour)
    return torch.from_numpy(out)[None]


def guide_map(guide: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """:class:`fip.models.guided.GuideMap` ``guide`` applied to ``image`` (``(1, 3, H, W)``), ``(1, 3, H, W)``
    float32, its hidden layer one row at a time; the module's result for the same input, fused."""
    first, last = guide.body[0], guide.body[2]
    first_weight, first_bias, last_weight, last_bias = (
        np.ascontiguousarray(t.detach().float().reshape(t.shape[0], -1).squeeze(1).numpy())
        for t in (first.weight, first.bias[:, None], last.weight, last.bias[:, None])
    )
    with _threads():
        out = _kernels()["guide_map"](
            _planes(image), first_weight, first_bias, last_weight, last_bias, np.float32(guide.body[1].negative_slope)
        )
    return torch.from_numpy(out)[None]


def warm() -> bool:
    """Compile (or load from numba's cache) every kernel on tiny inputs, so that the first photo does not wait;
    ``scripts/setup.sh`` and the tests call it. Whether the kernels are usable here."""
    if not _enabled():
        return False
    tiny = torch.rand(1, 3, 6, 5)
    coefficients = colour_guided_fit(tiny, tiny, 1, 1e-4)
    apply_linear_model(coefficients, tiny, colour=True)
    srgb_decode(tiny.numpy())
    from fip.models.guided import GuideMap

    guide_map(GuideMap(), tiny)
    return True


def usable(image: torch.Tensor) -> bool:
    """Whether the engine uses these kernels for ``image``: one photo on the CPU, no gradient wanted, numba
    importable (a dependency of fip) and ``FIP_FUSED_KERNELS`` not ``0`` (which keeps the torch code, e.g. to
    compare the two)."""
    if image.device.type != "cpu" or image.shape[0] != 1 or (torch.is_grad_enabled() and image.requires_grad):
        return False
    return _enabled()


def srgb_decode(srgb: np.ndarray) -> np.ndarray | None:
    """sRGB-encoded values (clipped to [0, 1]) -> linear light, float32, any shape: the sRGB formula tabulated at
    65536 points and interpolated linearly (within 1e-9 of it, below float32's resolution), ~10x faster than
    evaluating its power per value. ``None`` where the kernels are unavailable (the caller evaluates it)."""
    if not _enabled():
        return None
    flat = np.ascontiguousarray(srgb, dtype=np.float32).reshape(-1)
    with _threads():
        out = _kernels()["decode"](flat, _decode_table())
    return out.reshape(np.shape(srgb))


@functools.cache
def _decode_table() -> np.ndarray:
    x = np.linspace(0.0, 1.0, _DECODE_POINTS)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


_DECODE_POINTS = 65536


def _enabled() -> bool:
    if os.environ.get("FIP_FUSED_KERNELS", "1") == "0" or _BROKEN:
        return False
    try:
        _kernels()
    except Exception as exc:  # numba missing or unable to compile here: the torch code runs
        _BROKEN.append(exc)
        warnings.warn(
            f"fip's fused CPU kernels are unavailable ({type(exc).__name__}: {exc}); the low-resolution "
            "approximators run their slower torch code. Reinstall numba (pip install numba) to restore "
            "them.",
            RuntimeWarning,
            stacklevel=2,
        )
        return False
    return True


def _planes(batch: torch.Tensor) -> np.ndarray:
    if batch.dim() != 4 or batch.shape[0] != 1 or batch.device.type != "cpu":
        raise ValueError(
            f"the fused kernels take one CPU image (1, C, H, W); got {tuple(batch.shape)} on {batch.device}"
        )
    return np.ascontiguousarray(batch[0].detach().float().numpy())


def _source_positions(source: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each of ``size`` output positions, the two source indices and the weight of the second that
    ``F.interpolate(..., mode="bilinear", align_corners=False)`` uses (its float32 arithmetic)."""
    scale = np.float32(source / size)
    position = np.maximum((np.arange(size, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5), 0)
    first = np.minimum(np.floor(position).astype(np.int64), source - 1)
    second = np.minimum(first + 1, source - 1)
    weight = (position - first).astype(np.float32)
    return first, second, weight


class _threads:
    """One kernel call at a time (numba's fallback thread pool, where OpenMP is missing, aborts on concurrent
    calls from several threads, e.g. a demo's requests), with as many threads as torch uses
    (``torch.set_num_threads``), at most numba's pool."""

    _lock = threading.Lock()
    _said = threading.Event()  # the compile notice, at most once a process

    def __enter__(self) -> None:
        import numba

        self._lock.acquire()
        self._before = numba.get_num_threads()
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        # A call that lasts over a few seconds is numba compiling (the first use after installing fip): say so.
        self._notice = threading.Timer(COMPILE_NOTICE_SECONDS, _say_compiling, args=(self._said,))
        self._notice.daemon = True
        if not self._said.is_set():
            self._notice.start()

    def __exit__(self, *exc: object) -> None:
        import numba

        self._notice.cancel()
        numba.set_num_threads(self._before)
        self._lock.release()


COMPILE_NOTICE_SECONDS = 3.0


def _say_compiling(said: threading.Event) -> None:
    if not said.is_set():
        said.set()
        print(
            "fip: compiling its CPU kernels (once after installing; ~10 s on 2 cores)...", file=sys.stderr, flush=True
        )


# The 21 box statistics of the fit, from the planes guide 0-2 and target 3-5: the means, the guide's products
# (upper triangle), then each target channel times each guide channel (-1: a plain mean).
_FIRST = np.array([0, 1, 2, 3, 4, 5, 0, 0, 0, 1, 1, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5])
_SECOND = np.array([-1, -1, -1, -1, -1, -1, 0, 1, 2, 1, 2, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])


def _kernels() -> dict[str, object]:
    """The kernels, imported on first use (numba is imported only then). Where numba can write no cache (a
    read-only install and home), they cache in a temporary folder, compiled anew in each process."""
    if not _COMPILED:
        try:
            module = importlib.import_module("fip.runtime._numba_kernels")
        except RuntimeError as exc:
            if "cannot cache" not in str(exc):
                raise
            import numba

            os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="fip-numba-")
            numba.config.reload_config()
            sys.modules.pop("fip.runtime._numba_kernels", None)
            module = importlib.import_module("fip.runtime._numba_kernels")
        _COMPILED.update(
            fit=module.fit, box=module.box, apply=module.apply, decode=module.decode, guide_map=module.guide_map
        )
    return _COMPILED
