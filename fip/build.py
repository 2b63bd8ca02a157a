"""``fip build``: from an operator to a model folder that ``auto`` can use, measured on photos that chose nothing.

    fip build smooth.l0 --source sample --budget 10 --out models/smooth.l0

The steps, each recorded in ``<out>/build.json`` so an interrupted build resumes where it stopped:

1. **split**: the source's photos, by photo, into train, validation and test (``<out>/split.json``): the source's
   test photos are the test set; about a fifth of its training photos (at least one) validate. No photo is in two.
2. **train**: a CAN with PyTorch Lightning on the training photos (``fip train``'s configs: the operator's own,
   or ``build/any`` for an operator without one), validated on the validation photos, within the share of the
   budget training gets; an interrupted training resumes from its last checkpoint. It starts from the model
   installed for the operator when that model's network has the config's shape (``fip/smooth.l0`` for
   ``smooth.l0``; :func:`warm_start_for`), else from the config's own warm start; the network it started from is
   kept instead when it scores higher on the validation photos.
3. **lowres**, **pruned** and **grid**, when the budget allows (:func:`training_minutes`): the Deep Guided Filter
   form of the CAN trained end to end from it (``lowres.pt``), the CAN pruned to 16 channels and fine-tuned
   (``pruned.pt``) with its int8 form for ONNX Runtime (``pruned.int8.onnx``), and a bilateral-grid network
   (:class:`~fip.models.BilateralGridNet`, ``grid.pt``) trained from scratch on whole photos.
4. **measure**: the model's approximators (the network's ``full``, ``fast``, ... and the untrained
   ``reference-lowres`` and ``reference-halfres``) against the reference on the validation photos (which ``auto``
   reads), on the test photos and on any ``report`` photo sets (reported only), and their seconds beside the
   reference on this device.
5. **report**: ``<out>/card.json`` and ``net.pt`` (the model: ``fip.load(out)``, ``fip apply -m out``),
   ``report.md`` (the table) and ``before-after.png`` (input | reference | ``auto``, on a test photo).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
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
LOWRES_OVERLAY = "overlays/lowres"
GRID_OVERLAY = "overlays/grid"
EXTRA_STAGES = ("lowres", "pruned", "grid")  # trained after the CAN when the budget allows (the first two from it)
EXTRA_SHARE = 0.15  # of the training time, for each extra stage
MIN_EXTRA_MINUTES = 2.0  # an extra stage runs (with extras="auto") only if its share is at least this
PRUNED_WIDTH = 16  # channels per layer of the pruned network (the CAN24 has 24)
CALIBRATION_PHOTOS = 16  # training photos that pruning and int8 calibration look at


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
        warm_start: what training starts from: ``auto`` (:func:`warm_start_for`), ``none`` (the config's own
            start), or a model name, model folder or network file.
        extras: the stages after the CAN (``lowres``, ``pruned`` with int8, ``grid``): ``auto`` (when the budget
            gives each at least :data:`MIN_EXTRA_MINUTES`), ``all``, ``none`` or stage names joined by commas
            (``grid,lowres``).
        train_args: more ``fip train`` options for every training stage, e.g. ``("--trainer.devices", "4",
            "--trainer.strategy", "ddp")`` for Lightning on several GPUs or nodes.
        report: more photo sets to report on, never to choose with: ``(name, source)`` pairs, every photo of each
            source (e.g. ``("fivek", "path/to/fivek-1080p/input")``).
        split_file: a JSON file ``{"train": [...], "validation": [...], "test": [...]}`` of photo names (file stems)
            of ``source`` that fixes the split instead of :func:`split_photos`; photos it does not name are left
            out.
    """

    operator: str
    out: Path
    params: Mapping[str, Any] = field(default_factory=dict)
    source: str = "sample"
    budget_minutes: float = 10.0
    device: str | None = None
    resolution: str = "1080p"
    timing_height: int = 1080
    warm_start: str = "auto"
    report: tuple[tuple[str, str], ...] = ()
    extras: str = "auto"
    train_args: tuple[str, ...] = ()
    split_file: Path | None = None

    @property
    def timing_size(self) -> tuple[int, int]:
        return self.timing_height, self.timing_height * 16 // 9 // 2 * 2

    def to_json(self) -> dict[str, Any]:
        found = {
            "operator": self.operator,
            "params": dict(self.params),
            "source": self.source,
            "resolution": self.resolution,
        }
        if self.warm_start != "auto":  # only when set, so folders built before these settings still resume
            found["warm_start"] = self.warm_start
        if self.report:
            found["report"] = [list(pair) for pair in self.report]
        if self.extras != "auto":
            found["extras"] = self.extras
        if self.train_args:
            found["train_args"] = list(self.train_args)
        if self.split_file is not None:
            found["split_file"] = str(Path(self.split_file).resolve())
        return found


def warm_start_for(operator: str, config: str) -> str | None:
    """The installed model to start ``operator``'s training from: the model installed for ``operator`` (fip's own
    first) when its main network has the shape the ``config`` trains (width, depth, input channels, normalization,
    convolution biases, input normalization); ``None`` when there is none, and the config's own warm start
    applies."""
    import yaml

    from fip.models.catalogue import list_models
    from fip.training import resolve_config

    net = (yaml.safe_load(resolve_config(config).read_text()).get("model") or {}).get("net") or {}
    wanted = net.get("init_args") or {}

    def same_shape(found: Mapping[str, Any]) -> bool:
        sizes = all(found.get(key) == wanted[key] for key in ("width", "depth", "in_channels", "norm") if key in wanted)
        return (
            sizes
            and bool(found.get("conv_bias")) == bool(wanted.get("conv_bias"))
            and ((found.get("input_norm") or None) == (wanted.get("input_norm") or None))
        )

    for card in list_models(operator):
        entry = card.networks.get("net")
        if entry is not None and entry.kind == "fip" and card.conditioning is None and same_shape(entry.architecture):
            return card.name
    return None


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
        raise InputError(
            f"{source.description} has {len(source.photos)} photos; fip build needs at least three "
            "(training, validation and test photos are never the same): add photos"
        )
    validation = sorted(_by_hash(train)[:count])
    return {"train": [n for n in train if n not in validation], "validation": validation, "test": test}


def read_split_file(path: str | os.PathLike[str], source: Any) -> dict[str, list[str]]:
    """The split a file fixes: ``{"train": [...], "validation": [...], "test": [...]}`` photo names of ``source``.

    Raises:
        InputError: the file is unreadable, lacks a set, puts a photo in two sets or names a photo that
            ``source`` does not hold.
    """
    path = Path(path)
    try:
        found = json.loads(path.read_text())
        split = {role: sorted(str(name) for name in found[role]) for role in ("train", "validation", "test")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"split file {path} is unreadable ({exc}); it must be JSON like "
            '{"train": [...], "validation": [...], "test": [...]} with photo names (file stems)'
        ) from None
    for role, names in split.items():
        if not names:
            raise InputError(f"split file {path} names no {role} photo; each of train, validation and test needs one")
    counts = Counter(name for names in split.values() for name in names)
    if twice := sorted(name for name, count in counts.items() if count > 1):
        raise InputError(f"split file {path} puts {len(twice)} photos in two sets, e.g. {twice[:5]}")
    held = {photo.name for photo in source.photos}
    if missing := sorted(set(counts) - held):
        raise InputError(
            f"split file {path} names {len(missing)} photos that {source.description} does not hold, e.g. {missing[:5]}"
        )
    return split


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
            raise InputError(
                f"{folder} holds a build of {saved.get('request')}; give another --out, or remove "
                f"{self.path} to start over"
            )
        self.data = {"request": request.to_json(), "steps": {}, "training_seconds": 0.0, **saved}

    def done(self, step: str) -> dict[str, Any] | None:
        return self.data["steps"].get(step)

    def record(self, step: str, found: dict[str, Any] | None = None) -> None:
        self.data["steps"][step] = found or {}
        atomic_write_json(self.path, self.data)

    def seconds(self, stage: str) -> float:
        """Seconds spent training ``stage`` so far, or with ``build`` on the whole build (interrupted runs
        included)."""
        if stage == "train":
            return self.data["training_seconds"]
        return self.data.get("stage_seconds", {}).get(stage, 0.0)

    def add_seconds(self, stage: str, seconds: float) -> None:
        if stage == "train":
            self.data["training_seconds"] += seconds
        else:
            spent = self.data.setdefault("stage_seconds", {})
            spent[stage] = spent.get(stage, 0.0) + seconds
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

    began = time.monotonic()
    try:
        split = _split(state, request, out, source, progress)
        checkpoint = _train(state, request, params, out, split, progress)
        _keep(state, request, params, out, split, progress)
        _extras(state, request, params, out, source, split, progress)
        card = _measure(state, request, out, checkpoint, source, split, progress)
        if state.done("report") is None:
            state.add_seconds("build", time.monotonic() - began)
            began = time.monotonic()
            _report(state, request, out, card, source, split, progress)
    finally:  # every run's time counts, interrupted ones too
        state.add_seconds("build", time.monotonic() - began)
    return out


def write_role_splits(split: dict[str, list[str]], folder: str | os.PathLike[str]) -> dict[str, Path]:
    """``split`` (``{"train": [...], "validation": [...], "test": [...]}``, a build's ``split.json``) as one file per
    role in ``folder``, each in the two-set form a source's ``--split-file`` takes: ``train.json`` holds the training
    photos as its train split and the validation photos as its test split; ``validation.json`` and ``test.json``
    hold those photos as their test split. Returns the files by role."""
    files = {}
    for role, names in (
        ("train", {"train": split["train"], "test": split["validation"]}),
        ("validation", {"train": [], "test": split["validation"]}),
        ("test", {"train": [], "test": split["test"]}),
    ):
        files[role] = atomic_write_json(Path(folder) / f"{role}.json", names)
    return files


def _split(
    state: _State, request: BuildRequest, out: Path, source: Any, progress: Callable[[str], None]
) -> dict[str, list[str]]:
    if (done := state.done("split")) is not None:
        return done["split"]
    split = split_photos(source) if request.split_file is None else read_split_file(request.split_file, source)
    atomic_write_json(out / "split.json", split)
    write_role_splits(split, out / "splits")
    progress(
        f"split: {len(split['train'])} training, {len(split['validation'])} validation and {len(split['test'])} "
        "test photos (split.json)"
    )
    state.record("split", {"split": split})
    return split


def _train(
    state: _State,
    request: BuildRequest,
    params: dict[str, Any],
    out: Path,
    split: dict[str, list[str]],
    progress: Callable[[str], None],
) -> Path:
    """The main CAN: its best checkpoint, also written as ``net.pt``."""
    from fip.models.storage import load_network, save_network

    if (done := state.done("train")) is not None:
        if not (out / "net.pt").is_file():  # a folder whose training finished before net.pt was written here
            save_network(load_network(out / done["checkpoint"]), out / "net.pt")
        return out / done["checkpoint"]
    config = _config_for(request.operator)
    if request.warm_start == "auto":
        start = warm_start_for(request.operator, config)
    else:
        start = None if request.warm_start == "none" else request.warm_start
    best = _fit(
        state,
        request,
        "train",
        ["-c", config] + (["--model.warm_start", start] if start else []),
        f"{config} config, starting from {start or 'the config (its own warm start, if any)'}",
        params,
        out,
        progress,
    )
    save_network(load_network(best), out / "net.pt")
    state.record("train", {"checkpoint": str(best.relative_to(out)), "warm_start": start, "config": config})
    return best


def _keep(
    state: _State,
    request: BuildRequest,
    params: dict[str, Any],
    out: Path,
    split: dict[str, list[str]],
    progress: Callable[[str], None],
) -> None:
    """``net.pt``: the trained network, or the network training started from when that one scores higher on the
    validation photos (a short training from a model trained for longer can lose more than it learns)."""
    from fip.measure import quality
    from fip.models.catalogue import Model, open_warm_start
    from fip.models.storage import load_network, save_network

    start = state.done("train").get("warm_start")
    if not start or state.done("keep") is not None or state.done("measure") is not None:
        return
    validation = _photo_sets(request, out, split)[0]
    networks = {"trained": load_network(out / "net.pt"), "start": open_warm_start(start)}
    models = {name: Model.of_network(network) for name, network in networks.items()}
    scores = {
        name: quality(model, "fast" if "fast" in model.card.approximators else "full", validation, request.device).psnr
        for name, model in models.items()
    }
    kept = max(scores, key=scores.__getitem__)  # a tie keeps the trained one
    if kept == "start":  # measured against this build's operator and parameters, and kept for them
        save_network(replace(networks["start"], operator=request.operator, params=dict(params)), out / "net.pt")
    progress(
        f"keep: the {kept} network (validation PSNR: trained {scores['trained']:.2f} dB, "
        f"{start} {scores['start']:.2f} dB)"
    )
    state.record("keep", {"kept": kept, "validation_psnr": scores})


def _photo_sets(request: BuildRequest, out: Path, split: dict[str, list[str]]) -> list[Any]:
    """The photo sets a build measures on: validation (chooses), test and ``request.report`` (report only)."""
    from fip.measure import PhotoSetSource

    return [
        PhotoSetSource(
            "validation",
            "choose",
            f"{len(split['validation'])} validation photos of {request.source}",
            ((request.source, "test"),),
            request.resolution,
            str(out / "splits" / "validation.json"),
        ),
        PhotoSetSource(
            "test",
            "report",
            f"{len(split['test'])} test photos of {request.source}; never used to choose",
            ((request.source, "test"),),
            request.resolution,
            str(out / "splits" / "test.json"),
        ),
        *(
            PhotoSetSource(
                name, "report", f"every photo of {spec}; never used to choose", ((spec, "all"),), request.resolution
            )
            for name, spec in request.report
        ),
    ]


def _config_for(operator: str) -> str:
    """The training config ``fip build`` uses for ``operator``: its own, else :data:`GENERIC_CONFIG`."""
    from fip.training import config_names

    return operator if operator in config_names() else GENERIC_CONFIG


def _fit(
    state: _State,
    request: BuildRequest,
    stage: str,
    config_args: list[str],
    what: str,
    params: dict[str, Any],
    out: Path,
    progress: Callable[[str], None],
) -> Path:
    """One Lightning training of the build (``stage``: ``train``, ``lowres``, ``pruned``) within its share of the
    budget, resumed from its last checkpoint; its best checkpoint (else its last)."""
    from fip.training import max_time, run_training

    left = training_minutes(request)[stage] - state.seconds(stage) / 60
    runs = out / ("training" if stage == "train" else f"training-{stage}")
    last = sorted(runs.rglob("last.ckpt"), key=os.path.getmtime)
    progress(
        f"{stage}: {what}, {max(left, 0):.1f} min left of its training budget"
        + (f", resuming {last[-1].relative_to(out)}" if last else "")
    )
    best = last[-1] if last else None
    if left > 0.05:
        args = [
            *config_args,
            "--data.operator",
            request.operator,
            "--data.params",
            json.dumps(params),
            "--data.source",
            request.source,
            "--data.split_file",
            str(out / "splits" / "train.json"),
            "--trainer.max_time",
            max_time(left),
            "--trainer.default_root_dir",
            str(runs),
            "--trainer.logger",
            json.dumps(
                {
                    "class_path": "pytorch_lightning.loggers.CSVLogger",
                    "init_args": {"save_dir": str(runs), "name": "logs"},
                }
            ),
        ]
        args += list(request.train_args)
        if last:
            args += ["--ckpt_path", str(last[-1])]
        began = time.monotonic()
        try:
            cli = run_training(args)
        finally:  # an interrupted training's time counts too: the rerun resumes with what is left
            state.add_seconds(stage, time.monotonic() - began)
        if cli.trainer.global_rank != 0:
            # Lightning's DDP starts ranks 1..N by running this command again: their part ends with training.
            raise SystemExit(0)
        callback = cli.trainer.checkpoint_callback
        chosen = callback.best_model_path or callback.last_model_path
        best = Path(chosen) if chosen else None
    if best is None or not best.is_file():
        skip = "" if stage == "train" else ", or leave the extra stages out with --extras none"
        raise InputError(
            f"the budget of {request.budget_minutes:g} min left no time to train a first epoch "
            f"({'the CAN' if stage == 'train' else stage}); raise --budget (training gets "
            f"{TRAINING_SHARE:.0%} of it){skip}"
        )
    return best


def training_record(checkpoint: Path) -> dict[str, Any]:
    """How far the training of a Lightning ``checkpoint`` had gone when it was saved: ``steps`` (optimizer steps),
    ``epochs``, and ``hours`` and ``cpu_hours`` trained, summed over every resumed part (``None`` for a
    checkpoint written without :class:`fip.training.TrainingClock`)."""
    import torch

    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    clock = (saved.get("callbacks") or {}).get("TrainingClock") or {}
    hours = {
        key: round(clock[name] / 3600, 3) if name in clock else None
        for key, name in (("hours", "seconds"), ("cpu_hours", "cpu_seconds"))
    }
    return {"steps": saved.get("global_step"), "epochs": saved.get("epoch", -1) + 1, **hours}


def training_minutes(request: BuildRequest) -> dict[str, float]:
    """Minutes of training for each stage of ``request``: ``train`` (the CAN) and, when ``request.extras`` names
    them (:func:`requested_extras`) or the budget gives each at least :data:`MIN_EXTRA_MINUTES`, the
    :data:`EXTRA_STAGES` (:data:`EXTRA_SHARE` of the training time each)."""
    total = request.budget_minutes * TRAINING_SHARE
    wanted = requested_extras(request.extras)
    if wanted is None:  # auto
        wanted = EXTRA_STAGES if total * EXTRA_SHARE >= MIN_EXTRA_MINUTES else ()
    return {"train": total * (1 - EXTRA_SHARE * len(wanted)), **{stage: total * EXTRA_SHARE for stage in wanted}}


def requested_extras(extras: str) -> tuple[str, ...] | None:
    """The extra stages ``extras`` names (``None`` for ``auto``: the budget decides), in build order.

    Raises:
        InputError: a name that is not a stage.
    """
    if extras == "auto":
        return None
    if extras in ("all", "none"):
        return EXTRA_STAGES if extras == "all" else ()
    names = {name.strip() for name in extras.split(",") if name.strip()}
    if unknown := sorted(names - set(EXTRA_STAGES)):
        raise InputError(
            f"--extras {extras!r}: {', '.join(unknown)} is not a stage; give auto, all, none or some of "
            f"{', '.join(EXTRA_STAGES)} joined by commas"
        )
    return tuple(stage for stage in EXTRA_STAGES if stage in names)


def extra_stages(request: BuildRequest, net: Any) -> dict[str, str | None]:
    """The extra stages ``request``'s budget gives time to (:func:`training_minutes`), each with ``None`` when it
    runs for ``net`` (the trained CAN) or why it is skipped."""
    stages: dict[str, str | None] = {stage: None for stage in EXTRA_STAGES if stage in training_minutes(request)}
    if getattr(net, "input_norm", None):  # neither the guided network nor pruning (or ONNX) carries one
        for stage in set(stages) & {"lowres", "pruned"}:  # the grid is trained on the plain photo, from scratch
            stages[stage] = f"the {stage} network cannot normalize its input as this one does ({net.input_norm})"
    return stages


def _extras(
    state: _State,
    request: BuildRequest,
    params: dict[str, Any],
    out: Path,
    source: Any,
    split: dict[str, list[str]],
    progress: Callable[[str], None],
) -> None:
    """The extra stages, each once; none for a model already measured (a folder built before they existed keeps
    what it has)."""
    from fip.models.storage import load_network

    if state.done("measure") is not None or all(state.done(stage) is not None for stage in training_minutes(request)):
        return
    net = load_network(out / "net.pt").net
    config = state.done("train").get("config") or _config_for(request.operator)
    for stage, skipped in extra_stages(request, net).items():
        if state.done(stage) is not None:
            continue
        if skipped:
            progress(f"{stage}: skipped: {skipped}")
            state.record(stage, {"skipped": skipped})
        elif stage == "lowres":
            _lowres(state, request, params, out, config, net, progress)
        elif stage == "grid":
            _grid(state, request, params, out, config, progress)
        else:
            _pruned(state, request, params, out, config, net, source, split, progress)


def _lowres(
    state: _State,
    request: BuildRequest,
    params: dict[str, Any],
    out: Path,
    config: str,
    net: Any,
    progress: Callable[[str], None],
) -> None:
    """The Deep Guided Filter form of the CAN (``lowres.pt``), trained end to end from ``net.pt``."""
    _stage_network(
        state,
        request,
        "lowres",
        [
            "-c",
            config,
            "-c",
            LOWRES_OVERLAY,
            "--model.warm_start",
            str(out / "net.pt"),
            "--model.net.init_args.conv_bias",
            str(net.conv_bias).lower(),
        ],
        "the network at a third of the size with a learned guided filter (Deep Guided Filter), from net.pt",
        params,
        out,
        progress,
    )


def _grid(
    state: _State,
    request: BuildRequest,
    params: dict[str, Any],
    out: Path,
    config: str,
    progress: Callable[[str], None],
) -> None:
    """A bilateral-grid network (``grid.pt``), trained from scratch on whole photos at 1080p (``overlays/grid``)."""
    _stage_network(
        state,
        request,
        "grid",
        ["-c", config, "-c", GRID_OVERLAY],
        "a bilateral grid of colour transforms from a 256x256 copy of the photo (HDRNet-style), from scratch",
        params,
        out,
        progress,
    )


def _stage_network(
    state: _State,
    request: BuildRequest,
    stage: str,
    config_args: list[str],
    what: str,
    params: dict[str, Any],
    out: Path,
    progress: Callable[[str], None],
) -> None:
    """Train ``stage`` (:func:`_fit`), write its best network as ``<stage>.pt`` and record the stage done."""
    from fip.models.storage import load_network, save_network

    best = _fit(state, request, stage, config_args, what, params, out, progress)
    save_network(load_network(best), out / f"{stage}.pt")
    state.record(stage, {"checkpoint": str(best.relative_to(out))})


def _pruned(
    state: _State,
    request: BuildRequest,
    params: dict[str, Any],
    out: Path,
    config: str,
    net: Any,
    source: Any,
    split: dict[str, list[str]],
    progress: Callable[[str], None],
) -> None:
    """``net.pt`` pruned to :data:`PRUNED_WIDTH` channels and fine-tuned (``pruned.pt``), and that network in int8
    for ONNX Runtime (``pruned.int8.onnx``) when the compress extra is installed."""
    import importlib.util

    from fip.compress import calibration_photos, prune
    from fip.models.storage import NetworkFile, load_network, save_network

    # Calibration looks at a few training photos (the same ones on every rerun), not all of a large source.
    names = set(_by_hash(split["train"])[:CALIBRATION_PHOTOS])
    photos = calibration_photos(paths=[p.path for p in source.photos if p.name in names])
    start = out / "training-pruned" / "start.pt"
    if not start.is_file():
        save_network(NetworkFile(prune(net, PRUNED_WIDTH, photos), "pruned start", request.operator, params), start)
    best = _fit(
        state,
        request,
        "pruned",
        [
            "-c",
            config,
            "--model.net.init_args.width",
            str(PRUNED_WIDTH),
            "--model.net.init_args.norm",
            "running",
            "--model.net.init_args.conv_bias",
            str(net.conv_bias).lower(),
            "--data.context_scale",
            "null",
            "--model.warm_start",
            str(start),
        ],
        f"net.pt pruned to {PRUNED_WIDTH} channels, running statistics, fine-tuned",
        params,
        out,
        progress,
    )
    tuned = load_network(best)
    save_network(tuned, out / "pruned.pt")
    found = {"checkpoint": str(best.relative_to(out)), "int8": False}
    if not (importlib.util.find_spec("onnx") and importlib.util.find_spec("onnxscript")):
        progress("pruned: no int8 file (ONNX export needs the compress extra: pip install 'fip-photo[compress]')")
    else:
        from fip.onnx_export import write_onnx

        write_onnx(tuned.net, out / "pruned.int8.onnx", [p.numpy() for p in photos])
        found["int8"] = True
    state.record("pruned", found)


def _measure(
    state: _State,
    request: BuildRequest,
    out: Path,
    checkpoint: Path,
    source: Any,
    split: dict[str, list[str]],
    progress: Callable[[str], None],
):
    from fip.data.pairs import fip_version
    from fip.measure import measure
    from fip.models.cards import read_card, write_card
    from fip.models.catalogue import REFERENCE_HALFRES_APPROXIMATOR, Model, card_for_network
    from fip.models.storage import load_network

    if state.done("measure") is not None:
        return read_card(out)
    card = _with_stage_networks(card_for_network(load_network(out / "net.pt")), out)
    card = replace(
        card.with_approximator(REFERENCE_HALFRES_APPROXIMATOR),
        name=f"built/{out.resolve().name}",
        description=f"built by fip build from {request.source}",
        provenance={
            "source": request.source,
            "split": "split.json",
            "checkpoint": str(checkpoint.name),
            "warm_start": (state.done("train") or {}).get("warm_start"),
            "kept": (state.done("keep") or {}).get("kept", "trained"),
            "training": {"photos": len(split["train"]), **training_record(checkpoint)},
            "stages": {
                stage: round(state.seconds(stage) / 60, 2)
                for stage in ("train", *EXTRA_STAGES)
                if state.done(stage) is not None
            },
            "budget_minutes": request.budget_minutes,
            "fip_version": fip_version(),
            "made_by": f"fip build {request.operator}",
        },
    )
    write_card(card, out)
    sets = _photo_sets(request, out, split)
    timing_photo = _photo_path(source, request.source, split["validation"][0])
    card = measure(
        Model(read_card(out)), sets, timing_photo, request.device, progress=progress, timing_size=request.timing_size
    )
    write_card(card, out)
    state.record("measure")
    return read_card(out)


def _with_stage_networks(card: Any, out: Path) -> Any:
    """``card`` (of ``net.pt``) with the networks the extra stages wrote into ``out`` and their approximators, placed
    before the references'."""
    from fip.files import sha256_file
    from fip.models.cards import Approximator, NetworkEntry
    from fip.models.families import GRID_APPROXIMATOR, GUIDED_PREVIEW_MEGAPIXELS
    from fip.models.storage import load_network, net_config

    # The main network's digest too: a damaged net.pt is then refused when opened, like the others.
    networks, added = {"net": replace(card.networks["net"], sha256=sha256_file(out / "net.pt"))}, []

    def add(key: str, file: str, net: Any, approximator: Approximator) -> None:
        onnx = file.endswith(".onnx")
        networks[key] = NetworkEntry(
            file,
            "onnx" if onnx else "fip",
            sha256_file(out / file),
            net_config(net),
            net.receptive_radius if onnx else None,
        )
        added.append(approximator)

    if (out / "lowres.pt").is_file():
        add(
            "lowres",
            "lowres.pt",
            load_network(out / "lowres.pt").net,
            Approximator(
                "lowres",
                "lowres",
                "bf16",
                "preview",
                GUIDED_PREVIEW_MEGAPIXELS,
                description="Deep Guided Filter trained end to end: the network at a third of the size in "
                "bf16, a learned guidance map and guided filter at full size",
            ),
        )
    if (out / "pruned.pt").is_file():
        pruned = load_network(out / "pruned.pt").net
        add(
            "pruned",
            "pruned.pt",
            pruned,
            Approximator(
                "pruned",
                "pruned",
                "bf16",
                "running",
                description=(f"pruned to {pruned.width} channels and fine-tuned, running statistics folded, bf16"),
            ),
        )
        if (out / "pruned.int8.onnx").is_file():
            add(
                "int8",
                "pruned.int8.onnx",
                pruned,
                Approximator(
                    "int8",
                    "int8",
                    "int8",
                    "running",
                    description="the pruned network quantized to int8, run by ONNX Runtime",
                ),
            )
    if (out / "grid.pt").is_file():
        add("grid", "grid.pt", load_network(out / "grid.pt").net, replace(GRID_APPROXIMATOR, network="grid"))
    return card.with_networks(networks, added)


def _photo_path(source: Any, source_spec: str, name: str) -> Path:
    """The file of photo ``name`` of ``source`` (opened from ``source_spec``)."""
    found = next((p.path for p in source.photos if p.name == name), None)
    if found is None:
        raise InputError(
            f"photo {name!r} of split.json is no longer in {source_spec}; put it back, or build into a new --out folder"
        )
    return found


def _report(
    state: _State,
    request: BuildRequest,
    out: Path,
    card: Any,
    source: Any,
    split: dict[str, list[str]],
    progress: Callable[[str], None],
) -> None:
    from fip.models.catalogue import Model
    from fip.runtime.devices import device_class, resolve_device
    from fip.runtime.engine import make_plan
    from fip.runtime.plan import AUTO

    klass = device_class(resolve_device(request.device))
    model = Model(card)
    chosen = make_plan(model, AUTO, request.timing_size, request.device).approximator
    reference = card.reference_seconds.get(klass)
    height, width = request.timing_size
    timed = f"one {width}x{height} photo on {klass}" + (
        f"; the reference takes {reference.seconds:.3f} s" if reference else ""
    )
    lines = [
        f"# fip build {request.operator}",
        "",
        f"Photos: {request.source}, {len(split['train'])} training, {len(split['validation'])} validation (they "
        f"choose `auto`), {len(split['test'])} test (reported, chose nothing)"
        + "".join(f"; {name}: every photo of {spec} (reported, chose nothing)" for name, spec in request.report)
        + f"; at {request.resolution}. "
        f"Seconds: {timed}.",
        "",
        "| approximator | validation PSNR | test PSNR | test SSIM | "
        + "".join(f"{name} PSNR | " for name, _ in request.report)
        + "s | speed-up | |",
        "|---|---:|---:|---:|" + "---:|" * len(request.report) + "---:|---:|---|",
    ]
    for approximator in card.approximators.values():
        valid, test = approximator.quality.get("validation"), approximator.quality.get("test")
        timing = approximator.seconds.get(klass)
        if not (valid and test and timing):
            lines.append(f"| {approximator.name} | not measured here |" + " |" * (5 + len(request.report)))
            continue
        speedup = f"{reference.seconds / timing.seconds:.1f}x" if reference else ""
        also = "".join(
            f" {q.psnr:.2f} |" if (q := approximator.quality.get(name)) else " |" for name, _ in request.report
        )
        lines.append(
            f"| {approximator.name} | {valid.psnr:.2f} | {test.psnr:.2f} | {test.ssim:.4f} |{also} "
            f"{timing.seconds:.3f} | {speedup} | {'**auto**' if approximator.name == chosen else ''} |"
        )
    if chosen == "reference":
        seconds = f"{reference.seconds:.3f}" if reference else ""
        lines.append(
            "| *the reference* | exact | exact | 1 |"
            + " exact |" * len(request.report)
            + f" {seconds} | 1.0x | **auto** |"
        )
    picture = _before_after(
        model, request, _photo_path(source, request.source, split["test"][0]), out / "before-after.png"
    )
    minutes = state.seconds("build") / 60
    lines += [
        "",
        f"The build took {minutes:.1f} min against a budget of {request.budget_minutes:g} min (training "
        f"{sum(state.seconds(s) for s in ('train', *EXTRA_STAGES)) / 60:.1f} min; measuring the rest: every "
        "approximator and the reference on every photo set).",
    ]
    lines += [
        "",
        f"`auto` on {klass} runs **{chosen}**. Use the model: `fip apply -m {out} PHOTO --out DIR`, "
        f"`fip.load({str(out)!r})`.",
        "",
        f"![input, reference, auto on a test photo]({picture.name})",
    ]
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
    panels = [
        resize_area(image, height, max(2, round(image.shape[1] * height / image.shape[0])))
        for image in (photo.srgb, slow.image, fast.image)
    ]
    gap = np.ones((height, 6, 3), np.float32)
    atomic_write_bytes(path, encode_png(np.hstack([panels[0], gap, panels[1], gap, panels[2]]), bits=8))
    return path


SHIPPED_FILES = ("report.md", "before-after.png", "split.json")  # beside the card and its networks


def package(
    model: str | os.PathLike[str], into: str | os.PathLike[str], name: str | None = None, overwrite: bool = False
) -> Path:
    """Copy the model folder ``model`` (``fip build``'s ``--out``) into ``into``, a package's folder of models, as
    ``into/<last part of the name>/``: its card (renamed ``name``), the networks it names (checked against their
    SHA-256), its report, picture and split, and not the training runs. The copy is written beside and then
    renamed into place, so ``into`` never holds half a model.

    A plugin distribution ships the model with its operator when ``into`` is a package folder named by a
    ``fip.models`` entry point (:mod:`fip.models.catalogue`); fip's own models are such a folder too.

    Args:
        name: the installed model's name (default: ``<top package>/<operator>``, e.g.
            ``fip_example_plugin/example.posterize`` for ``into=.../fip_example_plugin/models``).
        overwrite: replace a model already in ``into`` under that folder name.

    Returns:
        The packaged model's folder.

    Raises:
        InputError: ``model`` holds no card or a damaged network, or the target exists and ``overwrite`` is false.
    """
    import shutil
    import tempfile

    from fip.files import sha256_file, umask
    from fip.models.cards import CARD_FILE, CardError, read_card, write_card

    source, into = Path(model), Path(into)
    try:
        card = read_card(source)
    except CardError as exc:
        raise InputError(
            f"{source} is not a model folder ({exc}); make one with fip build OPERATOR --out {source}"
        ) from None
    name = name or f"{_top_package(into)}/{card.operator or source.resolve().name}"
    folder_name = name.rstrip("/").rsplit("/", 1)[-1]
    if folder_name in ("", ".", "..") or folder_name.startswith("."):
        raise InputError(f"--name {name!r} cannot name a model folder: end it with a name such as my_plugin/posterize")
    target = into / folder_name
    if target.exists() and not overwrite:
        raise InputError(f"{target} already exists; pass --overwrite to replace it, or another --name")
    into.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder_name}.", dir=into))  # hidden: model scans skip it
    old = staging.with_name(staging.name + ".old")
    try:
        for key, entry in card.networks.items():
            if entry.kind == "paper":  # the authors' networks ship with fip itself
                continue
            try:
                shutil.copy2(card.path_of(key), staging / entry.file)
            except OSError as exc:
                raise InputError(
                    f"cannot copy network {key!r} of {source / CARD_FILE}: {exc.strerror}: "
                    f"{card.path_of(key)}; build the model again"
                ) from None
            if entry.sha256 is not None and sha256_file(staging / entry.file) != entry.sha256:
                raise InputError(
                    f"{card.path_of(key)} does not match the SHA-256 in {source / CARD_FILE}: "
                    f"the model is damaged; build it again"
                )
        for extra in SHIPPED_FILES:
            if (source / extra).is_file():
                shutil.copy2(source / extra, staging / extra)
        write_card(replace(card, name=name, root=None), staging)
        read_card(staging)  # what was written reads back
        staging.chmod(0o777 & ~umask())  # mkdtemp's folder is private; a package's files are not
        if target.exists():  # replaced by renames: the folder is always one whole model
            target.rename(old)
        try:
            staging.rename(target)
        except OSError:
            if old.exists():
                old.rename(target)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target


def _top_package(folder: Path) -> str:
    """The name of the outermost Python package holding ``folder`` (its own name if none does)."""
    top = folder.resolve()
    while (top.parent / "__init__.py").is_file():
        top = top.parent
    return top.name if (top / "__init__.py").is_file() else folder.resolve().name


__all__ = [
    "GENERIC_CONFIG",
    "SHIPPED_FILES",
    "STATE_FILE",
    "BuildRequest",
    "build",
    "extra_stages",
    "package",
    "read_split_file",
    "requested_extras",
    "split_photos",
    "training_minutes",
    "warm_start_for",
    "write_role_splits",
]
