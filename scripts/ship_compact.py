"""Prune shipped approximators, fine-tune them with Lightning, quantize them, and ship them inside the package.

Usage: python scripts/ship_compact.py OPERATOR [OPERATOR ...] [--width 16] [--minutes 5]
For each operator:
  1. prune the shipped model ``fip/models/weights/fip/OPERATOR.pt`` to ``--width`` channels per layer
     (:func:`fip.compress.prune`: running statistics, calibrated on the sample set's training photos);
  2. fine-tune it with the operator's own config, ``fip train -c train/configs/OPERATOR.yaml`` with the pruned
     network and a warm start from the pruned file (time-limited);
  3. write ``OPERATOR.pruned.pt`` (the best checkpoint, with its metrics) and ``OPERATOR.pruned.int8.onnx``
     (ONNX Runtime static int8, calibrated on the same photos) next to the full model.
``--suffix`` other than ``pruned`` writes files under runs/compact/ only (for the speed-quality curve), not the
package. Prints one Markdown row per operator: sample-test PSNR of the full model, pruned, fine-tuned.
"""

import argparse
from pathlib import Path

from fip.compress import calibration_photos, prune
from fip.data.sources import Resolution, sample_source
from fip.evaluate import evaluate
from fip.infer import SHIPPED_DIR, LoadedModel, export_model, load_model
from fip.ort import write_onnx
from fip.training import max_time, run_training

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "train" / "configs"


def _test_psnr(model: LoadedModel) -> float:
    return evaluate(model, sample_source(), split="test", resolution=Resolution(1080), workers=1, variant="fast").mean_psnr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operators", nargs="+")
    parser.add_argument("--width", type=int, default=16, help="channels per hidden layer after pruning (CAN24: 24)")
    parser.add_argument("--minutes", type=float, default=5.0, help="fine-tuning budget per operator")
    parser.add_argument("--suffix", default="pruned", help="file name part; 'pruned' ships into the package")
    parser.add_argument("--requantize", action="store_true", help="only rewrite the int8 ONNX of existing files")
    args = parser.parse_args()
    out_dir = SHIPPED_DIR if args.suffix == "pruned" else REPO / "runs" / "compact"
    photos = calibration_photos()
    if args.requantize:
        for operator in args.operators:
            tuned = load_model(out_dir / f"{operator}.{args.suffix}.pt")
            print(write_onnx(tuned.net, out_dir / f"{operator}.{args.suffix}.int8.onnx", [p.numpy() for p in photos]))
        return
    rows = []
    for operator in args.operators:
        full = load_model(SHIPPED_DIR / f"{operator}.pt")
        pruned = LoadedModel(prune(full.net, args.width, photos), f"{operator} pruned", operator, full.params)
        start = export_model(pruned, REPO / "runs" / "compact" / f"{operator}.w{args.width}.start.pt")
        cli = run_training([
            "-c", str(CONFIGS / f"{operator}.yaml"),
            "--model.net.init_args.width", str(args.width), "--model.net.init_args.norm", "running",
            "--model.warm_start", str(start),
            "--trainer.default_root_dir", f"runs/{operator}.w{args.width}",
            "--trainer.max_time", max_time(args.minutes), "--trainer.enable_progress_bar", "false",
        ])  # fmt: skip
        tuned = load_model(cli.trainer.checkpoint_callback.best_model_path)
        scores = [_test_psnr(full), _test_psnr(pruned), _test_psnr(tuned)]
        metrics = {"sample_test_psnr": scores[2], "pruned_from_width": full.net.width,
                   "epochs": cli.trainer.current_epoch, "minutes": args.minutes}  # fmt: skip
        export_model(tuned, out_dir / f"{operator}.{args.suffix}.pt", metrics)
        write_onnx(tuned.net, out_dir / f"{operator}.{args.suffix}.int8.onnx", [p.numpy() for p in photos])
        rows.append(f"| `{operator}` | {args.width} | {scores[0]:.2f} | {scores[1]:.2f} | {scores[2]:.2f} | "
                    f"{cli.trainer.current_epoch} |")  # fmt: skip
        print(rows[-1], flush=True)
    print("| operator | width | sample-test PSNR, full | pruned | fine-tuned | epochs |\n|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":  # pair generation spawns processes that import this file
    main()
