"""Validation PSNR against hours of training, from the logs of ``benchmarks/retrain.py``'s builds.

Usage: python benchmarks/training_curve.py [--out ~/.cache/fip/retrain] [--plot docs/images/training-curve.png]
           [--clock train_hours|cpu_hours] [OPERATOR ...]

Reads every ``OUT/OPERATOR/training/logs/version_*/metrics.csv`` (Lightning's CSV logs; ``train_hours`` and
``cpu_hours`` are logged by :class:`fip.training.TrainingClock`, summed over resumed runs), prints a table of the
validation PSNR reached after each hour, and plots one curve per operator. The dashed line of an operator is the
network its training started from on the same validation photos: ``--start OPERATOR=DB`` (e.g. from ``fip eval -m
fip/OPERATOR --variant full`` on the build's ``splits/validation.json``), else what the build's ``keep`` step
measured (when the build got that far).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import machine

from fip.cache import cache_dir


def read_curve(folder: Path, clock: str) -> list[tuple[float, float]]:
    """``(hours, val_psnr)`` points of the build in ``folder``, sorted by hours."""
    points = []
    for log in sorted(folder.glob("training/logs/version_*/metrics.csv")):
        header, *lines = log.read_text().splitlines()
        names = header.split(",")
        for line in lines:
            values = dict(zip(names, line.split(",")))
            if values.get("val_psnr") and values.get(clock):
                points.append((float(values[clock]), float(values["val_psnr"])))
    return sorted(set(points))


def start_psnr(folder: Path, given: dict[str, float] | None = None) -> float | None:
    if given and folder.name in given:
        return given[folder.name]
    try:
        keep = json.loads((folder / "build.json").read_text())["steps"]["keep"]
        return float(keep["validation_psnr"]["start"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("operators", nargs="*", help="default: every build under --out with a log")
    parser.add_argument("--out", type=Path, default=cache_dir() / "retrain")
    parser.add_argument("--clock", choices=("train_hours", "cpu_hours"), default="train_hours")
    parser.add_argument("--plot", type=Path)
    parser.add_argument(
        "--start",
        action="append",
        default=[],
        metavar="OPERATOR=DB",
        help="the validation PSNR of the network training started from (repeatable)",
    )
    args = parser.parse_args()
    starts = {op: float(db) for op, _, db in (text.partition("=") for text in args.start)}
    operators = args.operators or sorted(
        p.parent.parent.parent.parent.name for p in args.out.glob("*/training/logs/version_*/metrics.csv")
    )
    curves = {op: read_curve(args.out / op, args.clock) for op in dict.fromkeys(operators)}
    curves = {op: points for op, points in curves.items() if points}
    if not curves:
        print(f"training_curve: no training logs with {args.clock} under {args.out}", file=sys.stderr)
        return 2
    print(f"Machine: {machine()}. Validation PSNR (dB) by {args.clock.replace('_', ' ')}.\n")
    last = max(points[-1][0] for points in curves.values())
    marks = [h for h in (0.25, 0.5, 1, 2, 4, 8, 16, 32, 64) if h <= last] + [math.inf]
    print("| operator | start | " + " | ".join("last" if h == math.inf else f"{h:g} h" for h in marks) + " | best |")
    print("|---|---:|" + "---:|" * (len(marks) + 1))
    for op, points in curves.items():
        cells = []
        for mark in marks:
            reached = [psnr for hours, psnr in points if hours <= mark]
            cells.append(f"{reached[-1]:.2f}" if reached else "-")
        start = start_psnr(args.out / op, starts)
        best = max(psnr for _, psnr in points)
        print(f"| `{op}` | {'-' if start is None else f'{start:.2f}'} | " + " | ".join(cells) + f" | {best:.2f} |")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axes = plt.subplots(figsize=(7, 4.2))
        for op, points in curves.items():
            start = start_psnr(args.out / op, starts)
            shown = [(0.0, start), *points] if start is not None else points  # hour 0: where training started
            (line,) = axes.plot(*zip(*shown), marker="o", markersize=3, label=op)
            if start is not None:
                axes.axhline(start, color=line.get_color(), linestyle="--", linewidth=0.8)
        axes.set_xlabel(f"{'hours' if args.clock == 'train_hours' else 'CPU hours'} of training ({machine()})")
        axes.set_ylabel("validation PSNR (dB)")
        axes.set_title("Training on the fip-v2 photo set (dashed: the network it started from)")
        axes.set_xlim(left=0)
        axes.grid(alpha=0.3)
        axes.legend()
        figure.tight_layout()
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.plot, dpi=110)
        print(f"\nwrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
