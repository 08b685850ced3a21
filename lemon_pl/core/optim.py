"""Optimisers and learning-rate schedules of the stages, chosen in the config.

A stage takes ``optimizer`` and ``lr_scheduler`` arguments (Lightning's ``OptimizerCallable``
/ ``LRSchedulerCallable``: a ``class_path`` and ``init_args`` in the config, called with the
parameters / the optimiser). Left unset they give lemon-pl's default: AdamW with the stage's
``lr``, ``weight_decay``, ``betas``, ``eps`` (no weight decay on biases and norm scales) and
:class:`WarmupCosine` (``warmup_ratio``, ``min_lr_ratio``), stepped every optimiser step.

The default AdamW is the *fused* kernel (one pass over parameters, gradients and both moments,
on CPU and CUDA) where it applies, else the multi-tensor ``foreach`` one: PyTorch's own default
on CPU is a per-parameter loop, about a quarter of a paper-size Prose step on 2 cores
(``benchmarks/train_throughput.py`` measures the variants side by side). The update is the
same algorithm; results agree with the loop to rounding (``tests/core/test_optim.py``). The
one exception is fp16 mixed precision with a gradient scaler, where Lightning cannot clip the
gradients of a fused optimiser (it unscales inside ``step``): there ``foreach`` is used. A
stage's ``adamw`` argument (``auto``, ``fused``, ``foreach``, ``loop``) overrides the choice;
``loop`` reproduces the numerics of lemon-pl before issue 14 bit for bit.

A configured optimiser receives the stage's parameter groups (``Stage.parameter_groups``: one
group of the trainable parameters, or the groups a network declares with their own rates, e.g.
``{"params": [...], "lr": 1e-2}``); a scheduler class that takes ``total_steps`` and leaves it
unset gets the run's number of optimiser steps. A ``ReduceLROnPlateau`` is stepped once per epoch
on a monitored metric: the ``monitor`` of ``lightning.pytorch.cli.ReduceLROnPlateau``, else the
stage's ``monitor`` setting, else ``val/rel_l2``. Examples::

    model:
      init_args:
        optimizer: {class_path: torch.optim.LBFGS, init_args: {lr: 1.0, max_iter: 20}}
        lr_scheduler: {class_path: torch.optim.lr_scheduler.ConstantLR, init_args: {factor: 1.0}}

    model:
      init_args:
        optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.1, momentum: 0.9}}
        lr_scheduler:
          class_path: lightning.pytorch.cli.ReduceLROnPlateau
          init_args: {monitor: val/rel_l2, factor: 0.5, patience: 2}
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine(LambdaLR):
    """Linear warm-up over ``warmup_ratio * total_steps`` steps, then a cosine decay from the
    base rate to ``min_lr_ratio`` times it at ``total_steps``."""

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int | None = None, warmup_ratio: float = 0.1,
                 min_lr_ratio: float = 0.0):
        if total_steps is None or total_steps < 1:
            raise ValueError(f"WarmupCosine needs total_steps >= 1 (the stage fills it in when unset), got {total_steps}")
        self.total_steps, self.warmup = int(total_steps), int(warmup_ratio * total_steps)
        self.min_lr_ratio = min_lr_ratio
        super().__init__(optimizer, self.factor)

    def factor(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        progress = min(1.0, (step - self.warmup) / max(1, self.total_steps - self.warmup))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def decay_groups(params: Iterable[nn.Parameter], weight_decay: float) -> list[dict[str, Any]]:
    """Parameter groups with weight decay on matrices only (not on biases and norm scales)."""
    decay, no_decay = [], []
    for p in params:
        (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _target_class(factory: Callable) -> type | None:
    """The class a jsonargparse callable (a ``functools.partial``) instantiates, if any."""
    return next((a for a in getattr(factory, "args", ()) if isinstance(a, type)), None)


ADAMW_IMPLS = ("auto", "fused", "foreach", "loop")


def adamw_impl(params: Iterable[nn.Parameter], grad_scaler: bool = False, choice: str = "auto") -> dict[str, bool]:
    """AdamW keyword choosing the implementation. ``auto``: ``{"fused": True}`` when every
    parameter is a floating-point tensor on one CPU or CUDA device (and no fp16 gradient scaler
    is in use), else ``{"foreach": True}`` (see the module doc); ``loop`` is PyTorch's
    per-parameter loop, ``fused`` / ``foreach`` force those."""
    if choice not in ADAMW_IMPLS:
        raise ValueError(f"adamw must be one of {', '.join(ADAMW_IMPLS)}, got {choice!r}")
    if choice == "loop":
        return {"foreach": False}
    if choice in ("fused", "foreach"):
        return {choice: True}
    params = list(params)
    fusable = bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    if fusable and not grad_scaler and len({p.device for p in params}) == 1:
        return {"fused": True}
    return {"foreach": True}


def default_adamw(params: list[nn.Parameter] | list[dict[str, Any]], grad_scaler: bool = False,
                  choice: str = "auto", **kwargs: Any) -> torch.optim.AdamW:
    """``torch.optim.AdamW`` with the implementation of :func:`adamw_impl`."""
    flat = [p for g in params for p in g["params"]] if params and isinstance(params[0], dict) else params
    return torch.optim.AdamW(params, **kwargs, **adamw_impl(flat, grad_scaler, choice))


#: the metric a plateau schedule watches when neither it nor the stage names one
DEFAULT_MONITOR = "val/rel_l2"


def flat_parameters(params: Iterable[nn.Parameter] | Iterable[dict[str, Any]]) -> list[nn.Parameter]:
    """The parameters of a list of parameters or of torch parameter groups."""
    params = list(params)
    if params and isinstance(params[0], dict):
        return [p for g in params for p in g["params"]]
    return params


def as_groups(params: Iterable[nn.Parameter] | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Torch parameter groups of a parameter list (one group) or of groups (as given, lists made)."""
    params = list(params)
    if params and isinstance(params[0], dict):
        return [{**g, "params": list(g["params"])} for g in params]
    return [{"params": params}]


def split_decay(groups: Iterable[dict[str, Any]], weight_decay: float) -> list[dict[str, Any]]:
    """Each group split by :func:`decay_groups` (its own settings, e.g. ``lr``, kept in both halves;
    a group's own ``weight_decay`` replaces ``weight_decay`` for its matrices). One plain group gives
    exactly ``decay_groups(params, weight_decay)``."""
    out = []
    for g in groups:
        extra = {k: v for k, v in g.items() if k != "params"}
        for half in decay_groups(g["params"], extra.get("weight_decay", weight_decay)):
            out.append({**extra, **half})
    return out


def configured_scheduler(factory: Callable, opt: torch.optim.Optimizer, total_steps: int) -> Any:
    """The scheduler a config factory builds on ``opt`` (``total_steps`` filled in where the class
    takes it and the config leaves it unset)."""
    cls = _target_class(factory)
    takes_total = cls is not None and "total_steps" in inspect.signature(cls).parameters
    unset = getattr(factory, "keywords", {}).get("total_steps") is None
    return factory(opt, total_steps=total_steps) if takes_total and unset else factory(opt)


def optimizer_config(opt: torch.optim.Optimizer, sched: Any = None, monitor: str | None = None) -> dict[str, Any]:
    """``configure_optimizers`` output: a plateau schedule is stepped each epoch on its monitored
    metric (see the module doc), any other schedule every optimiser step; ``sched`` None: none."""
    if sched is None:
        return {"optimizer": opt}
    if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
        name = getattr(sched, "monitor", None) or monitor or DEFAULT_MONITOR
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": name, "interval": "epoch"}}
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def hparam_adamw(groups: list[dict[str, Any]], hp: Any, grad_scaler: bool = False) -> torch.optim.AdamW:
    """lemon-pl's default optimiser: AdamW with ``hp.lr``, ``betas``, ``eps``, ``weight_decay``
    (matrices only, :func:`split_decay`) and the implementation ``hp.adamw`` (default ``auto``)."""
    return default_adamw(split_decay(groups, hp.weight_decay), grad_scaler, getattr(hp, "adamw", "auto"),
                         lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps)


def build_optimizers(params: list[nn.Parameter] | list[dict[str, Any]], hp: Any, total_steps: int,
                     optimizer: Callable | None = None, lr_scheduler: Callable | None = None,
                     grad_scaler: bool = False, monitor: str | None = None) -> dict[str, Any]:
    """``configure_optimizers`` output for parameters (or groups) ``params`` of a stage with
    hyperparameters ``hp``: the configured factories, else AdamW + :class:`WarmupCosine` (see the
    module doc; ``lemon_pl.core.stage.Stage`` builds the same from its overridable defaults).

    ``grad_scaler``: the run uses fp16 mixed precision with a gradient scaler (no fused AdamW)."""
    groups = as_groups(params)
    opt = hparam_adamw(groups, hp, grad_scaler) if optimizer is None else optimizer(groups)
    sched = (WarmupCosine(opt, total_steps, hp.warmup_ratio, hp.min_lr_ratio) if lr_scheduler is None
             else configured_scheduler(lr_scheduler, opt, total_steps))
    return optimizer_config(opt, sched, monitor)
