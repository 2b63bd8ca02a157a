"""Results of the shipped approximators: PSNR/SSIM against fip's reference operators on the held-out sample
photos and on the four FiveK photos (1080p), with the reference and model timed side by side on the FiveK photos;
the authors' network of the same operator is evaluated the same way for comparison.

Usage: python benchmarks/shipped_models.py   (prints the Markdown table of docs/models.md)
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from _common import machine, reference_dir  # noqa: E402
from fip.data.sources import Resolution, folder_source, sample_source  # noqa: E402
from fip.evaluate import evaluate  # noqa: E402
from fip.infer import SHIPPED_DIR, load_model  # noqa: E402
from fip.models.paper import paper_network_for  # noqa: E402


def main() -> None:
    torch.set_num_threads(2)
    fivek = reference_dir()
    rows = []
    for path in sorted(SHIPPED_DIR.glob("*.pt")):
        model = load_model(path)
        candidates = [("fip", model)]
        paper = paper_network_for(model.operator)
        if paper is not None:
            candidates.append(("authors'", load_model(paper)))
        for label, candidate in candidates:
            sample = evaluate(candidate, sample_source(), operator=model.operator, split="test", resolution=Resolution(1080), workers=1)
            row = [f"`{model.operator}`", label, f"{sample.mean_psnr:.2f} / {sample.mean_ssim:.3f}"]
            if fivek is not None:
                photos = folder_source(fivek / "fivek-1080p" / "input")
                result = evaluate(candidate, photos, operator=model.operator, split="all", resolution=Resolution(1080),
                                  timing=True, workers=1).to_json()  # fmt: skip
                reference = sum(i["reference_seconds"] for i in result["images"]) / len(result["images"])
                network = sum(i["model_seconds"] for i in result["images"]) / len(result["images"])
                row += [f"{result['mean_psnr']:.2f} / {result['mean_ssim']:.3f}", f"{reference:.2f}", f"{network:.2f}",
                        f"{reference / network:.2f}x"]  # fmt: skip
            rows.append("| " + " | ".join(row) + " |")
            print(rows[-1], file=sys.stderr, flush=True)
    print(f"Machine: {machine()}; model timings: CAN24, paper-exact per-image statistics, eager PyTorch, channels_last, "
          "2 threads, one 1080p photo at a time.\n")  # fmt: skip
    print("| operator | network | sample test PSNR / SSIM | FiveK 1080p PSNR / SSIM | reference s | network s | speed-up |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
