"""Reference operators: the contract every registered operator keeps, and one behavioural test per built-in.

The contract tests are parametrized over the registry, so an operator (built-in or plugin) is tested the moment
it is registered. The behavioural tests are written so that a wrong implementation fails them.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import smooth_image

import fip
from fip import InputKind
from fip.errors import InputError
from fip.imaging import srgb_decode, srgb_encode
from fip.raw import Mosaic, mosaic_samples

BUILTINS = {
    "smooth.rof",
    "smooth.tv_l1",
    "smooth.l0",
    "smooth.rtv",
    "tone.multiscale",
    "detail.multiscale",
    "style.photographic",
    "style.pencil",
    "dehaze.dark_channel",
    "dehaze.nonlocal",
    "tone.mapping",
    "raw.demosaic_denoise",
    "style.stylize",
}
OPERATORS = [spec.name for spec in fip.list_operators()]


def textured(height: int = 64, width: int = 80, seed: int = 0) -> np.ndarray:
    """A smooth photo-like image with a sharp patch, fine texture and mild noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    image = smooth_image(height, width, seed) * 0.8 + 0.1
    y, x = np.mgrid[0:height, 0:width]
    image += (0.06 * np.sin(x * 1.7) * np.sin(y * 1.3))[..., None]
    image += rng.normal(0, 0.02, image.shape)
    return np.clip(image, 0, 1).astype(np.float32)


def view_for(spec: fip.OperatorSpec, image: np.ndarray):
    """The input view an operator consumes, made from an sRGB test image."""
    if spec.input is InputKind.SRGB:
        return image
    if spec.input is InputKind.LINEAR_RGB:
        return srgb_decode(image)
    return Mosaic(mosaic_samples(srgb_decode(image), "RGGB"))


def test_all_thirteen_builtins_are_registered():
    assert BUILTINS <= set(OPERATORS)
    for name in BUILTINS:
        spec = fip.get_operator(name)
        assert (spec.description and spec.citation) or name == "style.stylize"
        assert all(p.description for p in spec.params), name


@pytest.mark.parametrize("name", OPERATORS)
def test_shape_dtype_range_and_determinism(name):
    spec = fip.get_operator(name)
    view = view_for(spec, textured(48, 62))
    out = spec.apply(view)
    assert out.shape == (48, 62, 3) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.array_equal(out, spec.apply(view))
    before = view.copy() if isinstance(view, np.ndarray) else view.data.copy()
    spec.apply(view)
    assert np.array_equal(before, view if isinstance(view, np.ndarray) else view.data), "the input was modified"


@pytest.mark.parametrize("name", OPERATORS)
def test_bad_input_is_rejected_clearly(name):
    spec = fip.get_operator(name)
    good = view_for(spec, textured(32, 32))
    bad_inputs = [
        np.zeros((32, 32), np.float32),
        (good * 255).astype(np.uint8) if isinstance(good, np.ndarray) else good.data,
    ]
    for bad in bad_inputs:
        with pytest.raises(InputError) as info:
            spec.apply(bad)
        assert name in str(info.value) or "must" in str(info.value)
    with pytest.raises(fip.errors.ParameterError, match="has no parameter 'nope'"):
        spec.apply(good, {"nope": 1})


@pytest.mark.parametrize("name", OPERATORS)
def test_batch_equals_single_calls(name):
    spec = fip.get_operator(name)
    views = [view_for(spec, textured(40, 40, seed)) for seed in (1, 2)]
    batch = spec.apply_batch(views)
    assert np.array_equal(batch[1], spec.apply(views[1])) and np.array_equal(batch[0], spec.apply(views[0]))
    if spec.input is not InputKind.BAYER:
        tensor = torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2)
        assert torch.equal(spec(tensor), torch.from_numpy(batch).permute(0, 3, 1, 2))


# --------------------------------------------------------------------------------------------------------------
# Behaviour, one test per built-in operator.


def total_variation(image: np.ndarray) -> float:
    return float(np.abs(np.diff(image, axis=0)).sum() + np.abs(np.diff(image, axis=1)).sum())


@pytest.mark.parametrize("name", ["smooth.rof", "smooth.tv_l1", "smooth.l0", "smooth.rtv"])
def test_smoothers_lower_total_variation(name):
    image = textured()
    out = fip.get_operator(name).apply(image)
    assert total_variation(out) < 0.6 * total_variation(image)
    assert np.abs(out.mean(axis=(0, 1)) - image.mean(axis=(0, 1))).max() < 0.05  # colours stay


def piecewise_noisy(seed: int = 0) -> np.ndarray:
    """Three flat colour regions plus Gaussian noise (sigma 0.03)."""
    image = np.full((64, 80, 3), 0.3, np.float32)
    image[:, 40:] = 0.7
    image[20:40, 10:30] = (0.8, 0.2, 0.1)
    return np.clip(image + np.random.default_rng(seed).normal(0, 0.03, image.shape), 0, 1).astype(np.float32)


def test_l0_makes_most_gradients_exactly_zero():
    """ "Exactly" at the solver's float32 precision: below a quarter of one 8-bit level."""
    image = piecewise_noisy()
    out = fip.get_operator("smooth.l0").apply(image)
    zero = lambda a: (np.abs(np.diff(a, axis=1)).max(axis=2) < 1e-3).mean()  # noqa: E731
    assert zero(image) < 0.01 and zero(out) > 0.85


def test_stylize_flattens_texture_and_keeps_edges():
    image = piecewise_noisy()
    out = fip.get_operator("style.stylize").apply(image)
    assert out[25:35, 45:75].std() < 0.5 * image[25:35, 45:75].std()  # flat region: noise gone
    assert out[:, 45:].mean() - out[:, :35].mean() > 0.25  # the step edge (0.4 in the input) stays


def test_rtv_removes_texture_but_keeps_structure():
    height, width = 64, 96
    x = np.arange(width)
    structure = np.where(x < width // 2, 0.25, 0.75)[None, :, None] * np.ones((height, 1, 3))
    texture = 0.15 * np.sign(np.sin(np.arange(height)[:, None, None] * 1.2 + x[None, :, None] * 1.2))
    image = np.clip(structure + texture, 0, 1).astype(np.float32)
    out = fip.get_operator("smooth.rtv").apply(image)
    left, right = out[8:-8, 8 : width // 2 - 8], out[8:-8, width // 2 + 8 : -8]
    assert left.std() < 0.3 * image[8:-8, 8 : width // 2 - 8].std()  # texture gone
    assert right.mean() - left.mean() > 0.35  # the structure edge stays (0.5 in the input)


def hazy(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic hazy scene I = J t + A (1 - t) with depth growing upward; returns (hazy, clear)."""
    rng = np.random.default_rng(seed)
    clear = np.clip(textured(96, 96, seed) * 0.9 + rng.uniform(-0.1, 0.1, (1, 1, 3)), 0, 1)
    depth = np.linspace(1.5, 0.2, 96)[:, None, None] * np.ones((1, 96, 1))
    transmission = np.exp(-depth)
    image = clear * transmission + np.array([0.9, 0.9, 0.92]) * (1 - transmission)
    return image.astype(np.float32), clear.astype(np.float32)


@pytest.mark.parametrize("name", ["dehaze.dark_channel", "dehaze.nonlocal"])
def test_dehazing_raises_contrast_and_lowers_the_dark_channel(name):
    image, _ = hazy()
    out = fip.get_operator(name).apply(image)
    dark = lambda a: a.min(axis=2).mean()  # noqa: E731
    assert dark(out) < dark(image) - 0.1
    assert out.std() > 1.3 * image.std()


def test_pencil_is_grey_with_stroke_like_edges():
    image = np.full((96, 96, 3), 0.7, np.float32)
    image[:, 48:] = 0.3  # one vertical edge
    image[..., 0] += 0.2  # colour
    out = fip.get_operator("style.pencil").apply(np.clip(image, 0, 1))
    assert np.abs(out[..., 0] - out[..., 1]).max() < 1e-6 and np.abs(out[..., 1] - out[..., 2]).max() < 1e-6
    near_edge = out[20:-20, 45:51, 0].mean()
    away = np.concatenate([out[20:-20, 10:30, 0], out[20:-20, 66:86, 0]], axis=1).mean()
    assert near_edge < away - 0.1  # a dark stroke along the edge


def test_tone_mapping_compresses_a_high_dynamic_range():
    linear = np.full((64, 64, 3), 0.002, np.float32)  # a deep shadow ...
    linear[:, 32:] = 0.9  # ... beside a highlight: 450:1
    linear[::2, ::2] *= 1.1  # a little detail
    out = fip.get_operator("tone.mapping").apply(linear)
    plain = srgb_encode(linear)
    assert out[:, :32].mean() > 2 * plain[:, :32].mean()  # the shadow is lifted
    assert out[:, 32:].mean() > 0.8  # the highlight stays bright
    for method in ("drago", "mantiuk", "none"):
        assert (
            fip.get_operator("tone.mapping").apply(linear, {"global_operator": method})[:, :32].mean()
            > plain[:, :32].mean()
        )


def test_demosaic_denoise_beats_bilinear_on_a_noisy_mosaic():
    import cv2
    import skimage.data

    natural = skimage.data.astronaut()[100:292:2, 100:292:2].astype(np.float32) / 255  # 96x96, a real photo
    truth = srgb_decode(natural)
    samples = mosaic_samples(truth, "RGGB")
    noisy = np.clip(samples + np.random.default_rng(0).normal(0, 0.03, samples.shape), 0, 1).astype(np.float32)
    ours = fip.get_operator("raw.demosaic_denoise").apply(Mosaic(noisy, "RGGB"))
    bilinear = cv2.cvtColor((noisy * 65535).astype(np.uint16), cv2.COLOR_BayerBG2RGB).astype(np.float32) / 65535
    psnr = lambda a: -10 * np.log10(((a - natural)[4:-4, 4:-4] ** 2).mean())  # noqa: E731
    assert psnr(ours) > psnr(srgb_encode(bilinear)) + 1.0


def high_pass_energy(image: np.ndarray) -> float:
    import cv2

    grey = image.mean(axis=2)
    return float(np.abs(grey - cv2.GaussianBlur(grey, (0, 0), 2.0)).mean())


def test_multiscale_tone_boosts_detail():
    image = textured()
    out = fip.get_operator("tone.multiscale").apply(image)
    assert high_pass_energy(out) > 1.5 * high_pass_energy(image)


def test_local_laplacian_enhances_or_smooths_detail_by_alpha():
    image = textured()
    spec = fip.get_operator("detail.multiscale")
    assert high_pass_energy(spec.apply(image)) > 1.3 * high_pass_energy(image)
    assert high_pass_energy(spec.apply(image, {"alpha": 2.0})) < 0.9 * high_pass_energy(image)


def test_photographic_style_moves_tones_toward_the_model():
    from fip_operators.style import _model_photo

    model = _model_photo()
    image = np.clip(textured() * 0.3 + 0.6, 0, 1)  # a bright, flat photo
    out = fip.get_operator("style.photographic").apply(image)
    assert np.allclose(out[..., 0], out[..., 2])  # black and white
    quantiles = np.linspace(0.05, 0.95, 10)
    distance = lambda a: np.abs(np.quantile(a, quantiles) - np.quantile(model, quantiles)).mean()  # noqa: E731
    assert distance(out[..., 0]) < 0.5 * distance(image.mean(axis=2))
