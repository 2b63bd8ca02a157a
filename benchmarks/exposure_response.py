"""How far each shipped network departs from plain exposure scaling: a CAN whose normalizations are closed
(every mu at 0) and whose convolutions have no bias (the paper's) is positively homogeneous up to its output bias
b, f(k x) - b = k (f(x) - b), so it cannot learn a tone curve; mu * BN(x) or a convolution bias (``conv_bias``)
lets it. The table prints, per model, its mu range, whether it has convolution biases, and

    change    = mean |f(x/2) - f(x)|                    (how much the output moves when the input halves)
    departure = mean |f(x/2) - b - (f(x) - b)/2| / change    (the share of that move that is not plain scaling)

on one photo (~0.25 MP), unclipped outputs: departure 0 for a network that only scales with exposure; an
exposure-invariant one (change near 0) has a large departure.

Usage: python benchmarks/exposure_response.py [OPERATOR[=MODEL] ...]   (default: every shipped model)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))

from _common import machine, one_megapixel_photo

from fip.imaging import resize_area
from fip.models.can import AdaptiveNorm
from fip.models.catalogue import list_models, open_model
from fip.models.storage import load_network
from fip.runtime.execute import to_batch


def response(net: torch.nn.Module, image: np.ndarray) -> tuple[float, float]:
    """``(change, departure)`` of ``net`` when ``image`` halves (see the module docstring)."""
    x, bias = to_batch(image), net.output.bias.view(1, -1, 1, 1)
    with torch.inference_mode():
        whole, half = net(x) - bias, net(0.5 * x) - bias
    change = float((half - whole).abs().mean())
    return change, float((half - 0.5 * whole).abs().mean()) / max(change, 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", metavar="OPERATOR[=MODEL]")
    args = parser.parse_args()
    specs = args.models or sorted(card.operator for card in list_models() if card.name == f"fip/{card.operator}")
    photo = one_megapixel_photo()
    photo = resize_area(photo, photo.shape[0] // 2, photo.shape[1] // 2)
    print(machine())
    print(
        f"\nOne photo at {photo.shape[1]}x{photo.shape[0]}, the paper-exact pass, unclipped outputs.\n\n"
        "| operator | model | conv bias | mu range | change | departure from scaling |\n|---|---|---|---:|---:|---:|"
    )
    for spec in specs:
        operator, _, name = spec.partition("=")
        net = load_network(name).net if name else open_model(f"fip/{operator}").network("net")
        if not hasattr(net, "output"):
            print(f"| `{operator}` | {Path(name).name if name else 'shipped'} | (not a plain CAN: skipped) | | | |")
            continue
        mus = [float(m.mu.detach()) for m in net.modules() if isinstance(m, AdaptiveNorm)]
        change, departure = response(net, photo)
        print(
            f"| `{operator}` | {Path(name).name if name else 'shipped'} | {'yes' if net.conv_bias else 'no'} "
            f"| {min(mus):.2f} … {max(mus):.2f} | {change:.3f} | {departure:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
