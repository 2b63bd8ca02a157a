"""``fip train``: LightningCLI over :class:`~fip.lit.LitApproximator` and :class:`~fip.data.module.PairDataModule`.

Each operator has one YAML under ``train/configs/``, installed with fip as the data package ``fip_train``; a config
is given as a file or by its name there (``smooth.l0``, ``extensions/combined``, ``overlays/lowres``).
LightningCLI builds the command line from the typed ``__init__`` signatures, so every argument can be overridden
(``--trainer.max_epochs 5``, ``--data.source /data/fivek``) and saves the resolved config with each run.

    fip train -c smooth.l0                                    # = fit, train/configs/smooth.l0.yaml
    fip train -c train/configs/smooth.l0.yaml -c overlays/lowres
    fip train validate -c smooth.l0 --ckpt_path runs/smooth.l0/.../last.ckpt

Importing this module needs the ``train`` extra; without it the import raises
:class:`~fip.errors.MissingExtraError`, whose message is the pip command.
"""

from __future__ import annotations

import importlib.resources
import logging
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from fip.errors import DISTRIBUTION, ConfigNotFoundError, FipError, require_extra

# Before Lightning's imports, so that a missing extra is one line with the pip command, not an import traceback.
require_extra("train", needed_by="fip train")

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.cli import LightningCLI

from fip.data.module import PairDataModule
from fip.lit import LitApproximator, check_net_against_data

SUBCOMMANDS = ("fit", "validate", "test", "predict")
CONFIG_PACKAGE = "fip_train"  # train/ of the source tree, installed under this name
CONFIG_OPTIONS = ("-c", "--config")


def config_dir() -> Path:
    """The folder of fip's training configs (``train/configs`` of the installed ``fip_train`` package).

    Raises:
        FipError: ``fip_train`` is not installed (an install made before it existed).
    """
    try:
        root = importlib.resources.files(CONFIG_PACKAGE) / "configs"
    except ModuleNotFoundError:
        fix = f"pip install '{DISTRIBUTION}[train]', or pip install -e '.[train]' in a checkout"
        raise FipError(
            f"fip's training configs (package {CONFIG_PACKAGE}) are not installed: reinstall ({fix})"
        ) from None
    # pip installs packages as plain files, so the resource folder is a real folder that LightningCLI can read.
    return Path(str(root))


def config_names() -> list[str]:
    """Names of the installed configs, relative to :func:`config_dir` without ``.yaml``, sorted:
    ``smooth.l0``, ``extensions/combined``, ``overlays/lowres``, ..."""
    root = config_dir()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml"))


def resolve_config(name_or_path: str | Path) -> Path:
    """A training config: an existing file as given, else an installed config by name.

    A name is a config's path under :func:`config_dir` without ``.yaml`` (``smooth.l0``, ``overlays/lowres``), or
    only its file name where that is unique (``lowres``); a trailing ``.yaml`` is accepted.

    Raises:
        ConfigNotFoundError: neither a file nor a config name; the message lists the names.
    """
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    names = config_names()
    name = str(name_or_path).removesuffix(".yaml")
    matches = [n for n in names if n == name] or [n for n in names if n.rpartition("/")[2] == name]
    if len(matches) == 1:
        return config_dir() / f"{matches[0]}.yaml"
    raise ConfigNotFoundError(
        f"training config {str(name_or_path)!r} is neither a file nor one of fip's configs: "
        f"give a YAML file or one of {', '.join(names)}"
    )


def _is_inline_config(value: str) -> bool:
    """``--config`` also takes the YAML itself (jsonargparse), e.g. ``--config '{trainer: {max_epochs: 1}}'``."""
    return "\n" in value or value.lstrip().startswith("{") or ": " in value


def resolve_config_args(args: Sequence[str]) -> list[str]:
    """``args`` with each ``-c``/``--config`` value that names an installed config replaced by its file.

    Raises:
        ConfigNotFoundError: a value is neither a file, inline YAML, nor a config name.
    """
    resolved = list(args)
    for i, arg in enumerate(resolved):
        option, eq, value = arg.partition("=")
        if option not in CONFIG_OPTIONS:
            continue
        if eq:
            if not _is_inline_config(value):
                resolved[i] = f"{option}={resolve_config(value)}"
        elif i + 1 < len(resolved) and not _is_inline_config(resolved[i + 1]):
            resolved[i + 1] = str(resolve_config(resolved[i + 1]))
    return resolved


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


class TrainingClock(Callback):
    """Logs how long the run has trained at each validation: ``train_hours`` (wall clock) and ``cpu_hours``
    (this process's CPU time, which other work on the machine does not inflate), both summed over every resumed
    part of the run (they travel in the checkpoint), so a log's ``val_psnr`` can be plotted against hours."""

    def __init__(self) -> None:
        self.seconds = self.cpu_seconds = 0.0
        self._since: tuple[float, float] | None = None

    def _add(self) -> None:
        now = (time.monotonic(), time.process_time())
        if self._since is not None:
            self.seconds += now[0] - self._since[0]
            self.cpu_seconds += now[1] - self._since[1]
        self._since = now

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._since = (time.monotonic(), time.process_time())

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._add()
        self._since = None

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if self._since is not None:  # validation within a training epoch
            self._add()
        pl_module.log("train_hours", self.seconds / 3600, batch_size=1)
        pl_module.log("cpu_hours", self.cpu_seconds / 3600, batch_size=1)

    def state_dict(self) -> dict[str, float]:
        return {"seconds": self.seconds, "cpu_seconds": self.cpu_seconds}

    def load_state_dict(self, state_dict: dict[str, float]) -> None:
        self.seconds = float(state_dict.get("seconds", 0.0))
        self.cpu_seconds = float(state_dict.get("cpu_seconds", 0.0))


def trainer_defaults() -> dict:
    """Checkpointing on the best validation PSNR (and the last epoch, for resuming) and LR logging; loggers
    (CSV and TensorBoard) are named per operator in each config."""
    return {
        "callbacks": [
            BestAndLastCheckpoint(
                monitor="val_psnr", mode="max", save_last=True, filename="best-{epoch}-{val_psnr:.2f}"
            ),
            LearningRateMonitor(logging_interval="epoch"),
            TrainingClock(),
        ],
        "accelerator": "auto",
        "log_every_n_steps": 5,
        "enable_model_summary": False,  # a table of 27 layers and "Total FLOPs: 0"; --trainer.enable_model_summary
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


def quiet_lightning() -> None:
    """Keep Lightning's notices (its tips, the accelerator lines) and the warnings Lightning itself triggers out of
    fip's output; its warnings and errors still show, and so do fip's own progress lines and Lightning's progress
    bar. With ``fip -v train`` (fip's logger at DEBUG) everything shows."""
    if logging.getLogger("fip").isEnabledFor(logging.DEBUG):  # `fip -v train`: Lightning's notices too
        return
    for name in ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    # fip gives LightningCLI the arguments it parsed (sys.argv also holds fip's own), as the class allows.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")


def run_training(args: Sequence[str]) -> LightningCLI:
    """Run LightningCLI with ``args`` (``fit`` is implied when no subcommand is given; configs may be given by name).

    Raises:
        ConfigNotFoundError: a ``-c``/``--config`` value is neither a file nor a config name.
    """
    quiet_lightning()
    args = resolve_config_args(args)
    if not args or args[0] not in SUBCOMMANDS + ("-h", "--help"):
        args = ["fit", *args]
    defaults = trainer_defaults()
    interrupted = _Interrupted()
    defaults["callbacks"].append(interrupted)
    try:
        return FipCLI(
            LitApproximator,
            PairDataModule,
            args=args,
            trainer_defaults=defaults,
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
        )
    except SystemExit:
        if interrupted.seen:  # Lightning turns Ctrl-C into exit status 1 after its graceful shutdown
            raise KeyboardInterrupt from None
        raise


class _Interrupted(Callback):
    """Remembers whether the run ended by Ctrl-C (SIGINT or fip's SIGTERM), which Lightning reports as ``exit(1)``."""

    seen = False

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self.seen = self.seen or isinstance(exception, KeyboardInterrupt)
