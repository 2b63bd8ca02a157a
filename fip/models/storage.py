"""Network files: reading and writing one trained network with what it approximates.

A network is named by:

* ``paper/<Operator>``: the authors' released networks (:mod:`fip.models.paper`);
* a Lightning checkpoint (``*.ckpt``) written by ``fip train``;
* a fip network file (``*.pt``) written by :func:`save_network`: the network's weights and configuration, the
  operator and its parameters, and nothing of the training code.

Files are read with ``torch.load(weights_only=True)``: a file can hold tensors and plain containers only, never code.
A model (one or more networks, how to run them and what they scored) is described by a model card
(:mod:`fip.models.cards`); this module knows single files only.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fip.conditioning import Conditioning, from_json
from fip.errors import FipError
from fip.files import atomic_write_bytes
from fip.models.can import ContextAggregationNet
from fip.models.families import family_for, family_of
from fip.models.grid import BilateralGridNet
from fip.models.guided import GuidedCAN

NETWORK_FORMAT = "fip-model-1"


@dataclass
class NetworkFile:
    """One trained network and what it approximates.

    Attributes:
        net: the network, in eval mode, float32, on the CPU.
        name: what it was loaded as (a path, or ``paper/<Operator>``).
        operator: the operator it approximates (``None`` for a network of several operators).
        params: the operator parameters it was trained for.
        conditioning: the extra input maps of a network of several tasks, or ``None``.
        metrics: what the file records (for example the PSNR its training measured).
        warm_start_sha256: SHA-256 of the file its training started from, where recorded.
    """

    net: ContextAggregationNet | GuidedCAN | BilateralGridNet
    name: str
    operator: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    conditioning: Conditioning | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    warm_start_sha256: str | None = None


def net_config(net: ContextAggregationNet | GuidedCAN | BilateralGridNet) -> dict[str, Any]:
    """The constructor arguments that rebuild ``net`` (:mod:`fip.models.families`: a ``guided`` entry for a
    :class:`GuidedCAN`, a ``grid`` entry for a :class:`BilateralGridNet`)."""
    return family_of(net).config(net)


def build_network(config: dict[str, Any], state: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """The network :func:`net_config` describes, with ``state`` loaded when given, in eval mode."""
    return family_for(config).build(config, state)


def _paper_network(name: str) -> NetworkFile:
    from fip.conditioning import OneHot
    from fip.models.paper import COMBINED_ORDER, FIP_OPERATOR, load_paper_model

    paper_name = name.removeprefix("paper/").removeprefix("combined:")  # combined:X: the combined net as X
    conditioning = OneHot(tuple(FIP_OPERATOR[n] for n in COMBINED_ORDER)) if paper_name == "combined" else None
    return NetworkFile(load_paper_model(name), name, FIP_OPERATOR.get(paper_name), conditioning=conditioning)


def load_network(name_or_path: str | os.PathLike[str]) -> NetworkFile:
    """Load one network by name or path (see the module docstring).

    Raises:
        FipError: the name is unknown, the file is missing, or it holds no fip network (the message says which).
    """
    text = str(name_or_path)
    if text.startswith("paper/"):
        return _paper_network(text)
    path = Path(text).expanduser()
    if not path.is_file():
        raise FipError(f"network file {text!r} does not exist (expected 'paper/<Operator>', a .pt or a .ckpt file)")
    try:
        stored = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable content means the same to the user
        raise FipError(
            f"{path} is not a fip network file or Lightning checkpoint: torch could not read it as one "
            f"({type(exc).__name__})"
        ) from None
    if not isinstance(stored, dict):
        raise FipError(
            f"{path} is not a fip network file: it holds a {type(stored).__name__}, not fip's record. Give "
            "a model fip made (fip train's .ckpt or .pt, a model folder) or an installed model's name "
            "(fip models)"
        )
    if stored.get("format") == NETWORK_FORMAT:
        return NetworkFile(
            build_network(stored["net"], stored["state_dict"]),
            str(path),
            stored.get("operator"),
            stored.get("params", {}),
            from_json(stored.get("conditioning")),
            stored.get("metrics", {}),
            stored.get("warm_start_sha256"),
        )
    if isinstance(stored.get("fip"), dict) and "state_dict" in stored:  # a checkpoint of fip.lit.LitApproximator
        state = {k.removeprefix("net."): v for k, v in stored["state_dict"].items() if k.startswith("net.")}
        meta = stored["fip"]
        return NetworkFile(
            build_network(meta["net"], state),
            str(path),
            meta.get("operator"),
            meta.get("params", {}),
            from_json(meta.get("conditioning")),
            warm_start_sha256=meta.get("warm_start_sha256"),
        )
    raise FipError(f"{path} holds no fip network: expected a file from `fip train` or fip.models.save_network")


def save_network(network: NetworkFile, path: str | os.PathLike[str], metrics: dict[str, Any] | None = None) -> Path:
    """Write ``network`` as a small, self-contained fip network file (atomically); return the path."""
    buffer = io.BytesIO()
    torch.save(
        {
            "format": NETWORK_FORMAT,
            "net": net_config(network.net),
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in network.net.state_dict().items()},
            "operator": network.operator,
            "params": network.params,
            "conditioning": network.conditioning.to_json() if network.conditioning else None,
            "metrics": metrics if metrics is not None else network.metrics,
            "warm_start_sha256": network.warm_start_sha256,
        },
        buffer,
    )
    return atomic_write_bytes(path, buffer.getvalue())


__all__ = ["NETWORK_FORMAT", "NetworkFile", "build_network", "load_network", "net_config", "save_network"]
