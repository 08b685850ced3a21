"""MAML over a batch of tasks with ``torch.func.vmap``: every task adapts at once.

``vmap_meta_loss`` computes what the loop over ``lemon_pl.adaptation.maml.adapt`` computes with its Python loop over tasks
- for each task, ``steps`` SGD steps on its support set from the shared weights, then the query
loss at the adapted weights, summed over tasks - but with the tasks stacked along a leading
dimension and the inner loop written once for one task, ``vmap``-ed over the stack:

* the inner gradient is ``torch.func.grad`` of the per-task support loss;
* the first inner step sees weights shared by every task, so its forward/backward is one pass
  over all ``T x S`` support samples; the later steps and the query pass see per-task weights
  (batched matmuls);
* ``first_order=True`` (FOMAML): each inner step vmaps only the support gradient, on detached
  weights (no graph is kept for the inner passes); the SGD update of the task-stacked weights
  runs outside vmap, in place (one fused ``_foreach`` op); the adapted weights are attached to
  the outer graph once, with gradient identity w.r.t. the shared weights and ``-sum_s g_s``
  w.r.t. the learning rate, as the loop's ``adapt`` gives; then one vmapped query pass;
* ``first_order=False`` keeps the inner gradients in the outer graph (full second-order MAML).
  Run it under ``lemon_pl.models.differentiable_attention()``: the fused SDPA kernels have no
  double backward (nor a vmap batching rule: vmap falls back to a slow per-task loop for them,
  with a warning, so the math backend is the better choice under vmap in any case).
  The network's ``nn.LayerNorm`` layers are computed by their composite formula during a
  second-order call: with PyTorch's native kernel, the outer gradient through a vmapped
  ``torch.func.grad`` is wrong when both a layer norm's input and its weight adapt (torch 2.13:
  ``LN(x @ W)`` with adapted ``W`` and ``gamma`` gives a 20% error in the gradient w.r.t. ``W``;
  first order is unaffected).

The batches are dictionaries of task-stacked tensors, ``(T, n, ...)``: ``u_in (T, n, n_in, nx)``,
``u_out (T, n, n_out, nx)``, ``t_in (T, n, n_in)``, ``t_out (T, n, n_out)``, and for networks that
read the equation ``tokens`` / ``token_pad_mask (T, n, L)`` - i.e. ``task_view``
outputs stacked over tasks (``lemon_pl.adaptation.tasks.task_views`` builds them from a task batch).

Learning rates: a float, a scalar tensor, a ``(T,)`` tensor (one rate per task, LeMONS), or a
mapping from fast-parameter name to a float / scalar tensor (one rate per tensor, Meta-SGD).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import grad as func_grad
from torch.func import vmap

from lemon_pl.adaptation.functional import AttachFirstOrder, clip_by_global_norm, net_call

__all__ = ["vmap_meta_loss", "composite_layer_norm"]

DATA_KEYS = ("u_in", "u_out", "t_in", "t_out", "tokens", "token_pad_mask")


def _mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred.float(), target.float())


def vmap_meta_loss(
    net: nn.Module,
    params: Mapping[str, torch.Tensor],
    fast_names: Sequence[str],
    support_batch: Mapping[str, torch.Tensor],
    query_batch: Mapping[str, torch.Tensor],
    steps: int,
    lr: float | torch.Tensor | Mapping[str, float | torch.Tensor],
    first_order: bool = True,
    *,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _mse,
    grad_clip: float | None = None,
    chunk_size: int | None = None,
    reduction: str = "sum",
) -> torch.Tensor:
    """Sum over tasks (``reduction="none"``: the ``(T,)`` losses) of the query loss after adaptation.

    ``params`` are all of the network's parameters (name -> tensor, usually
    ``dict(net.named_parameters())``); ``fast_names`` the ones that adapt. ``grad_clip`` rescales
    each task's inner gradient to at most that global norm. ``chunk_size`` is passed to ``vmap``
    (adapt that many tasks at a time, to bound memory).
    """
    names = list(fast_names)
    if reduction not in ("sum", "none"):
        raise ValueError(f"reduction must be 'sum' or 'none', got {reduction!r}")
    missing = [n for n in names if n not in params]
    if missing:
        raise KeyError(f"fast parameters {missing[:3]} are not in params")
    n_tasks = support_batch["u_in"].shape[0]
    if query_batch["u_in"].shape[0] != n_tasks:
        raise ValueError(f"support has {n_tasks} tasks but query has {query_batch['u_in'].shape[0]}")
    uses_eq = getattr(net, "uses_equation", False)
    keys = [k for k in DATA_KEYS if uses_eq or k not in ("tokens", "token_pad_mask")]
    support = {k: support_batch[k] for k in keys}
    query = {k: query_batch[k] for k in keys}
    if uses_eq:  # a task is one operator: its equation is encoded once per pass, not per sample
        support, query = _one_equation_row(support), _one_equation_row(query)

    # learning rates: a vmapped (T,) tensor, or shared (float / scalar tensor / per-name)
    per_name = isinstance(lr, Mapping)
    if per_name:
        lr_arg, lr_dims = {n: lr[n] for n in names}, None
    elif torch.is_tensor(lr) and lr.ndim == 1:
        if lr.shape[0] != n_tasks:
            raise ValueError(f"a per-task learning rate needs shape ({n_tasks},), got {tuple(lr.shape)}")
        lr_arg, lr_dims = lr, 0
    else:
        lr_arg, lr_dims = lr, None

    # (decided outside vmap: inside it, a batched tensor does not report requires_grad)
    lr_values = list(lr.values()) if per_name else [lr]
    lr_requires_grad = any(torch.is_tensor(v) and v.requires_grad for v in lr_values)

    def loss_with(weights: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor], data) -> torch.Tensor:
        pred = net_call(net, {**base, **weights}, data)
        return loss_fn(pred, data["u_out"])

    def query_losses(fast: Mapping[str, torch.Tensor] | None) -> torch.Tensor:
        if fast is None:  # no adaptation: every task at the shared weights
            return vmap(lambda data: loss_with({}, params, data), chunk_size=chunk_size,
                        randomness="different")(query)
        return vmap(lambda w, data: loss_with(w, params, data), chunk_size=chunk_size,
                    randomness="different")(fast, query)

    if first_order:
        fast = _first_order_inner_loop(loss_with, params, names, support, steps, lr, per_name, lr_dims,
                                       lr_requires_grad, n_tasks, grad_clip, chunk_size)
        losses = query_losses(fast)
        return losses.sum() if reduction == "sum" else losses

    # second order: the whole inner loop inside vmap, the inner gradients in the outer graph
    def rate(lr_t, name):
        return lr_t[name] if per_name else lr_t

    support_grad = func_grad(lambda w, data: loss_with(w, params, data))

    def one_task(sup, qry, lr_t):
        fast = {n: params[n] for n in names}
        for _ in range(steps):
            g = support_grad(fast, sup)
            g = [g[n].to(fast[n].dtype) for n in names]
            if grad_clip is not None:
                g = clip_by_global_norm(g, grad_clip)
            fast = {n: fast[n] - rate(lr_t, n) * x for n, x in zip(names, g)}
        return loss_with(fast, params, qry)

    with composite_layer_norm(net):
        losses = vmap(one_task, in_dims=(0, 0, lr_dims), randomness="different", chunk_size=chunk_size)(
            support, query, lr_arg)
    return losses.sum() if reduction == "sum" else losses


def _one_equation_row(data: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keep one ``(T, 1, L)`` token row per task when every sample of each task has the same
    tokens and mask (the network broadcasts it over the task's samples); otherwise unchanged."""
    tok, pad = data["tokens"], data["token_pad_mask"]
    if tok.shape[1] > 1 and bool((tok == tok[:, :1]).all()) and bool((pad == pad[:, :1]).all()):
        return {**data, "tokens": tok[:, :1], "token_pad_mask": pad[:, :1]}
    return data


def _first_order_inner_loop(loss_with, params, names, support, steps, lr, per_name, lr_dims, lr_requires_grad,
                            n_tasks, grad_clip, chunk_size):
    """Task-stacked adapted weights ``{name: (T, ...)}`` (first order), attached to the outer graph.

    Each step vmaps only the support gradient (the first step at the shared weights, so its pass
    is one batch of all tasks' samples); the SGD update runs outside vmap, in place, one fused
    ``_foreach`` op over the stacked weights. No graph is kept for the inner passes.
    """
    if steps == 0:
        return None
    detached = {n: p.detach() for n, p in params.items()}
    grad_fn = func_grad(lambda w, data: loss_with(w, detached, data))
    w0 = [params[n] for n in names]
    # the rates, without their graph, broadcastable to the stacked (T, ...) tensors
    if per_name:
        rates = [lr[n].detach() if torch.is_tensor(lr[n]) else lr[n] for n in names]
    elif lr_dims == 0:
        rates = [lr.detach().view(n_tasks, *([1] * w.ndim)) for w in w0]
    else:
        rates = lr.detach() if torch.is_tensor(lr) else lr
    cur, totals = None, None
    with torch.no_grad():
        for _ in range(steps):
            if cur is None:
                g = vmap(grad_fn, in_dims=(None, 0), chunk_size=chunk_size, randomness="different")(
                    {n: detached[n] for n in names}, support)
            else:
                g = vmap(grad_fn, in_dims=(0, 0), chunk_size=chunk_size, randomness="different")(
                    dict(zip(names, cur)), support)
            g = [g[n].to(w.dtype) for n, w in zip(names, w0)]
            if grad_clip is not None:  # each task on its own
                g = clip_by_global_norm(g, grad_clip, task_dim=True)
            if lr_requires_grad:
                totals = [x.clone() for x in g] if totals is None else torch._foreach_add(totals, g)
            if cur is None:  # first step: from the shared weights to one copy per task
                if isinstance(rates, list):
                    cur = [w.detach() - r * x for w, r, x in zip(w0, rates, g)]
                else:
                    cur = [torch.add(w.detach(), x, alpha=-rates) if not torch.is_tensor(rates)
                           else w.detach() - rates * x for w, x in zip(w0, g)]
            elif isinstance(rates, (int, float)):
                torch._foreach_add_(cur, g, alpha=-rates)
            else:
                torch._foreach_mul_(g, rates)
                torch._foreach_sub_(cur, g)
    lr_inputs = []
    if lr_requires_grad:  # (a float among per-name rates becomes a constant tensor)
        lr_inputs = [torch.as_tensor(lr[n]) for n in names] if per_name else [lr]
    out = AttachFirstOrder.apply(cur, totals, True, lr_dims == 0, len(w0), *w0, *lr_inputs)
    return dict(zip(names, out))


@contextlib.contextmanager
def composite_layer_norm(net: nn.Module) -> Iterator[None]:
    """Inside the block, every ``nn.LayerNorm`` of ``net`` computes ``(x - mean) / sqrt(var + eps)``
    with plain ops (same values up to rounding), whose double backward is correct under vmap."""
    patched = []
    for m in net.modules():
        if isinstance(m, nn.LayerNorm) and "forward" not in m.__dict__:
            m.forward = _composite_forward(m)
            patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward


def _composite_forward(m: nn.LayerNorm):
    dims = tuple(range(-len(m.normalized_shape), 0))

    def forward(x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dims, keepdim=True)
        var = x.var(dims, correction=0, keepdim=True)
        out = (x - mean) * torch.rsqrt(var + m.eps)
        if m.weight is not None:
            out = out * m.weight
        if m.bias is not None:
            out = out + m.bias
        return out

    return forward
