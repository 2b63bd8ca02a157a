"""An example fip plugin: one operator for each input view fip offers.

Installed with ``pip install examples/fip-example-plugin``; fip finds it through the ``fip.operators`` entry point
declared in this package's ``pyproject.toml``. Nothing in fip changes.
"""

from __future__ import annotations

import numpy as np

from fip import InputKind, Param, register_operator


@register_operator(
    "example.posterize",
    description="Posterize: quantize each sRGB channel to a few levels.",
    params=[Param("levels", 4, low=2, high=256, description="number of levels per channel")],
)
def posterize(image: np.ndarray, *, levels: int) -> np.ndarray:
    """image: (H, W, 3) float32 sRGB in [0, 1] -> same shape."""
    return np.round(image * (levels - 1)) / (levels - 1)


@register_operator(
    "example.exposure",
    description="Change exposure in linear light, then encode as sRGB.",
    params=[Param("stops", 1.0, low=-5.0, high=5.0, description="exposure change in stops (EV)")],
    input=InputKind.LINEAR_RGB,
)
def exposure(linear: np.ndarray, *, stops: float) -> np.ndarray:
    """linear: (H, W, 3) float32 linear sRGB primaries in [0, 1] -> sRGB (H, W, 3)."""
    from fip.imaging import srgb_encode

    return srgb_encode(np.clip(linear * 2.0**stops, 0.0, 1.0))


@register_operator(
    "example.nearest_demosaic",
    description="Nearest-neighbour demosaic of the raw mosaic, rendered with the photo's colour pipeline.",
    input=InputKind.BAYER,
)
def nearest_demosaic(mosaic) -> np.ndarray:
    """mosaic: fip.raw.Mosaic -> sRGB (H, W, 3): each 2x2 tile becomes one colour."""
    from fip.imaging import srgb_encode

    data, height, width = mosaic.data, *mosaic.shape
    tile = np.zeros((height // 2, width // 2, 3), dtype=np.float32)
    counts = np.zeros(3, dtype=np.float32)
    for position, colour in enumerate(mosaic.cfa):
        dy, dx = divmod(position, 2)
        channel = "RGB".index(colour)
        tile[..., channel] += data[dy::2, dx::2]
        counts[channel] += 1
    camera = np.repeat(np.repeat(tile / counts, 2, axis=0), 2, axis=1)
    return srgb_encode(mosaic.render_linear(camera))
