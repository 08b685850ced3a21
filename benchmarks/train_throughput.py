#!/usr/bin/env python
"""Training-step benchmark: today's step beside each optimisation, measured in the same run.

Every (row, variant) runs in a fresh process; the variants of a row are run in alternating
rounds (A B C, B C A, C A B, ...) so that load from other jobs hits them alike. A ratio is the
median of the per-round ratios ``t(baseline) / t(variant)`` (paired within a round), shown with
its min-max over rounds; ms/step is the median over rounds of each process's median step. No
figure from another run or machine enters a ratio.

The CPU-time ratio is the same paired ratio of process CPU time (all threads; with
``OMP_WAIT_POLICY=PASSIVE`` idle threads sleep), less sensitive to other jobs than wall time.

One step = forward, MSE loss, backward, optimiser step, on synthetic batches shaped like the
data: 1 input frame of nx=128, 32 query times, and each operator's equation as long as that of a
family drawn at random from the 19 (their lengths, 11 to 33 tokens, are computed from
``lemon_pl.data.families`` by the driver and passed to every worker, so every variant, ``ref``
included, sees the same batch; it is padded to its longest equation as ``collate`` pads).

Variants (``--variants``):

``today``     the step as lemon-pl took it before issue 14: PyTorch's default AdamW (on CPU a
              loop over parameters), every sample's equation encoded and every padded token
              computed (``share_equation=False, pack_tokens=False``).
``foreach``   multi-tensor AdamW.
``fused``     fused AdamW (one kernel over parameters, gradients and moments).
``app``       what the app builds now: ``lemon_pl.core.optim.build_optimizers`` (fused AdamW)
              and Prose's defaults (each distinct equation of a batch encoded once, the
              per-token maps run on real tokens only).
``app_bf16``  ``app`` under ``torch.autocast(bfloat16)``.
``app_compile`` ``app`` with ``torch.compile`` (equation sharing is off inside compile);
``app_bf16_compile`` both.
``ref``       ``app`` as the checkout of ``--baseline-ref <git ref>`` builds it (a temporary
              ``git worktree``; its lemon_pl is imported instead of this one).

Rows (``--rows``): ``prose_paper`` (71M parameters, batch 10, every sample its own operator),
``prose_paper_g5`` (the same, 2 operators x 5 trajectories per batch: the operator-grouped
sampler's batches), ``prose_paper_no_text`` (the 32.7M-parameter model without the equation),
``prose_small`` (d_model 128, batch 32), ``fno``, ``deeponet``.

Roofline: a separate fresh process measures the machine's fp32 matmul throughput (GFLOP/s)
on the model's dominant GEMM shapes and on a large square GEMM; every step's FLOPs are counted
with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and attention, forward + backward);
``GFLOP/s`` is counted FLOPs / median step time and ``roofline`` that over the best measured
matmul throughput. On a GPU the same columns give MFU against the measured (not the nominal)
peak; ``--peak-tflops`` sets a nominal peak to quote as well.

Work by part: one more forward per variant, under the counter, gives the forward GFLOP of each
top-level part (symbol encoder, fusion, decoder, ...; the attribution is exact in the forward
pass), and for each row the forward work ratio of the baseline to ``app`` with its bound were the
symbol encoder free: what sharing the equation can reach at most.

Targets checked (CPU, fp32): ``app`` >= 1.3x ``today`` on ``prose_paper``, >= 1.5x on
``prose_paper_g5``; ``prose_paper_no_text`` under ``app`` reaches at least the GFLOP/s of the
full model under ``today`` (no slower per unit of work).

Examples::

    OMP_WAIT_POLICY=PASSIVE python benchmarks/train_throughput.py              # paper rows, 3 rounds (~8 min, 2 cores)
    python benchmarks/train_throughput.py --quick                               # 2 rounds, fewer steps
    python benchmarks/train_throughput.py --baseline-ref HEAD~5 --variants today ref app
    python benchmarks/train_throughput.py --rows prose_small fno deeponet --variants today app app_bf16
    python benchmarks/train_throughput.py --device cuda --variants app app_bf16 app_compile --steps 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# a baseline worker imports lemon_pl from another checkout (LEMON_BENCH_ROOT), never this one
_CODE_ROOT = os.environ.get("LEMON_BENCH_ROOT", str(ROOT))
if _CODE_ROOT not in sys.path:
    sys.path.insert(0, _CODE_ROOT)
sys.path.insert(0, str(HERE))
from _common import add_runner_args, family_token_lengths, resolve_device  # noqa: E402

NX = 128
N_OUT = 32
VOCAB = 1098
PAD_ID = 2

PROSE_PAPER = dict(d_model=512, n_heads=8, dim_ffn=2048, n_data_layers=2, n_symbol_layers=4, n_fusion_layers=8,
                   n_decoder_layers=8)
ROWS = {
    # name: (class, constructor kwargs, batch, trajectories per operator in a batch)
    "prose_paper": ("Prose", PROSE_PAPER, 10, 1),
    "prose_paper_g5": ("Prose", PROSE_PAPER, 10, 5),
    "prose_paper_no_text": ("Prose", dict(PROSE_PAPER, no_text=True), 10, 1),
    "prose_small": ("Prose", dict(d_model=128, n_heads=4, dim_ffn=512, n_data_layers=2, n_symbol_layers=2,
                                  n_fusion_layers=2, n_decoder_layers=2), 32, 1),
    "fno": ("FNO", dict(modes=16, width=64, n_layers=4), 32, 1),
    "deeponet": ("DeepONet", dict(basis_dim=100, hidden=256, trunk_layers=4), 32, 1),
}
VARIANTS = ("today", "foreach", "fused", "app", "app_bf16", "app_compile", "app_bf16_compile", "ref")
TARGETS = {"prose_paper": 1.3, "prose_paper_g5": 1.5}


# ----------------------------------------------------------------------------- worker
def _peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def synthetic_batch(batch: int, group: int, device, token_lengths: list[int], seed: int = 0):
    """Inputs shaped like the data; ``group`` consecutive samples share one equation, whose
    length is that of a family drawn from ``token_lengths`` (one entry per family)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n_ops = -(-batch // group)
    lengths = torch.tensor(token_lengths)[torch.randint(0, len(token_lengths), (n_ops,), generator=g)]
    width = int(lengths.max())
    tokens = torch.randint(PAD_ID + 1, VOCAB, (n_ops, width), generator=g)
    pad = torch.arange(width)[None, :] >= lengths[:, None]
    tokens = tokens.masked_fill(pad, PAD_ID).repeat_interleave(group, 0)[:batch]
    pad = pad.repeat_interleave(group, 0)[:batch]
    u_in = torch.randn(batch, 1, NX, generator=g)
    t_out = ((2 * torch.arange(N_OUT) + 1) / 32.0).expand(batch, N_OUT).contiguous()
    target = torch.randn(batch, N_OUT, NX, generator=g)
    return [x.to(device) for x in (u_in, torch.zeros(batch, 1), t_out, tokens, pad, target)]


def _optimizer(variant: str, params):
    import torch

    if variant == "today":
        return torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4, eps=1e-6, foreach=False)
    if variant == "foreach":
        return torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4, eps=1e-6, foreach=True)
    if variant == "fused":
        return torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4, eps=1e-6, fused=True)
    # app / ref: whatever the imported lemon_pl builds by default
    from types import SimpleNamespace

    try:
        from lemon_pl.core.optim import build_optimizers
    except ImportError:  # an old checkout without the module: its default was torch's AdamW
        return torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4, eps=1e-6)
    hp = SimpleNamespace(lr=1e-4, weight_decay=1e-4, betas=(0.9, 0.999), eps=1e-6, warmup_ratio=0.0,
                         min_lr_ratio=1.0)
    return build_optimizers(list(params), hp, 1000)["optimizer"]


def run_one(spec: dict) -> dict:
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    import lemon_pl.models as models

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    device = torch.device(spec["device"])
    variant = spec["variant"]
    cls_name, kwargs, batch, group = ROWS[spec["row"]]
    batch = spec.get("batch") or batch
    cls = getattr(models, cls_name)
    kwargs = dict(kwargs)
    if cls_name == "Prose" and variant in ("today", "foreach", "fused"):
        # today's forward: every sample's equation encoded, every padded token computed
        kwargs.update(share_equation=False, pack_tokens=False)
    data = dict(nx=NX, input_len=1, output_len=N_OUT, vocab_size=VOCAB, pad_id=PAD_ID)
    model = cls(**models.taken_arguments(cls, data), **kwargs).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    opt = _optimizer(variant, model.parameters())
    impl = next((k for k in ("fused", "foreach") if opt.param_groups[0].get(k)), "loop")
    u_in, t_in, t_out, tokens, pad, target = synthetic_batch(batch, group, device, spec["token_lengths"])
    real_tokens = int((~pad).sum())
    fwd = torch.compile(model) if variant.endswith("compile") else model
    bf16 = "bf16" in variant

    def step(net=fwd):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = net(u_in, t_in, t_out, tokens, pad)
            loss = F.mse_loss(out.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    t0 = time.perf_counter()
    for _ in range(spec["warmup"]):
        loss = step()
    sync()
    warmup_s = time.perf_counter() - t0
    if not torch.isfinite(loss).item():
        raise RuntimeError(f"non-finite loss {loss.item()}")
    with FlopCounterMode(display=False) as counter:  # the FLOPs of exactly this step (eager for compile)
        step(model)
    flops = counter.get_total_flops()
    parts = _forward_flops_by_part(model, (u_in, t_in, t_out, tokens, pad), bf16, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, cpu = [], []
    for _ in range(spec["steps"]):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        sync()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    dt = statistics.median(times)
    return {**spec, "batch": batch, "group": group, "params": n_params, "optimizer": impl, "flops": flops,
            "ms": dt * 1e3, "ms_all": [round(t * 1e3, 2) for t in times], "samples_per_s": batch / dt,
            "cpu_ms": statistics.median(cpu) * 1e3,
            "gflops": flops / dt / 1e9, "peak_mb": _peak_memory_mb(device), "warmup_s": warmup_s,
            "threads": torch.get_num_threads(), "tokens": f"{real_tokens}/{pad.numel()}",
            "forward_gflop_by_part": parts}


def _forward_flops_by_part(model, inputs, bf16: bool, device) -> dict:
    """Forward FLOPs (GFLOP) of each top-level submodule (the symbol encoder, the fusion, the
    decoder, ...): the counter's module attribution is exact in the forward pass (in backward it
    can credit a parent's gradient to a child), and the step's total is about 3x the forward."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False, depth=2)
    with counter, torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        model(*inputs)
    root = type(model).__name__ + "."
    return {k[len(root):]: sum(v.values()) / 1e9 for k, v in counter.get_flop_counts().items()
            if k.startswith(root) and k.count(".") == 1}


def matmul_peak(spec: dict) -> dict:
    """Best fp32 (and bf16) matmul GFLOP/s on the model's GEMM shapes and a large square one."""
    import torch

    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    shapes = [(320, 512, 2048), (320, 2048, 512), (320, 512, 512), (2048, 2048, 2048)]
    if device.type == "cuda":
        shapes = [(8192, 8192, 8192), (10 * 21 * 8, 512, 2048), (320, 512, 2048)]
    out = {}
    for dtype in ((torch.float32, torch.bfloat16) if spec.get("bf16") else (torch.float32,)):
        best = {}
        for m, k, n in shapes:
            a = torch.randn(m, k, device=device, dtype=dtype)
            b = torch.randn(k, n, device=device, dtype=dtype)
            sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
            a @ b
            sync()
            t0 = time.perf_counter()
            a @ b
            sync()
            one = time.perf_counter() - t0
            if one > 2.0:  # e.g. bf16 on a CPU without bf16 units: one product says enough
                best[f"{m}x{k}x{n}"] = 2 * m * k * n / one / 1e9
                continue
            reps = max(1, int(0.3 / max(one, 1e-6)))  # about 0.3 s per timing
            rates = []
            for _ in range(3):
                sync()
                t0 = time.perf_counter()
                for _ in range(reps):
                    a @ b
                sync()
                rates.append(2 * m * k * n * reps / (time.perf_counter() - t0) / 1e9)
            best[f"{m}x{k}x{n}"] = max(rates)
        out[str(dtype).replace("torch.", "")] = best
    return {"peak": out, "threads": torch.get_num_threads()}


def worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        res = matmul_peak(spec) if spec.get("kind") == "peak" else run_one(spec)
    except Exception as exc:  # report, don't crash the driver
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        res = {**spec, "error": f"{type(exc).__name__}: {first}", "traceback": traceback.format_exc()}
    print("@@RESULT@@" + json.dumps(res), flush=True)


# ----------------------------------------------------------------------------- driver
def _worktree(ref: str) -> tuple[str, str]:
    """A detached worktree of ``ref`` in a temporary folder; returns (path, resolved sha)."""
    sha = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                         capture_output=True, text=True)
    if sha.returncode:
        sys.exit(f"--baseline-ref {ref!r} is not a commit of {ROOT}: {sha.stderr.strip()}")
    sha = sha.stdout.strip()
    path = Path(tempfile.gettempdir()) / f"lemon-bench-{sha[:12]}"
    if not (path / "lemon_pl").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(path), sha],
                       check=True, capture_output=True)
    return str(path), sha


def _run_worker(spec: dict, timeout: int, code_root: str) -> dict:
    env = dict(os.environ, LEMON_BENCH_ROOT=code_root)
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["PYTHONPATH"] = code_root + os.pathsep + env.get("PYTHONPATH", "")
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_worker", json.dumps(spec)],
                              capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout}s"}
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULT@@")]
    if line:
        return json.loads(line[-1][len("@@RESULT@@"):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {**spec, "error": f"worker exited with {proc.returncode}: {tail[0]}"}


def _spread(values: list[float], fmt: str = "{:.2f}") -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    return fmt.format(med) + (f" ({fmt.format(min(values))}-{fmt.format(max(values))})" if len(values) > 1 else "")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (default)")
    p.add_argument("--rows", nargs="+", choices=list(ROWS),
                   default=["prose_paper", "prose_paper_g5", "prose_paper_no_text"])
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=None,
                   help="default: today fused app app_bf16 (+ ref with --baseline-ref)")
    p.add_argument("--baseline", choices=VARIANTS, default="today", help="the variant ratios are taken against")
    p.add_argument("--baseline-ref", default=None, help="also time the app as this git ref builds it (variant ref)")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3, --quick 2)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per process (default 5, --quick 3)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per process")
    p.add_argument("--quick", action="store_true", help="2 rounds of 3 steps")
    p.add_argument("--batch", type=int, default=None, help="override every row's batch size (e.g. 256 on a GPU)")
    p.add_argument("--peak-tflops", type=float, default=None, help="nominal peak to quote MFU against as well")
    add_runner_args(p, timeout=900)
    args = p.parse_args(argv)
    if args._worker is not None:
        worker_main(args._worker)
        return

    import torch

    device = resolve_device(args.device)
    variants = args.variants or ["today", "fused", "app", "app_bf16"] + (["ref"] if args.baseline_ref else [])
    if "ref" in variants and not args.baseline_ref:
        sys.exit("variant 'ref' needs --baseline-ref <git ref>")
    if args.baseline not in variants:
        variants = [args.baseline] + variants
    rounds = args.rounds or (2 if args.quick else 3)
    steps = args.steps or (3 if args.quick else 5)
    ref_root, ref_sha = _worktree(args.baseline_ref) if args.baseline_ref else (None, None)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True).stdout.strip() or "?"
    load0 = os.getloadavg()
    print(f"torch {torch.__version__} | device {device} | threads {args.threads or torch.get_num_threads()} | "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE (set for workers)')} | commit {head}"
          + (f" | baseline ref {args.baseline_ref} = {ref_sha[:12]}" if ref_sha else "")
          + f" | load {load0[0]:.2f} {load0[1]:.2f}", flush=True)
    token_lengths = family_token_lengths()
    print(f"equation lengths of the {len(token_lengths)} families (tokens): {sorted(token_lengths)}", flush=True)
    t_start = time.perf_counter()
    peak = _run_worker({"kind": "peak", "device": device, "threads": args.threads,
                        "bf16": any("bf16" in v for v in variants)},
                       args.timeout, str(ROOT))
    if "error" in peak:
        print(f"matmul peak: {peak['error']}")
        best_fp32 = float("nan")
    else:
        best_fp32 = max(peak["peak"]["float32"].values())
        print("matmul throughput (GFLOP/s, best of 3): " + "; ".join(
            f"{dt} " + ", ".join(f"{s} {v:.0f}" for s, v in shapes.items()) for dt, shapes in peak["peak"].items()),
            flush=True)

    results: dict[tuple[str, str], list[dict]] = {}
    for row in args.rows:
        for r in range(rounds):
            order = variants[r % len(variants):] + variants[: r % len(variants)]
            for v in order:
                spec = dict(row=row, variant=v, device=device, steps=steps, warmup=args.warmup, threads=args.threads,
                            round=r, batch=args.batch, token_lengths=token_lengths)
                res = _run_worker(spec, args.timeout, ref_root if v == "ref" else str(ROOT))
                results.setdefault((row, v), []).append(res)
                if args.json:  # written as it goes: a run stopped by a time limit keeps what it measured
                    _write_json(args.json, peak, results, [load0, os.getloadavg()], head, ref_sha)
                msg = res.get("error") or f"{res['ms']:.1f} ms/step ({res['flops'] / 1e9:.1f} GFLOP)"
                print(f"  round {r + 1}/{rounds} {row:20s} {v:12s} {msg}", flush=True)

    load1 = os.getloadavg()
    header = (f"{'row':20s} {'variant':12s} {'optim':7s} {'batch':>5s} {'ms/step (min-max)':>22s} {'samples/s':>9s} "
              f"{'vs ' + args.baseline + ' (min-max)':>22s} {'CPU-time ratio':>14s} {'GFLOP':>6s} {'GFLOP/s':>8s} {'roofline':>8s} "
              f"{'peak MB':>8s}")
    print()
    print(header)
    print("-" * len(header))
    summary = {}
    for row in args.rows:
        base = results.get((row, args.baseline), [])
        for v in variants:
            runs = [x for x in results.get((row, v), []) if "error" not in x]
            if not runs:
                err = next((x.get("error") for x in results.get((row, v), [])), "no result")
                print(f"{row:20s} {v:12s} SKIPPED: {err}")
                continue
            ms = [x["ms"] for x in runs]
            paired = [b["ms"] / x["ms"] for b, x in zip(base, results[(row, v)])
                      if "error" not in b and "error" not in x]
            gf = statistics.median([x["gflops"] for x in runs])
            cpu_paired = [b["cpu_ms"] / x["cpu_ms"] for b, x in zip(base, results[(row, v)])
                          if "cpu_ms" in b and "cpu_ms" in x]
            cpu_ratio = f"{statistics.median(cpu_paired):.2f}" if cpu_paired else "-"
            summary[(row, v)] = dict(ms=statistics.median(ms), ratio=statistics.median(paired) if paired else None,
                                     ratios=paired, gflops=gf, flops=runs[0]["flops"], batch=runs[0]["batch"])
            print(f"{row:20s} {v:12s} {runs[0]['optimizer']:7s} {runs[0]['batch']:5d} {_spread(ms, '{:.0f}'):>22s} "
                  f"{runs[0]['batch'] / statistics.median(ms) * 1e3:9.1f} {_spread(paired):>22s} {cpu_ratio:>14s} "
                  f"{runs[0]['flops'] / 1e9:6.1f} {gf:8.1f} "
                  f"{gf / best_fp32:8.2f} {max(x['peak_mb'] for x in runs):8.0f}")
    def parts_of(row: str, v: str) -> dict:  # a variant's forward GFLOP by part (the same in every round)
        return next((x["forward_gflop_by_part"] for x in results.get((row, v), [])
                     if x.get("forward_gflop_by_part")), {})

    print("\nforward GFLOP by part (one forward; what sharing or packing can remove shows here):")
    for row, v in results:
        if parts_of(row, v):
            print(f"  {row:20s} {v:12s} " + ", ".join(f"{k} {g:.2f}" for k, g in parts_of(row, v).items()))
    for row in args.rows:  # the work ratio, and its bound were the equation free (what sharing can reach)
        base_p, app_p = parts_of(row, args.baseline), parts_of(row, "app")
        if base_p and "symbol_encoder" in app_p:
            base_w, app_w = sum(base_p.values()), sum(app_p.values())
            print(f"  {row}: forward work {args.baseline}/app {base_w / app_w:.2f}x; with the symbol encoder "
                  f"free at most {base_w / (app_w - app_p['symbol_encoder']):.2f}x")
    print(f"\nGFLOP = FLOPs counted per step (forward + backward) of that variant; real/all tokens per batch: "
          + ", ".join(f"{row} {next((x['tokens'] for x in results.get((row, args.baseline), []) if 'tokens' in x), '-')}"
                      for row in args.rows))
    if args.peak_tflops:
        print(f"MFU against the nominal {args.peak_tflops} TFLOP/s: " + ", ".join(
            f"{row}/{v} {s['gflops'] / (args.peak_tflops * 1e3):.1%}" for (row, v), s in summary.items()))
    print(f"roofline = GFLOP/s / best measured fp32 matmul ({best_fp32:.0f} GFLOP/s); load before {load0[0]:.2f}, "
          f"after {load1[0]:.2f} (1-min average)")
    if device == "cpu":
        for row, target in TARGETS.items():
            s = summary.get((row, "app"))
            if s and s["ratio"] is not None and args.baseline == "today":
                print(f"target {row}: app >= {target}x today: {s['ratio']:.2f}x "
                      f"({'PASS' if s['ratio'] >= target else 'MISS'})")
        nt, full = summary.get(("prose_paper_no_text", "app")), summary.get(("prose_paper", "today"))
        if nt and full:
            print(f"target no_text: app GFLOP/s {nt['gflops']:.1f} >= today's full model {full['gflops']:.1f}: "
                  f"{'PASS' if nt['gflops'] >= full['gflops'] else 'MISS'} "
                  f"(ms per sample {nt['ms'] / nt['batch']:.1f} vs {full['ms'] / full['batch']:.1f})")
    print(f"total wall time {time.perf_counter() - t_start:.0f}s")
    if args.json:
        _write_json(args.json, peak, results, [load0, load1], head, ref_sha)


def _write_json(path, peak, results, load, head, ref_sha) -> None:
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps({"peak": peak, "results": {f"{r}/{v}": x for (r, v), x in results.items()},
                               "load": load, "commit": head, "baseline_ref": ref_sha}, indent=2))
    os.replace(tmp, path)


if __name__ == "__main__":
    main()
