"""The README's main job: ``fip build`` of one operator on the built-in sample set, then what a user came for, the
speed-up of ``auto`` over the reference operator on a camera-size photo (12 MP), next to its quality."""

from __future__ import annotations

import logging
from pathlib import Path

from fip.errors import ConfigNotFoundError, require_extra

logger = logging.getLogger(__name__)

CAMERA_SIZE = (3000, 4000)  # 12 MP, height x width


def run_quickstart(operator: str, minutes: float, out: Path, device: str | None = None) -> Path:
    """Build ``operator``'s model on the sample set within ``minutes`` (:func:`fip.build.build`: training gets 70%
    of them), time ``auto`` against the reference on a 12 MP photo, and add both to ``out/report.md``.

    Raises:
        MissingExtraError: the ``train`` extra is not installed.
        ConfigNotFoundError: ``operator`` has no training config.
    """
    require_extra("train", needed_by="fip quickstart")
    from fip.bench import run_bench
    from fip.build import BuildRequest, build
    from fip.data.sources import sample_source
    from fip.files import atomic_write_bytes
    from fip.models.cards import read_card
    from fip.models.catalogue import Model
    from fip.training import config_names

    operators = [name for name in config_names() if "/" not in name]  # one config per operator, at the top
    if operator not in operators:
        raise ConfigNotFoundError(
            f"no training config for operator {operator!r}: fip quickstart trains one of {', '.join(operators)}"
        )
    source = sample_source()
    print(f"sample set: {len(source.photos)} DNG files in {source.photos[0].path.parent}", flush=True)
    folder = build(
        BuildRequest(operator, out, source="sample", budget_minutes=minutes, device=device),
        progress=lambda line: print(f"fip build: {line}", flush=True),
    )

    model = Model(read_card(folder))
    photo = next(p.path for p in source.photos if p.split == "test")
    height, width = CAMERA_SIZE
    print(
        f"timing auto against the reference on a {width}x{height} (12 MP) photo ({photo.name}, enlarged)...", flush=True
    )
    bench = run_bench(operator, CAMERA_SIZE, 1, photo, ("reference", "auto"), 1, device, model=model, bounds=False)
    seconds = {row.name: row.seconds for row in bench.rows}
    auto = next(row for row in bench.rows if row.name == "auto")
    chosen = auto.approximator or "auto"
    ran = model.card.approximators.get(chosen)
    test = ran.quality.get("test") if ran is not None else None
    quality = f"{test.psnr:.2f} dB PSNR on the held-out test photos" if test else "exact (the reference itself)"
    summary = (
        f"## At camera size\n\nOn a {width}x{height} photo (12 MP) on {bench.machine}: the reference "
        f"{operator} took {seconds['reference']:.1f} s, `auto` ({chosen}) {seconds['auto']:.1f} s: "
        f"**{seconds['reference'] / seconds['auto']:.1f}x faster**, {quality}.\n"
    )
    report = folder / "report.md"
    built = report.read_text().split("\n## At camera size")[0].rstrip("\n")  # a rerun replaces its own section
    atomic_write_bytes(report, (built + "\n\n" + summary).encode())
    print("\n" + report.read_text())
    print(
        f"model folder: {folder} (fip apply -m {folder} PHOTO --out DIR)\nreport: {report}\n"
        f"before/after (input | reference | auto): {folder / 'before-after.png'}"
    )
    return folder
