"""The model catalogue: installed models, found through the entry-point group ``fip.models``.

Each entry point names a package (or module) whose folder holds model folders, one ``card.json`` each
(:mod:`fip.models.cards`), or a list of model folders, or a function returning one. fip's own models arrive through
the same group (``fip = "fip.models.zoo"``), so a plugin distribution ships models for its operators exactly as fip
does::

    [project.entry-points."fip.models"]
    my_models = "my_plugin.models"          # my_plugin/models/<model>/card.json, ...

Models you built need no package: ``FIP_MODEL_PATH`` lists model folders (``fip build``'s ``--out``), or folders
holding them, separated like ``PATH``; they are found after the installed ones and, for an operator, run before them
(``fip apply -o smooth.l0``, the demo). One whose name is taken (by an installed model, or an earlier folder) is
skipped with a warning; it never disables another.

Discovery is lazy, cached and in a deterministic order (fip's own first, then by distribution and entry point).
A card that cannot be read, or a plugin's card that takes the name of one of fip's own models, is skipped with a
:class:`ModelLoadWarning` naming it (fip's own model keeps its name). A name that two plugin cards take is disabled:
a :class:`ModelLoadWarning` names both, and opening that name raises a :class:`~fip.errors.FipError` naming them;
every other model keeps working. ``FIP_DISABLE_PLUGINS=1`` skips third-party models too (not ``FIP_MODEL_PATH``'s).

:func:`open_model` turns any name a user may type into a :class:`Model`: a catalogue name (``fip/smooth.l0``), an
operator name (``smooth.l0``: the model installed for it), ``paper/<Operator>`` (the authors' networks), a model
folder, or a single network file (``.pt``, ``.ckpt``). Every model has the approximator ``reference-lowres``, and
an operator without any model gets a model of that approximator alone.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
import types
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fip.conditioning import Conditioning, from_json
from fip.errors import FipError
from fip.files import sha256_file
from fip.models.cards import (
    CARD_FILE,
    REFERENCE_LOWRES,
    Approximator,
    CardError,
    ModelCard,
    NetworkEntry,
    Upsampler,
    read_card,
)
from fip.models.families import family_of
from fip.models.storage import NetworkFile, load_network, net_config
from fip.plugins import DISABLE_PLUGINS_ENV, Claim, NameClaims, discover, group_entry_points, load_failure

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "fip.models"
MODEL_PATH_ENV = "FIP_MODEL_PATH"  # model folders (fip build's), or folders of them, separated like PATH

# The untrained approximation every operator has: the reference on the photo at a third of its size, brought back
# with a colour guided filter fitted between the small photo and the small result.
REFERENCE_LOWRES_APPROXIMATOR = Approximator(
    name=REFERENCE_LOWRES,
    scale=1 / 3,
    max_working_megapixels=2.0,
    upsampler=Upsampler("colour-guided", radius=1, eps=1e-4),
    description="the reference operator at a third of the size, colour-guided upsampling (no training)",
)
# The same at half the size: four times the reference's work of a third's, for operators whose detail a third loses.
REFERENCE_HALFRES_APPROXIMATOR = Approximator(
    name="reference-halfres",
    scale=1 / 2,
    max_working_megapixels=2.0,
    upsampler=Upsampler("colour-guided", radius=1, eps=1e-4),
    description="the reference operator at half the size, colour-guided upsampling (no training)",
)


class ModelLoadWarning(UserWarning):
    """An installed model could not be read, or its name was taken; fip goes on without it."""


class Model:
    """A model card opened for use: its networks are loaded on first use and checked against the card's digests.

    Args:
        card: what the model is (:class:`~fip.models.cards.ModelCard`).
    """

    def __init__(self, card: ModelCard):
        self.card = card
        self._networks: dict[str, Any] = {}
        self._lock = threading.Lock()

    @classmethod
    def of_network(cls, network: NetworkFile | Any, operator: str | None = None) -> Model:
        """A model of one network already in memory (a :class:`~fip.models.storage.NetworkFile`, or a bare network
        for ``operator``), with the approximators of :func:`card_for_network`."""
        if not isinstance(network, NetworkFile):
            network = NetworkFile(network, f"network for {operator}", operator)
        model = cls(card_for_network(network, kind="memory"))
        model._networks["net"], model._networks["net#file"] = network.net, network
        return model

    def __repr__(self) -> str:
        return f"Model({self.card.name!r}, approximators={list(self.card.approximators)})"

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def operator(self) -> str | None:
        return self.card.operator

    @property
    def params(self) -> dict[str, Any]:
        return self.card.params

    @property
    def conditioning(self) -> Conditioning | None:
        return from_json(self.card.conditioning)

    def maps(self, operator: str | None = None, params: dict[str, Any] | None = None) -> tuple[float, ...] | None:
        """The extra input maps that ask the networks for ``operator`` with ``params`` (``None``: RGB only)."""
        conditioning = self.conditioning
        if conditioning is None:
            return None
        operator = operator or self.operator
        if operator is None:
            raise FipError(
                f"{self.name} serves several operators ({', '.join(conditioning.operators)}): name one (--operator)"
            )
        return conditioning.maps(operator, params if params is not None else self.params)

    def network(self, key: str) -> Any:
        """Network ``key`` of the card: a PyTorch module (float32, CPU, eval mode) or, for an ONNX file, its path.

        Raises:
            FipError: the file is missing, does not match the card's SHA-256, or holds no network.
        """
        with self._lock:
            if key not in self._networks:
                self._networks[key] = self._open(key)
            return self._networks[key]

    def network_file(self, key: str) -> NetworkFile | None:
        """The network file behind ``key`` (``None`` for ONNX files)."""
        self.network(key)
        return self._networks.get(f"{key}#file")

    def _open(self, key: str) -> Any:
        entry = self.card.networks[key]
        where = self.card.path_of(key)
        if entry.kind == "paper":
            network = load_network(str(where))
            self._networks[f"{key}#file"] = network
            return network.net
        path = Path(where)
        if not path.is_file():
            raise FipError(f"model {self.name}: its {key!r} file {path} is missing; reinstall the model")
        if entry.sha256 is not None and sha256_file(path) != entry.sha256:
            raise FipError(
                f"model {self.name}: {path} does not match the SHA-256 its card records (damaged or "
                "replaced); reinstall the model"
            )
        if entry.kind == "onnx":
            return path
        network = load_network(path)
        self._networks[f"{key}#file"] = network
        return network.net


class Catalogue:
    """The models installed through entry points; see the module docstring."""

    def __init__(self, entry_points: Callable[[], Iterable[importlib.metadata.EntryPoint]] | None = None):
        self._entry_points = entry_points or group_entry_points(ENTRY_POINT_GROUP)
        self._cards: dict[str, ModelCard] | None = None
        self._claims: NameClaims[ModelCard] = NameClaims("model", "install")
        self._user: set[str] = set()  # names of the models found through MODEL_PATH_ENV
        self._warned: set[str] = set()  # operators with several of those, each warned about once
        self._lock = threading.RLock()

    def cards(self) -> list[ModelCard]:
        """Every installed model's card, fip's own first."""
        return list(self._discover().values())

    def get(self, name: str) -> ModelCard | None:
        """The installed model named ``name``, or ``None``.

        Raises:
            FipError: ``name`` is disabled because two plugins install a model of that name; names both.
        """
        cards = self._discover()
        if name in self._claims.clashes:
            raise FipError(
                f"{self._claims.clash_text(name)}; {DISABLE_PLUGINS_ENV}=1 runs fip with its own models only"
            )
        return cards.get(name)

    def for_operator(self, operator: str) -> ModelCard | None:
        """The model that runs ``operator``: the first made for it in :data:`MODEL_PATH_ENV`'s folders (models you
        built), else the first installed (fip's own before plugins')."""
        with self._lock:  # the cards and the user's names of one discovery
            cards = [c for c in self._discover().values() if c.operator == operator]
            yours = [c for c in cards if c.name in self._user]
            if len(yours) > 1 and operator not in self._warned:
                self._warned.add(operator)
                listed = ", ".join(f"{c.name} ({c.root})" for c in yours)
                _warn(
                    f"{MODEL_PATH_ENV} holds {len(yours)} models for {operator}: {listed}; fip runs the first, "
                    f"{yours[0].name} (pass -m with another's name or folder to run it)",
                    user=True,
                )
        return next(iter(yours), None) or next(iter(cards), None)

    def refresh(self) -> None:
        """Forget what was discovered (after installing a model into a running process)."""
        with self._lock:
            self._cards = None
            self._claims = NameClaims("model", "install")
            self._warned = set()
        with _kept_lock:
            _kept_models.clear()

    def _discover(self) -> dict[str, ModelCard]:
        with self._lock:
            if self._cards is not None:
                return self._cards
            claims: NameClaims[ModelCard] = NameClaims("model", "install")
            for plugin in discover(self._entry_points()):
                try:
                    folders = _folders_of(plugin.load())
                except (Exception, SystemExit) as exc:  # a broken plugin must not take fip down
                    _warn(f"model plugin {plugin.source} failed to load and is skipped: {load_failure(exc)}")
                    continue
                for folder in folders:
                    try:
                        card = read_card(folder)
                    except CardError as exc:
                        _warn(f"skipping the model in {folder} from {plugin.source}: {exc}")
                        continue
                    held = claims.kept.get(card.name)
                    outcome = claims.claim(card.name, Claim(card, f"{plugin.source} in {folder}", plugin.builtin))
                    if outcome == "shadowed":
                        # fip's own model keeps its name: a plugin cannot change what `fip/...` runs.
                        _warn(
                            f"skipping the model {card.name!r} in {folder} from {plugin.source}: that name is "
                            f"already installed from {held.item.root}"
                        )
            cards = {name: claim.item for name, claim in claims.kept.items()}
            user = self._user_models(cards, set(claims.clashes))
            self._cards, self._claims, self._user = cards, claims, user
            for name in sorted(claims.clashes):
                _warn(f"{claims.clash_text(name)}; every other model keeps working")
            return cards

    @staticmethod
    def _user_models(cards: dict[str, ModelCard], disabled: set[str]) -> set[str]:
        """Add the models in :data:`MODEL_PATH_ENV`'s folders to ``cards`` (each folder once; a name already
        taken keeps its first model, and the later one is skipped with a warning); their names."""
        user, seen = set(), set()
        for entry in filter(None, os.environ.get(MODEL_PATH_ENV, "").split(os.pathsep)):
            root = Path(entry).expanduser()
            if not root.is_dir():
                _warn(f"{MODEL_PATH_ENV} names {root}, which is not a folder; it is skipped", user=True)
                continue
            for folder in _model_folders(root):
                if folder.resolve() in seen:
                    continue
                seen.add(folder.resolve())
                try:
                    card = read_card(folder)
                except CardError as exc:
                    _warn(f"skipping the model in {folder} (from {MODEL_PATH_ENV}): {exc}", user=True)
                    continue
                if card.name in cards or card.name in disabled:
                    where = cards[card.name].root if card.name in cards else "two plugins"
                    _warn(
                        f"skipping the model in {folder} (from {MODEL_PATH_ENV}): the name {card.name!r} is "
                        f"already taken by {where}; rename it (fip package --name) or list only one",
                        user=True,
                    )
                    continue
                cards[card.name] = card
                user.add(card.name)
        return user


def _warn(message: str, user: bool = False) -> None:
    """Warn about a model skipped: a plugin's (``FIP_DISABLE_PLUGINS`` skips those) or, with ``user``, one of
    the user's own folders."""
    advice = f"fix {MODEL_PATH_ENV}" if user else f"Set {DISABLE_PLUGINS_ENV}=1 to skip third-party models"
    warnings.warn(f"fip: {message}. {advice}.", ModelLoadWarning, stacklevel=4)


def _folders_of(loaded: Any) -> list[Path]:
    """The model folders an entry point names: a package's subfolders holding a card (and its own folder, if it
    holds one), a list of folders, or what a function returns."""
    if callable(loaded) and not isinstance(loaded, types.ModuleType):
        loaded = loaded()
    if isinstance(loaded, types.ModuleType):
        folder = Path(loaded.__file__).parent if getattr(loaded, "__file__", None) else None
        if folder is None:
            raise TypeError(f"module {loaded.__name__} has no folder")
        return _model_folders(folder)
    if isinstance(loaded, (list, tuple)):
        return [Path(p) for p in loaded]
    raise TypeError(
        f"entry point value is a {type(loaded).__name__}; it must name a package of model folders, "
        "a list of folders, or a function returning one"
    )


def _model_folders(folder: Path) -> list[Path]:
    """``folder`` itself when it holds a card, else its subfolders that do (not hidden ones: ``fip package``
    writes a copy in a hidden folder before renaming it into place)."""
    if (folder / CARD_FILE).is_file():
        return [folder]
    return sorted(p.parent for p in folder.glob(f"*/{CARD_FILE}") if not p.parent.name.startswith("."))


_catalogue = Catalogue()


def default_catalogue() -> Catalogue:
    return _catalogue


def list_models(operator: str | None = None) -> list[ModelCard]:
    """Installed models' cards (optionally only those made for ``operator``), fip's own first."""
    return [c for c in _catalogue.cards() if operator is None or c.operator == operator]


def network_approximators(net: Any) -> list[Approximator]:
    """The approximators fip offers for one network without measurements (its family's:
    :mod:`fip.models.families`): for a context aggregation network ``full``, ``fast``, ``bf16`` and
    ``network-lowres`` (``full`` and ``bf16`` with running statistics); for a guided network ``lowres``; for a
    bilateral-grid network ``grid``."""
    return family_of(net).approximators(net)


def card_for_network(network: NetworkFile, kind: str = "fip") -> ModelCard:
    """A card made on the fly for one network (``kind``: ``fip`` for a file, ``paper`` for ``paper/<Operator>``,
    ``memory`` for one only in memory): its approximators are :func:`network_approximators` and
    ``reference-lowres``; nothing is measured, so ``auto`` runs the default (``fast`` for a plain network)."""

    net = network.net
    path = Path(network.name) if kind == "fip" else None
    entry = NetworkEntry(
        path.name if path else network.name, "paper" if kind == "paper" else "fip", architecture=net_config(net)
    )
    approximators = network_approximators(net)
    approximators.append(REFERENCE_LOWRES_APPROXIMATOR)
    return ModelCard(
        name=network.name,
        operator=network.operator,
        params=network.params,
        networks={"net": entry},
        approximators={a.name: a for a in approximators},
        conditioning=network.conditioning.to_json() if network.conditioning else None,
        description="a single network file, not measured",
        root=path.parent if path else None,
    )


def reference_card(operator: str) -> ModelCard:
    """The model of an operator that has none: ``reference-lowres`` alone."""
    from fip.registry import get_operator

    spec = get_operator(operator)  # an unknown name fails here, naming the registered ones
    return ModelCard(
        name=f"reference/{spec.name}",
        operator=spec.name,
        params=spec.resolve_params(),
        approximators={REFERENCE_LOWRES: REFERENCE_LOWRES_APPROXIMATOR},
        description="no trained model: the reference operator at low resolution",
    )


def open_model(name_or_path: str | os.PathLike[str] | ModelCard) -> Model:
    """A :class:`Model` from any name a user may give (see the module docstring), tried in this order: a card; an
    installed model's name; ``paper/<Operator>``; a registered operator's name (its installed model, else the
    authors' network for it, else ``reference-lowres`` alone); an existing model folder, card file or network file.

    Models opened by name (not by path) are kept for the process, so their networks load and are prepared once.

    Raises:
        FipError: nothing of that name, or a file that holds no model; the message lists what exists.
    """
    from fip.registry import default_registry

    if isinstance(name_or_path, ModelCard):
        return Model(name_or_path)
    text = str(name_or_path)
    if (card := _catalogue.get(text)) is not None:
        return _kept(text, lambda: Model(card))
    if text.startswith("paper/"):
        return _kept(text, lambda: Model(card_for_network(load_network(text), kind="paper")))
    registry = default_registry()
    if text in registry.names() or text in registry.disabled():
        registry.get(text)  # a disabled name fails here, naming the plugins that register it
        return model_for_operator(text)
    path = Path(text).expanduser()
    if path.is_dir() or path.name == CARD_FILE:
        return Model(read_card(path))
    if path.is_file():
        return Model(card_for_network(load_network(path)))
    installed = ", ".join(c.name for c in _catalogue.cards()) or "none"
    raise FipError(
        f"no model, operator or file named {text!r}. Installed models: {installed}; also "
        "'paper/<Operator>', any registered operator's name (`fip operators`), a model folder, "
        "or a .pt/.ckpt file"
    )


def model_for_operator(operator: str) -> Model:
    """The model for ``operator``: the installed one, else the authors' network for it, else ``reference-lowres``."""
    from fip.models.paper import paper_network_for

    if (card := _catalogue.for_operator(operator)) is not None:
        return _kept(card.name, lambda: Model(card))
    if (paper := paper_network_for(operator)) is not None:
        return _kept(paper, lambda: Model(card_for_network(load_network(paper), kind="paper")))
    return _kept(f"reference/{operator}", lambda: Model(reference_card(operator)))


_kept_models: dict[str, Model] = {}
_kept_lock = threading.Lock()


def _kept(name: str, make: Callable[[], Model]) -> Model:
    """The model of ``name`` made once per process (until the catalogue is refreshed)."""
    installed = _catalogue.get(name)
    with _kept_lock:
        kept = _kept_models.get(name)
        if kept is None or (installed is not None and kept.card is not installed):  # another catalogue's card
            kept = _kept_models[name] = make()
        return kept


def open_warm_start(name_or_path: str | os.PathLike[str]) -> NetworkFile:
    """The network a training run starts from: an installed model's main network for its name (``fip/smooth.rtv``,
    a related operator's model) or a model folder, ``paper/<Operator>``, or a network file.

    Raises:
        FipError: no such model or file (an unknown ``fip/...`` name lists the installed models).
    """
    text = str(name_or_path)
    card = _catalogue.get(text)
    if card is None and Path(text).expanduser().is_dir():
        card = read_card(Path(text).expanduser())
    if card is not None:
        key = "net" if "net" in card.networks else next((k for k, e in card.networks.items() if e.kind != "onnx"), None)
        if key is None:
            raise FipError(f"model {card.name} has no PyTorch network to start training from")
        return Model(card).network_file(key)
    if text.startswith("fip/") and not Path(text).exists():
        installed = ", ".join(c.name for c in _catalogue.cards()) or "none"
        raise FipError(f"no installed model {text!r} to start from; installed: {installed}")
    return load_network(text)


__all__ = [
    "ENTRY_POINT_GROUP",
    "MODEL_PATH_ENV",
    "REFERENCE_HALFRES_APPROXIMATOR",
    "REFERENCE_LOWRES_APPROXIMATOR",
    "Catalogue",
    "Model",
    "ModelLoadWarning",
    "card_for_network",
    "default_catalogue",
    "list_models",
    "model_for_operator",
    "network_approximators",
    "open_model",
    "open_warm_start",
    "reference_card",
]
