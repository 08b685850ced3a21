"""Optimisers and learning-rate schedules of the stages, chosen in the config.

A stage takes ``optimizer`` and ``lr_scheduler`` arguments (Lightning's ``OptimizerCallable``
/ ``LRSchedulerCallable``: a ``class_path`` and ``init_args`` in the config, called with the
parameters / the optimiser). Left unset they give lemon-pl's default: AdamW with the stage's
``lr``, ``weight_decay``, ``betas``, ``eps`` (no weight decay on biases and norm scales) and
:class:`WarmupCosine` (``warmup_ratio``, ``min_lr_ratio``), stepped every optimiser step. A
configured optimiser receives the trainable parameters as one group; a scheduler class that
takes ``total_steps`` and leaves it unset gets the run's number of optimiser steps. Example::

    model:
      init_args:
        optimizer: {class_path: torch.optim.LBFGS, init_args: {lr: 1.0, max_iter: 20}}
        lr_scheduler: {class_path: torch.optim.lr_scheduler.ConstantLR, init_args: {factor: 1.0}}
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


def build_optimizers(params: list[nn.Parameter], hp: Any, total_steps: int, optimizer: Callable | None = None,
                     lr_scheduler: Callable | None = None) -> dict[str, Any]:
    """``configure_optimizers`` output for a stage with hyperparameters ``hp`` (see module doc)."""
    if optimizer is None:
        opt = torch.optim.AdamW(decay_groups(params, hp.weight_decay), lr=hp.lr, betas=tuple(hp.betas), eps=hp.eps)
    else:
        opt = optimizer(params)
    if lr_scheduler is None:
        sched = WarmupCosine(opt, total_steps, hp.warmup_ratio, hp.min_lr_ratio)
    else:
        cls = _target_class(lr_scheduler)
        takes_total = cls is not None and "total_steps" in inspect.signature(cls).parameters
        unset = getattr(lr_scheduler, "keywords", {}).get("total_steps") is None
        sched = lr_scheduler(opt, total_steps=total_steps) if takes_total and unset else lr_scheduler(opt)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
