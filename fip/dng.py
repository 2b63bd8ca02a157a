"""Writing Bayer mosaics as DNG files that LibRaw (rawpy) reads like a camera's.

Used for the built-in sample set and by the tests. The DNG holds one uncompressed 16-bit CFA image with the
tags LibRaw needs: CFA pattern, black and white levels, ``ColorMatrix1`` (XYZ -> camera, D65) and
``AsShotNeutral`` (the camera RGB of a neutral grey, i.e. the inverse white balance).
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from fip.errors import InputError
from fip.files import atomic_write_bytes

_CFA_CODES = {"R": 0, "G": 1, "B": 2}
_D65 = 21  # EXIF LightSource code used by CalibrationIlluminant1


@dataclass(frozen=True)
class DngMetadata:
    """What a DNG says about its camera.

    Attributes:
        cfa: 2x2 pattern read row by row, e.g. ``"RGGB"``.
        black_level: raw value of black.
        white_level: raw value of saturation.
        xyz_to_camera: ``(3, 3)`` ColorMatrix1 (maps CIE XYZ under D65 to camera RGB).
        as_shot_neutral: ``(3,)`` camera RGB of a neutral surface under the scene light (largest = 1).
        make, model: camera identification strings.
    """

    cfa: str
    black_level: int
    white_level: int
    xyz_to_camera: tuple[float, ...]
    as_shot_neutral: tuple[float, float, float]
    make: str = "fip"
    model: str = "synthetic"


def _rationals(values, signed: bool, denominator: int = 1_000_000) -> list[int]:
    out: list[int] = []
    for value in values:
        fraction = Fraction(float(value)).limit_denominator(denominator)
        if not signed and fraction < 0:
            raise InputError(f"unsigned rational cannot hold {value}")
        out += [fraction.numerator, fraction.denominator]
    return out


def encode_dng(raw: np.ndarray, meta: DngMetadata, *, orientation: int = 1) -> bytes:
    """Encode an ``(H, W)`` uint16 mosaic and its metadata as DNG bytes (deterministic: same input, same bytes).

    ``orientation`` is the TIFF/EXIF Orientation tag (1..8) saying how the stored mosaic is turned upright (6 or 8
    for a portrait photo stored in landscape); the mosaic itself is stored as given.
    """
    import tifffile

    if isinstance(orientation, bool) or not isinstance(orientation, (int, np.integer)) or not 1 <= orientation <= 8:
        raise InputError(f"DNG orientation must be an EXIF Orientation code 1..8; got {orientation!r}")
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise InputError(f"a DNG mosaic must be a 2-D uint16 array; got {raw.dtype} {raw.shape}")
    if sorted(meta.cfa) != sorted("RGGB"):
        raise InputError(f"CFA {meta.cfa!r} must be a permutation of RGGB")
    if raw.max(initial=0) > meta.white_level:
        raise InputError(f"raw values reach {raw.max()}, above the white level {meta.white_level}")
    model = f"{meta.make} {meta.model}"
    extratags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, model, True),  # UniqueCameraModel
        (271, "s", 0, meta.make, True),  # Make
        (272, "s", 0, meta.model, True),  # Model
        (274, "H", 1, int(orientation), True),  # Orientation
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, tuple(_CFA_CODES[c] for c in meta.cfa), True),  # CFAPattern
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout: rectangular
        (50714, "I", 1, int(meta.black_level), True),  # BlackLevel
        (50717, "I", 1, int(meta.white_level), True),  # WhiteLevel
        (50721, "2i", 9, _rationals(meta.xyz_to_camera, signed=True), True),  # ColorMatrix1
        (50778, "H", 1, _D65, True),  # CalibrationIlluminant1
        (50728, "2I", 3, _rationals(meta.as_shot_neutral, signed=False), True),  # AsShotNeutral
    ]
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, raw, photometric="cfa", extratags=extratags, software=None, metadata=None)
    return buffer.getvalue()


def write_dng(path: str | os.PathLike[str], raw: np.ndarray, meta: DngMetadata, *, orientation: int = 1) -> None:
    """Write :func:`encode_dng`'s bytes to ``path`` atomically."""
    atomic_write_bytes(path, encode_dng(raw, meta, orientation=orientation))
