"""Batches of photo files: inputs from files, folders and globs; outputs that never collide; local processes or a
Dask cluster; a result for every input.

``fip apply`` runs here::

    batch = plan_batch(["shoot/", "extra/*.jpg"], "edited/", recursive=True, output=OutputOptions("jpeg"))
    for result in run_batch(model, batch, request="auto"):
        ...

Every input ends as one :class:`FileResult`: written, kept (this input made it before with the same settings, as
the output folder's :class:`OutputLog` records, so a rerun resumes a batch), or failed with a message that names the
problem; one bad file never stops the others. Outputs are written atomically by this process, whichever machine
computed them.
"""

from __future__ import annotations

import concurrent.futures as cf
import glob
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fip.errors import FipError, InputError
from fip.files import atomic_write_bytes, sha256_file
from fip.imaging import output_format, output_suffix
from fip.models.cards import ModelCard
from fip.models.catalogue import Model
from fip.raw import PHOTO_EXTENSIONS
from fip.runtime.plan import AUTO, Plan, Preference
from fip.workers import executor, local_workers

_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class OutputOptions:
    """How results are written.

    Args:
        format: one of :data:`fip.imaging.OUTPUT_FORMATS` (``png``: 8-bit, ``png16``, ``tiff16``, ``jpeg``).
        quality: JPEG quality, 1..100.
        overwrite: write over an existing output (never over another input's logged one); otherwise see
            :func:`plan_batch`.
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
    """One input of a batch and where its result goes: ``action`` ``write`` (a new file), ``replace`` (over its
    own earlier output, or with ``overwrite`` a file no other input made) or ``keep`` (made before from the same
    input and recipe); ``error``: why it cannot run, found before any work; ``note``: what the user should know
    (a name taken, an input changed)."""

    source: Path
    output: Path | None
    error: str | None = None
    action: str = "write"
    note: str | None = None


@dataclass(frozen=True)
class Batch:
    """The inputs of :func:`plan_batch`, each with its output; ``out_dir`` is checked writable."""

    items: tuple[BatchItem, ...]
    out_dir: Path
    output: OutputOptions
    recipe: dict[str, Any] = field(default_factory=dict)
    log: OutputLog | None = None


@dataclass
class FileResult:
    """What became of one input: ``status`` is ``written``, ``kept`` (made before from the same input and
    settings) or ``failed``."""

    source: Path
    output: Path | None
    status: str = "written"
    seconds: float = 0.0
    size: tuple[int, int] | None = None
    plan: Plan | None = None
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def expand_inputs(
    inputs: Sequence[str | os.PathLike[str]], *, recursive: bool = False, exclude: Collection[Path] = ()
) -> list[tuple[Path, Path, str | None]]:
    """Files, folders and glob patterns -> ``(file, subfolder, error)`` per photo, in the order given, each file once.

    A folder gives the photo files in it (by extension: images and raw files), with ``recursive`` those in its
    subfolders too, keeping each one's subfolder (relative to the folder given) so outputs mirror the tree. A pattern
    (``*``, ``?``, ``[``) gives the files it matches (``**`` spans folders with ``recursive``). A name that exists
    nowhere is kept with its error, so the batch reports it and goes on. Files in ``exclude`` (earlier outputs)
    and hidden files are skipped when a folder or pattern is expanded.
    """
    found: list[tuple[Path, Path, str | None]] = []
    seen: set[Path] = set()
    excluded = {path.resolve() for path in exclude}

    def add(path: Path, subfolder: Path = Path(), error: str | None = None) -> None:
        key = path.resolve() if error is None else path
        if key not in seen:
            seen.add(key)
            found.append((path, subfolder, error))

    def photos_in(paths: Sequence[Path], where: str, pattern: bool) -> list[Path] | str:
        """The photo files among ``paths``, or why there are none."""
        photos = [
            p for p in paths if p.is_file() and p.suffix.lower() in PHOTO_EXTENSIONS and not p.name.startswith(".")
        ]  # hidden files: macOS's ._IMG.jpg, editors' backups
        kept = sorted(p for p in photos if p.resolve() not in excluded)
        if kept:
            return kept
        if photos:
            return f"{where}: every photo here is an output of an earlier run (its --out log says so)"
        if pattern:
            return f"{where}: no photo files match this pattern"
        hint = "" if recursive else " (--recursive includes its subfolders)"
        return f"{where}: no photo files in this folder{hint}"

    for text in map(str, inputs):
        path = Path(text).expanduser()
        if path.is_dir():
            photos = photos_in(list(path.rglob("*") if recursive else path.iterdir()), str(path), False)
        elif not path.exists() and _GLOB_CHARACTERS & set(text):
            photos = photos_in([Path(p) for p in glob.glob(os.path.expanduser(text), recursive=recursive)], text, True)
        else:
            add(path)  # a file, or a missing one that the run reports
            continue
        if isinstance(photos, str):
            add(path, error=photos)
        for photo in photos if isinstance(photos, list) else ():
            add(photo, photo.parent.relative_to(path) if path.is_dir() else Path())
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
        candidate = next(name for name in _numbered(output) if str(name).lower() not in taken)
        taken.add(str(candidate).lower())
        paths.append(candidate)
    return paths


def _numbered(path: Path) -> Iterator[Path]:
    """``path``, then ``<stem>-2<suffix>``, ``<stem>-3<suffix>``, ...: the names tried for an output in turn."""
    yield path
    number = 2
    while True:
        yield path.with_name(f"{path.stem}-{number}{path.suffix}")
        number += 1


OUTPUT_LOG = ".fip-outputs.jsonl"


class OutputLog:
    """Which input, with which settings, made each output in a folder: ``<folder>/.fip-outputs.jsonl``, one JSON
    line per written file (its size and SHA-256 too), appended by the one process that writes the outputs (the last
    line of a file wins).

    It lets a rerun keep exactly the outputs it would make again (and make again one changed since), keeps another
    photo's output of the same name (two memory cards' ``IMG_0001.JPG``) from passing for this one's, and tells
    fip's own outputs, which ``--overwrite`` may replace, from the user's files, which it never does.
    """

    def __init__(self, folder: Path):
        self.path = folder / OUTPUT_LOG
        self.folder = folder
        self.made: dict[str, dict[str, Any]] = {}
        try:
            lines = self.path.read_text().splitlines()
        except OSError:
            lines = []
        for line in lines:
            try:
                entry = json.loads(line)
                self.made[entry["output"]] = entry
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash: that output counts as unknown

    def entry(self, output: Path) -> dict[str, Any] | None:
        return self.made.get(output.relative_to(self.folder).as_posix())

    def output_of(self, source: Path, suffix: str) -> Path | None:
        """The output with ``suffix`` this log last records for ``source`` (any settings), if it still exists."""
        for name, entry in reversed(self.made.items()):
            output = self.folder / name
            if entry.get("source") == str(source.resolve()) and output.suffix == suffix and output.is_file():
                return output
        return None

    def changed(self, output: Path) -> bool:
        """Whether ``output`` differs from what this log records writing (size, then SHA-256; entries written
        before fip recorded them count as unchanged)."""
        entry = self.entry(output) or {}
        if "sha256" not in entry:
            return False
        return output.stat().st_size != entry.get("bytes") or sha256_file(output) != entry["sha256"]

    def record(self, output: Path, source: Path, recipe: Mapping[str, Any], data: bytes) -> None:
        name = output.relative_to(self.folder).as_posix()
        entry = {
            "output": name,
            "source": str(source.resolve()),
            "stamp": _stamp(source),
            "recipe": dict(recipe),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        self.made[name] = entry
        with open(self.path, "a+b") as log:
            log.seek(0, os.SEEK_END)
            if log.tell() and (log.seek(-1, os.SEEK_END), log.read(1))[1] != b"\n":
                log.write(b"\n")  # a line a crash cut short stays alone; this entry starts its own
            log.write((json.dumps(entry, sort_keys=True) + "\n").encode())
            log.flush()
            os.fsync(log.fileno())


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def plan_batch(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    recursive: bool = False,
    output: OutputOptions = OutputOptions(),
    recipe: Mapping[str, Any] | None = None,
) -> Batch:
    """The batch for ``inputs`` (see :func:`expand_inputs`) writing into ``out_dir`` (names: :func:`output_paths`).

    ``recipe`` (JSON: model, operator, parameters, approximator, format, ...) says what the outputs are. Without
    ``overwrite``, an input whose output this folder's :class:`OutputLog` records from the same file and recipe keeps
    it (made again if the input changed since); an input whose name is taken by another photo's output, or by a
    file fip did not write, gets the next free name (``a-2.png``); an input whose output was made with another
    recipe fails with the fix (naming the settings that differ); an output changed since it was made (its size or
    SHA-256 differs from the log's) is made again. With ``overwrite`` each input writes its logged output or its
    name anew, except over another input's logged output (it takes the next free name then); a file the log does not
    record as fip's (the user's own photo of that name) is never replaced: that input fails, naming the file.

    Raises:
        InputError: ``out_dir`` is a file or cannot be written (checked by creating and removing a file there).
    """
    out_dir = Path(out_dir).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is a file; give a folder for the results")
    _check_writable(out_dir)
    recipe = json.loads(json.dumps(dict(recipe or {}), sort_keys=True, default=str))
    log = OutputLog(out_dir)
    expanded = expand_inputs(inputs, recursive=recursive, exclude=[out_dir / name for name in log.made])
    good = [(path, subfolder) for path, subfolder, error in expanded if error is None]
    suffix = output_suffix(output.format)
    wanted = iter(output_paths(good, out_dir, suffix))
    assigned: set[str] = set()

    def usable(candidate: Path, source: Path, replace: bool) -> bool:
        """Not planned for another input, not a folder, not another input's logged output, and (unless
        ``replace``) not on disk."""
        if str(candidate).lower() in assigned or candidate.is_dir():
            return False
        entry = log.entry(candidate)
        if entry is not None and entry.get("source") != str(source.resolve()):
            return False
        return replace or not candidate.exists()

    items = []
    for path, _, error in expanded:
        if error is not None:
            items.append(BatchItem(path, None, error))
            continue
        target, action, note = _place(path, next(wanted), log, recipe, output.overwrite, suffix, usable)
        if target is not None and target.exists() and target.resolve() == path.resolve():
            target, action, note = (
                None,
                "fail",
                (f"its output {target} would replace the input itself; choose another --out folder"),
            )
        if target is None:
            items.append(BatchItem(path, None, note))
            continue
        assigned.add(str(target).lower())
        items.append(BatchItem(path, target, None, action, note))
    return Batch(tuple(items), out_dir, output, recipe, log)


def _place(
    source: Path,
    want: Path,
    log: OutputLog,
    recipe: dict[str, Any],
    overwrite: bool,
    suffix: str,
    usable: Callable[[Path, Path, bool], bool],
) -> tuple[Path | None, str, str | None]:
    """(output, action, note) for one input: action ``write`` (a new file), ``replace`` (its own earlier output, or
    with ``overwrite`` a file no other input made), ``keep`` or ``fail`` (note: why)."""
    previous = log.output_of(source, suffix)
    if previous is not None and not overwrite:
        entry = log.entry(previous)
        if entry.get("recipe") != recipe:
            changes = _recipe_changes(entry.get("recipe"), recipe)
            return (
                None,
                "fail",
                (
                    f"its output {previous} was made with other settings ({changes}); --overwrite "
                    "replaces it, or choose another --out"
                ),
            )
        if entry.get("stamp") != _stamp(source):
            return previous, "replace", "the input changed since its output was made: made again"
        if log.changed(previous):
            return (
                previous,
                "replace",
                (
                    f"{previous.name} changed since fip made it (its size or SHA-256 differs "
                    f"from {OUTPUT_LOG}'s): made again"
                ),
            )
        return previous, "keep", None
    if previous is not None and usable(previous, source, True):
        return previous, "replace", None
    candidate = next(name for name in _numbered(want) if usable(name, source, overwrite))
    if overwrite and candidate.exists() and log.entry(candidate) is None and candidate.resolve() != source.resolve():
        return (
            None,
            "fail",
            (
                f"{candidate} is not an output of fip ({OUTPUT_LOG} there does not list it), and "
                "--overwrite replaces only those: move that file, or choose another --out"
            ),
        )
    note = None if candidate == want else f"{want.name} is taken by another file"
    return candidate, "replace" if candidate.exists() else "write", note


def _recipe_changes(made: Any, asked: dict[str, Any]) -> str:
    """The settings in which the recipe an output was ``made`` with differs from the one ``asked`` now, in words."""
    if not isinstance(made, dict):
        return "settings this log does not record"
    changes = []
    for key in sorted(set(made) | set(asked)):
        before, now = made.get(key), asked.get(key)
        if before == now:
            continue
        if key == "networks":
            changes.append("the model's network files")
        elif isinstance(before, dict) and isinstance(now, dict):
            changes += [
                f"{key} {name}={before.get(name)!r}, now {now.get(name)!r}"
                for name in sorted(set(before) | set(now))
                if before.get(name) != now.get(name)
            ]
        else:
            changes.append(f"{key} {before!r}, now {now!r}")
    return "; ".join(changes)


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise InputError(
            f"cannot write to the output folder {folder}: {exc.strerror or exc}; choose a folder you "
            "can write to (--out)"
        ) from None


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
    preference: Preference | None = None


def _run_job(job: _Job, model: Model | None = None) -> tuple[FileResult, bytes | None]:
    """Open, approximate and encode one photo; errors a user can fix become a failed result."""
    from fip.pipeline import render

    try:
        data, result = render(
            model if model is not None else _worker_model(job.card),
            job.source,
            job.params,
            job.request,
            operator=job.operator,
            device=job.device,
            tile=job.tile,
            max_megapixels=job.max_megapixels,
            preference=job.preference,
            format=job.output.format,
            quality=job.output.quality,
        )
    except FipError as exc:
        return FileResult(job.source, None, "failed", error=str(exc)), None
    except torch.cuda.OutOfMemoryError:
        return FileResult(
            job.source, None, "failed", error="out of GPU memory; pass --tile 512 (or smaller), or --device cpu"
        ), None
    except MemoryError:
        return FileResult(
            job.source, None, "failed", error="out of memory; pass --tile 512 (or smaller) or --max-megapixels"
        ), None
    except Exception as exc:  # a decoder's or operator's bug must not stop the other photos
        first = (str(exc).strip().splitlines() or [""])[0]
        return FileResult(job.source, None, "failed", error=f"{type(exc).__name__}: {first}"), None
    notes = [result.note] if result.note else []
    return FileResult(
        job.source, None, "written", result.seconds, result.image.shape[:2], result.plan, notes=notes
    ), data


_worker_models: dict[tuple[str, str], Model] = {}


def _worker_model(card: ModelCard) -> Model:
    """The model of ``card``, opened once per worker process."""
    key = (card.name, str(card.root))
    if key not in _worker_models:
        _worker_models[key] = Model(card)
    return _worker_models[key]


@contextmanager
def _executor(workers: int, scheduler: str | None, jobs: int) -> Iterator[cf.Executor | None]:
    """:func:`fip.workers.executor` for ``jobs`` jobs; local workers (at most :func:`fip.workers.local_workers`)
    share the cores and the memory between them."""
    from fip.runtime.devices import MEMORY_LIMIT_ENV, available_memory

    threads, memory = None, None
    if workers > 1 and not scheduler:  # only local worker processes share this machine
        workers = local_workers(workers, jobs)
        threads = max(1, (os.cpu_count() or 1) // workers)
        memory = {MEMORY_LIMIT_ENV: str(available_memory(torch.device("cpu")) // workers)}
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
    preference: Preference | None = None,
) -> Iterator[FileResult]:
    """Approximate the operator on every input of ``batch``, yielding each result as it is written.

    Args:
        model: the model (any name :func:`fip.pipeline.resolve` takes, opened).
        batch: from :func:`plan_batch`.
        request: ``auto`` or an approximator's name.
        preference: what ``auto`` trades (default ``balanced``).
        workers: local processes (each opens the model once and takes its share of the cores and memory);
            1 runs in this process. At most one per input, per CPU core and per 300 MB of available memory start
            (:func:`fip.workers.local_workers` warns when the cores or memory cap them).
        scheduler: a Dask scheduler's address (``tcp://host:8786``); its workers must see the input files and the
            model's folder. Results come back to this process, which writes them.
    """
    jobs: list[tuple[BatchItem, _Job]] = []
    parallel = workers > 1 or bool(scheduler)
    in_memory = model.card.root is None and any(entry.kind != "paper" for entry in model.card.networks.values())
    if parallel and in_memory:
        raise InputError(
            f"{model.name} has no model folder that workers can open (a network file or a checkpoint); "
            "run it with one worker, or make a model folder with fip build"
        )
    for item in batch.items:
        if item.error is not None:
            yield FileResult(item.source, None, "failed", error=item.error)
        elif item.action == "keep":
            yield FileResult(item.source, item.output, "kept")
        else:
            jobs.append(
                (
                    item,
                    _Job(
                        item.source,
                        model.card,
                        request,
                        operator,
                        params,
                        device,
                        max_megapixels,
                        tile,
                        batch.output,
                        preference,
                    ),
                )
            )
    with _executor(workers, scheduler, len(jobs)) as pool:
        if pool is None:
            done = ((item, _run_job(job, model)) for item, job in jobs)
        else:
            futures = {pool.submit(_run_job, job): item for item, job in jobs}
            done = ((futures[f], _outcome(f, futures[f])) for f in cf.as_completed(futures))
        for item, (result, data) in done:
            yield _write(batch, item, result, data)


def _outcome(future: cf.Future, item: BatchItem) -> tuple[FileResult, bytes | None]:
    """A worker's result, or a failed one when the worker itself died (killed, out of memory, ...)."""
    try:
        return future.result()
    except cf.CancelledError:
        raise KeyboardInterrupt from None  # the pool was shut down under us
    except Exception as exc:  # BrokenProcessPool, a Dask worker lost, ...
        return FileResult(item.source, None, "failed", error=f"its worker failed: {type(exc).__name__}: {exc}"), None


def _write(batch: Batch, item: BatchItem, result: FileResult, data: bytes | None) -> FileResult:
    """Write a result: over its own earlier output (``replace``), or as a new file that nothing made meanwhile
    (another run writing into the same folder gets the next free name instead of being overwritten)."""
    if data is None:
        return result
    output = item.output
    try:
        if item.action == "replace":
            atomic_write_bytes(output, data)
        else:
            output = _write_new(output, data)
    except OSError as exc:
        result.status, result.error = "failed", f"could not write {item.output}: {exc.strerror or exc}"
        return result
    result.output = output
    if output != item.output:
        result.notes.insert(0, f"{item.output.name} appeared meanwhile: wrote {output.name}")
    elif item.note:
        result.notes.insert(0, item.note)
    if batch.log is not None:
        try:
            batch.log.record(output, item.source, batch.recipe, data)
        except OSError as exc:  # the output is written; only a rerun's knowledge of it is lost
            result.notes.append(f"could not record it in {batch.log.path.name}: {exc.strerror or exc}")
    return result


def _write_new(path: Path, data: bytes) -> Path:
    """Write ``data`` atomically to ``path`` or, if a file of that name exists by then, to ``<stem>-N<suffix>``."""
    staged = atomic_write_bytes(path.with_name(f".{path.name}.{os.getpid()}.new"), data)
    try:
        return next(candidate for candidate in _numbered(path) if _linked(staged, candidate))
    finally:
        staged.unlink(missing_ok=True)


def _linked(staged: Path, path: Path) -> bool:
    """Give ``staged`` the name ``path`` too, unless a file has that name (a link never replaces one)."""
    try:
        os.link(staged, path)
    except FileExistsError:
        return False
    return True


def summary(results: Sequence[FileResult], seconds: float, total: int | None = None) -> str:
    """One line: how many inputs were written, kept, failed (and, of ``total``, not run), and the time."""
    total = len(results) if total is None else total
    counts = {status: sum(r.status == status for r in results) for status in ("written", "kept", "failed")}
    parts = [f"{counts['written']} written"]
    if counts["kept"]:
        parts.append(f"{counts['kept']} kept (made before from the same input and settings)")
    if counts["failed"]:
        parts.append(f"{counts['failed']} failed")
    if total > len(results):
        parts.append(f"{total - len(results)} not run")
    return f"{total} input{'s' * (total != 1)}: " + ", ".join(parts) + f" in {seconds:.1f} s"


__all__ = [
    "OUTPUT_LOG",
    "Batch",
    "BatchItem",
    "FileResult",
    "OutputLog",
    "OutputOptions",
    "expand_inputs",
    "output_paths",
    "plan_batch",
    "run_batch",
    "summary",
]
