"""Initial conditions (expression, .npy, sampler) and support files, checked against the model's grid."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest

from lemon_pl.data import ics
from lemon_pl.data.families import get_family
from lemon_pl.predict.initial import InitialConditionError, initial_conditions
from lemon_pl.predict.support import SupportFileError, read_support

NX, NT = 64, 16


def test_expression_is_evaluated_at_the_cell_centres_of_the_periodic_domain():
    ic = initial_conditions("exp(-20*(x-1)**2) + 0.1*sin(pi*x)^2", NX)
    x = (np.arange(NX) + 0.5) * 2 / NX
    np.testing.assert_allclose(ic.u0[0], np.exp(-20 * (x - 1) ** 2) + 0.1 * np.sin(np.pi * x) ** 2, rtol=1e-14)
    assert ic.u0.shape == (1, NX) and ic.labels == ["exp(-20*(x-1)**2) + 0.1*sin(pi*x)^2"]
    assert ic.warnings == []  # periodic on [0, 2) up to 1e-6 (the Gaussian is 1e-9 at the ends)
    const = initial_conditions("0.5", NX)
    assert np.all(const.u0 == 0.5) and const.warnings == []


def test_a_non_periodic_expression_warns():
    ic = initial_conditions("x", NX)
    assert len(ic.warnings) == 1 and "not periodic on [0, 2): u0(0) = 0, u0(2) = 2" in ic.warnings[0]
    assert initial_conditions("sin(pi*x)", NX).warnings == []
    assert initial_conditions("cos(pi*x/2)", NX).warnings  # period 4


@pytest.mark.parametrize("spec,expect", [
    ("foo(x)", "unknown name 'foo'"),
    ("__import__('os')", "unknown name '__import__'"),
    ("log(x - 1)", "is not finite on the grid"),
    ("sqrt(x - 1)", "is not finite on the grid (at x = 0.01562)"),
    ("x[0]", "the symbol '[' is not allowed"),
])
def test_bad_expressions(spec, expect):
    with pytest.raises(InitialConditionError, match=re.escape(expect)):
        initial_conditions(spec, NX)


def test_npy_files_are_checked_against_the_grid(tmp_path):
    good = np.sin(np.pi * ics.grid(NX))[None].repeat(3, 0) * np.arange(1, 4)[:, None]
    np.save(tmp_path / "three.npy", good)
    ic = initial_conditions(str(tmp_path / "three.npy"), NX)
    np.testing.assert_array_equal(ic.u0, good)
    assert ic.labels == ["three.npy[0]", "three.npy[1]", "three.npy[2]"] and ic.warnings == []
    np.save(tmp_path / "short.npy", good[0, :50])
    with pytest.raises(InitialConditionError, match=r"short.npy holds 50 points .* nx=64 cell centres"):
        initial_conditions(str(tmp_path / "short.npy"), NX)
    np.save(tmp_path / "nan.npy", np.where(np.arange(NX) == 5, np.nan, 1.0))
    with pytest.raises(InitialConditionError, match="nan.npy: initial condition 0 has NaN/Inf"):
        initial_conditions(str(tmp_path / "nan.npy"), NX)
    with pytest.raises(InitialConditionError, match="missing.npy does not exist"):
        initial_conditions(str(tmp_path / "missing.npy"), NX)
    np.save(tmp_path / "ramp.npy", ics.grid(NX))
    warn = initial_conditions(str(tmp_path / "ramp.npy"), NX).warnings
    assert len(warn) == 1 and "ramp.npy is not periodic" in warn[0]


def test_samplers_use_one_seed():
    a = initial_conditions("init_multi", NX, seed=3, n=4)
    np.testing.assert_array_equal(a.u0, ics.init_multi(np.random.default_rng(3), 4, NX))
    b = initial_conditions("init_multi", NX, seed=4, n=4)
    assert not np.allclose(a.u0, b.u0)
    fam = get_family("kdv")
    c = initial_conditions("family", NX, seed=3, n=2, family=fam)
    np.testing.assert_array_equal(c.u0, fam.sample_initial_conditions(np.random.default_rng(3), 2, NX))
    with pytest.raises(InitialConditionError, match="--u0 family needs an equation of a known family"):
        initial_conditions("family", NX)


def _support(path, u, **attrs):
    with h5py.File(path, "w") as f:
        f["u"] = u
        for k, v in attrs.items():
            if k in ("x", "t"):
                f[k] = v
            else:
                f.attrs[k] = v
    return path


def test_support_file_format(tmp_path):
    fam = get_family("heat")
    u = fam.solve({"nu": 0.003}, fam.sample_initial_conditions(np.random.default_rng(0), 3, NX), nt=NT)
    path = _support(tmp_path / "s.h5", u, t=fam.t_grid(NT), x=ics.grid(NX), equation="u_t = 0.003*u_xx")
    sup = read_support(path, NT, NX)
    np.testing.assert_array_equal(sup.u, u)
    assert sup.t_final == pytest.approx(2.0) and sup.equation == "u_t = 0.003*u_xx"
    assert len(read_support(path, NT, NX, size=2).u) == 2
    with pytest.raises(SupportFileError, match=r"s.h5 holds nt=16 frames x nx=64 points, but the model works on nt=32"):
        read_support(path, 32, NX)
    bad_x = _support(tmp_path / "x.h5", u, x=ics.grid(NX) + 0.01)
    with pytest.raises(SupportFileError, match="x.h5: 'x' is not the grid"):
        read_support(bad_x, NT, NX)
    clash = _support(tmp_path / "t.h5", u, t=fam.t_grid(NT), t_final=1.0)
    with pytest.raises(SupportFileError, match=r"t.h5: its t_final attribute \(1\) and its 't' \(frames to 2\) disagree"):
        read_support(clash, NT, NX)
    with pytest.raises(SupportFileError, match="no dataset 'u'"):
        with h5py.File(tmp_path / "empty.h5", "w"):
            pass
        read_support(tmp_path / "empty.h5", NT, NX)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(SupportFileError, match="text.h5 is not a readable HDF5 file"):
        read_support(tmp_path / "text.h5", NT, NX)


def test_data_engine_files_are_support_files(tmp_path):
    from lemon_pl.data.generate import generate
    from lemon_pl.data.io import open_split

    generate(tmp_path, "tiny", ["heat"], splits=["test"], nx=NX, nt=NT, progress=False)
    split = open_split(tmp_path, "heat", "test")
    sup = read_support(split.path, NT, NX, operator=1)
    np.testing.assert_array_equal(sup.u, split.operator(1))
    assert sup.family == "heat" and sup.params == {"nu": float(split.params[1, 0])} and sup.t_final == 2.0
    with pytest.raises(SupportFileError, match="--adapt-operator 9: .* holds operators 0..1"):
        read_support(split.path, NT, NX, operator=9)


def test_a_fifo_named_like_an_array_is_refused_without_opening_it(tmp_path):
    """A FIFO (or a device) named *.npy would block the first read: refused by the up-front check."""
    import os

    from lemon_pl.predict.initial import check_spec

    fifo = tmp_path / "ic.npy"
    os.mkfifo(fifo)
    with pytest.raises(InitialConditionError, match=re.escape(f"--u0 {fifo} is not a regular file")):
        check_spec(str(fifo))
    with pytest.raises(InitialConditionError, match=re.escape(f"--u0 {fifo} is not a regular file")):
        initial_conditions(str(fifo), NX)
    with pytest.raises(InitialConditionError, match="does not exist"):
        check_spec(str(tmp_path / "missing.npy"))
