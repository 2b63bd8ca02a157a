"""ONNX export, fp32 and int8 (static quantization calibrated on photos); :mod:`fip.runtime.onnx` runs the files.

Only networks whose normalization folds into constant weights export here: a :class:`~fip.models.FoldedCAN`, or a
:class:`~fip.models.ContextAggregationNet` with running statistics (folded on export). The paper-exact networks
normalize with statistics of each image, which an ONNX file with fixed weights cannot hold; ``fip export``
writes those as ``torch.export`` programs instead (:mod:`fip.export`).

The int8 model is ONNX Runtime's QDQ format (``quantize_static``): weights int8 per output channel, activations
uint8 per tensor, scales from a MinMax pass over calibration images. ONNX Runtime fuses each
QuantizeLinear -> Conv -> DequantizeLinear chain into one int8 convolution (VNNI on x86).
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fip.compress import equalize
from fip.errors import InputError
from fip.files import atomic_write_bytes
from fip.models.can import ContextAggregationNet, FoldedCAN, fold

INPUT, OUTPUT = "image", "output"  # the names of the files' input and output


def _folded(net: nn.Module) -> FoldedCAN:
    from fip.models.grid import BilateralGridNet

    if isinstance(net, BilateralGridNet):
        raise InputError(
            "a bilateral-grid network exports to ONNX in float32 only (its grid lookup has no int8 "
            "form): export it without --int8"
        )
    if getattr(net, "input_norm", None):
        raise InputError(
            f"this network divides each photo by its {net.input_norm} estimate, which an ONNX file "
            "would not carry; run it with fip (fip apply, fip.apply)"
        )
    if isinstance(net, FoldedCAN):
        return net
    if isinstance(net, ContextAggregationNet):
        if net.folds_exactly:
            return fold(net)
        raise InputError(
            "this network normalizes with per-image statistics (the paper's mode), which ONNX weights cannot hold: "
            "export it as a torch.export program (--out FILE.pt2), or export a model's pruned running-statistics "
            "network (-o OPERATOR --variant pruned)"
        )
    raise InputError(
        f"cannot export a {type(net).__name__} to ONNX; expected a CAN with running-statistics (export "
        "a model's pruned network: -o OPERATOR --variant pruned)"
    )


def onnx_bytes(net: nn.Module) -> bytes:
    """``net`` as an fp32 ONNX model with dynamic height and width (input ``image``, output ``output``)."""
    import contextlib
    import copy
    import io

    from fip.models.grid import BilateralGridNet

    if isinstance(net, BilateralGridNet):  # exports as it is: no normalization to fold
        folded = copy.deepcopy(net).float().eval()
    else:
        folded = _folded(net).float().to(memory_format=torch.contiguous_format).eval()
    example = torch.rand(1, folded.in_channels, 64, 96)
    dims = {2: torch.export.Dim("height", min=2), 3: torch.export.Dim("width", min=2)}
    quiet = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)  # progress, and warnings about torchvision ops a CAN never uses
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the exporter prints its progress
            program = torch.onnx.export(
                folded, (example,), input_names=[INPUT], output_names=[OUTPUT], dynamic_shapes={"x": dims}, dynamo=True
            )
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)
    return program.model_proto.SerializeToString()


def quantized_bytes(model: bytes, calibration: list[np.ndarray]) -> bytes:
    """The int8 (QDQ) version of an fp32 ONNX model from :func:`onnx_bytes`, calibrated on ``calibration``:
    ``(1, C, H, W)`` float32 arrays, photos the model will see (a few crops are enough)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter({INPUT: np.ascontiguousarray(c, dtype=np.float32)} for c in calibration)

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        source, prepared, target = (Path(tmp) / name for name in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        source.write_bytes(model)
        quant_pre_process(str(source), str(prepared))
        quantize_static(
            str(prepared),
            str(target),
            Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
        )
        return target.read_bytes()


def write_onnx(
    net: nn.Module, path: str | os.PathLike[str], calibration: list[np.ndarray] | None = None, equalized: bool = False
) -> Path:
    """Write ``net`` as ONNX (atomically): fp32, or int8 when ``calibration`` images are given (the network's
    channel scales are equalized first, :func:`fip.compress.equalize`, unless ``equalized``: a network
    fine-tuned for the int8 grid, :class:`fip.compress.QuantizationAwareCAN`, keeps its weights)."""
    if calibration is None:
        return atomic_write_bytes(path, onnx_bytes(net))
    folded = _folded(net)
    if any(np.asarray(c).shape[1] != folded.in_channels for c in calibration):
        raise InputError(
            f"the network takes {folded.in_channels} input channels but the calibration images have "
            f"{np.asarray(calibration[0]).shape[1]}: int8 calibration supports RGB-only networks"
        )
    balanced = (
        folded
        if equalized
        else equalize(folded, [torch.from_numpy(np.asarray(c, dtype=np.float32)) for c in calibration])
    )
    return atomic_write_bytes(path, quantized_bytes(onnx_bytes(balanced), calibration))


__all__ = ["onnx_bytes", "quantized_bytes", "write_onnx"]
