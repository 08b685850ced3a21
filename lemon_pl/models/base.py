"""The network contract: what every operator network declares to the stages that train it.

A network maps input frames (and, if it reads them, the equation's tokens) to output frames::

    forward(u_in (B, n_in, nx), t_in (n_in,) or (B, n_in), t_out (n_out,) or (B, n_out),
            tokens (B, L) | None, token_pad_mask (B, L) | None) -> (B, n_out, nx)

and declares, as class attributes:

* ``uses_equation``: whether it reads the equation (stages pass ``tokens`` only then; the
  LeMONS rate network reuses ``encode_symbols`` when the network has one);
* ``decoder_parts``: the top-level submodules that form its decoder, trained alone by
  decoder-only fine-tuning (empty: the network has no such split).

Data-derived arguments (grid size, frame counts, vocabulary) are ordinary constructor
arguments with one of the names in :data:`DATA_ARGUMENTS`; the CLI links a data module's value
to a network only when its constructor takes that name (``lemon_pl.cli.lightning``).
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar, Optional

from torch import Tensor, nn

#: constructor arguments whose values come from the operator data module
DATA_ARGUMENTS = ("nx", "input_len", "output_len", "vocab_size", "pad_id")


class OperatorNetwork(nn.Module):
    """Base class of the operator networks (see the module docstring for the contract)."""

    uses_equation: ClassVar[bool] = False
    decoder_parts: ClassVar[tuple[str, ...]] = ()

    def forward(self, u_in: Tensor, t_in: Tensor, t_out: Tensor, tokens: Optional[Tensor] = None,
                token_pad_mask: Optional[Tensor] = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def decoder_parameter_names(self) -> list[str]:
        """Names of the parameters of ``decoder_parts`` (decoder-only fine-tuning)."""
        if not self.decoder_parts:
            raise ValueError(f"decoder-only fine-tuning is not defined for {type(self).__name__} "
                             "(it declares no decoder_parts)")
        return [n for n, _ in self.named_parameters() if n.split(".")[0] in self.decoder_parts]



def taken_arguments(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` whose names ``cls``'s constructor takes (what the CLI links)."""
    params = inspect.signature(cls).parameters
    return {k: v for k, v in values.items() if k in params}
