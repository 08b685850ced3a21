"""Multi-operator pretraining: MSE in normalised space over all families' trajectories."""

from __future__ import annotations

import torch

from lemon_pl.operators.base import OperatorModule


class PretrainModule(OperatorModule):
    """Plain (multi-operator) supervised training of ``net``; see ``OperatorModule`` for arguments."""

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        pred = self(batch)
        loss = self.loss(pred, batch["u_out"])
        self.ensure_finite(loss, batch, batch_idx)
        self.log("train/loss", loss, prog_bar=True, batch_size=pred.shape[0])
        return loss

