"""Train the learned guide of a shipped model's reference-at-low-resolution approximators and add them to its card.

For each operator and each of its ``reference-lowres``/``reference-halfres`` approximators, trains a guidance map
(:mod:`fip.guide`) on fip-v2's training photos at 1080p (their pairs from the pair cache, made where missing),
watching fip-v2's validation photos, and adds ``<approximator>-learned`` to the model's card in
``fip/models/zoo/OPERATOR`` with the map as ``guide-<approximator>.pt``, unmeasured. Then measure it like the rest:
``python benchmarks/measure_cards.py OPERATOR --approximators reference-lowres-learned``; it ships only where it
beats the plain approximator on the card's validation photos.

Usage: python benchmarks/train_guide.py OPERATOR [OPERATOR ...] [--approximators reference-lowres] [--steps 600]
                                       [--photos ~/.cache/fip/photo-sets/fip-v2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from fip.build import write_role_splits
from fip.data.pairs import generate_pairs
from fip.data.sources import Resolution, open_source
from fip.files import sha256_file
from fip.guide import guided_approximator, train_guide
from fip.imaging import read_image_file
from fip.models.cards import NetworkEntry, write_card
from fip.models.catalogue import default_catalogue, model_for_operator
from fip.models.storage import NetworkFile, net_config, save_network

PHOTO_SET = Path.home() / ".cache" / "fip" / "photo-sets" / "fip-v2"


def pairs(operator: str, params: dict, photos: Path, role: str) -> list:
    """``(photo, target)`` images of the photos ``photos/split.json`` gives ``role`` (``train``, ``validation``) at
    1080p, from the pair cache (generating what is missing)."""
    with tempfile.TemporaryDirectory() as folder:
        split_file = write_role_splits(json.loads((photos / "split.json").read_text()), folder)[role]
        report = generate_pairs(
            operator,
            open_source(photos, split_file),
            params=params,
            split="train" if role == "train" else "test",  # the role files' two sets
            resolution=Resolution.parse("1080p"),
        )
    names = sorted(report.made + report.reused)
    return [
        (
            read_image_file(report.out_dir / "input" / f"{n}.png"),
            read_image_file(report.out_dir / "target" / f"{n}.png"),
        )
        for n in names
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("operators", nargs="+")
    parser.add_argument("--approximators", default="reference-lowres,reference-halfres")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--photos", type=Path, default=PHOTO_SET, help="scripts/photo_set.py's folder")
    args = parser.parse_args()
    if not (args.photos / "split.json").is_file():
        raise SystemExit(f"{args.photos}/split.json is missing: make the photo set with python scripts/photo_set.py")
    for operator in args.operators:
        model = model_for_operator(operator)
        if model.card.root is None or not (model.card.root / "card.json").is_file():
            raise SystemExit(f"{operator}: no shipped model folder to add to ({model.name})")
        train = pairs(operator, dict(model.card.params), args.photos, "train")
        validation = pairs(operator, dict(model.card.params), args.photos, "validation")
        for name in args.approximators.split(","):
            began = time.monotonic()
            trained = train_guide(model, name, train, validation, steps=args.steps)
            key = f"guide-{name}"
            path = save_network(
                NetworkFile(trained.guide, key, operator, dict(model.card.params)), model.card.root / f"{key}.pt"
            )
            entry = NetworkEntry(path.name, "fip", sha256_file(path), net_config(trained.guide))
            added = guided_approximator(model.card.approximator(name), key)
            card = model.card.with_networks({key: entry}, [added])
            made_by = (
                f"benchmarks/train_guide.py: {args.steps} steps on the {trained.train_photos} fip-v2 training photos "
                f"large enough for its working size, at 1080p, {(time.monotonic() - began) / 60:.1f} min; on the "
                f"{trained.validation_photos} such validation photos {trained.before:.2f} -> {trained.after:.2f} dB"
            )
            card = replace(card, provenance={**card.provenance, f"{key}_made_by": made_by})
            write_card(card, model.card.root)
            default_catalogue().refresh()
            model = model_for_operator(operator)
            print(f"{operator} {added.name}: {made_by}", flush=True)
    return 0


if __name__ == "__main__":  # pair generation spawns processes that import this file
    sys.exit(main())
