"""What training on crops teaches a paper-exact CAN: a model's PSNR on whole validation photos, against the same
photos cut into training-size crops, each crop normalized with (a) its own statistics (what the ``crops`` recipe
trained on), (b) the whole photo's, (c) those of the photo at half size (``data.context_scale: 0.5``). Where (a)
falls far below the whole photo, crops with their own statistics are a different task from the one inference runs.

Usage: python benchmarks/crop_statistics.py OPERATOR[=MODEL] ... [--photos data/debian-photos] [--crop 192]
(MODEL: a network file or checkpoint; default the network of the shipped model ``fip/OPERATOR``. Photos: the test
split of a photo folder at 480p, the pairs `fip train --data.source FOLDER --data.val_resolution 480p` made.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from _common import machine

from fip.data.module import PairDataset
from fip.data.pairs import default_out_dir
from fip.data.sources import Resolution, folder_source
from fip.metrics import psnr
from fip.models.can import fold, image_statistics
from fip.models.catalogue import open_model
from fip.models.storage import load_network


def in_crops(x: torch.Tensor, crop: int, net) -> torch.Tensor:
    """``net`` on each ``crop`` x ``crop`` tile of ``x`` separately (a callable per tile), stitched back."""
    out = torch.zeros(x.shape[0], 3, *x.shape[2:])
    for top in range(0, x.shape[2], crop):
        for left in range(0, x.shape[3], crop):
            out[..., top : top + crop, left : left + crop] = net(x[..., top : top + crop, left : left + crop])
    return out


def scores(net, photos: PairDataset, crop: int) -> list[float]:
    """Mean PSNR over ``photos``: whole, crops with their own, the photo's and the half-size photo's statistics."""
    rows = []
    for x, target in photos:
        x, target = x[None], target[None]
        half = torch.nn.functional.interpolate(x, scale_factor=0.5, mode="area")
        outputs = [
            net(x),
            in_crops(x, crop, net),
            in_crops(x, crop, fold(net, image_statistics(net, x))),
            in_crops(x, crop, fold(net, image_statistics(net, half))),
        ]
        rows.append([float(psnr(o.clamp(0, 1), target)) for o in outputs])
    return list(np.mean(rows, axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", metavar="OPERATOR[=MODEL]")
    parser.add_argument("--photos", type=Path, default=Path("data/debian-photos"))
    parser.add_argument("--crop", type=int, default=192)
    args = parser.parse_args()
    print(machine())
    print(
        "\n| operator | model | whole photo | crops, own statistics | crops, photo's | crops, half-size photo's |\n"
        "|---|---|---:|---:|---:|---:|"
    )
    for spec in args.models:
        operator, _, name = spec.partition("=")
        model = load_network(name) if name else open_model(f"fip/{operator}").network_file("net")
        folder = default_out_dir(folder_source(args.photos), operator, Resolution(480), model.params)
        if not (folder / "manifest.json").is_file():
            sys.exit(
                f"no 480p pairs of {operator} in {folder}: run `fip train -c train/configs/{operator}.yaml "
                f"--data.source {args.photos} --data.val_resolution 480p` (or `fip data`) first"
            )
        with torch.inference_mode():
            values = scores(model.net.eval(), PairDataset(folder, "test"), args.crop)
        cells = " | ".join(f"{v:.2f}" for v in values)
        print(f"| `{operator}` | {Path(name).name if name else 'shipped'} | {cells} |")


if __name__ == "__main__":
    main()
