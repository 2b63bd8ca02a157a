"""Fast guided filter upsampling (He and Sun 2015, as used by Wu et al., "Fast End-to-End Trainable Guided
Filter", CVPR 2018): run an expensive operator on a downscaled image, fit a local linear model from the
downscaled input to the downscaled output, and apply the upsampled model to the full-resolution input.
"""

from __future__ import annotations

import kornia
import torch
import torch.nn.functional as F
from torch import nn


class FastGuidedFilter(nn.Module):
    """``out_high = A_high * guide_high + b_high``, where per channel ``(A, b)`` is the guided filter's local linear
    fit of ``target_low`` from ``guide_low`` in ``(2 * radius + 1)``-pixel boxes, bilinearly upsampled.

    Args:
        radius: box radius in low-resolution pixels.
        eps: regularization of the fit (larger = smoother ``A``); learnable, kept positive.
    """

    def __init__(self, radius: int = 1, eps: float = 1e-4):
        super().__init__()
        self.radius = radius
        self.log_eps = nn.Parameter(torch.tensor(float(eps)).log())

    def _box(self, x: torch.Tensor) -> torch.Tensor:
        size = 2 * self.radius + 1
        return kornia.filters.box_blur(x, (size, size), border_type="reflect")

    def forward(self, guide_low: torch.Tensor, target_low: torch.Tensor, guide_high: torch.Tensor) -> torch.Tensor:
        mean_i = self._box(guide_low)
        mean_p = self._box(target_low)
        cov_ip = self._box(guide_low * target_low) - mean_i * mean_p
        var_i = self._box(guide_low * guide_low) - mean_i * mean_i
        a = cov_ip / (var_i + self.log_eps.exp())
        b = mean_p - a * mean_i
        mean_a = self._box(a)
        mean_b = self._box(b)
        size = guide_high.shape[2:]
        mean_a = F.interpolate(mean_a, size=size, mode="bilinear", align_corners=False)
        mean_b = F.interpolate(mean_b, size=size, mode="bilinear", align_corners=False)
        return mean_a * guide_high + mean_b
