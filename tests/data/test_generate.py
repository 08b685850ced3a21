"""HDF5 generation: layout, determinism, resume, atomicity, bad input."""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from lemon_pl.data import generate as gen
from lemon_pl.data.families import Heat, get_family
from lemon_pl.data.io import DataFileError, FamilySplit, open_split
from lemon_pl.data.symbols import PAD_ID, decode

SMALL = dict(n_operators=3, k=4, progress=False)


def _arrays(root, families, splits=("train",)):
    out = {}
    for fam in families:
        for s in splits:
            with h5py.File(root / fam / f"{s}.h5", "r") as f:
                out[fam, s] = {k: f[k][:] for k in ("u", "params", "tokens", "token_len")}
    return out


def test_layout_and_attributes(tmp_path):
    reports = gen.generate(tmp_path, "tiny", "heat,kdv", progress=False)
    assert sorted(r.status for r in reports) == ["written"] * 6
    pre = gen.PRESETS["tiny"]
    for fam in ("heat", "kdv"):
        family = get_family(fam)
        for split, n in pre.n_operators.items():
            path = tmp_path / fam / f"{split}.h5"
            assert path.exists() and not path.with_name(path.name + ".partial").exists()
            with h5py.File(path, "r") as f:
                assert f["u"].shape == (n, pre.k, 64, 128) and f["u"].dtype == np.float32
                assert f["u"].chunks == (1, pre.k, 64, 128)
                assert list(f["params"].attrs["param_names"]) == list(family.param_names)
                assert f["tokens"].dtype == np.int16
                np.testing.assert_allclose(f["t"][:], family.t_grid(64))
                np.testing.assert_allclose(f["x"][:], family.x_grid(128))
                a = f.attrs
                assert a["family"] == fam and a["split"] == split and a["complete"]
                assert a["gamma"] == pytest.approx(0.1) and a["seed"] == gen.DEFAULT_SEED
                assert a["generator_version"] == gen.GENERATOR_VERSION
                assert a["c_t"] == pytest.approx(2.0 / family.t_final)
                for i in range(n):
                    length = int(f["token_len"][i])
                    toks = f["tokens"][i]
                    assert np.all(toks[length:] == PAD_ID)
                    # tokens describe the operator's own parameters
                    assert list(toks[:length]) == family.tokens(f["params"][i])
                    assert decode(toks).prefix() == family.tree(f["params"][i]).prefix()
                u = f["u"][:]
                assert np.all(np.isfinite(u))


def test_splits_draw_disjoint_operators(tmp_path):
    gen.generate(tmp_path, "default", "heat,advection", splits=["train", "val", "test"], k=2, progress=False)
    for fam in ("heat", "advection"):
        seen = set()
        for split in ("train", "val", "test"):
            rows = {tuple(r) for r in open_split(tmp_path, fam, split).params}
            assert not rows & seen, f"{fam}/{split} reuses operators of an earlier split"
            seen |= rows


@pytest.mark.slow  # 9 s; the seed -> bytes pin of a tiny run stays in the default tier (test_generate_digest.py)
def test_bit_identical_whatever_the_workers(tmp_path):
    fams = ["heat", "fplanck", "burgers", "cahnhilliard_1D"]
    gen.generate(tmp_path / "w1", "tiny", fams, workers=1, **SMALL)
    gen.generate(tmp_path / "w2", "tiny", fams, workers=2, **SMALL)
    a, b = _arrays(tmp_path / "w1", fams), _arrays(tmp_path / "w2", fams)
    for key in a:
        for name in a[key]:
            assert np.array_equal(a[key][name], b[key][name]), (key, name)


def test_seed_changes_data(tmp_path):
    gen.generate(tmp_path / "a", "tiny", "heat", seed=1, **SMALL)
    gen.generate(tmp_path / "b", "tiny", "heat", seed=2, **SMALL)
    assert not np.array_equal(_arrays(tmp_path / "a", ["heat"])["heat", "train"]["u"],
                              _arrays(tmp_path / "b", ["heat"])["heat", "train"]["u"])


def test_interrupted_run_resumes_to_identical_file(tmp_path, monkeypatch):
    fams = ["kdv"]
    gen.generate(tmp_path / "ref", "tiny", fams, splits=["train"], **SMALL)

    real = gen.generate_operator
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # killed while solving the third operator
        return real(*args, **kwargs)

    monkeypatch.setattr(gen, "generate_operator", flaky)
    with pytest.raises(KeyboardInterrupt):
        gen.generate(tmp_path / "run", "tiny", fams, splits=["train"], **SMALL)
    final = tmp_path / "run" / "kdv" / "train.h5"
    partial = final.with_name("train.h5.partial")
    assert not final.exists(), "an interrupted file must never look complete"
    assert partial.exists()
    with h5py.File(partial, "r") as f:
        assert f["op_done"][:].tolist() == [True, True, False]
    with pytest.raises(DataFileError, match="resume"):
        open_split(tmp_path / "run", "kdv", "train")

    monkeypatch.setattr(gen, "generate_operator", real)
    (report,) = gen.generate(tmp_path / "run", "tiny", fams, splits=["train"], **SMALL)
    assert report.status == "resumed"
    a, b = _arrays(tmp_path / "ref", fams), _arrays(tmp_path / "run", fams)
    assert np.array_equal(a["kdv", "train"]["u"], b["kdv", "train"]["u"])


def test_corrupt_partial_is_restarted(tmp_path):
    part = tmp_path / "heat" / "train.h5.partial"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"not an hdf5 file")
    (report,) = gen.generate(tmp_path, "tiny", "heat", splits=["train"], **SMALL)
    assert report.status == "written"
    assert FamilySplit(tmp_path / "heat" / "train.h5").n_operators == 3


def test_rerun_skips_complete_files(tmp_path):
    gen.generate(tmp_path, "tiny", "heat", **SMALL)
    path = tmp_path / "heat" / "train.h5"
    before = os.stat(path).st_mtime_ns
    reports = gen.generate(tmp_path, "tiny", "heat", **SMALL)
    assert {r.status for r in reports} == {"skipped"}
    assert os.stat(path).st_mtime_ns == before


def test_existing_file_with_other_settings_is_not_clobbered(tmp_path):
    gen.generate(tmp_path, "tiny", "heat", splits=["train"], **SMALL)
    path = tmp_path / "heat" / "train.h5"
    before = path.read_bytes()
    with pytest.raises(gen.GenerationError, match="different settings.*--overwrite"):
        gen.generate(tmp_path, "tiny", "heat", splits=["train"], n_operators=3, k=5, progress=False)
    assert path.read_bytes() == before
    gen.generate(tmp_path, "tiny", "heat", splits=["train"], n_operators=3, k=5, overwrite=True, progress=False)
    assert FamilySplit(path).k == 5


def test_blow_ups_are_rejected_resampled_and_counted(tmp_path, monkeypatch):
    # pretend every trajectory whose IC starts above 0.5 blew up
    monkeypatch.setattr(Heat, "accept", lambda self, u: u[:, 0, 0] <= 0.5)
    gen.generate(tmp_path, "tiny", "heat", splits=["train"], n_operators=4, k=6, progress=False)
    with h5py.File(tmp_path / "heat" / "train.h5", "r") as f:
        u = f["u"][:]
        rejected = f["n_rejected"][:]
    assert u.shape[:2] == (4, 6)
    assert np.all(u[:, :, 0, 0] <= 0.5)
    assert rejected.sum() > 0


def test_operator_that_always_fails_names_itself(monkeypatch):
    monkeypatch.setattr(Heat, "accept", lambda self, u: np.zeros(len(u), dtype=bool))
    with pytest.raises(gen.GenerationError, match=r"heat operator 0 .*nu"):
        gen.generate_operator("heat", np.array([3e-3]), 0, "train", 0, 4, 32, 8)


def test_ood_split_and_resolution(tmp_path):
    gen.generate(tmp_path, "tiny", "advection", split_name="ood", gamma=0.3, nx=64, nt=32, progress=False)
    s = open_split(tmp_path, "advection", "ood")
    assert (s.nt, s.nx) == (32, 64)
    beta = s.params[:, 0]
    assert np.all((beta >= 0.35 - 1e-12) & (beta <= 0.65 + 1e-12))
    assert s.attrs["gamma"] == pytest.approx(0.3)
    train = gen.plan_params(get_family("advection"), gen.DEFAULT_SEED,
                            [("train", 4, 0.1), ("val", 2, 0.1), ("test", 2, 0.1)])
    used = {tuple(r) for p, _ in train.values() for r in p}
    assert not {tuple(r) for r in s.params} & used


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(families="heat,nope"), "unknown family 'nope'"),
        (dict(n_operators=-1), "must be positive"),
        (dict(k=0), "must be positive"),
        (dict(nx=4), "at least 8"),
        (dict(gamma=1.5), "gamma"),
        (dict(preset="huge"), "unknown preset"),
        (dict(splits=["training"]), "unknown split"),
        (dict(workers=0), "workers"),
        (dict(families=""), "empty"),
    ],
)
def test_nonsense_arguments_are_rejected(tmp_path, kwargs, message):
    args = dict(preset="tiny", families="heat", progress=False) | kwargs
    with pytest.raises((gen.GenerationError, ValueError, KeyError), match=message):
        gen.generate(tmp_path, **args)
    assert not any(tmp_path.rglob("*.h5"))


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "lemon_pl", "generate", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_cli_errors_are_one_clear_line(tmp_path):
    res = _cli("--root", str(tmp_path), "--families", "heat,foo", "--preset", "tiny")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "unknown family 'foo'" in res.stderr
    assert "Traceback" not in res.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = _cli("--root", str(blocker / "sub"), "--preset", "tiny", "--families", "heat")
    assert res.returncode == 2 and "cannot create data root" in res.stderr and "Traceback" not in res.stderr


def test_cli_generates_and_lists(tmp_path):
    res = _cli("--root", str(tmp_path), "--preset", "tiny", "--families", "heat,wave", "--n-operators", "2",
               "--k", "3", "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "6 files" in res.stdout
    assert open_split(tmp_path, "wave", "test").k == 3
    res = _cli("--list")
    lines = res.stdout.splitlines()
    assert res.returncode == 0 and "Klein_Gordon" in res.stdout and len(lines) == 19 + 3  # + the 3 map families
    assert sum(" map " in line for line in lines) == 3
