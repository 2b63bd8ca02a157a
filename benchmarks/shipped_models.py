"""Results of the shipped approximators: PSNR/SSIM against fip's reference operators on the held-out sample
photos and on the four FiveK photos (1080p), with the reference operator and the network timed side by side on the
FiveK photos, the network both paper-exact (``full``) and as the ``fast`` approximator (statistics from a 0.1 MP pass
folded into the convolutions). ``FiveK input PSNR`` is the photos themselves against the reference: what doing
nothing scores. The authors' network of the same operator is evaluated for comparison (same
architecture: paper-exact PSNR only, not timed).

Usage: python benchmarks/shipped_models.py [OPERATOR ...] [--no-authors] [--no-timing]
(prints the Markdown table of docs/models.md; ``--no-timing`` leaves the time columns empty, for new weights of the
same network: the times depend on the network's shape and the reference operator, not on the weights)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from _common import machine, reference_dir

from fip.data.sources import Resolution, folder_source, sample_source
from fip.evaluate import evaluate
from fip.imaging import read_image_file
from fip.models.catalogue import list_models, open_model
from fip.models.paper import paper_network_for
from fip.pipeline import run_approximation


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


def _fast_seconds(model, report) -> float:
    """Mean seconds of the ``fast`` approximator over the report's photos (after one untimed warm-up pass)."""
    images = [read_image_file(report.pairs_dir / "input" / f"{i['name']}.png") for i in report.images]
    run_approximation(model, images[0], request="fast", device="cpu")
    seconds = []
    for image in images:
        start = time.perf_counter()
        run_approximation(model, image, request="fast", device="cpu")
        seconds.append(time.perf_counter() - start)
    return _mean(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operators", nargs="*", help="only these operators (default: every shipped model)")
    parser.add_argument(
        "--no-authors",
        action="store_true",
        help="skip the authors' networks (their FiveK PSNR is in docs/operators.md's faithfulness table)",
    )
    parser.add_argument("--no-timing", action="store_true", help="PSNR/SSIM only (the time columns stay empty)")
    args = parser.parse_args()
    torch.set_num_threads(2)
    fivek = reference_dir()
    rows = []
    cards = sorted((c for c in list_models() if c.name == f"fip/{c.operator}"), key=lambda c: c.operator)
    if args.operators:
        cards = [c for c in cards if c.operator in args.operators]
    for card in cards:
        model = open_model(card)
        # a shipped model may be the authors' network itself
        selected_from = str(model.network_file("net").metrics.get("selected_from", ""))
        chosen = "authors' (shipped)" if selected_from.startswith("paper/") else "fip"
        candidates = [(chosen, model)]
        paper = paper_network_for(model.operator)
        if paper is not None and not args.no_authors and chosen == "fip":
            candidates.append(("authors'", open_model(paper)))
        for label, candidate in candidates:
            sample = evaluate(
                candidate,
                sample_source(),
                operator=model.operator,
                split="test",
                resolution=Resolution(1080),
                workers=1,
                request="full",
                device="cpu",
            )
            row = [f"`{model.operator}`", label, f"{sample.mean_psnr:.2f} / {sample.mean_ssim:.3f}"]
            if fivek is not None:
                photos = folder_source(fivek / "fivek-1080p" / "input")
                timed = candidate is model and not args.no_timing
                full = evaluate(
                    candidate,
                    photos,
                    operator=model.operator,
                    split="all",
                    resolution=Resolution(1080),
                    timing=timed,
                    workers=1,
                    request="full",
                    device="cpu",
                )
                fast = (
                    None
                    if candidate is not model
                    else evaluate(
                        candidate,
                        photos,
                        operator=model.operator,
                        split="all",
                        resolution=Resolution(1080),
                        workers=1,
                        request="fast",
                        device="cpu",
                    )
                )
                row += [
                    f"{full.mean_psnr:.2f} / {full.mean_ssim:.3f}",
                    f"{fast.mean_psnr:.2f}" if fast else "",
                    f"{full.mean_input_psnr:.2f}",
                ]
                if timed:
                    reference = _mean(i["reference_seconds"] for i in full.images)
                    exact = _mean(i["model_seconds"] for i in full.images)
                    quick = _fast_seconds(candidate, full)
                    row += [
                        f"{reference:.2f}",
                        f"{exact:.2f}",
                        f"{quick:.2f}",
                        f"{reference / exact:.2f}x",
                        f"{reference / quick:.2f}x",
                    ]
                else:
                    row += ["", "", "", "", ""]
            rows.append("| " + " | ".join(row) + " |")
            print(rows[-1], file=sys.stderr, flush=True)
    print(
        f"Machine: {machine()}; 2 threads, one 1080p photo at a time, eager PyTorch, channels_last; `full` = "
        "paper-exact per-image statistics, `fast` = statistics from a 0.1 MP pass folded into the convolutions.\n"
    )
    print(
        "| operator | network | sample test PSNR / SSIM | FiveK PSNR / SSIM (full) | FiveK PSNR (fast) "
        "| FiveK input PSNR | reference s | full s | fast s | speed-up full | speed-up fast |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
