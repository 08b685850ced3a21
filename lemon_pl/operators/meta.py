"""LeMON / LeMONS meta-learning: MAML over operator tasks with torch.func.

A task is one operator: its K trajectories are split at random into a support set (inner loop)
and a query set (outer loss). Each outer step draws ``data.tasks_per_batch`` tasks per rank,
adapts a copy of the fast weights on each task's support set, sums the query losses, divides by
the *global* number of tasks and makes one backward pass and one optimiser step (manual
optimisation; gradient clipping by norm).

Inner learning rate (``inner_lr``):

* ``fixed``: ``inner_lr_init`` for every parameter;
* ``learned``: one learnable rate per adapted parameter tensor (Meta-SGD style), initialised
  at ``inner_lr_init``;
* ``learned_symbolic`` (LeMONS): a small network reads the task's equation (the symbol
  encoding, averaged over real tokens only) and outputs that task's rate
  ``2 * inner_lr_init * sigmoid(.)``; it learns through the outer loss. With Prose the
  network's own symbol encoder is used (and by default stays out of the inner loop); models
  that do not read equations get a small symbol encoder of their own.

Fixes against the reference: the outer loss is normalised by the number of tasks (not the
batch size), inner gradients are clipped by norm (not clamped element-wise) only when asked,
the rate network ignores padding and sees the task's own equation.
"""

from __future__ import annotations

import math
import zlib
from contextlib import nullcontext

import torch
from torch import nn

from lemon_pl.adaptation.functional import net_call
from lemon_pl.adaptation.maml import adapt
from lemon_pl.adaptation.tasks import task_view, task_views
from lemon_pl.data.symbols import PAD_ID, VOCAB_SIZE
from lemon_pl.models import differentiable_attention
from lemon_pl.models.layers import MLP
from lemon_pl.operators.base import OperatorModule
from lemon_pl.core.stage import check_range

LR_MODES = ("fixed", "learned", "learned_symbolic")


class MetaModule(OperatorModule):
    """Meta-learning stage. Arguments beyond ``OperatorModule``'s:

    Args:
        inner_steps: SGD steps on the support set per task during training.
        inner_lr: ``fixed``, ``learned`` or ``learned_symbolic`` (LeMONS).
        inner_lr_init: the fixed rate, or the initial value of the learned ones.
        first_order: first-order MAML (True) or full second-order MAML (False).
        support_size, query_size: trajectories per task for the inner loop and the outer loss.
        adapt: parameters that adapt in the inner loop: ``auto`` (everything, except the
            symbol encoder under ``learned_symbolic``), ``all``, or name prefixes such as
            ``[embedder, data_encoder, decoder]``. The rest learns only in the outer loop.
        inner_grad_clip: clip each inner gradient to this global norm (None = no clipping).
        grad_clip: outer gradient-norm clipping (the Trainer's gradient_clip_val must stay unset).
        lr_encoder_dim: width of the symbol encoder built for LeMONS when the network has none.
        eval_steps: adaptation steps in validation/test (None = ``inner_steps``).
        vmap_tasks: adapt all tasks of a batch at once with ``torch.func.vmap`` (same result as
            the loop; ~10-15% faster on CPU for Prose and FNO, slower for DeepONet).
        init_from: checkpoint of any stage whose network weights start meta-training (e.g.
            meta-learning on top of plain pretraining); a resumed run's own state wins.
    """

    def __init__(
        self,
        net: nn.Module,
        inner_steps: int = 5,
        inner_lr: str = "fixed",
        inner_lr_init: float = 0.01,
        first_order: bool = True,
        support_size: int = 10,
        query_size: int = 20,
        adapt: str | list[str] = "auto",
        inner_grad_clip: float | None = None,
        grad_clip: float | None = 1.0,
        lr_encoder_dim: int = 64,
        eval_steps: int | None = None,
        vmap_tasks: bool = False,
        init_from: str | None = None,
        unit: str = "task",
        **kwargs,
    ):
        if inner_lr not in LR_MODES:
            raise ValueError(f"inner_lr must be one of {LR_MODES}, got {inner_lr!r}")
        if inner_steps < 0 or support_size < 1 or query_size < 1:
            raise ValueError("model.init_args: inner_steps >= 0, support_size >= 1 and query_size >= 1 are required, "
                             f"got {inner_steps}, {support_size}, {query_size}")
        check_range("inner_lr_init", inner_lr_init, low=0.0)
        if inner_grad_clip is not None:
            check_range("inner_grad_clip", inner_grad_clip, low=0.0)
        if grad_clip is not None:
            check_range("grad_clip", grad_clip, low=0.0)
        super().__init__(net, eval_steps=inner_steps if eval_steps is None else eval_steps, unit=unit, **kwargs)
        self.save_hparams()
        self.automatic_optimization = False
        if init_from:
            from lemon_pl.core.checkpointing import load_into, load_net_state

            load_into(self.net, load_net_state(init_from), init_from)
        if adapt == "auto":
            adapt = "all"
            if inner_lr == "learned_symbolic" and hasattr(net, "symbol_encoder"):
                names = [n for n, _ in net.named_children() if n != "symbol_encoder"]
                adapt = names
        self.adapt_spec = adapt
        self.fast_names = self.fast_parameter_names(adapt)
        if inner_lr == "learned":
            self.log_lrs = nn.ParameterDict({
                n.replace(".", "__"): nn.Parameter(torch.tensor(math.log(inner_lr_init))) for n in self.fast_names})
        if inner_lr == "learned_symbolic":
            if getattr(net, "uses_equation", False) and hasattr(net, "encode_symbols"):
                dim = net.d_model
                self.lr_symbol_encoder = None
            else:
                from lemon_pl.models.prose import SymbolEncoder

                dim = lr_encoder_dim
                self.lr_symbol_encoder = SymbolEncoder(VOCAB_SIZE, PAD_ID, dim, n_heads=4, dim_ffn=2 * dim,
                                                       n_layers=2, dropout=0.0, max_tokens=128)
            self.lr_head = MLP(dim, 128, 1, n_hidden=2, activation="gelu")
            last = [m for m in self.lr_head.modules() if isinstance(m, nn.Linear)][-1]
            nn.init.zeros_(last.weight)  # every task starts at inner_lr_init
            nn.init.zeros_(last.bias)

    def eval_fast_names(self) -> list[str]:
        """Evaluation adapts what the inner loop adapts (LeMONS: not the symbol encoder that sets
        the rate), unless ``eval_adapt`` names other parameters."""
        if self.hparams.eval_adapt == "all":
            return list(self.fast_names)
        return super().eval_fast_names()

    def eval_adapt_steps(self) -> int:
        hp = self.hparams
        return hp.inner_steps if hp.eval_steps is None else hp.eval_steps

    # ------------------------------------------------------------------ learning rates
    def task_lr(self, batch: dict[str, torch.Tensor], t: int):
        hp = self.hparams
        if hp.inner_lr == "fixed":
            return hp.inner_lr_init
        if hp.inner_lr == "learned":
            return {n: self.log_lrs[n.replace(".", "__")].float().exp() for n in self.fast_names}
        return self.symbolic_lr(batch["tokens"][t:t + 1], batch["token_pad_mask"][t:t + 1])[0]

    def symbolic_lr(self, tokens: torch.Tensor, pad_mask: torch.Tensor) -> torch.Tensor:
        """LeMONS: per-equation inner learning rate (B,) from the symbol encoding."""
        if self.lr_symbol_encoder is None:
            enc = self.net.encode_symbols(tokens, pad_mask)
        else:
            enc = self.lr_symbol_encoder(tokens, pad_mask)
        keep = (~pad_mask).unsqueeze(-1).to(enc.dtype)
        pooled = (enc * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        return 2.0 * self.hparams.inner_lr_init * torch.sigmoid(self.lr_head(pooled.float()).squeeze(-1))

    # ------------------------------------------------------------------ training
    def _task_generator(self, batch: dict[str, torch.Tensor], t: int) -> torch.Generator:
        """Support/query split of task ``t``: depends on the step and the operator, not on the rank."""
        key = f"{self.global_step}/{int(batch['family'][t])}/{int(batch['operator'][t])}"
        return torch.Generator().manual_seed(zlib.crc32(key.encode()))

    def meta_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Sum of query losses over the tasks of ``batch`` after inner adaptation, and the task count."""
        hp = self.hparams
        perms = self._splits(batch).to(batch["u_in"].device)
        n_tasks = perms.shape[0]
        params = dict(self.net.named_parameters())
        total = 0.0
        ctx = differentiable_attention() if not hp.first_order else nullcontext()
        with ctx:
            for t in range(n_tasks):
                perm = perms[t]
                support = task_view(batch, t, perm[: hp.support_size])
                query = task_view(batch, t, perm[hp.support_size: hp.support_size + hp.query_size])
                fast = adapt(self.net, params, self.fast_names,
                             lambda p: self.loss(net_call(self.net, p, support), support["u_out"]),
                             hp.inner_steps, self.task_lr(batch, t), first_order=hp.first_order,
                             grad_clip=hp.inner_grad_clip)
                total = total + self.loss(net_call(self.net, {**params, **fast}, query), query["u_out"])
        return total, n_tasks

    def _splits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each task's random order of its K trajectories (support first, then query): (T, K)."""
        hp = self.hparams
        n_tasks, k = batch["u_in"].shape[:2]
        if k < hp.support_size + hp.query_size:
            raise ValueError(f"operators have K={k} trajectories but support_size + query_size = "
                             f"{hp.support_size + hp.query_size}; lower them or generate more trajectories")
        return torch.stack([torch.randperm(k, generator=self._task_generator(batch, t)) for t in range(n_tasks)])

    def vmap_meta_loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """``meta_loss`` with every task adapted at once (``torch.func.vmap``): same splits, rates
        and result. Runs on the math attention backend (the fused kernels have no vmap rule nor
        double backward)."""
        from lemon_pl.adaptation.maml_vmap import vmap_meta_loss

        hp = self.hparams
        perms = self._splits(batch)
        support = task_views(batch, perms[:, : hp.support_size])
        query = task_views(batch, perms[:, hp.support_size: hp.support_size + hp.query_size])
        if hp.inner_lr == "fixed":
            lr = hp.inner_lr_init
        elif hp.inner_lr == "learned":
            lr = self.task_lr(batch, 0)  # per-tensor rates, shared by every task
        else:
            lr = self.symbolic_lr(batch["tokens"], batch["token_pad_mask"])  # (T,)
        with differentiable_attention():
            total = vmap_meta_loss(self.net, dict(self.net.named_parameters()), self.fast_names, support, query,
                                   hp.inner_steps, lr, first_order=hp.first_order, loss_fn=self.loss,
                                   grad_clip=hp.inner_grad_clip)
        return total, perms.shape[0]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.hparams.unit != "task":
            raise ValueError("MetaModule trains on operator tasks: set `data.init_args.unit: task`")
        opt = self.optimizers()
        sched = self.lr_schedulers()
        if self.hparams.vmap_tasks:
            total, n_local = self.vmap_meta_loss(batch)
        else:
            total, n_local = self.meta_loss(batch)
        # average over the *global* task count: DDP averages gradients over ranks, so scale by world size
        n_global = self.trainer.strategy.reduce(torch.tensor(float(n_local), device=self.device), reduce_op="sum")
        loss = total * (self.trainer.world_size / n_global)
        self.ensure_finite(loss, batch, batch_idx)
        opt.zero_grad()
        self.manual_backward(loss)
        if self.hparams.grad_clip:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.grad_clip, gradient_clip_algorithm="norm")
        opt.step()
        if sched is not None:
            sched.step()
        self.log("train/meta_loss", total.detach() / n_local, prog_bar=True, batch_size=n_local)
        if self.hparams.inner_lr == "learned_symbolic":
            with torch.no_grad():
                self.log("train/inner_lr_mean", self.symbolic_lr(batch["tokens"], batch["token_pad_mask"]).mean(),
                         batch_size=n_local)
        elif self.hparams.inner_lr == "learned":
            self.log("train/inner_lr_mean", torch.stack([v.exp() for v in self.log_lrs.values()]).mean().detach(),
                     batch_size=n_local)
        return loss
