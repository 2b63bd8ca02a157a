"""Choose an operator's shipped model among candidates by PSNR on validation photos, and ship the winner.

Usage: python scripts/select_models.py OPERATOR CANDIDATE [CANDIDATE ...] [--photos DIR [--split-file JSON]]
                                       [--resolution 480p]

Candidates are anything `fip eval -m` takes: `paper/<Operator>`, a `.ckpt` from `fip train`, a `.pt` network file;
the shipped model always competes, and only a candidate at least ``--min-gain`` dB (0.1) higher replaces it. Each
is scored by the better of its `full` and `fast` approximators, as `fip apply`'s `auto` may run either: a network
trained with preview statistics can score far higher `fast` (`style.pencil`: 1.4 dB on these photos).
Validation photos: the test split of a photo folder (default: the Debian photos of `scripts/debian_photos.sh`;
`--split-file` for a folder with one, such as `scripts/exposure_bracket.py` writes) and the sample set's test
photos, all at ``--resolution`` (default 480p, the resolution of the earlier rounds; 1080p is the size the
results table and FiveK measure, and the networks learn the operator at the resolution they see; say which the
choice used). The FiveK photos are never
used here: they stay a test set (`benchmarks/shipped_models.py`). The winner is written to
fip/models/zoo/OPERATOR/net.pt with its validation numbers, and recorded in the model card (its digest, and what
it was selected from); the card's measurements of the approximators that run it (made on the network it replaces)
are dropped until `python scripts/measure_models.py OPERATOR` measures them again; the other networks (lowres.pt,
pruned.pt, pruned.int8.onnx) stay as they are, trained from the earlier network. When the shipped model wins,
nothing is written.
Prints one Markdown row per candidate: validation PSNR `full` and `fast`, the sample set's share (the better
approximator), photos.
"""

import argparse
import hashlib
from pathlib import Path

import numpy as np

from _common import ZOO, ship_network

from fip.data.sources import Resolution, folder_source, sample_source
from fip.evaluate import evaluate
from fip.errors import FipError
from fip.models.catalogue import Model, open_model
from fip.registry import get_operator

REQUESTS = ("full", "fast")  # the approximators a candidate is scored by, the better counting


def validation_psnr(model: Model, operator: str, photos: Path, split_file: Path | None = None,
                    resolution: Resolution = Resolution(480), request: str = "full",
                    ) -> tuple[float, float, int]:  # fmt: skip
    """(mean PSNR over all validation photos, mean over the sample set's test photos, photo count)."""
    folder = evaluate(model, folder_source(photos, split_file), operator=operator, split="test", resolution=resolution,
                      workers=2, request=request)  # fmt: skip
    sample = evaluate(model, sample_source(), operator=operator, split="test", resolution=resolution, workers=2,
                      request=request)  # fmt: skip
    values = [i["psnr"] for i in folder.images + sample.images]
    return float(np.mean(values)), sample.mean_psnr, len(values)


def provenance(name: str) -> str:
    """What a candidate is, for the shipped file's metrics: a checkpoint's training, else the name itself."""
    if not name.endswith(".ckpt"):
        return name if name.startswith("paper/") else Path(name).name
    import torch

    checkpoint = torch.load(name, map_location="cpu", weights_only=False)
    model, data = checkpoint.get("hyper_parameters", {}), checkpoint.get("datamodule_hyper_parameters", {})
    start = model.get("warm_start")
    # A file (a scratch copy, or fip/<operator>'s shipped file, which may be replaced since) is named by its content,
    # as training read it where the checkpoint records it.
    digest = checkpoint.get("fip", {}).get("warm_start_sha256")
    if start and Path(start).is_file():
        digest = digest or hashlib.sha256(Path(start).read_bytes()).hexdigest()
        start = Path(start).name
    if digest:
        start = f"{start} (sha256 {digest[:12]})"
    context = data.get("context_scale")
    recipe = f"{data.get('recipe')} in context {context}" if context else data.get("recipe")
    scales = "".join(f", {key} {model[key]}" for key in ("norm_lr_scale", "bias_lr_scale") if model.get(key, 1) != 1)
    biases = ", convolution biases" if checkpoint.get("fip", {}).get("net", {}).get("conv_bias") else ""
    return (f"fip train, epoch {checkpoint['epoch']}, warm start {start}, lr {model.get('lr')}{scales}{biases}, "
            f"{recipe} at {data.get('resolution')} on {Path(str(data.get('source'))).name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operator")
    parser.add_argument("candidates", nargs="+")
    parser.add_argument("--photos", type=Path, default=Path("data/debian-photos"),
                        help="photo folder whose test split validates (scripts/debian_photos.sh)")  # fmt: skip
    parser.add_argument("--split-file", type=Path,
                        help="the folder's split file (exposure_bracket.py writes one)")
    parser.add_argument("--resolution", type=Resolution.parse, default=Resolution(480),
                        help="validation resolution: 480p (default), 1080p, ...")  # fmt: skip
    parser.add_argument("--min-gain", type=float, default=0.1,
                        help="dB a candidate must gain over the shipped model to replace it")  # fmt: skip
    args = parser.parse_args()
    if not args.photos.is_dir():
        parser.error(f"{args.photos} is not a folder: run `bash scripts/debian_photos.sh {args.photos}` first")
    get_operator(args.operator)  # an unknown name fails here, with the list of known ones
    shipped = ZOO / args.operator  # the model folder: its card names net.pt
    scored = []
    for name in [str(shipped), *args.candidates]:
        model = open_model(name)
        if model.operator != args.operator:
            raise FipError(f"{name} approximates {model.operator}, not {args.operator}: pass candidates for one operator")
        # A running-statistics network has no `fast` (its `full` folds exactly); a guided one neither of the two
        requests = [request for request in REQUESTS if request in model.card.approximators]
        by_request = {request: validation_psnr(model, args.operator, args.photos, args.split_file, args.resolution,
                                               request) for request in requests}  # fmt: skip
        if not by_request:
            raise FipError(f"{name} has no {' or '.join(REQUESTS)} approximator to score (it has: "
                           f"{', '.join(model.card.approximators)})")  # fmt: skip
        request, (psnr, sample_psnr, count) = max(by_request.items(), key=lambda item: item[1][0])
        scored.append((psnr, sample_psnr, count, name, model))
        cells = " | ".join(f"{by_request[r][0]:.2f}" if r in by_request else "" for r in REQUESTS)
        print(f"| `{args.operator}` | {Path(name).name} | {cells} | {sample_psnr:.2f} ({request}) | {count} |",
              flush=True)  # fmt: skip
    psnr, sample_psnr, count, name, model = max(scored, key=lambda s: s[0])
    if name == str(shipped):
        print(f"{args.operator}: the shipped model scores highest ({psnr:.2f} dB); nothing written")
        return
    if psnr < scored[0][0] + args.min_gain:
        print(f"{args.operator}: {Path(name).name} scores {psnr - scored[0][0]:+.2f} dB against the shipped model, "
              f"under --min-gain {args.min_gain}; nothing written")  # fmt: skip
        return
    metrics = {"validation_psnr": psnr, "validation_photos": count, "validation_resolution": args.resolution.label(),
               "sample_test_psnr": sample_psnr, "selected_from": provenance(name)}  # fmt: skip
    # The card's measurements of the approximators that run net.pt described the replaced network: they are dropped
    ship_network(args.operator, "net", model.network_file("net"), metrics,
                 {"made_by": metrics["selected_from"], "training_validation_psnr": round(psnr, 3)})  # fmt: skip
    print(f"{args.operator}: shipped {Path(name).name} ({psnr:.2f} dB on {count} validation photos); its approximators "
          f"are unmeasured until: python scripts/measure_models.py {args.operator}")


if __name__ == "__main__":  # pair generation spawns processes that import this file
    try:
        main()
    except FipError as exc:
        raise SystemExit(f"select_models: {exc}") from None
