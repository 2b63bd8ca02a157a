"""Helpers shared by the scripts that ship models: the sample-test PSNR they record, writing a network into its
model folder (``fip/models/zoo/OPERATOR``) with its record in the model card, and their Markdown reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import fip
import fip.models.zoo
from fip.data.sources import Resolution, sample_source
from fip.evaluate import evaluate
from fip.files import sha256_file
from fip.models.cards import Approximator, CardError, ModelCard, NetworkEntry, read_card, write_card
from fip.models.catalogue import (
    GUIDED_PREVIEW_MEGAPIXELS,
    REFERENCE_HALFRES_APPROXIMATOR,
    REFERENCE_LOWRES_APPROXIMATOR,
    Model,
    default_catalogue,
    network_approximators,
)
from fip.models.guided import GuidedCAN
from fip.models.storage import NetworkFile, net_config, save_network

ZOO = Path(fip.models.zoo.__file__).parent  # fip's own models: ZOO/OPERATOR/card.json and the files it names
# The file of each network of a model folder.
FILES = {"net": "net.pt", "lowres": "lowres.pt", "pruned": "pruned.pt", "int8": "pruned.int8.onnx"}


def sample_test_psnr(model: Model, request: str = "fast") -> float:
    """Mean PSNR of ``model``'s approximator ``request`` against its reference on the sample set's test photos at
    1080p, on the CPU (where the int8 files run)."""
    return evaluate(model, sample_source(), split="test", resolution=Resolution(1080), workers=1, request=request,
                    device="cpu").mean_psnr  # fmt: skip


def _approximators(key: str, net: Any) -> list[Approximator]:
    """The approximators fip's cards list for their network ``key`` (``net``: for ``int8``, the pruned network)."""
    if key == "lowres":
        return [Approximator("lowres", "lowres", "bf16", "preview", GUIDED_PREVIEW_MEGAPIXELS,
                             description="Deep Guided Filter trained end to end: its network at a third of the size "
                                         "in bf16, a learned guidance map and guided filter at full size")]  # fmt: skip
    if key == "pruned":
        return [Approximator("pruned", "pruned", "bf16", "running", description=f"pruned to {net.width} channels "
                             "and fine-tuned, running statistics folded, bf16")]  # fmt: skip
    if key == "int8":
        return [Approximator("int8", "int8", "int8", "running",
                             description="the pruned network quantized to int8, run by ONNX Runtime")]  # fmt: skip
    return network_approximators(net, guided=isinstance(net, GuidedCAN), running=getattr(net, "folds_exactly", False))


def with_network(card: ModelCard, key: str, path: str | Path, net: Any) -> ModelCard:
    """``card`` with its network ``key`` read from ``path`` (named relative to the card's folder where it lies
    there): the file's SHA-256 and ``net``'s architecture recorded (for an ONNX file, ``net`` is the network it was
    made from), the approximators that run it added where the card lists none, and the measurements of those it
    lists dropped (their descriptions renewed), as they described the network it replaces
    (``python scripts/measure_models.py OPERATOR`` measures them again)."""
    path = Path(path).resolve()
    onnx = path.suffix == ".onnx"
    inside = card.root is not None and path.parent == Path(card.root).resolve()
    entry = NetworkEntry(path.name if inside else str(path), "onnx" if onnx else "fip", sha256_file(path),
                         net_config(net), net.receptive_radius if onnx else None)  # fmt: skip
    fresh = {a.name: a for a in _approximators(key, net)}
    approximators = {
        name: dataclasses.replace(a, quality={}, seconds={}, description=fresh[name].description if name in fresh
                                  else a.description) if a.network == key else a
        for name, a in card.approximators.items()
    }  # fmt: skip
    if not any(a.network == key for a in approximators.values()):  # new ones go before the reference's, as listed
        networks = {name: a for name, a in approximators.items() if a.network is not None}
        approximators = {**networks, **fresh, **{name: a for name, a in approximators.items() if a.network is None}}
    return dataclasses.replace(card, networks={**card.networks, key: entry}, approximators=approximators)


def _new_card(operator: str, params: dict[str, Any], key: str, path: Path, net: Any) -> ModelCard:
    """The card of a model folder made for ``operator`` around its first network."""
    entry = NetworkEntry(path.name, "fip", sha256_file(path), net_config(net))
    approximators = [*_approximators(key, net), REFERENCE_LOWRES_APPROXIMATOR, REFERENCE_HALFRES_APPROXIMATOR]
    return ModelCard(
        name=f"fip/{operator}", operator=operator, params=params, networks={key: entry},
        approximators={a.name: a for a in approximators},
        description=f"fip's context aggregation network for {operator}, with its faster forms",
        licence="MIT (fip); trained from the paper authors' MIT-licensed networks where they released one",
        provenance={"fip_version": fip.__version__}, root=path.parent,
    )  # fmt: skip


def record_networks(operator: str, networks: dict[str, tuple[Path, Any]], provenance: dict[str, Any] | None = None,
                    params: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """Record network files already written into ``operator``'s model folder (key -> (file, network), as
    :func:`with_network`) in its card, and ``provenance`` entries; a folder without a card gets one (for
    ``params``). Returns the card file; loading refuses a file the card does not record."""
    folder = ZOO / operator
    try:
        card = read_card(folder)
    except CardError:
        if (folder / "card.json").exists():
            raise
        key, (path, net) = next(iter(networks.items()))
        card = _new_card(operator, params or {}, key, Path(path), net)
    for key, (path, net) in networks.items():
        card = with_network(card, key, path, net)
    if provenance:
        card = dataclasses.replace(card, provenance={**card.provenance, **provenance})
    written = write_card(card, folder)
    default_catalogue().refresh()
    return written


def ship_network(operator: str, key: str, network: NetworkFile, metrics: dict[str, Any] | None = None,
                 provenance: dict[str, Any] | None = None) -> Path:  # fmt: skip
    """Write ``network`` (with ``metrics``) as network ``key`` of ``operator``'s model, ``ZOO/OPERATOR/FILES[key]``,
    and record it in the model card (:func:`record_networks`); returns the network file."""
    path = save_network(network, ZOO / operator / FILES[key], metrics)
    record_networks(operator, {key: (path, network.net)}, provenance, network.params)
    return path


def print_report(header: str, rows: Iterable[str]) -> None:
    """Print each Markdown row as it is made (work per row is long), then the whole table under ``header``
    (``| a | b |\\n|---|---:|``)."""
    done = []
    for row in rows:
        print(row, flush=True)
        done.append(row)
    print(header)
    print("\n".join(done))
