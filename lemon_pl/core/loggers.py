"""The loggers of a run: finding its Weights & Biases logger (the one place that looks)."""

from __future__ import annotations

from typing import Any


def wandb_logger(trainer: Any):
    """The trainer's ``WandbLogger``, or None (also when wandb is not installed)."""
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover - lightning without wandb support
        return None
    for lg in getattr(trainer, "loggers", None) or []:
        if isinstance(lg, WandbLogger):
            return lg
    return None
