"""Write exposure-bracketed copies of a photo folder, and a split file that keeps each copy in its photo's split.

Usage: python scripts/exposure_bracket.py SRC DST [--stops 0 -1 -2 -3]

Each photo is decoded to linear light, scaled by 2**stop and written as a 16-bit sRGB PNG
``DST/<stem>_ev<stop>.png`` (``_ev0`` is the photo itself, ``_ev-2`` two stops darker; positive stops clip).
``DST/split.json`` puts every copy in the split of its original photo (fip's hashed folder split of the original
stem), so bracketing never moves a test photo into training:

    fip train ... --data.source DST --data.split_file DST/split.json
    python scripts/select_models.py OPERATOR CANDIDATE --photos DST --split-file DST/split.json

Why: an operator that consumes linear light and normalizes exposure (``tone.mapping`` maps its brightest 0.5 % to
white) gives nearly the same output at every exposure, and the network has to learn that. The Debian photos are
bright, finished JPEGs; FiveK's inputs are darker (docs/models.md), so a network trained on the photos alone
extrapolates. Existing files are kept (a rerun resumes); each is written atomically.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fip.data.sources import folder_source
from fip.files import atomic_write_bytes
from fip.imaging import encode_png, read_image_file, srgb_decode, srgb_encode
from fip.raw import RAW_EXTENSIONS


def bracket_name(stem: str, stop: float) -> str:
    return f"{stem}_ev{stop:g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path, help="a folder of photos (its hashed split is kept)")
    parser.add_argument("out", type=Path, help="where the bracketed PNGs and split.json go")
    parser.add_argument("--stops", type=float, nargs="+", default=[0.0, -1.0, -2.0, -3.0],
                        help="exposure changes in stops (EV); negative darkens (default: 0 -1 -2 -3)")  # fmt: skip
    args = parser.parse_args()
    if args.out.resolve().is_relative_to(args.source.resolve()):
        sys.exit(f"error: {args.out} is inside {args.source}: the copies would join the photos they come from "
                 "(and take their own hashed split); write them elsewhere")  # fmt: skip
    photos = folder_source(args.source).select("all")
    raw = [p.path.name for p in photos if p.path.suffix.lower() in RAW_EXTENSIONS]
    if raw:
        sys.exit(f"error: {len(raw)} raw files in {args.source} (e.g. {raw[0]}): this script brackets rendered photos "
                 "(PNG, JPEG, TIFF); bracket a folder without them")  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    split: dict[str, list[str]] = {"train": [], "test": []}
    for number, photo in enumerate(photos, 1):
        linear = None
        for stop in args.stops:
            name = bracket_name(photo.name, stop)
            split[photo.split].append(name)
            target = args.out / f"{name}.png"
            if target.exists():
                continue
            if linear is None:
                linear = srgb_decode(read_image_file(photo.path))
            atomic_write_bytes(target, encode_png(srgb_encode((linear * 2.0**stop).clip(0.0, 1.0)), bits=16))
        print(f"[{number}/{len(photos)}] {photo.name} ({photo.split})", flush=True)
    atomic_write_bytes(args.out / "split.json", (json.dumps(split, indent=1) + "\n").encode())
    print(f"{sum(map(len, split.values()))} photos in {args.out} ({len(split['train'])} train, "
          f"{len(split['test'])} test); split file {args.out / 'split.json'}")  # fmt: skip


if __name__ == "__main__":
    main()
