"""Edge-preserving smoothing operators.

Each function takes an sRGB image ``(H, W, 3)`` float32 in [0, 1] and returns one of the same shape.
"""

from __future__ import annotations

import cv2
import numpy as np

from fip import Param, register_operator


@register_operator(
    "smooth.rof",
    description="Rudin-Osher-Fatemi total variation denoising (TV-L2), Chambolle's projection algorithm.",
    params=[
        Param("weight", 0.1, low=1e-4, high=2.0, description="TV weight: larger smooths more"),
        Param("iterations", 200, low=1, high=5000, description="maximum Chambolle iterations"),
    ],
    citation="Rudin, Osher and Fatemi, Physica D 1992; Chambolle, JMIV 2004",
)
def rof(image: np.ndarray, *, weight: float, iterations: int) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(image, weight=weight, max_num_iter=iterations, channel_axis=-1)


@register_operator(
    "smooth.l0",
    description="L0 gradient minimization: flattens regions by limiting the number of non-zero gradients.",
    params=[
        Param("lambda_", 0.02, low=1e-4, high=1.0, description="smoothing weight: larger removes more detail"),
        Param("kappa", 2.0, low=1.01, high=10.0, description="rate at which the penalty beta grows per iteration"),
    ],
    citation="Xu, Lu, Xu and Jia, Image Smoothing via L0 Gradient Minimization, SIGGRAPH Asia 2011",
)
def l0(image: np.ndarray, *, lambda_: float, kappa: float) -> np.ndarray:
    # OpenCV's solver writes into a float32 input: hand it a copy.
    return cv2.ximgproc.l0Smooth(np.array(image, dtype=np.float32, copy=True), None, lambda_, kappa)
