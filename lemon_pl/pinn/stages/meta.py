"""MAML and Reptile initialisations of a physics-informed network over μ tasks, every task at once."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from lemon_pl.core.stage import check_range
from lemon_pl.pinn.stages.pinn import IGNORED, Field, PINNModule

class MetaPINNModule(PINNModule):
    """MAML or Reptile initialisation of a network over μ tasks (one task per μ of the data).

    Each optimiser step adapts a copy of the weights to every task at once: ``inner_steps`` SGD
    steps at ``inner_lr`` on the task's PINN loss (:func:`lemon_pl.adaptation.maml.adapt` on
    the task weights stacked along a leading dimension; the network runs on all tasks with
    ``torch.func.vmap``). MAML then minimises the mean PINN loss of the adapted weights
    (first order by default; ``first_order: false`` differentiates through the inner steps);
    Reptile moves the weights towards the mean of the adapted ones (the outer gradient is
    w − mean_m w_m', stepped by the configured optimiser).
    """

    def __init__(self, net: nn.Module, algorithm: str = "maml", inner_steps: int = 5, inner_lr: float = 1e-3,
                 first_order: bool = True, **kwargs: Any):
        if algorithm not in ("maml", "reptile"):
            raise ValueError(f"model.init_args.algorithm must be 'maml' or 'reptile', got {algorithm!r}")
        if inner_steps < 1:
            raise ValueError(f"model.init_args.inner_steps must be >= 1, got {inner_steps}")
        check_range("inner_lr", inner_lr, low=0.0)
        super().__init__(net, **kwargs)
        self.save_hyperparameters(ignore=IGNORED)
        self.record_problem()

    def check_network(self) -> None:
        pass  # tasks differ by μ only through the loss: a network without a μ input is the point

    def solves_one_mu(self) -> bool:
        return False  # an initialisation for every μ

    def task_field(self, params: dict[str, Tensor], m: int) -> Field:
        """The network with task weights ``params`` (leading dimension m) on μ-major points."""
        from torch.func import functional_call, vmap

        net = self.net

        def one(p: dict[str, Tensor], x: Tensor) -> Tensor:
            return functional_call(net, p, (x,))

        def u(coords: Tensor, index: Tensor) -> Tensor:
            out = vmap(one)(params, coords.view(m, -1, coords.shape[-1]))
            return out.reshape(-1) if self.n_fields == 1 else out.reshape(-1, out.shape[-1])

        return u

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        from lemon_pl.adaptation.maml import adapt

        hp, m = self.hparams, batch["mu"].shape[0]
        params = self.net.adaptation_parameters()
        stacked = {k: v.unsqueeze(0).expand(m, *v.shape) for k, v in params.items()}

        def inner_loss(p: dict[str, Tensor]) -> Tensor:  # the sum of the tasks' losses: per-task gradients
            return m * self.total_loss(self.loss_terms(self.task_field(p, m), batch))

        first = hp.first_order or hp.algorithm == "reptile"
        fast = adapt(self.net, stacked, list(stacked), inner_loss, hp.inner_steps, hp.inner_lr, first_order=first)
        if hp.algorithm == "maml":
            terms = self.loss_terms(self.task_field(fast, m), batch)
            loss = self.total_loss(terms)
        else:
            target = {k: v.detach().mean(0) for k, v in fast.items()}
            loss = 0.5 * sum((params[k] - target[k]).square().sum() for k in params)
            terms = self.loss_terms(self.task_field({k: v.detach() for k, v in fast.items()}, m), batch)  # logged only
        self.ensure_finite(loss, batch, batch_idx)
        self.log_terms(loss, terms)
        return loss

    def field(self, net: nn.Module | None = None, mu: Tensor | None = None) -> Field:
        """Evaluation: the meta-learned initialisation itself, for every μ (no adaptation)."""
        net = self.net if net is None else net
        return lambda coords, index: self.flat(net(coords))
