"""PINN-S2S: time-marching, one network per time segment trained in order."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from lemon_pl.core.phases import PhaseSchedule
from lemon_pl.pinn.stages.pinn import IGNORED, Field, PINNModule


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
        if self.n_fields != 1:
            raise ValueError(f"model.init_args.segments: time-marching trains one field; {self.pde.name} has "
                             f"{self.pde.fields}")
        for name, cond in self.conditions.items():
            if cond.target is not None and cond.region.kind != "initial":
                raise ValueError(f"model.init_args.segments: time-marching moves the points of condition {name!r} "
                                 "into each segment, but its targets belong to the points as sampled; use PINNModule")
        self.save_hyperparameters(ignore=IGNORED)
        self.record_problem()
        # one network per segment; ``net`` holds them all (parameter counts, checkpoints)
        self.net = nn.ModuleList(copy.deepcopy(self.net) for _ in range(segments))
        self.register_buffer("segment", torch.zeros((), dtype=torch.long))
        self.t_axis = self.pde.domain.time_index
        self.t0, self.t1 = self.pde.domain.bounds[self.t_axis]

    @property
    def nets(self) -> nn.ModuleList:
        return self.net

    def _segment_of_step(self) -> int:
        total = self.trainer.max_steps if self.trainer.max_steps and self.trainer.max_steps > 0 else \
            int(self.trainer.estimated_stepping_batches)
        return PhaseSchedule.even(total, len(self.nets)).phase_at(self.global_step)

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
        seg = {**batch, "points": dict(batch["points"]), "pairs": dict(batch.get("pairs", {})),
               "targets": dict(batch.get("targets", {}))}
        for name, cond in self.conditions.items():
            if name not in batch["points"]:
                continue
            if cond.region.kind != "initial":
                seg["points"][name] = self._map_t(batch["points"][name], k)
                if name in seg["pairs"]:
                    seg["pairs"][name] = self._map_t(batch["pairs"][name], k)
            elif k > 0:
                start = batch["points"][name].clone()
                start[:, self.t_axis] = self.t0 + k * (self.t1 - self.t0) / len(self.nets)
                seg["points"][name] = start
                with torch.no_grad():
                    prev = self.components(self.rows(self.flat(self.nets[k - 1](start)), 1), cond)
                seg["targets"][name] = prev.expand_as(batch["targets"][name])
        net = self.nets[k]
        terms = self.loss_terms(lambda x, i: self.flat(net(x)), seg)
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
