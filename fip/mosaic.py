"""Bayer mosaics: the colour filter array samples of a raw photo, with what renders them (:class:`Mosaic`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from fip.errors import InputError
from fip.imaging import resize_area

CFA_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
_CHANNEL_INDEX = {"R": 0, "G": 1, "B": 2}


@dataclass(frozen=True, eq=False)
class Mosaic:
    """A Bayer mosaic with what is needed to render it like the sRGB view.

    Attributes:
        data: ``(H, W)`` float32 in [0, 1]: ``(raw - black) / (white - black)``, clipped; H and W even.
        cfa: colours of the 2x2 tile read row by row, one of ``RGGB``, ``BGGR``, ``GRBG``, ``GBRG``
            (OpenCV's ``BayerBG`` and kornia's ``CFA.BG`` both mean ``RGGB``).
        white_balance: ``(3,)`` R, G, B multipliers applied to camera RGB, smallest = 1 (LibRaw's convention).
        camera_to_srgb: ``(3, 3)`` matrix from white-balanced camera RGB to linear sRGB primaries.
        black_level: black level per 2x2 tile position, in raw units (metadata).
        white_level: white level in raw units (metadata).
    """

    data: np.ndarray
    cfa: str = "RGGB"
    white_balance: np.ndarray = field(default_factory=lambda: np.ones(3, dtype=np.float32))
    camera_to_srgb: np.ndarray = field(default_factory=lambda: np.eye(3, dtype=np.float32))
    black_level: tuple[int, ...] = (0, 0, 0, 0)
    white_level: int = 1

    def __post_init__(self) -> None:
        if self.cfa not in CFA_PATTERNS:
            raise InputError(f"CFA pattern {self.cfa!r} is not one of {', '.join(CFA_PATTERNS)}")
        if self.data.ndim != 2 or self.data.shape[0] % 2 or self.data.shape[1] % 2:
            raise InputError(f"a mosaic must be (H, W) with even H and W; got shape {self.data.shape}")

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape  # type: ignore[return-value]

    def channel_index(self) -> np.ndarray:
        """``(H, W)`` int array: the colour (0 R, 1 G, 2 B) each pixel samples."""
        tile = np.array([_CHANNEL_INDEX[c] for c in self.cfa]).reshape(2, 2)
        height, width = self.shape
        return np.tile(tile, (height // 2, width // 2))

    def resized(self, height: int, width: int) -> Mosaic:
        """Resample to an even ``(height, width)`` keeping the CFA: each of the four 2x2 tile positions is a
        half-resolution plane, area-resized on its own and interleaved again. Averaging same-colour samples
        lowers the noise, as binning on a sensor would."""
        if (height, width) == self.shape:
            return self
        if height % 2 or width % 2:
            raise InputError(f"a mosaic's size must be even; got ({height}, {width})")
        out = np.empty((height, width), dtype=np.float32)
        for dy in (0, 1):
            for dx in (0, 1):
                out[dy::2, dx::2] = resize_area(self.data[dy::2, dx::2], height // 2, width // 2)
        return replace(self, data=out)

    def render_linear(self, camera_rgb: np.ndarray) -> np.ndarray:
        """Demosaiced camera RGB ``(H, W, 3)`` -> linear sRGB view, with LibRaw's clipping order."""
        balanced = np.clip(camera_rgb * self.white_balance.astype(np.float32), 0.0, 1.0)
        return np.clip(balanced @ self.camera_to_srgb.T.astype(np.float32), 0.0, 1.0).astype(np.float32)


def mosaic_samples(camera_rgb: np.ndarray, cfa: str = "RGGB") -> np.ndarray:
    """Sample an ``(H, W, 3)`` image in a Bayer pattern -> ``(H, W)``; H and W must be even."""
    height, width = camera_rgb.shape[:2]
    if height % 2 or width % 2:
        raise InputError(f"a mosaic needs even height and width; got ({height}, {width})")
    out = np.empty((height, width), dtype=camera_rgb.dtype)
    for position, colour in enumerate(cfa):
        dy, dx = divmod(position, 2)
        out[dy::2, dx::2] = camera_rgb[dy::2, dx::2, _CHANNEL_INDEX[colour]]
    return out


__all__ = ["CFA_PATTERNS", "Mosaic", "mosaic_samples"]
