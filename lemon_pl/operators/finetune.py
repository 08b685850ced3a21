"""Fine-tuning from a checkpoint of any stage: full, LoRA, or decoder-only.

``init_from`` loads the network weights of a pretraining, meta-learning, fine-tuning (full,
merged or adapter-only) checkpoint; the network configuration must match (pass the training
run's ``config.yaml`` or the same model overlay). In ``lora`` mode every ``nn.Linear`` of the
network (attention q/k/v/output projections included) gets a rank-``lora_rank`` adapter scaled
by ``lora_alpha / lora_rank``; only adapters train, the optimiser sees only them, and
checkpoints hold only the adapters. An adapter-only checkpoint records the absolute path of its
base and a fingerprint of the base's weights: it loads (``--ckpt_path``, ``init_from``,
``lemon-pl merge-lora``) only onto that very base, and is refused in one line when the base found
there holds other weights. ``lemon-pl merge-lora`` folds the adapters into the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from lemon_pl.adaptation.lora import inject_lora, lora_state_dict, mark_only_lora_trainable
from lemon_pl.core.checkpointing import ADAPTERS_ONLY_KEY, BASE_FINGERPRINT_KEY, BASE_PATH_KEY, state_fingerprint
from lemon_pl.core.errors import CheckpointMismatchError
from lemon_pl.core.stage import count_parameters
from lemon_pl.operators.pretrain import PretrainModule

MODES = ("full", "lora", "decoder")


class FinetuneModule(PretrainModule):
    """Fine-tuning stage. Arguments beyond ``OperatorModule``'s:

    Args:
        init_from: checkpoint whose network weights start the fine-tuning (any stage).
        mode: ``full`` (every parameter), ``lora`` (adapters only) or ``decoder``.
        lora_rank, lora_alpha: adapter rank and scale (effective scaling alpha / rank).
        lora_include, lora_exclude: regular expressions on Linear names to (not) adapt.
        adapters_only_checkpoint: in ``lora`` mode, save only the adapters in checkpoints.
    """

    def __init__(
        self,
        net: nn.Module,
        init_from: str | None = None,
        mode: str = "full",
        lora_rank: int = 16,
        lora_alpha: float = 16.0,
        lora_include: str = ".*",
        lora_exclude: str | None = None,
        adapters_only_checkpoint: bool = True,
        **kwargs: Any,
    ):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        super().__init__(net, **kwargs)
        self.save_hparams()
        #: ``(absolute path, weights fingerprint)`` of the LoRA base (stored in adapter-only checkpoints)
        self._lora_base: tuple[str, str] | None = None
        if init_from:
            base = self.load_init(init_from)
            if mode == "lora":
                self._lora_base = (str(Path(init_from).resolve()), state_fingerprint(base))
        if mode == "lora":
            self.lora_layers = inject_lora(self.net, lora_rank, lora_alpha, lora_include, lora_exclude)
            mark_only_lora_trainable(self.net)
        elif mode == "decoder":
            if not hasattr(self.net, "decoder_parameter_names"):
                raise ValueError(f"decoder-only fine-tuning needs a network that declares decoder_parts "
                                 f"(lemon_pl.models.base.OperatorNetwork); {type(self.net).__name__} does not")
            keep = set(self.net.decoder_parameter_names())
            for name, p in self.net.named_parameters():
                p.requires_grad_(name in keep)

    # adapter-only checkpoints ------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.hparams.mode == "lora" and self.hparams.adapters_only_checkpoint:
            if not self.hparams.init_from:
                return  # nothing to rebuild the base from: keep the full state
            checkpoint["state_dict"] = {"net." + k: v for k, v in lora_state_dict(self.net.state_dict()).items()}
            checkpoint[ADAPTERS_ONLY_KEY] = True
            checkpoint[BASE_PATH_KEY], checkpoint[BASE_FINGERPRINT_KEY] = self._lora_base

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if checkpoint.get(ADAPTERS_ONLY_KEY):
            if self.hparams.mode != "lora":
                raise CheckpointMismatchError("this checkpoint holds LoRA adapters only; load it with mode: lora")
            self._check_lora_base(checkpoint)
            full = {"net." + k: v for k, v in self.net.state_dict().items()}
            missing = [k for k in checkpoint["state_dict"] if k not in full]
            if missing:
                raise CheckpointMismatchError(f"adapter keys {missing[:3]} do not exist in the configured network")
            full.update(checkpoint["state_dict"])
            checkpoint["state_dict"] = full
            return
        super().on_load_checkpoint(checkpoint)

    def _check_lora_base(self, checkpoint: dict) -> None:
        """Refuse adapters trained on another base than the one this module was built on."""
        trained_on = checkpoint.get(BASE_PATH_KEY) or (checkpoint.get("hyper_parameters") or {}).get("init_from")
        ckpt = getattr(getattr(self, "_trainer", None), "ckpt_path", None)
        what = f"checkpoint {ckpt}" if ckpt else "the checkpoint"
        if self._lora_base is None:
            raise CheckpointMismatchError(
                f"{what} holds LoRA adapters only, but no base was loaded: set --model.init_args.init_from "
                f"to their base {trained_on}")
        expected = checkpoint.get(BASE_FINGERPRINT_KEY)
        if expected and expected != self._lora_base[1]:
            if str(trained_on) == self._lora_base[0]:
                raise CheckpointMismatchError(
                    f"{what} holds LoRA adapters trained on the base {trained_on}, which now holds other weights "
                    "(fingerprint differs): restore that base checkpoint or fine-tune again")
            raise CheckpointMismatchError(
                f"{what} holds LoRA adapters trained on the base {trained_on}, but init_from {self._lora_base[0]} "
                "holds other weights (fingerprint differs): use the base they were trained on")

    def on_fit_start(self) -> None:
        total = count_parameters(self.net)
        self.print(f"fine-tuning mode={self.hparams.mode}: {self.n_trainable:,} of {total:,} parameters trainable "
                   f"({100 * self.n_trainable / total:.2f}%)")

    def table_extra_columns(self) -> dict[str, Any]:
        return {**super().table_extra_columns(), "finetune_mode": self.hparams.mode,
                "trainable_params": self.n_trainable}

