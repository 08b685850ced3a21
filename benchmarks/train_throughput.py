#!/usr/bin/env python
"""Training-throughput benchmark for the LeMON models.

One training step = forward (random equation tokens of length ~20, 32 query
times), MSE loss, backward, AdamW step.  Warm-up steps are excluded from the
timing; ms/step is the median over the timed steps (the mean is shown too).  Each configuration runs in a fresh subprocess so that the peak memory
figure (CPU: peak RSS from ``resource.getrusage``; CUDA:
``torch.cuda.max_memory_allocated``) belongs to that configuration alone and
``torch.compile`` caches don't leak between rows.

Examples::

    python benchmarks/train_throughput.py --quick             # ~2-3 min on 2 CPU cores
    python benchmarks/train_throughput.py --quick --repeat 2  # best of 2 runs per row (noisy machine)
    python benchmarks/train_throughput.py --device cuda --steps 50
    python benchmarks/train_throughput.py --only prose_small --modes eager --precisions fp32

Reference figures (reference implementation, 2-core CPU, fp32, eager):
Prose paper size, batch 8: 7.1 samples/s, 1,133 ms/step, 1.6 GB peak RSS;
Prose d=128 / 2 layers per block / 4 heads, batch 32: 323 samples/s.
Target: >= 1.5x those.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_runner_args, resolve_device  # noqa: E402

NX = 128
N_OUT = 32
TOKEN_LEN = 20
VOCAB = 1098
PAD_ID = 2

CONFIGS = {
    # name: (class name, constructor kwargs, batch size)
    "prose_small": (
        "Prose",
        dict(d_model=128, n_heads=4, dim_ffn=512, n_data_layers=2, n_symbol_layers=2, n_fusion_layers=2,
             n_decoder_layers=2),
        32,
    ),
    "prose_paper": (
        "Prose",
        dict(d_model=512, n_heads=8, dim_ffn=2048, n_data_layers=2, n_symbol_layers=4, n_fusion_layers=8,
             n_decoder_layers=8),
        8,
    ),
    "deeponet": ("DeepONet", dict(basis_dim=100, hidden=256, trunk_layers=4), 32),
    "fno": ("FNO", dict(modes=16, width=64, n_layers=4), 32),
}

# reference: (samples/s, ms/step, peak MB) on 2-core CPU, fp32; None = not given
REFERENCE = {
    "prose_paper": (7.1, 1133.0, 1600.0),
    "prose_small": (323.0, None, None),
}
TARGET_RATIO = 1.5


# ----------------------------------------------------------------------------- worker
def _peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        # Linux reports KiB, macOS bytes
        return rss / 2**20 if sys.platform == "darwin" else rss / 2**10
    except Exception:  # pragma: no cover - non-POSIX
        try:
            import psutil

            return psutil.Process().memory_info().rss / 2**20
        except Exception:
            return float("nan")


def run_one(spec: dict) -> dict:
    """Benchmark one (config, mode, precision) combination; returns a result dict."""
    import torch
    import torch.nn.functional as F

    import lemon_pl.models as models

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    device = torch.device(spec["device"])
    cls_name, kwargs, batch = CONFIGS[spec["config"]]
    batch = spec.get("batch") or batch
    cls = getattr(models, cls_name)
    data = dict(nx=NX, input_len=1, output_len=N_OUT, vocab_size=VOCAB, pad_id=PAD_ID)
    model = cls(**models.taken_arguments(cls, data), **kwargs).to(device)
    n_params = models.count_parameters(model)
    adamw_kw = {"fused": True} if spec["fused_adamw"] else {}
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, **adamw_kw)

    g = torch.Generator().manual_seed(0)
    u_in = torch.randn(batch, 1, NX, generator=g).to(device)
    t_in = torch.zeros(1, device=device)
    t_out = ((2 * torch.arange(N_OUT) + 1) / 32.0).to(device)
    target = torch.randn(batch, N_OUT, NX, generator=g).to(device)
    tokens = torch.randint(PAD_ID + 1, VOCAB, (batch, TOKEN_LEN), generator=g)
    lengths = torch.randint(TOKEN_LEN - 6, TOKEN_LEN + 1, (batch,), generator=g)
    pad_mask = torch.arange(TOKEN_LEN).unsqueeze(0) >= lengths.unsqueeze(1)
    tokens = tokens.masked_fill(pad_mask, PAD_ID).to(device)
    pad_mask = pad_mask.to(device)

    fwd = model
    if spec["mode"] == "compile":
        fwd = torch.compile(model)
    use_bf16 = spec["precision"] == "bf16"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16):
            out = fwd(u_in, t_in, t_out, tokens, pad_mask)
            loss = F.mse_loss(out.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    t_compile = time.perf_counter()
    for _ in range(spec["warmup"]):
        loss = step()
    sync()
    warmup_s = time.perf_counter() - t_compile
    if not torch.isfinite(loss).item():
        raise RuntimeError(f"non-finite loss {loss.item()}")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    t_all = time.perf_counter()
    for _ in range(spec["steps"]):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    mean_dt = (time.perf_counter() - t_all) / spec["steps"]
    # median per-step time: robust to transient contention on a shared machine
    dt = sorted(times)[len(times) // 2]
    return {
        **spec,
        "batch": batch,
        "params": n_params,
        "samples_per_s": batch / dt,
        "ms_per_step": dt * 1000.0,
        "mean_ms_per_step": mean_dt * 1000.0,
        "peak_mb": _peak_memory_mb(device),
        "warmup_s": warmup_s,
        "threads": torch.get_num_threads(),
    }


def worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        res = run_one(spec)
    except Exception as exc:  # report, don't crash the driver
        res = {**spec, "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
               "traceback": traceback.format_exc()}
    print("@@RESULT@@" + json.dumps(res), flush=True)


# ----------------------------------------------------------------------------- driver
def _fmt(x, spec="{:.1f}"):
    return "-" if x is None else spec.format(x)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (default)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per row (default 30, --quick: 15/4)")
    p.add_argument("--warmup", type=int, default=None, help="untimed warm-up steps (default 5, --quick 3)")
    p.add_argument("--quick", action="store_true",
                   help="few steps, torch.compile only for prose_small (keeps a 2-core CPU run to a few minutes)")
    p.add_argument("--only", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument("--modes", nargs="+", choices=["eager", "compile"], default=["eager", "compile"])
    p.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    p.add_argument("--fused-adamw", action="store_true", help="use AdamW(fused=True) (default: PyTorch default)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run each row N times in fresh processes and keep the fastest (noisy shared machines)")
    add_runner_args(p, timeout=900)
    args = p.parse_args(argv)

    if args._worker is not None:
        worker_main(args._worker)
        return

    import torch

    device = resolve_device(args.device)
    warmup = args.warmup if args.warmup is not None else (3 if args.quick else 5)

    rows = []
    for cfg in args.only:
        for mode in args.modes:
            if mode == "compile" and args.quick and cfg != "prose_small":
                continue
            for prec in args.precisions:
                steps = args.steps
                if steps is None:
                    steps = (4 if cfg == "prose_paper" else 15) if args.quick else 30
                rows.append(dict(config=cfg, mode=mode, precision=prec, device=device, steps=steps,
                                 warmup=warmup, fused_adamw=args.fused_adamw, threads=args.threads))

    print(f"torch {torch.__version__} | device {device} | threads "
          f"{args.threads or torch.get_num_threads()} | AdamW {'fused' if args.fused_adamw else 'default'} | "
          f"{len(rows)} rows", flush=True)
    if hasattr(os, "getloadavg") and device == "cpu":
        load = os.getloadavg()[0]
        if load > 0.5:
            print(f"note: 1-min load average is {load:.1f} before starting; CPU timings may be perturbed "
                  "(per-step medians are reported to limit the effect)", flush=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    results = []
    t_start = time.perf_counter()
    def run_worker(spec: dict) -> dict:
        try:
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--_worker", json.dumps(spec)],
                capture_output=True, text=True, env=env, timeout=args.timeout,
            )
        except subprocess.TimeoutExpired:
            return {**spec, "error": f"timed out after {args.timeout}s"}
        line = [l for l in proc.stdout.splitlines() if l.startswith("@@RESULT@@")]
        if line:
            return json.loads(line[-1][len("@@RESULT@@"):])
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {**spec, "error": f"worker exited with {proc.returncode}: {tail[0]}"}

    for spec in rows:
        label = f"{spec['config']}/{spec['mode']}/{spec['precision']}"
        # best of --repeat fresh runs (a shared CPU can be briefly oversubscribed)
        tries = [run_worker(spec) for _ in range(max(1, args.repeat))]
        ok = [r for r in tries if "error" not in r]
        res = max(ok, key=lambda r: r["samples_per_s"]) if ok else tries[-1]
        if ok:
            res["all_samples_per_s"] = [round(r["samples_per_s"], 2) for r in ok]
        results.append(res)
        if "error" in res:
            print(f"  {label:32s} SKIPPED: {res['error']}", flush=True)
        else:
            print(f"  {label:32s} {res['samples_per_s']:9.1f} samples/s {res['ms_per_step']:9.1f} ms/step "
                  f"(mean {res['mean_ms_per_step']:.1f} ms; warm-up {res['warmup_s']:.1f}s)", flush=True)

    # ---------------------------------------------------------------- table
    mem_name = "peak MB (RSS)" if device == "cpu" else "peak MB (alloc)"
    header = (f"{'config':12s} {'params':>8s} {'batch':>5s} {'mode':8s} {'prec':5s} {'samples/s':>10s} "
              f"{'ms/step':>9s} {mem_name:>15s} {'vs ref (samples/s)':>19s}")
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        if "error" in r:
            print(f"{r['config']:12s} {'':>8s} {'':>5s} {r['mode']:8s} {r['precision']:5s} "
                  f"SKIPPED: {r['error']}")
            continue
        ref = REFERENCE.get(r["config"])
        ratio = "-"
        if ref is not None:
            ratio = f"{r['samples_per_s'] / ref[0]:.2f}x"
            if r["precision"] != "fp32" or device != "cpu":
                ratio += " (n/c)"  # reference is CPU fp32: not comparable
            elif r["samples_per_s"] / ref[0] >= TARGET_RATIO:
                ratio += " ok"
            else:
                ratio += " MISS"
        print(f"{r['config']:12s} {r['params'] / 1e6:7.2f}M {r['batch']:5d} {r['mode']:8s} {r['precision']:5s} "
              f"{r['samples_per_s']:10.1f} {r['ms_per_step']:9.1f} {r['peak_mb']:15.0f} {ratio:>19s}")
    print()
    print("Reference (2-core CPU, fp32): prose_paper b=8 7.1 samples/s, 1133 ms/step, 1.6 GB peak RSS; "
          f"prose_small b=32 323 samples/s. Target >= {TARGET_RATIO}x. "
          "'(n/c)' = not comparable to the CPU fp32 reference.")
    for r in results:
        if r["config"] == "prose_paper" and "error" not in r and r["mode"] == "eager" and r["precision"] == "fp32":
            print(f"prose_paper eager fp32: {1133.0 / r['ms_per_step']:.2f}x faster per step, "
                  f"peak memory {r['peak_mb'] / 1600.0:.2f}x the reference's")
    print(f"total wall time {time.perf_counter() - t_start:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
