"""Dehazing operators, on the haze imaging model I = J t + A (1 - t).

Each function takes an sRGB image ``(H, W, 3)`` float32 in [0, 1] and returns one of the same shape.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from fip import Param, register_operator

from ._common import forward_differences, luminance, wls_smooth


def dark_channel(image: np.ndarray, patch: int) -> np.ndarray:
    """Minimum over the colour channels, then over a ``patch`` x ``patch`` window (an erosion)."""
    return cv2.erode(image.min(axis=2), np.ones((patch, patch), np.uint8))


def estimate_airlight(image: np.ndarray, dark: np.ndarray, fraction: float = 0.001) -> np.ndarray:
    """He et al.: among the brightest ``fraction`` of the dark channel, the pixel of highest intensity."""
    count = max(1, int(dark.size * fraction))
    candidates = np.argpartition(dark.ravel(), -count)[-count:]
    pixels = image.reshape(-1, 3)[candidates]
    return pixels[pixels.sum(axis=1).argmax()].astype(np.float32)


@register_operator(
    "dehaze.dark_channel",
    description="Dark channel prior dehazing with guided-filter refinement of the transmission.",
    params=[
        Param("patch", 15, low=3, high=61, description="dark channel window, pixels", length=True),
        Param("omega", 0.95, low=0.5, high=1.0, description="fraction of the haze removed"),
        Param("t_min", 0.1, low=0.01, high=0.5, description="lower bound of the transmission"),
        Param("radius", 60, low=4, high=200, description="guided filter radius, pixels", length=True),
        Param("epsilon", 1e-4, low=1e-6, high=1e-1, description="guided filter regularization"),
    ],
    citation="He, Sun and Tang, Single Image Haze Removal Using Dark Channel Prior, CVPR 2009; "
    "He, Sun and Tang, Guided Image Filtering, ECCV 2010",
)
def dark_channel_dehaze(
    image: np.ndarray, *, patch: int, omega: float, t_min: float, radius: int, epsilon: float
) -> np.ndarray:
    airlight = estimate_airlight(image, dark_channel(image, patch))
    normalized = image / np.maximum(airlight, 1e-3)
    transmission = 1.0 - omega * dark_channel(normalized.astype(np.float32), patch)
    guide = luminance(image)
    transmission = cv2.ximgproc.guidedFilter(guide, transmission.astype(np.float32), radius, epsilon)
    transmission = np.maximum(transmission, t_min)[..., None]
    return (image - airlight) / transmission + airlight


@lru_cache(maxsize=4)
def _sphere_points(count: int) -> np.ndarray:
    """``count`` nearly uniform directions on the unit sphere (Fibonacci lattice), used to cluster haze lines."""
    index = np.arange(count) + 0.5
    polar = np.arccos(1.0 - 2.0 * index / count)
    azimuth = np.pi * (1.0 + 5.0**0.5) * index
    return np.stack([np.cos(azimuth) * np.sin(polar), np.sin(azimuth) * np.sin(polar), np.cos(polar)], axis=1)


@register_operator(
    "dehaze.nonlocal",
    description="Non-local dehazing: pixels cluster into haze lines toward the airlight; per-line transmission, "
    "then a weighted least-squares regularization.",
    params=[
        Param("lines", 1000, low=100, high=5000, description="number of haze lines (directions on the sphere)"),
        Param("lambda_", 0.1, low=1e-3, high=10.0, description="regularization weight of the transmission"),
        Param("t_min", 0.1, low=0.01, high=0.5, description="lower bound of the transmission"),
        Param("leave_haze", 1.06, low=1.0, high=1.2, description="keeps a little haze for a natural look"),
    ],
    citation="Berman, Treibitz and Avidan, Non-Local Image Dehazing, CVPR 2016",
)
def nonlocal_dehaze(image: np.ndarray, *, lines: int, lambda_: float, t_min: float, leave_haze: float) -> np.ndarray:
    from scipy.spatial import cKDTree

    height, width, _ = image.shape
    # Airlight from the dark channel prior (Berman et al. estimate it separately; any good estimate serves).
    airlight = estimate_airlight(image, dark_channel(image, 15))
    offset = (image - airlight).reshape(-1, 3)
    radius = np.linalg.norm(offset, axis=1)
    directions = offset / np.maximum(radius, 1e-6)[:, None]
    _, line = cKDTree(_sphere_points(lines)).query(directions, workers=1)
    # Per haze line: the farthest pixel from the airlight is taken as haze-free (t = 1).
    max_radius = np.zeros(lines)
    np.maximum.at(max_radius, line, radius)
    estimate = radius / np.maximum(max_radius[line], 1e-6)
    lower_bound = 1.0 - (image / np.maximum(airlight, 1e-3)).min(axis=2).ravel()
    estimate = np.maximum(np.clip(estimate, t_min, 1.0), lower_bound)
    # Reliability: small lines and lines with little spread in radius say little about t.
    counts = np.bincount(line, minlength=lines).astype(np.float64)
    sums = np.bincount(line, weights=radius, minlength=lines)
    squares = np.bincount(line, weights=radius * radius, minlength=lines)
    spread = np.sqrt(np.maximum(squares / np.maximum(counts, 1) - (sums / np.maximum(counts, 1)) ** 2, 0.0))[line]
    reliability = np.minimum(1.0, 3.0 * np.maximum(0.001, spread / max(spread.max(), 1e-6) - 0.1))
    data_weight = (np.minimum(1.0, counts[line] / 50.0) * reliability).reshape(height, width)
    dx, dy = forward_differences(luminance(image))
    wx = (1.0 / (dx * dx + 1e-5)).astype(np.float32)
    wy = (1.0 / (dy * dy + 1e-5)).astype(np.float32)
    transmission = wls_smooth(estimate.reshape(height, width).astype(np.float32), wx, wy, lambda_, data=data_weight)
    transmission = np.clip(transmission, t_min, 1.0)[..., None]
    dehazed = np.clip((image - (1.0 - leave_haze * transmission) * airlight) / transmission, 0.0, 1.0)
    # Berman et al.'s display step: a linear stretch per channel clipping 0.5 % at each end.
    low, high = np.percentile(dehazed.reshape(-1, 3), [0.5, 99.5], axis=0)
    return (dehazed - low) / np.maximum(high - low, 1e-6)
