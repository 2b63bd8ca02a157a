"""The ways :func:`fip.infer.run_model` can run a network (no torch import here: the CLI lists them cheaply)."""

from __future__ import annotations

import enum


class Variant(str, enum.Enum):
    """How :func:`fip.infer.run_model` runs a network; each trades exactness for speed (measured in ``docs/models.md``).

    * ``FULL``: the paper's exact semantics, statistics of the whole image at every layer.
    * ``FAST``: statistics from one pass over the image downscaled to ``STATS_MEGAPIXELS``, folded into the
      convolutions (:func:`fip.models.can.fold`); the full-resolution pass is then plain convolutions.
    * ``BF16``: ``FAST`` computed in bfloat16.
    * ``LOWRES``: ``FAST`` on the image downscaled to ``LOWRES_MEGAPIXELS``, brought back to full resolution by a
      fast guided filter (:class:`fip.models.guided.FastGuidedFilter`) guided by the full-resolution input.
    """

    FULL = "full"
    FAST = "fast"
    BF16 = "bf16"
    LOWRES = "lowres"


VARIANT_HELP = {
    Variant.FULL: "paper-exact: per-image statistics over the whole photo",
    Variant.FAST: "statistics from a 0.1 MP preview pass, folded into the convolutions",
    Variant.BF16: "fast, in bfloat16",
    Variant.LOWRES: "network at 0.25 MP + guided-filter upsampling",
}
STATS_MEGAPIXELS = 0.1
LOWRES_MEGAPIXELS = 0.25

__all__ = ["LOWRES_MEGAPIXELS", "STATS_MEGAPIXELS", "VARIANT_HELP", "Variant"]
