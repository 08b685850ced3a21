"""Views of a batch of operator tasks as ordinary sample batches.

A task batch (``data.unit: task``) holds whole operators: per-sample tensors ``u_in (T, K, n_in,
nx)``, ``u_out (T, K, n_out, nx)``, ``mean``/``std (T, K)`` and per-task tensors ``t_in (T,
n_in)``, ``t_out (T, n_out)``, ``tokens``/``token_pad_mask (T, L)``, ``family (T,)``.
"""

from __future__ import annotations

from typing import Mapping

import torch

PER_SAMPLE = ("u_in", "u_out", "mean", "std")
PER_TASK = ("t_in", "t_out", "tokens", "token_pad_mask", "family")


def task_views(batch: Mapping[str, torch.Tensor], index: torch.Tensor) -> dict[str, torch.Tensor]:
    """Samples ``index[t]`` of every task ``t`` (``index`` is ``(T, n)``), stacked: ``(T, n, ...)``.

    Per-task tensors are expanded (not copied) along the sample dimension."""
    n_tasks, n = index.shape
    index = index.to(batch["u_in"].device)
    rows = torch.arange(n_tasks, device=index.device).unsqueeze(1)
    out = {k: batch[k][rows, index] for k in PER_SAMPLE if k in batch}
    for k in PER_TASK:
        if k in batch:
            v = batch[k]
            out[k] = v.unsqueeze(1).expand(n_tasks, n, *v.shape[1:])
    return out


def task_view(batch: Mapping[str, torch.Tensor], t: int, idx: torch.Tensor) -> dict[str, torch.Tensor]:
    """Samples ``idx`` of task ``t`` as an ordinary sample batch ``(n, ...)``."""
    one = {k: v[t:t + 1] for k, v in batch.items() if k in PER_SAMPLE or k in PER_TASK}
    return {k: v[0] for k, v in task_views(one, idx.reshape(1, -1)).items()}
