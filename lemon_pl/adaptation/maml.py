"""The MAML inner loop for one task, with explicit "fast" weights.

``adapt`` runs ``steps`` plain gradient steps on a support loss, leaving the module's own
parameters untouched, and returns the fast weights:

* ``first_order=True`` (FOMAML): inner gradients are treated as constants, so the outer
  gradient of a fast weight w' = w - lr * sum_s g_s is the identity w.r.t. w and
  ``-sum_s g_s . dL/dw'`` w.r.t. a learnable rate. The loop therefore runs on detached copies
  updated in place with fused ``_foreach`` ops, and the result is attached to the graph once by
  ``AttachFirstOrder`` (far fewer autograd nodes than one subtraction per tensor and step);
* ``first_order=False``: full second-order MAML (``create_graph=True``), the outer gradient
  flows through every inner gradient (Hessian-vector products).

The learning rate is a float, one tensor per adapted parameter (Meta-SGD style), or a scalar
tensor (LeMONS: predicted per task from the equation). Updates run in fp32 with autocast
disabled, whatever the mixed precision of the forward passes.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from lemon_pl.adaptation.functional import AttachFirstOrder, clip_by_global_norm


def adapt(net: nn.Module, params: Mapping[str, torch.Tensor], fast_names: Sequence[str], loss_fn: Callable,
          steps: int, lr: float | torch.Tensor | Mapping[str, torch.Tensor], first_order: bool = True,
          grad_clip: float | None = None) -> dict[str, torch.Tensor]:
    """Return adapted fast weights after ``steps`` SGD steps on ``loss_fn(all_params)``.

    ``params`` are all of the network's parameters (name -> tensor); ``fast_names`` the ones
    that adapt. ``loss_fn`` receives the full parameter dict. ``grad_clip`` rescales each inner
    gradient to at most that global norm.
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
                grads = clip_by_global_norm(grads, grad_clip)
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
    out = AttachFirstOrder.apply(cur, totals, False, False, len(w0), *w0, *(lr_inputs if want_totals else []))
    return dict(zip(names, out))


def _second_order(params, names, w0, loss_fn, steps, lr, lr_list, grad_clip):
    fast = list(w0)
    for _ in range(steps):
        loss = loss_fn({**params, **dict(zip(names, fast))})
        grads = torch.autograd.grad(loss, fast, create_graph=True, allow_unused=True)
        grads = [torch.zeros_like(w) if g is None else g.to(w.dtype) for g, w in zip(grads, fast)]
        if grad_clip is not None:
            grads = clip_by_global_norm(grads, grad_clip)
        with torch.autocast(device_type=grads[0].device.type, enabled=False):
            if lr_list is not None:
                fast = [w - r * g for w, r, g in zip(fast, lr_list, grads)]
            elif torch.is_tensor(lr):
                fast = torch._foreach_sub(fast, [g * lr for g in grads])
            else:
                fast = torch._foreach_add(fast, grads, alpha=-lr)
    return fast
