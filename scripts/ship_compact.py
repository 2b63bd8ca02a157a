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
package. Prints one Markdown row per operator: sample-test PSNR of the full model, pruned, fine-tuned, int8.
These numbers are stored in the pruned file for the record; the ``auto`` variant reads OPERATOR.variants.json, so
run ``python scripts/measure_variants.py OPERATOR`` after shipping a new pruned model.
``--requantize`` redoes step 3 (and the measurements) for existing files.
``--qat`` replaces step 3 for existing files with quantization-aware fine-tuning: the pruned network computing on
the int8 grids ONNX Runtime will use (:class:`fip.compress.QuantizationAwareCAN`), fine-tuned with the operator's
config (time-limited, a small learning rate), then written as the int8 file without re-balancing. The new file
replaces the shipped one only if it scores higher on the sample test photos.
"""

import argparse
from pathlib import Path

from _common import print_report, sample_test_psnr

from fip.compress import calibration_photos, prune
from fip.infer import SHIPPED_DIR, LoadedModel, export_model, load_model
from fip.ort import write_onnx
from fip.training import max_time, run_training

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "train" / "configs"


def finish(operator: str, full: LoadedModel, tuned: LoadedModel, out_dir: Path, suffix: str, photos: list,
           metrics: dict) -> dict:  # fmt: skip
    """Quantize ``tuned`` to int8, measure full / pruned / int8 on the sample test photos, write both files."""
    int8 = write_onnx(tuned.net, out_dir / f".{operator}.{suffix}.int8.onnx.new", [p.numpy() for p in photos])
    both = LoadedModel(full.net, full.name, operator, full.params, pruned=tuned, int8=int8)
    metrics = {**metrics, "full_sample_test_psnr": sample_test_psnr(full), "sample_test_psnr": sample_test_psnr(tuned),
               "int8_sample_test_psnr": sample_test_psnr(both, "int8")}  # fmt: skip
    export_model(tuned, out_dir / f"{operator}.{suffix}.pt", metrics)
    int8.replace(out_dir / f"{operator}.{suffix}.int8.onnx")  # the pair is complete only now
    return metrics


def quantization_aware(operator: str, out_dir: Path, minutes: float, lr: float, photos: list) -> str:
    """Fine-tune ``operator``'s pruned model for its int8 grid and write the int8 file if it scores higher on the
    sample test photos; returns a Markdown row."""
    full = load_model(SHIPPED_DIR / f"{operator}.pt")
    pruned_path = out_dir / f"{operator}.pruned.pt"
    shipped = LoadedModel(full.net, full.name, operator, full.params, pruned=load_model(pruned_path),
                          int8=out_dir / f"{operator}.pruned.int8.onnx")  # fmt: skip
    cli = run_training([
        "-c", str(CONFIGS / f"{operator}.yaml"),
        "--model.net", "fip.compress.QuantizationAwareCAN", "--model.net.init_args.model", str(pruned_path),
        "--model.warm_start", "null", "--model.lr", str(lr),
        "--data.context_scale", "null",  # running statistics: crops need no photo's
        "--trainer.default_root_dir", f"runs/{operator}.qat",
        "--trainer.max_time", max_time(minutes), "--trainer.enable_progress_bar", "false",
    ])  # fmt: skip
    candidate = out_dir / f".{operator}.qat.int8.onnx.new"
    write_onnx(cli.model.net.folded(), candidate, [p.numpy() for p in photos], equalized=True)
    before = sample_test_psnr(shipped, "int8")
    after = sample_test_psnr(LoadedModel(full.net, full.name, operator, full.params, pruned=shipped.pruned, int8=candidate), "int8")
    if after > before:
        candidate.replace(shipped.int8)
    else:
        candidate.unlink()
    return (f"| `{operator}` | {sample_test_psnr(shipped, 'pruned'):.2f} | {before:.2f} | {after:.2f} | "
            f"{cli.trainer.current_epoch} | {'yes' if after > before else 'no'} |")


def compact(operator: str, args: argparse.Namespace, out_dir: Path, photos: list) -> str:
    """Prune (or with ``--requantize`` reload), fine-tune and quantize ``operator``'s model; returns a Markdown row."""
    full = load_model(SHIPPED_DIR / f"{operator}.pt")
    if args.requantize:
        tuned = load_model(out_dir / f"{operator}.{args.suffix}.pt")
        metrics = finish(operator, full, tuned, out_dir, args.suffix, photos, tuned.metrics)
        start_psnr, epochs = float("nan"), metrics.get("epochs", 0)
    else:
        pruned = LoadedModel(prune(full.net, args.width, photos), f"{operator} pruned", operator, full.params)
        start = export_model(pruned, REPO / "runs" / "compact" / f"{operator}.w{args.width}.start.pt")
        cli = run_training([
            "-c", str(CONFIGS / f"{operator}.yaml"),
            "--model.net.init_args.width", str(args.width), "--model.net.init_args.norm", "running",
            "--model.net.init_args.conv_bias", str(full.net.conv_bias).lower(), "--data.context_scale", "null",
            "--model.warm_start", str(start),
            "--trainer.default_root_dir", f"runs/{operator}.w{args.width}",
            "--trainer.max_time", max_time(args.minutes), "--trainer.enable_progress_bar", "false",
        ])  # fmt: skip
        tuned = load_model(cli.trainer.checkpoint_callback.best_model_path)
        start_psnr, epochs = sample_test_psnr(pruned), cli.trainer.current_epoch
        metrics = finish(operator, full, tuned, out_dir, args.suffix, photos, {
            "pruned_from_width": full.net.width, "epochs": epochs, "minutes": args.minutes})  # fmt: skip
    return (f"| `{operator}` | {tuned.net.width} | {metrics['full_sample_test_psnr']:.2f} | {start_psnr:.2f} | "
            f"{metrics['sample_test_psnr']:.2f} | {metrics['int8_sample_test_psnr']:.2f} | {epochs} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operators", nargs="+")
    parser.add_argument("--width", type=int, default=16, help="channels per hidden layer after pruning (CAN24: 24)")
    parser.add_argument("--minutes", type=float, default=5.0, help="fine-tuning budget per operator")
    parser.add_argument("--suffix", default="pruned", help="file name part; 'pruned' ships into the package")
    parser.add_argument("--requantize", action="store_true",
                        help="no training: quantize and measure the existing pruned files again")  # fmt: skip
    parser.add_argument("--qat", action="store_true", help="quantization-aware fine-tuning of the existing int8 files")
    parser.add_argument("--qat-lr", type=float, default=2e-5, help="learning rate of --qat")
    args = parser.parse_args()
    out_dir = SHIPPED_DIR if args.suffix == "pruned" else REPO / "runs" / "compact"
    photos = calibration_photos()
    if args.qat:
        if args.suffix != "pruned":
            parser.error("--qat works on the shipped pruned files; it takes no --suffix")
        print_report("| operator | sample-test PSNR, pruned (bf16) | int8, post-training | int8, quantization-aware | "
                     "epochs | shipped |\n|---|---:|---:|---:|---:|---|",
                     (quantization_aware(operator, out_dir, args.minutes, args.qat_lr, photos) for operator in args.operators))  # fmt: skip
        return
    print_report("| operator | width | sample-test PSNR, full | pruned | fine-tuned | int8 | epochs |\n"
                 "|---|---:|---:|---:|---:|---:|---:|", (compact(operator, args, out_dir, photos) for operator in args.operators))  # fmt: skip


if __name__ == "__main__":  # pair generation spawns processes that import this file
    main()
