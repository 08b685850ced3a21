"""A fully connected network on a fixed grid: the input field's ``nx`` values in, ``nx`` out.

The network of the multi-level fine-tuning probe (``../shared/reference/pinn-methods.md`` §3):
``nx -> hidden[0] -> ... -> hidden[-1] -> output_len * nx`` with an activation between layers.
It follows the operator-network contract (``lemon_pl.models.base``), reads ``input_len`` frames,
ignores the values of ``t_in`` / ``t_out`` (only the number of output frames is fixed) and, unlike
the FNO, is tied to its grid: a field on another grid is an error that says so.
"""

from __future__ import annotations

from typing import Optional, Sequence

from torch import Tensor, nn

from .base import OperatorNetwork

__all__ = ["MLP"]

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "tanh": nn.Tanh, "silu": nn.SiLU}


class MLP(OperatorNetwork):
    decoder_parts = ("head",)

    def __init__(self, nx: int = 128, input_len: int = 1, output_len: int = 1,
                 hidden: Sequence[int] = (256, 512, 512, 256), activation: str = "gelu") -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r} ({', '.join(_ACTIVATIONS)})")
        if not hidden:
            raise ValueError("MLP needs at least one hidden layer")
        self.nx, self.input_len, self.output_len = nx, input_len, output_len
        widths = [input_len * nx, *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(a, b), _ACTIVATIONS[activation]()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], output_len * nx)

    def forward(self, u_in: Tensor, t_in: Tensor, t_out: Tensor, tokens: Optional[Tensor] = None,
                token_pad_mask: Optional[Tensor] = None) -> Tensor:
        if u_in.dim() != 3 or u_in.shape[1:] != (self.input_len, self.nx):
            raise ValueError(f"MLP expects u_in of shape (B, {self.input_len}, {self.nx}) (it is tied to its "
                             f"grid), got {tuple(u_in.shape)}")
        if t_out.shape[-1] != self.output_len:
            raise ValueError(f"MLP predicts {self.output_len} output frames, t_out has {t_out.shape[-1]}")
        out = self.head(self.body(u_in.flatten(1)))
        return out.view(u_in.shape[0], self.output_len, self.nx)
