"""The Lightning CLI behind ``lemon-pl fit|validate|test|predict``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

import yaml
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from lemon_pl.data.datamodule import OperatorFamilyDataModule
from lemon_pl.modules.base import OperatorModule


def _run_file(trainer: Trainer, name: str) -> Path:
    """Where the resolved config goes: the W&B run's files folder (uploaded with the run; W&B keeps
    its own ``config.yaml`` there, hence the prefix), else the logger's versioned log_dir."""
    from lightning.pytorch.loggers import WandbLogger

    for lg in trainer.loggers:
        if isinstance(lg, WandbLogger):
            folder = getattr(lg.experiment, "dir", None)
            if folder:
                return Path(folder) / f"lemon_{name}"
    return Path(trainer.log_dir or "runs") / name


class LemonSaveConfig(SaveConfigCallback):
    """Write the resolved config into the run's own folder (never a shared root) and to W&B."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.already_saved:
            return
        path = _run_file(trainer, self.config_filename)
        if trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.parser.save(self.config, path, skip_none=False, overwrite=True, multifile=self.multifile)
            self.save_config(trainer, pl_module, stage)
        self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def save_config(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for lg in trainer.loggers:
            if isinstance(lg, WandbLogger):
                cfg = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
                lg.experiment.config.update(cfg, allow_val_change=True)


class LemonCLI(LightningCLI):
    def __init__(self, args: Sequence[str] | None = None, run: bool = True):
        super().__init__(
            OperatorModule,
            OperatorFamilyDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=LemonSaveConfig,
            save_config_kwargs={"overwrite": True},
            parser_kwargs={"parser_mode": "yaml"},
            auto_configure_optimizers=True,
            args=args,
            run=run,
        )

    def _instantiate_trainer(self, config: dict, callbacks: list) -> Trainer:
        from lemon_pl.checkpointing import AtomicCheckpointIO, RunIdentity

        if not config.get("plugins"):
            config["plugins"] = [AtomicCheckpointIO()]  # checkpoints are written atomically
        return super()._instantiate_trainer(config, [*callbacks, RunIdentity()])

    def before_instantiate_classes(self) -> None:
        """Resuming with --ckpt_path continues the same W&B run (its id is stored in checkpoints)."""
        sub = self.config.get("subcommand")
        cfg = self.config[sub] if sub else self.config
        ckpt = cfg.get("ckpt_path") if sub else None
        logger = cfg.get("trainer", {}).get("logger") if hasattr(cfg, "get") else None
        if not ckpt or logger is None or isinstance(logger, (bool, list)):
            return
        if str(getattr(logger, "class_path", "")).endswith("WandbLogger"):
            args = logger.init_args
            if not args.get("id") and not args.get("version"):
                from lemon_pl.checkpointing import wandb_run_id

                run_id = wandb_run_id(ckpt)
                if run_id:
                    args["id"] = run_id

    def _parse_ckpt_path(self) -> None:
        """Keep the user's config: a checkpoint provides weights and training state only.

        (Lightning would overwrite the model's arguments with the checkpoint's hyperparameters,
        which breaks evaluating a pretraining checkpoint with few-shot settings.)
        """

    def add_arguments_to_parser(self, parser) -> None:
        # Values that come from the data reach the model only through these links.
        net = "model.init_args.net.init_args"
        parser.link_arguments("data.init_args.nx", f"{net}.nx", apply_on="parse")
        parser.link_arguments("data.init_args.input_len", f"{net}.input_len", apply_on="parse")
        parser.link_arguments("data", f"{net}.output_len", compute_fn=lambda d: d.output_len,
                              apply_on="instantiate")
        parser.link_arguments("data", f"{net}.vocab_size", compute_fn=lambda d: d.vocab_size,
                              apply_on="instantiate")
        parser.link_arguments("data", f"{net}.pad_id", compute_fn=lambda d: d.pad_id, apply_on="instantiate")
        parser.link_arguments("data", "model.init_args.train_family_names",
                              compute_fn=lambda d: d.train_family_names, apply_on="instantiate")
        parser.link_arguments("data", "model.init_args.eval_family_names",
                              compute_fn=lambda d: d.eval_family_names, apply_on="instantiate")


def run_lightning_cli(argv: Sequence[str] | None = None) -> int:
    """Run the Lightning CLI; known user errors become one line on stderr and exit code 2."""
    from lemon_pl.data.io import DataFileError
    from lemon_pl.modules.errors import CheckpointMismatchError, NonFiniteLossError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # passing args equal to sys.argv would make Lightning warn on every run
        LemonCLI(args=None if argv == sys.argv[1:] else argv)
    except (DataFileError, CheckpointMismatchError, NonFiniteLossError, FileNotFoundError,
            ValueError, KeyError) as err:  # user errors: one line (LEMON_TRACEBACK=1 shows the traceback)
        if os.environ.get("LEMON_TRACEBACK"):
            raise
        print(f"lemon-pl: error: {_root_message(err)}", file=sys.stderr)
        return 2
    finally:
        _destroy_process_group()
    return 0


def _destroy_process_group() -> None:
    """Tear the DDP process group down before the interpreter exits (Lightning leaves it up):
    gloo's threads destroyed during interpreter shutdown can abort the process ("terminate
    called without an active exception"), and in-process pipelines start each step afresh."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - teardown is best effort
            pass


def _root_message(err: BaseException) -> str:
    """The innermost cause's message (jsonargparse wraps constructor errors in long reports)."""
    seen = err
    while True:
        nxt = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)
        if nxt is None:
            break
        seen = nxt
    msg = str(seen.args[0]) if isinstance(seen, KeyError) and seen.args else str(seen)
    return msg.strip().splitlines()[0] if msg.strip() else type(seen).__name__
