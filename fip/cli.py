"""The ``fip`` command line.

    fip operators [--json]                 list registered operators and their parameters
    fip sample [--json]                    build the built-in sample set (DNG files) and list it
    fip data --operator NAME [...]         generate (input, target) pairs for one or more operators
    fip train -c OPERATOR                  train an approximator (LightningCLI: fit, validate, ...)
    fip models [--json] [FOLDER ...]       installed models (or these folders): approximators, quality, speed
    fip models --calibrate [MODEL ...]     time models on this machine now, for auto's choice
    fip eval --model NAME_OR_PATH          PSNR/SSIM against the reference operator
    fip apply -o OPERATOR INPUT... --out D approximate an operator on photos or raw files (or --model M)
    fip build OPERATOR [--source S]        split, train, measure and report a model folder that auto can use
    fip package DIR --into PKG/models      ship a built model folder in a package (a plugin's)
    fip quickstart                         the README's main job: fip build on the sample set, auto at 12 MP
    fip export -m M --out F.pt2            a torch.export program that runs without fip
    fip demo [--port 7860]                 the Gradio photo-editing demo on localhost

Exit status: 0 done; 1 the command ran and one or more inputs failed (each one reported); 2 nothing was done: a
bad argument, or a model, folder or setting that cannot be used (the message says which and how to fix it;
argparse's usage errors also exit 2); 130 interrupted by Ctrl-C or SIGTERM (finished results are kept; the same
command resumes); 141 the reader of the output went away (``fip operators | head``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path

from fip.errors import FipError, ParameterError, require_extra

EXIT_OK = 0
EXIT_SOME_FAILED = 1  # the command ran, and some inputs failed (each is reported)
EXIT_USAGE = 2  # nothing was done: a bad argument, or an input or model that cannot be used (the message says why)
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM; what was finished is kept, and the same command resumes
EXIT_BROKEN_PIPE = 141  # the reader of the output went away (`fip operators | head`), as a shell reports SIGPIPE

MODEL_HELP = (
    "an installed model (fip models: e.g. fip/smooth.l0), paper/<Operator> (the authors'), a model folder, "
    "a .ckpt from fip train or a .pt network file"
)
VARIANT_HELP = (
    "auto (default): the engine's choice for this device class, as --prefer says (or the reference itself "
    "where it is faster); or an "
    "approximator's name (fip models lists them: full, fast, bf16, network-lowres, lowres, pruned, int8, "
    "reference-lowres, reference-halfres), or reference: the operator itself"
)


def _parse_param(text: str) -> tuple[str, str]:
    name, eq, value = text.partition("=")
    if not eq or not name:
        raise argparse.ArgumentTypeError(f"--param takes NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _params(pairs: list[tuple[str, str]] | None) -> dict[str, str] | None:
    """``--param`` values by name (``None`` when none were given); a name given twice is refused, not overridden."""
    params: dict[str, str] = {}
    for name, value in pairs or ():
        if name in params and params[name] != value:
            raise ParameterError(
                f"-p {name} is given twice ({name}={params[name]} and {name}={value}); give each parameter once"
            )
        params[name] = value
    return params if pairs else None


def _named_source(text: str) -> tuple[str, str]:
    """``NAME=PHOTOS`` of ``fip build --report``: a new photo set name and an existing folder."""
    name, eq, source = text.partition("=")
    name = name.strip()
    if not eq or not name or not source:
        raise argparse.ArgumentTypeError(f"takes NAME=PHOTOS (e.g. fivek=path/to/photos), got {text!r}")
    if name in ("train", "validation", "test") or not name.replace("-", "_").isidentifier():
        raise argparse.ArgumentTypeError(
            f"{name!r} cannot name a photo set: use letters, digits, - and _, and not "
            "train, validation or test (the build's own sets)"
        )
    if not Path(source).expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"{source!r} is not a folder of photos")
    return name, str(Path(source).expanduser())


def _train_args(text: str) -> tuple[str, ...]:
    """``--train-args``: options in one quoted string, split as a shell would."""
    try:
        return tuple(shlex.split(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"cannot split {text!r} into options ({exc}): check its quotes") from None


def _extras(text: str) -> str:
    """``--extras``: auto, all, none or stage names joined by commas (checked here, before any work)."""
    from fip.build import requested_extras
    from fip.errors import InputError

    try:
        requested_extras(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"takes a number above 0, got {text!r}")
    return value


def _count(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"takes a whole number of at least 1, got {text!r}")
    return int(text)


def _folder(text: str) -> Path:
    if not text.strip():
        raise argparse.ArgumentTypeError("takes a folder name, got an empty one")
    return Path(text)


def _existing_file(text: str) -> Path:
    if not Path(text).expanduser().is_file():
        raise argparse.ArgumentTypeError(f"{text!r} is not a file")
    return Path(text).expanduser()


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

    params = _params(args.param) or {}
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


def _preference(args: argparse.Namespace):
    """``--prefer`` and ``--min-psnr`` as a :class:`~fip.runtime.plan.Preference` (``None``: neither given); a bad
    value stops here with one line (exit 2)."""
    from fip.runtime.plan import Preference

    if args.prefer is None and args.min_psnr is None:
        return None
    return Preference.of(args.prefer, args.min_psnr)


def _cmd_eval(args: argparse.Namespace) -> int:
    from fip.data.sources import open_source
    from fip.evaluate import evaluate
    from fip.pipeline import resolve

    model = resolve(args.model, args.operator)
    report = evaluate(
        model,
        open_source(args.source, args.split_file),
        operator=args.operator,
        params=_params(args.param),
        split=args.split,
        resolution=_resolution(args),
        timing=args.timing,
        workers=args.workers,
        progress=not args.json,
        request=args.variant,
        device=args.device,
        preference=_preference(args),
    )
    print(json.dumps(report.to_json(), indent=2) if args.json else report.table())
    return 0


def _cmd_apply(args: argparse.Namespace) -> int:
    import time

    from fip.batch import OutputOptions, plan_batch, run_batch, summary
    from fip.pipeline import resolve
    from fip.runtime.engine import make_plan

    preference = _preference(args)
    model = resolve(args.model, args.operator)
    params = _params(args.param)
    # Usage errors (device, approximator, parameters, tile, operator, output folder, a damaged network file) stop
    # here, before any photo.
    plan = make_plan(
        model,
        args.variant,
        (1080, 1920),
        args.device,
        operator=args.operator,
        params=params,
        tile=args.tile,
        memory_budget=1 << 40,
        preference=preference,
    )
    for network in model.card.approximator(plan.approximator).network_keys:
        model.network(network)  # checked against the card's SHA-256 once, not failed per photo
    if args.quality is not None and args.format != "jpeg":
        raise ParameterError(
            f"--quality sets JPEG quality; --format is {args.format}: add --format jpeg or leave --quality out"
        )
    output = OutputOptions(args.format, 95 if args.quality is None else args.quality, args.overwrite)
    operator = args.operator or model.operator
    recipe = {
        "model": model.name,
        "model_folder": str(model.card.root.resolve()) if model.card.root else None,
        "networks": {key: entry.sha256 for key, entry in model.card.networks.items()},
        "operator": operator,
        "params": _resolved(operator, params),
        "approximator": args.variant,
        "format": args.format,
        "quality": output.quality if args.format == "jpeg" else None,
        "max_megapixels": args.max_megapixels,
    }
    if preference is not None and not preference.is_default:  # (absent when default: earlier outputs are kept)
        recipe["prefer"] = str(preference)
    batch = plan_batch(args.inputs, args.out, recursive=args.recursive, output=output, recipe=recipe)
    results = []
    start = time.perf_counter()
    bar = _progress(len(batch.items), "photos", disable=args.no_progress)
    try:
        for r in run_batch(
            model,
            batch,
            request=args.variant,
            operator=args.operator,
            params=params,
            device=args.device,
            max_megapixels=args.max_megapixels,
            tile=args.tile,
            workers=args.workers,
            scheduler=args.scheduler,
            preference=preference,
        ):
            results.append(r)
            bar.update()
            bar.write(_result_line(r), file=sys.stderr if r.status == "failed" else sys.stdout)
            if args.explain and r.plan is not None and r.status == "written":
                bar.write(r.plan.explain() + "\n")  # the plan that ran, for the photo's own size
    except (KeyboardInterrupt, BrokenPipeError) as exc:
        bar.close()
        why = "" if isinstance(exc, KeyboardInterrupt) else " (the output pipe closed)"
        print(summary(results, time.perf_counter() - start, len(batch.items)) + why, file=sys.stderr)
        raise
    bar.close()
    print(summary(results, time.perf_counter() - start), file=sys.stderr)
    return EXIT_SOME_FAILED if any(r.status == "failed" for r in results) else 0


def _resolved(operator: str | None, params: dict | None) -> dict | None:
    """The operator's parameters as it would run them (``0.02`` and ``.02`` alike; defaults filled in)."""
    from fip.registry import get_operator

    return get_operator(operator).resolve_params(params) if operator else params


def _result_line(r) -> str:
    if r.status == "failed":
        error = r.error.removeprefix(f"{r.source}: ").removeprefix(f"{r.source.name}: ")  # the name is said once
        return f"FAILED {r.source}: {error}"
    if r.status == "kept":
        return f"{r.source} -> {r.output} kept: made before from this input with these settings"
    return (
        f"{r.source} -> {r.output} ({r.size[1]}x{r.size[0]}, {r.seconds:.2f} s, {r.plan.approximator} on "
        f"{r.plan.device})" + "".join(f"; {note}" for note in r.notes)
    )


def _progress(total: int, unit: str, disable: bool):
    """A progress bar on stderr (shown on terminals; hidden with --no-progress or for a single input)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, unit=unit, disable=disable or total < 2 or None, file=sys.stderr, leave=False)


def _cmd_models(args: argparse.Namespace) -> int:
    if args.calibrate:
        return _calibrate(args)
    if args.device:
        raise ParameterError("--device says where to time models: add --calibrate, or leave --device out")
    from fip.models.cards import read_card
    from fip.models.catalogue import list_models
    from fip.runtime.devices import device_class, resolve_device

    here = device_class(resolve_device("cpu"))
    cards = [read_card(folder) for folder in args.folders] or list_models(args.operator)
    if args.json:
        print(
            json.dumps(
                [{**card.to_json(), "folder": str(card.root) if card.root else None} for card in cards], indent=2
            )
        )
        return 0
    for card in cards:
        print(f"{card.name:<26} {card.operator or 'several operators'}: {card.description}")
        photo_set = card.choice_set
        for approximator in card.approximators.values():
            quality = approximator.quality.get(photo_set) if photo_set else None
            timing = next(((k, t) for k, t in approximator.seconds.items() if k == here), None) or next(
                iter(approximator.seconds.items()), None
            )  # this machine's class first
            measured = (f"{quality.psnr:6.2f} dB" if quality else "   -     ") + (
                f"  {timing[1].seconds:6.3f} s on {timing[0]}" if timing else ""
            )
            print(f"    {approximator.name:<17} {measured}  {approximator.description}")
        for klass, timing in card.reference_seconds.items():
            print(f"    {'(reference)':<17}    -       {timing.seconds:6.3f} s on {klass}  the operator itself")
        if card.root:
            print(f"    in {card.root}")
    if cards and not args.json:
        print("\ndB: PSNR against the reference on each model's validation photos at 1080p; s: one 1920x1080 photo")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    """``fip models --calibrate``: time each model on this machine now (fip.runtime.calibrate) and say what each
    preset of auto then runs here."""
    from fip.models.catalogue import list_models, open_model
    from fip.runtime.calibrate import calibrate_model, candidates, timed_card
    from fip.runtime.devices import device_class, resolve_device
    from fip.runtime.plan import preset_picks

    if args.json:
        raise ParameterError("--calibrate prints its timings as a table; leave --json out")
    device = resolve_device(args.device)
    dclass = device_class(device)
    models = [open_model(str(f)) for f in args.folders] or [open_model(card) for card in list_models(args.operator)]
    for model in models:
        names = candidates(model.card, device)
        if not names or model.card.operator is None:
            why = "a network of several operators" if names else "no approximator measured on validation photos"
            print(f"{model.name}: nothing to time ({why}: auto does not rank it by time)")
            continue
        calibrate_model(model, device, progress=lambda line: print(f"fip: {line}", file=sys.stderr, flush=True))
        card = timed_card(model, device, calibrate=True)
        photo_set = card.choice_set
        timing = card.reference_seconds.get(dclass)
        size = f"{timing.size[1]}x{timing.size[0]}" if timing else ""
        print(f"{card.name} on {device} (class {dclass}), seconds for one {size} frame:")
        for approximator in card.approximators.values():
            if (seconds := approximator.seconds.get(dclass)) is not None and approximator.name in names:
                print(
                    f"    {approximator.name:<17} {approximator.quality[photo_set].psnr:6.2f} dB  {seconds.seconds:7.3f} s"
                )
        if timing:
            print(f"    {'(reference)':<17}    exact   {timing.seconds:7.3f} s")
        picks = preset_picks(card, dclass)
        print("    auto: " + ", ".join(f"{p.prefer} -> {p.approximator}" for p in picks))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from fip.export import export_program
    from fip.pipeline import resolve

    if args.out.exists() and not args.overwrite:
        raise ParameterError(f"{args.out} exists; pass --overwrite to replace it")
    model = resolve(args.model, args.operator)
    approximator = model.card.approximator(args.variant)
    if approximator.network is None or model.card.networks[approximator.network].kind == "onnx":
        raise ParameterError(f"{model.name}'s {args.variant!r} runs no PyTorch network to export; export 'full'")
    network = model.network_file(approximator.network)
    if args.out.suffix == ".onnx":
        require_extra("compress", "onnx", "onnxscript")
        from fip.compress import calibration_photos
        from fip.onnx_export import write_onnx

        calibration = [p.numpy() for p in calibration_photos()] if args.int8 else None
        print(f"{model.name} ({args.variant}) -> {write_onnx(network.net, args.out, calibration)}")
    elif args.int8:
        raise ParameterError("--int8 writes ONNX: give an --out file ending in .onnx")
    else:
        print(f"{model.name} ({args.variant}) -> {export_program(network, args.out)}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from fip.bench import format_table, plot_curve, run_bench, to_json
    from fip.data.sources import Resolution

    if args.plot:
        require_extra("plot", "matplotlib")
    resolution = Resolution.parse(args.size)
    if resolution.short_side is None:
        raise ParameterError(f"--size {args.size!r}: give a frame height such as 1080p or 2160p")
    size = (resolution.short_side, resolution.short_side * 16 // 9 // 2 * 2)
    rows = tuple(r.strip() for r in args.rows.split(",")) if args.rows else None

    def progress(row) -> None:
        if not args.json:
            print(f"  {row.name}: {row.seconds:.3f} s", file=sys.stderr, flush=True)

    bench = run_bench(
        args.operator,
        size,
        args.runs,
        args.image,
        rows,
        args.reference_runs,
        args.device,
        progress,
        model=args.model,
        preference=_preference(args),
    )
    print(json.dumps(to_json(bench), indent=2) if args.json else format_table(bench))
    if args.plot:
        print(f"curve: {plot_curve(bench, args.plot)}", file=sys.stderr)
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from fip.build import BuildRequest, build

    request = BuildRequest(
        args.operator,
        args.out or Path("models") / args.operator,
        _params(args.param) or {},
        args.source,
        args.budget,
        args.device,
        args.resolution,
        int(args.timing_height),
        args.warm_start,
        tuple(args.report or ()),
        args.extras,
        args.train_args or (),
        args.split_file,
    )
    folder = build(request, progress=lambda line: print(f"fip build: {line}", flush=True))
    print((folder / "report.md").read_text())
    return EXIT_OK


def _cmd_package(args: argparse.Namespace) -> int:
    from fip.build import package

    target = package(args.model, args.into, args.name, args.overwrite)
    print(
        f"packaged {args.model} as {target}; it is installed with the package whose fip.models entry point names "
        f"{args.into}"
    )
    return EXIT_OK


def _cmd_quickstart(args: argparse.Namespace) -> int:
    """The main job: fip build on the sample set, then auto against the reference at 12 MP."""
    from fip.quickstart import run_quickstart

    run_quickstart(args.operator, args.minutes, Path(args.out), args.device)
    return EXIT_OK


def _add_photo_arguments(p: argparse.ArgumentParser, split: str, resolution: str) -> None:
    """Operator parameters, photo source, split and resolution policy: shared by `data` and `eval`."""
    p.add_argument("--param", "-p", action="append", type=_parse_param, metavar="NAME=VALUE", help="operator parameter")
    p.add_argument(
        "--source", default="sample", help="'sample' (default), a FiveK root, 'fivek:PATH' or a photo folder"
    )
    p.add_argument("--split", default=split, choices=["train", "test", "all"], help=f"default: {split}")
    p.add_argument("--split-file", type=Path, help='JSON {"train": [...], "test": [...]} overriding the split')
    p.add_argument(
        "--resolution", default=resolution, help=f"default {resolution}; e.g. 480p, 1080p, native, random:320-1440"
    )
    p.add_argument("--max-megapixels", type=_positive_number, help="pixel budget per photo")
    p.add_argument("--over-budget", default="resize", choices=["resize", "skip"], help="what to do over budget")


def _add_engine_arguments(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    """The approximator and the device: shared by `apply` and `eval`."""
    parser.add_argument("--variant", "--approximator", default=default, metavar="NAME", help=VARIANT_HELP)
    parser.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: cuda when available, else cpu)")
    _add_preference_arguments(parser)


def _add_preference_arguments(parser: argparse.ArgumentParser) -> None:
    """What auto trades: shared by `apply`, `eval` and `bench` (checked by fip.runtime.plan.Preference)."""
    parser.add_argument(
        "--prefer",
        metavar="PRESET",
        help="what auto trades: quality (the fastest within 0.1 dB of "
        "the best approximator on validation photos), balanced (default: the fastest within 0.5 dB of "
        "the best, or at least 40 dB) or speed (the fastest scoring at least 32 dB, or --min-psnr)",
    )
    parser.add_argument(
        "--min-psnr",
        metavar="DB",
        help="auto runs no approximator that scored under DB dB on the "
        "validation photos (the reference itself where none reaches it); with --prefer speed, the "
        "floor instead of 32 dB",
    )


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
    p.add_argument("--workers", type=_count, help="local processes (default: all cores)")
    p.add_argument("--scheduler", help="Dask distributed scheduler address, e.g. tcp://10.0.0.1:8786")
    p.add_argument(
        "--exposures",
        type=_parse_stops,
        default=[0.0],
        metavar="STOPS",
        help="each photo also at these exposures, e.g. 0,-1,-2 (default 0: as it is)",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=_cmd_data)

    # Listed for --help only: main() hands everything after `train` to LightningCLI untouched.
    sub.add_parser("demo", help="the Gradio photo-editing demo on localhost: fip demo [--host H] [--port P]")
    sub.add_parser(
        "train",
        help="train an approximator: fip train -c OPERATOR (a config name, e.g. smooth.l0, "
        "or a YAML file; "
        "LightningCLI)",
    )

    p = sub.add_parser("eval", help="PSNR/SSIM of a model against its reference operator")
    p.add_argument("--model", "-m", required=True, help=MODEL_HELP)
    p.add_argument("--operator", "-o", help="the reference operator (default: the one the model was trained for)")
    _add_photo_arguments(p, split="test", resolution="1080p")
    p.add_argument("--timing", action="store_true", help="also time the reference operator and the model")
    p.add_argument("--workers", type=_count, help="processes generating the reference targets")
    p.add_argument(
        "--json",
        action="store_true",
        help="print JSON with per-image values and plans, mean_psnr, mean_ssim, mean_input_psnr",
    )
    _add_engine_arguments(p)
    p.set_defaults(run=_cmd_eval)

    p = sub.add_parser("models", help="installed models: approximators, their quality and speed")
    p.add_argument("--json", action="store_true", help="print the cards as a JSON list (name, operator, approximators)")
    p.add_argument("--operator", "-o", help="only the models of this operator")
    p.add_argument(
        "folders",
        nargs="*",
        type=Path,
        metavar="FOLDER",
        help="show these model folders (fip build's) instead of the installed models; with --calibrate, "
        "models by name too",
    )
    p.add_argument(
        "--calibrate",
        action="store_true",
        help="time the models' approximators on this machine now "
        "(about a minute a model), so that auto chooses by this machine's timings; kept in fip's cache",
    )
    p.add_argument("--device", help="with --calibrate: cpu, cuda, cuda:N or mps (default: cuda when available)")
    p.set_defaults(run=_cmd_models)

    p = sub.add_parser("apply", help="approximate an operator on photos or raw files")
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="photos (PNG, JPEG, TIFF, ...), raw files (DNG, CR2, "
        "NEF, "
        "...), folders of them, or quoted glob patterns such as 'shoot/*.jpg'",
    )
    p.add_argument(
        "--recursive",
        "-r",
        action="store_true",
        help="also the photos in subfolders (outputs mirror the folder tree); ** in patterns",
    )
    p.add_argument("--model", "-m", help=MODEL_HELP)
    p.add_argument(
        "--operator",
        "-o",
        help="the operator: its installed model (any registered operator has at least "
        "reference-lowres); with --model, the operator to ask a multi-operator network for",
    )
    p.add_argument(
        "--param",
        "-p",
        action="append",
        type=_parse_param,
        metavar="NAME=VALUE",
        help="operator parameter (networks serve the values they were trained for; auto otherwise runs "
        "reference-lowres, which follows any)",
    )
    p.add_argument(
        "--out",
        type=_folder,
        required=True,
        help="output folder: <stem>.<format's suffix> per input; "
        "inputs whose names would collide keep their extension (a-jpg.png, a-png.png)",
    )
    p.add_argument(
        "--format",
        default="png",
        choices=["png", "png16", "tiff16", "jpeg"],  # fip.imaging.OUTPUT_FORMATS
        help="png (8-bit, default), png16, tiff16 or jpeg; the ICC profile and EXIF of image inputs are carried over",
    )
    p.add_argument("--quality", type=int, help="JPEG quality 1..100 (default 95; --format jpeg only)")
    p.add_argument("--max-megapixels", type=_positive_number, help="downscale larger photos to this size first")
    p.add_argument(
        "--tile",
        type=int,
        help="run networks in tiles of this size (same result, less memory; default: "
        "tiles only where the memory available requires)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing outputs (default: keep those made from "
        "the same input and settings, so a rerun resumes a batch; another file of the same name gets "
        "a new name)",
    )
    p.add_argument(
        "--workers",
        type=_count,
        default=1,
        help="local processes, each with its share of the cores "
        "(default 1: one process using every core; at most one per input, per core and per 300 MB of "
        "available memory)",
    )
    p.add_argument("--scheduler", help="Dask scheduler address (tcp://host:8786); its workers must see the inputs")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument(
        "--explain",
        action="store_true",
        help="print the plan each photo ran (what, where and why) after its result line",
    )
    _add_engine_arguments(p)
    p.set_defaults(run=_cmd_apply)

    p = sub.add_parser(
        "export", help="write a model as a torch.export program (.pt2) or ONNX file that runs without fip"
    )
    p.add_argument("--model", "-m", help=MODEL_HELP)
    p.add_argument("--operator", "-o", help="export the model installed for this operator")
    p.add_argument(
        "--variant",
        "--approximator",
        default="full",
        metavar="NAME",
        help="the approximator whose network to export (default full; e.g. pruned)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="the file to write: .pt2 (torch.export) or .onnx "
        "(ONNX, running-statistics networks only, e.g. pruned ones)",
    )
    p.add_argument("--int8", action="store_true", help="ONNX only: static int8, calibrated on the sample photos")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(run=_cmd_export)

    p = sub.add_parser("bench", help="time every approximator of an operator side by side through the engine")
    p.add_argument("--operator", "-o", default="smooth.l0", help="operator whose model to bench (smooth.l0)")
    p.add_argument("--model", "-m", help="bench this model instead of the one installed for the operator")
    p.add_argument("--size", default="1080p", help="frame height: 1080p (1920x1080, default), 2160p, 480p, ...")
    p.add_argument("--runs", type=int, default=3, help="timed runs per row after one warm-up (median reported)")
    p.add_argument("--reference-runs", type=int, default=1, help="timed runs of the reference operator")
    p.add_argument("--image", type=Path, help="photo or raw file to use (default: a sample-set photo)")
    p.add_argument(
        "--rows", help="comma-separated rows: reference, baseline, auto and approximator names (default: all of them)"
    )
    p.add_argument("--device", help="cpu, cuda, cuda:N or mps (default: cuda when available, else cpu)")
    _add_preference_arguments(p)
    p.add_argument("--json", action="store_true", help="print the bench as JSON instead of the table")
    p.add_argument("--plot", type=Path, help="write the speed-quality curve here (PNG)")
    p.set_defaults(run=_cmd_bench)

    p = sub.add_parser("build", help="from an operator to a measured model folder: split, train, measure, report")
    p.add_argument("operator", help="a registered operator (a plugin's too)")
    p.add_argument("--param", "-p", action="append", type=_parse_param, metavar="NAME=VALUE", help="operator parameter")
    p.add_argument("--source", default="sample", help="'sample' (default), a FiveK root or a photo folder")
    p.add_argument(
        "--budget",
        type=_positive_number,
        default=10.0,
        metavar="MINUTES",
        help="time budget of the whole build in minutes (default 10; training gets 70%%)",
    )
    p.add_argument("--out", type=_folder, help="the model folder (default models/OPERATOR); a rerun resumes there")
    p.add_argument("--device", help="where to measure: cpu, cuda, cuda:N or mps (default: cuda when available)")
    p.add_argument("--resolution", default="1080p", help="measuring resolution (default 1080p; native keeps sizes)")
    p.add_argument(
        "--timing-height",
        type=_count,
        default=1080,
        metavar="PIXELS",
        help="time the approximators on a 16:9 frame of this height (default 1080: 1920x1080)",
    )
    p.add_argument(
        "--warm-start",
        default="auto",
        metavar="MODEL",
        help="what training starts from: auto (default: the model installed for the operator, when its "
        "network has the config's shape), none (the config's own start), or a model name, folder or file",
    )
    p.add_argument(
        "--extras",
        type=_extras,
        default="auto",
        metavar="STAGES",
        help="train more approximators after the CAN: lowres (Deep Guided Filter), pruned (+ int8), grid "
        "(bilateral grid): auto (default: when the budget gives each 2 min, 15%% of the training time "
        "each), all, none, or names joined by commas (grid,lowres)",
    )
    p.add_argument(
        "--train-args",
        metavar="'OPTIONS'",
        type=_train_args,
        help="fip train options for every training stage, quoted: e.g. '--trainer.accelerator gpu "
        "--trainer.devices 4 --trainer.strategy ddp' (Lightning on several GPUs or nodes)",
    )
    p.add_argument(
        "--report",
        action="append",
        type=_named_source,
        metavar="NAME=PHOTOS",
        help="also measure on every photo of PHOTOS (a folder or FiveK root), reported as NAME, never used "
        "to choose (repeatable)",
    )
    p.add_argument(
        "--split-file",
        type=_existing_file,
        metavar="JSON",
        help='fix the split: {"train": [...], "validation": [...], "test": [...]} photo names of --source '
        "(default: the source's test photos test, a fifth of the rest validate)",
    )
    p.set_defaults(run=_cmd_build)

    p = sub.add_parser("package", help="copy a built model folder into a package's models folder (a plugin's)")
    p.add_argument("model", type=Path, help="the model folder (fip build's --out)")
    p.add_argument(
        "--into",
        type=Path,
        required=True,
        help="the package folder a fip.models entry point names, e.g. my_plugin/models",
    )
    p.add_argument("--name", help="the installed model's name (default: PACKAGE/OPERATOR)")
    p.add_argument("--overwrite", action="store_true", help="replace a model already packaged under that name")
    p.set_defaults(run=_cmd_package)

    p = sub.add_parser(
        "quickstart",
        help="the main job: fip build on the built-in sample set, then auto against the reference on a 12 MP photo",
    )
    p.add_argument("--operator", default="smooth.l0", help="operator with a training config (smooth.l0)")
    p.add_argument(
        "--minutes",
        type=_positive_number,
        default=10.0,
        help="the build's time budget in minutes (default 10; training gets 70%%)",
    )
    p.add_argument("--out", default="runs/quickstart", help="the model folder, with its report (a rerun resumes)")
    p.add_argument("--device", help="where to measure: cpu, cuda, cuda:N or mps (default: cuda when available)")
    p.set_defaults(run=_cmd_quickstart)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fip`` command; return its exit status (see the module docstring)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.showwarning = _show_warning
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)  # stop as on Ctrl-C: workers ended, the summary printed
    try:
        return _run(argv)
    except FipError as exc:
        print(f"fip: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fip: interrupted; rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `fip operators | head`: the reader has gone; end as quietly as a Unix tool would
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python flushes stdout again at exit
        return EXIT_BROKEN_PIPE


_python_showwarning = warnings.showwarning


def _terminated(signum, frame) -> None:
    raise KeyboardInterrupt


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """fip's own warnings (a plugin or model that could not load, ...) as one line each; others as Python shows them."""
    if category.__module__.partition(".")[0] != "fip":
        _python_showwarning(message, category, filename, lineno, file, line)
        return
    print(f"fip: warning: {str(message).removeprefix('fip: ')}", file=file or sys.stderr)


def _run(argv: list[str]) -> int:
    verbose = argv[:1] in (["-v"], ["--verbose"])
    if verbose and argv[1:2] in (["train"], ["demo"]):  # `fip -v train ...`: the flag is fip's, the rest theirs
        _configure_logging(verbose=True)
        argv = argv[1:]
    if argv[:1] == ["train"]:
        from fip.training import run_training

        run_training(argv[1:])
        return EXIT_OK
    if argv[:1] == ["demo"]:
        require_extra("demo", "gradio")
        from fip_demo.app import main as demo_main

        demo_main(argv[1:])
        return EXIT_OK
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    return args.run(args)


def _configure_logging(verbose: bool) -> None:
    """fip's own messages at INFO (DEBUG with -v); other libraries' (PIL's plugin search, torch's exit-time
    statistics...) from WARNING only, -v or not."""
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    for name in ("fip", "fip_operators", "fip_demo"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)
