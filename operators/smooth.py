"""Edge-preserving smoothing operators.

Each function takes an sRGB image ``(H, W, 3)`` float32 in [0, 1] and returns one of the same shape.
"""

from __future__ import annotations

import cv2
import numpy as np

from fip import Param, register_operator

from ._common import forward_differences, wls_smooth


@register_operator(
    "smooth.rof",
    description="Rudin-Osher-Fatemi total variation denoising (TV-L2), Chambolle's projection algorithm.",
    params=[
        Param("weight", 0.05, low=1e-4, high=2.0, description="TV weight: larger smooths more"),
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
        Param("kappa", 2.0, low=1.05, high=10.0, description="rate at which the penalty beta grows per iteration"),
    ],
    citation="Xu, Lu, Xu and Jia, Image Smoothing via L0 Gradient Minimization, SIGGRAPH Asia 2011",
    version="2",
)
def l0(image: np.ndarray, *, lambda_: float, kappa: float) -> np.ndarray:
    """Xu et al.'s half-quadratic solver exactly as in their MATLAB code: circular boundaries, gradients of the
    three channels thresholded jointly, beta from 2*lambda up to 1e5. (OpenCV's ``ximgproc.l0Smooth`` differs:
    32 dB from this on FiveK photos, and farther from the paper's results.)"""
    import scipy.fft

    smoothed = image.astype(np.float32)
    height, width, _ = smoothed.shape
    # Eigenvalues of the circular forward-difference operators: |otf(dx)|^2 + |otf(dy)|^2.
    eig_y = 2.0 - 2.0 * np.cos(2.0 * np.pi * np.fft.fftfreq(height))
    eig_x = 2.0 - 2.0 * np.cos(2.0 * np.pi * np.fft.rfftfreq(width))
    laplacian = (eig_y[:, None] + eig_x[None, :]).astype(np.float32)[..., None]
    image_spectrum = scipy.fft.rfft2(smoothed, axes=(0, 1))
    beta = 2.0 * lambda_
    while beta < 1e5:
        h = np.roll(smoothed, -1, axis=1) - smoothed
        v = np.roll(smoothed, -1, axis=0) - smoothed
        flat = np.broadcast_to(((h * h + v * v).sum(axis=2) < lambda_ / beta)[..., None], h.shape)
        h[flat] = 0.0
        v[flat] = 0.0
        divergence = (np.roll(h, 1, axis=1) - h) + (np.roll(v, 1, axis=0) - v)
        spectrum = (image_spectrum + beta * scipy.fft.rfft2(divergence, axes=(0, 1))) / (1.0 + beta * laplacian)
        smoothed = scipy.fft.irfft2(spectrum, s=(height, width), axes=(0, 1))
        beta *= kappa
    return smoothed


@register_operator(
    "smooth.tv_l1",
    description="TV-L1 image restoration (total variation with an L1 data term), primal-dual algorithm per channel.",
    params=[
        Param("lambda_", 0.6, low=0.01, high=10.0, description="data-term weight: smaller smooths more"),
        Param("iterations", 30, low=1, high=500, description="primal-dual iterations"),
    ],
    citation="Nikolova 2004; Chambolle and Pock, JMIV 2011 (OpenCV's denoise_TVL1)",
)
def tv_l1(image: np.ndarray, *, lambda_: float, iterations: int) -> np.ndarray:
    out = np.empty_like(image, dtype=np.float32)
    quantized = np.round(image * 255.0).astype(np.uint8)  # OpenCV's solver takes 8-bit observations
    for c in range(3):
        result = np.zeros(image.shape[:2], dtype=np.uint8)
        cv2.denoise_TVL1([quantized[..., c]], result, lambda_, iterations)
        out[..., c] = result
    return out / 255.0


def _rtv_weights(image: np.ndarray, sigma: float, sharpness: float) -> tuple[np.ndarray, np.ndarray]:
    """Xu et al.'s weights u * w for the x and y directions (averaged over channels).

    w = 1 / (|dS| + sharpness) penalizes pixel-wise variation; u = G_sigma * (1 / (|G_sigma * dS| + eps)) is
    small where gradients inside the window agree (a real structure edge, large inherent variation) and large
    where they cancel out (texture).
    """
    eps = 1e-3
    dx, dy = forward_differences(image)
    weights = []
    for d in (dx, dy):
        windowed = np.abs(cv2.GaussianBlur(d, (0, 0), sigma)).mean(axis=2)  # inherent variation L
        u = cv2.GaussianBlur((1.0 / (windowed + eps)).astype(np.float32), (0, 0), sigma)
        w = 1.0 / (np.abs(d).mean(axis=2) + sharpness)
        weights.append(u * w)
    return weights[0], weights[1]


@register_operator(
    "smooth.rtv",
    description="Relative total variation: removes texture, keeps structure edges (windowed variations, sparse solve).",
    params=[
        Param("lambda_", 0.01, low=1e-4, high=0.1, description="smoothing weight"),
        Param(
            "sigma", 3.0, low=0.5, high=10.0, description="texture scale: Gaussian window sigma, pixels", length=True
        ),
        Param("sharpness", 0.02, low=1e-3, high=0.2, description="epsilon_s: smaller keeps sharper edges"),
        Param("iterations", 4, low=1, high=10, description="reweighting iterations (sigma halves each time)"),
    ],
    citation="Xu, Yan, Xia and Jia, Structure Extraction from Texture via Relative Total Variation, SIGGRAPH Asia 2012",
)
def rtv(image: np.ndarray, *, lambda_: float, sigma: float, sharpness: float, iterations: int) -> np.ndarray:
    smoothed = image
    for _ in range(iterations):
        wx, wy = _rtv_weights(smoothed, sigma, sharpness)
        # (1 + lambda/2 * L_uw) S = I, solved for the three channels with one multigrid hierarchy; the halving
        # of lambda follows Xu et al.'s released code (tsmooth.m), so lambda_ means what it means there.
        smoothed = wls_smooth(image, wx, wy, lambda_ / 2.0, x0=smoothed)
        sigma = max(sigma / 2.0, 0.5)
    return smoothed
