"""Detail manipulation.

Each function takes an sRGB image ``(H, W, 3)`` float32 in [0, 1] and returns one of the same shape.
"""

from __future__ import annotations

import numpy as np

from fip import Param, register_operator

from ._common import fast_local_laplacian, luminance


@register_operator(
    "detail.multiscale",
    description="Multiscale detail manipulation by local Laplacian filtering (fast version).",
    params=[
        Param("sigma_r", 0.4, low=0.01, high=1.0, description="intensity difference separating detail from edges"),
        Param("alpha", 0.25, low=0.01, high=4.0, description="detail exponent: < 1 enhances detail, > 1 smooths it"),
        Param("beta", 1.0, low=0.0, high=2.0, description="edge (large-scale) amplitude: < 1 compresses the range"),
        Param("levels", 10, low=4, high=64, description="intensity levels of the fast algorithm"),
        Param(
            "colour",
            "lum",
            choices=("lum", "rgb"),
            description="filter luminance (keep colour ratios) or each RGB channel",
        ),
    ],
    citation="Paris, Hasinoff and Kautz, Local Laplacian Filters, SIGGRAPH 2011; Aubry et al., TOG 2014",
)
def multiscale_detail(
    image: np.ndarray, *, sigma_r: float, alpha: float, beta: float, levels: int, colour: str
) -> np.ndarray:
    if colour == "rgb":
        return np.stack([fast_local_laplacian(image[..., c], sigma_r, alpha, beta, levels) for c in range(3)], axis=-1)
    lum = luminance(image)
    filtered = fast_local_laplacian(lum, sigma_r, alpha, beta, levels)
    return image * (filtered / np.maximum(lum, 1e-4))[..., None]
