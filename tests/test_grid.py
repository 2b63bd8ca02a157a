"""The bilateral-grid approximator: fip.models.BilateralGridNet against an independent trilinear slice
(``grid_sample`` on the 5-D grid), its bands and row subsets, its gradients, model files, the ``grid`` approximator
the engine plans and runs, its export, and its training through Lightning with train/configs/overlays/grid.yaml."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import smooth_image

from fip.lit import LitApproximator
from fip.models import BilateralGridNet, ContextAggregationNet
from fip.models.catalogue import open_model
from fip.models.storage import NetworkFile, load_network, net_config, save_network
from fip.pipeline import run_approximation
from fip.runtime.plan import make_plan

CONFIGS = Path(__file__).resolve().parents[1] / "train" / "configs"


def _busy_grid(seed: int = 0, in_channels: int = 3) -> BilateralGridNet:
    """A small grid network whose grid and guide are far from their identity start."""
    torch.manual_seed(seed)
    net = BilateralGridNet(
        in_channels=in_channels, lowres=32, grid_size=8, depth=4, width=16, guide_hidden=6, histogram_bins=4
    )
    with torch.no_grad():
        net.fuse.weight.normal_(0, 0.2)
        net.fuse.bias.normal_(0, 0.3)
        net.guide.first.weight.normal_(0, 1.0)
    return net.eval()


def _independent_slice(net: BilateralGridNet, x: torch.Tensor) -> torch.Tensor:
    """HDRNet's slicing written the other way: ``grid_sample`` trilinearly on the 5-D grid at (column, row, guide),
    pixel centres on cell centres, borders clamped; then ``A @ rgb + b``."""
    grid = net.grid(x)
    batch, _, height, width = x.shape
    ys = (torch.arange(height) + 0.5) / height * 2 - 1
    xs = (torch.arange(width) + 0.5) / width * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    guide = net.guide(x[:, :3])
    coords = torch.stack([gx.expand(batch, -1, -1), gy.expand(batch, -1, -1), guide * 2 - 1], dim=-1)[:, None]
    coefficients = F.grid_sample(grid, coords, mode="bilinear", padding_mode="border", align_corners=False)[:, :, 0]
    rgb = x[:, :3]
    return torch.stack(
        [(coefficients[:, 3 * c : 3 * c + 3] * rgb).sum(1) + coefficients[:, 9 + c] for c in range(3)], 1
    )


@pytest.mark.parametrize("size", [(37, 53), (8, 5), (2, 2)])
def test_the_grid_slices_as_an_independent_trilinear_lookup_in_any_band(size):
    net = _busy_grid()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        expected = _independent_slice(net, x)
        assert torch.allclose(net(x), expected, atol=1e-5)
        assert torch.allclose(net(x, band=3), expected, atol=1e-5)  # bands: the same numbers
        rows = torch.tensor([size[0] - 1, 0])
        assert torch.allclose(net.forward_rows(x, rows), expected[:, :, rows], atol=1e-5)


def test_the_untrained_grid_is_the_identity_and_the_guide_spreads_over_the_depth():
    net = BilateralGridNet(lowres=32, grid_size=8, depth=4, width=16).eval()
    x = torch.from_numpy(smooth_image(40, 60, seed=3)).permute(2, 0, 1)[None]
    with torch.no_grad():
        assert torch.allclose(net(x), x, atol=1e-6)
        guide = net.guide(torch.tensor([[0.0, 1.0]]).view(1, 1, 1, 2).expand(1, 3, 1, 2))
    assert guide[0, 0, 0] < 0.2 and guide[0, 0, 1] > 0.8  # dark and bright pixels land in different cells


def test_the_embedding_bag_lookup_equals_plain_indexing_and_both_carry_gradients():
    from fip.models.grid import _axis, slice_rows

    net = _busy_grid(1)
    x = torch.rand(1, 3, 12, 19)
    table = net.grid(x).permute(0, 3, 4, 2, 1).detach().requires_grad_(True)
    guide = net.guide(x).detach().requires_grad_(True)
    rows, columns = torch.arange(12), _axis(19, 8, x.device)
    outputs = [slice_rows(table, guide, x, 12, rows, columns, portable=portable) for portable in (False, True)]
    assert torch.allclose(*outputs, atol=1e-6)
    gradients = [torch.autograd.grad(out.square().sum(), (table, guide)) for out in outputs]
    for fast, plain in zip(*gradients):
        assert fast.abs().sum() > 0 and torch.allclose(fast, plain, atol=1e-5)


def test_conditioning_maps_reach_the_low_resolution_network_only():
    net = _busy_grid(2, in_channels=4)
    x = torch.rand(1, 3, 20, 30)
    with torch.no_grad():
        one, other = (net(torch.cat([x, torch.full((1, 1, 20, 30), value)], 1)) for value in (0.0, 1.0))
    assert one.shape == (1, 3, 20, 30) and not torch.allclose(one, other)
    with pytest.raises(ValueError, match=r"expected input \(B, 4, H, W\)"):
        net(x)


def test_a_grid_model_file_runs_as_the_grid_approximator_with_its_plan(tmp_path):
    net = _busy_grid()
    assert net_config(net) == {
        "in_channels": 3,
        "grid": {"lowres": 32, "grid_size": 8, "depth": 4, "width": 16, "guide_hidden": 6, "histogram_bins": 4},
    }
    path = save_network(NetworkFile(net, "g", "smooth.l0"), tmp_path / "grid.pt")
    model = open_model(path)
    assert isinstance(model.network("net"), BilateralGridNet) and list(model.card.approximators) == [
        "grid",
        "reference-lowres",
    ]
    plan = make_plan(model, "grid", (2160, 3840), "cpu")
    assert plan.working_size == (32, 32) and plan.band_rows and plan.tile is None
    assert "bilateral grid (8x8x4 cells" in plan.explain() and plan.estimated_megabytes < 400  # bands: no full map
    image = smooth_image(50, 70, seed=4)
    auto = run_approximation(model, image)
    assert auto.plan.approximator == "grid"
    with torch.no_grad():
        direct = net(torch.from_numpy(image).permute(2, 0, 1)[None]).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    np.testing.assert_allclose(auto.image, direct, atol=1e-6)


def test_a_grid_model_exports_to_torch_export_and_onnx_with_the_same_output(tmp_path, capsys):
    from fip.cli import main

    path = save_network(NetworkFile(_busy_grid(), "g", "smooth.l0"), tmp_path / "grid.pt")
    x = torch.rand(1, 3, 45, 70)
    with torch.no_grad():
        expected = _busy_grid()(x)
    assert main(["export", "-m", str(path), "--variant", "grid", "--out", str(tmp_path / "g.pt2")]) == 0
    program = torch.export.load(str(tmp_path / "g.pt2"))
    with torch.no_grad():
        assert torch.allclose(program.module()(x), expected, atol=1e-5)
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import onnxruntime

    assert main(["export", "-m", str(path), "--variant", "grid", "--out", str(tmp_path / "g.onnx")]) == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "g.onnx"))
    for shape in ((45, 70), (120, 33)):  # any size: nothing was fixed to the example's
        x = torch.rand(1, 3, *shape)
        with torch.no_grad():
            expected = _busy_grid()(x).numpy()
        np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], expected, atol=1e-4)
    assert main(["export", "-m", str(path), "--variant", "grid", "--int8", "--out", str(tmp_path / "g8.onnx")]) != 0
    assert "float32 only" in capsys.readouterr().err and not (tmp_path / "g8.onnx").exists()


def test_a_grid_network_starts_only_from_a_grid_network(tmp_path):
    path = save_network(NetworkFile(ContextAggregationNet(width=8, depth=4), "can", "smooth.l0"), tmp_path / "can.pt")
    with pytest.raises(ValueError, match="bilateral-grid network starts only from another one"):
        LitApproximator(BilateralGridNet(lowres=32, grid_size=8), warm_start=str(path))
    with pytest.raises(ValueError, match="row_fraction"):
        LitApproximator(BilateralGridNet(lowres=32, grid_size=8), row_fraction=0)


def test_grid_overlay_trains_a_grid_network_through_lightning_on_rows_of_whole_photos(photo_folder, tmp_path):
    """overlays/grid.yaml over an operator's config, as fip build's grid stage runs it: the CAN's sizes do not
    carry over, the data are whole photos, and a few steps move the grid away from the identity."""
    from test_training import _config

    from fip.training import run_training

    cli = run_training(
        [
            "-c",
            _config(tmp_path, photo_folder),
            "-c",
            str(CONFIGS / "overlays" / "grid.yaml"),
            "--model.net.init_args.lowres",
            "32",
            "--model.net.init_args.grid_size",
            "8",
            "--trainer.max_epochs",
            "2",
        ]
    )
    net = cli.model.net
    assert isinstance(net, BilateralGridNet) and (net.width, net.depth) == (64, 8)  # the overlay's, not the CAN's
    assert cli.datamodule.recipe == "paper" and cli.datamodule.context_scale is None
    trained = load_network(cli.trainer.checkpoint_callback.last_model_path)
    assert isinstance(trained.net, BilateralGridNet) and trained.operator == "smooth.l0"
    assert trained.net.fuse.weight.abs().sum() > 0  # left its zero start


def test_photo_statistics_are_histograms_means_and_deviations():
    from fip.models.grid import photo_statistics

    rgb = torch.zeros(1, 3, 2, 2)
    rgb[:, 0] = torch.tensor([[0.0, 1.0], [0.5, 0.25]])  # red: one value on each of the 5 centres or between two
    statistics = photo_statistics(rgb, 5)
    red = statistics[0, :5]
    assert torch.allclose(red, torch.tensor([0.25, 0.25, 0.25, 0.0, 0.25]))
    assert torch.allclose(statistics[0, 5:10], torch.tensor([1.0, 0, 0, 0, 0]))  # green: all 0
    assert torch.isclose(statistics[0, 15], rgb[0, 0].mean()) and torch.isclose(statistics[0, 18], rgb[0, 0].std())


def test_the_grid_counts_its_constant_network_and_its_work_per_pixel():
    net = BilateralGridNet()
    network = net.multiply_adds(1, 1) - net.multiply_adds(0, 0)
    assert network == 4 * 8 + 4 * 12 + 12  # per pixel: guide, four 12-number cells, the 3x4 transform
    assert 20e6 < net.multiply_adds(0, 0) < 80e6  # the 256x256 network: tens of millions, whatever the photo


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_grid_runs_on_cuda_as_on_the_cpu():
    net = _busy_grid()
    x = torch.rand(1, 3, 300, 517)
    with torch.no_grad():
        expected = net(x, band=64)
        on_gpu = net.to("cuda")(x.to("cuda"), band=64).cpu()
    assert torch.allclose(on_gpu, expected, atol=1e-4)
