"""Every approximator of fip's models, as their cards measured it: PSNR on the validation photos (what ``auto``
reads) and on the four FiveK photos (reported, never used to choose), and seconds on a 1920x1080 photo, with
``auto``'s pick on this machine's device class; and the speed-quality picture of the same numbers.

Usage: python benchmarks/approximators_table.py [--plot docs/images/approximators.png] [--device-class cpu]
(reads the cards only; `python scripts/measure_models.py OPERATOR` measures them)
"""

from __future__ import annotations

import argparse
import io
import math
from pathlib import Path

from fip.files import atomic_write_bytes
from fip.models.catalogue import list_models
from fip.runtime.plan import choose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", type=Path, help="write the speed-quality picture here (PNG)")
    parser.add_argument("--device-class", default="cpu", help="whose timings to show and rank by (default cpu)")
    args = parser.parse_args()
    cards = [c for c in list_models() if c.name.startswith("fip/")]
    klass = args.device_class
    print("| operator | approximator | validation PSNR | FiveK PSNR | s at 1920x1080 | vs reference | |")
    print("|---|---|---:|---:|---:|---:|---|")
    for card in cards:
        pick = choose(card, klass)[0].name
        reference = card.reference_seconds.get(klass)
        for approximator in card.approximators.values():
            validation = approximator.quality.get("validation")
            fivek = approximator.quality.get("fivek")
            timing = approximator.seconds.get(klass)
            speedup = f"{reference.seconds / timing.seconds:.1f}x" if reference and timing else ""
            print(f"| `{card.operator}` | {approximator.name} | {_number(validation)} | {_number(fivek)} | "
                  f"{f'{timing.seconds:.3f}' if timing else '—'} | {speedup} | {'**auto**' if approximator.name == pick else ''} |")  # fmt: skip
        if reference:
            print(f"| `{card.operator}` | *the reference* | | | {reference.seconds:.3f} | 1.0x | "
                  f"{'**auto**' if pick == 'reference' else ''} |")  # fmt: skip
    machines = {t.machine for c in cards for a in c.approximators.values() if (t := a.seconds.get(klass))}
    print(f"\nTimed on {', '.join(sorted(machines)) or 'no machine'} (device class {klass}).")
    if args.plot:
        print(f"picture: {plot(cards, klass, args.plot)}")


def _number(quality) -> str:
    return f"{quality.psnr:.2f}" if quality else "—"


def plot(cards, klass: str, path: Path) -> Path:
    """One panel per operator: seconds (log) against validation PSNR, the reference's time as a line, auto ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    columns = 4
    rows = math.ceil(len(cards) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.3 * rows), dpi=100)
    for axis in axes.flat[len(cards):]:
        axis.axis("off")
    for axis, card in zip(axes.flat, cards):
        pick = choose(card, klass)[0].name
        for approximator in card.approximators.values():
            quality, timing = approximator.quality.get("validation"), approximator.seconds.get(klass)
            if quality is None or timing is None:
                continue
            reference = approximator.runs_reference
            axis.scatter([timing.seconds], [quality.psnr], marker="s" if reference else "o",
                         color="tab:orange" if reference else "tab:blue")  # fmt: skip
            if approximator.name == pick:
                axis.scatter([timing.seconds], [quality.psnr], s=220, facecolors="none", edgecolors="black")
            axis.annotate(approximator.name, (timing.seconds, quality.psnr), textcoords="offset points",
                          xytext=(3, 3), fontsize=7)  # fmt: skip
        if (reference := card.reference_seconds.get(klass)) is not None:
            axis.axvline(reference.seconds, color="grey", linestyle=":")
        axis.set_xscale("log")
        axis.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        axis.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        axis.set_title(f"{card.operator} (auto: {pick})", fontsize=9)
        axis.set_xlabel("seconds per 1920x1080 photo", fontsize=8)
        axis.set_ylabel("PSNR on validation photos (dB)", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(True, which="both", alpha=0.3)
    figure.suptitle("Every approximator: speed against quality (dotted: the reference's time; ringed: auto; "
                    "squares: the reference at low resolution)", fontsize=10)  # fmt: skip
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return atomic_write_bytes(path, buffer.getvalue())


if __name__ == "__main__":
    main()
