"""Int8 for ONNX Runtime: activation ranges calibrated on photos (MinMax, entropy, percentile), QDQ models of folded
context aggregation networks, and the per-photo requantization that lets a paper-exact network run in int8.

The model is ONNX's QDQ form, as ONNX Runtime's ``quantize_static`` writes it: weights int8 per output channel
(symmetric, scale ``absmax / 127``), biases int32 at the input scale times the weight scale, and uint8 grids
(scale, zero point) for the input, every convolution's output, every LeakyReLU's output and the network's output.
ONNX Runtime fuses each ``DequantizeLinear -> Conv -> QuantizeLinear`` into one ``QLinearConv`` and each
LeakyReLU into ``QLinearLeakyRelu``, so activations stay uint8 from layer to layer.

Calibration picks each activation grid's range from the values the network computes on calibration photos:

* ``minmax``: the smallest and largest value seen (nothing clipped; a rare outlier widens every level);
* ``entropy``: the range whose 128-level histogram is closest (Kullback-Leibler divergence) to the values'
  (TensorRT's calibration, as ONNX Runtime implements it);
* ``percentile``: the 99.999th percentile on each side (outliers clipped).

A network with per-image statistics (the paper's mode) folds each photo's statistics into its weights
(:func:`fip.models.can.fold`), so its int8 weights differ per photo; its activation grids do not (the normalization
keeps activations of different photos on similar ranges). :class:`Int8Template` holds the grids and makes the QDQ
model of one photo's folded network in milliseconds; calibration folds each calibration photo with its own
preview statistics, as the engine will.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fip.errors import InputError
from fip.models.can import ContextAggregationNet, FoldedCAN, downscaled, fold, image_statistics

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
PERCENTILE = 99.999
HISTOGRAM_BINS = 2048
ENTROPY_BINS = 512  # entropy's search is quadratic in its bins; 512 holds 192 candidate ranges
METADATA_KEY = "fip.int8"  # the model's activation grids and calibration, as JSON in its metadata
OPSET = 17
INPUT, OUTPUT = "image", "output"

Grid = tuple[float, int]  # (scale, zero point) of a uint8 grid


def uint8_grid(low: float, high: float) -> Grid:
    """The uint8 grid (scale, zero point) for values within ``[low, high]``, widened to hold 0 (as ONNX Runtime's
    quantizer does, so that zero padding is exact)."""
    low, high = min(float(low), 0.0), max(float(high), 0.0)
    scale = max(high - low, 1e-8) / 255
    return scale, int(min(255, max(0, round(-low / scale))))


def _points(net: FoldedCAN, x: torch.Tensor) -> list[torch.Tensor]:
    """The tensors a QDQ model quantizes, in order: the input, then each convolution's and LeakyReLU's output, the
    output layer's last."""
    found = [x]
    with torch.inference_mode():
        for layer in [*net.features, net.output]:
            x = layer(x)
            found.append(x)
    return found


def folded_for(net: ContextAggregationNet | FoldedCAN, x: torch.Tensor, preview_megapixels: float = 0.1) -> FoldedCAN:
    """``net`` folded for photo ``x`` (``(1, C, H, W)``): a per-image-statistics network with the statistics of a
    ``preview_megapixels`` copy of ``x`` (the engine's ``preview``), a running-statistics one with its own."""
    if isinstance(net, FoldedCAN):
        return net
    if net.folds_exactly:
        return fold(net)
    return fold(net, image_statistics(net, downscaled(x, preview_megapixels)))


def calibrate(
    net: ContextAggregationNet | FoldedCAN,
    photos: Sequence[torch.Tensor],
    methods: Sequence[str] = CALIBRATION_METHODS,
    preview_megapixels: float = 0.1,
) -> dict[str, list[Grid]]:
    """The activation grids of ``net`` (float32) calibrated on ``photos`` (``(1, C, H, W)`` float32, as the network
    takes them) by each of ``methods``; each photo is folded with its own statistics (:func:`folded_for`)."""
    from onnxruntime.quantization.calibrate import HistogramCollector

    if not photos:
        raise InputError("int8 calibration needs at least one photo")
    if unknown := sorted(set(methods) - set(CALIBRATION_METHODS)):
        raise InputError(f"unknown calibration {unknown}; choose from {', '.join(CALIBRATION_METHODS)}")
    net = net.float().eval()
    collectors = {
        "entropy": HistogramCollector("entropy", False, ENTROPY_BINS, 128, PERCENTILE, "same"),
        "percentile": HistogramCollector("percentile", False, HISTOGRAM_BINS, 128, PERCENTILE, "same"),
    }
    collectors = {m: c for m, c in collectors.items() if m in methods}
    lows: list[float] = []
    highs: list[float] = []
    for photo in photos:
        points = _points(folded_for(net, photo, preview_megapixels).float().eval(), photo.float())
        arrays = {str(i): p.detach().numpy().astype(np.float32).ravel() for i, p in enumerate(points)}
        lows = [min(v, float(a.min())) for v, a in zip(lows or [np.inf] * len(arrays), arrays.values())]
        highs = [max(v, float(a.max())) for v, a in zip(highs or [-np.inf] * len(arrays), arrays.values())]
        with contextlib.redirect_stdout(io.StringIO()):  # ONNX Runtime's collectors print their progress
            for collector in collectors.values():
                collector.collect({k: [a] for k, a in arrays.items()})
    grids = {}
    if "minmax" in methods:
        grids["minmax"] = [uint8_grid(lo, hi) for lo, hi in zip(lows, highs)]
    for method, collector in collectors.items():
        with contextlib.redirect_stdout(io.StringIO()):
            ranges = collector.compute_collection_result()
        grids[method] = [uint8_grid(float(ranges[str(i)][0]), float(ranges[str(i)][1])) for i in range(len(lows))]
    for method in grids:  # the input is a photo in [0, 1]: its grid is the exact one for 8-bit images
        grids[method][0] = (1 / 255, 0)
    return {m: grids[m] for m in methods}


def _int8_weight(weight: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-output-channel symmetric int8 weights on ``bits`` bits, and their scales."""
    top = 2 ** (bits - 1) - 1
    scale = np.abs(weight).reshape(weight.shape[0], -1).max(axis=1) / top
    scale = np.where(scale > 0, scale, 1.0).astype(np.float32)
    return np.clip(np.round(weight / scale.reshape(-1, 1, 1, 1)), -top - 1, top).astype(np.int8), scale


@dataclass(frozen=True)
class Int8Template:
    """The activation grids of a network's int8 model, which every photo's folded weights share.

    Attributes:
        grids: (scale, zero point) per quantized tensor, in :func:`_points`'s order.
        method: the calibration that chose them.
        weight_bits: 8, or 7 for CPUs whose int8 products saturate (see :func:`fip.runtime.devices.int8_saturates`).
    """

    grids: tuple[Grid, ...]
    method: str = "minmax"
    weight_bits: int = 8

    def model(self, folded: FoldedCAN) -> bytes:
        """The QDQ model of ``folded`` on these grids (input ``image``, output ``output``; any height and width)."""
        from onnx import TensorProto, helper, numpy_helper

        convs = [m for m in folded.features if isinstance(m, nn.Conv2d)] + [folded.output]
        if len(self.grids) != 2 * len(convs):
            raise InputError(
                f"the int8 grids are for {len(self.grids) // 2} convolutions; this network has "
                f"{len(convs)}: calibrate it again"
            )
        nodes, inits = [], []

        def constant(name: str, array: np.ndarray) -> str:
            inits.append(numpy_helper.from_array(array, name))
            return name

        def qdq(tensor: str, index: int) -> str:
            scale, zero = self.grids[index]
            s, z = constant(f"s{index}", np.array(scale, np.float32)), constant(f"z{index}", np.array(zero, np.uint8))
            nodes.append(helper.make_node("QuantizeLinear", [tensor, s, z], [f"q{index}"]))
            nodes.append(helper.make_node("DequantizeLinear", [f"q{index}", s, z], [f"d{index}"]))
            return f"d{index}"

        x = qdq(INPUT, 0)
        for layer, conv in enumerate(convs):
            weight = conv.weight.detach().float().cpu().numpy()
            bias = conv.bias.detach().double().cpu().numpy() if conv.bias is not None else np.zeros(weight.shape[0])
            q, w_scale = _int8_weight(weight, self.weight_bits)
            b_scale = (self.grids[2 * layer][0] * w_scale).astype(np.float32)
            w = f"w{layer}"
            nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [
                        constant(f"{w}_q", q),
                        constant(f"{w}_s", w_scale),
                        constant(f"{w}_z", np.zeros(len(w_scale), np.int8)),
                    ],
                    [w],
                    axis=0,
                )
            )
            nodes.append(
                helper.make_node(
                    "DequantizeLinear",
                    [
                        constant(f"b{layer}_q", np.round(bias / b_scale).astype(np.int32)),
                        constant(f"b{layer}_s", b_scale),
                        constant(f"b{layer}_z", np.zeros(len(b_scale), np.int32)),
                    ],
                    [f"b{layer}"],
                    axis=0,
                )
            )
            dilation, pad = conv.dilation[0], conv.padding[0]
            nodes.append(
                helper.make_node(
                    "Conv",
                    [x, w, f"b{layer}"],
                    [f"c{layer}"],
                    dilations=[dilation] * 2,
                    pads=[pad] * 4,
                    kernel_shape=list(conv.kernel_size),
                )
            )
            last = layer == len(convs) - 1
            x = qdq(f"c{layer}", 2 * layer + 1) if not last else f"c{layer}"
            if not last:
                nodes.append(helper.make_node("LeakyRelu", [x], [f"a{layer}"], alpha=0.2))
                x = qdq(f"a{layer}", 2 * layer + 2)
        # the output layer's grid is the last: quantize, then dequantize to the float output
        scale, zero = self.grids[-1]
        s, z = constant("s_out", np.array(scale, np.float32)), constant("z_out", np.array(zero, np.uint8))
        nodes.append(helper.make_node("QuantizeLinear", [x, s, z], ["q_out"]))
        nodes.append(helper.make_node("DequantizeLinear", ["q_out", s, z], [OUTPUT]))
        shape = [1, folded.in_channels, "height", "width"]
        graph = helper.make_graph(
            nodes,
            "fip_int8",
            [helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [1, 3, "height", "width"])],
            inits,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="fip")
        helper.set_model_props(model, {METADATA_KEY: json.dumps(self.to_json())})
        return model.SerializeToString()

    def to_json(self) -> dict:
        return {"grids": [list(g) for g in self.grids], "method": self.method, "weight_bits": self.weight_bits}

    @classmethod
    def of_model(cls, model: bytes) -> Int8Template:
        """The template a model from :meth:`model` was made with."""
        import onnx

        props = {p.key: p.value for p in onnx.load_from_string(model).metadata_props}
        if METADATA_KEY not in props:
            raise InputError(
                "this ONNX file was not written by fip's int8 calibration (no activation grids in its "
                "metadata): quantize the network again with fip"
            )
        data = json.loads(props[METADATA_KEY])
        return cls(tuple((float(s), int(z)) for s, z in data["grids"]), data["method"], int(data["weight_bits"]))


__all__ = ["CALIBRATION_METHODS", "Int8Template", "calibrate", "folded_for", "uint8_grid"]
