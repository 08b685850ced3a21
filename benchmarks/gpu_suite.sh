#!/usr/bin/env bash
# The GPU suite: one call, under 8 minutes on one H100/H200 (the sections' time limits add up to
# 7 min 40 s), one table at the end.
#
#   bash benchmarks/gpu_suite.sh                 # results in $OUT (if set) or runs/gpu_suite/
#   PYTHON=python3 GPU_SUITE_OUT=/tmp/s bash benchmarks/gpu_suite.sh
#
# Sections (each under its own time limit, so one that hangs cannot eat the others' time):
#   1. paper-size Prose train step: fp32 and bf16-mixed, eager and torch.compile
#      (samples/s, counted FLOPs, MFU against the measured and the nominal peak, peak memory);
#      the operator-grouped batch (2 operators x 5 trajectories) beside it
#   2. FNO and DeepONet train steps (fp32, bf16)
#   3. the first-order meta step and its vmap variant (benchmarks/meta_step.py)
#   4. torch-solver generation per family (trajectories/s, float32 and float64)
#   5. the tests marked gpu
# then benchmarks/gpu_summary.py prints the table and writes summary.md beside the JSON files.
# It runs from the checkout with PYTHONPATH (no install), as on a machine without internet.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
PY=${PYTHON:-python3}
DEST=${GPU_SUITE_OUT:-${OUT:-runs/gpu_suite}}
mkdir -p "$DEST"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 WANDB_MODE=disabled
# nominal dense bf16 peak of an H100/H200 SXM (TFLOP/s); the measured one is printed beside it
PEAK=${PEAK_TFLOPS:-989}
start=$(date +%s)

section() { echo; echo "=== $1 ($(( $(date +%s) - start )) s into the suite)"; }

section "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "nvidia-smi unavailable"
"$PY" - <<'EOF' | tee "$DEST/env.txt"
import subprocess, torch
sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, device {name}, commit {sha or '?'}")
EOF
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_suite: error: torch sees no CUDA device; nothing to measure" >&2
  exit 2
fi

section "1. Prose paper size: fp32 / bf16-mixed, eager / compile"
timeout 190 "$PY" benchmarks/train_throughput.py --device cuda --rows prose_paper \
  --variants app app_bf16 app_compile app_bf16_compile --baseline app --rounds 1 --warmup 5 --steps 20 \
  --batch 128 --peak-tflops "$PEAK" --json "$DEST/train_prose.json" || echo "section 1 ended early (rc $?)"
timeout 70 "$PY" benchmarks/train_throughput.py --device cuda --rows prose_paper_g5 prose_paper_no_text \
  --variants app app_bf16 --baseline app --rounds 1 --warmup 3 --steps 20 --batch 128 --peak-tflops "$PEAK" \
  --json "$DEST/train_prose_more.json" || echo "section 1b ended early (rc $?)"

section "2. FNO and DeepONet"
timeout 35 "$PY" benchmarks/train_throughput.py --device cuda --rows fno deeponet --variants app app_bf16 \
  --baseline app --rounds 1 --warmup 3 --steps 30 --batch 256 --json "$DEST/train_operators.json" \
  || echo "section 2 ended early (rc $?)"

section "3. meta step"
timeout 45 "$PY" benchmarks/meta_step.py --device cuda --quick --sections overhead vmap --models prose \
  --json "$DEST/meta.json" || echo "section 3 ended early (rc $?)"

section "4. torch-solver generation"
# every family with a torch solver; 16,000 trajectories per batch (320 operators x 50), 2 rounds
timeout 90 "$PY" benchmarks/generate_throughput.py --solvers --device cuda --solver-families all --rounds 2 \
  --numpy-operators 1 --json "$DEST/generate.json" || echo "section 4 ended early (rc $?)"

section "5. tests marked gpu"
timeout 30 "$PY" -m pytest -q -p no:cacheprovider -m gpu -o addopts="" --continue-on-collection-errors tests 2>&1 | tee "$DEST/gpu_tests.txt" | tail -15
echo "gpu tests rc ${PIPESTATUS[0]}" >> "$DEST/gpu_tests.txt"

section "summary"
"$PY" benchmarks/gpu_summary.py "$DEST" --peak-tflops "$PEAK"
echo "suite wall time $(( $(date +%s) - start )) s"
