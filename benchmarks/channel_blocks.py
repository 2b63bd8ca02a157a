"""How the CAN's width maps to time on this CPU: multiply-adds are not the whole story.

x86 convolution kernels work on blocks of channels (16 fp32 lanes in an AVX-512 register; oneDNN's int8 and fp32
kernels here block output channels by 32, ONNX Runtime's MLAS uses NCHWc16), so a width that is not a multiple of
the block computes as the next multiple. This times a folded CAN (depth 9, random weights: timing only) at several
widths, one 1920x1080 frame, in eager PyTorch fp32 and bf16 and in ONNX Runtime fp32 and int8, side by side.

Usage: python benchmarks/channel_blocks.py [--widths 32,24,16,12,8] [--runs 3]   (prints the table of docs/speed.md)
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from _common import machine, median_seconds

from fip.compress import multiply_adds
from fip.models.can import ContextAggregationNet, fold
from fip.onnx_export import write_onnx
from fip.runtime.onnx import OrtNet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="32,24,16,12,8")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.rand(1, 3, 1080, 1920)
    xc = x.contiguous(memory_format=torch.channels_last)
    calibration = [torch.rand(1, 3, 270, 480).numpy()]
    rows = []
    with torch.inference_mode(), tempfile.TemporaryDirectory() as tmp:
        for width in (int(w) for w in args.widths.split(",")):
            net = ContextAggregationNet(width=width, norm="running").eval()
            with torch.no_grad():
                for module in net.modules():
                    if isinstance(module, torch.nn.Conv2d):
                        module.weight.normal_(0, 0.1)
            folded = fold(net).to(memory_format=torch.channels_last)
            half = copy.deepcopy(folded).to(torch.bfloat16)
            fp32 = OrtNet(write_onnx(folded, Path(tmp) / f"{width}.onnx"), 0)
            int8 = OrtNet(write_onnx(folded, Path(tmp) / f"{width}.int8.onnx", calibration), 0)
            seconds = [
                median_seconds(lambda: folded(xc), args.runs),
                median_seconds(lambda: half(xc.to(torch.bfloat16)), args.runs),
                median_seconds(lambda: fp32(x), args.runs),
                median_seconds(lambda: int8(x), args.runs),
            ]
            gmacs = multiply_adds(folded, 1080, 1920) / 1e9
            rows.append(f"| {width} | {gmacs:.1f} | " + " | ".join(f"{s:.3f}" for s in seconds) + " |")
            print(rows[-1], file=sys.stderr, flush=True)
    print(
        f"Machine: {machine()}; {torch.get_num_threads()} threads; folded CAN, depth 9, one 1920x1080 frame, "
        f"median of {args.runs} runs.\n"
    )
    print("| width | GMAC | PyTorch fp32 (s) | PyTorch bf16 (s) | ONNX Runtime fp32 (s) | ONNX Runtime int8 (s) |")
    print("|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
