"""Shared fixtures: an isolated cache, synthetic photos and DNG files made on the fly, fake plugin distributions."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from fip.data.unprocess import CaptureSettings, unprocess
from fip.dng import write_dng
from fip.imaging import encode_png


def pytest_configure(config):
    # Registered here rather than in pyproject.toml, whose hash decides when scripts/setup.sh reinstalls.
    config.addinivalue_line(
        "markers",
        "device_class: depends on the CPU's device class (cpu, cpu-bf16); CI runs "
        "these again with FIP_DEVICE_CLASS=cpu-bf16",
    )


@pytest.fixture(autouse=True, scope="session")
def _compiled_kernels():
    """numba's machine code for fip's CPU kernels, compiled once before any test (a fresh clone has none), so
    that the commands tests start as processes load it instead of compiling (and saying so) themselves."""
    from fip.runtime import kernels

    kernels.warm()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test session writes its caches under a temporary folder, never the user's ~/.cache."""
    monkeypatch.setenv("FIP_CACHE", str(tmp_path_factory.getbasetemp() / "fip-cache"))
    monkeypatch.delenv("FIP_DISABLE_PLUGINS", raising=False)
    # auto ranks by the cards' timings alone: no test times models on this machine unless it turns this back on
    # (tests/test_calibrate.py), also when CI runs them as the other CPU class, which the cards have no timings for.
    monkeypatch.setenv("FIP_CALIBRATE", "0")


def smooth_image(height: int = 48, width: int = 64, seed: int = 0, edge: bool = True) -> np.ndarray:
    """A smooth colourful sRGB test image (sine gradients), with one sharp-edged patch if ``edge``; float32 in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = []
    for _ in range(3):
        fy, fx, phase = rng.uniform(0.5, 2.0), rng.uniform(0.5, 2.0), rng.uniform(0, 6.28)
        channels.append(0.5 + 0.35 * np.sin(fy * y / height * 3.14 + fx * x / width * 3.14 + phase))
    image = np.stack(channels, axis=-1)
    if edge:
        image[height // 3 : 2 * height // 3, width // 4 : width // 2] = rng.uniform(0.15, 0.85, size=3)
    return image.astype(np.float32)


def write_synthetic_dng(path: Path, image: np.ndarray, cfa: str = "RGGB", noise: bool = True, seed: int = 0) -> None:
    """Unprocess ``image`` into a DNG at ``path``, like the sample set does."""
    rng = np.random.default_rng(seed)
    settings = CaptureSettings(cfa=cfa)
    write_dng(path, unprocess(image, settings, rng if noise else None), settings.metadata())


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    """Three tiny photos: two DNGs and one PNG, in a folder."""
    folder = tmp_path / "photos"
    folder.mkdir()
    write_synthetic_dng(folder / "first.dng", smooth_image(seed=1), seed=1)
    write_synthetic_dng(folder / "second.dng", smooth_image(40, 56, seed=2), cfa="GRBG", seed=2)
    (folder / "third.png").write_bytes(encode_png(smooth_image(seed=3), bits=8))
    return folder


def make_distribution(
    root: Path, name: str, modules: dict[str, str], entry_points: dict[str, str], group: str = "fip.operators"
) -> Path:
    """Write an installed-looking distribution (``*.dist-info`` with entry points, plus its modules) into ``root``.

    Putting ``root`` on ``sys.path`` makes ``importlib.metadata`` find it exactly like a pip-installed package.
    """
    root.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "\n".join(f"{key} = {value}" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}\n")
    return root


def run_net(
    net, image: np.ndarray, request: str = "full", *, tile: int | None = None, maps=None, operator: str = "smooth.l0"
) -> np.ndarray:
    """One network (a module, a :class:`fip.models.storage.NetworkFile` or a model of one) run by the engine on an ``(H, W, 3)``
    image as approximator ``request`` on the CPU; ``maps``: its conditioning maps."""
    from fip.models.catalogue import Model
    from fip.models.storage import NetworkFile
    from fip.runtime.execute import Views, run_plan, to_image
    from fip.runtime.plan import make_plan

    if isinstance(net, Model):
        model = net
    else:
        model = Model.of_network(net if isinstance(net, NetworkFile) else NetworkFile(net, "test network", operator))
    plan = make_plan(model, request, image.shape[:2], "cpu", operator=model.operator or operator, tile=tile)
    return to_image(run_plan(plan, model, Views.of_array(image), maps))


def declared_png(path: Path, width: int, height: int) -> Path:
    """A tiny PNG file whose header declares ``width x height`` pixels (a decompression bomb's shape): a real 8x8
    image with its IHDR size and checksum rewritten."""
    import struct
    import zlib

    data = bytearray(encode_png(smooth_image(8, 8), bits=8))
    start = data.index(b"IHDR")
    data[start + 4 : start + 12] = struct.pack(">II", width, height)
    data[start + 17 : start + 21] = struct.pack(">I", zlib.crc32(bytes(data[start : start + 17])))
    path.write_bytes(bytes(data))
    return path
