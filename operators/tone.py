"""Tone operators: multiscale tone manipulation on sRGB photos and tone mapping of scene-linear RGB."""

from __future__ import annotations

import cv2
import numpy as np

from fip import InputKind, Param, register_operator
from fip.imaging import srgb_encode

from ._common import fast_local_laplacian, forward_differences, luminance, wls_smooth


def farbman_wls(values: np.ndarray, guide_log: np.ndarray, lam: float, alpha: float) -> np.ndarray:
    """Farbman et al.'s edge-preserving WLS smoothing: weights 1 / (|d log L|^alpha + 1e-4)."""
    dx, dy = forward_differences(guide_log)
    wx = 1.0 / (np.abs(dx) ** alpha + 1e-4)
    wy = 1.0 / (np.abs(dy) ** alpha + 1e-4)
    return wls_smooth(values, wx.astype(np.float32), wy.astype(np.float32), lam)


def _sigmoid_boost(x: np.ndarray, slope: float) -> np.ndarray:
    """Farbman's S-curve on a layer: slope ``slope`` at 0, saturating at +-0.5 (L in [0, 1] units)."""
    return 1.0 / (1.0 + np.exp(-4.0 * slope * x)) - 0.5


@register_operator(
    "tone.multiscale",
    description="Multiscale tone manipulation: WLS base/detail decomposition of CIELAB lightness, boosted detail.",
    params=[
        Param("fine_lambda", 0.125, low=0.01, high=10.0, description="WLS smoothness of the fine decomposition"),
        Param("coarse_lambda", 2.0, low=0.05, high=50.0, description="WLS smoothness of the coarse base layer"),
        Param("alpha", 1.2, low=1.0, high=2.0, description="WLS edge sensitivity exponent"),
        Param("fine_boost", 4.0, low=0.0, high=10.0, description="gain of the fine detail layer"),
        Param("medium_boost", 2.0, low=0.0, high=10.0, description="gain of the medium detail layer"),
        Param("base_gain", 1.5, low=0.0, high=3.0, description="contrast gain of the base layer around its mean"),
        Param("exposure", 1.0, low=0.2, high=3.0, description="exposure factor of the base layer"),
        Param("saturation", 1.0, low=0.0, high=3.0, description="chroma gain (CIELAB a*, b*)"),
    ],
    citation="Farbman, Fattal, Lischinski and Szeliski, Edge-Preserving Decompositions for Multi-Scale Tone and "
    "Detail Manipulation, SIGGRAPH 2008",
)
def multiscale_tone(
    image: np.ndarray,
    *,
    fine_lambda: float,
    coarse_lambda: float,
    alpha: float,
    fine_boost: float,
    medium_boost: float,
    base_gain: float,
    exposure: float,
    saturation: float,
) -> np.ndarray:
    lab = cv2.cvtColor(image.astype(np.float32), cv2.COLOR_RGB2Lab)
    lightness = lab[..., 0] / 100.0
    guide = np.log(lightness + 1e-4)
    fine = farbman_wls(lightness, guide, fine_lambda, alpha)
    base = farbman_wls(lightness, guide, coarse_lambda, alpha)
    mean = float(base.mean())
    # L' = mu + S(base contrast) + S(medium detail) + S(fine detail), as in Farbman et al., Sec. 6.
    out = (
        mean
        + _sigmoid_boost(exposure * base - mean, base_gain)
        + _sigmoid_boost(fine - base, medium_boost)
        + _sigmoid_boost(lightness - fine, fine_boost)
    )
    lab[..., 0] = np.clip(out, 0.0, 1.0) * 100.0
    lab[..., 1:] *= saturation
    return np.clip(cv2.cvtColor(lab, cv2.COLOR_Lab2RGB), 0.0, 1.0)


_GLOBAL_OPERATORS = ("reinhard", "drago", "mantiuk", "none")


@register_operator(
    "tone.mapping",
    description="Tone mapping of scene-linear camera RGB: local Laplacian range compression of log luminance, "
    "then a global operator (Reinhard, Drago or Mantiuk), then sRGB encoding.",
    params=[
        Param("compression", 0.4, low=0.0, high=1.0, description="large-scale contrast kept in log luminance (beta)"),
        Param("detail", 1.0, low=0.1, high=4.0, description="detail exponent alpha: < 1 enhances local detail"),
        Param("saturation", 0.7, low=0.0, high=1.5, description="colour saturation exponent"),
        Param("global_operator", "reinhard", choices=_GLOBAL_OPERATORS, description="global curve after compression"),
    ],
    input=InputKind.LINEAR_RGB,
    citation="Paris, Hasinoff and Kautz, SIGGRAPH 2011 (local Laplacian tone mapping); Reinhard et al. 2002; "
    "Drago et al. 2003; Mantiuk et al. 2006",
)
def tone_mapping(
    linear: np.ndarray, *, compression: float, detail: float, saturation: float, global_operator: str
) -> np.ndarray:
    radiance = linear.astype(np.float32) + 1e-4  # zeros would give NaN in the logarithms and OpenCV's operators
    lum = luminance(radiance)
    log_lum = np.log(lum)
    # Paris et al.: sigma_r = log(2.5) separates detail from edges in log luminance.
    compressed = fast_local_laplacian(log_lum, float(np.log(2.5)), detail, compression, residual_scale=compression)
    compressed -= np.percentile(compressed, 99.5)  # the brightest 0.5 % map to 1
    new_lum = np.exp(compressed)
    hdr = np.power(radiance / lum[..., None], saturation) * new_lum[..., None]
    hdr = np.ascontiguousarray(hdr[..., ::-1], dtype=np.float32)  # OpenCV's operators take BGR
    mapped = _global_curve(hdr, global_operator)
    mapped = np.nan_to_num(mapped[..., ::-1], nan=0.0, posinf=1.0)
    mapped = mapped / max(float(np.percentile(mapped, 99.5)), 1e-6)
    return srgb_encode(np.clip(mapped, 0.0, 1.0))


def _global_curve(hdr: np.ndarray, global_operator: str) -> np.ndarray:
    """OpenCV's global tone curves on BGR radiance, with gamma 1 (fip applies the sRGB curve itself)."""
    if global_operator == "none":
        return hdr
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # silence a MatExpr notice inside OpenCV
    try:
        return _GLOBAL_CURVES[global_operator]().process(hdr)
    finally:
        cv2.utils.logging.setLogLevel(level)


_GLOBAL_CURVES = {
    "reinhard": lambda: cv2.createTonemapReinhard(gamma=1.0, intensity=0.0, light_adapt=0.8, color_adapt=0.0),
    "drago": lambda: cv2.createTonemapDrago(gamma=1.0, saturation=1.0, bias=0.85),
    "mantiuk": lambda: cv2.createTonemapMantiuk(gamma=1.0, scale=0.85, saturation=1.0),
}
