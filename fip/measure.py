"""Measuring a model's approximators for its card: PSNR/SSIM against the reference on named photo sets, seconds on
this device, and the reference-at-low-resolution's upsampler chosen on the validation photos only.

What ``auto`` picks is decided by these numbers (:func:`fip.runtime.plan.choose`), so they are measured the way
users run: every approximator through the engine (:func:`fip.evaluate.evaluate`, :func:`fip.bench.run_bench`).
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from fip.data.sources import Resolution, open_source
from fip.evaluate import evaluate
from fip.models.cards import Approximator, ModelCard, PhotoSet, Quality, Timing, Upsampler
from fip.models.catalogue import Model
from fip.runtime.devices import device_class, resolve_device

logger = logging.getLogger(__name__)

# The upsamplers tried for the reference at low resolution, on the validation photos.
UPSAMPLER_GRID = (
    Upsampler("colour-guided", 1, 1e-3),
    Upsampler("colour-guided", 1, 1e-4),
    Upsampler("colour-guided", 1, 1e-5),
    Upsampler("colour-guided", 2, 1e-4),
    Upsampler("guided", 1, 1e-4),
)


@dataclass(frozen=True)
class PhotoSetSource:
    """Where a card's photo set comes from: ``(source, split)`` pairs (:func:`fip.data.sources.open_source`
    specs, with ``split_file`` if given), pooled, at ``resolution``."""

    name: str
    role: str
    description: str
    sources: tuple[tuple[str, str], ...]
    resolution: str = "1080p"
    split_file: str | None = None

    @property
    def photo_set(self) -> PhotoSet:
        return PhotoSet(self.role, self.description)


def quality(
    model: Model, approximator: str, photos: PhotoSetSource, device: str | torch.device | None = None
) -> Quality:
    """Mean PSNR and SSIM of ``approximator`` against the reference over every photo of ``photos``."""
    images = []
    for source, split in photos.sources:
        report = evaluate(
            model,
            open_source(source, photos.split_file),
            split=split,
            resolution=Resolution.parse(photos.resolution),
            workers=1,
            request=approximator,
            device=device,
        )
        images += report.images
    return Quality(
        round(float(np.mean([i["psnr"] for i in images])), 3),
        round(float(np.mean([i["ssim"] for i in images])), 4),
        len(images),
        photos.resolution,
    )


def choose_upsampler(
    model: Model,
    approximator: Approximator,
    validation: PhotoSetSource,
    device: str | torch.device | None = None,
    grid: Sequence[Upsampler] = UPSAMPLER_GRID,
) -> tuple[Approximator, dict[str, float]]:
    """``approximator`` (a reference at low resolution) with the upsampler of ``grid`` that scores highest on the
    validation photos, and every candidate's score."""
    scores = {}
    for upsampler in grid:
        candidate = replace(approximator, upsampler=upsampler)
        trial = Model(model.card.with_approximator(candidate))
        scores[f"{upsampler.kind} r{upsampler.radius} eps {upsampler.eps:g}"] = (
            quality(trial, candidate.name, validation, device).psnr,
            upsampler,
        )
    best = max(scores.values(), key=lambda item: item[0])[1]
    return replace(approximator, upsampler=best), {k: v[0] for k, v in scores.items()}


def speed(
    model: Model,
    photo: str | os.PathLike[str],
    approximators: Sequence[str],
    device: str | torch.device | None = None,
    runs: int = 3,
    size: tuple[int, int] = (1080, 1920),
) -> tuple[dict[str, Timing], Timing]:
    """Median seconds of each approximator and of the reference on ``photo`` resized to ``size`` on ``device``
    (side by side in this process, through :func:`fip.bench.run_bench`)."""
    from fip.bench import run_bench

    bench = run_bench(
        model.operator,
        size,
        runs,
        photo,
        ("reference", *approximators),
        1,
        device,
        model=model,
        bounds=False,
        calibrate=False,
    )  # these are the card's timings: nothing to time before them
    today = datetime.date.today().isoformat()
    timings = {
        r.name: Timing(round(r.seconds, 4), size, bench.machine, today)
        for r in bench.rows
        if r.seconds is not None and r.name != "reference"
    }
    reference = next(r for r in bench.rows if r.name == "reference")
    return timings, Timing(round(reference.seconds, 4), size, bench.machine, today)


def measure(
    model: Model,
    photo_sets: Sequence[PhotoSetSource],
    timing_photo: str | os.PathLike[str] | None,
    device: str | torch.device | None = None,
    approximators: Sequence[str] | None = None,
    progress: Callable[[str], None] = print,
    timing_size: tuple[int, int] = (1080, 1920),
) -> ModelCard:
    """``model``'s card with the quality of ``approximators`` (default: all that run here) on each photo set and,
    with ``timing_photo``, their seconds on this device's class at ``timing_size`` (height, width). The upsampler of
    each reference at low resolution is chosen first, on the set whose role is ``choose`` (not of one with a learned
    guide: the guide was trained for its upsampler)."""
    card = replace(model.card, photo_sets={**model.card.photo_sets, **{s.name: s.photo_set for s in photo_sets}})
    torch_device = resolve_device(device)
    validation = next((s for s in photo_sets if s.role == "choose"), None)
    names = list(approximators or card.approximators)
    for name in names:
        approximator = card.approximators[name]
        if approximator.runs_reference and validation is not None and not approximator.upsampler.guide:
            approximator, scores = choose_upsampler(Model(card), approximator, validation, torch_device)
            progress(
                f"{card.name} {name}: upsampler {approximator.upsampler} (validation: "
                + ", ".join(f"{k} {v:.2f}" for k, v in scores.items())
                + ")"
            )
        measured = dict(approximator.quality)
        for photos in photo_sets:
            try:
                measured[photos.name] = quality(Model(card.with_approximator(approximator)), name, photos, torch_device)
            except Exception as exc:  # an approximator this machine cannot run stays unmeasured
                progress(f"{card.name} {name}: not measured on {photos.name} ({type(exc).__name__}: {exc})")
                continue
            progress(f"{card.name} {name} on {photos.name}: {measured[photos.name].psnr:.2f} dB")
        card = card.with_approximator(replace(approximator, quality=measured))
    if timing_photo is not None:
        from fip.runtime.plan import PlanError, make_plan

        runnable = []
        for name in names:
            try:
                make_plan(Model(card), name, timing_size, torch_device)
                runnable.append(name)
            except PlanError as exc:
                progress(f"{card.name} {name}: not timed ({exc})")
        timings, reference = speed(Model(card), timing_photo, runnable, torch_device, size=timing_size)
        klass = device_class(torch_device)
        for name, timing in timings.items():
            approximator = card.approximators[name]
            card = card.with_approximator(replace(approximator, seconds={**approximator.seconds, klass: timing}))
            progress(f"{card.name} {name}: {timing.seconds:.3f} s on {klass}")
        card = replace(card, reference_seconds={**card.reference_seconds, klass: reference})
        progress(f"{card.name} reference: {reference.seconds:.3f} s on {klass}")
    return card


__all__ = ["UPSAMPLER_GRID", "PhotoSetSource", "choose_upsampler", "measure", "quality", "speed"]
