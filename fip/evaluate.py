"""Evaluating an approximator against its reference operator: PSNR, SSIM and timing per photo, through the engine."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fip.data.pairs import generate_pairs, read_manifest
from fip.data.sources import PhotoSource, Resolution
from fip.errors import FipError
from fip.imaging import read_image_file
from fip.metrics import psnr, ssim
from fip.models.catalogue import Model
from fip.raw import load_photo
from fip.registry import InputKind, get_operator
from fip.runtime.devices import synchronize
from fip.runtime.engine import make_plan
from fip.runtime.execute import Views, run_plan, to_image
from fip.runtime.plan import AUTO, Preference


@dataclass
class EvalReport:
    model: str
    operator: str
    params: dict[str, Any]
    resolution: str
    pairs_dir: Path
    request: str = AUTO
    images: list[dict[str, Any]] = field(default_factory=list)
    preference: str | None = None  # auto's preference in words (None: an approximator asked for by name)

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

    @property
    def approximators(self) -> list[str]:
        """The approximators that ran (``auto`` may pick differently for photos of different sizes)."""
        return sorted({i["plan"]["approximator"] for i in self.images})

    def to_json(self) -> dict[str, Any]:
        out = {
            "model": self.model,
            "operator": self.operator,
            "params": self.params,
            "resolution": self.resolution,
            "request": self.request,
            "preference": self.preference,
            "approximators": self.approximators,
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
        request = f"{self.request}, prefer {self.preference}" if self.preference else self.request
        lines = [
            f"{self.model} ({request}: {', '.join(self.approximators)}) vs {self.operator} {self.params} "
            f"at {self.resolution}",
            "",
        ]
        header = "| photo | size | PSNR (dB) | SSIM | input PSNR (dB) |" + (
            " reference (s) | model (s) | speed-up |" if timed else ""
        )
        lines += [header, "|---|---|---:|---:|---:|" + ("---:|---:|---:|" if timed else "")]
        for i in self.images:
            row = (
                f"| {i['name']} | {i['size'][1]}x{i['size'][0]} | {i['psnr']:.2f} | {i['ssim']:.4f} "
                f"| {i['input_psnr']:.2f} |"
            )
            if timed:
                row += f" {i['reference_seconds']:.2f} | {i['model_seconds']:.2f} | {i['reference_seconds'] / i['model_seconds']:.1f}x |"
            lines.append(row)
        mean = f"| **mean** | | **{self.mean_psnr:.2f}** | **{self.mean_ssim:.4f}** | {self.mean_input_psnr:.2f} |"
        lines.append(mean + (f" | | **{self.to_json()['mean_speedup']:.1f}x** |" if timed else ""))
        return "\n".join(lines)


def evaluate(
    model: Model,
    source: PhotoSource,
    *,
    operator: str | None = None,
    params: dict[str, Any] | None = None,
    split: str = "test",
    resolution: Resolution | None = None,
    timing: bool = False,
    workers: int | None = None,
    progress: bool = False,
    request: str = AUTO,
    device: str | torch.device | None = None,
    preference: Preference | None = None,
) -> EvalReport:
    """PSNR/SSIM of ``model``'s approximator ``request`` against the reference operator on ``source``'s ``split``
    photos, and the input photo's own PSNR against the reference (``input_psnr``: an approximation scoring below it
    does worse than doing nothing). Each photo's plan is recorded with its numbers.

    Targets come from the pair cache (generated if needed). With ``timing``, the reference operator and the
    approximation are also timed on each photo, side by side in this process, after one untimed warm-up.
    """
    operator = operator or model.operator
    if operator is None:
        raise FipError(f"model {model.name} does not say which operator it approximates: pass --operator")
    spec = get_operator(operator)
    params = spec.resolve_params(
        params if params is not None else (model.params if model.operator == operator else None)
    )
    resolution = resolution or Resolution(1080)
    report = generate_pairs(
        operator, source, params=params, split=split, resolution=resolution, workers=workers, progress=progress
    )
    manifest = read_manifest(report.out_dir)
    photos = {photo.name for photo in source.select(split)}  # the pair set is shared by every split of the source
    names = sorted(n for n in manifest["pairs"] if n in photos)  # exposure 0: pairs are named as their photos
    result = EvalReport(
        model.name,
        operator,
        params,
        resolution.label(),
        Path(report.out_dir),
        request,
        preference=str(preference or Preference()) if request == AUTO else None,
    )
    maps = model.maps(operator, params)

    def photo_of(name: str):
        return load_photo(manifest["pairs"][name]["source"], lambda h, w: resolution.size_for(name, h, w))

    def views_of(name: str) -> Views:
        image = read_image_file(Path(report.out_dir) / "input" / f"{name}.png")
        # Operators of the linear or raw view need the photo itself for their reference at low resolution.
        return (
            Views.of_array(image)
            if spec.input is InputKind.SRGB
            else Views(Views.of_array(image).srgb, lambda: photo_of(name))
        )

    def run(views: Views):
        plan = make_plan(model, request, views.size, device, operator=operator, params=params, preference=preference)
        synchronize(torch.device(plan.device))
        start = time.perf_counter()
        output = to_image(run_plan(plan, model, views, maps))
        synchronize(torch.device(plan.device))
        return output, time.perf_counter() - start, plan

    if timing and names:  # one untimed pass first: thread pools and kernel selection warm up on the first call
        run(views_of(names[0]))
    for name in names:
        views = views_of(name)
        image = read_image_file(Path(report.out_dir) / "input" / f"{name}.png")
        target = read_image_file(Path(report.out_dir) / "target" / f"{name}.png")
        output, model_seconds, plan = run(views)
        entry = {
            "name": name,
            "size": list(image.shape[:2]),
            "psnr": psnr(output, target),
            "ssim": ssim(output, target),
            "input_psnr": psnr(image, target),
            "plan": plan.to_json(),
        }
        if timing:
            photo = photo_of(name)
            start = time.perf_counter()
            spec.apply(photo.view(spec.input), params)
            entry["reference_seconds"] = time.perf_counter() - start
            entry["model_seconds"] = model_seconds
        result.images.append(entry)
    return result
