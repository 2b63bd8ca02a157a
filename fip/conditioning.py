"""Extra constant input maps that let one network serve several tasks (the paper's two extensions).

* :class:`OneHot`: one network for several operators; input channel ``3 + i`` is 1 for the ``i``-th operator and
  0 for the others (the authors' combined CAN32 has ten).
* :class:`Sweep`: one network for a range of one parameter of one operator (a slider); one input channel holds
  the parameter's value, scaled to [0, 1] over the swept range (logarithmically when the range spans a factor
  of ten or more, as smoothing strengths do).

A network without conditioning takes RGB only. Conditionings are saved with a model (``to_json``) so inference
can build the maps for a requested operator and parameters.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fip.errors import ParameterError
from fip.registry import get_operator


@dataclass(frozen=True)
class Task:
    """One (operator, parameters) target the network learns, with the constant maps that select it."""

    operator: str
    params: dict[str, Any]
    maps: tuple[float, ...] = ()


@dataclass(frozen=True)
class OneHot:
    """One map per operator, in ``operators`` order."""

    operators: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "operators", tuple(self.operators))
        if len(set(self.operators)) != len(self.operators) or len(self.operators) < 2:
            raise ParameterError(f"a one-hot network needs two or more distinct operators; got {list(self.operators)}")
        for name in self.operators:
            get_operator(name)

    @property
    def channels(self) -> int:
        return len(self.operators)

    def maps(self, operator: str, params: Mapping[str, Any] | None = None) -> tuple[float, ...]:
        if operator not in self.operators:
            raise ParameterError(f"this network was trained for {', '.join(self.operators)}; not for {operator!r}")
        return tuple(1.0 if name == operator else 0.0 for name in self.operators)

    def tasks(self, params: Mapping[str, Mapping[str, Any]] | None = None) -> list[Task]:
        params = params or {}
        return [Task(n, get_operator(n).resolve_params(params.get(n)), self.maps(n)) for n in self.operators]

    def to_json(self) -> dict[str, Any]:
        return {"kind": "one_hot", "operators": list(self.operators)}


@dataclass(frozen=True)
class Sweep:
    """One map holding parameter ``param`` of ``operator``, trained at ``values``."""

    operator: str
    param: str
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        declared = get_operator(self.operator).param(self.param)
        if declared.type not in (int, float):
            raise ParameterError(
                f"only numeric parameters can be swept; {self.operator}.{self.param} is {declared.type.__name__}"
            )
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))
        if len(set(self.values)) < 2:
            raise ParameterError(f"a sweep needs two or more distinct values of {self.param}; got {list(self.values)}")
        for value in self.values:
            declared.validate(value)

    @property
    def channels(self) -> int:
        return 1

    @property
    def logarithmic(self) -> bool:
        low, high = min(self.values), max(self.values)
        return low > 0 and high / low >= 10

    def encode(self, value: float) -> float:
        low, high = min(self.values), max(self.values)
        if self.logarithmic:
            return (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
        return (value - low) / (high - low)

    def maps(self, operator: str, params: Mapping[str, Any] | None = None) -> tuple[float, ...]:
        if operator != self.operator:
            raise ParameterError(f"this network was trained for {self.operator}; not for {operator!r}")
        value = get_operator(operator).resolve_params(params)[self.param]
        low, high = min(self.values), max(self.values)
        if not low <= value <= high:
            raise ParameterError(f"this network covers {self.param} in [{low:g}, {high:g}]; got {value:g}")
        return (self.encode(value),)

    def tasks(self, params: Mapping[str, Any] | None = None) -> list[Task]:
        spec = get_operator(self.operator)
        tasks = []
        for value in self.values:
            resolved = spec.resolve_params({**(params or {}), self.param: value})
            tasks.append(Task(self.operator, resolved, (self.encode(resolved[self.param]),)))
        return tasks

    def to_json(self) -> dict[str, Any]:
        return {"kind": "sweep", "operator": self.operator, "param": self.param, "values": list(self.values)}


Conditioning = OneHot | Sweep


def from_json(data: Mapping[str, Any] | None) -> Conditioning | None:
    """Rebuild a conditioning saved with :meth:`to_json` (``None`` for plain RGB networks)."""
    if not data:
        return None
    if data.get("kind") == "one_hot":
        return OneHot(tuple(data["operators"]))
    if data.get("kind") == "sweep":
        return Sweep(data["operator"], data["param"], tuple(data["values"]))
    raise ParameterError(f"unknown conditioning {dict(data)!r}")


def make_conditioning(operator: str | Sequence[str], sweep: Mapping[str, Any] | None = None) -> Conditioning | None:
    """The conditioning a training config asks for: a list of operators is one-hot; ``sweep`` =
    ``{"param": NAME, "values": [...]}`` sweeps one parameter of a single operator; else none."""
    operators = [operator] if isinstance(operator, str) else list(operator)
    if sweep is not None:
        if len(operators) != 1:
            raise ParameterError("a parameter sweep trains one operator; give a single operator name")
        unknown = set(sweep) - {"param", "values"}
        if unknown or "param" not in sweep or "values" not in sweep:
            raise ParameterError(f"sweep must be {{param: NAME, values: [...]}}; got {dict(sweep)!r}")
        return Sweep(operators[0], sweep["param"], tuple(sweep["values"]))
    if len(operators) > 1:
        return OneHot(tuple(operators))
    return None
