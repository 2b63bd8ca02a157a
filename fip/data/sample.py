"""The built-in sample set: real DNG files made offline from photos that ship inside scikit-image.

Each photo is unprocessed (:mod:`fip.data.unprocess`) with camera settings drawn from a generator seeded by its
name, written as a DNG with :mod:`fip.dng`, and from then on read back through rawpy exactly like a FiveK file.
The set is deterministic (same versions, same bytes), cached under ``<cache>/sample/v<N>/`` and rebuilt only when
a file is missing or differs from the index.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fip.cache import cache_dir
from fip.dng import encode_dng
from fip.files import atomic_write_bytes, atomic_write_json, sha256_file
from fip.imaging import read_image_file

logger = logging.getLogger(__name__)

SAMPLE_VERSION = 1

# (name, file in skimage/data, split). Colour photos bundled with scikit-image (no download needed).
SAMPLE_PHOTOS: tuple[tuple[str, str, str], ...] = (
    ("astronaut", "astronaut.png", "train"),
    ("rocket", "rocket.jpg", "train"),
    ("hubble", "hubble_deep_field.jpg", "train"),
    ("ihc", "ihc.png", "train"),
    ("retina", "retina.jpg", "train"),
    ("motorcycle", "motorcycle_left.png", "train"),
    ("coffee", "coffee.png", "test"),
    ("chelsea", "chelsea.png", "test"),
)


@dataclass(frozen=True)
class SamplePhoto:
    name: str
    path: Path
    split: str


def _skimage_data_dir() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def _seed(name: str) -> int:
    return int.from_bytes(hashlib.sha256(f"fip-sample-{SAMPLE_VERSION}-{name}".encode()).digest()[:8], "little")


def make_sample_dng(name: str, source: Path) -> bytes:
    """The DNG bytes of one sample photo (deterministic)."""
    from fip.data.unprocess import CaptureSettings, unprocess

    srgb = read_image_file(source)
    srgb = srgb[: srgb.shape[0] // 2 * 2, : srgb.shape[1] // 2 * 2]
    rng = np.random.default_rng(_seed(name))
    settings = CaptureSettings.random(rng)
    raw = unprocess(srgb, settings, rng)
    return encode_dng(raw, settings.metadata(model=f"sample {name}"))


def sample_dir() -> Path:
    return cache_dir() / "sample" / f"v{SAMPLE_VERSION}"


def ensure_sample_set(root: Path | None = None) -> list[SamplePhoto]:
    """Build (or reuse) the sample DNGs under ``root`` and return them in a fixed order."""
    root = Path(root) if root is not None else sample_dir()
    data_dir = _skimage_data_dir()
    index_path = root / "index.json"
    index: dict = {}
    if index_path.exists():
        import json

        index = json.loads(index_path.read_text())
    photos, entries, rebuilt = [], {}, 0
    for name, filename, split in SAMPLE_PHOTOS:
        source = data_dir / filename
        if not source.exists():
            raise FileNotFoundError(f"scikit-image's bundled photo {source} is missing; reinstall scikit-image")
        dng = root / f"{name}.dng"
        source_hash = sha256_file(source)
        entry = index.get("photos", {}).get(name, {})
        fresh = dng.exists() and entry.get("source_sha256") == source_hash and entry.get("dng_sha256") == sha256_file(dng)
        if not fresh:
            atomic_write_bytes(dng, make_sample_dng(name, source))
            rebuilt += 1
        entries[name] = {"source": filename, "source_sha256": source_hash, "dng_sha256": sha256_file(dng), "split": split}
        photos.append(SamplePhoto(name, dng, split))
    if rebuilt or not index_path.exists():
        logger.info("built %d sample DNG(s) in %s", rebuilt, root)
        atomic_write_json(index_path, {"version": SAMPLE_VERSION, "photos": entries})
    return photos
