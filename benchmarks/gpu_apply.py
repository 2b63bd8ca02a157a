"""After a GPU session (``benchmarks/gpu_session.sh``): its CUDA timings into the shipped cards, and a table.

Usage: python benchmarks/gpu_apply.py FOLDER                      # FOLDER: the files the session brought back
       python benchmarks/gpu_apply.py FOLDER --no-write           # the table only
       python benchmarks/gpu_apply.py FOLDER --cards-into /tmp/c  # write the changed cards there, not into fip/
       python benchmarks/gpu_apply.py FOLDER --unpack runs/gpu    # also unpack the trained build folders
       python benchmarks/gpu_apply.py FOLDER --table out.md       # also write the table as Markdown

Each 1920x1080 timing becomes the approximator's ``seconds`` for the device class the engine reported there
(``cuda``), as ``benchmarks/measure_cards.py --timing-only --device cuda`` writes them, and the reference's
1080p time the card's ``reference_seconds`` for that class; ``auto`` ranks by these on such a device. A timing is
merged only into an approximator defined as it was when it was timed (same precision, statistics, scale, network
architecture). The 4K timings and the bilateral grid's row (an untrained network: no card holds one) are printed,
not stored. A dry run's timings (tiny frames on a CPU) are never merged into fip's own cards: give
``--cards-into``.

``--unpack`` extracts the session's ``fip build`` folders (``models.tar.gz``), points their ``build.json`` at this
machine's copy of the photos (``.gpu-carry/photos``) and prints the ``fip build`` command that finishes them here
(choosing between the trained and the starting network, measuring, the report). Nothing is shipped from them.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tarfile
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ZOO = REPO / "fip" / "models" / "zoo"
CARRY_PHOTOS = REPO / ".gpu-carry" / "photos"
GPU_ONLY_ARGS = ("--trainer.accelerator", "--trainer.devices", "--data.pair_workers")  # left out to resume here


def read_session(folder: Path) -> dict:
    path = folder / "timings.json"
    if not path.is_file():
        raise SystemExit(f"gpu_apply: {path} is missing: give the folder the session's files came back to")
    return json.loads(path.read_text())


def definition(approximator) -> dict:
    found = approximator.to_json()
    for key in ("quality", "seconds", "description"):
        found.pop(key, None)
    return found


def merge(session: dict, into: Path | None) -> list[str]:
    """The 1080p timings of ``session`` into each operator's card (into ``into/OPERATOR/card.json`` when given,
    else the shipped card); returns what was left out, in words."""
    from fip.models.cards import Timing, read_card, write_card

    klass, machine, date = session["device_class"], session["machine"], session["date"]
    size = tuple(session["sizes"]["1080p"])
    left_out = []
    for operator, found in session["operators"].items():
        folder = ZOO / operator
        if not (folder / "card.json").is_file():
            left_out.append(f"{operator}: no shipped card")
            continue
        card = read_card(folder)
        recorded = found.get("card", {})
        if recorded.get("model") and recorded["model"] != card.name:
            left_out.append(f"{operator}: timed {recorded['model']}, the card is {card.name}")
            continue
        changed = 0
        for name, row in found.get("rows", {}).get("1080p", {}).items():
            if not row.get("seconds"):
                left_out.append(f"{operator} {name}: not timed there ({row.get('note', '')[:80]})")
                continue
            timing = Timing(round(row["seconds"], 4), size, machine, date)
            if name == "reference":
                card = replace(card, reference_seconds={**card.reference_seconds, klass: timing})
                changed += 1
                continue
            approximator = card.approximators.get(name)
            if approximator is None:
                left_out.append(f"{operator} {name}: no longer in the card")
                continue
            then = recorded.get("approximators", {}).get(name)
            if then is not None and then != definition(approximator):
                left_out.append(f"{operator} {name}: defined differently since it was timed")
                continue
            network = recorded.get("networks", {}).get(approximator.network) if approximator.network else None
            if network and network["architecture"] != card.networks[approximator.network].architecture:
                left_out.append(f"{operator} {name}: its network's shape changed since it was timed")
                continue
            card = card.with_approximator(replace(approximator, seconds={**approximator.seconds, klass: timing}))
            changed += 1
        if changed:
            target = folder if into is None else into / operator
            target.mkdir(parents=True, exist_ok=True)
            print(f"gpu_apply: {changed} {klass} timings -> {write_card(card, target)}", file=sys.stderr)
    return left_out


def table(session: dict) -> str:
    """Seconds per approximator at 1080p and 4K on the session's device, beside the card's CPU seconds at 1080p."""
    from fip.models.cards import read_card

    klass = session.get("device_class", "?")
    sizes = session["sizes"]
    small, large = (f"{sizes[k][1]}x{sizes[k][0]}" for k in ("1080p", "4K"))
    lines = [
        f"{session.get('machine', '?')} (class {klass}), {session.get('date', '')}"
        + (" - DRY RUN on the CPU at tiny sizes" if session.get("dry_run") else "")
        + "; seconds per frame, "
        f"networks: median of {session.get('runs', '?')} after one warm-up; rows that run the reference: one "
        "run after one warm-up, the reference on the CPU.",
        "",
        f"| operator | approximator | {small} s | {large} s | CPU card, 1920x1080 s | note |",
        "|---|---|---:|---:|---:|---|",
    ]
    for operator, found in session["operators"].items():
        rows = found.get("rows", {})
        try:
            card = read_card(ZOO / operator)
        except Exception:  # the table still shows what was timed
            card = None
        names = list(dict.fromkeys([*rows.get("1080p", {}), *rows.get("4K", {})]))
        order = list(card.approximators) if card else []
        names.sort(key=lambda n: (n == "reference", order.index(n) if n in order else len(order)))
        for name in names:
            small, large = rows.get("1080p", {}).get(name, {}), rows.get("4K", {}).get(name, {})
            cpu = _cpu_seconds(card, name)
            note = "; ".join(dict.fromkeys(n for n in (_why(small), _why(large)) if n))
            lines.append(f"| `{operator}` | {name} | {_seconds(small)} | {_seconds(large)} | {cpu} | {note} |")
    grid = session.get("grid", {})
    if grid:
        lines.append(
            f"| (any) | grid, untrained | {_seconds(grid.get('1080p', {}))} | {_seconds(grid.get('4K', {}))} "
            "| | the bilateral grid of train/configs/overlays/grid.yaml's shape |"
        )
    return "\n".join(lines)


def _seconds(row: dict) -> str:
    return f"{row['seconds']:.4f}" if row.get("seconds") else ""


def _why(row: dict) -> str:
    if row and not row.get("seconds"):
        return row.get("note", "")[:90]
    return row.get("while", "") if row else ""


def _cpu_seconds(card, name: str) -> str:
    if card is None:
        return ""
    timings = (
        card.reference_seconds
        if name == "reference"
        else (card.approximators[name].seconds if name in card.approximators else {})
    )
    found = [t.seconds for k, t in timings.items() if k.startswith("cpu")]
    return f"{min(found):.3f}" if found else ""


def unpack(folder: Path, session: dict, into: Path) -> None:
    """Extract the session's build folders into ``into`` and print the command that finishes each here."""
    archive = folder / "models.tar.gz"
    if not archive.is_file():
        print(f"gpu_apply: no {archive.name} in {folder}: nothing trained", file=sys.stderr)
        return
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
        for member in members:  # the archive's one top folder holds the builds; nothing may land outside
            parts = Path(member.name).parts
            if Path(member.name).is_absolute() or ".." in parts or len(parts) < 2:
                raise SystemExit(f"gpu_apply: {archive} holds an unexpected path {member.name!r}")
            member.name = str(Path(*parts[1:]))
        tar.extractall(into, members=members, filter="data")
    for state_file in sorted(into.glob("*/build.json")):
        state = json.loads(state_file.read_text())
        request = state["request"]
        request["source"] = str(CARRY_PHOTOS)
        request["split_file"] = str((CARRY_PHOTOS / "split.json").resolve())
        args = request.get("train_args", [])
        kept = [
            arg
            for index, arg in enumerate(args)  # each option of GPU_ONLY_ARGS with its value
            if arg not in GPU_ONLY_ARGS and (index == 0 or args[index - 1] not in GPU_ONLY_ARGS)
        ]
        request["train_args"] = kept
        state_file.write_text(json.dumps(state, indent=2) + "\n")
        budget = (session.get("training", {}).get(request["operator"], {}) or {}).get("budget_minutes") or 10
        command = [
            "fip",
            "build",
            request["operator"],
            "--source",
            request["source"],
            "--split-file",
            request["split_file"],
            "--extras",
            request.get("extras", "auto"),
            "--budget",
            f"{budget:g}",
            "--out",
            str(state_file.parent),
        ]
        if kept:
            command += ["--train-args", " ".join(kept)]
        steps = ", ".join(state.get("steps", {}))
        print(f"gpu_apply: {state_file.parent} (steps done: {steps}); finish it here with:\n  {shlex.join(command)}")
        if not CARRY_PHOTOS.is_dir():
            print("  (the photos are python benchmarks/gpu_prepare.py's copies: run it first)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where the session's files are (the tool's files_at)")
    parser.add_argument("--no-write", action="store_true", help="print the table, change no card")
    parser.add_argument("--cards-into", type=Path, help="write changed cards as DIR/OPERATOR/card.json instead")
    parser.add_argument("--unpack", type=Path, metavar="DIR", help="extract the trained build folders here")
    parser.add_argument("--table", type=Path, help="also write the table to this Markdown file")
    args = parser.parse_args()
    session = read_session(args.folder)
    if session.get("error"):
        print(f"gpu_apply: the session says: {session['error']}", file=sys.stderr)
    print(table(session))
    if args.table:
        args.table.write_text(table(session) + "\n")
    tests = session.get("tests") or {}
    print(f"\ntests there: {tests.get('summary', 'not run')} ({len(tests.get('selected', []))} selected)")
    for operator, found in (session.get("training") or {}).items():
        print(f"training {operator}: {found}")
    for skipped in session.get("skipped", []):
        rows = ", ".join(skipped["rows"])
        print(f"not timed: {skipped['operator']} {skipped['size']} {rows}: {skipped['why'][:160]}")
    if session.get("dry_run") and not args.no_write and args.cards_into is None:
        print("gpu_apply: a dry run's timings are not merged into fip's cards (give --cards-into DIR)", file=sys.stderr)
    elif not args.no_write and "device_class" in session:
        for line in merge(session, args.cards_into):
            print(f"left out: {line}")
    if args.unpack:
        unpack(args.folder, session, args.unpack)
    return 0


if __name__ == "__main__":
    sys.exit(main())
