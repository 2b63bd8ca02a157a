"""Evaluating an approximator against its reference operator: PSNR, SSIM and timing per photo."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fip.data.pairs import generate_pairs, read_manifest
from fip.data.sources import PhotoSource, Resolution
from fip.errors import FipError
from fip.imaging import read_image_file
from fip.infer import LoadedModel, run_loaded
from fip.metrics import psnr, ssim
from fip.registry import get_operator
from fip.variants import Variant


@dataclass
class EvalReport:
    model: str
    operator: str
    params: dict[str, Any]
    resolution: str
    pairs_dir: Path
    images: list[dict[str, Any]] = field(default_factory=list)

    @property
    def mean_psnr(self) -> float:
        return float(np.mean([i["psnr"] for i in self.images]))

    @property
    def mean_ssim(self) -> float:
        return float(np.mean([i["ssim"] for i in self.images]))

    @property
    def mean_input_psnr(self) -> float:
        """PSNR of the photos themselves against the reference: what doing nothing scores, the bar a model clears."""
        return float(np.mean([i["input_psnr"] for i in self.images]))

    def to_json(self) -> dict[str, Any]:
        out = {
            "model": self.model,
            "operator": self.operator,
            "params": self.params,
            "resolution": self.resolution,
            "images": self.images,
            "mean_psnr": self.mean_psnr,
            "mean_ssim": self.mean_ssim,
            "mean_input_psnr": self.mean_input_psnr,
        }
        if all("reference_seconds" in i for i in self.images):
            out["mean_speedup"] = float(np.mean([i["reference_seconds"] / i["model_seconds"] for i in self.images]))
        return out

    def table(self) -> str:
        timed = all("reference_seconds" in i for i in self.images)
        lines = [f"{self.model} vs {self.operator} {self.params} at {self.resolution}", ""]
        header = "| photo | size | PSNR (dB) | SSIM | input PSNR (dB) |" + (
            " reference (s) | model (s) | speed-up |" if timed else "")  # fmt: skip
        lines += [header, "|---|---|---:|---:|---:|" + ("---:|---:|---:|" if timed else "")]
        for i in self.images:
            row = (f"| {i['name']} | {i['size'][1]}x{i['size'][0]} | {i['psnr']:.2f} | {i['ssim']:.4f} "
                   f"| {i['input_psnr']:.2f} |")  # fmt: skip
            if timed:
                row += f" {i['reference_seconds']:.2f} | {i['model_seconds']:.2f} | {i['reference_seconds'] / i['model_seconds']:.1f}x |"
            lines.append(row)
        mean = f"| **mean** | | **{self.mean_psnr:.2f}** | **{self.mean_ssim:.4f}** | {self.mean_input_psnr:.2f} |"
        lines.append(mean + (
            f" | | **{self.to_json()['mean_speedup']:.1f}x** |" if timed else ""))  # fmt: skip
        return "\n".join(lines)


def evaluate(
    model: LoadedModel,
    source: PhotoSource,
    *,
    operator: str | None = None,
    params: dict[str, Any] | None = None,
    split: str = "test",
    resolution: Resolution | None = None,
    timing: bool = False,
    workers: int | None = None,
    progress: bool = False,
    variant: Variant | str = Variant.FULL,
) -> EvalReport:
    """PSNR/SSIM of ``model`` against the reference operator on ``source``'s ``split`` photos, and the input
    photo's own PSNR against the reference (``input_psnr``: a model scoring below it does worse than no model).

    Targets come from the pair cache (generated if needed). With ``timing``, the reference operator and the model
    are also timed on each photo, side by side in this process. ``variant``: how the network runs
    (:class:`fip.variants.Variant`).
    """
    operator = operator or model.operator
    if operator is None:
        raise FipError(f"model {model.name} does not say which operator it approximates: pass --operator")
    spec = get_operator(operator)
    params = spec.resolve_params(params if params is not None else model.params)
    resolution = resolution or Resolution(1080)
    report = generate_pairs(
        operator, source, params=params, split=split, resolution=resolution, workers=workers, progress=progress
    )
    manifest = read_manifest(report.out_dir)
    names = sorted(n for n, e in manifest["pairs"].items() if e["split"] == split or split == "all")
    result = EvalReport(model.name, operator, params, resolution.label(), Path(report.out_dir))
    maps = model.maps(operator, params)
    if timing and names:  # one untimed pass first: thread pools and kernel selection warm up on the first call
        run_loaded(model, read_image_file(Path(report.out_dir) / "input" / f"{names[0]}.png"), maps, variant=variant)
    for name in names:
        image = read_image_file(Path(report.out_dir) / "input" / f"{name}.png")
        target = read_image_file(Path(report.out_dir) / "target" / f"{name}.png")
        start = time.perf_counter()
        output = run_loaded(model, image, maps, variant=variant)
        model_seconds = time.perf_counter() - start
        entry = {"name": name, "size": list(image.shape[:2]), "psnr": psnr(output, target),
                 "ssim": ssim(output, target), "input_psnr": psnr(image, target)}  # fmt: skip
        if timing:
            from fip.raw import load_photo

            photo = load_photo(manifest["pairs"][name]["source"], lambda h, w, n=name: resolution.size_for(n, h, w))
            start = time.perf_counter()
            spec.apply(photo.view(spec.input), params)
            entry["reference_seconds"] = time.perf_counter() - start
            entry["model_seconds"] = model_seconds
        result.images.append(entry)
    return result
