"""OperatorFamilyDataModule and datasets on tiny generated data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lemon_pl.data.datamodule import OperatorFamilyDataModule
from lemon_pl.data.datasets import FrameLayout, collate
from lemon_pl.data.io import DataFileError, open_split
from lemon_pl.data.symbols import PAD_ID


def dm(root, **kw):
    args = dict(root=str(root), train_families="heat,kdv", preset="tiny", batch_size=4, eval_batch_size=8)
    args.update(kw)
    return OperatorFamilyDataModule(**args)


def test_frame_layout_defaults():
    lay = FrameLayout(64)
    assert lay.input_idx.tolist() == [0]
    assert lay.output_idx.tolist() == list(range(1, 64, 2)) and lay.output_len == 32
    np.testing.assert_allclose(lay.t_out.numpy()[[0, -1]], [1 / 32, 63 / 32])
    lay2 = FrameLayout(64, input_len=2)
    assert lay2.output_idx[0] == 2 and lay2.output_len == 31
    with pytest.raises(ValueError, match="input_len"):
        FrameLayout(64, input_len=0)


def test_samples_denormalise_to_the_stored_trajectory(tiny_root):
    d = dm(tiny_root)
    d.setup("fit")
    ds = d.train_set
    split = open_split(tiny_root, "kdv", "train")
    idx = len(ds) - 1  # last kdv trajectory
    item = ds[idx]
    raw = split.sample(split.n_operators - 1, split.k - 1)
    mean, std = item["mean"], item["std"]
    np.testing.assert_allclose((item["u_in"] * std + mean).numpy(), raw[:1], atol=1e-5)
    np.testing.assert_allclose((item["u_out"] * std + mean).numpy(), raw[1::2], atol=1e-5)
    assert abs(float(item["u_in"].mean())) < 1e-5 and abs(float(item["u_in"].std(unbiased=False)) - 1) < 1e-3
    assert item["tokens"].tolist() == split.operator_tokens(split.n_operators - 1).tolist()
    assert d.all_families[int(item["family"])] == "kdv"


def test_lazy_and_in_memory_agree(tiny_root):
    a, b = dm(tiny_root, in_memory=True), dm(tiny_root, in_memory=False)
    a.setup("fit")
    b.setup("fit")
    for i in (0, 5, len(a.train_set) - 1):
        x, y = a.train_set[i], b.train_set[i]
        for k in x:
            assert torch.equal(x[k], y[k]), k


def test_num_train_samples_and_noise_on_inputs_only(tiny_root):
    clean, noisy = dm(tiny_root, num_train_samples=5), dm(tiny_root, num_train_samples=5, noise=0.05)
    clean.setup("fit")
    noisy.setup("fit")
    assert len(clean.train_set) == 10  # 5 per family
    a, b = clean.train_set[3], noisy.train_set[3]
    raw_in_a = a["u_in"] * a["std"] + a["mean"]
    raw_in_b = b["u_in"] * b["std"] + b["mean"]
    rel = float((raw_in_b - raw_in_a).norm() / raw_in_a.norm())
    assert rel == pytest.approx(0.05, rel=1e-3)
    # labels are not corrupted (compare in physical units)
    np.testing.assert_allclose((b["u_out"] * b["std"] + b["mean"]).numpy(),
                               (a["u_out"] * a["std"] + a["mean"]).numpy(), atol=1e-5)
    # evaluation data stay clean
    noisy.setup("validate")
    assert torch.equal(noisy.val_sets[0][0]["u_in"], clean_val(tiny_root)[0]["u_in"])


def clean_val(root):
    d = dm(root)
    d.setup("validate")
    return d.val_sets[0]


def test_per_family_eval_loaders_and_collate(tiny_root):
    d = dm(tiny_root, eval_families="heat,kdv,Sine_Gordon")
    d.setup("fit")
    loaders = d.val_dataloader()
    assert len(loaders) == 3
    batch = next(iter(loaders[2]))
    assert batch["u_in"].shape[1:] == (1, 128) and batch["u_out"].shape[1:] == (32, 128)
    assert batch["t_out"].shape[-1] == 32
    assert {d.all_families[i] for i in batch["family"].tolist()} == {"Sine_Gordon"}
    samples = [d.train_set[0], d.train_set[len(d.train_set) - 1]]  # heat (11 tokens) and kdv (15)
    out = collate(samples)
    assert out["tokens"].shape == (2, 15)
    assert out["token_pad_mask"][0].sum() == 4 and not out["token_pad_mask"][1].any()
    assert (out["tokens"][out["token_pad_mask"]] == PAD_ID).all()


def test_task_view_holds_whole_operators(tiny_root):
    d = dm(tiny_root)
    tasks = d.task_dataset("train")
    split = open_split(tiny_root, "heat", "train")
    assert len(tasks) == split.n_operators + open_split(tiny_root, "kdv", "train").n_operators
    t = tasks[1]
    assert t["u_in"].shape == (split.k, 1, 128) and t["u_out"].shape == (split.k, 32, 128)
    raw = split.operator(1)
    np.testing.assert_allclose((t["u_out"] * t["std"][:, None, None] + t["mean"][:, None, None]).numpy(),
                               raw[:, 1::2], atol=1e-5)


def test_linked_values():
    d = OperatorFamilyDataModule(nx=64, nt=32, input_len=2, train_families="pretrain")
    assert (d.nx, d.input_len, d.output_len, d.vocab_size, d.pad_id) == (64, 2, 15, 1098, 2)
    assert len(d.train_family_names) == 7 and d.eval_family_names == d.train_family_names


def test_grid_mismatch_and_missing_data_are_clear(tiny_root, tmp_path):
    d = dm(tiny_root, nx=64)
    with pytest.raises(DataFileError, match="nx=128.*configured for nt=64, nx=64"):
        d.setup("fit")
    d = dm(tmp_path, generate=False)
    d.prepare_data()
    with pytest.raises(DataFileError, match="does not exist.*lemon-pl generate"):
        d.setup("fit")
    with pytest.raises(ValueError, match="the family list is empty"):
        dm(tmp_path, train_families=[])
    with pytest.raises(KeyError, match="unknown family"):
        dm(tmp_path, train_families="heat,wrong")


def test_prepare_data_generates_missing_files(tmp_path):
    d = dm(tmp_path, train_families="advection", preset="tiny")
    d.prepare_data()
    d.setup("fit")
    assert len(d.train_set) == 4 * 12
    assert (tmp_path / "advection" / "test.h5").exists()
