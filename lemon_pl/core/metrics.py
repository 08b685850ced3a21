"""The error metrics of every stage and of the experiment reports, defined once.

LeMON's protocol: relative L2 per sample, ``||u_hat - u|| / (||u|| + 1e-7)`` over all predicted
frames and grid points after de-normalisation (``u * std + mean`` with each sample's own
statistics), also over the first and second half of the predicted frames; the persistence
baseline (repeat the last input frame) is scored the same way. A family's value is the mean over
its samples; ``overall`` pools all samples (sample-weighted), as the paper reports it. Under DDP
the means are synchronised across ranks (torchmetrics ``MeanMetric``) when computed.

Experiment reports (``lemon_pl.experiments.report``) aggregate the per-family values of test
runs over seeds with :func:`mean_std` and show :data:`REPORTED`.
"""

from __future__ import annotations

import math
import statistics
from typing import Iterable, Mapping

import torch
from torch import nn

#: every metric a stage logs per family (``val/<metric>/<family>``) and pooled (``val/<metric>``)
METRICS = ("rel_l2", "rel_l2_first", "rel_l2_second", "rel_l2_persistence", "mse")
#: the metrics in tables and experiment reports
REPORTED = ("rel_l2", "rel_l2_first", "rel_l2_second")
#: the columns of the per-family tables (printed, ``<stage>_metrics.csv``; the JSON holds every metric)
TABLED = (*REPORTED, "rel_l2_persistence")
#: the row of a table that pools every sample
OVERALL = "overall"


def relative_l2(pred: torch.Tensor, true: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Per-sample ``||pred - true|| / (||true|| + eps)`` over every dimension but the first."""
    diff = (pred - true).flatten(1).float()
    return diff.norm(dim=1) / (true.flatten(1).float().norm(dim=1) + eps)


def denormalise(u: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Physical values of normalised frames ``u`` (B, n, nx): ``u * std + mean`` per sample."""
    return u.float() * batch["std"][:, None, None] + batch["mean"][:, None, None]


def sample_metrics(pred: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every metric of :data:`METRICS` per sample (B,) for normalised predictions ``pred``."""
    true = denormalise(batch["u_out"], batch)
    phys = denormalise(pred, batch)
    half = true.shape[1] // 2
    persistence = denormalise(batch["u_in"][:, -1:], batch).expand_as(true)
    return {
        "rel_l2": relative_l2(phys, true),
        "rel_l2_first": relative_l2(phys[:, :half], true[:, :half]),
        "rel_l2_second": relative_l2(phys[:, half:], true[:, half:]),
        "rel_l2_persistence": relative_l2(persistence, true),
        "mse": ((pred.float() - batch["u_out"].float()) ** 2).flatten(1).mean(1),
    }


class FamilyMetrics(nn.Module):
    """Sample means per (family or ``overall``, metric); synchronised across DDP ranks on compute."""

    def __init__(self, families: Iterable[str], metrics: Iterable[str] = METRICS):
        super().__init__()
        from torchmetrics import MeanMetric

        self.families = list(families)
        self.metrics = tuple(metrics)
        self.store = nn.ModuleDict({
            f"{g}__{m}": MeanMetric() for g in [*self.families, OVERALL] for m in self.metrics
        })

    def update(self, family: str, values: Mapping[str, torch.Tensor]) -> None:
        for m, v in values.items():
            self.store[f"{family}__{m}"].update(v)
            self.store[f"{OVERALL}__{m}"].update(v)

    def compute(self) -> dict[str, dict[str, float]]:
        """``{family: {metric: mean}}`` plus ``overall`` (NaN where nothing was scored).

        Collective under DDP: every rank computes every entry, also one it saw no sample of
        (its share is empty; skipping it would leave the other ranks waiting)."""
        import warnings

        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        out: dict[str, dict[str, float]] = {}
        for g in [*self.families, OVERALL]:
            row = {}
            for m in self.metrics:
                metric = self.store[f"{g}__{m}"]
                if metric.update_count or distributed:
                    with warnings.catch_warnings():  # "compute before update" on a rank with an empty share
                        warnings.simplefilter("ignore")
                        row[m] = float(metric.compute())
                else:
                    row[m] = math.nan
            out[g] = row
        return out

    def reset(self) -> None:
        for metric in self.store.values():
            metric.reset()


def mean_std(values: Iterable[float | None]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value) of the finite values; NaNs if none."""
    kept = [float(v) for v in values if v is not None and not math.isnan(v)]
    if not kept:
        return math.nan, math.nan
    return statistics.fmean(kept), (statistics.stdev(kept) if len(kept) > 1 else 0.0)
