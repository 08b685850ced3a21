"""The reported numbers: every metric against an independent numpy computation on hand-made tensors.

Each test is built so that a plausible mistake changes the value: dividing by the batch mean of
the reference norms instead of each sample's own (two samples of very different size),
de-normalising without adding the mean back (non-zero means), halves split at the wrong frame,
persistence from the first rather than the last input frame, pooled vs per-family means (families
with different sample counts), and the DDP reduction (two gloo ranks holding different samples).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch

from lemon_pl.core.metrics import (METRICS, OVERALL, FamilyMetrics, denormalise, mean_std,
                                      relative_l2, sample_metrics)


def _batch(seed: int = 0, b: int = 3, n_in: int = 2, n_out: int = 4, nx: int = 5) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([0.01, 1.0, 30.0][:b] + [1.0] * max(0, b - 3))  # very different sample sizes
    return {
        "u_in": torch.randn(b, n_in, nx, generator=g),
        "u_out": torch.randn(b, n_out, nx, generator=g),
        "mean": torch.tensor([5.0, -2.0, 0.5][:b] + [1.0] * max(0, b - 3)),
        "std": scale,
    }


def _np_rel(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    return np.array([np.linalg.norm((p - t).ravel()) / (np.linalg.norm(t.ravel()) + 1e-7) for p, t in zip(pred, true)])


def _np_metrics(pred: np.ndarray, batch: dict) -> dict[str, np.ndarray]:
    m, s = batch["mean"].numpy()[:, None, None], batch["std"].numpy()[:, None, None]
    true = batch["u_out"].numpy() * s + m
    phys = pred * s + m
    h = true.shape[1] // 2
    last = batch["u_in"].numpy()[:, -1:] * s + m
    return {"rel_l2": _np_rel(phys, true), "rel_l2_first": _np_rel(phys[:, :h], true[:, :h]),
            "rel_l2_second": _np_rel(phys[:, h:], true[:, h:]),
            "rel_l2_persistence": _np_rel(np.repeat(last, true.shape[1], 1), true),
            "mse": ((pred - batch["u_out"].numpy()) ** 2).reshape(len(pred), -1).mean(1)}


def test_relative_l2_is_per_sample():
    true = torch.tensor([[1.0, 0.0], [100.0, 0.0]])
    pred = torch.tensor([[1.1, 0.0], [110.0, 0.0]])
    # each sample is off by 10% of its own norm; a batch-mean denominator would give 0.002 and 0.198
    assert torch.allclose(relative_l2(pred, true), torch.tensor([0.1, 0.1]), rtol=1e-6)


def test_denormalise_adds_the_mean_back():
    b = _batch()
    u = torch.zeros(3, 1, 2)
    assert torch.equal(denormalise(u, b)[:, 0, 0], b["mean"])
    assert torch.allclose(denormalise(torch.ones(3, 1, 2), b)[:, 0, 1], b["mean"] + b["std"])


@pytest.mark.parametrize("seed", [0, 1])
def test_sample_metrics_match_an_independent_computation(seed):
    batch = _batch(seed)
    pred = batch["u_out"] + 0.3 * torch.randn(batch["u_out"].shape, generator=torch.Generator().manual_seed(9))
    got = sample_metrics(pred, batch)
    want = _np_metrics(pred.numpy(), batch)
    assert set(got) == set(METRICS)
    for k in METRICS:
        np.testing.assert_allclose(got[k].numpy(), want[k], rtol=1e-5, err_msg=k)
    # the halves are really different numbers (a wrong split point would show)
    assert not np.allclose(want["rel_l2_first"], want["rel_l2_second"])


def test_persistence_repeats_the_last_input_frame():
    batch = _batch(b=1)
    batch["u_out"] = batch["u_in"][:, -1:].repeat(1, 4, 1)  # the state does not change after the input
    assert float(sample_metrics(batch["u_out"], batch)["rel_l2_persistence"][0]) < 1e-6
    batch["u_in"][:, 0] += 1.0  # the first input frame does not matter
    assert float(sample_metrics(batch["u_out"], batch)["rel_l2_persistence"][0]) < 1e-6


def test_family_means_and_the_pooled_overall():
    metrics = FamilyMetrics(["a", "b"], metrics=("rel_l2",))
    metrics.update("a", {"rel_l2": torch.tensor([0.1, 0.2, 0.3])})
    metrics.update("b", {"rel_l2": torch.tensor([1.0])})
    table = metrics.compute()
    assert table["a"]["rel_l2"] == pytest.approx(0.2)
    assert table["b"]["rel_l2"] == pytest.approx(1.0)
    assert table[OVERALL]["rel_l2"] == pytest.approx(1.6 / 4)  # sample-weighted, not (0.2 + 1.0) / 2
    metrics.reset()
    assert math.isnan(metrics.compute()["a"]["rel_l2"])
    from lemon_pl.core.report import EvaluationReport

    assert EvaluationReport("val", "family", table).logged() == {
        "val/rel_l2/a": pytest.approx(0.2), "val/rel_l2/b": 1.0, "val/rel_l2": pytest.approx(0.4)}


def test_mean_std_over_seeds():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # sample std (n - 1)
    assert mean_std([4.0, float("nan"), None]) == (4.0, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        metrics = FamilyMetrics(["a", "b"], metrics=("rel_l2",))
        if rank == 0:
            metrics.update("a", {"rel_l2": torch.tensor([0.1, 0.3])})
        else:
            metrics.update("a", {"rel_l2": torch.tensor([0.8])})
            metrics.update("b", {"rel_l2": torch.tensor([2.0, 4.0])})
        torch.save(metrics.compute(), f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
def test_family_metrics_synchronise_across_ranks(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    for r in (0, 1):
        table = torch.load(tmp_path / f"rank{r}.pt")
        assert table["a"]["rel_l2"] == pytest.approx((0.1 + 0.3 + 0.8) / 3)  # a sample mean over both ranks
        assert table["b"]["rel_l2"] == pytest.approx(3.0)  # rank 0 saw no b samples
        assert table[OVERALL]["rel_l2"] == pytest.approx((0.1 + 0.3 + 0.8 + 2.0 + 4.0) / 5)
