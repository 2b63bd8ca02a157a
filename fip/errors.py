"""fip's exception hierarchy.

Every error fip raises on purpose is a :class:`FipError`. Each subclass also derives from the builtin exception
that fits, so callers may catch either (``except ValueError`` keeps working for a bad parameter).
Messages name the bad value and say how to fix it. :func:`require_extra` turns a missing optional dependency into
a :class:`MissingExtraError` that names the pip command.
"""

from __future__ import annotations

import importlib


class FipError(Exception):
    """Base class of all errors raised by fip on purpose."""


class UnknownOperatorError(FipError, KeyError):
    """An operator name that is not registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DuplicateOperatorError(FipError, ValueError):
    """Two sources registered the same operator name."""


class ParameterError(FipError, ValueError):
    """A wrong operator parameter name, type or out-of-range value."""


class InputError(FipError, ValueError):
    """An image or array that does not have the expected shape, dtype or range."""


class SourceError(FipError, ValueError):
    """A photo source that is missing, empty or malformed (dataset root, split file, folder)."""


class UnreadablePhotoError(FipError, OSError):
    """A file that is not an image or raw file fip can read."""


class ConfigNotFoundError(FipError, FileNotFoundError):
    """A training config that is neither a file nor one of the configs fip installs (``fip train -c NAME``)."""


class MissingExtraError(FipError, ImportError):
    """A command needs an optional dependency group (an "extra") that is not installed.

    The message is one line with the pip command that installs it.
    """


# fip's name on the package index. The import name and the command stay ``fip``: the name ``fip`` on PyPI belongs
# to an unrelated radio client, so ``pip install fip`` would install that instead.
DISTRIBUTION = "fip-photo"

# Each optional dependency group of ``pyproject.toml``: the import names it provides (checked against
# pyproject.toml by tests/test_packaging.py) and what needs it, for the message.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "train": ("pytorch_lightning", "jsonargparse", "tensorboard"),
    "demo": ("gradio",),
    "dask": ("distributed",),
    "compress": ("onnx", "onnxscript"),
    "plot": ("matplotlib",),
}
EXTRA_USERS: dict[str, str] = {
    "train": "training (fip train, fip quickstart)",
    "demo": "fip demo",
    "dask": "a Dask cluster (--scheduler)",
    "compress": "ONNX export (fip export --out FILE.onnx)",
    "plot": "plotting (fip bench --plot)",
}


def require_extra(extra: str, *modules: str, needed_by: str | None = None) -> None:
    """Import the packages of an optional dependency group, or say in one line how to install them.

    Args:
        extra: the group's name in ``pyproject.toml`` (``train``, ``demo``, ``dask``, ``compress``, ``plot``).
        *modules: the import names to check (default: all of ``EXTRA_MODULES[extra]``).
        needed_by: what needs them, for the message (default: ``EXTRA_USERS[extra]``, e.g. ``fip demo``).

    Raises:
        MissingExtraError: one of them cannot be imported, e.g. ``fip demo needs the demo extra (gradio is not
            installed): pip install 'fip-photo[demo]'``.
    """
    for module in modules or EXTRA_MODULES[extra]:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            missing = module.partition(".")[0]
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]  # one line, whatever the package raised
            why = f"{missing} is not installed" if exc.name == missing else f"{module} could not be imported: {reason}"
            raise MissingExtraError(
                f"{needed_by or EXTRA_USERS[extra]} needs the {extra} extra ({why}): "
                f"pip install '{DISTRIBUTION}[{extra}]'"
            ) from exc
