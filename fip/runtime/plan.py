"""Execution plans: a request (``auto`` or a named approximator), a photo's size and a device, resolved once into
exactly what will run: which approximator, in which precision, with which statistics, at which working size, in
which tiles or bands, and why. :func:`make_plan` resolves; :func:`fip.runtime.execute.run_plan` runs any plan;
:meth:`Plan.explain` says it in words (``fip apply --explain``) and :meth:`Plan.to_json` records it with results.

``auto`` follows a :class:`Preference`: a preset and an optional PSNR floor. Each preset is the fastest
approximator measured on the device's class among those whose PSNR against the reference, on the model's validation
photos (the card's photo set with the role ``choose``), clears its bar:

- ``balanced`` (the default): within :data:`AUTO_MAX_LOSS_DB` of the best approximator's or at least
  :data:`AUTO_GOOD_ENOUGH_DB`;
- ``quality``: the best approximator's, or within :data:`QUALITY_TIE_DB` of it (a tie: measurement noise);
- ``speed``: at least :data:`SPEED_FLOOR_DB` (or the floor ``min_psnr`` sets); where none reaches it, the best.

A floor (``min_psnr``) leaves out every approximator that scored under it; where none is left, ``auto`` runs the
reference itself and says why. Approximators the device cannot run, and networks
trained for other operator parameters than those asked, are left out, with the reason in the plan. Where the
reference operator itself was measured faster on the class than the preset's pick, ``auto`` runs the reference
(``reference``: exact) whatever the preset, and the plan says so; so it does for a photo no larger than the context of
the chosen network (its receptive radius, each way), where the network sees mostly padding and the reference costs
next to nothing.

A CPU class without timings ranks by the other CPU class's (:data:`FALLBACK_CLASSES`), and ``auto`` then runs its
pick as it was measured: on ``cpu-bf16``, ranked by ``cpu`` timings, an approximator declared ``bf16`` runs in
float32, the precision those timings and the card's PSNR describe. Asked for by name, ``bf16`` runs in bfloat16
wherever the device computes it natively. A class the card has no timings for is timed on the machine once, where
that is allowed (:func:`fip.runtime.engine.make_plan`, which front ends call; :mod:`fip.runtime.calibrate`); ``auto``
then ranks by this machine's own timings.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from fip.errors import FipError, InputError
from fip.models.cards import REFERENCE, REFERENCE_ITSELF, Approximator, ModelCard
from fip.models.catalogue import Model
from fip.models.families import NetworkFamily, family_for
from fip.registry import OperatorSpec, get_operator
from fip.runtime.devices import (
    CPU_CLASSES,
    DeviceError,
    available_memory,
    describe,
    device_class,
    dtype_for,
    int8_saturates,
    int8_unavailable,
    resolve_device,
)

AUTO = "auto"
"""The request that lets the engine choose the approximator (see the module docstring)."""
AUTO_MAX_LOSS_DB = 0.5
"""``auto`` may lose this much PSNR (dB) against the best approximator on the validation photos..."""
AUTO_GOOD_ENOUGH_DB = 40.0
"""...or score at least this PSNR (dB): about 2.5 levels of 255 RMS, where differences stop showing."""
QUALITY_TIE_DB = 0.1
"""``quality`` runs the fastest approximator within this much PSNR (dB) of the best: closer is measurement noise."""
SPEED_FLOOR_DB = 32.0
"""``speed`` runs the fastest approximator scoring at least this PSNR (dB) on the validation photos."""
PRESETS = ("quality", "balanced", "speed")
BALANCED = "balanced"
MIN_WORKING_SIDE = 8  # a low-resolution pass needs this many pixels on its short side (the filters' boxes)
MIN_LOWRES_GAIN = 2.0  # and at least this many times fewer pixels than the photo; otherwise it runs at full size
BAND_ROWS = 256  # full-size rows an upsampler computes at a time
MEMORY_HEADROOM = 0.7  # plans use at most this share of the memory available
MIN_TILE = 256
PARAMS_NOTE = "the networks were trained for"
FALLBACK_CLASSES = {"cpu": ("cpu-bf16",), "cpu-bf16": ("cpu",)}  # a CPU class without timings ranks by the other's


class PlanError(FipError, ValueError):
    """A request that cannot be planned: an unknown approximator, or one this device or photo cannot run."""


class PreferenceError(FipError, ValueError):
    """A preference that is not one: an unknown preset, or a PSNR floor that is not a positive number of dB."""


@dataclass(frozen=True)
class Preference:
    """What ``auto`` trades: ``prefer`` is ``quality``, ``balanced`` or ``speed`` (the rules in the module
    docstring); ``min_psnr`` (dB) leaves out every approximator that scored under it on the validation photos (and,
    with ``speed``, replaces :data:`SPEED_FLOOR_DB`).

    Raises:
        PreferenceError: an unknown preset, or a floor that is not a number above 0 (the message says which).
    """

    prefer: str = BALANCED
    min_psnr: float | None = None

    def __post_init__(self) -> None:
        if self.prefer not in PRESETS:
            raise PreferenceError(
                f"prefer {self.prefer!r} is not a preset: choose {', '.join(PRESETS[:-1])} or "
                f"{PRESETS[-1]} (default {BALANCED})"
            )
        if self.min_psnr is not None:
            text = self.min_psnr
            try:
                value = float(text)
            except (TypeError, ValueError):
                value = math.nan
            if isinstance(text, bool) or not (math.isfinite(value) and value > 0):
                raise PreferenceError(f"min PSNR {text!r} is not a PSNR: give a number of dB above 0, e.g. 32")
            object.__setattr__(self, "min_psnr", value)

    @classmethod
    def of(cls, prefer: str | Preference | None = None, min_psnr: float | str | None = None) -> Preference:
        """A preference from the arguments a front end takes (``None``: the default)."""
        if isinstance(prefer, Preference):
            return prefer if min_psnr is None else cls(prefer.prefer, min_psnr)
        if prefer is not None and not isinstance(prefer, str):
            raise PreferenceError(f"prefer must be one of {', '.join(PRESETS)}; got a {type(prefer).__name__}")
        return cls(prefer.strip().lower() if prefer else BALANCED, min_psnr)

    @property
    def is_default(self) -> bool:
        return self == Preference()

    def __str__(self) -> str:
        return self.prefer + (f", at least {self.min_psnr:g} dB" if self.min_psnr is not None else "")


@dataclass(frozen=True)
class PresetPick:
    """What one preset runs: the approximator, its measured seconds (on ``timings_class``, at ``timed_size``
    width x height), its PSNR on the validation photos (``None``: the reference itself, exact, or unmeasured), and
    ``why`` in a few words."""

    prefer: str
    approximator: str
    seconds: float | None
    timings_class: str | None
    timed_size: str | None
    psnr: float | None
    why: str

    def text(self) -> str:
        """``quality: full, 5.869 s, 32.41 dB`` in words."""
        measured = [
            f"{self.seconds:.3f} s" + (f" on {self.timings_class}" if self.timings_class else "")
            if self.seconds is not None
            else None,
            "exact" if self.approximator == REFERENCE else f"{self.psnr:.2f} dB" if self.psnr is not None else None,
        ]
        detail = ", ".join(m for m in measured if m)
        return (
            f"{self.prefer}: {self.approximator}"
            + (f" ({detail})" if detail else "")
            + (f": {self.why}" if self.approximator == REFERENCE else "")
        )


@dataclass(frozen=True)
class Plan:
    """What will run for one photo; see the module docstring. ``size``, ``working_size``: (height, width)."""

    model: str
    operator: str
    params: dict[str, Any]
    request: str
    approximator: str
    reason: str
    device: str
    device_class: str
    precision: str
    statistics: str | None
    preview_megapixels: float | None
    size: tuple[int, int]
    working_size: tuple[int, int] | None
    upsampler: str | None
    tile: int | None
    band_rows: int | None
    compile: bool
    estimated_megabytes: float
    notes: tuple[str, ...] = field(default=())
    timings_class: str | None = None  # the device class whose timings ranked auto's pick (None: not ranked by time)
    preference: str | None = None  # auto's preference in words (None: asked for by name)
    choices: tuple[PresetPick, ...] = ()  # what each preset runs here (auto only)
    why: str = ""  # auto's pick in a few words for people: why the reference itself, or the preset's rule

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["size"], out["notes"], out["choices"] = list(self.size), list(self.notes), [asdict(c) for c in self.choices]
        out["working_size"] = list(self.working_size) if self.working_size else None
        return out

    def explain(self) -> str:
        """The plan in words, one fact a line."""
        height, width = self.size
        lines = [
            f"model:        {self.model} ({self.operator}{_params_text(self.params)})",
            f"request:      {self.request}" + (f" (prefer {self.preference})" if self.preference else ""),
            f"approximator: {self.approximator}",
            f"why:          {self.reason}",
            f"device:       {self.device} ({self._class_text()})",
            f"precision:    {self.precision}",
        ]
        if self.statistics:
            preview = f", from a {self.preview_megapixels:g} MP preview" if self.preview_megapixels else ""
            lines.append(f"statistics:   {self.statistics}{preview}")
        if self.working_size:
            lines.append(
                f"resolution:   works at {self.working_size[1]}x{self.working_size[0]}, then {self.upsampler} "
                f"to {width}x{height}" + (f" in bands of {self.band_rows} rows" if self.band_rows else "")
            )
        else:
            lines.append(f"resolution:   {width}x{height} (full)")
        lines.append(
            f"tiling:       {f'tiles of {self.tile} pixels' if self.tile else 'whole photo'}; "
            f"about {self.estimated_megabytes:.0f} MB of working memory"
        )
        if self.compile:
            lines.append("compiled:     torch.compile")
        lines += [f"note:         {note}" for note in self.notes]
        lines += [f"{'choices:' if i == 0 else '':<14}{pick.text()}" for i, pick in enumerate(self.choices)]
        return "\n".join(lines)

    def _class_text(self) -> str:
        """The device's class, and the class whose timings ranked ``auto``'s pick where that is another."""
        if self.timings_class is None or self.timings_class == self.device_class:
            return f"class {self.device_class}"
        return f"class {self.device_class}, which has no timings: ranked by those of class {self.timings_class}"


def _params_text(params: dict[str, Any]) -> str:
    return (": " + ", ".join(f"{k}={v}" for k, v in params.items())) if params else ""


def make_plan(
    model: Model,
    request: str = AUTO,
    size: tuple[int, int] = (1080, 1920),
    device: str | torch.device | None = None,
    *,
    operator: str | None = None,
    params: dict[str, Any] | None = None,
    tile: int | None = None,
    compile: bool = False,
    memory_budget: int | None = None,
    preference: Preference | None = None,
    card: ModelCard | None = None,
) -> Plan:
    """Resolve ``request`` for a photo of ``size`` (height, width) on ``device`` (default: CUDA when available).

    Args:
        model: the model (:func:`fip.models.catalogue.open_model`).
        request: ``auto`` or the name of one of the model's approximators.
        operator: the operator to approximate (default: the model's; required for a network of several).
        params: operator parameters (default: the model's); networks serve only those they were trained for.
        tile: run full-resolution networks in tiles of this size (default: only when memory requires).
        compile: run networks through ``torch.compile``.
        memory_budget: bytes the plan may use (default: a share of what the device has available).
        preference: what ``auto`` trades (default ``balanced``); only with ``auto``.
        card: the card to plan with (default: the model's): :func:`fip.runtime.engine.make_plan` passes one with
            this machine's timings where the model's card has none for the device's class.

    Raises:
        PlanError: an unknown approximator, or one this device, photo or parameter set cannot run.
        DeviceError: the device does not exist here.
    """
    height, width = size
    if min(height, width) < 2:
        raise InputError(f"the photo is {width}x{height} pixels; fip needs at least 2x2")
    if preference is not None and not preference.is_default and request != AUTO:
        raise PlanError(f"a preference ({preference}) steers auto; {request!r} is asked for by name: leave one out")
    preference = preference or Preference()
    torch_device = resolve_device(device)
    card = card or model.card
    operator = operator or card.operator
    if operator is None:
        raise PlanError(f"{card.name} serves several operators; name one (--operator, or operator= in Python)")
    spec = get_operator(operator)
    wanted, differing = _parameters(model, spec, params)
    dclass = device_class(torch_device)
    excluded = {
        a.name: why for a in card.approximators.values() if (why := _unavailable(a, card, torch_device, differing))
    }
    notes: list[str] = []
    timings_class, choices, why = None, (), ""
    if request == AUTO:
        choice = _choose(card, dclass, excluded, preference)
        chosen, reason, why = choice.approximator, choice.reason, choice.why
        choices = preset_picks(card, dclass, excluded, preference.min_psnr)
        timings_class = _timed_class(card, chosen, dclass)
        if (radius := _context_radius(chosen, card)) is not None and max(height, width) <= radius:
            reason = (
                f"the photo ({width}x{height}) is within the context of {chosen.name}'s network ({radius} "
                "pixels each way), which would see mostly padding: the reference itself, exact, at little cost"
            )
            chosen, timings_class = card.approximator(REFERENCE), None
            why = "the photo is no larger than the network's context: the reference costs next to nothing"
    else:
        chosen = card.approximator(request)
        if request in excluded:
            raise PlanError(f"{card.name}'s {request!r} cannot serve this request: {excluded[request]}")
        reason = "asked for by name"
    if differing and chosen.runs_reference:
        notes.append(
            f"{PARAMS_NOTE} {', '.join(differing)}; {chosen.name} runs the operator itself, which follows "
            "the values asked"
        )
    fixed = _family(chosen, card).working_size(_architecture(chosen, card))
    working = fixed or working_size(chosen, card, size)
    if working is None and (chosen.scale is not None or _downscale_factor(chosen, card)):
        notes.append("the photo is too small for a low-resolution pass: it runs at full size")
    budget = memory_budget if memory_budget is not None else int(available_memory(torch_device) * MEMORY_HEADROOM)
    tile, estimate = _tiling(chosen, card, size, working, tile, budget, torch_device)
    dtype = dtype_for(chosen.precision, torch_device) if chosen.precision != "int8" else None
    if (
        chosen.precision == "bf16"
        and dtype == torch.bfloat16
        and timings_class in CPU_CLASSES
        and timings_class != dclass
    ):
        dtype = torch.float32  # as measured: the other class ran it in float32, which its timings and PSNR describe
        notes.append(
            f"declared bf16; auto ranked it by timings of class {timings_class}, where it ran in float32, so "
            f"it runs in float32 here too (ask for {chosen.name} by name for bfloat16, or measure this "
            f"class with fip build)"
        )
    elif chosen.precision == "bf16" and dtype != torch.bfloat16:
        notes.append(
            f"declared bf16; {torch_device.type} has no native bfloat16 here, so it runs in "
            f"{str(dtype).removeprefix('torch.')}"
        )
    if chosen.precision == "int8" and int8_saturates(torch_device):
        notes.append(
            "this CPU lacks VNNI: ONNX Runtime multiplies int8 as unsigned 8-bit numbers widened to 16 bits "
            "(the same results as with VNNI, about half as fast)"
        )
    upsampler = _family(chosen, card).upsampler(_architecture(chosen, card))
    if upsampler is None and working is not None:
        upsampler = (
            "learned guided filter"
            if chosen.upsampler is None
            else (f"{chosen.upsampler.kind} filter (radius {chosen.upsampler.radius}, eps {chosen.upsampler.eps:g})")
        )
    return Plan(
        model=card.name,
        operator=spec.name,
        params=wanted,
        request=request,
        approximator=chosen.name,
        reason=reason,
        device=str(torch_device),
        device_class=dclass,
        precision="int8" if dtype is None else str(dtype).removeprefix("torch."),
        statistics=chosen.statistics,
        preview_megapixels=chosen.preview_megapixels if chosen.statistics == "preview" else None,
        size=(height, width),
        working_size=working,
        upsampler=upsampler,
        tile=tile,
        band_rows=BAND_ROWS if working is not None else None,
        compile=compile,
        estimated_megabytes=round(estimate / 2**20, 1),
        notes=tuple(notes),
        timings_class=timings_class,
        preference=str(preference) if request == AUTO else None,
        choices=choices,
        why=why,
    )


def _parameters(model: Model, spec: OperatorSpec, params: dict[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """The parameters asked for, all filled in, and those the model's networks cannot follow (``name=trained``)."""
    from fip.conditioning import OneHot, Sweep

    card = model.card
    conditioning = model.conditioning
    if card.operator not in (None, spec.name) and not isinstance(conditioning, OneHot):
        raise PlanError(f"model {card.name} approximates {card.operator}, not {spec.name}")
    trained = spec.resolve_params(card.params if card.operator == spec.name else None)
    wanted = spec.resolve_params(params if params is not None else trained)
    followed = {conditioning.param} if isinstance(conditioning, Sweep) else set()  # an input map takes it
    differing = [f"{n}={trained[n]}" for n in wanted if n not in followed and not _same(wanted[n], trained[n])]
    if isinstance(conditioning, Sweep):
        conditioning.maps(spec.name, wanted)  # a value outside the swept range fails here, naming the range
    return wanted, differing


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-12)
    return a == b


def _unavailable(approximator: Approximator, card: ModelCard, device: torch.device, differing: list[str]) -> str | None:
    """Why ``approximator`` cannot serve this request on ``device`` (``None``: it can)."""
    if approximator.network is not None and differing:
        return (
            f"its network serves {', '.join(differing)} only, the values it was trained for (auto, or a "
            "reference-* approximator, follows others)"
        )
    if approximator.network is not None and card.networks[approximator.network].kind == "onnx":
        return int8_unavailable(device)
    if approximator.precision == "fp16" and device.type == "cpu":
        return "fp16 runs on GPUs only"
    return None  # the reference at low resolution runs anywhere: the operator on the CPU, its upsampling on the device


@dataclass(frozen=True)
class _Choice:
    approximator: Approximator
    reason: str
    why: str  # a few words for people: why the reference itself, or the preset's rule
    timing: tuple[float, str, str] | None = None  # (seconds, class, size) that ranked it
    psnr: float | None = None


def choose(
    card: ModelCard, dclass: str, excluded: dict[str, str] | None = None, preference: Preference | None = None
) -> tuple[Approximator, str]:
    """``auto``'s pick among ``card``'s approximators for a device of class ``dclass`` under ``preference``
    (default ``balanced``; see the module docstring), and the reason in words, naming the preset and its rule.
    Without validation measurements, ``fast`` (else the first network approximator, else ``reference-lowres``); with
    a PSNR floor and none measured, the reference itself."""
    choice = _choose(card, dclass, excluded or {}, preference or Preference())
    return choice.approximator, choice.reason


def preset_picks(
    card: ModelCard, dclass: str, excluded: dict[str, str] | None = None, min_psnr: float | None = None
) -> tuple[PresetPick, ...]:
    """What each preset (:data:`PRESETS`) runs on ``dclass``, with its measured seconds and PSNR."""
    picks = []
    for prefer in PRESETS:
        choice = _choose(card, dclass, excluded or {}, Preference(prefer, min_psnr))
        timing = choice.timing
        if choice.approximator.name == REFERENCE:
            klass = next((k for k in (dclass, *FALLBACK_CLASSES.get(dclass, ())) if k in card.reference_seconds), None)
            reference = card.reference_seconds.get(klass) if klass else None
            timing = (reference.seconds, klass, f"{reference.size[1]}x{reference.size[0]}") if reference else None
        picks.append(
            PresetPick(
                prefer,
                choice.approximator.name,
                timing[0] if timing else None,
                timing[1] if timing else None,
                timing[2] if timing else None,
                choice.psnr,
                choice.why,
            )
        )
    return tuple(picks)


def _bar(preference: Preference, scored: dict[str, float], best: str, photo_set: str) -> tuple[set[str], str, str]:
    """The approximators that clear ``preference``'s bar, the bar in words, and in a few words."""
    top = scored[best]
    floor = preference.min_psnr
    also = f" and at least {floor:g} dB" if floor is not None else ""
    if preference.prefer == "quality":
        names = {n for n, v in scored.items() if v >= top - QUALITY_TIE_DB}
        return (
            names,
            (
                f"as good as the best on {photo_set} photos ({best} {top:.2f} dB) or within "
                f"{QUALITY_TIE_DB:g} dB of it{also}"
            ),
            f"the fastest of the best quality (within {QUALITY_TIE_DB:g} dB){also}",
        )
    if preference.prefer == "speed":
        floor = SPEED_FLOOR_DB if floor is None else floor
        names = {n for n, v in scored.items() if v >= floor}
        if not names:
            return (
                {best},
                f"as good as the best on {photo_set} photos ({best} {top:.2f} dB), as none scores {floor:g} dB",
                f"none reaches {floor:g} dB: the best",
            )
        return (
            names,
            f"scoring at least {floor:g} dB on {photo_set} photos (the best: {best} {top:.2f} dB)",
            f"the fastest at {floor:g} dB or more",
        )
    names = {n for n, v in scored.items() if v >= top - AUTO_MAX_LOSS_DB or v >= AUTO_GOOD_ENOUGH_DB}
    return (
        names,
        (
            f"within {AUTO_MAX_LOSS_DB} dB of the best on {photo_set} photos ({best} {top:.2f} dB) or at "
            f"least {AUTO_GOOD_ENOUGH_DB:g} dB{also}"
        ),
        (f"the fastest within {AUTO_MAX_LOSS_DB} dB of the best or at {AUTO_GOOD_ENOUGH_DB:g} dB{also}"),
    )


def _choose(card: ModelCard, dclass: str, excluded: dict[str, str], preference: Preference) -> _Choice:
    candidates = [a for a in card.approximators.values() if a.name not in excluded]
    if not candidates:
        reasons = "; ".join(f"{k}: {v}" for k, v in excluded.items())
        raise PlanError(f"none of {card.name}'s approximators can run here ({reasons})")
    skipped = f" (left out: {'; '.join(f'{k}, {v}' for k, v in excluded.items())})" if excluded else ""
    prefer = f"prefer {preference}"
    photo_set = card.choice_set
    scored = {a.name: a.quality[photo_set].psnr for a in candidates if photo_set and photo_set in a.quality}
    if not scored and preference.min_psnr is not None:
        why = f"no approximator is measured, so none is known to reach {preference.min_psnr:g} dB"
        return _Choice(
            REFERENCE_ITSELF, f"{prefer}: the reference itself, exact: {why} on validation photos{skipped}", why
        )
    if not scored:
        fallback = next((a for a in candidates if a.name == "fast"), None) or next(
            (a for a in candidates if a.network is not None), candidates[0]
        )
        return _Choice(
            fallback,
            f"no approximator of {card.name} is measured on validation photos: the default{skipped}",
            "no approximator is measured: the default",
        )
    if preference.min_psnr is not None:
        kept = {n: v for n, v in scored.items() if v >= preference.min_psnr}
        if not kept:
            best = max(scored, key=scored.get)
            why = f"no approximator reaches {preference.min_psnr:g} dB (the best, {best}, {scored[best]:.2f} dB)"
            return _Choice(
                REFERENCE_ITSELF, f"{prefer}: the reference itself, exact: {why} on {photo_set} photos{skipped}", why
            )
        scored = kept
    best_name = max(scored, key=scored.get)
    names, bar, short = _bar(preference, scored, best_name, photo_set)
    eligible = [a for a in candidates if a.name in names]
    timed = [(seconds, a) for a in eligible if (seconds := _seconds(a, dclass)) is not None]
    timing = None
    if timed:
        timing, pick = min(timed, key=lambda item: item[0][0])
        where = f"on {dclass}" if timing[1] == dclass else f"on {timing[1]} (none measured on {dclass})"
        speed = f"fastest {where}: {timing[0]:.3f} s at {timing[2]}"
        reference = _reference_seconds(card, timing[1])
        if reference is not None and reference < timing[0]:
            why = f"no approximator within {preference.prefer}'s quality bar is faster"
            return _Choice(
                REFERENCE_ITSELF,
                (
                    f"{prefer}: the reference itself: {reference:.3f} s on {timing[1]}, faster than every approximator "
                    f"{bar} (the fastest, {pick.name}: {timing[0]:.3f} s){skipped}"
                ),
                why,
            )
    elif networks := [a for a in eligible if not a.runs_reference]:
        pick = min(networks, key=lambda a: _relative_cost(a, card))
        speed = (
            f"no timings on {dclass}: the network approximator of fewest multiply-adds per pixel (the "
            "reference runs on the CPU)"
        )
    else:
        pick = min(eligible, key=lambda a: a.scale or 1.0)
        speed = f"no timings on {dclass}: the reference at the smallest working size"
    rule = f"{prefer}: {speed}, among approximators {bar}; {pick.name} scored {scored[pick.name]:.2f} dB"
    return _Choice(pick, rule + skipped, short, timing, scored[pick.name])


def _relative_cost(approximator: Approximator, card: ModelCard) -> float:
    """Multiply-adds per output pixel of a network approximator, relative, from its card alone (its network
    family's cost model, :mod:`fip.models.families`)."""
    return _family(approximator, card).relative_cost(approximator, _architecture(approximator, card))


def _architecture(approximator: Approximator, card: ModelCard) -> dict[str, Any]:
    """The architecture entry of ``approximator``'s network (empty for one that runs the reference)."""
    return card.networks[approximator.network].architecture if approximator.network else {}


def _family(approximator: Approximator, card: ModelCard) -> NetworkFamily:
    return family_for(_architecture(approximator, card))


def _reference_seconds(card: ModelCard, dclass: str) -> float | None:
    timing = card.reference_seconds.get(dclass)
    return None if timing is None else timing.seconds


def _timed_class(card: ModelCard, chosen: Approximator, dclass: str) -> str | None:
    """The class whose timings ranked ``chosen`` for a device of class ``dclass`` (``None``: not ranked by time)."""
    if chosen.name == REFERENCE:
        return next((k for k in (dclass, *FALLBACK_CLASSES.get(dclass, ())) if k in card.reference_seconds), None)
    timing = _seconds(chosen, dclass)
    return timing[1] if timing else None


def _context_radius(approximator: Approximator, card: ModelCard) -> int | None:
    """How far (pixels) an output pixel of ``approximator``'s full-size network sees (``None``: no such network)."""
    if approximator.network is None or _family(approximator, card).banded:
        return None
    return _receptive_radius(card.networks[approximator.network])


def _receptive_radius(entry: Any) -> int:
    """A network entry's receptive radius: recorded, else a CAN's of its depth (dilations doubling to 2^(depth-3))."""
    return entry.receptive_radius or 2 ** (int(entry.architecture.get("depth", 9)) - 2)


def _seconds(approximator: Approximator, dclass: str) -> tuple[float, str, str] | None:
    """(seconds, class, size) measured on ``dclass``, else on the other CPU class (for a CPU)."""
    for klass in (dclass, *FALLBACK_CLASSES.get(dclass, ())):
        if (timing := approximator.seconds.get(klass)) is not None:
            return timing.seconds, klass, f"{timing.size[1]}x{timing.size[0]}"
    return None


def _downscale_factor(approximator: Approximator, card: ModelCard) -> float | None:
    """The factor ``approximator``'s network downscales the photo by in its own low-resolution pass, if it has one."""
    if approximator.network is None:
        return None
    return _family(approximator, card).downscale_factor(_architecture(approximator, card))


def working_size(approximator: Approximator, card: ModelCard, size: tuple[int, int]) -> tuple[int, int] | None:
    """Where a low-resolution approximator works for a photo of ``size`` (``None``: at full size, also when the
    photo is too small for a low-resolution pass to pay). Even sizes, so raw mosaics keep their pattern."""
    height, width = size
    factor = _downscale_factor(approximator, card)
    if factor is not None:
        small = (max(4, round(height / factor)), max(4, round(width / factor)))  # GuidedCAN.downscale's sizes
    elif approximator.scale is not None:
        scale = approximator.scale
        if approximator.max_working_megapixels is not None:
            scale = min(scale, math.sqrt(approximator.max_working_megapixels * 1e6 / (height * width)))
        small = (max(2, round(height * scale / 2) * 2), max(2, round(width * scale / 2) * 2))
    else:
        return None
    if min(small) < MIN_WORKING_SIDE or small[0] * small[1] * MIN_LOWRES_GAIN > height * width:
        return None
    return small


def _tiling(
    approximator: Approximator,
    card: ModelCard,
    size: tuple[int, int],
    working: tuple[int, int] | None,
    tile: int | None,
    budget: int,
    device: torch.device,
) -> tuple[int | None, int]:
    """The tile size (``None``: the whole photo at once) and the estimated working bytes."""
    if tile is not None and tile < 16:
        raise InputError(f"--tile {tile}: tiles need at least 16 pixels a side")
    pixels = size[0] * size[1]
    output = 3 * 4 * pixels * 2  # the output and the input as float32 on the device
    entry = card.networks.get(approximator.network) if approximator.network else None
    architecture = entry.architecture if entry else {}
    family = family_for(architecture)
    if family.banded:  # per band: indices, weights and coefficients, ~130 bytes a pixel
        return None, output + 130 * BAND_ROWS * size[1]
    width = int(architecture.get("width", 24))
    item = 4 if approximator.precision in ("fp32", "int8") else 2
    if working is not None or approximator.network is None:
        small = working[0] * working[1] if working else pixels
        per_pixel = 2 * width * item if approximator.network else 400  # a reference: ~100 floats a pixel, generous
        guide_map = family.guide_bytes_per_pixel * pixels  # a learned guide's, at full size
        if approximator.upsampler is not None and approximator.upsampler.guide is not None:  # the upsampler's
            guide_map += (
                family_for(card.networks[approximator.upsampler.guide].architecture).guide_bytes_per_pixel * pixels
            )
        return None, output + guide_map + per_pixel * small + 2 * 12 * 4 * BAND_ROWS * size[1]
    exact = approximator.statistics == "image"
    whole = output + (4 if exact else 2) * width * item * pixels
    if tile is None and whole <= budget:
        return None, whole
    if exact:  # whole-photo statistics: tiles bound the convolution's workspace, two full maps remain
        layered = output + 2 * width * item * pixels
        if layered > budget and tile is None:
            raise PlanError(_too_large(approximator, size, layered, budget, device))
        return tile or 1024, layered
    radius = _receptive_radius(entry) if entry else 2 ** (int(architecture.get("depth", 9)) - 2)

    def tiled(side: int) -> int:  # a tile's crop with its halo, at most the photo
        return output + 3 * width * item * min(size[0], side + 2 * radius) * min(size[1], side + 2 * radius)

    tile = tile or 2048
    while tile > MIN_TILE and tiled(tile) > budget:
        tile //= 2
    estimate = tiled(tile)
    if estimate > budget:
        raise PlanError(_too_large(approximator, size, estimate, budget, device))
    return tile, estimate


def _too_large(
    approximator: Approximator, size: tuple[int, int], needed: int, budget: int, device: torch.device
) -> str:
    megapixels = size[0] * size[1] / 1e6
    if 3 * 4 * 2 * size[0] * size[1] > budget:
        return (
            f"the {megapixels:.0f} MP photo alone needs about {24 * size[0] * size[1] / 2**30:.1f} GB as input "
            f"and output, and about {budget / 2**30:.1f} GB is available on {describe(device)}: pass "
            "--max-megapixels to downscale it first"
        )
    return (
        f"the {megapixels:.0f} MP photo needs about {needed / 2**30:.1f} GB for {approximator.name!r} on "
        f"{describe(device)}, and about {budget / 2**30:.1f} GB is available: choose a tiled approximator "
        "(fast, bf16), a smaller --tile, or --max-megapixels to downscale first"
    )


__all__ = [
    "AUTO",
    "AUTO_GOOD_ENOUGH_DB",
    "AUTO_MAX_LOSS_DB",
    "BALANCED",
    "PRESETS",
    "QUALITY_TIE_DB",
    "SPEED_FLOOR_DB",
    "DeviceError",
    "Plan",
    "PlanError",
    "Preference",
    "PreferenceError",
    "PresetPick",
    "choose",
    "make_plan",
    "preset_picks",
    "working_size",
]
