"""Helpers shared by the benchmark scripts: the test photos and a machine description."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import numpy as np

from fip.imaging import read_image_file, resize_area

REPO = Path(__file__).resolve().parents[1]


def reference_dir() -> Path | None:
    """The paper's reference material: ``$FIP_REFERENCE_DIR`` or ``../shared/reference`` beside the repository."""
    for candidate in (os.environ.get("FIP_REFERENCE_DIR"), REPO.parent / "shared" / "reference"):
        if candidate and (Path(candidate) / "fivek-1080p" / "input").is_dir():
            return Path(candidate)
    return None


def fivek_photos() -> list[Path]:
    found = reference_dir()
    if found is None:
        raise SystemExit("the four FiveK test photos are needed: set FIP_REFERENCE_DIR to shared/reference")
    return sorted((found / "fivek-1080p" / "input").glob("*.png"))


def fivek_photo_and_crop(name: str) -> tuple[np.ndarray, tuple[slice, slice]]:
    """The FiveK photo ``name`` (e.g. ``000001.png``) and the 320x480 crop at its centre that the picture scripts
    show (``benchmarks/lowres_grid.py``, ``benchmarks/model_grid.py``)."""
    photos = fivek_photos()
    photo = next((p for p in photos if p.name == name), None)
    if photo is None:
        raise SystemExit(f"no FiveK photo named {name}; have: {', '.join(p.name for p in photos)}")
    image = read_image_file(photo)
    height, width = image.shape[:2]
    return image, (slice(height // 2 - 160, height // 2 + 160), slice(width // 2 - 240, width // 2 + 240))


def one_megapixel_photo() -> np.ndarray:
    """A FiveK photo scaled to ~1 MP if the reference photos are present, else a sample-set photo."""
    found = reference_dir()
    if found is not None:
        image = read_image_file(sorted((found / "fivek-1080p" / "input").glob("*.png"))[0])
    else:
        from fip.data.sources import sample_source
        from fip.raw import load_photo

        image = load_photo(next(p.path for p in sample_source().photos if p.name == "retina")).srgb
    scale = (1e6 / (image.shape[0] * image.shape[1])) ** 0.5
    return resize_area(image, int(image.shape[0] * scale) // 2 * 2, int(image.shape[1] * scale) // 2 * 2)


def labelled(row: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """One row of titled pictures ``(H, W, 3)`` in [0, 1], drawn side by side: an ``(H, W, 3)`` float32 image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(row), figsize=(3.2 * len(row), 3.6), dpi=100)
    for axis, (title, picture) in zip(axes, row):
        axis.imshow(np.clip(picture, 0, 1))
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    figure.tight_layout()
    figure.canvas.draw()
    pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(np.float32) / 255
    plt.close(figure)
    return pixels


def median_seconds(function, runs: int) -> float:
    """Median wall-clock seconds of ``runs`` calls of ``function``, after one untimed warm-up call."""
    function()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def copy_bandwidth() -> float:
    """Bytes per second of a large float32 copy (read + write) on this machine."""
    import torch

    source = torch.rand(64 * 1024 * 1024 // 4 * 4)  # 256 MB
    target = torch.empty_like(source)
    seconds = median_seconds(lambda: target.copy_(source), 5)
    return 2 * source.numel() * 4 / seconds


def machine() -> str:
    from fip.bench import machine_description

    return machine_description()
