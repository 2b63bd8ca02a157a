"""Networks: the context aggregation network, its guided-filter low-resolution form, the bilateral-grid
approximator, the authors' released weights."""

from fip.models.can import AdaptiveNorm, ContextAggregationNet, NormMode, can24, can32
from fip.models.grid import BilateralGridNet
from fip.models.guided import GuidedCAN
from fip.models.paper import PAPER_OPERATORS, load_paper_model

__all__ = [
    "PAPER_OPERATORS",
    "AdaptiveNorm",
    "BilateralGridNet",
    "ContextAggregationNet",
    "GuidedCAN",
    "NormMode",
    "can24",
    "can32",
    "load_paper_model",
]
