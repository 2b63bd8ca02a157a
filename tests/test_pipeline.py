"""The front door: `fip apply` opening photos under one set of limits, batches that go on past bad inputs, plans
shown with --explain, and exported programs that run without fip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import declared_png, smooth_image, write_synthetic_dng

from fip.cli import main
from fip.imaging import encode_png, read_image_file
from fip.metrics import psnr
from fip.models import ContextAggregationNet
from fip.models.catalogue import open_model
from fip.models.storage import NetworkFile, save_network
from fip.pipeline import check_file, open_input, run_approximation


def test_apply_writes_results_for_photos_and_raw_files(tmp_path, capsys):
    (tmp_path / "odd.png").write_bytes(encode_png(smooth_image(37, 53), bits=8))
    write_synthetic_dng(tmp_path / "raw.dng", smooth_image(40, 60))
    (tmp_path / "notes.txt").write_text("not a photo")
    out = tmp_path / "out"
    args = [
        "apply",
        "-m",
        "paper/L0_smoothing",
        "--variant",
        "full",
        str(tmp_path / "odd.png"),
        str(tmp_path / "raw.dng"),
        "--out",
        str(out),
    ]
    assert main(args[:7] + [str(tmp_path / "notes.txt")] + args[7:]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.err and "notes.txt" in captured.err and "unsupported file type '.txt'" in captured.err
    assert "odd.png ->" in captured.out and "full on cpu" in captured.out  # the others went on
    odd = read_image_file(out / "odd.png")
    assert odd.shape == (37, 53, 3)  # odd sizes are kept
    expected = run_approximation(
        open_model("paper/L0_smoothing"), read_image_file(tmp_path / "odd.png"), request="full"
    )
    assert np.abs(odd - expected.image).max() <= 0.5 / 255 + 1e-6
    assert read_image_file(out / "raw.png").shape == (40, 60, 3)
    # Nothing is overwritten silently (a rerun keeps what exists, so it resumes); --overwrite replaces.
    before = (out / "odd.png").read_bytes()
    assert main(args[:6] + ["--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "kept: made before from this input with these settings" in captured.out
    assert (out / "odd.png").read_bytes() == before
    assert "1 input: 0 written, 1 kept" in captured.err
    assert main(args[:6] + ["--out", str(out), "--format", "png16", "--overwrite", "--tile", "16"]) == 0
    assert np.abs(read_image_file(out / "odd.png") - expected.image).max() < 1e-3


def test_a_batch_goes_on_past_missing_files_and_reports_what_it_wrote(tmp_path, capsys):
    for name in ("a", "c"):
        (tmp_path / f"{name}.png").write_bytes(encode_png(smooth_image(30, 40), bits=8))
    inputs = [str(tmp_path / n) for n in ("a.png", "b.png", "c.png")]
    assert main(["apply", "-o", "smooth.l0", *inputs, "--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.err and "b.png: no such file" in captured.err
    assert "a.png ->" in captured.out and "c.png ->" in captured.out
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["a.png", "c.png"]
    (tmp_path / "file").write_text("x")
    assert main(["apply", "-o", "smooth.l0", inputs[0], "--out", str(tmp_path / "file")]) == 2
    assert f"--out {tmp_path / 'file'} is a file; give a folder" in capsys.readouterr().err


def test_apply_explains_its_plan_and_follows_parameters_and_devices(tmp_path, capsys):
    photo = tmp_path / "p.png"
    photo.write_bytes(encode_png(smooth_image(90, 120), bits=8))
    assert main(["apply", "-o", "smooth.l0", str(photo), "--out", str(tmp_path / "o"), "--explain"]) == 0
    out = capsys.readouterr().out
    assert "request:      auto" in out and "why:" in out and "approximator:" in out and "device:       cpu" in out
    assert main(["apply", "-o", "smooth.l0", "-p", "lambda_=0.05", str(photo), "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert "reference" in out and "the networks were trained for lambda_=0.02" in out
    assert main(["apply", "-o", "smooth.l0", str(photo), "--out", str(tmp_path / "q"), "--variant", "warp"]) == 2
    assert "has no approximator 'warp'; it has: full, fast" in capsys.readouterr().err
    assert main(["apply", "-o", "smooth.l0", str(photo), "--out", str(tmp_path / "q"), "--device", "tpu"]) == 2
    assert "'tpu' is not a device; use cpu, cuda, cuda:N or mps" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()  # usage errors stop before any photo
    assert main(["apply", "-o", "smooth.l0", "-p", "lambda_=-1", str(photo), "--out", str(tmp_path / "q")]) == 2
    assert "outside its range" in capsys.readouterr().err
    assert main(["apply", "-m", "paper/combined", str(photo), "--out", str(tmp_path / "q")]) == 2
    assert "serves several operators; name one (--operator" in capsys.readouterr().err
    assert main(["apply", "-o", "nosuch.op", str(photo), "--out", str(tmp_path / "q")]) == 2
    assert "unknown operator 'nosuch.op'" in capsys.readouterr().err


def test_an_image_file_is_read_from_disk_once(tmp_path, monkeypatch):
    import builtins
    import io

    from fip.imaging import PhotoMetadata, encode_image, read_metadata

    photo = tmp_path / "p.jpg"
    photo.write_bytes(encode_image(smooth_image(40, 48), "jpeg", metadata=PhotoMetadata(b"icc", None)))
    expected = open_input(photo)
    opened, real_open = [], builtins.open

    def counted(file, *args, **kwargs):
        opened.append(file)
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counted)
    monkeypatch.setattr(io, "open", counted)  # pathlib's
    monkeypatch.setattr(np, "fromfile", lambda *a, **k: pytest.fail("decoded from the file a second time"))
    again = open_input(photo)
    assert [Path(f) for f in opened if isinstance(f, (str, Path))] == [photo]  # read_bytes, once
    np.testing.assert_array_equal(again.views.srgb, expected.views.srgb)
    assert again.metadata == expected.metadata == read_metadata(photo) and again.metadata.icc_profile == b"icc"


def test_the_front_door_checks_files_before_decoding(tmp_path, monkeypatch):
    from fip.errors import InputError, UnreadablePhotoError

    with pytest.raises(UnreadablePhotoError, match="no such file"):
        check_file(tmp_path / "missing.png")
    with pytest.raises(UnreadablePhotoError, match="not a file"):
        check_file(tmp_path)
    with pytest.raises(
        InputError, match="declares 900 MP; fip opens photos up to 150 MP: downscale it with another program first"
    ):
        check_file(declared_png(tmp_path / "bomb.png", 30_000, 30_000))  # 109 bytes, 900 MP: refused unread
    tiny = tmp_path / "tiny.png"
    tiny.write_bytes(encode_png(smooth_image(1, 1), bits=8))
    with pytest.raises(InputError, match="is 1x1 pixels; fip needs at least 2 pixels on each side"):
        open_input(tiny)
    monkeypatch.setattr("fip.pipeline.MAX_FILE_MEGABYTES", 0.00001)
    with pytest.raises(InputError, match="fip opens files up to"):
        check_file(tiny)


def test_apply_refuses_bombs_and_tiny_photos_without_a_traceback(tmp_path, capsys):
    declared_png(tmp_path / "bomb.png", 30_000, 30_000)
    (tmp_path / "tiny.png").write_bytes(encode_png(smooth_image(1, 1), bits=8))
    (tmp_path / "three.png").write_bytes(encode_png(smooth_image(3, 3, edge=False), bits=8))
    inputs = [str(tmp_path / n) for n in ("bomb.png", "tiny.png", "three.png")]
    assert main(["apply", "-o", "smooth.l0", *inputs, "--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err and captured.err.count("FAILED") == 2
    assert read_image_file(tmp_path / "out" / "three.png").shape == (3, 3, 3)  # 3x3 comes out whole


def test_budget_downscales_large_photos(tmp_path):
    (tmp_path / "big.png").write_bytes(encode_png(smooth_image(200, 300), bits=8))
    out = tmp_path / "out"
    assert (
        main(["apply", "-m", "paper/TV_L1", str(tmp_path / "big.png"), "--out", str(out), "--max-megapixels", "0.015"])
        == 0
    )
    height, width = read_image_file(out / "big.png").shape[:2]
    assert height * width <= 15_000 and abs(width / height - 1.5) < 0.05


def test_eval_records_the_plan_of_every_photo(photo_folder, capsys):
    assert (
        main(
            [
                "eval",
                "-m",
                "paper/L0_smoothing",
                "--source",
                str(photo_folder),
                "--split",
                "all",
                "--json",
                "--workers",
                "1",
                "--resolution",
                "native",
                "--variant",
                "fast",
            ]
        )
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["request"] == "fast" and report["approximators"] == ["fast"]
    assert all(i["plan"]["approximator"] == "fast" and i["plan"]["device"] == "cpu" for i in report["images"])


@pytest.mark.slow
def test_exported_programs_run_without_fip_and_match(tmp_path):
    """`fip export` writes a torch.export archive; plain PyTorch (fip not imported) reproduces the network."""
    import subprocess
    import sys

    running = ContextAggregationNet(width=8, depth=5, norm="running").eval()
    for module in running.modules():
        if hasattr(module, "mu"):
            torch.nn.init.uniform_(module.mu, 0.3, 0.6)
            module.running_var.uniform_(0.5, 2.0)
    save_network(NetworkFile(running, "tiny", "smooth.rof"), tmp_path / "tiny.pt")
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
        expected = run_approximation(open_model(model), image, request="full").image
        assert psnr(np.load(tmp_path / f"{name}-out.npy"), expected) >= 45.0
        assert ("folded" in done.stdout) == (name == "tiny")
    assert main(["export", "-m", "paper/L0_smoothing", "--out", str(tmp_path / "l0.pt2")]) == 2  # never overwrites
