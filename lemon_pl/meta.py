"""Functional inner loop for MAML-style adaptation, on ``torch.func.functional_call``.

``adapt`` runs ``steps`` plain gradient steps on a support loss with explicit "fast" weights,
leaving the module's own parameters untouched, and returns the fast weights:

* ``first_order=True`` (FOMAML): inner gradients are treated as constants, so the outer
  gradient of a fast weight w' = w - lr * g is the identity w.r.t. w, and - lr-learning still
  works - g w.r.t. lr;
* ``first_order=False``: full second-order MAML (``create_graph=True``), the outer gradient
  flows through every inner gradient (Hessian-vector products).

The learning rate is a float, one tensor per adapted parameter (Meta-SGD style), or a scalar
tensor (LeMONS: predicted per task from the equation). The update itself runs in fp32 with
autocast disabled, whatever the mixed precision of the forward passes.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping, Sequence

import torch
from torch import nn
from torch.func import functional_call

LossFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]


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


def adapt(net: nn.Module, params: Mapping[str, torch.Tensor], fast_names: Sequence[str], loss_fn: Callable,
          steps: int, lr: float | torch.Tensor | Mapping[str, torch.Tensor], first_order: bool = True,
          grad_clip: float | None = None) -> dict[str, torch.Tensor]:
    """Return adapted fast weights after ``steps`` SGD steps on ``loss_fn(all_params)``.

    ``params`` are all of the network's parameters (name -> tensor); ``fast_names`` the ones
    that adapt. ``loss_fn`` receives the full parameter dict. ``grad_clip`` rescales the inner
    gradient to at most that global norm (the reference clamped each element instead).
    """
    fast = {n: params[n] for n in fast_names}
    for _ in range(steps):
        loss = loss_fn({**params, **fast})
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order, allow_unused=True)
        grads = [torch.zeros_like(w) if g is None else g for g, w in zip(grads, fast.values())]
        if grad_clip is not None:
            norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
            scale = torch.clamp(grad_clip / (norm + 1e-12), max=1.0)
            grads = [g * scale for g in grads]
        with torch.autocast(device_type=grads[0].device.type, enabled=False):
            fast = {n: w - _lr_for(lr, n) * g.to(w.dtype) for (n, w), g in zip(fast.items(), grads)}
    return fast


def _lr_for(lr, name: str):
    if isinstance(lr, Mapping):
        return lr[name]
    return lr


def call(net: nn.Module, params: Mapping[str, torch.Tensor], *args, **kwargs):
    """``net(*args)`` with the given parameters (buffers are taken from the module)."""
    return functional_call(net, dict(params), args, kwargs)
