"""The built-in sample set: real DNGs, deterministic, cached, read back through rawpy."""

from __future__ import annotations

import json

import numpy as np

from fip.data.sample import SAMPLE_PHOTOS, ensure_sample_set, sample_dir
from fip.data.sources import sample_source
from fip.files import sha256_file
from fip.raw import load_photo


def test_sample_set_is_deterministic(tmp_path):
    first = ensure_sample_set(tmp_path / "a")
    second = ensure_sample_set(tmp_path / "b")
    assert len(first) >= 8
    assert [sha256_file(p.path) for p in first] == [sha256_file(p.path) for p in second]
    assert {p.split for p in first} == {"train", "test"}
    assert [p.name for p in first] == [name for name, _, _ in SAMPLE_PHOTOS]


def test_sample_set_is_cached_and_repaired(tmp_path):
    photos = ensure_sample_set(tmp_path)
    stamps = {p.name: p.path.stat().st_mtime_ns for p in photos}
    good = sha256_file(photos[0].path)
    photos[0].path.write_bytes(b"damaged")  # a damaged file is rebuilt, the others are reused
    ensure_sample_set(tmp_path)
    assert sha256_file(photos[0].path) == good
    assert all(p.path.stat().st_mtime_ns == stamps[p.name] for p in photos[1:])
    index = json.loads((tmp_path / "index.json").read_text())
    assert index["photos"][photos[0].name]["dng_sha256"] == good


def test_sample_photos_read_like_camera_raw_files():
    source = sample_source()
    assert source.photos[0].path.parent == sample_dir()
    photo = load_photo(source.photos[0].path)
    assert photo.is_raw and photo.mosaic.cfa == "RGGB" and photo.mosaic.white_level == 2**14 - 1
    assert photo.srgb.shape[2] == 3 and 0.2 < photo.srgb.mean() < 0.8  # exposed like the original photo
    assert not np.array_equal(photo.mosaic.white_balance, np.ones(3))  # a real white balance to undo
