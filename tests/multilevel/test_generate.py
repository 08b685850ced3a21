"""``lemon-pl generate --levels``: one root per level, nested inputs, measured costs, resumable files."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

from lemon_pl.cli import main
from lemon_pl.multilevel.families import MAP_FAMILIES, level_view
from lemon_pl.multilevel.generate import solve_chunk
from lemon_pl.data.transfer import interpolate, restrict

LEVELS = [32, 64, 128]


def _gen(root, families, *extra, workers=1):
    return main(["generate", "--root", str(root), "--preset", "tiny", "--families", families, "--levels",
                 ",".join(map(str, LEVELS)), "--no-progress", "--workers", str(workers), *extra])


@pytest.fixture(scope="module")
def levels_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("levels")
    assert _gen(root, "schrodinger,rough_elliptic,inviscid_burgers", "--nt", "2", "--gamma", "0", "--k", "16",
                "--n-operators", "2", "--splits", "train,val") == 0
    return root


def _read(path, *names):
    with h5py.File(path, "r") as f:
        return [f[n][()] for n in names] + [dict(f.attrs)]


@pytest.mark.parametrize("family", ["schrodinger", "rough_elliptic"])
def test_map_levels_share_inputs_and_hold_what_the_solver_gives(levels_root, family):
    fine_inputs = None
    for n in LEVELS:
        fine, coarse, u, seconds, attrs = _read(levels_root / f"n{n}" / family / "train.h5", "inputs_fine", "inputs",
                                                "u", "solve_seconds")
        assert attrs["level_grid"] == n and attrs["finest_grid"] == LEVELS[-1] and attrs["complete"]
        if fine_inputs is None:
            fine_inputs = fine
        np.testing.assert_array_equal(fine, fine_inputs)  # nested levels: the same inputs everywhere
        # the file holds exactly what the seeded chunk solve gives (inputs restricted, then solved)
        ref = solve_chunk(family, int(attrs["seed"]), "train", 0, int(attrs["chunk"]), n, LEVELS[-1],
                          str(attrs["restriction"]))
        for got, want in zip((fine[0], coarse[0], u[0]), ref[:3]):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_allclose(coarse[0], MAP_FAMILIES[family].restrict(fine[0].astype(float), n), rtol=1e-6)
        # cost accounting: the recorded seconds per sample are the measured solve times over the samples
        assert np.all(seconds > 0)
        assert attrs["seconds_per_sample"] == pytest.approx(seconds.sum() / (u.shape[0] * u.shape[1]))


def test_engine_levels_solve_from_the_restricted_fine_initial_condition(levels_root):
    first = None
    for n in LEVELS:
        path = levels_root / f"n{n}" / "inviscid_burgers" / "train.h5"
        u, solve_s, attrs = _read(path, "u", "solve_seconds")
        with h5py.File(path, "r") as f:
            u0_fine = f["u0_fine"][()] if "u0_fine" in f else u[:, :, 0]
        first = u0_fine if first is None else first
        np.testing.assert_array_equal(u0_fine, first)
        np.testing.assert_allclose(u[:, :, 0], restrict(u0_fine.astype(float), n, "periodic_cells", "average"),
                                   atol=2e-6)
        assert attrs["seconds_per_sample"] == pytest.approx(solve_s.sum() / (u.shape[0] * u.shape[1]))


@pytest.mark.parametrize("family", ["schrodinger", "rough_elliptic", "inviscid_burgers"])
def test_coarse_labels_converge_to_the_finest(levels_root, family):
    """Each level's labels, brought to the finest grid, are closer to the finest labels than the
    level below's: the solvers converge across levels."""
    from lemon_pl.multilevel.data import read_level

    view = level_view(family)
    labels = [interpolate(read_level(levels_root / f"n{n}" / family / "train.h5", None, False)[1], LEVELS[-1],
                          view.grid, "linear" if family == "inviscid_burgers" else None) for n in LEVELS]
    errs = [np.linalg.norm(y - labels[-1]) / np.linalg.norm(labels[-1]) for y in labels[:-1]]
    assert errs[1] < errs[0] and errs[0] > 0


@pytest.mark.slow
def test_output_does_not_depend_on_the_worker_count(tmp_path, levels_root):
    assert _gen(tmp_path, "schrodinger,inviscid_burgers", "--nt", "2", "--gamma", "0", "--k", "16",
                "--n-operators", "2", "--splits", "train", workers=2) == 0
    for fam in ("schrodinger", "inviscid_burgers"):
        for n in LEVELS:
            a, b = (r / f"n{n}" / fam / "train.h5" for r in (levels_root, tmp_path))
            np.testing.assert_array_equal(_read(a, "u")[0], _read(b, "u")[0])


def test_damaged_map_file_is_repaired_bit_identically(tmp_path, capsys):
    assert _gen(tmp_path, "schrodinger", "--splits", "train", "--n-samples", "192") == 0
    path = tmp_path / "n64" / "schrodinger" / "train.h5"
    want = _read(path, "u")[0]
    with h5py.File(path, "r+") as f:  # a flipped value: the chunk's checksum no longer matches
        f["u"][1, 0, 0] += 1.0
    assert _gen(tmp_path, "schrodinger", "--splits", "train", "--n-samples", "192") == 0
    err = capsys.readouterr().err
    assert "warning:" in err and str(path) in err  # the damage is reported, naming the file
    np.testing.assert_array_equal(_read(path, "u")[0], want)
    assert not list(tmp_path.rglob("*.partial"))


def test_interrupted_map_file_resumes(tmp_path):
    assert _gen(tmp_path, "rough_elliptic", "--splits", "train", "--n-samples", "192") == 0
    path = tmp_path / "n128" / "rough_elliptic" / "train.h5"
    want = _read(path, "u")[0]
    partial = path.with_name("train.h5.partial")
    os.replace(path, partial)  # as if killed before the last chunk
    with h5py.File(partial, "r+") as f:
        f["op_done"][2] = False
        f.attrs["complete"] = False
    assert _gen(tmp_path, "rough_elliptic", "--splits", "train", "--n-samples", "192") == 0
    np.testing.assert_array_equal(_read(path, "u")[0], want)
    assert not partial.exists()


@pytest.mark.parametrize("args,needle", [
    (["--levels", "32,48"], "not a multiple"),
    (["--levels", "32,64", "--n-samples", "1,2,3"], "3 counts for 2 levels"),
    (["--levels", "4,8"], "at least 8"),
    (["--levels", "32,64", "--restriction", "harmonic", "--families", "heat"], "--restriction"),
    (["--levels", "32,x"], "comma-separated integers"),
])
def test_bad_level_arguments_give_one_line_and_write_nothing(tmp_path, capsys, args, needle):
    argv = ["generate", "--root", str(tmp_path / "r"), "--preset", "tiny", "--no-progress"]
    if "--families" not in args:
        argv += ["--families", "schrodinger"]
    assert main(argv + args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lemon-pl generate: error:") and needle in err and len(err.splitlines()) == 1
    assert not list((tmp_path).rglob("*.h5*"))


def test_generation_benchmark_prints_the_cost_exponent_per_family():
    import subprocess
    import sys

    from tests.conftest import REPO

    res = subprocess.run([sys.executable, str(REPO / "benchmarks" / "generate_throughput.py"), "--levels", "16,32,64",
                          "--batch", "4", "--repeats", "1", "--level-families", "schrodinger,inviscid_burgers"],
                         capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"},
                         cwd=str(REPO))
    assert res.returncode == 0, res.stderr[-1000:]
    rows = [line.split() for line in res.stdout.splitlines() if line.startswith(("schrodinger", "inviscid_burgers"))]
    assert len(rows) == 2
    for row in rows:
        costs = [float(v.rstrip("m")) for v in row[1:4]]
        assert all(c > 0 for c in costs) and -1 < float(row[4]) < 4  # a fitted exponent, not a constant
