"""Where the paper's reference material is: ``$FIP_REFERENCE_DIR`` or ``../shared/reference`` beside the repo.

The four FiveK photos and the authors' results (15 MB) are not committed; tests that need them skip with a
message when they are absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def reference_dir() -> Path | None:
    candidates = [os.environ.get("FIP_REFERENCE_DIR"), Path(__file__).resolve().parents[2] / "shared" / "reference"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "fivek-1080p" / "input").is_dir():
            return Path(candidate)
    return None


def require_reference() -> Path:
    found = reference_dir()
    if found is None:
        pytest.skip("the paper's reference photos are absent: set FIP_REFERENCE_DIR to the shared/reference folder")
    return found
