"""Model cards and the catalogue: the card format, discovery through the ``fip.models`` entry points (fip's own and
a plugin's), files checked against their digests, ``fip models``, and a layout without import cycles."""

from __future__ import annotations

import ast
import json
import uuid
import warnings
from pathlib import Path

import pytest
import torch
from conftest import make_distribution, smooth_image

from fip.cli import main
from fip.errors import DISTRIBUTION, FipError
from fip.files import sha256_file
from fip.models import ContextAggregationNet
from fip.models.cards import CARD_FORMAT, CardError, ModelCard, NetworkEntry, PhotoSet, read_card, write_card
from fip.models.catalogue import (
    Catalogue,
    ModelLoadWarning,
    list_models,
    model_for_operator,
    network_approximators,
    open_model,
)
from fip.models.storage import NetworkFile, net_config, save_network
from fip.pipeline import run_approximation
from fip.registry import list_operators

REPO = Path(__file__).resolve().parents[1]


def _model_folder(folder: Path, name: str, operator: str = "smooth.rof") -> Path:
    """A model folder with a small network and its card."""
    folder.mkdir(parents=True, exist_ok=True)
    net = ContextAggregationNet(width=8, depth=4).eval()
    path = save_network(NetworkFile(net, name, operator), folder / "net.pt")
    card = ModelCard(
        name,
        operator,
        {},
        {"net": NetworkEntry("net.pt", "fip", sha256_file(path), net_config(net))},
        {a.name: a for a in network_approximators(net)},
        {"validation": PhotoSet("choose")},
        description="a test model",
        licence="MIT",
        provenance={"data": "none"},
    )
    write_card(card, folder)
    return folder


def test_cards_round_trip_and_name_what_is_wrong(tmp_path):
    folder = _model_folder(tmp_path / "m", "test/m")
    card = read_card(folder)
    assert card.root == folder and card.name == "test/m" and list(card.approximators)[:3] == ["full", "fast", "bf16"]
    assert ModelCard.from_json(card.to_json(), folder) == card
    data = json.loads((folder / "card.json").read_text())
    assert data["format"] == CARD_FORMAT and list(data["approximators"]) == list(card.approximators)
    broken = [
        ({**data, "format": "fip-card-0"}, "this fip reads 'fip-card-1'"),
        ({**data, "colour": "blue"}, "unknown fields \\['colour'\\]"),
        ({k: v for k, v in data.items() if k != "name"}, "lacks the field 'name'"),
        ({**data, "approximators": {}}, "lists no approximators"),
        (
            {**data, "approximators": {"fast": {**data["approximators"]["fast"], "network": "other"}}},
            "runs network 'other', which the card does not list",
        ),
        ({**data, "approximators": {"fast": {**data["approximators"]["fast"], "precision": "fp8"}}}, "precision 'fp8'"),
        (
            {
                **data,
                "approximators": {"fast": {**data["approximators"]["fast"], "quality": {"elsewhere": {"psnr": 1}}}},
            },
            "photo set 'elsewhere', which the card does not describe",
        ),
        ({**data, "photo_sets": {"a": {"role": "choose"}, "b": {"role": "choose"}}}, "more than one photo set"),
    ]
    for bad, message in broken:
        with pytest.raises(CardError, match=message):
            ModelCard.from_json(bad, folder)
    for bad in (
        {**data, "approximators": {"fast": [1, 2]}},
        {
            **data,
            "approximators": {"fast": {**data["approximators"]["fast"], "quality": {"validation": {"psnr": "high"}}}},
        },
    ):
        with pytest.raises(CardError):  # malformed plugin cards are CardErrors, which discovery skips with a warning
            ModelCard.from_json(bad, folder)
    (folder / "card.json").write_text("{not json")
    with pytest.raises(CardError, match="is not a readable model card"):
        read_card(folder)
    with pytest.raises(CardError, match="holds no model card"):
        read_card(tmp_path)


def test_a_changed_file_is_refused_by_its_digest(tmp_path):
    folder = _model_folder(tmp_path / "m", "test/m")
    model = open_model(folder)
    assert run_approximation(model, smooth_image(20, 30), request="full").image.shape == (20, 30, 3)
    torch.save({"format": "other"}, folder / "net.pt")
    with pytest.raises(FipError, match="does not match the SHA-256 its card records"):
        open_model(folder).network("net")
    (folder / "net.pt").unlink()
    with pytest.raises(FipError, match="its 'net' file .* is missing; reinstall the model"):
        open_model(folder).network("net")


def _plugin(tmp_path: Path, monkeypatch, folders: list[Path], dist: str = "model-plugin") -> Catalogue:
    module = f"models_{uuid.uuid4().hex[:8]}"
    source = f"FOLDERS = {[str(f) for f in folders]!r}\n"
    make_distribution(tmp_path / dist, dist, {module: source}, {"models": f"{module}:FOLDERS"}, group="fip.models")
    monkeypatch.syspath_prepend(str(tmp_path / dist))
    return Catalogue()


def test_plugins_ship_models_through_the_same_entry_points_as_fip(tmp_path, monkeypatch):
    folder = _model_folder(tmp_path / "cards" / "rof", "plugin/smooth.rof-small")
    catalogue = _plugin(tmp_path, monkeypatch, [folder])
    names = [c.name for c in catalogue.cards()]
    assert names[:13] == sorted(f"fip/{op}" for op in _built_in_operators())  # fip's own first, then plugins
    assert names[-1] == "plugin/smooth.rof-small"
    assert catalogue.for_operator("smooth.rof").name == "fip/smooth.rof"  # fip's own wins for its operators
    monkeypatch.setenv("FIP_DISABLE_PLUGINS", "1")
    assert "plugin/smooth.rof-small" not in [c.name for c in Catalogue().cards()]


def test_broken_or_duplicate_plugin_models_are_skipped_with_a_warning(tmp_path, monkeypatch):
    good = _model_folder(tmp_path / "cards" / "good", "plugin/good")
    taken = _model_folder(tmp_path / "cards" / "taken", "fip/smooth.l0")  # a name fip uses
    broken = tmp_path / "cards" / "broken"
    broken.mkdir()
    (broken / "card.json").write_text('{"format": "fip-card-1"}')
    catalogue = _plugin(tmp_path, monkeypatch, [good, taken, broken])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = [c.name for c in catalogue.cards()]
    messages = [str(w.message) for w in caught if issubclass(w.category, ModelLoadWarning)]
    assert "plugin/good" in names and names.count("fip/smooth.l0") == 1
    assert any("'fip/smooth.l0'" in m and "already installed" in m for m in messages)
    assert any("broken" in m and "lacks the field 'name'" in m for m in messages)
    assert catalogue.get("fip/smooth.l0").root.name == "smooth.l0"  # fip's own kept


def test_a_model_name_two_plugins_install_is_disabled_and_the_rest_keeps_working(tmp_path, monkeypatch):
    first = _model_folder(tmp_path / "cards" / "first", "plugin/same")
    second = _model_folder(tmp_path / "cards" / "second", "plugin/same")
    healthy = _model_folder(tmp_path / "cards" / "healthy", "plugin/healthy")
    _plugin(tmp_path, monkeypatch, [first, healthy], dist="plugin-a")
    catalogue = _plugin(tmp_path, monkeypatch, [second], dist="plugin-b")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = [c.name for c in catalogue.cards()]
    assert "plugin/healthy" in names and "plugin/same" not in names and "fip/smooth.rof" in names
    messages = [str(w.message) for w in caught if issubclass(w.category, ModelLoadWarning)]
    about = [m for m in messages if "plugin/same" in m]
    assert len(about) == 1 and "plugin-a" in about[0] and "plugin-b" in about[0] and "is disabled" in about[0]
    with pytest.raises(FipError, match=r"'plugin/same' is disabled: plugin-a .* and plugin-b .* both install") as info:
        catalogue.get("plugin/same")
    assert "pip uninstall" in str(info.value) and "FIP_DISABLE_PLUGINS=1" in str(info.value)
    assert catalogue.get("plugin/healthy").root == healthy
    assert catalogue.for_operator("smooth.rof").name == "fip/smooth.rof"


def test_models_on_fip_model_path_run_their_operator_before_installed_ones(tmp_path, monkeypatch):
    built = _model_folder(tmp_path / "models" / "rof", "built/rof")
    _model_folder(tmp_path / "models" / "other", "built/other", operator="smooth.l0")
    monkeypatch.setenv("FIP_MODEL_PATH", f"{tmp_path / 'models'}{__import__('os').pathsep}{tmp_path / 'nowhere'}")
    monkeypatch.setenv("FIP_DISABLE_PLUGINS", "1")  # a user's own folders are not plugins: still read
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        catalogue = Catalogue()
        assert catalogue.for_operator("smooth.rof").root == built  # yours first for the operator
    assert any("nowhere" in str(w.message) and "not a folder" in str(w.message) for w in caught)
    assert catalogue.get("fip/smooth.rof") is not None and catalogue.get("built/other").operator == "smooth.l0"
    taken = _model_folder(tmp_path / "one" / "taken", "fip/smooth.rof")  # cannot take fip's own name
    twin = _model_folder(tmp_path / "two" / "twin", "built/rof")  # nor an earlier folder's
    (tmp_path / "models" / ".rof.partial").mkdir()  # a copy fip package has not finished: never read
    (tmp_path / "models" / ".rof.partial" / "card.json").write_text("{}")
    monkeypatch.setenv(
        "FIP_MODEL_PATH", __import__("os").pathsep.join(map(str, [taken, tmp_path / "models", built, twin]))
    )  # a model folder itself works too; each once
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        catalogue = Catalogue()
        assert catalogue.get("fip/smooth.rof").root.name == "smooth.rof" and catalogue.get("built/rof").root == built
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and all("already taken" in m and "fix FIP_MODEL_PATH" in m for m in messages)
    # Two of your models for one operator: the first runs, and fip says so once.
    second = _model_folder(tmp_path / "three" / "rof2", "built/rof2")
    monkeypatch.setenv("FIP_MODEL_PATH", __import__("os").pathsep.join(map(str, [built, second])))
    catalogue = Catalogue()
    with pytest.warns(
        ModelLoadWarning,
        match=f"FIP_MODEL_PATH holds 2 models for smooth.rof: built/rof \\({built}\\), "
        "built/rof2 .*fip runs the first, built/rof",
    ):
        assert catalogue.for_operator("smooth.rof").root == built
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert catalogue.for_operator("smooth.rof").root == built  # said once


def test_a_damaged_network_is_a_model_that_cannot_be_used_before_any_photo(tmp_path, capsys):
    from fip.cli import EXIT_USAGE
    from fip.imaging import encode_png

    folder = _model_folder(tmp_path / "m", "test/m")
    torch.save({"format": "other"}, folder / "net.pt")
    photo = tmp_path / "p.png"
    photo.write_bytes(encode_png(smooth_image(20, 30), bits=8))
    code = main(["apply", "-m", str(folder), str(photo), "--out", str(tmp_path / "out"), "--variant", "fast"])
    captured = capsys.readouterr()
    assert code == EXIT_USAGE and "does not match the SHA-256 its card records" in captured.err
    assert "FAILED" not in captured.err and not list((tmp_path / "out").glob("*.png"))
    code = main(
        [
            "apply",
            "-o",
            "smooth.rof",
            "-p",
            "weight=0.1",
            "-p",
            "weight=0.2",
            str(photo),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    assert code == EXIT_USAGE and "-p weight is given twice (weight=0.1 and weight=0.2)" in capsys.readouterr().err


def test_fip_models_shows_model_folders_given(tmp_path, capsys):
    folder = _model_folder(tmp_path / "rof", "built/rof")
    assert main(["models", str(folder)]) == 0
    assert capsys.readouterr().out.startswith("built/rof")
    assert main(["models", str(tmp_path)]) == 2
    assert "holds no model card" in capsys.readouterr().err


def test_fip_models_lists_the_catalogue(capsys):
    assert main(["models", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert {"name", "operator", "approximators", "folder"} <= set(listed[0])
    by_name = {entry["name"]: entry for entry in listed}
    assert "reference-lowres" in by_name["fip/smooth.l0"]["approximators"]
    assert main(["models", "-o", "tone.mapping"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("fip/tone.mapping") and "reference-lowres" in text and "dB: PSNR against" in text


def _built_in_operators() -> list[str]:
    return [spec.name for spec in list_operators() if spec.source.startswith(f"{DISTRIBUTION} (entry point")]


def test_every_built_in_operator_ships_a_measured_card():
    """The shipped cards: files present and matching, every approximator measured on the validation photos
    (which auto reads) and on FiveK (which the docs report), and timed on a CPU."""
    cards = {c.operator: c for c in list_models() if c.name.startswith("fip/")}
    assert sorted(cards) == sorted(_built_in_operators())
    for operator, card in cards.items():
        assert card.choice_set == "validation" and card.photo_sets["fivek"].role == "report"
        assert card.licence and card.provenance and card.root.parent.name == "zoo"
        for key, entry in card.networks.items():
            assert sha256_file(card.path_of(key)) == entry.sha256, (operator, key)
        for approximator in card.approximators.values():
            if approximator.network is not None and card.networks[approximator.network].kind == "onnx":
                continue  # int8 was measured nowhere yet: the CPU that measured the cards lacks VNNI (auto skips it)
            # The 7 Debian and sample photos, or the 37 of fip-v2 for a model retrained on it; one set per card.
            validation = card.approximators["reference-lowres"].quality["validation"].photos
            assert approximator.quality["validation"].photos == validation in (7, 37), (operator, approximator.name)
            assert "fivek" in approximator.quality, (operator, approximator.name)
            assert {"cpu", "cpu-bf16"} & set(approximator.seconds), (operator, approximator.name)
        assert {"cpu", "cpu-bf16"} & set(card.reference_seconds)


def test_operators_without_a_model_fall_back_to_the_authors_network_then_to_the_reference(monkeypatch):
    empty = Catalogue(entry_points=lambda: [])
    monkeypatch.setattr("fip.models.catalogue._catalogue", empty)
    assert model_for_operator("smooth.l0").name == "paper/L0_smoothing"
    assert list(model_for_operator("style.stylize").card.approximators) == ["reference-lowres"]
    assert open_model("smooth.l0").name == "paper/L0_smoothing"


def _imports(path: Path, package: str) -> set[str]:
    """The fip modules ``path`` imports, at any depth of its code (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == package or name.startswith(package + ".")}


def test_the_library_has_no_import_cycles():
    root = REPO / "fip"
    modules = {}
    for path in root.rglob("*.py"):
        name = ".".join(("fip", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        modules[name] = path
    graph = {name: {m for m in _imports(path, "fip") if m in modules and m != name} for name, path in modules.items()}
    graph = {name: {m for m in edges if not name.startswith(m + ".")} for name, edges in graph.items()}  # parents
    visiting, done, cycles = set(), set(), []

    def visit(node: str, trail: list[str]) -> None:
        if node in done:
            return
        if node in visiting:
            cycles.append(trail[trail.index(node) :])
            return
        visiting.add(node)
        for nxt in sorted(graph[node]):
            visit(nxt, trail + [nxt])
        visiting.discard(node)
        done.add(node)

    for name in sorted(graph):
        visit(name, [name])
    assert not cycles, cycles
    # The library never reaches the demo; only the command line's `fip demo` launches it.
    assert [name for name, path in modules.items() if _imports(path, "fip_demo")] == ["fip.cli"]
