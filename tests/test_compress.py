"""Compression for speed: channel pruning, channel equalization, ONNX export and int8, the pruned/int8 variants,
and ``fip bench``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fip.cli import main
from fip.compress import equalize, multiply_adds, prune
from fip.errors import FipError, InputError
from fip.imaging import encode_png
from fip.infer import LoadedModel, model_for_operator, run_loaded, run_model
from fip.metrics import psnr
from fip.models import ContextAggregationNet
from fip.models.can import AdaptiveNorm, NormMode, fold
from fip.variants import Variant

from conftest import smooth_image


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


def test_onnx_export_fp32_and_int8_match_pytorch(tmp_path):
    from fip.ort import OrtNet, write_onnx

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
    assert 30 < psnr(int8(x).clamp(0, 1), expected.clamp(0, 1)) < 80  # quantized, and still close
    with pytest.raises(InputError, match="per-image statistics"):
        write_onnx(_busy_net("image"), tmp_path / "no.onnx")
    from fip.infer import SHIPPED_DIR

    assert main(["export", "-m", str(SHIPPED_DIR / "smooth.l0.pruned.pt"), "--out", str(tmp_path / "cli.onnx")]) == 0
    assert psnr(OrtNet(tmp_path / "cli.onnx", 0)(x), OrtNet(tmp_path / "m.onnx", 0)(x)) < 80  # another network
    assert main(["export", "-o", "smooth.l0", "--out", str(tmp_path / "paper.onnx")]) == 2  # per-image statistics
    assert not (tmp_path / "paper.onnx").exists()
    with pytest.raises(FipError, match="not a loadable ONNX model"):
        OrtNet(tmp_path / "m.pt", 0) if (tmp_path / "m.pt").write_bytes(b"junk") else None


def test_quantization_aware_network_computes_as_onnx_runtime_int8_and_learns(tmp_path, monkeypatch):
    import fip.compress
    from fip.compress import QuantizationAwareCAN
    from fip.infer import export_model
    from fip.ort import OrtNet, write_onnx

    images = [torch.from_numpy(smooth_image(40, 56, seed=i)).permute(2, 0, 1)[None] for i in range(3)]
    monkeypatch.setattr(fip.compress, "calibration_photos", lambda megapixels: images)
    path = export_model(LoadedModel(_busy_net("running"), "busy", "smooth.l0"), tmp_path / "busy.pt")
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
        QuantizationAwareCAN(str(export_model(LoadedModel(_busy_net("image"), "b", "smooth.l0"), tmp_path / "i.pt")))


def test_shipped_pruned_and_int8_variants_run_and_auto_picks_the_fastest():
    model = model_for_operator("smooth.l0")
    assert model.pruned is not None and model.pruned.net.width < model.net.width
    assert {"full", "fast", "bf16", "lowres", "pruned", "int8"} <= set(model.scores)  # measured beside it
    image = smooth_image(40, 56)
    full = run_model(model.net, image, variant=Variant.FULL)
    pruned, int8 = (run_loaded(model, image, variant=v) for v in (Variant.PRUNED, Variant.INT8))
    assert pruned.shape == int8.shape == image.shape
    assert psnr(pruned, full) > 18  # the same task by a smaller net with fixed statistics (a synthetic image here)
    assert psnr(int8, pruned) > 30  # int8 stays close to the network it quantizes
    # auto takes lowres for smooth.l0 (measured +1.1 dB) up to 4 MP only, and never without the photo's size
    assert model.resolve(Variant.AUTO, 2.0) is Variant.LOWRES
    assert model.resolve(Variant.AUTO, 24.0) is not Variant.LOWRES and model.resolve(Variant.AUTO) is not Variant.LOWRES
    with pytest.raises(InputError, match="unknown variant 'int4'"):
        model.resolve("int4")
    wide = smooth_image(300, 420, seed=3)  # wider than the 128 px halo, so tiles really are crops
    tiled = run_loaded(model, wide, tile=64, variant=Variant.INT8)
    assert psnr(tiled, run_loaded(model, wide, variant=Variant.INT8)) > 60  # tiles with a halo: same result
    def with_scores(**scores: float) -> LoadedModel:
        return LoadedModel(model.net, "m", "smooth.l0", pruned=model.pruned, int8=model.int8,
                           scores={"full": 30.0, **scores})  # fmt: skip

    # auto: the fastest variant measured to lose at most 0.5 dB against full or fast, whichever scored higher
    # (LOWRES, INT8, PRUNED, BF16, FAST)
    assert with_scores(lowres=29.6, int8=29.9).resolve(Variant.AUTO, 2.0) is Variant.LOWRES
    assert with_scores(lowres=29.0, int8=29.6, pruned=30.1).resolve(Variant.AUTO, 2.0) is Variant.INT8
    assert with_scores(int8=29.0, pruned=29.8).resolve(Variant.AUTO, 2.0) is Variant.PRUNED
    assert with_scores(int8=29.0, pruned=29.0, bf16=30.0).resolve(Variant.AUTO, 2.0) is Variant.BF16
    assert with_scores().resolve(Variant.AUTO, 2.0) is Variant.FAST  # nothing measured: the near-exact one
    # A model trained with preview statistics can score higher with them: lowres within 0.5 dB of full but 1.4 under
    # fast is not taken.
    assert with_scores(lowres=29.6, fast=31.0, bf16=30.9).resolve(Variant.AUTO, 2.0) is Variant.BF16
    # The approximations do not set the bar: a bf16 that measured 0.3 dB above full leaves lowres within 0.5.
    assert with_scores(lowres=29.6, bf16=30.3).resolve(Variant.AUTO, 2.0) is Variant.LOWRES
    plain = LoadedModel(model.net, "no-siblings", "smooth.l0")
    assert plain.resolve(Variant.AUTO) is Variant.FAST
    with pytest.raises(FipError, match="no 'int8' variant.*it has: auto, full, fast, bf16, lowres"):
        run_loaded(plain, image, variant=Variant.INT8)


@pytest.mark.slow
def test_bench_prints_json_rows_and_the_curve(tmp_path, capsys):
    photo = tmp_path / "frame.png"
    photo.write_bytes(encode_png(smooth_image(90, 160), bits=8))
    rows = "reference,baseline,paper-exact,bf16,onnxruntime-int8,pruned"
    args = ["bench", "-o", "smooth.l0", "--size", "72p", "--runs", "1", "--image", str(photo), "--rows", rows]
    assert main(args + ["--json", "--plot", str(tmp_path / "curve.png")]) == 0
    table = json.loads(capsys.readouterr().out)
    names = [r["variant"] for r in table]
    assert names[:5] == ["reference", "baseline", "paper-exact", "bf16", "onnxruntime-int8"]
    assert {"pruned-w16", "pruned-w16-bf16", "pruned-w16-int8"} <= set(names)
    for row in table:
        assert {"variant", "seconds", "peak_mb", "psnr", "speedup_vs_baseline", "speedup_vs_reference"} <= set(row)
        assert row["seconds"] > 0
    baseline = next(r for r in table if r["variant"] == "baseline")
    assert baseline["speedup_vs_baseline"] == 1.0 and baseline["psnr"] > 20 and baseline["bound_seconds"] > 0
    exact = next(r for r in table if r["variant"] == "paper-exact")
    assert abs(exact["psnr"] - baseline["psnr"]) < 0.01  # folding with the frame's statistics is exact
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(args[:-2] + ["--rows", "baseline"]) == 0
    out = capsys.readouterr().out
    assert "Lower bound for the baseline network" in out and "| baseline |" in out
    assert main(["bench", "--rows", "warp-drive"]) == 2
    assert "unknown bench rows" in capsys.readouterr().err
    assert main(["bench", "--runs", "0"]) == 2
    assert "at least 1" in capsys.readouterr().err
