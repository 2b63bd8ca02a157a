"""Reading photos: raw files through rawpy (LibRaw) and plain images through OpenCV, as three views.

Every photo is loaded as a :class:`Photo` with three views of the same pixels:

* ``srgb``: the network input, ``(H, W, 3)`` float32 sRGB in [0, 1];
* ``linear``: the same image before the sRGB transfer curve (scene-linear, white-balanced, sRGB primaries);
* ``mosaic``: a :class:`Mosaic`, the colour filter array samples with their pattern, white balance and colour matrix.

Raw files are rendered with these explicit LibRaw settings (:func:`postprocess_settings`):

============================  =================================================================================
white balance                 the camera's as-shot multipliers (``use_camera_wb``), never auto white balance
colour space                  camera RGB -> linear sRGB primaries through the file's colour matrix
gamma                         none from LibRaw (``gamma=(1, 1)``); fip applies the exact sRGB curve itself
bit depth                     16 bits per channel, so the linear view keeps its shadows
brightness                    ``no_auto_bright``: the white level maps to 1.0, no histogram stretch
highlights                    clipped (``highlight_mode=Clip``)
demosaic                      AHD
orientation                   ``user_flip=0``: pixels stay in sensor order; the file's rotation becomes
                              :attr:`Photo.orientation`, for callers to turn results upright
============================  =================================================================================

so ``srgb == srgb_encode(linear)`` and ``linear ≈ clip(camera_to_srgb @ (white_balance * demosaic(mosaic)))``.
The three views of a raw file share the sensor's pixel order, which the mosaic operators and cached pairs rely on.
Plain images (PNG, JPEG, TIFF) are sRGB already and read upright (orientation 1); their linear view is the decoded
sRGB, and their mosaic is the linear image sampled in an RGGB pattern with identity white balance and colour matrix
(documented, noise-free).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fip.errors import UnreadablePhotoError
from fip.imaging import IMAGE_EXTENSIONS, read_image_file, resize_area, srgb_decode, srgb_encode
from fip.mosaic import Mosaic, mosaic_samples
from fip.registry import InputKind

RAW_EXTENSIONS = frozenset(
    {
        ".dng",
        ".cr2",
        ".cr3",
        ".crw",
        ".nef",
        ".nrw",
        ".arw",
        ".srf",
        ".sr2",
        ".raf",
        ".rw2",
        ".orf",
        ".pef",
        ".srw",
        ".x3f",
        ".3fr",
        ".erf",
        ".kdc",
        ".dcr",
        ".mrw",
        ".mos",
        ".iiq",
        ".rwl",
        ".raw",
    }
)
PHOTO_EXTENSIONS = RAW_EXTENSIONS | IMAGE_EXTENSIONS

logger = logging.getLogger(__name__)

# LibRaw's ``sizes.flip`` -> EXIF Orientation. LibRaw documents 0 (none), 3 (180 degrees), 5 (90 degrees
# anticlockwise) and 6 (90 degrees clockwise) (https://www.libraw.org/docs/API-datastruct-eng.html, image_sizes_t).
# The value is three bits, as LibRaw's ``flip_index`` reads them: 4 swaps rows and columns, then 2 reverses the rows
# and 1 the columns; so 1 is a left-right mirror (EXIF 2), 2 a top-bottom mirror (EXIF 4), 4 the transpose (EXIF 5)
# and 7 the transverse (EXIF 7). LibRaw sets it from a TIFF/DNG Orientation tag o as ``"50132467"[o & 7]``
# (src/metadata/tiff.cpp), of which this table is the inverse; tests/test_raw.py checks it against LibRaw's rotation.
_FLIP_TO_ORIENTATION = {0: 1, 1: 2, 2: 4, 3: 3, 4: 5, 5: 8, 6: 6, 7: 7}


def orientation_from_flip(flip: int) -> int:
    """The EXIF Orientation (1..8) of LibRaw's ``sizes.flip``; 1, with a logged warning, for values LibRaw does
    not define."""
    orientation = _FLIP_TO_ORIENTATION.get(int(flip))
    if orientation is None:
        logger.warning("LibRaw reports an unknown image flip %r; the photo is taken as upright", flip)
        return 1
    return orientation


def postprocess_settings() -> dict:
    """The keyword arguments fip passes to ``rawpy.RawPy.postprocess`` (see the module docstring)."""
    import rawpy

    return {
        "use_camera_wb": True,
        "use_auto_wb": False,
        "output_color": rawpy.ColorSpace.sRGB,
        "gamma": (1.0, 1.0),
        "output_bps": 16,
        "no_auto_bright": True,
        "bright": 1.0,
        "highlight_mode": rawpy.HighlightMode.Clip,
        "demosaic_algorithm": rawpy.DemosaicAlgorithm.AHD,
        "user_flip": 0,
    }


@dataclass(frozen=True, eq=False)
class Photo:
    """One photo as the three views operators consume; see the module docstring.

    ``orientation`` is the EXIF Orientation (1..8) that turns the views, and results computed from them, upright
    (:func:`fip.imaging.apply_orientation`): a raw file's rotation, 1 for image files (read upright already).
    ``size`` and ``native_size`` are in the views' (sensor) order.
    """

    name: str
    srgb: np.ndarray
    linear: np.ndarray
    mosaic: Mosaic
    is_raw: bool
    native_size: tuple[int, int]
    orientation: int = 1

    @property
    def size(self) -> tuple[int, int]:
        return self.srgb.shape[:2]  # type: ignore[return-value]

    def view(self, kind: InputKind) -> np.ndarray | Mosaic:
        """The view an operator with input ``kind`` consumes."""
        return {InputKind.SRGB: self.srgb, InputKind.LINEAR_RGB: self.linear, InputKind.BAYER: self.mosaic}[
            InputKind(kind)
        ]

    def resized(self, height: int, width: int) -> Photo:
        """All three views area-resized to ``(height, width)`` (both even)."""
        if (height, width) == self.size:
            return self
        linear = resize_area(self.linear, height, width)
        srgb = srgb_encode(linear) if self.is_raw else resize_area(self.srgb, height, width)
        return replace(self, srgb=srgb, linear=linear, mosaic=self.mosaic.resized(height, width))

    def exposed(self, stops: float) -> Photo:
        """The same scene ``stops`` brighter (negative: darker), as a longer or shorter exposure records it.

        Scales light, not pixel values: the linear view and the mosaic by ``2**stops``, clipped at the white
        level as a sensor clips; the sRGB view is encoded from the new linear view. A darker exposure keeps the
        original's clipped highlights as flat grey, which a real one would have recorded.
        """
        if stops == 0:
            return self
        gain = np.float32(2.0**stops)
        linear = np.clip(self.linear * gain, 0.0, 1.0)
        mosaic = replace(self.mosaic, data=np.clip(self.mosaic.data * gain, 0.0, 1.0))
        return replace(self, srgb=srgb_encode(linear), linear=linear, mosaic=mosaic)


# Maps a native (height, width) to the wanted (height, width) (even numbers), or raises to skip the photo.
Sizing = Callable[[int, int], tuple[int, int]]  # pipeline.SizePolicy is one


def _even_crop(height: int, width: int) -> tuple[int, int]:
    return height - height % 2, width - width % 2


def load_photo(path: str | os.PathLike[str], size_policy: Sizing | None = None) -> Photo:
    """Load a raw file (any format LibRaw reads) or an image file as a :class:`Photo`.

    Args:
        path: the file.
        size_policy: maps the native size to the wanted size; ``None`` keeps the native size (cropped to even).

    Raises:
        UnreadablePhotoError: the file is not a readable image or raw file; the message names it.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in RAW_EXTENSIONS:
        return _load_raw(path, size_policy)
    if suffix in IMAGE_EXTENSIONS:
        return _load_image(path, size_policy)
    raise UnreadablePhotoError(
        f"{path}: unsupported file type {suffix or '(no extension)'!r}; fip reads "
        f"{', '.join(sorted(IMAGE_EXTENSIONS))} and raw files ({', '.join(sorted(RAW_EXTENSIONS))})"
    )


def load_srgb(path: str | os.PathLike[str]) -> np.ndarray:
    """The sRGB view of an image or raw file at its native size: image files keep odd sizes; raw files are
    rendered as :func:`load_photo` renders them. Raises :class:`UnreadablePhotoError` like it."""
    path = Path(path)
    if path.suffix.lower() in RAW_EXTENSIONS:
        return load_photo(path).srgb
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return read_image_file(path)
    return load_photo(path).srgb  # raises the unsupported-type error


def photo_from_srgb(srgb: np.ndarray, name: str = "image", size_policy: Sizing | None = None) -> Photo:
    """A :class:`Photo` of an sRGB image ``(H, W, 3)`` float32 in [0, 1], as image files are read: sized by
    ``size_policy`` (default: cropped to even sides), its linear view decoded from the sRGB, its mosaic sampled
    from that in an RGGB pattern."""
    native = srgb.shape[:2]
    height, width = size_policy(*native) if size_policy else _even_crop(*native)
    if (height, width) == _even_crop(*native):
        srgb = srgb[:height, :width]  # cropping one row/column beats resampling the whole photo
    srgb = resize_area(srgb, height, width)
    linear = srgb_decode(srgb)
    mosaic = Mosaic(mosaic_samples(linear, "RGGB"))
    return Photo(name, srgb, linear, mosaic, is_raw=False, native_size=native)


def _load_image(path: Path, size_policy: Sizing | None) -> Photo:
    return photo_from_srgb(read_image_file(path), path.stem, size_policy)


def _cfa_string(raw) -> str:
    pattern = np.asarray(raw.raw_pattern)
    desc = raw.color_desc.decode()
    if pattern.shape != (2, 2) or desc not in ("RGBG", "RGB"):
        raise UnreadablePhotoError(
            f"colour filter {desc!r} with pattern {pattern.tolist()} is not a 2x2 Bayer CFA; "
            "X-Trans and Foveon sensors are not supported"
        )
    return "".join(desc[i] for i in pattern.reshape(-1))


def _libraw_reason(exc: Exception) -> str:
    detail = exc.args[0] if exc.args else ""
    detail = detail.decode(errors="replace") if isinstance(detail, bytes) else str(detail)
    return f"{type(exc).__name__}: {detail}"


def _load_raw(path: Path, size_policy: Sizing | None) -> Photo:
    import rawpy

    try:
        raw = rawpy.imread(str(path))
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        raise UnreadablePhotoError(
            f"{path}: LibRaw cannot read this raw file; it is corrupt, truncated or not a raw photo "
            f"({_libraw_reason(exc)})"
        ) from exc
    with raw:
        try:
            cfa = _cfa_string(raw)
            # Read before postprocess(): rendering with user_flip=0 sets sizes.flip to 0.
            orientation = orientation_from_flip(raw.sizes.flip)
            visible = raw.raw_image_visible
            native = _even_crop(*visible.shape)
            target = size_policy(*native) if size_policy else native
            # Read the mosaic before postprocess(): LibRaw reuses its buffers while rendering.
            black = np.asarray(raw.black_level_per_channel, dtype=np.float32)
            white = float(raw.white_level)
            colours = raw.raw_colors_visible[: native[0], : native[1]]
            data = (visible[: native[0], : native[1]].astype(np.float32) - black[colours]) / (white - black[colours])
            visible_shape = visible.shape
            # half_size skips demosaicing; good enough whenever we downscale by two or more anyway.
            half = target[0] * 2 <= native[0] and target[1] * 2 <= native[1]
            rendered = raw.postprocess(half_size=half, **postprocess_settings())
            multipliers = np.asarray(raw.camera_whitebalance[:3], dtype=np.float32)
            rgb_cam = np.asarray(raw.color_matrix, dtype=np.float32)[:, :3]
        except rawpy.LibRawError as exc:
            raise UnreadablePhotoError(
                f"{path}: LibRaw could not decode the image data; the file looks truncated or corrupt "
                f"({_libraw_reason(exc)})"
            ) from exc
    if multipliers.min() <= 0:
        raise UnreadablePhotoError(f"{path}: the file has no as-shot white balance; fip needs one to render it")
    mosaic = Mosaic(
        np.clip(data, 0.0, 1.0),
        cfa=cfa,
        white_balance=multipliers / multipliers.min(),
        camera_to_srgb=rgb_cam,
        black_level=tuple(int(b) for b in raw.black_level_per_channel),
        white_level=int(white),
    )
    linear = rendered.astype(np.float32) / 65535.0
    if not half:
        if linear.shape[:2] != visible_shape:
            raise UnreadablePhotoError(
                f"{path}: LibRaw renders {linear.shape[:2]} pixels from a {visible_shape} sensor area "
                "(non-square pixels or a rotated sensor); fip cannot align its views"
            )
        linear = linear[: native[0], : native[1]]
    linear = resize_area(linear, *target)
    return Photo(
        path.stem,
        srgb_encode(linear),
        linear,
        mosaic.resized(*target),
        is_raw=True,
        native_size=native,
        orientation=orientation,
    )
