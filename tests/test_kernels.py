"""The fused CPU kernels (fip.runtime.kernels) against the torch code they replace on the CPU, and the engine's
use of them: the same photos out of every low-resolution approximator with and without them."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import smooth_image

from fip.models import GuidedCAN
from fip.models.catalogue import model_for_operator
from fip.models.guided import apply_linear_model, colour_guided_coefficients
from fip.pipeline import run_approximation
from fip.runtime import kernels
from fip.runtime.execute import guided_upsample


def _rows(image):
    return lambda top, bottom: image[:, :, top:bottom]


@pytest.mark.parametrize("radius", [1, 2])
@pytest.mark.parametrize("size", [(24, 31), (7, 5)])
def test_the_fused_colour_fit_is_the_torch_fit_on_busy_and_near_grey_boxes(radius, size):
    torch.manual_seed(radius)
    guide = torch.rand(1, 3, *size)
    grey = guide.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1) + 1e-3 * torch.rand(1, 3, *size)  # near-singular
    for g in (guide, grey):
        target = torch.rand(1, 3, *size)
        for eps in (1e-3, 1e-5):
            fused = kernels.colour_guided_fit(g, target, radius, eps)
            plain = colour_guided_coefficients(g, target, radius, eps)
            assert fused.shape == plain.shape and fused.dtype == torch.float32
            # Both solve in float64; the box sums differ in rounding (fused: float64, torch: float32), which near-
            # grey boxes amplify in A. What reaches the photo, A @ guide + b, agrees far below an 8-bit level.
            high = F.interpolate(g, size=(2 * size[0], 2 * size[1]), mode="bilinear", align_corners=False)
            out = kernels.apply_linear_model(fused, high, colour=True)
            expected = apply_linear_model(plain, *high.shape[2:], _rows(high), colour=True)
            assert (out - expected).abs().max() < 2e-4, (g is grey, eps)


@pytest.mark.parametrize("colour", [True, False])
@pytest.mark.parametrize(
    "low, high", [((11, 17), (48, 62)), ((16, 21), (16, 21)), ((5, 6), (97, 131)), ((1, 1), (4, 3))]
)
def test_the_fused_apply_is_bilinear_upsampling_then_the_linear_model(colour, low, high):
    torch.manual_seed(0)
    coefficients = torch.randn(1, 12 if colour else 6, *low)
    guide = torch.rand(1, 3, *high)
    expected = apply_linear_model(coefficients, *high, _rows(guide), band=7, colour=colour)
    out = kernels.apply_linear_model(coefficients, guide, colour)
    assert torch.allclose(out, expected, atol=1e-5)  # float32 rounding


@pytest.mark.parametrize("hidden", [16, 5])
def test_the_fused_guide_map_is_the_module(hidden):
    from fip.models.guided import GuideMap

    torch.manual_seed(0)
    guide = GuideMap(hidden).eval()
    with torch.no_grad():
        for parameter in guide.parameters():  # every unit on both sides of its kink
            parameter.normal_(0, 0.5)
        image = torch.rand(1, 3, 37, 29)
        assert torch.allclose(kernels.guide_map(guide, image), guide(image), atol=1e-5)


def test_the_kernels_refuse_what_they_cannot_take():
    with pytest.raises(ValueError, match="expected 12 coefficient maps"):
        kernels.apply_linear_model(torch.rand(1, 6, 4, 4), torch.rand(1, 3, 8, 8), colour=True)
    with pytest.raises(ValueError, match="each side larger than the radius 1"):
        kernels.colour_guided_fit(torch.rand(1, 3, 1, 8), torch.rand(1, 3, 1, 8), 1, 1e-4)  # reflection needs 2 rows
    with pytest.raises(ValueError, match="one CPU image"):
        kernels.apply_linear_model(torch.rand(2, 6, 4, 4), torch.rand(2, 3, 8, 8), colour=False)
    assert kernels.usable(torch.rand(1, 3, 4, 4))
    assert not kernels.usable(torch.rand(2, 3, 4, 4))  # a batch: the torch code
    assert not kernels.usable(torch.rand(1, 3, 4, 4, requires_grad=True))  # training: the torch code
    assert not kernels.usable(torch.rand(1, 3, 4, 4, device="meta"))


def test_the_engine_gives_the_same_photo_with_and_without_the_kernels(monkeypatch):
    image = smooth_image(121, 163, seed=5)
    for operator, approximator in (
        ("tone.mapping", "reference-lowres"),
        ("smooth.l0", "reference-halfres"),
        ("smooth.l0", "network-lowres"),
    ):
        model = model_for_operator(operator)
        fused = run_approximation(model, image, request=approximator).image
        monkeypatch.setenv("FIP_FUSED_KERNELS", "0")
        plain = run_approximation(model, image, request=approximator).image
        monkeypatch.delenv("FIP_FUSED_KERNELS")
        assert abs(fused.astype(float) - plain.astype(float)).max() <= 1e-3, (operator, approximator)
        assert abs(fused.astype(float) - image.astype(float)).max() > 0.01  # the operator did something


def test_a_deep_guided_filter_upsamples_the_same_with_the_fused_apply():
    torch.manual_seed(0)
    net = GuidedCAN(width=8, depth=4, factor=3.0, guide_hidden=6).eval()
    with torch.no_grad():
        net.guide.body[2].weight.normal_(0, 0.3)  # a guidance map that is not the photo
        x = torch.rand(1, 3, 61, 83)
        small = net.downscale(x)
        low = net.can(small)
        assert torch.allclose(guided_upsample(net, small, low, x, band=16), net.upsample(small, low, x), atol=1e-5)


def test_without_numba_the_engine_warns_once_and_runs_the_torch_code(monkeypatch):
    import sys

    monkeypatch.setattr(kernels, "_COMPILED", {})
    monkeypatch.setattr(kernels, "_BROKEN", [])
    monkeypatch.setitem(sys.modules, "fip.runtime._numba_kernels", None)  # importing it raises ImportError
    image = smooth_image(60, 80, seed=2)
    with pytest.warns(RuntimeWarning, match="fused CPU kernels are unavailable.*pip install numba"):
        out = run_approximation(model_for_operator("tone.mapping"), image, request="reference-lowres").image
    assert out.shape == image.shape
    assert not kernels.usable(torch.rand(1, 3, 4, 4))  # known broken: no second warning, no second attempt


def test_the_tabulated_srgb_decode_is_the_formula_to_float32_resolution(monkeypatch):
    import numpy as np

    from fip.imaging import srgb_decode

    values = np.concatenate([np.random.default_rng(0).random(10_000), [0.0, 1.0, 0.04045, 0.0404, 0.0405, -0.2, 1.3]])
    image = values.astype(np.float32).reshape(-1, 1, 1)
    clipped = np.clip(values, 0.0, 1.0)
    formula = np.where(clipped <= 0.04045, clipped / 12.92, ((clipped + 0.055) / 1.055) ** 2.4)
    fast = kernels.srgb_decode(image)
    assert fast.shape == image.shape and fast.dtype == np.float32
    assert np.abs(fast[:, 0, 0] - formula).max() < 1e-7  # float32 rounds at 6e-8 near 1 (its formula: 3e-7)
    assert srgb_decode(image) is not None and np.array_equal(srgb_decode(image), fast)  # fip.imaging uses it
    monkeypatch.setenv("FIP_FUSED_KERNELS", "0")
    assert kernels.srgb_decode(image) is None
    assert np.abs(srgb_decode(image)[:, 0, 0] - formula).max() < 5e-7  # the formula in float32, without the kernels


def test_a_long_first_call_says_the_kernels_are_compiling(monkeypatch, capsys):
    import threading
    import time

    import numpy as np

    def slow_decode(values, table):  # what numba compiling on the first call looks like from outside
        time.sleep(0.5)
        return values.copy()

    monkeypatch.setattr(kernels, "_COMPILED", {"decode": slow_decode})
    monkeypatch.setattr(kernels, "COMPILE_NOTICE_SECONDS", 0.05)
    monkeypatch.setattr(kernels._threads, "_said", threading.Event())
    kernels.srgb_decode(np.zeros((2, 2, 3), np.float32))
    kernels.srgb_decode(np.zeros((2, 2, 3), np.float32))
    assert capsys.readouterr().err.count("fip: compiling its CPU kernels") == 1  # once, not per call
