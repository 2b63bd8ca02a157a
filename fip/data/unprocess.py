"""Turning an sRGB photo into a plausible raw capture ("unprocessing", Brooks et al., CVPR 2019).

sRGB -> inverse sRGB curve -> linear sRGB -> camera RGB (inverse colour matrix) -> inverse white balance ->
Bayer sampling -> shot and read noise -> black and white levels -> integer raw values. Each step inverts what
LibRaw does when it renders the file (see :mod:`fip.raw`), so rendering the result gives back the photo up to
the noise and the demosaicing error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fip.dng import DngMetadata
from fip.imaging import srgb_decode
from fip.raw import mosaic_samples

# Linear sRGB (D65) -> CIE XYZ.
XYZ_FROM_SRGB = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)

# XYZ (D65) -> camera RGB of the Canon EOS 5D Mark II, as listed in dcraw/LibRaw's adobe_coeff table (x 1e-4).
# FiveK holds many photos of this camera; any real camera matrix gives the colour pipeline real work to undo.
CANON_5D_MARK_II_XYZ_TO_CAMERA = (0.4716, 0.0603, -0.0830, -0.7798, 1.5474, 0.2480, -0.1496, 0.1937, 0.6651)


def camera_from_srgb_matrix(xyz_to_camera) -> np.ndarray:
    """``(3, 3)`` matrix from linear sRGB to white-balanced camera RGB, rows normalized so white maps to white
    (the normalization LibRaw applies to a DNG's ColorMatrix)."""
    camera_from_srgb = np.asarray(xyz_to_camera, dtype=np.float64).reshape(3, 3) @ XYZ_FROM_SRGB
    return camera_from_srgb / camera_from_srgb.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class CaptureSettings:
    """The simulated camera and exposure for one photo.

    Attributes:
        red_gain, blue_gain: white-balance multipliers of the scene light (green gain 1), as a camera would need.
        shot_noise: variance of the signal-dependent (Poisson-like) noise per unit signal, in [0, 1] raw units.
        read_noise: variance of the signal-independent noise, same units.
        bits: raw bit depth; the white level is ``2**bits - 1``.
        black_level: raw value of black.
        cfa: the Bayer pattern.
    """

    red_gain: float = 2.1
    blue_gain: float = 1.6
    shot_noise: float = 1e-3
    read_noise: float = 1e-5
    bits: int = 14
    black_level: int = 1024
    cfa: str = "RGGB"
    xyz_to_camera: tuple[float, ...] = CANON_5D_MARK_II_XYZ_TO_CAMERA

    @property
    def white_level(self) -> int:
        return 2**self.bits - 1

    @classmethod
    def random(cls, rng: np.random.Generator) -> CaptureSettings:
        """Draw daylight-like gains and noise levels as in Brooks et al. (2019), moderate ISO."""
        shot = float(np.exp(rng.uniform(np.log(2e-4), np.log(3e-3))))
        log_read = 2.18 * np.log(shot) + 1.2 + rng.normal(0.0, 0.26)
        return cls(
            red_gain=float(rng.uniform(1.9, 2.4)),
            blue_gain=float(rng.uniform(1.5, 1.9)),
            shot_noise=shot,
            read_noise=float(np.exp(log_read)),
        )

    def metadata(self, model: str = "synthetic") -> DngMetadata:
        gains = np.array([self.red_gain, 1.0, self.blue_gain])
        neutral = (1.0 / gains) / (1.0 / gains).max()
        return DngMetadata(
            cfa=self.cfa,
            black_level=self.black_level,
            white_level=self.white_level,
            xyz_to_camera=tuple(self.xyz_to_camera),
            as_shot_neutral=tuple(float(v) for v in neutral),  # type: ignore[arg-type]
            model=model,
        )


def unprocess(srgb: np.ndarray, settings: CaptureSettings, rng: np.random.Generator | None) -> np.ndarray:
    """sRGB ``(H, W, 3)`` in [0, 1] with even H, W -> raw ``(H, W)`` uint16 mosaic; ``rng=None`` adds no noise."""
    linear = srgb_decode(srgb).astype(np.float64)
    camera = linear @ camera_from_srgb_matrix(settings.xyz_to_camera).T
    gains = np.array([settings.red_gain, 1.0, settings.blue_gain])
    camera = camera / (gains / gains.min())  # LibRaw scales the smallest multiplier to 1
    signal = mosaic_samples(np.clip(camera, 0.0, 1.0), settings.cfa)
    if rng is not None:
        variance = settings.shot_noise * signal + settings.read_noise
        signal = signal + rng.normal(size=signal.shape) * np.sqrt(variance)
    span = settings.white_level - settings.black_level
    raw = np.round(settings.black_level + np.clip(signal, -settings.black_level / span, 1.0) * span)
    return raw.astype(np.uint16)
