"""Before/after picture of the trained low-resolution form: a crop of a FiveK photo at 1080p through the reference
operator, the full network, the untrained ``network-lowres`` (the network at a third of the size + fixed guided
filter) and the trained ``lowres`` (``fip/models/zoo/OPERATOR/lowres.pt``, the Deep Guided Filter), each labelled with
its PSNR against the reference on the whole frame.

Usage: python benchmarks/lowres_grid.py OPERATOR [OPERATOR ...] [--photo 000001.png] [--out docs/images]
Writes OUT/lowres-OPERATOR.png (one row per operator: input | reference | full | lowres untrained | trained).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import REPO, fivek_photo_and_crop, labelled

from fip.files import atomic_write_bytes
from fip.imaging import encode_png
from fip.metrics import psnr
from fip.models.catalogue import model_for_operator
from fip.pipeline import run_approximation
from fip.registry import get_operator


def panels(operator: str, image: np.ndarray, crop: tuple[slice, slice]) -> list[tuple[str, np.ndarray]]:
    model = model_for_operator(operator)
    if "lowres" not in model.card.approximators:
        raise SystemExit(f"{operator} ships no trained low-resolution model (fip build makes one in its lowres stage)")
    spec = get_operator(operator)
    reference = spec.apply(image, spec.resolve_params(model.params))
    outputs = [
        (name, run_approximation(model, image, request=request).image)
        for name, request in (("full", "full"), ("lowres, untrained", "network-lowres"), ("lowres, trained", "lowres"))
    ]
    found = [("input", image[crop]), (f"reference ({operator})", reference[crop])]
    return found + [(f"{name}: {psnr(out, reference):.2f} dB", out[crop]) for name, out in outputs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operators", nargs="+")
    parser.add_argument("--photo", default="000001.png", help="one of the FiveK photos")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args()
    image, crop = fivek_photo_and_crop(args.photo)
    for operator in args.operators:
        path = args.out / f"lowres-{operator}.png"
        atomic_write_bytes(path, encode_png(labelled(panels(operator, image, crop)), bits=8))
        print(path)


if __name__ == "__main__":
    main()
