"""Neural operator models: PROSE (multi-operator transformer), DeepONet, FNO.

All share ``forward(u_in, t_in, t_out, tokens=None, token_pad_mask=None)
-> (B, n_out, nx)`` and a ``uses_equation`` attribute.
"""

from __future__ import annotations

from torch import nn

from .deeponet import DeepONet
from .fno import FNO
from .layers import differentiable_attention
from .prose import Prose

__all__ = ["Prose", "DeepONet", "FNO", "count_parameters", "differentiable_attention"]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of (unique) parameters, optionally only those with requires_grad."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
