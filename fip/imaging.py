"""Image conventions in one place: sRGB transfer curve, checks, resizing, orientation and file I/O.

Inside fip an image is ``(H, W, 3)`` float32 in [0, 1], RGB, sRGB-encoded unless its name says ``linear``, and
upright. uint8/uint16, OpenCV's BGR order, EXIF orientation and the files' metadata exist only in the readers and
writers here:

* :func:`read_image_file` reads pixels upright (the file's EXIF or TIFF orientation applied);
* :func:`read_metadata` reads what outputs carry on (ICC profile, EXIF with its orientation reset to 1);
* :func:`encode_image` writes one of :data:`OUTPUT_FORMATS` with that metadata.
"""

from __future__ import annotations

import io
import logging
import os
import struct
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np

from fip.errors import InputError, UnreadablePhotoError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"})
"""File extensions read as images (by OpenCV); raw files' extensions are ``fip.raw.RAW_EXTENSIONS``."""


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] -> sRGB-encoded values (IEC 61966-2-1 transfer curve)."""
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055).astype(np.float32)


def srgb_decode(srgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear light (inverse of :func:`srgb_encode`), float32; through fip's CPU
    kernel (a fine table, within 1e-9 of the formula) where it is available."""
    from fip.runtime.kernels import srgb_decode as tabulated  # imported here: it loads torch and numba

    fast = tabulated(srgb)
    if fast is not None:
        return fast
    srgb = np.clip(srgb, 0.0, 1.0)
    return np.where(srgb <= 0.04045, srgb / 12.92, np.power((srgb + 0.055) / 1.055, 2.4)).astype(np.float32)


def check_image(image: object, name: str = "image") -> np.ndarray:
    """Raise :class:`InputError` unless ``image`` is an ``(H, W, 3)`` float array in [0, 1]; return it."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"{name} must be a NumPy array (H, W, 3) float32 in [0, 1]; got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{name} must have shape (H, W, 3); got {image.shape}. {shape_hint(image.shape)}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise InputError(f"{name} is too small: {image.shape[:2]}; at least 2x2 pixels are needed")
    if not np.issubdtype(image.dtype, np.floating):
        raise InputError(f"{name} must be float in [0, 1]; got dtype {image.dtype}. Divide integers by 255 or 65535.")
    if not np.all(np.isfinite(image)) or image.min() < 0.0 or image.max() > 1.0:
        raise InputError(f"{name} must lie in [0, 1] without NaN; got range [{image.min()}, {image.max()}]")
    return image


def shape_hint(shape: tuple[int, ...]) -> str:
    """How to turn an array of ``shape`` into the ``(H, W, 3)`` RGB fip takes: the fix for what it most likely is."""
    if len(shape) == 2 or (len(shape) == 3 and shape[2] == 1):
        return "It looks grey: repeat it to RGB first (np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=2))."
    if len(shape) == 3 and shape[2] == 2:
        return "It has 2 channels (grey and alpha): repeat the grey one to RGB first (np.repeat(image[..., :1], 3, axis=2))."
    if len(shape) == 3 and shape[2] == 4:
        return "It has 4 channels (RGBA): drop the alpha first (image[..., :3])."
    if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] > 4:
        return "It looks channels-first (C, H, W): move the channels last first (image.transpose(1, 2, 0))."
    if len(shape) == 4:
        return "It looks like a batch: pass one image at a time, or a torch tensor (B, 3, H, W)."
    return "Give one RGB image, height by width by 3 channels."


def resize_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize with pixel-area averaging (the right filter for downscaling); a no-op at the same size.

    Area averages lie within the input's range; OpenCV's float32 weights can overshoot it by a few 1e-7 (an
    all-ones image became 1.0000002), which operators that check ``[0, 1]`` refuse, so the result is clipped back.
    """
    if image.shape[:2] == (height, width):
        return image
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return np.clip(resized, image.min(), image.max(), out=resized)


def to_float(array: np.ndarray) -> np.ndarray:
    """uint8 / uint16 / float array -> float32 in [0, 1]."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    return np.clip(array.astype(np.float32), 0.0, 1.0)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` float in [0, 1] -> uint8 for display (rounded, clipped)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


# EXIF Orientation code -> how to turn the stored pixels upright (what a viewer shows). The codes name where the
# stored first row and column belong: 1 top-left (as stored), 2 mirrored left-right, 3 turned 180 degrees,
# 4 mirrored top-bottom, 5 transposed, 6 stored turned 90 degrees anticlockwise (turn clockwise to view),
# 7 transverse, 8 stored turned 90 degrees clockwise (turn anticlockwise to view).
_UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}
# Turning 90 degrees one way is undone by turning the other; every other transform undoes itself.
_INVERSE_ORIENTATION = {6: 8, 8: 6}
ORIENTATION_TAG = 0x0112  # EXIF/TIFF Orientation


def check_orientation(orientation: object) -> int:
    """Return ``orientation`` if it is an EXIF Orientation code (an int 1..8); raise :class:`InputError` otherwise."""
    if isinstance(orientation, bool) or not isinstance(orientation, (int, np.integer)) or orientation not in _UPRIGHT:
        raise InputError(f"EXIF orientation must be an integer 1..8 (1: upright as stored); got {orientation!r}")
    return int(orientation)


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn pixels stored under EXIF Orientation ``orientation`` upright, as a viewer shows the file.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` array of any dtype, in stored order.
        orientation: EXIF Orientation code 1..8 (codes 5 to 8 swap height and width).

    Returns:
        A C-contiguous array (``image`` itself for code 1), ``(W, H, ...)`` for codes 5 to 8.
    """
    code = check_orientation(orientation)
    return image if code == 1 else np.ascontiguousarray(_UPRIGHT[code](image))


def undo_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """The inverse of :func:`apply_orientation`: upright pixels back to the order stored under ``orientation``."""
    code = check_orientation(orientation)
    return apply_orientation(image, _INVERSE_ORIENTATION.get(code, code))


def read_image_file(path: str | os.PathLike[str], data: bytes | None = None) -> np.ndarray:
    """Read a PNG/JPEG/TIFF/BMP/WebP file upright as ``(H, W, 3)`` float32 sRGB in [0, 1] (from ``data``, the
    file's bytes, when the caller has read them already).

    The file's orientation is applied (EXIF in JPEG, PNG and WebP; the Orientation tag in TIFF); 16-bit files keep
    their 16 bits; grey is expanded to RGB and alpha dropped.

    Raises:
        UnreadablePhotoError: the file is not an image OpenCV can decode.
    """
    data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.fromfile(path, dtype=np.uint8)
    # IMREAD_UNCHANGED would skip the EXIF orientation; ANYCOLOR | ANYDEPTH keeps the bit depth and applies it.
    # OpenCV's TIFF decoder applies the TIFF Orientation tag whatever the flags. IMREAD_COLOR_RGB would spare the
    # BGR swap but decodes 16-bit RGB TIFF as zeros in OpenCV 5.0.
    try:
        image = cv2.imdecode(data, cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH) if data.size else None
    except cv2.error as exc:  # e.g. a header declaring a size past OpenCV's own limits
        reason = str(exc).strip().splitlines()[-1]
        raise UnreadablePhotoError(
            f"{path}: OpenCV refuses to decode it (damaged or hostile header: {reason})"
        ) from None
    if image is None:
        raise UnreadablePhotoError(f"{path}: not an image file OpenCV can decode (corrupt, empty or another format)")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return to_float(image)


@dataclass(frozen=True)
class PhotoMetadata:
    """What a photo file says about its pixels that outputs should carry on.

    Attributes:
        icc_profile: the embedded ICC colour profile, or ``None`` (the pixels are then taken as sRGB).
        exif: an EXIF block as JPEG's APP1 segment holds it (``b"Exif\\0\\0"``, then a TIFF header and IFDs), or
            ``None``. :func:`read_metadata` resets its Orientation to 1 (fip reads pixels upright) and
            :func:`encode_image` does so again on writing, with the pixel size it writes.
    """

    icc_profile: bytes | None = None
    exif: bytes | None = None


# The tags EXIF keeps in IFD0. A TIFF file's IFD0 is also its image directory; its other tags (strip offsets,
# bit depth, compression) describe that file's pixel layout and would be wrong in any other file.
_EXIF_POINTERS = (0x8769, 0x8825)  # Exif IFD, GPS IFD
# IFD0's descriptions and resolution, and the pointers to the Exif and GPS IFDs.
_EXIF_IFD0_TAGS = frozenset({270, 271, 272, ORIENTATION_TAG, 282, 283, 296, 305, 306, 315, 33432, *_EXIF_POINTERS})
_INTEROP_POINTER = 0xA005  # inside the Exif IFD
_ICC_TAG = 34675  # InterColorProfile, in a TIFF's IFD0
_JPEG_MAX_EXIF = 65533  # one APP1 segment: 65535 bytes less its length field


@contextmanager
def _warnings_as_damage() -> Iterator[None]:
    """Raise ``ValueError`` after the block if PIL warned: it warns, rather than raises, on corrupt EXIF entries."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    damage = [w for w in caught if issubclass(w.category, UserWarning)]
    if damage:
        raise ValueError(str(damage[0].message).strip())


def _serialise_exif(exif, size: tuple[int, int] | None = None) -> bytes | None:
    """A parsed PIL ``Image.Exif`` as bytes with Orientation 1 (and the pixel size ``(height, width)`` the Exif IFD
    states, when given and stated); ``None`` if it holds no tags."""
    if not len(exif):
        return None
    exif[ORIENTATION_TAG] = 1
    # A pointer is an offset in a parsed block (get_ifd() reads and caches the dict tobytes() writes) or, built
    # from a TIFF file, the dict itself.
    nested = {
        pointer: exif[pointer] if isinstance(exif[pointer], dict) else exif.get_ifd(pointer)
        for pointer in _EXIF_POINTERS
        if pointer in exif
    }
    for directory in [exif, *nested.values()]:
        for tag, value in directory.items():
            if isinstance(value, str) and not value.isascii():
                # PIL reads EXIF text as Latin-1 and writes it as ASCII with "?" for the rest; its bytes again keep
                # the camera's text (often UTF-8) as it was.
                directory[tag] = value.encode("latin-1", "replace")
    if size is not None and 0x8769 in nested:
        for tag, value in ((0xA002, size[1]), (0xA003, size[0])):  # PixelXDimension, PixelYDimension
            if tag in nested[0x8769]:
                nested[0x8769][tag] = value
    return exif.tobytes()


def _clean_exif(block: bytes, source: object, size: tuple[int, int] | None = None) -> bytes | None:
    """An EXIF block (with or without its ``Exif\\0\\0`` header) re-written by :func:`_serialise_exif`; ``None``
    for a block without tags, or for a damaged one, which is dropped with a logged warning naming ``source``."""
    from PIL import Image

    try:
        with _warnings_as_damage():
            exif = Image.Exif()
            exif.load(block)
            return _serialise_exif(exif, size)
    except Exception as exc:  # PIL's EXIF parser fails on damage in many ways (struct, Syntax...)
        logger.warning("%s: the EXIF block is damaged (%s); it is left out of the outputs", source, exc)
        return None


@contextmanager
def _binary(path: Path, data: bytes | None) -> Iterator[Any]:
    """The file at ``path`` opened for reading, or its bytes ``data`` as a file when the caller has read them."""
    if data is not None:
        yield io.BytesIO(data)
    else:
        with open(path, "rb") as file:
            yield file


def _png_chunk(path: Path, kind: bytes, data: bytes | None = None) -> bytes | None:
    """The data of the first ``kind`` chunk of a PNG file, found by skipping from chunk header to chunk header."""
    with _binary(path, data) as file:
        file.seek(8)  # the PNG signature
        while len(header := file.read(8)) == 8:
            length, name = struct.unpack(">I4s", header)
            if name == kind:
                return file.read(length)
            if name == b"IEND":
                break
            file.seek(length + 4, os.SEEK_CUR)  # data and CRC
    return None


def _tiff_metadata(path: Path, data: bytes | None = None) -> PhotoMetadata:
    """The ICC profile and EXIF of a file in a TIFF container (TIFF images and most raw formats), from its IFD0."""
    from PIL import Image

    try:
        with _binary(path, data) as file, _warnings_as_damage():
            found = Image.Exif()
            found.load_from_fp(file)  # IFD0 only; the sub-IFDs are read below while the file is open
            icc_profile = found.get(_ICC_TAG)
            exif = Image.Exif()
            for tag in _EXIF_IFD0_TAGS.intersection(found):
                exif[tag] = found[tag]
            for pointer in _EXIF_POINTERS:
                if pointer in found:
                    exif[pointer] = dict(found.get_ifd(pointer))
            if isinstance(exif.get(0x8769), dict):
                exif[0x8769].pop(_INTEROP_POINTER, None)  # an offset into this file; the index it holds is moot
            return PhotoMetadata(
                icc_profile if isinstance(icc_profile, bytes) and icc_profile else None, _serialise_exif(exif)
            )
    except Exception as exc:  # see _clean_exif
        logger.warning("%s: its TIFF tags are damaged (%s); no ICC profile or EXIF is carried", path, exc)
        return PhotoMetadata()


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def read_metadata(path: str | os.PathLike[str], data: bytes | None = None) -> PhotoMetadata:
    """The ICC profile and EXIF of an image file, read from the file's header (pixels are not decoded), or from
    ``data``, the file's bytes, when the caller has read them already.

    The EXIF's Orientation is reset to 1, since :func:`read_image_file` reads the pixels upright. A file without
    metadata gives ``PhotoMetadata(None, None)``; a damaged EXIF block is dropped with a logged warning, and so is
    all metadata of a file that cannot be parsed. Raw files in a TIFF container (DNG, NEF, CR2, ARW, PEF, ...) give
    their camera's EXIF (Orientation 1: results are turned upright); other raw formats give none.

    Raises:
        UnreadablePhotoError: no such file, or not a file.
    """
    from PIL import Image

    path = Path(path)
    if data is None and not path.is_file():
        raise UnreadablePhotoError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    with _binary(path, data) as file:
        if file.read(4) in _TIFF_MAGIC:
            return _tiff_metadata(path, data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is judged elsewhere
            # PIL warns about damaged EXIF while opening a JPEG; _clean_exif parses it again and logs the damage.
            warnings.simplefilter("ignore", UserWarning)
            with _binary(path, data) as file, Image.open(file) as image:
                icc_profile = image.info.get("icc_profile") or None
                block = image.info.get("exif")
                if block is None and image.format == "PNG":  # an eXIf chunk after the pixel data
                    block = _png_chunk(path, b"eXIf", data)
                exif = _clean_exif(block, path) if block else None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        level = logging.WARNING if path.suffix.lower() in IMAGE_EXTENSIONS else logging.DEBUG
        logger.log(level, "%s: could not read its ICC profile and EXIF (%s); the outputs carry none", path, exc)
        return PhotoMetadata()
    return PhotoMetadata(icc_profile=icc_profile, exif=exif)


@dataclass(frozen=True)
class OutputFormat:
    """A file format fip writes results in.

    Attributes:
        name: the name users give (``--format``).
        suffix: the file name suffix, with its dot.
        bits: bits per channel.
        description: one line for help texts.
    """

    name: str
    suffix: str
    bits: int
    description: str


OUTPUT_FORMATS: Mapping[str, OutputFormat] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            OutputFormat("png", ".png", 8, "PNG, 8 bits per channel, lossless"),
            OutputFormat("png16", ".png", 16, "PNG, 16 bits per channel, lossless"),
            OutputFormat("tiff16", ".tif", 16, "TIFF, 16 bits per channel, lossless (deflate)"),
            OutputFormat("jpeg", ".jpg", 8, "JPEG, 8 bits per channel, lossy (quality 1..100)"),
        )
    }
)
"""The formats results are written in, by name (``--format``)."""


def output_format(name: str) -> OutputFormat:
    """The :class:`OutputFormat` called ``name``; :class:`InputError` naming the choices for any other name."""
    spec = OUTPUT_FORMATS.get(name) if isinstance(name, str) else None
    if spec is None:
        raise InputError(f"unknown output format {name!r}; choose one of {', '.join(OUTPUT_FORMATS)}")
    return spec


def output_suffix(format: str) -> str:
    """The file name suffix of output format ``format`` (``".png"``, ``".tif"``, ``".jpg"``)."""
    return output_format(format).suffix


def _quantize(image: np.ndarray, bits: int) -> np.ndarray:
    """``(H, W, 3)`` float in [0, 1] -> rounded uint16 (``bits=16``) or uint8 (any other value), RGB."""
    return np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16) if bits == 16 else to_uint8(image)


def encode_png(image: np.ndarray, bits: int = 16) -> bytes:
    """``(H, W, 3)`` float in [0, 1] -> PNG bytes with 8 or 16 bits per channel, no metadata.

    The pair cache stores its images with this function: the same input gives the same bytes.
    """
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(_quantize(image, bits), cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"could not encode an image of shape {image.shape} as PNG")
    return buffer.tobytes()


def encode_image(
    image: np.ndarray, format: str = "png", *, quality: int = 95, metadata: PhotoMetadata | None = None
) -> bytes:
    """Encode an image as one of :data:`OUTPUT_FORMATS`, carrying ``metadata`` where the format holds it.

    PNG gets iCCP and eXIf chunks, JPEG its ICC (APP2) and EXIF (APP1) segments, TIFF the ICC profile and the EXIF
    tags of IFD0 (make, model, date, artist, copyright, description, software); the Exif and GPS IFDs (exposure,
    original date, location) are not written to TIFF. EXIF is written with Orientation 1: ``image`` is upright.
    Without metadata, ``png`` and ``png16`` give exactly :func:`encode_png`'s bytes.

    Args:
        image: ``(H, W, 3)`` float sRGB in [0, 1] (values outside are clipped).
        format: a name in :data:`OUTPUT_FORMATS`.
        quality: JPEG quality 1..100 (checked for every format; used by ``jpeg``).
        metadata: the ICC profile and EXIF to carry, e.g. :func:`read_metadata` of the source file.

    Raises:
        InputError: an unknown format, a quality outside 1..100, or an image that is not ``(H, W, 3)``.
    """
    spec = output_format(format)
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise InputError(f"JPEG quality must be an integer 1..100 (95 is near-lossless); got {quality!r}")
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"image must be an (H, W, 3) array in [0, 1]; got {getattr(image, 'shape', type(image))}")
    icc_profile = metadata.icc_profile if metadata else None
    exif = _clean_exif(metadata.exif, "the EXIF to write", image.shape[:2]) if metadata and metadata.exif else None
    if spec.name in ("png", "png16") and not (icc_profile or exif):
        return encode_png(image, spec.bits)
    pixels = _quantize(image, spec.bits)
    if spec.name in ("png", "png16"):
        return _encode_png_with(pixels, icc_profile, exif)
    if spec.name == "jpeg":
        return _encode_jpeg(pixels, int(quality), icc_profile, exif)
    return _encode_tiff(pixels, icc_profile, exif)


def _encode_png_with(pixels: np.ndarray, icc_profile: bytes | None, exif: bytes | None) -> bytes:
    kinds, blocks = [], []
    if icc_profile:
        kinds.append(cv2.IMAGE_METADATA_ICCP)
        blocks.append(np.frombuffer(icc_profile, np.uint8))
    if exif:
        # An eXIf chunk holds the TIFF structure alone (PNG extensions 1.5.0); OpenCV writes what it is given.
        kinds.append(cv2.IMAGE_METADATA_EXIF)
        blocks.append(np.frombuffer(exif.removeprefix(b"Exif\x00\x00"), np.uint8))
    ok, buffer = cv2.imencodeWithMetadata(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), kinds, blocks)
    if not ok:
        raise InputError(f"could not encode an image of shape {pixels.shape} as PNG")
    return buffer.tobytes()


def _encode_jpeg(pixels: np.ndarray, quality: int, icc_profile: bytes | None, exif: bytes | None) -> bytes:
    from PIL import Image

    options: dict = {"quality": quality, "optimize": True}
    # Full-resolution colour at high quality, as GIMP does: halved chroma blurs the colour edges that an edit of a
    # photo should keep, and costs little at that quality.
    options["subsampling"] = "4:4:4" if quality >= 90 else "4:2:0"
    if icc_profile:
        options["icc_profile"] = icc_profile
    if exif and len(exif) > _JPEG_MAX_EXIF:
        logger.warning(
            "the EXIF block is %d bytes, more than a JPEG holds (%d); it is left out", len(exif), _JPEG_MAX_EXIF
        )
    elif exif:
        options["exif"] = exif
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", **options)
    return buffer.getvalue()


# EXIF IFD0 text tags that are also TIFF tags, written into the TIFF's own IFD0.
_TIFF_TEXT_TAGS = (270, 271, 272, 306, 315, 33432)  # description, make, model, date, artist, copyright
_SOFTWARE_TAG = 305


def _encode_tiff(pixels: np.ndarray, icc_profile: bytes | None, exif: bytes | None) -> bytes:
    import tifffile
    from PIL import Image

    tags = [(ORIENTATION_TAG, "H", 1, 1, True)]
    software: str | bool = False  # tifffile names itself unless told not to
    if exif:
        parsed = Image.Exif()
        parsed.load(exif)  # already checked by _clean_exif
        for tag in _TIFF_TEXT_TAGS:
            if isinstance(parsed.get(tag), str):
                # PIL reads EXIF text as Latin-1: encoding it so gives back the bytes the EXIF held (tifffile would
                # refuse a str that is not ASCII).
                tags.append((tag, "s", 0, parsed[tag].encode("latin-1", "replace"), True))
        if isinstance(parsed.get(_SOFTWARE_TAG), str) and parsed[_SOFTWARE_TAG].isascii():
            software = parsed[_SOFTWARE_TAG]
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        pixels,
        photometric="rgb",
        compression="zlib",
        predictor=True,
        iccprofile=icc_profile,
        software=software,
        metadata=None,
        extratags=tags,
    )
    return buffer.getvalue()
