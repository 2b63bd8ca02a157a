"""Image conventions in one place: sRGB transfer curve, checks, resizing and file I/O.

Inside fip an image is ``(H, W, 3)`` float32 in [0, 1], RGB, sRGB-encoded unless its name says ``linear``.
uint8/uint16 and OpenCV's BGR order exist only in the readers and writers here.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from fip.errors import InputError, UnreadablePhotoError

# Extensions read by OpenCV; raw extensions are in fip.raw.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"})


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] -> sRGB-encoded values (IEC 61966-2-1 transfer curve)."""
    linear = np.clip(linear, 0.0, 1.0)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * np.power(linear, 1 / 2.4) - 0.055).astype(np.float32)


def srgb_decode(srgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] -> linear light (inverse of :func:`srgb_encode`)."""
    srgb = np.clip(srgb, 0.0, 1.0)
    return np.where(srgb <= 0.04045, srgb / 12.92, np.power((srgb + 0.055) / 1.055, 2.4)).astype(np.float32)


def check_image(image: object, name: str = "image") -> np.ndarray:
    """Raise :class:`InputError` unless ``image`` is an ``(H, W, 3)`` float array in [0, 1]; return it."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"{name} must be a NumPy array (H, W, 3) float32 in [0, 1]; got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{name} must have shape (H, W, 3); got {image.shape}. Convert grey images to RGB first.")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise InputError(f"{name} is too small: {image.shape[:2]}; at least 2x2 pixels are needed")
    if not np.issubdtype(image.dtype, np.floating):
        raise InputError(f"{name} must be float in [0, 1]; got dtype {image.dtype}. Divide integers by 255 or 65535.")
    if not np.all(np.isfinite(image)) or image.min() < 0.0 or image.max() > 1.0:
        raise InputError(f"{name} must lie in [0, 1] without NaN; got range [{image.min()}, {image.max()}]")
    return image


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


def read_image_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a PNG/JPEG/TIFF/BMP/WebP file as ``(H, W, 3)`` float32 sRGB in [0, 1] (grey is expanded, alpha dropped)."""
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if image is None:
        raise UnreadablePhotoError(f"{path}: not an image file OpenCV can decode (corrupt, empty or another format)")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    else:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return to_float(image)


def encode_png(image: np.ndarray, bits: int = 16) -> bytes:
    """``(H, W, 3)`` float in [0, 1] -> PNG bytes with 8 or 16 bits per channel."""
    quantized = np.round(np.clip(image, 0.0, 1.0) * 65535.0).astype(np.uint16) if bits == 16 else to_uint8(image)
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(quantized, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"could not encode an image of shape {image.shape} as PNG")
    return buffer.tobytes()

