"""Operator networks: PROSE (multi-operator transformer), DeepONet, FNO and a fixed-grid MLP.

``base`` states the contract every network follows (``OperatorNetwork``); ``layers`` holds the
building blocks (attention, MLPs, the spectral convolution).
"""

from __future__ import annotations

from lemon_pl.core.stage import count_parameters

from .base import DATA_ARGUMENTS, OperatorNetwork, taken_arguments
from .deeponet import DeepONet
from .fno import FNO
from .layers import differentiable_attention
from .mlp import MLP
from .prose import Prose

__all__ = ["OperatorNetwork", "DATA_ARGUMENTS", "Prose", "DeepONet", "FNO", "MLP", "count_parameters", "taken_arguments",
           "differentiable_attention"]
