"""The Lightning module that trains a network to approximate an operator.

The network is a plain ``nn.Module`` injected from the config (``model.net``), usually a
:class:`~fip.models.ContextAggregationNet`. The loss is the paper's: mean squared error against the reference
operator's output. Validation logs PSNR and SSIM of the clipped prediction, one full image at a time.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

from fip.metrics import psnr, ssim
from fip.models.can import AdaptiveNorm, conv_biases
from fip.models.inputs import scales_output

logger = logging.getLogger(__name__)


class LitApproximator(pl.LightningModule):
    """Train ``net`` to map inputs to an operator's targets.

    Args:
        net: the network (``(B, C, H, W)`` in, ``(B, 3, H, W)`` out).
        lr: Adam learning rate (the paper: 1e-4).
        schedule: ``"constant"`` (the paper) or ``"cosine"`` (decays to 1 % over ``max_epochs``).
        warm_start: ``"paper/<Operator>"`` (the authors' network of that name), ``"fip/<operator>"`` (the model fip
            ships for an operator, possibly another one: ``style.stylize`` starts from ``fip/smooth.rtv``) or the
            path of a fip model file or checkpoint to start from; same shape only (``fip build``'s pruned stage
            starts from a pruned one), except that a network with ``conv_bias`` may start from one without (its
            biases start at 0).
            A :class:`~fip.models.GuidedCAN` may start from a plain CAN: its ``can`` takes the weights, and its
            guidance map and filter start as the plain guided filter.
        norm_lr_scale: learning-rate multiplier for the adaptive normalizations' scalars (lambda, mu). Adam moves
            each parameter by about ``lr`` per step, so at 1 (the paper, 180k steps) mu, which gates the
            normalized path and starts at 0, travels at most steps x lr in a CPU run (0.15 for 300 steps at 5e-4);
            the authors' network for photographic style, an operator of the whole photo, has mu near 0.5.
        bias_lr_scale: learning-rate multiplier for the 3x3 convolutions' biases of a network built with
            ``conv_bias``. A bias is one number per channel against 9 x C_in weights; the same shift carried by a
            constant input map (the paper's way of feeding one-hot maps) moves 9 weights per layer, and over 150
            steps learned about as fast as biases at 10x (docs/research-log.md, "No tone curve without a shift").
        row_fraction: for a network that can compute a subset of its output's rows (``forward_rows``: the
            :class:`~fip.models.BilateralGridNet`, whose full-resolution work is per pixel), the share of each
            photo's rows a training step computes and scores, spread over the photo (an unbiased estimate of the
            whole photo's loss at that share of the cost); 1 computes every row.
    """

    def __init__(
        self,
        net: nn.Module,
        lr: float = 1e-4,
        schedule: str = "constant",
        warm_start: str | None = None,
        norm_lr_scale: float = 1.0,
        bias_lr_scale: float = 1.0,
        row_fraction: float = 0.25,
    ):
        super().__init__()
        if schedule not in ("constant", "cosine"):
            raise ValueError(f"schedule {schedule!r} must be 'constant' or 'cosine'")
        if not 0 < row_fraction <= 1:
            raise ValueError(f"row_fraction {row_fraction!r} must lie in (0, 1]")
        for name, scale in (("norm_lr_scale", norm_lr_scale), ("bias_lr_scale", bias_lr_scale)):
            if not scale > 0:
                raise ValueError(f"{name} {scale!r} must be positive (1 = the paper's single learning rate)")
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.warm_start_sha256: str | None = None  # of the file started from, which may be replaced later
        if warm_start:
            from fip.models import BilateralGridNet, GuidedCAN
            from fip.models.catalogue import open_warm_start

            loaded = open_warm_start(warm_start)
            source = loaded.net
            if isinstance(self.net, BilateralGridNet) != isinstance(source, BilateralGridNet):
                raise ValueError(
                    f"warm start {warm_start!r} is a {type(source).__name__}; a bilateral-grid network "
                    "starts only from another one, and a CAN never from one: set model.warm_start: null"
                )
            if Path(loaded.name).is_file():  # a model file or checkpoint (fip/<operator>: the shipped file)
                self.warm_start_sha256 = hashlib.sha256(Path(loaded.name).read_bytes()).hexdigest()
            into_can = isinstance(self.net, GuidedCAN) and not isinstance(source, GuidedCAN)
            target = self.net.can if into_can else self.net
            if getattr(source, "conv_bias", False) and not getattr(target, "conv_bias", False):
                raise ValueError(
                    f"warm start {warm_start!r} has convolution biases that this network lacks: set "
                    "model.net.init_args.conv_bias: true"
                )
            # A network with conv_bias may start from one without: its biases stay 0, the same function.
            state, biases = source.state_dict(), {id(b) for b in conv_biases(target)}
            state.update({n: p for n, p in target.named_parameters() if id(p) in biases and n not in state})
            target.load_state_dict(state)
            logger.info("warm start from %s", warm_start)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(
        self,
        batch: tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]],
        batch_idx: int,
    ) -> torch.Tensor:
        inputs, targets = batch[:2]
        if hasattr(self.net, "forward_rows") and self.hparams.row_fraction < 1:
            rows = self.net.sample_rows(inputs.shape[2], self.hparams.row_fraction, inputs.device)
            prediction, targets = self.net.forward_rows(inputs, rows), targets[:, :, rows]
        elif len(batch) == 2:
            prediction = self.net(inputs)
        else:  # crops with their photos' previews (data.context_scale), normalized with the photos' statistics
            prediction = self.net.forward_in_context(inputs, batch[2])
        loss = nn.functional.mse_loss(prediction, targets)
        self.log("train_loss", loss, prog_bar=True, batch_size=inputs.shape[0])
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        inputs, targets = batch
        prediction = self.net(inputs)
        # A network whose output is scaled back by its input's airlight (input_norm "airlight_scaled") is
        # validated where it learns, against the targets divided by it, which may exceed 1: no clamp there.
        if not scales_output(getattr(self.net, "input_norm", None)):
            prediction = prediction.clamp(0.0, 1.0)
        self.log("val_psnr", psnr(prediction, targets), prog_bar=True, batch_size=1, sync_dist=True)
        self.log("val_ssim", ssim(prediction, targets), batch_size=1, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store what rebuilds the network and names its operator, so a checkpoint loads without the config
        (the networks of :mod:`fip.models.families`; other networks, such as
        :class:`fip.compress.QuantizationAwareCAN`, are read from the module that trained them)."""
        from fip.models.families import families
        from fip.models.storage import net_config

        if not any(isinstance(self.net, family.module) for family in families()):
            return

        datamodule = getattr(self.trainer, "datamodule", None)
        conditioning = getattr(datamodule, "conditioning", None)
        checkpoint["fip"] = {
            "net": net_config(self.net),
            "operator": getattr(datamodule, "operator", None),
            "params": getattr(datamodule, "params", {}),
            "conditioning": conditioning.to_json() if conditioning else None,
            "warm_start_sha256": self.warm_start_sha256,
        }

    def _parameter_groups(self) -> list[dict]:
        """One group, plus one named ``norm`` for lambda and mu when ``norm_lr_scale`` is not 1 and one named
        ``bias`` for the 3x3 convolutions' own biases (:func:`~fip.models.can.conv_biases`) when ``bias_lr_scale``
        is not 1, each at its scaled rate."""
        chosen = {
            "norm": [p for m in self.net.modules() if isinstance(m, AdaptiveNorm) for p in (m.lam, m.mu)],
            "bias": conv_biases(self.net),
        }
        groups, taken = [], set()
        for name, params in chosen.items():
            scale = self.hparams[f"{name}_lr_scale"]
            if scale == 1:
                continue
            if not params:
                logger.warning(
                    "%s_lr_scale %s has no effect: %s has no %s",
                    name,
                    scale,
                    type(self.net).__name__,
                    "adaptive normalization" if name == "norm" else "3x3 convolution biases (conv_bias)",
                )
                continue
            groups.append({"params": params, "lr": self.hparams.lr * scale, "name": name})
            taken |= {id(p) for p in params}
        return [{"params": [p for p in self.net.parameters() if id(p) not in taken]}] + groups

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self._parameter_groups(), lr=self.hparams.lr)
        if self.hparams.schedule == "constant":
            return optimizer
        epochs = max(1, self.trainer.max_epochs or 1)
        if len(optimizer.param_groups) == 1:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs, eta_min=self.hparams.lr * 0.01)
        else:  # each group decays to 1 % of its own rate (CosineAnnealingLR's eta_min is one absolute value)
            scheduler = torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda epoch: 0.01 + 0.99 * (1 + math.cos(math.pi * min(epoch, epochs) / epochs)) / 2
            )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def check_net_against_data(model: LitApproximator, datamodule: object) -> None:
    """Raise, naming the fix, when the network cannot take what the data feed it: other input channels than RGB
    plus the conditioning maps, or crops with their photos' previews for a network other than the CAN. Called
    before any pair is generated."""
    if getattr(datamodule, "context_scale", None):
        can = getattr(model.net, "can", model.net)  # a GuidedCAN's statistics are its CAN's
        if not hasattr(model.net, "forward_in_context"):
            raise ValueError(
                f"data.context_scale normalizes crops with their photo's statistics, which "
                f"{type(model.net).__name__} cannot do (ContextAggregationNet and GuidedCAN can): leave it unset"
            )
        if getattr(can, "folds_exactly", False):
            raise ValueError(
                "data.context_scale gives crops their photo's statistics, but this network normalizes with running "
                "averages (norm='running'), so it would only cost time: leave data.context_scale unset"
            )
    data_norm, net_norm = getattr(datamodule, "input_norm", None), getattr(model.net, "input_norm", None)
    if data_norm != net_norm:  # the network would be trained on one input and run on another
        raise ValueError(
            f"the data normalize the input by {data_norm!r} but the network expects {net_norm!r}: set "
            f"data.input_norm and model.net.init_args.input_norm alike"
        )
    wanted, has = getattr(datamodule, "in_channels", None), getattr(model.net, "in_channels", None)
    if wanted is not None and has is not None and wanted != has:
        raise ValueError(
            f"the data feed {wanted} input channels (RGB + {wanted - 3} conditioning maps) but the network "
            f"takes {has}: set model.net.init_args.in_channels: {wanted}"
        )
