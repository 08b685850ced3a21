"""Checkpoint writing that never leaves a half-written file, and W&B run continuity.

``AtomicCheckpointIO`` writes each checkpoint to a temporary file in the target folder,
flushes it to disk and renames it over the target (``os.replace`` is atomic on POSIX), so a
job killed while saving leaves the previous ``last.ckpt`` intact.

``RunIdentity`` stores the W&B run id in every checkpoint; ``LemonCLI`` reads it back when a
run is resumed with ``--ckpt_path`` so the resumed job continues the same W&B run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

WANDB_ID_KEY = "lemon_wandb_run_id"


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(tmp, "wb") as fh:
                torch.save(checkpoint, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


class RunIdentity(Callback):
    """Records the W&B run id in checkpoints (so a resume continues the same run)."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for lg in trainer.loggers:
            if isinstance(lg, WandbLogger) and lg.version:
                checkpoint[WANDB_ID_KEY] = lg.version


def wandb_run_id(ckpt_path: str | os.PathLike) -> str | None:
    """The W&B run id stored in a checkpoint, if any."""
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # noqa: BLE001 - unreadable checkpoints are reported later by Lightning
        return None
    return ckpt.get(WANDB_ID_KEY)
