"""Seconds per megapixel of every registered reference operator, with 1 and 2 threads.

Usage: python benchmarks/operator_speed.py [--repeats 2] [--threads 1 2] [--operator NAME ...]
Prints a Markdown table (the one in docs/operators.md). Each thread count runs in its own process with the
thread pools of OpenMP, BLAS, OpenCV and PyTorch limited before anything is imported; the time is the median
of the repeats, on one ~1 MP photo.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def measure(threads: int, repeats: int, names: list[str]) -> dict[str, float]:
    import cv2
    import numpy as np
    import torch

    cv2.setNumThreads(threads)
    torch.set_num_threads(threads)
    from _common import one_megapixel_photo

    import fip
    from fip.imaging import srgb_decode
    from fip.raw import Mosaic, mosaic_samples

    image = one_megapixel_photo()
    megapixels = image.shape[0] * image.shape[1] / 1e6
    views = {
        "srgb": image,
        "linear_rgb": srgb_decode(image),
        "bayer": Mosaic(mosaic_samples(srgb_decode(image), "RGGB")),
    }
    results = {}
    for name in names:
        spec = fip.get_operator(name)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            spec.apply(views[spec.input.value])
            times.append(time.perf_counter() - start)
        results[name] = float(np.median(times)) / megapixels
        print(f"  {threads} thread(s) {name}: {results[name]:.2f} s/MP", file=sys.stderr, flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--operator", nargs="*", help="default: all registered operators")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(measure(args.worker, args.repeats, args.operator)))
        return

    from _common import machine, one_megapixel_photo

    import fip

    names = args.operator or [spec.name for spec in fip.list_operators()]
    image = one_megapixel_photo()
    columns = {}
    for threads in args.threads:
        env = {
            **os.environ,
            **{k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        }
        command = [
            sys.executable,
            __file__,
            "--worker",
            str(threads),
            "--repeats",
            str(args.repeats),
            "--operator",
            *names,
        ]
        columns[threads] = json.loads(
            subprocess.run(command, env=env, check=True, capture_output=False, stdout=subprocess.PIPE, text=True).stdout
        )
    print(
        f"Machine: {machine()}. Photo: {image.shape[1]}x{image.shape[0]} ({image.shape[0] * image.shape[1] / 1e6:.2f} MP), "
        f"median of {args.repeats}.\n"
    )
    print("| operator | input | " + " | ".join(f"s/MP, {t} thread{'s' if t > 1 else ''}" for t in args.threads) + " |")
    print("|---|---|" + "---:|" * len(args.threads))
    for name in names:
        spec = fip.get_operator(name)
        print(
            f"| `{name}` | {spec.input.value} | " + " | ".join(f"{columns[t][name]:.2f}" for t in args.threads) + " |"
        )


if __name__ == "__main__":
    main()
