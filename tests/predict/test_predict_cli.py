"""`lemon-pl predict` end to end with a model trained here: the reported error is the true one, the
prediction is the one the data pipeline gives, adaptation is few-shot evaluation's, errors are one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from lemon_pl.cli import main
from tests.conftest import CONFIGS

FAMILIES = ["heat", "advection", "kdv"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Tiny data for three families and a tiny Prose trained on them for a few steps."""
    from lemon_pl.data.generate import generate

    work = tmp_path_factory.mktemp("predict")
    root = work / "data"
    generate(root, "tiny", FAMILIES, progress=False)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        assert main(["fit", "--config", str(CONFIGS / "pretrain.yaml"), "--config", str(CONFIGS / "trainer/cpu.yaml"),
                     "--data.init_args.root", str(root), "--data.init_args.preset", "tiny",
                     "--data.init_args.train_families", ",".join(FAMILIES), "--data.init_args.batch_size", "8",
                     "--trainer.logger.init_args.save_dir", str(work / "runs"), "--trainer.enable_progress_bar", "false",
                     "--trainer.enable_model_summary", "false", "--model.init_args.net.init_args.d_model", "32",
                     "--model.init_args.net.init_args.dim_ffn", "64", "--model.init_args.net.init_args.n_heads", "2",
                     "--trainer.max_epochs", "-1", "--trainer.max_steps", "8", "--trainer.num_sanity_val_steps", "0",
                     "--trainer.limit_val_batches", "1"]) == 0
    finally:
        os.chdir(cwd)
    run = work / "runs" / "pretrain" / "version_0"
    return {"work": work, "root": root, "run": run, "ckpt": run / "checkpoints" / "last.ckpt"}


def _independent_net(run: Path, ckpt: Path):
    """The trained network rebuilt by hand: its class and arguments from config.yaml, the weights
    from the checkpoint (not through lemon_pl.predict)."""
    from lemon_pl.core.checkpointing import load_net_state
    from lemon_pl.models import Prose

    cfg = yaml.safe_load((run / "config.yaml").read_text())["model"]["init_args"]["net"]
    assert cfg["class_path"] == "lemon_pl.models.Prose"
    net = Prose(nx=128, input_len=1, output_len=32, **cfg["init_args"])
    net.load_state_dict(load_net_state(ckpt))
    return net.eval()


def _test_trajectory(root, family="heat", op=0, traj=0):
    from lemon_pl.data.io import open_split

    split = open_split(root, family, "test")
    return split, split.sample(op, traj).astype(np.float64)


def _data_pipeline_prediction(net, split, op: int, traj: int) -> np.ndarray:
    """What `lemon-pl test` computes for this trajectory: dataset item -> collate -> net -> de-normalise."""
    from lemon_pl.data.datasets import FrameLayout, TrajectoryDataset, collate
    from lemon_pl.core.metrics import denormalise

    ds = TrajectoryDataset([split], FrameLayout(64), [0], in_memory=False)
    batch = collate([ds[op * split.k + traj]])
    with torch.no_grad():
        pred = net(batch["u_in"], batch["t_in"], batch["t_out"], batch["tokens"], batch["token_pad_mask"])
    return denormalise(pred, batch).double().numpy()[0]


def test_known_family_prediction_and_its_error(trained, tmp_path, capsys):
    split, u_true = _test_trajectory(trained["root"])
    nu = float(split.params[0, 0])
    np.save(tmp_path / "u0.npy", u_true[0])
    out = tmp_path / "pred"
    assert main(["predict", "--ckpt_path", str(trained["ckpt"]), "--family", "heat", "--params", f"nu={nu!r}",
                 "--u0", str(tmp_path / "u0.npy"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    z = np.load(out / "prediction.npz")
    assert sorted(p.name for p in out.iterdir()) == ["prediction.npz", "prediction.png"]
    # the tokens are the data engine's for this operator; the frames and horizon are its own
    assert z["tokens"][0, :z["token_len"][0]].tolist() == split.operator_tokens(0).tolist()
    frames = np.r_[0, np.arange(1, 64, 2)]
    np.testing.assert_allclose(z["t"][0], split.t[frames], rtol=1e-12)
    assert z["x"].tolist() == split.x.tolist() and str(z["family"][0]) == "heat" and float(z["t_final"][0]) == 2.0
    assert json.loads(str(z["params"][0])) == {"nu": nu}
    assert str(z["model_class"]) == "PretrainModule" and str(z["net_class"]) == "Prose"
    assert str(z["ckpt_path"]) == str(trained["ckpt"])
    # the reference is the family's solver on this IC: it reproduces the stored data
    np.testing.assert_allclose(z["u_ref"][0], u_true[frames], atol=1e-5)
    # the prediction is the one the training/evaluation data pipeline gives for this trajectory
    net = _independent_net(trained["run"], trained["ckpt"])
    expected = _data_pipeline_prediction(net, split, 0, 0)
    np.testing.assert_allclose(z["u"][0, 1:], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(z["u"][0, 0], u_true[0].astype(np.float32))
    # the reported error equals the relative L2 against the data, computed here
    err = np.linalg.norm(z["u"][0, 1:] - u_true[frames[1:]]) / np.linalg.norm(u_true[frames[1:]])
    assert float(z["rel_l2"][0]) == pytest.approx(err, rel=1e-4)
    assert f"rel L2 {float(z['rel_l2'][0]):.4g} vs the solver" in printed
    assert "family: heat (nu=" in printed and "latency:" in printed and "ms per prediction on cpu" in printed

    # the same PDE written down: recognised, the very same tokens and prediction
    out2 = tmp_path / "written"
    assert main(["predict", "--ckpt_path", str(trained["ckpt"]), "--equation", f"u_t = {nu!r}*u_xx",
                 "--u0", str(tmp_path / "u0.npy"), "--u0", "sin(pi*x)", "--t_final", "2", "--out", str(out2)]) == 0
    w = np.load(out2 / "prediction.npz")
    assert w["u"].shape == (2, 33, 128) and (out2 / "prediction_001.png").exists()
    np.testing.assert_array_equal(w["tokens"][0], z["tokens"][0])
    np.testing.assert_allclose(w["u"][0], z["u"][0], rtol=1e-5, atol=1e-6)
    assert "(recognised)" in capsys.readouterr().out


def test_adaptation_is_few_shot_evaluations(trained, tmp_path, capsys):
    from lemon_pl.adaptation.fewshot import adapt_then_predict
    from lemon_pl.adaptation.functional import select_parameters
    from lemon_pl.data.datasets import FrameLayout, normalise
    from lemon_pl.core.metrics import denormalise

    split, u_true = _test_trajectory(trained["root"])
    nu = float(split.params[0, 0])
    support = split.operator(0)[1:5].astype(np.float64)
    with h5py.File(tmp_path / "support.h5", "w") as f:
        f["u"] = support
        f.attrs["t_final"] = 2.0
    np.save(tmp_path / "u0.npy", u_true[0])
    out = tmp_path / "adapted"
    assert main(["predict", "--ckpt_path", str(trained["ckpt"]), "--equation", f"u_t - {nu!r}*u_xx = 0",
                 "--u0", str(tmp_path / "u0.npy"), "--adapt", str(tmp_path / "support.h5"), "--steps", "3",
                 "--lr", "0.05", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    z = np.load(out / "prediction.npz")
    assert "adapted: 3 SGD steps (lr 0.05) on 4 trajectories" in printed
    assert not np.allclose(z["u"], z["u_zero_shot"])  # adapting changed the prediction
    # by hand: the same support/query batches through few-shot evaluation's adapt_then_predict
    net = _independent_net(trained["run"], trained["ckpt"])
    lay = FrameLayout(64)
    tokens = torch.as_tensor(split.operator_tokens(0), dtype=torch.long)

    def batch(frames):
        u_in, u_out = lay.split(frames[:, lay.frames])
        x, y, mean, std = normalise(u_in, u_out)
        n = len(frames)
        return {"u_in": torch.tensor(x, dtype=torch.float32), "u_out": torch.tensor(y, dtype=torch.float32),
                "mean": torch.tensor(mean, dtype=torch.float32), "std": torch.tensor(std, dtype=torch.float32),
                "t_in": lay.t_in.expand(n, -1), "t_out": lay.t_out.expand(n, -1), "tokens": tokens.expand(n, -1),
                "token_pad_mask": torch.zeros(n, len(tokens), dtype=torch.bool)}

    sup, query = batch(support), batch(u_true[None])
    mse = lambda p, t: torch.nn.functional.mse_loss(p.float(), t.float())  # noqa: E731 - the stage's loss
    pred = adapt_then_predict(net, sup, query, select_parameters(net), 3, 0.05, mse)
    np.testing.assert_allclose(z["u"][0, 1:], denormalise(pred, query).double().numpy()[0], rtol=1e-4, atol=1e-5)
    err = np.linalg.norm(z["u"][0, 1:] - z["u_ref"][0, 1:]) / np.linalg.norm(z["u_ref"][0, 1:])
    assert float(z["rel_l2"][0]) == pytest.approx(err, rel=1e-5)
    assert float(z["rel_l2_zero_shot"][0]) != pytest.approx(float(z["rel_l2"][0]))


@pytest.mark.parametrize("argv,expect", [
    (["--equation", "u_t + u_xxxxx = 0"], "the term u_xxxxx is an x-derivative of order 5"),
    (["--equation", "u_x + u = 0"], "has no time derivative"),
    (["--equation", "u_t + q*u_x = 0"], "unknown symbol 'q'"),
    (["--equation", "u_t + 1e-12*u_x = 0"], "the coefficient 1e-12 in the term 1.0e-12*u_x is outside the tokenizer's range"),
    (["--family", "kdv", "--params", "delt=0.1"], "kdv has no parameter 'delt'"),
    (["--equation", "u_t + u_x = 0", "--u0", "{short}"], "short.npy holds 100 points per initial condition"),
    (["--equations", "{eqs}"], "eqs.txt:3: 'u_t + u_xt = 0': the term u_xt is a mixed space-time derivative"),
    (["--equation", "u_t + u_x = 0", "--u0", "x", "--adapt", "{missing}"], "--adapt {missing} does not exist"),
    (["--equation", "u_t + u_x = 0", "--u0", "x", "--run-config", "{missing}"], "--run-config {missing} does not exist"),
])
def test_bad_input_is_one_line_exit_2_and_nothing_written(trained, tmp_path, capsys, argv, expect):
    np.save(tmp_path / "short.npy", np.zeros(100))
    (tmp_path / "eqs.txt").write_text("u_t + 0.5*u_x = 0\n# a comment\nu_t + u_xt = 0\n")
    fill = {"short": str(tmp_path / "short.npy"), "eqs": str(tmp_path / "eqs.txt"), "missing": str(tmp_path / "none.h5")}
    argv = [a.format(**fill) for a in argv]
    out = tmp_path / "out"
    code = main(["predict", "--ckpt_path", str(trained["ckpt"]), *argv, "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("lemon-pl predict: error: "), err
    assert expect.format(**fill) in err[0]
    assert not out.exists()


def test_a_checkpoint_without_its_run_config_is_refused(trained, tmp_path, capsys):
    import shutil

    lone = tmp_path / "lone.ckpt"
    shutil.copy(trained["ckpt"], lone)
    code = main(["predict", "--ckpt_path", str(lone), "--equation", "u_t + u_x = 0", "--u0", "x", "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "config.yaml does not exist" in err and "pass it with --run-config" in err
    assert not (tmp_path / "out").exists()


def test_lightning_predict_over_the_test_split_writes_the_same_files(trained, capsys):
    from lemon_pl.data.io import open_split

    run = trained["run"]
    assert main(["predict", "--config", str(run / "config.yaml"), "--ckpt_path", str(trained["ckpt"]),
                 "--trainer.enable_progress_bar", "false"]) == 0
    printed = capsys.readouterr().out
    out = run.parent / "version_1"
    assert {"prediction.npz", "prediction_heat.png", "prediction_advection.png", "prediction_kdv.png"} <= \
        {p.name for p in out.iterdir()}
    z = np.load(out / "prediction.npz")
    assert str(z["source"]) == "data split" and list(dict.fromkeys(z["family"].tolist())) == FAMILIES
    frames = np.r_[0, np.arange(1, 64, 2)]
    first = {}
    for i, fam in enumerate(z["family"].tolist()):
        first.setdefault(fam, i)
    for fam, i in first.items():  # each family's first test trajectory is the data, its equation the family's
        split = open_split(trained["root"], fam, "test")
        np.testing.assert_allclose(z["u_ref"][i], split.sample(0, 0)[frames], rtol=1e-5, atol=1e-5)
        assert z["tokens"][i, :z["token_len"][i]].tolist() == split.operator_tokens(0).tolist()
    ref, u = z["u_ref"][:, 1:], z["u"][:, 1:]
    err = np.linalg.norm((u - ref).reshape(len(u), -1), axis=1) / np.linalg.norm(ref.reshape(len(u), -1), axis=1)
    np.testing.assert_allclose(z["rel_l2"], err, rtol=1e-4)
    assert "overall" in printed and f"{err.mean():.4g}" in printed


def test_predict_help_is_the_tool(capsys):
    with pytest.raises(SystemExit) as done:
        main(["predict", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "--equation" in text and "--config CONFIG --ckpt_path CKPT" in text


@pytest.mark.parametrize("payload", ["u_t + sin('__import__(\"os\").system(\"touch PWNED\")')*u_x = 0",
                                     "u_t + 9^9^9^9*u_x = 0", "u_t + x.__class__*u_x = 0"])
def test_a_support_files_equation_attribute_is_data_not_code(trained, tmp_path, capsys, monkeypatch, payload):
    """The equation attribute of an --adapt file goes through the same grammar: one line naming the
    file, exit 2, nothing run or written (issue 22)."""
    u = np.zeros((2, 64, 128), dtype=np.float32)
    with h5py.File(tmp_path / "support.h5", "w") as f:
        f["u"] = u
        f.attrs["equation"] = payload
    monkeypatch.chdir(tmp_path)
    code = main(["predict", "--ckpt_path", str(trained["ckpt"]), "--u0", "sin(pi*x)", "--adapt",
                 str(tmp_path / "support.h5"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"lemon-pl predict: error: --adapt {tmp_path / 'support.h5'}: its 'equation' attribute: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["support.h5"]
