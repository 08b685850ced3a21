"""The error metrics of the physics-informed stages, per PDE parameter value μ.

Hyper-LR-PINN's protocol (pinn-methods.md §1): over one μ's test points, the relative error
``||u - û||₂ / ||u||₂``, the absolute error (a mean absolute error) ``mean |u - û|``, the
maximum error ``max |u - û|`` and the explained variance ``1 - Var(u - û) / Var(u)``; lemon-pl
adds the root-mean-square PDE residual of the prediction at the same points. A table reports one
row per μ and ``overall``, the unweighted mean over the μ rows.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

if TYPE_CHECKING:  # torch is imported where tensors are computed: experiment listings stay light
    import torch

#: the metrics of every PINN table, in column order (``rel_l2`` is the headline)
PINN_METRICS = ("rel_l2", "mae", "max_err", "explained_variance", "residual_rms")
OVERALL = "overall"


def field_metrics(pred: torch.Tensor, true: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-μ metrics of predictions ``pred`` against references ``true``, both (M, N): tensors (M,)."""
    pred, true = pred.detach().double(), true.detach().double()
    err = pred - true
    var = true.var(dim=1, unbiased=False)
    return {
        "rel_l2": err.norm(dim=1) / true.norm(dim=1).clamp_min(1e-12),
        "mae": err.abs().mean(dim=1),
        "max_err": err.abs().amax(dim=1),
        "explained_variance": 1 - err.var(dim=1, unbiased=False) / var.clamp_min(1e-12),
    }


def mu_label(names: Sequence[str], values: Sequence[float]) -> str:
    """``beta=30,nu=0,rho=0``: the row name of one μ (integers without a decimal point)."""
    def fmt(v: float) -> str:
        v = float(v)
        return str(int(v)) if v.is_integer() else f"{v:g}"

    return ",".join(f"{n}={fmt(v)}" for n, v in zip(names, values))


def table(names: Sequence[str], mu: torch.Tensor, metrics: Mapping[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """``{mu label: {metric: value}}`` plus the ``overall`` row (mean over μ)."""
    rows = {mu_label(names, m.tolist()): {k: float(v[i]) for k, v in metrics.items()} for i, m in enumerate(mu)}
    keys = list(metrics)
    rows[OVERALL] = {k: math.fsum(r[k] for r in rows.values()) / max(len(rows), 1) for k in keys}
    return rows
