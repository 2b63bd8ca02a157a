"""The example plugin package, pip-installed, works end to end without any change to fip."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fip.data.pairs import read_manifest
from fip.imaging import read_image_file

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fip-example-plugin"
OPERATORS = ["example.exposure", "example.nearest_demosaic", "example.posterize"]


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """pip-install the example plugin (its own pyproject.toml and entry point) into a private site folder."""
    work = tmp_path_factory.mktemp("plugin")
    shutil.copytree(EXAMPLE, work / "src")  # building writes into the source tree: keep the repo clean
    return _install(work / "src", work / "site")


def _fip(args, site, **env):
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]), **env}
    return subprocess.run([sys.executable, "-m", "fip", *args], capture_output=True, text=True, env=environment)


def test_installed_plugin_is_listed(plugin_site):
    result = _fip(["operators", "--json"], plugin_site)
    assert result.returncode == 0, result.stderr
    listed = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert set(OPERATORS) <= set(listed) and "smooth.l0" in listed
    assert listed["example.posterize"]["params"]["levels"]["range"] == [2, 256]
    assert listed["example.exposure"]["input"] == "linear_rgb"
    assert listed["example.nearest_demosaic"]["input"] == "bayer"
    assert listed["example.posterize"]["source"].startswith("fip-example-plugin (entry point example")

    disabled = _fip(["operators", "--json"], plugin_site, FIP_DISABLE_PLUGINS="1")
    names = {entry["name"] for entry in json.loads(disabled.stdout)}
    assert "smooth.l0" in names and not names & set(OPERATORS)


def test_plugin_operators_generate_pairs(plugin_site, photo_folder, tmp_path):
    args = ["data", "--source", str(photo_folder), "--workers", "2", "--no-progress"]
    for operator in OPERATORS:
        args += ["-o", operator]
    result = _fip(args, plugin_site, FIP_CACHE=str(tmp_path / "cache"))
    assert result.returncode == 0, result.stderr
    for operator in OPERATORS:
        out = tmp_path / "cache" / "pairs" / "photos" / operator / "480p"
        manifest = read_manifest(out)
        assert sorted(manifest["pairs"]) == ["first", "second", "third"], operator
        target = read_image_file(out / "target" / "second.png")
        source = read_image_file(out / "input" / "second.png")
        if operator == "example.posterize":  # at most 4 levels per channel
            assert np.allclose(target * 3, np.round(target * 3), atol=1e-4)
        elif operator == "example.exposure":  # +1 EV brightens
            assert target.mean() > source.mean() + 0.05
        else:  # the nearest demosaic renders the input's colours through the photo's own pipeline, coarser
            assert np.abs(target.mean(axis=(0, 1)) - source.mean(axis=(0, 1))).max() < 0.03


def _install(source: Path, site: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        check=True,
    )
    return site


def _models_used(folder: Path) -> set[str]:
    """The models named by the output log of ``folder``: which model made each output."""
    lines = (folder / ".fip-outputs.jsonl").read_text().splitlines()
    return {json.loads(line)["recipe"]["model"] for line in lines if line.strip()}


@pytest.mark.slow
def test_fip_build_makes_a_model_the_plugin_ships_and_apply_runs(plugin_site, tmp_path):
    from conftest import smooth_image

    from fip.imaging import encode_png

    photos = tmp_path / "photos"
    photos.mkdir()
    for index in range(4):
        (photos / f"p{index}.png").write_bytes(encode_png(smooth_image(48, 64, seed=index), bits=8))
    out, cache = tmp_path / "model", str(tmp_path / "cache")
    built = _fip(
        [
            "build",
            "example.posterize",
            "--source",
            str(photos),
            "--budget",
            "0.1",
            "--out",
            str(out),
            "--resolution",
            "native",
            "--timing-height",
            "96",
            "--device",
            "cpu",
        ],
        plugin_site,
        FIP_CACHE=cache,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    assert "build/any config" in built.stdout  # no config of its own: the generic one
    card = json.loads((out / "card.json").read_text())
    assert card["operator"] == "example.posterize" and "test" in card["approximators"]["full"]["quality"]
    photo = str(photos / "p0.png")
    applied = _fip(["apply", "-m", str(out), photo, "--out", str(tmp_path / "o")], plugin_site, FIP_CACHE=cache)
    assert applied.returncode == 0 and (tmp_path / "o" / "p0.png").is_file(), applied.stderr[-3000:]

    # Before packaging: the folder on FIP_MODEL_PATH runs the operator.
    listed = _fip(
        ["apply", "-o", "example.posterize", photo, "--out", str(tmp_path / "path")],
        plugin_site,
        FIP_CACHE=cache,
        FIP_MODEL_PATH=str(out),
    )
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert _models_used(tmp_path / "path") == {"built/model"}

    # The documented step: package the folder into the plugin, install it, and `fip apply -o` runs that model.
    source = shutil.copytree(EXAMPLE, tmp_path / "src")
    packaged = _fip(["package", str(out), "--into", str(source / "fip_example_plugin" / "models")], plugin_site)
    assert packaged.returncode == 0, packaged.stderr
    shipped = source / "fip_example_plugin" / "models" / "example.posterize"
    assert sorted(p.name for p in shipped.iterdir()) == [
        "before-after.png",
        "card.json",
        "net.pt",
        "report.md",
        "split.json",
    ]  # not the training runs
    again = _fip(["package", str(out), "--into", str(source / "fip_example_plugin" / "models")], plugin_site)
    assert again.returncode == 2 and "--overwrite" in again.stderr and "Traceback" not in again.stderr
    site = _install(source, tmp_path / "site")
    models = _fip(["models", "--json", "-o", "example.posterize"], site)
    assert [m["name"] for m in json.loads(models.stdout)] == ["fip_example_plugin/example.posterize"], models.stderr
    ran = _fip(["apply", "-o", "example.posterize", photo, "--out", str(tmp_path / "o2")], site, FIP_CACHE=cache)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert _models_used(tmp_path / "o2") == {"fip_example_plugin/example.posterize"}
    assert np.array_equal(read_image_file(tmp_path / "o2" / "p0.png"), read_image_file(tmp_path / "path" / "p0.png"))
