"""The README's main job: train an approximator for one operator on the built-in sample set, then print its
report (PSNR/SSIM on the held-out sample photos, speed-up over the reference operator) and write an image grid
(input | reference | approximation)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np

from fip.errors import ConfigNotFoundError, require_extra

logger = logging.getLogger(__name__)


def _grid(rows: list[list[np.ndarray]], height: int = 320) -> np.ndarray:
    from fip.imaging import resize_area

    lines = []
    for row in rows:
        scaled = [resize_area(t, height, int(t.shape[1] * height / t.shape[0])) for t in row]
        lines.append(np.hstack([np.pad(t, ((0, 0), (0, 4), (0, 0)), constant_values=1.0) for t in scaled]))
    width = max(line.shape[1] for line in lines)
    return np.vstack([np.pad(line, ((0, 4), (0, width - line.shape[1]), (0, 0)), constant_values=1.0) for line in lines])


def run_quickstart(operator: str, minutes: float, out: Path) -> None:
    """Train ``operator``'s approximator from its installed config (``fip train -c OPERATOR``) for at most
    ``minutes`` on the sample set, then write the model, the report and the grid to ``out``.

    Raises:
        MissingExtraError: the ``train`` extra is not installed.
        ConfigNotFoundError: ``operator`` has no training config.
    """
    require_extra("train", needed_by="fip quickstart")
    from fip.data.sources import Resolution, sample_source
    from fip.evaluate import evaluate
    from fip.imaging import read_image_file
    from fip.models.catalogue import Model, card_for_network
    from fip.models.paper import paper_network_for
    from fip.models.storage import load_network, save_network
    from fip.pipeline import run_approximation
    from fip.training import config_dir, config_names, max_time, run_training

    operators = [name for name in config_names() if "/" not in name]  # one config per operator, at the top
    if operator not in operators:
        raise ConfigNotFoundError(f"no training config for operator {operator!r}: fip quickstart trains one of "
                                  f"{', '.join(operators)}")  # fmt: skip
    config = config_dir() / f"{operator}.yaml"
    source = sample_source()
    print(f"sample set: {len(source.photos)} DNG files in {source.photos[0].path.parent}")
    print("  train: " + ", ".join(p.name for p in source.photos if p.split == "train"))
    print("  test:  " + ", ".join(p.name for p in source.photos if p.split == "test"))

    budget = max_time(minutes)
    print(f"training {operator} for at most {minutes:g} min ({config})")
    cli = run_training(["-c", str(config), "--trainer.max_time", budget, "--trainer.default_root_dir", str(out)])
    checkpoint = cli.trainer.checkpoint_callback.best_model_path or cli.trainer.checkpoint_callback.last_model_path
    network = load_network(checkpoint)
    model = Model(card_for_network(network))
    out.mkdir(parents=True, exist_ok=True)

    resolution = Resolution(1080)
    report = evaluate(model, source, split="test", resolution=resolution, timing=True, workers=1, request="full")
    model_file = save_network(network, out / f"{operator}.pt", {"mean_psnr": report.mean_psnr, "mean_ssim": report.mean_ssim})
    lines = ["", "## Held-out sample photos: the trained approximation vs the reference operator", "", report.table()]
    paper = paper_network_for(operator)
    if paper is not None:
        before = evaluate(Model(card_for_network(load_network(paper), kind="paper")), source, operator=operator,
                          split="test", resolution=resolution, request="full")  # fmt: skip
        lines += ["", f"Before training (the authors' network {paper}, the warm start): "
                  f"{before.mean_psnr:.2f} dB PSNR, SSIM {before.mean_ssim:.4f}"]  # fmt: skip
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(json.dumps(report.to_json(), indent=2) + "\n")

    pairs = report.pairs_dir
    rows = []
    for image in report.images:
        x = read_image_file(pairs / "input" / f"{image['name']}.png")
        approximation = run_approximation(model, x, request="full").image
        rows.append([x, read_image_file(pairs / "target" / f"{image['name']}.png"), approximation])
    grid = _grid(rows)
    cv2.imwrite(str(out / "grid.png"), cv2.cvtColor((grid * 255).round().astype(np.uint8), cv2.COLOR_RGB2BGR))
    print("\n".join(lines))
    print(f"\nmodel: {model_file}\nreport: {out / 'report.md'}\ngrid (input | reference | approximation): {out / 'grid.png'}")
