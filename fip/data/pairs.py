"""Generating (input, target) pairs for any registered operator from any photo source.

Layout of a pair set folder::

    manifest.json          operator, parameters, fip version, resolution, source, one entry per pair
    input/<name>.png       the sRGB network input, 16-bit PNG
    target/<name>.png      the operator's output, 16-bit PNG
    records/<name>.json    written last for each pair: its cache key and the byte size and SHA-256 of its two
                           PNG files; a pair without it is not done

A pair's cache key hashes the recipe (operator name and version, parameters, fip version, resolution policy) and
the source file's SHA-256, so a stale target is never reused: change a parameter, upgrade fip, or edit a photo,
and the affected pairs are regenerated. A pair is reused only if both its files still have their recorded size
and SHA-256; a missing, truncated, emptied or overwritten file makes it regenerate, and the report says why.
Every file is written atomically; an interrupted run (Ctrl-C, or a kill) resumes where it stopped. Unreadable
photos are skipped, named in the result and the manifest, and nothing else is lost.

Work runs in local processes by default (:mod:`fip.workers`), or on a Dask distributed cluster given its
scheduler address; both through the :class:`concurrent.futures.Executor` interface, so the code path is the same.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fip.cache import cache_dir, check_cached_file, file_stamp
from fip.data.sources import PhotoRef, PhotoSkipped, PhotoSource, Resolution
from fip.errors import FipError, SourceError, UnreadablePhotoError
from fip.files import atomic_write_bytes, atomic_write_json, sha256_file, sha256_json
from fip.registry import get_operator
from fip.workers import executor

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
PAIR_FILES = ("input", "target")
# The last 8 bytes of every complete PNG: the IEND chunk's type and CRC.
PNG_END = b"IEND\xaeB`\x82"


@dataclass(frozen=True)
class PairJob:
    """One unit of work, sent to a worker process or machine (so it holds only picklable values)."""

    operator: str
    params: dict[str, Any]
    photo: PhotoRef
    resolution: Resolution
    key: str
    exposure: float = 0.0

    @property
    def name(self) -> str:
        return pair_name(self.photo.name, self.exposure)


@dataclass(frozen=True)
class PairResult:
    """What a worker sends back: encoded PNGs, or why the photo was skipped or failed."""

    name: str
    key: str
    input_png: bytes | None = None
    target_png: bytes | None = None
    size: tuple[int, int] | None = None
    seconds: float = 0.0
    skipped: str | None = None
    error: str | None = None


@dataclass
class PairReport:
    """The outcome of :func:`generate_pairs`.

    ``stale``: pairs made with another recipe or from an older photo, regenerated. ``damaged``: pairs made earlier
    whose files no longer match their record, each with why (``"target truncated: 1000 of 913455 bytes"``),
    regenerated too. ``checked``: reused pairs recorded before fip kept digests, decoded whole and given them.
    """

    out_dir: Path
    operator: str
    params: dict[str, Any]
    made: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    damaged: dict[str, str] = field(default_factory=dict)
    checked: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def pairs(self) -> int:
        return len(self.made) + len(self.reused)

    def summary(self) -> str:
        remade = {name: why for name, why in sorted(self.damaged.items()) if name in self.made}
        lines = [
            f"{self.operator} {json.dumps(self.params, sort_keys=True)} -> {self.out_dir}",
            f"  {self.pairs} pairs ({len(self.made)} made, {len(self.reused)} reused"
            + (f", {len(self.stale)} stale regenerated" if self.stale else "")
            + (f", {len(remade)} damaged regenerated" if remade else "")
            + f") in {self.seconds:.1f} s",
        ]
        if remade:
            lines.append(
                f"  {len(remade)} damaged pair{'s' * (len(remade) != 1)} regenerated: "
                + ", ".join(f"{name} ({why})" for name, why in remade.items())
            )
        if self.checked:
            lines.append(
                f"  {len(self.checked)} pairs made before fip recorded digests: decoded whole, digests recorded"
            )
        for name, why in sorted(self.skipped.items()):
            lines.append(f"  skipped {name}: {why}")
        for name, why in sorted(self.failed.items()):
            lines.append(f"  FAILED {name}: {why}")
        return "\n".join(lines)


def fip_version() -> str:
    from fip import __version__

    return __version__


def pair_set_name(operator: str, params: Mapping[str, Any] | None = None) -> str:
    """``operator``, or ``operator@<hash>`` when ``params`` differ from its defaults (so sets never collide)."""
    spec = get_operator(operator)
    resolved = spec.resolve_params(params)
    if resolved == spec.resolve_params():
        return operator
    digest = sha256_json(resolved)[:10]
    return f"{operator}@{digest}"


def check_exposures(exposures: Sequence[float]) -> tuple[float, ...]:
    """Exposures as a tuple of distinct stops in [-8, 8] (``0``: the photo as it is); raises on anything else."""
    stops = tuple(float(e) for e in exposures)
    if not stops or len(set(stops)) != len(stops) or not all(math.isfinite(e) and -8 <= e <= 8 for e in stops):
        raise SourceError(
            f"exposures {list(exposures)!r} must be distinct stops between -8 and 8, e.g. [0, -1, -2] "
            "(0: the photo as it is, -1: one stop darker)"
        )
    return stops


def pair_name(photo: str, exposure: float = 0.0) -> str:
    """A pair's name: the photo's, with ``@<stops>ev`` for another exposure of it (``Dune@-1ev``)."""
    return photo if exposure == 0 else f"{photo}@{exposure:+g}ev"


def exposures_label(exposures: Sequence[float]) -> str:
    """Folder suffix of a pair set with other exposures (``""`` for the photos as they are)."""
    stops = check_exposures(exposures)
    return "" if stops == (0.0,) else "-ev" + "_".join(f"{e:+g}" for e in stops)


def pair_set_dir(
    root: str | os.PathLike[str],
    operator: str,
    resolution: Resolution,
    params: Mapping[str, Any] | None = None,
    exposures: Sequence[float] = (0.0,),
) -> Path:
    """``root/<operator or operator@hash>/<resolution><exposures>``: where a pair set goes under ``root``."""
    return Path(root) / pair_set_name(operator, params) / (resolution.label() + exposures_label(exposures))


def default_out_dir(
    source: PhotoSource,
    operator: str,
    resolution: Resolution,
    params: Mapping[str, Any] | None = None,
    exposures: Sequence[float] = (0.0,),
) -> Path:
    return pair_set_dir(cache_dir() / "pairs" / source.name, operator, resolution, params, exposures)


def make_pair(job: PairJob) -> PairResult:
    """Load one photo at its working size, run the operator on the right view, encode both images.

    Runs in a worker; a bad photo or a failing operator becomes a result with a message, never an exception.
    """
    from fip.imaging import encode_png
    from fip.raw import load_photo

    start = time.perf_counter()
    try:
        spec = get_operator(job.operator)
        photo = load_photo(job.photo.path, lambda h, w: job.resolution.size_for(job.photo.name, h, w))
        photo = photo.exposed(job.exposure)
        target = spec.apply(photo.view(spec.input), job.params)
        return PairResult(
            name=job.name,
            key=job.key,
            input_png=encode_png(photo.srgb),
            target_png=encode_png(target),
            size=photo.size,
            seconds=time.perf_counter() - start,
        )
    except PhotoSkipped as exc:
        return PairResult(job.name, job.key, skipped=str(exc))
    except UnreadablePhotoError as exc:
        return PairResult(job.name, job.key, error=str(exc))
    except Exception as exc:  # an operator bug must not lose the other photos
        return PairResult(job.name, job.key, error=f"{job.operator} failed: {type(exc).__name__}: {exc}")


class _SourceHashes:
    """SHA-256 of source files, remembered by (path, size, mtime) so a rerun does not reread 25 MB raw files."""

    def __init__(self, known: Mapping[str, Any]):
        self._known = dict(known)

    def __call__(self, path: Path) -> str:
        stat = path.stat()
        stamp = [stat.st_size, stat.st_mtime_ns]
        entry = self._known.get(str(path))
        if entry and entry.get("stamp") == stamp:
            return entry["sha256"]
        digest = sha256_file(path)
        self._known[str(path)] = {"stamp": stamp, "sha256": digest}
        return digest

    def to_json(self) -> dict[str, Any]:
        return self._known


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _check_undigested(path: Path, size: Sequence[int]) -> tuple[str | None, dict]:
    """Check a pair file recorded without a digest: it must decode to an image of ``size`` (height, width).

    Returns why it is damaged (``None`` if it is not) and its manifest entry ``{"bytes", "sha256", "stamp"}``.
    """
    from fip.imaging import read_image_file

    try:
        stat = path.stat()
        shape = read_image_file(path).shape[:2]
    except FileNotFoundError:
        return "missing", {}
    except UnreadablePhotoError:
        return ("empty" if stat.st_size == 0 else "cannot be decoded"), {}
    if list(shape) != list(size):
        return f"is {shape[0]}x{shape[1]}, not {size[0]}x{size[1]}", {}
    return None, {"bytes": stat.st_size, "sha256": sha256_file(path), "stamp": file_stamp(stat)}


def _check_pair(
    out: Path, name: str, record: dict[str, Any], known: Mapping[str, Any] | None
) -> tuple[str | None, dict]:
    """Check a done pair's files against its record.

    A record from before fip recorded digests is checked by decoding both files (a pair set made earlier must not
    be regenerated whole, which can take hours) and, if they are whole, is given its digests.

    Args:
        out: the pair set folder.
        name: the pair's name.
        record: its ``records/<name>.json``.
        known: its manifest entry's ``"files"`` from the last run, if any.

    Returns:
        Why the pair is damaged (``"target truncated: 1000 of 913455 bytes"``) or ``None``, and the manifest
        entries of its files.
    """
    files, problems = {}, []
    for kind in PAIR_FILES:
        path = out / kind / f"{name}.png"
        if "files" in record:
            why, files[kind] = check_cached_file(path, record["files"][kind], (known or {}).get(kind), PNG_END)
        else:
            why, files[kind] = _check_undigested(path, record["size"])
        if why:
            problems.append(f"{kind} {why}")
    if problems:
        return "; ".join(problems), {}
    if "files" not in record:
        atomic_write_json(out / "records" / f"{name}.json", {**record, "files": _digests(files)})
    return None, files


def _digests(files: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """What a pair's record keeps of its files' entries: byte size and SHA-256."""
    return {kind: {"bytes": entry["bytes"], "sha256": entry["sha256"]} for kind, entry in files.items()}


def _write_pair(out: Path, result: PairResult) -> dict[str, dict[str, Any]]:
    """Write a made pair's files, then its record (which marks it done); return the files' manifest entries."""
    assert result.input_png is not None and result.target_png is not None and result.size is not None
    files = {}
    for kind, data in zip(PAIR_FILES, (result.input_png, result.target_png)):
        path = atomic_write_bytes(out / kind / f"{result.name}.png", data)
        files[kind] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "stamp": file_stamp(path.stat())}
    record = {
        "key": result.key,
        "size": list(result.size),
        "seconds": round(result.seconds, 3),
        "files": _digests(files),
    }
    atomic_write_json(out / "records" / f"{result.name}.json", record)  # last: marks the pair done
    return files


def generate_pairs(
    operator: str,
    source: PhotoSource,
    *,
    params: Mapping[str, Any] | None = None,
    split: str = "all",
    resolution: Resolution | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    exposures: Sequence[float] = (0.0,),
) -> PairReport:
    """Generate (input, target) pairs for ``operator`` from the photos of ``source``.

    Args:
        operator: a registered operator name (``fip operators`` lists them).
        source: photos, from :func:`fip.data.sources.open_source`.
        params: operator parameters; missing ones take their defaults; names and ranges are checked.
        split: ``"train"``, ``"test"`` or ``"all"``.
        resolution: working size policy; the paper's 480p by default.
        out_dir: the pair set folder; by default under fip's cache, by source, operator and resolution.
        workers: local processes (default: all cores); 1 runs in this process.
        scheduler: address of a Dask distributed scheduler (``tcp://host:8786``); overrides ``workers``.
        progress: show a progress bar.
        exposures: make each photo's pair at these exposures, in stops (:meth:`fip.raw.Photo.exposed`; ``0``:
            the photo as it is, named as the photo; ``-1``: one stop darker, named ``<photo>@-1ev``). The
            operator runs on each exposure, so every pair is exact; a network trained on several learns photos
            exposed unlike the training set's (the FiveK photos are darker than most).

    Returns:
        A :class:`PairReport` naming what was made, reused, found damaged, skipped and failed.
    """
    from tqdm.auto import tqdm

    spec = get_operator(operator)
    resolved = spec.resolve_params(params)
    exposures = check_exposures(exposures)
    resolution = resolution or Resolution()
    photos = source.select(split)
    out = Path(out_dir) if out_dir is not None else default_out_dir(source, operator, resolution, resolved, exposures)
    out.mkdir(parents=True, exist_ok=True)

    recipe = {
        "operator": spec.name,
        "operator_version": spec.version,
        "operator_source": spec.source,
        "input": spec.input.value,
        "params": resolved,
        "fip_version": fip_version(),
        "resolution": resolution.to_json(),
    }
    recipe_key = sha256_json({k: v for k, v in recipe.items() if k != "operator_source"})
    old_manifest = _read_json(out / MANIFEST) or {}
    hashes = _SourceHashes(old_manifest.get("source_hashes", {}))
    if old_manifest and old_manifest.get("recipe_key") != recipe_key:
        changed = sorted(k for k in recipe if k != "operator_source" and old_manifest.get(k) != recipe[k])
        logger.warning(
            "%s holds pairs made with a different recipe (%s changed); they are stale and will be regenerated",
            out,
            ", ".join(changed) or "recipe",
        )

    report = PairReport(out_dir=out, operator=spec.name, params=resolved)
    entries: dict[str, dict[str, Any]] = {}
    if old_manifest.get("recipe_key") == recipe_key:  # pairs of other splits made earlier with this recipe
        entries = dict(old_manifest.get("pairs", {}))
    known_files = {name: entry.get("files") for name, entry in old_manifest.get("pairs", {}).items()}
    start = time.perf_counter()
    jobs: list[PairJob] = []
    pending: dict[str, dict[str, Any]] = {}
    for photo, exposure in ((photo, exposure) for photo in photos for exposure in exposures):
        name = pair_name(photo.name, exposure)
        source_hash = hashes(photo.path)
        # The photo as it is keys as it always has, so existing pair sets stay valid.
        stops = {"exposure": exposure} if exposure else {}
        key = sha256_json({"recipe": recipe_key, "source_sha256": source_hash, **stops})
        entry = {"split": photo.split, "source": str(photo.path), "source_sha256": source_hash, "key": key, **stops}
        record = _read_json(out / "records" / f"{name}.json")
        if record and record.get("key") == key:
            damage, files = _check_pair(out, name, record, known_files.get(name))
            if damage is None:
                entries[name] = {**entry, "size": record["size"], "files": files}
                report.reused.append(name)
                if "files" not in record:
                    report.checked.append(name)
                continue
            report.damaged[name] = damage
        elif record:
            report.stale.append(name)
        entries.pop(name, None)
        pending[name] = entry
        jobs.append(PairJob(spec.name, resolved, photo, resolution, key, exposure))

    if report.damaged:
        logger.warning(
            "%s: %d damaged pair(s) will be regenerated: %s",
            out,
            len(report.damaged),
            ", ".join(f"{name} ({why})" for name, why in sorted(report.damaged.items())),
        )

    workers = workers if workers is not None else (os.cpu_count() or 1)
    workers = max(1, min(workers, len(jobs)))
    unit = "photo" if exposures == (0.0,) else "pair"
    bar = tqdm(total=len(photos) * len(exposures), initial=len(report.reused), desc=spec.name, unit=unit,
               disable=not progress)
    try:
        with bar, executor(workers, scheduler if jobs else None) as pool:
            if pool is None:
                results: Iterator[PairResult] = map(make_pair, jobs)
            else:
                futures = [pool.submit(make_pair, job) for job in jobs]
                results = (future.result() for future in cf.as_completed(futures))
            for result in results:
                if result.skipped:
                    report.skipped[result.name] = result.skipped
                elif result.error:
                    report.failed[result.name] = result.error
                else:
                    files = _write_pair(out, result)
                    entries[result.name] = {**pending[result.name], "size": list(result.size), "files": files}
                    report.made.append(result.name)
                bar.update(1)
                if result.error:
                    bar.write(f"fip data: skipping {result.name}: {result.error}")
    finally:  # after a Ctrl-C too: the manifest lists the pairs done so far
        report.seconds = time.perf_counter() - start
        atomic_write_json(
            out / MANIFEST,
            {
                **recipe,
                "recipe_key": recipe_key,
                "source": source.description,
                "pairs": dict(sorted(entries.items())),
                "skipped": report.skipped,
                "failed": report.failed,
                "source_hashes": hashes.to_json(),
            },
        )
    if not report.pairs and (report.failed or report.skipped):
        raise FipError(f"no pairs could be made for {spec.name} from {source.description}:\n{report.summary()}")
    return report


def read_manifest(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest of a pair set folder; raises if the folder holds none."""
    manifest = _read_json(Path(out_dir) / MANIFEST)
    if manifest is None:
        raise FipError(f"{out_dir} holds no {MANIFEST}: generate pairs there first with `fip data`")
    return manifest
