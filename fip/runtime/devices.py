"""Devices: which one to run on, what class of device it is, what it can do and how much memory it has.

A **device class** names devices whose timings a model card shares: ``cpu`` (a CPU without native bfloat16
arithmetic), ``cpu-bf16`` (one with it: AVX-512 BF16 or AMX on x86, BF16 on Arm), ``cuda`` or ``mps``. The two CPU
classes differ because the same approximator runs differently on them: an approximator declared ``bf16`` runs in
bfloat16 where the CPU computes it natively and in float32 elsewhere, where oneDNN emulates bfloat16 about ten times
slower than float32 (measured here: a CAN24 at 1080p took 16.5 s in bfloat16 and 1.6 s in float32 on an AVX2 CPU).
Timings are recorded per class with the machine they were measured on; ``auto`` ranks approximators by the timings of
the class it runs on, and falls back to the other CPU class's when a class has none (running each approximator in
the precision those timings were measured in: see :mod:`fip.runtime.plan`).

``FIP_DEVICE_CLASS`` (``cpu`` or ``cpu-bf16``) makes fip treat this machine's CPU as that class: its timings, and
bfloat16 arithmetic on or off. On a CPU without native bfloat16, ``cpu-bf16`` runs bf16 approximators in PyTorch's
emulated bfloat16: the numbers of a ``cpu-bf16`` machine, about ten times slower. It exists to test fip as another
class; ``cpu`` on a bfloat16 CPU turns bfloat16 off.
"""

from __future__ import annotations

import functools
import os
import platform
import resource
from pathlib import Path

import torch

from fip.errors import FipError

DEVICE_CLASSES = ("cpu", "cpu-bf16", "cuda", "mps")
DEVICE_TYPES = ("cpu", "cuda", "mps")
CPU_CLASSES = ("cpu", "cpu-bf16")
DEVICE_CLASS_ENV = "FIP_DEVICE_CLASS"  # cpu or cpu-bf16: the class of this machine's CPU, whatever it computes


class DeviceError(FipError, ValueError):
    """A device that does not exist here or cannot run what was asked."""


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` as a :class:`torch.device`; ``None`` is the first CUDA device when one is available, else the CPU.

    Raises:
        DeviceError: the name is not a device, or it is not available here (the message says what is).
    """
    if device is None:
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise DeviceError(f"{device!r} is not a device; use cpu, cuda, cuda:N or mps") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DeviceError(
            f"device {device!r}: CUDA is not available here (this PyTorch {torch.__version__} sees no "
            "GPU); use --device cpu"
        )
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise DeviceError(f"device {device!r}: there are {torch.cuda.device_count()} CUDA devices here")
    if resolved.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise DeviceError(f"device {device!r}: Apple's MPS is not available here; use --device cpu")
    if resolved.type not in DEVICE_TYPES:
        raise DeviceError(f"device {device!r}: fip runs on {', '.join(DEVICE_TYPES)}")
    return resolved


def device_class(device: torch.device) -> str:
    """The class whose timings apply to ``device`` (see the module docstring)."""
    if device.type == "cpu":
        return "cpu-bf16" if native_bf16(device) else "cpu"
    return device.type


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 natively (else fip runs ``bf16`` approximators in another precision);
    on the CPU, ``$FIP_DEVICE_CLASS`` decides where it is set."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    forced = forced_cpu_class()
    if forced is not None:
        return forced == "cpu-bf16"
    return bool({"avx512_bf16", "amx_bf16", "bf16"} & cpu_flags())


def forced_cpu_class() -> str | None:
    """The CPU class ``$FIP_DEVICE_CLASS`` sets, or ``None`` (unset: the CPU's flags decide).

    Raises:
        DeviceError: it names no CPU class.
    """
    text = os.environ.get(DEVICE_CLASS_ENV, "").strip().lower()
    if not text:
        return None
    if text not in CPU_CLASSES:
        raise DeviceError(
            f"{DEVICE_CLASS_ENV}={text!r} is not a CPU class; set it to {' or '.join(CPU_CLASSES)}, "
            "or unset it to detect the class from the CPU"
        )
    return text


def describe(device: torch.device) -> str:
    """The device in words, for reports: the CPU model and core count, or the GPU's name."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    if device.type == "mps":
        return f"Apple MPS ({platform.machine()}), torch {torch.__version__}"
    return f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads, torch {torch.__version__}"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The feature flags of this CPU (x86 ``flags``, Arm ``Features``; empty where the system does not say)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def int8_saturates(device: torch.device) -> bool:
    """Whether ONNX Runtime's fast int8 products overflow on ``device``: an x86 CPU without VNNI (AVX2, or
    AVX-512 without VNNI) multiplies uint8 activations by int8 weights with ``vpmaddubsw``, which adds two products
    into a saturating 16-bit integer (``2 * 255 * 127`` does not fit), and a network's output comes out wrong
    (measured here: 38 to 41 dB PSNR against the exact int8 result on an AVX2 CPU, against 57+ dB when it does not
    saturate)."""
    return (
        device.type == "cpu"
        and platform.machine().lower() in ("x86_64", "amd64", "i686")
        and not {"avx512_vnni", "avx_vnni"} & cpu_flags()
    )


def int8_unavailable(device: torch.device) -> str | None:
    """Why ONNX Runtime's int8 networks cannot run on ``device``, or ``None`` when they can.

    On x86 CPUs where the fast int8 products saturate (:func:`int8_saturates`), :class:`fip.runtime.onnx.OrtNet`
    has ONNX Runtime multiply unsigned by unsigned 8-bit numbers instead (its ``session.x64quantprecision`` mode:
    the weights shifted by 128 onto uint8, products widened to 16 bits before they are added), which gives the
    same results as a VNNI CPU, more slowly; so int8 runs on every CPU ONNX Runtime runs on.
    """
    try:
        import onnxruntime
    except ImportError:
        return "ONNX Runtime is not installed (pip install onnxruntime)"
    if device.type == "cuda":
        if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
            return "ONNX Runtime has no CUDA provider here (pip install onnxruntime-gpu)"
        return None
    if device.type != "cpu":
        return f"ONNX Runtime does not run on {device.type}"
    return None


def dtype_for(precision: str, device: torch.device) -> torch.dtype:
    """The torch dtype a precision runs in on ``device``: ``bf16`` is bfloat16 where the device computes it natively,
    else float16 on a GPU and float32 on a CPU (see the module docstring)."""
    if precision == "bf16":
        if native_bf16(device):
            return torch.bfloat16
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if precision == "fp16":
        if device.type == "cpu":
            raise DeviceError("fp16 runs on GPUs; on the CPU use bf16")
        return torch.float16
    return torch.float32


def synchronize(device: torch.device) -> None:
    """Wait for ``device``'s queued work (timings of GPU work need it)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


MEMORY_LIMIT_ENV = "FIP_MEMORY_LIMIT"  # bytes, or a number with a K, M, G suffix: what fip may plan to use


def available_memory(device: torch.device) -> int:
    """Bytes fip may plan to allocate on ``device`` now.

    On a GPU, the free device memory. On the CPU, the least of: the system's available memory, the room left
    under this process's cgroup limit, under its address-space limit (``ulimit -v``), and ``$FIP_MEMORY_LIMIT``.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    limits = [_meminfo_available(), _cgroup_room(), _rlimit_room(), _env_limit()]
    known = [v for v in limits if v is not None]
    return max(0, min(known)) if known else 1 << 40


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            text = Path(limit_file).read_text().strip()
            if text == "max" or int(text) >= 1 << 60:
                return None
            return int(text) - int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
    return None


def _rlimit_room() -> int | None:
    """Room under ``ulimit -v``: the limit minus this process's address space now."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return soft
    return soft - pages * os.sysconf("SC_PAGE_SIZE")


def _env_limit() -> int | None:
    text = os.environ.get(MEMORY_LIMIT_ENV, "").strip().upper()
    if not text:
        return None
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        return int(float(text[:-1]) * units[text[-1]]) if text[-1] in units else int(float(text))
    except ValueError:
        raise DeviceError(f"{MEMORY_LIMIT_ENV}={text!r} is not a size; write bytes or e.g. 8G, 512M") from None


__all__ = [
    "CPU_CLASSES",
    "DEVICE_CLASSES",
    "DEVICE_CLASS_ENV",
    "DEVICE_TYPES",
    "DeviceError",
    "available_memory",
    "cpu_flags",
    "describe",
    "device_class",
    "dtype_for",
    "forced_cpu_class",
    "int8_saturates",
    "int8_unavailable",
    "native_bf16",
    "resolve_device",
    "synchronize",
]
