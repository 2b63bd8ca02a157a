"""fip as users install it: the distribution fip-photo, a core that runs without the optional extras, a one-line
message naming the extra where a command needs one, and training configs found by name from an installed wheel."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from conftest import smooth_image

from fip.errors import (
    DISTRIBUTION,
    EXTRA_MODULES,
    EXTRA_USERS,
    ConfigNotFoundError,
    FipError,
    MissingExtraError,
    require_extra,
)
from fip.imaging import encode_png

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("fip", "operators", "demo", "train", "pyproject.toml", "README.md", "LICENSE", "NOTICE")
# The packages of every extra, by import name: the core must run with none of them.
OPTIONAL = (
    "pytorch_lightning",
    "lightning",
    "gradio",
    "distributed",
    "dask",
    "tensorboard",
    "matplotlib",
    "jsonargparse",
)


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _requirement_name(requirement: str) -> str:
    return re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower().replace("_", "-")


# -- pyproject.toml ---------------------------------------------------------------------------------------------


def test_the_distribution_is_fip_photo_and_its_core_needs_no_extra():
    project = _pyproject()["project"]
    assert project["name"] == DISTRIBUTION == "fip-photo"
    core = {_requirement_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    for extra in EXTRA_MODULES:
        assert not core & {_requirement_name(r) for r in extras[extra]}, f"the core requires part of [{extra}]"
    assert "onnxruntime" in core  # the shipped int8 approximators run in the core
    assert f"{DISTRIBUTION}[{','.join(EXTRA_MODULES)}]" in extras["all"]
    assert f"{DISTRIBUTION}[all]" in extras["test"]


def test_each_extra_provides_the_modules_require_extra_checks():
    """``EXTRA_MODULES`` names, per extra, import names whose distributions that extra declares."""
    import importlib.metadata

    providers = importlib.metadata.packages_distributions()
    extras = _pyproject()["project"]["optional-dependencies"]
    assert set(EXTRA_MODULES) == set(EXTRA_USERS) == set(extras) - {"all", "test", "docs"}  # docs: tools, not fip
    for extra, modules in EXTRA_MODULES.items():
        declared = {_requirement_name(r) for r in extras[extra]}
        for module in modules:
            assert {d.lower().replace("_", "-") for d in providers[module]} & declared, (extra, module)


def test_setup_installs_every_extra_and_ci_runs_the_readme_test_command():
    assert '-e ".[all,test]"' in (REPO / "scripts" / "setup.sh").read_text()
    command = "bash scripts/setup.sh && .venv/bin/python -m pytest"
    assert f"\n{command}\n" in (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.rstrip().endswith(command)
    assert "FIP_DEVICE_CLASS=$other .venv/bin/python -m pytest -m device_class" in ci  # the other CPU class too


# -- require_extra ----------------------------------------------------------------------------------------------


def test_require_extra_names_the_extra_and_the_pip_command(tmp_path, monkeypatch):
    require_extra("demo", "json")  # importable: nothing happens
    with pytest.raises(MissingExtraError) as info:
        require_extra("demo", "fip_test_no_such_module")
    message = str(info.value)
    assert message == (
        "fip demo needs the demo extra (fip_test_no_such_module is not installed): pip install 'fip-photo[demo]'"
    )
    assert isinstance(info.value, ImportError) and isinstance(info.value, FipError)

    # Installed but broken (its own dependency is missing): the message says so, on one line.
    (tmp_path / "fip_test_broken.py").write_text("import fip_test_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(MissingExtraError) as info:
        require_extra("train", "fip_test_broken", needed_by="fip train")
    message = str(info.value)
    assert message.startswith("fip train needs the train extra (fip_test_broken could not be imported: ")
    assert "fip_test_missing_dependency" in message and message.endswith("pip install 'fip-photo[train]'")
    assert "\n" not in message


# -- training configs by name -----------------------------------------------------------------------------------


def test_config_names_cover_every_config_of_the_source_tree():
    training = pytest.importorskip("fip.training")
    source = REPO / "train" / "configs"
    assert training.config_names() == sorted(
        p.relative_to(source).with_suffix("").as_posix() for p in source.rglob("*.yaml")
    )
    assert {"smooth.l0", "extensions/combined", "overlays/lowres"} <= set(training.config_names())


def test_resolve_config_by_name_by_path_and_unknown(tmp_path):
    training = pytest.importorskip("fip.training")
    configs = training.config_dir()
    assert training.resolve_config("smooth.l0") == configs / "smooth.l0.yaml"
    assert training.resolve_config("smooth.l0.yaml") == configs / "smooth.l0.yaml"
    assert training.resolve_config("overlays/lowres") == configs / "overlays" / "lowres.yaml"
    assert training.resolve_config("lowres") == configs / "overlays" / "lowres.yaml"  # a unique file name
    own = tmp_path / "mine.yaml"
    own.write_text("seed_everything: 1\n")
    assert training.resolve_config(own) == own
    with pytest.raises(ConfigNotFoundError) as info:
        training.resolve_config("smooth.l9")
    assert "'smooth.l9'" in str(info.value) and "smooth.l0, smooth.rof" in str(info.value)


def test_config_options_are_resolved_and_everything_else_passes_through():
    training = pytest.importorskip("fip.training")
    configs = training.config_dir()
    inline = "{trainer: {max_epochs: 2}}"
    args = [
        "fit",
        "-c",
        "smooth.l0",
        "--config=overlays/lowres",
        "--trainer.max_epochs",
        "1",
        "--config",
        inline,
        "--data.source",
        "smooth.l0",
    ]
    assert training.resolve_config_args(args) == [
        "fit",
        "-c",
        str(configs / "smooth.l0.yaml"),
        f"--config={configs / 'overlays' / 'lowres.yaml'}",
        "--trainer.max_epochs",
        "1",
        "--config",
        inline,
        "--data.source",
        "smooth.l0",
    ]
    with pytest.raises(ConfigNotFoundError):
        training.resolve_config_args(["-c", "runs/missing/config.yaml"])


# -- the core without the extras --------------------------------------------------------------------------------

BLOCKER = f"""
import importlib.util, runpy, sys

BLOCKED = {OPTIONAL!r}


class Blocked:
    # Imports of the optional packages fail as if they were not installed.
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name.partition(".")[0])
        return None


sys.meta_path.insert(0, Blocked())
_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: (
    None if name.partition(".")[0] in BLOCKED else _find_spec(name, package))  # availability checks see none
args = sys.argv[1:]
if args[:1] == ["-c"]:
    sys.argv = ["-c"]
    exec(compile(args[1], "<test>", "exec"), {{"__name__": "__main__"}})
else:
    sys.argv = ["fip", *args]
    runpy.run_module("fip", run_name="__main__", alter_sys=True)
"""


@pytest.fixture(scope="module")
def without_extras(tmp_path_factory):
    """Run ``fip ARGS`` (or ``-c CODE``) in a fresh interpreter in which the optional packages cannot be imported,
    from a folder outside the checkout."""
    folder = tmp_path_factory.mktemp("without-extras")
    runner = folder / "blocked.py"
    runner.write_text(BLOCKER)
    environment = {**os.environ, "FIP_CACHE": str(folder / "cache")}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(runner), *args],
            check=False,
            capture_output=True,
            text=True,
            cwd=folder,
            env=environment,
            timeout=300,
        )

    run.folder = folder
    return run


def test_the_core_commands_run_without_the_extras(without_extras):
    listed = without_extras("operators")
    assert listed.returncode == 0, listed.stderr
    assert "smooth.l0" in listed.stdout and "raw.demosaic_denoise" in listed.stdout

    models = without_extras("models")
    assert models.returncode == 0, models.stderr
    assert "fip/smooth.l0" in models.stdout

    photo = without_extras.folder / "tiny.png"
    photo.write_bytes(encode_png(smooth_image(24, 32), bits=8))
    applied = without_extras("apply", "-o", "smooth.l0", str(photo), "--out", str(without_extras.folder / "out"))
    assert applied.returncode == 0, applied.stderr
    assert (without_extras.folder / "out" / "tiny.png").is_file()


# Every module a core command imports (fip/cli.py imports them on demand): none may need an extra to import.
CORE_MODULES = (
    "fip.api",
    "fip.batch",
    "fip.bench",
    "fip.compress",
    "fip.data.pairs",
    "fip.data.sample",
    "fip.data.sources",
    "fip.evaluate",
    "fip.export",
    "fip.models.catalogue",
    "fip.models.families",
    "fip.onnx_export",
    "fip.pipeline",
    "fip.plugins",
    "fip.quickstart",
    "fip.registry",
    "fip.runtime.devices",
    "fip.runtime.plan",
)


def test_the_python_api_runs_without_the_extras(without_extras):
    code = textwrap.dedent(f"""
        import importlib
        import numpy as np
        import fip

        for module in {CORE_MODULES!r}:
            importlib.import_module(module)

        photo = np.random.default_rng(0).random((24, 32, 3), dtype=np.float32)
        out = fip.apply("smooth.l0", photo)
        assert out.shape == photo.shape and out.dtype == photo.dtype, (out.shape, out.dtype)
    """)
    result = without_extras("-c", code)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("args", "extra", "needed_by"),
    [
        (["train", "-c", "smooth.l0"], "train", "fip train"),
        (["quickstart", "--minutes", "0.1", "--out", "quick"], "train", "fip quickstart"),
        (["demo"], "demo", "fip demo"),
    ],
    ids=["train", "quickstart", "demo"],
)
def test_a_command_that_needs_an_extra_says_which_in_one_line(without_extras, args, extra, needed_by):
    result = without_extras(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"fip: error: {needed_by} needs the {extra} extra (")
    assert lines[0].endswith(f"pip install '{DISTRIBUTION}[{extra}]'")


# -- the wheel --------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_wheel_holds_the_data_and_runs_outside_the_checkout(tmp_path):
    """Build the wheel offline from a copy of the sources (a build in the checkout would leave build/ there, and
    stale files in it), install it into a folder and use it from elsewhere."""
    source = tmp_path / "source"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=ignore)
        else:
            shutil.copy2(path, source / name)
    wheels = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("*.whl")

    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (metadata,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        assert re.search(r"^Name: fip-photo$", archive.read(metadata).decode(), re.MULTILINE)
    expected = {
        "fip_train/configs": (REPO / "train" / "configs", "**/*.yaml"),
        "fip/models/zoo": (REPO / "fip" / "models" / "zoo", "*/card.json"),
        "fip_operators/data": (REPO / "operators" / "data", "*.png"),
        "fip/models/weights/paper": (REPO / "fip" / "models" / "weights" / "paper", "*.npz"),
    }
    for prefix, (folder, pattern) in expected.items():
        files = {f"{prefix}/{p.relative_to(folder).as_posix()}" for p in folder.glob(pattern)}
        assert files and files <= names, sorted(files - names)
    for card in (REPO / "fip" / "models" / "zoo").glob("*/card.json"):  # the network files each card declares
        for network in card.parent.glob("*"):
            if network.suffix in (".pt", ".onnx"):
                assert f"fip/models/zoo/{card.parent.name}/{network.name}" in names

    target = tmp_path / "installed"
    subprocess.run(
        [*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environment = {**os.environ, "PYTHONPATH": str(target), "FIP_CACHE": str(tmp_path / "cache")}
    code = textwrap.dedent("""
        import fip, fip_operators.smooth
        from fip.training import resolve_config_args
        print(fip.__file__, fip_operators.smooth.__file__, *resolve_config_args(["-c", "smooth.l0", "-c", "lowres"]))
    """)
    found = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=environment,
        timeout=300,
    )
    assert found.returncode == 0, found.stderr
    module, operators, _, config, _, overlay = found.stdout.split()
    for path in (module, operators, config, overlay):
        assert Path(path).is_relative_to(target), path
    assert Path(config).name == "smooth.l0.yaml" and Path(overlay).parent.name == "overlays"

    listed = subprocess.run(
        [sys.executable, "-m", "fip", "operators"],
        check=False,
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=environment,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr
    assert "smooth.l0" in listed.stdout
