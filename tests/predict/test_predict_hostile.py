"""Issue 22, `lemon-pl predict`: hostile numbers, devices, files and disks.

Every numeric flag outside its documented range (NaN, inf, negative, zero, huge), a request too big
for the memory, a device this machine lacks, a huge or broken input file and a full disk give one
`lemon-pl predict: error:` line naming the flag or file, exit code 2, no --out folder (and a previous
one byte-identical), no traceback. Work is bounded before it is done: the memory of a request is
estimated before anything is allocated, the reference solvers have a time budget, forward passes
are chunked without changing a prediction."""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from lemon_pl.cli import main
from tests.conftest import CONFIGS

PREFIX = "lemon-pl predict: error: "


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny Prose trained for two steps on the tiny heat data (the data kept for support files)."""
    from lemon_pl.data.generate import generate

    work = tmp_path_factory.mktemp("hostile")
    root = work / "data"
    generate(root, "tiny", ["heat"], progress=False)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        assert main(["fit", "--config", str(CONFIGS / "pretrain.yaml"), "--config", str(CONFIGS / "trainer/cpu.yaml"),
                     "--data.init_args.root", str(root), "--data.init_args.preset", "tiny",
                     "--data.init_args.train_families", "heat", "--data.init_args.batch_size", "8",
                     "--trainer.logger.init_args.save_dir", str(work / "runs"), "--trainer.enable_progress_bar", "false",
                     "--trainer.enable_model_summary", "false", "--model.init_args.net.init_args.d_model", "32",
                     "--model.init_args.net.init_args.dim_ffn", "64", "--model.init_args.net.init_args.n_heads", "2",
                     "--trainer.max_epochs", "-1", "--trainer.max_steps", "2", "--trainer.num_sanity_val_steps", "0",
                     "--trainer.limit_val_batches", "1"]) == 0
    finally:
        os.chdir(cwd)
    run = work / "runs" / "pretrain" / "version_0"
    return {"work": work, "root": root, "run": run, "path": run / "checkpoints" / "last.ckpt"}


def _predict(ckpt, argv, out, capsys) -> tuple[int, list[str], str]:
    code = main(["predict", "--ckpt_path", str(ckpt["path"]), *argv, "--out", str(out)])
    cap = capsys.readouterr()
    return code, cap.err.strip().splitlines(), cap.out


def _refused(code, err, out, expect: str) -> None:
    assert code == 2
    assert len(err) == 1 and err[0].startswith(PREFIX), err
    assert expect in err[0], err[0]
    assert "Traceback" not in err[0]
    assert not out.exists()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir())


# --------------------------------------------------------------------------- numeric flags

ADAPT = ["--equation", "u_t = 0.003*u_xx", "--u0", "x", "--adapt", "{support}"]
FAMILY = ["--family", "heat"]

NUMBERS = [
    (FAMILY + ["--t_final", "nan"], "--t_final must be a physical time in 0.001 .. 1000, got nan"),
    (FAMILY + ["--t_final", "inf"], "--t_final must be a physical time in 0.001 .. 1000, got inf"),
    (FAMILY + ["--t_final", "-2"], "--t_final must be a physical time in 0.001 .. 1000, got -2"),
    (FAMILY + ["--t_final", "0"], "--t_final must be a physical time in 0.001 .. 1000, got 0"),
    (FAMILY + ["--t_final", "1e300"], "--t_final must be a physical time in 0.001 .. 1000, got 1e+300"),
    (FAMILY + ["--seed", "-1"], "--seed must be an integer in 0 .. 9223372036854775807, got -1"),
    (FAMILY + ["--seed", str(2**64)], f"--seed must be an integer in 0 .. 9223372036854775807, got {2**64}"),
    (FAMILY + ["--num-ics", "0"], "--num-ics must be an integer in 1 .. 100000, got 0"),
    (FAMILY + ["--num-ics", "-3"], "--num-ics must be an integer in 1 .. 100000, got -3"),
    (FAMILY + ["--num-ics", "200000"], "--num-ics must be an integer in 1 .. 100000, got 200000"),
    (ADAPT + ["--steps", "-1"], "--steps must be an integer in 0 .. 10000, got -1"),
    (ADAPT + ["--steps", "1000000000"], "--steps must be an integer in 0 .. 10000, got 1000000000"),
    (ADAPT + ["--lr", "nan"], "--lr must be a number in (0, 10], got nan"),
    (ADAPT + ["--lr", "inf"], "--lr must be a number in (0, 10], got inf"),
    (ADAPT + ["--lr", "0"], "--lr must be a number in (0, 10], got 0"),
    (ADAPT + ["--lr", "-0.1"], "--lr must be a number in (0, 10], got -0.1"),
    (ADAPT + ["--lr", "1e300"], "--lr must be a number in (0, 10], got 1e+300"),
    (ADAPT + ["--adapt-operator", "-1"], "--adapt-operator must be an integer in 0 .. 2147483647, got -1"),
    (ADAPT + ["--adapt-operator", str(10**20)], f"--adapt-operator must be an integer in 0 .. 2147483647, got {10**20}"),
    (ADAPT + ["--support-size", "0"], "--support-size must be an integer in 1 .. 1024, got 0"),
    (ADAPT + ["--support-size", str(10**15)], f"--support-size must be an integer in 1 .. 1024, got {10**15}"),
    (["--family", "kdv", "--params", "delta=1e300"], "--params: kdv's delta=1e300 is outside its range 0.00022 .. 2.2"),
    (["--family", "kdv", "--params", "delta=-1"], "--params: kdv's delta=-1 is outside its range 0.00022 .. 2.2"),
    (["--family", "kdv", "--params", "delta=0"], "--params: kdv's delta=0 is outside its range 0.00022 .. 2.2"),
    (["--family", "kdv", "--params", "delta=nan"], "--params: delta='nan' is not finite"),
    (["--family", "kdv", "--params", "delta=-inf"], "--params: delta='-inf' is not finite"),
    (["--family", "kdv", "--params", "delta=1e999"], "--params: delta='1e999' is not finite"),
    (["--family", "heat", "--params", "nu=1e30"], "--params: heat's nu=1e30 is outside its range 3e-05 .. 0.3"),
    (["--family", "diff_bistablereact_1D", "--params", "a=1.5"], "diff_bistablereact_1D's a=1.5 is outside its range 0 .. 1"),
    (["--family", "porous_medium", "--params", "m=1e300"], "porous_medium's m must be one of 2, 3, 4, got 1e300"),
    (["--family", "nope"], "--family: unknown family 'nope'"),
    (["--equation", "u_t = u_xx"] * 257 + ["--u0", "x"], "--equation is given 257 times; one request predicts at most 256"),
    (["--stored-time", "--equation", "1e-7*u_t + u_x = 0", "--u0", "x"],
     "--equation: its horizon t_final must be a physical time in 0.001 .. 1000, got 20000000"),
]


@pytest.mark.parametrize("argv,expect", NUMBERS, ids=[" ".join(a[-2:]) for a, _ in NUMBERS])
def test_numbers_outside_their_range_are_one_line_naming_the_flag(ckpt, tmp_path, capsys, argv, expect):
    support = tmp_path / "support.h5"
    with h5py.File(support, "w") as f:
        f["u"] = np.random.default_rng(0).normal(size=(2, 64, 128))
    argv = [a.format(support=support) for a in argv]
    start = time.perf_counter()
    code, err, _ = _predict(ckpt, argv, tmp_path / "out", capsys)
    _refused(code, err, tmp_path / "out", expect)
    assert time.perf_counter() - start < 10


def test_the_ranges_are_documented_in_help(capsys):
    with pytest.raises(SystemExit) as done:
        main(["predict", "--help"])
    assert done.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for documented in ("0.001 .. 1000", "0 .. 2^63-1", "1 .. 100000", "min(8 GiB, half the available memory)",
                       "0 .. 10000", "(0, 10]", "1 .. 1024", "kdv: delta in 0.00022 .. 2.2", "at most 256 equations",
                       "1024 KiB", "cpu, cuda, cuda:N or mps", "120 s", "written all or nothing"):
        assert documented in text, documented


def test_family_ranges_cover_the_data_and_every_family_solves_within_them():
    """Each continuous range holds the family's training distribution, with gamma up to 0.9; its
    ends build a tokenizable equation (or are refused in one line) without overflow."""
    from lemon_pl.data.families import get_family, list_families
    from lemon_pl.predict.match import EquationError, family_equation, param_range

    for name in list_families():
        fam = get_family(name)
        for spec in fam.params:
            r = param_range(spec)
            if spec.centre is not None:
                assert r[0] <= 0.1 * spec.centre and 1.9 * spec.centre <= r[1]
            elif spec.choices is None:
                assert r == (spec.low, spec.high)
        for end in (0, -1):
            given = {s.name: param_range(s)[end] for s in fam.params}
            try:
                family_equation(name, given)
            except EquationError as err:
                assert str(err).startswith(f"--params: {name} with ") and "\n" not in str(err)


# --------------------------------------------------------------------------- devices


def _no_model_built(monkeypatch):
    import lemon_pl.cli.lightning as lightning_cli

    def refuse(*a, **k):
        raise AssertionError("a model was built")

    monkeypatch.setattr(lightning_cli, "build", refuse)


@pytest.mark.parametrize("device,expect", [
    ("bogus", "--device 'bogus' is not a torch device; use one of cpu, cuda, mps"),
    ("", "--device '' is not a torch device"),
    ("cuda:x", "--device 'cuda:x' is not a torch device"),
    ("meta", "--device 'meta': lemon-pl runs on cpu, cuda, mps, not meta"),
    ("cpu:3", "--device 'cpu:3': there is one cpu device"),
    ("cuda:99", "--device 'cuda:99': "),
    ("cuda", "--device 'cuda': no CUDA device is available to torch"),
    ("mps", "--device 'mps': no MPS device is available to torch"),
])
def test_a_device_this_machine_lacks_is_refused_before_any_model_is_built(ckpt, tmp_path, capsys, monkeypatch,
                                                                         device, expect):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    if device == "mps" and getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        pytest.skip("this machine has an MPS device")
    _no_model_built(monkeypatch)
    code, err, _ = _predict(ckpt, ["--family", "heat", "--device", device], tmp_path / "out", capsys)
    _refused(code, err, tmp_path / "out", expect)


def test_check_device_is_a_public_function():
    from lemon_pl.core.devices import DeviceError, check_device

    assert check_device("cpu") == torch.device("cpu")
    assert check_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(DeviceError, match=r"^--solver-device 'nope' is not a torch device"):
        check_device("nope", flag="--solver-device")
    if torch.cuda.is_available():
        assert check_device("cuda:0") == torch.device("cuda:0")
        with pytest.raises(DeviceError, match="CUDA device"):
            check_device(f"cuda:{torch.cuda.device_count()}")


# --------------------------------------------------------------------------- the work of a request


def test_a_request_too_big_for_the_memory_is_refused_before_it_is_allocated(ckpt, tmp_path, capsys):
    """--num-ics 100000 (in range) x one equation: ~50 GiB estimated, over the 8 GiB cap on any machine."""
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    out = tmp_path / "out"
    code, err, _ = _predict(ckpt, ["--family", "heat", "--num-ics", "100000"], out, capsys)
    _refused(code, err, out, "--num-ics 100000: 1 equation x 100000 initial conditions = 100000 predictions would need "
                             "about ")
    assert "of memory" in err[0] and "more than the limit of" in err[0]
    assert time.perf_counter() - start < 15
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 1024 * 1024  # KiB: under 1 GiB more


def test_the_memory_limit_names_the_flag_that_makes_a_request_big(ckpt, tmp_path, capsys, monkeypatch):
    from lemon_pl.predict import limits

    monkeypatch.setattr(limits, "memory_limit", lambda: (10 * 1024**2, "a test limit"))
    np.save(tmp_path / "many.npy", np.zeros((500, 128)))
    (tmp_path / "eqs.txt").write_text("".join(f"u_t = {0.001 * (i + 1):.3g}*u_xx\n" for i in range(200)))
    out = tmp_path / "out"
    code, err, _ = _predict(ckpt, ["--family", "heat", "--num-ics", "200"], out, capsys)
    _refused(code, err, out, "--num-ics 200: 1 equation x 200 initial conditions = 200 predictions")
    assert "more than the limit of 10 MiB (a test limit)" in err[0]
    code, err, _ = _predict(ckpt, ["--equation", "u_t = 0.01*u_xx", "--u0", str(tmp_path / "many.npy")], out, capsys)
    _refused(code, err, out, f"--u0 {tmp_path / 'many.npy'} (as big as 500 initial conditions): 1 equation x 500 "
                             "initial conditions")
    code, err, _ = _predict(ckpt, ["--equations", str(tmp_path / "eqs.txt"), "--u0", "x", "--u0", "cos(pi*x)"],
                            out, capsys)
    _refused(code, err, out, f"--equations {tmp_path / 'eqs.txt'}: 200 equations x 2 initial conditions")


def test_a_npy_file_declaring_a_huge_array_is_refused_before_it_is_read(ckpt, tmp_path, capsys):
    """Headers alone (no data): (1e9, 128) rows, and one (1e9,) row - each ~1 TB / 8 GB if loaded."""
    for name, shape, expect in (("rows.npy", (10**9, 128), "(as big as 1000000000 initial conditions): 1 equation x "
                                                          "1000000000 initial conditions"),
                                ("long.npy", (10**9,), "(as big as 7812500 initial conditions)")):
        with open(tmp_path / name, "wb") as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": shape})
        out = tmp_path / "out"
        code, err, _ = _predict(ckpt, ["--equation", "u_t = 0.01*u_xx", "--u0", str(tmp_path / name)], out, capsys)
        _refused(code, err, out, f"--u0 {tmp_path / name} {expect}")


def test_the_memory_estimate_is_on_the_high_side():
    """The estimate exceeds the float64 arrays a request certainly holds at once."""
    from lemon_pl.predict.run import estimate_bytes

    rows, nx, nt, frames = 1000, 128, 64, 33
    held = rows * frames * nx * 8 * 3 + rows * nt * nx * 8  # pred + u + u_ref, one solver solution
    assert estimate_bytes(rows, rows, nx, nt, frames) > held
    assert estimate_bytes(rows, 0, nx, nt, frames, n_support=10, adapt=True) > estimate_bytes(rows, 0, nx, nt, frames)


def test_moderate_requests_work_and_chunked_forward_passes_change_no_prediction(ckpt, tmp_path, capsys):
    from lemon_pl.predict.model import CHUNK, Predictor

    out = tmp_path / "out"
    code, err, printed = _predict(ckpt, ["--family", "heat", "--u0", "init_multi", "--num-ics", "300", "--no-solver"],
                                  out, capsys)
    assert code == 0, err
    z = np.load(out / "prediction.npz")
    assert z["u"].shape == (300, 33, 128) and np.isfinite(z["u"]).all()
    assert f"2 batched forward passes of at most {CHUNK}" in printed
    from lemon_pl.cli.lightning import build

    pred = Predictor.load(ckpt["path"], build=build)
    batch = pred.batch(z["u"][:, :1].astype(np.float64), [z["tokens"][0, :z["token_len"][0]].tolist()] * 300)
    chunked, _ = pred.predict(batch, repeats=1, chunk=7)
    whole, _ = pred.predict(batch, repeats=1, chunk=1000)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z["u"][:, 1:], whole, rtol=1e-5, atol=1e-5)


def test_the_solvers_have_a_time_budget(ckpt, tmp_path, capsys, monkeypatch):
    """k = 100 (in range) makes the sine-flux solver take ~10 s per initial condition: past the budget it
    is stopped, the prediction is written without a reference and the summary says why."""
    from lemon_pl.predict import limits

    monkeypatch.setattr(limits, "SOLVER_SECONDS", 0.5)
    out = tmp_path / "out"
    start = time.perf_counter()
    code, err, printed = _predict(ckpt, ["--family", "inviscid_conservation_sinflux", "--params", "k=100"], out, capsys)
    assert code == 0, err
    assert time.perf_counter() - start < 20
    assert "note: no reference: the inviscid_conservation_sinflux solver ran past the solvers' 0.5 s and was " \
           "stopped (--no-solver skips it)" in printed
    assert np.isnan(np.load(out / "prediction.npz")["u_ref"]).all()


def test_a_recognised_equation_outside_its_familys_range_is_predicted_without_its_solver(ckpt, tmp_path, capsys):
    out = tmp_path / "out"
    start = time.perf_counter()
    code, err, printed = _predict(ckpt, ["--equation", "u_t + 1000*u*u_x = 0", "--u0", "sin(pi*x)"], out, capsys)
    assert code == 0, err
    assert time.perf_counter() - start < 20  # the solver would need minutes at k = 1000
    assert "no reference: k = 1000 is outside inviscid_burgers's range 0.01 .. 100" in printed
    assert np.isnan(np.load(out / "prediction.npz")["u_ref"]).all()


# --------------------------------------------------------------------------- hostile files


def _write_h5(path: Path, **datasets):
    attrs = datasets.pop("attrs", {})
    with h5py.File(path, "w") as f:
        for name, value in datasets.items():
            if isinstance(value, tuple):  # a declared shape, nothing stored
                f.create_dataset(name, shape=value, dtype="f8")
            else:
                f[name] = value
        f.attrs.update(attrs)
    return path


def _engine_copy(ckpt, tmp_path: Path, name: str, edit) -> Path:
    import shutil

    path = tmp_path / name
    shutil.copy(ckpt["root"] / "heat" / "test.h5", path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def _hostile_files(ckpt, tmp_path: Path) -> dict[str, str]:
    good = np.random.default_rng(0).normal(size=(3, 64, 128))
    nan = good.copy()
    nan[1, 5, 7] = np.nan
    files = {
        "nan": _write_h5(tmp_path / "nan.h5", u=nan),
        "inf_t": _write_h5(tmp_path / "inf_t.h5", u=good, attrs={"t_final": np.inf}),
        "text_t": _write_h5(tmp_path / "text_t.h5", u=good, attrs={"t_final": "soon"}),
        "many": _write_h5(tmp_path / "many.h5", u=(10**9, 64, 128)),
        "grid": _write_h5(tmp_path / "grid.h5", u=(10**12, 10**6, 10**6)),
        "strings": _write_h5(tmp_path / "strings.h5", u=np.array([b"abc"] * 8).reshape(2, 2, 2)),
        "big_x": _write_h5(tmp_path / "big_x.h5", u=good, x=(10**9,)),
        "engine_params": _engine_copy(ckpt, tmp_path, "engine_params.h5",
                                      lambda f: f["params"].__setitem__((0, 0), 1e300)),
        "engine_nan": _engine_copy(ckpt, tmp_path, "engine_nan.h5",
                                   lambda f: f["params"].__setitem__((0, 0), np.nan)),
        "engine_t": _engine_copy(ckpt, tmp_path, "engine_t.h5", lambda f: f.attrs.__setitem__("t_final", -3.0)),
    }
    (tmp_path / "many.txt").write_bytes(b"u_t = 0.003*u_xx\n" * 1_000_000)
    (tmp_path / "300.txt").write_text("".join(f"u_t = {0.001 * (i + 1):.3g}*u_xx\n" for i in range(300)))
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00u_t = u_xx")
    (tmp_path / "flow.yaml").write_text("model: [\n  a: b\n")
    (tmp_path / "tab.yaml").write_text("model:\n\tnet: 1\n")
    (tmp_path / "list.yaml").write_text("- model\n- data\n")
    (tmp_path / "text.ckpt").write_text("hello\n")
    files.update({k: tmp_path / f for k, f in [("many_eqs", "many.txt"), ("eqs300", "300.txt"), ("binary", "binary.txt"),
                                               ("flow", "flow.yaml"), ("tab", "tab.yaml"), ("list", "list.yaml"),
                                               ("text_ckpt", "text.ckpt")]})
    return {k: str(v) for k, v in files.items()}


EQ = ["--equation", "u_t = 0.003*u_xx", "--u0", "x"]
FILES = [
    (["--equations", "{many_eqs}", "--u0", "x"], "--equations {many_eqs} holds 17000000 bytes; an equations file may "
                                                 "hold at most 1048576"),
    (["--equations", "{eqs300}", "--u0", "x"], "--equations {eqs300} holds 300 equations; one request predicts at most 256"),
    (["--equations", "{binary}", "--u0", "x"], "--equations {binary} is not UTF-8 text"),
    (["--equations", "/dev/zero", "--u0", "x"], "--equations /dev/zero is not a regular file"),
    (["--equations", "{dir}", "--u0", "x"], "--equations {dir} is not a regular file"),
    (EQ + ["--adapt", "{nan}"], "--adapt {nan}: trajectory 1 has NaN/Inf values"),
    (EQ + ["--adapt", "{inf_t}"], "--adapt {inf_t}: its t_final must be a physical time in 0.001 .. 1000, got inf"),
    (EQ + ["--adapt", "{text_t}"], "--adapt {text_t}: its t_final attribute ('soon') is not a number"),
    (EQ + ["--adapt", "{many}"], "--adapt {many} holds 1000000000 trajectories, more than a support set may have "
                                 "(1024); take the first ones with --support-size N"),
    (EQ + ["--adapt", "{grid}"], "--adapt {grid} holds nt=1000000 frames x nx=1000000 points, but the model works on "
                                 "nt=64 frames x nx=128 points"),
    (EQ + ["--adapt", "{strings}"], "--adapt {strings}: 'u' holds |S3 values, not numbers"),
    (EQ + ["--adapt", "{big_x}"], "--adapt {big_x}: dataset 'x' declares shape (1000000000,)"),
    (EQ + ["--adapt", "{nan}", "--adapt-operator", "1"], "--adapt-operator 1: {nan} is a support file of one equation"),
    (["--u0", "x", "--adapt", "{engine_params}"], "--adapt {engine_params}, operator 0: heat's nu=1e+300 is outside "
                                                  "its range 3e-05 .. 0.3"),
    (["--u0", "x", "--adapt", "{engine_nan}"], "--adapt {engine_nan}, operator 0: nu='nan' is not finite"),
    (["--u0", "x", "--adapt", "{engine_t}"], "--adapt {engine_t}: its t_final must be a physical time in 0.001 .. 1000"),
    (["--u0", "x", "--adapt", "{engine_t}", "--adapt-operator", "2"], "--adapt-operator 2: {engine_t} holds operators "
                                                                      "0..1"),
    (EQ + ["--run-config", "{flow}"], "--run-config {flow}: YAML syntax error (line 3, column 1): expected ',' or ']'"),
    (EQ + ["--run-config", "{tab}"], "--run-config {tab}: YAML syntax error (line 2, column 1): found character "
                                     "'\\t' that cannot start any token"),
    (EQ + ["--run-config", "{list}"], "--run-config {list}: the top level must be a mapping of keys to values, not a list"),
    (EQ + ["--run-config", "{dir}"], "--run-config {dir} is a directory, not a YAML file"),
    (EQ + ["--run-config", "/dev/zero"], "--run-config /dev/zero is not a regular file"),
    (EQ + ["--run-config", "{nan}"], "--run-config {nan}: not UTF-8 text"),
    (EQ + ["--run-config", "{eqs300}"], "--run-config {eqs300}: the top level must be a mapping of keys to values, "
                                        "not a string"),
    (EQ + ["--run-config", "{dir}/../hostile.yaml"], "--run-config {dir}/../hostile.yaml does not exist"),
    (EQ + ["--run-config", "{dir}/none.yaml"], "--run-config {dir}/none.yaml does not exist"),
]


@pytest.mark.parametrize("argv,expect", FILES, ids=[" ".join(e.split()[:3]) for _, e in FILES])
def test_hostile_input_files_are_one_line_naming_them(ckpt, tmp_path, capsys, argv, expect):
    fill = {**_hostile_files(ckpt, tmp_path), "dir": str(tmp_path)}
    argv = [a.format(**fill) for a in argv]
    start = time.perf_counter()
    code, err, _ = _predict(ckpt, argv, tmp_path / "out", capsys)
    _refused(code, err, tmp_path / "out", expect.format(**fill))
    assert time.perf_counter() - start < 10


@pytest.mark.parametrize("which,expect", [
    ("dir", "--ckpt_path {ckpt_dir} is a directory, not a checkpoint file (it holds last.ckpt)"),
    ("missing", "--ckpt_path {missing} does not exist"),
    ("text", "--ckpt_path {text} is not a readable checkpoint (not a PyTorch checkpoint"),
    ("hdf5", "--ckpt_path {hdf5} is not a readable checkpoint (it is an HDF5 file, not a PyTorch checkpoint)"),
    ("devzero", "--ckpt_path /dev/zero is not a regular file"),
])
def test_a_ckpt_path_that_is_no_checkpoint_is_one_line(ckpt, tmp_path, capsys, monkeypatch, which, expect):
    _no_model_built(monkeypatch)
    (tmp_path / "text.ckpt").write_text("hello\n")
    _write_h5(tmp_path / "w.h5", u=np.zeros((1, 2, 2)))
    paths = {"dir": ckpt["path"].parent, "missing": tmp_path / "none.ckpt", "text": tmp_path / "text.ckpt",
             "hdf5": tmp_path / "w.h5", "devzero": Path("/dev/zero")}
    out = tmp_path / "out"
    code = main(["predict", "--ckpt_path", str(paths[which]), "--run-config", str(ckpt["run"] / "config.yaml"),
                 "--family", "heat", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    _refused(code, err, out, expect.format(ckpt_dir=paths["dir"], missing=paths["missing"], text=paths["text"],
                                           hdf5=paths["hdf5"]))


def test_refusals_leave_a_previous_output_folder_byte_identical(ckpt, tmp_path, capsys):
    fill = _hostile_files(ckpt, tmp_path)
    out = tmp_path / "pred"
    code, err, _ = _predict(ckpt, ["--family", "heat"], out, capsys)
    assert code == 0, err
    before = _snapshot(out)
    for argv in (["--family", "kdv", "--params", "delta=1e300"], ["--family", "heat", "--num-ics", "100000"],
                 ["--family", "heat", "--device", "bogus"], EQ + ["--adapt", fill["many"]],
                 EQ + ["--run-config", fill["flow"]], ["--equations", fill["many_eqs"], "--u0", "x"]):
        code, err, _ = _predict(ckpt, argv, out, capsys)
        assert code == 2 and len(err) == 1 and err[0].startswith(PREFIX), (argv, err)
        assert _snapshot(out) == before, argv
        assert not [n for n in _siblings(out) if n.startswith(".pred")]


# --------------------------------------------------------------------------- all or nothing


def test_an_earlier_prediction_folder_is_replaced_whole(ckpt, tmp_path, capsys):
    out = tmp_path / "pred"
    assert _predict(ckpt, ["--family", "heat", "--num-ics", "3"], out, capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["prediction.npz", "prediction_000.png", "prediction_001.png",
                                                     "prediction_002.png"]
    assert _predict(ckpt, ["--family", "heat"], out, capsys)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == ["prediction.npz", "prediction.png"]  # no stale figure
    assert np.load(out / "prediction.npz")["u"].shape[0] == 1
    assert _siblings(out) == ["pred"]


def test_a_folder_holding_other_files_is_never_replaced(ckpt, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "prediction.npz").write_bytes(b"old")
    before = _snapshot(out)
    code, err, _ = _predict(ckpt, ["--family", "heat"], out, capsys)
    assert code == 2 and len(err) == 1
    assert f"--out {out} holds files lemon-pl predict did not write (notes.txt)" in err[0]
    assert _snapshot(out) == before
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _predict(ckpt, ["--family", "heat"], empty, capsys)[0] == 0
    assert sorted(p.name for p in empty.iterdir()) == ["prediction.npz", "prediction.png"]


@pytest.mark.parametrize("previous", [False, True])
def test_enospc_at_the_last_file_leaves_nothing_partial(ckpt, tmp_path, capsys, monkeypatch, previous):
    import lemon_pl.predict.outputs as outputs

    real = outputs._write_file
    calls = []

    def full_at_the_last(path, write):
        calls.append(path.name)
        if path.name == "prediction_002.png":  # the last of prediction.npz and three figures
            real(path, lambda fh: fh.write(b"x" * 1000))  # a partial file on disk ...
            raise OSError(errno.ENOSPC, "No space left on device")  # ... then the disk is full
        real(path, write)

    out = tmp_path / "deep" / "er" / "pred"
    if previous:
        assert _predict(ckpt, ["--family", "heat"], out, capsys)[0] == 0
        before = _snapshot(out)
    monkeypatch.setattr(outputs, "_write_file", full_at_the_last)
    code, err, _ = _predict(ckpt, ["--family", "heat", "--num-ics", "3"], out, capsys)
    assert calls == ["prediction.npz", "prediction_000.png", "prediction_001.png", "prediction_002.png"]
    assert code == 2 and len(err) == 1 and err[0].startswith(PREFIX), err
    assert f"the disk is full (no space left on device) while writing --out {out} (at " in err[0]
    assert "prediction_002.png); nothing was written" in err[0]
    if previous:
        assert err[0].endswith(f"the previous {out} is intact")
        assert _snapshot(out) == before
        assert _siblings(out) == ["pred"]  # no temporary folder left
    else:
        assert err[0].endswith(f"{out} was not created")
        assert not (tmp_path / "deep").exists()  # the parent folders made for it are gone too


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (needs root and mount permission; skipped otherwise)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_full_disk_is_one_line_and_leaves_the_previous_folder_intact(ckpt, tiny_disk, capsys):
    out = tiny_disk / "pred"
    code, err, _ = _predict(ckpt, ["--family", "heat"], out, capsys)  # ~90 kB: fits
    assert code == 0, err
    before = _snapshot(out)
    st = os.statvfs(tiny_disk)  # leave ~100 kB: three predictions with their figures need twice that
    (tiny_disk / "filler").write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - 100 * 1024))
    code, err, _ = _predict(ckpt, ["--family", "heat", "--num-ics", "3"], out, capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith(PREFIX), err
    assert f"the disk is full (no space left on device) while writing --out {out}" in err[0]
    assert err[0].endswith(f"nothing was written, the previous {out} is intact")
    assert _snapshot(out) == before
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "pred"]
    new = tiny_disk / "a" / "new"
    code, err, _ = _predict(ckpt, ["--family", "heat", "--num-ics", "3"], new, capsys)
    assert code == 2 and len(err) == 1 and "the disk is full" in err[0] and err[0].endswith(f"{new} was not created")
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler", "pred"]


def test_the_solver_budget_keeps_a_timer_already_running():
    """A test runner's SIGALRM timeout (pytest-timeout) survives the budget: re-armed afterwards."""
    import signal

    from lemon_pl.predict.run import SolverTimeout, time_limit

    fired = []
    previous = signal.signal(signal.SIGALRM, lambda *a: fired.append(1))
    signal.setitimer(signal.ITIMER_REAL, 100.0)
    try:
        with pytest.raises(SolverTimeout):
            with time_limit(0.05):
                while True:
                    sum(range(1000))
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 99.0 < remaining <= 100.0 and not fired
        assert signal.getsignal(signal.SIGALRM) is not None and signal.getsignal(signal.SIGALRM) != signal.SIG_DFL
        with time_limit(200.0):  # the runner's timer fires first: ours is not armed
            assert 99.0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 100.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="no /proc on this system")
def test_an_out_that_passes_permission_checks_but_takes_no_files_is_refused_first(ckpt, tmp_path, capsys):
    """os.access says yes to /proc (and to anything for root): the check creates a probe file to know,
    before the model runs."""
    code, err, _ = _predict(ckpt, ["--family", "heat"], Path("/proc/lemon_pred"), capsys)
    assert code == 2 and len(err) == 1
    assert err[0].endswith("--out /proc/lemon_pred: /proc is not writable (No such file or directory)"), err
