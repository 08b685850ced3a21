"""The physics-informed stages: networks trained from the equations themselves.

Every stage trains a network of :mod:`lemon_pl.pinn.networks` on the point sets of a
:class:`lemon_pl.pinn.collocation.CollocationDataModule` (all μ of the run in one batch) with
the PINN loss, the mean squares of the PDE residual, the initial-condition error and the
boundary error (weights ``weight_residual``, ``weight_ic``, ``weight_bc``; 1 each in the
release), plus, for low-rank networks, the orthogonality penalty of their bases.

* :class:`PINNModule`: one network over the run's μ set: a plain PINN or Naive-LR-PINN on
  one μ, PINN-P across μ, Hyper-LR-PINN phase 1 (bases, biases, first/last layers and the
  hypernetwork jointly over every training μ, with the orthogonality penalty); ``init_from``
  warm-starts from another run (the curriculum: lower β first).
* :class:`HyperLRPINNAdapt`: phase 2. The phase-1 network (``init_from``) at the target μ
  becomes a :class:`NaiveLRPINN` whose s starts at the hypernetwork's output; exactly s, W⁰,
  b⁰, W^{L+1}, b^{L+1} train (full rank, or ``adaptive``: only the entries the ReLU kept).
* :class:`MetaPINNModule`: MAML or Reptile initialisation of a network over μ tasks, the inner
  loop of :func:`lemon_pl.adaptation.maml.adapt` run on every task at once (the task weights
  stacked, the network evaluated with ``torch.func.vmap``).
* :class:`TimeMarchingPINN`: PINN-S2S, one PINN per time segment, trained in order, each
  segment's initial condition the previous segment's prediction.

Optimiser: unset, Adam at ``lr`` (2.5e-4, the release) with no schedule; any other
(``torch.optim.LBFGS`` with strong Wolfe line search, for instance) is chosen in the config.
Residuals and their derivatives are taken in fp32 with autocast off, also under bf16-mixed.
Validation and test need gradients: the stage turns Lightning's inference mode off for its
evaluation loops (the configs also set ``trainer.inference_mode: false``).
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lemon_pl.core.stage import NOT_HPARAMS, Stage, check_range
from lemon_pl.pinn.collocation import make_problem
from lemon_pl.pinn.metrics import PINN_METRICS, field_metrics, table
from lemon_pl.pinn.networks import HyperLRPINN, LowRankLinear, NaiveLRPINN, orthogonality_penalty

#: a field: coordinates (n, d) and each point's μ row (n,) -> u (n,)
Field = Callable[[Tensor, Tensor], Tensor]
#: points per chunk when a whole grid is evaluated (bounds the memory of second derivatives)
EVAL_CHUNK = 1 << 15


def _no_autocast(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


class PINNModule(Stage):
    """A PINN stage over the run's μ set (see module doc).

    Args:
        net: a network of ``lemon_pl.pinn.networks`` (``PINN``, ``PINNP``, ``NaiveLRPINN``,
            ``HyperLRPINN``), chosen by class_path.
        problem, problem_args, mu_values: linked from the data module.
        lr: Adam's learning rate when no ``optimizer`` is configured.
        weight_residual, weight_ic, weight_bc: loss weights of the three mean squares.
        orth_weight_u, orth_weight_v, orth_squared: the orthogonality penalty
            Σ_l w_U ‖U_lᵀU_l − I‖_F^p + w_V ‖V_lᵀV_l − I‖_F^p of the low-rank bases (p = 2 when
            squared, the paper's Eq. 2; the release uses p = 1 with weights 4/50²).
        init_from: a checkpoint whose network weights start this run (same architecture).
        mae_target: the validation MAE whose first crossing is recorded (``steps_to_target``
            in ``fit_summary.json``; the paper's cost study uses 0.05).
        rank_sweep: Hyper-LR-PINN test figures: ``[low, high, step]`` of the first parameter
            that varies in ``mu_values`` (default: around the training range).
        max_figures: at most this many μ get a reference / prediction / error / residual figure.
    """

    def __init__(self, net: nn.Module, problem: str = "cdr", problem_args: dict[str, Any] | None = None,
                 mu_values: list[list[float]] | None = None, lr: float = 2.5e-4, weight_residual: float = 1.0,
                 weight_ic: float = 1.0, weight_bc: float = 1.0, orth_weight_u: float = 0.0,
                 orth_weight_v: float = 0.0, orth_squared: bool = False, init_from: str | None = None,
                 mae_target: float = 0.05, rank_sweep: list[float] | None = None, max_figures: int = 6,
                 optimizer: OptimizerCallable | None = None, lr_scheduler: LRSchedulerCallable | None = None):
        super().__init__(optimizer, lr_scheduler)
        check_range("lr", lr, low=0.0)
        for name, v in (("weight_residual", weight_residual), ("weight_ic", weight_ic), ("weight_bc", weight_bc),
                        ("orth_weight_u", orth_weight_u), ("orth_weight_v", orth_weight_v)):
            check_range(name, v, low=0.0, closed=True)
        self.save_hyperparameters(ignore=NOT_HPARAMS)
        self.pde = make_problem(problem, problem_args)
        self.mu_values = [list(map(float, m)) for m in (mu_values or [self.pde.defaults().values()])]
        self.net = net
        if init_from:
            self.load_net(init_from)
        self.check_network()
        self.val_curve: list[dict[str, float]] = []
        self.steps_to_target: int | None = None
        self.eval_results: dict[str, dict[str, Any]] = {}
        self.predictions: dict[str, Any] | None = None

    # ------------------------------------------------------------------ set-up
    def load_net(self, path: str) -> None:
        from lemon_pl.core.checkpointing import load_into, load_net_state

        load_into(self.net, load_net_state(path), path)

    def check_network(self) -> None:
        if not getattr(self.net, "uses_mu", False) and len(self.mu_values) > 1:
            raise ValueError(f"model.init_args.net: {type(self.net).__name__} reads no PDE parameters, so it trains "
                             f"one μ per run, but the data hold {len(self.mu_values)} μ values: set data.init_args.mu "
                             "to one value, or use PINNP or HyperLRPINN")
        has_lr = any(isinstance(m, LowRankLinear) for m in self.net.modules())
        if (self.hparams.orth_weight_u or self.hparams.orth_weight_v) and not has_lr:
            raise ValueError(f"model.init_args.orth_weight_u/v: {type(self.net).__name__} has no low-rank bases to "
                             "penalise; set the weights to 0")

    def setup(self, stage: str) -> None:
        loops = [getattr(self.trainer, n, None) for n in ("validate_loop", "test_loop", "predict_loop")]
        loops.append(getattr(getattr(self.trainer.fit_loop, "epoch_loop", None), "val_loop", None))
        for loop in loops:  # residual metrics differentiate the network: no inference mode
            if loop is not None and hasattr(loop, "inference_mode"):
                loop.inference_mode = False

    def configure_optimizers(self):
        params = self.trainable_parameters()
        if not params:
            raise ValueError("the stage has no trainable parameters")
        opt = torch.optim.Adam(params, lr=self.hparams.lr) if self.optimizer_factory is None \
            else self.optimizer_factory(params)
        if self.lr_scheduler_factory is None:
            return opt
        from lemon_pl.core.optim import build_optimizers

        total = max(1, int(self.trainer.estimated_stepping_batches))
        return build_optimizers(params, self.hparams, total, lambda _: opt, self.lr_scheduler_factory)

    # ------------------------------------------------------------------ fields and losses
    def field(self, net: nn.Module | None = None, mu: Tensor | None = None) -> Field:
        """The network as a field ``u(coords, mu_index)`` for the μ table ``mu`` (M, P)."""
        net = self.net if net is None else net

        def u(coords: Tensor, index: Tensor) -> Tensor:
            return net(coords, mu, index).reshape(-1)

        return u

    @staticmethod
    def tile(points: Tensor, m: int) -> tuple[Tensor, Tensor]:
        """The points repeated for each of m μ rows (μ-major) and each point's row index."""
        idx = torch.arange(m, device=points.device).repeat_interleave(points.shape[0])
        return points.repeat(m, 1), idx

    def loss_terms(self, u: Field, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Mean squares of the residual, the IC and the boundary error over every μ and point."""
        mu = batch["mu"]
        m = mu.shape[0]
        with _no_autocast(mu.device):
            x, idx = self.tile(batch["x_f"], m)
            x = x.requires_grad_(True)
            terms = {"residual": self.pde.residual(u(x, idx), x, mu[idx]).square().mean()}
            parts = [batch[k] for k in ("x_ic", "x_bc_a", "x_bc_b", "x_bd") if k in batch]
            if parts:
                pts = torch.cat(parts)
                xb, ib = self.tile(pts, m)
                ub = u(xb, ib).view(m, -1)
                at = 0
                if "x_ic" in batch:
                    n = batch["x_ic"].shape[0]
                    terms["ic"] = (ub[:, at:at + n] - batch["u_ic"]).square().mean()
                    at += n
                if "x_bc_a" in batch:
                    n = batch["x_bc_a"].shape[0]
                    terms["bc"] = (ub[:, at:at + n] - ub[:, at + n:at + 2 * n]).square().mean()
                    at += 2 * n
                if "x_bd" in batch:
                    n = batch["x_bd"].shape[0]
                    terms["bc"] = (ub[:, at:at + n] - batch["u_bd"]).square().mean()
        return terms

    def penalty(self, net: nn.Module | None = None) -> Tensor | None:
        hp = self.hparams
        if not (hp.orth_weight_u or hp.orth_weight_v):
            return None
        return orthogonality_penalty(self.net if net is None else net, hp.orth_weight_u, hp.orth_weight_v,
                                     hp.orth_squared)

    def total_loss(self, terms: dict[str, Tensor], penalty: Tensor | None = None) -> Tensor:
        hp = self.hparams
        w = {"residual": hp.weight_residual, "ic": hp.weight_ic, "bc": hp.weight_bc}
        loss = sum(w[k] * v for k, v in terms.items())
        return loss if penalty is None else loss + penalty

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        terms = self.loss_terms(self.field(mu=batch["mu"]), batch)
        pen = self.penalty()
        loss = self.total_loss(terms, pen)
        self.ensure_finite(loss, batch, batch_idx)
        self.log_terms(loss, terms, pen)
        return loss

    def log_terms(self, loss: Tensor, terms: dict[str, Tensor], pen: Tensor | None = None) -> None:
        self.log("train/loss", loss.detach(), prog_bar=True)
        for k, v in terms.items():
            self.log(f"train/{k}", v.detach())
        if pen is not None:
            self.log("train/orthogonality", pen.detach())

    # ------------------------------------------------------------------ evaluation
    def predict_points(self, points: Tensor, mu: Tensor, residual: bool = True) -> tuple[Tensor, Tensor | None]:
        """u (M, N) at the same points for every μ row, and the residual (M, N) (chunked)."""
        m, n = mu.shape[0], points.shape[0]
        x_all, idx_all = self.tile(points, m)
        us, rs = [], []
        u_fn = self.field(mu=mu)
        with torch.enable_grad(), _no_autocast(mu.device):
            for lo in range(0, x_all.shape[0], EVAL_CHUNK):
                x = x_all[lo:lo + EVAL_CHUNK].detach().requires_grad_(residual)
                idx = idx_all[lo:lo + EVAL_CHUNK]
                u = u_fn(x, idx)
                if residual:
                    rs.append(self.pde.residual(u, x, mu[idx]).detach())
                us.append(u.detach())
        return torch.cat(us).view(m, n), (torch.cat(rs).view(m, n) if residual else None)

    def evaluate(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        pred, res = self.predict_points(batch["x_test"], batch["mu"])
        metrics = field_metrics(pred, batch["u_test"])
        metrics["residual_rms"] = res.double().square().mean(dim=1).sqrt()
        return metrics

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        metrics = self.evaluate(batch)
        means = {k: float(v.mean()) for k, v in metrics.items()}
        for k, v in means.items():
            self.log(f"val/{k}", v, prog_bar=k in ("rel_l2", "mae"), batch_size=batch["mu"].shape[0])
        if not self.trainer.sanity_checking:
            self.val_curve.append({"step": int(self.global_step), "rel_l2": means["rel_l2"], "mae": means["mae"]})
            if self.steps_to_target is None and means["mae"] < self.hparams.mae_target:
                self.steps_to_target = int(self.global_step)

    def on_test_epoch_start(self) -> None:
        self._t_test = time.perf_counter()

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        metrics = self.evaluate(batch)
        names = self.pde.param_names
        rows = table(names, batch["mu"].cpu(), {k: metrics[k] for k in PINN_METRICS})
        for k in PINN_METRICS:
            self.log(f"test/{k}", float(metrics[k].mean()), batch_size=batch["mu"].shape[0])
        self.predictions = self.grid_predictions(batch["mu"])
        self.eval_results["test"] = {"table": rows, "seconds": time.perf_counter() - self._t_test}

    def grid_predictions(self, mu: Tensor) -> dict[str, Any] | None:
        """Predictions, references and residuals on the data module's whole grid, for files and figures."""
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None or not hasattr(dm, "grid"):
            return None
        g = dm.grid()
        axes = [torch.as_tensor(a, dtype=torch.float32, device=mu.device) for a in g["axes"]]
        mesh = torch.stack(torch.meshgrid(axes[1], axes[0], indexing="ij")[::-1], -1).reshape(-1, 2)
        pred, res = self.predict_points(mesh, mu)
        shape = (mu.shape[0], len(axes[1]), len(axes[0]))
        out = {"names": list(g["names"]), "axes": [a.cpu().numpy() for a in axes], "mu": mu.cpu().numpy(),
               "param_names": list(self.pde.param_names), "u_pred": pred.view(shape).cpu().numpy(),
               "u_ref": g["u_ref"], "residual": res.view(shape).cpu().numpy()}
        out.update(self.extra_predictions(mu))
        return out

    def extra_predictions(self, mu: Tensor) -> dict[str, Any]:
        """Hyper-LR-PINN: its diagonals s(μ) over a sweep of μ (the rank and |s| figures)."""
        if not isinstance(self.net, HyperLRPINN):
            return {}
        base = torch.as_tensor(self.mu_values, dtype=torch.float32)
        varying = [i for i in range(base.shape[1]) if bool((base[:, i] != base[0, i]).any())]
        col = varying[0] if varying else 0
        lo, hi = float(base[:, col].min()), float(base[:, col].max())
        if self.hparams.rank_sweep:
            lo, hi, step = map(float, self.hparams.rank_sweep)
        else:
            span = max(hi - lo, 1.0)
            lo, hi, step = max(0.0, lo - span), hi + span, span / 20
        values = torch.arange(lo, hi + 0.5 * step, step)
        sweep = base[:1].repeat(len(values), 1)
        sweep[:, col] = values
        with torch.no_grad():
            s = self.net.diagonals(sweep.to(self.device)).cpu()
        return {"sweep_mu": sweep.numpy(), "sweep_param": self.pde.param_names[col], "sweep_s": s.numpy()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A network without a μ input solves the μ it was trained on: refuse another one."""
        from lemon_pl.core.errors import CheckpointMismatchError

        trained = (checkpoint.get("hyper_parameters") or {}).get("mu_values")
        if trained and self.solves_one_mu() and [list(map(float, m)) for m in trained] != self.mu_values:
            names = self.pde.param_names
            from lemon_pl.pinn.metrics import mu_label

            raise CheckpointMismatchError(
                f"the checkpoint solves {mu_label(names, trained[0])} but data.init_args.mu is "
                f"{mu_label(names, self.mu_values[0])}: pass --data.init_args.mu {list(trained[0])}")

    def solves_one_mu(self) -> bool:
        return not getattr(self.net, "uses_mu", False)

    def fit_extras(self) -> dict[str, Any]:
        """What ``fit_summary.json`` records beside the parameter counts and step times."""
        return {"mae_target": self.hparams.mae_target, "steps_to_target": self.steps_to_target,
                "val_curve": self.val_curve}

    def table_extra_columns(self) -> dict[str, Any]:
        return {"trainable_params": self.n_trainable}


class HyperLRPINNAdapt(PINNModule):
    """Hyper-LR-PINN phase 2 at one target μ (the data's only μ value).

    ``net`` is the phase-1 architecture (``configs/model/hyper_lr_pinn.yaml``) and ``init_from``
    the phase-1 checkpoint. The stage trains the :class:`NaiveLRPINN` that
    :meth:`HyperLRPINN.adapt` makes of it at the target μ: s initialised to s(μ), W⁰, b⁰,
    W^{L+1}, b^{L+1} copied; the bases (and the paper layout's hidden biases) frozen; the
    hypernetwork dropped. ``rank``: ``full`` keeps every entry of s, ``adaptive`` only those
    with |s| > ``threshold`` (0: the entries the ReLU kept). Loading a phase-2 checkpoint
    (``--ckpt_path``) rebuilds its ranks from the checkpoint.
    """

    def __init__(self, net: nn.Module, rank: str = "full", threshold: float = 0.0, **kwargs: Any):
        if not isinstance(net, HyperLRPINN):
            raise ValueError(f"model.init_args.net: phase 2 adapts a HyperLRPINN, got {type(net).__name__}")
        if rank not in ("full", "adaptive"):
            raise ValueError(f"model.init_args.rank must be 'full' or 'adaptive', got {rank!r}")
        mu_values = kwargs.get("mu_values") or []
        if len(mu_values) != 1:
            raise ValueError(f"phase 2 adapts to one target μ: set data.init_args.mu to one value "
                             f"(the data hold {len(mu_values)})")
        self._phase2 = (rank, float(threshold))
        super().__init__(net, **kwargs)
        self.save_hyperparameters(ignore=NOT_HPARAMS)

    def check_network(self) -> None:
        if isinstance(self.net, HyperLRPINN):
            rank, threshold = self._phase2
            self.net = self.net.adapt(self.mu_values[0], rank, threshold)
        super().check_network()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A phase-2 checkpoint may hold adaptive ranks: rebuild the layers to their shapes."""
        super().on_load_checkpoint(checkpoint)
        state = checkpoint.get("state_dict") or {}
        ranks = [int(state[f"net.layers.{i}.s"].shape[0]) for i in range(len(self.net.layers))
                 if f"net.layers.{i}.s" in state]
        if len(ranks) == len(self.net.layers) and ranks != self.net.ranks:
            old = self.net
            new = NaiveLRPINN(old.in_dim, old.out_dim, old.first.out_features, len(ranks), ranks,
                              old.layout).to(old.first.weight)
            new.act = old.act  # the phase-1 network's activation
            for o, n in zip(old.layers, new.layers):
                n.U.requires_grad_(o.U.requires_grad)
                n.V.requires_grad_(o.V.requires_grad)
                if o.bias is not None:
                    n.bias.requires_grad_(o.bias.requires_grad)
            self.net = new


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
        self.save_hyperparameters(ignore=NOT_HPARAMS)

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
            return vmap(one)(params, coords.view(m, -1, coords.shape[-1])).reshape(-1)

        return u

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        from lemon_pl.adaptation.maml import adapt

        hp, m = self.hparams, batch["mu"].shape[0]
        params = dict(self.net.named_parameters())
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
        return lambda coords, index: net(coords).reshape(-1)


class TimeMarchingPINN(PINNModule):
    """PINN-S2S: ``segments`` copies of ``net``, network k owning t ∈ [k/K, (k+1)/K] (of the
    problem's time interval), trained in order for an equal share of the run's steps; each
    starts from the previous one's weights, and its initial condition is the previous one's
    prediction at the segment's start. One μ per run."""

    def __init__(self, net: nn.Module, segments: int = 5, **kwargs: Any):
        if segments < 1:
            raise ValueError(f"model.init_args.segments must be >= 1, got {segments}")
        super().__init__(net, **kwargs)
        if not self.pde.time_dependent:
            raise ValueError(f"model.init_args.segments: {self.pde.name} is steady; time-marching needs time")
        self.save_hyperparameters(ignore=NOT_HPARAMS)
        # one network per segment; ``net`` holds them all (parameter counts, checkpoints)
        self.net = nn.ModuleList(copy.deepcopy(self.net) for _ in range(segments))
        self.register_buffer("segment", torch.zeros((), dtype=torch.long))
        self.t_axis = self.pde.domain.names.index("t")
        self.t0, self.t1 = self.pde.domain.bounds[self.t_axis]

    @property
    def nets(self) -> nn.ModuleList:
        return self.net

    def _segment_of_step(self) -> int:
        total = self.trainer.max_steps if self.trainer.max_steps and self.trainer.max_steps > 0 else \
            int(self.trainer.estimated_stepping_batches)
        k = len(self.nets)
        return min(k - 1, self.global_step * k // max(total, 1))

    def _map_t(self, pts: Tensor, k: int) -> Tensor:
        """Points of [t0, t1] mapped into segment k."""
        out = pts.clone()
        width = (self.t1 - self.t0) / len(self.nets)
        out[:, self.t_axis] = self.t0 + k * width + (pts[:, self.t_axis] - self.t0) / len(self.nets)
        return out

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        k = self._segment_of_step()
        if k != int(self.segment):
            self.nets[k].load_state_dict(self.nets[int(self.segment)].state_dict())  # warm start
            self.segment.fill_(k)
        seg = dict(batch)
        seg["x_f"] = self._map_t(batch["x_f"], k)
        for key in ("x_bc_a", "x_bc_b"):
            if key in batch:
                seg[key] = self._map_t(batch[key], k)
        if k > 0 and "x_ic" in batch:
            start = batch["x_ic"].clone()
            start[:, self.t_axis] = self.t0 + k * (self.t1 - self.t0) / len(self.nets)
            seg["x_ic"] = start
            with torch.no_grad():
                prev = self.nets[k - 1](start).reshape(1, -1)
            seg["u_ic"] = prev.expand_as(batch["u_ic"])
        net = self.nets[k]
        terms = self.loss_terms(lambda x, i: net(x).reshape(-1), seg)
        loss = self.total_loss(terms)
        self.ensure_finite(loss, batch, batch_idx)
        self.log_terms(loss, terms)
        self.log("train/segment", float(k))
        return loss

    def field(self, net: nn.Module | None = None, mu: Tensor | None = None) -> Field:
        """The piecewise solution: each point evaluated by its segment's network."""
        k = len(self.nets)

        def u(coords: Tensor, index: Tensor) -> Tensor:
            t = coords[:, self.t_axis]
            seg = ((t - self.t0) / (self.t1 - self.t0) * k).floor().clamp(0, k - 1).long()
            outs = torch.stack([n(coords).reshape(-1) for n in self.nets], 1)  # (n, K)
            return outs.gather(1, seg[:, None]).reshape(-1)

        return u

    def check_network(self) -> None:
        if getattr(self.net, "uses_mu", False):
            raise ValueError("model.init_args.net: time-marching trains a plain PINN on one μ")
        super().check_network()
