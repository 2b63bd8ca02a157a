"""Int8 of each operator's full network: calibrated by MinMax, entropy and percentile on Debian training photos,
the calibration chosen on the validation photos, written as net.int8.onnx beside net.pt, and measured into the card
(approximator ``full-int8``; the pruned ``int8`` is measured too, with ``fast`` and ``pruned`` timed beside them).

Usage: python benchmarks/int8_networks.py OPERATOR [OPERATOR ...] [--photos 8] [--megapixels 0.25] [--no-measure]
Needs the Debian photo set (bash scripts/debian_photos.sh data/debian-photos) and, for FiveK, ../shared/reference.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from measure_cards import DEBIAN, VALIDATION, fivek

from fip.compress import calibration_photos
from fip.data.sources import open_source
from fip.files import atomic_write_bytes, sha256_file
from fip.measure import measure, quality
from fip.models.cards import Approximator, NetworkEntry, write_card
from fip.models.catalogue import Model, default_catalogue, model_for_operator
from fip.models.inputs import input_scale, normalize_input
from fip.models.storage import net_config
from fip.quantize import CALIBRATION_METHODS, Int8Template, folded_for
from fip.quantize import calibrate as calibrate_grids

KEY, FILE, NAME = "net-int8", "net.int8.onnx", "full-int8"
PREVIEW_MEGAPIXELS = 0.1


def quantize(operator: str, photos: int, megapixels: float, log=print) -> Model:
    """Calibrate ``operator``'s full network by every method, choose on the validation photos, write the file and
    the card; returns the model with its card as written."""
    model = model_for_operator(operator)
    net = model.network("net").float().eval()
    train = [p.path for p in open_source(str(DEBIAN)).select("train")][:photos]
    calibration = []
    for photo in calibration_photos(megapixels, paths=train):
        norm = getattr(net, "input_norm", None)
        calibration.append(normalize_input(norm, photo, input_scale(norm, photo)))
    grids = calibrate_grids(net, calibration, preview_megapixels=PREVIEW_MEGAPIXELS)
    folded = folded_for(net, calibration[0], PREVIEW_MEGAPIXELS)  # the file's own weights: any photo's fold
    root = model.card.root
    scores = {}
    approximator = Approximator(
        NAME,
        KEY,
        "int8",
        "preview",
        PREVIEW_MEGAPIXELS,
        description="the full network in int8 (ONNX Runtime), each photo's preview statistics folded and requantized",
    )
    for method in CALIBRATION_METHODS:
        atomic_write_bytes(root / FILE, Int8Template(tuple(grids[method]), method).model(folded))
        card = _with_int8(model, approximator, {})
        scores[method] = quality(Model(card), NAME, VALIDATION).psnr
        log(f"{operator} {NAME} calibrated by {method}: {scores[method]:.2f} dB on {VALIDATION.name}")
    best = max(scores, key=scores.get)
    atomic_write_bytes(root / FILE, Int8Template(tuple(grids[best]), best).model(folded))
    card = _with_int8(
        model,
        approximator,
        {
            "method": best,
            "photo_set": VALIDATION.name,
            "psnr": scores,
            "photos": f"{len(train)} Debian training photos at {megapixels:g} MP",
        },
    )
    write_card(card, root)
    default_catalogue().refresh()
    log(f"{operator}: {best} chosen ({scores[best]:.2f} dB)")
    return model_for_operator(operator)


def _with_int8(model: Model, approximator: Approximator, calibration: dict):
    card = model.card
    net = model.network("net")
    entry = NetworkEntry(
        FILE, "onnx", sha256_file(card.root / FILE), net_config(net), net.receptive_radius, "net", calibration
    )
    return replace(card.with_networks({KEY: entry}, [approximator]), root=card.root)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operators", nargs="+")
    parser.add_argument("--photos", type=int, default=8, help="calibration photos (Debian training split)")
    parser.add_argument("--megapixels", type=float, default=0.25, help="their size")
    parser.add_argument("--no-measure", action="store_true", help="choose and write only")
    args = parser.parse_args()
    torch.set_num_threads(2)
    timing_photo = DEBIAN / "Blinds.jpg"
    for operator in args.operators:
        model = quantize(operator, args.photos, args.megapixels)
        if args.no_measure:
            continue
        int8s = [n for n in (NAME, "int8") if n in model.card.approximators]
        sets = [VALIDATION] + ([fivek()] if fivek() else [])
        card = measure(model, sets, None, "cpu", int8s, progress=lambda line: print(line, flush=True))
        write_card(card, model.card.root)
        default_catalogue().refresh()
        timed = int8s + [n for n in ("fast", "pruned") if n in card.approximators]
        card = measure(
            model_for_operator(operator), [], timing_photo, "cpu", timed, progress=lambda line: print(line, flush=True)
        )
        print(f"wrote {write_card(card, card.root)}", flush=True)
        default_catalogue().refresh()


if __name__ == "__main__":
    main()
