"""Functional calls, parameter selection, inner-gradient clipping and first-order attachment.

``call`` runs a network with given tensors in place of its parameters
(``torch.func.functional_call`` semantics, with the name lookup cached per module).
``AttachFirstOrder`` returns adapted weights whose gradient is that of first-order MAML: the
identity w.r.t. the initial weights and ``-sum_s g_s`` w.r.t. learnable inner rates, for one
task (the loop) or a stack of tasks (vmap).
"""

from __future__ import annotations

import re
import weakref
from typing import Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call


def select_parameters(net: nn.Module, adapt: Sequence[str] | str = "all") -> list[str]:
    """Names of the trainable parameters that adapt.

    ``adapt`` is ``"all"`` or a list of name prefixes / regular expressions matched at the start
    of the parameter name (e.g. ``["embedder", "data_encoder", "decoder"]``).
    """
    names = [n for n, p in net.named_parameters() if p.requires_grad]
    if adapt == "all" or adapt == ["all"]:
        return names
    if isinstance(adapt, str):
        adapt = [a.strip() for a in adapt.split(",") if a.strip()]
    patterns = [re.compile(rf"^{a}(\.|$)" if re.fullmatch(r"[\w.]+", a) else a) for a in adapt]
    chosen = [n for n in names if any(p.search(n) for p in patterns)]
    if not chosen:
        raise ValueError(f"no parameter of {type(net).__name__} matches adapt={list(adapt)}; "
                         f"top-level submodules are {[n for n, _ in net.named_children()]}")
    return chosen


def clip_by_global_norm(grads: Sequence[torch.Tensor], max_norm: float, task_dim: bool = False) -> list[torch.Tensor]:
    """Rescale ``grads`` to a global L2 norm of at most ``max_norm`` (differentiable).

    ``task_dim``: the tensors are stacked over tasks along dim 0 and each task is clipped on its
    own. (The reference clamped each element instead.)"""
    keep = 1 if task_dim else 0
    norm = torch.sqrt(sum(g.float().pow(2).flatten(keep).sum(-1) for g in grads))
    scale = torch.clamp(max_norm / (norm + 1e-12), max=1.0)
    return [g * scale.view(*scale.shape, *([1] * (g.ndim - keep))).to(g.dtype) for g in grads]


class AttachFirstOrder(torch.autograd.Function):
    """``apply(adapted, totals, stacked, per_task, n, *weights, *rates) -> adapted``.

    ``adapted`` were computed without a graph from ``weights`` (``n`` tensors) with ``rates``
    (none, one shared or per-task rate, or one per weight); ``totals`` are the summed inner
    gradients (``None`` when no rate needs a gradient). Backward, as first-order MAML:

    * weights: the identity (``stacked``: the adapted tensors carry a leading task dimension and
      the gradient is their sum over tasks);
    * rates: ``-sum_s g_s`` dotted with the incoming gradient; per task for a ``(T,)`` rate
      (``per_task``), summed for one shared rate, one per tensor for per-tensor rates.
    """

    @staticmethod
    def forward(ctx, adapted, totals, stacked, per_task, n, *inputs):
        ctx.stacked, ctx.per_task, ctx.totals = stacked, per_task, totals
        ctx.n_lr = len(inputs) - n
        ctx.dtypes = [w.dtype for w in inputs[:n]]
        return tuple(adapted)

    @staticmethod
    def backward(ctx, *grads):
        if ctx.stacked:
            w_grads = [None if g is None else g.sum(0).to(dtype) for g, dtype in zip(grads, ctx.dtypes)]
        else:
            w_grads = list(grads)
        lr_grads = []
        if ctx.n_lr:
            if ctx.stacked:  # (T,) per tensor
                dots = [torch.zeros(len(t), device=t.device) if g is None
                        else -(g.float() * t.float()).flatten(1).sum(1) for g, t in zip(grads, ctx.totals)]
            else:
                dots = [torch.zeros((), device=t.device) if g is None else -(g.float() * t.float()).sum()
                        for g, t in zip(grads, ctx.totals)]
            if ctx.n_lr == 1:
                total = torch.stack(dots).sum(0) if ctx.stacked else torch.stack(dots).sum()
                lr_grads = [total.sum() if ctx.stacked and not ctx.per_task else total]
            else:
                lr_grads = [d.sum() for d in dots] if ctx.stacked else dots
        return (None, None, None, None, None, *w_grads, *lr_grads)


_SLOTS: "weakref.WeakKeyDictionary[nn.Module, tuple[dict, bool, tuple]]" = weakref.WeakKeyDictionary()


def call(net: nn.Module, params: Mapping[str, torch.Tensor], *args, **kwargs):
    """``net(*args)`` with the given tensors in place of its parameters (buffers stay the module's)."""
    signature = tuple(map(id, net.modules()))  # re-resolve if submodules were replaced (e.g. LoRA)
    entry = _SLOTS.get(net)
    if entry is None or entry[2] != signature:
        modules = dict(net.named_modules())
        slots = {}
        for name, _ in net.named_parameters(remove_duplicate=False):
            owner, _, leaf = name.rpartition(".")
            slots[name] = (modules[owner]._parameters, leaf)
        tied = len(slots) != len(dict(net.named_parameters()))
        entry = _SLOTS[net] = (slots, tied, signature)
    slots, tied, _ = entry
    if tied or any(n not in slots for n in params):
        return functional_call(net, dict(params), args, kwargs)
    saved = []
    try:
        for name, tensor in params.items():
            store, leaf = slots[name]
            saved.append((store, leaf, store[leaf]))
            store[leaf] = tensor
        return net(*args, **kwargs)
    finally:
        for store, leaf, old in reversed(saved):
            store[leaf] = old


def net_inputs(net: nn.Module, batch: Mapping[str, torch.Tensor]) -> tuple:
    """The network's positional inputs from a sample batch (the equation only for networks that read it)."""
    eq = getattr(net, "uses_equation", False)
    return (batch["u_in"], batch["t_in"], batch["t_out"],
            batch["tokens"] if eq else None, batch["token_pad_mask"] if eq else None)


def net_call(net: nn.Module, params: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The network's prediction for a sample batch with ``params`` in place of its parameters."""
    return call(net, params, *net_inputs(net, batch))
