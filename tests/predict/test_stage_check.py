"""``lemon-pl predict`` takes operator-learning stages, checked by what it uses (``predict`` does not
import ``operators``: the layer rule): every operator stage has it, the other methods' stages do not."""

from __future__ import annotations

import torch

from lemon_pl.predict.model import OPERATOR_STAGE_API, is_operator_stage


def test_every_operator_stage_offers_what_predict_uses_and_the_other_stages_do_not():
    from lemon_pl.multilevel.stage import MultilevelRegression
    from lemon_pl.operators import FinetuneModule, MetaModule, OperatorModule, PretrainModule
    from lemon_pl.pinn.stages import PINNModule

    for cls in (OperatorModule, PretrainModule, MetaModule, FinetuneModule):
        assert all(callable(getattr(cls, name)) for name in OPERATOR_STAGE_API[1:]), cls
    for cls in (PINNModule, MultilevelRegression):
        assert not all(callable(getattr(cls, name, None)) for name in OPERATOR_STAGE_API[1:]), cls


def test_the_check_asks_for_a_module_with_every_method():
    class Duck(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(1, 1)

        def loss(self, *a):
            return 0

        def task_lr(self, *a):
            return 0.1

        def eval_fast_names(self):
            return []

        def on_load_checkpoint(self, checkpoint):
            pass

    duck = Duck()
    assert is_operator_stage(duck)
    duck.task_lr = 0.1  # not callable
    assert not is_operator_stage(duck)
    assert not is_operator_stage(object())
    del Duck.eval_fast_names
    assert not is_operator_stage(Duck())
