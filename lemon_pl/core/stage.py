"""``Stage``: the base class of every lemon-pl stage (operator, physics-informed, multi-level).

It holds what every stage shares, so that a stage adds only its network, loss and evaluation:

* the optimiser and schedule: ``optimizer`` / ``lr_scheduler`` from the config (any
  ``torch.optim`` class, ``ReduceLROnPlateau`` on the metric ``monitor`` included; see
  ``lemon_pl.core.optim``), given the stage's :meth:`Stage.parameter_groups` (a network may
  declare groups with their own rates); unset, the stage's :meth:`Stage.default_optimizer` and
  :meth:`Stage.default_scheduler` (AdamW + warm-up cosine here; a stage overrides them, e.g.
  Adam and no schedule, or per-level rates);
* :meth:`Stage.load_init`: network weights from a checkpoint (``init_from``, same architecture);
* the NaN/Inf guard that stops a run and saves the last good state;
* what callbacks read, and nothing else: ``reports`` (one ``lemon_pl.core.report.EvaluationReport``
  per evaluated stage, set by :meth:`Stage.publish_report`), ``examples`` (``{group: {"true":
  tensor, "pred": tensor, ...}}`` of the last evaluation), :meth:`Stage.fit_extras`, ``net``.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

#: constructor arguments that are not hyperparameters (objects, not primitives)
NOT_HPARAMS = ["net", "optimizer", "lr_scheduler"]

if TYPE_CHECKING:
    from lemon_pl.core.report import EvaluationReport


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
        optimizer: optimiser factory from the config (``class_path`` + ``init_args``), called with
            :meth:`parameter_groups`; unset: :meth:`default_optimizer`.
        lr_scheduler: schedule factory from the config; unset: :meth:`default_scheduler`.
        monitor: the metric a ``ReduceLROnPlateau`` schedule watches when its class takes none
            (default ``val/rel_l2``).

    The default optimiser and schedule read the hyperparameters ``lr``, ``weight_decay``,
    ``betas``, ``eps``, ``warmup_ratio``, ``min_lr_ratio`` (and ``adamw``): a stage that uses them
    declares them (as ``OperatorModule`` does) and calls ``save_hparams()`` in its constructor.
    """

    def __init__(self, optimizer: OptimizerCallable | None = None, lr_scheduler: LRSchedulerCallable | None = None,
                 monitor: str | None = None):
        super().__init__()
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.monitor = monitor
        #: the last evaluation report per stage (``val``, ``test``): what the callbacks read
        self.reports: dict[str, EvaluationReport] = {}
        #: example predictions of the last evaluation, ``{group: {"true": ..., "pred": ...}}``
        self.examples: dict[str, dict[str, torch.Tensor]] = {}

    def save_hparams(self) -> None:
        """``save_hyperparameters`` of the calling constructor's primitive arguments."""
        self.save_hyperparameters(ignore=NOT_HPARAMS, frame=inspect.currentframe().f_back)

    @property
    def n_trainable(self) -> int:
        """Trainable parameters of the stage's network ``net`` (of the whole stage if it has none)."""
        return count_parameters(getattr(self, "net", self), trainable_only=True)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ optimiser policy
    def parameter_groups(self) -> list[dict[str, Any]]:
        """The trainable parameters as torch parameter groups, given to the optimiser (configured
        or default). Default: the groups the network ``net`` declares in a ``parameter_groups()``
        method (e.g. ``[{"params": [...], "lr": 1e-2}, ...]``; frozen parameters dropped), then one
        group of every other trainable parameter; without such a method, one group of
        :meth:`trainable_parameters`."""
        trainable = self.trainable_parameters()
        hook = getattr(getattr(self, "net", None), "parameter_groups", None)
        if not callable(hook):
            return [{"params": trainable}]
        groups, seen = [], set()
        for g in hook():
            kept = [p for p in g["params"] if p.requires_grad and id(p) not in seen]
            seen.update(id(p) for p in kept)
            if kept:
                groups.append({**g, "params": kept})
        rest = [p for p in trainable if id(p) not in seen]
        return groups + ([{"params": rest}] if rest else [])

    def default_optimizer(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        """The optimiser when the config sets none: AdamW with the stage's ``lr``, ``betas``,
        ``eps`` and ``weight_decay`` (on matrices only), see ``lemon_pl.core.optim``."""
        from lemon_pl.core.optim import hparam_adamw

        return hparam_adamw(groups, self.hparams, grad_scaler=uses_grad_scaler(self.trainer))

    def default_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
        """The schedule when the config sets none (None: a constant rate): linear warm-up over
        ``warmup_ratio`` of the run's optimiser steps, then cosine decay to ``lr * min_lr_ratio``."""
        from lemon_pl.core.optim import WarmupCosine

        return WarmupCosine(optimizer, total_steps, self.hparams.warmup_ratio, self.hparams.min_lr_ratio)

    def configure_optimizers(self):
        from lemon_pl.core.optim import configured_scheduler, optimizer_config

        groups = self.parameter_groups()
        if not any(g["params"] for g in groups):
            raise ValueError("the stage has no trainable parameters")
        opt = self.default_optimizer(groups) if self.optimizer_factory is None else self.optimizer_factory(groups)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = (self.default_scheduler(opt, total) if self.lr_scheduler_factory is None
                 else configured_scheduler(self.lr_scheduler_factory, opt, total))
        return optimizer_config(opt, sched, self.monitor)

    # ------------------------------------------------------------------ initial weights
    def load_init(self, path: str | Path, net: nn.Module | None = None) -> dict[str, torch.Tensor]:
        """Load the network weights of the checkpoint ``path`` (any stage's; same architecture,
        refused in one line otherwise) into ``net`` (default: the stage's ``net``): what an
        ``init_from`` argument does. Returns the loaded network state."""
        from lemon_pl.core.checkpointing import load_into, load_net_state

        state = load_net_state(path)
        load_into(self.net if net is None else net, state, path)
        return state

    # ------------------------------------------------------------------ what callbacks read
    def publish_report(self, report: EvaluationReport, log: bool = True) -> None:
        """Keep ``report`` as ``reports[report.stage]`` (the callbacks print, write and upload it)
        and, with ``log``, log its values (``EvaluationReport.logged``) on this rank."""
        self.reports[report.stage] = report
        if log:
            self.log_dict(report.logged(), sync_dist=False, add_dataloader_idx=False)

    def fit_extras(self) -> dict[str, Any]:
        """What the stage adds to ``fit_summary.json`` (``FitSummary`` callback)."""
        return {}

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


