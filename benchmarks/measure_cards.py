"""Measure fip's own models into their cards: every approximator's quality on the validation photos (which ``auto``
reads) and on the four FiveK photos (which the docs report, never used to choose), and its seconds on this machine.

Usage: python benchmarks/measure_cards.py OPERATOR [OPERATOR ...] [--approximators a,b] [--no-timing] [--no-fivek]
       python benchmarks/measure_cards.py OPERATOR ... --timing-only --device cuda     # a GPU's timings, for auto there
Needs the Debian photo set (bash scripts/debian_photos.sh data/debian-photos) and, for the FiveK column,
../shared/reference (or $FIP_REFERENCE_DIR). Writes fip/models/zoo/OPERATOR/card.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from _common import reference_dir  # noqa: E402
from fip.measure import PhotoSetSource, measure  # noqa: E402
from fip.models.cards import write_card  # noqa: E402
from fip.models.catalogue import default_catalogue, model_for_operator  # noqa: E402

DEBIAN = Path(__file__).resolve().parents[1] / "data" / "debian-photos"
VALIDATION = PhotoSetSource(
    "validation", "choose",
    "the five test photos of the Debian wallpaper set (bash scripts/debian_photos.sh, fip's hashed folder split) and "
    "the sample set's two test photos, at 1080p",
    ((str(DEBIAN), "test"), ("sample", "test")),
)  # fmt: skip


def fivek() -> PhotoSetSource | None:
    found = reference_dir()
    if found is None:
        return None
    return PhotoSetSource("fivek", "report", "the four FiveK photos of the paper's repository (shared/reference/"
                          "fivek-1080p), at 1080p; reported, never used to choose",
                          ((str(found / "fivek-1080p" / "input"), "all"),))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operators", nargs="+")
    parser.add_argument("--approximators", help="comma-separated: measure only these (the card keeps the others)")
    parser.add_argument("--no-timing", action="store_true", help="quality only")
    parser.add_argument("--no-fivek", action="store_true", help="the validation photos only")
    parser.add_argument("--timing-only", action="store_true", help="seconds only, on --device (the cards keep quality)")
    parser.add_argument("--device", default="cpu", help="where to measure (default cpu); timings go to its class")
    args = parser.parse_args()
    if not DEBIAN.is_dir():
        raise SystemExit(f"{DEBIAN} is missing: bash scripts/debian_photos.sh {DEBIAN}")
    torch.set_num_threads(2)
    sets = [] if args.timing_only else [VALIDATION] + ([] if args.no_fivek or fivek() is None else [fivek()])
    timing_photo = next(p for p in sorted(DEBIAN.glob("*.jpg")) if p.stem == "Blinds")  # a validation photo
    for operator in args.operators:
        model = model_for_operator(operator)
        if model.card.root is None or not model.name.startswith("fip/"):
            raise SystemExit(f"{operator}: no fip model folder to write into")
        names = args.approximators.split(",") if args.approximators else None
        card = measure(model, sets, None if args.no_timing else timing_photo, args.device, names,
                       progress=lambda line: print(line, flush=True))  # fmt: skip
        print(f"wrote {write_card(card, model.card.root)}", flush=True)
        default_catalogue().refresh()


if __name__ == "__main__":  # pair generation spawns processes that import this file
    main()
