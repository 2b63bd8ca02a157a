"""Where the bilateral-grid approximator spends its time, at 1920x1080 and 3840x2160: the network on the 256x256
copy (resize included), the pointwise guide, the grid lookup with the 3x4 transform (``slice_rows``), and the whole
forward pass in bands of 256 rows as the engine runs it; beside its floors: the memory traffic of reading the photo
and writing the result at this machine's copy bandwidth, and its multiply-adds at the measured float32 GEMM peak.

Usage: python benchmarks/grid_profile.py [--model fip/style.photographic] [--runs 3]
(an untrained BilateralGridNet of the overlay's shape when --model is not given or has no grid network)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from _common import copy_bandwidth, machine, median_seconds

from fip.bench import gemm_peak_gflops
from fip.models.grid import BilateralGridNet, _axis, slice_rows

SIZES = {"1080p": (1080, 1920), "4K": (2160, 3840)}
BAND = 256


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", help="a model with a grid network (default: an untrained one of the overlay's shape)"
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    net = _network(args.model)
    bandwidth = copy_bandwidth()
    peak = gemm_peak_gflops(torch.float32, torch.device("cpu"))
    print(
        f"Machine: {machine()}; copy bandwidth {bandwidth / 1e9:.1f} GB/s; float32 GEMM peak {peak:.0f} GFLOP/s; "
        f"seconds, median of {args.runs}.\n"
    )
    print(
        "| frame | network (256x256) | guide | lookup + transform | whole, in bands | memory floor | compute floor "
        "| x floor |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for height, width in SIZES.values():
        torch.manual_seed(0)
        x = torch.rand(1, height, width, 3).permute(0, 3, 1, 2)  # channels-last memory, as photos are read
        with torch.inference_mode():
            grid = net.grid(x)
            table = grid.permute(0, 3, 4, 2, 1)
            columns = _axis(width, net.grid_size, x.device)
            guide = net.guide(x)
            rows = torch.arange(height)
            network = median_seconds(lambda: net.grid(x), args.runs)
            guided = median_seconds(lambda: net.guide(x), args.runs)
            lookup = median_seconds(lambda: slice_rows(table, guide, x, height, rows, columns), args.runs)
            whole = median_seconds(lambda: net(x, band=BAND), args.runs)
        memory = 2 * 3 * 4 * height * width / bandwidth  # read the photo, write the result, float32
        compute = 2 * net.multiply_adds(height, width) / (peak * 1e9)
        floor = max(memory, compute)
        print(
            f"| {width}x{height} | {network:.3f} | {guided:.3f} | {lookup:.3f} | {whole:.3f} | {memory:.3f} | "
            f"{compute:.3f} | {whole / floor:.0f}x |"
        )


def _network(name: str | None) -> BilateralGridNet:
    if name:
        from fip.models.catalogue import open_model

        model = open_model(name)
        key = next(
            (
                a.network
                for a in model.card.approximators.values()
                if a.network and "grid" in model.card.networks[a.network].architecture
            ),
            None,
        )
        if key is not None:
            return model.network(key).eval()
        print(f"{name} has no grid network: timing an untrained one of the overlay's shape", file=sys.stderr)
    return BilateralGridNet(grid_size=32, histogram_bins=16).eval()  # train/configs/overlays/grid.yaml


if __name__ == "__main__":
    main()
