"""Lightning data over pair sets: pairs are generated in ``prepare_data`` and split in ``setup``.

Two recipes:

* ``paper``: one full image per step (batch 1, no crop), training photos at 480p, then from
  ``finetune_epoch`` on, the same photos at random resolutions (the paper's fine-tuning set);
* ``crops``: random crops with flips in batches, the CPU-friendly recipe.

Validation runs on the test split at ``val_resolution`` (the paper tests at 1080p), one full image at a time.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from fip.conditioning import OneHot, Task, make_conditioning
from fip.data.pairs import (
    PAIR_FILES,
    check_exposures,
    default_out_dir,
    generate_pairs,
    pair_name,
    pair_set_dir,
    read_manifest,
)
from fip.data.sources import Resolution, open_source
from fip.errors import SourceError, UnreadablePhotoError
from fip.imaging import read_image_file, resize_area
from fip.models.inputs import check_input_norm, input_scale, scales_output
from fip.registry import get_operator


class DamagedPairError(UnreadablePhotoError):
    """A pair file that is missing, of the wrong size or cannot be decoded.

    Raised in a DataLoader worker, it reaches the main process as ``DamagedPairError(text)``, the text being
    torch's note and the worker's traceback; only the message at its end is kept.
    """

    def __init__(self, message: str):
        if "Original Traceback" in message:
            message = message.rsplit(f"{type(self).__name__}: ", 1)[-1].strip()
        super().__init__(message)


def _regenerate_hint(folder: Path) -> str:
    return f"rerun the `fip data` command that made {folder} (`fip train` runs it too): it regenerates damaged pairs"


class PairDataset(Dataset):
    """(input, target) tensors ``(3, H, W)`` float32 in [0, 1] from a pair set folder.

    Every pair's files must exist with the byte size the manifest records (checked here, in the process that
    builds the dataset); a file that then cannot be decoded raises :class:`DamagedPairError` naming it.

    Args:
        folder: the pair set folder (with ``manifest.json``).
        split: which pairs: ``"train"``, ``"test"`` or ``"all"``.
        crop: random crop size (square); ``None`` returns full images.
        flips: random horizontal and vertical flips (training only).
        seed: base seed of the crops and flips.
        maps: constant extra input maps appended to the input channels (one-hot operator or parameter maps,
            see :mod:`fip.conditioning`).
        context: with ``crop``, also return the whole input downscaled by this factor (``0.5``: half the width
            and height), flipped like the crop: the photo whose statistics normalize the crop
            (:meth:`fip.models.ContextAggregationNet.forward_in_context`). Batch with :func:`collate_crops`.
        in_memory: keep each pair decoded (and its downscaled whole photo) after its first read: 24 bytes a
            pixel of each pair, paid once per process. For accelerators, which otherwise wait on PNG decoding.
        crops_per_photo: with ``crop``, each item is this many crops of one photo, flipped alike, stacked
            ``(K, C, crop, crop)``, with the one preview they share: one context pass serves them all.
        pairs: the names of the pairs to take (:func:`fip.data.pairs.pair_name`: ``<photo>``, ``<photo>@-1ev``),
            whatever split the manifest last recorded for them: a pair set is shared by every split file of its
            source, so callers that know the source's current split name its pairs here.
        input_norm: normalize each whole input photo's RGB before cropping (:mod:`fip.models.inputs`), as
            :func:`fip.runtime.execute.run_plan` does for a network built with the same ``input_norm``; targets stay as
            they are, except for a norm that scales the output back (``"airlight_scaled"``), which divides them.
    """

    def __init__(
        self,
        folder: str | Path,
        split: str = "all",
        crop: int | None = None,
        flips: bool = False,
        seed: int = 0,
        maps: tuple[float, ...] = (),
        context: float | None = None,
        in_memory: bool = False,
        crops_per_photo: int = 1,
        input_norm: str | None = None,
        pairs: Collection[str] | None = None,
    ):
        if context is not None and (crop is None or not 0 < context <= 1):
            raise SourceError(f"context {context!r} needs crop= (a crop size) and a scale in (0, 1]")
        self.folder = Path(folder)
        self.maps = torch.tensor(maps, dtype=torch.float32).view(-1, 1, 1)
        manifest = read_manifest(self.folder)
        if pairs is not None:
            wanted = set(pairs)
            self.names = sorted(n for n in manifest["pairs"] if n in wanted)
        else:
            self.names = sorted(n for n, e in manifest["pairs"].items() if split == "all" or e["split"] == split)
        if not self.names:
            raise SourceError(f"{self.folder} holds no {split} pairs; generate them with `fip data --split {split}`")
        self._check_files(manifest["pairs"])
        if crops_per_photo < 1 or (crops_per_photo > 1 and crop is None):
            raise SourceError(f"crops_per_photo {crops_per_photo!r} needs crop= (a crop size) and a count of 1 or more")
        self.crop, self.flips, self.seed, self.context = crop, flips, seed, context
        self.crops_per_photo = crops_per_photo
        self.input_norm = check_input_norm(input_norm)
        self.draws = 0
        self.memory: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] | None = {} if in_memory else None

    def _check_files(self, entries: dict) -> None:
        """Raise :class:`DamagedPairError` naming the pair files that are missing or not of their recorded size."""
        damaged = []
        for name in self.names:
            recorded = entries[name].get("files", {})  # absent in pair sets made before fip recorded sizes
            for kind in PAIR_FILES:
                path = self.folder / kind / f"{name}.png"
                expected = recorded.get(kind, {}).get("bytes")
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    damaged.append(f"{path} (missing)")
                    continue
                if size == 0 or (expected is not None and size != expected):
                    damaged.append(f"{path} ({size} bytes, not {expected})" if expected else f"{path} (empty)")
        if damaged:
            listed = ", ".join(damaged[:3]) + (f" and {len(damaged) - 3} more" if len(damaged) > 3 else "")
            raise DamagedPairError(
                f"{len(damaged)} damaged pair file{'s' * (len(damaged) != 1)}: {listed}; {_regenerate_hint(self.folder)}"
            )

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        name = self.names[index]
        source, target, preview = self._read(name)
        # A fresh draw per call: the call counter varies it in the main process, torch's per-epoch worker seed
        # in DataLoader workers (whose copies of this dataset restart their counters every epoch).
        rng = np.random.default_rng([self.seed, torch.initial_seed() % 2**63, self.draws, index])
        self.draws += 1
        if self.crop is not None:
            height, width = source.shape[:2]
            size_y, size_x = min(self.crop, height), min(self.crop, width)
            corners = [(rng.integers(height - size_y + 1), rng.integers(width - size_x + 1))
                       for _ in range(self.crops_per_photo)]
            source, target = (np.stack([image[y : y + size_y, x : x + size_x] for y, x in corners])
                              for image in (source, target))
            if self.crops_per_photo == 1:
                source, target = source[0], target[0]
        if self.flips:
            # Axes from the end: (H, W, C) images and (K, H, W, C) stacks flip alike.
            for axis in (-2, -3):  # horizontal, then vertical
                if rng.random() < 0.5:
                    source, target = np.flip(source, axis), np.flip(target, axis)
                    preview = None if preview is None else np.flip(preview, axis)
        if preview is None:
            return self._with_maps(source), _as_tensor(target)
        return self._with_maps(source), _as_tensor(target), self._with_maps(preview)

    def _read(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """The pair and, with ``context``, its whole input downscaled (flipped with the crop by the caller)."""
        if self.memory is not None and name in self.memory:
            return self.memory[name]
        source, target = (self._decode(self.folder / kind / f"{name}.png") for kind in PAIR_FILES)
        if self.input_norm is not None:  # the whole photo's estimate, one float32 per colour channel
            scale = input_scale(self.input_norm, _as_tensor(source)[None]).flatten().numpy()
            source = source / scale
            if scales_output(self.input_norm):  # the network learns target / scale; inference multiplies back
                target = target / scale
        preview = None
        if self.context is not None:
            height, width = (max(1, round(n * self.context)) for n in source.shape[:2])
            preview = resize_area(source, height, width)
        if self.memory is not None:
            self.memory[name] = source, target, preview
        return source, target, preview

    def _decode(self, path: Path) -> np.ndarray:
        try:
            return read_image_file(path)
        except UnreadablePhotoError:
            # Damage that left the file's size as recorded (a failing disk) goes unseen by `fip data`, which
            # trusts a file whose size and times are unchanged: deleting it makes `fip data` remake the pair.
            raise DamagedPairError(
                f"{path} cannot be decoded: it is damaged; delete it, then {_regenerate_hint(self.folder)}"
            ) from None

    def _with_maps(self, image: np.ndarray) -> torch.Tensor:
        inputs = _as_tensor(image)
        if len(self.maps):
            inputs = torch.cat([inputs, self.maps.expand(*inputs.shape[:-3], -1, *inputs.shape[-2:])], dim=-3)
        return inputs


def _as_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, C)`` to ``(C, H, W)``, ``(K, H, W, C)`` to ``(K, C, H, W)``, contiguous: a channels-last view of the
    array made oneDNN's bf16 backward of the dilated convolutions return NaN (torch 2.13 on CPU)."""
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(image, -1, -3)))  # one copy, in that layout


def collate_crops(batch: list[tuple[torch.Tensor, ...]]) -> tuple:
    """Batch items of one crop ``(C, H, W)`` or of several crops of one photo ``(K, C, H, W)``; with previews,
    list each photo's once per crop (the same tensor, which :meth:`forward_in_context` runs once)."""
    columns = list(zip(*batch))
    counts = [1 if crops.ndim == 3 else len(crops) for crops in columns[0]]
    inputs, targets = (torch.cat([c if c.ndim == 4 else c.unsqueeze(0) for c in column]) for column in columns[:2])
    if len(columns) == 2:
        return inputs, targets
    return inputs, targets, [preview for preview, count in zip(columns[2], counts) for _ in range(count)]


class PairDataModule(pl.LightningDataModule):
    """Pairs of one operator (or several tasks of one network) for training and validation.

    Args:
        operator: registered operator name; a list of names trains one network for all of them with one-hot
            operator maps as extra input channels (:class:`fip.conditioning.OneHot`).
        params: operator parameters (defaults for the rest); with a list of operators, ``{operator: params}``.
        sweep: ``{"param": NAME, "values": [...]}``: one network for a range of one parameter, its value as an
            extra input channel (:class:`fip.conditioning.Sweep`).
        source: ``"sample"``, a FiveK root or a photo folder (see :func:`fip.data.sources.open_source`).
        split_file: JSON ``{"train": [...], "test": [...]}`` overriding the source's split.
        recipe: ``"paper"`` or ``"crops"`` (see the module docstring).
        resolution: training resolution (``"480p"``).
        finetune_resolution: resolution of the fine-tuning set (``"random:320-1440"``), used from
            ``finetune_epoch`` on; ``None`` disables it.
        finetune_epoch: first epoch of fine-tuning.
        val_resolution: validation resolution (``"1080p"``).
        exposures: the training photos also at these exposures, in stops (``[0, -1, -2]``: as they are, one and
            two stops darker; :func:`fip.data.pairs.generate_pairs`); validation keeps the photos as they are.
        crop_size, batch_size: for the ``crops`` recipe.
        context_scale: for the ``crops`` recipe: normalize each crop with the statistics of its whole photo,
            seen at this scale (``0.5``: a quarter of the pixels), as inference does, instead of the crop's own.
            For operators whose output depends on the whole photo (tone curves from its histogram or
            percentiles); costs a pass over each preview per step.
        crops_per_photo: for the ``crops`` recipe: draw this many crops from each photo a batch takes (a divisor of
            ``batch_size``), which share one context pass: with ``context_scale`` 0.25 at 1080p, 4 crops of 192
            pixels a photo train about twice as many crops a second as 1 (``benchmarks/training_throughput.py``).
        input_norm: normalize each photo's input (:mod:`fip.models.inputs`, e.g. ``"airlight"``) for training and
            validation; the network must be built with the same (``model.net.init_args.input_norm``), which
            applies it at inference.
        num_workers: DataLoader worker processes.
        in_memory: keep the decoded pairs in memory after the first epoch (:class:`PairDataset`); with
            ``num_workers`` each worker keeps its own copy.
        pair_workers: processes generating pairs in ``prepare_data`` (default: all cores).
        root: where pair sets go (default: fip's cache).
    """

    def __init__(
        self,
        operator: str | list[str],
        params: dict | None = None,
        sweep: dict | None = None,
        source: str = "sample",
        split_file: str | None = None,
        recipe: str = "crops",
        resolution: str = "480p",
        finetune_resolution: str | None = None,
        finetune_epoch: int = 0,
        val_resolution: str = "1080p",
        exposures: list[float] | None = None,
        crop_size: int = 192,
        batch_size: int = 8,
        context_scale: float | None = None,
        crops_per_photo: int = 1,
        input_norm: str | None = None,
        num_workers: int = 0,
        in_memory: bool = False,
        pair_workers: int | None = None,
        root: str | None = None,
        seed: int = 0,
    ):
        super().__init__()
        if recipe not in ("paper", "crops"):
            raise SourceError(f"recipe {recipe!r} must be 'paper' or 'crops'")
        if context_scale is not None and (recipe != "crops" or not 0 < context_scale <= 1):
            raise SourceError(
                f"context_scale {context_scale!r} needs recipe 'crops' and a scale in (0, 1] (the paper recipe "
                "trains on whole photos, which are their own context)"
            )
        if crops_per_photo < 1 or batch_size % crops_per_photo or (crops_per_photo > 1 and recipe != "crops"):
            raise SourceError(
                f"crops_per_photo {crops_per_photo!r} must divide batch_size {batch_size!r} and needs recipe 'crops' "
                "(the paper recipe trains on one whole photo a step)"
            )
        self.save_hyperparameters()
        # Resolved now: a wrong name or value fails before any work, and checkpoints record every parameter.
        self.conditioning = make_conditioning(operator, sweep)
        if self.conditioning is None:
            self.tasks = [Task(operator, get_operator(operator).resolve_params(params))]
        else:
            self.tasks = self.conditioning.tasks(params)
        # What the checkpoint records: the operator (None for a one-hot network) and its parameters.
        self.operator = None if isinstance(self.conditioning, OneHot) else self.tasks[0].operator
        self.params = {} if isinstance(self.conditioning, OneHot) else get_operator(self.operator).resolve_params(params)
        self.recipe = recipe
        self.resolutions = {"train": Resolution.parse(resolution), "val": Resolution.parse(val_resolution)}
        if finetune_resolution:
            self.resolutions["finetune"] = Resolution.parse(finetune_resolution)
        self.finetune_epoch = finetune_epoch
        self.exposures = check_exposures(exposures or [0.0])
        self.crop_size, self.batch_size, self.num_workers = crop_size, batch_size, num_workers
        self.crops_per_photo = crops_per_photo
        self.in_memory = in_memory
        self.context_scale = context_scale
        self.input_norm = check_input_norm(input_norm)
        self.pair_workers, self.root, self.seed = pair_workers, root, seed
        self.source_spec, self.split_file = source, split_file
        self.datasets: dict[str, Dataset] = {}
        self._opened = None

    @property
    def in_channels(self) -> int:
        """Input channels the network must take: RGB plus the conditioning maps."""
        return 3 + (self.conditioning.channels if self.conditioning else 0)

    def _exposures(self, key: str) -> tuple[float, ...]:
        return (0.0,) if key == "val" else self.exposures

    def folder(self, key: str, task: Task | None = None) -> Path:
        task = task or self.tasks[0]
        resolution, exposures = self.resolutions[key], self._exposures(key)
        if self.root is not None:
            return pair_set_dir(self.root, task.operator, resolution, task.params, exposures)
        return default_out_dir(self._source(), task.operator, resolution, task.params, exposures)

    def _source(self):
        if self._opened is None:  # listing FiveK or hashing the sample set once is enough
            self._opened = open_source(self.source_spec, self.split_file)
        return self._opened

    def prepare_data(self) -> None:
        source = self._source()
        for task in self.tasks:
            for key, split in (("train", "train"), ("finetune", "train"), ("val", "test")):
                if key in self.resolutions:
                    generate_pairs(
                        task.operator, source, params=task.params, split=split, resolution=self.resolutions[key],
                        out_dir=self.folder(key, task), workers=self.pair_workers, exposures=self._exposures(key),
                    )

    def setup(self, stage: str | None = None) -> None:
        crop = self.crop_size if self.recipe == "crops" else None
        for key in self.resolutions:
            split = "test" if key == "val" else "train"
            training = key != "val"
            parts = [
                PairDataset(self.folder(key, task), split, crop=crop if training else None, flips=training,
                            seed=self.seed, maps=task.maps,
                            context=self.context_scale if training else None, in_memory=self.in_memory,
                            crops_per_photo=self.crops_per_photo if training else 1,
                            input_norm=self.input_norm,
                            pairs=[pair_name(photo.name, stops) for photo in self._source().select(split)
                                   for stops in self._exposures(key)])
                for task in self.tasks
            ]
            self.datasets[key] = parts[0] if len(parts) == 1 else ConcatDataset(parts)

    def train_dataloader(self) -> DataLoader:
        finetuning = "finetune" in self.datasets and self.trainer is not None and (
            self.trainer.current_epoch >= self.finetune_epoch
        )
        dataset = self.datasets["finetune" if finetuning else "train"]
        batch = self.batch_size // self.crops_per_photo if self.recipe == "crops" else 1
        return DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=self.num_workers, drop_last=False,
                          collate_fn=collate_crops)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.datasets["val"], batch_size=1, shuffle=False, num_workers=self.num_workers)
