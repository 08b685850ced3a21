"""``OperatorModule``: the base class of the operator-learning stages.

It adds to ``lemon_pl.core.stage.Stage`` a network ``net`` mapping input frames (+ equation) to
output frames, the MSE loss, and evaluation per family (``lemon_pl.core.metrics``), zero-shot on
sample batches or few-shot on operator tasks (``lemon_pl.adaptation.fewshot``). Each evaluation
publishes its per-family report (``Stage.reports``: group ``family``, the evaluation mode and
support sizes as extras, the error-vs-steps curve) and keeps one example trajectory per family in
``examples``; printing, files, W&B tables and figures are callbacks (``lemon_pl.core.callbacks``).
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn

from lemon_pl.adaptation.functional import net_inputs
from lemon_pl.adaptation.tasks import task_view
from lemon_pl.core.metrics import TABLED, FamilyMetrics, denormalise, sample_metrics
from lemon_pl.core.report import EvaluationReport
from lemon_pl.core.stage import Stage, check_range


class OperatorModule(Stage):
    """Base class of the operator-learning stages. Arguments beyond ``Stage``'s:

    Args:
        net: the network (``lemon_pl.models.Prose``, ``DeepONet``, ``FNO``), chosen by class_path.
        train_family_names, eval_family_names: linked from the data module (the evaluation
            loaders come in the order of ``eval_family_names``).
        unit: linked from the data module: ``sample`` batches of trajectories or ``task``
            batches of whole operators (few-shot evaluation).
        log_figures: save truth / prediction / error images per family at validation end
            (``PredictionFigures`` callback).
        eval_support_size, eval_query_size: with task batches each operator's first
            ``eval_support_size`` trajectories are the support set and the next
            ``eval_query_size`` the scored query set.
        eval_steps: adaptation steps on the support set before scoring (0 = zero-shot).
        eval_lr: SGD learning rate of those steps (meta-learned rates override it).
        eval_adapt: parameters that adapt (``all`` or name prefixes such as ``[decoder]``).
        eval_curve: adaptation-step counts at which the test query error is also recorded, e.g.
            ``[0, 1, 2, 5, 10, 20]`` (the error-vs-steps curve of one test run, written as
            ``curve`` into ``test_metrics.json``); counts above ``eval_steps`` extend the run.
        adamw: implementation of the default AdamW: ``auto`` (fused where it applies, see
            ``lemon_pl.core.optim``), ``fused``, ``foreach`` or ``loop`` (PyTorch's per-parameter
            loop: the numerics of lemon-pl before issue 14, bit for bit).
        optimizer, lr_scheduler, monitor: see ``lemon_pl.core.stage.Stage`` (unset: AdamW with
            the rates above and warm-up + cosine decay).
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
        unit: str = "sample",
        log_figures: bool = True,
        eval_support_size: int = 10,
        eval_query_size: int = 40,
        eval_steps: int = 0,
        eval_lr: float = 0.01,
        eval_adapt: str | list[str] = "all",
        eval_curve: list[int] | None = None,
        adamw: str = "auto",
        optimizer: OptimizerCallable | None = None,
        lr_scheduler: LRSchedulerCallable | None = None,
        monitor: str | None = None,
    ):
        super().__init__(optimizer, lr_scheduler, monitor)
        from lemon_pl.core.optim import ADAMW_IMPLS

        if adamw not in ADAMW_IMPLS:
            raise ValueError(f"model.init_args.adamw must be one of {', '.join(ADAMW_IMPLS)}, got {adamw!r}")
        if eval_support_size < 0 or eval_query_size < 1 or eval_steps < 0:
            raise ValueError("eval_support_size >= 0, eval_query_size >= 1 and eval_steps >= 0 are required")
        if eval_curve is not None and any(int(k) < 0 for k in eval_curve):
            raise ValueError(f"eval_curve holds adaptation-step counts >= 0, got {eval_curve}")
        if unit not in ("sample", "task"):
            raise ValueError(f"unit must be 'sample' or 'task', got {unit!r}")
        check_range("lr", lr, low=0.0)
        check_range("eval_lr", eval_lr, low=0.0)
        check_range("eps", eps, low=0.0)
        check_range("weight_decay", weight_decay, low=0.0, closed=True)
        check_range("warmup_ratio", warmup_ratio, low=0.0, high=1.0, closed=True)
        check_range("min_lr_ratio", min_lr_ratio, low=0.0, high=1.0, closed=True)
        for i, b in enumerate(betas):
            check_range(f"betas[{i}]", b, low=0.0, high=1.0, closed=True)
        self.save_hparams()
        self.net = net
        self.train_families = list(train_family_names or [])
        self.eval_families = list(eval_family_names or self.train_families)
        self.val_metrics = FamilyMetrics(self.eval_families)
        self.test_metrics = FamilyMetrics(self.eval_families)
        self.curve_steps = sorted({int(k) for k in (eval_curve or [])})
        self.curve_metrics = nn.ModuleDict({str(k): FamilyMetrics(self.eval_families) for k in self.curve_steps})
        self._eval_started = 0.0

    # ------------------------------------------------------------------ prediction
    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(*net_inputs(self.net, batch))

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(pred.float(), target.float())

    def describe_batch(self, batch: dict[str, torch.Tensor]) -> str:
        names = list(dict.fromkeys(self.train_families + self.eval_families))  # the data module's family ids
        ids = sorted(set(batch["family"].reshape(-1).tolist()))
        return f", families {[names[i] if i < len(names) else str(i) for i in ids]}"

    # ------------------------------------------------------------------ few-shot adaptation
    def task_lr(self, batch: dict[str, torch.Tensor], t: int):
        """Adaptation learning rate for task ``t`` (a float; meta-learned stages override)."""
        return self.hparams.eval_lr

    def fast_parameter_names(self, adapt) -> list[str]:
        from lemon_pl.adaptation.functional import select_parameters

        return select_parameters(self.net, adapt)

    def eval_fast_names(self) -> list[str]:
        """Parameters that adapt during few-shot evaluation."""
        return self.fast_parameter_names(self.hparams.eval_adapt)

    def eval_adapt_steps(self) -> int:
        return self.hparams.eval_steps

    def _eval_task(self, batch: dict[str, torch.Tensor], t: int, on_step=None) -> tuple[torch.Tensor, dict]:
        """Adapt on task ``t``'s support set; its query prediction and query batch."""
        from lemon_pl.adaptation.fewshot import adapt_then_predict

        hp = self.hparams
        k = batch["u_in"].shape[1]
        s = min(hp.eval_support_size, k - 1)
        support = task_view(batch, t, torch.arange(0, s))
        query = task_view(batch, t, torch.arange(s, min(k, s + hp.eval_query_size)))
        curve = self.curve_steps if on_step is not None else ()
        lr = self.task_lr(batch, t) if self.eval_adapt_steps() or curve else None
        hook = (lambda step, pred: on_step(step, pred, query)) if on_step is not None else None  # noqa: E731
        pred = adapt_then_predict(self.net, support, query, self.eval_fast_names(), self.eval_adapt_steps(), lr,
                                  self.loss, curve, hook)
        return pred, query

    # ------------------------------------------------------------------ evaluation
    def _eval_step(self, batch, dataloader_idx: int, metrics: FamilyMetrics, keep_example: bool,
                   curve: bool = False) -> None:
        family = self.eval_families[dataloader_idx]
        if self.hparams.unit == "task":  # a batch of operator tasks: adapt on support, score query
            on_step = None
            if curve and self.curve_steps:
                def on_step(k: int, pred: torch.Tensor, query: dict[str, torch.Tensor]) -> None:
                    self.curve_metrics[str(k)].update(family, sample_metrics(pred, query))
            for t in range(batch["u_in"].shape[0]):
                pred, query = self._eval_task(batch, t, on_step)
                self._score(family, pred, query, metrics, keep_example and t == 0)
            return
        self._score(family, self(batch), batch, metrics, keep_example)

    def _score(self, family: str, pred: torch.Tensor, batch: dict[str, torch.Tensor], metrics: FamilyMetrics,
               keep_example: bool) -> None:
        metrics.update(family, sample_metrics(pred, batch))
        if keep_example and family not in self.examples:
            first = {k: v[:1] for k, v in batch.items()}
            self.examples[family] = {"true": denormalise(first["u_out"], first).cpu()[0],
                                     "pred": denormalise(pred[:1].float(), first).cpu()[0]}

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx, self.val_metrics, keep_example=batch_idx == 0)

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, dataloader_idx, self.test_metrics, keep_example=batch_idx == 0, curve=True)

    def predict_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        """One evaluation batch predicted, in physical units (``lemon-pl predict --config``, written by
        ``lemon_pl.predict.lightning.PredictionWriter``): ``pred`` and ``true`` (B, n_out, nx), ``u_in``
        (B, n_in, nx), ``tokens``/``token_pad_mask`` and ``operator`` per sample, ``dataloader_idx``.
        Task batches (``unit: task``) adapt on each operator's support set first, as few-shot
        evaluation does, and predict its query set."""
        if self.hparams.unit == "task":
            parts = [self._eval_task(batch, t) for t in range(batch["u_in"].shape[0])]
            query = {k: torch.cat([q[k] for _, q in parts]) for k in parts[0][1]}
            pred = torch.cat([p for p, _ in parts])
            operator = torch.cat([batch["operator"][t].expand(len(p)) for t, (p, _) in enumerate(parts)])
        else:
            pred, query, operator = self(batch), batch, batch["operator"]
        return {"pred": denormalise(pred.float(), query), "true": denormalise(query["u_out"], query),
                "u_in": denormalise(query["u_in"], query), "tokens": query["tokens"],
                "token_pad_mask": query["token_pad_mask"], "operator": operator, "dataloader_idx": dataloader_idx}

    def on_validation_epoch_start(self) -> None:
        self.examples = {}  # one trajectory per family (``true``/``pred``, physical units)
        self._eval_started = time.perf_counter()

    on_test_epoch_start = on_validation_epoch_start

    def _finish_eval(self, stage: str, metrics: FamilyMetrics, curve: bool) -> None:
        table = metrics.compute()  # collective under DDP: every rank
        metrics.reset()
        curves = {}
        for k in self.curve_steps if curve else ():
            curves[str(k)] = self.curve_metrics[str(k)].compute()
            self.curve_metrics[str(k)].reset()
        self.publish_report(EvaluationReport(stage, "family", table, TABLED, curves, self.table_extra_columns(),
                                             time.perf_counter() - self._eval_started))

    def on_validation_epoch_end(self) -> None:
        self._finish_eval("val", self.val_metrics, curve=False)

    def on_test_epoch_end(self) -> None:
        self._finish_eval("test", self.test_metrics, curve=True)

    def table_extra_columns(self) -> dict[str, Any]:
        """The report's extras: columns the printed and saved tables add to the metrics."""
        if self.hparams.unit != "task":
            return {"mode": "zero-shot", "adapt_steps": 0}
        steps = self.eval_adapt_steps()
        return {"mode": "few-shot" if steps else "zero-shot", "adapt_steps": steps,
                "support_size": self.hparams.eval_support_size, "query_size": self.hparams.eval_query_size}

    # ------------------------------------------------------------------ checkpoints
    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse, in one line, a checkpoint whose network does not match the configured one."""
        from lemon_pl.core.checkpointing import ADAPTERS_ONLY_KEY, check_state_match, net_state

        if checkpoint.get(ADAPTERS_ONLY_KEY):
            return  # handled by FinetuneModule
        check_state_match(net_state(self.state_dict()), net_state(checkpoint.get("state_dict", {})),
                          type(self.net).__name__, "the checkpoint")
