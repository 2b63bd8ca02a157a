"""Train the low-resolution (Deep Guided Filter) form of shipped approximators and ship it inside the package.

Usage: python scripts/ship_lowres.py OPERATOR [OPERATOR ...] [--minutes 10] [--epochs 150] [FIP TRAIN OPTIONS]
(options it does not know go to ``fip train``, e.g. ``--data.source=data/debian-photos --data.context_scale=0.17``)
For each operator:
  1. ``fip train -c train/configs/OPERATOR.yaml -c train/configs/overlays/lowres.yaml`` with a warm start from the
     shipped model ``fip/OPERATOR`` (``fip/models/zoo/OPERATOR/net.pt``: its CAN starts as the full model, the
     guidance map as the photo, the filter as a plain guided filter), time-limited;
  2. write the last checkpoint (the end of the cosine schedule) as ``fip/models/zoo/OPERATOR/lowres.pt``, with its
     metrics, and record it in the model card (the ``lowres`` approximator). Not the best by validation PSNR: the
     sample set's test photos are so small (0.1-0.25 MP) that at 1/3 of their size they say little about 2 MP
     photos; scripts/measure_models.py measures those.
Prints one Markdown row per operator: sample-test PSNR of the full model (fast), of the untrained start (the
full model's CAN at 1/3 size with the plain guided filter of the same radius) and of the trained one.
It ships what it trains. Then run ``python scripts/measure_models.py OPERATOR --approximators lowres`` (what
``auto`` reads) and compare with ``network-lowres`` (the untrained form: the network at a third of the size and a
fixed filter): where the trained file scores under it, delete it and remove its network and approximator from the
card, as was done for dehaze.dark_channel and style.photographic.
"""

import argparse
from pathlib import Path

from _common import ZOO, print_report, sample_test_psnr, ship_network

from fip.models import GuidedCAN
from fip.models.catalogue import Model, open_model
from fip.models.storage import NetworkFile, load_network, net_config
from fip.training import max_time, run_training

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "train" / "configs"


def ship(operator: str, minutes: float, epochs: int, extra: list[str]) -> str:
    """Train ``operator``'s low-resolution model, write it into the package; returns a Markdown row."""
    full = open_model(ZOO / operator)
    net = full.network("net")
    cli = run_training([
        "-c", str(CONFIGS / f"{operator}.yaml"), "-c", str(CONFIGS / "overlays" / "lowres.yaml"),
        "--model.warm_start", f"fip/{operator}",
        "--model.net.init_args.conv_bias", str(net.conv_bias).lower(),  # the shipped network's, not the config's
        "--trainer.default_root_dir", f"runs/{operator}.lowres",
        "--trainer.max_epochs", str(epochs), "--trainer.max_time", max_time(minutes),
        "--trainer.enable_progress_bar", "false", *extra,
    ])  # fmt: skip
    trained = load_network(cli.trainer.checkpoint_callback.last_model_path)
    start = GuidedCAN(**net_config(net), factor=trained.net.factor, radius=trained.net.filter.radius,
                      guide_hidden=trained.net.guide.hidden)  # fmt: skip
    start.can.load_state_dict(net.state_dict())
    untrained = Model.of_network(NetworkFile(start.eval(), "start", operator, full.params))
    metrics = {"full_sample_test_psnr": sample_test_psnr(full, "fast"),
               "start_sample_test_psnr": sample_test_psnr(untrained, "lowres"),
               "sample_test_psnr": sample_test_psnr(Model.of_network(trained), "lowres"),
               "epochs": cli.trainer.current_epoch, "minutes": minutes}  # fmt: skip
    ship_network(operator, "lowres", trained, metrics)
    return (f"| `{operator}` | {metrics['full_sample_test_psnr']:.2f} | {metrics['start_sample_test_psnr']:.2f} | "
            f"{metrics['sample_test_psnr']:.2f} | {metrics['epochs']} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operators", nargs="+")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per operator")
    parser.add_argument("--epochs", type=int, default=150, help="epochs of the cosine schedule (fit the budget)")
    args, extra = parser.parse_known_args()
    rows = (ship(operator, args.minutes, args.epochs, extra) for operator in args.operators)
    print_report("| operator | sample-test PSNR, full (fast) | start (3x, untrained filter) | lowres, trained | epochs |\n"
                 "|---|---:|---:|---:|---:|", rows)  # fmt: skip


if __name__ == "__main__":  # pair generation spawns processes that import this file
    main()
