"""Multi-level fine-tuning (Li, Fan & Ying, arXiv 2102.07169) as one Lightning stage.

``MultilevelRegression`` (a ``lemon_pl.core.stage.Stage``: NaN/Inf guard, optimiser and schedule
from the config) trains a network on a solution map level by level in one ``fit``: level 1
(coarse, many samples) for ``level_epochs[0]`` epochs, then level 2, ... (a
``lemon_pl.core.phases.PhaseSchedule`` of the levels, the same one the data module uses to switch
the training set at each level's first epoch; the trainer reloads it every epoch). The weights are
handed on as they are: nothing is re-initialised or copied between levels. At each new level the
optimiser's moments are reset (``reset_optimizer``). With the default optimiser (AdamW) and no
configured schedule the learning rate restarts at that level's ``lr`` and decays (cosine, to
``min_lr_ratio``) over the level's steps, so a level is a fine-tuning run of its own, as in the
paper's recipe of successive fine-tuning. A configured ``optimizer`` (e.g. SGD) keeps its own
rate, changed only by a configured ``lr_scheduler``.

Every validation scores the *finest* level's validation set; ``val/rel_l2`` per epoch with
``level`` beside it shows what each level gains and whether a finer level forgets. At the end of
each level the stage records that level's validation error (``fit_summary.json``: ``levels``) and
``checkpoints/level<l>_n<grid>.ckpt`` is saved (``LevelCheckpoints``). The test publishes its
report (one row, the family: relative L2 on the finest test set, mean and median over samples;
the spread, the sample count and the data summary with the measured generation budget as extras),
which ``MetricTables`` prints and writes as ``test_metrics.csv`` / ``test_metrics.json``.

What the stage knows of the data comes by links from ``MultilevelDataModule`` (``model_links``):
the level schedule, the label/input statistics ``data_stats`` and the ``data_summary`` (levels,
samples, measured seconds per sample, budget) - never through ``trainer.datamodule``.

Loss: MSE of standardised labels (scalar mean/std of the first level's training data, fixed for
the whole run and stored in the checkpoint as buffers); reported error: per-sample relative L2 in
physical units, ``||u_hat - u|| / ||u||``, averaged over samples.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from lemon_pl.core.metrics import relative_l2
from lemon_pl.core.phases import PhaseSchedule
from lemon_pl.core.report import EvaluationReport
from lemon_pl.core.stage import NOT_HPARAMS, Stage

#: the label and input statistics the data module links (``data_stats``), kept as buffers
STAT_NAMES = ("in_mean", "in_std", "out_mean", "out_std")


class MultilevelRegression(Stage):
    """Level curriculum on a solution map (see the module docstring).

    Args:
        net: an operator network (``lemon_pl.models``) with one input and one output frame.
        lr: learning rate of every level, or one per level (default optimiser).
        weight_decay: AdamW weight decay (default optimiser).
        min_lr_ratio: each level's cosine decay ends at this fraction of its rate.
        reset_optimizer: clear the optimiser's moments at every new level.
        finetune_lr_ratio: the rate of every level after the first one that trains is multiplied by
            this (fine-tuning on few fine samples with a smaller step forgets less).
        level_epochs: epochs per level (linked from the data module's ``epochs``).
        data_stats: ``in_mean``, ``in_std``, ``out_mean``, ``out_std`` of the first level's
            training data (linked from the data module; a checkpoint's values win).
        data_summary: the data's levels, samples, seconds per sample and budget (linked; written
            to ``fit_summary.json`` and ``test_metrics.json``).
        optimizer, lr_scheduler, monitor: see ``lemon_pl.core.stage.Stage``.
    """

    def __init__(self, net: nn.Module, lr: float | Sequence[float] = 1e-3, weight_decay: float = 0.0,
                 min_lr_ratio: float = 0.05, reset_optimizer: bool = True, finetune_lr_ratio: float = 1.0,
                 level_epochs: Sequence[int] | None = None, data_stats: dict[str, float] | None = None,
                 data_summary: dict[str, Any] | None = None, optimizer: OptimizerCallable | None = None,
                 lr_scheduler: LRSchedulerCallable | None = None, monitor: str | None = None) -> None:
        super().__init__(optimizer, lr_scheduler, monitor)
        self.save_hyperparameters(ignore=[*NOT_HPARAMS, "data_stats", "data_summary"])
        self.net = net
        self.schedule = PhaseSchedule(level_epochs or [1])
        self.level_epochs = list(self.schedule.lengths)
        lrs = [float(lr)] * len(self.level_epochs) if isinstance(lr, (int, float)) else [float(v) for v in lr]
        if len(lrs) != len(self.level_epochs):
            raise ValueError(f"model.lr: {len(lrs)} rates for {len(self.level_epochs)} levels")
        if any(v <= 0 for v in lrs):
            raise ValueError(f"model.lr must be positive, got {lrs}")
        if not finetune_lr_ratio > 0:
            raise ValueError(f"model.finetune_lr_ratio must be positive, got {finetune_lr_ratio}")
        first = next((l for l, e in enumerate(self.level_epochs) if e > 0), 0)
        self.lrs = [v * (finetune_lr_ratio if l > first else 1.0) for l, v in enumerate(lrs)]
        stats = dict(data_stats or {})
        if stats and set(stats) != set(STAT_NAMES):
            raise ValueError(f"model.data_stats must hold {', '.join(STAT_NAMES)}, got {sorted(stats)}")
        for name in STAT_NAMES:
            self.register_buffer(name, torch.tensor(0.0 if "mean" in name else 1.0))
            if name in stats:
                getattr(self, name).fill_(stats[name])
        self.data_summary = dict(data_summary or {})
        #: the per-level rate and cosine apply to the default optimiser without a configured schedule
        self.level_rates = optimizer is None and lr_scheduler is None
        self.history: list[dict[str, Any]] = []  # one row per validation: epoch, level, val rel L2
        self.level_results: dict[int, float] = {}
        self._val: list[torch.Tensor] = []
        self._test: list[torch.Tensor] = []
        self._test_started = 0.0

    # ------------------------------------------------------------------ schedule
    def level_at_epoch(self, epoch: int) -> int:
        return self.schedule.phase_at(epoch)

    def level_start(self, level: int) -> int:
        return self.schedule.start(level)

    def is_level_end(self, epoch: int) -> bool:
        """``epoch`` is the last epoch of its level."""
        return self.schedule.is_last(epoch)

    def setup(self, stage: str) -> None:
        if stage == "fit":
            # the level schedule decides the length of the run and needs a fresh loader each epoch
            self.trainer.fit_loop.max_epochs = self.schedule.total
            self.trainer.reload_dataloaders_every_n_epochs = 1

    # ------------------------------------------------------------------ optimiser
    def default_optimizer(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        """AdamW at the first level's rate (each level's rate is set per step, see the module doc)."""
        from lemon_pl.core.optim import default_adamw
        from lemon_pl.core.stage import uses_grad_scaler

        return default_adamw(groups, uses_grad_scaler(self.trainer), lr=self.lrs[0],
                             weight_decay=self.hparams.weight_decay)

    def default_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> None:
        return None  # the per-level cosine is set in on_train_batch_start

    def _steps_in_epoch(self) -> int:
        n = self.trainer.num_training_batches
        return int(n) if isinstance(n, int) or (isinstance(n, float) and math.isfinite(n)) else 1

    def on_train_epoch_start(self) -> None:
        epoch = self.current_epoch
        level = self.level_at_epoch(epoch)
        if epoch == self.level_start(level) and epoch > 0 and self.hparams.reset_optimizer:
            for opt in self.trainer.optimizers:
                opt.state.clear()

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        super().on_train_batch_start(batch, batch_idx)
        if not self.level_rates:
            return
        level, done_epochs, epochs = self.schedule.progress(self.current_epoch)
        per_epoch = self._steps_in_epoch()
        done = done_epochs * per_epoch + batch_idx
        total = max(1, epochs * per_epoch)
        ratio = self.hparams.min_lr_ratio
        lr = self.lrs[level] * (ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, done / total))))
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr

    # ------------------------------------------------------------------ steps
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Physical-units prediction ``(B, 1, n)`` for network inputs ``(B, 1, n)`` (transformed)."""
        t = torch.zeros(1, device=x.device)
        z = self.net((x - self.in_mean) / self.in_std, t, t + 1)
        return z * self.out_std + self.out_mean

    def training_step(self, batch, batch_idx: int):
        t = torch.zeros(1, device=batch["x"].device)
        z = self.net((batch["x"] - self.in_mean) / self.in_std, t, t + 1)
        loss = torch.mean((z - (batch["y"] - self.out_mean) / self.out_std) ** 2)
        self.ensure_finite(loss, batch, batch_idx)
        self.log("train/loss", loss, prog_bar=True)
        self.log("level", float(self.level_at_epoch(self.current_epoch) + 1), prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self._val.append(relative_l2(self(batch["x"]), batch["y"]).detach())

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        err = torch.cat(self._val)
        self._val = []
        value = float(err.mean())
        self.log("val/rel_l2", value, prog_bar=True)
        if self.trainer.sanity_checking:
            return
        epoch, level = self.current_epoch, self.level_at_epoch(self.current_epoch)
        self.log("val/level", float(level + 1))
        self.history.append({"epoch": epoch, "level": level, "step": int(self.global_step), "val_rel_l2": value})
        if self.is_level_end(epoch):
            self.level_results[level] = value

    def on_test_epoch_start(self) -> None:
        self.examples = {}
        self._test_started = time.perf_counter()

    def test_step(self, batch, batch_idx: int) -> None:
        pred = self(batch["x"])
        self._test.append(relative_l2(pred, batch["y"]).detach())
        if batch_idx == 0:
            self.examples = {self.family: {"input": batch["x"][:4, 0].cpu(), "true": batch["y"][:4, 0].cpu(),
                                           "pred": pred[:4, 0].cpu()}}

    def on_test_epoch_end(self) -> None:
        err = torch.cat(self._test)
        self._test = []
        self.log("test/rel_l2", float(err.mean()))
        result = {"rel_l2": float(err.mean()), "rel_l2_std": float(err.std()) if err.numel() > 1 else 0.0,
                  "rel_l2_median": float(err.median()), "n_test": int(err.numel())}
        row = {m: result[m] for m in ("rel_l2", "rel_l2_median")}
        self.publish_report(EvaluationReport("test", "family", {self.family: row}, tuple(row),
                                             extras={**result, **self.data_summary},
                                             seconds=time.perf_counter() - self._test_started), log=False)

    # ------------------------------------------------------------------ reporting
    @property
    def family(self) -> str:
        """The row name of the report: the data's family (``overall`` without a data summary)."""
        return str(self.data_summary.get("family", "overall"))

    def level_name(self, level: int) -> str:
        """``level<l>_n<grid>`` (``level<l>`` without a data summary)."""
        grids = self.data_summary.get("levels")
        return f"level{level + 1}" + (f"_n{grids[level]}" if grids else "")

    def fit_extras(self) -> dict[str, Any]:
        return {"lr": self.lrs, "level_val_rel_l2": {str(k + 1): v for k, v in sorted(self.level_results.items())},
                "val_curve": self.history, **self.data_summary}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["multilevel"] = {"history": self.history, "level_results": self.level_results}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("multilevel", {})
        self.history = list(state.get("history", []))
        self.level_results = {int(k): v for k, v in state.get("level_results", {}).items()}


__all__ = ["MultilevelRegression", "STAT_NAMES"]
