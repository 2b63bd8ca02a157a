"""Make the model photo of ``style.photographic``: the paper authors' Photographic_style network applied to a
public-domain photo bundled with scikit-image, so that the reference operator transfers the paper's look.

Usage: python scripts/make_style_model.py [photo name in skimage.data, default: astronaut]
Writes operators/data/style_model.png (8-bit grey).
"""

import sys
from pathlib import Path

import cv2
import numpy as np
import skimage.data
import torch

from fip.models.paper import load_paper_model

name = sys.argv[1] if len(sys.argv) > 1 else "astronaut"
photo = getattr(skimage.data, name)().astype(np.float32) / 255.0
model = load_paper_model("paper/Photographic_style")
with torch.no_grad():
    styled = model(torch.from_numpy(photo).permute(2, 0, 1)[None])[0].clamp(0, 1)
grey = (styled.mean(dim=0).numpy() * 255.0).round().astype(np.uint8)
out = Path(__file__).resolve().parents[1] / "operators" / "data" / "style_model.png"
cv2.imwrite(str(out), grey)
print(f"wrote {out} ({grey.shape[1]}x{grey.shape[0]}) from skimage.data.{name}")
