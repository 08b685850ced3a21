"""Fine-tuning from a checkpoint of any stage: full, LoRA, or decoder-only.

``init_from`` loads the network weights of a pretraining, meta-learning, fine-tuning (full,
merged or adapter-only) checkpoint; the network configuration must match (pass the training
run's ``config.yaml`` or the same model overlay). In ``lora`` mode every ``nn.Linear`` of the
network (attention q/k/v/output projections included) gets a rank-``lora_rank`` adapter scaled
by ``lora_alpha / lora_rank``; only adapters train, the optimiser sees only them, and
checkpoints hold only the adapters (they load onto the base named by ``init_from``).
``lemon-pl merge-lora`` folds them into the weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from lemon_pl.lora import inject_lora, lora_state_dict, mark_only_lora_trainable
from lemon_pl.modules.base import OperatorModule
from lemon_pl.modules.errors import CheckpointMismatchError
from lemon_pl.modules.pretrain import PretrainModule

MODES = ("full", "lora", "decoder")
#: parameters trained in ``decoder`` mode, per network class (name prefixes)
DECODER_PARTS = {"Prose": ("decoder",), "DeepONet": ("trunk", "bias"), "FNO": ("proj1", "proj2")}


def load_net_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Plain network weights (no ``net.`` prefix, LoRA merged) from any lemon-pl checkpoint."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointMismatchError(f"{path} is not a readable checkpoint ({err})") from None
    state = {k[4:]: v for k, v in ckpt.get("state_dict", {}).items() if k.startswith("net.")}
    if ckpt.get("lemon_adapters_only"):
        base = ckpt.get("hyper_parameters", {}).get("init_from")
        if not base:
            raise CheckpointMismatchError(f"{path} holds LoRA adapters only and names no base checkpoint")
        full = load_net_state(base)
        adapters = {k: v for k, v in state.items() if k.endswith(("lora_a", "lora_b"))}
        hp = ckpt["hyper_parameters"]
        return _merge_adapters(full, adapters, hp["lora_alpha"] / hp["lora_rank"])
    if any(k.endswith(("lora_a", "lora_b")) for k in state):
        hp = ckpt.get("hyper_parameters", {})
        base = {k.replace(".base.", "."): v for k, v in state.items() if not k.endswith(("lora_a", "lora_b"))}
        adapters = {k: v for k, v in state.items() if k.endswith(("lora_a", "lora_b"))}
        return _merge_adapters(base, adapters, hp["lora_alpha"] / hp["lora_rank"])
    if not state:
        raise CheckpointMismatchError(f"{path} holds no network weights (keys starting with 'net.')")
    return state


def _merge_adapters(base: dict[str, torch.Tensor], adapters: dict[str, torch.Tensor], scaling: float):
    out = dict(base)
    for key, a in adapters.items():
        if not key.endswith("lora_a"):
            continue
        layer = key[: -len(".lora_a")]
        b = adapters[layer + ".lora_b"]
        out[layer + ".weight"] = out[layer + ".weight"] + scaling * (b @ a)
    return out


def load_into(net: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state`` into ``net`` with one clear error on any mismatch."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        detail = "; ".join(filter(None, [
            f"missing {missing[:3]}{'...' if len(missing) > 3 else ''}" if missing else "",
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}" if unexpected else "",
            f"shape {shapes[0]}" if shapes else ""]))
        raise CheckpointMismatchError(
            f"checkpoint {source} is from a different model than the configured {type(net).__name__} ({detail}); "
            "use the training run's config.yaml or the same model overlay")
    net.load_state_dict(state)


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
        self.save_hyperparameters(ignore=["net"])
        if init_from:
            load_into(self.net, load_net_state(init_from), init_from)
        if mode == "lora":
            self.lora_layers = inject_lora(self.net, lora_rank, lora_alpha, lora_include, lora_exclude)
            mark_only_lora_trainable(self.net)
        elif mode == "decoder":
            parts = DECODER_PARTS.get(type(self.net).__name__)
            if parts is None:
                raise ValueError(f"decoder-only fine-tuning is not defined for {type(self.net).__name__}")
            for name, p in self.net.named_parameters():
                p.requires_grad_(name.split(".")[0] in parts)

    # adapter-only checkpoints ------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.hparams.mode == "lora" and self.hparams.adapters_only_checkpoint:
            if not self.hparams.init_from:
                return  # nothing to rebuild the base from: keep the full state
            checkpoint["state_dict"] = {"net." + k: v for k, v in lora_state_dict(self.net.state_dict()).items()}
            checkpoint["lemon_adapters_only"] = True

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if checkpoint.get("lemon_adapters_only"):
            if self.hparams.mode != "lora":
                raise CheckpointMismatchError("this checkpoint holds LoRA adapters only; load it with mode: lora")
            full = {"net." + k: v for k, v in self.net.state_dict().items()}
            missing = [k for k in checkpoint["state_dict"] if k not in full]
            if missing:
                raise CheckpointMismatchError(f"adapter keys {missing[:3]} do not exist in the configured network")
            full.update(checkpoint["state_dict"])
            checkpoint["state_dict"] = full
            return
        super().on_load_checkpoint(checkpoint)

    def on_fit_start(self) -> None:
        total = sum(p.numel() for p in self.net.parameters())
        self.print(f"fine-tuning mode={self.hparams.mode}: {self.n_trainable:,} of {total:,} parameters trainable "
                   f"({100 * self.n_trainable / total:.2f}%)")

    def table_extra_columns(self) -> dict[str, Any]:
        return {**super().table_extra_columns(), "finetune_mode": self.hparams.mode,
                "trainable_params": self.n_trainable}


__all__ = ["FinetuneModule", "load_net_state", "load_into", "CheckpointMismatchError", "OperatorModule"]
