"""The operator registry and its plugin API.

An operator is a slow reference image operator that fip learns to approximate. Each one is described by a frozen
:class:`OperatorSpec` and registered with the :func:`register_operator` decorator::

    from fip import InputKind, Param, register_operator

    @register_operator(
        "blur.box",
        description="Box blur.",
        params=[Param("radius", 2, low=1, high=50, description="half width of the box, pixels")],
    )
    def box_blur(image, *, radius):
        ...

Operators arrive through the entry-point group ``fip.operators``: each entry point names a module whose import
registers operators. fip's own built-ins (the ``fip_operators`` package) come through that same group, so the
built-ins prove the plugin path every day. Discovery is lazy (on the first :func:`list_operators` or
:func:`get_operator`), cached, and in a deterministic order: fip's own entry points first, then the others sorted
by distribution and entry-point name.

* A plugin that fails to import produces a :class:`PluginLoadWarning` naming it; fip keeps working without it.
* Two sources registering one name raise :class:`~fip.errors.DuplicateOperatorError` naming both.
* ``FIP_DISABLE_PLUGINS=1`` turns third-party discovery off (fip's built-ins still load).
"""

from __future__ import annotations

import contextvars
import enum
import importlib.metadata
import logging
import math
import os
import threading
import types
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fip.errors import DuplicateOperatorError, InputError, ParameterError, UnknownOperatorError
from fip.imaging import check_image

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "fip.operators"
DISABLE_PLUGINS_ENV = "FIP_DISABLE_PLUGINS"
BUILTIN_DISTRIBUTION = "fip"


class PluginLoadWarning(UserWarning):
    """A third-party operator plugin could not be loaded; fip goes on without it."""


class InputKind(str, enum.Enum):
    """Which view of a photo an operator consumes. Every operator outputs an sRGB image.

    * ``SRGB``: ``(H, W, 3)`` float32 in [0, 1], sRGB-encoded; the same image the network sees.
    * ``LINEAR_RGB``: ``(H, W, 3)`` float32 in [0, 1], scene-linear camera RGB after white balance and the
      camera's colour matrix to sRGB primaries, before the sRGB transfer curve (so ``srgb == encode(linear)``).
    * ``BAYER``: a :class:`fip.raw.Mosaic`: the sensor's colour filter array samples, black level subtracted and
      scaled to [0, 1] by the white level, with its CFA pattern, white balance and colour matrix.
    """

    SRGB = "srgb"
    LINEAR_RGB = "linear_rgb"
    BAYER = "bayer"


ParamValue = bool | int | float | str


@dataclass(frozen=True)
class Param:
    """One parameter of an operator.

    Args:
        name: keyword argument name passed to the operator function.
        default: default value; its type (bool, int, float or str) is the parameter's type.
        low, high: inclusive range for numeric parameters (``None`` = unbounded on that side).
        choices: the allowed values of a string parameter.
        description: what the parameter means, with its unit.
    """

    name: str
    default: ParamValue
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ParameterError(f"parameter name {self.name!r} is not a Python identifier")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))
            if self.default not in self.choices:
                raise ParameterError(
                    f"parameter {self.name!r}: default {self.default!r} is not one of its choices {self.choices}"
                )
        elif not isinstance(self.default, bool):
            # Validates that the default itself lies in the declared range.
            self.validate(self.default)

    @property
    def type(self) -> type:
        return type(self.default)

    def validate(self, value: Any) -> ParamValue:
        """Return ``value`` converted to this parameter's type, or raise :class:`ParameterError`."""
        expected = self.type
        if expected is bool:
            if isinstance(value, str) and value.lower() in {"true", "false", "1", "0"}:
                return value.lower() in {"true", "1"}
            if isinstance(value, bool):
                return value
            raise ParameterError(f"parameter {self.name!r} must be true or false, got {value!r}")
        if expected is str:
            if not isinstance(value, str):
                raise ParameterError(f"parameter {self.name!r} must be a string, got {value!r}")
            if self.choices is not None and value not in self.choices:
                raise ParameterError(
                    f"parameter {self.name!r} must be one of {', '.join(self.choices)}; got {value!r}"
                )
            return value
        try:
            if isinstance(value, bool):
                raise TypeError
            converted = expected(value) if not isinstance(value, str) else expected(float(value))
            if expected is int and float(value) != converted:
                raise TypeError
        except (TypeError, ValueError):
            raise ParameterError(
                f"parameter {self.name!r} must be {'an integer' if expected is int else 'a number'}, got {value!r}"
            ) from None
        if not math.isfinite(converted) or (self.low is not None and converted < self.low) or (
            self.high is not None and converted > self.high
        ):
            raise ParameterError(f"parameter {self.name!r} = {value!r} is outside its range {self.range_text()}")
        return converted

    def range_text(self) -> str:
        if self.choices is not None:
            return "{" + ", ".join(self.choices) + "}"
        if self.type is bool:
            return "{true, false}"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        return f"[{low}, {high}]"

    def to_json(self) -> dict[str, Any]:
        return {
            "default": self.default,
            "type": self.type.__name__,
            "range": list(self.choices) if self.choices is not None else [self.low, self.high],
            "description": self.description,
        }


@dataclass(frozen=True)
class OperatorSpec:
    """The frozen description of one registered operator.

    The reference ``function`` takes the view named by ``input`` (see :class:`InputKind`) and the parameters as
    keyword arguments, and returns an sRGB image ``(H, W, 3)`` float in [0, 1] of the same height and width.
    Call :meth:`apply` rather than ``function`` directly: it fills defaults, validates parameters and checks
    the output.
    """

    name: str
    description: str
    function: Callable[..., Any]
    params: tuple[Param, ...] = ()
    input: InputKind = InputKind.SRGB
    citation: str = ""
    version: str = "1"
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        family, dot, method = self.name.partition(".")
        if not (dot and family and method) or not all(p.isidentifier() for p in (family, method)):
            raise ParameterError(
                f"operator name {self.name!r} must be 'family.method' (two identifiers), e.g. 'smooth.l0'"
            )
        if self.name != self.name.lower():
            raise ParameterError(f"operator name {self.name!r} must be lower case")
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "input", InputKind(self.input))
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ParameterError(f"operator {self.name!r} declares a parameter twice: {names}")

    @property
    def family(self) -> str:
        return self.name.partition(".")[0]

    @property
    def method(self) -> str:
        return self.name.partition(".")[2]

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.params) or "none"
        raise ParameterError(f"operator {self.name!r} has no parameter {name!r}; its parameters are: {known}")

    def resolve_params(self, overrides: Mapping[str, Any] | None = None) -> dict[str, ParamValue]:
        """Return all parameters with defaults filled in and ``overrides`` validated (name, type and range)."""
        resolved = {p.name: p.default for p in self.params}
        for name, value in (overrides or {}).items():
            resolved[name] = self.param(name).validate(value)
        return resolved

    def apply(self, view: Any, params: Mapping[str, Any] | None = None) -> np.ndarray:
        """Run the reference operator on one view and return its sRGB output ``(H, W, 3)`` float32 in [0, 1]."""
        kwargs = self.resolve_params(params)
        if self.input is not InputKind.BAYER:
            check_image(view, name=f"input of {self.name}")
            height, width = view.shape[:2]
        else:
            from fip.mosaic import Mosaic

            if not isinstance(view, Mosaic):
                raise InputError(
                    f"{self.name} takes a Bayer mosaic (fip.raw.Mosaic, e.g. fip.raw.load_photo(path).mosaic); "
                    f"got {type(view).__name__}"
                )
            height, width = view.shape
        out = np.asarray(self.function(view, **kwargs))
        if out.shape != (height, width, 3):
            raise ValueError(
                f"operator {self.name!r} ({self.source}) returned shape {out.shape}; "
                f"expected ({height}, {width}, 3): an operator must keep the image size and output RGB"
            )
        if not np.all(np.isfinite(out)):
            raise ValueError(f"operator {self.name!r} ({self.source}) returned NaN or infinite values")
        return np.clip(out.astype(np.float32, copy=False), 0.0, 1.0)

    def apply_batch(self, views: Sequence[Any], params: Mapping[str, Any] | None = None) -> np.ndarray:
        """:meth:`apply` on each view; returns ``(B, H, W, 3)`` float32 (all views must share their size)."""
        return np.stack([self.apply(view, params) for view in views])

    def __call__(self, images: Any, **params: Any) -> Any:
        """Tensor interface for sRGB and linear operators: ``(B, 3, H, W)`` or ``(3, H, W)`` float tensor in
        [0, 1] -> the same shape, on the same device and dtype. Each image is processed on its own."""
        import torch

        if self.input is InputKind.BAYER:
            raise InputError(f"{self.name} takes a Bayer mosaic: call spec.apply(mosaic) with a fip.raw.Mosaic")
        if not isinstance(images, torch.Tensor) or images.ndim not in (3, 4) or images.shape[-3] != 3:
            shape = tuple(images.shape) if hasattr(images, "shape") else type(images).__name__
            raise InputError(f"{self.name}: expected a (B, 3, H, W) or (3, H, W) tensor; got {shape}")
        batch = images if images.ndim == 4 else images[None]
        arrays = batch.detach().float().permute(0, 2, 3, 1).cpu().numpy()
        out = torch.from_numpy(self.apply_batch(list(arrays), params)).permute(0, 3, 1, 2)
        out = out.to(device=images.device, dtype=images.dtype)
        return out if images.ndim == 4 else out[0]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "method": self.method,
            "description": self.description,
            "input": self.input.value,
            "params": {p.name: p.to_json() for p in self.params},
            "citation": self.citation,
            "version": self.version,
            "source": self.source,
        }


# Set while an entry point's module is being imported: its @register_operator calls go to the registry that
# is loading it and are attributed to that entry point.
_loading: contextvars.ContextVar[tuple[OperatorRegistry, str] | None] = contextvars.ContextVar(
    "fip_loading", default=None
)


class OperatorRegistry:
    """Holds registered operators and discovers them from entry points on first use."""

    def __init__(self, entry_points: Callable[[], Iterable[importlib.metadata.EntryPoint]] | None = None):
        self._entry_points = entry_points or (lambda: importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        self._specs: dict[str, OperatorSpec] = {}
        self._discovered = False
        self._lock = threading.RLock()

    # -- registration -------------------------------------------------------------------------------------------
    def add(self, spec: OperatorSpec) -> OperatorSpec:
        """Register ``spec``; raise :class:`DuplicateOperatorError` if another source holds its name."""
        loading = _loading.get()
        source = spec.source or (loading[1] if loading else getattr(spec.function, "__module__", "?"))
        if spec.source != source:
            spec = OperatorSpec(**{**spec.__dict__, "source": source})
        with self._lock:
            existing = self._specs.get(spec.name)
            if existing is not None and existing.function is not spec.function:
                raise DuplicateOperatorError(
                    f"operator {spec.name!r} is registered twice: by {existing.source} and by {spec.source}. "
                    f"Rename one of them, or uninstall one of the plugins (pip uninstall ...)."
                )
            self._specs[spec.name] = spec
        return spec

    # -- discovery ----------------------------------------------------------------------------------------------
    def _discover(self) -> None:
        with self._lock:
            if self._discovered:
                return
            self._discovered = True  # set first: a plugin that calls list_operators() must not recurse
            plugins_disabled = os.environ.get(DISABLE_PLUGINS_ENV, "").strip().lower() in {"1", "true", "yes"}
            found = sorted(self._entry_points(), key=_entry_point_order)
            if not any(_distribution_name(ep) == BUILTIN_DISTRIBUTION for ep in found):
                warnings.warn(
                    "fip's built-in operators were not found through the 'fip.operators' entry points: "
                    "install fip (for a source checkout: pip install -e .) so its metadata exists",
                    PluginLoadWarning,
                    stacklevel=3,
                )
            for ep in found:
                builtin = _distribution_name(ep) == BUILTIN_DISTRIBUTION
                if plugins_disabled and not builtin:
                    logger.info("skipping plugin %s (%s=1)", ep.value, DISABLE_PLUGINS_ENV)
                    continue
                self._load(ep, builtin)

    def _load(self, ep: importlib.metadata.EntryPoint, builtin: bool) -> None:
        source = f"{_distribution_name(ep) or 'unknown distribution'} (entry point {ep.name} = {ep.value})"
        before = set(self._specs)
        token = _loading.set((self, source))
        try:
            for spec in _specs_in(ep.load()):
                self.add(spec)
        except DuplicateOperatorError:
            raise
        except Exception as exc:  # a broken plugin must not take fip down
            for name in set(self._specs) - before:  # drop what it registered before failing
                del self._specs[name]
            if builtin:
                raise
            warnings.warn(
                f"fip: operator plugin {source} failed to load and is skipped: {type(exc).__name__}: {exc}. "
                f"Fix or uninstall it; set {DISABLE_PLUGINS_ENV}=1 to skip third-party plugins.",
                PluginLoadWarning,
                stacklevel=4,
            )
        finally:
            _loading.reset(token)

    # -- queries ------------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        self._discover()
        return sorted(self._specs)

    def list(self, family: str | None = None) -> list[OperatorSpec]:
        self._discover()
        return [self._specs[n] for n in sorted(self._specs) if family is None or self._specs[n].family == family]

    def get(self, name: str) -> OperatorSpec:
        self._discover()
        try:
            return self._specs[name]
        except KeyError:
            available = ", ".join(sorted(self._specs)) or "none (is fip installed?)"
            raise UnknownOperatorError(
                f"unknown operator {name!r}; available operators: {available}. "
                f"`fip operators` lists them with their parameters."
            ) from None


def _distribution_name(ep: importlib.metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None
    return dist.metadata["Name"]


def _entry_point_order(ep: importlib.metadata.EntryPoint) -> tuple[int, str, str]:
    dist = _distribution_name(ep) or ""
    return (0 if dist == BUILTIN_DISTRIBUTION else 1, dist.lower(), ep.name)


def _specs_in(loaded: Any) -> Sequence[OperatorSpec]:
    """An entry point may name a module or package (the operators its import declared with
    :func:`register_operator`, also when it was imported before), one spec, or a list of specs."""
    if isinstance(loaded, OperatorSpec):
        return [loaded]
    if isinstance(loaded, (list, tuple)) and all(isinstance(s, OperatorSpec) for s in loaded):
        return list(loaded)
    if isinstance(loaded, types.ModuleType):
        prefix = loaded.__name__ + "."
        return [spec for module, specs in _declared.items() if module == loaded.__name__ or module.startswith(prefix)
                for spec in specs]
    raise TypeError(
        f"entry point value is a {type(loaded).__name__}; it must name a module, an OperatorSpec or a list of them"
    )


_registry = OperatorRegistry()

# Every spec declared with @register_operator, by the module that defines its function, so that any registry
# loading an entry point finds the module's operators even if another registry imported it first.
_declared: dict[str, list[OperatorSpec]] = {}


def default_registry() -> OperatorRegistry:
    return _registry


def register_operator(
    name: str,
    *,
    description: str,
    params: Sequence[Param] = (),
    input: InputKind | str = InputKind.SRGB,
    citation: str = "",
    version: str = "1",
    registry: OperatorRegistry | None = None,
) -> Callable[[Callable[..., Any]], OperatorSpec]:
    """Decorator: describe a reference function as an operator and register it.

    Returns the :class:`OperatorSpec` (the original function stays reachable as ``spec.function``).
    Bump ``version`` whenever the operator's output changes, so cached targets are regenerated.
    """

    def decorate(function: Callable[..., Any]) -> OperatorSpec:
        spec = OperatorSpec(
            name=name,
            description=description,
            function=function,
            params=tuple(params),
            input=InputKind(input),
            citation=citation,
            version=version,
        )
        _declared.setdefault(getattr(function, "__module__", "?"), []).append(spec)
        loading = _loading.get()
        return (registry or (loading[0] if loading else _registry)).add(spec)

    return decorate


def list_operators(family: str | None = None) -> list[OperatorSpec]:
    """All registered operators (optionally of one family), sorted by name."""
    return _registry.list(family)


def get_operator(name: str) -> OperatorSpec:
    """The operator registered as ``name``; the error lists the available names."""
    return _registry.get(name)
