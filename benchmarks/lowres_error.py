"""Where the reference at low resolution loses its quality: the upsampling, or the operator run at another size.

For each operator and working scale, on photos at 1080p, three PSNRs against the reference at full size:

* *reference at 1/F, upsampled*: what ``reference-lowres`` gives (the operator on the photo area-downscaled by F,
  brought back by the colour guided filter, radius 1, eps 1e-4);
* *the target downscaled, upsampled*: the same upsampling of the full-size result area-downscaled by F, the best any
  upsampler fitted this way could do from a perfect low-resolution result, so its gap to the first line is what a
  better low-resolution result could win;
* *the low-resolution result* against the full-size result downscaled, at the working size: how differently the
  operator behaves on a smaller photo.

Where the second line is far above the first and the third is high, the upsampling loses the quality and a learned
upsampler has room to win; where the third is low, the operator itself changes with the size and no upsampler can
bring it back.

Usage: python benchmarks/lowres_error.py OPERATOR [OPERATOR ...] [--factors 3,4] [--source DIR --split-file FILE
--split validation] [--limit 8]. The default photos are fip-v2's validation photos at least 1000 pixels on their long
side (``scripts/photo_set.py`` makes the set), which choose nothing reported elsewhere.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

from fip.imaging import read_image_file, resize_area
from fip.metrics import psnr
from fip.models.cards import Upsampler
from fip.registry import get_operator
from fip.runtime.execute import to_batch, to_image, upsample

PHOTO_SET = Path.home() / ".cache" / "fip" / "photo-sets" / "fip-v2"
LONG_SIDE = 1920  # photos are area-downscaled to at most this long side (1080p)


def photos(source: Path, split_file: Path, split: str, min_side: int, limit: int) -> list[tuple[str, np.ndarray]]:
    """Up to ``limit`` photos of ``split`` whose long side is at least ``min_side``, at most 1080p, their sides
    cropped to multiples of 12 (so every factor divides them)."""
    names = json.loads(split_file.read_text())[split]
    found = []
    for name in names:
        path = next(iter(sorted(source.glob(f"{name}.*"))), None)
        if path is None:
            continue
        image = read_image_file(path)
        height, width = image.shape[:2]
        if max(height, width) < min_side:
            continue
        shrink = min(1.0, LONG_SIDE / max(height, width))
        height, width = round(height * shrink) // 12 * 12, round(width * shrink) // 12 * 12
        image = resize_area(image, height, width) if shrink < 1 else image[:height, :width]
        found.append((name, np.ascontiguousarray(image)))
        if len(found) == limit:
            break
    return found


def upsampled(small: np.ndarray, result: np.ndarray, photo: np.ndarray) -> np.ndarray:
    """``result`` (made on ``small``) at ``photo``'s size by the engine's colour guided filter (radius 1, eps
    1e-4)."""
    with torch.inference_mode():
        return to_image(upsample(to_batch(small), to_batch(result), to_batch(photo), Upsampler(), None))


def measure(operator: str, images: list[tuple[str, np.ndarray]], factors: list[int]) -> dict[int, list[float]]:
    """Mean of the three PSNRs per factor (the module docstring's lines, in that order)."""
    spec = get_operator(operator)
    params = spec.resolve_params({})
    rows: dict[int, list[list[float]]] = {f: [] for f in factors}
    for index, (name, image) in enumerate(images, 1):
        print(f"{operator}: {index}/{len(images)} {name}", file=sys.stderr, flush=True)
        height, width = image.shape[:2]
        target = spec.apply(image, params)
        for factor in factors:
            small = resize_area(image, height // factor, width // factor)
            result = spec.apply(small, spec.params_at_scale(params, 1 / factor))
            target_small = resize_area(target, height // factor, width // factor)
            rows[factor].append(
                [
                    psnr(upsampled(small, result, image), target),
                    psnr(upsampled(small, target_small, image), target),
                    psnr(result, target_small),
                ]
            )
    return {f: list(np.mean(values, axis=0)) for f, values in rows.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("operators", nargs="+")
    parser.add_argument("--factors", default="3,4", help="working sizes as divisors of the side (default 3,4)")
    parser.add_argument("--source", type=Path, default=PHOTO_SET)
    parser.add_argument("--split-file", type=Path, default=None, help="default: SOURCE/split.json")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--min-side", type=int, default=1000, help="leave out photos smaller than this (pixels)")
    parser.add_argument("--limit", type=int, default=8, help="at most this many photos")
    args = parser.parse_args()
    split_file = args.split_file or args.source / "split.json"
    if not split_file.is_file():
        raise SystemExit(f"no split file {split_file}: make the photo set with scripts/photo_set.py, or give --source")
    factors = [int(f) for f in args.factors.split(",")]
    images = photos(args.source, split_file, args.split, args.min_side, args.limit)
    if not images:
        raise SystemExit(f"no photo of {args.split} in {split_file} is at least {args.min_side} pixels long")
    print(f"Machine: {machine()}; {len(images)} photos of {args.split} ({split_file}), at most 1080p; PSNR in dB.\n")
    print("| operator | working size | reference at 1/F, upsampled | target downscaled, upsampled | low-res result |")
    print("|---|---|---:|---:|---:|")
    for operator in args.operators:
        for factor, (lowres, oracle, small) in measure(operator, images, factors).items():
            print(f"| `{operator}` | 1/{factor} | {lowres:.2f} | {oracle:.2f} | {small:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
