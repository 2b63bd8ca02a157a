"""Measure fip's own models into their cards: every approximator's quality on the validation photos (which ``auto``
reads) and on the four FiveK photos (which the docs report, never used to choose), and its seconds on this machine.

Usage: python benchmarks/measure_cards.py OPERATOR [OPERATOR ...] [--approximators a,b] [--no-timing] [--no-fivek]
       python benchmarks/measure_cards.py OPERATOR ... --timing-only --device cuda     # a GPU's timings, for auto there
       python benchmarks/measure_cards.py OPERATOR --add grid=CHECKPOINT --made-by "..."  # a new network, measured
Needs the Debian photo set (bash scripts/debian_photos.sh data/debian-photos) and, for the FiveK column,
../shared/reference (or $FIP_REFERENCE_DIR). A model retrained on fip-v2 (benchmarks/retrain.py) is measured on
its own validation and test photos of that set (python scripts/photo_set.py makes it). Writes
fip/models/zoo/OPERATOR/card.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from _common import reference_dir

from fip.build import write_role_splits
from fip.measure import PhotoSetSource, measure
from fip.models.cards import write_card
from fip.models.catalogue import default_catalogue, model_for_operator

DEBIAN = Path(__file__).resolve().parents[1] / "data" / "debian-photos"
FIP_V2 = Path.home() / ".cache" / "fip" / "photo-sets" / "fip-v2"  # python scripts/photo_set.py
VALIDATION = PhotoSetSource(
    "validation",
    "choose",
    "the five test photos of the Debian wallpaper set (bash scripts/debian_photos.sh, fip's hashed folder split) and "
    "the sample set's two test photos, at 1080p",
    ((str(DEBIAN), "test"), ("sample", "test")),
)


def fivek() -> PhotoSetSource | None:
    found = reference_dir()
    if found is None:
        return None
    return PhotoSetSource(
        "fivek",
        "report",
        "the four FiveK photos of the paper's repository (shared/reference/"
        "fivek-1080p), at 1080p; reported, never used to choose",
        ((str(found / "fivek-1080p" / "input"), "all"),),
    )


def fip_v2_sets(card, folder: Path) -> list[PhotoSetSource]:
    """The validation and test photo sets of a model trained on fip-v2 (``benchmarks/retrain.py``), as its card
    describes them: the photos its ``split.json`` gives each role, from ``scripts/photo_set.py``'s folder. The split
    files the sources read are written into ``folder``."""
    if not (FIP_V2 / "split.json").is_file():
        raise SystemExit(f"{card.name} was measured on fip-v2 photos: make the set with python scripts/photo_set.py")
    files = write_role_splits(json.loads((card.root / "split.json").read_text()), folder / card.operator)
    return [
        PhotoSetSource(
            role,
            card.photo_sets[role].role,
            card.photo_sets[role].description,
            ((str(FIP_V2), "test"),),
            split_file=str(files[role]),
        )
        for role in ("validation", "test")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operators", nargs="+")
    parser.add_argument("--approximators", help="comma-separated: measure only these (the card keeps the others)")
    parser.add_argument("--no-timing", action="store_true", help="quality only")
    parser.add_argument("--no-fivek", action="store_true", help="the validation photos only")
    parser.add_argument("--timing-only", action="store_true", help="seconds only, on --device (the cards keep quality)")
    parser.add_argument("--device", default="cpu", help="where to measure (default cpu); timings go to its class")
    parser.add_argument(
        "--add",
        metavar="KEY=FILE",
        help="first add this network (fip train's checkpoint or a .pt) "
        "to the operator's model as KEY.pt with its approximators (a grid network: grid), and "
        "measure those",
    )
    parser.add_argument("--made-by", default="", help="with --add: how the network was made, for the card")
    args = parser.parse_args()
    if not DEBIAN.is_dir():
        raise SystemExit(f"{DEBIAN} is missing: bash scripts/debian_photos.sh {DEBIAN}")
    torch.set_num_threads(2)
    reported = [] if args.no_fivek or fivek() is None else [fivek()]
    timing_photo = next(p for p in sorted(DEBIAN.glob("*.jpg")) if p.stem == "Blinds")  # a validation photo
    splits = tempfile.TemporaryDirectory()
    for operator in args.operators:
        model = model_for_operator(operator)
        if model.card.root is None or not model.name.startswith("fip/"):
            raise SystemExit(f"{operator}: no fip model folder to write into")
        retrained = str(model.card.provenance.get("source", "")).startswith("fip-v2")
        sets = fip_v2_sets(model.card, Path(splits.name)) if retrained else [VALIDATION]
        sets = [] if args.timing_only else sets + reported
        names = args.approximators.split(",") if args.approximators else None
        if args.add:
            added = add_network(model, *args.add.split("=", 1), args.made_by)
            default_catalogue().refresh()
            model = model_for_operator(operator)
            names = names or added
        card = measure(
            model,
            sets,
            None if args.no_timing else timing_photo,
            args.device,
            names,
            progress=lambda line: print(line, flush=True),
        )
        print(f"wrote {write_card(card, model.card.root)}", flush=True)
        default_catalogue().refresh()


def add_network(model, key: str, file: str, made_by: str) -> list[str]:
    """Copy the network ``file`` into ``model``'s folder as ``key.pt`` and add it to the card with its
    approximators (named after it, placed before the references'); returns their names."""
    from dataclasses import replace

    from fip.files import sha256_file
    from fip.models.cards import NetworkEntry
    from fip.models.catalogue import network_approximators
    from fip.models.storage import load_network, net_config, save_network

    card = model.card
    network = load_network(file)
    path = save_network(replace(network, operator=card.operator, params=dict(card.params)), card.root / f"{key}.pt")
    entry = NetworkEntry(path.name, "fip", sha256_file(path), net_config(network.net))
    added = [replace(a, network=key) for a in network_approximators(network.net)]
    provenance = {**card.provenance, f"{key}_made_by": made_by} if made_by else card.provenance
    write_card(replace(card.with_networks({key: entry}, added), provenance=provenance), card.root)
    return [a.name for a in added]


if __name__ == "__main__":  # pair generation spawns processes that import this file
    main()
