"""Issue 22: no user string runs as code and no user number hangs, at every place `lemon-pl predict`
reads math: --equation, an --equations file, --u0 (the support file's equation attribute is in
test_predict_cli.py, which has a trained checkpoint). Each payload gets one `lemon-pl predict:
error:` line naming the flag or file, exit 2, nothing written, no side effect, in well under a second."""

from __future__ import annotations

import time

import pytest

from lemon_pl.cli import main
from tests.payloads import HUGE, INJECTIONS

EQUATION_PAYLOADS = [f"u_t + {p}*u_x = 0" for p in INJECTIONS + HUGE] + [
    "u_t + 9^9^9^9*u_x = 0",  # the hang of issue 22
    "u_t" + " + u" * 990 + " = 0",
    "u_t = sin(" * 60 + "u" + ")" * 60,
]


@pytest.fixture(scope="module", autouse=True)
def _imports_done():
    """The first call imports torch and Lightning (seconds); the timings are of the refusals."""
    import lemon_pl.cli.predict  # noqa: F401
    import lemon_pl.predict.model  # noqa: F401
    import lemon_pl.predict.run  # noqa: F401
    from lemon_pl.predict.parse import parse_equation

    parse_equation("u_t = 0")


def _run(argv, tmp_path, capsys, monkeypatch) -> tuple[int, list[str], float]:
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    # the checkpoint does not exist: every payload must be refused before anything is loaded
    code = main(["predict", "--ckpt_path", str(tmp_path / "never_loaded.ckpt"), *argv, "--out", str(tmp_path / "out")])
    took = time.perf_counter() - start
    err = capsys.readouterr().err.strip().splitlines()
    return code, err, took


def _assert_refused(code, err, took, tmp_path, flag):
    assert code == 2
    assert len(err) == 1 and err[0].startswith("lemon-pl predict: error: "), err
    assert flag in err[0] and "never_loaded.ckpt" not in err[0]
    assert took < 2.0
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["eqs.txt"])  # no PWNED, no out/


@pytest.mark.parametrize("payload", INJECTIONS + HUGE)
def test_u0_payloads_are_refused_before_anything_is_loaded(payload, tmp_path, capsys, monkeypatch):
    code, err, took = _run(["--equation", "u_t + 0.5*u_x = 0", "--u0", payload], tmp_path, capsys, monkeypatch)
    _assert_refused(code, err, took, tmp_path, "--u0")


@pytest.mark.parametrize("payload", EQUATION_PAYLOADS)
def test_equation_payloads_are_refused(payload, tmp_path, capsys, monkeypatch):
    code, err, took = _run(["--equation", payload, "--u0", "sin(pi*x)"], tmp_path, capsys, monkeypatch)
    _assert_refused(code, err, took, tmp_path, "--equation: ")


@pytest.mark.parametrize("payload", EQUATION_PAYLOADS[::4])
def test_equations_file_payloads_name_the_file_and_line(payload, tmp_path, capsys, monkeypatch):
    eqs = tmp_path / "eqs.txt"
    eqs.write_text("u_t + 0.5*u_x = 0\n" + payload.replace("\n", " ") + "\n")
    code, err, took = _run(["--equations", str(eqs), "--u0", "sin(pi*x)"], tmp_path, capsys, monkeypatch)
    _assert_refused(code, err, took, tmp_path, f"{eqs}:2: ")
