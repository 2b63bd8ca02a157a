"""The low-resolution form: fip.models.GuidedCAN (Deep Guided Filter), its banded upsampling, its model files,
its warm start and training through Lightning, the ``lowres`` approximator that uses it, and the colour guided filter
behind ``reference-lowres``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import smooth_image

from fip.errors import FipError
from fip.lit import LitApproximator
from fip.models import ContextAggregationNet, GuidedCAN
from fip.models.catalogue import Model, model_for_operator, open_model
from fip.models.guided import FastGuidedFilter, apply_linear_model, colour_guided_coefficients, upsample_rows
from fip.models.storage import NetworkFile, load_network, net_config, save_network
from fip.pipeline import run_approximation
from fip.runtime.execute import forward_approximator

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


def test_model_files_keep_the_guided_network_and_it_runs_as_lowres(tmp_path):
    net = _busy_guided()
    assert net_config(net)["guided"] == {"factor": 3.0, "radius": 1, "fit_hidden": 0, "guide_hidden": 6}
    path = save_network(NetworkFile(net, "g", "smooth.l0"), tmp_path / "lowres.pt")
    model = open_model(path)
    assert isinstance(model.network("net"), GuidedCAN) and list(model.card.approximators) == [
        "lowres",
        "reference-lowres",
    ]
    image = smooth_image(60, 90, seed=2)
    auto = run_approximation(model, image)
    assert auto.plan.approximator == "lowres" and auto.plan.working_size == (20, 30)
    direct = forward_approximator(
        model.card.approximators["lowres"], net, torch.from_numpy(image).permute(2, 0, 1)[None], working_size=(20, 30)
    )
    assert torch.allclose(torch.from_numpy(auto.image), direct[0].clamp(0, 1).permute(1, 2, 0), atol=1e-6)
    with pytest.raises(FipError, match="has no approximator 'fast'; it has: lowres, reference-lowres"):
        run_approximation(model, image, request="fast")
    tiny = run_approximation(model, smooth_image(12, 15, seed=2))  # a third would be 4x5: its network at full size
    assert tiny.plan.working_size is None and tiny.image.shape == (12, 15, 3) and tiny.plan.notes


def test_warm_start_from_a_plain_model_fills_the_guided_networks_can():
    approximator = LitApproximator(GuidedCAN(), warm_start="paper/L0_smoothing")
    paper = load_network("paper/L0_smoothing").net.state_dict()
    assert all(torch.equal(v, paper[k]) for k, v in approximator.net.can.state_dict().items())
    assert not approximator.net.guide.body[2].weight.any()  # the rest starts as the plain guided filter


def test_lowres_config_trains_a_guided_network_through_lightning(photo_folder, tmp_path):
    """train/configs/overlays/lowres.yaml layered over an operator's config, as fip build's lowres stage runs it: the
    CAN keeps that config's shape and starts from the model named by the warm start."""
    from test_training import _config

    from fip.training import run_training

    start = ContextAggregationNet(width=8, depth=4)  # the tiny config's shape
    with torch.no_grad():
        start.output.weight.normal_(0, 0.3)
    path = save_network(NetworkFile(start, "start", "smooth.l0"), tmp_path / "start.pt")
    cli = run_training(
        [
            "-c",
            _config(tmp_path, photo_folder),
            "-c",
            str(CONFIGS / "overlays" / "lowres.yaml"),
            "--model.warm_start",
            str(path),
            "--trainer.max_epochs",
            "0",
        ]
    )
    assert isinstance(cli.model.net, GuidedCAN) and (cli.model.net.width, cli.model.net.depth) == (8, 4)
    assert torch.equal(cli.model.net.can.output.weight, start.output.weight)
    cli = run_training(
        [
            "-c",
            _config(tmp_path, photo_folder),
            "-c",
            str(CONFIGS / "overlays" / "lowres.yaml"),
            "--model.warm_start",
            str(path),
            "--trainer.max_epochs",
            "2",
            "--data.crop_size",
            "48",
        ]
    )
    trained = load_network(cli.trainer.checkpoint_callback.last_model_path)
    assert isinstance(trained.net, GuidedCAN) and trained.net.factor == 3.0 and trained.operator == "smooth.l0"
    assert trained.net.guide.body[2].weight.any()  # the guidance map left its zero start


def test_exporting_a_guided_model_says_what_to_export_instead(tmp_path, capsys):
    from fip.cli import main

    path = save_network(NetworkFile(_busy_guided(), "g", "smooth.l0"), tmp_path / "lowres.pt")
    for out, names in (("m.pt2", "--variant full"), ("m.onnx", "running-statistics")):
        assert main(["export", "-m", str(path), "--variant", "lowres", "--out", str(tmp_path / out)]) != 0
        assert names in capsys.readouterr().err and not (tmp_path / out).exists()


def test_shipped_lowres_models_load_and_run_at_a_third_of_the_size():
    pencil = model_for_operator("style.pencil")
    assert isinstance(pencil.network("lowres"), GuidedCAN) and pencil.network("lowres").factor == 3.0
    image = smooth_image(120, 180, seed=5)
    result = run_approximation(pencil, image, request="lowres")
    assert result.image.shape == image.shape and result.plan.working_size == (40, 60)


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
    approximator = Model.of_network(net, "smooth.l0").card.approximators["lowres"]
    x = torch.from_numpy(image).permute(2, 0, 1)[None]
    with torch.no_grad():
        whole = forward_approximator(approximator, net, x, (0.0, 1.0), (50, 67))
        banded = forward_approximator(approximator, net, x, (0.0, 1.0), (50, 67), band_rows=32)  # bands of 32 rows
    assert whole.shape == x.shape and float(abs(banded - whole).max()) < 1e-4
    x = torch.rand(2, 5, 40, 61)
    with torch.no_grad():
        small = net.downscale(x)
        assert torch.allclose(net.upsample(small, net.can(small), x, band=8), net(x), atol=1e-5)
    assert GuidedCAN(radius=4).downscale(torch.rand(1, 3, 6, 6)).shape[2:] == (5, 5)  # boxes of radius 4 still fit


def test_the_fixed_guided_filter_computes_in_bands_with_the_same_result():
    guide_low, target_low, guide_high = torch.rand(1, 3, 20, 27), torch.rand(1, 3, 20, 27), torch.rand(1, 3, 61, 83)
    plain = FastGuidedFilter(radius=1)
    assert torch.allclose(
        plain(guide_low, target_low, guide_high, band=16), plain(guide_low, target_low, guide_high), atol=1e-5
    )


def _colour_guided_by_solving(guide: torch.Tensor, target: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """He et al.'s colour guided filter written plainly, in float64, with torch.linalg.solve per box."""
    from fip.models.guided import box_mean

    guide, target = guide.double(), target.double()
    mean_i, mean_p = box_mean(guide, radius), box_mean(target, radius)
    batch, _, height, width = guide.shape
    sigma = torch.empty(batch, height, width, 3, 3, dtype=torch.float64)
    cov = torch.empty_like(sigma)
    for i in range(3):
        for j in range(3):
            sigma[..., i, j] = (
                box_mean(guide[:, i : i + 1] * guide[:, j : j + 1], radius)
                - mean_i[:, i : i + 1] * mean_i[:, j : j + 1]
            )[:, 0] + (eps if i == j else 0.0)
            cov[..., i, j] = (
                box_mean(guide[:, i : i + 1] * target[:, j : j + 1], radius)
                - mean_i[:, i : i + 1] * mean_p[:, j : j + 1]
            )[:, 0]
    a = torch.linalg.solve(sigma, cov).permute(0, 4, 3, 1, 2)  # (B, output, guide, h, w)
    b = mean_p - (a * mean_i[:, None]).sum(dim=2)
    return box_mean(torch.cat([a.reshape(batch, 9, height, width), b], dim=1), radius)


@pytest.mark.parametrize("eps", [1e-3, 1e-5])
def test_colour_guided_filter_matches_a_plain_solve_and_carries_colour_edges(eps):
    torch.manual_seed(0)
    guide = torch.rand(1, 3, 24, 31)
    grey = guide.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1) + 1e-3 * torch.rand(1, 3, 24, 31)  # near-singular
    for g in (guide, grey):
        target = torch.rand(1, 3, 24, 31)
        fast = colour_guided_coefficients(g, target, 1, eps)
        assert fast.shape == (1, 12, 24, 31) and fast.dtype == torch.float32
        high = F.interpolate(g, size=(48, 62), mode="bilinear", align_corners=False)
        rows = lambda top, bottom, high=high: high[:, :, top:bottom].double()  # noqa: E731
        out = apply_linear_model(fast.double(), 48, 62, rows, colour=True)
        plain = apply_linear_model(_colour_guided_by_solving(g, target, 1, eps), 48, 62, rows, colour=True)
        assert (out - plain).abs().max() < 1e-3  # a quarter of an 8-bit level, on near-singular boxes too
    # An output that is an affine function of the guide's colours comes back exactly at full size.
    high = torch.rand(1, 3, 48, 62)
    low = F.interpolate(high, size=(16, 21), mode="area")
    mix = torch.tensor([[0.2, 0.5, 0.3], [0.6, -0.1, 0.2], [0.0, 0.3, 0.7]])
    affine = lambda x: torch.einsum("oc,bchw->bohw", mix, x) + 0.05  # noqa: E731
    coefficients = colour_guided_coefficients(low, affine(low), 1, 1e-8)
    out = apply_linear_model(coefficients, 48, 62, lambda top, bottom: high[:, :, top:bottom], band=16, colour=True)
    assert torch.allclose(out, affine(high), atol=2e-3)
    with pytest.raises(FipError, match="colour coefficients have 12 channels"):
        apply_linear_model(coefficients[:, :6], 48, 62, lambda top, bottom: high[:, :, top:bottom], colour=True)
