"""Count what one photo costs the engine besides the work itself: full-size NumPy<->torch conversions and plans.

Usage: python benchmarks/engine_crossings.py [--size HEIGHT WIDTH]

Runs ``fip.apply`` with ``smooth.l0`` on a uint8 photo and on a batch of three tensors, for a network
approximator (``fast``) and one that runs the reference (``reference-lowres``), and prints a table. A conversion
counts when its array or tensor holds at least a full-size photo (zero-copy views included).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

COUNTS = {"to_torch": 0, "to_numpy": 0, "plans": 0}


def _instrument(full: int) -> None:
    """Count full-size conversions and plans from here on."""
    import fip.runtime.engine as engine
    import fip.runtime.plan as plan

    from_numpy, to_numpy, make_plan = torch.from_numpy, torch.Tensor.numpy, plan.make_plan

    def counted_from_numpy(array):
        COUNTS["to_torch"] += array.size >= full
        return from_numpy(array)

    def counted_numpy(tensor, *args, **kwargs):
        COUNTS["to_numpy"] += tensor.numel() >= full
        return to_numpy(tensor, *args, **kwargs)

    def counted_plan(*args, **kwargs):
        COUNTS["plans"] += 1
        return make_plan(*args, **kwargs)

    torch.from_numpy, torch.Tensor.numpy = counted_from_numpy, counted_numpy
    plan.make_plan = engine.plan_for = counted_plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", nargs=2, type=int, default=(600, 800), metavar=("HEIGHT", "WIDTH"))
    args = parser.parse_args()
    height, width = args.size
    _instrument(height * width * 3)
    import fip

    photo = (np.random.default_rng(0).random((height, width, 3)) * 255).astype(np.uint8)
    batch = torch.rand(3, 3, height, width)
    print("| input | approximator | NumPy -> torch | torch -> NumPy | plans |")
    print("|---|---|---:|---:|---:|")
    for variant in ("fast", "reference-lowres"):
        for name, image in (("uint8 photo", photo), ("3 tensors", batch)):
            COUNTS.update(dict.fromkeys(COUNTS, 0))
            fip.apply("smooth.l0", image, variant=variant, device="cpu")
            print(f"| {name} | {variant} | {COUNTS['to_torch']} | {COUNTS['to_numpy']} | {COUNTS['plans']} |")


if __name__ == "__main__":
    main()
