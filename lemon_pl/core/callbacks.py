"""Reporting callbacks any stage can use (``configs/callbacks/default.yaml`` lists them).

* ``MetricTables``: the one writer of every metrics table. After each test it prints the stage's
  report (``EvaluationReport.format``) and writes ``test_metrics.csv`` / ``test_metrics.json``
  (``EvaluationReport.write``) into the run folder; after each validation and test it logs the
  rows to W&B (``<stage>/per_<group>``).
* ``PredictionFigures``: truth / prediction / error images per group after each validation
  (W&B images, else ``figures/epochNNN_<group>.png``), and ``test_examples.npz`` after a test.
* ``FitSummary``: ``fit_summary.json`` with parameter counts, the median time per
  training batch and what the stage's ``fit_extras()`` adds.

They read what ``lemon_pl.core.stage.Stage`` declares, nothing else of a stage: ``reports``
(one ``EvaluationReport`` per evaluated stage), ``examples`` (``{group: {"true", "pred"}}``),
``fit_extras()`` and ``net``. A LightningModule that is not a ``Stage`` has none of them (the
callbacks then write parameter counts and timings only). Under DDP every rank runs them
(``trainer.log_dir`` is collective) and only global rank 0 writes.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback

from lemon_pl.core.checkpointing import atomic_write
from lemon_pl.core.loggers import wandb_logger
from lemon_pl.core.report import EvaluationReport
from lemon_pl.core.stage import Stage, count_parameters


def stage_report(pl_module, stage: str) -> EvaluationReport | None:
    """The stage's report of its last ``stage`` evaluation (None if it published none)."""
    return pl_module.reports.get(stage) if isinstance(pl_module, Stage) else None


def stage_examples(pl_module) -> dict[str, dict]:
    return pl_module.examples if isinstance(pl_module, Stage) else {}


class MetricTables(Callback):
    """Metric tables per group (see the module doc): printed and written after tests, W&B tables."""

    def on_validation_end(self, trainer, pl_module) -> None:
        report = stage_report(pl_module, "val")
        if report is not None and trainer.is_global_zero and not trainer.sanity_checking:
            report.log_wandb(trainer)

    def on_test_end(self, trainer, pl_module) -> None:
        report = stage_report(pl_module, "test")
        log_dir = trainer.log_dir  # collective under DDP: every rank must ask
        if report is None or not trainer.is_global_zero:
            return
        report.log_wandb(trainer)
        report.write(log_dir)
        print(report.format())


class PredictionFigures(Callback):
    """Example predictions: figures after validation, ``test_examples.npz`` after a test."""

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        log_dir = trainer.log_dir  # collective under DDP: every rank must ask
        examples = stage_examples(pl_module)
        wanted = getattr(getattr(pl_module, "hparams", None), "log_figures", True)
        if (not examples or not wanted or trainer.sanity_checking or trainer.fast_dev_run
                or not trainer.is_global_zero):
            return
        self.log_figures(trainer, examples, log_dir)

    def on_test_end(self, trainer, pl_module) -> None:
        log_dir = trainer.log_dir  # collective under DDP: every rank must ask
        examples = stage_examples(pl_module)
        if examples and trainer.is_global_zero:
            self.write_examples(examples, log_dir)

    @staticmethod
    def log_figures(trainer, examples: dict[str, dict], log_dir: str | None) -> list[Path]:
        """One figure per family: to W&B as images, otherwise PNG files in ``log_dir/figures``."""
        from lemon_pl.core.figures import prediction_figure, pyplot, save_figure

        epoch = trainer.current_epoch
        figs = {fam: prediction_figure(s["true"].numpy(), s["pred"].numpy(), f"{fam}, epoch {epoch}")
                for fam, s in examples.items()}
        written: list[Path] = []
        lg = wandb_logger(trainer)
        if lg is not None:
            lg.log_image(key="val/prediction", images=list(figs.values()), caption=list(figs), step=trainer.global_step)
        else:
            folder = Path(log_dir or ".") / "figures"
            folder.mkdir(parents=True, exist_ok=True)
            for fam, fig in figs.items():  # atomically: a full disk is one line, never a truncated PNG
                written.append(save_figure(fig, folder / f"epoch{epoch:03d}_{fam}.png"))
        for fig in figs.values():
            pyplot().close(fig)
        return written

    @staticmethod
    def write_examples(examples: dict[str, dict], log_dir: str | None) -> Path:
        """The first test query trajectory of each family, truth and prediction (physical units),
        as ``test_examples.npz`` (keys ``<family>/true``, ``<family>/pred``) for reports."""
        import numpy as np

        arrays = {f"{fam}/{k}": v.numpy() for fam, s in examples.items() for k, v in s.items()}
        return atomic_write(Path(log_dir or ".") / "test_examples.npz",
                            lambda fh: np.savez_compressed(fh, **arrays))


class FitSummary(Callback):
    """``fit_summary.json``: total and trainable parameters of ``net`` (else of the whole stage)
    and the measured time per training batch (median, without the first one)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._started = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        self.seconds = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.seconds.append(time.perf_counter() - self._started)

    def summary(self, pl_module) -> dict[str, Any]:
        net = getattr(pl_module, "net", pl_module)
        timed = self.seconds[1:] if len(self.seconds) > 1 else self.seconds
        total, trainable = count_parameters(net), count_parameters(net, trainable_only=True)
        return {"total_params": total, "trainable_params": trainable,
                "trainable_fraction": trainable / max(total, 1), "train_steps": len(self.seconds),
                "ms_per_step": 1000 * statistics.median(timed) if timed else None,
                "train_seconds": sum(self.seconds),
                **(pl_module.fit_extras() if isinstance(pl_module, Stage) else {})}

    def on_fit_end(self, trainer, pl_module) -> None:
        log_dir = trainer.log_dir  # collective under DDP: every rank must ask
        if trainer.is_global_zero and log_dir and not trainer.fast_dev_run:
            atomic_write(Path(log_dir) / "fit_summary.json", json.dumps(self.summary(pl_module), indent=2))


class SaveOnInterrupt(Callback):
    """Ctrl-C during ``fit``: save the current state as ``last.ckpt`` (one process; finite weights
    only) and say how to resume. The CLI installs it in every run and exits with code 130."""

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        import sys

        if not isinstance(exception, KeyboardInterrupt) or trainer.state.fn != "fit":
            return
        trainer._lemon_interrupted = True
        msg = f"lemon-pl: interrupted at global step {trainer.global_step} (epoch {trainer.current_epoch})"
        ckpt_cb = getattr(trainer, "checkpoint_callback", None)
        finite = pl_module.weights_finite() if isinstance(pl_module, Stage) else True
        if ckpt_cb is not None and getattr(ckpt_cb, "dirpath", None) and trainer.world_size == 1 and finite:
            path = Path(ckpt_cb.dirpath) / "last.ckpt"
            trainer.save_checkpoint(path)
            msg += f"; the state was saved to {path}: resume with --ckpt_path {path}"
        else:
            msg += "; nothing was saved"
        print(msg, file=sys.stderr, flush=True)
