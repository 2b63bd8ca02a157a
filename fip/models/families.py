"""Network families: each kind of network fip trains and runs, described in one place.

A :class:`NetworkFamily` ties together what the rest of fip needs to know of one kind of network:

* its module class, and the architecture entries that rebuild it (:meth:`~NetworkFamily.config`,
  :meth:`~NetworkFamily.build`): what network files and model cards store;
* the approximators it offers before anything is measured (:meth:`~NetworkFamily.approximators`);
* its cost and memory model for the engine's plans: multiply-adds per output pixel on a common scale
  (:meth:`~NetworkFamily.relative_cost`), the fixed size it works at or the factor it downscales by, whether it runs
  in bands of rows, and the full-size maps it keeps.

fip's families are ``can`` (:class:`~fip.models.can.ContextAggregationNet`), ``guided``
(:class:`~fip.models.guided.GuidedCAN`, the Deep Guided Filter form), ``grid``
(:class:`~fip.models.grid.BilateralGridNet`) and ``guide`` (:class:`~fip.models.guided.GuideMap`: the learned
guidance map of an upsampler, which runs no approximator of its own). A card's architecture names its family by an
entry of that name (``guided``, ``grid``, ``guide``); the plain CAN has none. :func:`register_family` adds a family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from fip.errors import FipError
from fip.models.can import ContextAggregationNet, NormMode
from fip.models.cards import Approximator, Upsampler
from fip.models.grid import BilateralGridNet
from fip.models.guided import GuidedCAN, GuideMap

PREVIEW_MEGAPIXELS = 0.1  # the statistics preview of a network run at full resolution
GUIDED_PREVIEW_MEGAPIXELS = 0.05  # the statistics preview of a guided network's low-resolution pass
GRID_APPROXIMATOR = Approximator(
    "grid",
    "net",
    "fp32",
    description="bilateral grid (HDRNet-style): a network on a small fixed-size copy predicts a grid of colour "
    "transforms; per pixel a learned guide, a grid lookup and a 3x4 transform",
)
PRECISION_COST = {"fp32": 1.0, "bf16": 0.5, "fp16": 0.5, "int8": 0.25}  # relative cost of a multiply-add


@dataclass(frozen=True)
class NetworkFamily:
    """One kind of network.

    Attributes:
        name: the family's name; also the architecture entry that marks it in a card (none for ``can``).
        module: its ``nn.Module`` class.
        config: ``net -> architecture``: the JSON-able constructor arguments that rebuild ``net``.
        construct: ``architecture -> net``: a new network of that architecture.
        approximators: ``net -> approximators`` it offers unmeasured, each running the card's network ``net``.
        relative_cost: ``(approximator, architecture) -> multiply-adds per output pixel`` (a CAN24's full
            pass: 5,184), for ranking approximators no one has timed.
        working_size: ``architecture -> (height, width)`` it always works at, whatever the photo (else ``None``).
        downscale_factor: ``architecture -> factor`` its own low-resolution pass divides the photo by (else
            ``None``).
        banded: whether its full-size step runs in bands of rows (constant memory: never tiled).
        guide_bytes_per_pixel: bytes of full-size maps it keeps beside the photo (a learned guide).
        upsampler: ``architecture -> words`` for how its own upsampling brings a low-resolution result to full
            size (``None``: the approximator's upsampler, or a learned guided filter, says it).
    """

    name: str
    module: type[nn.Module]
    config: Callable[[Any], dict[str, Any]]
    construct: Callable[[dict[str, Any]], nn.Module]
    approximators: Callable[[Any], list[Approximator]]
    relative_cost: Callable[[Approximator, dict[str, Any]], float]
    working_size: Callable[[dict[str, Any]], tuple[int, int] | None] = lambda architecture: None
    downscale_factor: Callable[[dict[str, Any]], float | None] = lambda architecture: None
    banded: bool = False
    guide_bytes_per_pixel: int = 0
    upsampler: Callable[[dict[str, Any]], str | None] = lambda architecture: None

    def build(self, architecture: dict[str, Any], state: dict[str, Any] | None = None) -> nn.Module:
        """The network ``architecture`` describes, with ``state`` loaded when given, in eval mode.

        Raises:
            FipError: the architecture or the state does not fit the family's module.
        """
        try:
            net = self.construct(dict(architecture))
            if state is not None:
                net.load_state_dict(state)
        except (TypeError, RuntimeError) as exc:
            raise FipError(f"the stored network does not match its configuration {architecture} ({exc})") from exc
        return net.eval()


_FAMILIES: dict[str, NetworkFamily] = {}


def register_family(family: NetworkFamily) -> NetworkFamily:
    """Add ``family`` (a later one of the same name replaces it); returns it."""
    _FAMILIES[family.name] = family
    return family


def families() -> list[NetworkFamily]:
    return list(_FAMILIES.values())


def family_of(net: nn.Module) -> NetworkFamily:
    """The family of the network ``net``.

    Raises:
        FipError: ``net`` is of no registered family.
    """
    for cls in type(net).__mro__:  # the most specific family: a subclass's own before its base's
        for family in _FAMILIES.values():
            if family.module is cls:
                return family
    known = ", ".join(f"{f.name} ({f.module.__name__})" for f in _FAMILIES.values())
    raise FipError(f"a {type(net).__name__} is not a network fip knows; its families: {known}")


def family_for(architecture: dict[str, Any]) -> NetworkFamily:
    """The family of a card's or a file's architecture entry: the one whose name is a key of it, else ``can``."""
    return next((f for name, f in _FAMILIES.items() if name != "can" and name in architecture), _FAMILIES["can"])


# -- the context aggregation network --------------------------------------------------------------------------------


def _can_config(net: ContextAggregationNet) -> dict[str, Any]:
    norm = next((m.mode.value for m in net.modules() if hasattr(m, "mode")), NormMode.IMAGE.value)
    config = {"in_channels": net.in_channels, "width": net.width, "depth": net.depth, "norm": norm}
    if net.conv_bias:  # only then: files without the key load as the paper's bias-free network
        config["conv_bias"] = True
    if getattr(net, "input_norm", None):  # likewise: files without it load as networks of the plain input
        config["input_norm"] = net.input_norm
    return config


def _can_approximators(net: ContextAggregationNet) -> list[Approximator]:
    """``full`` (the statistics of the photo at every layer), ``fast`` (statistics from a preview, folded),
    ``bf16`` and ``network-lowres`` (a third of the size, guided-filter upsampling); for a network with running
    statistics, ``full`` and ``bf16`` with those."""
    if getattr(net, "folds_exactly", False):
        return [
            Approximator("full", "net", "fp32", "running", description="running statistics, folded, fp32"),
            Approximator("bf16", "net", "bf16", "running", description="running statistics, folded, bf16"),
        ]
    return [
        Approximator("full", "net", "fp32", "image", description="paper-exact: the photo's statistics at every layer"),
        Approximator(
            "fast",
            "net",
            "fp32",
            "preview",
            PREVIEW_MEGAPIXELS,
            description=f"statistics from a {PREVIEW_MEGAPIXELS:g} MP preview, folded into the convolutions",
        ),
        Approximator("bf16", "net", "bf16", "preview", PREVIEW_MEGAPIXELS, description="fast, in bfloat16"),
        Approximator(
            "network-lowres",
            "net",
            "bf16",
            "preview",
            PREVIEW_MEGAPIXELS,
            scale=1 / 3,
            upsampler=Upsampler("guided", radius=1, eps=1e-4),
            description="the network at a third of the size in bf16, guided-filter upsampling",
        ),
    ]


def _can_cost(approximator: Approximator, architecture: dict[str, Any], factor: float | None = None) -> float:
    """Width squared times depth, times the share of pixels it works on, halved per halving of the number width,
    tripled for statistics taken at every layer."""
    area = approximator.scale**2 if approximator.scale else (1 / factor**2 if factor else 1.0)
    exact = 3.0 if approximator.statistics == "image" else 1.0
    width, depth = architecture.get("width", 24), architecture.get("depth", 9)
    return width**2 * depth * area * PRECISION_COST[approximator.precision] * exact


CAN = register_family(
    NetworkFamily(
        "can",
        ContextAggregationNet,
        _can_config,
        lambda config: ContextAggregationNet(**config),
        _can_approximators,
        _can_cost,
    )
)


# -- the guided (Deep Guided Filter) form ---------------------------------------------------------------------------


def _guided_config(net: GuidedCAN) -> dict[str, Any]:
    guided = {"factor": net.factor, "radius": net.filter.radius, "fit_hidden": net.filter.fit_hidden}
    return {**_can_config(net), "guided": {**guided, "guide_hidden": net.guide.hidden}}


def _guided_construct(config: dict[str, Any]) -> GuidedCAN:
    guided = config.pop("guided")
    return GuidedCAN(**config, **guided)


def _guided_factor(architecture: dict[str, Any]) -> float | None:
    return float(architecture["guided"]["factor"])


GUIDED = register_family(
    NetworkFamily(
        "guided",
        GuidedCAN,
        _guided_config,
        _guided_construct,
        lambda net: [
            Approximator(
                "lowres",
                "net",
                "bf16",
                "preview",
                GUIDED_PREVIEW_MEGAPIXELS,
                description="the network's own low-resolution pass and learned guided filter, bf16",
            )
        ],
        lambda approximator, architecture: _can_cost(approximator, architecture, _guided_factor(architecture)),
        downscale_factor=_guided_factor,
        guide_bytes_per_pixel=3 * 4,  # the learned guidance map, float32 at full size
    )
)


# -- the bilateral grid ---------------------------------------------------------------------------------------------


def _grid_config(net: BilateralGridNet) -> dict[str, Any]:
    grid = {
        "lowres": net.lowres,
        "grid_size": net.grid_size,
        "depth": net.depth,
        "width": net.width,
        "guide_hidden": net.guide_hidden,
        "histogram_bins": net.histogram_bins,
    }
    return {"in_channels": net.in_channels, "grid": grid}


def _grid_construct(config: dict[str, Any]) -> BilateralGridNet:
    grid = config.pop("grid")
    return BilateralGridNet(**config, **grid)


GRID = register_family(
    NetworkFamily(
        "grid",
        BilateralGridNet,
        _grid_config,
        _grid_construct,
        lambda net: [GRID_APPROXIMATOR],
        # A guide, a lookup and a transform per pixel, ~100 multiply-adds, on the CAN's scale (width^2 * depth).
        lambda approximator, architecture: (4 * architecture["grid"].get("guide_hidden", 8) + 60) / 9,
        working_size=lambda architecture: (architecture["grid"]["lowres"],) * 2,
        banded=True,
        upsampler=lambda architecture: "bilateral grid ({grid_size}x{grid_size}x{depth} cells, learned guide)".format(
            **architecture["grid"]
        ),
    )
)


# -- a learned guidance map: the upsampler of the reference at low resolution ---------------------------------------


GUIDE = register_family(
    NetworkFamily(
        "guide",
        GuideMap,
        lambda net: {"guide": {"hidden": net.hidden}},
        lambda config: GuideMap(**config["guide"]),
        lambda net: [],  # approximators name it in their upsampler (Upsampler.guide)
        lambda approximator, architecture: 0.0,
        guide_bytes_per_pixel=3 * 4,  # the map of the photo, float32 at full size
    )
)


__all__ = [
    "CAN",
    "GRID",
    "GRID_APPROXIMATOR",
    "GUIDE",
    "GUIDED",
    "GUIDED_PREVIEW_MEGAPIXELS",
    "PREVIEW_MEGAPIXELS",
    "NetworkFamily",
    "families",
    "family_for",
    "family_of",
    "register_family",
]
