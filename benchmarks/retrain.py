"""Retrain fip's models on the training photo set for hours, operator after operator, resuming after any stop.

Usage: python benchmarks/retrain.py OPERATOR [OPERATOR ...] [--budget 150] [--extras none]
           [--train-args '--trainer.check_val_every_n_epoch 2'] [--out ~/.cache/fip/retrain]
       python benchmarks/retrain.py --status          # the ledger: which builds are done, where each stands

Each operator is ``fip build OPERATOR`` on the photo set of ``scripts/photo_set.py`` with its split file, reported
on the four FiveK photos, into ``OUT/OPERATOR`` (outside the work tree, so a fresh clone on the same machine finds
it). ``fip build`` resumes from its last checkpoint and its ``build.json``, so the same command, run again after a
stop, goes on where it stopped, with the options it was started with; a finished build is skipped. ``OUT/ledger.json`` records, per operator, the steps
done, the training hours so far and the validation PSNR the build kept; ``--status`` prints it as a table. Raising
``--budget`` for a finished build's operator trains it on (the budget is not part of what a build folder is for).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import fivek_photos
from training_curve import read_curve

from fip.build import STATE_FILE, BuildRequest, build
from fip.cache import cache_dir
from fip.files import atomic_write_json

PHOTO_SET = cache_dir() / "photo-sets" / "fip-v2"


def ledger_row(folder: Path) -> dict:
    """Where the build in ``folder`` stands, from its ``build.json`` and its training log."""
    try:
        state = json.loads((folder / STATE_FILE).read_text())
    except (OSError, ValueError):
        return {"steps": [], "training_hours": 0.0}
    row = {"steps": sorted(state.get("steps", {})), "training_hours": round(state.get("training_seconds", 0) / 3600, 3)}
    row["best_val_psnr"] = max((psnr for _, psnr in read_curve(folder, "train_hours")), default=None)
    if keep := state.get("steps", {}).get("keep"):
        row["kept"] = keep.get("kept")
    row["done"] = "report" in state.get("steps", {})
    return row


def started_with(folder: Path, extras: str, train_args: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """The extra stages and training options of the build in ``folder`` when one was started there (a build resumes
    only with what it was started with), else ``extras`` and ``train_args``."""
    try:
        request = json.loads((folder / STATE_FILE).read_text())["request"]
    except (OSError, ValueError, KeyError):
        return extras, train_args
    found = request.get("extras", "auto"), tuple(request.get("train_args", ()))
    if found != (extras, train_args):
        print(
            f"retrain {folder.name}: resuming with the options it was started with: --extras {found[0]} "
            f"--train-args {shlex.join(found[1])!r}",
            flush=True,
        )
    return found


def write_ledger(out: Path, operators: list[str]) -> dict:
    ledger = {op: ledger_row(out / op) for op in operators}
    atomic_write_json(out / "ledger.json", {"updated": time.strftime("%Y-%m-%d %H:%M:%S"), "operators": ledger})
    return ledger


def print_ledger(out: Path) -> None:
    operators = sorted(p.name for p in out.iterdir() if (p / STATE_FILE).is_file()) if out.is_dir() else []
    print("| operator | done | steps | training hours | best validation PSNR (training log) | kept |")
    print("|---|---|---|---:|---:|---|")
    for op, row in write_ledger(out, operators).items():
        best = f"{row['best_val_psnr']:.2f}" if row.get("best_val_psnr") else "-"
        print(
            f"| `{op}` | {'yes' if row['done'] else 'no'} | {', '.join(row['steps'])} | {row['training_hours']:.2f} "
            f"| {best} | {row.get('kept', '-')} |"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("operators", nargs="*")
    parser.add_argument("--budget", type=float, default=150.0, help="minutes per build (training gets 70%%)")
    parser.add_argument("--extras", default="none", help="fip build --extras (default none: the CAN only)")
    # Four crops of a photo share its context pass, eight crops a step, pairs decoded once: 2.2x the crops per second
    # of one crop a photo on this CPU (docs/research-log.md, "More crops a core").
    parser.add_argument(
        "--train-args",
        default="--trainer.check_val_every_n_epoch 2 --data.crops_per_photo 4 "
        "--data.batch_size 8 --data.in_memory true",
    )
    parser.add_argument("--photos", type=Path, default=PHOTO_SET, help="scripts/photo_set.py's folder")
    parser.add_argument("--out", type=Path, default=cache_dir() / "retrain")
    parser.add_argument("--status", action="store_true", help="print the ledger and stop")
    args = parser.parse_args()
    if args.status or not args.operators:
        print_ledger(args.out)
        return 0
    split = args.photos / "split.json"
    if not split.is_file():
        print(f"retrain: {split} is missing: run python scripts/photo_set.py first", file=sys.stderr)
        return 2
    fivek = str(fivek_photos()[0].parent)
    for operator in args.operators:
        extras, train_args = started_with(args.out / operator, args.extras, tuple(shlex.split(args.train_args)))
        request = BuildRequest(
            operator,
            args.out / operator,
            source=str(args.photos),
            budget_minutes=args.budget,
            report=(("fivek", fivek),),
            extras=extras,
            train_args=train_args,
            split_file=split,
        )
        build(request, progress=lambda line, op=operator: print(f"retrain {op}: {line}", flush=True))
        write_ledger(args.out, args.operators)
    print_ledger(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
