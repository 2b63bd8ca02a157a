"""Stylization operators.

Each function takes an sRGB image ``(H, W, 3)`` float32 in [0, 1] and returns one of the same shape.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from fip import Param, register_operator

from ._common import (
    collapse,
    forward_differences,
    grey_to_rgb,
    laplacian_pyramid,
    luminance,
    pyramid_levels,
    wls_smooth,
)


@register_operator(
    "style.stylize",
    description="Edge-preserving stylization (watercolour look) by domain-transform filtering.",
    params=[
        Param("sigma_s", 60.0, low=1.0, high=200.0, description="spatial extent of the smoothing, pixels", length=True),
        Param("sigma_r", 0.45, low=0.01, high=1.0, description="range sigma: how strong an edge must be to stay"),
    ],
    citation="Gastal and Oliveira, Domain Transform for Edge-Aware Image and Video Processing, SIGGRAPH 2011",
)
def stylize(image: np.ndarray, *, sigma_s: float, sigma_r: float) -> np.ndarray:
    bgr = cv2.cvtColor(np.round(image * 255.0).astype(np.uint8), cv2.COLOR_RGB2BGR)
    out = cv2.stylization(bgr, sigma_s=sigma_s, sigma_r=sigma_r)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0


_MODEL_PHOTO = Path(__file__).parent / "data" / "style_model.png"


@lru_cache(maxsize=1)
def _model_photo() -> np.ndarray:
    model = cv2.imread(str(_MODEL_PHOTO), cv2.IMREAD_GRAYSCALE)
    if model is None:
        raise FileNotFoundError(f"style.photographic's model photo {_MODEL_PHOTO} is missing; reinstall fip")
    return model.astype(np.float32) / 255.0


def _match_histogram(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Monotone remapping of ``values`` so that their distribution matches ``reference``'s (quantile matching)."""
    quantiles = np.linspace(0.0, 1.0, 1025)
    source_q = np.quantile(values, quantiles)
    reference_q = np.quantile(reference, quantiles)
    source_q = source_q + np.arange(source_q.size) * 1e-9  # strictly increasing for interpolation
    return np.interp(values, source_q, reference_q).astype(np.float32)


@register_operator(
    "style.photographic",
    description="Photographic style transfer toward a black-and-white model photo: per-scale detail statistics "
    "and tonal balance of the model (two-scale tonal + multiscale texture transfer).",
    params=[
        Param("detail_transfer", 1.0, low=0.0, high=1.0, description="how far detail amplitudes move to the model's"),
        Param("tone_transfer", 0.7, low=0.0, high=1.0, description="how far the tonal histogram moves to the model's"),
    ],
    citation="Bae, Paris and Durand, Two-scale Tone Management for Photographic Look, SIGGRAPH 2006; "
    "Aubry, Paris, Hasinoff, Kautz and Durand, Fast Local Laplacian Filters, TOG 2014",
)
def photographic(image: np.ndarray, *, detail_transfer: float, tone_transfer: float) -> np.ndarray:
    grey = luminance(image)
    model = _model_photo()
    levels = min(pyramid_levels(*grey.shape), pyramid_levels(*model.shape))
    ours, theirs = laplacian_pyramid(grey, levels), laplacian_pyramid(model, levels)
    # Texture: each band's coefficient magnitudes take the model's distribution at that scale (signs kept).
    for level in range(levels - 1):
        magnitude = np.abs(ours[level])
        matched = _match_histogram(magnitude, np.abs(theirs[level]))
        ours[level] = np.sign(ours[level]) * (magnitude + detail_transfer * (matched - magnitude))
    # Tone: the low-pass residual takes the model's large-scale tonal distribution.
    base = ours[-1]
    ours[-1] = base + tone_transfer * (_match_histogram(base, theirs[-1]) - base)
    styled = np.clip(collapse(ours), 0.0, 1.0)
    # Finally the overall histogram, as in Bae et al.'s last step.
    styled = styled + tone_transfer * (_match_histogram(styled, model) - styled)
    return grey_to_rgb(np.clip(styled, 0.0, 1.0))


def _line_kernels(length: int, directions: int = 8) -> list[np.ndarray]:
    """Line segments of ``length`` pixels through the centre, at ``directions`` angles in [0, pi)."""
    size = length | 1
    centre = size // 2
    kernels = []
    for k in range(directions):
        kernel = np.zeros((size, size), np.float32)
        angle = np.pi * k / directions
        t = np.linspace(-centre, centre, 4 * size)
        xs = np.round(centre + t * np.cos(angle)).astype(int)
        ys = np.round(centre - t * np.sin(angle)).astype(int)
        kernel[ys, xs] = 1.0
        kernels.append(kernel)
    return kernels


def _pencil_texture(height: int, width: int, strength: float, seed: int = 7) -> np.ndarray:
    """A procedural pencil texture in (0, 1): graphite grains dragged into diagonal hatching strokes on paper;
    ``strength`` is the hatching's standard deviation."""
    rng = np.random.default_rng(seed)
    grains = rng.random((height, width), dtype=np.float32)
    strokes = cv2.filter2D(grains, -1, _line_kernels(15, 4)[1] / 15.0)  # 45-degree strokes
    strokes = (strokes - strokes.mean()) / (strokes.std() + 1e-6)
    paper = cv2.GaussianBlur(rng.random((height, width), dtype=np.float32), (0, 0), 1.0)
    texture = 0.72 + strength * strokes + 0.05 * (paper - 0.5)
    return np.clip(texture, 0.3, 0.97).astype(np.float32)


def _tone_target(size: int, weights: tuple[float, float, float]) -> np.ndarray:
    """Samples of Lu et al.'s parametric pencil-drawing tone distribution (bright, mid-tone and dark layers)."""
    v = np.linspace(0.0, 1.0, 256)
    bright = np.exp(-(1.0 - v) / (9.0 / 255.0)) / (9.0 / 255.0)
    mid = ((v >= 105 / 255) & (v <= 225 / 255)) / (120 / 255)
    dark = np.exp(-((v - 90 / 255) ** 2) / (2 * (11 / 255) ** 2)) / np.sqrt(2 * np.pi * (11 / 255) ** 2)
    density = weights[0] * bright + weights[1] * mid + weights[2] * dark
    cdf = np.cumsum(density) / density.sum()
    return np.interp(np.linspace(0.0, 1.0, size), cdf, v).astype(np.float32)


@register_operator(
    "style.pencil",
    description="Pencil drawing: stroke layer from classified line convolutions, tone layer from a parametric "
    "tone distribution rendered with a procedural pencil texture.",
    params=[
        Param(
            "stroke_length", 1 / 30, low=1 / 200, high=1 / 10, description="stroke length, fraction of the short side"
        ),
        Param("stroke_width", 0, low=0, high=3, description="extra stroke thickness, pixels", length=True),
        Param("texture_strength", 0.02, low=0.0, high=0.3, description="contrast of the pencil hatching texture"),
        Param("texture_lambda", 0.2, low=0.01, high=2.0, description="smoothness of the texture exponent map beta"),
        Param("bright_weight", 52.0, low=0.0, high=100.0, description="weight of the bright tone layer"),
        Param("mid_weight", 22.0, low=0.0, high=100.0, description="weight of the mid-tone layer"),
        Param("dark_weight", 2.0, low=0.0, high=100.0, description="weight of the dark tone layer"),
    ],
    citation="Lu, Xu and Jia, Combining Sketch and Tone for Pencil Drawing Production, NPAR 2012",
)
def pencil(
    image: np.ndarray,
    *,
    stroke_length: float,
    stroke_width: int,
    texture_strength: float,
    texture_lambda: float,
    bright_weight: float,
    mid_weight: float,
    dark_weight: float,
) -> np.ndarray:
    grey = luminance(image)
    height, width = grey.shape
    # Stroke layer: gradients, classified by the line direction that responds most, then drawn as lines.
    dx, dy = forward_differences(grey)
    gradient = np.sqrt(dx * dx + dy * dy)
    kernels = _line_kernels(max(3, round(min(height, width) * stroke_length)))
    responses = np.stack([cv2.filter2D(gradient, -1, k) for k in kernels])
    winner = responses.argmax(axis=0)
    strokes = sum(
        cv2.filter2D(np.where(winner == i, gradient, 0.0).astype(np.float32), -1, k) for i, k in enumerate(kernels)
    )
    if stroke_width > 0:
        strokes = cv2.dilate(strokes, np.ones((stroke_width + 1, stroke_width + 1), np.uint8))
    strokes = strokes / (strokes.max() + 1e-6)
    stroke_layer = 1.0 - np.clip(strokes, 0.0, 1.0)
    # Tone layer: match the parametric distribution, smooth, render with the texture: T = H ** beta where
    # beta = argmin |beta ln H - ln J|^2 + lambda |grad beta|^2 (a sparse screened-Poisson solve).
    target = _tone_target(grey.size, (bright_weight, mid_weight, dark_weight))
    order = np.argsort(grey, axis=None, kind="stable")
    tone = np.empty(grey.size, np.float32)
    tone[order] = target
    tone = cv2.blur(tone.reshape(height, width), (9, 9))
    texture = _pencil_texture(height, width, texture_strength)
    log_texture, log_tone = np.log(texture), np.log(np.clip(tone, 1e-3, 1.0))
    ones = np.ones_like(grey)
    beta = wls_smooth(log_tone / log_texture, ones, ones, texture_lambda, data=log_texture**2)
    tone_layer = np.power(texture, np.maximum(beta, 0.0))
    return grey_to_rgb(np.clip(stroke_layer * tone_layer, 0.0, 1.0))
