"""Model cards: the small, versioned record that describes a model beside its files.

A model is one folder: ``card.json`` and the files it names. The card says what the model approximates (operator,
parameters, conditioning), which networks it has (file, SHA-256, architecture), its **approximators** (each a way
to approximate the operator: which network, in which precision, with which normalization statistics, at which
resolution, and how the result is brought back to full size), what each approximator scored against the reference
operator on named photo sets, how long it took per device class, and where the model came from (data, steps,
config, warm start, fip version) under which licence. ``docs/models.md`` documents the format with an example.

Photo sets have a role: the engine's ``auto`` reads quality only from the set whose role is ``choose``
(validation photos); sets with the role ``report`` are what the documentation reports, and never steer a choice.

Nothing here loads a network: :mod:`fip.models.catalogue` finds cards and opens their files.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from fip.errors import FipError
from fip.files import atomic_write_bytes

CARD_FORMAT = "fip-card-1"
CARD_FILE = "card.json"

PRECISIONS = ("fp32", "bf16", "fp16", "int8")
STATISTICS = ("image", "preview", "running")
NETWORK_KINDS = ("fip", "paper", "onnx")
UPSAMPLERS = ("guided", "colour-guided")
ROLES = ("choose", "report")
REFERENCE_LOWRES = "reference-lowres"
REFERENCE = "reference"  # the operator itself: not an approximator, but a plan auto may choose where it is fastest


class CardError(FipError, ValueError):
    """A model card that is missing, malformed or inconsistent with its files."""


@dataclass(frozen=True)
class NetworkEntry:
    """One network file of a model.

    Attributes:
        file: path relative to the card's folder (for ``paper`` networks: the ``paper/<Operator>`` name).
        kind: ``fip`` (a fip network file or checkpoint), ``paper`` (the authors' weights inside fip) or ``onnx``
            (an ONNX file run by ONNX Runtime).
        sha256: the file's digest, checked when the file is opened (``None``: not checked).
        architecture: the constructor arguments of the network (:func:`fip.models.storage.net_config`).
        receptive_radius: pixels an output pixel sees (``onnx`` files: the halo tiles need).
        quantized_from: for an int8 file of a network with per-image statistics, the key of that float network:
            the engine folds each photo's preview statistics from it and requantizes the file's weights per photo
            (:class:`fip.runtime.onnx.PerPhotoInt8`).
        calibration: how an int8 file's activation ranges were chosen: ``method`` and each method's PSNR on the
            photo set it was chosen on (``psnr``, ``photo_set``).
    """

    file: str
    kind: str = "fip"
    sha256: str | None = None
    architecture: dict[str, Any] = field(default_factory=dict)
    receptive_radius: int | None = None
    quantized_from: str | None = None
    calibration: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in NETWORK_KINDS:
            raise CardError(f"network kind {self.kind!r} is not one of {', '.join(NETWORK_KINDS)}")


@dataclass(frozen=True)
class Quality:
    """PSNR (dB) and SSIM against the reference operator, means over ``photos`` photos at ``resolution``."""

    psnr: float
    ssim: float | None = None
    photos: int = 0
    resolution: str = "1080p"

    def __post_init__(self) -> None:
        if not isinstance(self.psnr, (int, float)) or isinstance(self.psnr, bool):
            raise CardError(f"a PSNR must be a number; got {self.psnr!r}")


@dataclass(frozen=True)
class Timing:
    """Median seconds for one photo of ``size`` (height, width) on a device of the class, measured on ``machine``."""

    seconds: float
    size: tuple[int, int] = (1080, 1920)
    machine: str = ""
    date: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.seconds, (int, float)) or isinstance(self.seconds, bool) or not self.seconds > 0:
            raise CardError(f"seconds must be a positive number; got {self.seconds!r}")


@dataclass(frozen=True)
class Upsampler:
    """How a low-resolution result is brought back to full size: a guided filter fitted between the small input
    and the small output and applied to the full-size input (He and Sun's fast guided filter). ``guided`` fits each
    output channel from the same input channel; ``colour-guided`` fits each from all three (He et al.'s colour
    guided filter). ``radius`` is in low-resolution pixels. ``guide`` names a learned guidance map in
    :attr:`ModelCard.networks` (:class:`~fip.models.guided.GuideMap`, trained for this upsampling): the filter is
    then fitted and applied to that map of the photo instead of the photo itself."""

    kind: str = "colour-guided"
    radius: int = 1
    eps: float = 1e-4
    guide: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in UPSAMPLERS:
            raise CardError(f"upsampler {self.kind!r} is not one of {', '.join(UPSAMPLERS)}")
        if self.radius < 1 or not self.eps > 0:
            raise CardError(f"an upsampler needs radius >= 1 and eps > 0; got {self.radius} and {self.eps}")


@dataclass(frozen=True)
class Approximator:
    """One way to approximate the operator.

    Attributes:
        name: its name (``full``, ``fast``, ``lowres``, ``reference-lowres``, ...).
        network: the key of the network it runs in :attr:`ModelCard.networks`; ``None`` for ``reference-lowres``,
            which runs the reference operator itself at low resolution.
        precision: ``fp32``, ``bf16``, ``fp16`` or ``int8`` (ONNX Runtime).
        statistics: where a context aggregation network's normalization statistics come from: ``image`` (the
            photo's own at every layer: the paper's exact semantics), ``preview`` (one pass over a downscaled copy
            of ``preview_megapixels``, folded into the convolutions) or ``running`` (fixed averages learned in
            training, folded once).
        preview_megapixels: the size of the statistics preview.
        scale: the working resolution as a fraction of the photo's side (``1/3``: a ninth of the pixels); ``None``
            runs at full resolution (a guided network downscales by its own factor).
        max_working_megapixels: the low-resolution work is capped at this size, so the cost of the reference (or
            network) stops growing with very large photos.
        upsampler: how a result made at ``scale`` returns to full size.
        description: one line for people.
        quality: photo set name -> what it scored there.
        seconds: device class -> how long it took.
    """

    name: str
    network: str | None = None
    precision: str = "fp32"
    statistics: str | None = None
    preview_megapixels: float | None = None
    scale: float | None = None
    max_working_megapixels: float | None = None
    upsampler: Upsampler | None = None
    description: str = ""
    quality: dict[str, Quality] = field(default_factory=dict)
    seconds: dict[str, Timing] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise CardError(f"approximator {self.name!r}: precision {self.precision!r} is not one of {PRECISIONS}")
        if self.statistics is not None and self.statistics not in STATISTICS:
            raise CardError(f"approximator {self.name!r}: statistics {self.statistics!r} is not one of {STATISTICS}")
        if self.scale is not None and not 0 < self.scale < 1:
            raise CardError(f"approximator {self.name!r}: scale {self.scale} must lie in (0, 1)")
        if self.scale is not None and self.upsampler is None:
            raise CardError(f"approximator {self.name!r} runs at a scale of {self.scale:g} but names no upsampler")
        if self.network is None and self.scale is None and self.name != REFERENCE:
            raise CardError(
                f"approximator {self.name!r} runs no network and no reduced resolution: that is the "
                f"reference itself, which every model offers as {REFERENCE!r}"
            )

    @property
    def network_keys(self) -> tuple[str, ...]:
        """The keys of every network it runs: its own and its upsampler's learned guide."""
        guide = self.upsampler.guide if self.upsampler else None
        return tuple(key for key in (self.network, guide) if key is not None)

    @property
    def runs_reference(self) -> bool:
        """Whether it runs the reference operator (at low resolution, or, for ``reference``, as it is)."""
        return self.network is None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"network": self.network, "precision": self.precision}
        for key in ("statistics", "preview_megapixels", "scale", "max_working_megapixels"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.upsampler is not None:
            out["upsampler"] = {"kind": self.upsampler.kind, "radius": self.upsampler.radius, "eps": self.upsampler.eps}
            if self.upsampler.guide is not None:
                out["upsampler"]["guide"] = self.upsampler.guide
        if self.description:
            out["description"] = self.description
        out["quality"] = {k: _plain(v) for k, v in sorted(self.quality.items())}
        out["seconds"] = {k: _plain(v) for k, v in sorted(self.seconds.items())}
        return out

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> Approximator:
        data = dict(data)
        _known(data, {f.name for f in fields(cls)} - {"name"}, f"approximator {name!r}")
        upsampler = data.pop("upsampler", None)
        quality = {k: _build(Quality, v, f"quality {k!r} of {name!r}") for k, v in data.pop("quality", {}).items()}
        seconds = {
            k: _build(Timing, {**v, "size": tuple(v.get("size", (1080, 1920)))}, f"seconds {k!r} of {name!r}")
            for k, v in data.pop("seconds", {}).items()
        }
        return cls(
            name=name,
            upsampler=_build(Upsampler, upsampler, f"upsampler of {name!r}") if upsampler else None,
            quality=quality,
            seconds=seconds,
            **data,
        )


@dataclass(frozen=True)
class PhotoSet:
    """A named set of photos approximators are measured on; ``role`` is ``choose`` (validation: ``auto`` reads it)
    or ``report`` (what the documentation reports; never used to choose)."""

    role: str
    description: str = ""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise CardError(f"photo set role {self.role!r} is not one of {', '.join(ROLES)}")


@dataclass(frozen=True)
class ModelCard:
    """What a model is, what it approximates and how well; see the module docstring.

    Attributes:
        name: the catalogue name (``fip/smooth.l0``); unique among installed models.
        operator: the operator it approximates (``None`` for a network of several, see ``conditioning``).
        params: the operator parameters it was made for.
        networks: key -> network file.
        approximators: name -> approximator, in the order people should read them.
        photo_sets: name -> photo set its measurements refer to.
        conditioning: the extra input maps of a network of several tasks (:mod:`fip.conditioning` JSON), or ``None``.
        description: what the model is, for people.
        licence: the licence its files are under, for people.
        provenance: how it was made: data, steps, config, warm start digest, fip version (free-form JSON).
        reference_seconds: device class -> how long the reference operator took on the photo the approximators
            were timed on (the reference runs on the CPU; the class names the machine's).
        root: the folder holding the card and its files (``None`` for a card fip made on the fly).
    """

    name: str
    operator: str | None
    params: dict[str, Any] = field(default_factory=dict)
    networks: dict[str, NetworkEntry] = field(default_factory=dict)
    approximators: dict[str, Approximator] = field(default_factory=dict)
    photo_sets: dict[str, PhotoSet] = field(default_factory=dict)
    conditioning: dict[str, Any] | None = None
    description: str = ""
    licence: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    reference_seconds: dict[str, Timing] = field(default_factory=dict)
    root: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        where = f"model card {self.name!r}"
        if not self.approximators:
            raise CardError(f"{where} lists no approximators")
        for approximator in self.approximators.values():
            if approximator.network is not None and approximator.network not in self.networks:
                raise CardError(
                    f"{where}: approximator {approximator.name!r} runs network {approximator.network!r}, "
                    f"which the card does not list (it lists: {', '.join(self.networks) or 'none'})"
                )
            guide = approximator.upsampler.guide if approximator.upsampler else None
            if guide is not None and guide not in self.networks:
                raise CardError(
                    f"{where}: approximator {approximator.name!r} upsamples with the guide network {guide!r}, "
                    f"which the card does not list (it lists: {', '.join(self.networks) or 'none'})"
                )
            for photo_set in approximator.quality:
                if photo_set not in self.photo_sets:
                    raise CardError(
                        f"{where}: approximator {approximator.name!r} was measured on photo set "
                        f"{photo_set!r}, which the card does not describe"
                    )
        if sum(s.role == "choose" for s in self.photo_sets.values()) > 1:
            raise CardError(f"{where}: more than one photo set has the role 'choose'; auto reads one")

    @property
    def choice_set(self) -> str | None:
        """The photo set whose measurements ``auto`` reads (role ``choose``), if any."""
        return next((name for name, s in self.photo_sets.items() if s.role == "choose"), None)

    def approximator(self, name: str) -> Approximator:
        """The approximator ``name``; ``reference`` is the operator itself, which every model offers."""
        if name == REFERENCE:
            return REFERENCE_ITSELF
        try:
            return self.approximators[name]
        except KeyError:
            raise CardError(
                f"model {self.name} has no approximator {name!r}; it has: {', '.join(self.approximators)} (and 'auto')"
            ) from None

    def path_of(self, key: str) -> Path | str:
        """Where network ``key``'s file is: a path (or, for ``paper`` networks, the ``paper/<Operator>`` name)."""
        entry = self.networks[key]
        if entry.kind == "paper" or self.root is None:
            return entry.file if entry.kind == "paper" else Path(entry.file)
        return self.root / entry.file

    def with_approximator(self, approximator: Approximator) -> ModelCard:
        """This card with ``approximator`` added or replaced (in place of the old one, else last)."""
        return replace(self, approximators={**self.approximators, approximator.name: approximator})

    def with_networks(self, networks: dict[str, NetworkEntry], approximators: list[Approximator]) -> ModelCard:
        """This card with ``networks`` added and ``approximators`` added (or replacing those of the same name),
        placed after its other network approximators and before those that run the reference."""
        added = {a.name: a for a in approximators}
        kept = {name: a for name, a in self.approximators.items() if name not in added}
        trained = {name: a for name, a in kept.items() if a.network is not None}
        untrained = {name: a for name, a in kept.items() if a.network is None}
        return replace(self, networks={**self.networks, **networks}, approximators={**trained, **added, **untrained})

    def to_json(self) -> dict[str, Any]:
        return {
            "format": CARD_FORMAT,
            "name": self.name,
            "operator": self.operator,
            "params": self.params,
            "conditioning": self.conditioning,
            "description": self.description,
            "licence": self.licence,
            "networks": {k: _plain(v) for k, v in self.networks.items()},
            "approximators": {k: v.to_json() for k, v in self.approximators.items()},
            "photo_sets": {k: _plain(v) for k, v in self.photo_sets.items()},
            "provenance": self.provenance,
            "reference_seconds": {k: _plain(v) for k, v in sorted(self.reference_seconds.items())},
        }

    @classmethod
    def from_json(cls, data: Any, root: Path | None = None) -> ModelCard:
        where = f"the model card in {root}" if root else "the model card"
        if not isinstance(data, dict):
            raise CardError(f"{where} is not a JSON object")
        if data.get("format") != CARD_FORMAT:
            raise CardError(
                f"{where} has format {data.get('format')!r}; this fip reads {CARD_FORMAT!r} (upgrade fip, "
                "or rebuild the model with this version)"
            )
        data = {k: v for k, v in data.items() if k != "format"}
        _known(data, {f.name for f in fields(cls)} - {"root"}, where)
        try:
            return cls(
                name=data["name"],
                operator=data.get("operator"),
                params=dict(data.get("params") or {}),
                networks={
                    k: _build(NetworkEntry, v, f"network {k!r}") for k, v in (data.get("networks") or {}).items()
                },
                approximators={k: Approximator.from_json(k, v) for k, v in data["approximators"].items()},
                photo_sets={
                    k: _build(PhotoSet, v, f"photo set {k!r}") for k, v in (data.get("photo_sets") or {}).items()
                },
                conditioning=data.get("conditioning"),
                description=data.get("description", ""),
                licence=data.get("licence", ""),
                provenance=dict(data.get("provenance") or {}),
                reference_seconds={
                    k: _build(Timing, {**v, "size": tuple(v.get("size", (1080, 1920)))}, f"reference seconds {k!r}")
                    for k, v in (data.get("reference_seconds") or {}).items()
                },
                root=root,
            )
        except CardError as exc:
            raise CardError(f"{where}: {exc}") from None
        except KeyError as exc:
            raise CardError(f"{where} lacks the field {exc.args[0]!r}") from None
        except (TypeError, AttributeError, ValueError) as exc:
            raise CardError(f"{where} is malformed ({exc})") from None


REFERENCE_ITSELF = Approximator(REFERENCE, description="the reference operator itself: exact, on the CPU")


def read_card(folder: str | os.PathLike[str]) -> ModelCard:
    """The card in ``folder`` (or the card file itself), with ``root`` set to its folder.

    Raises:
        CardError: no card there, or it is not valid JSON of the card format (the message names the file).
    """
    path = Path(folder)
    path = path if path.name == CARD_FILE else path / CARD_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CardError(f"{path.parent} holds no model card ({CARD_FILE})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CardError(f"{path} is not a readable model card ({type(exc).__name__}: {exc})") from None
    return ModelCard.from_json(data, path.parent)


def write_card(card: ModelCard, folder: str | os.PathLike[str]) -> Path:
    """Write ``card`` as ``folder/card.json`` (atomically, approximators in the card's order); return the path."""
    return atomic_write_bytes(Path(folder) / CARD_FILE, (json.dumps(card.to_json(), indent=2) + "\n").encode())


def _plain(value: Any) -> Any:
    """A card dataclass as JSON: its fields, leaving out ``None`` and empty values, tuples as lists."""
    out = {}
    for f in fields(value):
        item = getattr(value, f.name)
        if item is None or item == "" or item == {} or (isinstance(item, float) and math.isnan(item)):
            continue
        out[f.name] = list(item) if isinstance(item, tuple) else item
    return out


def _known(data: dict[str, Any], allowed: set[str], where: str) -> None:
    if unknown := sorted(set(data) - allowed):
        raise CardError(f"{where} has unknown fields {unknown}; known: {sorted(allowed)}")


def _build(kind: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise CardError(f"{where} must be a JSON object; got {type(data).__name__}")
    _known(data, {f.name for f in fields(kind)}, where)
    try:
        return kind(**data)
    except TypeError as exc:
        raise CardError(f"{where} is malformed ({exc})") from None


__all__ = [
    "CARD_FILE",
    "CARD_FORMAT",
    "REFERENCE",
    "REFERENCE_LOWRES",
    "Approximator",
    "CardError",
    "ModelCard",
    "NetworkEntry",
    "PhotoSet",
    "Quality",
    "Timing",
    "Upsampler",
    "read_card",
    "write_card",
]
