"""Pack what a lent GPU machine needs for ``benchmarks/gpu_session.sh`` into one ignored folder, ``.gpu-carry/``.

Usage: python benchmarks/gpu_prepare.py [--photos ~/.cache/fip/photo-sets/fip-v2] [--short-side 480] [--quality 85]
           [--raw-wheels] [--limit-mib 60]

Runs here, before a GPU session (the GPU machine reaches no package registry and sees only the working tree and the
folders a run carries, 64 MiB together). The folder holds:

* ``photos/``: the training set's photos (``scripts/photo_set.py``, docs/data.md "The training set") as JPEG
  copies of at most ``--short-side`` pixels on the short side (never enlarged; the set trains at 480p), with
  ``photos/split.json``, the set's split;
* ``timing/Blinds.jpg``: the photo ``benchmarks/measure_cards.py`` times the cards on, as it is;
* ``wheels/``: the Python packages fip needs that the GPU machine's image lacks, for CPython 3.12 on x86-64 Linux,
  at the versions ``constraints.txt`` pins. The three that only ``raw.demosaic_denoise``'s reference needs
  (colour-demosaicing, colour-science, PyWavelets: 17 MB) come only with ``--raw-wheels``.

fip itself is installed there from the working tree that travels. OpenCV's contrib modules (``cv2.ximgproc``, which
``dehaze.dark_channel``'s reference needs) are left out: their wheel alone is over 50 MB; the image's plain OpenCV
serves everything else. Without them, those two operators' reference rows are not timed there (the session says so).

Running it again reuses what is there (a photo is rewritten only when its source is newer or the settings changed)
and prints the sizes:
what travels (the working tree and ``.gpu-carry``) must stay under the tool's 64 MiB.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CARRY = REPO / ".gpu-carry"
# The packages fip's core and train extra need that the GPU image lacks (device KINDS.md, "Python packages already
# there"); pip's --no-deps fetches only these, so each one's own needs are named too.
WHEELS = ("kornia", "kornia-rs", "rawpy", "pyamg", "jsonargparse", "docstring-parser", "typeshed-client")
RAW_WHEELS = ("colour-demosaicing", "colour-science", "PyWavelets")  # raw.demosaic_denoise's reference only
PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
TIMING_PHOTO = REPO / "data" / "debian-photos" / "Blinds.jpg"  # benchmarks/measure_cards.py's timing photo
MIB = 2**20


def pinned_version(name: str) -> str:
    """``name``'s version in constraints.txt, else the one installed here (the tested versions either way)."""
    key = name.lower().replace("_", "-")
    for line in (REPO / "constraints.txt").read_text().splitlines():
        found, _, version = line.partition("==")
        if found.strip().lower().replace("_", "-") == key and version:
            return version.split(";")[0].strip()
    return importlib.metadata.version(name)


def exclude_carry_folder() -> None:
    """Ignore ``/.gpu-carry/`` through ``.git/info/exclude`` (never committed; the tool's ``carry`` names it)."""
    git_dir = Path(
        subprocess.run(
            ["git", "rev-parse", "--git-dir"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    exclude = (git_dir if git_dir.is_absolute() else REPO / git_dir) / "info" / "exclude"
    exclude.parent.mkdir(parents=True, exist_ok=True)
    lines = exclude.read_text().splitlines() if exclude.is_file() else []
    if "/.gpu-carry/" not in lines:
        exclude.write_text("\n".join([*lines, "/.gpu-carry/"]) + "\n")


def pack_photos(photo_set: Path, out: Path, short_side: int, quality: int) -> tuple[int, int]:
    """JPEG copies of every photo ``photo_set/split.json`` names, at most ``short_side`` on the short side, and the
    split; returns (photos, bytes)."""
    from fip.imaging import encode_image, read_image_file, resize_area

    settings = {"short_side": short_side, "quality": quality}
    record = out / "settings.json"
    same = record.is_file() and json.loads(record.read_text()) == settings

    split = json.loads((photo_set / "split.json").read_text())
    files = {p.stem: p for p in photo_set.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".tif", ".tiff")}
    names = sorted(name for role in ("train", "validation", "test") for name in split[role])
    if missing := [n for n in names if n not in files]:
        raise SystemExit(
            f"gpu_prepare: {photo_set} lacks {len(missing)} photos its split names, e.g. {missing[:3]}: "
            "run python scripts/photo_set.py"
        )
    out.mkdir(parents=True, exist_ok=True)
    wanted = {f"{name}.jpg" for name in names} | {"split.json", "settings.json"}
    for stale in [p for p in out.iterdir() if p.name not in wanted]:
        stale.unlink()
    total = 0
    for name in names:
        target = out / f"{name}.jpg"
        source = files[name].resolve()
        if not same or not target.is_file() or target.stat().st_mtime < source.stat().st_mtime:
            image = read_image_file(source)
            height, width = image.shape[:2]
            scale = min(1.0, short_side / min(height, width))
            if scale < 1.0:
                image = resize_area(image, max(2, round(height * scale)), max(2, round(width * scale)))
            target.write_bytes(encode_image(image, "jpeg", quality=quality))
        total += target.stat().st_size
    (out / "split.json").write_text(
        json.dumps({role: sorted(split[role]) for role in ("train", "validation", "test")}, indent=1) + "\n"
    )
    record.write_text(json.dumps(settings) + "\n")
    return len(names), total + (out / "split.json").stat().st_size


def download_wheels(out: Path, names: tuple[str, ...]) -> None:
    """Wheels of ``names`` at their pinned versions for CPython 3.12 on x86-64 Linux (the GPU image's Python)."""
    out.mkdir(parents=True, exist_ok=True)
    wanted = [f"{name}=={pinned_version(name)}" for name in names]
    keep = {_wheel_key(spec.split("==")[0]) for spec in wanted}
    for stale in [p for p in out.glob("*.whl") if _wheel_key(p.name.split("-")[0]) not in keep]:
        stale.unlink()  # one version of each: two stop the whole install there
    have = {_wheel_key(p.name.split("-")[0]) + "==" + p.name.split("-")[1] for p in out.glob("*.whl")}
    missing = [spec for spec in wanted if _wheel_key(spec.split("==")[0]) + "==" + spec.split("==")[1] not in have]
    if not missing:
        return
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        "-d",
        str(out),
    ]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    subprocess.run(command + missing, check=True)


def _wheel_key(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def travelling_bytes() -> int:
    """Bytes of the working tree that travels to the GPU machine (tracked, and untracked but not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    return sum((REPO / n.decode()).stat().st_size for n in listed if n and (REPO / n.decode()).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main() -> int:
    from fip.cache import cache_dir

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--photos",
        type=Path,
        default=cache_dir() / "photo-sets" / "fip-v2",
        help="scripts/photo_set.py's folder (links to the photos, and split.json)",
    )
    parser.add_argument("--short-side", type=int, default=480)
    parser.add_argument("--quality", type=int, default=85, help="JPEG quality of the copies")
    parser.add_argument(
        "--raw-wheels", action="store_true", help="also the wheels only raw.demosaic_denoise's reference needs (17 MB)"
    )
    parser.add_argument(
        "--limit-mib",
        type=float,
        default=60.0,
        help="fail when the working tree and the folder together pass this (the tool allows 64)",
    )
    args = parser.parse_args()
    if not (args.photos / "split.json").is_file():
        print(f"gpu_prepare: {args.photos}/split.json is missing: run python scripts/photo_set.py", file=sys.stderr)
        return 2
    if not TIMING_PHOTO.is_file():
        print(
            f"gpu_prepare: {TIMING_PHOTO} is missing: bash scripts/debian_photos.sh data/debian-photos", file=sys.stderr
        )
        return 2
    exclude_carry_folder()
    CARRY.mkdir(exist_ok=True)
    count, photo_bytes = pack_photos(args.photos, CARRY / "photos", args.short_side, args.quality)
    print(f"gpu_prepare: photos: {count} at most {args.short_side} px on the short side, {photo_bytes / MIB:.1f} MiB")
    (CARRY / "timing").mkdir(exist_ok=True)
    shutil.copy2(TIMING_PHOTO, CARRY / "timing" / TIMING_PHOTO.name)
    download_wheels(CARRY / "wheels", WHEELS + (RAW_WHEELS if args.raw_wheels else ()))
    print(
        f"gpu_prepare: wheels: {', '.join(sorted(p.name for p in (CARRY / 'wheels').glob('*.whl')))}; "
        f"{folder_bytes(CARRY / 'wheels') / MIB:.1f} MiB"
    )
    carried, tree = folder_bytes(CARRY), travelling_bytes()
    total = (carried + tree) / MIB
    print(
        f"gpu_prepare: {CARRY.name}/ {carried / MIB:.1f} MiB + working tree {tree / MIB:.1f} MiB = {total:.1f} MiB "
        f"(the tool carries at most 64)"
    )
    if total > args.limit_mib:
        print(
            f"gpu_prepare: over --limit-mib {args.limit_mib:g}: lower --quality or --short-side, or leave out "
            "--raw-wheels",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
