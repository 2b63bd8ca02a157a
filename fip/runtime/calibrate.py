"""Calibration: ``auto`` timed on the user's own machine.

A model card holds timings per device class (:mod:`fip.runtime.devices`). Where it has none for the class of the
device at hand, ``auto`` would rank approximators by another machine's numbers (or by multiply-adds); instead, on
the first ``auto`` plan of that model on that class, fip times the candidate approximators (those the device can
run that were measured on the validation photos) and the reference itself on a synthetic
:data:`CALIBRATION_SIZE` frame, through the same engine (:func:`fip.runtime.execute.run_plan`): one warm-up run and
:data:`CALIBRATION_RUNS` timed ones each (the fastest kept; the reference once). Every candidate is timed at the same
size, so their ranking holds at any size; the timings record the size they were taken at.

The timings are cached as JSON under ``$FIP_CACHE/calibration`` (:func:`fip.cache.cache_dir`), one file per model
and device class, keyed by the card's content, fip's and torch's versions, the device class and the machine; a
change of any of them times again. ``fip models --calibrate`` times up front (and also where the card has timings
for the class: this machine's own numbers then rank ``auto``'s choice). ``$FIP_CALIBRATE=0`` (or ``calibrate=False``)
turns it off: the cards' timings alone, as before.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fip.cache import cache_dir
from fip.errors import FipError
from fip.files import atomic_write_json, sha256_json
from fip.models.cards import REFERENCE, ModelCard, Timing
from fip.models.catalogue import Model
from fip.runtime.devices import cpu_name, device_class, synchronize
from fip.runtime.execute import Views, run_plan
from fip.runtime.plan import _unavailable, make_plan

logger = logging.getLogger(__name__)

CALIBRATE_ENV = "FIP_CALIBRATE"  # 0, no, off or false: never time on this machine; the cards' timings alone
CALIBRATION_SIZE = (540, 960)  # (height, width) of the synthetic frame
CALIBRATION_RUNS = 2  # timed runs per approximator, after one warm-up; the fastest is kept
CALIBRATION_FORMAT = "fip-calibration-1"
MACHINE_NOTE = "this machine, timed by fip"

_lock = threading.RLock()  # held while timing: concurrent first plans (the demo's) wait for one calibration
_memo: weakref.WeakKeyDictionary[Model, dict[str, ModelCard]] = weakref.WeakKeyDictionary()


def calibration_enabled(calibrate: bool | None = None) -> bool:
    """Whether fip may time models on this machine: ``calibrate`` if given, else ``$FIP_CALIBRATE`` (default yes)."""
    if calibrate is not None:
        return calibrate
    return os.environ.get(CALIBRATE_ENV, "").strip().lower() not in ("0", "no", "off", "false")


def has_timings(card: ModelCard, dclass: str) -> bool:
    """Whether ``card`` holds timings of class ``dclass`` (of any approximator, or of the reference)."""
    return dclass in card.reference_seconds or any(dclass in a.seconds for a in card.approximators.values())


def candidates(card: ModelCard, device: torch.device) -> list[str]:
    """The approximators ``auto`` may rank on ``device``: measured on the validation photos, runnable there."""
    photo_set = card.choice_set
    return [
        a.name
        for a in card.approximators.values()
        if photo_set in a.quality and _unavailable(a, card, device, []) is None
    ]


def cache_path(card: ModelCard, dclass: str) -> Path:
    """Where the timings of ``card`` on class ``dclass`` are kept."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", card.name).strip("_") or "model"
    return cache_dir() / "calibration" / f"{slug}-{dclass}.json"


def calibration_key(card: ModelCard, device: torch.device) -> dict[str, Any]:
    """What the cached timings depend on: a change of any of it times again."""
    import fip

    return {
        "format": CALIBRATION_FORMAT,
        "model": card.name,
        "card": sha256_json(card.to_json()),
        "fip": fip.__version__,
        "torch": torch.__version__,
        "device_class": device_class(device),
        "machine": _machine(device),
        "size": list(CALIBRATION_SIZE),
    }


def timed_card(model: Model, device: torch.device, *, calibrate: bool | None = None) -> ModelCard:
    """``model``'s card with this machine's timings for ``device``'s class where it needs them: the class has no
    timings on the card (timed now, once, and cached), or ``fip models --calibrate`` timed it (cached). Otherwise,
    or with calibration off, the card as it is."""
    card = model.card
    if not calibration_enabled(calibrate) or card.operator is None or not candidates(card, device):
        return card  # (a network of several operators is not timed: which operator would it time?)
    dclass = device_class(device)
    with _lock:
        known = _memo.setdefault(model, {})
        if dclass in known:
            return known[dclass]
        key = calibration_key(card, device)
        cached = read_timings(cache_path(card, dclass), key)
        if cached is None and has_timings(card, dclass):
            timed = card
        else:
            timed = with_timings(card, dclass, cached if cached is not None else calibrate_model(model, device))
        known[dclass] = timed
        return timed


def calibrate_model(
    model: Model, device: torch.device, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Time ``model``'s candidate approximators and the reference on ``device`` (see the module docstring), cache
    the timings and return them: ``{"seconds": {name: s}, "reference": s or None, "size": [h, w], ...}``."""
    card = model.card
    dclass = device_class(device)
    names = candidates(card, device)
    say = progress or logger.info
    path = cache_path(card, dclass)
    say(
        f"timing {card.name} on this machine once (class {dclass}{'' if has_timings(card, dclass) else ', which its card has no timings for'}): "
        f"{len(names)} approximators and the reference on a {CALIBRATION_SIZE[1]}x{CALIBRATION_SIZE[0]} frame"
    )
    views = Views.of_array(synthetic_frame(*CALIBRATION_SIZE))
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    reference = None
    for index, name in enumerate([REFERENCE, *names], 1):
        try:
            plan = make_plan(model, name, CALIBRATION_SIZE, device, operator=card.operator)
            maps = model.maps(plan.operator, plan.params)
            runs = 1 if name == REFERENCE else CALIBRATION_RUNS
            if name != REFERENCE:
                run_plan(plan, model, views, maps)  # warm-up: network loading, kernel selection
            best = min(
                _timed(lambda plan=plan, maps=maps: run_plan(plan, model, views, maps), device) for _ in range(runs)
            )
        except FipError as exc:  # one that cannot run here is left out of the ranking, not fatal
            say(f"  {name}: cannot run here ({exc})")
            continue
        if name == REFERENCE:
            reference = best
        else:
            seconds[name] = best
        say(f"  [{index}/{len(names) + 1}] {name}: {best:.3f} s")
    timings = {
        "key": calibration_key(card, device),
        "seconds": seconds,
        "reference": reference,
        "size": list(CALIBRATION_SIZE),
        "date": date.today().isoformat(),
    }
    atomic_write_json(path, timings)
    say(f"timed {card.name} on class {dclass} in {time.perf_counter() - started:.1f} s; kept in {path}")
    with _lock:
        _memo.pop(model, None)
    return timings


def read_timings(path: Path, key: dict[str, Any]) -> dict[str, Any] | None:
    """The timings cached at ``path`` for ``key`` (``None``: none, another key, or an unreadable file)."""
    import json

    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("seconds"), dict):
        return None
    return data


def with_timings(card: ModelCard, dclass: str, timings: dict[str, Any]) -> ModelCard:
    """``card`` with ``timings`` (from :func:`calibrate_model`) as its class-``dclass`` timings."""
    size = tuple(timings.get("size", CALIBRATION_SIZE))
    when = str(timings.get("date", ""))

    def timing(seconds: float) -> Timing:
        return Timing(float(seconds), size, MACHINE_NOTE, when)  # type: ignore[arg-type]

    approximators = {
        name: replace(a, seconds={**a.seconds, dclass: timing(timings["seconds"][name])})
        if name in timings["seconds"]
        else a
        for name, a in card.approximators.items()
    }
    reference = dict(card.reference_seconds)
    if timings.get("reference"):
        reference[dclass] = timing(timings["reference"])
    return replace(card, approximators=approximators, reference_seconds=reference)


def synthetic_frame(height: int, width: int) -> np.ndarray:
    """A photo-like ``(H, W, 3)`` float32 sRGB frame in [0, 1]: smooth gradients, edges and fine texture, so every
    operator does its usual work (the same frame on every machine)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [0.5 + 0.3 * np.sin((c + 1) * 3.1 * y / height + (3 - c) * 2.3 * x / width + c) for c in range(3)]
    image = np.stack(channels, axis=-1)
    image[height // 4 : height // 2, width // 3 : 2 * width // 3] *= 0.5  # a sharp-edged block
    image += rng.normal(0.0, 0.02, image.shape).astype(np.float32)  # texture and noise
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _timed(run: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - start


def _machine(device: torch.device) -> str:
    """The machine in words, as the timings depend on it (not on how many threads this process has)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()}, {os.cpu_count()} cores" if device.type == "cpu" else device.type


__all__ = [
    "CALIBRATE_ENV",
    "CALIBRATION_SIZE",
    "cache_path",
    "calibrate_model",
    "calibration_enabled",
    "calibration_key",
    "candidates",
    "has_timings",
    "timed_card",
    "with_timings",
]
