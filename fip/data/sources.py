"""Where photos come from (the built-in sample set, MIT-Adobe FiveK, any folder), their train/test split and
the resolution policy that decides each photo's working size.

Splits:

* sample set: fixed in :data:`fip.data.sample.SAMPLE_PHOTOS` (6 train, 2 test);
* FiveK: the paper trains on 2500 photos and tests on 2500 but publishes no file list. fip's split is
  deterministic: photos sorted by their FiveK number (``a0001`` ... ``a5000``); numbers 1-2500 train, the rest
  test;
* any other folder: a photo is in test when the first byte of SHA-256(file stem) is below 52 (about 20 %);
* any source: a split file overrides this: JSON ``{"train": [stems...], "test": [stems...]}``; photos in
  neither list are left out.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

from fip.errors import SourceError
from fip.raw import PHOTO_EXTENSIONS

SPLITS = ("train", "test", "all")


class PhotoSkipped(Exception):
    """Raised by a size policy to leave a photo out, with the reason as message."""


@dataclass(frozen=True)
class PhotoRef:
    """One photo of a source: a unique ``name`` (the file stem), its file and its split."""

    name: str
    path: Path
    split: str


@dataclass(frozen=True)
class PhotoSource:
    """An ordered, named list of photos with their splits."""

    name: str
    photos: tuple[PhotoRef, ...]
    description: str

    def select(self, split: str = "all") -> list[PhotoRef]:
        if split not in SPLITS:
            raise SourceError(f"split {split!r} is not one of {', '.join(SPLITS)}")
        chosen = [p for p in self.photos if split == "all" or p.split == split]
        if not chosen:
            raise SourceError(f"{self.description} has no photos in split {split!r}")
        return chosen


def _apply_split_file(photos: list[PhotoRef], split_file: Path) -> list[PhotoRef]:
    try:
        spec = json.loads(Path(split_file).read_text())
        train, test = set(spec["train"]), set(spec["test"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceError(
            f"split file {split_file} is unreadable ({exc}); it must be JSON like "
            '{"train": ["a0001-...", ...], "test": [...]} with file stems'
        ) from exc
    if overlap := sorted(train & test):
        raise SourceError(f"split file {split_file} puts {len(overlap)} photos in both train and test: {overlap[:5]}")
    names = {p.name for p in photos}
    if missing := sorted((train | test) - names):
        raise SourceError(f"split file {split_file} names {len(missing)} photos not in the source, e.g. {missing[:5]}")
    return [PhotoRef(p.name, p.path, "train" if p.name in train else "test") for p in photos if p.name in train | test]


def _hashed_split(name: str) -> str:
    return "test" if hashlib.sha256(name.encode()).digest()[0] < 52 else "train"


def _unique_names(paths: list[Path], where: str) -> None:
    seen: dict[str, Path] = {}
    for path in paths:
        if path.stem in seen:
            raise SourceError(f"{where}: two photos share the name {path.stem!r}: {seen[path.stem]} and {path}")
        seen[path.stem] = path


def sample_source() -> PhotoSource:
    """The built-in sample set (built on first use)."""
    from fip.data.sample import ensure_sample_set

    photos = tuple(PhotoRef(p.name, p.path, p.split) for p in ensure_sample_set())
    return PhotoSource("sample", photos, "the built-in sample set")


_FIVEK_NAME = re.compile(r"^a(\d{4})")


def fivek_source(root: str | Path, split_file: str | Path | None = None) -> PhotoSource:
    """MIT-Adobe FiveK unpacked at ``root`` (the folder holding ``raw_photos/HQa*/photos/*.dng``)."""
    root = Path(root).expanduser()
    paths = sorted(root.glob("raw_photos/HQa*/photos/*.dng"), key=lambda p: p.name)
    if not paths:
        raise SourceError(
            f"no FiveK DNGs under {root}: expected raw_photos/HQa*/photos/*.dng. "
            "Point fip at the folder where fivek_dataset.tar was unpacked."
        )
    _unique_names(paths, str(root))
    photos = []
    for path in paths:
        match = _FIVEK_NAME.match(path.stem)
        split = "train" if match and int(match.group(1)) <= 2500 else "test"
        photos.append(PhotoRef(path.stem, path, split))
    if split_file is not None:
        photos = _apply_split_file(photos, Path(split_file))
    return PhotoSource("fivek", tuple(photos), f"MIT-Adobe FiveK at {root}")


def folder_source(root: str | Path, split_file: str | Path | None = None) -> PhotoSource:
    """Every photo (PNG, JPEG, TIFF, raw) under ``root``, recursively, sorted by path."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise SourceError(f"photo folder {root} does not exist (or is not a folder)")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in PHOTO_EXTENSIONS)
    if not paths:
        raise SourceError(
            f"photo folder {root} holds no photos; fip reads {', '.join(sorted(PHOTO_EXTENSIONS))} files"
        )
    _unique_names(paths, str(root))
    photos = [PhotoRef(p.stem, p, _hashed_split(p.stem)) for p in paths]
    if split_file is not None:
        photos = _apply_split_file(photos, Path(split_file))
    return PhotoSource(root.name or "folder", tuple(photos), f"photo folder {root}")


def open_source(spec: str | Path, split_file: str | Path | None = None) -> PhotoSource:
    """``"sample"``, ``"fivek:PATH"``, a FiveK root (it has ``raw_photos/``), or any folder of photos."""
    text = str(spec)
    if text == "sample":
        source = sample_source()
        if split_file is not None:
            source = replace(source, photos=tuple(_apply_split_file(list(source.photos), Path(split_file))))
        return source
    if text.startswith("fivek:"):
        return fivek_source(text.removeprefix("fivek:"), split_file)
    path = Path(text).expanduser()
    if (path / "raw_photos").is_dir():
        return fivek_source(path, split_file)
    return folder_source(path, split_file)


@dataclass(frozen=True)
class Resolution:
    """The working size of each photo, after the paper: training inputs at 480p, a fine-tuning set at random
    resolutions, tests at 1080p. Photos are never upscaled; sizes are rounded down to even numbers (the mosaic
    view needs whole 2x2 tiles).

    Attributes:
        short_side: wanted short side in pixels; ``None`` keeps the native size.
        random_range: if set, the short side is drawn per photo from this range (seeded by the photo's name).
        max_megapixels: pixel budget after the above; ``None`` = no budget.
        over_budget: ``"resize"`` shrinks a photo to the budget, ``"skip"`` leaves it out with a message.
    """

    short_side: int | None = 480
    random_range: tuple[int, int] | None = None
    max_megapixels: float | None = None
    over_budget: str = "resize"

    def __post_init__(self) -> None:
        if self.over_budget not in ("resize", "skip"):
            raise SourceError(f"over_budget must be 'resize' or 'skip', got {self.over_budget!r}")
        if self.short_side is not None and self.short_side < 2:
            raise SourceError(f"short side {self.short_side} is too small")
        if self.random_range is not None and not 2 <= self.random_range[0] <= self.random_range[1]:
            raise SourceError(f"random resolution range {self.random_range} must be 'low-high' with low <= high")
        if self.max_megapixels is not None and self.max_megapixels <= 0:
            raise SourceError(f"the pixel budget must be positive, got {self.max_megapixels} MP")

    @classmethod
    def parse(cls, text: str, max_megapixels: float | None = None, over_budget: str = "resize") -> Resolution:
        """``"480p"``, ``"1080p"``, ``"native"`` or ``"random:320-1440"``."""
        text = text.strip().lower()
        if text == "native":
            return cls(None, None, max_megapixels, over_budget)
        if match := re.fullmatch(r"(\d+)p", text):
            return cls(int(match.group(1)), None, max_megapixels, over_budget)
        if match := re.fullmatch(r"random:(\d+)-(\d+)", text):
            return cls(None, (int(match.group(1)), int(match.group(2))), max_megapixels, over_budget)
        raise SourceError(f"resolution {text!r} is not understood; use e.g. 480p, 1080p, native or random:320-1440")

    def label(self) -> str:
        base = (
            f"random{self.random_range[0]}-{self.random_range[1]}"
            if self.random_range
            else (f"{self.short_side}p" if self.short_side else "native")
        )
        return base + (f"-max{self.max_megapixels:g}mp-{self.over_budget}" if self.max_megapixels else "")

    def size_for(self, name: str, height: int, width: int) -> tuple[int, int]:
        """The working ``(height, width)`` of photo ``name`` whose native size is given; may raise PhotoSkipped."""
        short = self.short_side
        if self.random_range is not None:
            low, high = self.random_range
            draw = int.from_bytes(hashlib.sha256(f"resolution-{name}".encode()).digest()[:4], "little")
            short = low + draw % (high - low + 1)
        scale = 1.0 if short is None else min(1.0, short / min(height, width))
        if self.max_megapixels is not None:
            megapixels = height * width * scale * scale / 1e6
            if megapixels > self.max_megapixels:
                if self.over_budget == "skip":
                    raise PhotoSkipped(
                        f"{height}x{width} at this resolution is {megapixels:.1f} MP, over the "
                        f"{self.max_megapixels:g} MP budget (use over_budget='resize' to shrink instead)"
                    )
                scale *= math.sqrt(self.max_megapixels / megapixels)
        new_height = max(2, int(height * scale) // 2 * 2)
        new_width = max(2, int(width * scale) // 2 * 2)
        return new_height, new_width

    def to_json(self) -> dict:
        return {
            "short_side": self.short_side,
            "random_range": list(self.random_range) if self.random_range else None,
            "max_megapixels": self.max_megapixels,
            "over_budget": self.over_budget,
        }
