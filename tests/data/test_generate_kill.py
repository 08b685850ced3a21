"""SIGKILL at a random point of `lemon-pl generate`, then the same command: bit-identical files."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from tests.conftest import REPO

FAMILIES = "heat,kdv,burgers,cahnhilliard_1D"


def _cmd(root):
    return [sys.executable, "-m", "lemon_pl.cli", "generate", "--preset", "tiny", "--families", FAMILIES,
            "--root", str(root), "--no-progress"]


def _arrays(root):
    out = {}
    for path in sorted(root.rglob("*.h5")):
        with h5py.File(path, "r") as f:
            for k in ("u", "params", "tokens"):
                out[f"{path.relative_to(root)}/{k}"] = f[k][()]
    return out


def _kill_while_writing(run, env, delay):
    """Start the command, wait `delay` s after its first partial file, then SIGKILL it the next moment
    a partial file exists. False when the run finished first (nothing to test: the caller retries)."""
    proc = subprocess.Popen(_cmd(run), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(run.rglob("*.partial")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    while proc.poll() is None and not list(run.rglob("*.partial")):
        time.sleep(0.002)  # between two files: wait for the next one to open
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    return killed and bool(list(run.rglob("*.partial")))


@pytest.mark.slow  # three generations, ~40 s a seed (the default suite keeps test_generate_faults' resumes)
@pytest.mark.parametrize("seed", [0, 1])
def test_sigkill_at_a_random_point_then_rerun_is_bit_identical(seed, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    ref, run = tmp_path / "ref", tmp_path / "run"
    subprocess.run(_cmd(ref), env=env, check=True, capture_output=True, timeout=300)
    delay = random.Random(seed).uniform(0.0, 0.6)
    for _ in range(6):  # a fast machine may finish before a long delay: halve it and start afresh
        shutil.rmtree(run, ignore_errors=True)
        if _kill_while_writing(run, env, delay):
            break
        delay /= 2
    else:
        pytest.fail("every run finished before the kill, even with no delay")
    res = subprocess.run(_cmd(run), env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert not list(run.rglob("*.partial"))
    a, b = _arrays(ref), _arrays(run)
    assert a.keys() == b.keys() and a
    for k in a:
        assert np.array_equal(a[k], b[k]), k
