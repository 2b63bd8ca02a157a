"""``fip bench``: an operator's approximators timed side by side in one process, through the engine users run.

One photo at one size (a 1920x1080 frame by default), each row warmed up once and then timed ``runs`` times
(median). Every approximator row runs the plan ``fip apply`` would run for it (:func:`fip.runtime.plan.make_plan`,
:func:`fip.runtime.execute.run_plan`), and the ``auto`` row is exactly ``fip apply``'s for the same preference
(default ``balanced``). The *chosen by* column marks what each preset (``quality``, ``balanced``, ``speed``) runs
on this device. Quality is PSNR against the reference operator's output on the same frame.

Two rows are yardsticks, not approximators: ``reference``, the operator itself, and ``baseline``, the model's
network folded with this frame's own statistics (so its output equals the paper-exact one), float32, eager,
channels_last, without the statistics pass: ``vs baseline`` divides its time. The lower bound of a network row is
its multiply-adds x 2 over the peak FLOP/s a large matrix multiply reaches on this device in the row's precision
(measured first): no convolution beats its GEMM.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from fip.compress import multiply_adds
from fip.errors import InputError
from fip.metrics import psnr
from fip.models.can import fold, image_statistics
from fip.models.catalogue import Model, model_for_operator, open_model
from fip.models.inputs import input_scale, normalize_input, scales_output
from fip.raw import Photo
from fip.registry import get_operator
from fip.runtime.devices import describe, device_class, native_bf16, resolve_device, synchronize
from fip.runtime.engine import make_plan
from fip.runtime.execute import Views, prepared, run_plan, to_image, with_maps
from fip.runtime.plan import AUTO, PlanError, Preference

YARDSTICKS = ("reference", "baseline")


@dataclass
class Row:
    name: str
    seconds: float | None
    peak_mb: float | None
    psnr: float | None
    approximator: str | None = None  # what ran (the auto row names its pick)
    precision: str = ""
    working_size: tuple[int, int] | None = None
    gmacs: float | None = None
    bound_seconds: float | None = None  # multiply-adds x 2 / measured GEMM peak in this precision
    speedup_vs_reference: float | None = None
    speedup_vs_baseline: float | None = None
    note: str = ""
    chosen_by: tuple[str, ...] = ()  # the presets whose auto runs this row's approximator here


@dataclass
class Bench:
    operator: str
    model: str
    size: tuple[int, int]
    runs: int
    device: str
    device_class: str
    machine: str
    peak_gflops: dict[str, float] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    preference: str = "balanced"  # what the auto row trades


class _PeakMemory:
    """Peak memory above the level at entry: the process's resident memory sampled every 2 ms by a thread on the
    CPU, the allocator's peak on a GPU."""

    def __init__(self, device: torch.device):
        self.device, self.peak = device, 0

    def _rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> _PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            return self
        self._start = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss() - self._start)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._start
            return
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss() - self._start)


def _timed(
    fn: Callable[[], np.ndarray], runs: int, device: torch.device, warmup: int = 1
) -> tuple[float, float, np.ndarray]:
    """(median seconds, peak MB above the starting level, last output)."""
    for _ in range(warmup):
        out = fn()
    seconds = []
    with _PeakMemory(device) as memory:
        for _ in range(runs):
            synchronize(device)
            start = time.perf_counter()
            out = fn()
            synchronize(device)
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), memory.peak / 2**20, out


def gemm_peak_gflops(
    dtype: torch.dtype, device: torch.device | None = None, size: int = 2048, seconds: float = 1.0
) -> float:
    """GFLOP/s of a ``size``-square matrix multiply in ``dtype`` on ``device`` (best of repeated runs)."""
    device = device or torch.device("cpu")
    a, b = (torch.randn(size, size, device=device).to(dtype) for _ in range(2))
    a @ b
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def machine_description() -> str:
    """The CPU model and core count, with PyTorch's version (for benchmark headers)."""
    return describe(torch.device("cpu"))


def _bench_photo(image: str | os.PathLike[str] | None, height: int, width: int) -> Photo:
    from fip.pipeline import open_photo

    if image is None:
        from fip.data.sources import sample_source

        image = next(p.path for p in sample_source().select("test"))
    return open_photo(Path(image)).resized(height, width)


def run_bench(
    operator: str,
    size: tuple[int, int] = (1080, 1920),
    runs: int = 3,
    image: str | os.PathLike[str] | None = None,
    rows: tuple[str, ...] | None = None,
    reference_runs: int = 1,
    device: str | torch.device | None = None,
    progress: Callable[[Row], None] | None = None,
    *,
    model: str | Model | None = None,
    bounds: bool = True,
    preference: Preference | None = None,
    calibrate: bool | None = None,
) -> Bench:
    """Measure ``rows`` (default: ``reference``, ``baseline``, every approximator of the model, ``auto``) for
    ``operator``'s installed model (or ``model``) on one photo of ``size`` (height, width) on ``device``;
    ``bounds``: measure the GEMM peaks first, for each row's lower bound. ``reference_runs=0`` leaves the reference
    out (no ``reference`` row, no PSNR, no speed-up against it): timings alone, where a slow reference at a large
    size would take longer than the rows themselves. ``preference`` steers the ``auto`` row; each row says which
    presets choose it (``chosen_by``). ``calibrate``: whether ``auto`` may first time the model on this machine
    (:func:`fip.runtime.engine.make_plan`); ``False`` where the bench is itself measuring the card's timings."""
    if runs < 1 or reference_runs < 0:
        raise InputError(
            f"runs must be at least 1 and reference runs at least 0 (0: no reference); got {runs} and {reference_runs}"
        )
    spec = get_operator(operator)
    model = model if isinstance(model, Model) else (open_model(model) if model else model_for_operator(operator))
    known = (*YARDSTICKS, *model.card.approximators, AUTO)  # `reference` is timed as the yardstick it is
    rows = tuple(rows) if rows else known
    if unknown := [r for r in rows if r not in known]:
        raise InputError(f"unknown bench rows {unknown}; {model.name} has: {', '.join(known)}")
    torch_device = resolve_device(device)
    photo = _bench_photo(image, *size)
    views = Views.of_photo(photo)
    params = spec.resolve_params(model.params if model.operator == operator else None)
    bench = Bench(
        operator,
        model.name,
        size,
        runs,
        str(torch_device),
        device_class(torch_device),
        describe(torch_device),
        preference=str(preference or Preference()),
    )
    # What each preset runs here (its calibration, where the card has no timings for this class, happens now).
    picks = make_plan(
        model, AUTO, size, torch_device, operator=operator, params=params, preference=preference, calibrate=calibrate
    ).choices

    def chosen_by(name: str) -> tuple[str, ...]:
        return tuple(pick.prefer for pick in picks if pick.approximator == name)

    # bfloat16's peak only where the device computes it natively (elsewhere bf16 approximators run in float32)
    precisions = [("float32", torch.float32)] + [("bfloat16", torch.bfloat16)] * native_bf16(torch_device)
    for precision, dtype in precisions if bounds else ():
        bench.peak_gflops[precision] = gemm_peak_gflops(dtype, torch_device)

    def record(row: Row) -> None:
        bench.rows.append(row)
        if progress:
            progress(row)

    reference_seconds, reference = None, None
    if reference_runs:
        reference_seconds, peak, reference = _timed(
            lambda: spec.apply(photo.view(spec.input), params), reference_runs, torch.device("cpu")
        )
        if "reference" in rows:
            record(
                Row(
                    "reference",
                    reference_seconds,
                    peak,
                    None,
                    note=f"{spec.name}, on the CPU",
                    chosen_by=chosen_by("reference"),
                )
            )
    main = model.card.networks.get("net")
    plain = main is not None and main.kind != "onnx" and not {"guided", "grid"} & set(main.architecture)
    if "baseline" in rows and plain:
        net = prepared(model, "net", torch_device)
        maps = model.maps(operator, params)
        x = views.srgb.to(torch_device)
        input_norm = getattr(net, "input_norm", None)
        scale = input_scale(input_norm, x)  # what the engine does to the photo before the network sees it
        x = with_maps(normalize_input(input_norm, x, scale), maps).contiguous(memory_format=torch.channels_last)
        back = scale if scales_output(input_norm) else 1.0
        with torch.inference_mode():
            folded = fold(net, image_statistics(net, x)) if not net.folds_exactly else fold(net)
            folded = folded.to(torch_device, memory_format=torch.channels_last)
            seconds, peak, out = _timed(lambda: to_image(folded(x) * back), runs, torch_device)
        gmacs = multiply_adds(folded, *size) / 1e9
        bound = gmacs * 2 / bench.peak_gflops["float32"] if bounds else None
        record(
            Row(
                "baseline",
                seconds,
                peak,
                _psnr(out, reference),
                "full",
                "float32",
                None,
                gmacs,
                bound,
                note="the network folded with this frame's statistics, float32, eager, channels_last",
            )
        )
    for name in [r for r in rows if r not in YARDSTICKS]:
        try:
            plan = make_plan(
                model,
                name,
                size,
                torch_device,
                operator=operator,
                params=params,
                preference=preference if name == AUTO else None,
                calibrate=calibrate,
            )
        except PlanError as exc:
            record(Row(name, None, None, None, note=f"cannot run here: {exc}"))
            continue
        maps = model.maps(operator, params)
        with torch.inference_mode():
            seconds, peak, out = _timed(
                lambda plan=plan, maps=maps: to_image(run_plan(plan, model, views, maps)), runs, torch_device
            )
        gmacs, bound = _bound(model, plan, bench.peak_gflops)
        note = plan.reason if name == AUTO else model.card.approximator(name).description
        record(
            Row(
                name,
                seconds,
                peak,
                _psnr(out, reference),
                plan.approximator,
                plan.precision,
                plan.working_size,
                gmacs,
                bound,
                note=note,
                chosen_by=() if name == AUTO else chosen_by(name),
            )
        )
    baseline = next((r.seconds for r in bench.rows if r.name == "baseline"), None)
    for row in bench.rows:
        if row.seconds:
            row.speedup_vs_reference = reference_seconds / row.seconds if reference_seconds else None
            row.speedup_vs_baseline = baseline / row.seconds if baseline else None
    return bench


def _psnr(out: np.ndarray, reference: np.ndarray | None) -> float | None:
    return None if reference is None else psnr(out, reference)


def _bound(model: Model, plan, peaks: dict[str, float]) -> tuple[float | None, float | None]:
    """(GMAC, lower bound in seconds) of a network plan: the network's multiply-adds where it runs."""
    approximator = model.card.approximator(plan.approximator)
    if approximator.network is None or plan.precision not in peaks:
        return None, None
    network = model.network(approximator.network)
    if not isinstance(network, torch.nn.Module):
        return None, None
    if hasattr(network, "multiply_adds"):  # a bilateral grid: its network's and its per-pixel work
        gmacs = network.multiply_adds(*plan.size) / 1e9
        return gmacs, gmacs * 2 / peaks[plan.precision]
    can = getattr(network, "can", network)
    height, width = plan.working_size or plan.size
    gmacs = multiply_adds(can, height, width) / 1e9
    return gmacs, gmacs * 2 / peaks[plan.precision]


def format_table(bench: Bench) -> str:
    """The bench as a Markdown table under a header that names the machine, the GEMM peaks and the baseline's
    bound."""
    height, width = bench.size
    lines = [
        f"fip bench: {bench.operator} ({bench.model}) at {width}x{height} on {bench.device} (class "
        f"{bench.device_class}); median of {bench.runs} runs after one warm-up; {bench.machine}; auto: prefer "
        f"{bench.preference}.",
        "GEMM peak here: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in bench.peak_gflops.items()),
    ]
    baseline = next((r for r in bench.rows if r.name == "baseline"), None)
    if baseline and baseline.bound_seconds:
        lines.append(
            f"Lower bound of the baseline network: {baseline.gmacs:.1f} GMAC x 2 / "
            f"{bench.peak_gflops['float32']:.0f} GFLOP/s = {baseline.bound_seconds:.3f} s "
            f"(it runs at {baseline.bound_seconds / baseline.seconds:.0%} of it)."
        )
    lines += [
        "",
        "| row | runs | chosen by | s | peak MB | PSNR (dB) | vs reference | vs baseline | precision | "
        "works at | GMAC | x bound | note |",
        "|---|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|---|",
    ]

    def number(value: float | None, fmt: str, unit: str = "") -> str:
        return "" if value is None else format(value, fmt) + unit

    for r in bench.rows:
        over = r.seconds / r.bound_seconds if r.bound_seconds and r.seconds else None
        works = f"{r.working_size[1]}x{r.working_size[0]}" if r.working_size else ""
        ran = r.approximator if r.approximator and r.approximator != r.name else ""
        lines.append(
            f"| {r.name} | {ran} | {', '.join(r.chosen_by)} | {number(r.seconds, '.3f')} | {number(r.peak_mb, '.0f')} | "
            f"{number(r.psnr, '.2f')} | {number(r.speedup_vs_reference, '.1f', 'x')} | "
            f"{number(r.speedup_vs_baseline, '.2f', 'x')} | {r.precision} | {works} | {number(r.gmacs, '.1f')} | "
            f"{number(over, '.1f')} | {r.note} |"
        )
    return "\n".join(lines)


def to_json(bench: Bench) -> dict:
    return asdict(bench)


def plot_curve(bench: Bench, path: str | os.PathLike[str]) -> Path:
    """Seconds against PSNR, one point per approximator, the reference's time as a vertical line."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from fip.files import atomic_write_bytes

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    points = [r for r in bench.rows if r.seconds and r.psnr is not None and r.name != AUTO]
    for r in points:
        marker = "s" if r.name == "baseline" else "o"
        axes.scatter([r.seconds], [r.psnr], marker=marker)
        axes.annotate(r.name, (r.seconds, r.psnr), textcoords="offset points", xytext=(4, 4), fontsize=8)
    auto = next((r for r in bench.rows if r.name == AUTO and r.seconds), None)
    if auto is not None and auto.psnr is not None:
        axes.scatter(
            [auto.seconds],
            [auto.psnr],
            s=160,
            facecolors="none",
            edgecolors="black",
            label=f"auto ({auto.approximator})",
        )
    reference = next((r for r in bench.rows if r.name == "reference"), None)
    if reference is not None:
        axes.axvline(reference.seconds, color="grey", linestyle=":", label=f"reference ({reference.seconds:.2f} s)")
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set_xlabel(f"seconds per {bench.size[1]}x{bench.size[0]} photo on {bench.device} (log scale)")
    axes.set_ylabel("PSNR vs reference (dB)")
    axes.set_title(f"{bench.operator}: speed against quality of each approximator", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return atomic_write_bytes(path, buffer.getvalue())


__all__ = [
    "Bench",
    "Row",
    "format_table",
    "gemm_peak_gflops",
    "machine_description",
    "plot_curve",
    "run_bench",
    "to_json",
]
