"""The stored form of low-rank adapters (LoRA) in checkpoints: key names and merging.

A LoRA-wrapped ``nn.Linear`` stores its base weight under ``<layer>.base.weight`` and its adapters
under ``<layer>.lora_a`` (r x in) and ``<layer>.lora_b`` (out x r); the equivalent plain weight is
``W + (alpha / r) B A``. Loading any checkpoint may have to merge adapters (an adapter-only
fine-tuning checkpoint onto its base), so this state-dict arithmetic lives in ``core``; the
adapter layers themselves are ``lemon_pl.adaptation.lora``.
"""

from __future__ import annotations

import torch

ADAPTER_SUFFIXES = ("lora_a", "lora_b")


def merged_weight(weight: torch.Tensor, lora_a: torch.Tensor, lora_b: torch.Tensor, scaling: float) -> torch.Tensor:
    """The weight of the plain Linear equivalent to a base ``weight`` with adapters ``A``, ``B``."""
    return weight + scaling * (lora_b @ lora_a)


def is_adapter(key: str) -> bool:
    return key.endswith(ADAPTER_SUFFIXES)


def lora_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The adapter tensors of a state dict."""
    return {k: v for k, v in state.items() if is_adapter(k)}


def merge_state(base: dict[str, torch.Tensor], adapters: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """Plain network weights from base weights (keys of the unwrapped network, or of a wrapped one
    with ``.base.``) and adapter tensors (``<layer>.lora_a`` / ``.lora_b``)."""
    out = {k.replace(".base.", "."): v for k, v in base.items() if not is_adapter(k)}
    for key, a in adapters.items():
        if key.endswith(".lora_a"):
            layer = key[: -len(".lora_a")]
            out[layer + ".weight"] = merged_weight(out[layer + ".weight"], a, adapters[layer + ".lora_b"], scaling)
    return out
