"""Ship a network that benchmarks/retrain.py kept: its build folder becomes fip's model for the operator.

For each operator whose ledger entry is done and kept the trained network, packages
``~/.cache/fip/retrain/OPERATOR`` into ``fip/models/zoo/OPERATOR`` (``fip package``: every network checked
against its digest) with a card written for fip's own models: photo sets and provenance described without local
paths, and ``provenance.training`` (photos, steps, epochs, hours): the build's, or for a build made before fip
recorded it, read from the kept checkpoint. The cards' timings are
the build's, taken beside the training: time them again with ``python benchmarks/measure_cards.py OPERATOR
--timing-only`` on a quiet machine.

Usage: python benchmarks/ship_retrained.py OPERATOR [OPERATOR ...] [--runs ~/.cache/fip/retrain]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from fip.build import package, training_record
from fip.files import sha256_file
from fip.models.cards import PhotoSet, read_card, write_card

ZOO = Path(__file__).resolve().parents[1] / "fip" / "models" / "zoo"
RUNS = Path.home() / ".cache" / "fip" / "retrain"
PHOTO_SETS = {
    "validation": PhotoSet(
        "choose",
        "the 37 validation photos of fip's training set fip-v2 (python scripts/photo_set.py; docs/data.md), at 1080p",
    ),
    "test": PhotoSet("report", "the 36 test photos of fip-v2, at 1080p; never used to choose"),
    "fivek": PhotoSet(
        "report",
        "the four FiveK photos of the paper's repository (shared/reference/fivek-1080p), at 1080p; never used to "
        "choose",
    ),
}


def ship(operator: str, runs: Path) -> Path:
    ledger = json.loads((runs / "ledger.json").read_text())["operators"].get(operator, {})
    if not ledger.get("done") or ledger.get("kept") != "trained":
        raise SystemExit(f"{operator}: the ledger has no kept, trained network ({ledger or 'not built'})")
    built = runs / operator
    card = read_card(built)
    training = card.provenance.get("training")  # recorded by fip build since it kept a card's training
    if training is None:
        checkpoint = next(built.glob(f"training/**/checkpoints/{card.provenance['checkpoint']}"))
        photos = len(json.loads((built / "split.json").read_text())["train"])
        training = {"photos": photos, **training_record(checkpoint)}
    provenance = {
        **card.provenance,
        "source": "fip-v2 (python scripts/photo_set.py; docs/data.md)",
        "made_by": f"fip build {operator} --source fip-v2 --split-file (benchmarks/retrain.py): "
        f"{card.provenance.get('budget_minutes', 0):g}-min budget, warm start {card.provenance.get('warm_start')}",
        "training": training,
        "history": "docs/research-log.md",
    }
    card = replace(
        card,
        description=f"fip's context aggregation network for {operator}, with its faster forms",
        licence="MIT (fip); trained from the paper authors' MIT-licensed networks where they released one",
        photo_sets={k: PHOTO_SETS[k] for k in card.photo_sets},
        provenance=provenance,
        networks={k: replace(e, sha256=sha256_file(built / e.file)) for k, e in card.networks.items()},
    )
    with tempfile.TemporaryDirectory() as staging:
        folder = Path(staging) / operator
        folder.mkdir()
        for entry in card.networks.values():
            shutil.copy2(built / entry.file, folder / entry.file)
        shutil.copy2(built / "split.json", folder / "split.json")
        write_card(card, folder)
        return package(folder, ZOO, f"fip/{operator}", overwrite=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("operators", nargs="+")
    parser.add_argument("--runs", type=Path, default=RUNS, help="benchmarks/retrain.py's --out")
    args = parser.parse_args()
    for operator in args.operators:
        print(f"{operator}: shipped as {ship(operator, args.runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
