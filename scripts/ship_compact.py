"""Prune shipped approximators, fine-tune them with Lightning, quantize them, and ship them inside the package.

Usage: python scripts/ship_compact.py OPERATOR [OPERATOR ...] [--width 16] [--minutes 5]
For each operator:
  1. prune the shipped model's network ``fip/models/zoo/OPERATOR/net.pt`` to ``--width`` channels per layer
     (:func:`fip.compress.prune`: running statistics, calibrated on the sample set's training photos);
  2. fine-tune it with the operator's own config, ``fip train -c train/configs/OPERATOR.yaml`` with the pruned
     network and a warm start from the pruned file (time-limited);
  3. write ``pruned.pt`` (the best checkpoint, with its metrics) and ``pruned.int8.onnx`` (ONNX Runtime static
     int8, calibrated on the same photos) into the model folder, and record both in its card (the ``pruned`` and
     ``int8`` approximators).
``--suffix`` other than ``pruned`` writes files under runs/compact/ only (``OPERATOR.SUFFIX.pt`` and
``OPERATOR.SUFFIX.int8.onnx``, for the speed-quality curve), not the package. Prints one Markdown row per operator:
sample-test PSNR of the full model, pruned, fine-tuned, int8. These numbers are stored in the pruned file for the
record; ``auto`` reads the card's measurements, which shipping drops for the networks it replaces, so run
``python scripts/measure_models.py OPERATOR`` after shipping a new pruned model.
``--requantize`` redoes step 3 (and the measurements) for existing files.
``--qat`` replaces step 3 for existing files with quantization-aware fine-tuning: the pruned network computing on
the int8 grids ONNX Runtime will use (:class:`fip.compress.QuantizationAwareCAN`), fine-tuned with the operator's
config (time-limited, a small learning rate), then written as the int8 file without re-balancing. The new file
replaces the shipped one (and is recorded in the card) only if it scores higher on the sample test photos.
"""

import argparse
from pathlib import Path

from _common import FILES, ZOO, print_report, record_networks, sample_test_psnr, with_network

from fip.compress import calibration_photos, prune
from fip.models.catalogue import Model, open_model
from fip.models.storage import NetworkFile, load_network, save_network
from fip.ort import write_onnx
from fip.training import max_time, run_training

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "train" / "configs"


def files(operator: str, suffix: str) -> tuple[Path, Path]:
    """Where ``operator``'s pruned network and its int8 file go: its model folder for ``pruned``, else runs/compact/."""
    if suffix == "pruned":
        return ZOO / operator / FILES["pruned"], ZOO / operator / FILES["int8"]
    out_dir = REPO / "runs" / "compact"
    return out_dir / f"{operator}.{suffix}.pt", out_dir / f"{operator}.{suffix}.int8.onnx"


def finish(operator: str, full: Model, tuned: NetworkFile, suffix: str, photos: list, metrics: dict) -> dict:
    """Quantize ``tuned`` to int8, measure full / pruned / int8 on the sample test photos, write both files (and,
    for ``pruned``, record them in the model card)."""
    pruned_path, int8_path = files(operator, suffix)
    int8 = write_onnx(tuned.net, int8_path.with_name(f".{int8_path.name}.new"), [p.numpy() for p in photos])
    both = Model(with_network(full.card, "int8", int8, tuned.net))  # the model with the new int8 file, unshipped
    metrics = {**metrics, "full_sample_test_psnr": sample_test_psnr(full),
               "sample_test_psnr": sample_test_psnr(Model.of_network(tuned), "full"),  # running statistics, folded
               "int8_sample_test_psnr": sample_test_psnr(both, "int8")}  # fmt: skip
    save_network(tuned, pruned_path, metrics)
    int8.replace(int8_path)
    if suffix == "pruned":  # the pair is complete only now
        record_networks(operator, {"pruned": (pruned_path, tuned.net), "int8": (int8_path, tuned.net)})
    return metrics


def quantization_aware(operator: str, minutes: float, lr: float, photos: list) -> str:
    """Fine-tune ``operator``'s pruned model for its int8 grid and write the int8 file if it scores higher on the
    sample test photos; returns a Markdown row."""
    shipped = open_model(ZOO / operator)
    if not {"pruned", "int8"} <= set(shipped.card.networks):
        raise SystemExit(f"{operator} ships no pruned and int8 networks: run scripts/ship_compact.py {operator} first")
    pruned_path, int8_path = shipped.card.path_of("pruned"), shipped.card.path_of("int8")
    pruned = shipped.network("pruned")
    cli = run_training([
        "-c", str(CONFIGS / f"{operator}.yaml"),
        "--model.net", "fip.compress.QuantizationAwareCAN", "--model.net.init_args.model", str(pruned_path),
        "--model.warm_start", "null", "--model.lr", str(lr),
        "--data.context_scale", "null",  # running statistics: crops need no photo's
        "--trainer.default_root_dir", f"runs/{operator}.qat",
        "--trainer.max_time", max_time(minutes), "--trainer.enable_progress_bar", "false",
    ])  # fmt: skip
    candidate = int8_path.with_name(f".{operator}.qat.int8.onnx.new")
    write_onnx(cli.model.net.folded(), candidate, [p.numpy() for p in photos], equalized=True)
    before = sample_test_psnr(shipped, "int8")
    after = sample_test_psnr(Model(with_network(shipped.card, "int8", candidate, pruned)), "int8")
    if after > before:
        candidate.replace(int8_path)
        record_networks(operator, {"int8": (int8_path, pruned)})
    else:
        candidate.unlink()
    return (f"| `{operator}` | {sample_test_psnr(shipped, 'pruned'):.2f} | {before:.2f} | {after:.2f} | "
            f"{cli.trainer.current_epoch} | {'yes' if after > before else 'no'} |")


def compact(operator: str, args: argparse.Namespace, photos: list) -> str:
    """Prune (or with ``--requantize`` reload), fine-tune and quantize ``operator``'s model; returns a Markdown row."""
    full = open_model(ZOO / operator)
    net = full.network("net")
    if args.requantize:
        tuned = load_network(files(operator, args.suffix)[0])
        metrics = finish(operator, full, tuned, args.suffix, photos, tuned.metrics)
        start_psnr, epochs = float("nan"), metrics.get("epochs", 0)
    else:
        pruned = NetworkFile(prune(net, args.width, photos), f"{operator} pruned", operator, full.params)
        start = save_network(pruned, REPO / "runs" / "compact" / f"{operator}.w{args.width}.start.pt")
        cli = run_training([
            "-c", str(CONFIGS / f"{operator}.yaml"),
            "--model.net.init_args.width", str(args.width), "--model.net.init_args.norm", "running",
            "--model.net.init_args.conv_bias", str(net.conv_bias).lower(), "--data.context_scale", "null",
            "--model.warm_start", str(start),
            "--trainer.default_root_dir", f"runs/{operator}.w{args.width}",
            "--trainer.max_time", max_time(args.minutes), "--trainer.enable_progress_bar", "false",
        ])  # fmt: skip
        tuned = load_network(cli.trainer.checkpoint_callback.best_model_path)
        start_psnr, epochs = sample_test_psnr(Model.of_network(pruned), "full"), cli.trainer.current_epoch
        metrics = finish(operator, full, tuned, args.suffix, photos, {
            "pruned_from_width": net.width, "epochs": epochs, "minutes": args.minutes})  # fmt: skip
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
    photos = calibration_photos()
    if args.qat:
        if args.suffix != "pruned":
            parser.error("--qat works on the shipped pruned files; it takes no --suffix")
        print_report("| operator | sample-test PSNR, pruned (bf16) | int8, post-training | int8, quantization-aware | "
                     "epochs | shipped |\n|---|---:|---:|---:|---:|---|",
                     (quantization_aware(operator, args.minutes, args.qat_lr, photos) for operator in args.operators))  # fmt: skip
        return
    print_report("| operator | width | sample-test PSNR, full | pruned | fine-tuned | int8 | epochs |\n"
                 "|---|---:|---:|---:|---:|---:|---:|", (compact(operator, args, photos) for operator in args.operators))  # fmt: skip


if __name__ == "__main__":  # pair generation spawns processes that import this file
    main()
