"""Helpers shared by the scripts that ship models: the sample-test PSNR they record, and their Markdown reports."""

from __future__ import annotations

from collections.abc import Iterable

from fip.data.sources import Resolution, sample_source
from fip.evaluate import evaluate
from fip.infer import LoadedModel


def sample_test_psnr(model: LoadedModel, variant: str = "fast") -> float:
    """Mean PSNR of ``model`` run as ``variant`` against its reference on the sample set's test photos at 1080p."""
    return evaluate(model, sample_source(), split="test", resolution=Resolution(1080), workers=1, variant=variant).mean_psnr


def print_report(header: str, rows: Iterable[str]) -> None:
    """Print each Markdown row as it is made (work per row is long), then the whole table under ``header``
    (``| a | b |\\n|---|---:|``)."""
    done = []
    for row in rows:
        print(row, flush=True)
        done.append(row)
    print(header)
    print("\n".join(done))
