"""A learned guide for the reference at low resolution: the operator stays in the loop, only the upsampling learns.

``reference-lowres`` runs the reference operator on the photo at a third of its size and brings the result back with
a colour guided filter fitted between the small photo and the small result. Where that filter, not the operator,
loses the quality (``benchmarks/lowres_error.py`` tells the two apart), a learned pixel-wise map of the photo
(:class:`~fip.models.guided.GuideMap`, ~100 parameters) can guide the filter instead of the photo itself. Its last
layer starts at zero, so training starts from the plain filter; the reference's own output is what gets upsampled,
so the map learns nothing of the operator and cannot drift from it.

* :class:`GuideExamples`: per photo, the small photo and the reference's result on it (made once, as the engine
  makes them), with the photo and the reference's full-size result to learn from.
* :class:`LitGuide`: the Lightning module that trains the map.
* :func:`train_guide`: both, for one approximator of a model; :func:`guided_approximator` is that approximator
  with the trained map as its upsampler's guide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from fip.errors import InputError
from fip.metrics import psnr
from fip.models.cards import Approximator, Upsampler
from fip.models.catalogue import Model
from fip.models.guided import GuideMap, apply_linear_model, fit_coefficients
from fip.runtime.execute import Views, reference_small, to_batch
from fip.runtime.plan import working_size
from fip.training import quiet_lightning

GUIDE_HIDDEN = 16  # hidden channels of the map: ~100 multiply-adds a pixel at full size


class GuideExamples(Dataset):
    """``(small, result, photo, target)`` tensors ``(3, ., .)`` per photo: the photo at the approximator's working
    size and the reference's result there (:func:`~fip.runtime.execute.reference_small`), the photo and the
    reference's result at full size. Photos too small for a working size (the engine runs the reference itself
    on them) are left out.

    Args:
        operator, params: the reference operator and its parameters.
        pairs: ``(photo, target)`` float32 ``(H, W, 3)`` sRGB images in [0, 1], ``target`` the operator's result.
        size_for: ``(height, width) -> working size or None``, the engine's (:func:`fip.runtime.plan.working_size`).
        progress: show a progress bar (the reference runs once per photo).
    """

    def __init__(
        self,
        operator: str,
        params: dict,
        pairs: Iterable[tuple[np.ndarray, np.ndarray]],
        size_for: Callable[[tuple[int, int]], tuple[int, int] | None],
        progress: bool = False,
    ):
        from tqdm.auto import tqdm

        self.items = []
        for photo, target in tqdm(
            list(pairs), desc=f"{operator} at the working size", unit="photo", disable=not progress
        ):
            working = size_for(photo.shape[:2])
            if working is None:
                continue
            small, result = reference_small(operator, params, Views.of_array(photo), working)
            self.items.append((small[0], result[0], to_batch(photo)[0], to_batch(target)[0]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return self.items[index]


class LitGuide(pl.LightningModule):
    """Trains a :class:`~fip.models.guided.GuideMap` as the guide of ``upsampler`` (its kind, radius and eps stay):
    mean squared error of the upsampled result against the reference's at full size, one photo per step.

    Args:
        upsampler: the approximator's upsampler.
        hidden: hidden channels of the map.
        lr: Adam learning rate (the map is tiny: 3e-3 moves it in a few hundred steps).
    """

    def __init__(self, upsampler: Upsampler, hidden: int = GUIDE_HIDDEN, lr: float = 3e-3):
        super().__init__()
        self.guide = GuideMap(hidden)
        self.upsampler, self.lr = upsampler, lr

    def forward(self, small: torch.Tensor, result: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
        """The upsampled result, ``(B, 3, H, W)``, as the engine computes it (in torch operations)."""
        colour = self.upsampler.kind == "colour-guided"
        coefficients = fit_coefficients(self.guide(small), result, colour, self.upsampler.radius, self.upsampler.eps)
        rows = lambda top, bottom: self.guide(photo[:, :, top:bottom])  # noqa: E731 (the row callback)
        return apply_linear_model(coefficients, *photo.shape[2:], rows, colour=colour)

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_index: int) -> torch.Tensor:
        small, result, photo, target = batch
        loss = F.mse_loss(self(small, result, photo), target)
        self.log("train_loss", loss, prog_bar=True, batch_size=1)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.guide.parameters(), lr=self.lr)


def mean_psnr(module: LitGuide, examples: GuideExamples) -> float:
    """Mean PSNR (dB) of ``module``'s upsampling against the reference's full-size results over ``examples``."""
    scores = []
    with torch.inference_mode():
        for small, result, photo, target in examples:
            out = module(small[None], result[None], photo[None]).clamp(0.0, 1.0)
            scores.append(psnr(out[0].permute(1, 2, 0).numpy(), target.permute(1, 2, 0).numpy()))
    return float(np.mean(scores))


@dataclass(frozen=True)
class TrainedGuide:
    """What :func:`train_guide` made: the map (eval mode, CPU), the mean PSNR on the validation photos before (the
    plain upsampler) and after training, and how many photos trained and validated it."""

    guide: GuideMap
    before: float
    after: float
    train_photos: int
    validation_photos: int


def train_guide(
    model: Model,
    approximator: str,
    train_pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    validation_pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    steps: int = 600,
    minutes: float | None = None,
    hidden: int = GUIDE_HIDDEN,
    progress: bool = True,
) -> TrainedGuide:
    """Train a guide for ``model``'s reference approximator ``approximator`` (``reference-lowres``, ...) on the
    pairs large enough for its working size.

    Raises:
        InputError: ``approximator`` runs no reference at low resolution, or no pair is large enough for it.
    """
    chosen = model.card.approximator(approximator)
    if not chosen.runs_reference or chosen.upsampler is None:
        raise InputError(f"{approximator!r} does not run the reference at low resolution: it has no upsampler to guide")
    params = dict(model.card.params)
    size_for = lambda size: working_size(chosen, model.card, size)  # noqa: E731
    train = GuideExamples(model.operator, params, train_pairs, size_for, progress)
    validation = GuideExamples(model.operator, params, validation_pairs, size_for, progress)
    if not len(train) or not len(validation):
        raise InputError(f"no training or validation photo is large enough for {approximator}'s working size")
    module = LitGuide(replace(chosen.upsampler, guide=None), hidden)
    before = mean_psnr(module, validation)
    quiet_lightning()
    trainer = pl.Trainer(
        max_steps=steps,
        max_time={"minutes": minutes} if minutes else None,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    trainer.fit(module, DataLoader(train, batch_size=1, shuffle=True))
    module.eval()
    return TrainedGuide(module.guide.eval(), before, mean_psnr(module, validation), len(train), len(validation))


def guided_approximator(approximator: Approximator, key: str) -> Approximator:
    """``approximator`` (a reference at low resolution) upsampling with the learned guide stored as network ``key``:
    named ``<name>-learned``, unmeasured."""
    return replace(
        approximator,
        name=f"{approximator.name}-learned",
        upsampler=replace(approximator.upsampler, guide=key),
        description=f"{approximator.name}, its guided filter on a learned guidance map of the photo (trained with the "
        "operator in the loop)",
        quality={},
        seconds={},
    )


__all__ = [
    "GUIDE_HIDDEN",
    "GuideExamples",
    "LitGuide",
    "TrainedGuide",
    "guided_approximator",
    "mean_psnr",
    "train_guide",
]
