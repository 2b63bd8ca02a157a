"""The front door: open photos under one set of limits, run approximations through the engine, write results.

``fip apply``, the demo and the Python API open photos here, so they share the same checks:

* a file larger than :data:`MAX_FILE_MEGABYTES` is refused before it is read;
* an image's or raw file's header is read first, and one declaring more than :data:`MAX_MEGAPIXELS` (a
  decompression bomb, or simply too large) is refused before any pixel is decoded;
* photos need at least 2x2 pixels;
* large photos are tiled automatically: the engine plans tiles or bands from the memory available
  (:func:`fip.runtime.plan.make_plan`), and says what to do when even that cannot fit.
"""

from __future__ import annotations

import io
import os
import re
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fip.errors import InputError, UnreadablePhotoError
from fip.imaging import (
    IMAGE_EXTENSIONS,
    PhotoMetadata,
    apply_orientation,
    check_image,
    encode_image,
    read_image_file,
    read_metadata,
    resize_area,
)
from fip.models.catalogue import Model, model_for_operator, open_model
from fip.raw import RAW_EXTENSIONS, Photo, load_photo
from fip.registry import get_operator
from fip.runtime.engine import make_plan
from fip.runtime.execute import Views, run_plan, to_image
from fip.runtime.plan import AUTO, PARAMS_NOTE, Plan, Preference

MAX_FILE_MEGABYTES = 800
"""Files bigger than this (MB) are refused before decoding (a 100 MP 16-bit TIFF is about 600 MB)."""
MAX_MEGAPIXELS = 150.0
"""Photos with more megapixels are refused from their header, before any pixel is decoded."""
MIN_SIDE = 2


@dataclass(frozen=True)
class SizePolicy:
    """Photos above ``max_megapixels`` are area-downscaled to it (aspect kept, even sizes), never upscaled;
    photos above :data:`MAX_MEGAPIXELS` or below 2x2 pixels are refused."""

    max_megapixels: float | None = None

    def __call__(self, height: int, width: int) -> tuple[int, int]:
        check_size(height, width)
        if self.max_megapixels is None or height * width <= self.max_megapixels * 1e6:
            return height - height % 2, width - width % 2
        scale = (self.max_megapixels * 1e6 / (height * width)) ** 0.5
        return max(2, int(height * scale) // 2 * 2), max(2, int(width * scale) // 2 * 2)


def check_size(height: int, width: int, name: str = "the photo") -> None:
    """Refuse photos under 2x2 pixels or over :data:`MAX_MEGAPIXELS`, with the fix in the message."""
    if min(height, width) < MIN_SIDE:
        raise InputError(f"{name} is {width}x{height} pixels; fip needs at least {MIN_SIDE} pixels on each side")
    if height * width > MAX_MEGAPIXELS * 1e6:
        raise InputError(
            f"{name} has {height * width / 1e6:.0f} MP ({width}x{height}); fip opens photos up to "
            f"{MAX_MEGAPIXELS:g} MP: downscale it with another program first"
        )


def check_file(path: str | os.PathLike[str], data: bytes | None = None) -> None:
    """Refuse a missing or oversized file, and one whose header declares a size :func:`check_size` refuses, before
    any pixel is decoded (with ``data``, the file's bytes the caller has read after checking the file itself: the
    header from those).

    Raises:
        UnreadablePhotoError: no such file, or not a file.
        InputError: the file or the photo it declares is too large or too small (the message gives the limit).
    """
    path = Path(path)
    if data is None:
        _check_path(path)
    size = _declared_size(path, data)
    if size is not None:
        check_size(*size, name=path.name)


def _check_path(path: Path) -> None:
    """Refuse a missing file, a folder or device, and a file over :data:`MAX_FILE_MEGABYTES`."""
    if not path.exists():
        raise UnreadablePhotoError(f"{path}: no such file")
    if not path.is_file():
        raise UnreadablePhotoError(f"{path}: not a file (a folder or a device); give photo files")
    megabytes = path.stat().st_size / 2**20
    if megabytes > MAX_FILE_MEGABYTES:
        raise InputError(f"{path.name} is {megabytes:.0f} MB; fip opens files up to {MAX_FILE_MEGABYTES} MB")


def _declared_size(path: Path, data: bytes | None = None) -> tuple[int, int] | None:
    """(height, width) from the file's header, or ``None`` when the header cannot tell (the decoder reports)."""
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS:
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # judged against fip's own limit
                with Image.open(io.BytesIO(data) if data is not None else path) as header:  # the header only
                    width, height = header.size
        except Image.DecompressionBombError as exc:  # PIL refuses past twice its own limit, which is above fip's
            declared = re.search(r"\((\d+) pixels\)", str(exc))  # "Image size (900000000 pixels) exceeds limit ..."
            size = f"{int(declared[1]) / 1e6:.0f} MP" if declared else f"over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP"
            raise InputError(
                f"{path.name} declares {size}; fip opens photos up to {MAX_MEGAPIXELS:g} MP: downscale "
                "it with another program first"
            ) from None
        except Exception:  # not an image PIL knows: the decoder gives the real message later
            return None
        return height, width
    if suffix in RAW_EXTENSIONS:
        import rawpy

        try:
            with rawpy.imread(str(path)) as raw:  # opens and parses the file; decodes nothing yet
                return raw.sizes.raw_height, raw.sizes.raw_width
        except Exception:  # LibRaw's errors are reported by the reader with context
            return None
    return None


def open_photo(path: str | os.PathLike[str], policy: SizePolicy = SizePolicy()) -> Photo:
    """Open an image or raw file as a :class:`~fip.raw.Photo` sized by ``policy``, after :func:`check_file`.

    Raises:
        UnreadablePhotoError: not an image or raw file fip reads (the message names the file and why).
        InputError: the file or the photo is too large or too small (the message gives the limit).
    """
    check_file(path)
    return load_photo(Path(path), policy)


def _open_checked(path: Path, max_megapixels: float | None, data: bytes | None = None) -> tuple[Views, int]:
    """The views of a file :func:`check_file` passed, and the EXIF orientation its results need (raw files keep
    sensor order; image files are read upright)."""
    if path.suffix.lower() in RAW_EXTENSIONS:
        photo = load_photo(path, SizePolicy(max_megapixels) if max_megapixels else None)
        return Views.of_photo(photo), photo.orientation
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        load_photo(path)  # raises the unsupported-type error, naming the types fip reads
    image = read_image_file(path, data)
    check_size(*image.shape[:2], name=path.name)
    height, width = image.shape[:2]
    if max_megapixels is not None and height * width > max_megapixels * 1e6:
        scale = (max_megapixels * 1e6 / (height * width)) ** 0.5
        image = resize_area(image, max(2, int(height * scale)), max(2, int(width * scale)))
    return Views.of_array(image), 1


@dataclass(frozen=True)
class OpenedInput:
    """A photo file opened for the engine: its ``views``, the EXIF ``orientation`` (1..8) its results need to stand
    upright (raw files keep sensor order; image files are read upright, so 1), and the ``metadata`` (ICC profile,
    EXIF) to carry to outputs."""

    views: Views
    orientation: int = 1
    metadata: PhotoMetadata | None = None

    def upright(self, image: np.ndarray) -> np.ndarray:
        """``image`` (a result at the views' size) turned as the file says the photo stands."""
        return apply_orientation(image, self.orientation)


def open_input(path: str | os.PathLike[str], max_megapixels: float | None = None) -> OpenedInput:
    """Open a photo file for the engine, after :func:`check_file`: its views at the native size (image files keep
    odd sides; ``max_megapixels`` downscales larger photos first), the orientation its results need, and the
    metadata to carry to outputs. An image file is read from disk once: its header, pixels and metadata come
    from the same bytes."""
    path = Path(path)
    data = None
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        _check_path(path)  # the file's own size, before reading it; then its header, from the bytes read
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UnreadablePhotoError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    check_file(path, data)
    views, orientation = _open_checked(path, max_megapixels, data)
    return OpenedInput(views, orientation, read_metadata(path, data))


@dataclass(frozen=True)
class Result:
    """One edited photo: ``image`` ``(H, W, 3)`` float32 sRGB in [0, 1], the seconds it took, the plan that made
    it (``None`` for the reference operator) and a note for the user."""

    image: np.ndarray
    seconds: float
    plan: Plan | None = None
    note: str = ""

    @property
    def approximator(self) -> str:
        return self.plan.approximator if self.plan else "reference"


def resolve(operator_or_model: str | os.PathLike[str] | Model | None, operator: str | None = None) -> Model:
    """The model for a user's ``--model``/``--operator`` pair: a model (any name :func:`open_model` takes), or the
    one installed for ``operator``; a model of one operator must match ``operator`` when both are given."""
    if operator_or_model is None and operator is None:
        raise InputError(
            "give a model (--model NAME_OR_PATH), an operator (--operator NAME), or both for a network "
            "of several operators"
        )
    if operator_or_model is None:
        get_operator(operator)  # an unknown name fails here, listing the registered ones
        return model_for_operator(operator)
    model = operator_or_model if isinstance(operator_or_model, Model) else open_model(operator_or_model)
    if operator is not None and model.conditioning is None and model.operator not in (None, operator):
        raise InputError(f"model {model.name} approximates {model.operator}, not {operator}")
    return model


def run_approximation(
    model: Model | str,
    photo: Photo | Views | np.ndarray,
    params: Mapping[str, Any] | None = None,
    request: str = AUTO,
    *,
    operator: str | None = None,
    device: str | torch.device | None = None,
    tile: int | None = None,
    on_plan: Callable[[Plan], None] | None = None,
    preference: Preference | None = None,
) -> Result:
    """Approximate the operator on one photo through the engine, timed (plan included in the result).

    Args:
        model: a model, or any name :func:`resolve` takes (an operator's name gives its installed model).
        photo: a :class:`~fip.raw.Photo`, engine :class:`~fip.runtime.execute.Views`, or an sRGB array.
        params: operator parameters (networks serve those they were trained for; ``auto`` then runs the
            reference at low resolution, which follows any).
        request: ``auto`` or an approximator's name.
        on_plan: called with the plan before it runs (``fip apply --explain`` prints it).
        preference: what ``auto`` trades (:class:`~fip.runtime.plan.Preference`; default ``balanced``).
    """
    model = resolve(model, operator) if not isinstance(model, Model) else model
    if isinstance(photo, np.ndarray):
        photo = Views.of_array(check_image(photo))
    views = Views.of_photo(photo) if isinstance(photo, Photo) else photo
    plan = make_plan(
        model,
        request,
        views.size,
        device,
        operator=operator,
        params=dict(params) if params else None,
        tile=tile,
        preference=preference,
    )
    maps = model.maps(plan.operator, plan.params)
    if on_plan is not None:
        on_plan(plan)
    start = time.perf_counter()
    image = to_image(run_plan(plan, model, views, maps))
    return Result(image, time.perf_counter() - start, plan, _note(plan))


def _note(plan: Plan) -> str:
    """What the user should know of the plan: that the networks were trained for other parameter values."""
    return next((note for note in plan.notes if note.startswith(PARAMS_NOTE)), "")


def run_reference(operator: str, photo: Photo, params: Mapping[str, Any] | None = None) -> Result:
    """The reference operator on the view of ``photo`` it consumes, timed."""
    spec = get_operator(operator)
    view = photo.view(spec.input)
    start = time.perf_counter()
    image = spec.apply(view, params)
    return Result(image, time.perf_counter() - start)


def render(
    model: Model | str,
    path: str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    request: str = AUTO,
    *,
    operator: str | None = None,
    device: str | torch.device | None = None,
    tile: int | None = None,
    max_megapixels: float | None = None,
    preference: Preference | None = None,
    format: str = "png",
    quality: int = 95,
) -> tuple[bytes, Result]:
    """What ``fip apply`` makes of one file: the approximation of the photo at ``path`` (downscaled to
    ``max_megapixels`` if larger), upright and encoded as ``format`` (one of :data:`fip.imaging.OUTPUT_FORMATS`)
    with the file's ICC profile and EXIF. Returns the encoded bytes and the upright result."""
    photo = open_input(path, max_megapixels)
    result = run_approximation(
        model, photo.views, params, request, operator=operator, device=device, tile=tile, preference=preference
    )
    image = photo.upright(result.image)
    data = encode_image(image, format, quality=quality, metadata=photo.metadata)
    return data, Result(image, result.seconds, result.plan, result.note)


def render_to_file(
    model: Model | str,
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    params: Mapping[str, Any] | None = None,
    request: str = AUTO,
    *,
    operator: str | None = None,
    device: str | torch.device | None = None,
    format: str = "png",
    preference: Preference | None = None,
) -> tuple[Path, Result]:
    """:func:`render` at the photo's native resolution, written atomically as
    ``out_dir/<stem>-<operator><suffix>`` (an existing file of that name is replaced: ``out_dir`` is the caller's
    scratch folder)."""
    from fip.files import atomic_write_bytes
    from fip.imaging import output_suffix

    data, result = render(
        model, path, params, request, operator=operator, device=device, preference=preference, format=format
    )
    output = Path(out_dir) / f"{Path(path).stem}-{result.plan.operator}{output_suffix(format)}"
    atomic_write_bytes(output, data)
    return output, result


__all__ = [
    "MAX_FILE_MEGABYTES",
    "MAX_MEGAPIXELS",
    "OpenedInput",
    "Result",
    "SizePolicy",
    "check_file",
    "check_size",
    "open_input",
    "open_photo",
    "render",
    "render_to_file",
    "resolve",
    "run_approximation",
    "run_reference",
]
