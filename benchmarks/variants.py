"""How fast each inference variant runs and what it costs in quality, side by side in one process.

For one model (default: the shipped ``smooth.l0``) on the four FiveK photos at 1080p: PSNR of each variant against
the paper-exact ``full`` pass and against the reference operator, mean seconds per photo (after one warm-up pass),
and the same at 4K (each photo area-upscaled to 3840 px on its long side: for timing only).

Usage: python benchmarks/variants.py [--operator smooth.l0]   (prints the Markdown table of docs/models.md)
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from _common import fivek_photos, machine  # noqa: E402
from fip.data.sources import Resolution, folder_source  # noqa: E402
from fip.evaluate import evaluate  # noqa: E402
from fip.imaging import read_image_file  # noqa: E402
from fip.infer import model_for_operator, run_model  # noqa: E402
from fip.metrics import psnr  # noqa: E402
from fip.variants import Variant  # noqa: E402


def _timed(net, images: list[np.ndarray], variant: Variant) -> tuple[float, list[np.ndarray]]:
    run_model(net, images[0], variant=variant)  # warm-up: thread pools, kernel selection
    outputs, seconds = [], []
    for image in images:
        start = time.perf_counter()
        outputs.append(run_model(net, image, variant=variant))
        seconds.append(time.perf_counter() - start)
    return float(np.mean(seconds)), outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operator", default="smooth.l0")
    args = parser.parse_args()
    torch.set_num_threads(2)
    model = model_for_operator(args.operator)
    paths = fivek_photos()
    images = [read_image_file(p) for p in paths]
    large = []
    for image in images[:2]:
        scale = 3840 / max(image.shape[:2])
        large.append(np.clip(cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC), 0, 1))
    source = folder_source(paths[0].parent)
    rows, exact, exact_seconds, exact_large = [], None, None, None
    for variant in Variant:
        seconds, outputs = _timed(model.net, images, variant)
        large_seconds, _ = _timed(model.net, large, variant)
        if variant is Variant.FULL:
            exact, exact_seconds, exact_large = outputs, seconds, large_seconds
        vs_full = np.mean([psnr(o, e) for o, e in zip(outputs, exact)]) if variant is not Variant.FULL else float("inf")
        report = evaluate(model, source, operator=args.operator, split="all", resolution=Resolution(1080), workers=1,
                          variant=variant)  # fmt: skip
        rows.append(f"| `{variant.value}` | {vs_full:.1f} | {report.mean_psnr:.2f} | {seconds:.2f} | "
                    f"{exact_seconds / seconds:.1f}x | {large_seconds:.2f} | {exact_large / large_seconds:.1f}x |")  # fmt: skip
        print(rows[-1], file=sys.stderr, flush=True)
    megapixels = np.mean([i.shape[0] * i.shape[1] for i in images]) / 1e6
    large_mp = np.mean([i.shape[0] * i.shape[1] for i in large]) / 1e6
    print(f"Machine: {machine()}; 2 threads; model: {model.name} ({args.operator}); FiveK photos at 1080p "
          f"({megapixels:.2f} MP mean) and at 4K ({large_mp:.1f} MP, two photos upscaled, timing only).\n")  # fmt: skip
    print("| variant | PSNR vs full (dB) | PSNR vs reference (dB) | s at 1080p | speed-up | s at 4K | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
