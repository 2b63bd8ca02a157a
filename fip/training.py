"""``fip train``: LightningCLI over :class:`~fip.lit.Approximator` and :class:`~fip.data.module.PairDataModule`.

Each operator has one YAML under ``train/configs/``; LightningCLI builds the command line from the typed
``__init__`` signatures, so every argument can be overridden (``--trainer.max_epochs 5``,
``--data.source /data/fivek``) and saves the resolved config with each run.

    fip train -c train/configs/smooth.l0.yaml                 # = fit
    fip train validate -c train/configs/smooth.l0.yaml --ckpt_path runs/smooth.l0/.../last.ckpt
"""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningCLI

from fip.data.module import PairDataModule
from fip.lit import Approximator, check_net_against_data

SUBCOMMANDS = ("fit", "validate", "test", "predict")


class BestAndLastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that also writes ``last.ckpt`` after every training epoch.

    In Lightning 2.6 ``save_last=True`` beside a monitored metric writes ``last.ckpt`` only when the monitored
    checkpoint is saved, that is when validation improves; resuming from it would silently repeat every epoch
    since the best one. (Uses ModelCheckpoint's private helpers, present throughout Lightning 2.x; where the base
    class already wrote the file at this step, they skip it.)"""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self.save_last is True and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def trainer_defaults() -> dict:
    """Checkpointing on the best validation PSNR (and the last epoch, for resuming) and LR logging; loggers
    (CSV and TensorBoard) are named per operator in each config."""
    return {
        "callbacks": [
            BestAndLastCheckpoint(
                monitor="val_psnr", mode="max", save_last=True, filename="best-{epoch}-{val_psnr:.2f}"
            ),
            LearningRateMonitor(logging_interval="epoch"),
        ],
        "accelerator": "auto",
        "log_every_n_steps": 5,
    }


def max_time(minutes: float) -> str:
    """A time budget in minutes as the ``DD:HH:MM:SS`` string of ``--trainer.max_time``."""
    seconds = int(minutes * 60)
    return f"{seconds // 86400:02d}:{seconds % 86400 // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class FipCLI(LightningCLI):
    """LightningCLI that checks the network against the data before any work (pair generation included)."""

    def before_fit(self) -> None:
        check_net_against_data(self.model, self.datamodule)

    before_validate = before_test = before_predict = before_fit


def run_training(args: Sequence[str]) -> LightningCLI:
    """Run LightningCLI with ``args`` (``fit`` is implied when no subcommand is given)."""
    args = list(args)
    if not args or args[0] not in SUBCOMMANDS + ("-h", "--help"):
        args = ["fit", *args]
    return FipCLI(
        Approximator,
        PairDataModule,
        args=args,
        trainer_defaults=trainer_defaults(),
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
    )
