"""Running ONNX files with ONNX Runtime behind the calling convention of fip's folded networks."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from fip.errors import FipError, InputError
from fip.models.can import ContextAggregationNet
from fip.onnx_export import INPUT, OUTPUT
from fip.quantize import Int8Template, folded_for

PRECISE_PRODUCTS = "session.x64quantprecision"  # ONNX Runtime's U8U8 mode for x86 CPUs without VNNI


class OrtNet:
    """An ONNX model with input ``image`` and output ``output`` (as :mod:`fip.onnx_export` writes them): ``(1, C, H, W)``
    float tensor in, ``(1, 3, H, W)`` float tensor out on the input's device, plus ``receptive_radius`` and ``in_channels`` so
    :func:`fip.runtime.execute.forward_halo_tiles` can run it tile by tile.

    Args:
        path: the ONNX file, or the model itself (bytes).
        receptive_radius: how far an output pixel sees (the halo tiles need).
        device: ``cuda`` runs on ONNX Runtime's CUDA provider (``onnxruntime-gpu``), anything else on the CPU.
        threads: CPU threads (default: PyTorch's).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | bytes,
        receptive_radius: int,
        device: torch.device | None = None,
        threads: int | None = None,
    ):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise FipError("ONNX Runtime is not installed: pip install onnxruntime") from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        if device is None or device.type == "cpu":
            from fip.runtime.devices import int8_saturates

            if int8_saturates(torch.device("cpu")):  # else the int8 products overflow (see int8_saturates)
                options.add_session_config_entry(PRECISE_PRODUCTS, "1")
        providers = ["CPUExecutionProvider"]
        if device is not None and device.type == "cuda":
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
        try:
            self.session = ort.InferenceSession(
                path if isinstance(path, bytes) else str(path), options, providers=providers
            )
        except Exception as exc:  # ONNX Runtime raises its own types for bad files
            where = "the model" if isinstance(path, bytes) else str(path)
            raise FipError(f"{where} is not a loadable ONNX model ({type(exc).__name__}: {exc})") from exc
        self.in_channels = self.session.get_inputs()[0].shape[1]
        self.receptive_radius = receptive_radius
        self.path = None if isinstance(path, bytes) else Path(path)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise InputError(f"expected input (1, {self.in_channels}, H, W); got {tuple(x.shape)}")
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return torch.from_numpy(self.session.run([OUTPUT], {INPUT: array})[0]).to(x.device)


class PerPhotoInt8:
    """The int8 form of a network with per-image statistics (the paper's mode), made for each photo: the float
    network's normalization is folded with the photo's preview statistics, and the folded weights are quantized on
    the int8 file's calibrated activation grids (:class:`fip.quantize.Int8Template`), so every photo runs the
    same int8 model its own statistics would give. Making it costs a preview pass and ~20 ms of model building.

    Args:
        path: the int8 file (written from an :class:`~fip.quantize.Int8Template`).
        net: the float network it was quantized from.
        receptive_radius: how far an output pixel sees.
        device: where ONNX Runtime runs it.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        net: ContextAggregationNet,
        receptive_radius: int,
        device: torch.device | None = None,
    ):
        self.template = Int8Template.of_model(Path(path).read_bytes())
        self.net, self.receptive_radius, self.device = net, receptive_radius, device
        self.input_norm = getattr(net, "input_norm", None)

    def for_photo(self, x: torch.Tensor, preview_megapixels: float = 0.1) -> OrtNet:
        """The int8 model of photo ``x`` (``(1, C, H, W)``, as the network takes it)."""
        folded = folded_for(self.net, x.to(next(self.net.parameters()).device).float(), preview_megapixels)
        return OrtNet(self.template.model(folded), self.receptive_radius, self.device)


__all__ = ["OrtNet", "PerPhotoInt8"]
