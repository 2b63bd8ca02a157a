"""Convert the paper authors' networks (NumPy exports of their TF checkpoints) into fip's shipped weights.

Usage: python scripts/convert_paper_weights.py ../shared/reference/paper-can
Writes fip/models/weights/paper/<name>.npz (PyTorch layout, RGB order); see fip/models/paper.py.
"""

import sys
from pathlib import Path

import numpy as np

from fip.models.paper import WEIGHTS_DIR, convert_tf_arrays

source = Path(sys.argv[1])
WEIGHTS_DIR.mkdir(parents=True, exist_ok=True)
for path in sorted(source.glob("*.npz")):
    with np.load(path) as arrays:
        data = dict(arrays)
    in_channels = data["g_conv1/weights"].shape[2]
    np.savez_compressed(WEIGHTS_DIR / path.name, **convert_tf_arrays(data, in_channels))
    print(f"{path.name}: {in_channels} input channels -> {WEIGHTS_DIR / path.name}")
