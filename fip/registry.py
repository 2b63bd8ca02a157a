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
* A name that two plugins register is disabled: discovery goes on, a :class:`PluginLoadWarning` names both sources,
  and :func:`get_operator` of that name raises :class:`~fip.errors.DuplicateOperatorError` naming them; every other
  operator, the plugins' other names included, keeps working.
* A plugin that registers the name of one of fip's built-ins loses that entry (with a :class:`PluginLoadWarning`);
  the built-in keeps its name, so installing a plugin never changes what a documented operator computes.
* ``FIP_DISABLE_PLUGINS=1`` turns third-party discovery off (fip's built-ins still load).
"""

from __future__ import annotations

import contextvars
import enum
import importlib.metadata
import math
import threading
import types
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fip.errors import DuplicateOperatorError, InputError, ParameterError, UnknownOperatorError
from fip.imaging import check_image
from fip.plugins import (
    DISABLE_PLUGINS_ENV,
    Claim,
    NameClaims,
    Plugin,
    discover,
    group_entry_points,
    load_failure,
)

ENTRY_POINT_GROUP = "fip.operators"


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
        low: inclusive lower bound of a numeric parameter (``None``: unbounded below).
        high: inclusive upper bound of a numeric parameter (``None``: unbounded above).
        choices: the allowed values of a string parameter.
        description: what the parameter means, with its unit.
        length: the value is a length on the photo in pixels (a window, a radius, a spatial sigma). Where fip runs
            the operator on a downscaled copy of the photo (``reference-lowres``, ``reference-halfres``), it scales
            such a value with the copy (:meth:`at_scale`), so the operator covers the same part of the scene.
    """

    name: str
    default: ParamValue
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    description: str = ""
    length: bool = False

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
        if self.length and (self.choices is not None or self.type not in (int, float)):
            raise ParameterError(f"parameter {self.name!r}: only a number can be a length")

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
                raise ParameterError(f"parameter {self.name!r} must be one of {', '.join(self.choices)}; got {value!r}")
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
        if (
            not math.isfinite(converted)
            or (self.low is not None and converted < self.low)
            or (self.high is not None and converted > self.high)
        ):
            raise ParameterError(f"parameter {self.name!r} = {value!r} is outside its range {self.range_text()}")
        return converted

    def at_scale(self, value: ParamValue, scale: float) -> ParamValue:
        """``value`` for the photo resized by ``scale`` (``1/3``: a third of the side): a :attr:`length` times
        ``scale`` (an integer rounded), kept within the parameter's range; any other value as it is."""
        if not self.length:
            return value
        scaled = value * scale
        if self.low is not None:
            scaled = max(scaled, self.low)
        if self.high is not None:
            scaled = min(scaled, self.high)
        return round(scaled) if self.type is int else float(scaled)

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
            **({"length": True} if self.length else {}),
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

    def params_at_scale(self, params: Mapping[str, Any] | None, scale: float) -> dict[str, ParamValue]:
        """``params`` (defaults filled in, validated) for running the operator on the photo resized by ``scale``:
        each length scaled with it (:meth:`Param.at_scale`)."""
        return {name: self.param(name).at_scale(value, scale) for name, value in self.resolve_params(params).items()}

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
# is loading it and are attributed to that entry point (its source text, and whether it is one of fip's own).
_loading: contextvars.ContextVar[tuple[OperatorRegistry, str, bool] | None] = contextvars.ContextVar(
    "fip_loading", default=None
)


class OperatorRegistry:
    """Holds registered operators and discovers them from entry points on first use."""

    def __init__(self, entry_points: Callable[[], Iterable[importlib.metadata.EntryPoint]] | None = None):
        self._entry_points = entry_points or group_entry_points(ENTRY_POINT_GROUP)
        self._claims: NameClaims[OperatorSpec] = NameClaims("operator", "register", _same_function)
        self._discovered = False
        self._lock = threading.RLock()

    # -- registration -------------------------------------------------------------------------------------------
    def add(self, spec: OperatorSpec) -> OperatorSpec:
        """Register ``spec`` and return it (with its ``source`` filled in).

        While discovery loads an entry point, a name that another source already holds does not stop the load: a
        name two non-built-in sources register is disabled (:meth:`get` raises, naming both), and a spec that
        reuses a built-in's name is ignored in favour of the built-in. Both are reported as a
        :class:`PluginLoadWarning` when discovery ends.

        Raises:
            DuplicateOperatorError: outside discovery, another source already holds the name (or it is disabled);
                during discovery, two of fip's own entry points register one name.
        """
        loading = _loading.get()
        discovering = loading is not None and loading[0] is self
        builtin = discovering and loading[2]
        source = spec.source or (loading[1] if loading else getattr(spec.function, "__module__", "?"))
        if spec.source != source:
            spec = OperatorSpec(**{**spec.__dict__, "source": source})
        with self._lock:
            claims = self._claims
            holder = claims.kept.get(spec.name)
            if spec.name in claims.clashes and not discovering:
                raise DuplicateOperatorError(claims.clash_text(spec.name))
            if holder is not None and not _same_function(holder.item, spec):
                if not discovering or (builtin and holder.builtin):
                    raise DuplicateOperatorError(
                        f"operator {spec.name!r} is registered twice: by {holder.source} and by {spec.source}. "
                        "Rename one of them, or uninstall one of the plugins (pip uninstall DISTRIBUTION)."
                    )
            claims.claim(spec.name, Claim(spec, source, builtin))
        return spec

    def disabled(self) -> dict[str, tuple[str, ...]]:
        """The names disabled because several sources register them, each with those sources."""
        self._discover()
        return {name: tuple(self._claims.sources(name)) for name in sorted(self._claims.clashes)}

    # -- discovery ----------------------------------------------------------------------------------------------
    def _discover(self) -> None:
        with self._lock:
            if self._discovered:
                return
            self._discovered = True  # set first: a plugin that calls list_operators() must not recurse
            found = discover(self._entry_points())
            if not any(plugin.builtin for plugin in found):
                warnings.warn(
                    "fip's built-in operators were not found through the 'fip.operators' entry points: "
                    "install fip (for a source checkout: pip install -e .) so its metadata exists",
                    PluginLoadWarning,
                    stacklevel=3,
                )
            for plugin in found:
                self._load(plugin)
            # Reported once discovery is over, so each name is named once with all its sources.
            for name in sorted(self._claims.clashes):
                warnings.warn(
                    f"fip: {self._claims.clash_text(name)}; every other operator keeps working. "
                    f"Set {DISABLE_PLUGINS_ENV}=1 to skip third-party plugins.",
                    PluginLoadWarning,
                    stacklevel=3,
                )
            for name, ignored in sorted(self._claims.shadowed.items()):
                for claim in ignored:
                    warnings.warn(
                        f"fip: operator plugin {claim.source} registers {name!r}, the name of fip's own operator "
                        f"(from {self._claims.kept[name].source}); fip keeps its own and ignores that one. "
                        "Uninstall the plugin or ask its author to rename the operator.",
                        PluginLoadWarning,
                        stacklevel=3,
                    )

    def _load(self, plugin: Plugin) -> None:
        source = plugin.source
        before = self._claims.snapshot()
        token = _loading.set((self, source, plugin.builtin))
        try:
            for spec in _specs_in(plugin.load()):
                self.add(spec)
        except (Exception, SystemExit) as exc:  # a broken plugin must not take fip down (nor a sys.exit in it)
            # Undo what it registered before failing, clashes included: a plugin that is skipped clashes with none.
            self._claims = before
            if plugin.builtin:
                raise
            warnings.warn(
                f"fip: operator plugin {source} failed to load and is skipped: {load_failure(exc)}. "
                f"Fix or uninstall it; set {DISABLE_PLUGINS_ENV}=1 to skip third-party plugins.",
                PluginLoadWarning,
                stacklevel=4,
            )
        finally:
            _loading.reset(token)

    # -- queries ------------------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        self._discover()
        return sorted(self._claims.kept)

    def list(self, family: str | None = None) -> list[OperatorSpec]:
        self._discover()
        specs = [self._claims.kept[name].item for name in sorted(self._claims.kept)]
        return [spec for spec in specs if family is None or spec.family == family]

    def get(self, name: str) -> OperatorSpec:
        """The operator registered as ``name``.

        Raises:
            DuplicateOperatorError: ``name`` is disabled because several plugins register it; names them.
            UnknownOperatorError: nothing registers ``name``; lists the available names.
        """
        self._discover()
        if name in self._claims.clashes:
            raise DuplicateOperatorError(
                f"{self._claims.clash_text(name)}; {DISABLE_PLUGINS_ENV}=1 runs fip with its built-in operators only"
            )
        try:
            return self._claims.kept[name].item
        except KeyError:
            available = ", ".join(sorted(self._claims.kept)) or "none (is fip installed?)"
            raise UnknownOperatorError(
                f"unknown operator {name!r}; available operators: {available}. "
                f"`fip operators` lists them with their parameters."
            ) from None


def _same_function(a: OperatorSpec, b: OperatorSpec) -> bool:
    """Whether two specs register one function (a module's spec seen at its import and again when its entry point
    is loaded)."""
    return a.function is b.function


def _specs_in(loaded: Any) -> Sequence[OperatorSpec]:
    """An entry point may name a module or package (the operators its import declared with
    :func:`register_operator`, also when it was imported before), one spec, or a list of specs."""
    if isinstance(loaded, OperatorSpec):
        return [loaded]
    if isinstance(loaded, (list, tuple)) and all(isinstance(s, OperatorSpec) for s in loaded):
        return list(loaded)
    if isinstance(loaded, types.ModuleType):
        prefix = loaded.__name__ + "."
        return [
            spec
            for module, specs in _declared.items()
            if module == loaded.__name__ or module.startswith(prefix)
            for spec in specs
        ]
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
