"""Export a model as a ``torch.export`` program (``.pt2``) that runs with PyTorch alone, without fip.

    import torch, json
    extra = {"fip.json": ""}
    program = torch.export.load("smooth.l0.pt2", extra_files=extra)
    info = json.loads(extra["fip.json"])       # operator, parameters, conditioning maps, input/output contract
    with torch.no_grad():
        y = program.module()(x)                 # x: (1, C, H, W) float32 sRGB in [0, 1], any H, W >= 2

Paper-exact networks export with their per-image statistics inside the graph; networks with running statistics
export with their normalization folded into the convolutions.
"""

from __future__ import annotations

import copy
import io
import json
import os
from pathlib import Path

import torch

from fip.errors import InputError
from fip.files import atomic_write_bytes
from fip.models.can import fold
from fip.models.grid import BilateralGridNet
from fip.models.guided import GuidedCAN
from fip.models.storage import NetworkFile, net_config

EXPORT_FORMAT = "fip-export-1"
MAX_SIDE = 65536


def export_program(model: NetworkFile, path: str | os.PathLike[str]) -> Path:
    """Write ``model`` as a ``torch.export`` archive with dynamic height and width (atomically); return the path."""
    if isinstance(model.net, GuidedCAN):
        raise InputError(
            f"{model.name} is a low-resolution (guided-filter) model, which fip cannot export yet; "
            "export the model's full network instead (--variant full)"
        )
    if getattr(model.net, "input_norm", None):
        raise InputError(
            f"{model.name} normalizes each photo's input by its {model.net.input_norm} estimate, which "
            "fip's export does not carry yet; run it with fip (fip apply, fip.apply)"
        )
    net = copy.deepcopy(model.net).eval().to(memory_format=torch.contiguous_format)
    grid = isinstance(net, BilateralGridNet)
    folded = not grid and net.folds_exactly
    if folded:
        net = fold(net)
    channels = model.net.in_channels
    height, width = torch.export.Dim("height", min=2, max=MAX_SIDE), torch.export.Dim("width", min=2, max=MAX_SIDE)
    example = torch.rand(1, channels, 64, 96)
    program = torch.export.export(net, (example,), dynamic_shapes={"x": {2: height, 3: width}})
    info = {
        "format": EXPORT_FORMAT,
        "model": model.name,
        "operator": model.operator,
        "params": model.params,
        "conditioning": model.conditioning.to_json() if model.conditioning else None,
        "net": net_config(model.net),
        "normalization": "bilateral grid"
        if grid
        else ("folded running statistics" if folded else "per-image statistics (paper-exact)"),
        "input": f"(1, {channels}, H, W) float32; channels 0-2 sRGB in [0, 1], then the conditioning maps "
        "(constant planes); H, W >= 2",
        "output": "(1, 3, H, W) float32 sRGB; clip to [0, 1]",
    }
    buffer = io.BytesIO()
    torch.export.save(program, buffer, extra_files={"fip.json": json.dumps(info, indent=2)})
    return atomic_write_bytes(path, buffer.getvalue())
