"""benchmarks/pinn_step.py --quick runs to the end, prints its ratio lines (four comparisons and the
derivative engine's rows) and writes its JSON."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

SCRIPT = REPO / "benchmarks" / "pinn_step.py"
KEYS = ["pinn/phase2", "loop/batched", "func/autograd", "1thr/2thr"]
ENGINE_KEYS = [f"engine/{k}/{n}thr" for k in "abc" for n in (1, 2)]


# --quick takes ~30 s on 2 CPU cores, most of it the two fresh processes (torch + lightning
# imports) of the 1-vs-2-threads comparison
@pytest.mark.slow
def test_pinn_benchmark_quick(tmp_path):
    out = tmp_path / "pinn_step.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch " in proc.stdout and "load average before" in proc.stdout and "load average after" in proc.stdout
    ratios = dict(re.findall(r"^ratio (\S+) = ([0-9.]+)x", proc.stdout, flags=re.M))
    assert sorted(ratios) == sorted(KEYS + ENGINE_KEYS), proc.stdout
    assert all(float(v) > 0 for v in ratios.values())
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert [r["key"] for r in rows] == KEYS + ENGINE_KEYS
    assert (rows[0]["a_trainable"], rows[0]["b_trainable"]) == (10_401, 351)
    assert rows[1]["grad_rel_diff"] < 1e-4  # the loop and the batched step compute the same loss
    assert rows[2]["residual_max_diff"] < 1e-3  # torch.func and autograd give the same residual
    assert rows[3]["worker_threads"] == {"1": 1, "2": 2}
    for r in rows[4:]:  # the engine variants compute the same loss
        assert r["loss_rel_gap"] < 1e-5 and r["threads"] in (1, 2)
    for r in rows:
        assert r["a_min"] <= r["a_ms"] <= r["a_max"] and r["b_min"] <= r["b_ms"] <= r["b_max"]
