"""Low-rank adapters (LoRA) for every ``nn.Linear`` of a network: all LoRA maths in one place.

``y = W x + b + (alpha / r) * B(A(x))`` with A ~ N(0, 1/r) (r x in) and B = 0 (out x r), so a
freshly injected network computes exactly what the base network computed. The base layer keeps
its own parameter names under ``.base`` (``decoder.0.ff.fc1.base.weight``), adapters live in
``.lora_a`` / ``.lora_b``. Unlike the reference, adapters also wrap the attention q/k/v/output
projections (our attention uses plain Linears) and use the usual alpha/rank scaling.

Merging (``W + (alpha / r) B A``) is ``lemon_pl.core.adapters.merged_weight``, used by the layer,
by :func:`merge_lora` (modules) and by ``merge_state`` (state dicts of checkpoints; in ``core``
because loading any checkpoint may merge adapters).
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from lemon_pl.core.adapters import ADAPTER_SUFFIXES, is_adapter, lora_state_dict, merge_state, merged_weight  # noqa: F401 (re-exported: the LoRA API in one place)


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be positive, got {rank}")
        self.base = base
        self.rank = rank
        self.alpha = alpha
        self.scaling = alpha / rank
        self.lora_a = nn.Parameter(torch.randn(rank, base.in_features) / math.sqrt(rank))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:
        """Effective weight (base + scaled adapter), for code that reads ``.weight`` directly."""
        return merged_weight(self.base.weight, self.lora_a, self.lora_b, self.scaling)

    @property
    def bias(self):
        return self.base.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scaling * nn.functional.linear(nn.functional.linear(x, self.lora_a), self.lora_b)

    def merged_linear(self) -> nn.Linear:
        """A plain Linear with the adapter folded into the weight."""
        lin = nn.Linear(self.in_features, self.out_features, bias=self.base.bias is not None,
                        device=self.base.weight.device, dtype=self.base.weight.dtype)
        with torch.no_grad():
            lin.weight.copy_(self.weight)
            if self.base.bias is not None:
                lin.bias.copy_(self.base.bias)
        return lin

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}"


def inject_lora(net: nn.Module, rank: int, alpha: float, include: str = ".*", exclude: str | None = None) -> list[str]:
    """Replace every ``nn.Linear`` whose qualified name matches ``include`` (and not ``exclude``).

    Returns the names of the wrapped layers. Deterministic, so a module rebuilt from the same
    hyperparameters has the same keys (needed by ``load_from_checkpoint``).
    """
    inc, exc = re.compile(include), re.compile(exclude) if exclude else None
    wrapped = []
    for name, module in list(net.named_modules()):
        for child_name, child in list(module.named_children()):
            full = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and inc.search(full) and not (exc and exc.search(full)):
                setattr(module, child_name, LoRALinear(child, rank, alpha))
                wrapped.append(full)
    if not wrapped:
        raise ValueError(f"no nn.Linear matched include={include!r} exclude={exclude!r}")
    return wrapped


def mark_only_lora_trainable(net: nn.Module) -> None:
    for name, p in net.named_parameters():
        p.requires_grad_(is_adapter(name))


def merge_lora(net: nn.Module) -> int:
    """Fold every adapter into its base weight, replacing LoRALinear by nn.Linear. Returns the count."""
    n = 0
    for module in list(net.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, child_name, child.merged_linear())
                n += 1
    return n

