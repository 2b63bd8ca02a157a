"""Where fip keeps generated data, and how it checks that a file it reuses is still the one it wrote.

The root is ``$FIP_CACHE`` if set, else ``$XDG_CACHE_HOME/fip`` or ``~/.cache/fip``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fip.files import sha256_file


def cache_dir() -> Path:
    """The root folder for fip's caches (sample set, pairs); not created here."""
    if env := os.environ.get("FIP_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fip"


def file_stamp(stat: os.stat_result) -> list[int]:
    """Size, mtime, ctime and inode: a write or a replacement changes them, even one by a tool that sets the
    mtime back (``cp -p``, ``touch -r``), since nothing but the kernel sets the ctime and a new file has a new
    inode. A change below the file system (a failing disk) leaves them as they were."""
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino]


def check_cached_file(
    path: Path, expected: Mapping[str, Any], known: Mapping[str, Any] | None = None, trailer: bytes = b""
) -> tuple[str | None, dict[str, Any]]:
    """Whether a cached file still holds what was written: its byte size and SHA-256.

    Args:
        path: the file.
        expected: ``{"bytes": int, "sha256": hex}``, recorded when it was written.
        known: ``{"bytes", "sha256", "stamp"}`` from the last check; if the file's :func:`file_stamp` and the
            digest are unchanged, the file is not read again.
        trailer: the bytes every complete file of its format ends with (PNG's IEND chunk); tells a truncated
            file from one replaced by another.

    Returns:
        Why the file does not match, in a few words (``"missing"``, ``"empty"``, ``"truncated: 1000 of 913455
        bytes"``, ``"altered: same size, another SHA-256"``), or ``None``; and its ``{"bytes", "sha256",
        "stamp"}`` (empty when it does not match).
    """
    try:
        stat = path.stat()  # before reading: a file that changes while it is hashed gets another stamp
    except FileNotFoundError:
        return "missing", {}
    size = stat.st_size
    if size != expected["bytes"]:
        if size == 0:
            return "empty", {}
        with open(path, "rb") as handle:
            handle.seek(max(0, size - len(trailer)))
            whole = handle.read() == trailer
        if whole and trailer:
            return f"replaced by another file: {size} bytes, not {expected['bytes']}", {}
        if size < expected["bytes"]:
            return f"truncated: {size} of {expected['bytes']} bytes", {}
        return f"damaged: {size} bytes, not {expected['bytes']}", {}
    stamp = file_stamp(stat)
    if known and known.get("stamp") == stamp and known.get("sha256") == expected["sha256"]:
        return None, dict(known)
    digest = sha256_file(path)
    if digest != expected["sha256"]:
        return "altered: same size, another SHA-256", {}
    return None, {"bytes": size, "sha256": digest, "stamp": stamp}
