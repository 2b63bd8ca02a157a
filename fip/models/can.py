"""The context aggregation network (CAN) of Chen, Xu and Koltun (ICCV 2017), with adaptive normalization.

Architecture for depth ``d``: ``d - 2`` 3x3 convolutions with dilations 1, 2, 4, ..., 2**(d-3), one more 3x3
convolution with dilation 1, then a 1x1 convolution with bias to 3 output channels. Every 3x3 layer is
convolution (no bias, as in the paper; ``conv_bias=True`` adds one) -> :class:`AdaptiveNorm` -> LeakyReLU(0.2).
CAN24 is ``width=24, depth=9``; CAN32 is ``width=32, depth=10``.
"""

from __future__ import annotations

import enum

import torch
from torch import nn

from fip.errors import InputError
from fip.models.inputs import check_input_norm

BN_EPSILON = 1e-3


def check_input(x: torch.Tensor, in_channels: int) -> None:
    """Raise :class:`InputError` unless ``x`` is a ``(B, in_channels, H, W)`` batch (every network's first check)."""
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise InputError(f"expected input (B, {in_channels}, H, W); got {tuple(x.shape)}")


class NormMode(str, enum.Enum):
    """How :class:`AdaptiveNorm` gets its batch-norm statistics.

    * ``IMAGE``: the paper's exact semantics: mean and variance of the image being processed (per sample, per
      channel, over height and width), in training and at test time alike. Nothing is learned about statistics.
    * ``RUNNING``: ordinary batch norm: batch statistics while training, running averages at test time, so the
      whole normalization is an affine map that folds into the preceding convolution for fast inference.
    """

    IMAGE = "image"
    RUNNING = "running"


class AdaptiveNorm(nn.Module):
    """``lambda * x + mu * BN(x)`` with one learned scalar pair per layer (lambda starts at 1, mu at 0).

    BN has a learned shift ``beta`` and no scale, epsilon 1e-3, as in the authors' TensorFlow code.

    Args:
        channels: number of feature channels.
        mode: where the BN statistics come from (:class:`NormMode`).
    """

    def __init__(self, channels: int, mode: NormMode | str = NormMode.IMAGE, momentum: float = 0.1):
        super().__init__()
        self.mode = NormMode(mode)
        self.lam = nn.Parameter(torch.ones(()))
        self.mu = nn.Parameter(torch.zeros(()))
        self.beta = nn.Parameter(torch.zeros(channels))
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode is NormMode.IMAGE:
            var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        elif self.training:
            var, mean = torch.var_mean(x, dim=(0, 2, 3), keepdim=True, correction=0)
            with torch.no_grad():
                count = x.numel() / x.shape[1]
                unbiased = var.flatten() * count / max(count - 1, 1)
                self.running_mean.lerp_(mean.flatten(), self.momentum)
                self.running_var.lerp_(unbiased, self.momentum)
        else:
            mean = self.running_mean.view(1, -1, 1, 1)
            var = self.running_var.view(1, -1, 1, 1)
        return self.normalize(x, mean, var)

    def normalize(self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """``lambda * x + mu * BN(x)`` with the given statistics (broadcastable to ``x``)."""
        normalized = (x - mean) * torch.rsqrt(var + BN_EPSILON) + self.beta.view(1, -1, 1, 1)
        return self.lam * x + self.mu * normalized

    def extra_repr(self) -> str:
        return f"channels={self.beta.numel()}, mode={self.mode.value}"


def _identity_(weight: torch.Tensor) -> None:
    """Identity initialization (the paper's): the centre tap passes channel i to channel i."""
    with torch.no_grad():
        weight.zero_()
        centre_y, centre_x = weight.shape[2] // 2, weight.shape[3] // 2
        for i in range(min(weight.shape[0], weight.shape[1])):
            weight[i, i, centre_y, centre_x] = 1.0


class ContextAggregationNet(nn.Module):
    """A dilated context aggregation network.

    Args:
        in_channels: input channels: 3 for RGB, more for extra maps (one-hot operator maps, parameter maps).
        width: feature channels of every hidden layer (24 for CAN24, 32 for CAN32).
        depth: number of layers including the 1x1 output layer (9 for CAN24, 10 for CAN32).
        norm: :class:`NormMode` of every :class:`AdaptiveNorm`.
        conv_bias: give the 3x3 convolutions a bias (zero at the start). The paper has none: its only shift is
            ``mu * beta`` inside the normalization, so while ``mu`` is 0 the network is positively homogeneous
            up to its output bias (``f(k x) - b = k (f(x) - b)``) and can learn no tone curve; ``mu`` and ``beta``
            start at 0 and open it only after many steps (the authors trained 180k). With biases a short CPU
            run can learn tone curves from the identity (docs/research-log.md, "No tone curve without a shift").
        input_norm: how each photo's RGB is rescaled before the network sees it (:mod:`fip.models.inputs`,
            e.g. ``"airlight"``), or ``None``. Applied to whole photos by the engine (:mod:`fip.runtime`) and by the
            training data, not by :meth:`forward`, which takes the input as it comes (crops cannot know their
            photo's estimate).

    Input ``(B, in_channels, H, W)`` float in [0, 1] (RGB first); output ``(B, 3, H, W)``, not clipped.
    """

    def __init__(
        self,
        in_channels: int = 3,
        width: int = 24,
        depth: int = 9,
        norm: NormMode | str = NormMode.IMAGE,
        conv_bias: bool = False,
        input_norm: str | None = None,
    ):
        super().__init__()
        self.input_norm = check_input_norm(input_norm)
        if depth < 3:
            raise InputError(f"depth must be at least 3 (two 3x3 layers and the output layer); got {depth}")
        self.in_channels, self.width, self.depth, self.conv_bias = in_channels, width, depth, conv_bias
        dilations = [2**k for k in range(depth - 2)] + [1]
        layers: list[nn.Module] = []
        channels = in_channels
        for dilation in dilations:
            conv = nn.Conv2d(channels, width, 3, padding=dilation, dilation=dilation, bias=conv_bias)
            _identity_(conv.weight)
            if conv_bias:
                nn.init.zeros_(conv.bias)
            layers += [conv, AdaptiveNorm(width, norm), nn.LeakyReLU(0.2)]
            channels = width
        self.features = nn.Sequential(*layers)
        self.output = nn.Conv2d(width, 3, 1)
        # The output layer passes feature channels 0-2 through, so the untrained network is the identity map
        # (the authors' code left this layer at Xavier). Most operators are near the identity: training starts
        # at the input-vs-target PSNR instead of from noise.
        _identity_(self.output.weight)
        nn.init.zeros_(self.output.bias)

    @property
    def dilations(self) -> list[int]:
        return [m.dilation[0] for m in self.features if isinstance(m, nn.Conv2d)]

    @property
    def receptive_field(self) -> int:
        return 1 + 2 * sum(self.dilations)

    @property
    def receptive_radius(self) -> int:
        """How far (pixels) an output pixel sees: tiles need this much halo to be exact."""
        return sum(self.dilations)

    @property
    def folds_exactly(self) -> bool:
        """Whether every normalization uses running statistics, so :func:`fold` needs no image."""
        return all(m.mode is NormMode.RUNNING for m in self.modules() if isinstance(m, AdaptiveNorm))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels)
        return self.output(self.features(x))

    def forward_in_context(self, x: torch.Tensor, contexts: list[torch.Tensor]) -> torch.Tensor:
        """``x`` (crops, ``(B, C, H, W)``) normalized with the statistics of ``contexts`` (the photo each crop
        comes from, one ``(1, C, h, w)`` or ``(C, h, w)`` tensor per crop, any size), with gradients through them.

        In the paper-exact ``IMAGE`` mode a crop normalized by its own statistics is a different task from the
        whole photo normalized by the photo's: training on crops then teaches the wrong one (docs/research-log.md,
        "Crops in context", measures it). This is what :func:`fold` with :func:`image_statistics` of the photo
        computes at inference, differentiable. A ``RUNNING`` network ignores the contexts (its statistics are
        not the image's)."""
        if len(contexts) != x.shape[0]:
            raise InputError(f"got {len(contexts)} contexts for a batch of {x.shape[0]}")
        check_input(x, self.in_channels)
        modes = {m.mode for m in self.modules() if isinstance(m, AdaptiveNorm)}
        if NormMode.IMAGE not in modes:
            return self(x)
        if modes != {NormMode.IMAGE}:
            raise InputError(
                "forward_in_context needs every normalization in norm='image' mode; this network mixes "
                "modes: train it without data.context_scale"
            )
        # Crops of one photo share its context (the same tensor): one pass per photo, not per crop.
        photo_of: dict[int, int] = {}
        rows = [photo_of.setdefault(id(c), len(photo_of)) for c in contexts]
        photos = list({id(c): c if c.ndim == 4 else c.unsqueeze(0) for c in contexts}.values())
        modules = list(self.features)
        for index in range(0, len(modules), 3):
            conv, norm, act = modules[index : index + 3]
            x, photos = conv(x), [conv(c) for c in photos]
            stats = [torch.var_mean(c, dim=(2, 3), keepdim=True, correction=0) for c in photos]
            var, mean = torch.cat([v for v, _ in stats])[rows], torch.cat([m for _, m in stats])[rows]
            x = act(norm.normalize(x, mean, var))
            photos = [act(norm.normalize(c, m, v)) for c, (v, m) in zip(photos, stats)]
        return self.output(x)


def conv_biases(net: nn.Module) -> list[nn.Parameter]:
    """The 3x3 convolution biases of every :class:`ContextAggregationNet` in ``net`` built with ``conv_bias`` (not
    the output layer's, which every CAN has, nor the biases that :func:`fold` writes)."""
    return [
        m.bias
        for can in net.modules()
        if isinstance(can, ContextAggregationNet) and can.conv_bias
        for m in can.features
        if isinstance(m, nn.Conv2d)
    ]


def can24(in_channels: int = 3, norm: NormMode | str = NormMode.IMAGE) -> ContextAggregationNet:
    """CAN24: width 24, depth 9 (dilations 1..64, then 1, then the 1x1 output)."""
    return ContextAggregationNet(in_channels, width=24, depth=9, norm=norm)


def can32(in_channels: int = 3, norm: NormMode | str = NormMode.IMAGE) -> ContextAggregationNet:
    """CAN32: width 32, depth 10 (dilations 1..128, then 1, then the 1x1 output)."""
    return ContextAggregationNet(in_channels, width=32, depth=10, norm=norm)


Statistics = list[tuple[torch.Tensor, torch.Tensor]]


def downscaled(x: torch.Tensor, megapixels: float) -> torch.Tensor:
    """``x`` area-downscaled to about ``megapixels`` (``x`` itself when it is no larger)."""
    height, width = x.shape[2:]
    scale = (megapixels * 1e6 / max(1, height * width)) ** 0.5
    if scale >= 1.0:
        return x
    return nn.functional.interpolate(x, size=(max(1, round(height * scale)), max(1, round(width * scale))), mode="area")


def image_statistics(net: ContextAggregationNet, x: torch.Tensor) -> Statistics:
    """The per-channel ``(mean, var)`` each :class:`AdaptiveNorm` of ``net`` sees when processing ``x`` (a batch
    of one), in layer order: the numbers the paper-exact mode normalizes with. Runs the layers itself (no hooks),
    so concurrent calls on one network do not mix; each normalization is applied as the one per-channel affine
    map it amounts to for this image (as :func:`fold` would), which costs one pass instead of five."""
    if x.shape[0] != 1:
        raise InputError(f"image_statistics takes one image at a time; got a batch of {x.shape[0]}")
    found: Statistics = []
    modules = list(net.features)
    with torch.inference_mode():
        x = x.contiguous(memory_format=torch.channels_last)
        for index in range(0, len(modules), 3):
            conv, norm, act = modules[index : index + 3]
            z = conv(x)
            pixels = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])  # a view for channels_last maps
            # Two plain reductions: ~6x faster here than torch.var_mean's, and as exact (no E[x²] - E[x]²).
            mean = pixels.mean(dim=0)
            var = (pixels - mean).square().mean(dim=0)
            found.append((mean, var))
            inv_std = torch.rsqrt(var + BN_EPSILON)
            scale, shift = norm.lam + norm.mu * inv_std, norm.mu * (norm.beta - mean * inv_std)
            x = act(torch.addcmul(shift.view(1, -1, 1, 1), z, scale.view(1, -1, 1, 1)))
    return found


class FoldedCAN(nn.Module):
    """A :class:`ContextAggregationNet` whose normalizations are folded into its convolutions: each 3x3 layer is
    one convolution with bias and a LeakyReLU. Same ``features`` / ``output`` layout, so
    :func:`fip.runtime.execute.forward_layer_tiles` runs it too. Built by :func:`fold`."""

    def __init__(self, features: nn.Sequential, output: nn.Conv2d, in_channels: int):
        super().__init__()
        self.features, self.output, self.in_channels = features, output, in_channels
        self.width = output.in_channels

    @property
    def receptive_radius(self) -> int:
        """How far (pixels) an output pixel sees: tiles need this much halo to be exact."""
        return sum(m.dilation[0] * (m.kernel_size[0] // 2) for m in self.features if isinstance(m, nn.Conv2d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels)
        return self.output(self.features(x))


def fold(net: ContextAggregationNet, statistics: Statistics | None = None) -> FoldedCAN:
    """Fold every ``lambda * x + mu * BN(x)`` into the convolution before it.

    With fixed statistics ``(m, v)`` the normalization is affine per channel:
    ``(lambda + mu / s) * z + mu * (beta - m / s)`` with ``s = sqrt(v + eps)``, so it becomes the convolution's
    weight scale and bias (a convolution's own bias is scaled with its weights). ``statistics`` (from
    :func:`image_statistics`) are required for the paper-exact ``IMAGE`` mode, whose statistics belong to one
    image; ``RUNNING`` nets use their running averages.
    The result is an independent copy (``net`` is unchanged), in eval mode.
    """
    norms = [m for m in net.modules() if isinstance(m, AdaptiveNorm)]
    if statistics is None:
        if any(n.mode is NormMode.IMAGE for n in norms):
            raise InputError(
                "this network normalizes with per-image statistics (norm='image'); pass statistics from "
                "image_statistics(net, image) to fold it, or train it with norm='running'"
            )
        statistics = [(n.running_mean, n.running_var) for n in norms]
    if len(statistics) != len(norms):
        raise InputError(f"got {len(statistics)} statistics for {len(norms)} normalization layers")
    layers: list[nn.Module] = []
    modules = list(net.features)
    with torch.no_grad():
        for index in range(0, len(modules), 3):
            conv, norm, act = modules[index : index + 3]
            mean, var = statistics[index // 3]
            inv_std = torch.rsqrt(var.to(conv.weight.dtype) + BN_EPSILON)
            scale = norm.lam + norm.mu * inv_std
            folded = nn.Conv2d(
                conv.in_channels,
                conv.out_channels,
                3,
                padding=conv.padding,
                dilation=conv.dilation,
                dtype=conv.weight.dtype,
            )
            folded.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
            shift = norm.mu * (norm.beta - mean.to(conv.weight.dtype) * inv_std)
            folded.bias.copy_(shift if conv.bias is None else shift + scale * conv.bias)
            layers += [folded, nn.LeakyReLU(act.negative_slope)]
        output = nn.Conv2d(net.output.in_channels, net.output.out_channels, 1, dtype=net.output.weight.dtype)
        output.load_state_dict(net.output.state_dict())
    return FoldedCAN(nn.Sequential(*layers), output, net.in_channels).eval()
