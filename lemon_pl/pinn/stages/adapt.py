"""Hyper-LR-PINN phase 2: the phase-1 network adapted to one target μ through its ``adapt`` hook."""

from __future__ import annotations

from typing import Any

from torch import nn

from lemon_pl.pinn.stages.pinn import IGNORED, PINNModule

class HyperLRPINNAdapt(PINNModule):
    """Hyper-LR-PINN phase 2 at one target μ (the data's only μ value).

    ``net`` is the phase-1 architecture (``configs/model/hyper_lr_pinn.yaml``) and ``init_from``
    the phase-1 checkpoint. The stage trains the network that the ``adapt`` hook
    (:meth:`lemon_pl.pinn.networks.HyperLRPINN.adapt`) makes of it at the target μ: s initialised to s(μ), W⁰, b⁰,
    W^{L+1}, b^{L+1} copied; the bases (and the paper layout's hidden biases) frozen; the
    hypernetwork dropped. ``rank``: ``full`` keeps every entry of s, ``adaptive`` only those
    with |s| > ``threshold`` (0: the entries the ReLU kept). Loading a phase-2 checkpoint
    (``--ckpt_path``) rebuilds its ranks from the checkpoint (the ``matching`` hook).
    """

    def __init__(self, net: nn.Module, rank: str = "full", threshold: float = 0.0, **kwargs: Any):
        if not getattr(net, "adaptable", False):
            raise ValueError(f"model.init_args.net: phase 2 adapts a HyperLRPINN (a network with `adapt`), got "
                             f"{type(net).__name__}")
        if rank not in ("full", "adaptive"):
            raise ValueError(f"model.init_args.rank must be 'full' or 'adaptive', got {rank!r}")
        mu_values = kwargs.get("mu_values") or []
        if len(mu_values) != 1:
            raise ValueError(f"phase 2 adapts to one target μ: set data.init_args.mu to one value "
                             f"(the data hold {len(mu_values)})")
        self._phase2 = (rank, float(threshold))
        super().__init__(net, **kwargs)
        self.save_hyperparameters(ignore=IGNORED)
        self.record_problem()

    def check_network(self) -> None:
        if getattr(self.net, "adaptable", False):
            rank, threshold = self._phase2
            self.net = self.net.adapt(self.mu_values[0], rank, threshold)
        super().check_network()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A phase-2 checkpoint may hold adaptive ranks: rebuild the layers to their shapes."""
        super().on_load_checkpoint(checkpoint)
        self.net = self.net.matching(checkpoint.get("state_dict") or {}, "net.")
