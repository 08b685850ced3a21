"""Functional inner loop for MAML-style adaptation.

``adapt`` runs ``steps`` plain gradient steps on a support loss with explicit "fast" weights,
leaving the module's own parameters untouched, and returns the fast weights:

* ``first_order=True`` (FOMAML): inner gradients are treated as constants, so the outer
  gradient of a fast weight w' = w - lr * sum_s g_s is the identity w.r.t. w and
  ``-sum_s g_s . dL/dw'`` w.r.t. a learnable rate. The loop therefore runs on detached copies
  updated in place with fused ``_foreach`` ops, and the result is attached to the graph once by
  ``_FirstOrderAdapted`` (far fewer autograd nodes than one subtraction per tensor and step);
* ``first_order=False``: full second-order MAML (``create_graph=True``), the outer gradient
  flows through every inner gradient (Hessian-vector products).

The learning rate is a float, one tensor per adapted parameter (Meta-SGD style), or a scalar
tensor (LeMONS: predicted per task from the equation). Updates run in fp32 with autocast
disabled, whatever the mixed precision of the forward passes. ``call`` runs the network with
given tensors in place of its parameters (``torch.func.functional_call`` semantics, with the
name lookup cached per module).
"""

from __future__ import annotations

import re
import weakref
from typing import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call


def select_parameters(net: nn.Module, adapt: Sequence[str] | str = "all") -> list[str]:
    """Names of the parameters that adapt in the inner loop.

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


def _clip_(grads: list[torch.Tensor], max_norm: float) -> None:
    norm = torch.linalg.vector_norm(torch.stack([n.float() for n in torch._foreach_norm(grads)]))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (norm + 1e-12), max=1.0).to(grads[0].dtype))


class _FirstOrderAdapted(torch.autograd.Function):
    """Returns the adapted weights; backward: identity to the initial weights, -sum_s g_s to the rates."""

    @staticmethod
    def forward(ctx, adapted, totals, n_weights, *inputs):
        ctx.n_lr = len(inputs) - n_weights
        ctx.totals = totals
        return tuple(adapted)

    @staticmethod
    def backward(ctx, *grads):
        lr_grads = []
        if ctx.n_lr:
            dots = [torch.zeros((), device=t.device) if g is None else -(g.float() * t.float()).sum()
                    for g, t in zip(grads, ctx.totals)]
            lr_grads = [torch.stack(dots).sum()] if ctx.n_lr == 1 else dots
        return (None, None, None, *grads, *lr_grads)


def adapt(net: nn.Module, params: Mapping[str, torch.Tensor], fast_names: Sequence[str], loss_fn: Callable,
          steps: int, lr: float | torch.Tensor | Mapping[str, torch.Tensor], first_order: bool = True,
          grad_clip: float | None = None) -> dict[str, torch.Tensor]:
    """Return adapted fast weights after ``steps`` SGD steps on ``loss_fn(all_params)``.

    ``params`` are all of the network's parameters (name -> tensor); ``fast_names`` the ones
    that adapt. ``loss_fn`` receives the full parameter dict. ``grad_clip`` rescales each inner
    gradient to at most that global norm (the reference clamped each element instead).
    """
    names = list(fast_names)
    w0 = [params[n] for n in names]
    if steps == 0 or not names:
        return dict(zip(names, w0))
    per_name = isinstance(lr, Mapping)
    lr_list = [lr[n] for n in names] if per_name else None
    if per_name:
        lr_inputs = [v for v in lr_list if torch.is_tensor(v)]
        lr_inputs = lr_inputs if len(lr_inputs) == len(lr_list) else []
    else:
        lr_inputs = [lr] if torch.is_tensor(lr) else []
    if not first_order:
        return dict(zip(names, _second_order(params, names, w0, loss_fn, steps, lr, lr_list, grad_clip)))

    want_totals = any(v.requires_grad for v in lr_inputs)
    lr_vals = [v.detach() if torch.is_tensor(v) else v for v in lr_list] if per_name else (
        lr.detach() if torch.is_tensor(lr) else lr)
    with torch.no_grad():
        cur = [w.detach().clone().requires_grad_(True) for w in w0]
    totals = None
    for _ in range(steps):
        loss = loss_fn({**params, **dict(zip(names, cur))})
        grads = torch.autograd.grad(loss, cur, allow_unused=True)
        with torch.no_grad(), torch.autocast(device_type=cur[0].device.type, enabled=False):
            grads = [torch.zeros_like(w) if g is None else g.to(w.dtype) for g, w in zip(grads, cur)]
            if grad_clip is not None:
                _clip_(grads, grad_clip)
            if want_totals:
                if totals is None:
                    totals = [g.clone() for g in grads]
                else:
                    torch._foreach_add_(totals, grads)
            if isinstance(lr_vals, (int, float)):
                torch._foreach_add_(cur, grads, alpha=-lr_vals)
            else:
                torch._foreach_mul_(grads, lr_vals)
                torch._foreach_sub_(cur, grads)
    for c in cur:
        c.requires_grad_(False)
    out = _FirstOrderAdapted.apply(cur, totals, len(w0), *w0, *(lr_inputs if want_totals else []))
    return dict(zip(names, out))


def _second_order(params, names, w0, loss_fn, steps, lr, lr_list, grad_clip):
    fast = list(w0)
    for _ in range(steps):
        loss = loss_fn({**params, **dict(zip(names, fast))})
        grads = torch.autograd.grad(loss, fast, create_graph=True, allow_unused=True)
        grads = [torch.zeros_like(w) if g is None else g.to(w.dtype) for g, w in zip(grads, fast)]
        if grad_clip is not None:
            norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
            scale = torch.clamp(grad_clip / (norm + 1e-12), max=1.0)
            grads = [g * scale for g in grads]
        with torch.autocast(device_type=grads[0].device.type, enabled=False):
            if lr_list is not None:
                fast = [w - r * g for w, r, g in zip(fast, lr_list, grads)]
            elif torch.is_tensor(lr):
                fast = torch._foreach_sub(fast, [g * lr for g in grads])
            else:
                fast = torch._foreach_add(fast, grads, alpha=-lr)
    return fast


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
