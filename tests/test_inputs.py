"""Input normalizations (fip.models.inputs): the airlight estimate, and the same normalization in training data,
inference and model files."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import run_net, smooth_image
from test_training import _config

from fip.data.module import PairDataset
from fip.errors import InputError
from fip.imaging import srgb_decode, srgb_encode
from fip.models import ContextAggregationNet
from fip.models.inputs import AIRLIGHT_FLOOR, EXPOSURE_FLOOR, airlight, exposure, input_scale, normalize_input
from fip.models.storage import NetworkFile, load_network, save_network


def _hazy(seed: int, height: int = 60, width: int = 80) -> tuple[np.ndarray, np.ndarray]:
    """A photo seen through coloured haze (I = J t + A (1 - t), t falling towards the top, where a band is haze
    alone) and that haze colour."""
    rng = np.random.default_rng(seed)
    haze = rng.uniform(0.5, 1.0, size=3).astype(np.float32)
    scene = smooth_image(height, width, seed=seed) * 0.5  # darker than the haze, as the prior assumes
    transmission = np.clip(np.linspace(-0.3, 0.9, height, dtype=np.float32), 0, 1)[:, None, None]
    return scene * transmission + haze * (1 - transmission), haze


def _batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None]


@pytest.mark.parametrize("seed", range(4))
def test_airlight_is_the_dehazing_operators_estimate(seed):
    from fip_operators.dehaze import dark_channel, estimate_airlight

    image, haze = _hazy(seed)
    expected = estimate_airlight(image, dark_channel(image, 15))
    estimate = airlight(_batch(image))
    assert estimate.shape == (1, 3, 1, 1)
    # The erosion leaves plateaus, and pixels tied at the brightest share's edge may be taken in another order.
    np.testing.assert_allclose(estimate.flatten().numpy(), expected, atol=5e-3)
    np.testing.assert_allclose(expected, haze, atol=1e-6)  # the haze is what the estimate finds


def test_airlight_works_on_photos_smaller_than_its_window_and_floors_dark_channels():
    image = np.empty((5, 7, 3), np.float32)
    image[:] = (0.9, 0.5, 0.01)  # a haze without blue
    assert airlight(_batch(image)).flatten().tolist() == pytest.approx([0.9, 0.5, AIRLIGHT_FLOOR])
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        airlight(torch.zeros(1, 4, 8, 8))


def test_normalize_input_divides_each_photos_rgb_by_its_own_airlight_and_keeps_the_maps():
    (first, _), (second, _) = _hazy(0), _hazy(1)
    x = torch.cat([_batch(first), _batch(second)])
    x = torch.cat([x, torch.full((2, 2, *x.shape[2:]), 0.25)], dim=1)  # two constant maps
    normalized = normalize_input("airlight", x)
    for index, image in enumerate((first, second)):
        expected = image / airlight(_batch(image)).flatten().numpy()
        np.testing.assert_allclose(normalized[index, :3].permute(1, 2, 0).numpy(), expected, rtol=1e-6)
    assert (normalized[:, 3:] == 0.25).all()
    assert normalize_input(None, x) is x
    with pytest.raises(InputError, match="unknown input normalization 'haze'; choose one of airlight"):
        normalize_input("haze", x)
    with pytest.raises(InputError, match="unknown input normalization"):
        ContextAggregationNet(input_norm="haze")


def test_exposure_is_the_luma_percentile_and_divides_darker_copies_alike():
    image = smooth_image(64, 96, seed=5)
    luma = image @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    level = exposure(_batch(image))
    assert level.shape == (1, 3, 1, 1) and (level == level[0, 0]).all()
    assert float(level[0, 0]) == pytest.approx(np.percentile(luma, 99.5), abs=2e-3)
    # One and two stops darker in linear light: the sRGB values shrink by roughly 2**(stops / 2.2), as the level
    # (roughly: the curve is not exactly a power), so the normalized copies nearly meet the photo.
    reference = normalize_input("exposure", _batch(image))
    for stop in (-1, -2):
        copy = _batch(srgb_encode(srgb_decode(image) * 2.0**stop))
        assert float(exposure(copy)[0, 0]) < float(level[0, 0]) * 0.8
        assert (copy - _batch(image)).abs().max() > 0.15
        assert (normalize_input("exposure", copy) - reference).abs().max() < 0.06
    assert float(exposure(_batch(np.zeros((4, 4, 3), np.float32)))[0, 0]) == pytest.approx(EXPOSURE_FLOOR)  # no blow-up
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        exposure(torch.zeros(1, 1, 8, 8))


@pytest.mark.parametrize("kind", ["airlight", "exposure"])
@pytest.mark.parametrize("variant", ["full", "fast", "bf16"])
def test_a_network_with_an_input_norm_runs_on_the_normalized_photo(kind, variant):
    """The engine normalizes the whole photo first: the same as the plain network on the photo divided by hand,
    tiled or not (the estimate is the photo's, not a tile's)."""
    torch.manual_seed(0)
    plain = ContextAggregationNet(width=8, depth=5).eval()
    for module in plain.modules():
        if hasattr(module, "mu"):
            torch.nn.init.uniform_(module.mu, 0.2, 0.5)
    normalized = ContextAggregationNet(width=8, depth=5, input_norm=kind).eval()
    normalized.load_state_dict(plain.state_dict())
    image, _ = _hazy(2, 70, 90)
    image = image * 0.6 if kind == "exposure" else image  # a darker photo, which the normalization brightens
    by_hand = (image / input_scale(kind, _batch(image)).flatten().numpy()).astype(np.float32)
    expected = run_net(plain, by_hand, variant)
    tolerance = 2e-2 if variant == "bf16" else 1e-5
    np.testing.assert_allclose(run_net(normalized, image, variant), expected, atol=tolerance)
    np.testing.assert_allclose(run_net(normalized, image, variant, tile=32), expected, atol=tolerance)
    assert np.abs(run_net(plain, image, variant) - expected).max() > 0.01  # the normalization mattered


def test_a_scaled_input_norm_multiplies_the_output_back():
    """``airlight_scaled``: the network runs on I / A and its output is multiplied by A (then clipped)."""
    torch.manual_seed(0)
    plain = ContextAggregationNet(width=8, depth=5).eval()
    scaled = ContextAggregationNet(width=8, depth=5, input_norm="airlight_scaled").eval()
    scaled.load_state_dict(plain.state_dict())
    image, _ = _hazy(3, 50, 70)
    haze = airlight(_batch(image)).flatten().numpy()
    with torch.inference_mode():
        expected = plain(_batch((image / haze).astype(np.float32)))[0].permute(1, 2, 0).numpy() * haze
    np.testing.assert_allclose(run_net(scaled, image), np.clip(expected, 0, 1), atol=1e-5)


def test_model_files_keep_the_input_norm_and_export_refuses_it(tmp_path):
    net = ContextAggregationNet(width=8, depth=4, input_norm="airlight")
    save_network(NetworkFile(net, "hazy", "dehaze.nonlocal"), tmp_path / "hazy.pt")
    assert load_network(tmp_path / "hazy.pt").net.input_norm == "airlight"
    save_network(NetworkFile(ContextAggregationNet(width=8, depth=4), "plain"), tmp_path / "plain.pt")
    assert load_network(tmp_path / "plain.pt").net.input_norm is None
    from fip.export import export_program

    with pytest.raises(InputError, match="airlight estimate, which fip's export does not carry yet"):
        export_program(load_network(tmp_path / "hazy.pt"), tmp_path / "hazy.pt2")
    assert not (tmp_path / "hazy.pt2").exists()


def test_pair_dataset_normalizes_whole_inputs_and_leaves_targets(photo_folder, tmp_path):
    from fip.data.pairs import generate_pairs
    from fip.data.sources import open_source

    generate_pairs("smooth.l0", open_source(photo_folder), out_dir=tmp_path / "p", workers=1, progress=False)
    plain = PairDataset(tmp_path / "p", "all")
    normalized = PairDataset(tmp_path / "p", "all", input_norm="airlight")
    (x, y), (xn, yn) = plain[0], normalized[0]
    assert torch.equal(y, yn)
    torch.testing.assert_close(xn, x / airlight(x[None])[0])
    scaled = PairDataset(tmp_path / "p", "all", input_norm="airlight_scaled")
    xs, ys = scaled[0]
    torch.testing.assert_close(xs, xn)
    torch.testing.assert_close(ys, y / airlight(x[None])[0])  # learned where the network works
    crops = PairDataset(tmp_path / "p", "all", crop=16, context=0.5, input_norm="airlight")
    crop, _, preview = crops[0]
    assert crop.max() <= (x / airlight(x[None])[0]).max() + 1e-6 and preview.shape[1:] == (24, 32)


def test_training_with_an_input_norm_checks_the_network_and_saves_it(photo_folder, tmp_path, capsys):
    from fip.training import run_training

    config = _config(tmp_path, photo_folder, **{"trainer.max_epochs": 1})
    with pytest.raises(ValueError, match="data normalize the input by 'airlight' but the network expects None"):
        run_training(["-c", config, "--data.input_norm", "airlight"])
    assert not (tmp_path / "pairs").exists()  # refused before any pair was generated
    run_training(["-c", config, "--data.input_norm", "airlight", "--model.net.init_args.input_norm", "airlight"])
    checkpoint = next((tmp_path / "runs").rglob("last.ckpt"))
    model = load_network(checkpoint)
    assert model.net.input_norm == "airlight"
