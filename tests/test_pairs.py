"""Pair generation: outputs, manifest, resume, invalidation, damaged pairs, bad input, parallel and distributed
execution."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import smooth_image, write_synthetic_dng

import fip.cache
import fip.data.pairs as pairs_module
from fip import InputKind, get_operator, register_operator
from fip.cli import main
from fip.data.pairs import generate_pairs, read_manifest
from fip.data.sources import Resolution, open_source
from fip.errors import FipError, UnreadablePhotoError
from fip.files import sha256_file
from fip.imaging import encode_png, read_image_file
from fip.raw import Mosaic, load_photo

# In-process test operators (workers=1): they record what they were given and can simulate a Ctrl-C.
SEEN: dict[str, list] = {"linear": [], "bayer": []}
INTERRUPT = {"calls": 0, "at": None}


@register_operator("testing.invert", description="1 - x; Ctrl-C on the n-th call when asked")
def _invert(image):
    INTERRUPT["calls"] += 1
    if INTERRUPT["at"] is not None and INTERRUPT["calls"] >= INTERRUPT["at"]:
        raise KeyboardInterrupt
    return 1.0 - image


@register_operator("testing.linear_view", description="records its input", input=InputKind.LINEAR_RGB)
def _linear_view(linear):
    SEEN["linear"].append(linear)
    return linear


@register_operator("testing.bayer_view", description="records its input", input=InputKind.BAYER)
def _bayer_view(mosaic):
    SEEN["bayer"].append(mosaic)
    return np.repeat(mosaic.data[..., None], 3, axis=2)


def _files(out, kind):
    return {p.stem: p.read_bytes() for p in sorted((out / kind).glob("*.png"))}


def test_pairs_are_written_with_a_manifest(photo_folder, tmp_path):
    source = open_source(photo_folder)
    report = generate_pairs("smooth.l0", source, out_dir=tmp_path / "out", workers=1, progress=False)
    assert sorted(report.made) == ["first", "second", "third"] and not report.failed
    manifest = read_manifest(tmp_path / "out")
    assert manifest["operator"] == "smooth.l0" and manifest["params"] == {"lambda_": 0.02, "kappa": 2.0}
    assert manifest["fip_version"] == pairs_module.fip_version()
    for name, entry in manifest["pairs"].items():
        assert entry["source_sha256"] == sha256_file(photo_folder / entry["source"].split("/")[-1])
        photo = load_photo(entry["source"], lambda h, w, name=name: Resolution(480).size_for(name, h, w))
        stored_input = read_image_file(tmp_path / "out" / "input" / f"{name}.png")
        stored_target = read_image_file(tmp_path / "out" / "target" / f"{name}.png")
        assert list(stored_input.shape[:2]) == entry["size"]
        assert np.abs(stored_input - photo.srgb).max() <= 0.5 / 65535 + 1e-7
        expected = get_operator("smooth.l0").apply(photo.srgb)
        assert np.abs(stored_target - expected).max() <= 0.5 / 65535 + 1e-7
    assert not list((tmp_path / "out").rglob("*.tmp"))


def test_operators_get_the_view_they_ask_for(photo_folder, tmp_path):
    source = open_source(photo_folder)
    SEEN["linear"].clear(), SEEN["bayer"].clear()
    generate_pairs("testing.linear_view", source, out_dir=tmp_path / "lin", workers=1, progress=False)
    generate_pairs("testing.bayer_view", source, out_dir=tmp_path / "bay", workers=1, progress=False)
    photo = load_photo(photo_folder / "second.dng")
    assert any(np.array_equal(seen, photo.linear) for seen in SEEN["linear"])
    mosaics = [m for m in SEEN["bayer"] if isinstance(m, Mosaic) and m.cfa == "GRBG"]
    assert len(mosaics) == 1 and np.array_equal(mosaics[0].data, photo.mosaic.data)


def test_exposures_make_exact_pairs_of_each_exposure(photo_folder, tmp_path):
    source = open_source(photo_folder)
    out = tmp_path / "ev"
    report = generate_pairs("testing.invert", source, out_dir=out, workers=1, progress=False, exposures=[0, -1])
    assert sorted(report.made) == ["first", "first@-1ev", "second", "second@-1ev", "third", "third@-1ev"]
    pairs = read_manifest(out)["pairs"]
    assert pairs["first@-1ev"]["exposure"] == -1 and "exposure" not in pairs["first"]
    assert pairs["first@-1ev"]["split"] == pairs["first"]["split"]  # an exposure stays with its photo's split
    # The operator ran on the darker photo: the target is the inverse of that input, not of the photo's.
    darker = load_photo(photo_folder / "second.dng").exposed(-1)
    stored = read_image_file(out / "input" / "second@-1ev.png")
    assert np.abs(stored - darker.srgb).max() < 1 / 65535 + 1e-6
    assert np.abs(read_image_file(out / "target" / "second@-1ev.png") - (1 - darker.srgb)).max() < 1 / 65535 + 1e-6
    # The photo as it is keeps the key it had without exposures: adding exposures reuses those pairs.
    plain = tmp_path / "plain"
    generate_pairs("testing.invert", source, out_dir=plain, workers=1, progress=False)
    again = generate_pairs("testing.invert", source, out_dir=plain, workers=1, progress=False, exposures=[0, -2])
    assert sorted(again.reused) == ["first", "second", "third"] and len(again.made) == 3
    # Default folders differ, so a set with exposures never mixes into one without.
    folders = {
        pairs_module.default_out_dir(source, "smooth.l0", Resolution(), exposures=e).name for e in ([0], [0, -1])
    }
    assert folders == {"480p", "480p-ev+0_-1"}
    with pytest.raises(ValueError, match=r"distinct stops between -8 and 8, e\.g\. \[0, -1, -2\]"):
        generate_pairs("testing.invert", source, out_dir=out, workers=1, progress=False, exposures=[0, 0])


def test_data_module_adds_exposures_to_training_only(photo_folder, tmp_path):
    from fip.data.module import PairDataModule

    data = PairDataModule(
        "testing.invert",
        source=str(photo_folder),
        resolution="480p",
        val_resolution="480p",
        exposures=[0, -1],
        root=str(tmp_path / "pairs"),
        pair_workers=1,
    )
    data.prepare_data()
    data.setup()
    train, val = data.datasets["train"].names, data.datasets["val"].names
    assert train and val and all(f"{name}@-1ev" in train for name in train if "@" not in name)
    assert not any("@" in name for name in val)
    assert data.folder("train").name == "480p-ev+0_-1" and data.folder("val").name == "480p"


def test_interrupted_run_resumes(photo_folder, tmp_path):
    source, out = open_source(photo_folder), tmp_path / "out"
    INTERRUPT.update(calls=0, at=2)
    with pytest.raises(KeyboardInterrupt):
        generate_pairs("testing.invert", source, out_dir=out, workers=1, progress=False)
    assert [p.stem for p in (out / "records").glob("*.json")] == ["first"]
    assert list(read_manifest(out)["pairs"]) == ["first"]  # saved on the way out
    assert not list(out.rglob("*.tmp"))
    INTERRUPT.update(calls=0, at=None)
    report = generate_pairs("testing.invert", source, out_dir=out, workers=1, progress=False)
    assert report.reused == ["first"] and sorted(report.made) == ["second", "third"]
    assert INTERRUPT["calls"] == 2


def test_stale_pairs_are_regenerated(photo_folder, tmp_path, monkeypatch):
    source, out = open_source(photo_folder), tmp_path / "out"
    generate_pairs("smooth.l0", source, out_dir=out, workers=1, progress=False)
    before = _files(out, "target")

    again = generate_pairs("smooth.l0", source, out_dir=out, workers=1, progress=False)
    assert sorted(again.reused) == ["first", "second", "third"] and not again.made

    changed = generate_pairs("smooth.l0", source, params={"lambda_": 0.2}, out_dir=out, workers=1, progress=False)
    assert sorted(changed.stale) == sorted(changed.made) == ["first", "second", "third"]
    assert read_manifest(out)["params"]["lambda_"] == 0.2
    assert all(_files(out, "target")[name] != before[name] for name in before)

    monkeypatch.setattr(pairs_module, "fip_version", lambda: "999.0")
    upgraded = generate_pairs("smooth.l0", source, params={"lambda_": 0.2}, out_dir=out, workers=1, progress=False)
    assert len(upgraded.stale) == 3 and read_manifest(out)["fip_version"] == "999.0"

    write_synthetic_dng(photo_folder / "first.dng", smooth_image(seed=9), seed=9)  # the photo was edited
    edited = generate_pairs("smooth.l0", source, params={"lambda_": 0.2}, out_dir=out, workers=1, progress=False)
    assert edited.made == ["first"] and sorted(edited.reused) == ["second", "third"]


def test_damaged_pairs_are_regenerated_and_named(photo_folder, tmp_path, capsys):
    out = tmp_path / "out"
    command = [
        "data",
        "-o",
        "smooth.l0",
        "--source",
        str(photo_folder),
        "--out",
        str(out),
        "--workers",
        "1",
        "--no-progress",
    ]
    assert main(command) == 0
    made = {kind: _files(out, kind) for kind in ("input", "target")}
    for kind in ("input", "target"):
        entry = read_manifest(out)["pairs"]["first"]["files"][kind]
        assert entry["bytes"] == len(made[kind]["first"]) and entry["sha256"] == sha256_file(out / kind / "first.png")
    capsys.readouterr()

    target = out / "target" / "first.png"
    target.write_bytes(made["target"]["first"][:1000])
    (out / "input" / "second.png").unlink()
    (out / "target" / "third.png").write_bytes(encode_png(np.zeros((48, 64, 3), np.float32)))  # blacked out
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "3 pairs (3 made, 0 reused, 3 damaged regenerated)" in printed
    assert (
        "3 damaged pairs regenerated: "
        f"first (target truncated: 1000 of {len(made['target']['first'])} bytes), second (input missing), "
        "third (target replaced by another file: "
    ) in printed
    assert {kind: _files(out, kind) for kind in ("input", "target")} == made

    # Same size, other bytes, mtime set back: the ctime still tells, so the file is read and found altered.
    stat = target.stat()
    damaged = bytearray(made["target"]["first"])
    damaged[len(damaged) // 2] ^= 0xFF
    target.write_bytes(bytes(damaged))
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    report = generate_pairs("smooth.l0", open_source(photo_folder), out_dir=out, workers=1, progress=False)
    assert report.damaged == {"first": "target altered: same size, another SHA-256"} and report.made == ["first"]
    assert _files(out, "target") == made["target"]


def test_unchanged_pairs_are_not_read_again(photo_folder, tmp_path, monkeypatch):
    source, out = open_source(photo_folder), tmp_path / "out"
    generate_pairs("smooth.l0", source, out_dir=out, workers=1, progress=False)
    hashed = []
    monkeypatch.setattr(fip.cache, "sha256_file", lambda path: hashed.append(path) or sha256_file(path))
    again = generate_pairs("smooth.l0", source, out_dir=out, workers=1, progress=False)
    assert len(again.reused) == 3 and hashed == []
    (out / "input" / "second.png").touch()  # a new mtime: read again, and found as it was
    again = generate_pairs("smooth.l0", source, out_dir=out, workers=1, progress=False)
    assert len(again.reused) == 3 and hashed == [out / "input" / "second.png"]


def test_pairs_made_before_digests_are_checked_once(photo_folder, tmp_path):
    source, out = open_source(photo_folder), tmp_path / "out"
    generate_pairs("smooth.l0", source, out_dir=out, workers=1, progress=False)
    made = _files(out, "target")
    manifest = read_manifest(out)  # as fip wrote them before it recorded digests
    for name, entry in manifest["pairs"].items():
        del entry["files"]
        record = json.loads((out / "records" / f"{name}.json").read_text())
        del record["files"]
        (out / "records" / f"{name}.json").write_text(json.dumps(record))
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "target" / "second.png").write_bytes(made["second"][:-100])

    report = generate_pairs("smooth.l0", source, out_dir=out, workers=1, progress=False)
    assert report.damaged == {"second": "target cannot be decoded"} and report.made == ["second"]
    assert sorted(report.checked) == sorted(report.reused) == ["first", "third"]
    assert "2 pairs made before fip recorded digests: decoded whole, digests recorded" in report.summary()
    for name in ("first", "second", "third"):
        assert json.loads((out / "records" / f"{name}.json").read_text())["files"]["target"]["sha256"] == (
            sha256_file(out / "target" / f"{name}.png")
        )
    again = generate_pairs("smooth.l0", source, out_dir=out, workers=1, progress=False)
    assert len(again.reused) == 3 and not again.checked and not again.damaged


def test_training_data_names_a_damaged_pair_file_and_the_fix(photo_folder, tmp_path):
    from torch.utils.data import DataLoader

    from fip.data.module import DamagedPairError, PairDataset

    out = tmp_path / "out"
    generate_pairs("smooth.l0", open_source(photo_folder), out_dir=out, workers=1, progress=False)
    target = out / "target" / "first.png"
    good = target.read_bytes()
    target.write_bytes(good[: len(good) // 2])
    with pytest.raises(DamagedPairError, match=r"1 damaged pair file: \S+first\.png \(\d+ bytes, not \d+\); rerun "):
        PairDataset(out)
    # Same size but undecodable: found when read, in a DataLoader worker too, without the worker's traceback.
    target.write_bytes(good[:100] + bytes(len(good) - 100))
    dataset = PairDataset(out)
    hint = r"first\.png cannot be decoded: it is damaged; delete it, then rerun the `fip data` command that made "
    with pytest.raises(DamagedPairError, match=hint):
        dataset[dataset.names.index("first")]
    with pytest.raises(UnreadablePhotoError, match=hint) as caught:
        list(DataLoader(dataset, batch_size=1, num_workers=1))
    assert "Traceback" not in str(caught.value) and "\n" not in str(caught.value)


def test_bad_files_are_named_skipped_and_reported(photo_folder, tmp_path):
    (photo_folder / "notes.jpg").write_bytes(b"not a jpeg")
    good = (photo_folder / "first.dng").read_bytes()
    (photo_folder / "cut.dng").write_bytes(good[: len(good) // 4])
    report = generate_pairs("smooth.l0", open_source(photo_folder), out_dir=tmp_path / "out", workers=1, progress=False)
    assert sorted(report.failed) == ["cut", "notes"] and sorted(report.made) == ["first", "second", "third"]
    assert "notes.jpg" in report.failed["notes"] and "cut.dng" in report.failed["cut"]
    manifest = read_manifest(tmp_path / "out")
    assert sorted(manifest["failed"]) == ["cut", "notes"] and sorted(manifest["pairs"]) == ["first", "second", "third"]


def test_nothing_made_is_an_error(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"garbage")
    with pytest.raises(FipError, match="no pairs could be made"):
        generate_pairs("smooth.l0", open_source(folder), out_dir=tmp_path / "out", workers=1, progress=False)


def test_cli_bad_input_messages(photo_folder, tmp_path, capsys):
    assert main(["data", "-o", "smooth.nope", "--source", str(photo_folder)]) == 2
    assert "unknown operator 'smooth.nope'; available operators: " in capsys.readouterr().err
    assert main(["data", "-o", "smooth.l0", "-p", "lam=1", "--source", str(photo_folder)]) == 2
    assert "has no parameter 'lam'; its parameters are: lambda_, kappa" in capsys.readouterr().err
    assert main(["data", "-o", "smooth.l0", "-p", "kappa=99", "--source", str(photo_folder)]) == 2
    assert "'kappa' = '99' is outside its range [1.05, 10]" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["data", "-o", "smooth.l0", "--source", str(tmp_path / "empty")]) == 2
    assert "holds no photos" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "-o", "smooth.l0", "--source", str(photo_folder), "--exposures", "0,dark"])
    assert "--exposures takes stops separated by commas, e.g. 0,-1,-2; got '0,dark'" in capsys.readouterr().err
    assert main(["data", "-o", "smooth.l0", "--source", str(photo_folder), "--exposures", "0,-1,-1"]) == 2
    assert "exposures [0.0, -1.0, -1.0] must be distinct stops" in capsys.readouterr().err
    (photo_folder / "broken.png").write_bytes(b"garbage")
    out = tmp_path / "cli"
    assert main(["data", "-o", "smooth.l0", "--source", str(photo_folder), "--out", str(out), "--workers", "1"]) == 1
    printed = capsys.readouterr().out
    assert "3 pairs (3 made, 0 reused)" in printed and "FAILED broken: " in printed and "broken.png" in printed


def test_process_pool_matches_single_process(photo_folder, tmp_path):
    source = open_source(photo_folder)
    generate_pairs("style.stylize", source, out_dir=tmp_path / "one", workers=1, progress=False)
    generate_pairs("style.stylize", source, out_dir=tmp_path / "two", workers=2, progress=False)
    assert _files(tmp_path / "one", "target") == _files(tmp_path / "two", "target")
    assert _files(tmp_path / "one", "input") == _files(tmp_path / "two", "input")


def test_dask_local_cluster_generates_the_same_pairs(photo_folder, tmp_path):
    from distributed import LocalCluster

    source = open_source(photo_folder)
    generate_pairs("smooth.l0", source, out_dir=tmp_path / "local", workers=1, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        report = generate_pairs(
            "smooth.l0", source, out_dir=tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False
        )
    assert sorted(report.made) == ["first", "second", "third"]
    assert _files(tmp_path / "local", "target") == _files(tmp_path / "dask", "target")
    assert json.loads((tmp_path / "dask" / "manifest.json").read_text())["pairs"].keys() == {"first", "second", "third"}
    shutil.rmtree(tmp_path / "dask")
