"""Make fip's training photo set: one folder of links to the shared photographs and the Debian photos, with the
split that every build on it uses (docs/data.md, "The training set").

    python scripts/photo_set.py                       # -> $FIP_CACHE/photo-sets/fip-v2/ (~/.cache/fip/...)
    fip build smooth.l0 --source ~/.cache/fip/photo-sets/fip-v2 \\
        --split-file ~/.cache/fip/photo-sets/fip-v2/split.json --report fivek=../shared/reference/fivek-1080p/input

The folder holds symbolic links, not copies (the photos stay where their terms keep them: never in the repository
or a package), and ``split.json``, ``{"train": [...], "validation": [...], "test": [...]}``:

* the Debian photos (``bash scripts/debian_photos.sh data/debian-photos``) keep the roles they have had since
  fip's first builds (``fip.build.split_photos`` of their folder: 26 train, 6 validation, 5 test), so numbers
  stay comparable;
* the shared photographs (``../shared/photos/images``) go by the first byte of SHA-256(name): below 26 test,
  below 52 validation (about a tenth each), the rest train.

Running it again rewrites the links and the split (the same ones for the same photos).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

from fip.build import split_photos
from fip.cache import cache_dir
from fip.data.sources import folder_source
from fip.files import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
TEST_BELOW, VALIDATION_BELOW = 26, 52  # the first byte of SHA-256(name): about a tenth each


def shared_role(name: str) -> str:
    first = hashlib.sha256(name.encode()).digest()[0]
    return "test" if first < TEST_BELOW else "validation" if first < VALIDATION_BELOW else "train"


def make_photo_set(out: Path, shared: Path, debian: Path) -> dict[str, list[str]]:
    """Link every photo of ``shared`` and ``debian`` into ``out`` and write ``out/split.json``; return the split."""
    split: dict[str, list[str]] = {"train": [], "validation": [], "test": []}
    debian_photos = folder_source(debian)
    for role, names in split_photos(debian_photos).items():
        split[role] += names
    shared_photos = folder_source(shared).photos
    for photo in shared_photos:
        split[shared_role(photo.name)].append(photo.name)
    out.mkdir(parents=True, exist_ok=True)
    wanted = {photo.path.name: photo.path.resolve() for photo in (*debian_photos.photos, *shared_photos)}
    if len(wanted) != sum(len(names) for names in split.values()):
        raise SystemExit("photo_set: two photos share a file name; rename one")
    for link in out.iterdir():
        if link.is_symlink() and link.name not in wanted:
            link.unlink()
    for name, target in wanted.items():
        link = out / name
        if link.is_symlink() and Path(os.readlink(link)) == target:
            continue
        temporary = out / f".{name}.link"
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(target)
        temporary.replace(link)
    atomic_write_json(out / "split.json", {role: sorted(names) for role, names in split.items()})
    return split


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=cache_dir() / "photo-sets" / "fip-v2")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "photos" / "images")
    parser.add_argument("--debian", type=Path, default=ROOT / "data" / "debian-photos")
    args = parser.parse_args()
    for folder, how in (
        (args.shared, "--shared PATH (../shared/photos/images)"),
        (args.debian, "bash scripts/debian_photos.sh data/debian-photos"),
    ):
        if not folder.is_dir():
            print(f"photo_set: {folder} is missing: {how}", file=sys.stderr)
            return 2
    split = make_photo_set(args.out, args.shared, args.debian)
    counts = ", ".join(f"{len(names)} {role}" for role, names in split.items())
    print(f"photo_set: {args.out}: {counts} (split.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
