"""``Stage``: the base class of every lemon-pl stage.

It holds what every stage shares: the optimiser and schedule from the config
(``lemon_pl.core.optim``), the NaN/Inf guard that saves the last good state, and parameter
counts.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn


#: constructor arguments that are not hyperparameters (objects, not primitives)
NOT_HPARAMS = ["net", "optimizer", "lr_scheduler"]


def check_range(name: str, value: float, low: float | None = None, high: float | None = None,
                closed: bool = False) -> None:
    """A clear error for a numeric stage argument that is not finite or out of range
    (``closed``: the bounds themselves are allowed; otherwise ``low < value``)."""
    import math

    try:
        ok = math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if ok and low is not None:
        ok = value >= low if closed else value > low
    if ok and high is not None:
        ok = value <= high
    if not ok:
        lo = "" if low is None else (f" >= {low:g}" if closed else f" > {low:g}")
        hi = "" if high is None else f" and <= {high:g}"
        raise ValueError(f"model.init_args.{name} must be a finite number{lo}{hi}, got {value!r}")

def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (unique) parameters, optionally only those with requires_grad."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)



def uses_grad_scaler(trainer: Any) -> bool:
    """True when the trainer runs fp16 mixed precision with a gradient scaler."""
    return getattr(getattr(trainer, "precision_plugin", None), "scaler", None) is not None


class Stage(pl.LightningModule):
    """Base class of every stage.

    Args:
        optimizer: optimiser factory from the config (``class_path`` + ``init_args``); unset:
            AdamW with the stage's hyperparameters ``lr``, ``weight_decay``, ``betas``, ``eps``.
        lr_scheduler: schedule factory from the config; unset: linear warm-up over
            ``warmup_ratio`` of the optimiser steps, then cosine decay to ``lr * min_lr_ratio``.

    A stage that uses the default optimiser declares those six hyperparameters (as
    ``OperatorModule`` does) and calls ``save_hparams()`` in its constructor.
    """

    def __init__(self, optimizer: OptimizerCallable | None = None, lr_scheduler: LRSchedulerCallable | None = None):
        super().__init__()
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler

    def save_hparams(self) -> None:
        """``save_hyperparameters`` of the calling constructor's primitive arguments."""
        self.save_hyperparameters(ignore=NOT_HPARAMS, frame=inspect.currentframe().f_back)

    @property
    def n_trainable(self) -> int:
        """Trainable parameters of the stage's network ``net`` (of the whole stage if it has none)."""
        return count_parameters(getattr(self, "net", self), trainable_only=True)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self):
        from lemon_pl.core.optim import build_optimizers

        total = max(1, int(self.trainer.estimated_stepping_batches))
        return build_optimizers(self.trainable_parameters(), self.hparams, total, self.optimizer_factory,
                                self.lr_scheduler_factory, grad_scaler=uses_grad_scaler(self.trainer))

    def describe_batch(self, batch: Any) -> str:
        """Extra words for error messages about a batch (e.g. its families)."""
        return ""

    def ensure_finite(self, loss: torch.Tensor, batch: Any, batch_idx: int) -> None:
        """Stop on a NaN/Inf loss, saving the last good state as ``last.ckpt`` (see ``_stop``).

        All ranks agree on the decision (one all-reduce of a flag), so DDP never hangs.
        """
        if self._all_finite([loss.detach()]):
            return
        self._stop(f"non-finite training loss ({float(loss.detach()):.4g})", batch, batch_idx)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._current = (batch, batch_idx)

    def on_before_optimizer_step(self, optimizer) -> None:
        """Stop before an update with a NaN/Inf gradient: the weights are still those of the
        last good step (after the update they would be NaN, and clipping cannot help: an infinite
        norm scales every gradient to NaN)."""
        grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not grads or self._all_finite(grads):
            return
        batch, batch_idx = getattr(self, "_current", (None, -1))
        self._stop("non-finite gradient", batch, batch_idx)

    def weights_finite(self) -> bool:
        return self._all_finite([p.detach() for p in self.parameters()])

    def _all_finite(self, tensors: list[torch.Tensor]) -> bool:
        norms = torch._foreach_norm([t.float() for t in tensors]) if len(tensors) > 1 else [tensors[0].float().norm()]
        bad = (~torch.isfinite(torch.stack(list(norms)))).any().float()
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        return float(bad) == 0

    def _stop(self, what: str, batch: Any, batch_idx: int) -> None:
        """Save the current state as ``last.ckpt`` if its weights are finite (otherwise keep what is
        on disk and say so), then raise ``NonFiniteLossError`` with where it happened."""
        from lemon_pl.core.errors import NonFiniteLossError

        saved = ""
        ckpt_cb = getattr(self.trainer, "checkpoint_callback", None)
        if ckpt_cb is not None and getattr(ckpt_cb, "dirpath", None) and not self.trainer.fast_dev_run:
            path = Path(ckpt_cb.dirpath) / "last.ckpt"
            if self.weights_finite():
                self.trainer.save_checkpoint(path)
                saved = f"; the last good state was saved to {path}"
            elif path.exists():
                saved = f"; the weights are no longer finite, so {path} (an earlier state) was kept"
            else:
                saved = "; the weights are no longer finite and no earlier checkpoint exists"
        where = "" if batch is None else f", batch {batch_idx}{self.describe_batch(batch)}"
        raise NonFiniteLossError(f"{what} at global step {self.global_step}, epoch {self.current_epoch}{where}{saved}")


