"""Train approximators with their configs and ship them inside the package.

Usage: python scripts/ship_models.py OPERATOR [OPERATOR ...] [--minutes 10]
For each operator: `fip train -c train/configs/OPERATOR.yaml` (time-limited), evaluation of the best checkpoint
on the held-out sample photos, and export to fip/models/zoo/OPERATOR/net.pt (a fip network file with its
metrics), recorded in the model card (made if the operator has none yet); the card's approximators of that network
are unmeasured until ``python scripts/measure_models.py OPERATOR``. Prints one Markdown row per operator.
"""

import argparse
from pathlib import Path

from _common import ship_network

from fip.data.sources import Resolution, sample_source
from fip.evaluate import evaluate
from fip.models.catalogue import Model
from fip.models.storage import load_network
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
        network = load_network(cli.trainer.checkpoint_callback.best_model_path)
        report = evaluate(Model.of_network(network), sample_source(), split="test", resolution=Resolution(1080),
                          workers=1, request="full")  # fmt: skip
        metrics = {"sample_test_psnr": report.mean_psnr, "sample_test_ssim": report.mean_ssim,
                   "epochs": cli.trainer.current_epoch, "minutes": args.minutes}  # fmt: skip
        path = ship_network(operator, "net", network, metrics)
        rows.append(f"| `{operator}` | {report.mean_psnr:.2f} | {report.mean_ssim:.4f} | {cli.trainer.current_epoch} | "
                    f"{path.parent.name}/{path.name} |")  # fmt: skip
        print(rows[-1], flush=True)
    print("| operator | PSNR (dB), sample test | SSIM | epochs | file |\n|---|---:|---:|---:|---|\n" + "\n".join(rows))


if __name__ == "__main__":  # pair generation spawns processes that import this file
    main()
