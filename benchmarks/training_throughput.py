"""Training throughput on this machine: crops a second of one training step (forward, backward, Adam) of a CAN24 on
192-pixel crops normalized in context (``--data.context_scale``), by how many crops share one photo's context pass
(``--data.crops_per_photo``) and by precision (``--trainer.precision``), all measured side by side in one run.

The contexts are 1080p photos at a quarter size (406x270, the previews of ``--data.context_scale 0.25``); a step
holds ``--batch`` crops (8). ``crops_per_photo`` 1 is one context pass per crop, the cost before the option existed.
Random pixels: the cost of a step does not depend on them.

Usage: python benchmarks/training_throughput.py [--threads 1] [--steps 3] [--batch 8] [--width 24 --depth 9]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from _common import machine

from fip.models import ContextAggregationNet


def seconds_per_step(net: ContextAggregationNet, batch: int, per_photo: int, bf16: bool, steps: int) -> float:
    """Mean seconds of one step over ``steps`` after one warm-up, ``per_photo`` crops sharing each context."""
    optimizer = torch.optim.Adam(net.parameters(), 1e-4)
    generator = torch.Generator().manual_seed(0)
    crops, targets = torch.rand(2, batch, 3, 192, 192, generator=generator)
    photos = [torch.rand(1, 3, 270, 406, generator=generator) for _ in range(batch // per_photo)]
    contexts = [photos[index // per_photo] for index in range(batch)]

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            prediction = net.forward_in_context(crops, contexts)
        loss = torch.nn.functional.mse_loss(prediction.float(), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: one training process a core)")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=int, default=24)
    parser.add_argument("--depth", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net = ContextAggregationNet(3, width=args.width, depth=args.depth, norm="image", conv_bias=True)
    print(machine())
    print(
        f"\nCAN width {args.width}, depth {args.depth}; {args.batch} crops of 192² a step, contexts 406x270; "
        f"{args.threads} thread(s); mean of {args.steps} steps after one warm-up.\n"
    )
    print("| crops per photo | precision | s / step | crops / s | × the first row |\n|---:|---|---:|---:|---:|")
    first = None
    for per_photo in (1, 4):
        for bf16 in (False, True):
            seconds = seconds_per_step(net, args.batch, per_photo, bf16, args.steps)
            first = first or seconds
            print(
                f"| {per_photo} | {'bf16-mixed' if bf16 else '32'} | {seconds:.2f} | {args.batch / seconds:.2f} "
                f"| {first / seconds:.1f} |"
            )


if __name__ == "__main__":
    main()
