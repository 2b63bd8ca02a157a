"""One GPU session inside a hard time budget: every shipped approximator timed on CUDA at 1920x1080 and 3840x2160
through the engine users run, the CUDA tests, and a short ``fip build`` on the training set; results into ``OUT``.

Usage (``benchmarks/gpu_session.sh`` runs it after setting up the environment; see docs/speed.md, "On a GPU"):
    python benchmarks/gpu_session.py --out OUT --deadline EPOCH_SECONDS [--train smooth.l0] [--dry-run]

The steps, in order of worth, each cut short so that the whole ends by ``--deadline``:

1. **networks**: every approximator that runs a network, of every shipped model (``fip/models/zoo``), timed on
   CUDA with :func:`fip.bench.run_bench` (as ``fip bench`` and ``benchmarks/measure_cards.py`` time them: one warm-up,
   the median of ``--runs``), without the reference (``reference_runs=0``), at 1080p and then at 4K; and the bilateral
   grid (``grid``) of an untrained network of ``train/configs/overlays/grid.yaml``'s shape (its time does not depend
   on its weights). The GPU is idle.
2. **train** (in the background, on the GPU): ``fip build OPERATOR`` on ``.gpu-carry/photos`` with its split file,
   ``--trainer.accelerator gpu --data.in_memory true``, warm-started as ``fip build`` does, for the minutes left;
   stopped once its training step is recorded (the validation and measuring steps finish on any machine later:
   ``benchmarks/gpu_apply.py --unpack`` prints the command), its folder packed into ``OUT/models.tar.gz``.
3. **tests**: the tests that run only where CUDA is (``skipif(not torch.cuda.is_available())``), while step 2 runs.
4. **references**: the approximators that run the reference operator (on the CPU, upsampled on the GPU), at 1080p,
   then at 4K, then the reference itself at 1080p, each operator only when its estimated time (its CPU card's seconds
   scaled by what this machine has shown so far) still fits, while step 2 runs (their rows say so).

``OUT/timings.json`` is rewritten after every step, so a session cut off still returns what it measured.
``--dry-run`` runs the same steps on the CPU at tiny sizes with a few photos, to check the logic anywhere.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

SIZES = {"1080p": (1080, 1920), "4K": (2160, 3840)}
DRY_SIZES = {"1080p": (72, 128), "4K": (144, 256)}  # --dry-run: the same steps on frames a CPU runs in moments
REFERENCE_ROWS = ("reference-lowres", "reference-halfres")
PACK_SECONDS = 30  # kept free before the deadline: stopping training, packing, the last write
TRAIN_START_SECONDS = 45  # a build's start before training: imports, pair generation on the machine's cores
GRID_SHAPE = {"grid_size": 32, "histogram_bins": 16}  # train/configs/overlays/grid.yaml


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Session:
    """What the session found so far, written to ``OUT/timings.json`` after each step."""

    def __init__(self, out: Path, deadline: float, dry_run: bool):
        self.out, self.deadline, self.dry_run = out, deadline, dry_run
        self.began = time.time()
        self.data: dict = {
            "format": 1,
            "dry_run": dry_run,
            "date": datetime.date.today().isoformat(),
            "sizes": DRY_SIZES if dry_run else SIZES,
            "steps": {},
            "operators": {},
            "grid": {},
            "skipped": [],
            "tests": None,
            "training": {},
        }

    def left(self) -> float:
        return self.deadline - time.time()

    def row(self, operator: str, size: str, name: str, found: dict) -> None:
        self.data["operators"].setdefault(operator, {}).setdefault("rows", {}).setdefault(size, {})[name] = found

    def skip(self, operator: str, size: str, rows: list[str] | str, why: str) -> None:
        self.data["skipped"].append({"operator": operator, "size": size, "rows": rows, "why": why})
        log(f"skipped {operator} {size} {rows}: {why}")

    def step(self, name: str, began: float, **found) -> None:
        self.data["steps"][name] = {"seconds": round(time.time() - began, 1), **found}
        self.write()

    def write(self) -> None:
        temporary = self.out / ".timings.json"
        temporary.write_text(json.dumps(self.data, indent=1, default=str) + "\n")
        temporary.replace(self.out / "timings.json")


def bench_rows(bench, runs: int, concurrent: str | None = None) -> dict[str, dict]:
    """The rows of a :class:`fip.bench.Bench` as the JSON keeps them: what ran, its seconds and how they were taken."""
    found = {}
    for row in bench.rows:
        entry = {
            k: v
            for k, v in asdict(row).items()
            if k in ("seconds", "peak_mb", "psnr", "approximator", "precision", "working_size", "note")
        }
        entry["runs"] = runs
        if concurrent:
            entry["while"] = concurrent
        found[row.name] = entry
    return found


def card_summary(model) -> dict:
    """What the timings belong to: each approximator's definition and each network's architecture and digest, so
    that ``gpu_apply.py`` merges a timing only into the card it was measured for."""
    card = model.card
    definitions = {}
    for name, approximator in card.approximators.items():
        definition = approximator.to_json()
        definition.pop("quality", None), definition.pop("seconds", None), definition.pop("description", None)
        definitions[name] = definition
    networks = {
        key: {"architecture": entry.architecture, "sha256": entry.sha256, "kind": entry.kind}
        for key, entry in card.networks.items()
    }
    return {"model": card.name, "approximators": definitions, "networks": networks}


def cpu_seconds(model, name: str) -> float | None:
    """``name``'s seconds at 1080p on the CPU classes in its card (the reference's for ``reference``)."""
    if name == "reference":
        timings = model.card.reference_seconds
    else:
        timings = model.card.approximators[name].seconds
    found = [t.seconds for k, t in timings.items() if k.startswith("cpu")]
    return max(found) if found else None


# -- step 1: the networks, on an idle GPU ------------------------------------------------------------------------


def time_networks(session: Session, operators: list[str], photo: Path, device: str, runs: int, stop_at: float) -> None:
    from fip.bench import run_bench
    from fip.models.catalogue import model_for_operator

    sizes = session.data["sizes"]
    for size_name, size in sizes.items():
        if size_name == "4K":  # the grid at both sizes before the other networks' 4K rows: no card holds it
            for grid_size in sizes:
                _time_grid(session, grid_size, sizes[grid_size], photo, device, runs, stop_at)
        for operator in operators:
            model = model_for_operator(operator)
            names = [n for n, a in model.card.approximators.items() if a.network is not None]
            if not names:  # run_bench takes no rows as all of them
                continue
            if time.time() > stop_at:
                session.skip(operator, size_name, names, "the networks' share of the session was spent")
                continue
            began = time.time()
            try:
                bench = run_bench(operator, size, runs, photo, tuple(names), 0, device, model=model, bounds=False)
            except Exception as exc:  # one model's failure must not cost the others their rows
                session.skip(operator, size_name, names, f"{type(exc).__name__}: {exc}")
                continue
            for name, found in bench_rows(bench, runs).items():
                session.row(operator, size_name, name, found)
            session.data["machine"] = bench.machine
            session.data["device_class"] = bench.device_class
            timed = ", ".join(f"{r.name} {r.seconds:.4f}" for r in bench.rows if r.seconds)
            log(f"{operator} {size_name}: {timed} ({time.time() - began:.1f} s)")
        session.write()


def _time_grid(
    session: Session, size_name: str, size: tuple[int, int], photo: Path, device: str, runs: int, stop_at: float
) -> None:
    """The ``grid`` row: an untrained bilateral-grid network of the overlay's shape through the engine."""
    from fip.bench import run_bench
    from fip.models.catalogue import Model
    from fip.models.grid import BilateralGridNet

    if time.time() > stop_at:
        session.skip("grid", size_name, ["grid"], "the networks' share of the session was spent")
        return
    model = Model.of_network(BilateralGridNet(**GRID_SHAPE).eval(), operator="smooth.l0")
    try:
        bench = run_bench("smooth.l0", size, runs, photo, ("grid",), 0, device, model=model, bounds=False)
    except Exception as exc:
        session.skip("grid", size_name, ["grid"], f"{type(exc).__name__}: {exc}")
        return
    session.data["grid"][size_name] = bench_rows(bench, runs)["grid"]
    log(f"grid {size_name}: {session.data['grid'][size_name]['seconds']:.4f} s")


# -- step 2: training in the background -------------------------------------------------------------------------


class Training:
    """``fip build`` of each operator in turn, in a process of its own, stopped once its training step is recorded
    (or at ``stop_at``); a thread watches it so that the steps in the foreground go on meanwhile."""

    def __init__(
        self,
        session: Session,
        operators: list[str],
        photos: Path,
        split: Path,
        train_args: list[str],
        stop_at: float,
        work: Path,
    ):
        self.session, self.operators, self.photos, self.split = session, operators, photos, split
        self.train_args, self.stop_at, self.work = train_args, stop_at, work
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.logs: list[Path] = []
        self.current: str | None = None

    def start(self) -> None:
        self.thread.start()

    def busy(self) -> str | None:
        """What trains now, in words for the rows timed meanwhile (``None``: nothing)."""
        return f"while fip build {self.current} trained on the GPU" if self.current else None

    def join(self) -> None:
        self.thread.join()

    def _run(self) -> None:
        for index, operator in enumerate(self.operators):
            share = (self.stop_at - time.time()) / (len(self.operators) - index)
            minutes = (share - TRAIN_START_SECONDS) / 60
            found = {"budget_minutes": None, "stopped": None, "steps": []}
            self.session.data["training"][operator] = found
            if minutes < (0.1 if self.session.dry_run else 1.0):
                found["stopped"] = f"no time left to train ({share:.0f} s)"
                log(f"train {operator}: skipped, {found['stopped']}")
                continue
            from fip.build import TRAINING_SHARE

            budget = minutes / TRAINING_SHARE  # fip build trains for this share of its budget
            found["budget_minutes"] = round(budget, 2)
            folder = self.work / operator
            command = [
                sys.executable,
                str(Path(__file__)),
                "--build",
                operator,
                "--out",
                str(folder),
                "--photos",
                str(self.photos),
                "--split",
                str(self.split),
                "--budget",
                f"{budget:.3f}",
                "--train-args",
                json.dumps(self.train_args),
            ]
            folder.mkdir(parents=True, exist_ok=True)
            logfile = folder / "session-train.log"  # packed with the folder
            self.logs.append(logfile)
            log(f"train {operator}: fip build, {minutes:.1f} min of training (budget {budget:.1f} min)")
            began = time.time()
            self.current = operator
            with open(logfile, "w") as handle:
                process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
                end = min(self.stop_at, time.time() + share)
                while process.poll() is None:
                    if "train" in _steps(folder):
                        found["stopped"] = "its training step was recorded"
                        break
                    if time.time() > end:
                        found["stopped"] = "time: training resumes from its last checkpoint"
                        break
                    time.sleep(1.0)
                else:
                    found["stopped"] = f"exited with {process.returncode}"
                _stop(process)
            self.current = None
            found["seconds"] = round(time.time() - began, 1)
            found["steps"] = sorted(_steps(folder))
            found.update(_training_summary(folder))
            log(
                f"train {operator}: {found['stopped']}; steps {found['steps']}; {found.get('epochs')} epochs, "
                f"best validation PSNR {found.get('best_val_psnr')}"
            )
            self.session.write()


def _steps(folder: Path) -> dict:
    try:
        return json.loads((folder / "build.json").read_text()).get("steps", {})
    except (OSError, ValueError):
        return {}


def _stop(process: subprocess.Popen) -> None:
    """End the build and everything it started (Lightning's and pair generation's processes)."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _training_summary(folder: Path) -> dict:
    """Epochs and the best validation PSNR from the build's training logs (Lightning's CSV)."""
    epochs, best = None, None
    for log_file in folder.glob("training/logs/version_*/metrics.csv"):
        header, *lines = log_file.read_text().splitlines()
        for line in lines:
            values = dict(zip(header.split(","), line.split(",")))
            if values.get("epoch"):
                epochs = max(epochs or 0, int(float(values["epoch"])) + 1)
            if values.get("val_psnr"):
                best = max(best or 0.0, float(values["val_psnr"]))
    return {"epochs": epochs, "best_val_psnr": best}


def build_one(args: argparse.Namespace) -> int:
    """``--build``: one ``fip build`` (in the process the session starts for it)."""
    from fip.build import BuildRequest, build

    request = BuildRequest(
        args.build,
        args.out,
        source=str(args.photos),
        budget_minutes=args.budget,
        extras="none",
        train_args=tuple(json.loads(args.train_args)),
        split_file=args.split,
        device=args.device,
    )
    build(request, progress=lambda line: print(f"build {args.build}: {line}", flush=True))
    return 0


# -- step 3: the CUDA tests ---------------------------------------------------------------------------------------


def cuda_tests() -> list[str]:
    """The tests that run only where CUDA is: those under a ``skipif(not torch.cuda.is_available()`` mark."""
    found = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            if "skipif(not torch.cuda.is_available()" in line:
                following = next((s for s in lines[index + 1 :] if s.lstrip().startswith("def ")), "")
                if match := re.match(r"\s*def (test_\w+)", following):
                    found.append(f"tests/{path.name}::{match.group(1)}")
    return found


def run_tests(session: Session, seconds: float) -> None:
    began = time.time()
    tests = cuda_tests()
    log(f"tests: {len(tests)} CUDA tests, at most {seconds:.0f} s: {' '.join(tests)}")
    junit = session.out / "tests.xml"
    command = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", f"--junitxml={junit}", *tests]
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=max(seconds, 1))
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        output, code = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or ""), "timeout"
    print(output, flush=True)
    counts = r"\d+ (passed|failed|skipped|errors?|deselected)"
    summary = next((line for line in reversed(output.splitlines()) if re.search(counts, line)), output[-300:])
    session.data["tests"] = {"selected": tests, "exit": code, "summary": summary.strip("= ")}
    session.step("tests", began, exit=code)


# -- step 4: the rows that run the reference ----------------------------------------------------------------------


def time_references(
    session: Session, operators: list[str], photo: Path, device: str, training: Training | None, stop_at: float
) -> None:
    """The reference-running approximators (1080p, then 4K) and the reference (1080p), each operator only when its
    estimate fits before ``stop_at``; runs=1 after the warm-up (they take tenths of a second to seconds)."""
    from fip.bench import run_bench
    from fip.models.catalogue import model_for_operator

    sizes = session.data["sizes"]
    scale = 1.0 if not session.dry_run else (sizes["1080p"][0] / 1080) ** 2  # a CPU card's seconds are at 1080p
    queue = [(size, op, REFERENCE_ROWS, 4.0 if size == "4K" else 1.0) for size in ("1080p", "4K") for op in operators]
    queue += [("1080p", op, ("reference",), 1.0) for op in operators]
    expected_sum, observed_sum = 0.0, 0.0
    for size_name, operator, rows, factor in queue:
        model = model_for_operator(operator)
        rows = tuple(r for r in rows if r == "reference" or r in model.card.approximators)
        if not rows:
            continue
        calls = 2  # the warm-up and one timed run
        estimate = sum((cpu_seconds(model, r) or 1.0) for r in rows) * factor * scale * calls
        speed = observed_sum / expected_sum if expected_sum > 0.5 else 1.0
        if time.time() + estimate * speed > stop_at:
            session.skip(
                operator,
                size_name,
                list(rows),
                f"estimated {estimate * speed:.0f} s, {max(stop_at - time.time(), 0):.0f} s left",
            )
            continue
        began = time.time()
        concurrent = training.busy() if training else None
        try:
            if rows == ("reference",):
                bench = run_bench(operator, sizes[size_name], 1, photo, rows, 1, device, model=model, bounds=False)
            else:
                bench = run_bench(operator, sizes[size_name], 1, photo, rows, 0, device, model=model, bounds=False)
        except Exception as exc:  # e.g. an operator whose packages this machine lacks
            session.skip(operator, size_name, list(rows), f"{type(exc).__name__}: {str(exc)[:300]}")
            continue
        spent = time.time() - began
        concurrent = concurrent or (training.busy() if training else None)
        expected_sum, observed_sum = expected_sum + estimate, observed_sum + spent
        for name, found in bench_rows(bench, 1, concurrent).items():
            session.row(operator, size_name, name, found)
        log(
            f"{operator} {size_name}: "
            + ", ".join(f"{r.name} {r.seconds:.3f}" for r in bench.rows if r.seconds)
            + f" ({spent:.1f} s, estimated {estimate * speed:.1f})"
        )
        session.write()


# -- packing ------------------------------------------------------------------------------------------------------


def pack_models(session: Session, work: Path, limit_bytes: int = 15 * 2**20) -> None:
    """The build folders as ``OUT/models.tar.gz``: everything but the Lightning checkpoints other than each
    training's best and last (the network files and ``build.json`` are what a later run resumes from)."""
    folders = [p for p in sorted(work.iterdir()) if (p / "build.json").is_file()] if work.is_dir() else []
    if not folders:
        return
    target = session.out / "models.tar.gz"
    keep: set[Path] = set()
    for folder in folders:
        build_state = json.loads((folder / "build.json").read_text())
        chosen = build_state.get("steps", {}).get("train", {}).get("checkpoint")
        if chosen:
            keep.add((folder / chosen).resolve())
        last = sorted(folder.rglob("last*.ckpt"), key=os.path.getmtime)
        keep.update(p.resolve() for p in last[-1:])

    def wanted(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        path = (work.parent / info.name).resolve()
        if info.name.endswith(".ckpt") and path not in keep:
            return None
        return info

    with tarfile.open(target, "w:gz") as tar:
        for folder in folders:
            tar.add(folder, arcname=f"{work.name}/{folder.name}", filter=wanted)
    size = target.stat().st_size
    if size > limit_bytes:  # the tool brings back files of at most 16 MiB: keep the networks and the state only
        with tarfile.open(target, "w:gz") as tar:
            for folder in folders:
                tar.add(
                    folder,
                    arcname=f"{work.name}/{folder.name}",
                    filter=lambda i: None if i.name.endswith(".ckpt") else i,
                )
    session.data["models_tar"] = {
        "file": target.name,
        "bytes": target.stat().st_size,
        "folders": [f.name for f in folders],
    }
    log(f"packed {', '.join(f.name for f in folders)} into {target.name} ({target.stat().st_size / 2**20:.1f} MiB)")


def dry_split(split: Path, out: Path) -> Path:
    """A split of a few photos (3 training, 1 validation, 1 test) for ``--dry-run``."""
    found = json.loads(split.read_text())
    small = {
        "train": sorted(found["train"])[:3],
        "validation": sorted(found["validation"])[:1],
        "test": sorted(found["test"])[:1],
    }
    out.write_text(json.dumps(small) + "\n")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="where the results go (the tool's $OUT)")
    parser.add_argument(
        "--deadline", type=float, help="epoch seconds by which everything has ended (default: 8.5 minutes from now)"
    )
    parser.add_argument("--dry-run", action="store_true", help="the same steps on the CPU, tiny sizes, few photos")
    parser.add_argument("--operators", help="comma-separated (default: every operator fip ships a model for)")
    parser.add_argument("--train", default="smooth.l0", help="operators to fip build, comma-separated ('' for none)")
    parser.add_argument(
        "--train-extra", default="", help="more fip train options for the builds, e.g. '--data.batch_size 16'"
    )
    parser.add_argument("--photos", type=Path, default=REPO / ".gpu-carry" / "photos")
    parser.add_argument("--timing-photo", type=Path, default=REPO / ".gpu-carry" / "timing" / "Blinds.jpg")
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/fip-gpu/builds"), help="where the builds are made (emptied first)"
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each network row, after one warm-up")
    parser.add_argument(
        "--skip", default="", help="steps to leave out, comma-separated: networks, train, tests, references"
    )
    # --build: the process a training step starts (internal)
    parser.add_argument("--build", help=argparse.SUPPRESS)
    parser.add_argument("--split", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--train-args", help=argparse.SUPPRESS)
    parser.add_argument("--device", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        return build_one(args)

    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    session = Session(args.out, args.deadline or time.time() + 510, args.dry_run)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    device = "cpu" if args.dry_run else "cuda"
    if not args.dry_run and not torch.cuda.is_available():
        session.data["error"] = "CUDA is not available here"
        session.write()
        log("CUDA is not available here: nothing to time")
        return 1
    if args.dry_run:
        torch.set_num_threads(1)
    from fip.models.catalogue import list_models
    from fip.runtime.devices import describe, device_class, resolve_device

    torch_device = resolve_device(device)
    session.data.update(
        device=str(torch_device),
        device_class=device_class(torch_device),
        machine=describe(torch_device),
        cpu=describe(torch.device("cpu")),
        torch=torch.__version__,
    )
    shipped = sorted(c.operator for c in list_models() if c.name.startswith("fip/"))
    operators = [o.strip() for o in args.operators.split(",")] if args.operators else shipped
    session.data["operators"] = {op: {"card": card_summary(_model(op)), "rows": {}} for op in operators}
    photo = args.timing_photo
    runs = 1 if args.dry_run else args.runs
    session.data["runs"] = runs
    total = session.left()
    log(
        f"session: {len(operators)} operators on {session.data['machine']} (class {session.data['device_class']}), "
        f"{total:.0f} s to the deadline"
    )

    began = time.time()
    if "networks" not in skip:  # step 1: at most 45% of the session, on an idle GPU
        time_networks(session, operators, photo, device, runs, began + 0.45 * total)
    session.step("networks", began)

    work = args.work
    shutil.rmtree(work, ignore_errors=True)  # a second session on the same machine starts over
    work.mkdir(parents=True)
    trained = [o.strip() for o in args.train.split(",") if o.strip()] if "train" not in skip else []
    training = None
    if trained:  # step 2, in the background
        split = args.photos / "split.json"
        if args.dry_run:
            split = dry_split(split, args.out.parent / "split-dry.json")
            train_args = [
                "--trainer.accelerator",
                "cpu",
                "--data.in_memory",
                "true",
                "--data.pair_workers",
                "1",
                "--trainer.limit_train_batches",
                "2",
                "--trainer.limit_val_batches",
                "1",
                "--trainer.max_epochs",
                "1",
                "--trainer.check_val_every_n_epoch",
                "1",
                "--trainer.log_every_n_steps",
                "1",
                "--data.val_resolution",
                "72p",
            ]
        else:
            train_args = [
                "--trainer.accelerator",
                "gpu",
                "--data.in_memory",
                "true",
                "--data.pair_workers",
                str(max(1, (os.cpu_count() or 4) - 4)),
            ]
        train_args += shlex.split(args.train_extra)
        training = Training(session, trained, args.photos, split, train_args, session.deadline - PACK_SECONDS, work)
        training.start()
        time.sleep(2.0)  # let the build start its imports before the tests start theirs

    if "tests" not in skip:  # step 3
        run_tests(session, min(180.0, max(session.left() - PACK_SECONDS - 60, 10)))
    began = time.time()
    if "references" not in skip:  # step 4
        time_references(session, operators, photo, device, training, session.deadline - PACK_SECONDS)
    session.step("references", began)

    if training:
        training.join()
        pack_models(session, work)
        for logfile in training.logs:  # the end of each build's output, into the session's log
            lines = logfile.read_text(errors="replace").splitlines() if logfile.is_file() else []
            print(f"--- the last lines of {logfile.parent.name}'s build:", *lines[-25:], sep="\n", flush=True)
    session.data["seconds"] = round(time.time() - session.began, 1)
    session.write()
    log(f"session: done in {session.data['seconds']:.0f} s; {len(session.data['skipped'])} groups of rows skipped")
    return 0


def _model(operator: str):
    from fip.models.catalogue import model_for_operator

    return model_for_operator(operator)


if __name__ == "__main__":  # pair generation spawns processes that import this file
    sys.exit(main())
