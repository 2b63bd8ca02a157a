"""Before/after picture of a model change: a crop of a FiveK photo at 1080p through the reference operator and
through each given model (``full``), each labelled with its PSNR against the reference on the whole frame.

Usage: python benchmarks/model_grid.py OPERATOR MODEL[=LABEL] [MODEL[=LABEL] ...] [--photo 000001.png]
                                       [--out docs/images/OPERATOR-models.png]

MODEL is anything ``fip eval -m`` takes: ``fip/<operator>`` (the shipped model), ``paper/<Operator>``, a ``.pt`` file
(an earlier shipped network, say, from ``git show REV:fip/models/zoo/OPERATOR/net.pt > old.pt``) or a ``.ckpt``.
Writes one row: input | reference | each model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import REPO, fivek_photo_and_crop, labelled

from fip.files import atomic_write_bytes
from fip.imaging import encode_png
from fip.metrics import psnr
from fip.models.catalogue import open_model
from fip.pipeline import run_approximation
from fip.registry import get_operator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operator")
    parser.add_argument("models", nargs="+", help="MODEL or MODEL=LABEL (the label titles its panel)")
    parser.add_argument("--photo", default="000001.png", help="one of the FiveK photos")
    parser.add_argument("--out", type=Path, help="default: docs/images/OPERATOR-models.png")
    args = parser.parse_args()
    image, crop = fivek_photo_and_crop(args.photo)
    models = []
    for text in args.models:
        # Lightning's checkpoint names hold "=" too: the label is what follows the last one, if the whole is no file
        name, label = (text, "") if Path(text).is_file() or "=" not in text else text.rpartition("=")[::2]
        model = open_model(name)
        if model.operator not in (None, args.operator):
            raise SystemExit(f"{name} approximates {model.operator}, not {args.operator}")
        models.append((label or Path(name).name, model))
    spec = get_operator(args.operator)
    params = [spec.resolve_params(model.params) for _, model in models]
    if any(p != params[0] for p in params):
        raise SystemExit(f"the models approximate {args.operator} with different parameters: {params}")
    reference = spec.apply(image, params[0])
    row = [("input", image[crop]), (f"reference ({args.operator})", reference[crop])]
    for label, model in models:
        output = run_approximation(model, image, request="full", operator=args.operator).image
        row.append((f"{label}: {psnr(output, reference):.2f} dB", output[crop]))
    out = args.out or REPO / "docs" / "images" / f"{args.operator}-models.png"
    atomic_write_bytes(out, encode_png(labelled(row), bits=8))
    print(out)


if __name__ == "__main__":
    main()
