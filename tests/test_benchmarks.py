"""The benchmark scripts: the GPU suite's shell and summary, the training benchmark's batches."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO

BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))


def test_gpu_suite_is_valid_bash_and_passes_shellcheck():
    suite = BENCH / "gpu_suite.sh"
    assert subprocess.run(["bash", "-n", str(suite)], capture_output=True).returncode == 0
    beside_python = Path(sysconfig.get_path("scripts")) / "shellcheck"
    exe = str(beside_python) if beside_python.is_file() else shutil.which("shellcheck")
    if exe is None:
        pytest.skip("shellcheck not found")
    proc = subprocess.run([exe, str(suite)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_gpu_suite_time_limits_fit_in_eight_minutes():
    text = (BENCH / "gpu_suite.sh").read_text()
    limits = [int(t.split()[0]) for t in text.split("timeout ")[1:] if t.split()[0].isdigit()]
    assert len(limits) >= 6 and sum(limits) <= 7.7 * 60


@pytest.mark.slow  # starts python and torch in a subprocess
def test_gpu_suite_refuses_without_cuda(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    proc = subprocess.run(["bash", str(BENCH / "gpu_suite.sh")], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable, "GPU_SUITE_OUT": str(tmp_path)})
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr


def test_gpu_summary_table(tmp_path):
    from gpu_summary import main

    run = dict(variant="app_bf16", batch=128, ms=100.0, gflops=400e3, peak_mb=9000.0)
    (tmp_path / "train_prose.json").write_text(json.dumps({
        "peak": {"peak": {"bfloat16": {"8192": 800e3}, "float32": {"8192": 50e3}}},
        "results": {"prose_paper/app_bf16": [run], "prose_paper/app": [{"error": "timed out"}]}}))
    (tmp_path / "generate.json").write_text(json.dumps({"families": {
        "heat": {"torch_float32": {"traj_per_s": 2e5, "batch": 4096}},
        "burgers": {"torch_float32": {"traj_per_s": 5e3, "batch": 4096}}}}))
    (tmp_path / "gpu_tests.txt").write_text("3 passed in 2.0s\n")
    main([str(tmp_path), "--peak-tflops", "1000"])
    text = (tmp_path / "summary.md").read_text()
    assert "| prose_paper/app_bf16" in text and "40.0% / 50.0%" in text and "1280" in text
    assert "timed out" in text
    assert "PASS" in text.split("generate heat")[1].splitlines()[0]
    assert "MISS" in text.split("generate burgers")[1].splitlines()[0]
    assert "3 passed" in text


def test_training_benchmark_batches_group_operators():
    import torch

    from _common import family_token_lengths
    from train_throughput import synthetic_batch

    lengths = family_token_lengths()
    assert len(lengths) == 19 and min(lengths) >= 5 and max(lengths) <= 64
    u_in, t_in, t_out, tokens, pad, target = synthetic_batch(10, 5, torch.device("cpu"), lengths)
    assert tokens.shape[0] == 10 and len(torch.unique(tokens, dim=0)) == 2
    assert torch.equal(pad, tokens == 2)
    _, _, _, tokens1, pad1, _ = synthetic_batch(10, 1, torch.device("cpu"), lengths)
    assert len(torch.unique(tokens1, dim=0)) == 10
    # each equation is as long as some family's, padded to the longest of the batch
    real = (~pad1).sum(1).tolist()
    assert set(real) <= set(lengths) and tokens1.shape[1] == max(real)


def test_training_benchmark_counts_forward_flops_by_part():
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    import lemon_pl.models as models
    from _common import family_token_lengths
    from train_throughput import _forward_flops_by_part, synthetic_batch

    inputs = synthetic_batch(10, 5, torch.device("cpu"), family_token_lengths())[:5]
    small = dict(nx=128, d_model=32, n_heads=2, dim_ffn=64, pack_tokens=False)
    per_sample, shared = (_forward_flops_by_part(models.Prose(**small, share_equation=s), inputs, False,
                                                 torch.device("cpu")) for s in (False, True))
    assert set(per_sample) == {"embedder", "data_encoder", "symbol_encoder", "fusion", "decoder"}
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        models.Prose(**small, share_equation=False)(*inputs)
    assert sum(per_sample.values()) == pytest.approx(counter.get_total_flops() / 1e9, rel=1e-12)
    # 2 operators x 5 trajectories: the equation encoded twice instead of ten times, nothing else changes
    assert per_sample["symbol_encoder"] > 0
    assert shared["symbol_encoder"] * 5 == pytest.approx(per_sample["symbol_encoder"], rel=1e-12)
    assert all(shared[k] == per_sample[k] for k in per_sample if k != "symbol_encoder")
