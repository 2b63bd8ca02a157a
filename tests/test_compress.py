"""Compression for speed: channel pruning, channel equalization, ONNX export and int8, the pruned and int8
approximators, and ``fip bench``."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import smooth_image

from fip.cli import main
from fip.compress import equalize, multiply_adds, prune
from fip.errors import FipError, InputError
from fip.imaging import encode_png
from fip.metrics import psnr
from fip.models import ContextAggregationNet
from fip.models.can import AdaptiveNorm, NormMode, fold
from fip.models.catalogue import model_for_operator
from fip.models.storage import NetworkFile, save_network
from fip.pipeline import run_approximation
from fip.runtime.devices import int8_unavailable


def _busy_net(norm: str, seed: int = 0, conv_bias: bool = False) -> ContextAggregationNet:
    """A CAN with non-trivial weights and normalization (the identity start would hide mistakes)."""
    torch.manual_seed(seed)
    net = ContextAggregationNet(width=8, depth=5, norm=norm, conv_bias=conv_bias)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.normal_(0, 0.3)
                if module.bias is not None:
                    module.bias.uniform_(-0.2, 0.2)
            if isinstance(module, AdaptiveNorm):
                module.mu.uniform_(0.3, 0.8)
                module.beta.uniform_(-0.2, 0.2)
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    return net.eval()


def _images(n: int = 2) -> list[torch.Tensor]:
    return [torch.from_numpy(smooth_image(24, 32, seed=i)).permute(2, 0, 1)[None] for i in range(n)]


@pytest.mark.parametrize("conv_bias", [False, True])
def test_pruning_removes_the_channels_nothing_reads_and_keeps_the_function(conv_bias):
    net = _busy_net("running", conv_bias=conv_bias)
    dead = [1, 4, 6]  # in every hidden layer, channels that the next layer never reads
    with torch.no_grad():
        for reader in [m for m in net.features if isinstance(m, torch.nn.Conv2d)][1:] + [net.output]:
            reader.weight[:, dead] = 0
    pruned = prune(net, 5, _images())
    assert pruned.width == 5 and pruned.conv_bias == conv_bias
    assert all(m.mode is NormMode.RUNNING for m in pruned.modules() if hasattr(m, "mode"))
    assert pruned.features[0].weight.shape == (5, 3, 3, 3) and pruned.output.weight.shape == (3, 5, 1, 1)
    assert multiply_adds(pruned, 10, 10) < 0.5 * multiply_adds(net, 10, 10)
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        assert torch.allclose(pruned(x), net(x), atol=1e-5)  # only the unread channels went
        smaller = prune(net, 3, _images())  # now live channels go too: the function changes
        assert not torch.allclose(smaller(x), net(x), atol=1e-3)
    with pytest.raises(InputError, match="width must be between 1"):
        prune(net, 9, _images())


@pytest.mark.parametrize("conv_bias", [False, True])
def test_pruning_a_per_image_network_calibrates_running_statistics(conv_bias):
    from fip.models.can import image_statistics

    net = _busy_net("image", conv_bias=conv_bias)
    images = _images(3)  # same size: the pooled statistics are plain averages over the images
    pruned = prune(net, net.width, images)  # same width: only the normalization changes mode
    per_image = [image_statistics(net, image) for image in images]
    norms = [m for m in pruned.modules() if isinstance(m, AdaptiveNorm)]
    for layer, norm in enumerate(norms):
        means = torch.stack([stats[layer][0] for stats in per_image])
        variances = torch.stack([stats[layer][1] for stats in per_image])
        assert torch.allclose(norm.running_mean, means.mean(0), atol=1e-5)
        # batch-norm's view of the three images: within-image variance plus the spread of the image means
        assert torch.allclose(norm.running_var, variances.mean(0) + means.var(0, correction=0), atol=1e-4)
    with torch.no_grad():  # one calibration image: its statistics exactly, so the same output on it
        one = prune(net, net.width, images[:1])
        assert torch.allclose(one(images[0]), net(images[0]), atol=1e-5)


def test_multiply_adds_of_can24():
    from fip.models import can24

    per_pixel = 3 * 24 * 9 + 7 * 24 * 24 * 9 + 24 * 3  # first 3x3, seven 24->24 3x3, the 1x1 output
    assert multiply_adds(can24(), 1080, 1920) == per_pixel * 1080 * 1920


def test_equalization_keeps_the_function_and_evens_the_activation_ranges():
    net = _busy_net("running")
    with torch.no_grad():
        net.features[0].weight[0] *= 20  # one loud channel
    folded = fold(net)
    images = _images()
    balanced = equalize(folded, images)
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        assert torch.allclose(balanced(x), folded(x), rtol=1e-4, atol=1e-4)  # outputs reach ~50 here

        def spread(model) -> float:
            ranges = model.features[:2](images[0]).abs().amax(dim=(0, 2, 3))
            return float(ranges.max() / ranges.min())

        assert spread(balanced) < spread(folded) / 2


needs_faithful_int8 = pytest.mark.skipif(
    int8_unavailable(torch.device("cpu")) is not None,
    reason=f"ONNX Runtime's int8 on this CPU: {int8_unavailable(torch.device('cpu'))}",
)


def test_onnx_export_fp32_and_int8_match_pytorch(tmp_path):
    from fip.onnx_export import write_onnx
    from fip.runtime.onnx import OrtNet

    net = ContextAggregationNet(width=8, depth=5, norm="running").eval()  # identity start: output = input
    with torch.no_grad():
        net.features[0].weight.add_(0.05 * torch.randn_like(net.features[0].weight))
    images = _images()
    x = torch.from_numpy(smooth_image(33, 47, seed=5)).permute(2, 0, 1)[None]  # odd size: dynamic H, W
    with torch.no_grad():
        expected = net(x)
    fp32 = OrtNet(write_onnx(net, tmp_path / "m.onnx"), fold(net).receptive_radius)
    assert psnr(fp32(x), expected) > 80
    int8 = OrtNet(write_onnx(net, tmp_path / "m.int8.onnx", [i.numpy() for i in images]), 0)
    if int8_unavailable(torch.device("cpu")) is None:  # without VNNI, ONNX Runtime's int8 saturates (see there)
        assert 30 < psnr(int8(x).clamp(0, 1), expected.clamp(0, 1)) < 80  # quantized, and still close
    with pytest.raises(InputError, match="per-image statistics"):
        write_onnx(_busy_net("image"), tmp_path / "no.onnx")
    assert main(["export", "-o", "smooth.l0", "--variant", "pruned", "--out", str(tmp_path / "cli.onnx")]) == 0
    assert psnr(OrtNet(tmp_path / "cli.onnx", 0)(x), OrtNet(tmp_path / "m.onnx", 0)(x)) < 80  # another network
    assert main(["export", "-o", "smooth.l0", "--out", str(tmp_path / "paper.onnx")]) == 2  # per-image statistics
    assert not (tmp_path / "paper.onnx").exists()
    with pytest.raises(FipError, match="not a loadable ONNX model"):
        OrtNet(tmp_path / "m.pt", 0) if (tmp_path / "m.pt").write_bytes(b"junk") else None


@needs_faithful_int8
def test_quantization_aware_network_computes_as_onnx_runtime_int8_and_learns(tmp_path, monkeypatch):
    import fip.compress
    from fip.compress import QuantizationAwareCAN
    from fip.onnx_export import write_onnx
    from fip.runtime.onnx import OrtNet

    images = [torch.from_numpy(smooth_image(40, 56, seed=i)).permute(2, 0, 1)[None] for i in range(3)]
    monkeypatch.setattr(fip.compress, "calibration_photos", lambda megapixels: images)
    path = save_network(NetworkFile(_busy_net("running"), "busy", "smooth.l0"), tmp_path / "busy.pt")
    qat = QuantizationAwareCAN(str(path))
    x = torch.from_numpy(smooth_image(37, 51, seed=9)).permute(2, 0, 1)[None]
    int8 = OrtNet(write_onnx(qat.folded(), tmp_path / "q.onnx", [i.numpy() for i in images], equalized=True), 0)
    with torch.no_grad():
        simulated, float_out = qat(x), qat.folded()(x)
    # The simulation is ONNX Runtime's int8 model up to its kernels' rounding, far closer than the float network.
    assert psnr(simulated, int8(x)) > psnr(float_out, int8(x)) + 6
    before = [p.detach().clone() for p in qat.parameters()]
    torch.nn.functional.mse_loss(qat(x), torch.rand_like(x)).backward()  # straight-through gradients
    torch.optim.SGD(qat.parameters(), lr=0.1).step()
    assert all(not torch.equal(p, b) for p, b in zip(qat.parameters(), before))
    with pytest.raises(InputError, match="no running-statistics CAN"):
        QuantizationAwareCAN(str(save_network(NetworkFile(_busy_net("image"), "b", "smooth.l0"), tmp_path / "i.pt")))


def test_shipped_pruned_and_int8_approximators_run_tiled_and_refuse_where_int8_is_unfaithful(monkeypatch):
    model = model_for_operator("smooth.l0")
    assert {"pruned", "int8"} <= set(model.card.approximators)
    assert model.network("pruned").width < model.network("net").width
    image = smooth_image(40, 56)
    full = run_approximation(model, image, request="full").image
    pruned = run_approximation(model, image, request="pruned").image
    assert pruned.shape == image.shape and psnr(pruned, full) > 18  # a smaller net with fixed statistics
    monkeypatch.setattr("fip.runtime.plan.int8_unavailable", lambda device: None)  # run it here regardless
    int8 = run_approximation(model, image, request="int8").image
    assert int8.shape == image.shape
    wide = smooth_image(300, 420, seed=3)  # wider than the 128 px halo, so tiles really are crops
    tiled = run_approximation(model, wide, request="int8", tile=64).image
    assert psnr(tiled, run_approximation(model, wide, request="int8").image) > 60  # tiles with a halo: same result
    monkeypatch.setattr("fip.runtime.plan.int8_unavailable", lambda device: "this CPU lacks VNNI")
    with pytest.raises(FipError, match="'int8' cannot serve this request: this CPU lacks VNNI"):
        run_approximation(model, image, request="int8")
    assert run_approximation(model, image).plan.approximator != "int8"  # auto leaves it out, with the reason
    assert "left out: int8, this CPU lacks VNNI" in run_approximation(model, image).plan.reason


@needs_faithful_int8
def test_shipped_int8_stays_close_to_the_pruned_network():
    model = model_for_operator("smooth.l0")
    image = smooth_image(40, 56)
    pruned = run_approximation(model, image, request="pruned").image
    assert psnr(run_approximation(model, image, request="int8").image, pruned) > 30


@pytest.mark.slow
def test_bench_times_every_approximator_through_the_engine(tmp_path, capsys):
    photo = tmp_path / "frame.png"
    photo.write_bytes(encode_png(smooth_image(90, 160), bits=8))
    rows = "reference,baseline,full,fast,reference-lowres,auto"
    args = ["bench", "-o", "smooth.l0", "--size", "72p", "--runs", "1", "--image", str(photo), "--rows", rows]
    assert main(args + ["--json", "--plot", str(tmp_path / "curve.png")]) == 0
    bench = json.loads(capsys.readouterr().out)
    assert bench["device"] == "cpu" and bench["size"] == [72, 128] and bench["model"] == "fip/smooth.l0"
    table = {r["name"]: r for r in bench["rows"]}
    assert list(table) == rows.split(",")
    for row in table.values():
        assert {"name", "seconds", "peak_mb", "psnr", "speedup_vs_baseline", "speedup_vs_reference"} <= set(row)
        assert row["seconds"] > 0
    assert table["baseline"]["speedup_vs_baseline"] == 1.0 and table["baseline"]["bound_seconds"] > 0
    assert abs(table["full"]["psnr"] - table["baseline"]["psnr"]) < 0.01  # folding with the frame's statistics is exact
    assert table["auto"]["approximator"] in model_for_operator("smooth.l0").card.approximators
    assert table["reference-lowres"]["working_size"] == [24, 42]  # a third of 128x72, even sides
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(args[:-2] + ["--rows", "baseline"]) == 0
    out = capsys.readouterr().out
    assert "Lower bound of the baseline network" in out and "| baseline |" in out
    assert main(["bench", "--rows", "warp-drive"]) == 2
    assert "unknown bench rows ['warp-drive']" in capsys.readouterr().err
    assert main(["bench", "--runs", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
    assert main(["bench", "--device", "cuda:7", "--rows", "baseline"]) == 2
    assert "cuda:7" in capsys.readouterr().err


def test_bench_can_leave_the_reference_out(tmp_path):
    from fip.bench import run_bench

    photo = tmp_path / "frame.png"
    photo.write_bytes(encode_png(smooth_image(90, 160), bits=8))
    bench = run_bench("smooth.l0", (72, 128), 1, photo, ("reference", "fast"), 0, "cpu", bounds=False)
    [row] = bench.rows  # timings alone: no reference row, no PSNR, no speed-up against it
    assert row.name == "fast" and row.seconds > 0 and row.psnr is None and row.speedup_vs_reference is None
    with pytest.raises(InputError, match="reference runs at least 0"):
        run_bench("smooth.l0", (72, 128), 1, photo, ("fast",), -1, "cpu")


def test_bench_marks_what_each_preset_runs_and_runs_auto_as_preferred(tmp_path, capsys):
    from fip.bench import format_table, run_bench
    from fip.runtime.plan import Preference

    photo = tmp_path / "frame.png"
    photo.write_bytes(encode_png(smooth_image(90, 160), bits=8))
    rows = ("reference-lowres", "reference-halfres", "auto")
    bench = run_bench("smooth.l0", (72, 128), 1, photo, rows, 0, "cpu", bounds=False, preference=Preference("speed"))
    table = {row.name: row for row in bench.rows}
    assert table["auto"].approximator == "reference-lowres" and "prefer speed: " in table["auto"].note
    assert table["reference-lowres"].chosen_by == ("speed",)  # 35.9 dB on validation photos, the fastest over 32
    assert table["reference-halfres"].chosen_by == ("quality", "balanced")  # 39.1 dB, the best
    text = format_table(bench)
    assert "auto: prefer speed." in text and "| row | runs | chosen by |" in text
    assert "| reference-halfres |  | quality, balanced |" in text
    assert main(["bench", "--prefer", "fastest"]) == 2
    assert capsys.readouterr().err.strip() == (
        "fip: error: prefer 'fastest' is not a preset: choose quality, balanced or speed (default balanced)"
    )
    assert main(["bench", "--min-psnr", "abc"]) == 2 and "min PSNR 'abc' is not a PSNR" in capsys.readouterr().err
