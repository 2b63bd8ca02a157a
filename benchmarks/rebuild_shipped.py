"""Rebuild shipped models with ``fip build`` and compare each with the model fip ships, on photos neither chose on.

Usage: python benchmarks/rebuild_shipped.py OPERATOR [OPERATOR ...] [--source data/debian-photos] [--budget 12]
       [--out runs/rebuild] [--train-args '--data.resolution 1080p'] [--json benchmarks/results/rebuild-cpu.json]

For each operator: ``fip build OPERATOR --source SOURCE --budget MINUTES --report fivek=<the four FiveK photos>``
into ``OUT/OPERATOR`` (a rerun resumes there), then ``auto`` of the built model and ``auto`` of the shipped model
``fip/OPERATOR`` on this device, both measured on the same held-out photos: the build's test photos (which the
shipped models' choices did see: they chose on the Debian set's hashed test photos, so this column flatters the
shipped model) and the four FiveK photos (which chose nothing for either). Prints a Markdown table; ``--json``
writes its rows.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import REPO, fivek_photos, machine

from fip.build import BuildRequest, build
from fip.files import atomic_write_json
from fip.measure import PhotoSetSource, quality
from fip.models.cards import read_card
from fip.models.catalogue import Model, open_model
from fip.runtime.plan import AUTO, make_plan

FRAME = (1080, 1920)


def compare(operator: str, args: argparse.Namespace) -> dict:
    fivek = str(fivek_photos()[0].parent)
    request = BuildRequest(
        operator,
        args.out / operator,
        source=args.source,
        budget_minutes=args.budget,
        report=(("fivek", fivek),),
        train_args=tuple(shlex.split(args.train_args)),
    )
    folder = build(request, progress=lambda line: print(f"  {operator}: {line}", flush=True))
    built = Model(read_card(folder))
    shipped = open_model(f"fip/{operator}")
    test = PhotoSetSource("test", "report", "", ((args.source, "test"),), "1080p", str(folder / "splits" / "test.json"))
    row = {"operator": operator, "budget_minutes": args.budget, "train_args": args.train_args}
    for label, model in (("shipped", shipped), ("built", built)):
        chosen = make_plan(model, AUTO, FRAME, "cpu").approximator
        row[label] = {"auto": chosen}
        for name, photos in (("test", test), ("fivek", PhotoSetSource("fivek", "report", "", ((fivek, "all"),)))):
            stored = model.card.approximators[chosen].quality.get(name) if chosen != "reference" else None
            measured = (
                stored
                if label == "built" and stored
                else (quality(model, chosen, photos, "cpu") if chosen != "reference" else None)
            )
            row[label][name] = None if measured is None else measured.psnr
        seconds = model.card.approximators[chosen].seconds.get("cpu") if chosen != "reference" else None
        row[label]["seconds"] = seconds.seconds if seconds else None
    row["warm_start"] = built.card.provenance.get("warm_start")
    row["kept"] = built.card.provenance.get("kept", "trained")  # the trained network, or the one it started from
    print(f"  {operator}: {json.dumps(row)}", flush=True)
    return row


def _cell(value: float | None) -> str:
    return "exact" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operators", nargs="*")
    parser.add_argument(
        "--table", type=Path, metavar="JSON", help="print the table of rows saved with --json, and stop"
    )
    parser.add_argument("--source", default=str(REPO / "data" / "debian-photos"))
    parser.add_argument("--budget", type=float, default=12.0, help="minutes per build (training gets 70%%)")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "rebuild")
    parser.add_argument("--train-args", default="", help="fip train options for the builds (quoted)")
    parser.add_argument("--json", type=Path, help="also write the rows here (added to the rows already there)")
    args = parser.parse_args()
    if args.table:
        saved = json.loads(args.table.read_text())
        print_table(saved["rows"], saved["machine"])
        return
    rows = [compare(operator, args) for operator in args.operators]
    print_table(rows, machine())
    if args.json:
        kept = json.loads(args.json.read_text())["rows"] if args.json.is_file() else []
        ours = {row["operator"] for row in rows}
        atomic_write_json(
            args.json, {"machine": machine(), "rows": [r for r in kept if r["operator"] not in ours] + rows}
        )


def print_table(rows: list[dict], where: str) -> None:
    print(f"\nMachine: {where}; 1080p; auto on cpu; PSNR in dB against the reference.\n")
    print(
        "| operator | shipped auto | test PSNR | FiveK PSNR | built auto | test PSNR | FiveK PSNR | warm start | "
        "network kept |\n|---|---|---:|---:|---|---:|---:|---|---|"
    )
    for row in rows:
        s, b = row["shipped"], row["built"]
        print(
            f"| `{row['operator']}` | {s['auto']} | {_cell(s['test'])} | {_cell(s['fivek'])} | {b['auto']} | "
            f"{_cell(b['test'])} | {_cell(b['fivek'])} | {row['warm_start'] or 'none'} | {row.get('kept', '')} |"
        )


if __name__ == "__main__":  # pair generation spawns processes that import this file
    main()
