"""The ways :func:`fip.infer.run_model` can run a network (no torch import here: the CLI lists them cheaply)."""

from __future__ import annotations

import enum


class Variant(str, enum.Enum):
    """How :func:`fip.infer.run_model` runs a network; each trades exactness for speed (measured in ``docs/models.md``).

    * ``FULL``: the paper's exact semantics, statistics of the whole image at every layer.
    * ``FAST``: statistics from one pass over the image downscaled to ``STATS_MEGAPIXELS``, folded into the
      convolutions (:func:`fip.models.can.fold`); the full-resolution pass is then plain convolutions.
    * ``BF16``: ``FAST`` computed in bfloat16.
    * ``LOWRES``: where the model has a trained low-resolution sibling (:class:`fip.models.GuidedCAN`, the Deep
      Guided Filter), that: its own CAN in ``BF16`` on the image downscaled 3x, a learned guidance map and a fast
      guided filter at full resolution, trained end to end. Otherwise the model's network in ``BF16`` on the image
      downscaled to ``LOWRES_MEGAPIXELS`` and a fixed fast guided filter
      (:class:`fip.models.guided.FastGuidedFilter`) guided by the full-resolution input. Either way a model's
      photos of at most ``LOWRES_MEGAPIXELS`` run ``FAST`` (a guided network loaded by itself always runs itself).
    * ``PRUNED``: the model's pruned sibling (fewer channels, fine-tuned, running statistics folded) in bfloat16.
    * ``INT8``: the pruned sibling quantized to int8, run by ONNX Runtime.
    * ``AUTO``: the fastest variant (``AUTO_ORDER``, the order ``fip bench`` measures, ``docs/speed.md``) that the
      model has and whose PSNR against the reference is measured to be at most ``AUTO_MAX_LOSS_DB`` below the
      better of ``FULL``'s and ``FAST``'s (``scripts/measure_variants.py`` writes the measurements beside each
      shipped model; ``LOWRES`` of known size, and without a trained sibling only up to
      ``AUTO_LOWRES_MAX_MEGAPIXELS``); else ``FAST``, whatever it measured (for a few global operators it loses
      more: ``docs/speed.md``).
    """

    AUTO = "auto"
    FULL = "full"
    FAST = "fast"
    BF16 = "bf16"
    LOWRES = "lowres"
    PRUNED = "pruned"
    INT8 = "int8"


VARIANT_HELP = {
    Variant.AUTO: "the fastest variant measured within 0.5 dB of full or fast, whichever scored higher",
    Variant.FULL: "paper-exact: per-image statistics over the whole photo",
    Variant.FAST: "statistics from a 0.1 MP preview pass, folded into the convolutions",
    Variant.BF16: "fast, in bfloat16",
    Variant.LOWRES: "network at low resolution (bf16) + guided-filter upsampling, trained end to end where shipped",
    Variant.PRUNED: "pruned network (fewer channels, fine-tuned), bf16",
    Variant.INT8: "pruned network quantized to int8 (ONNX Runtime)",
}
# What AUTO picks, fastest first (measured by `fip bench`).
AUTO_ORDER = (Variant.LOWRES, Variant.INT8, Variant.PRUNED, Variant.BF16, Variant.FAST)
AUTO_MAX_LOSS_DB = 0.5
AUTO_LOWRES_MAX_MEGAPIXELS = 4.0  # auto takes an untrained LOWRES only up to here (measured at ~2 MP)
# The rows `fip bench` can measure (fip.bench), in table order.
BENCH_ROWS = ("reference", "paper-exact", "baseline", "fast", "compiled", "bf16", "bf16-compiled", "int8-torchao",
              "onnxruntime", "onnxruntime-int8", "pruned", "lowres")  # fmt: skip
STATS_MEGAPIXELS = 0.1
LOWRES_MEGAPIXELS = 0.25

__all__ = ["AUTO_LOWRES_MAX_MEGAPIXELS", "AUTO_MAX_LOSS_DB", "AUTO_ORDER", "BENCH_ROWS", "LOWRES_MEGAPIXELS", "STATS_MEGAPIXELS", "VARIANT_HELP", "Variant"]
