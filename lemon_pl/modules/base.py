"""Shared LightningModule machinery: prediction, metrics per family, figures, optimiser.

Metrics (LeMON's protocol): relative L2 per sample, ``||u_hat - u|| / (||u|| + 1e-7)`` over all
predicted frames and grid points after de-normalisation, also over the first and second
half of the predicted frames; the persistence baseline (repeat the last input frame) is
scored the same way. Each family's value is the mean over its samples; ``overall`` pools
all samples (sample-weighted), as the paper reports it.
"""

from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

METRICS = ("rel_l2", "rel_l2_first", "rel_l2_second", "rel_l2_persistence", "mse")


def relative_l2(pred: torch.Tensor, true: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-sample ||pred - true|| / (||true|| + eps) over every dimension but the first."""
    diff = (pred - true).flatten(1).float()
    return diff.norm(dim=1) / (true.flatten(1).float().norm(dim=1) + eps)


class _FamilyMetrics(nn.Module):
    """MeanMetric per (family or 'overall', metric); synchronised across DDP ranks on compute."""

    def __init__(self, families: list[str]):
        super().__init__()
        self.families = list(families)
        self.store = nn.ModuleDict({
            f"{g}__{m}": MeanMetric() for g in [*self.families, "overall"] for m in METRICS
        })

    def update(self, family: str, values: dict[str, torch.Tensor]) -> None:
        for m, v in values.items():
            self.store[f"{family}__{m}"].update(v)
            self.store[f"overall__{m}"].update(v)

    def compute(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for g in [*self.families, "overall"]:
            row = {}
            for m in METRICS:
                metric = self.store[f"{g}__{m}"]
                row[m] = float(metric.compute()) if metric.update_count else math.nan
            out[g] = row
        return out

    def reset(self) -> None:
        for metric in self.store.values():
            metric.reset()


class OperatorModule(pl.LightningModule):
    """Base class of every stage: a network ``net`` mapping input frames (+ equation) to outputs.

    Args:
        net: the network (``lemon_pl.models.Prose``, ``DeepONet``, ``FNO``), chosen by class_path.
        lr, weight_decay, betas, eps: AdamW settings.
        warmup_ratio: fraction of the total optimiser steps with linear warm-up.
        min_lr_ratio: the cosine schedule decays to ``lr * min_lr_ratio``.
        train_family_names, eval_family_names: linked from the data module (the evaluation
            loaders come in the order of ``eval_family_names``).
        log_figures: log truth / prediction / error images per family at validation end.
        eval_support_size, eval_query_size: with task batches (``data.unit: task``) each
            operator's first ``eval_support_size`` trajectories are the support set and the next
            ``eval_query_size`` the scored query set.
        eval_steps: adaptation steps on the support set before scoring (0 = zero-shot).
        eval_lr: SGD learning rate of those steps (meta-learned rates override it).
        eval_adapt: parameters that adapt (``all`` or name prefixes such as ``[decoder]``).
        eval_curve: adaptation-step counts at which the test query error is also recorded, e.g.
            ``[0, 1, 2, 5, 10, 20]`` (the error-vs-steps curve of one test run, written as
            ``curve`` into ``test_metrics.json``); counts above ``eval_steps`` extend the run.
    """

    def __init__(
        self,
        net: nn.Module,
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        warmup_ratio: float = 0.1,
        min_lr_ratio: float = 0.0,
        train_family_names: list[str] | None = None,
        eval_family_names: list[str] | None = None,
        log_figures: bool = True,
        eval_support_size: int = 10,
        eval_query_size: int = 40,
        eval_steps: int = 0,
        eval_lr: float = 0.01,
        eval_adapt: str | list[str] = "all",
        eval_curve: list[int] | None = None,
    ):
        super().__init__()
        if eval_support_size < 0 or eval_query_size < 1 or eval_steps < 0:
            raise ValueError("eval_support_size >= 0, eval_query_size >= 1 and eval_steps >= 0 are required")
        if eval_curve is not None and any(int(k) < 0 for k in eval_curve):
            raise ValueError(f"eval_curve holds adaptation-step counts >= 0, got {eval_curve}")
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.train_families = list(train_family_names or [])
        self.eval_families = list(eval_family_names or self.train_families)
        self.val_metrics = _FamilyMetrics(self.eval_families)
        self.test_metrics = _FamilyMetrics(self.eval_families)
        self.curve_steps = sorted({int(k) for k in (eval_curve or [])})
        self.curve_metrics = nn.ModuleDict({str(k): _FamilyMetrics(self.eval_families) for k in self.curve_steps})
        self._figure_samples: dict[str, dict[str, torch.Tensor]] = {}
        self._test_started = 0.0
        self.last_test_table: dict[str, dict[str, float]] | None = None

    # ------------------------------------------------------------------ prediction
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        uses_eq = getattr(self.net, "uses_equation", False)
        return self.net(batch["u_in"], batch["t_in"], batch["t_out"],
                        batch["tokens"] if uses_eq else None,
                        batch["token_pad_mask"] if uses_eq else None)

    def batch_family_names(self, batch: dict[str, torch.Tensor]) -> list[str]:
        """Names of the families in a batch (ids index the data module's ``all_families``)."""
        names = getattr(getattr(self.trainer, "datamodule", None), "all_families", None) or []
        ids = sorted(set(batch["family"].reshape(-1).tolist()))
        return [names[i] if i < len(names) else str(i) for i in ids]

    def ensure_finite(self, loss: torch.Tensor, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Stop on a NaN/Inf loss, after saving the current (last good) state as ``last.ckpt``.

        All ranks agree on the decision (one all-reduce of a flag), so DDP never hangs.
        """
        bad = torch.tensor(float(not torch.isfinite(loss.detach()).all()), device=loss.device)
        if self.trainer.world_size > 1:
            bad = self.trainer.strategy.reduce(bad, reduce_op="sum")
        if float(bad) == 0:
            return
        from lemon_pl.modules.errors import NonFiniteLossError

        saved = ""
        ckpt_cb = getattr(self.trainer, "checkpoint_callback", None)
        if ckpt_cb is not None and getattr(ckpt_cb, "dirpath", None) and not self.trainer.fast_dev_run:
            path = Path(ckpt_cb.dirpath) / "last.ckpt"
            self.trainer.save_checkpoint(path)
            saved = f"; the last good state was saved to {path}"
        raise NonFiniteLossError(
            f"non-finite training loss ({float(loss.detach()):.4g}) at global step {self.global_step}, epoch "
            f"{self.current_epoch}, batch {batch_idx}, families {self.batch_family_names(batch)}{saved}")

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(pred.float(), target.float())

    @staticmethod
    def denormalise(u: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return u.float() * batch["std"][:, None, None] + batch["mean"][:, None, None]

    def sample_metrics(self, pred: torch.Tensor, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        true = self.denormalise(batch["u_out"], batch)
        phys = self.denormalise(pred, batch)
        half = true.shape[1] // 2
        persistence = self.denormalise(batch["u_in"][:, -1:], batch).expand_as(true)
        return {
            "rel_l2": relative_l2(phys, true),
            "rel_l2_first": relative_l2(phys[:, :half], true[:, :half]),
            "rel_l2_second": relative_l2(phys[:, half:], true[:, half:]),
            "rel_l2_persistence": relative_l2(persistence, true),
            "mse": ((pred.float() - batch["u_out"].float()) ** 2).flatten(1).mean(1),
        }

    # ------------------------------------------------------------------ evaluation
    def _family(self, dataloader_idx: int) -> str:
        return self.eval_families[dataloader_idx]

    def _eval_step(self, batch, dataloader_idx: int, metrics: _FamilyMetrics, keep_figure: bool,
                   curve: bool = False) -> None:
        family = self._family(dataloader_idx)
        if batch["u_in"].ndim == 4:  # a batch of operator tasks: adapt on support, score query
            on_step = None
            if curve and self.curve_steps:
                def on_step(k: int, pred: torch.Tensor, query: dict[str, torch.Tensor]) -> None:
                    self.curve_metrics[str(k)].update(family, self.sample_metrics(pred, query))
            for t in range(batch["u_in"].shape[0]):
                query = self._eval_task(batch, t, on_step)
                self._score(family, query["__pred"], query, metrics, keep_figure and t == 0)
            return
        self._score(family, self.predict_batch(batch), batch, metrics, keep_figure)

    # ------------------------------------------------------------------ tasks
    @staticmethod
    def task_view(batch: dict[str, torch.Tensor], t: int, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """Samples ``idx`` of task ``t`` as an ordinary sample batch."""
        n = len(idx)
        view = {k: batch[k][t, idx] for k in ("u_in", "u_out", "mean", "std")}
        for k in ("t_in", "t_out", "tokens", "token_pad_mask"):
            view[k] = batch[k][t].unsqueeze(0).expand(n, *batch[k][t].shape)
        view["family"] = batch["family"][t].expand(n)
        return view

    def task_lr(self, batch: dict[str, torch.Tensor], t: int):
        """Inner/eval learning rate for task ``t`` (a float; meta-learned modules override)."""
        return self.hparams.eval_lr

    def fast_parameter_names(self, adapt) -> list[str]:
        from lemon_pl.meta import select_parameters

        return select_parameters(self.net, adapt)

    def eval_fast_names(self) -> list[str]:
        """Parameters that adapt during few-shot evaluation."""
        return self.fast_parameter_names(self.hparams.eval_adapt)

    def functional_forward(self, params: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
        from lemon_pl.meta import call

        uses_eq = getattr(self.net, "uses_equation", False)
        return call(self.net, params, batch["u_in"], batch["t_in"], batch["t_out"],
                    batch["tokens"] if uses_eq else None, batch["token_pad_mask"] if uses_eq else None)

    def _eval_task(self, batch: dict[str, torch.Tensor], t: int, on_step=None) -> dict[str, torch.Tensor]:
        """Adapt on task ``t``'s support set and predict its query set (``query["__pred"]``).

        ``on_step(k, pred, query)`` is called with the query prediction after each step count ``k``
        of ``curve_steps`` (first-order SGD has no state, so adapting in stages is exact)."""
        from lemon_pl.meta import adapt

        hp = self.hparams
        k = batch["u_in"].shape[1]
        s = min(hp.eval_support_size, k - 1)
        support = self.task_view(batch, t, torch.arange(0, s))
        query = self.task_view(batch, t, torch.arange(s, min(k, s + hp.eval_query_size)))
        steps = self.eval_adapt_steps()
        marks = sorted({steps, *self.curve_steps}) if on_step is not None else [steps]
        if marks[-1] == 0 or s == 0:
            with torch.no_grad():
                query["__pred"] = self(query)
            if on_step is not None:
                for k in self.curve_steps:
                    on_step(k, query["__pred"], query)
            return query
        if torch.is_inference_mode_enabled():
            raise RuntimeError("few-shot evaluation adapts with gradients: set `trainer.inference_mode: false`")
        params = {n: p.detach() for n, p in self.net.named_parameters()}
        names = self.eval_fast_names()
        with torch.enable_grad():
            for n in names:
                params[n] = params[n].clone().requires_grad_(True)
            lr = self.task_lr(batch, t)
            lr = {n: v.detach() for n, v in lr.items()} if isinstance(lr, dict) else (
                lr.detach() if torch.is_tensor(lr) else lr)
            loss_fn = lambda p: self.loss(self.functional_forward(p, support), support["u_out"])  # noqa: E731
            done, fast = 0, {n: params[n] for n in names}
            for k in marks:
                if k > done:
                    fast = adapt(self.net, {**params, **fast}, names, loss_fn, k - done, lr, first_order=True)
                    fast = {n: w.detach() for n, w in fast.items()}
                    done = k
                with torch.no_grad():
                    pred = self.functional_forward({**params, **fast}, query)
                if on_step is not None and k in self.curve_steps:
                    on_step(k, pred, query)
                if k == steps:
                    query["__pred"] = pred
        return query

    def eval_adapt_steps(self) -> int:
        return self.hparams.eval_steps

    def _score(self, family: str, pred: torch.Tensor, batch: dict[str, torch.Tensor], metrics: _FamilyMetrics,
               keep_figure: bool) -> None:
        metrics.update(family, self.sample_metrics(pred, batch))
        if keep_figure and family not in self._figure_samples:
            first = {k: v[:1] for k, v in batch.items()}
            self._figure_samples[family] = {
                "true": self.denormalise(first["u_out"], first).cpu()[0],
                "pred": self.denormalise(pred[:1].float(), first).cpu()[0],
            }

    def predict_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Prediction used for evaluation (subclasses may adapt first)."""
        return self(batch)

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx, self.val_metrics, keep_figure=batch_idx == 0)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx, self.test_metrics, keep_figure=batch_idx == 0, curve=True)

    def _log_table(self, stage: str, table: dict[str, dict[str, float]]) -> None:
        flat = {}
        for group, row in table.items():
            for m, v in row.items():
                if math.isfinite(v):
                    name = f"{stage}/{m}" if group == "overall" else f"{stage}/{m}/{group}"
                    flat[name] = v
        self.log_dict(flat, sync_dist=False, add_dataloader_idx=False)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self._log_wandb_table(stage, table)

    def _log_wandb_table(self, stage: str, table: dict[str, dict[str, float]]) -> None:
        """Per-family metrics as a W&B table (one row per family, plus 'overall')."""
        from lightning.pytorch.loggers import WandbLogger

        columns = ["family", *METRICS]
        rows = [[g, *(table[g][m] for m in METRICS)] for g in table]
        for lg in self.trainer.loggers:
            if isinstance(lg, WandbLogger):
                lg.log_table(key=f"{stage}/per_family", columns=columns, data=rows, step=self.global_step)

    def on_validation_epoch_end(self) -> None:
        table = self.val_metrics.compute()
        self.val_metrics.reset()
        self._log_table("val", table)
        log_dir = self.trainer.log_dir  # collective under DDP: every rank must ask
        if (self.hparams.log_figures and not self.trainer.sanity_checking and not self.trainer.fast_dev_run
                and self.trainer.is_global_zero):
            from lemon_pl.plotting import log_prediction_figures

            log_prediction_figures(self, self._figure_samples, log_dir)
        self._figure_samples = {}

    # ------------------------------------------------------------------ fit summary
    @property
    def n_trainable(self) -> int:
        return sum(p.numel() for p in self.net.parameters() if p.requires_grad)

    def on_train_start(self) -> None:
        self._step_seconds: list[float] = []

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        self._step_started = time.perf_counter()

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self._step_seconds.append(time.perf_counter() - self._step_started)

    def fit_summary(self) -> dict[str, Any]:
        """Parameter counts and the measured training time per training batch (median, without
        the first step) of this fit."""
        import statistics

        times = list(getattr(self, "_step_seconds", []))  # empty when fit ran no training
        timed = times[1:] if len(times) > 1 else times
        total = sum(p.numel() for p in self.net.parameters())
        trainable = self.n_trainable
        return {"total_params": total, "trainable_params": trainable,
                "trainable_fraction": trainable / max(total, 1), "train_steps": len(times),
                "ms_per_step": 1000 * statistics.median(timed) if timed else None,
                "train_seconds": sum(times)}

    def on_fit_end(self) -> None:
        log_dir = self.trainer.log_dir  # collective under DDP: every rank must ask
        if self.trainer.is_global_zero and log_dir and not self.trainer.fast_dev_run:
            folder = Path(log_dir)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "fit_summary.json").write_text(json.dumps(self.fit_summary(), indent=2))

    def on_test_epoch_start(self) -> None:
        self._test_started = time.perf_counter()
        self._figure_samples = {}

    def on_test_epoch_end(self) -> None:
        table = self.test_metrics.compute()
        self.test_metrics.reset()
        self._log_table("test", table)
        self.last_test_table = table
        curve = {}
        for k in self.curve_steps:  # compute() is collective under DDP: every rank
            curve[str(k)] = self.curve_metrics[str(k)].compute()
            self.curve_metrics[str(k)].reset()
        log_dir = self.trainer.log_dir  # collective under DDP: every rank must ask
        if self.trainer.is_global_zero:
            self.write_table(table, "test", time.perf_counter() - self._test_started, log_dir, curve=curve)
            self.write_examples(log_dir)
        self._figure_samples = {}

    def write_examples(self, log_dir: str | None) -> Path | None:
        """The first test query trajectory of each family, truth and prediction (physical units),
        as ``test_examples.npz`` (keys ``<family>/true``, ``<family>/pred``) for reports."""
        import numpy as np

        if not self._figure_samples:
            return None
        path = Path(log_dir or ".") / "test_examples.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {f"{fam}/{k}": v.numpy() for fam, s in self._figure_samples.items() for k, v in s.items()}
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path

    def table_extra_columns(self) -> dict[str, Any]:
        dm = getattr(self.trainer, "datamodule", None)
        if getattr(getattr(dm, "hparams", None), "unit", "sample") != "task":
            return {"mode": "zero-shot", "adapt_steps": 0}
        steps = self.eval_adapt_steps()
        return {"mode": "few-shot" if steps else "zero-shot", "adapt_steps": steps,
                "support_size": self.hparams.eval_support_size, "query_size": self.hparams.eval_query_size}

    def write_table(self, table: dict[str, dict[str, float]], stage: str, seconds: float,
                    log_dir: str | None = None, curve: dict[str, dict[str, dict[str, float]]] | None = None) -> None:
        """Print a per-family table and write it as CSV and JSON into the run folder."""
        extra = self.table_extra_columns()
        header = ["family", "rel_l2", "rel_l2_first", "rel_l2_second", "rel_l2_persistence", *extra]
        rows = [[g, *(table[g][m] for m in header[1:5]), *extra.values()] for g in table]
        widths = [max(len(header[0]), *(len(r[0]) for r in rows))] + [12] * (len(header) - 1)
        lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
        for r in rows:
            cells = [r[0].ljust(widths[0])] + [
                (f"{v:.4g}" if isinstance(v, float) else str(v)).ljust(w) for v, w in zip(r[1:], widths[1:])]
            lines.append("  ".join(cells))
        print(f"\n{stage} results ({seconds:.1f} s):\n" + "\n".join(lines))
        folder = Path(log_dir or ".")
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f"{stage}_metrics.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header + ["seconds"])
            for r in rows:
                w.writerow(r + [f"{seconds:.3f}"])
        payload = {"stage": stage, "seconds": seconds, **extra, "families": table}
        if curve:
            payload["curve"] = curve
            print("rel_l2 after k adaptation steps: " + ", ".join(
                f"k={k}: {c['overall']['rel_l2']:.4g}" for k, c in curve.items()))
        (folder / f"{stage}_metrics.json").write_text(json.dumps(payload, indent=2, allow_nan=True))

    # ------------------------------------------------------------------ checkpoints
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse, in one line, a checkpoint whose network does not match the configured one."""
        state = checkpoint.get("state_dict", {})
        if checkpoint.get("lemon_adapters_only"):
            return  # handled by FinetuneModule
        own = {k: v.shape for k, v in self.state_dict().items() if k.startswith("net.")}
        theirs = {k: v.shape for k, v in state.items() if k.startswith("net.")}
        bad_shape = [k for k in own.keys() & theirs.keys() if own[k] != theirs[k]]
        if own.keys() != theirs.keys() or bad_shape:
            from lemon_pl.modules.errors import CheckpointMismatchError

            missing, extra = sorted(own.keys() - theirs.keys()), sorted(theirs.keys() - own.keys())
            what = (f"{len(missing)} missing and {len(extra)} unexpected weights" if missing or extra
                    else f"{bad_shape[0]} has shape {tuple(theirs[bad_shape[0]])}, the model {tuple(own[bad_shape[0]])}")
            raise CheckpointMismatchError(
                f"the checkpoint's network does not match the configured {type(self.net).__name__} ({what}); "
                "evaluate or resume with the training run's config.yaml or the same model overlay")

    # ------------------------------------------------------------------ optimisation
    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def configure_optimizers(self):
        hp = self.hparams
        decay, no_decay = [], []
        for p in self.trainable_parameters():
            (no_decay if p.ndim < 2 else decay).append(p)  # no decay on biases and norm scales
        groups = [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(hp.warmup_ratio * total)

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return hp.min_lr_ratio + (1 - hp.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
