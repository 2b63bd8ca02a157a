"""fip: learn slow image operators with fast context aggregation networks (Chen, Xu and Koltun, ICCV 2017).

Public API::

    import fip
    fip.list_operators()             # registered reference operators (built-ins and plugins)
    spec = fip.get_operator("smooth.l0")
    out = spec.apply(image, {"lambda_": 0.02})
"""

from importlib.metadata import PackageNotFoundError, version

from fip.errors import FipError
from fip.registry import InputKind, OperatorSpec, Param, get_operator, list_operators, register_operator

try:
    __version__ = version("fip")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "FipError",
    "InputKind",
    "OperatorSpec",
    "Param",
    "__version__",
    "get_operator",
    "list_operators",
    "register_operator",
]
