"""The low-resolution form: fip.models.GuidedCAN (Deep Guided Filter), its banded upsampling, its model files,
its warm start and training through Lightning, and the ``lowres`` variant that uses it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import smooth_image

from fip.errors import FipError
from fip.infer import LoadedModel, export_model, load_model, net_config, run_loaded, run_model
from fip.lit import Approximator
from fip.models import ContextAggregationNet, GuidedCAN
from fip.models.guided import FastGuidedFilter, upsample_rows
from fip.variants import Variant

CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"


def _busy_guided(seed: int = 0) -> GuidedCAN:
    """A small GuidedCAN whose guidance map is not the identity (the untrained start would hide mistakes)."""
    torch.manual_seed(seed)
    net = GuidedCAN(width=8, depth=4, factor=3.0, guide_hidden=6)
    with torch.no_grad():
        net.guide.body[2].weight.normal_(0, 0.3)
        net.can.output.weight.normal_(0, 0.3)
    return net.eval()


@pytest.mark.parametrize("size", [(97, 131), (30, 40), (11, 17), (5, 6)])
def test_upsampling_rows_in_bands_equals_upsampling_the_whole_map(size):
    coefficients = torch.rand(1, 6, 11, 17)
    whole = F.interpolate(coefficients, size=size, mode="bilinear", align_corners=False)
    for top in range(0, size[0], 7):
        bottom = min(size[0], top + 7)
        assert torch.allclose(upsample_rows(coefficients, *size, top, bottom), whole[:, :, top:bottom], atol=1e-6)


def test_untrained_guided_can_is_the_plain_guided_filter_and_bands_change_nothing():
    net = GuidedCAN(width=8, depth=4, factor=3.0).eval()
    x = torch.rand(1, 3, 61, 83)
    with torch.no_grad():
        small = net.downscale(x)
        assert small.shape[2:] == (20, 28)  # 61 / 3 and 83 / 3, rounded
        plain = FastGuidedFilter(radius=1, eps=1e-4)(small, net.can(small), x)  # the guidance map starts as the photo
        assert torch.allclose(net(x), plain, atol=1e-6)
        busy = _busy_guided()
        whole = busy(x)
        assert torch.allclose(busy.upsample(small, busy.can(small), x, band=8), whole, atol=1e-5)
        assert not torch.allclose(whole, plain, atol=1e-3)


def test_guidance_map_is_its_two_1x1_convolutions():
    guide = _busy_guided().guide
    x = torch.rand(2, 3, 9, 14)[:, :, 1:8]  # a non-contiguous slice, as the bands are
    with torch.no_grad():
        assert torch.allclose(guide(x), x + guide.body(x), atol=1e-6)


def test_every_part_learns_end_to_end():
    net = _busy_guided().train()
    before = {name: p.detach().clone() for name, p in net.named_parameters()}
    x, target = torch.rand(2, 3, 36, 48), torch.rand(2, 3, 36, 48)
    F.mse_loss(net(x), target).backward()
    torch.optim.SGD(net.parameters(), lr=0.1).step()
    moved = {name.split(".")[0] for name, p in net.named_parameters() if not torch.equal(p, before[name])}
    assert moved == {"can", "guide", "filter"}


def test_model_files_keep_the_guided_network_and_it_runs_only_as_lowres(tmp_path):
    net = _busy_guided()
    assert net_config(net)["guided"] == {"factor": 3.0, "radius": 1, "fit_hidden": 0, "guide_hidden": 6}
    loaded = load_model(export_model(LoadedModel(net, "g", "smooth.l0"), tmp_path / "smooth.l0.lowres.pt"))
    assert isinstance(loaded.net, GuidedCAN) and loaded.variants() == [Variant.AUTO, Variant.FULL, Variant.LOWRES]
    image = smooth_image(60, 90, seed=2)
    expected = run_model(net, image, variant=Variant.LOWRES)
    assert torch.allclose(torch.from_numpy(run_loaded(loaded, image, variant="auto")), torch.from_numpy(expected), atol=1e-6)
    assert run_loaded(loaded, image, variant="full").shape == image.shape  # exact statistics at low resolution
    with pytest.raises(FipError, match="low-resolution .guided-filter. model: it runs as 'lowres'"):
        run_loaded(loaded, image, variant="fast")


def test_lowres_variant_takes_the_trained_sibling_for_photos_big_enough(monkeypatch):
    import fip.infer

    monkeypatch.setattr(fip.infer, "LOWRES_MEGAPIXELS", 0.004)  # tiny photos stand for large ones
    full = ContextAggregationNet(width=8, depth=4).eval()
    model = LoadedModel(full, "m", "smooth.l0", lowres=LoadedModel(_busy_guided(), "g", "smooth.l0"))
    large, small = smooth_image(60, 90, seed=3), smooth_image(40, 60, seed=4)  # 0.0054 and 0.0024 MP
    with torch.no_grad():
        assert (run_loaded(model, large, variant="lowres") == run_model(model.lowres.net, large, variant="lowres")).all()
        assert (run_loaded(model, small, variant="lowres") == run_model(full, small, variant="lowres")).all()


def test_warm_start_from_a_plain_model_fills_the_guided_networks_can():
    approximator = Approximator(GuidedCAN(), warm_start="paper/L0_smoothing")
    paper = load_model("paper/L0_smoothing").net.state_dict()
    assert all(torch.equal(v, paper[k]) for k, v in approximator.net.can.state_dict().items())
    assert not approximator.net.guide.body[2].weight.any()  # the rest starts as the plain guided filter


def test_lowres_config_trains_a_guided_network_through_lightning(photo_folder, tmp_path):
    """train/configs/overlays/lowres.yaml layered over an operator's config, as scripts/ship_lowres.py runs it: the
    CAN keeps that config's shape and starts from the model named by the warm start."""
    from test_training import _config

    from fip.training import run_training

    start = ContextAggregationNet(width=8, depth=4)  # the tiny config's shape
    with torch.no_grad():
        start.output.weight.normal_(0, 0.3)
    path = export_model(LoadedModel(start, "start", "smooth.l0"), tmp_path / "start.pt")
    cli = run_training(["-c", _config(tmp_path, photo_folder), "-c", str(CONFIGS / "overlays" / "lowres.yaml"),
                        "--model.warm_start", str(path), "--trainer.max_epochs", "0"])  # fmt: skip
    assert isinstance(cli.model.net, GuidedCAN) and (cli.model.net.width, cli.model.net.depth) == (8, 4)
    assert torch.equal(cli.model.net.can.output.weight, start.output.weight)
    cli = run_training(["-c", _config(tmp_path, photo_folder), "-c", str(CONFIGS / "overlays" / "lowres.yaml"),
                        "--model.warm_start", str(path), "--trainer.max_epochs", "2", "--data.crop_size", "48"])  # fmt: skip
    trained = load_model(cli.trainer.checkpoint_callback.last_model_path)
    assert isinstance(trained.net, GuidedCAN) and trained.net.factor == 3.0 and trained.operator == "smooth.l0"
    assert trained.net.guide.body[2].weight.any()  # the guidance map left its zero start


def test_auto_takes_a_trained_lowres_at_any_known_size_and_an_untrained_one_only_up_to_4_mp():
    full = ContextAggregationNet(width=8, depth=4).eval()
    scores = {"full": 30.0, "fast": 30.0, "lowres": 29.8}
    trained = LoadedModel(full, "m", "smooth.l0", lowres=LoadedModel(_busy_guided(), "g", "smooth.l0"), scores=scores)
    untrained = LoadedModel(full, "m", "smooth.l0", scores=scores)
    assert trained.resolve(Variant.AUTO, 24.0) is Variant.LOWRES and untrained.resolve(Variant.AUTO, 24.0) is Variant.FAST
    assert trained.resolve(Variant.AUTO, 2.0) is untrained.resolve(Variant.AUTO, 2.0) is Variant.LOWRES
    assert trained.resolve(Variant.AUTO) is Variant.FAST  # the size unknown: nothing to compare with 0.25 MP


def test_exporting_a_guided_model_says_what_to_export_instead(tmp_path, capsys):
    from fip.cli import main

    path = export_model(LoadedModel(_busy_guided(), "g", "smooth.l0"), tmp_path / "smooth.l0.lowres.pt")
    for out, names in (("m.pt2", "-o OPERATOR"), ("m.onnx", "OPERATOR.pruned.pt")):
        assert main(["export", "-m", str(path), "--out", str(tmp_path / out)]) != 0
        assert names in capsys.readouterr().err and not (tmp_path / out).exists()


def test_shipped_lowres_models_load_run_and_are_what_auto_picks_where_measured_close():
    from dataclasses import replace

    from conftest import smooth_image as photo

    from fip.infer import model_for_operator

    pencil = model_for_operator("style.pencil")
    assert isinstance(pencil.lowres.net, GuidedCAN) and pencil.lowres.net.factor == 3.0
    measured_close = pencil.loss_db(Variant.LOWRES) <= 0.5  # measured on the FiveK photos beside the model
    assert (pencil.resolve(Variant.AUTO, 24.0) is Variant.LOWRES) == measured_close
    best = max(pencil.scores["full"], pencil.scores["fast"])  # within 0.5 dB of the better statistics mode
    close, far = (replace(pencil, scores={**pencil.scores, "lowres": best - loss}) for loss in (0.4, 0.6))
    assert close.resolve(Variant.AUTO, 24.0) is Variant.LOWRES  # trained: any size
    assert far.resolve(Variant.AUTO, 24.0) is not Variant.LOWRES
    image = photo(480, 640, seed=5)  # 0.31 MP: over 0.25, so the guided network runs
    out = run_loaded(close, image, variant=Variant.AUTO)
    assert out.shape == image.shape and (out == run_model(pencil.lowres.net, image, variant=Variant.LOWRES)).all()


@pytest.mark.parametrize("radius", [1, 2])
def test_box_mean_is_kornias_box_blur_with_reflected_borders(radius):
    import kornia

    x = torch.rand(1, 6, 13, 17)
    size = 2 * radius + 1
    expected = kornia.filters.box_blur(x, (size, size), border_type="reflect")
    assert torch.allclose(FastGuidedFilter(radius)._box(x), expected, atol=1e-6)


def test_guided_network_under_tiling_with_maps_and_batches_matches_the_plain_pass():
    torch.manual_seed(0)
    net = GuidedCAN(in_channels=5, width=8, depth=4, radius=2).eval()  # RGB + two conditioning maps, as one-hot nets
    with torch.no_grad():  # busy weights: the identity start would make tiling look exact for free
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.normal_(0, 0.3)
    image = smooth_image(150, 200, seed=6)
    maps = torch.tensor([0.0, 1.0])
    whole = run_model(net, image, extra=maps, variant=Variant.LOWRES)
    tiled = run_model(net, image, extra=maps, tile=32, variant=Variant.LOWRES)  # bands of 32 rows, tiled CAN
    assert whole.shape == image.shape and float(abs(tiled - whole).max()) < 1e-4  # tiles with a halo: exact
    x = torch.rand(2, 5, 40, 61)
    with torch.no_grad():
        small = net.downscale(x)
        assert torch.allclose(net.upsample(small, net.can(small), x, band=8), net(x), atol=1e-5)
    assert GuidedCAN(radius=4).downscale(torch.rand(1, 3, 6, 6)).shape[2:] == (5, 5)  # boxes of radius 4 still fit


def test_the_fixed_guided_filter_computes_in_bands_with_the_same_result():
    guide_low, target_low, guide_high = torch.rand(1, 3, 20, 27), torch.rand(1, 3, 20, 27), torch.rand(1, 3, 61, 83)
    plain = FastGuidedFilter(radius=1)
    assert torch.allclose(plain(guide_low, target_low, guide_high, band=16), plain(guide_low, target_low, guide_high),
                          atol=1e-5)  # fmt: skip
