"""OperatorModule's report and batch description come from what the stage holds (its linked
family names), not from the trainer's data module."""

from __future__ import annotations

import torch

from lemon_pl.core.metrics import TABLED
from lemon_pl.models import DeepONet
from lemon_pl.operators.pretrain import PretrainModule


def _module(**kw):
    return PretrainModule(DeepONet(nx=16, output_len=4), train_family_names=["heat", "kdv"],
                          eval_family_names=["kdv", "Sine_Gordon"], **kw)


def test_a_batch_is_described_by_the_linked_family_names_without_a_trainer():
    module = _module()  # no trainer attached: the data module is out of reach
    batch = {"family": torch.tensor([2, 0, 2])}  # ids index train + eval names, each once, as the data module
    assert module.describe_batch(batch) == ", families ['heat', 'Sine_Gordon']"


def test_the_report_extras_say_how_the_test_was_run():
    assert _module().table_extra_columns() == {"mode": "zero-shot", "adapt_steps": 0}
    few = _module(unit="task", eval_steps=3, eval_support_size=5, eval_query_size=7).table_extra_columns()
    assert few == {"mode": "few-shot", "adapt_steps": 3, "support_size": 5, "query_size": 7}
    assert TABLED == ("rel_l2", "rel_l2_first", "rel_l2_second", "rel_l2_persistence")  # the table's columns
