"""Few-shot prediction: adapt on a support set with first-order SGD, then predict a query set."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from lemon_pl.adaptation.functional import net_call
from lemon_pl.adaptation.maml import adapt

Batch = Mapping[str, torch.Tensor]


def adapt_then_predict(net: nn.Module, support: Batch, query: Batch, fast_names: Sequence[str], steps: int,
                       lr, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                       curve: Sequence[int] = (), on_step: Callable[[int, torch.Tensor], None] | None = None
                       ) -> torch.Tensor:
    """The query prediction after ``steps`` SGD steps of ``fast_names`` on the support loss.

    ``lr``: a float, a scalar tensor or one rate per fast parameter (used without their graph).
    ``on_step(k, pred)`` receives the query prediction after each step count ``k`` of ``curve``
    (first-order SGD keeps no state, so adapting in stages is exact). The network's own
    parameters are never changed. Needs gradients: not under ``torch.inference_mode``.
    """
    marks = sorted({steps, *curve})
    if marks[-1] == 0 or len(support["u_in"]) == 0:
        with torch.no_grad():
            pred = net_call(net, {}, query)
        for k in curve:
            if on_step is not None:
                on_step(k, pred)
        return pred
    if torch.is_inference_mode_enabled():
        raise RuntimeError("few-shot evaluation adapts with gradients: set `trainer.inference_mode: false`")
    params = {n: p.detach() for n, p in net.named_parameters()}
    with torch.enable_grad():
        for n in fast_names:
            params[n] = params[n].clone().requires_grad_(True)
        lr = {n: v.detach() for n, v in lr.items()} if isinstance(lr, Mapping) else (
            lr.detach() if torch.is_tensor(lr) else lr)
        support_loss = lambda p: loss(net_call(net, p, support), support["u_out"])  # noqa: E731
        done, fast, result = 0, {n: params[n] for n in fast_names}, None
        for k in marks:
            if k > done:
                fast = adapt(net, {**params, **fast}, fast_names, support_loss, k - done, lr, first_order=True)
                fast = {n: w.detach() for n, w in fast.items()}
                done = k
            with torch.no_grad():
                pred = net_call(net, {**params, **fast}, query)
            if on_step is not None and k in curve:
                on_step(k, pred)
            if k == steps:
                result = pred
    return result
