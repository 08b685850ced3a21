"""OperatorGroupedSampler: whole groups of one operator, every trajectory once, DDP shards, resume."""

from __future__ import annotations

import itertools

import pytest
import torch

from lemon_pl.data.sampling import OperatorGroupedSampler


class Items(torch.utils.data.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


def _blocks(n_ops, k):
    return [(i * k, (i + 1) * k) for i in range(n_ops)]


def _op(i, k):
    return i // k


@pytest.mark.parametrize("k, g", [(12, 4), (12, 5), (10, 10)])
def test_each_epoch_is_a_permutation_in_operator_groups(k, g):
    n_ops = 6
    s = OperatorGroupedSampler(Items(n_ops * k), _blocks(n_ops, k), g, num_replicas=1, rank=0, seed=3)
    for epoch in range(3):
        s.set_epoch(epoch)
        order = list(s)
        assert sorted(order) == list(range(n_ops * k))  # nothing lost, nothing twice
        # one operator per run: fewer runs than a plain shuffle would give
        runs = [len(list(r)) for _, r in itertools.groupby(order, key=lambda i: _op(i, k))]
        assert len(runs) <= n_ops * -(-k // g)
        if k % g == 0:  # every batch of g holds one operator
            for a in range(0, len(order), g):
                assert len({_op(i, k) for i in order[a:a + g]}) == 1
    s.set_epoch(0)
    first = list(s)
    s.set_epoch(1)
    assert list(s) != first  # reshuffled per epoch
    s.set_epoch(0)
    assert list(s) == first  # and reproducible


def test_ddp_shards_are_disjoint_whole_groups_covering_the_data():
    k, g, n_ops, world = 8, 4, 5, 2
    shards = []
    for rank in range(world):
        s = OperatorGroupedSampler(Items(n_ops * k), _blocks(n_ops, k), g, num_replicas=world, rank=rank, seed=0)
        shards.append(list(s))
        assert len(shards[-1]) == len(s) == n_ops * k // world
    assert sorted(shards[0] + shards[1]) == list(range(n_ops * k))
    for sh in shards:
        for a in range(0, len(sh), g):
            assert len({_op(i, k) for i in sh[a:a + g]}) == 1


def test_uneven_shards_are_padded_like_distributed_sampler():
    k, g, n_ops, world = 3, 3, 3, 2  # 9 samples on 2 ranks: 5 each, one repeated
    out = [list(OperatorGroupedSampler(Items(9), _blocks(n_ops, k), g, num_replicas=world, rank=r, seed=0))
           for r in range(world)]
    assert [len(o) for o in out] == [5, 5]
    assert set(out[0]) | set(out[1]) == set(range(9))


def test_skip_next_continues_the_same_epoch():
    k, g = 10, 5
    s = OperatorGroupedSampler(Items(40), _blocks(4, k), g, num_replicas=1, rank=0, seed=1)
    s.set_epoch(2)
    full = list(s)
    s.skip_next(15)
    assert list(s) == full[15:]
    assert list(s) == full  # the skip is used up


def test_blocks_of_a_truncated_family_and_bad_arguments():
    with pytest.raises(ValueError, match="group_size"):
        OperatorGroupedSampler(Items(4), [(0, 4)], 0, num_replicas=1, rank=0)
    with pytest.raises(ValueError, match="cover"):
        OperatorGroupedSampler(Items(5), [(0, 4)], 2, num_replicas=1, rank=0)


def test_datamodule_groups_training_batches(tiny_root):
    from lemon_pl.data.datamodule import OperatorFamilyDataModule

    d = OperatorFamilyDataModule(root=str(tiny_root), train_families="heat,kdv", preset="tiny", batch_size=6,
                                 operator_group=3)
    d.setup("fit")
    blocks = d.train_set.operator_blocks()
    k = blocks[0][1] - blocks[0][0]
    assert blocks[-1][1] == len(d.train_set) and all(b - a == k for a, b in blocks)
    seen = []
    for batch in d.train_dataloader():
        keys = list(zip(batch["family"].tolist(), batch["operator"].tolist()))
        assert len(set(keys[:3])) == 1 and len(set(keys[3:])) <= 1
        assert torch.equal(batch["tokens"][0], batch["tokens"][2])
        seen += batch["index"].tolist()
    assert sorted(seen) == list(range(len(d.train_set)))
    with pytest.raises(ValueError, match="operator_group"):
        OperatorFamilyDataModule(root=str(tiny_root), batch_size=6, operator_group=4)
    with pytest.raises(ValueError, match="operator_group"):
        OperatorFamilyDataModule(root=str(tiny_root), batch_size=6, operator_group=3, unit="task")
