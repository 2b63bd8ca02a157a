"""`fip build`: photos split three ways and never mixed, a real (tiny) training, every approximator measured on
validation and test photos, a model folder the engine runs, and a rerun that resumes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import smooth_image

from fip.build import (
    STATE_FILE,
    BuildRequest,
    build,
    extra_stages,
    package,
    read_split_file,
    requested_extras,
    split_photos,
    training_minutes,
    warm_start_for,
)
from fip.cli import main
from fip.data.sources import open_source
from fip.errors import InputError
from fip.evaluate import evaluate
from fip.imaging import encode_png, read_image_file
from fip.models.catalogue import open_model
from fip.runtime.devices import device_class, int8_unavailable


def _photos(folder: Path, count: int, height: int = 48, width: int = 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        noise = np.random.default_rng(index).normal(0, 0.04, (height, width, 3))
        image = np.clip(smooth_image(height, width, seed=index) + noise, 0, 1).astype(np.float32)
        (folder / f"photo{index}.png").write_bytes(encode_png(image, bits=8))
    return folder


def test_photos_are_split_three_ways_and_never_mixed(tmp_path):
    split = split_photos(open_source(_photos(tmp_path / "photos", 12)))
    everyone = split["train"] + split["validation"] + split["test"]
    assert sorted(everyone) == sorted(f"photo{i}" for i in range(12)) and len(set(everyone)) == 12
    assert split["validation"] and split["test"] and len(split["train"]) >= len(split["validation"])
    assert split == split_photos(open_source(tmp_path / "photos"))  # the same photos, the same split
    with pytest.raises(InputError, match="has 2 photos; fip build needs at least three"):
        split_photos(open_source(_photos(tmp_path / "two", 2)))


def test_a_split_file_fixes_the_three_sets_and_a_bad_one_fails_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setenv("FIP_CACHE", str(tmp_path / "cache"))
    source = open_source(_photos(tmp_path / "photos", 5))
    fixed = {"train": ["photo0", "photo1"], "validation": ["photo2"], "test": ["photo4"]}  # photo3 left out
    (tmp_path / "split.json").write_text(json.dumps(fixed))
    assert read_split_file(tmp_path / "split.json", source) == fixed
    for bad, message in (
        ({**fixed, "test": ["photo1"]}, "puts 1 photos in two sets"),
        ({**fixed, "test": ["nowhere"]}, "names 1 photos that photo folder .* does not hold"),
        ({**fixed, "validation": []}, "names no validation photo"),
        ({"train": ["photo0"]}, "unreadable"),
    ):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(InputError, match=message):
            build(
                BuildRequest(
                    "smooth.rof", tmp_path / "bad", source=str(tmp_path / "photos"), split_file=tmp_path / "bad.json"
                )
            )
        assert not (tmp_path / "bad" / "split.json").exists()
    # The build takes the file's sets (its training then finds no time in this budget).
    request = BuildRequest(
        "smooth.rof",
        tmp_path / "model",
        source=str(tmp_path / "photos"),
        budget_minutes=0.05,
        split_file=tmp_path / "split.json",
    )
    with pytest.raises(InputError, match="left no time to train"):
        build(request)
    assert json.loads((tmp_path / "model" / "split.json").read_text()) == fixed
    assert json.loads((tmp_path / "model" / "splits" / "train.json").read_text()) == {
        "train": ["photo0", "photo1"],
        "test": ["photo2"],
    }  # what training validates on


def test_evaluation_follows_the_split_file_given_not_the_last_one_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("FIP_CACHE", str(tmp_path / "cache"))
    photos = _photos(tmp_path / "photos", 4)
    model = open_model("smooth.rof")
    names = {}
    for key, test in (("first", ["photo0", "photo1"]), ("second", ["photo3"])):
        (tmp_path / f"{key}.json").write_text(json.dumps({"train": [], "test": test}))
        report = evaluate(
            model, open_source(photos, tmp_path / f"{key}.json"), split="test", workers=1, request="reference-lowres"
        )
        names[key] = sorted(image["name"] for image in report.images)
    assert names == {"first": ["photo0", "photo1"], "second": ["photo3"]}  # one pair set, each split its own


@pytest.mark.slow
@pytest.mark.device_class
def test_a_build_trains_measures_and_writes_a_model_auto_can_use(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FIP_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    photos = _photos(tmp_path / "photos", 5)
    out = tmp_path / "model"
    args = [
        "build",
        "smooth.rof",
        "-p",
        "weight=0.08",
        "--source",
        str(photos),
        "--budget",
        "0.5",
        "--out",
        str(out),
        "--resolution",
        "native",
        "--device",
        "cpu",
        "--timing-height",
        "96",
        "--extras",
        "all",
        "--train-args",
        "--trainer.log_every_n_steps 1",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    card = json.loads((out / "card.json").read_text())
    assert card["operator"] == "smooth.rof" and card["params"]["weight"] == 0.08  # whichever network was kept
    assert list(card["approximators"]) == [
        "full",
        "fast",
        "bf16",
        "network-lowres",
        "lowres",
        "pruned",
        "int8",
        "grid",
        "reference-lowres",
        "reference-halfres",
    ]
    assert card["networks"]["grid"]["architecture"]["grid"]["grid_size"] == 32  # overlays/grid.yaml
    assert card["networks"]["pruned"]["architecture"]["width"] == 16 and card["networks"]["int8"]["kind"] == "onnx"
    assert all(len(entry["sha256"]) == 64 for entry in card["networks"].values())  # every file checked when opened
    assert card["provenance"]["warm_start"] == "fip/smooth.rof"  # the installed model of the operator
    assert {card["photo_sets"][name]["role"] for name in ("validation", "test")} == {"choose", "report"}
    for name, approximator in card["approximators"].items():
        if name == "int8" and int8_unavailable(torch.device("cpu")):
            continue  # this CPU refuses int8 (no VNNI): left unmeasured, never chosen
        assert {"validation", "test"} <= set(approximator["quality"]), name
        assert device_class(torch.device("cpu")) in approximator["seconds"]  # cpu or cpu-bf16, as detected
    split = json.loads((out / "split.json").read_text())
    assert card["approximators"]["full"]["quality"]["test"]["photos"] == len(split["test"])
    trained = card["provenance"]["training"]  # the card says on what and for how long its network trained
    assert trained["photos"] == len(split["train"]) and trained["steps"] >= 1 and trained["epochs"] >= 1
    assert 0 < trained["hours"] < 1 and trained["cpu_hours"] > 0
    assert "| approximator | validation PSNR | test PSNR" in printed and "**auto**" in printed
    assert read_image_file(out / "before-after.png").shape[1] > 3 * 40
    assert list((out / "training").rglob("*.ckpt"))  # a real Lightning run

    # The folder is a model: the engine runs it, auto reading its validation numbers.
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "p.png").write_bytes((photos / "photo0.png").read_bytes())
    assert (
        main(["apply", "-m", str(out), str(tmp_path / "in" / "p.png"), "--out", str(tmp_path / "o"), "--explain"]) == 0
    )
    assert "validation" in capsys.readouterr().out

    # A rerun resumes: nothing is trained or measured again; another request into the folder is refused.
    state = json.loads((out / STATE_FILE).read_text())
    assert state["request"]["train_args"] == ["--trainer.log_every_n_steps", "1"]
    assert set(state["steps"]) == {"split", "train", "keep", "lowres", "pruned", "grid", "measure", "report"}
    kept = state["steps"]["keep"]  # the better of the trained network and fip/smooth.rof on the validation photo
    assert kept["kept"] == max(kept["validation_psnr"], key=kept["validation_psnr"].get) == card["provenance"]["kept"]
    assert main(args) == 0 and json.loads((out / STATE_FILE).read_text())["steps"] == state["steps"]
    assert "The build took" in (out / "report.md").read_text()
    with pytest.raises(InputError, match="holds a build of"):
        build(BuildRequest("smooth.l0", out, source=str(photos)))


def test_a_build_refuses_settings_and_budgets_it_cannot_finish(tmp_path, monkeypatch):
    monkeypatch.setenv("FIP_CACHE", str(tmp_path / "cache"))
    photos = _photos(tmp_path / "photos", 4)
    with pytest.raises(Exception, match="fullhd"):  # before any training
        build(BuildRequest("smooth.rof", tmp_path / "a", source=str(photos), resolution="fullhd"))
    assert not (tmp_path / "a" / "training").exists()
    with pytest.raises(InputError, match=r"left no time to train a first epoch \(the CAN\); raise --budget"):
        build(BuildRequest("smooth.rof", tmp_path / "b", source=str(photos), budget_minutes=0.05))


def test_training_starts_from_the_installed_model_of_the_same_shape():
    assert warm_start_for("smooth.l0", "smooth.l0") == "fip/smooth.l0"
    assert warm_start_for("smooth.l0", "build/any") == "fip/smooth.l0"  # CAN24, per-image statistics: same shape
    assert warm_start_for("example.unknown", "build/any") is None


def test_package_copies_the_model_and_refuses_to_replace_or_ship_damage(tmp_path, capsys):
    from test_cards import _model_folder

    model = _model_folder(tmp_path / "model", "built/model")
    (model / "training").mkdir()
    (model / "report.md").write_text("# report\n")
    into = tmp_path / "plugin" / "my_plugin" / "models"
    into.mkdir(parents=True)
    (into.parent / "__init__.py").write_text("")
    (into / "__init__.py").write_text("")
    target = package(model, into)
    assert target == into / "smooth.rof" and sorted(p.name for p in target.iterdir()) == [
        "card.json",
        "net.pt",
        "report.md",
    ]
    card = json.loads((target / "card.json").read_text())
    assert card["name"] == "my_plugin/smooth.rof" and open_model(str(target)).network("net") is not None
    with pytest.raises(InputError, match="already exists; pass --overwrite"):
        package(model, into)
    assert package(model, into, name="my_plugin/rof-v2").name == "rof-v2"
    (model / "net.pt").write_bytes(b"damaged")
    assert main(["package", str(model), "--into", str(into), "--overwrite"]) == 2
    assert "does not match the SHA-256" in capsys.readouterr().err
    assert json.loads((target / "card.json").read_text())["name"] == "my_plugin/smooth.rof"  # left as it was
    assert [p.name for p in into.iterdir() if p.name.startswith(".")] == []  # no half-copied folder left
    assert main(["package", str(tmp_path), "--into", str(into)]) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_build_report_sets_are_named_folders(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["build", "smooth.rof", "--report", f"test={tmp_path}"])
    assert "not train, validation or test" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["build", "smooth.rof", "--report", f"fivek={tmp_path / 'nowhere'}"])
    assert "is not a folder of photos" in capsys.readouterr().err


def test_extra_stages_run_when_the_budget_allows_and_suit_the_network():
    from fip.models import ContextAggregationNet

    plain, normalized = (
        ContextAggregationNet(width=8, depth=4),
        ContextAggregationNet(width=8, depth=4, input_norm="exposure"),
    )
    assert training_minutes(BuildRequest("smooth.l0", Path("x"), budget_minutes=10)) == {"train": 7.0}
    minutes = training_minutes(BuildRequest("smooth.l0", Path("x"), budget_minutes=20))
    assert minutes == pytest.approx({"train": 7.7, "lowres": 2.1, "pruned": 2.1, "grid": 2.1})
    assert extra_stages(BuildRequest("smooth.l0", Path("x"), budget_minutes=20), plain) == {
        "lowres": None,
        "pruned": None,
        "grid": None,
    }
    assert extra_stages(BuildRequest("smooth.l0", Path("x"), extras="none", budget_minutes=60), plain) == {}
    chosen = training_minutes(BuildRequest("smooth.l0", Path("x"), extras="grid,lowres", budget_minutes=10))
    assert chosen == pytest.approx({"train": 4.9, "lowres": 1.05, "grid": 1.05})  # named: whatever the budget
    skipped = extra_stages(BuildRequest("tone.mapping", Path("x"), extras="all"), normalized)
    assert set(skipped) == {"lowres", "pruned", "grid"} and skipped["grid"] is None  # the grid takes the plain photo
    assert all("cannot normalize its input" in skipped[stage] for stage in ("lowres", "pruned"))
    with pytest.raises(InputError, match="grids is not a stage"):
        requested_extras("grids,lowres")
