"""fip: slow image operators made fast by learned and untrained approximations (after Chen, Xu and Koltun, ICCV 2017).

Public API::

    import fip
    fip.list_operators()                          # registered reference operators (built-ins and plugins)
    fip.list_models()                             # installed models (cards: approximators, quality, speed)
    module = fip.load("smooth.l0", device="cuda")  # a torch.nn.Module: (B, 3, H, W) float in [0, 1] -> same
    out = fip.apply("smooth.l0", image)           # NumPy (uint8/uint16/float), PIL or torch in, the same kind out
    spec = fip.get_operator("smooth.l0")
    slow = spec.apply(image, {"lambda_": 0.02})  # the reference operator itself

``fip.load``, ``fip.apply``, ``fip.FastOperator`` and ``fip.list_models`` import PyTorch on first use.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from fip.errors import DISTRIBUTION, FipError
from fip.registry import InputKind, OperatorSpec, Param, get_operator, list_operators, register_operator

try:
    __version__ = version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {"load": "fip.api", "apply": "fip.api", "FastOperator": "fip.api", "list_models": "fip.models.catalogue"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fip' has no attribute {name!r}")


__all__ = [
    "FastOperator",
    "FipError",
    "InputKind",
    "OperatorSpec",
    "Param",
    "__version__",
    "apply",
    "get_operator",
    "list_models",
    "list_operators",
    "load",
    "register_operator",
]
