"""The public API: ``fip.load`` returns a module for anyone's pipeline; ``fip.apply`` takes and returns NumPy, PIL
and torch images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import smooth_image
from PIL import Image

import fip
from fip.errors import FipError, InputError
from fip.metrics import psnr
from fip.pipeline import run_approximation

pytestmark = pytest.mark.device_class  # bf16 paths and auto follow the CPU class: CI runs these as both


def test_load_returns_a_module_that_runs_batches_and_single_images():
    module = fip.load("smooth.l0", device="cpu", variant="fast")
    assert isinstance(module, torch.nn.Module) and isinstance(module, fip.FastOperator)
    assert module.approximator == "fast" and module.model.name == "fip/smooth.l0" and module.device.type == "cpu"
    images = [smooth_image(48, 64, seed=s) for s in (1, 2)]
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    out = module(batch)
    assert out.shape == batch.shape and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    for image, result in zip(images, out):  # each image of a batch gets its own statistics: as run alone
        expected = run_approximation("smooth.l0", image, request="fast").image
        np.testing.assert_allclose(result.permute(1, 2, 0).numpy(), expected, atol=1e-5)
    single = module(batch[0])
    assert single.shape == batch.shape[1:] and torch.allclose(single, out[0], atol=1e-6)
    assert module(batch.double()).dtype == torch.float64  # the input's dtype comes back
    assert "approximator='fast'" in repr(module)


def test_load_resolves_auto_for_the_device_and_accepts_every_kind_of_name(tmp_path):
    auto = fip.load("fip/smooth.l0", device="cpu")
    card = auto.model.card
    assert auto.approximator in card.approximators and auto.plan.request == "auto"
    assert fip.load("paper/L0_smoothing", device="cpu").approximator == "fast"  # nothing measured: the default
    reference = fip.load("smooth.l0", device="cpu", variant="reference-lowres")
    out = reference(torch.from_numpy(smooth_image(90, 120)).permute(2, 0, 1))
    assert out.shape == (3, 90, 120)
    with pytest.raises(FipError, match="no model, operator or file named 'smooth.nothing'"):
        fip.load("smooth.nothing")
    with pytest.raises(FipError, match="has no approximator 'int4'"):
        fip.load("smooth.l0", variant="int4")


def test_a_loaded_module_plans_like_fip_apply_and_tiles_where_memory_requires(monkeypatch):
    from fip.runtime import engine

    monkeypatch.setenv("FIP_MEMORY_LIMIT", "200M")  # too little for a 900x1200 full-size network in one piece
    module = fip.load("smooth.l0", device="cpu", variant="fast")
    plan = module.plan_for(900, 1200)
    assert plan.tile is not None and plan == engine.make_plan(module.model, "fast", (900, 1200), "cpu")
    assert module.plan_for(900, 1200) is plan  # one plan per size
    image = smooth_image(900, 1200)
    x = torch.from_numpy(image).permute(2, 0, 1)
    tiled = module(x)
    monkeypatch.delenv("FIP_MEMORY_LIMIT")
    whole = fip.load("smooth.l0", device="cpu", variant="fast")
    assert whole.plan_for(900, 1200).tile is None
    np.testing.assert_allclose(tiled.numpy(), whole(x).numpy(), atol=2e-3)  # tiles agree with the whole photo
    np.testing.assert_allclose(fip.apply(module, image), tiled.permute(1, 2, 0).numpy(), atol=1e-6)


def test_apply_makes_one_plan_per_photo_size(monkeypatch):
    from fip import api

    sizes = []
    make_plan = api.make_plan
    monkeypatch.setattr(
        api,
        "make_plan",
        lambda model, request, size, *a, **k: sizes.append(size) or make_plan(model, request, size, *a, **k),
    )
    batch = torch.from_numpy(np.stack([smooth_image(32, 48, seed=s) for s in range(3)])).permute(0, 3, 1, 2)
    out = fip.apply("smooth.l0", batch, variant="fast")
    assert out.shape == batch.shape and sizes == [(32, 48)]


def test_a_loaded_module_goes_through_torch_compile():
    module = fip.load("paper/L0_smoothing", device="cpu", variant="full")
    compiled = torch.compile(module, backend="eager")  # dynamo traces it; the eager backend keeps the test quick
    x = torch.from_numpy(smooth_image(40, 56)).permute(2, 0, 1)[None]
    torch.testing.assert_close(compiled(x), module(x), atol=1e-5, rtol=1e-5)


def test_apply_returns_the_kind_it_was_given():
    image = smooth_image(60, 80)
    expected = run_approximation("smooth.l0", image, request="fast").image
    as_float = fip.apply("smooth.l0", image, variant="fast", device="cpu")
    assert isinstance(as_float, np.ndarray) and as_float.dtype == np.float32 and as_float.shape == image.shape
    np.testing.assert_allclose(as_float, expected, atol=1e-6)
    eight = fip.apply("smooth.l0", np.round(image * 255).astype(np.uint8), variant="fast")
    assert eight.dtype == np.uint8 and eight.shape == image.shape and psnr(eight / 255.0, expected) > 40
    sixteen = fip.apply("smooth.l0", np.round(image * 65535).astype(np.uint16), variant="fast")
    assert sixteen.dtype == np.uint16 and psnr(sixteen / 65535.0, expected) > 60
    picture = fip.apply("smooth.l0", Image.fromarray(np.round(image * 255).astype(np.uint8)), variant="fast")
    assert isinstance(picture, Image.Image) and picture.mode == "RGB" and picture.size == (80, 60)
    tensor = torch.from_numpy(image).permute(2, 0, 1).double()
    out = fip.apply("smooth.l0", tensor, variant="fast")
    assert out.shape == tensor.shape and out.dtype == torch.float64
    batch = fip.apply("smooth.l0", tensor[None].repeat(2, 1, 1, 1).float(), variant="fast")
    assert batch.shape == (2, 3, 60, 80) and torch.allclose(batch[0], batch[1])
    module = fip.load("smooth.l0", device="cpu", variant="fast")
    np.testing.assert_allclose(fip.apply(module, image), expected, atol=1e-5)
    different = fip.apply("smooth.l0", image, params={"lambda_": 0.1})  # auto: the reference at low resolution
    assert psnr(different, expected) < 40


PIL_MODES = [
    "1",
    "L",
    "P",
    "RGB",
    "RGBA",
    "CMYK",
    "YCbCr",
    "LAB",
    "HSV",
    "LA",
    "La",
    "PA",
    "RGBX",
    "RGBa",
    "I",
    "I;16",
    "I;16B",
    "I;16L",
    "I;16N",
    "F",
]
_RAW_MODES = {"I": "<i4", "I;16": "<u2", "I;16L": "<u2", "I;16N": "=u2", "I;16B": ">u2", "F": "<f4"}


@pytest.mark.parametrize("mode", PIL_MODES)
def test_apply_reads_a_pil_image_of_every_mode_as_the_file_reader_would(mode, tmp_path):
    from fip.imaging import read_image_file

    colour = smooth_image(6, 8, edge=False)
    if mode in _RAW_MODES:  # grey, stored raw: integers over 0..65535, floats over 0..1
        grey = colour.mean(axis=2)
        values = grey if mode == "F" else np.round(grey * 65535)
        picture = Image.frombytes(mode, (8, 6), values.astype(_RAW_MODES[mode]).tobytes())
        expected = np.repeat(grey[..., None], 3, axis=2)
        if mode == "I;16":  # a 16-bit grey PNG, read by fip's file reader
            picture.save(tmp_path / "grey.png")
            np.testing.assert_allclose(read_image_file(tmp_path / "grey.png"), expected, atol=1e-5)
    else:
        picture = Image.fromarray(np.round(colour * 255).astype(np.uint8)).convert(mode)
        source = picture.convert("LA") if mode == "La" else picture
        expected = np.asarray(source.convert("RGB"), dtype=np.float32) / 255
    out = fip.apply("smooth.l0", picture, variant="fast")
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.size == (8, 6)
    reference = fip.apply("smooth.l0", expected.astype(np.float32), variant="fast")
    assert np.abs(np.asarray(out) / 255.0 - reference).max() <= 0.5 / 255 + 1e-6, mode


def test_apply_refuses_pil_values_it_cannot_read_and_empty_batches():
    with pytest.raises(InputError, match="mode F must hold values in \\[0, 1\\]; got \\[0, 255\\]: scale it to 0..1"):
        fip.apply("smooth.l0", Image.fromarray(np.linspace(0, 255, 16, dtype=np.float32).reshape(4, 4)))
    with pytest.raises(InputError, match="mode I must hold values in \\[0, 65535\\]; got \\[-1, 0\\]"):
        fip.apply("smooth.l0", Image.frombytes("I", (2, 2), np.array([-1, 0, 0, 0], "<i4").tobytes()))
    for empty in (torch.zeros(0, 3, 8, 8), torch.zeros(3, 0, 8)):
        with pytest.raises(InputError):
            fip.apply("smooth.l0", empty, variant="fast")
    with pytest.raises(InputError, match="holds no image"):
        fip.apply("smooth.l0", torch.zeros(0, 3, 8, 8), variant="fast")
    with pytest.raises(InputError, match="holds no image"):
        fip.load("smooth.l0", device="cpu", variant="fast")(torch.zeros(0, 3, 8, 8))


@pytest.mark.parametrize(
    "shape, hint",
    [
        ((3, 8, 8), "channels-first"),
        ((8, 8, 4), "RGBA\\): drop the alpha"),
        ((8, 8), "grey: repeat it to RGB"),
        ((8, 8, 1), "grey"),
        ((8, 8, 2), "grey and alpha"),
        ((2, 8, 8, 3), "a batch"),
    ],
)
def test_arrays_of_other_shapes_get_the_hint_that_fits(shape, hint):
    with pytest.raises(InputError, match=hint) as refused:
        fip.apply("smooth.l0", np.zeros(shape, np.float32), variant="fast")
    assert ("grey" in hint) == ("grey" in str(refused.value))


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((4, 4)), "must be \\(H, W, 3\\)"),
        (np.zeros((4, 4, 3), dtype=np.int32), "uint8, uint16 or float"),
        (np.full((4, 4, 3), 2.0, dtype=np.float32), "values must lie in \\[0, 1\\]"),
        (np.zeros((1, 5, 3), dtype=np.float32), "at least 2x2"),
        (torch.zeros(4, 4), "\\(3, H, W\\) or \\(B, 3, H, W\\)"),
        (torch.zeros(3, 4, 4, dtype=torch.uint8), "float in \\[0, 1\\]"),
        ("photo.jpg", "takes a NumPy array, a PIL image or a torch tensor"),
    ],
)
def test_apply_refuses_bad_images_with_the_fix(image, message):
    with pytest.raises(InputError, match=message):
        fip.apply("smooth.l0", image, variant="fast")


def test_a_module_refuses_bad_input_and_other_choices():
    module = fip.load("smooth.l0", device="cpu", variant="fast")
    with pytest.raises(InputError, match="float tensor"):
        module(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(InputError, match="\\(B, 3, H, W\\)"):
        module(torch.zeros(1, 4, 8, 8))
    with pytest.raises(InputError, match="runs the approximator and parameters it was loaded with"):
        fip.apply(module, smooth_image(8, 8), params={"lambda_": 0.1})
    with pytest.raises(InputError, match="takes a torch tensor .*got a ndarray: use fip.apply"):
        module(smooth_image(8, 8))
    with pytest.raises(InputError, match="keeps its network in float32.*variant='bf16'"):
        fip.load("smooth.l0", device="cpu", variant="fast").half()(torch.rand(1, 3, 8, 8))


def test_apply_names_the_operator_of_a_network_of_several():
    image = smooth_image(40, 56)
    with pytest.raises(FipError, match="serves several operators; name one"):
        fip.apply("paper/combined", image, variant="fast")
    out = fip.apply("paper/combined", image, variant="fast", operator="smooth.l0")
    assert out.shape == image.shape
    module = fip.load("paper/combined", device="cpu", variant="fast", operator="smooth.l0")
    np.testing.assert_allclose(fip.apply(module, image), out, atol=1e-5)


def test_load_and_apply_take_the_preference_of_auto():
    from fip.runtime.plan import Preference, PreferenceError, make_plan

    model = fip.load("smooth.l0", device="cpu").model
    for prefer in ("quality", "balanced", "speed"):
        expected = make_plan(model, "auto", (1080, 1920), "cpu", preference=Preference(prefer)).approximator
        assert fip.load("smooth.l0", device="cpu", prefer=prefer).approximator == expected
    assert fip.load("smooth.l0", device="cpu", prefer="speed").approximator == "reference-lowres"  # 0.52 s, 35.9 dB
    assert fip.load("smooth.l0", device="cpu", prefer="speed", min_psnr=99).approximator == "reference"
    image = smooth_image(48, 64)
    out = fip.apply("smooth.l0", image, prefer="speed", min_psnr=99)  # nothing reaches 99 dB: the reference itself
    np.testing.assert_allclose(out, run_approximation("smooth.l0", image, request="reference").image, atol=1e-6)
    with pytest.raises(PreferenceError, match="prefer 'fastest' is not a preset"):
        fip.apply("smooth.l0", image, prefer="fastest")
    with pytest.raises(FipError, match="min PSNR -3 is not a PSNR"):
        fip.load("smooth.l0", device="cpu", min_psnr=-3)
    with pytest.raises(FipError, match="'fast' is asked for by name"):
        fip.apply("smooth.l0", image, variant="fast", prefer="speed")
    with pytest.raises(InputError, match="or load it with prefer="):
        fip.apply(fip.load("smooth.l0", device="cpu"), image, prefer="speed")
