"""The physics-informed base stage: one network over the run's μ set, the loss a weighted sum over the
problem's named conditions, per-μ evaluation and the test report (see :mod:`lemon_pl.pinn.stages`)."""

from __future__ import annotations

import copy
import time
from typing import Any, Callable, Optional

import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn

from lemon_pl.core.report import EvaluationReport
from lemon_pl.core.stage import NOT_HPARAMS, Stage, check_range
from lemon_pl.pinn.conditions import Condition, mean_square, normal_derivative
from lemon_pl.pinn.metrics import PINN_METRICS, field_metrics, table
from lemon_pl.pinn.problems import Problem

#: a field: coordinates (n, d) and each point's μ row (n,) -> u (n,)
Field = Callable[[Tensor, Tensor], Tensor]
#: points per chunk when a whole grid is evaluated (bounds the memory of second derivatives)
EVAL_CHUNK = 1 << 15
#: constructor arguments kept out of the hyperparameters (objects; the problem's config is recorded instead)
IGNORED = [*NOT_HPARAMS, "problem", "evaluation_grid"]


def no_autocast(device: torch.device):
    return torch.autocast(device_type=device.type, enabled=False)


class PINNModule(Stage):
    """A PINN stage over the run's μ set (see module doc).

    Args:
        net: a network of ``lemon_pl.pinn.networks`` (``PINN``, ``PINNP``, ``NaiveLRPINN``,
            ``HyperLRPINN``), chosen by class_path.
        problem, mu_values, evaluation_grid: linked from the data module (the problem object, built
            once there; a function giving the evaluation grid and its references, for
            ``predictions.npz`` and the figures of a test).
        lr: Adam's learning rate when no ``optimizer`` is configured (``lr_scheduler`` unset: constant).
        weights: loss weights by condition name, over the problem's own (``{ic: 10, bc: 1}``).
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

    def __init__(self, net: nn.Module, problem: Optional[Problem] = None, mu_values: list[list[float]] | None = None,
                 lr: float = 2.5e-4, weights: dict[str, float] | None = None, orth_weight_u: float = 0.0,
                 orth_weight_v: float = 0.0, orth_squared: bool = False, init_from: str | None = None,
                 mae_target: float = 0.05, rank_sweep: list[float] | None = None, max_figures: int = 6,
                 evaluation_grid: Any = None, optimizer: OptimizerCallable | None = None,
                 lr_scheduler: LRSchedulerCallable | None = None, monitor: str | None = None):
        super().__init__(optimizer, lr_scheduler, monitor)
        check_range("lr", lr, low=0.0)
        for name, v in (("orth_weight_u", orth_weight_u), ("orth_weight_v", orth_weight_v)):
            check_range(name, v, low=0.0, closed=True)
        if not isinstance(problem, Problem):
            raise ValueError("model.init_args.problem: the stage takes the problem object linked from the data "
                             f"(data.init_args.problem), got {problem!r}")
        self.pde = problem
        self.evaluation_grid = evaluation_grid
        self.save_hyperparameters(ignore=IGNORED)
        self.record_problem()
        self.conditions: dict[str, Condition] = dict(problem.conditions())
        unknown = set(weights or {}) - set(self.conditions)
        if unknown:
            raise ValueError(f"model.init_args.weights: unknown conditions {sorted(unknown)}; {problem.name} has "
                             f"{list(self.conditions)}")
        for name, v in dict(weights or {}).items():
            check_range(f"weights.{name}", v, low=0.0, closed=True)
        self.weights = {n: float((weights or {}).get(n, c.weight)) for n, c in self.conditions.items()}
        self.n_fields = len(problem.fields)
        self.mu_values = [list(map(float, m)) for m in (mu_values or [self.pde.defaults().values()])]
        self.net = net
        if init_from:
            self.load_init(init_from)
        self.check_network()
        self.val_curve: list[dict[str, float]] = []
        self.steps_to_target: int | None = None

    # ------------------------------------------------------------------ set-up
    def record_problem(self) -> None:
        """The problem's ``{class_path, init_args}`` as the hyperparameter ``problem`` (checkpoints,
        hparams.yaml): called after each ``save_hyperparameters``, which leaves the object out."""
        self.hparams["problem"] = self.pde.config()
        self._hparams_initial = copy.deepcopy(self._hparams)

    def check_network(self) -> None:
        if not getattr(self.net, "uses_mu", False) and len(self.mu_values) > 1:
            raise ValueError(f"model.init_args.net: {type(self.net).__name__} reads no PDE parameters, so it trains "
                             f"one μ per run, but the data hold {len(self.mu_values)} μ values: set data.init_args.mu "
                             "to one value, or use PINNP or HyperLRPINN")
        if (self.hparams.orth_weight_u or self.hparams.orth_weight_v) and \
                "orth_weight_u" not in getattr(self.net, "penalties", ()):
            raise ValueError(f"model.init_args.orth_weight_u/v: {type(self.net).__name__} has no low-rank bases to "
                             "penalise; set the weights to 0")

    def setup(self, stage: str) -> None:
        loops = [getattr(self.trainer, n, None) for n in ("validate_loop", "test_loop", "predict_loop")]
        loops.append(getattr(getattr(self.trainer.fit_loop, "epoch_loop", None), "val_loop", None))
        for loop in loops:  # residual metrics differentiate the network: no inference mode
            if loop is not None and hasattr(loop, "inference_mode"):
                loop.inference_mode = False

    def default_optimizer(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        """Adam at ``lr`` (each group may carry its own ``lr``), the PINN papers' optimiser."""
        return torch.optim.Adam(groups, lr=self.hparams.lr)

    def default_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> None:
        """A constant rate unless the config sets a schedule."""
        return None

    # ------------------------------------------------------------------ fields and losses
    def flat(self, out: Tensor) -> Tensor:
        """A network output (n, k) as the field's values: (n,) for one field, (n, k) for several."""
        return out.reshape(-1) if self.n_fields == 1 else out.reshape(out.shape[0], -1)

    def field(self, net: nn.Module | None = None, mu: Tensor | None = None) -> Field:
        """The network as a field ``u(coords, mu_index)`` for the μ table ``mu`` (M, P)."""
        net = self.net if net is None else net

        def u(coords: Tensor, index: Tensor) -> Tensor:
            return self.flat(net(coords, mu, index))

        return u

    @staticmethod
    def tile(points: Tensor, m: int) -> tuple[Tensor, Tensor]:
        """The points repeated for each of m μ rows (μ-major) and each point's row index."""
        idx = torch.arange(m, device=points.device).repeat_interleave(points.shape[0])
        return points.repeat(m, 1), idx

    def rows(self, u: Tensor, m: int) -> Tensor:
        """Field values of μ-major points as (M, n) (one field) or (M, n, k)."""
        return u.view(m, -1) if u.ndim == 1 else u.view(m, -1, u.shape[-1])

    def loss_terms(self, u: Field, batch: dict[str, Any]) -> dict[str, Tensor]:
        """The mean square of every condition of the batch over every μ and point, in declared order."""
        mu = batch["mu"]
        m = mu.shape[0]
        points, targets = batch["points"], batch.get("targets", {})
        terms: dict[str, Tensor] = {}
        with no_autocast(mu.device):
            for name, cond in self.conditions.items():
                if name not in points or not cond.needs_derivatives:
                    continue
                x, idx = self.tile(points[name], m)
                x = x.requires_grad_(True)
                out = u(x, idx)
                if cond.kind == "residual":
                    terms[name] = self.pde.residual(out, x, mu[idx]).square().mean()
                else:
                    terms[name] = mean_square(self.rows(self.flux(cond, out, x, batch["normals"][name], m, mu[idx]), m),
                                              targets[name])
            shared = [n for n, c in self.conditions.items() if n in points and not c.needs_derivatives]
            if shared:
                parts = []
                for name in shared:
                    parts.append(points[name])
                    if self.conditions[name].kind == "periodic":
                        parts.append(batch["pairs"][name])
                xb, ib = self.tile(torch.cat(parts), m)
                ub = self.rows(u(xb, ib), m)
                at = 0
                for name in shared:
                    cond, n = self.conditions[name], points[name].shape[0]
                    if cond.kind == "periodic":
                        terms[name] = (ub[:, at:at + n] - ub[:, at + n:at + 2 * n]).square().mean()
                        at += 2 * n
                    else:
                        terms[name] = mean_square(self.components(ub[:, at:at + n], cond), targets[name])
                        at += n
        return {n: terms[n] for n in self.conditions if n in terms}

    def components(self, values: Tensor, cond: Condition) -> Tensor:
        """The condition's field components of values (M, n) or (M, n, k): (M, n) or (M, n, c)."""
        if values.ndim == 2:
            return values
        cols = self.pde.components(cond.components)
        return values[..., cols[0]] if len(cols) == 1 else values[..., cols]

    def flux(self, cond: Condition, u: Tensor, x: Tensor, normals: Tensor, m: int, mu: Tensor) -> Tensor:
        """A flux condition's operator at μ-major points: (n·m,) or (n·m, c)."""
        normal = normals.repeat(m, 1)
        if cond.operator is not None:
            return cond.operator(u, x, normal, mu)
        return normal_derivative(u, x, normal, self.pde.components(cond.components))

    def penalty(self, net: nn.Module | None = None) -> Tensor | None:
        hp = self.hparams
        if not (hp.orth_weight_u or hp.orth_weight_v):
            return None
        net = self.net if net is None else net
        return net.penalty({"orth_weight_u": hp.orth_weight_u, "orth_weight_v": hp.orth_weight_v,
                            "orth_squared": hp.orth_squared})

    def total_loss(self, terms: dict[str, Tensor], penalty: Tensor | None = None) -> Tensor:
        loss = sum(self.weights[k] * v for k, v in terms.items())
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
        with torch.enable_grad(), no_autocast(mu.device):
            for lo in range(0, x_all.shape[0], EVAL_CHUNK):
                x = x_all[lo:lo + EVAL_CHUNK].detach().requires_grad_(residual)
                idx = idx_all[lo:lo + EVAL_CHUNK]
                u = u_fn(x, idx)
                if residual:
                    rs.append(self.pde.residual(u, x, mu[idx]).detach())
                us.append(u.detach())
        shape = (m, n) if self.n_fields == 1 else (m, n, -1)
        return torch.cat(us).view(shape), (torch.cat(rs).view(m, n, -1).squeeze(-1) if residual else None)

    def evaluate(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        pred, res = self.predict_points(batch["x_test"], batch["mu"])
        m = batch["mu"].shape[0]
        metrics = field_metrics(pred.reshape(m, -1), batch["u_test"].reshape(m, -1))
        metrics["residual_rms"] = res.double().reshape(m, -1).square().mean(dim=1).sqrt()
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
        predictions = self.grid_predictions(batch["mu"])
        arrays = {} if predictions is None else {
            "predictions": predictions, "train_mu": [list(m) for m in self.mu_values],
            "max_figures": int(self.hparams.max_figures)}
        report = EvaluationReport(stage="test", group="mu", rows=rows, metrics=PINN_METRICS,
                                  extras=self.table_extra_columns(), seconds=time.perf_counter() - self._t_test,
                                  arrays=arrays)
        self.publish_report(report, log=False)  # logged above, as the mean over μ of each metric

    def grid_predictions(self, mu: Tensor) -> dict[str, Any] | None:
        """Predictions, references and residuals on the linked evaluation grid, for files and figures."""
        if self.evaluation_grid is None:
            return None
        g = self.evaluation_grid()
        axes = [torch.as_tensor(a, dtype=torch.float32, device=mu.device) for a in g["axes"]]
        mesh = torch.stack(torch.meshgrid(*axes[::-1], indexing="ij")[::-1], -1).reshape(-1, len(axes))
        pred, res = self.predict_points(mesh, mu)
        shape = (mu.shape[0], *(len(a) for a in axes[::-1]))
        out = {"names": list(g["names"]), "axes": [a.cpu().numpy() for a in axes], "mu": mu.cpu().numpy(),
               "param_names": list(self.pde.param_names), "fields": list(self.pde.fields),
               "u_pred": pred.view(*shape, *pred.shape[2:]).cpu().numpy(),
               "u_ref": g["u_ref"], "residual": res.reshape(*shape, -1).squeeze(-1).cpu().numpy()}
        out.update(self.extra_predictions(mu))
        return out

    def extra_predictions(self, mu: Tensor) -> dict[str, Any]:
        """The network's reports over a sweep of μ (Hyper-LR-PINN: its diagonals s(μ), the rank
        and |s| figures)."""
        if not getattr(self.net, "reports_mu", False):
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
            reports = {k: v.detach().cpu().numpy() for k, v in self.net.reports(sweep.to(self.device)).items()}
        return {"sweep_mu": sweep.numpy(), "sweep_param": self.pde.param_names[col], **reports}

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
