"""Multi-operator pretraining: MSE in normalised space over all families' trajectories."""

from __future__ import annotations

import torch

from lemon_pl.modules.base import OperatorModule
from lemon_pl.modules.errors import NonFiniteLossError


class PretrainModule(OperatorModule):
    """Plain (multi-operator) supervised training of ``net``; see ``OperatorModule`` for arguments."""

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        pred = self(batch)
        loss = self.loss(pred, batch["u_out"])
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at global step {self.global_step}, epoch "
                f"{self.current_epoch}, batch {batch_idx}, families {self.batch_family_names(batch)}; "
                "the last checkpoint is intact")
        self.log("train/loss", loss, prog_bar=True, batch_size=pred.shape[0])
        return loss

