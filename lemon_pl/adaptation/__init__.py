"""Adapting a network's weights: everything the meta-learning and fine-tuning stages share.

* ``functional``: running a network with given tensors in place of its parameters, choosing
  the parameters that adapt, inner-gradient clipping and the first-order MAML autograd function;
* ``tasks``: views of a batch of operator tasks as support / query sample batches;
* ``maml``: the inner loop for one task (first or second order);
* ``maml_vmap``: the same inner loop over a stack of tasks with ``torch.func.vmap``;
* ``fewshot``: adapt on a support set, then predict a query set (few-shot evaluation);
* ``lora``: low-rank adapters: injection, merging, adapter-only state.

The package holds no Lightning code; stages in ``lemon_pl.operators`` call it.
"""
