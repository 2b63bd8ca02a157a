"""Entry-point discovery and the clash policy that the operator registry (``fip.operators``) and the model catalogue
(``fip.models``) share.

Discovery (:func:`discover`) lists a group's entry points with fip's own first, then the others by distribution
and name, and leaves third-party ones out when ``FIP_DISABLE_PLUGINS=1``. The policy (:class:`NameClaims`) decides
who owns a name that several entry points claim:

* fip's own keeps its names: another claim of one is *shadowed* (ignored, and reported);
* two claims from other sources *disable* the name (a clash): asking for it names every source, and the rest of
  fip keeps working;
* a claim of the same thing again (a module seen at its import and again when its entry point is loaded) is no
  claim at all.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from fip.errors import DISTRIBUTION

DISABLE_PLUGINS_ENV = "FIP_DISABLE_PLUGINS"
BUILTIN_DISTRIBUTION = DISTRIBUTION  # fip's own entry points come from this distribution

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Plugin:
    """One entry point of a group, with the distribution that installed it."""

    entry_point: importlib.metadata.EntryPoint
    distribution: str | None

    @property
    def builtin(self) -> bool:
        """Whether it is one of fip's own."""
        return self.distribution == BUILTIN_DISTRIBUTION

    @property
    def source(self) -> str:
        """How messages name it: ``distribution (entry point name = value)``."""
        ep = self.entry_point
        return f"{self.distribution or 'unknown distribution'} (entry point {ep.name} = {ep.value})"

    def load(self) -> Any:
        return self.entry_point.load()


def plugins_disabled() -> bool:
    """Whether ``FIP_DISABLE_PLUGINS`` asks for fip's own operators and models only."""
    return os.environ.get(DISABLE_PLUGINS_ENV, "").strip().lower() in {"1", "true", "yes"}


def discover(entry_points: Iterable[importlib.metadata.EntryPoint]) -> list[Plugin]:
    """``entry_points`` as plugins in loading order: fip's own first, then by distribution and name; without the
    third-party ones when :func:`plugins_disabled`."""
    plugins = [Plugin(ep, _distribution_name(ep)) for ep in entry_points]
    plugins.sort(key=lambda p: (not p.builtin, (p.distribution or "").lower(), p.entry_point.name))
    if plugins_disabled():
        for skipped in (p for p in plugins if not p.builtin):
            logger.info("skipping plugin %s (%s=1)", skipped.source, DISABLE_PLUGINS_ENV)
        return [p for p in plugins if p.builtin]
    return plugins


def group_entry_points(group: str) -> Callable[[], Iterable[importlib.metadata.EntryPoint]]:
    """The installed entry points of ``group``, read when called."""
    return lambda: importlib.metadata.entry_points(group=group)


def load_failure(exc: BaseException) -> str:
    """Why a plugin failed to import, in words: its exception, or the exit it asked for (a module-level argparse
    exits with status 2)."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r}) while being imported"
    return f"{type(exc).__name__}: {exc}"


def _distribution_name(ep: importlib.metadata.EntryPoint) -> str | None:
    dist = getattr(ep, "dist", None)
    return None if dist is None else dist.metadata["Name"]


@dataclass
class Claim(Generic[T]):
    """``item`` claimed under a name by ``source`` (one of fip's own when ``builtin``)."""

    item: T
    source: str
    builtin: bool = False


class NameClaims(Generic[T]):
    """The names that sources claim, under the policy in the module docstring.

    Args:
        kind: what the names name, for messages (``"operator"``, ``"model"``).
        verb: what a source does to a name, for messages (``"register"``, ``"install"``).
        same: whether two items are the same thing claimed again (default: identity).
    """

    def __init__(self, kind: str, verb: str, same: Callable[[T, T], bool] = lambda a, b: a is b):
        self.kind, self.verb, self._same = kind, verb, same
        self.kept: dict[str, Claim[T]] = {}
        self.clashes: dict[str, list[Claim[T]]] = {}  # disabled names: every claim of each
        self.shadowed: dict[str, list[Claim[T]]] = {}  # claims ignored because fip's own holds the name

    def claim(self, name: str, claim: Claim[T]) -> str:
        """Record ``claim`` of ``name``; returns what became of it: ``kept`` (it holds the name), ``same`` (the
        holder claimed the same thing again), ``shadowed`` (fip's own holds the name) or ``clash`` (the name is
        disabled)."""
        holder = self.kept.get(name)
        if name in self.clashes:
            self._add_new(self.clashes[name], claim)
            return "clash"
        if holder is None:
            self.kept[name] = claim
            return "kept"
        if self._same(holder.item, claim.item):  # the latest source names it (an entry point after an import)
            self.kept[name] = Claim(claim.item, claim.source, claim.builtin or holder.builtin)
            return "same"
        if holder.builtin:
            self._add_new(self.shadowed.setdefault(name, []), claim)
            return "shadowed"
        if claim.builtin:  # held by something else before discovery: fip's own takes the name back
            self._add_new(self.shadowed.setdefault(name, []), holder)
            self.kept[name] = claim
            return "kept"
        self.clashes[name] = [self.kept.pop(name), claim]
        return "clash"

    def sources(self, name: str) -> list[str]:
        """The sources of a disabled name, each once."""
        return list(dict.fromkeys(c.source for c in self.clashes[name]))

    def clash_text(self, name: str) -> str:
        """Why ``name`` is disabled, naming every source, and what to do."""
        sources = self.sources(name)
        if len(sources) == 1:
            who = f"{sources[0]} {self.verb}s it twice"
        else:
            who = f"{', '.join(sources[:-1])} and {sources[-1]} {'both' if len(sources) == 2 else 'all'} {self.verb} it"
        return (
            f"{self.kind} {name!r} is disabled: {who}, and fip cannot tell which one you mean. Uninstall one of "
            f"them (pip uninstall DISTRIBUTION) or ask its author to rename the {self.kind}"
        )

    def snapshot(self) -> NameClaims[T]:
        """A copy to restore when a source fails halfway (a plugin that is skipped claims nothing)."""
        other = NameClaims(self.kind, self.verb, self._same)
        other.kept = dict(self.kept)
        other.clashes = {name: list(claims) for name, claims in self.clashes.items()}
        other.shadowed = {name: list(claims) for name, claims in self.shadowed.items()}
        return other

    def _add_new(self, claims: list[Claim[T]], claim: Claim[T]) -> None:
        if all(not self._same(known.item, claim.item) for known in claims):
            claims.append(claim)


__all__ = [
    "BUILTIN_DISTRIBUTION",
    "DISABLE_PLUGINS_ENV",
    "Claim",
    "NameClaims",
    "Plugin",
    "discover",
    "group_entry_points",
    "load_failure",
    "plugins_disabled",
]
