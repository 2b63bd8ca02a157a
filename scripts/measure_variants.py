"""Measure every variant of shipped models against the reference operator; AUTO picks from these numbers.

Usage: python scripts/measure_variants.py OPERATOR [OPERATOR ...] [--source FOLDER] [--variants lowres,...]
Writes fip/models/weights/fip/OPERATOR.variants.json: mean PSNR per variant (full, fast, bf16, lowres, and pruned
and int8 where a pruned model ships) over the photos, at 1080p. ``--variants`` measures only those and keeps the
file's other entries (after shipping a new pruned or low-resolution model, say). Default photos: the four FiveK photos of
shared/reference when present (1.6-2 MP each, large enough for the low-resolution variant to differ), else the
sample set's test photos. Prints one Markdown row per operator.
"""

import argparse
import json
from pathlib import Path

from fip.data.sources import Resolution, folder_source, sample_source
from fip.evaluate import evaluate
from fip.files import atomic_write_bytes
from fip.infer import SHIPPED_DIR, model_for_operator
from fip.variants import Variant

FIVEK = Path(__file__).resolve().parents[2] / "shared" / "reference" / "fivek-1080p" / "input"


def _variants(text: str) -> list[Variant]:
    try:
        return [Variant(v.strip()) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: choose among {', '.join(v.value for v in Variant)}") from None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operators", nargs="+")
    parser.add_argument("--source", type=Path, help="photo folder (default: the FiveK photos, else the sample set)")
    parser.add_argument("--variants", type=_variants, help="comma-separated variants to measure again (default: all)")
    args = parser.parse_args()
    folder = args.source or (FIVEK if FIVEK.is_dir() else None)
    source, split = (folder_source(folder), "all") if folder else (sample_source(), "test")
    described = "the four FiveK photos of shared/reference" if folder == FIVEK else (
        f"{folder.name}/" if folder else "the sample set's test photos")  # fmt: skip
    for operator in args.operators:
        model = model_for_operator(operator)
        path = SHIPPED_DIR / f"{operator}.variants.json"
        scores = json.loads(path.read_text())["psnr"] if args.variants and path.is_file() else {}
        for variant in model.variants():
            if variant is Variant.AUTO or (args.variants and variant not in args.variants):
                continue
            if variant is Variant.LOWRES and folder is None:  # photos of at most 0.25 MP, where lowres runs fast
                print(f"{operator}: lowres not measured: the sample set's test photos are too small for it; "
                      "measure on FiveK (--source)")  # fmt: skip
                scores.pop(variant.value, None)
                continue
            report = evaluate(model, source, operator=operator, split=split, resolution=Resolution(1080), workers=1,
                              variant=variant)  # fmt: skip
            scores[variant.value] = round(report.mean_psnr, 3)
        record = {"photos": f"{described} at 1080p", "psnr": scores}
        atomic_write_bytes(path, (json.dumps(record, indent=2) + "\n").encode())
        print(f"| `{operator}` | " + " | ".join(f"{v} {p:.2f}" for v, p in scores.items()) + " |", flush=True)


if __name__ == "__main__":  # pair generation spawns processes that import this file
    main()
