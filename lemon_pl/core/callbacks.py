"""Reporting callbacks any stage can use (``configs/callbacks/default.yaml`` lists them).

* ``MetricTables``: after each test, prints the per-family table and writes
  ``test_metrics.csv`` / ``test_metrics.json`` (with the error-vs-steps ``curve``) into the run
  folder; after each validation and test, logs the table to W&B (one row per family).
* ``PredictionFigures``: truth / prediction / error images per family after each validation
  (W&B images, else ``figures/epochNNN_<family>.png``), and ``test_examples.npz`` after a test.
* ``FitSummary``: ``fit_summary.json`` with parameter counts, the median time per
  training batch and what the stage's ``fit_extras()`` adds (if it has one).

They read what the stage exposes: ``eval_results`` (tables), ``examples`` (one trajectory per
family), ``table_extra_columns()``, ``net``. Under DDP every rank runs them (``trainer.log_dir``
is collective) and only global rank 0 writes.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback

from lemon_pl.core.checkpointing import atomic_write
from lemon_pl.core.loggers import wandb_logger
from lemon_pl.core.stage import count_parameters
from lemon_pl.core.metrics import METRICS, REPORTED


def _eval_result(pl_module, stage: str) -> dict[str, Any] | None:
    return getattr(pl_module, "eval_results", {}).get(stage)


class MetricTables(Callback):
    """Per-family metric tables: printed, as CSV/JSON files after tests, as W&B tables."""

    def on_validation_end(self, trainer, pl_module) -> None:
        result = _eval_result(pl_module, "val")
        if result and trainer.is_global_zero and not trainer.sanity_checking:
            self.log_wandb(trainer, "val", result["table"])

    def on_test_end(self, trainer, pl_module) -> None:
        result = _eval_result(pl_module, "test")
        log_dir = trainer.log_dir  # collective under DDP: every rank must ask
        if not result or not trainer.is_global_zero:
            return
        self.log_wandb(trainer, "test", result["table"])
        extra = pl_module.table_extra_columns() if hasattr(pl_module, "table_extra_columns") else {}
        print(self.write(result["table"], "test", result["seconds"], log_dir, extra, result.get("curve")))

    @staticmethod
    def log_wandb(trainer, stage: str, table: dict[str, dict[str, float]]) -> None:
        lg = wandb_logger(trainer)
        if lg is not None:
            rows = [[g, *(table[g][m] for m in METRICS)] for g in table]
            lg.log_table(key=f"{stage}/per_family", columns=["family", *METRICS], data=rows, step=trainer.global_step)

    @staticmethod
    def write(table: dict[str, dict[str, float]], stage: str, seconds: float, log_dir: str | None,
              extra: dict[str, Any], curve: dict[str, dict[str, dict[str, float]]] | None = None) -> str:
        """Write ``<stage>_metrics.csv`` / ``.json`` into ``log_dir``; return the printed table."""
        header = ["family", *REPORTED, "rel_l2_persistence", *extra]
        rows = [[g, *(table[g][m] for m in header[1:5]), *extra.values()] for g in table]
        widths = [max(len(header[0]), *(len(r[0]) for r in rows))] + [12] * (len(header) - 1)
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
        for r in rows:
            cells = [r[0].ljust(widths[0])] + [
                (f"{v:.4g}" if isinstance(v, float) else str(v)).ljust(w) for v, w in zip(r[1:], widths[1:])]
            lines.append("  ".join(cells))
        text = f"\n{stage} results ({seconds:.1f} s):\n" + "\n".join(lines)
        folder = Path(log_dir or ".")
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\r\n")
        w.writerow(header + ["seconds"])
        for r in rows:
            w.writerow(r + [f"{seconds:.3f}"])
        atomic_write(folder / f"{stage}_metrics.csv", buf.getvalue())
        payload = {"stage": stage, "seconds": seconds, **extra, "families": table}
        if curve:
            payload["curve"] = curve
            text += "\nrel_l2 after k adaptation steps: " + ", ".join(
                f"k={k}: {c['overall']['rel_l2']:.4g}" for k, c in curve.items())
        atomic_write(folder / f"{stage}_metrics.json", json.dumps(payload, indent=2, allow_nan=True))
        return text


class PredictionFigures(Callback):
    """Example predictions: figures after validation, ``test_examples.npz`` after a test."""

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        log_dir = trainer.log_dir  # collective under DDP: every rank must ask
        examples = getattr(pl_module, "examples", None)
        wanted = getattr(getattr(pl_module, "hparams", None), "log_figures", True)
        if (not examples or not wanted or trainer.sanity_checking or trainer.fast_dev_run
                or not trainer.is_global_zero):
            return
        self.log_figures(trainer, examples, log_dir)

    def on_test_end(self, trainer, pl_module) -> None:
        log_dir = trainer.log_dir  # collective under DDP: every rank must ask
        examples = getattr(pl_module, "examples", None)
        if examples and trainer.is_global_zero:
            self.write_examples(examples, log_dir)

    @staticmethod
    def log_figures(trainer, examples: dict[str, dict], log_dir: str | None) -> list[Path]:
        """One figure per family: to W&B as images, otherwise PNG files in ``log_dir/figures``."""
        import matplotlib.pyplot as plt

        from lemon_pl.core.figures import prediction_figure

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
                path = folder / f"epoch{epoch:03d}_{fam}.png"
                atomic_write(path, lambda fh, fig=fig: fig.savefig(fh, format="png", dpi=80))
                written.append(path)
        for fig in figs.values():
            plt.close(fig)
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
                **(pl_module.fit_extras() if hasattr(pl_module, "fit_extras") else {})}

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
        finite = getattr(pl_module, "weights_finite", lambda: True)()
        if ckpt_cb is not None and getattr(ckpt_cb, "dirpath", None) and trainer.world_size == 1 and finite:
            path = Path(ckpt_cb.dirpath) / "last.ckpt"
            trainer.save_checkpoint(path)
            msg += f"; the state was saved to {path}: resume with --ckpt_path {path}"
        else:
            msg += "; nothing was saved"
        print(msg, file=sys.stderr, flush=True)
