"""Every approximator of fip's models, as their cards measured it: PSNR on the validation photos (what ``auto``
reads) and on the four FiveK photos (reported, never used to choose), and seconds on a 1920x1080 photo, with
what each preset of ``auto`` (quality, balanced, speed) picks on this machine's device class; and the
speed-quality picture of the same numbers.

Usage: python benchmarks/approximators_table.py [--plot docs/images/approximators.png] [--device-class cpu]
       python benchmarks/approximators_table.py --summary      # one row per operator: auto (docs/models.md)
       python benchmarks/approximators_table.py --presets      # one row per operator: each preset's pick (docs/speed.md)
       python benchmarks/approximators_table.py --approximator grid   # one approximator against each model's best
       ... --also benchmarks/results/grid-cpu.json      # with approximators measured but not shipped (triangles)
(reads the cards only; `python benchmarks/measure_cards.py OPERATOR` measures them)
"""

from __future__ import annotations

import argparse
import io
import json
import math
from pathlib import Path

from fip.files import atomic_write_bytes
from fip.models.catalogue import list_models
from fip.runtime.plan import PRESETS, choose, preset_picks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plot", type=Path, help="write the speed-quality picture here (PNG)")
    parser.add_argument("--device-class", default="cpu", help="whose timings to show and rank by (default cpu)")
    parser.add_argument("--summary", action="store_true", help="one row per operator: what auto runs")
    parser.add_argument("--presets", action="store_true", help="one row per operator: what each preset runs")
    parser.add_argument("--approximator", help="one row per model that has this approximator: it against the best")
    parser.add_argument(
        "--also",
        type=Path,
        help="a results file of approximators measured but not shipped "
        "({operator: {NAME: approximator JSON}}, e.g. benchmarks/results/grid-cpu.json): added to "
        "the table and the picture, never to auto's pick",
    )
    args = parser.parse_args()
    cards = [c for c in list_models() if c.name.startswith("fip/")]
    if args.also:
        cards = with_unshipped(cards, json.loads(args.also.read_text()))
    klass = args.device_class
    if args.summary:
        summary(cards, klass)
        return
    if args.presets:
        presets(cards, klass)
        return
    if args.approximator:
        against_best(cards, klass, args.approximator)
        return
    print(
        "| operator | approximator | validation PSNR | FiveK PSNR | s at 1920x1080 | vs reference | `auto` runs it for |"
    )
    print("|---|---|---:|---:|---:|---:|---|")
    for card in cards:
        chosen = _chosen_by(card, klass)
        reference = card.reference_seconds.get(klass)
        for approximator in card.approximators.values():
            validation = approximator.quality.get("validation")
            fivek = approximator.quality.get("fivek")
            timing = approximator.seconds.get(klass)
            speedup = f"{reference.seconds / timing.seconds:.1f}x" if reference and timing else ""
            print(
                f"| `{card.operator}` | {approximator.name} | {_number(validation)} | {_number(fivek)} | "
                f"{f'{timing.seconds:.3f}' if timing else '—'} | {speedup} | {chosen.get(approximator.name, '')} |"
            )
        if reference:
            print(
                f"| `{card.operator}` | *the reference* | | | {reference.seconds:.3f} | 1.0x | "
                f"{chosen.get('reference', '')} |"
            )
    machines = {t.machine for c in cards for a in c.approximators.values() if (t := a.seconds.get(klass))}
    print(f"\nTimed on {', '.join(sorted(machines)) or 'no machine'} (device class {klass}).")
    if args.plot:
        print(f"picture: {plot(cards, klass, args.plot)}")


UNSHIPPED = "unshipped"  # the network key of approximators added from a results file


def with_unshipped(cards, results: dict) -> list:
    """``cards`` with the approximators of ``results`` added under a placeholder network (they are measured, not
    shipped: ``auto``'s pick, :func:`_pick`, ignores them)."""
    from dataclasses import replace

    from fip.models.cards import Approximator, NetworkEntry

    out = []
    for card in cards:
        found = {k: v for k, v in results.get(card.operator, {}).items() if isinstance(v, dict) and "precision" in v}
        added = {name: replace(Approximator.from_json(name, data), network=UNSHIPPED) for name, data in found.items()}
        if added:
            card = replace(
                card,
                networks={**card.networks, UNSHIPPED: NetworkEntry("not shipped")},
                approximators={**card.approximators, **added},
            )
        out.append(card)
    return out


def _shipped(card):
    from dataclasses import replace

    return replace(card, approximators={n: a for n, a in card.approximators.items() if a.network != UNSHIPPED})


def _pick(card, klass: str) -> str:
    """``auto``'s pick (balanced) among the shipped approximators."""
    return choose(_shipped(card), klass)[0].name


def _chosen_by(card, klass: str) -> dict[str, str]:
    """Approximator name -> the presets whose ``auto`` runs it (``balanced`` in bold: the default)."""
    chosen: dict[str, list[str]] = {}
    for pick in preset_picks(_shipped(card), klass):
        chosen.setdefault(pick.approximator, []).append(
            f"**{pick.prefer}**" if pick.prefer == "balanced" else pick.prefer
        )
    return {name: ", ".join(presets) for name, presets in chosen.items()}


def presets(cards, klass: str) -> None:
    """One row per model: what each preset of ``auto`` runs on ``klass``, with the card's seconds, validation PSNR
    and speed-up over the reference; then the fastest speed-up each preset reaches and its lowest PSNR."""
    print(
        f"| operator | reference s | {' | '.join(f'`--prefer {p}`' for p in PRESETS)} |\n|---|---:|"
        + "---|" * len(PRESETS)
    )
    speedups: dict[str, list[float]] = {p: [] for p in PRESETS}
    scores: dict[str, list[float]] = {p: [] for p in PRESETS}
    for card in cards:
        reference = card.reference_seconds.get(klass)
        cells = []
        for pick in preset_picks(_shipped(card), klass):
            speedup = reference.seconds / pick.seconds if reference and pick.seconds else None
            quality = "exact" if pick.approximator == "reference" else f"{pick.psnr:.2f} dB" if pick.psnr else "—"
            seconds = f"{pick.seconds:.3f} s" if pick.seconds is not None else "—"
            cells.append(f"{pick.approximator}: {seconds}, {quality}" + (f", {speedup:.1f}x" if speedup else ""))
            if speedup:
                speedups[pick.prefer].append(speedup)
            scores[pick.prefer].append(pick.psnr if pick.psnr is not None else math.inf)
        print(
            f"| `{card.operator}` | {reference.seconds:.3f} | {' | '.join(cells)} |"
            if reference
            else f"| `{card.operator}` | — | {' | '.join(cells)} |"
        )
    print()
    for prefer in PRESETS:
        lowest = min(scores[prefer])
        low = "exact" if math.isinf(lowest) else f"{lowest:.2f} dB"
        print(
            f"- `{prefer}`: speed-ups from {min(speedups[prefer]):.1f}x to {max(speedups[prefer]):.1f}x over the "
            f"reference (median {sorted(speedups[prefer])[len(speedups[prefer]) // 2]:.1f}x); lowest PSNR {low}; "
            f"the reference itself for {sum(math.isinf(s) for s in scores[prefer])} of {len(cards)} operators."
        )


def summary(cards, klass: str) -> None:
    """One row per model: what ``auto`` runs on ``klass``, its quality and seconds beside the reference's."""
    print(
        "| operator | `auto` runs | validation PSNR | FiveK PSNR | s at 1920x1080 | reference s | speed-up | "
        "networks |\n|---|---|---:|---:|---:|---:|---:|---|"
    )
    fivek = []
    for card in cards:
        pick = choose(card, klass)[0].name
        reference = card.reference_seconds.get(klass)
        chosen = card.approximators.get(pick)
        timing = chosen.seconds.get(klass) if chosen else None
        seconds = timing.seconds if timing else reference.seconds if reference else None
        quality = (chosen.quality.get("validation"), chosen.quality.get("fivek")) if chosen else (None, None)
        fivek.append(quality[1].psnr if quality[1] else math.inf)
        files = ", ".join(entry.file for entry in card.networks.values())
        print(
            f"| `{card.operator}` | {pick} | {_number(quality[0]) if chosen else 'exact'} | "
            f"{_number(quality[1]) if chosen else 'exact'} | {seconds:.3f} | {reference.seconds:.3f} | "
            f"{reference.seconds / seconds:.1f}x | {files} |"
        )
    finite = [v for v in fivek if math.isfinite(v)]
    print(
        f"\nMean FiveK PSNR of `auto` over the {len(finite)} operators it approximates: "
        f"{sum(finite) / len(finite):.2f} dB; the reference itself runs for {len(fivek) - len(finite)}."
    )


def against_best(cards, klass: str, name: str) -> None:
    """One row per model with approximator ``name``: its PSNR and seconds beside the best approximator's on the
    validation photos (what ``auto`` compares) and on FiveK, and what ``auto`` runs."""
    print(
        f"| operator | `{name}` validation PSNR | FiveK PSNR | s at 1920x1080 | best on validation | its PSNR | "
        f"gap (dB) | best FiveK PSNR | `auto` runs |\n|---|---:|---:|---:|---|---:|---:|---:|---|"
    )
    for card in cards:
        if name not in card.approximators:
            continue
        ours = card.approximators[name]
        scored = {a.name: a for a in card.approximators.values() if "validation" in a.quality}
        best = max(scored.values(), key=lambda a: a.quality["validation"].psnr)
        fivek = max(
            (a.quality["fivek"].psnr for a in card.approximators.values() if "fivek" in a.quality), default=None
        )
        timing = ours.seconds.get(klass)
        gap = (
            ours.quality["validation"].psnr - best.quality["validation"].psnr if "validation" in ours.quality else None
        )
        print(
            f"| `{card.operator}` | {_number(ours.quality.get('validation'))} | {_number(ours.quality.get('fivek'))} | "
            f"{f'{timing.seconds:.3f}' if timing else '—'} | {best.name} | {best.quality['validation'].psnr:.2f} | "
            f"{f'{gap:+.2f}' if gap is not None else '—'} | {f'{fivek:.2f}' if fivek else '—'} | "
            f"{_pick(card, klass)} |"
        )


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
    for axis in axes.flat[len(cards) :]:
        axis.axis("off")
    for axis, card in zip(axes.flat, cards):
        pick = _pick(card, klass)
        for approximator in card.approximators.values():
            quality, timing = approximator.quality.get("validation"), approximator.seconds.get(klass)
            if quality is None or timing is None:
                continue
            reference, unshipped = approximator.runs_reference, approximator.network == UNSHIPPED
            axis.scatter(
                [timing.seconds],
                [quality.psnr],
                marker="s" if reference else "^" if unshipped else "o",
                color="tab:orange" if reference else "tab:green" if unshipped else "tab:blue",
            )
            if approximator.name == pick:
                axis.scatter([timing.seconds], [quality.psnr], s=220, facecolors="none", edgecolors="black")
            axis.annotate(
                approximator.name, (timing.seconds, quality.psnr), textcoords="offset points", xytext=(3, 3), fontsize=7
            )
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
    figure.suptitle(
        "Every approximator: speed against quality (dotted: the reference's time; ringed: auto; "
        "squares: the reference at low resolution; triangles: measured, not shipped)",
        fontsize=10,
    )
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return atomic_write_bytes(path, buffer.getvalue())


if __name__ == "__main__":
    main()
