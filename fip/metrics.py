"""Image quality metrics: PSNR and SSIM, on images in [0, 1].

SSIM is Wang et al.'s (2004) with an 11x11 Gaussian window (sigma 1.5), computed by kornia per channel and
averaged; PSNR is over all pixels and channels. Both take ``(H, W, 3)`` NumPy arrays or ``(B, 3, H, W)`` tensors.
"""

from __future__ import annotations

import numpy as np
import torch


def _as_batch(image) -> torch.Tensor:
    if isinstance(image, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        return tensor.permute(2, 0, 1)[None] if tensor.ndim == 3 else tensor[None, None]
    return image.float() if image.ndim == 4 else image.float()[None]


def psnr(prediction, target, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB (infinite for identical images)."""
    mse = float(torch.mean((_as_batch(prediction) - _as_batch(target)) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * float(np.log10(data_range**2 / mse))


def ssim(prediction, target) -> float:
    """Mean structural similarity (11x11 Gaussian window, sigma 1.5)."""
    import kornia

    with torch.no_grad():
        return float(kornia.metrics.ssim(_as_batch(prediction), _as_batch(target), window_size=11).mean())
