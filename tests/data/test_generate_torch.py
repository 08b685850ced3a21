"""``lemon-pl generate`` with the torch solvers: chunks of operators, determinism, resume, identity."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import pytest
import torch

from lemon_pl.data import generate as gen
from lemon_pl.data.families import ConservationLaw

FAMS = ["burgers", "diff_bistablereact_1D", "porous_medium"]
SMALL = dict(n_operators=5, k=4, progress=False, splits=["train"])

# generations with worker processes and injected faults: CI's slow step runs them
pytestmark = pytest.mark.slow


def _arrays(root, families, keys=("u", "params", "tokens", "n_rejected")):
    out = {}
    for fam in families:
        with h5py.File(root / fam / "train.h5", "r") as f:
            out[fam] = {k: f[k][:] for k in keys}
    return out


def _assert_identical(a, b):
    for fam in a:
        for key in a[fam]:
            assert a[fam][key].dtype == b[fam][key].dtype and np.array_equal(a[fam][key], b[fam][key]), (fam, key)


@pytest.mark.slow  # about 20 s: two generations with worker processes
def test_torch_files_are_bit_identical_whatever_the_workers(tmp_path):
    """Chunks of 2 operators (5 operators: 3 chunks) in-process on 2 threads vs 2 one-thread workers."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        gen.generate(tmp_path / "w1", "tiny", FAMS, workers=1, chunk=2, **SMALL)
    finally:
        torch.set_num_threads(threads)
    gen.generate(tmp_path / "w2", "tiny", FAMS, workers=2, chunk=2, **SMALL)
    _assert_identical(_arrays(tmp_path / "w1", FAMS), _arrays(tmp_path / "w2", FAMS))
    with h5py.File(tmp_path / "w2" / "burgers" / "train.h5", "r") as f:
        a = f.attrs
        assert (a["solver"], a["solver_dtype"], a["solver_device"], int(a["solver_chunk"])) == \
            ("torch", "float64", "cpu", 2)
        assert np.all(f["solve_seconds"][:] > 0)


def test_torch_and_numpy_files_hold_the_same_ics_and_agree(tmp_path):
    """The ICs are drawn from the same per-operator streams; the solutions agree to the numpy
    path's own coupling: numpy's march takes one step for its whole batch (the smallest), the
    torch march one per row, which moves the FV and porous data by a time-discretisation error;
    reaction-diffusion takes the same fixed steps and agrees to float32 round-off."""
    gen.generate(tmp_path / "np", "tiny", FAMS, solver="numpy", **SMALL)
    gen.generate(tmp_path / "t", "tiny", FAMS, **SMALL)
    a, b = _arrays(tmp_path / "np", FAMS), _arrays(tmp_path / "t", FAMS)
    for fam in FAMS:
        ua, ub = a[fam]["u"], b[fam]["u"]
        np.testing.assert_array_equal(ua[:, :, 0], ub[:, :, 0])  # identical initial conditions
        np.testing.assert_array_equal(a[fam]["params"], b[fam]["params"])
        tol = 1e-6 if fam.startswith("diff_") else 2e-3  # measured 0 (RD), 4.7e-4 (burgers), 6e-8 (porous)
        assert np.abs(ua - ub).max() < tol, (fam, np.abs(ua - ub).max())
    with h5py.File(tmp_path / "np" / "burgers" / "train.h5", "r") as f:
        assert (f.attrs["solver"], f.attrs["solver_dtype"]) == ("numpy", "float64")


@pytest.mark.slow  # a few generations with injected blow-ups
def test_rejections_resample_per_operator_inside_a_chunk(tmp_path, monkeypatch):
    """Trajectories whose IC starts above 0.5 'blow up': the same ICs are kept and counted as numpy's."""
    monkeypatch.setattr(ConservationLaw, "accept", lambda self, u: u[:, 0, 0] <= 0.5)
    gen.generate(tmp_path / "np", "tiny", "burgers", solver="numpy", n_operators=4, k=6, progress=False,
                 splits=["train"])
    gen.generate(tmp_path / "t", "tiny", "burgers", chunk=3, n_operators=4, k=6, progress=False, splits=["train"])
    a, b = _arrays(tmp_path / "np", ["burgers"]), _arrays(tmp_path / "t", ["burgers"])
    assert a["burgers"]["n_rejected"].sum() > 0
    np.testing.assert_array_equal(a["burgers"]["n_rejected"], b["burgers"]["n_rejected"])
    np.testing.assert_array_equal(a["burgers"]["u"][:, :, 0], b["burgers"]["u"][:, :, 0])
    assert np.all(b["burgers"]["u"][:, :, 0, 0] <= 0.5)


@pytest.mark.parametrize("resume_chunk", [4, 3])
def test_a_half_written_chunk_resumes_to_the_identical_file(tmp_path, monkeypatch, resume_chunk):
    """Killed after 2 of the 4 operators of chunk 0 were written; the re-run solves the chunk whole
    again (with the chunk size the file was started with) and writes the missing operators."""
    args = dict(n_operators=6, k=4, progress=False, splits=["train"], chunk=4)
    gen.generate(tmp_path / "ref", "tiny", "burgers", **args)
    real = gen.mark_written
    calls = {"n": 0}

    def killed(f, i, u):
        real(f, i, u)
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(gen, "mark_written", killed)
    with pytest.raises(KeyboardInterrupt):
        gen.generate(tmp_path / "run", "tiny", "burgers", **args)
    partial = tmp_path / "run" / "burgers" / "train.h5.partial"
    with h5py.File(partial, "r") as f:
        assert f["op_done"][:].tolist() == [True, True, False, False, False, False]
    monkeypatch.setattr(gen, "mark_written", real)
    (report,) = gen.generate(tmp_path / "run", "tiny", "burgers", **(args | dict(chunk=resume_chunk)))
    assert report.status == "resumed"
    _assert_identical(_arrays(tmp_path / "ref", ["burgers"]), _arrays(tmp_path / "run", ["burgers"]))


def test_backend_and_dtype_are_part_of_the_identity(tmp_path):
    gen.generate(tmp_path, "tiny", "burgers,heat", solver="numpy", **SMALL)
    with pytest.raises(gen.GenerationError, match=r"different settings: solver='numpy' \(wanted 'torch'\)"):
        gen.generate(tmp_path, "tiny", "burgers", **SMALL)
    # heat has no torch solver: --solver torch solves it with numpy, so its file is complete
    (report,) = gen.generate(tmp_path, "tiny", "heat", **SMALL)
    assert report.status == "skipped"
    gen.generate(tmp_path / "t", "tiny", "burgers", **SMALL)
    with pytest.raises(gen.GenerationError, match=r"solver_dtype='float64' \(wanted 'float32'\)"):
        gen.generate(tmp_path / "t", "tiny", "burgers", solver_dtype="float32", **SMALL)
    with pytest.raises(gen.GenerationError, match=r"solver_compile=.*False.* \(wanted True\)"):
        gen.generate(tmp_path / "t", "tiny", "burgers", solver_compile=True, **SMALL)
    with h5py.File(tmp_path / "t" / "burgers" / "train.h5", "r") as f:
        assert not f.attrs["solver_compile"]


def test_a_torch_file_of_older_numerics_is_not_resumed(tmp_path):
    """A torch file written before TORCH_SOLVER_REVISION (no attribute) or with another revision
    has other numbers than this code writes: it is a different file, never resumed or skipped."""
    gen.generate(tmp_path, "tiny", "burgers", **SMALL)
    path = tmp_path / "burgers" / "train.h5"
    with h5py.File(path, "r") as f:
        assert int(f.attrs["torch_solver_revision"]) == gen.TORCH_SOLVER_REVISION >= 3
    (report,) = gen.generate(tmp_path, "tiny", "burgers", **SMALL)
    assert report.status == "skipped"
    with h5py.File(path, "r+") as f:
        del f.attrs["torch_solver_revision"]
    with pytest.raises(gen.GenerationError, match=rf"torch_solver_revision=0 \(wanted {gen.TORCH_SOLVER_REVISION}\)"):
        gen.generate(tmp_path, "tiny", "burgers", **SMALL)
    # numpy files carry 0, also when they predate the attribute
    gen.generate(tmp_path / "np", "tiny", "burgers", solver="numpy", **SMALL)
    with h5py.File(tmp_path / "np" / "burgers" / "train.h5", "r+") as f:
        assert int(f.attrs["torch_solver_revision"]) == 0
        del f.attrs["torch_solver_revision"]
    (report,) = gen.generate(tmp_path / "np", "tiny", "burgers", solver="numpy", **SMALL)
    assert report.status == "skipped"


def test_files_from_before_the_solver_attribute_count_as_numpy(tmp_path):
    gen.generate(tmp_path, "tiny", "burgers", solver="numpy", **SMALL)
    path = tmp_path / "burgers" / "train.h5"
    with h5py.File(path, "r+") as f:
        del f.attrs["solver"], f.attrs["solver_dtype"]
    (report,) = gen.generate(tmp_path, "tiny", "burgers", solver="numpy", **SMALL)
    assert report.status == "skipped"
    with pytest.raises(gen.GenerationError, match="different settings"):
        gen.generate(tmp_path, "tiny", "burgers", **SMALL)


def test_float32_solver_data(tmp_path):
    gen.generate(tmp_path / "a", "tiny", "diff_logisreact_1D", **SMALL)
    gen.generate(tmp_path / "b", "tiny", "diff_logisreact_1D", solver_dtype="float32", **SMALL)
    a, b = _arrays(tmp_path / "a", ["diff_logisreact_1D"]), _arrays(tmp_path / "b", ["diff_logisreact_1D"])
    assert np.abs(a["diff_logisreact_1D"]["u"] - b["diff_logisreact_1D"]["u"]).max() < 1e-4


@pytest.mark.parametrize("kwargs, message", [
    (dict(solver="jax"), "--solver must be one of numpy, torch"),
    (dict(device="tpu"), "--device must be one of cpu, cuda"),
    (dict(solver_dtype="float16"), "--solver-dtype"),
    (dict(chunk=0), "--chunk must be at least 1"),
    (dict(solver="numpy", device="cuda"), "--device cuda needs the torch solver"),
])
def test_bad_solver_arguments(tmp_path, kwargs, message):
    with pytest.raises(gen.GenerationError, match=message):
        gen.generate(tmp_path, "tiny", "burgers", progress=False, **kwargs)
    assert not any(tmp_path.rglob("*.h5"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a CUDA device")
def test_cli_device_cuda_without_cuda_is_one_line(tmp_path):
    res = subprocess.run([sys.executable, "-m", "lemon_pl", "generate", "--root", str(tmp_path), "--preset", "tiny",
                          "--families", "burgers", "--device", "cuda", "--no-progress"],
                         capture_output=True, text=True)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
    assert res.stderr.startswith("lemon-pl generate: error: --device 'cuda': no CUDA device")
    assert not any(tmp_path.rglob("*.h5"))


@pytest.mark.gpu
def test_cuda_generation_matches_cpu(tmp_path):
    gen.generate(tmp_path / "cpu", "tiny", FAMS, **SMALL)
    gen.generate(tmp_path / "gpu", "tiny", FAMS, device="cuda", workers=2, **SMALL)
    a, b = _arrays(tmp_path / "cpu", FAMS), _arrays(tmp_path / "gpu", FAMS)
    for fam in FAMS:
        np.testing.assert_array_equal(a[fam]["u"][:, :, 0], b[fam]["u"][:, :, 0])
        assert np.abs(a[fam]["u"] - b[fam]["u"]).max() < 1e-5
        with h5py.File(tmp_path / "gpu" / fam / "train.h5", "r") as f:
            assert f.attrs["solver_device"] == "cuda"
