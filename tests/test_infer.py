"""Inference: tiled forward pass, applying models to photos and raw files, shipped-model lookup."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fip.cli import main
from fip.errors import FipError
from fip.imaging import encode_png, read_image_file
from fip.metrics import psnr
from fip.infer import LoadedModel, export_model, forward_tiled, load_model, model_for_operator, run_model
from fip.models import ContextAggregationNet

from conftest import smooth_image, write_synthetic_dng


@pytest.mark.parametrize("conv_bias", [False, True])
def test_tiled_forward_equals_the_whole_image_pass(conv_bias):
    torch.manual_seed(0)
    net = ContextAggregationNet(width=8, depth=6, conv_bias=conv_bias).eval()
    for module in net.modules():  # non-trivial normalization, so per-tile statistics would show
        if hasattr(module, "mu"):
            torch.nn.init.uniform_(module.mu, 0.5, 1.0)
            torch.nn.init.uniform_(module.beta, -0.2, 0.2)
        if isinstance(module, torch.nn.Conv2d) and module.bias is not None:
            torch.nn.init.uniform_(module.bias, -0.2, 0.2)
    x = torch.rand(1, 3, 45, 71)
    with torch.no_grad():
        whole = net(x)
    assert torch.allclose(forward_tiled(net, x, tile=16), whole, atol=1e-5)
    with pytest.raises(FipError, match="one image at a time"):
        forward_tiled(net, torch.rand(2, 3, 8, 8))


def test_apply_writes_results_for_photos_and_raw_files(tmp_path, capsys):
    (tmp_path / "odd.png").write_bytes(encode_png(smooth_image(37, 53), bits=8))
    write_synthetic_dng(tmp_path / "raw.dng", smooth_image(40, 60))
    (tmp_path / "notes.txt").write_text("not a photo")
    out = tmp_path / "out"
    args = ["apply", "-m", "paper/L0_smoothing", str(tmp_path / "odd.png"), str(tmp_path / "raw.dng"), "--out", str(out)]
    assert main(args[:5] + [str(tmp_path / "notes.txt")] + args[5:]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.err and "notes.txt" in captured.err
    odd = read_image_file(out / "odd.png")
    assert odd.shape == (37, 53, 3)  # odd sizes are kept
    expected = run_model(load_model("paper/L0_smoothing").net, read_image_file(tmp_path / "odd.png"))
    assert np.abs(odd - expected).max() <= 0.5 / 255 + 1e-6
    assert read_image_file(out / "raw.png").shape == (40, 60, 3)
    # Nothing is overwritten silently; --overwrite replaces.
    before = (out / "odd.png").read_bytes()
    assert main(args[:4] + ["--out", str(out), "--bits", "16"]) == 1
    assert "exists; pass --overwrite" in capsys.readouterr().err and (out / "odd.png").read_bytes() == before
    assert main(args[:4] + ["--out", str(out), "--bits", "16", "--overwrite", "--tile", "16"]) == 0
    assert np.abs(read_image_file(out / "odd.png") - expected).max() < 1e-3


def test_budget_downscales_large_photos(tmp_path):
    (tmp_path / "big.png").write_bytes(encode_png(smooth_image(200, 300), bits=8))
    out = tmp_path / "out"
    assert main(["apply", "-m", "paper/TV_L1", str(tmp_path / "big.png"), "--out", str(out), "--max-megapixels", "0.015"]) == 0
    height, width = read_image_file(out / "big.png").shape[:2]
    assert height * width <= 15_000 and abs(width / height - 1.5) < 0.05


def test_operator_models_fall_back_to_the_authors_networks(tmp_path, monkeypatch):
    monkeypatch.setattr("fip.infer.SHIPPED_DIR", tmp_path)  # as if fip had trained none yet
    assert model_for_operator("smooth.l0").name == "paper/L0_smoothing"
    with pytest.raises(FipError, match="no model ships for operator 'style.stylize'"):
        model_for_operator("style.stylize")
    export_model(load_model("paper/TV_L1"), tmp_path / "style.stylize.pt")
    assert model_for_operator("style.stylize").name == str(tmp_path / "style.stylize.pt")
    assert load_model("fip/style.stylize").name == str(tmp_path / "style.stylize.pt")  # fip/<operator>: the same
    assert main(["apply", "-m", "paper/L0_smoothing", "-o", "smooth.rof", "x.png", "--out", "y"]) == 2


def test_variants_approximate_the_paper_exact_pass(monkeypatch):
    net = load_model("paper/L0_smoothing").net
    image = smooth_image(120, 160)
    exact = run_model(net, image, variant="full")
    # Small images: the fast variant's statistics pass is already the exact result.
    assert np.array_equal(run_model(net, image, variant="fast"), exact)
    monkeypatch.setattr("fip.infer.STATS_MEGAPIXELS", 0.005)  # force a downscaled statistics pass
    monkeypatch.setattr("fip.infer.LOWRES_MEGAPIXELS", 0.005)
    for variant, floor in (("fast", 40.0), ("bf16", 40.0), ("lowres", 30.0)):  # measured: 47.2, 45.3, 35.8 dB
        out = run_model(net, image, variant=variant)
        assert out.shape == image.shape and out.dtype == np.float32
        assert psnr(out, exact) > floor, variant
        assert not np.array_equal(out, exact), variant  # really took the approximate path
    tiled = run_model(net, image, variant="fast", tile=32)
    assert np.abs(tiled - run_model(net, image, variant="fast")).max() < 1e-5
    assert net.features[0].weight.dtype == torch.float32  # the caller's network is left alone
    with pytest.raises(FipError, match="unknown variant 'int4'; choose one of auto, full, fast"):
        run_model(net, image, variant="int4")
    with pytest.raises(FipError, match="call run_loaded"):  # these choose among a model's networks
        run_model(net, image, variant="pruned")


def test_inference_leaves_the_callers_network_trainable():
    net = ContextAggregationNet(width=8, depth=5)
    for variant in ("full", "fast", "bf16", "lowres"):
        run_model(net, smooth_image(40, 60), variant=variant)
    assert not any(p.is_inference() for p in net.parameters())
    assert all(p.dtype == torch.float32 for p in net.parameters())
    net.train()
    net(torch.rand(2, 3, 16, 16)).sum().backward()  # still trains
    assert net.features[0].weight.grad is not None


def test_folded_tiles_with_a_receptive_halo_equal_the_whole_image_pass(monkeypatch):
    from fip.infer import forward_tiles
    from fip.models.can import fold

    net = ContextAggregationNet(width=8, depth=6, norm="running").eval()
    for module in net.modules():
        if hasattr(module, "mu"):
            torch.nn.init.uniform_(module.mu, 0.5, 1.0)
    folded = fold(net)
    assert folded.receptive_radius == 1 + 2 + 4 + 8 + 1
    x = torch.rand(1, 3, 70, 95)
    with torch.no_grad():
        whole = folded(x)
    assert torch.allclose(forward_tiles(folded, x, tile=24), whole, atol=1e-5)
    # Running-statistics networks fold exactly, so their fast variant equals the full one.
    image = smooth_image(70, 95)
    monkeypatch.setattr("fip.infer.STATS_MEGAPIXELS", 0.001)
    assert np.abs(run_model(net, image, variant="fast") - run_model(net, image, variant="full")).max() < 1e-5


def test_concurrent_requests_on_one_network_do_not_mix(monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setattr("fip.infer.STATS_MEGAPIXELS", 0.002)
    net = load_model("paper/L0_smoothing").net
    image = smooth_image(60, 80)
    expected = {v: run_model(net, image, variant=v) for v in ("full", "fast")}
    with ThreadPoolExecutor(4) as pool:
        jobs = [(v, pool.submit(run_model, net, image, variant=v)) for v in ("full", "fast") * 4]
        for variant, job in jobs:
            assert np.array_equal(job.result(), expected[variant]), variant


def test_full_variant_refuses_photos_beyond_its_memory_limit(monkeypatch):
    from fip.pipeline import run_approximation

    monkeypatch.setattr("fip.pipeline.FULL_MAX_MEGAPIXELS", 0.001)
    image = smooth_image(40, 60)
    with pytest.raises(FipError, match="choose the 'fast' variant"):
        run_approximation("smooth.l0", image, variant="full", model=load_model("paper/L0_smoothing"))
    assert run_approximation("smooth.l0", image, variant="fast", model=load_model("paper/L0_smoothing")).image.shape == image.shape
    with pytest.raises(FipError, match="approximates smooth.l0, not smooth.rof"):
        run_approximation("smooth.rof", image, model=load_model("paper/L0_smoothing"))


@pytest.mark.slow
def test_exported_programs_run_without_fip_and_match(tmp_path):
    """`fip export` writes a torch.export archive; plain PyTorch (fip not imported) reproduces the model."""
    import subprocess
    import sys

    from fip.models.can import fold  # noqa: F401  (the running-statistics net below exports folded)

    running = ContextAggregationNet(width=8, depth=5, norm="running").eval()
    for module in running.modules():
        if hasattr(module, "mu"):
            torch.nn.init.uniform_(module.mu, 0.3, 0.6)
            module.running_var.uniform_(0.5, 2.0)
    export_model(LoadedModel(running, "tiny", "smooth.rof"), tmp_path / "tiny.pt")
    image = smooth_image(37, 53)
    np.save(tmp_path / "image.npy", image)
    for name, model in (("l0", "paper/L0_smoothing"), ("tiny", str(tmp_path / "tiny.pt"))):
        assert main(["export", "-m", model, "--out", str(tmp_path / f"{name}.pt2")]) == 0
        script = f"""
import json, sys, numpy as np, torch
extra = {{"fip.json": ""}}
program = torch.export.load({str(tmp_path / f"{name}.pt2")!r}, extra_files=extra)
x = torch.from_numpy(np.load({str(tmp_path / "image.npy")!r})).permute(2, 0, 1)[None]
with torch.no_grad():
    y = program.module()(x).clamp(0, 1)[0].permute(1, 2, 0).numpy()
np.save({str(tmp_path / f"{name}-out.npy")!r}, y)
assert not any(m == "fip" or m.startswith("fip.") for m in sys.modules)
print(json.loads(extra["fip.json"])["normalization"])
"""
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        expected = run_model(load_model(model).net, image)
        assert psnr(np.load(tmp_path / f"{name}-out.npy"), expected) >= 45.0
        assert ("folded" in done.stdout) == (name == "tiny")
    assert main(["export", "-m", "paper/L0_smoothing", "--out", str(tmp_path / "l0.pt2")]) == 2  # never overwrites
