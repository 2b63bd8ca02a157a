"""Photo sources, splits and the resolution policy."""

from __future__ import annotations

import json

import pytest
from conftest import smooth_image, write_synthetic_dng

from fip.data.sources import PhotoSkipped, Resolution, _hashed_split, fivek_source, open_source
from fip.errors import SourceError


def _fivek(tmp_path, numbers):
    for number in numbers:
        folder = (
            tmp_path
            / "fivek"
            / "raw_photos"
            / f"HQa{(number - 1) // 700 * 700 + 1}to{(number - 1) // 700 * 700 + 700}"
            / "photos"
        )
        folder.mkdir(parents=True, exist_ok=True)
        write_synthetic_dng(folder / f"a{number:04d}-photo{number}.dng", smooth_image(8, 8), noise=False)
    return tmp_path / "fivek"


def test_fivek_layout_and_paper_split(tmp_path):
    root = _fivek(tmp_path, [1, 2500, 2501, 4999])
    source = open_source(root)
    assert source.name == "fivek"
    assert [(p.name, p.split) for p in source.photos] == [
        ("a0001-photo1", "train"),
        ("a2500-photo2500", "train"),
        ("a2501-photo2501", "test"),
        ("a4999-photo4999", "test"),
    ]
    assert open_source(f"fivek:{root}").photos == source.photos


def test_split_file_overrides(tmp_path):
    root = _fivek(tmp_path, [1, 2, 3])
    split = tmp_path / "split.json"
    split.write_text(json.dumps({"train": ["a0003-photo3"], "test": ["a0001-photo1"]}))
    source = fivek_source(root, split)
    assert [(p.name, p.split) for p in source.photos] == [("a0001-photo1", "test"), ("a0003-photo3", "train")]
    split.write_text(json.dumps({"train": ["a0009-missing"], "test": []}))
    with pytest.raises(SourceError, match="not in the source.*a0009-missing"):
        fivek_source(root, split)
    split.write_text("{not json")
    with pytest.raises(SourceError, match="split file .* unreadable"):
        fivek_source(root, split)


def test_folder_source(photo_folder):
    source = open_source(photo_folder)
    assert [p.name for p in source.photos] == ["first", "second", "third"]
    assert {p.name: p.split for p in source.photos} == {n: _hashed_split(n) for n in ("first", "second", "third")}
    with pytest.raises(SourceError, match="'nope' is not one of train, test, all"):
        source.select("nope")
    split = photo_folder.parent / "split.json"
    split.write_text(json.dumps({"train": ["first", "third"], "test": []}))
    with pytest.raises(SourceError, match="has no photos in split 'test'"):
        open_source(photo_folder, split).select("test")


def test_missing_and_empty_sources(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no photos here")
    with pytest.raises(SourceError, match="holds no photos"):
        open_source(tmp_path / "empty")
    with pytest.raises(SourceError, match="no FiveK DNGs"):
        open_source(f"fivek:{tmp_path / 'empty'}")


def test_resolution_policy():
    assert Resolution(480).size_for("x", 3000, 4500) == (480, 720)
    assert Resolution(1080).size_for("x", 600, 901) == (600, 900)  # never upscaled, cropped to even
    assert Resolution(None).size_for("x", 3001, 4000) == (3000, 4000)
    budget = Resolution(None, max_megapixels=1.0)
    height, width = budget.size_for("x", 3000, 4000)
    assert height * width <= 1_000_000 and height / width == pytest.approx(0.75, abs=0.01)
    with pytest.raises(PhotoSkipped, match="over the 1 MP budget"):
        Resolution(None, max_megapixels=1.0, over_budget="skip").size_for("x", 3000, 4000)
    random = Resolution.parse("random:320-1440")
    sizes = {random.size_for(f"photo{i}", 3000, 4000)[0] for i in range(20)}
    assert len(sizes) > 5 and all(320 <= s <= 1440 for s in sizes)
    assert random.size_for("photo1", 3000, 4000) == random.size_for("photo1", 3000, 4000)
    assert Resolution.parse("1080p").short_side == 1080 and Resolution.parse("native").short_side is None
    with pytest.raises(SourceError, match="not understood"):
        Resolution.parse("big")


def test_exposure_bracketing_keeps_each_copy_in_its_photos_split(tmp_path):
    """scripts/exposure_bracket.py: darker copies in linear light (raw files rendered first), each in its original's
    split; a rerun resumes."""
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    from fip.imaging import encode_png, read_image_file, srgb_decode
    from fip.raw import load_photo

    photos = tmp_path / "photos"
    photos.mkdir()
    for seed, name in enumerate(["a", "b", "c", "d", "e", "f"]):
        (photos / f"{name}.png").write_bytes(encode_png(smooth_image(24, 32, seed=seed)))
    script = Path(__file__).parents[1] / "scripts" / "exposure_bracket.py"
    out = tmp_path / "bracketed"

    def run(source: Path = photos, target: Path = out) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(script), str(source), str(target), "--stops", "0", "-2"],
            capture_output=True,
            text=True,
        )

    assert "is inside" in run(target=photos / "bracketed").stderr  # the copies would join their own source
    raw = tmp_path / "raw"
    raw.mkdir()
    write_synthetic_dng(raw / "x.dng", smooth_image(), noise=False)
    assert run(source=raw, target=tmp_path / "raw-bracketed").returncode == 0  # raw files are rendered first
    rendered = load_photo(raw / "x.dng")
    assert np.allclose(read_image_file(tmp_path / "raw-bracketed" / "x_ev-2.png"), rendered.exposed(-2).srgb, atol=1e-4)
    assert run().returncode == 0
    source = open_source(out, out / "split.json")
    assert sorted(p.name for p in source.photos) == sorted(f"{n}_ev{s}" for n in "abcdef" for s in ("0", "-2"))
    inherited = {p.name: _hashed_split(p.name.split("_ev")[0]) for p in source.photos}
    assert {p.name: p.split for p in source.photos} == inherited
    original = srgb_decode(read_image_file(photos / "a.png"))
    assert np.allclose(srgb_decode(read_image_file(out / "a_ev0.png")), original, atol=1e-4)
    assert np.allclose(srgb_decode(read_image_file(out / "a_ev-2.png")), original / 4, atol=1e-4)
    stamp = (out / "a_ev-2.png").stat().st_mtime_ns
    assert run().returncode == 0  # a rerun keeps what exists
    assert (out / "a_ev-2.png").stat().st_mtime_ns == stamp
