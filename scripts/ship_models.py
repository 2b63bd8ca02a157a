"""Train approximators with their configs and ship them inside the package.

Usage: python scripts/ship_models.py OPERATOR [OPERATOR ...] [--minutes 10]
For each operator: `fip train -c train/configs/OPERATOR.yaml` (time-limited), evaluation of the best checkpoint
on the held-out sample photos, and export to fip/models/weights/fip/OPERATOR.pt (a fip model file with its
metrics). Prints one Markdown row per operator.
"""

import argparse
from pathlib import Path

from fip.data.sources import Resolution, sample_source
from fip.evaluate import evaluate
from fip.infer import SHIPPED_DIR, export_model, load_model
from fip.training import max_time, run_training

CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operators", nargs="+")
    parser.add_argument("--minutes", type=float, default=10.0)
    args = parser.parse_args()
    budget = max_time(args.minutes)
    rows = []
    for operator in args.operators:
        cli = run_training(["-c", str(CONFIGS / f"{operator}.yaml"), "--trainer.max_time", budget,
                            "--trainer.enable_progress_bar", "false"])  # fmt: skip
        model = load_model(cli.trainer.checkpoint_callback.best_model_path)
        report = evaluate(model, sample_source(), split="test", resolution=Resolution(1080), workers=1)
        metrics = {"sample_test_psnr": report.mean_psnr, "sample_test_ssim": report.mean_ssim,
                   "epochs": cli.trainer.current_epoch, "minutes": args.minutes}  # fmt: skip
        path = export_model(model, SHIPPED_DIR / f"{operator}.pt", metrics)
        rows.append(f"| `{operator}` | {report.mean_psnr:.2f} | {report.mean_ssim:.4f} | {cli.trainer.current_epoch} | {path.name} |")
        print(rows[-1], flush=True)
    print("| operator | PSNR (dB), sample test | SSIM | epochs | file |\n|---|---:|---:|---:|---|\n" + "\n".join(rows))


if __name__ == "__main__":  # pair generation spawns processes that import this file
    main()
