"""fip's exception hierarchy.

Every error fip raises on purpose is a :class:`FipError`. Each subclass also derives from the builtin exception
that fits, so callers may catch either (``except ValueError`` keeps working for a bad parameter).
Messages name the bad value and say how to fix it.
"""

from __future__ import annotations


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
