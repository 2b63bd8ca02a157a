"""The paper authors' trained networks, converted for :class:`~fip.models.can.ContextAggregationNet`.

Source: CQFIO/FastImageProcessing (Chen, Xu and Koltun, ICCV 2017; MIT License). The TensorFlow checkpoints were
exported variable by variable to NumPy and converted once by ``scripts/convert_paper_weights.py`` into
``fip/models/weights/paper/*.npz``: PyTorch layout, fip's parameter names, and **RGB** channel order (the authors
fed BGR images read with OpenCV; the converter permutes the first layer's input channels and the last layer's
output channels, so fip's API stays RGB and nothing changes at run time).

Names: ``paper/<Operator>`` for the nine CAN24 operators, ``paper/combined`` (CAN32, input RGB + ten one-hot
operator maps in :data:`COMBINED_ORDER`), ``paper/parameterized_L0`` (CAN32, input RGB + one constant map holding
the L0 smoothing lambda; the authors sweep it over 0.01 ... 1), and ``paper/combined:<Operator>``: the combined
network with that operator's map fixed (:func:`bake_onehot`), a 3-channel CAN32. ``paper/Detail_manipulation``, the
one operator the authors released only inside the combined network, is ``paper/combined:Detail_manipulation``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fip.errors import UnknownOperatorError
from fip.models.can import ContextAggregationNet, NormMode, can24, can32

WEIGHTS_DIR = Path(__file__).parent / "weights" / "paper"

PAPER_OPERATORS = (
    "Dark_channel_dehazing",
    "L0_smoothing",
    "Multiscale_tone_manipulation",
    "Nonlocal_dehazing",
    "Pencil_drawing",
    "Photographic_style",
    "Relative_total_variation",
    "Rudin_Osher_Fatemi",
    "TV_L1",
)
# Order of the one-hot operator maps of the combined network (its input channels 3..12).
COMBINED_ORDER = (
    "Nonlocal_dehazing",
    "Dark_channel_dehazing",
    "Multiscale_tone_manipulation",
    "Detail_manipulation",
    "L0_smoothing",
    "Pencil_drawing",
    "Rudin_Osher_Fatemi",
    "Relative_total_variation",
    "Photographic_style",
    "TV_L1",
)
# fip's reference operator for each of the paper's operators.
FIP_OPERATOR = {
    "L0_smoothing": "smooth.l0",
    "Rudin_Osher_Fatemi": "smooth.rof",
    "TV_L1": "smooth.tv_l1",
    "Relative_total_variation": "smooth.rtv",
    "Multiscale_tone_manipulation": "tone.multiscale",
    "Detail_manipulation": "detail.multiscale",
    "Photographic_style": "style.photographic",
    "Pencil_drawing": "style.pencil",
    "Dark_channel_dehazing": "dehaze.dark_channel",
    "Nonlocal_dehazing": "dehaze.nonlocal",
}


# Operators the authors released only inside the combined CAN32; ``paper/<name>`` bakes their map in.
COMBINED_ONLY = ("Detail_manipulation",)


def paper_network_for(operator: str) -> str | None:
    """The name of the authors' network trained for fip's ``operator`` (``"paper/L0_smoothing"``; for detail
    manipulation the combined CAN32 with its map baked in), or ``None`` when they released none."""
    for paper_name, fip_name in FIP_OPERATOR.items():
        if fip_name == operator and (paper_name in PAPER_OPERATORS or paper_name in COMBINED_ONLY):
            return f"paper/{paper_name}"
    return None


_FILES = {f"paper/{name}": (name, 3, can24) for name in PAPER_OPERATORS}
_FILES["paper/combined"] = ("combined_can32", 13, can32)
_FILES["paper/parameterized_L0"] = ("parameterized_l0_can32", 4, can32)


def paper_model_names() -> list[str]:
    baked = [f"paper/combined:{name}" for name in COMBINED_ORDER] + [f"paper/{name}" for name in COMBINED_ONLY]
    return sorted([*_FILES, *baked])


def bake_onehot(combined: ContextAggregationNet, paper_name: str) -> ContextAggregationNet:
    """The combined network with ``paper_name``'s one-hot map fixed: a 3-channel CAN whose first convolution has a
    bias, that map's weights summed over the kernel (the other convolution biases are zero).

    A constant map convolved is that constant sum except within the first layer's dilation (one pixel) of the
    border, where the "same" zero padding cuts the kernel; there the two differ slightly."""
    if combined.in_channels != 3 + len(COMBINED_ORDER):
        raise ValueError(
            f"bake_onehot needs the combined network's {3 + len(COMBINED_ORDER)} input channels (RGB and "
            f"a map per operator of COMBINED_ORDER), got {combined.in_channels}"
        )
    baked = ContextAggregationNet(
        3, width=combined.width, depth=combined.depth, norm=combined.features[1].mode, conv_bias=True
    )
    state = combined.state_dict()  # detached; load_state_dict copies it into baked's own parameters
    first = state["features.0.weight"]
    state["features.0.weight"] = first[:, :3]
    state["features.0.bias"] = first[:, 3 + COMBINED_ORDER.index(paper_name)].sum(dim=(1, 2))
    for name, value in baked.state_dict().items():
        state.setdefault(name, torch.zeros_like(value))  # the other layers' biases
    baked.load_state_dict(state)
    return baked.eval()


def convert_tf_arrays(arrays: dict[str, np.ndarray], in_channels: int) -> dict[str, np.ndarray]:
    """The authors' TF variables (``g_convK/weights`` ...) -> a ContextAggregationNet state dict (RGB order)."""
    layer_ids = sorted(int(k.split("/")[0][len("g_conv") :]) for k in arrays if k.endswith("/w0"))
    state: dict[str, np.ndarray] = {}
    for index, layer in enumerate(layer_ids):
        prefix, conv, norm = f"g_conv{layer}", f"features.{3 * index}", f"features.{3 * index + 1}"
        weight = arrays[f"{prefix}/weights"].transpose(3, 2, 0, 1).copy()  # [kh, kw, in, out] -> [out, in, kh, kw]
        if index == 0:
            weight[:, :3] = weight[:, 2::-1].copy()  # BGR -> RGB inputs
        state[f"{conv}.weight"] = weight
        state[f"{norm}.lam"] = np.asarray(arrays[f"{prefix}/w0"], dtype=np.float32)
        state[f"{norm}.mu"] = np.asarray(arrays[f"{prefix}/w1"], dtype=np.float32)
        state[f"{norm}.beta"] = arrays[f"{prefix}/BatchNorm/beta"]
        state[f"{norm}.running_mean"] = arrays[f"{prefix}/BatchNorm/moving_mean"]
        state[f"{norm}.running_var"] = arrays[f"{prefix}/BatchNorm/moving_variance"]
    last = arrays["g_conv_last/weights"].transpose(3, 2, 0, 1)
    state["output.weight"] = last[::-1].copy()  # BGR -> RGB outputs
    state["output.bias"] = arrays["g_conv_last/biases"][::-1].copy()
    if state["features.0.weight"].shape[1] != in_channels:
        raise ValueError(f"expected {in_channels} input channels, found {state['features.0.weight'].shape[1]}")
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


def load_paper_model(name: str, norm: NormMode | str = NormMode.IMAGE) -> ContextAggregationNet:
    """The authors' network ``name`` (e.g. ``"paper/L0_smoothing"``) in eval mode, RGB in and out.

    ``norm=NormMode.IMAGE`` (default) is the authors' semantics: per-image statistics at test time.
    """
    if name.removeprefix("paper/") in COMBINED_ONLY:
        name = name.replace("paper/", "paper/combined:", 1)
    if name.startswith("paper/combined:") and name.removeprefix("paper/combined:") in COMBINED_ORDER:
        return bake_onehot(load_paper_model("paper/combined", norm), name.removeprefix("paper/combined:"))
    if name not in _FILES:
        raise UnknownOperatorError(f"unknown paper model {name!r}; available: {', '.join(paper_model_names())}")
    stem, in_channels, build = _FILES[name]
    model = build(in_channels, norm=norm)
    with np.load(WEIGHTS_DIR / f"{stem}.npz") as data:
        model.load_state_dict({k: torch.from_numpy(data[k]) for k in data.files})
    return model.eval()
