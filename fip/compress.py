"""Structured channel pruning of a context aggregation network, ahead of Lightning fine-tuning.

:func:`prune` keeps the ``width`` most important feature channels of every hidden layer and returns a smaller
:class:`~fip.models.ContextAggregationNet`: the channels are really removed, so the network does fewer
multiply-adds. Importance of channel ``c`` of layer ``l`` is measured on calibration photos as the mean absolute
activation after the LeakyReLU times the L2 norm of the weights that read it in layer ``l + 1`` (the output layer
for the last hidden layer): what the next layer loses if the channel is gone.

The pruned network normalizes with *running* statistics (:attr:`~fip.models.can.NormMode.RUNNING`), initialized
from the calibration photos, so it folds into plain convolutions with constant weights (:func:`fip.models.can.fold`)
and can be exported and quantized once, ahead of time. Pruning alone loses quality; ``fip build`` (its ``pruned``
stage) fine-tunes the result with the operator's own Lightning config to recover it.

Why prune to 16 channels of CAN24's 24: x86 convolution kernels (oneDNN, ONNX Runtime's MLAS) work on blocks of 16
fp32 channels (one AVX-512 register), so 24 channels compute as 32; at 16 the layer time drops ~3x for 2.25x fewer
multiply-adds (``fip bench`` measures it).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from fip.errors import InputError
from fip.models.can import AdaptiveNorm, ContextAggregationNet, FoldedCAN, NormMode, check_input, fold

Layers = list[tuple[nn.Conv2d, AdaptiveNorm, nn.Module]]


def _layers(net: ContextAggregationNet) -> Layers:
    modules = list(net.features)
    return [tuple(modules[i : i + 3]) for i in range(0, len(modules), 3)]  # type: ignore[misc]


def calibrate(net: ContextAggregationNet, images: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[tuple]]:
    """Run ``net`` (eval mode) on each ``(1, C, H, W)`` image; return per hidden layer the mean absolute activation
    of each channel, and the normalization's input statistics ``(mean, var)`` pooled over all images (as one
    batch-norm would see them: the variance includes the spread of the per-image means)."""
    if not images:
        raise InputError("pruning needs at least one calibration image")
    layers = _layers(net)
    activity = [torch.zeros(conv.out_channels) for conv, _, _ in layers]
    sums = [torch.zeros(conv.out_channels, dtype=torch.float64) for conv, _, _ in layers]
    squares = [torch.zeros(conv.out_channels, dtype=torch.float64) for conv, _, _ in layers]
    count = 0
    net = net.eval()
    with torch.inference_mode():
        for image in images:
            x = image
            for index, (conv, norm, act) in enumerate(layers):
                z = conv(x)
                sums[index] += z.double().sum(dim=(0, 2, 3))
                squares[index] += z.double().square().sum(dim=(0, 2, 3))
                x = act(norm(z))
                activity[index] += x.abs().mean(dim=(0, 2, 3)) / len(images)
            count += image.shape[0] * image.shape[2] * image.shape[3]
    statistics = []
    for total, square in zip(sums, squares):
        mean = total / count
        statistics.append((mean.float(), (square / count - mean.square()).clamp_min(0).float()))
    return activity, statistics


def prune(net: ContextAggregationNet, width: int, images: list[torch.Tensor]) -> ContextAggregationNet:
    """A copy of ``net`` with ``width`` feature channels per hidden layer (the most important ones, see the module
    docstring), its normalizations in running mode: a running-statistics ``net`` keeps its own, a per-image one
    gets the statistics pooled over ``images``. ``net`` is unchanged."""
    if not 1 <= width <= net.width:
        raise InputError(f"width must be between 1 and the network's {net.width}; got {width}")
    activity, statistics = calibrate(net, images)
    layers = _layers(net)
    readers = [conv.weight for conv, _, _ in layers[1:]] + [net.output.weight]
    keep = []
    for active, reader in zip(activity, readers):
        outgoing = reader.detach().transpose(0, 1).flatten(1).norm(dim=1)  # per input channel of the next layer
        keep.append(torch.sort(torch.topk(active * outgoing, width).indices).values)
    pruned = ContextAggregationNet(
        net.in_channels, width=width, depth=net.depth, norm=NormMode.RUNNING, conv_bias=net.conv_bias
    )
    pruned = pruned.to(next(net.parameters()).dtype)
    previous = torch.arange(net.in_channels)
    with torch.no_grad():
        for (conv, norm, _), (new_conv, new_norm, _), kept, (mean, var) in zip(
            layers, _layers(pruned), keep, statistics
        ):
            new_conv.weight.copy_(conv.weight[kept][:, previous])
            if conv.bias is not None:
                new_conv.bias.copy_(conv.bias[kept])
            new_norm.lam.copy_(norm.lam)
            new_norm.mu.copy_(norm.mu)
            new_norm.beta.copy_(norm.beta[kept])
            if norm.mode is NormMode.RUNNING:  # keep what it learned
                mean, var = norm.running_mean, norm.running_var
            new_norm.running_mean.copy_(mean[kept])
            new_norm.running_var.copy_(var[kept])
            previous = kept
        pruned.output.weight.copy_(net.output.weight[:, previous])
        pruned.output.bias.copy_(net.output.bias)
    return pruned.eval()


def equalize(net: FoldedCAN, images: list[torch.Tensor]) -> FoldedCAN:
    """A copy of ``net`` with its channel scales balanced for int8: the same function, easier to quantize.

    LeakyReLU is positively homogeneous (``f(x / s) = f(x) / s`` for ``s > 0``), so dividing output channel ``c`` of
    a layer (weights and bias) by ``s_c`` and multiplying the weights that read channel ``c`` in the next layer by
    ``s_c`` changes nothing in exact arithmetic. Int8 activations share one scale per tensor, so a channel with a
    small range loses most of its levels; ``s_c = sqrt(activation range_c / next-layer weight range_c)`` evens the
    activation ranges while keeping the next layer's per-channel weight ranges in check (cross-layer equalization,
    Nagel et al. ICCV 2019, with activation ranges measured on ``images``).
    """
    net = copy.deepcopy(net).float().to(memory_format=torch.contiguous_format).eval()
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)] + [net.output]
    with torch.inference_mode():
        features = [image.float() for image in images]
        for index, layer in enumerate(net.features):
            features = [layer(f) for f in features]
            if not isinstance(layer, nn.LeakyReLU):
                continue
            conv, reader = convs[index // 2], convs[index // 2 + 1]
            act_range = torch.stack([f.abs().amax(dim=(0, 2, 3)) for f in features]).amax(0).clamp_min(1e-6)
            weight_range = reader.weight.abs().amax(dim=(0, 2, 3)).clamp_min(1e-8)
            scale = (act_range / weight_range).sqrt()
            conv.weight.div_(scale.view(-1, 1, 1, 1))
            conv.bias.div_(scale)
            reader.weight.mul_(scale.view(1, -1, 1, 1))
            features = [f / scale.view(1, -1, 1, 1) for f in features]
    return net


def multiply_adds(net: nn.Module, height: int, width: int) -> int:
    """Multiply-adds of one forward pass of a convolutional ``net`` on an ``height x width`` image (convolutions
    only, stride 1 and 'same' padding as in the CAN)."""
    total = 0
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            kernel = module.kernel_size[0] * module.kernel_size[1]
            total += module.out_channels * module.in_channels // module.groups * kernel * height * width
    return total


def calibration_photos(
    megapixels: float = 0.25, split: str = "train", paths: Sequence[str | os.PathLike[str]] | None = None
) -> list[torch.Tensor]:
    """Photos area-downscaled to about ``megapixels``, as ``(1, 3, H, W)`` tensors: what :func:`prune` and int8
    calibration look at. ``paths`` (photo or raw files), else the built-in sample set's ``split`` photos."""
    from fip.data.sources import sample_source
    from fip.imaging import resize_area
    from fip.raw import load_srgb

    photos = []
    for path in paths if paths is not None else [ref.path for ref in sample_source().select(split)]:
        image = load_srgb(path)
        scale = min(1.0, (megapixels * 1e6 / (image.shape[0] * image.shape[1])) ** 0.5)
        if scale < 1.0:
            image = resize_area(image, round(image.shape[0] * scale), round(image.shape[1] * scale))
        photos.append(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None])
    return photos


def _uint8_grid(low: float, high: float) -> tuple[float, int]:
    """ONNX Runtime's static uint8 scale and zero point for a tensor seen within ``[low, high]`` (MinMax
    calibration: the range is widened to hold 0)."""
    low, high = min(low, 0.0), max(high, 0.0)
    scale = max(high - low, 1e-8) / 255
    return scale, round(-low / scale)


def _int8_weights(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` on ONNX Runtime's per-output-channel symmetric int8 grid, with straight-through gradients."""
    scale = (weight.detach().abs().amax(dim=(1, 2, 3)) / 127).clamp_min(1e-12)
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(weight, scale, zero, 0, -127, 127)


class QuantizationAwareCAN(nn.Module):
    """A pruned model's folded, equalized network computing as its ONNX Runtime int8 model will: weights on the
    per-channel int8 grid, and the input, every convolution's output and every LeakyReLU's output on uint8 grids
    calibrated on the sample photos (the points :func:`fip.onnx_export.write_onnx` quantizes), with straight-through
    gradients, so Lightning can fine-tune the weights for the grid (quantization-aware training).
    Train it with the operator's config (``fip train -c OPERATOR --model.net fip.compress.QuantizationAwareCAN
    --model.net.init_args.model PRUNED.pt --model.warm_start null``) and write :meth:`folded` as the int8 file with
    :func:`fip.onnx_export.write_onnx` and ``equalized=True``, since re-balancing would move the weights off the grid they
    learned.

    Args:
        model: a fip model file whose network uses running statistics (the pruned ``OPERATOR.pruned.pt``).
        calibration_megapixels: size of the calibration photos.
    """

    def __init__(self, model: str, calibration_megapixels: float = 0.25):
        super().__init__()
        from fip.models.storage import load_network

        net = load_network(model).net
        if not isinstance(net, ContextAggregationNet) or not net.folds_exactly:
            raise InputError(
                f"{model} holds no running-statistics CAN to quantize; pass a pruned model "
                "(a model folder's pruned.pt, made by fip build)"
            )
        photos = calibration_photos(calibration_megapixels)
        self.net = equalize(fold(net), photos).train()
        self.in_channels, self.width = self.net.in_channels, self.net.width
        seen = [self._ranges(photo) for photo in photos]
        grids = [_uint8_grid(min(r[i][0] for r in seen), max(r[i][1] for r in seen)) for i in range(len(seen[0]))]
        self.register_buffer("scales", torch.tensor([g[0] for g in grids], dtype=torch.float64))
        self.register_buffer("zero_points", torch.tensor([g[1] for g in grids]))

    def _layers(self) -> list[nn.Module]:
        return [*self.net.features, self.net.output]

    def _ranges(self, x: torch.Tensor) -> list[tuple[float, float]]:
        found = [(x.min().item(), x.max().item())]
        with torch.no_grad():
            for layer in self._layers():
                x = layer(x)
                found.append((x.min().item(), x.max().item()))
        return found

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels)
        points = zip(self.scales.tolist(), self.zero_points.tolist())
        x = torch.fake_quantize_per_tensor_affine(x, *next(points), 0, 255)
        for layer in self._layers():
            if isinstance(layer, nn.Conv2d):
                x = nn.functional.conv2d(
                    x, _int8_weights(layer.weight), layer.bias, padding=layer.padding, dilation=layer.dilation
                )
            else:
                x = layer(x)
            x = torch.fake_quantize_per_tensor_affine(x, *next(points), 0, 255)
        return x

    def folded(self) -> FoldedCAN:
        """The trained float network (an independent copy, eval mode) for :func:`fip.onnx_export.write_onnx`."""
        return copy.deepcopy(self.net).eval()


__all__ = ["QuantizationAwareCAN", "calibrate", "calibration_photos", "equalize", "multiply_adds", "prune"]
