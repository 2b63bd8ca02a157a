"""Edit one photo: open it under a size policy, run an operator's approximation or its reference, time both.

The functions the demo (and any other front end) calls; everything that touches pixels lives here or below, so
front ends add no image processing of their own.
"""

from __future__ import annotations

import functools
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from fip.conditioning import Sweep
from fip.errors import InputError, UnreadablePhotoError
from fip.imaging import IMAGE_EXTENSIONS, check_image
from fip.infer import LoadedModel, model_for_operator, run_loaded
from fip.raw import Photo, load_photo, load_srgb
from fip.registry import get_operator
from fip.variants import Variant

# Files bigger than this are refused before decoding (a 60 MP 16-bit TIFF is ~360 MB).
MAX_FILE_MEGABYTES = 400
# Photos with more pixels are refused after decoding: beyond what one CPU machine edits interactively.
MAX_MEGAPIXELS = 100.0
# Above this the network runs tile by tile (tiles of TILE pixels).
TILE_ABOVE_MEGAPIXELS = 8.0
TILE = 1536
# The paper-exact variant keeps whole-image feature maps (~0.3 GB per MP for CAN24 even when tiled): its limit.
FULL_MAX_MEGAPIXELS = 24.0


@dataclass(frozen=True)
class SizePolicy:
    """Photos above ``max_megapixels`` are area-downscaled to it (aspect kept, even sizes), never upscaled;
    photos above :data:`MAX_MEGAPIXELS` are refused."""

    max_megapixels: float | None = None

    def __call__(self, height: int, width: int) -> tuple[int, int]:
        if min(height, width) < 2:
            raise InputError(f"the photo is {width}x{height} pixels; fip needs at least 2 pixels on each side")
        if height * width > MAX_MEGAPIXELS * 1e6:
            raise InputError(
                f"the photo has {height * width / 1e6:.0f} MP; fip edits photos up to {MAX_MEGAPIXELS:.0f} MP — "
                "downscale it first"
            )
        if self.max_megapixels is None or height * width <= self.max_megapixels * 1e6:
            return height - height % 2, width - width % 2
        scale = (self.max_megapixels * 1e6 / (height * width)) ** 0.5
        return max(2, int(height * scale) // 2 * 2), max(2, int(width * scale) // 2 * 2)


def _check_file(path: Path) -> None:
    """Refuse missing and oversized files, and images whose header declares too many pixels, before decoding."""
    if not path.is_file():
        raise UnreadablePhotoError(f"{path}: no such file")
    megabytes = path.stat().st_size / 2**20
    if megabytes > MAX_FILE_MEGABYTES:
        raise InputError(f"{path.name} is {megabytes:.0f} MB; fip opens files up to {MAX_FILE_MEGABYTES} MB")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we judge the size ourselves
                with Image.open(path) as header:  # reads the header only
                    width, height = header.size
        except Image.DecompressionBombError as exc:
            raise InputError(f"{path.name}: {exc}; fip edits photos up to {MAX_MEGAPIXELS:g} MP") from exc
        except Exception:  # noqa: BLE001 - not an image PIL knows: the decoder gives the real message later
            return
        SizePolicy()(height, width)


def open_photo(path: str | os.PathLike[str], policy: SizePolicy = SizePolicy()) -> Photo:
    """Open an image or raw file as a :class:`~fip.raw.Photo` sized by ``policy``.

    Raises:
        UnreadablePhotoError: not an image or raw file fip reads (the message names the file and why).
        InputError: the file or the photo is too large (the message gives the limit).
    """
    path = Path(path)
    _check_file(path)
    return load_photo(path, policy)


def open_full_resolution(path: str | os.PathLike[str]) -> np.ndarray:
    """The sRGB view of an image or raw file at its native size (odd sizes kept), within the same limits as
    :func:`open_photo`."""
    path = Path(path)
    _check_file(path)
    image = load_srgb(path)
    SizePolicy()(*image.shape[:2])  # refuses photos above MAX_MEGAPIXELS
    return image


@dataclass(frozen=True)
class Result:
    """One edited photo: ``(H, W, 3)`` float32 sRGB in [0, 1], the seconds it took, and a note for the user
    (for example that the network was trained at other parameter values)."""

    image: np.ndarray
    seconds: float
    note: str = ""
    variant: str = ""  # the network variant that made it ('auto' resolved), empty for the reference


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-12)
    return a == b


@functools.lru_cache(maxsize=16)
def shipped_model(operator: str) -> LoadedModel:
    """:func:`fip.infer.model_for_operator`, loaded once per process."""
    return model_for_operator(operator)


def run_reference(operator: str, photo: Photo, params: Mapping[str, Any] | None = None) -> Result:
    """The reference operator on the view of ``photo`` it consumes, timed."""
    spec = get_operator(operator)
    view = photo.view(spec.input)
    start = time.perf_counter()
    image = spec.apply(view, params)
    return Result(image, time.perf_counter() - start)


def run_approximation(
    operator: str,
    photo: Photo | np.ndarray,
    params: Mapping[str, Any] | None = None,
    variant: Variant | str = Variant.FAST,
    model: LoadedModel | None = None,
    tile: int | None = None,
) -> Result:
    """The operator's network (``model``, default the shipped one) on ``photo``'s sRGB view (or an sRGB array),
    timed; photos above ``TILE_ABOVE_MEGAPIXELS`` run tile by tile (same result, bounded memory). The network
    was trained at fixed parameters (except a swept one, which it takes as an input map); when ``params`` ask
    for others, the result's note says so."""
    spec = get_operator(operator)
    model = model or shipped_model(operator)
    if model.conditioning is None and model.operator not in (None, operator):
        raise InputError(f"model {model.name} approximates {model.operator}, not {operator}")
    wanted = spec.resolve_params(params)
    trained = spec.resolve_params(model.params) if model.operator == operator else spec.resolve_params()
    followed = {model.conditioning.param} if isinstance(model.conditioning, Sweep) else set()  # a slider input
    differing = [f"{n}={trained[n]}" for n in wanted if n not in followed and not _same(wanted[n], trained[n])]
    maps = model.maps(operator, wanted)
    note = f"the network approximates {', '.join(differing)} (its training values)" if differing else ""
    image = photo.srgb if isinstance(photo, Photo) else check_image(photo)
    megapixels = image.shape[0] * image.shape[1] / 1e6
    variant = model.resolve(variant, megapixels)
    if variant is Variant.FULL and megapixels > FULL_MAX_MEGAPIXELS:
        raise InputError(
            f"the photo has {megapixels:.0f} MP; the paper-exact 'full' variant holds whole-image feature maps and "
            f"runs up to {FULL_MAX_MEGAPIXELS:g} MP: choose the 'fast' variant (tiled, any size)"
        )
    if tile is None and megapixels > TILE_ABOVE_MEGAPIXELS:
        tile = TILE
    start = time.perf_counter()
    image = run_loaded(model, image, maps, tile=tile, variant=variant)
    return Result(image, time.perf_counter() - start, note, variant.value)


def render_to_file(
    operator: str,
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    variant: Variant | str = Variant.FAST,
    bits: int = 8,
) -> tuple[Path, Result]:
    """The approximation of ``operator`` on the photo at ``path`` at its native resolution, written atomically as
    ``out_dir/<stem>-<operator>.png`` (an existing file of that name is replaced: ``out_dir`` is the caller's
    scratch folder)."""
    from fip.files import atomic_write_bytes
    from fip.imaging import encode_png

    image = open_full_resolution(path)
    result = run_approximation(operator, image, params, variant)
    output = Path(out_dir) / f"{Path(path).stem}-{operator}.png"
    atomic_write_bytes(output, encode_png(result.image, bits=bits))
    return output, result
