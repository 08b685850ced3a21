"""Callbacks used by tests that run the CLI in subprocesses."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from lightning.pytorch import Callback


class RecordRankBatches(Callback):
    """Records which samples each rank trained on and its final weights (for the DDP test)."""

    def __init__(self):
        self.indices: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.indices += [(trainer.current_epoch, i) for i in batch["index"].tolist()]

    def on_train_end(self, trainer, pl_module):
        out = Path(os.environ["LEMON_RECORD_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save({"indices": self.indices, "state": state, "world_size": trainer.world_size},
                   out / f"rank{trainer.global_rank}.pt")


class StopAfterEpochs(Callback):
    """Ends fit cleanly after ``epochs`` epochs, as if the job had been stopped there."""

    def __init__(self, epochs: int = 1):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


class KillAt(Callback):
    """SIGKILLs its own process at (epoch, batch) given by LEMON_KILL_AT="epoch:batch" (no cleanup)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        import signal

        epoch, at = (int(v) for v in os.environ["LEMON_KILL_AT"].split(":"))
        if trainer.current_epoch == epoch and batch_idx == at:
            os.kill(os.getpid(), signal.SIGKILL)


class PoisonBatch(Callback):
    """Puts a NaN into the targets of the batch at global step LEMON_POISON_STEP."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == int(os.environ["LEMON_POISON_STEP"]):
            batch["u_out"][0, 0, 0] = float("nan")
