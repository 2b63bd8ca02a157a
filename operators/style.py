"""Stylization operators.

Each function takes an sRGB image ``(H, W, 3)`` float32 in [0, 1] and returns one of the same shape.
"""

from __future__ import annotations

import cv2
import numpy as np

from fip import Param, register_operator


@register_operator(
    "style.stylize",
    description="Edge-preserving stylization (watercolour look) by domain-transform filtering.",
    params=[
        Param("sigma_s", 60.0, low=1.0, high=200.0, description="spatial extent of the smoothing, pixels"),
        Param("sigma_r", 0.45, low=0.01, high=1.0, description="range sigma: how strong an edge must be to stay"),
    ],
    citation="Gastal and Oliveira, Domain Transform for Edge-Aware Image and Video Processing, SIGGRAPH 2011",
)
def stylize(image: np.ndarray, *, sigma_s: float, sigma_r: float) -> np.ndarray:
    bgr = cv2.cvtColor(np.round(image * 255.0).astype(np.uint8), cv2.COLOR_RGB2BGR)
    out = cv2.stylization(bgr, sigma_s=sigma_s, sigma_r=sigma_r)
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
