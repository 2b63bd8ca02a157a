"""Where the time of the untrained low-resolution approximators goes: ``reference-lowres`` and ``reference-halfres``
on a 1920x1080 photo, split into their steps, beside the whole approximator run by the engine and the reference.

Usage: python benchmarks/lowres_profile.py [OPERATOR ...] [--runs 3]

Steps, as the engine runs them (``fip.runtime.execute.reference_lowres``): **resize** the photo to the working
size (the views the operator reads), **reference** on the small photo, **fit** the colour guided filter between the
small photo and the small result, **apply** its coefficients to the full-size photo (bilinear upsampling of 12
coefficient maps and a 3x3 matrix per pixel). Fit and apply are timed twice, side by side: as torch code
(``fip.models.guided``, what runs on a GPU) and as the fused CPU kernels the engine runs on a CPU
(``fip.runtime.kernels``). ``engine`` is the approximator end to end (``run_plan``, fused kernels), ``engine torch``
the same with ``FIP_FUSED_KERNELS=0``, ``other`` what the steps do not cover in ``engine``. ``apply floor`` is the
least memory traffic of the apply step (the full-size guide read and the output written, float32) at this
machine's copy bandwidth. Prints a Markdown table; medians of ``--runs`` after one warm-up.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from _common import copy_bandwidth, machine, median_seconds, one_megapixel_photo

from fip.errors import DISTRIBUTION
from fip.imaging import resize_area
from fip.models.catalogue import model_for_operator
from fip.models.guided import apply_linear_model, colour_guided_coefficients
from fip.registry import get_operator, list_operators
from fip.runtime import kernels
from fip.runtime.execute import Views, _small_views, run_plan
from fip.runtime.plan import make_plan

FRAME = (1080, 1920)


def profile(operator: str, approximator_name: str, image, runs: int, bandwidth: float) -> dict:
    spec = get_operator(operator)
    model = model_for_operator(operator)
    params = spec.resolve_params({})
    plan = make_plan(model, approximator_name, FRAME, "cpu")
    approximator = model.card.approximator(approximator_name)
    upsampler = approximator.upsampler
    views = Views.of_array(image)
    guide = views.srgb
    size = plan.working_size
    small_srgb, view = _small_views(views, spec.input, size)
    result = torch.from_numpy(spec.apply(view, params)).permute(2, 0, 1)[None]
    guide_small = torch.from_numpy(small_srgb).permute(2, 0, 1)[None]
    coefficients = colour_guided_coefficients(guide_small, result, upsampler.radius, upsampler.eps)
    height, width = FRAME
    fit = lambda: colour_guided_coefficients(guide_small, result, upsampler.radius, upsampler.eps)  # noqa: E731
    fit_fused = lambda: kernels.colour_guided_fit(guide_small, result, upsampler.radius, upsampler.eps)  # noqa: E731
    steps = {
        "resize": median_seconds(lambda: _small_views(Views.of_array(image), spec.input, size), runs),
        "reference": median_seconds(lambda: spec.apply(view, params), runs),
        "fit torch": median_seconds(fit, runs),
        "fit": median_seconds(fit_fused, runs),
        "apply torch": median_seconds(
            lambda: apply_linear_model(
                coefficients, height, width, lambda t, b: guide[:, :, t:b], plan.band_rows, colour=True
            ),
            runs,
        ),
        "apply": median_seconds(lambda: kernels.apply_linear_model(coefficients, guide, colour=True), runs),
        "engine": median_seconds(lambda: run_plan(plan, model, Views.of_array(image)), runs),
    }
    os.environ["FIP_FUSED_KERNELS"] = "0"
    try:
        steps["engine torch"] = median_seconds(lambda: run_plan(plan, model, Views.of_array(image)), runs)
    finally:
        del os.environ["FIP_FUSED_KERNELS"]
    steps["apply floor"] = (3 + 3) * height * width * 4 / bandwidth  # the guide read, the output written
    steps["working size"] = f"{size[1]}x{size[0]}"
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("operators", nargs="*")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    photo = one_megapixel_photo()
    image = resize_area(photo, *FRAME)
    bandwidth = copy_bandwidth()
    operators = args.operators or [s.name for s in list_operators() if s.source.startswith(DISTRIBUTION)]
    print(
        f"Machine: {machine()}; copy bandwidth {bandwidth / 1e9:.1f} GB/s; 1920x1080; seconds, median of {args.runs}.\n"
    )
    columns = (
        "resize",
        "reference",
        "fit torch",
        "fit",
        "apply torch",
        "apply",
        "apply floor",
        "other",
        "engine",
        "engine torch",
    )
    print("| operator | approximator | working size | " + " | ".join(columns) + " |")
    print("|---|---|---|" + "---:|" * len(columns))
    for operator in operators:
        reference = (
            median_seconds(lambda: get_operator(operator).apply(image, get_operator(operator).resolve_params({})), 1)
            if get_operator(operator).input.value == "srgb"
            else None
        )
        for name in ("reference-lowres", "reference-halfres"):
            s = profile(operator, name, image, args.runs, bandwidth)
            s["other"] = s["engine"] - s["resize"] - s["reference"] - s["fit"] - s["apply"]
            print(
                f"| `{operator}` | {name} | {s['working size']} | " + " | ".join(f"{s[c]:.3f}" for c in columns) + " |",
                flush=True,
            )
        if reference is not None:
            print(
                f"| `{operator}` | *the reference* | 1920x1080 | | {reference:.3f} |" + " |" * (len(columns) - 2),
                flush=True,
            )


if __name__ == "__main__":
    main()
