"""Int8 calibration, fip's QDQ models, and int8 that is correct on CPUs without VNNI."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import smooth_image

from fip.errors import InputError
from fip.metrics import psnr
from fip.models import ContextAggregationNet
from fip.models.can import AdaptiveNorm, fold
from fip.quantize import CALIBRATION_METHODS, Int8Template, calibrate, folded_for
from fip.runtime.devices import int8_saturates, int8_unavailable

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


def _net(norm: str, seed: int = 0) -> ContextAggregationNet:
    torch.manual_seed(seed)
    net = ContextAggregationNet(width=8, depth=5, norm=norm)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.normal_(0, 0.3)
            if isinstance(module, AdaptiveNorm):
                module.mu.fill_(0.5)
                module.beta.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 1.5)
    return net.eval()


def _photos(n: int = 3, height: int = 24, width: int = 32) -> list[torch.Tensor]:
    return [torch.from_numpy(smooth_image(height, width, seed=i)).permute(2, 0, 1)[None] for i in range(n)]


def _simulated(model: bytes, x: torch.Tensor) -> np.ndarray:
    """The QDQ model computed node by node in float32 (no fused int8 kernels): what a VNNI CPU gives, to rounding."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[0]


def test_calibration_methods_clip_no_more_than_the_range_seen():
    net = _net("running")
    grids = calibrate(net, _photos())
    assert set(grids) == set(CALIBRATION_METHODS)
    assert all(len(g) == 2 * 5 for g in grids.values())  # input, 4 convs with their LeakyReLUs, the output layer
    assert all(g[0] == (1 / 255, 0) for g in grids.values())  # photos in [0, 1]: the exact 8-bit grid
    for index in range(1, 10):  # entropy and percentile clip outliers: their ranges lie within MinMax's
        assert grids["percentile"][index][0] <= grids["minmax"][index][0] * (1 + 1e-6)
        assert grids["entropy"][index][0] <= grids["minmax"][index][0] * (1 + 1e-6)
    with pytest.raises(InputError, match="unknown calibration"):
        calibrate(net, _photos(), methods=["kl"])


@pytest.mark.parametrize("norm", ["running", "image"])
def test_int8_model_computes_the_folded_network(norm):
    net = _net(norm)
    photos = _photos()
    template = Int8Template(tuple(calibrate(net, photos, ["minmax"])["minmax"]), "minmax")
    x = torch.from_numpy(smooth_image(29, 41, seed=7)).permute(2, 0, 1)[None]  # odd size: dynamic H, W
    folded = folded_for(net, x)
    with torch.no_grad():
        expected = folded(x)
    model = template.model(folded)
    assert 25 < psnr(torch.from_numpy(_simulated(model, x)).clamp(0, 1), expected.clamp(0, 1)) < 80
    assert Int8Template.of_model(model) == template
    other = _net(norm, seed=1)  # the same grids, another network's weights: another result
    assert psnr(torch.from_numpy(_simulated(template.model(folded_for(other, x)), x)), expected) < 25
    with pytest.raises(InputError, match="grids are for 5 convolutions"):
        template.model(fold(ContextAggregationNet(width=8, depth=4, norm="running")))


def _saturating_model() -> bytes:
    """A one-layer int8 model whose uint8 x int8 products overflow a 16-bit pair sum on a bright photo."""
    net = ContextAggregationNet(width=4, depth=3, norm="running").eval()
    with torch.no_grad():
        for conv in [m for m in net.features if isinstance(m, torch.nn.Conv2d)]:
            conv.weight.fill_(0.05)  # every weight the channel's largest: all at 127 on the int8 grid
    x = torch.full((1, 3, 16, 16), 0.95)
    grids = calibrate(net, [x, 0.5 * x], ["minmax"])["minmax"]
    return Int8Template(tuple(grids)).model(fold(net))


@pytest.mark.skipif(int8_unavailable(torch.device("cpu")) is not None, reason="ONNX Runtime's int8 cannot run here")
def test_onnx_runtime_int8_matches_its_simulation_on_this_cpu():
    from fip.runtime.onnx import PRECISE_PRODUCTS, OrtNet

    model = _saturating_model()
    x = torch.rand(1, 3, 16, 16) * 0.1 + 0.9
    simulated = torch.from_numpy(_simulated(model, x))
    assert psnr(OrtNet(model, 0)(x), simulated) > 50  # what a VNNI CPU computes, on every CPU
    if int8_saturates(torch.device("cpu")):  # the fast products overflow here: the precise mode is what fixes it
        options = ort.SessionOptions()
        fast = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})[
            0
        ]
        assert psnr(torch.from_numpy(fast), simulated) < 40
        options.add_session_config_entry(PRECISE_PRODUCTS, "1")
        precise = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]).run(
            None, {"image": x.numpy()}
        )
        assert psnr(torch.from_numpy(precise[0]), simulated) > 50


def test_the_engine_runs_int8_without_vnni_and_says_so(monkeypatch):
    import fip.runtime.devices as devices
    from fip.models.catalogue import model_for_operator
    from fip.runtime.plan import make_plan

    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    monkeypatch.setattr(devices.platform, "machine", lambda: "x86_64")
    assert devices.int8_saturates(torch.device("cpu"))
    assert devices.int8_unavailable(torch.device("cpu")) is None  # no longer refused
    plan = make_plan(model_for_operator("smooth.l0"), "int8", (64, 96), "cpu")
    assert plan.precision == "int8" and any("lacks VNNI" in note for note in plan.notes)
    monkeypatch.setattr(devices, "cpu_flags", lambda: frozenset({"avx2", "avx512_vnni"}))
    assert not devices.int8_saturates(torch.device("cpu"))
    assert not any("VNNI" in note for note in make_plan(model_for_operator("smooth.l0"), "int8", (64, 96), "cpu").notes)


def test_a_per_image_statistics_network_runs_in_int8_per_photo_through_the_engine(tmp_path):
    from dataclasses import replace

    from fip.files import atomic_write_bytes, sha256_file
    from fip.models.cards import Approximator, ModelCard, NetworkEntry
    from fip.models.catalogue import Model
    from fip.models.storage import NetworkFile, net_config, save_network
    from fip.pipeline import run_approximation

    net = _net("image")
    save_network(NetworkFile(net, "busy", "smooth.l0"), tmp_path / "net.pt")
    template = Int8Template(tuple(calibrate(net, _photos(), ["entropy"])["entropy"]), "entropy")
    atomic_write_bytes(tmp_path / "net.int8.onnx", template.model(folded_for(net, _photos(1)[0])))
    networks = {
        "net": NetworkEntry("net.pt", "fip", None, net_config(net)),
        "net-int8": NetworkEntry(
            "net.int8.onnx",
            "onnx",
            sha256_file(tmp_path / "net.int8.onnx"),
            net_config(net),
            net.receptive_radius,
            "net",
            {"method": "entropy"},
        ),
    }
    approximators = {
        "fast": Approximator("fast", "net", "fp32", "preview", 0.1),
        "full-int8": Approximator("full-int8", "net-int8", "int8", "preview", 0.1),
    }
    card = ModelCard("test/busy", "smooth.l0", {}, networks, approximators, root=tmp_path)
    model = Model(ModelCard.from_json(card.to_json(), tmp_path))  # the card's new fields survive JSON
    assert model.card.networks["net-int8"].quantized_from == "net"
    for seed in (1, 2):  # each photo's own statistics: int8 follows fast on both, at int8's precision
        image = smooth_image(40, 56, seed=seed) * (0.5 if seed == 2 else 1.0)
        fast = run_approximation(model, image, request="fast").image
        int8 = run_approximation(model, image, request="full-int8")
        assert int8.image.shape == image.shape and int8.plan.statistics == "preview"
        assert 25 < psnr(int8.image, fast) < 80
    wide = smooth_image(90, 120, seed=3)  # wider than the tile with its 15 px halo: tiles are crops, same result
    assert (
        psnr(
            run_approximation(model, wide, request="full-int8", tile=32).image,
            run_approximation(model, wide, request="full-int8").image,
        )
        > 60
    )
    frozen = replace(card, networks={**networks, "net-int8": replace(networks["net-int8"], quantized_from=None)})
    static = run_approximation(Model(frozen), smooth_image(40, 56, seed=2) * 0.5, request="full-int8").image
    assert psnr(static, run_approximation(model, smooth_image(40, 56, seed=2) * 0.5, request="full-int8").image) < 60
