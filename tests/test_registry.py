"""The operator registry, its parameters and the entry-point plugin API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest
from conftest import make_distribution, smooth_image

import fip
from fip.errors import DISTRIBUTION, DuplicateOperatorError, ParameterError, UnknownOperatorError
from fip.imaging import encode_png
from fip.registry import InputKind, OperatorRegistry, OperatorSpec, Param, PluginLoadWarning

BUILTINS = {"smooth.l0", "smooth.rof", "style.stylize"}


def _identity(image, **_):
    return image


PLUGIN_SOURCE = """
from fip import Param, register_operator

@register_operator("{name}", description="test operator", params=[Param("gain", 1.0, low=0.0, high=2.0)])
def op(image, *, gain):
    return image * gain
"""


def test_builtins_come_through_entry_points():
    specs = {spec.name: spec for spec in fip.list_operators()}
    assert BUILTINS <= set(specs)
    for name in BUILTINS:
        assert specs[name].source.startswith(f"{DISTRIBUTION} (entry point"), specs[name].source
    assert [s.name for s in fip.list_operators("smooth")] == sorted(n for n in specs if n.startswith("smooth."))


def test_unknown_operator_lists_the_available_ones():
    with pytest.raises(UnknownOperatorError) as info:
        fip.get_operator("smooth.nope")
    message = str(info.value)
    assert "smooth.nope" in message and "smooth.l0" in message and "style.stylize" in message


def test_param_validation_names_the_problem():
    spec = fip.get_operator("smooth.l0")
    assert spec.resolve_params() == {"lambda_": 0.02, "kappa": 2.0}
    assert spec.resolve_params({"kappa": "3"}) == {"lambda_": 0.02, "kappa": 3.0}
    with pytest.raises(ParameterError, match=r"no parameter 'lam'.*lambda_, kappa"):
        spec.resolve_params({"lam": 0.1})
    with pytest.raises(ParameterError, match=r"'lambda_' = 5 is outside its range \[0.0001, 1\]"):
        spec.resolve_params({"lambda_": 5})
    with pytest.raises(ParameterError, match="must be a number"):
        spec.resolve_params({"kappa": "fast"})


def test_param_kinds():
    integer = Param("n", 3, low=1, high=9)
    assert integer.validate("4") == 4
    with pytest.raises(ParameterError, match="integer"):
        integer.validate(2.5)
    choice = Param("mode", "a", choices=("a", "b"))
    assert choice.validate("b") == "b"
    with pytest.raises(ParameterError, match="one of a, b"):
        choice.validate("c")
    flag = Param("on", True)
    assert flag.validate("false") is False
    with pytest.raises(ParameterError, match="outside its range"):
        Param("bad", 10, low=0, high=5)  # a default outside its own range is a bug in the operator


def test_a_length_scales_with_the_photo_within_its_range():
    window = Param("window", 15, low=3, high=61, length=True)
    assert [window.at_scale(15, s) for s in (1 / 2, 1 / 3, 1 / 8)] == [8, 5, 3]  # rounded, never under its low
    sigma = Param("sigma", 3.0, low=0.5, high=10.0, length=True)
    assert sigma.at_scale(3.0, 1 / 4) == 0.75 and sigma.at_scale(3.0, 1 / 10) == 0.5
    assert Param("weight", 0.5, low=0.0, high=1.0).at_scale(0.5, 1 / 3) == 0.5  # not a length: as it is
    with pytest.raises(ParameterError, match="only a number can be a length"):
        Param("mode", "a", choices=("a", "b"), length=True)
    spec = OperatorSpec("blur.at_scale", "test", _identity, (window, Param("gain", 1.0)))
    assert spec.params_at_scale({"window": 21}, 1 / 3) == {"window": 7, "gain": 1.0}
    assert window.to_json()["length"] is True and "length" not in Param("gain", 1.0).to_json()


@pytest.mark.parametrize("name", ["nodot", "Upper.case", "a.b.c", ".x", "x."])
def test_operator_names_must_be_family_dot_method(name):
    with pytest.raises(ParameterError, match="family.method|lower case"):
        OperatorSpec(name=name, description="", function=_identity)


def test_apply_checks_the_operator_output():
    spec = OperatorSpec(name="test.crop", description="", function=lambda image: image[1:])
    with pytest.raises(ValueError, match=r"returned shape \(3, 4, 3\); expected \(4, 4, 3\)"):
        spec.apply(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(fip.FipError, match=r"shape \(H, W, 3\)"):
        fip.get_operator("smooth.l0").apply(np.zeros((4, 4), np.float32))


def _fresh_registry(tmp_path, monkeypatch, distributions: dict[str, dict[str, str]]) -> OperatorRegistry:
    """A registry discovering real entry points from fake installed distributions plus fip itself."""
    for dist, modules in distributions.items():
        entry_points = {module: module for module in modules}
        make_distribution(tmp_path / dist, dist, modules, entry_points)
        monkeypatch.syspath_prepend(str(tmp_path / dist))
    return OperatorRegistry()


def _unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def test_plugin_operators_are_discovered(tmp_path, monkeypatch):
    module, family = _unique("plugin_ok"), _unique("fam")
    registry = _fresh_registry(
        tmp_path, monkeypatch, {"good-plugin": {module: PLUGIN_SOURCE.format(name=f"{family}.gain")}}
    )
    spec = registry.get(f"{family}.gain")
    assert spec.source == f"good-plugin (entry point {module} = {module})"
    assert BUILTINS <= set(registry.names())  # built-ins load too, first
    assert registry.names().index("smooth.l0") >= 0


def _two_names(name: str, other: str) -> str:
    """A plugin module registering ``name`` first (a clash) and then ``other`` (a healthy name)."""
    return PLUGIN_SOURCE.format(name=name) + PLUGIN_SOURCE.format(name=other).replace("def op(", "def other_op(")


def test_a_name_two_plugins_register_is_disabled_and_the_rest_keeps_working(tmp_path, monkeypatch):
    first, second = _unique("dup_a"), _unique("dup_b")
    family = _unique("fam")
    name = f"{family}.same"
    registry = _fresh_registry(
        tmp_path,
        monkeypatch,
        {
            "plugin-a": {first: _two_names(name, f"{family}.only_a")},  # the clash comes first in each module
            "plugin-b": {second: _two_names(name, f"{family}.only_b")},
        },
    )
    with pytest.warns(PluginLoadWarning) as caught:
        names = registry.names()
    assert {f"{family}.only_a", f"{family}.only_b"} | BUILTINS <= set(names) and name not in names
    about = [str(w.message) for w in caught if name in str(w.message)]
    assert len(about) == 1, about  # reported once, naming both sources and the way out
    assert "plugin-a (entry point" in about[0] and "plugin-b (entry point" in about[0]
    assert "is disabled" in about[0] and "pip uninstall" in about[0] and "FIP_DISABLE_PLUGINS=1" in about[0]
    assert registry.disabled() == {
        name: (f"plugin-a (entry point {first} = {first})", f"plugin-b (entry point {second} = {second})")
    }
    with pytest.raises(DuplicateOperatorError) as info:
        registry.get(name)
    message = str(info.value)
    assert "plugin-a" in message and "plugin-b" in message and "pip uninstall" in message and "\n" not in message
    assert registry.get(f"{family}.only_a").apply(np.full((4, 4, 3), 0.5, np.float32), {"gain": 2.0}).max() == 1.0
    with pytest.raises(DuplicateOperatorError, match="is disabled"):  # a later registration cannot revive it
        registry.add(OperatorSpec(name=name, description="late", function=_identity))


def test_a_plugin_cannot_take_a_builtin_name(tmp_path, monkeypatch):
    module, family = _unique("shadow"), _unique("fam")
    plugins = {"shadow-plugin": {module: _two_names("smooth.rof", f"{family}.ok")}}
    registry = _fresh_registry(tmp_path, monkeypatch, plugins)
    with pytest.warns(PluginLoadWarning, match=r"shadow-plugin .* registers 'smooth.rof', the name of fip's own"):
        names = registry.names()
    assert BUILTINS | {"smooth.rof", f"{family}.ok"} <= set(names) and registry.disabled() == {}
    assert registry.get("smooth.rof").source.startswith(f"{DISTRIBUTION} (entry point")  # the built-in wins
    assert registry.get(f"{family}.ok").source.startswith("shadow-plugin")


def test_a_plugin_that_fails_after_a_clash_clashes_with_nothing(tmp_path, monkeypatch):
    good, broken = _unique("good"), _unique("broken")
    name = f"{_unique('fam')}.same"
    registry = _fresh_registry(
        tmp_path,
        monkeypatch,
        {
            "a-good-plugin": {good: PLUGIN_SOURCE.format(name=name)},
            "b-broken-plugin": {broken: PLUGIN_SOURCE.format(name=name) + "\nraise ImportError('no libfoo')\n"},
        },
    )
    with pytest.warns(PluginLoadWarning, match="b-broken-plugin .*failed to load"):
        assert registry.get(name).source.startswith("a-good-plugin")
    assert registry.disabled() == {}


def test_registering_a_taken_name_outside_discovery_is_an_error():
    registry = OperatorRegistry(entry_points=lambda: [])
    registry.add(OperatorSpec(name="test.once", description="", function=_identity))
    with pytest.raises(DuplicateOperatorError, match=r"'test.once' is registered twice"):
        registry.add(OperatorSpec(name="test.once", description="", function=lambda image: image))


def test_broken_plugin_warns_and_fip_keeps_working(tmp_path, monkeypatch):
    broken, good = _unique("broken"), _unique("fine")
    family = _unique("fam")
    registry = _fresh_registry(
        tmp_path,
        monkeypatch,
        {
            "broken-plugin": {
                broken: PLUGIN_SOURCE.format(name=f"{family}.half") + "\nraise ImportError('no libfoo')\n"
            },
            "fine-plugin": {good: PLUGIN_SOURCE.format(name=f"{family}.ok")},
        },
    )
    with pytest.warns(PluginLoadWarning, match=r"broken-plugin .*failed to load.*no libfoo"):
        names = registry.names()
    assert f"{family}.ok" in names and BUILTINS <= set(names)
    assert f"{family}.half" not in names  # what the broken module registered before failing is dropped


def test_a_plugin_that_exits_while_imported_is_skipped_like_any_broken_plugin(tmp_path, monkeypatch):
    from fip.models.catalogue import Catalogue, ModelLoadWarning

    module, good, family = _unique("exits"), _unique("fine"), _unique("fam")
    argparse_at_import = "import argparse\nargparse.ArgumentParser().parse_args(['--no-such-option'])\n"
    registry = _fresh_registry(
        tmp_path,
        monkeypatch,
        {
            "exiting-plugin": {module: argparse_at_import},
            "fine-plugin": {good: PLUGIN_SOURCE.format(name=f"{family}.ok")},
        },
    )
    with pytest.warns(
        PluginLoadWarning,
        match=r"exiting-plugin .*it called sys.exit\(2\) while being imported.*"
        "FIP_DISABLE_PLUGINS=1",
    ):
        names = registry.names()
    assert f"{family}.ok" in names and BUILTINS <= set(names)
    # A models plugin that exits: the same, and fip's own models stay.
    models = _unique("exiting_models")
    make_distribution(tmp_path / "m", "exiting-models", {models: argparse_at_import}, {"m": models}, group="fip.models")
    monkeypatch.syspath_prepend(str(tmp_path / "m"))
    with pytest.warns(ModelLoadWarning, match=r"exiting-models .*sys.exit\(2\).*FIP_DISABLE_PLUGINS=1"):
        assert Catalogue().get("fip/smooth.rof") is not None


def test_disable_plugins_keeps_only_builtins(tmp_path, monkeypatch):
    module, family = _unique("plugin_off"), _unique("fam")
    registry = _fresh_registry(
        tmp_path, monkeypatch, {"off-plugin": {module: PLUGIN_SOURCE.format(name=f"{family}.x")}}
    )
    monkeypatch.setenv("FIP_DISABLE_PLUGINS", "1")
    names = registry.names()
    assert BUILTINS <= set(names) and f"{family}.x" not in names


def test_entry_point_may_name_a_list_of_specs(tmp_path, monkeypatch):
    module, family = _unique("speclist"), _unique("fam")
    source = f"""
from fip.registry import OperatorSpec
OPERATORS = [OperatorSpec(name="{family}.a", description="a", function=lambda image: image)]
"""
    make_distribution(tmp_path / "lists", "list-plugin", {module: source}, {"ops": f"{module}:OPERATORS"})
    monkeypatch.syspath_prepend(str(tmp_path / "lists"))
    registry = OperatorRegistry()
    assert registry.get(f"{family}.a").source == f"list-plugin (entry point ops = {module}:OPERATORS)"


def test_cli_operators_json_lists_builtins():
    out = subprocess.run(
        [sys.executable, "-m", "fip", "operators", "--json"], capture_output=True, text=True, check=True
    ).stdout
    listed = {entry["name"]: entry for entry in json.loads(out)}
    assert BUILTINS <= set(listed)
    l0 = listed["smooth.l0"]
    assert l0["family"] == "smooth" and l0["input"] == InputKind.SRGB.value
    assert l0["params"]["lambda_"]["default"] == 0.02 and l0["params"]["lambda_"]["range"] == [0.0001, 1.0]
    assert l0["params"]["kappa"]["default"] == 2.0


def test_cli_lists_what_works_warns_once_and_refuses_a_disabled_name(tmp_path):
    family = _unique("fam")
    name = f"{family}.same"
    plugins = {
        "plugin-a": _two_names(name, f"{family}.a"),
        "plugin-b": _two_names(name, f"{family}.b"),
        "shadow-plugin": PLUGIN_SOURCE.format(name="smooth.rof"),
    }
    for dist, source in plugins.items():
        module = _unique("cli_plugin")
        make_distribution(tmp_path / dist, dist, {module: source}, {module: module})
    path = os.pathsep.join([*(str(tmp_path / dist) for dist in plugins), os.environ.get("PYTHONPATH", "")])
    photo = tmp_path / "photo.png"
    photo.write_bytes(encode_png(smooth_image(8, 8), bits=8))

    def fip_cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "fip", *args], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": path}
        )

    listed = fip_cli("operators")
    assert listed.returncode == 0, listed.stderr
    blocks = {line.split()[0]: line for line in listed.stdout.splitlines() if line and not line.startswith(" ")}
    assert {f"{family}.a", f"{family}.b", "smooth.rof"} | BUILTINS <= set(blocks) and name not in blocks
    rof_source = listed.stdout.split("\nsmooth.rof ", 1)[1].split("    from ", 1)[1].splitlines()[0]
    assert rof_source.startswith(f"{DISTRIBUTION} (entry point")  # the built-in, not the shadowing plugin's
    warned = [line for line in listed.stderr.splitlines() if line.startswith("fip: warning:")]
    assert len(warned) == 2 and "Traceback" not in listed.stderr, listed.stderr  # the disabled name, the shadowed
    assert len(listed.stderr.splitlines()) == 2  # built-in: one line each
    assert any(name in line and "plugin-a" in line and "plugin-b" in line for line in warned)
    assert any("shadow-plugin" in line and "'smooth.rof'" in line for line in warned)

    out = str(tmp_path / "out")
    for args in (
        ["data", "-o", name],
        ["apply", "-o", name, str(photo), "--out", out],
        ["apply", "-m", name, str(photo), "--out", out],
    ):
        used = fip_cli(*args)
        errors = [line for line in used.stderr.splitlines() if line.startswith("fip: error:")]
        assert used.returncode == 2 and len(errors) == 1 and "Traceback" not in used.stderr, (args, used.stderr)
        assert "is disabled" in errors[0] and "plugin-a" in errors[0] and "plugin-b" in errors[0], errors[0]
        assert "pip uninstall" in errors[0] and "FIP_DISABLE_PLUGINS=1" in errors[0]
