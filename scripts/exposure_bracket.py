"""Write exposure-bracketed copies of a photo folder, and a split file that keeps each copy in its photo's split.

Usage: python scripts/exposure_bracket.py SRC DST [--stops 0 -1 -2 -3]

Each photo (raw files included) is exposed by ``stop`` stops (:meth:`fip.raw.Photo.exposed`: light scaled by
2**stop in linear light, clipped) and written as a 16-bit sRGB PNG ``DST/<stem>_ev<stop>.png`` (``_ev0`` is the
photo itself, ``_ev-2`` two stops darker; positive stops clip). For training, ``--data.exposures`` makes the same
exposures inside the pair cache (docs/data.md); this script writes photos, for validation sets and other tools.
``DST/split.json`` puts every copy in the split of its original photo (fip's hashed folder split of the original
stem), so bracketing never moves a test photo into training:

    fip train ... --data.source DST --data.split_file DST/split.json
    fip eval -m MODEL --source DST --split-file DST/split.json

Why: an operator that consumes linear light and normalizes exposure (``tone.mapping`` maps its brightest 0.5 % to
white) gives nearly the same output at every exposure, and the network has to learn that. The Debian photos are
bright, finished JPEGs; FiveK's inputs are darker (docs/research-log.md), so a network trained on the photos alone
extrapolates. Existing files are kept (a rerun resumes); each is written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fip.data.sources import folder_source
from fip.files import atomic_write_bytes
from fip.imaging import encode_png
from fip.raw import load_photo


def bracket_name(stem: str, stop: float) -> str:
    return f"{stem}_ev{stop:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a folder of photos (its hashed split is kept)")
    parser.add_argument("out", type=Path, help="where the bracketed PNGs and split.json go")
    parser.add_argument(
        "--stops",
        type=float,
        nargs="+",
        default=[0.0, -1.0, -2.0, -3.0],
        help="exposure changes in stops (EV); negative darkens (default: 0 -1 -2 -3)",
    )
    args = parser.parse_args()
    if args.out.resolve().is_relative_to(args.source.resolve()):
        sys.exit(
            f"error: {args.out} is inside {args.source}: the copies would join the photos they come from "
            "(and take their own hashed split); write them elsewhere"
        )
    photos = folder_source(args.source).select("all")
    args.out.mkdir(parents=True, exist_ok=True)
    split: dict[str, list[str]] = {"train": [], "test": []}
    for number, photo in enumerate(photos, 1):
        loaded = None
        for stop in args.stops:
            name = bracket_name(photo.name, stop)
            split[photo.split].append(name)
            target = args.out / f"{name}.png"
            if target.exists():
                continue
            loaded = loaded or load_photo(photo.path)
            atomic_write_bytes(target, encode_png(loaded.exposed(stop).srgb, bits=16))
        print(f"[{number}/{len(photos)}] {photo.name} ({photo.split})", flush=True)
    atomic_write_bytes(args.out / "split.json", (json.dumps(split, indent=1) + "\n").encode())
    print(
        f"{sum(map(len, split.values()))} photos in {args.out} ({len(split['train'])} train, "
        f"{len(split['test'])} test); split file {args.out / 'split.json'}"
    )


if __name__ == "__main__":
    main()
