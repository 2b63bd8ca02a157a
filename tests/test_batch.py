"""Batches in `fip apply`: folders, globs and --recursive; outputs that never collide; a result for every input;
local worker processes; exit codes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import smooth_image

from fip.batch import OUTPUT_LOG, OutputOptions, expand_inputs, output_paths, plan_batch
from fip.cli import EXIT_BROKEN_PIPE, EXIT_SOME_FAILED, EXIT_USAGE, main
from fip.errors import InputError
from fip.imaging import encode_png, read_image_file


@contextlib.contextmanager
def _no_exit():
    yield None


def _photo(path: Path, height: int = 24, width: int = 32, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.clip(smooth_image(height, width) + np.random.default_rng(seed).normal(0, 0.05, (height, width, 3)), 0, 1)
    path.write_bytes(encode_png(image.astype(np.float32), bits=8))
    return path


def test_folders_globs_and_recursion_expand_to_photo_files_once(tmp_path):
    shoot = tmp_path / "shoot"
    a, b = _photo(shoot / "a.png"), _photo(shoot / "b.PNG")
    deep = _photo(shoot / "day2" / "c.png")
    (shoot / "notes.txt").write_text("not a photo")
    (tmp_path / "empty").mkdir()
    out = shoot / "edited"
    _photo(out / "old.png")  # an earlier run's output inside the folder is not an input

    flat = expand_inputs([shoot, a], exclude=[out / "old.png"])
    assert [(p, sub) for p, sub, _ in flat] == [(a, Path()), (b, Path())]  # a given twice is run once
    tree = expand_inputs([shoot], recursive=True, exclude=[out / "old.png"])
    assert [(p.name, str(sub)) for p, sub, _ in tree] == [("a.png", "."), ("b.PNG", "."), ("c.png", "day2")]
    assert [p for p, _, _ in expand_inputs([str(shoot / "*.png")])] == [a]
    assert [p for p, _, _ in expand_inputs([str(tmp_path / "**" / "c.png")], recursive=True)] == [deep]
    errors = [e for _, _, e in expand_inputs([tmp_path / "empty", str(tmp_path / "*.jpg"), tmp_path / "gone.png"])]
    assert "no photo files in this folder (--recursive includes its subfolders)" in errors[0]
    assert "no photo files match this pattern" in errors[1]
    assert errors[2] is None  # a missing file is run, and reported as missing by the front door


def test_outputs_of_inputs_that_share_a_name_never_collide(tmp_path):
    items = [
        (tmp_path / "a.jpg", Path()),
        (tmp_path / "a.png", Path()),
        (tmp_path / "x" / "a.png", Path()),
        (tmp_path / "b.png", Path()),
        (tmp_path / "B.png", Path()),
        (tmp_path / "c.png", Path("sub")),
    ]
    names = [str(p.relative_to(tmp_path / "out")) for p in output_paths(items, tmp_path / "out", ".png")]
    assert names == ["a-jpg.png", "a-png.png", "a-png-2.png", "b-png.png", "B-png-2.png", "sub/c.png"]
    assert len({n.lower() for n in names}) == len(names)


def test_a_batch_of_same_stem_inputs_writes_each_result(tmp_path, capsys):
    _photo(tmp_path / "a.png", seed=1)
    (tmp_path / "a.jpg").write_bytes((tmp_path / "a.png").read_bytes())  # PNG bytes, read by content
    _photo(tmp_path / "a.png", seed=2)
    out = tmp_path / "out"
    args = ["apply", "-o", "smooth.l0", str(tmp_path / "a.jpg"), str(tmp_path / "a.png"), "--out", str(out)]
    assert main(args + ["--overwrite", "--no-progress"]) == 0
    written = sorted(p.name for p in out.glob("*.png"))
    assert written == ["a-jpg.png", "a-png.png"]
    assert not np.array_equal(read_image_file(out / "a-jpg.png"), read_image_file(out / "a-png.png"))
    captured = capsys.readouterr()
    assert "a.jpg -> " + str(out / "a-jpg.png") in captured.out and "2 inputs: 2 written in" in captured.err


def test_folders_mirror_their_tree_and_reruns_resume(tmp_path, capsys):
    shoot = tmp_path / "shoot"
    _photo(shoot / "a.png")
    _photo(shoot / "day2" / "b.png")
    out = tmp_path / "out"
    assert main(["apply", "-o", "smooth.l0", str(shoot), "--out", str(out), "-r", "--format", "jpeg"]) == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg")) == ["a.jpg", "day2/b.jpg"]
    _photo(shoot / "day2" / "c.png")
    capsys.readouterr()
    assert main(["apply", "-o", "smooth.l0", str(shoot), "--out", str(out), "-r", "--format", "jpeg"]) == 0
    assert "3 inputs: 1 written, 2 kept" in capsys.readouterr().err


def test_bad_folders_and_arguments_are_usage_errors_and_bad_inputs_fail_alone(tmp_path, capsys):
    photo = _photo(tmp_path / "p.png")
    (tmp_path / "file").write_text("x")
    assert main(["apply", "-o", "smooth.l0", str(photo), "--out", str(tmp_path / "file")]) == EXIT_USAGE
    assert "is a file; give a folder" in capsys.readouterr().err
    assert (
        main(
            ["apply", "-o", "smooth.l0", str(photo), "--out", str(tmp_path / "o"), "--format", "jpeg", "--quality", "0"]
        )
        == EXIT_USAGE
    )
    assert "JPEG quality must be 1..100; got 0" in capsys.readouterr().err
    unwritable = Path("/proc/fip-cannot-write") if os.geteuid() == 0 else tmp_path / "ro" / "out"
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir()
        (tmp_path / "ro").chmod(0o555)
    assert main(["apply", "-o", "smooth.l0", str(photo), "--out", str(unwritable)]) == EXIT_USAGE
    assert "cannot write to the output folder" in capsys.readouterr().err
    # Its own output would replace the input: refused for that input only.
    assert (
        main(
            [
                "apply",
                "-o",
                "smooth.l0",
                str(photo),
                str(tmp_path / "missing.png"),
                "--out",
                str(tmp_path),
                "--overwrite",
            ]
        )
        == EXIT_SOME_FAILED
    )
    captured = capsys.readouterr()
    assert "would replace the input itself" in captured.err and "missing.png: no such file" in captured.err
    assert "Traceback" not in captured.err and "2 inputs: 0 written, 2 failed" in captured.err


def test_plan_batch_checks_the_output_options():
    with pytest.raises(InputError, match="unknown output format 'gif'; choose one of png, png16, tiff16, jpeg"):
        OutputOptions("gif")


def test_local_workers_are_capped_by_inputs_cores_and_memory_with_a_warning(monkeypatch, recwarn):
    from fip.workers import WorkersWarning, local_workers

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setenv("FIP_MEMORY_LIMIT", "64G")
    with pytest.warns(WorkersWarning, match="--workers 100000: starting 4 local processes, as this machine has 4 CPU"):
        assert local_workers(100000, 50) == 4
    assert local_workers(100000, 3) == 3 and local_workers(2, 50) == 2 and not recwarn.list  # no more than asked
    monkeypatch.setenv("FIP_MEMORY_LIMIT", "700M")
    with pytest.warns(WorkersWarning, match="starting 2 local processes, as this machine has memory for 2"):
        assert local_workers(8, 50) == 2


@pytest.mark.slow
def test_worker_processes_and_a_dask_cluster_write_what_one_process_writes(tmp_path):
    from distributed import LocalCluster

    for i in range(3):
        _photo(tmp_path / "in" / f"p{i}.png", 40, 56, seed=i)
    _photo(tmp_path / "in" / "tiny.png", 2, 2)
    args = ["apply", "-o", "smooth.rof", str(tmp_path / "in"), str(tmp_path / "in" / "gone.png"), "--no-progress"]
    assert main([*args, "--out", str(tmp_path / "one")]) == EXIT_SOME_FAILED  # gone.png
    assert main([*args, "--out", str(tmp_path / "two"), "--workers", "2"]) == EXIT_SOME_FAILED
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        assert main([*args, "--out", str(tmp_path / "dask"), "--scheduler", cluster.scheduler_address]) == 1
    for name in ("p0.png", "p1.png", "p2.png", "tiny.png"):
        one = (tmp_path / "one" / name).read_bytes()
        assert one == (tmp_path / "two" / name).read_bytes() == (tmp_path / "dask" / name).read_bytes(), name


def test_a_closed_pipe_ends_listing_quietly():
    # `true` exits without reading, long before fip has started: its writes meet a closed pipe.
    command = f"set -o pipefail; {sys.executable} -m fip operators --json | true"
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
    assert done.returncode == EXIT_BROKEN_PIPE and done.stderr == ""  # as `cat big | true` is 141: SIGPIPE


def test_plan_batch_lists_every_input_with_its_output(tmp_path):
    a = _photo(tmp_path / "a.png")
    batch = plan_batch(
        [a, tmp_path / "gone.png", str(tmp_path / "*.tif")], tmp_path / "out", output=OutputOptions("tiff16")
    )
    assert [(i.source.name, i.output.name if i.output else None, bool(i.error)) for i in batch.items] == [
        ("a.png", "a.tif", False),
        ("gone.png", "gone.tif", False),
        ("*.tif", None, True),
    ]


def test_portrait_photos_come_out_upright_with_their_profile_and_exif(tmp_path):
    from PIL import Image, ImageCms

    from fip.data.unprocess import CaptureSettings, unprocess
    from fip.dng import write_dng

    landscape = smooth_image(24, 40)  # as the sensor stored it; EXIF 6: turn 90 degrees clockwise to view
    pixels = (landscape * 255).round().astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "fip camera"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(pixels).save(tmp_path / "portrait.jpg", quality=98, exif=exif.tobytes(), icc_profile=icc)
    settings = CaptureSettings(cfa="RGGB")
    write_dng(tmp_path / "portrait.dng", unprocess(landscape, settings, None), settings.metadata(), orientation=6)
    out = tmp_path / "out"
    assert (
        main(
            [
                "apply",
                "-o",
                "smooth.l0",
                str(tmp_path / "portrait.jpg"),
                str(tmp_path / "portrait.dng"),
                "--out",
                str(out),
                "--format",
                "jpeg",
                "--no-progress",
            ]
        )
        == 0
    )
    for name in ("portrait-jpg.jpg", "portrait-dng.jpg"):
        with Image.open(out / name) as result:
            assert result.size == (24, 40), name  # width x height: upright, portrait
            assert result.getexif().get(0x0112, 1) == 1
            result_pixels = np.asarray(result, dtype=np.float32) / 255
        # The left column of the upright photo is the bottom row of the stored one.
        columns = result_pixels.mean(axis=(0, 2))
        right = np.abs(columns - np.rot90(landscape, k=-1).mean(axis=(0, 2))).max()
        wrong = np.abs(columns - np.rot90(landscape, k=1).mean(axis=(0, 2))).max()
        assert right < 0.05 < wrong, (name, right, wrong)
    with Image.open(out / "portrait-jpg.jpg") as result:
        assert result.info.get("icc_profile") == icc and result.getexif().get(0x010F) == "fip camera"


def test_a_rerun_keeps_only_what_this_input_made_with_these_settings(tmp_path, capsys):
    card1 = _photo(tmp_path / "card1" / "IMG_0001.png", seed=1)
    card2 = _photo(tmp_path / "card2" / "IMG_0001.png", seed=2)
    out = tmp_path / "out"

    def apply(*inputs, extra=()):
        code = main(["apply", "-o", "smooth.l0", *map(str, inputs), "--out", str(out), "--no-progress", *extra])
        return code, capsys.readouterr()

    assert apply(card1)[0] == 0
    first = (out / "IMG_0001.png").read_bytes()
    code, captured = apply(card2)  # another card's photo of the same name: a new name, nothing replaced
    assert code == 0 and "IMG_0001.png is taken by another file" in captured.out
    assert (out / "IMG_0001.png").read_bytes() == first and (out / "IMG_0001-2.png").exists()
    code, captured = apply(card2, card1)  # either order: each keeps its own output
    assert code == 0 and "2 inputs: 0 written, 2 kept" in captured.err
    assert f"{card2} -> {out / 'IMG_0001-2.png'} kept" in captured.out
    code, captured = apply(card1, extra=["-p", "lambda_=0.05"])  # other settings: refused, naming the one that differs
    assert code == EXIT_SOME_FAILED and "--overwrite" in captured.err
    assert "was made with other settings (params lambda_=0.02, now 0.05);" in captured.err
    assert "sha256" not in captured.err and "networks" not in captured.err  # not the whole recipe
    assert (out / "IMG_0001.png").read_bytes() == first
    _photo(card1, seed=3)  # the input changed: its output is made again
    code, captured = apply(card1)
    assert code == 0 and "made again" in captured.out and (out / "IMG_0001.png").read_bytes() != first
    assert apply(card1, extra=["-p", "lambda_=0.05", "--overwrite"])[0] == 0
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["IMG_0001-2.png", "IMG_0001.png"]


def test_overwrite_replaces_only_fips_own_outputs_never_a_users_file(tmp_path, capsys):
    shoot = tmp_path / "shoot"
    photo = _photo(shoot / "a.jpg")  # PNG bytes, read by content
    mine = _photo(shoot / "a.png", seed=4)  # the user's own photo, where a.jpg's output would go
    original = mine.read_bytes()
    code = main(["apply", "-o", "smooth.rof", str(photo), "--out", str(shoot), "--overwrite", "--no-progress"])
    captured = capsys.readouterr()
    assert code == EXIT_SOME_FAILED and mine.read_bytes() == original
    assert f"{mine} is not an output of fip ({OUTPUT_LOG} there does not list it)" in captured.err
    # Without --overwrite it takes the next free name, as before; --overwrite then replaces that output of fip's.
    assert main(["apply", "-o", "smooth.rof", str(photo), "--out", str(shoot), "--no-progress"]) == 0
    assert main(["apply", "-o", "smooth.rof", str(photo), "--out", str(shoot), "--no-progress", "--overwrite"]) == 0
    assert mine.read_bytes() == original and (shoot / "a-2.png").is_file()


def test_an_output_damaged_after_it_was_made_is_made_again(tmp_path, capsys):
    photo = _photo(tmp_path / "a.png")
    out = tmp_path / "out"
    args = ["apply", "-o", "smooth.rof", str(photo), "--out", str(out), "--no-progress"]
    assert main(args) == 0
    made = (out / "a.png").read_bytes()
    logged = json.loads((out / OUTPUT_LOG).read_text().splitlines()[-1])
    assert logged["bytes"] == len(made) and len(logged["sha256"]) == 64
    (out / "a.png").write_bytes(b"damaged!")
    capsys.readouterr()
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "a.png changed since fip made it" in captured.out and "1 written" in captured.err
    assert (out / "a.png").read_bytes() == made
    assert main(args) == 0 and "0 written, 1 kept" in capsys.readouterr().err


def test_hidden_files_folders_at_output_names_and_outputs_inside_inputs(tmp_path, capsys):
    shoot = tmp_path / "shoot"
    _photo(shoot / "a.png")
    _photo(shoot / "._a.png")  # macOS's resource fork beside it
    (tmp_path / "out" / "a.png").mkdir(parents=True)  # a folder where the output would go
    assert [p.name for p, _, _ in expand_inputs([shoot])] == ["a.png"]
    assert main(["apply", "-o", "smooth.l0", str(shoot), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "a.png is taken by another file" in capsys.readouterr().out and (tmp_path / "out" / "a-2.png").is_file()
    error = expand_inputs([str(shoot / "*.png")], exclude=[shoot / "a.png"])[0][2]
    assert "every photo here is an output of an earlier run" in error


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--quality", "50"], "--quality sets JPEG quality; --format is png"),
        (["--workers", "0"], "--workers: takes a whole number of at least 1, got '0'"),
        (["--max-megapixels", "-1"], "--max-megapixels: takes a number above 0, got '-1'"),
        (["--max-megapixels", "nan"], "takes a number above 0"),
        (["--scheduler", "nonsense"], "could not reach a Dask scheduler at 'nonsense'"),
    ],
)
def test_bad_settings_are_usage_errors_before_any_photo(tmp_path, capsys, extra, message):
    photo = _photo(tmp_path / "p.png")
    with pytest.raises(SystemExit) if "--scheduler" not in extra and "--quality" not in extra else _no_exit() as exit:
        code = main(["apply", "-o", "smooth.l0", str(photo), "--out", str(tmp_path / "o"), *extra])
    captured = capsys.readouterr()
    assert (exit.value.code if exit else code) == EXIT_USAGE and message in captured.err, captured.err
    assert "Traceback" not in captured.err and not list((tmp_path / "o").glob("*.png"))


def test_a_changed_format_a_hostile_file_and_an_overwrite_keep_every_result(tmp_path, capsys):
    import io

    from PIL import Image

    photo = _photo(tmp_path / "x" / "a.png")
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x010F] = "cam"
    Image.open(photo).save(buffer, "WEBP", exif=exif.tobytes())  # an extended (VP8X) header
    hostile = bytearray(buffer.getvalue())
    assert hostile[12:16] == b"VP8X"
    hostile[27:30] = b"\x0f\x00\x87"  # the canvas height says 8.8 million pixels
    (tmp_path / "x" / "hostile.webp").write_bytes(bytes(hostile))
    out = tmp_path / "out"

    def apply(*inputs, extra=()):
        code = main(["apply", "-o", "smooth.l0", *map(str, inputs), "--out", str(out), "--no-progress", *extra])
        return code, capsys.readouterr()

    code, captured = apply(tmp_path / "x" / "hostile.webp", photo)
    assert code == EXIT_SOME_FAILED and "Traceback" not in captured.err and "hostile.webp" in captured.err
    assert (out / "a.png").is_file()
    code, captured = apply(photo, extra=["--format", "jpeg"])  # another format: its own file, the PNG stays
    assert code == 0 and (out / "a.jpg").is_file() and (out / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert apply(photo, extra=["--format", "jpeg"])[1].err.startswith("1 input: 0 written, 1 kept")
    # --overwrite never hands one input's output to another: y/a.png does not take x/a.png's a.png.
    (out / "a.png").unlink()  # deleted by hand: the same input makes it again under its own name
    code, captured = apply(photo)
    assert code == 0 and (out / "a.png").is_file() and "taken" not in captured.out
    other = _photo(tmp_path / "y" / "a.png", seed=5)
    code, captured = apply(photo, other, extra=["--overwrite"])
    assert code == 0 and sorted(p.name for p in out.glob("*.png")) == ["a-png-2.png", "a.png"]
    logged = [json.loads(line) for line in (out / OUTPUT_LOG).read_text().splitlines()]
    assert {entry["output"]: entry["source"] for entry in logged}["a-png-2.png"] == str(other.resolve())


def test_apply_and_eval_take_a_preference_and_refuse_bad_ones_in_one_line(tmp_path, capsys):
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode_png(smooth_image(48, 64), bits=8))
    out = tmp_path / "out"
    args = ["apply", "-o", "smooth.l0", str(photo), "--out", str(out), "--no-progress"]
    assert main([*args, "--prefer", "speed", "--explain"]) == 0
    printed = capsys.readouterr().out
    assert "request:      auto (prefer speed)" in printed and "approximator: reference-lowres" in printed
    assert "choices:      quality: reference-halfres (" in printed and "speed: reference-lowres (" in printed
    assert ", reference-lowres on cpu)" in printed
    assert main([*args, "--prefer", "quality"]) == EXIT_SOME_FAILED  # another preference: the output is not kept
    assert "made with other settings (prefer 'speed', now 'quality')" in capsys.readouterr().err
    assert main([*args, "--prefer", "quality", "--overwrite"]) == 0
    assert ", reference-halfres on cpu)" in capsys.readouterr().out
    for bad, message in (
        (["--prefer", "fastest"], "prefer 'fastest' is not a preset"),
        (["--min-psnr", "-3"], "min PSNR '-3' is not a PSNR"),
        (["--min-psnr", "abc"], "min PSNR 'abc' is not a PSNR"),
        (["--prefer", "speed", "--variant", "fast"], "'fast' is asked for by name"),
    ):
        assert main([*args, *bad]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert err.startswith("fip: error: ") and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert main(["eval", "-m", "smooth.l0", "--prefer", "fastest"]) == EXIT_USAGE
    assert "prefer 'fastest'" in capsys.readouterr().err
