"""Where fip keeps generated data: ``$FIP_CACHE`` if set, else ``$XDG_CACHE_HOME/fip`` or ``~/.cache/fip``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The root folder for fip's caches (sample set, pairs); not created here."""
    if env := os.environ.get("FIP_CACHE"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "fip"
