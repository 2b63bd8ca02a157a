"""``fip build``: from an operator to a model folder that ``auto`` can use, measured on photos that chose nothing.

    fip build smooth.l0 --source sample --budget 10 --out models/smooth.l0

The steps, each recorded in ``<out>/build.json`` so an interrupted build resumes where it stopped:

1. **split**: the source's photos, by photo, into train, validation and test (``<out>/split.json``): the source's
   test photos are the test set; about a fifth of its training photos (at least one) validate. No photo is in two.
2. **train**: a CAN with PyTorch Lightning on the training photos (``fip train``'s configs: the operator's own, with
   its warm start, or ``build/any`` for an operator without one), validated on the validation photos, within the
   share of the budget training gets; an interrupted training resumes from its last checkpoint.
3. **measure**: the model's approximators (the network's ``full``, ``fast``, ... and the untrained
   ``reference-lowres`` and ``reference-halfres``) against the reference on the validation photos (which ``auto``
   reads) and on the test photos (reported only), and their seconds beside the reference on this device.
4. **report**: ``<out>/card.json`` and ``net.pt`` (the model: ``fip.load(out)``, ``fip apply -m out``),
   ``report.md`` (the table) and ``before-after.png`` (input | reference | ``auto``, on a test photo).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fip.errors import InputError, require_extra
from fip.files import atomic_write_bytes, atomic_write_json

logger = logging.getLogger(__name__)

STATE_FILE = "build.json"
TRAINING_SHARE = 0.7  # of the budget; measuring and the report take the rest
GENERIC_CONFIG = "build/any"


@dataclass(frozen=True)
class BuildRequest:
    """What to build.

    Args:
        operator: a registered operator (a plugin's too).
        out: the model folder to write (created; an unfinished build there resumes).
        params: operator parameters (defaults for the rest).
        source: photos: ``sample``, a FiveK root or a photo folder (:func:`fip.data.sources.open_source`).
        budget_minutes: the whole build's time budget; training gets :data:`TRAINING_SHARE` of it.
        device: where to measure (``cpu``, ``cuda``, ...; default: cuda when available). Training uses
            Lightning's accelerator choice.
        resolution: the measuring resolution (``1080p``; ``native`` keeps each photo's size).
        timing_height: the height of the 16:9 frame the approximators are timed on (1080: 1920x1080).
    """

    operator: str
    out: Path
    params: Mapping[str, Any] = field(default_factory=dict)
    source: str = "sample"
    budget_minutes: float = 10.0
    device: str | None = None
    resolution: str = "1080p"
    timing_height: int = 1080

    @property
    def timing_size(self) -> tuple[int, int]:
        return self.timing_height, self.timing_height * 16 // 9 // 2 * 2

    def to_json(self) -> dict[str, Any]:
        return {"operator": self.operator, "params": dict(self.params), "source": self.source,
                "resolution": self.resolution}  # fmt: skip


def split_photos(source: Any, validation_share: float = 0.2) -> dict[str, list[str]]:
    """``{"train": [...], "validation": [...], "test": [...]}`` photo names: the source's test photos test; the
    validation photos are those of its training photos whose name hashes lowest (a stable choice), at least one.

    Raises:
        InputError: fewer than three photos, or no training photo left.
    """
    train = sorted(p.name for p in source.photos if p.split == "train")
    test = sorted(p.name for p in source.photos if p.split == "test")
    if not test and len(train) >= 3:  # a folder whose hashed split gave no test photo: take one by the same rule
        test, train = [_by_hash(train)[0]], [n for n in train if n != _by_hash(train)[0]]
    count = max(1, round(len(train) * validation_share))
    if len(train) - count < 1 or not test:
        raise InputError(f"{source.description} has {len(source.photos)} photos; fip build needs at least three "
                         "(training, validation and test photos are never the same): add photos")  # fmt: skip
    validation = sorted(_by_hash(train)[:count])
    return {"train": [n for n in train if n not in validation], "validation": validation, "test": test}


def _by_hash(names: list[str]) -> list[str]:
    return sorted(names, key=lambda name: hashlib.sha256(name.encode()).hexdigest())


class _State:
    """``build.json``: the request it was made for and the steps done (with what they found)."""

    def __init__(self, folder: Path, request: BuildRequest):
        self.path = folder / STATE_FILE
        try:
            saved = json.loads(self.path.read_text())
        except (OSError, ValueError):
            saved = {}
        if saved and saved.get("request") != request.to_json():
            raise InputError(f"{folder} holds a build of {saved.get('request')}; give another --out, or remove "
                             f"{self.path} to start over")  # fmt: skip
        self.data = {"request": request.to_json(), "steps": {}, "training_seconds": 0.0, **saved}

    def done(self, step: str) -> dict[str, Any] | None:
        return self.data["steps"].get(step)

    def record(self, step: str, found: dict[str, Any] | None = None) -> None:
        self.data["steps"][step] = found or {}
        atomic_write_json(self.path, self.data)

    def add_training_seconds(self, seconds: float) -> None:
        self.data["training_seconds"] += seconds
        atomic_write_json(self.path, self.data)


def build(request: BuildRequest, progress: Callable[[str], None] = logger.info) -> Path:
    """Run the build (see the module docstring) and return the model folder.

    Raises:
        MissingExtraError: the ``train`` extra is not installed.
        InputError: too few photos, or ``out`` holds another build.
        FipError: an unknown operator or parameter (before any work).
    """
    require_extra("train", needed_by="fip build")
    from fip.data.sources import Resolution, open_source
    from fip.registry import get_operator
    from fip.runtime.devices import resolve_device

    spec = get_operator(request.operator)
    params = spec.resolve_params(dict(request.params))
    Resolution.parse(request.resolution)  # settings that would fail after training fail now
    resolve_device(request.device)
    out = Path(request.out)
    out.mkdir(parents=True, exist_ok=True)
    state = _State(out, replace(request, params=params))
    source = open_source(request.source)

    split = _split(state, out, source, progress)
    checkpoint = _train(state, request, params, out, split, progress)
    card = _measure(state, request, out, checkpoint, source, split, progress)
    _report(state, request, out, card, source, split, progress)
    return out


def _split(state: _State, out: Path, source: Any, progress: Callable[[str], None]) -> dict[str, list[str]]:
    if (done := state.done("split")) is not None:
        return done["split"]
    split = split_photos(source)
    atomic_write_json(out / "split.json", split)
    for name, names in (("train", {"train": split["train"], "test": split["validation"]}),
                        ("validation", {"train": [], "test": split["validation"]}),
                        ("test", {"train": [], "test": split["test"]})):  # fmt: skip
        atomic_write_json(out / "splits" / f"{name}.json", names)  # the form --split-file takes
    progress(f"split: {len(split['train'])} training, {len(split['validation'])} validation and {len(split['test'])} "
             "test photos (split.json)")  # fmt: skip
    state.record("split", {"split": split})
    return split


def _train(state: _State, request: BuildRequest, params: dict[str, Any], out: Path, split: dict[str, list[str]],
           progress: Callable[[str], None]) -> Path:  # fmt: skip
    from fip.training import config_names, max_time, run_training

    if (done := state.done("train")) is not None:
        return out / done["checkpoint"]
    config = request.operator if request.operator in config_names() else GENERIC_CONFIG
    left = request.budget_minutes * TRAINING_SHARE - state.data["training_seconds"] / 60
    runs = out / "training"
    last = sorted(runs.rglob("last.ckpt"), key=os.path.getmtime)
    progress(f"train: {config} config, {max(left, 0):.1f} min left of the training budget"
             + (f", resuming {last[-1].relative_to(out)}" if last else ""))  # fmt: skip
    if left > 0.05:
        args = ["-c", config, "--data.operator", request.operator, "--data.params", json.dumps(params),
                "--data.source", request.source, "--data.split_file", str(out / "splits" / "train.json"),
                "--trainer.max_time", max_time(left), "--trainer.default_root_dir", str(runs),
                "--trainer.logger", json.dumps({"class_path": "pytorch_lightning.loggers.CSVLogger",
                                                "init_args": {"save_dir": str(runs), "name": "logs"}})]  # fmt: skip
        if last:
            args += ["--ckpt_path", str(last[-1])]
        start = time.monotonic()
        try:
            cli = run_training(args)
        finally:  # an interrupted training's time counts too: the rerun resumes with what is left
            state.add_training_seconds(time.monotonic() - start)
        callback = cli.trainer.checkpoint_callback
        chosen = callback.best_model_path or callback.last_model_path
        best = Path(chosen) if chosen else None
    else:
        best = last[-1] if last else None
    if best is None or not best.is_file():
        raise InputError(f"the budget of {request.budget_minutes:g} min left no time to train a first epoch; raise "
                         "--budget (training gets 70% of it)")  # fmt: skip
    state.record("train", {"checkpoint": str(best.relative_to(out))})
    return best


def _measure(state: _State, request: BuildRequest, out: Path, checkpoint: Path, source: Any,
             split: dict[str, list[str]], progress: Callable[[str], None]):  # fmt: skip
    from fip.data.pairs import fip_version
    from fip.measure import PhotoSetSource, measure
    from fip.models.cards import read_card, write_card
    from fip.models.catalogue import REFERENCE_HALFRES_APPROXIMATOR, Model, card_for_network
    from fip.models.storage import load_network, save_network

    if state.done("measure") is not None:
        return read_card(out)
    network_file = save_network(load_network(checkpoint), out / "net.pt")
    card = card_for_network(load_network(network_file))
    card = replace(card.with_approximator(REFERENCE_HALFRES_APPROXIMATOR), name=f"build/{request.operator}",
                   description=f"built by fip build from {request.source}",
                   provenance={"source": request.source, "split": "split.json", "checkpoint": str(checkpoint.name),
                               "budget_minutes": request.budget_minutes, "fip_version": fip_version()})  # fmt: skip
    write_card(card, out)
    sets = [
        PhotoSetSource("validation", "choose", f"{len(split['validation'])} validation photos of {request.source}",
                       ((request.source, "test"),), request.resolution, str(out / "splits" / "validation.json")),
        PhotoSetSource("test", "report", f"{len(split['test'])} test photos of {request.source}; never used to choose",
                       ((request.source, "test"),), request.resolution, str(out / "splits" / "test.json")),
    ]  # fmt: skip
    timing_photo = _photo_path(source, request.source, split["validation"][0])
    card = measure(Model(read_card(out)), sets, timing_photo, request.device, progress=progress,
                   timing_size=request.timing_size)  # fmt: skip
    write_card(card, out)
    state.record("measure")
    return read_card(out)


def _photo_path(source: Any, source_spec: str, name: str) -> Path:
    """The file of photo ``name`` of ``source`` (opened from ``source_spec``)."""
    found = next((p.path for p in source.photos if p.name == name), None)
    if found is None:
        raise InputError(f"photo {name!r} of split.json is no longer in {source_spec}; put it back, or build into a "
                         "new --out folder")  # fmt: skip
    return found


def _report(state: _State, request: BuildRequest, out: Path, card: Any, source: Any, split: dict[str, list[str]],
            progress: Callable[[str], None]) -> None:  # fmt: skip
    from fip.models.catalogue import Model
    from fip.runtime.devices import device_class, resolve_device
    from fip.runtime.plan import AUTO, make_plan

    klass = device_class(resolve_device(request.device))
    model = Model(card)
    chosen = make_plan(model, AUTO, request.timing_size, request.device).approximator
    reference = card.reference_seconds.get(klass)
    height, width = request.timing_size
    timed = f"one {width}x{height} photo on {klass}" + (f"; the reference takes {reference.seconds:.3f} s" if reference
                                                         else "")  # fmt: skip
    lines = [f"# fip build {request.operator}", "",
             f"Photos: {request.source}, {len(split['train'])} training, {len(split['validation'])} validation (they "
             f"choose `auto`), {len(split['test'])} test (reported, chose nothing); at {request.resolution}. "
             f"Seconds: {timed}.", "",
             "| approximator | validation PSNR | test PSNR | test SSIM | s | speed-up | |",
             "|---|---:|---:|---:|---:|---:|---|"]  # fmt: skip
    for approximator in card.approximators.values():
        valid, test = approximator.quality.get("validation"), approximator.quality.get("test")
        timing = approximator.seconds.get(klass)
        if not (valid and test and timing):
            lines.append(f"| {approximator.name} | not measured here | | | | | |")
            continue
        speedup = f"{reference.seconds / timing.seconds:.1f}x" if reference else ""
        lines.append(f"| {approximator.name} | {valid.psnr:.2f} | {test.psnr:.2f} | {test.ssim:.4f} | "
                     f"{timing.seconds:.3f} | {speedup} | {'**auto**' if approximator.name == chosen else ''} |")
    if chosen == "reference":
        seconds = f"{reference.seconds:.3f}" if reference else ""
        lines.append(f"| *the reference* | exact | exact | 1 | {seconds} | 1.0x | **auto** |")
    picture = _before_after(model, request, _photo_path(source, request.source, split["test"][0]),
                            out / "before-after.png")  # fmt: skip
    lines += ["", f"`auto` on {klass} runs **{chosen}**. Use the model: `fip apply -m {out} PHOTO --out DIR`, "
              f"`fip.load({str(out)!r})`.", "",
              f"![input, reference, auto on a test photo]({picture.name})"]  # fmt: skip
    atomic_write_bytes(out / "report.md", ("\n".join(lines) + "\n").encode())
    progress(f"report: {out / 'report.md'}, {picture}")
    state.record("report", {"auto": chosen})


def _before_after(model: Any, request: BuildRequest, photo_file: Path, path: Path) -> Path:
    """input | reference | auto, side by side, on ``photo_file`` at 1080p or less."""
    import numpy as np

    from fip.imaging import encode_png, resize_area
    from fip.pipeline import SizePolicy, open_photo, run_approximation, run_reference

    photo = open_photo(photo_file, SizePolicy(2.1))
    fast = run_approximation(model, photo, model.params, operator=request.operator, device=request.device)
    slow = run_reference(request.operator, photo, model.params)
    height = min(480, photo.size[0])
    panels = [resize_area(image, height, max(2, round(image.shape[1] * height / image.shape[0])))
              for image in (photo.srgb, slow.image, fast.image)]  # fmt: skip
    gap = np.ones((height, 6, 3), np.float32)
    atomic_write_bytes(path, encode_png(np.hstack([panels[0], gap, panels[1], gap, panels[2]]), bits=8))
    return path


__all__ = ["BuildRequest", "GENERIC_CONFIG", "STATE_FILE", "build", "split_photos"]
