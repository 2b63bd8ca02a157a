"""Fused CPU kernels (numba) for the guided-filter upsamplers of the low-resolution approximators.

The torch implementations in :mod:`fip.models.guided` make one pass over memory per elementwise operation: the
colour guided filter's fit is ~100 of them, its 3x3 solve in float64, and applying the upsampled linear model at
full size ~20 passes over 12 full-size maps. Here each is one parallel loop over rows that keeps its intermediates
in registers and a row buffer:

* :func:`colour_guided_fit`: the box statistics, the regularized 3x3 solve (float64) and the box mean of the
  coefficients; :func:`fip.models.guided.colour_guided_coefficients`'s result.
* :func:`apply_linear_model`: the coefficients bilinearly upsampled (``align_corners=False``) and applied to the
  full-size guide, per channel or as a 3x3 matrix per pixel; :func:`fip.models.guided.apply_linear_model`'s result.

They take and return CPU float32 tensors without gradients (inference only); the engine uses them for CPU plans
and the torch code everywhere else (GPU, training). numba compiles them on first use and caches the machine code
beside this file (or in its user cache directory when that is read-only), so only a new install pays the compile.
"""

from __future__ import annotations

import functools
import os
import sys
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
    kernels = _kernels()
    with _threads():
        raw = kernels["fit"](np.concatenate([guide, target]), radius, float(eps))
        return torch.from_numpy(kernels["box"](raw, radius))[None]


def apply_linear_model(coefficients: torch.Tensor, guide: torch.Tensor, colour: bool) -> torch.Tensor:
    """``A * guide + b`` at ``guide``'s size, ``(1, 3, H, W)`` float32, from low-resolution ``coefficients``
    bilinearly upsampled: per channel (6 maps, ``A`` then ``b``) or, with ``colour``, a 3x3 matrix per pixel
    (12 maps); :func:`fip.models.guided.apply_linear_model` for the same inputs, fused."""
    maps, planes = _planes(coefficients), _planes(guide)
    expected = 12 if colour else 2 * planes.shape[0]
    if maps.shape[0] != expected:
        raise ValueError(f"expected {expected} coefficient maps for a {planes.shape[0]}-channel guide; "
                         f"got {maps.shape[0]}")  # fmt: skip
    height, width = planes.shape[1:]
    rows = _source_positions(maps.shape[1], height)
    cols = _source_positions(maps.shape[2], width)
    with _threads():
        out = _kernels()["apply"](maps, planes, *rows, *cols, colour)
    return torch.from_numpy(out)[None]


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
    except Exception as exc:  # noqa: BLE001 - numba missing or unable to compile here: the torch code runs
        _BROKEN.append(exc)
        warnings.warn(f"fip's fused CPU kernels are unavailable ({type(exc).__name__}: {exc}); the low-resolution "
                      "approximators run their slower torch code. Reinstall numba (pip install numba) to restore "
                      "them.", RuntimeWarning, stacklevel=2)  # fmt: skip
        return False
    return True


def _planes(batch: torch.Tensor) -> np.ndarray:
    if batch.dim() != 4 or batch.shape[0] != 1 or batch.device.type != "cpu":
        raise ValueError(f"the fused kernels take one CPU image (1, C, H, W); got {tuple(batch.shape)} "
                         f"on {batch.device}")  # fmt: skip
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
        print("fip: compiling its CPU kernels (once after installing; ~10 s on 2 cores)...", file=sys.stderr,
              flush=True)  # fmt: skip


# The 21 box statistics of the fit, from the planes guide 0-2 and target 3-5: the means, the guide's products
# (upper triangle), then each target channel times each guide channel (-1: a plain mean).
_FIRST = np.array([0, 1, 2, 3, 4, 5, 0, 0, 0, 1, 1, 2, 3, 3, 3, 4, 4, 4, 5, 5, 5])
_SECOND = np.array([-1, -1, -1, -1, -1, -1, 0, 1, 2, 1, 2, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2])


def _kernels() -> dict[str, object]:
    """The compiled kernels, built on first use (numba is imported only then); where numba can write no cache
    (a read-only install and home), compiled anew in each process."""
    if not _COMPILED:
        try:
            _COMPILED.update(_build(cache=True))
        except RuntimeError as exc:
            if "cannot cache" not in str(exc):
                raise
            _COMPILED.update(_build(cache=False))
    return _COMPILED


def _build(cache: bool) -> dict[str, object]:
    from numba import njit, prange

    options = {"parallel": True, "cache": cache, "nogil": True}

    @njit(inline="always")
    def reflect(i, n):
        if i < 0:
            return -i
        if i >= n:
            return 2 * n - 2 - i
        return i

    @njit(inline="always")
    def horizontal_box(row, out, radius, scale):
        """``out[x]``: ``scale`` times the sum of ``row`` over ``x - radius .. x + radius``, reflected at the ends
        (the interior without the reflection's branches, so it vectorizes)."""
        width = row.shape[0]
        for x in range(min(radius, width)):
            total = row[x] * 0
            for dx in range(-radius, radius + 1):
                total += row[reflect(x + dx, width)]
            out[x] = total * scale
        for x in range(radius, width - radius):
            total = row[x] * 0
            for dx in range(2 * radius + 1):
                total += row[x - radius + dx]
            out[x] = total * scale
        for x in range(max(radius, width - radius), width):
            total = row[x] * 0
            for dx in range(-radius, radius + 1):
                total += row[reflect(x + dx, width)]
            out[x] = total * scale

    @njit(**options)
    def fit(planes, radius, eps):
        """The regularized least-squares fit of the target (planes 3-5) from the guide (planes 0-2) in every box,
        before the box mean of the coefficients: per row, the 21 box sums (``_FIRST``, ``_SECOND``) in float64,
        then the 3x3 solve by the adjugate."""
        height, width = planes.shape[1], planes.shape[2]
        out = np.empty((12, height, width), np.float32)
        area = (2 * radius + 1) ** 2
        for y in prange(height):
            column = np.zeros((21, width), np.float64)  # vertical box sums of this row
            for dy in range(-radius, radius + 1):
                yy = reflect(y + dy, height)
                for k in range(21):  # one simple loop per statistic, so each vectorizes
                    first, second = _FIRST[k], _SECOND[k]
                    sums = column[k]
                    a = planes[first, yy]
                    if second < 0:
                        for x in range(width):
                            sums[x] += a[x]
                    else:
                        b = planes[second, yy]
                        for x in range(width):
                            sums[x] += np.float64(a[x]) * b[x]
            mean = np.empty((21, width), np.float64)
            for k in range(21):
                horizontal_box(column[k], mean[k], radius, 1.0 / area)
            for x in range(width):
                i0, i1, i2 = mean[0, x], mean[1, x], mean[2, x]
                s00 = mean[6, x] - i0 * i0 + eps
                s01 = mean[7, x] - i0 * i1
                s02 = mean[8, x] - i0 * i2
                s11 = mean[9, x] - i1 * i1 + eps
                s12 = mean[10, x] - i1 * i2
                s22 = mean[11, x] - i2 * i2 + eps
                c00, c01, c02 = s11 * s22 - s12 * s12, s02 * s12 - s01 * s22, s01 * s12 - s02 * s11
                c11, c12, c22 = s00 * s22 - s02 * s02, s01 * s02 - s00 * s12, s00 * s11 - s01 * s01
                inverse = 1.0 / (s00 * c00 + s01 * c01 + s02 * c02)  # of the determinant
                for c in range(3):
                    p = mean[3 + c, x]
                    v0 = mean[12 + 3 * c, x] - i0 * p
                    v1 = mean[13 + 3 * c, x] - i1 * p
                    v2 = mean[14 + 3 * c, x] - i2 * p
                    a0 = (c00 * v0 + c01 * v1 + c02 * v2) * inverse
                    a1 = (c01 * v0 + c11 * v1 + c12 * v2) * inverse
                    a2 = (c02 * v0 + c12 * v1 + c22 * v2) * inverse
                    out[3 * c, y, x] = a0
                    out[3 * c + 1, y, x] = a1
                    out[3 * c + 2, y, x] = a2
                    out[9 + c, y, x] = p - a0 * i0 - a1 * i1 - a2 * i2
        return out

    @njit(**options)
    def box(maps, radius):
        """Box means over ``(2 * radius + 1)``-pixel squares, borders reflected (``fip.models.guided.box_mean``)."""
        channels, height, width = maps.shape
        out = np.empty_like(maps)
        area = np.float32((2 * radius + 1) ** 2)
        for y in prange(height):
            column = np.zeros(width, np.float32)
            for k in range(channels):
                column[:] = 0.0
                for dy in range(-radius, radius + 1):
                    yy = reflect(y + dy, height)
                    for x in range(width):
                        column[x] += maps[k, yy, x]
                horizontal_box(column, out[k, y], radius, np.float32(1.0) / area)
        return out

    @njit(**options)
    def apply(maps, guide, row0, row1, row_weight, col0, col1, col_weight, colour):
        """Per output row: the two source rows of every map interpolated once, then per pixel the two columns and
        the linear model."""
        count = maps.shape[0]
        channels, height, width = guide.shape
        out = np.empty((channels, height, width), np.float32)
        for y in prange(height):
            top, bottom, wy = row0[y], row1[y], row_weight[y]
            row = np.empty((count, maps.shape[2]), np.float32)
            for k in range(count):
                for x in range(maps.shape[2]):
                    upper = maps[k, top, x]
                    row[k, x] = upper + wy * (maps[k, bottom, x] - upper)
            for x in range(width):
                left, right, wx = col0[x], col1[x], col_weight[x]
                if colour:
                    for c in range(3):
                        value = row[9 + c, left] + wx * (row[9 + c, right] - row[9 + c, left])
                        for i in range(3):
                            k = 3 * c + i
                            a = row[k, left] + wx * (row[k, right] - row[k, left])
                            value += a * guide[i, y, x]
                        out[c, y, x] = value
                else:
                    for c in range(channels):
                        a = row[c, left] + wx * (row[c, right] - row[c, left])
                        b = row[channels + c, left] + wx * (row[channels + c, right] - row[channels + c, left])
                        out[c, y, x] = a * guide[c, y, x] + b
        return out

    @njit(**options)
    def decode(values, table):
        """``values`` clipped to [0, 1], looked up in ``table`` (samples at ``i / (len - 1)``) with linear
        interpolation."""
        out = np.empty(values.shape[0], np.float32)
        last = table.shape[0] - 1
        for i in prange(values.shape[0]):
            value = np.float64(values[i])
            value = 0.0 if not value > 0.0 else min(value, 1.0)  # NaN reads as 0, never as an index
            position = value * last
            index = min(int(position), last - 1)
            fraction = position - index
            out[i] = table[index] + fraction * (table[index + 1] - table[index])
        return out

    return {"fit": fit, "box": box, "apply": apply, "decode": decode}
