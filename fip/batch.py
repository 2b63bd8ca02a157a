"""Batches of photo files: inputs from files, folders and globs; outputs that never collide; local processes or a
Dask cluster; a result for every input.

``fip apply`` runs here::

    batch = plan_batch(["shoot/", "extra/*.jpg"], "edited/", recursive=True, output=OutputOptions("jpeg"))
    for result in run_batch(model, batch, request="auto"):
        ...

Every input ends as one :class:`FileResult`: written, kept (its output exists and ``overwrite`` is off, so a rerun
resumes a batch), or failed with a message that names the problem; one bad file never stops the others. Outputs are
written atomically by this process, whichever machine computed them.
"""

from __future__ import annotations

import concurrent.futures as cf
import glob
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fip.errors import FipError, InputError
from fip.files import atomic_write_bytes
from fip.imaging import encode_image, output_format, output_suffix
from fip.models.cards import ModelCard
from fip.models.catalogue import Model
from fip.raw import PHOTO_EXTENSIONS
from fip.runtime.plan import AUTO, Plan
from fip.workers import executor

_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class OutputOptions:
    """How results are written.

    Args:
        format: one of :data:`fip.imaging.OUTPUT_FORMATS` (``png``: 8-bit, ``png16``, ``tiff16``, ``jpeg``).
        quality: JPEG quality, 1..100.
        overwrite: replace outputs that exist (otherwise they are kept and reported).
    """

    format: str = "png"
    quality: int = 95
    overwrite: bool = False

    def __post_init__(self) -> None:
        output_format(self.format)  # an unknown name fails here, listing the formats
        if not 1 <= self.quality <= 100:
            raise InputError(f"JPEG quality must be 1..100; got {self.quality}")


@dataclass(frozen=True)
class BatchItem:
    """One input of a batch and where its result goes (``error``: why it cannot run, found before any work)."""

    source: Path
    output: Path | None
    error: str | None = None


@dataclass(frozen=True)
class Batch:
    """The inputs of :func:`plan_batch`, each with its output; ``out_dir`` is checked writable."""

    items: tuple[BatchItem, ...]
    out_dir: Path
    output: OutputOptions


@dataclass
class FileResult:
    """What became of one input: ``status`` is ``written``, ``kept`` (its output exists) or ``failed``."""

    source: Path
    output: Path | None
    status: str = "written"
    seconds: float = 0.0
    size: tuple[int, int] | None = None
    plan: Plan | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def expand_inputs(
    inputs: Sequence[str | os.PathLike[str]], *, recursive: bool = False, exclude: Path | None = None
) -> list[tuple[Path, Path, str | None]]:
    """Files, folders and glob patterns -> ``(file, subfolder, error)`` per photo, in the order given, each file once.

    A folder gives the photo files in it (by extension: images and raw files), with ``recursive`` those in its
    subfolders too, keeping each one's subfolder (relative to the folder given) so outputs mirror the tree. A pattern
    (``*``, ``?``, ``[``) gives the files it matches (``**`` spans folders with ``recursive``). A name that exists
    nowhere is kept with its error, so the batch reports it and goes on. Files under ``exclude`` (the output folder)
    are skipped when a folder or pattern is expanded.
    """
    found: list[tuple[Path, Path, str | None]] = []
    seen: set[Path] = set()
    excluded = exclude.resolve() if exclude is not None else None

    def add(path: Path, subfolder: Path = Path(), error: str | None = None) -> None:
        key = path.resolve() if error is None else path
        if key not in seen:
            seen.add(key)
            found.append((path, subfolder, error))

    def photos_in(paths: Sequence[Path]) -> list[Path]:
        return sorted(p for p in paths if p.is_file() and p.suffix.lower() in PHOTO_EXTENSIONS
                      and not (excluded is not None and p.resolve().is_relative_to(excluded)))  # fmt: skip

    for text in map(str, inputs):
        path = Path(text).expanduser()
        if path.is_dir():
            photos = photos_in(list(path.rglob("*") if recursive else path.iterdir()))
            if not photos:
                hint = "" if recursive else " (--recursive includes its subfolders)"
                add(path, error=f"{path}: no photo files in this folder{hint}")
            for photo in photos:
                add(photo, photo.parent.relative_to(path))
        elif not path.exists() and _GLOB_CHARACTERS & set(text):
            photos = photos_in([Path(p) for p in glob.glob(os.path.expanduser(text), recursive=recursive)])
            if not photos:
                add(path, error=f"{text}: no photo files match this pattern")
            for photo in photos:
                add(photo)
        else:
            add(path)  # a file, or a missing one that the run reports
    return found


def output_paths(items: Sequence[tuple[Path, Path]], out_dir: Path, suffix: str) -> list[Path]:
    """``out_dir/<subfolder>/<stem><suffix>`` per ``(file, subfolder)``, never the same path twice.

    Files whose names would collide keep their own extension in the name (``a.jpg``, ``a.png`` ->
    ``a-jpg.png``, ``a-png.png``); any that still collide get ``-2``, ``-3``, ... in input order. Names are compared
    without case, as macOS and Windows file systems do.
    """
    wanted = [out_dir / subfolder / f"{path.stem}{suffix}" for path, subfolder in items]
    counts: dict[str, int] = {}
    for output in wanted:
        counts[str(output).lower()] = counts.get(str(output).lower(), 0) + 1
    taken: set[str] = set()
    paths = []
    for (path, subfolder), output in zip(items, wanted):
        if counts[str(output).lower()] > 1:
            extension = path.suffix.lstrip(".").lower()
            output = out_dir / subfolder / f"{path.stem}-{extension}{suffix}" if extension else output
        candidate, number = output, 2
        while str(candidate).lower() in taken:
            candidate = output.with_name(f"{output.stem}-{number}{suffix}")
            number += 1
        taken.add(str(candidate).lower())
        paths.append(candidate)
    return paths


def plan_batch(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    recursive: bool = False,
    output: OutputOptions = OutputOptions(),
) -> Batch:
    """The batch for ``inputs`` (see :func:`expand_inputs`) writing into ``out_dir`` (see :func:`output_paths`).

    Raises:
        InputError: ``out_dir`` is a file or cannot be written (checked by creating and removing a file there).
    """
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file; give a folder for the results")
    _check_writable(out_dir)
    expanded = expand_inputs(inputs, recursive=recursive, exclude=out_dir)
    good = [(path, subfolder) for path, subfolder, error in expanded if error is None]
    outputs = iter(output_paths(good, out_dir, output_suffix(output.format)))
    items = []
    for path, _, error in expanded:
        if error is not None:
            items.append(BatchItem(path, None, error))
            continue
        target = next(outputs)
        if target.exists() and target.resolve() == path.resolve():
            items.append(BatchItem(path, None, f"its output {target} would replace the input itself; choose another "
                                               "--out folder"))  # fmt: skip
        else:
            items.append(BatchItem(path, target))
    return Batch(tuple(items), out_dir, output)


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise InputError(f"cannot write to the output folder {folder}: {exc.strerror or exc}; choose a folder you "
                         "can write to (--out)") from None  # fmt: skip


@dataclass(frozen=True)
class _Job:
    """One input's work, as sent to a worker process (the model travels as its card)."""

    source: Path
    card: ModelCard
    request: str
    operator: str | None
    params: Mapping[str, Any] | None
    device: str | None
    max_megapixels: float | None
    tile: int | None
    output: OutputOptions


def _run_job(job: _Job, model: Model | None = None) -> tuple[FileResult, bytes | None]:
    """Open, approximate and encode one photo; errors a user can fix become a failed result."""
    from fip.pipeline import open_input, run_approximation

    try:
        model = model if model is not None else _worker_model(job.card)
        photo = open_input(job.source, job.max_megapixels)
        result = run_approximation(model, photo.views, job.params, job.request, operator=job.operator,
                                   device=job.device, tile=job.tile)  # fmt: skip
        image = photo.upright(result.image)
        data = encode_image(image, job.output.format, quality=job.output.quality, metadata=photo.metadata)
    except FipError as exc:
        return FileResult(job.source, None, "failed", error=str(exc)), None
    except torch.cuda.OutOfMemoryError:
        return FileResult(job.source, None, "failed", error="out of GPU memory; pass --tile 512 (or smaller), or "
                                                            "--device cpu"), None  # fmt: skip
    except MemoryError:
        return FileResult(job.source, None, "failed", error="out of memory; pass --tile 512 (or smaller) or "
                                                            "--max-megapixels"), None  # fmt: skip
    notes = [result.note] if result.note else []
    return FileResult(job.source, None, "written", result.seconds, image.shape[:2], result.plan, notes=notes), data


_worker_models: dict[tuple[str, str], Model] = {}


def _worker_model(card: ModelCard) -> Model:
    """The model of ``card``, opened once per worker process."""
    key = (card.name, str(card.root))
    if key not in _worker_models:
        _worker_models[key] = Model(card)
    return _worker_models[key]


@contextmanager
def _executor(workers: int, scheduler: str | None) -> Iterator[cf.Executor | None]:
    """:func:`fip.workers.executor`; local workers share the cores and the memory between them."""
    from fip.runtime.devices import MEMORY_LIMIT_ENV, available_memory

    threads = max(1, (os.cpu_count() or 1) // max(1, workers))
    memory = {MEMORY_LIMIT_ENV: str(available_memory(torch.device("cpu")) // max(1, workers))}
    with executor(workers, scheduler, threads=threads, environment=memory) as pool:
        yield pool


def run_batch(
    model: Model,
    batch: Batch,
    *,
    request: str = AUTO,
    operator: str | None = None,
    params: Mapping[str, Any] | None = None,
    device: str | None = None,
    max_megapixels: float | None = None,
    tile: int | None = None,
    workers: int = 1,
    scheduler: str | None = None,
) -> Iterator[FileResult]:
    """Approximate the operator on every input of ``batch``, yielding each result as it is written.

    Args:
        model: the model (any name :func:`fip.pipeline.resolve` takes, opened).
        batch: from :func:`plan_batch`.
        request: ``auto`` or an approximator's name.
        workers: local processes (each opens the model once and takes its share of the cores and memory);
            1 runs in this process.
        scheduler: a Dask scheduler's address (``tcp://host:8786``); its workers must see the input files.
            Results come back to this process, which writes them.
    """
    jobs: list[tuple[BatchItem, _Job]] = []
    parallel = workers > 1 or bool(scheduler)
    in_memory = model.card.root is None and any(entry.kind != "paper" for entry in model.card.networks.values())
    if parallel and in_memory:
        raise InputError(f"{model.name} is held in memory only; run it with one worker, or save it to a file first")
    for item in batch.items:
        if item.error is not None:
            yield FileResult(item.source, None, "failed", error=item.error)
        elif item.output.exists() and not batch.output.overwrite:
            yield FileResult(item.source, item.output, "kept", notes=["output exists (--overwrite replaces it)"])
        else:
            jobs.append((item, _Job(item.source, model.card, request, operator, params, device, max_megapixels, tile,
                                    batch.output)))  # fmt: skip
    with _executor(workers, scheduler) as pool:
        if pool is None:
            done = ((item, _run_job(job, model)) for item, job in jobs)
        else:
            futures = {pool.submit(_run_job, job): item for item, job in jobs}
            done = ((futures[f], f.result()) for f in cf.as_completed(futures))
        for item, (result, data) in done:
            yield _write(item, result, data)


def _write(item: BatchItem, result: FileResult, data: bytes | None) -> FileResult:
    if data is None:
        return result
    try:
        atomic_write_bytes(item.output, data)
    except OSError as exc:
        result.status, result.error = "failed", f"could not write {item.output}: {exc.strerror or exc}"
        return result
    result.output = item.output
    return result


def summary(results: Sequence[FileResult], seconds: float) -> str:
    """One line: how many inputs were written, kept and failed, and the time."""
    counts = {status: sum(r.status == status for r in results) for status in ("written", "kept", "failed")}
    parts = [f"{counts['written']} written"]
    if counts["kept"]:
        parts.append(f"{counts['kept']} kept (outputs exist; --overwrite replaces them)")
    if counts["failed"]:
        parts.append(f"{counts['failed']} failed")
    return f"{len(results)} input{'s' * (len(results) != 1)}: " + ", ".join(parts) + f" in {seconds:.1f} s"


__all__ = ["Batch", "BatchItem", "FileResult", "OutputOptions", "expand_inputs", "output_paths",
           "plan_batch", "run_batch", "summary"]  # fmt: skip
