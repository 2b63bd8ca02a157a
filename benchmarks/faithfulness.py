"""How close fip's reference operators are to the paper's: PSNR and SSIM between each operator and the authors'
trained network of the same operator, on the four FiveK test photos at their full 1080p size.

Usage: python benchmarks/faithfulness.py [--out docs/images/faithfulness]
Prints a Markdown table and writes one picture per operator (input | fip's operator | the authors' network).
Detail manipulation has no CAN24 of its own; its row uses the authors' combined CAN32 with that operator's map.
The "input" column is the PSNR between the unprocessed input and the network: how much the operator changes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from _common import REPO, fivek_photos, machine

import fip
from fip.imaging import read_image_file, resize_area
from fip.metrics import psnr, ssim
from fip.models.paper import COMBINED_ORDER, FIP_OPERATOR, PAPER_OPERATORS, load_paper_model


def authors_output(paper_name: str, image: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    if paper_name in PAPER_OPERATORS:
        model = load_paper_model(f"paper/{paper_name}")
    else:
        model = load_paper_model("paper/combined")
        onehot = torch.zeros(1, len(COMBINED_ORDER), *x.shape[2:])
        onehot[:, COMBINED_ORDER.index(paper_name)] = 1.0
        x = torch.cat([x, onehot], dim=1)
    with torch.no_grad():
        return model(x)[0].permute(1, 2, 0).clamp(0, 1).numpy()


def thumbnail(image: np.ndarray, height: int = 300) -> np.ndarray:
    return resize_area(image, height, int(image.shape[1] * height / image.shape[0]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images" / "faithfulness")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(2)
    photos = [read_image_file(p) for p in fivek_photos()]
    rows = []
    for paper_name, operator in FIP_OPERATOR.items():
        spec = fip.get_operator(operator)
        scores, panels = [], []
        for index, image in enumerate(photos):
            ours = spec.apply(image)
            theirs = authors_output(paper_name, image)
            scores.append((psnr(ours, theirs), ssim(ours, theirs), psnr(image, theirs)))
            if index < 2:
                panels.append(np.hstack([thumbnail(x) for x in (image, ours, theirs)]))
            print(f"  {operator} photo {index + 1}: {scores[-1][0]:.2f} dB", file=sys.stderr, flush=True)
        width = max(p.shape[1] for p in panels)
        grid = np.vstack([np.pad(p, ((0, 4), (0, width - p.shape[1]), (0, 0)), constant_values=1.0) for p in panels])
        cv2.imwrite(
            str(args.out / f"{operator}.jpg"),
            cv2.cvtColor((grid * 255).astype(np.uint8), cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, 88],
        )
        mean = np.mean(scores, axis=0)
        rows.append((operator, paper_name, mean[0], mean[1], mean[2], [s[0] for s in scores]))
    print(f"Machine: {machine()}. Four FiveK photos at 1080p (1080 px short side).\n")
    print("| fip operator | authors' network | PSNR (dB) | SSIM | input PSNR (dB) | PSNR per photo |")
    print("|---|---|---:|---:|---:|---|")
    for operator, paper_name, p, s, base, per in rows:
        network = paper_name if paper_name in PAPER_OPERATORS else f"{paper_name} (combined CAN32)"
        print(f"| `{operator}` | {network} | {p:.2f} | {s:.3f} | {base:.2f} | {', '.join(f'{x:.1f}' for x in per)} |")


if __name__ == "__main__":
    main()
