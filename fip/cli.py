"""The ``fip`` command line.

    fip operators [--json]                 list registered operators and their parameters
    fip sample [--json]                    build the built-in sample set (DNG files) and list it
    fip data --operator NAME [...]         generate (input, target) pairs for one or more operators
    fip train -c train/configs/OP.yaml     train an approximator (LightningCLI: fit, validate, ...)
    fip eval --model NAME_OR_PATH          PSNR/SSIM against the reference operator
    fip apply --model M INPUT... --out D   run a model on photos or raw files
    fip quickstart                         the README's main job: train on the sample set, report, grid
    fip export -m M --out F.pt2            a torch.export program that runs without fip
    fip demo [--port 7860]                 the Gradio photo-editing demo on localhost
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from fip.errors import FipError, ParameterError
from fip.variants import BENCH_ROWS, VARIANT_HELP, Variant

MODEL_HELP = (
    "paper/<Operator> (the authors'), fip/<operator> (fip's shipped), a .ckpt from fip train or a .pt model file"
)


def _parse_param(text: str) -> tuple[str, str]:
    name, eq, value = text.partition("=")
    if not eq or not name:
        raise argparse.ArgumentTypeError(f"--param takes NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _parse_stops(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        message = f"--exposures takes stops separated by commas, e.g. 0,-1,-2; got {text!r}"
        raise argparse.ArgumentTypeError(message) from None


def _cmd_operators(args: argparse.Namespace) -> int:
    from fip.registry import list_operators

    specs = list_operators(args.family)
    if args.json:
        print(json.dumps([spec.to_json() for spec in specs], indent=2))
        return 0
    for spec in specs:
        print(f"{spec.name:<24} [{spec.input.value}] {spec.description}")
        for p in spec.params:
            print(f"    {p.name:<14} default {p.default!r:<8} range {p.range_text():<16} {p.description}")
        print(f"    from {spec.source}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from fip.data.sample import ensure_sample_set

    photos = ensure_sample_set()
    if args.json:
        print(json.dumps([{"name": p.name, "path": str(p.path), "split": p.split} for p in photos], indent=2))
    else:
        for p in photos:
            print(f"{p.split:<6} {p.name:<12} {p.path}")
    return 0


def _resolution(args: argparse.Namespace):
    from fip.data.sources import Resolution

    return Resolution.parse(args.resolution, args.max_megapixels, args.over_budget)


def _cmd_data(args: argparse.Namespace) -> int:
    from fip.data.pairs import generate_pairs
    from fip.data.sources import open_source
    from fip.registry import get_operator

    params = dict(args.param or [])
    specs = [get_operator(name) for name in args.operator]  # unknown names fail before any work
    if len(specs) > 1 and params:
        raise ParameterError("--param applies to one operator; run `fip data` once per operator to set parameters")
    if len(specs) > 1 and args.out is not None:
        raise ParameterError("--out names one pair set folder; with several operators leave it out")
    for spec in specs:
        spec.resolve_params(params)  # wrong names and ranges fail before any work
    source = open_source(args.source, args.split_file)
    resolution = _resolution(args)
    failed = False
    for spec in specs:
        report = generate_pairs(
            spec.name,
            source,
            params=params,
            split=args.split,
            resolution=resolution,
            out_dir=args.out,
            workers=args.workers,
            scheduler=args.scheduler,
            progress=not args.no_progress,
            exposures=args.exposures,
        )
        print(report.summary())
        failed |= bool(report.failed)
    return 1 if failed else 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from fip.data.sources import open_source
    from fip.evaluate import evaluate
    from fip.infer import load_model

    model = load_model(args.model)
    report = evaluate(
        model,
        open_source(args.source, args.split_file),
        operator=args.operator,
        params=dict(args.param) if args.param else None,
        split=args.split,
        resolution=_resolution(args),
        timing=args.timing,
        workers=args.workers,
        progress=not args.json,
        variant=args.variant,
    )
    print(json.dumps(report.to_json(), indent=2) if args.json else report.table())
    return 0


def _cmd_apply(args: argparse.Namespace) -> int:
    from fip.infer import apply_to_files, load_model, model_for_operator

    if args.model is None and args.operator is None:
        raise ParameterError("give --model NAME_OR_PATH, --operator NAME, or both for a multi-operator model")
    model = load_model(args.model) if args.model else model_for_operator(args.operator)
    if args.model and args.operator and model.conditioning is None and args.operator != model.operator:
        raise ParameterError(f"model {args.model} approximates {model.operator}, not {args.operator}")
    results = apply_to_files(
        model, args.inputs, args.out, max_megapixels=args.max_megapixels, tile=args.tile, bits=args.bits,
        overwrite=args.overwrite, variant=args.variant, operator=args.operator,
    )  # fmt: skip
    for r in results:
        if r.error:
            print(f"FAILED {r.source}: {r.error}", file=sys.stderr)
        else:
            print(f"{r.source} -> {r.output} ({r.size[1]}x{r.size[0]}, {r.seconds:.2f} s)")
    return 1 if any(r.error for r in results) else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from fip.export import export_program
    from fip.infer import load_model, model_for_operator

    if args.model is None and args.operator is None:
        raise ParameterError("give --model NAME_OR_PATH or --operator NAME")
    if args.out.exists() and not args.overwrite:
        raise ParameterError(f"{args.out} exists; pass --overwrite to replace it")
    model = load_model(args.model) if args.model else model_for_operator(args.operator)
    if args.out.suffix == ".onnx":
        from fip.compress import calibration_photos
        from fip.ort import write_onnx

        calibration = [p.numpy() for p in calibration_photos()] if args.int8 else None
        print(f"{model.name} -> {write_onnx(model.net, args.out, calibration)}")
    elif args.int8:
        raise ParameterError("--int8 writes ONNX: give an --out file ending in .onnx")
    else:
        print(f"{model.name} -> {export_program(model, args.out)}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    from fip.bench import format_table, plot_curve, run_bench, to_json
    from fip.data.sources import Resolution

    resolution = Resolution.parse(args.size)
    if resolution.short_side is None:
        raise ParameterError(f"--size {args.size!r}: give a frame height such as 1080p or 2160p")
    size = (resolution.short_side, resolution.short_side * 16 // 9 // 2 * 2)
    rows = tuple(args.rows.split(",")) if args.rows else BENCH_ROWS

    def progress(row) -> None:
        if not args.json:
            print(f"  {row.variant}: {row.seconds:.3f} s", file=sys.stderr, flush=True)

    results, machine = run_bench(args.operator, size, args.runs, args.image, rows, args.reference_runs, progress)
    print(json.dumps(to_json(results), indent=2) if args.json else format_table(results, machine, args.operator,
                                                                               size, args.runs))  # fmt: skip
    if args.plot:
        print(f"curve: {plot_curve(results, args.operator, args.plot)}", file=sys.stderr)
    return 0


def _cmd_quickstart(args: argparse.Namespace) -> int:
    """The main job: train an approximator of one operator on the sample set, then report and draw a grid."""
    from fip.quickstart import run_quickstart

    run_quickstart(args.operator, args.minutes, Path(args.out))
    return 0


def _add_photo_arguments(p: argparse.ArgumentParser, split: str, resolution: str) -> None:
    """Operator parameters, photo source, split and resolution policy: shared by `data` and `eval`."""
    p.add_argument("--param", "-p", action="append", type=_parse_param, metavar="NAME=VALUE", help="operator parameter")
    p.add_argument("--source", default="sample", help="'sample' (default), a FiveK root, 'fivek:PATH' or a photo folder")
    p.add_argument("--split", default=split, choices=["train", "test", "all"], help=f"default: {split}")
    p.add_argument("--split-file", type=Path, help='JSON {"train": [...], "test": [...]} overriding the split')
    p.add_argument("--resolution", default=resolution, help=f"default {resolution}; e.g. 480p, 1080p, native, random:320-1440")
    p.add_argument("--max-megapixels", type=float, help="pixel budget per photo")
    p.add_argument("--over-budget", default="resize", choices=["resize", "skip"], help="what to do over budget")


def _add_variant_argument(parser: argparse.ArgumentParser, default: str = "full") -> None:
    parser.add_argument("--variant", default=default, choices=[v.value for v in Variant],
                        help="how the network runs: " + "; ".join(f"{v.value}: {h}" for v, h in VARIANT_HELP.items()))  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fip", description="Fast image processing with context aggregation networks")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("operators", help="list registered operators")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.add_argument("--family", help="only this family (e.g. smooth)")
    p.set_defaults(run=_cmd_operators)

    p = sub.add_parser("sample", help="build the built-in sample set and list its DNG files")
    p.add_argument("--json", action="store_true", help="print a JSON list")
    p.set_defaults(run=_cmd_sample)

    p = sub.add_parser("data", help="generate (input, target) pairs")
    p.add_argument("--operator", "-o", action="append", required=True, help="operator name; repeat for several")
    _add_photo_arguments(p, split="all", resolution="480p")
    p.add_argument("--out", type=Path, help="pair set folder (default: under fip's cache)")
    p.add_argument("--workers", type=int, help="local processes (default: all cores)")
    p.add_argument("--scheduler", help="Dask distributed scheduler address, e.g. tcp://10.0.0.1:8786")
    p.add_argument("--exposures", type=_parse_stops, default=[0.0], metavar="STOPS",
                   help="each photo also at these exposures, e.g. 0,-1,-2 (default 0: as it is)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=_cmd_data)

    # Listed for --help only: main() hands everything after `train` to LightningCLI untouched.
    sub.add_parser("demo", help="the Gradio photo-editing demo on localhost: fip demo [--host H] [--port P]")
    sub.add_parser("train", help="train an approximator: fip train -c train/configs/OPERATOR.yaml (LightningCLI)")

    p = sub.add_parser("eval", help="PSNR/SSIM of a model against its reference operator")
    p.add_argument("--model", "-m", required=True, help=MODEL_HELP)
    p.add_argument("--operator", "-o", help="the reference operator (default: the one the model was trained for)")
    _add_photo_arguments(p, split="test", resolution="1080p")
    p.add_argument("--timing", action="store_true", help="also time the reference operator and the model")
    p.add_argument("--workers", type=int, help="processes generating the reference targets")
    p.add_argument("--json", action="store_true",
                   help="print JSON with per-image values, mean_psnr, mean_ssim, mean_input_psnr")
    _add_variant_argument(p)
    p.set_defaults(run=_cmd_eval)

    p = sub.add_parser("apply", help="run a model on photos or raw files")
    p.add_argument("inputs", nargs="+", type=Path, help="photos (PNG, JPEG, TIFF, ...) or raw files (DNG, CR2, NEF, ...)")
    p.add_argument("--model", "-m", help=MODEL_HELP)
    p.add_argument("--operator", "-o", help="use the model shipped for this operator; with --model, the operator "
                   "to ask a multi-operator network for (e.g. -m paper/combined -o smooth.l0)")
    p.add_argument("--out", type=Path, required=True, help="output folder (<stem>.png per input)")
    p.add_argument("--max-megapixels", type=float, help="downscale larger photos to this size first")
    p.add_argument("--tile", type=int, help="run convolutions in tiles of this size (same result, less memory)")
    p.add_argument("--bits", type=int, default=8, choices=[8, 16], help="PNG bit depth")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    _add_variant_argument(p, default="auto")
    p.set_defaults(run=_cmd_apply)

    p = sub.add_parser("export", help="write a model as a torch.export program (.pt2) or ONNX file that runs without fip")
    p.add_argument("--model", "-m", help=MODEL_HELP)
    p.add_argument("--operator", "-o", help="export the model shipped for this operator")
    p.add_argument("--out", type=Path, required=True, help="the file to write: .pt2 (torch.export) or .onnx "
                   "(ONNX, running-statistics models only, e.g. pruned ones)")
    p.add_argument("--int8", action="store_true", help="ONNX only: static int8, calibrated on the sample photos")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(run=_cmd_export)

    p = sub.add_parser("bench", help="time every way to run an operator's model, against its limits")
    p.add_argument("--operator", "-o", default="smooth.l0", help="operator whose shipped model to bench (smooth.l0)")
    p.add_argument("--size", default="1080p", help="frame height: 1080p (1920x1080, default), 2160p, 480p, ...")
    p.add_argument("--runs", type=int, default=3, help="timed runs per row after one warm-up (median reported)")
    p.add_argument("--reference-runs", type=int, default=1, help="timed runs of the reference operator")
    p.add_argument("--image", type=Path, help="photo or raw file to use (default: a sample-set photo)")
    p.add_argument("--rows", help="comma-separated subset of: " + ", ".join(BENCH_ROWS))
    p.add_argument("--json", action="store_true", help="print a JSON list of rows instead of the table")
    p.add_argument("--plot", type=Path, help="write the speed-quality curve here (PNG)")
    p.set_defaults(run=_cmd_bench)

    p = sub.add_parser("quickstart", help="the main job: train on the built-in sample set, report, draw a grid")
    p.add_argument("--operator", default="smooth.l0", help="operator with a config in train/configs/ (smooth.l0)")
    p.add_argument("--minutes", type=float, default=10.0, help="training time budget in minutes (default 10)")
    p.add_argument("--out", default="runs/quickstart", help="where the model, report and grid go")
    p.set_defaults(run=_cmd_quickstart)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:
        from fip.training import run_training

        run_training(argv[1:])
        return 0
    if argv[:1] == ["demo"]:
        from fip_demo.app import main as demo_main

        demo_main(argv[1:])
        return 0
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(name)s: %(message)s")
    try:
        return args.run(args)
    except FipError as exc:
        print(f"fip: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fip: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130

