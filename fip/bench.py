"""``fip bench``: every way fip can run an operator's network, timed side by side in one process.

One photo at one size (a 1920x1080 frame by default), each row warmed up once and then timed ``runs`` times
(median). Quality is PSNR against the reference operator's output on the same frame. The fixed **baseline** is
the CAN with its normalization folded into the convolutions (with this frame's own statistics, so it equals the
paper-exact output), fp32, eager PyTorch, channels_last: every ``speedup_vs_baseline`` divides its time.

The lower bound of a row is its multiply-adds x 2 divided by the peak FLOP/s that a large matrix multiply reaches
on this machine in the row's precision (measured here, first): no convolution can beat its GEMM.
"""

from __future__ import annotations

import contextlib
import copy
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from fip.compress import calibration_photos, multiply_adds
from fip.errors import InputError
from fip.infer import LoadedModel, _downscaled, model_for_operator, run_model, to_batch
from fip.metrics import psnr
from fip.models.can import FoldedCAN, fold, image_statistics
from fip.variants import BENCH_ROWS, Variant

@dataclass
class Row:
    variant: str
    seconds: float
    peak_mb: float
    psnr: float | None
    speedup_vs_baseline: float | None = None
    speedup_vs_reference: float | None = None
    precision: str = "fp32"
    width: int | None = None  # feature channels per layer (CAN24: 24)
    gmacs: float | None = None
    bound_seconds: float | None = None  # multiply-adds x 2 / measured GEMM peak in this precision
    note: str = ""


@dataclass
class Machine:
    description: str
    threads: int
    peak_gflops: dict[str, float] = field(default_factory=dict)


class _PeakRss:
    """Peak resident memory of this process above its level at entry, sampled every 2 ms by a thread."""

    def __init__(self) -> None:
        self.peak = 0
        self._page = os.sysconf("SC_PAGE_SIZE")

    def _rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self._page

    def __enter__(self) -> _PeakRss:
        self._start = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss() - self._start)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss() - self._start)


def _timed(fn: Callable[[], np.ndarray], runs: int, warmup: int = 1) -> tuple[float, float, np.ndarray]:
    """(median seconds, peak MB above the starting level, last output)."""
    for _ in range(warmup):
        out = fn()
    seconds = []
    with _PeakRss() as memory:
        for _ in range(runs):
            start = time.perf_counter()
            out = fn()
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), memory.peak / 2**20, out


def gemm_peak_gflops(dtype: torch.dtype, size: int = 2048, seconds: float = 1.0) -> float:
    """GFLOP/s of a ``size``-square matrix multiply in ``dtype`` (best of repeated runs for ~``seconds``)."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def machine_description() -> str:
    """The CPU model and core count (and the GPU, if torch sees one)."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def _to_image(out: torch.Tensor) -> np.ndarray:
    return out.float()[0].clamp(0, 1).permute(1, 2, 0).numpy()


def _bench_photo(image: str | os.PathLike[str] | None, height: int, width: int):
    from fip.raw import load_photo

    if image is None:
        from fip.data.sources import sample_source

        image = next(p.path for p in sample_source().select("test"))
    return load_photo(Path(image)).resized(height, width)


def _compact_models(operator: str, model: LoadedModel) -> list[LoadedModel]:
    """The pruned models of ``operator``: the shipped one and any in runs/compact (made by scripts/ship_compact.py)."""
    from fip.infer import load_model

    found = [model.pruned] if model.pruned is not None else []
    for path in sorted(Path("runs/compact").glob(f"{operator}.curve-w*.pt")):
        found.append(load_model(path))
    return sorted(found, key=lambda m: -m.net.width)


def run_bench(
    operator: str,
    size: tuple[int, int] = (1080, 1920),
    runs: int = 3,
    image: str | os.PathLike[str] | None = None,
    rows: tuple[str, ...] = BENCH_ROWS,
    reference_runs: int = 1,
    progress: Callable[[Row], None] | None = None,
) -> tuple[list[Row], Machine]:
    """Measure the rows named in ``rows`` (see :data:`fip.variants.BENCH_ROWS`) for ``operator``'s shipped model."""
    from fip.registry import get_operator
    from fip.variants import STATS_MEGAPIXELS

    if runs < 1 or reference_runs < 1:
        raise InputError(f"runs and reference runs must be at least 1; got {runs} and {reference_runs}")
    if unknown := set(rows) - set(BENCH_ROWS):
        raise InputError(f"unknown bench rows {sorted(unknown)}; choose from {', '.join(BENCH_ROWS)}")
    spec = get_operator(operator)
    model = model_for_operator(operator)
    if model.conditioning is not None:
        raise InputError(f"fip bench runs single-operator models; {model.name} takes conditioning maps")
    photo = _bench_photo(image, *size)
    x = to_batch(photo.srgb)
    threads = torch.get_num_threads()
    machine = Machine(machine_description(), threads, {
        "fp32": gemm_peak_gflops(torch.float32), "bf16": gemm_peak_gflops(torch.bfloat16)})  # fmt: skip
    machine.peak_gflops["int8"] = machine.peak_gflops["bf16"]  # no int8 GEMM to time here: bf16's is the bound used
    results: list[Row] = []

    def record(row: Row) -> None:
        results.append(row)
        if progress:
            progress(row)

    def apply_reference() -> np.ndarray:
        return spec.apply(photo.view(spec.input), spec.resolve_params(model.params))

    if "reference" in rows:  # warmed up like every row; its output is what every row is measured against
        seconds, peak, reference = _timed(apply_reference, reference_runs)
        record(Row("reference", seconds, peak, None, note=spec.name))
    else:
        reference = apply_reference()

    def add(name: str, fn: Callable[[], np.ndarray], precision: str = "fp32", net: torch.nn.Module | None = None,
            note: str = "", net_size: tuple[int, int] = size) -> None:  # fmt: skip
        seconds, peak, out = _timed(fn, runs)
        gmacs = multiply_adds(net, *net_size) / 1e9 if net is not None else None
        bound = gmacs * 2 / machine.peak_gflops[precision] if gmacs else None
        record(Row(name, seconds, peak, psnr(out, reference), precision=precision, width=getattr(net, "width", None),
                   gmacs=gmacs, bound_seconds=bound, note=note))  # fmt: skip

    net = model.net
    folded = (fold(net) if net.folds_exactly else fold(net, image_statistics(net, x))).to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), contextlib.ExitStack() as stack:  # the stack holds scratch folders for ONNX files
        if "baseline" in rows:
            add("baseline", lambda: _to_image(folded(xc)), net=folded,
                note="folded with this frame's statistics, eager, channels_last")  # fmt: skip
        if "paper-exact" in rows:
            add("paper-exact", lambda: run_model(net, photo.srgb, variant=Variant.FULL), net=folded,
                note="per-image statistics at every layer, as trained")  # fmt: skip
        if "fast" in rows:
            add("fast", lambda: run_model(net, photo.srgb, variant=Variant.FAST), net=folded,
                note=f"statistics from a {STATS_MEGAPIXELS} MP pass, folded (fip's fast variant)")  # fmt: skip
        if "compiled" in rows:
            compiled = torch.compile(folded)
            add("compiled", lambda: _to_image(compiled(xc)), net=folded, note="torch.compile (Inductor)")
        if "bf16" in rows or "bf16-compiled" in rows:
            half = copy.deepcopy(folded).to(torch.bfloat16)
            xh = xc.to(torch.bfloat16)
            if "bf16" in rows:
                add("bf16", lambda: _to_image(half(xh)), "bf16", folded, "eager")
            if "bf16-compiled" in rows:
                half_compiled = torch.compile(half)
                add("bf16-compiled", lambda: _to_image(half_compiled(xh)), "bf16", folded, "torch.compile")
        calibration = [_downscaled(x, 0.25)]
        if "int8-torchao" in rows:
            quantized = _torchao_int8(folded, calibration)
            add("int8-torchao", lambda: _to_image(quantized(xc)), "int8", folded,
                "torchao PT2E, X86InductorQuantizer, torch.compile; calibrated on this frame at 0.25 MP")  # fmt: skip
        if "onnxruntime" in rows or "onnxruntime-int8" in rows:
            from fip.ort import OrtNet, write_onnx

            scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fip-bench-")))
            if "onnxruntime" in rows:
                session = OrtNet(write_onnx(folded, scratch / "fp32.onnx"), folded.receptive_radius)
                add("onnxruntime", lambda: _to_image(session(x)), net=folded, note="ONNX Runtime, fp32")
            if "onnxruntime-int8" in rows:
                calib = [c.numpy() for c in calibration]
                session8 = OrtNet(write_onnx(folded, scratch / "int8.onnx", calib), folded.receptive_radius)
                add("onnxruntime-int8", lambda: _to_image(session8(x)), "int8", folded,
                    "ONNX Runtime static int8 (QDQ); calibrated on this frame at 0.25 MP")  # fmt: skip
        if "pruned" in rows:
            for compact in _compact_models(operator, model):
                _pruned_rows(compact, x, add, model, Path(stack.enter_context(tempfile.TemporaryDirectory())))
        if "lowres" in rows:
            from fip.variants import LOWRES_MEGAPIXELS

            low_size = tuple(_downscaled(x, LOWRES_MEGAPIXELS).shape[2:])
            add("lowres", lambda: run_model(net, photo.srgb, variant=Variant.LOWRES), "bf16", folded,
                f"the network at {low_size[1]}x{low_size[0]} in bf16 + guided-filter upsampling; timed whole, "
                "statistics pass included", net_size=low_size)  # fmt: skip
            if model.lowres is not None:
                guided = model.lowres.net
                small = tuple(guided.downscale(x).shape[2:])
                add("lowres-trained", lambda: run_model(guided, photo.srgb, variant=Variant.LOWRES), "bf16", folded,
                    f"Deep Guided Filter trained end to end: its CAN at {small[1]}x{small[0]} in bf16, learned "
                    "guidance map and filter at full size", net_size=small)  # fmt: skip
    baseline = next((r.seconds for r in results if r.variant == "baseline"), None)
    ref_seconds = next((r.seconds for r in results if r.variant == "reference"), None)
    for row in results:
        row.speedup_vs_baseline = baseline / row.seconds if baseline else None
        row.speedup_vs_reference = ref_seconds / row.seconds if ref_seconds else None
    return results, machine


def _pruned_rows(compact: LoadedModel, x: torch.Tensor, add: Callable, model: LoadedModel, scratch: Path) -> None:
    from fip.ort import OrtNet, write_onnx

    folded = fold(compact.net).to(memory_format=torch.channels_last)
    width = folded.width
    xc = x.contiguous(memory_format=torch.channels_last)
    add(f"pruned-w{width}", lambda: _to_image(folded(xc)), net=folded, note="pruned + fine-tuned, eager")
    half = copy.deepcopy(folded).to(torch.bfloat16)
    xh = xc.to(torch.bfloat16)
    shipped = compact is model.pruned
    add(f"pruned-w{width}-bf16", lambda: _to_image(half(xh)), "bf16", folded,
        "eager (the 'pruned' variant)" if shipped else "eager")  # fmt: skip
    if shipped and model.int8 is not None:
        path, note = model.int8, "ONNX Runtime int8, shipped (the 'int8' variant)"
    else:
        path = write_onnx(folded, scratch / f"w{width}.int8.onnx", [p.numpy() for p in calibration_photos()])
        note = "ONNX Runtime int8, calibrated on the sample set"
    session = OrtNet(path, folded.receptive_radius)
    add(f"pruned-w{width}-int8", lambda: _to_image(session(x)), "int8", folded, note)


def _torchao_int8(folded: FoldedCAN, calibration: list[torch.Tensor]) -> Callable:
    import torch._inductor.config as inductor_config
    import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as x86
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
    example = torch.rand(1, folded.in_channels, 64, 96).contiguous(memory_format=torch.channels_last)
    dims = {2: torch.export.Dim("height", min=2), 3: torch.export.Dim("width", min=2)}
    exported = torch.export.export(folded, (example,), dynamic_shapes=({**dims},)).module()
    prepared = prepare_pt2e(exported, quantizer)
    for image in calibration:
        prepared(image)
    inductor_config.freezing = True  # constant-folds the int8 weights: the x86 int8 kernels need it
    return torch.compile(convert_pt2e(prepared))


def format_table(results: list[Row], machine: Machine, operator: str, size: tuple[int, int], runs: int) -> str:
    baseline = next((r for r in results if r.variant == "baseline"), None)
    lines = [
        f"fip bench: {operator} at {size[1]}x{size[0]}; median of {runs} runs after one warm-up; "
        f"{machine.description}, {machine.threads} threads.",
        "GEMM peak here: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in machine.peak_gflops.items() if k != "int8"),
    ]
    if baseline and baseline.bound_seconds:
        lines.append(f"Lower bound for the baseline network: {baseline.gmacs:.1f} GMAC x 2 / "
                     f"{machine.peak_gflops['fp32']:.0f} GFLOP/s = {baseline.bound_seconds:.3f} s "
                     f"(baseline runs at {baseline.bound_seconds / baseline.seconds:.0%} of it).")  # fmt: skip
    lines += ["", "| variant | s | peak MB | PSNR (dB) | vs baseline | vs reference | GMAC | x bound | note |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip

    def number(value: float | None, fmt: str, unit: str = "") -> str:
        return "" if value is None else format(value, fmt) + unit

    for r in results:
        over = r.seconds / r.bound_seconds if r.bound_seconds else None
        lines.append(f"| {r.variant} | {r.seconds:.3f} | {r.peak_mb:.0f} | {number(r.psnr, '.2f')} | "
                     f"{number(r.speedup_vs_baseline, '.2f', 'x')} | {number(r.speedup_vs_reference, '.1f', 'x')} | "
                     f"{number(r.gmacs, '.1f')} | {number(over, '.1f')} | {r.note} |")  # fmt: skip
    return "\n".join(lines)


def to_json(results: list[Row]) -> list[dict]:
    return [asdict(r) for r in results]


def plot_curve(results: list[Row], operator: str, path: str | os.PathLike[str]) -> Path:
    """Seconds vs PSNR, one line per precision through the widths (24 = unpruned, then the pruned ones)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from fip.files import atomic_write_bytes

    unpruned = {"baseline": "fp32", "bf16": "bf16", "onnxruntime-int8": "int8"}
    series: dict[str, list[Row]] = {"fp32": [], "bf16": [], "int8": []}
    for r in results:
        if r.variant in unpruned:
            series[unpruned[r.variant]].append(r)
        elif r.variant.startswith("pruned-"):
            series[r.precision].append(r)
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    for precision, points in series.items():
        # along the pruning ratio: the unpruned network first, then the pruned models from wide to narrow
        points = sorted((p for p in points if p.psnr is not None), key=lambda p: (-(p.width or 0), "pruned" in p.variant))
        if not points:
            continue
        axes.plot([p.seconds for p in points], [p.psnr for p in points], marker="o", label=precision)
        for p in points:
            label = f"w{p.width}" + ("*" if p.variant.startswith("pruned-") else "")
            axes.annotate(label, (p.seconds, p.psnr), textcoords="offset points", xytext=(4, 4), fontsize=8)
    for r in results:
        if r.variant in ("paper-exact", "lowres", "lowres-trained") and r.psnr is not None:
            axes.scatter([r.seconds], [r.psnr], marker="s", label=r.variant)
    baseline = next((r for r in results if r.variant == "baseline"), None)
    if baseline is not None:
        axes.axvline(baseline.seconds / 8, color="grey", linestyle=":", label="8x faster than baseline")
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axes.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes.set_xlabel("seconds per frame (log scale)")
    axes.set_ylabel("PSNR vs reference (dB)")
    axes.set_title(f"{operator}: speed vs quality (width x precision; * = pruned, fine-tuned model)", fontsize=10)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8)
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return atomic_write_bytes(path, buffer.getvalue())


__all__ = ["Machine", "Row", "format_table", "gemm_peak_gflops", "machine_description", "plot_curve", "run_bench", "to_json"]
