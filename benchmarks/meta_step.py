#!/usr/bin/env python
"""Cost of a LeMON meta-learning step, against the plain passes it contains; vmap; LoRA.

Sections (each runs in a fresh subprocess; inside it the variants are timed in interleaved
rounds - A, B, C, A, B, C, ... - so that load from other jobs on a shared machine hits every
variant alike; ratios are medians of the per-round ratios, ms/step medians over rounds; CPU
ms is process CPU time, less sensitive to other jobs than wall time):

``overhead``  one outer meta step - ``MetaModule.meta_loss`` (T tasks x S first-order inner
              steps) + backward + AdamW - against the plain forward+backward passes it contains:
              T*S support passes (batch = support size) and T query passes (batch = query size)
              through the ordinary module, gradients accumulated, one AdamW step. Target: the
              meta step costs <= 1.1x those passes (the reference's loop: 1.14x for 5 x 5).
              ``meta (naive loop)`` is the same step with the straightforward inner loop
              (``naive_adapt`` / ``naive_call`` below, monkeypatched in for the row) that
              ``lemon_pl.adaptation.maml`` improves on. Without ``--quick`` ablations show where it loses.
``order``     first-order vs second-order meta step (second order runs under
              ``differentiable_attention()``, the math SDPA backend, as ``meta_loss`` does).
``vmap``      the Python loop over tasks vs ``MetaModule.vmap_meta_loss`` (``lemon_pl.adaptation.maml_vmap``)
              (all tasks' inner loops at once with ``torch.func.vmap`` + ``torch.func.grad``),
              first order (and, without ``--quick``, second order).
``today``     the meta step as before issue 14 (PyTorch's default AdamW, every sample's equation
              encoded) against today's (fused AdamW, each task's equation encoded once), same run.
``lora``      fine-tuning step (forward + backward + AdamW, batch 20) of the full network vs
              LoRA rank 16 on every Linear (``inject_lora`` + ``mark_only_lora_trainable``, AdamW
              over the adapters only), Prose at the quickstart and at the paper size.

Sizes: Prose quickstart (d_model 128, 4 heads, dim_ffn 512, 2 layers per block), nx 128, 1 input
frame, 32 output frames, equations of 14-20 tokens; T=5 tasks, S=5 inner steps, support 10,
query 20, inner lr 0.01. FNO / DeepONet (``--models``) are timed in ``overhead`` and ``vmap``.

Examples::

    python benchmarks/meta_step.py --quick                 # < 4 min on 2 CPU cores
    python benchmarks/meta_step.py                         # more rounds, ablations, second-order vmap
    python benchmarks/meta_step.py --device cuda
    python benchmarks/meta_step.py --sections overhead --models prose fno deeponet --procs 3
    python benchmarks/meta_step.py --tasks 5 --inner-steps 1 --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable, Mapping

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_runner_args, resolve_device  # noqa: E402

NX = 128
N_IN = 1
N_OUT = 32
TOKEN_LEN = 20
VOCAB = 1098
PAD_ID = 2
TARGET_RATIO = 1.1
REFERENCE_RATIO = 1.14

MODELS = {
    # name: (class name, constructor kwargs)
    "prose": ("Prose", dict(d_model=128, n_heads=4, dim_ffn=512, n_data_layers=2, n_symbol_layers=2,
                            n_fusion_layers=2, n_decoder_layers=2)),
    "prose_paper": ("Prose", dict(d_model=512, n_heads=8, dim_ffn=2048, n_data_layers=2, n_symbol_layers=4,
                                  n_fusion_layers=8, n_decoder_layers=8)),
    "fno": ("FNO", dict(modes=16, width=64, n_layers=4)),
    "deeponet": ("DeepONet", dict(basis_dim=100, hidden=256, trunk_layers=4)),
}


def _torch():
    import torch

    return torch


# ============================================================================ naive inner loop
# The straightforward inner loop (one ``w - lr * g`` per tensor and step, ``functional_call`` per
# pass), as the reference writes it; ``lemon_pl.adaptation.maml`` replaces it by fused in-place updates on
# detached copies attached to the graph once, and cached parameter slots. Same values and gradients.

def naive_adapt(net, params, fast_names, loss_fn, steps, lr, first_order=True, grad_clip=None):
    import torch

    fast = {n: params[n] for n in fast_names}
    for _ in range(steps):
        loss = loss_fn({**params, **fast})
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=not first_order, allow_unused=True)
        grads = [torch.zeros_like(w) if g is None else g for g, w in zip(grads, fast.values())]
        if grad_clip is not None:
            norm = torch.sqrt(sum((g.float() ** 2).sum() for g in grads))
            grads = [g * torch.clamp(grad_clip / (norm + 1e-12), max=1.0) for g in grads]
        fast = {n: w - (lr[n] if isinstance(lr, Mapping) else lr) * g for (n, w), g in zip(fast.items(), grads)}
    return fast


def naive_call(net, params, *args, **kwargs):
    import torch

    return torch.func.functional_call(net, dict(params), args, kwargs)


def _ablation_no_update(net, params, fast_names, loss_fn, steps, lr, first_order=True, grad_clip=None):
    """Ablation only (wrong maths): the same support passes and inner gradients, weights never updated."""
    torch = _torch()
    fast = {n: params[n] for n in fast_names}
    for _ in range(steps):
        loss = loss_fn({**params, **fast})
        torch.autograd.grad(loss, list(fast.values()), allow_unused=True)
    return fast


@contextlib.contextmanager
def patched(adapt_fn=None, call_fn=None):
    """Swap the inner-loop functions used by ``MetaModule`` for the duration of the block."""
    import lemon_pl.adaptation.functional as functional
    import lemon_pl.operators.meta as module_meta

    old = (module_meta.adapt, functional.call)
    try:
        if adapt_fn is not None:
            module_meta.adapt = adapt_fn
        if call_fn is not None:
            functional.call = call_fn  # net_call looks it up at call time
        yield
    finally:
        module_meta.adapt, functional.call = old


# ============================================================================ worker helpers
def _peak_rss_mb() -> float:
    try:
        import resource

        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss / 2**20 if sys.platform == "darwin" else rss / 2**10
    except Exception:  # pragma: no cover - non-POSIX
        return float("nan")


def build_net(name: str, device):
    import lemon_pl.models as models

    cls_name, kwargs = MODELS[name]
    cls = getattr(models, cls_name)
    data = dict(nx=NX, input_len=N_IN, output_len=N_OUT, vocab_size=VOCAB, pad_id=PAD_ID)
    return cls(**models.taken_arguments(cls, data), **kwargs).to(device)


def task_batch(n_tasks: int, k: int, device, seed: int = 0) -> dict:
    """A batch of ``n_tasks`` operator tasks of ``k`` trajectories each (random data)."""
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(PAD_ID + 1, VOCAB, (n_tasks, TOKEN_LEN), generator=g)
    lengths = torch.randint(TOKEN_LEN - 6, TOKEN_LEN + 1, (n_tasks,), generator=g)
    pad = torch.arange(TOKEN_LEN).unsqueeze(0) >= lengths.unsqueeze(1)
    batch = {
        "u_in": torch.randn(n_tasks, k, N_IN, NX, generator=g),
        "u_out": torch.randn(n_tasks, k, N_OUT, NX, generator=g),
        "mean": torch.zeros(n_tasks, k), "std": torch.ones(n_tasks, k),
        "t_in": torch.zeros(n_tasks, N_IN),
        "t_out": ((2 * torch.arange(N_OUT) + 1) / 32.0).repeat(n_tasks, 1),
        "tokens": tokens.masked_fill(pad, PAD_ID), "token_pad_mask": pad,
        "family": torch.arange(n_tasks), "operator": torch.arange(n_tasks),
    }
    return {key: v.to(device) for key, v in batch.items()}


def sample_batch(batch_size: int, device, seed: int = 0) -> dict:
    torch = _torch()
    b = task_batch(1, batch_size, device, seed)
    out = {key: b[key][0] for key in ("u_in", "u_out", "mean", "std")}
    for key in ("t_in", "t_out", "tokens", "token_pad_mask"):
        out[key] = b[key].expand(batch_size, *b[key].shape[1:])
    out["family"] = torch.zeros(batch_size, dtype=torch.long, device=device)
    return out


def time_rounds(variants: dict[str, Callable[[], None]], rounds: int, warmup: int, device,
                baseline: str | None = None) -> dict:
    """Interleaved timing: ``warmup`` untimed rounds, then ``rounds`` timed rounds of every variant."""
    torch = _torch()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    wall = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    errors = {}
    for r in range(warmup + rounds):
        for name, fn in variants.items():
            if name in errors:
                continue
            try:
                sync()
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                sync()
                t1, c1 = time.perf_counter(), time.process_time()
            except Exception as exc:  # report the variant, keep timing the others
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                errors[name] = f"{type(exc).__name__}: {msg[:160]}"
                continue
            if r >= warmup:
                wall[name].append(t1 - t0)
                cpu[name].append(c1 - c0)
    out = {}
    for name in variants:
        if name in errors:
            out[name] = {"error": errors[name]}
            continue
        row = {"ms": 1e3 * statistics.median(wall[name]), "cpu_ms": 1e3 * statistics.median(cpu[name]),
               "all_ms": [round(1e3 * x, 1) for x in wall[name]]}
        if baseline and baseline in wall and baseline not in errors:
            row["ratio"] = statistics.median(a / b for a, b in zip(wall[name], wall[baseline]))
            row["cpu_ratio"] = statistics.median(a / b for a, b in zip(cpu[name], cpu[baseline]))
        out[name] = row
    return out


def _meta_setup(spec, device, first_order=True):
    import torch.nn.functional as F  # noqa: F401

    from lemon_pl.operators.meta import MetaModule

    torch = _torch()
    torch.manual_seed(0)
    net = build_net(spec["model"], device)
    module = MetaModule(net, inner_steps=spec["inner_steps"], support_size=spec["support"],
                        query_size=spec["query"], first_order=first_order, inner_lr_init=0.01).to(device)
    batch = task_batch(spec["tasks"], spec["support"] + spec["query"], device)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
    return module, batch, opt


def _meta_step_fn(module, batch, opt, loss_fn=None):
    def step():
        opt.zero_grad(set_to_none=True)
        total, n = (loss_fn or module.meta_loss)(batch)
        (total / n).backward()
        opt.step()
    return step


def _plain_step_fn(module, batch, opt, spec):
    """The plain passes a meta step contains: T*S support + T query forward/backward, one AdamW step."""
    torch = _torch()
    g = torch.Generator().manual_seed(1)
    k = spec["support"] + spec["query"]
    views = []
    for t in range(spec["tasks"]):
        perm = torch.randperm(k, generator=g).to(batch["u_in"].device)
        views.append((module.task_view(batch, t, perm[: spec["support"]]),
                      module.task_view(batch, t, perm[spec["support"]:])))

    def step():
        opt.zero_grad(set_to_none=True)
        for support, query in views:
            for _ in range(spec["inner_steps"]):
                module.loss(module(support), support["u_out"]).backward()
            module.loss(module(query), query["u_out"]).backward()
        opt.step()
    return step


# ============================================================================ sections
def section_overhead(spec, device) -> dict:
    module, batch, opt = _meta_setup(spec, device)
    meta_step = _meta_step_fn(module, batch, opt)

    def with_patch(adapt_fn, call_fn):
        def step():
            with patched(adapt_fn, call_fn):
                meta_step()
        return step

    variants = {
        "plain passes": _plain_step_fn(module, batch, opt, spec),
        "meta (lemon_pl)": meta_step,
        "meta (naive loop)": with_patch(naive_adapt, naive_call),
    }
    if spec["ablations"]:
        variants["ablation: naive adapt only"] = with_patch(naive_adapt, None)
        variants["ablation: naive call only"] = with_patch(None, naive_call)
        variants["ablation: no weight update"] = with_patch(_ablation_no_update, None)
    return {"rows": time_rounds(variants, spec["rounds"], spec["warmup"], device, baseline="plain passes")}


def section_order(spec, device) -> dict:
    module, batch, opt = _meta_setup(spec, device, first_order=True)
    fo = _meta_step_fn(module, batch, opt)

    def so():
        module.hparams.first_order = False  # meta_loss reads it at every call
        try:
            fo()
        finally:
            module.hparams.first_order = True

    variants = {"first-order (loop)": fo, "second-order (loop)": so}
    return {"rows": time_rounds(variants, spec["rounds"], spec["warmup"], device,
                                baseline="first-order (loop)")}


def section_vmap(spec, device) -> dict:
    import warnings


    warnings.filterwarnings("ignore", message=".*batching rule.*")
    module, batch, opt = _meta_setup(spec, device)
    loop = _meta_step_fn(module, batch, opt)
    vmapped = _meta_step_fn(module, batch, opt, loss_fn=module.vmap_meta_loss)

    def naive():
        with patched(naive_adapt, naive_call):
            loop()

    def second_order(fn):
        def step():
            module.hparams.first_order = False
            try:
                fn()
            finally:
                module.hparams.first_order = True
        return step

    variants = {"loop, first-order (lemon_pl)": loop, "loop, first-order (naive)": naive,
                "vmap, first-order": vmapped}
    if spec["vmap_second_order"]:
        variants["loop, second-order (lemon_pl)"] = second_order(loop)
        variants["vmap, second-order"] = second_order(vmapped)
    out = {"rows": time_rounds(variants, spec["rounds"], spec["warmup"], device,
                               baseline="loop, first-order (lemon_pl)")}
    # numerical check: same loss and gradients as the loop (first order)
    grads = []
    for fn in (module.meta_loss, module.vmap_meta_loss):
        module.zero_grad(set_to_none=True)
        total, n = fn(batch)
        (total / n).backward()
        grads.append((float(total), {k: p.grad.detach().clone() for k, p in module.named_parameters()
                                     if p.grad is not None}))
    (la, ga), (lb, gb) = grads
    scale = max(float(v.abs().max()) for v in ga.values())
    out["check"] = {"loss_loop": la, "loss_vmap": lb,
                    "max_grad_diff_rel": max(float((ga[k] - gb[k]).abs().max()) for k in ga) / scale}
    module.zero_grad(set_to_none=True)
    return out


def section_lora(spec, device) -> dict:
    import torch.nn.functional as F

    from lemon_pl.adaptation.lora import inject_lora, mark_only_lora_trainable

    torch = _torch()
    torch.manual_seed(0)
    batch = sample_batch(spec["batch"], device)
    rows, counts = {}, {}
    nets = {"full": build_net(spec["model"], device)}
    torch.manual_seed(0)
    lora_net = build_net(spec["model"], device)
    inject_lora(lora_net, rank=spec["rank"], alpha=float(spec["rank"]))
    mark_only_lora_trainable(lora_net)
    nets[f"LoRA r{spec['rank']}"] = lora_net
    variants = {}
    for name, net in nets.items():
        trainable = [p for p in net.parameters() if p.requires_grad]
        counts[name] = {"trainable": sum(p.numel() for p in trainable),
                        "total": sum(p.numel() for p in net.parameters())}
        opt = torch.optim.AdamW(trainable, lr=1e-4)

        def step(net=net, opt=opt):
            out = net(batch["u_in"], batch["t_in"], batch["t_out"], batch["tokens"], batch["token_pad_mask"])
            loss = F.mse_loss(out.float(), batch["u_out"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        variants[name] = step
    rows = time_rounds(variants, spec["rounds"], spec["warmup"], device, baseline="full")
    for name in rows:
        rows[name].update(counts[name])
    return {"rows": rows}


def section_today(spec, device) -> dict:
    """The meta step as lemon-pl took it before issue 14 (PyTorch's default AdamW, a loop over
    parameters on CPU; every support/query sample's equation encoded) beside today's (fused
    AdamW; each task's equation encoded once per pass), same module and batch, interleaved."""
    from lemon_pl.core.optim import default_adamw

    torch = _torch()
    module, batch, _ = _meta_setup(spec, device)
    net = module.net
    loop_opt = torch.optim.AdamW(module.parameters(), lr=1e-4, foreach=False)
    app_opt = default_adamw(list(module.parameters()), lr=1e-4)
    shares = hasattr(net, "share_equation")

    def step_with(opt, share):
        inner = _meta_step_fn(module, batch, opt)

        def step():
            if shares:
                net.share_equation = share
            inner()
        return step

    variants = {"meta step before issue 14": step_with(loop_opt, False), "meta step now": step_with(app_opt, True)}
    return {"rows": time_rounds(variants, spec["rounds"], spec["warmup"], device,
                                baseline="meta step before issue 14")}


SECTIONS = {"overhead": section_overhead, "order": section_order, "vmap": section_vmap, "lora": section_lora,
            "today": section_today}


def run_spec(spec: dict) -> dict:
    torch = _torch()
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    t0 = time.perf_counter()
    res = SECTIONS[spec["section"]](spec, device)
    res["peak_mb"] = (torch.cuda.max_memory_allocated(device) / 2**20) if device.type == "cuda" else _peak_rss_mb()
    res["seconds"] = time.perf_counter() - t0
    res["threads"] = torch.get_num_threads()
    return {**spec, **res}


def worker_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    try:
        res = run_spec(spec)
    except Exception as exc:  # report, don't crash the driver
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        res = {**spec, "error": f"{type(exc).__name__}: {msg}", "traceback": traceback.format_exc()}
    print("@@RESULT@@" + json.dumps(res), flush=True)


# ============================================================================ driver
def _merge(results: list[dict]) -> dict:
    """Several processes of one spec: per-variant medians of the per-process medians."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[-1]
    merged = dict(ok[0])
    merged["processes"] = len(ok)
    rows = {}
    for name in ok[0]["rows"]:
        rs = [r["rows"][name] for r in ok if name in r["rows"]]
        good = [r for r in rs if "error" not in r]
        if not good:
            rows[name] = rs[0]
            continue
        row = dict(good[0])
        for key in ("ms", "cpu_ms", "ratio", "cpu_ratio"):
            if key in row:
                row[key] = statistics.median(r[key] for r in good)
        row["all_ms"] = [x for r in good for x in r["all_ms"]]
        rows[name] = row
    merged["rows"] = rows
    merged["peak_mb"] = max(r["peak_mb"] for r in ok)
    merged["seconds"] = sum(r["seconds"] for r in ok)
    return merged


def _fmt_ratio(row):
    if "ratio" not in row:
        return f"{'':>8s} {'':>8s}"
    return f"{row['ratio']:7.3f}x {row['cpu_ratio']:7.3f}x"


def print_section(res: dict, device: str) -> None:
    title = {"overhead": "meta step vs the plain passes it contains",
             "order": "first-order vs second-order meta step",
             "vmap": "tasks in a Python loop vs torch.func.vmap",
             "lora": "fine-tuning step: full vs LoRA",
             "today": "meta step before issue 14 vs now (fused AdamW, equation once per task)"}[res["section"]]
    sizes = (f"batch {res['batch']}" if res["section"] == "lora" else
             f"T={res['tasks']} tasks x S={res['inner_steps']} inner steps, support {res['support']}, "
             f"query {res['query']}")
    print(f"\n== {res['section']}: {title} | {res['model']} | {sizes}")
    if "error" in res:
        print(f"   SKIPPED: {res['error']}")
        return
    if res["section"] == "overhead":
        print(f"   plain passes = {res['tasks'] * res['inner_steps']} support passes (batch {res['support']}) + "
              f"{res['tasks']} query passes (batch {res['query']}), forward+backward, + 1 AdamW step; "
              "'naive loop' = per-tensor updates + functional_call, for comparison")
    lora = res["section"] == "lora"
    head = f"   {'variant':38s} {'ms/step':>9s} {'cpu ms':>9s} {'ratio':>8s} {'cpu rat.':>8s}"
    if lora:
        head += f" {'trainable':>12s} {'of total':>8s} {'AdamW MB':>8s}"
    print(head)
    print("   " + "-" * (len(head) - 3))
    for name, row in res["rows"].items():
        if "error" in row:
            print(f"   {name:38s} FAILED: {row['error']}")
            continue
        line = f"   {name:38s} {row['ms']:9.1f} {row['cpu_ms']:9.1f} {_fmt_ratio(row)}"
        if lora:
            line += (f" {row['trainable']:12,d} {100 * row['trainable'] / row['total']:7.2f}% "
                     f"{2 * 4 * row['trainable'] / 2**20:8.1f}")
        print(line)
    mem = "peak RSS" if device == "cpu" else "peak alloc"
    extra = ""
    if "check" in res:
        c = res["check"]
        extra = (f"; vmap check: loss {c['loss_vmap']:.6f} vs loop {c['loss_loop']:.6f}, "
                 f"max grad diff {c['max_grad_diff_rel']:.1e} of the largest gradient")
    print(f"   ({res.get('processes', 1)} process(es), {res['threads']} threads, {mem} {res['peak_mb']:.0f} MB, "
          f"{res['seconds']:.0f}s{extra})")


def summary(results: list[dict]) -> list[str]:
    lines = []
    for r in results:
        if "error" in r:
            continue
        rows = r["rows"]
        if r["section"] == "overhead":
            for name in ("meta (lemon_pl)", "meta (naive loop)"):
                row = rows.get(name, {})
                if "ratio" in row:
                    verdict = "meets" if row["ratio"] <= TARGET_RATIO else "misses"
                    lines.append(f"{r['model']}: {name} costs {row['ratio']:.3f}x the plain passes it contains "
                                 f"(CPU time {row['cpu_ratio']:.3f}x) - {verdict} the <= {TARGET_RATIO}x target "
                                 f"(reference loop: {REFERENCE_RATIO}x)")
        elif r["section"] == "order":
            row = rows.get("second-order (loop)", {})
            if "ratio" in row:
                lines.append(f"{r['model']}: second-order meta step = {row['ratio']:.2f}x first-order")
        elif r["section"] == "vmap":
            v, nv = (rows.get(k, {}) for k in ("vmap, first-order", "loop, first-order (naive)"))
            if "ratio" in v and "ratio" in nv:
                lines.append(f"{r['model']}: vmap first-order = {v['ratio']:.3f}x the lemon_pl loop "
                             f"({'faster' if v['ratio'] < 1 else 'slower'}), "
                             f"{v['ratio'] / nv['ratio']:.3f}x the naive loop")
            so, lso = rows.get("vmap, second-order", {}), rows.get("loop, second-order (lemon_pl)", {})
            if "ms" in so and "ms" in lso:
                lines.append(f"{r['model']}: vmap second-order = {so['ms'] / lso['ms']:.3f}x the loop's")
        elif r["section"] == "today":
            now = rows.get("meta step now", {})
            if "ratio" in now:
                lines.append(f"{r['model']}: meta step now = {1 / now['ratio']:.2f}x faster than before issue 14 "
                             f"({now['ms']:.0f} ms)")
        elif r["section"] == "lora":
            full, lora = list(rows.values())[:2]
            if "ratio" in lora:
                lines.append(f"{r['model']}: LoRA step = {lora['ratio']:.2f}x the full fine-tuning step, "
                             f"{lora['trainable']:,} vs {full['trainable']:,} trainable parameters "
                             f"({100 * lora['trainable'] / full['trainable']:.2f}%)")
    return lines


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (default)")
    p.add_argument("--quick", action="store_true", help="fewer rounds, no ablations (< 4 min on 2 CPU cores)")
    p.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    p.add_argument("--models", nargs="+", choices=["prose", "fno", "deeponet"], default=None,
                   help="networks for the overhead/vmap sections (default: prose fno; without --quick also deeponet)")
    p.add_argument("--lora-models", nargs="+", choices=["prose", "prose_paper"], default=["prose", "prose_paper"])
    p.add_argument("--tasks", type=int, default=5)
    p.add_argument("--inner-steps", type=int, default=5)
    p.add_argument("--support", type=int, default=10)
    p.add_argument("--query", type=int, default=20)
    p.add_argument("--rounds", type=int, default=None, help="timed rounds per section (default 12, --quick 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed rounds (default 2, --quick 1)")
    p.add_argument("--procs", type=int, default=1,
                   help="run every section in N fresh processes and take medians (noisy shared machines)")
    add_runner_args(p, timeout=1200)
    args = p.parse_args(argv)
    if args._worker is not None:
        worker_main(args._worker)
        return

    import torch

    device = resolve_device(args.device)
    rounds = args.rounds or (5 if args.quick else 12)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    models = args.models or (["prose", "fno"] if args.quick else ["prose", "fno", "deeponet"])
    common = dict(device=device, threads=args.threads, tasks=args.tasks, inner_steps=args.inner_steps,
                  support=args.support, query=args.query, warmup=warmup)
    specs = []
    for section in args.sections:
        if section == "lora":
            for m in args.lora_models:
                big = m == "prose_paper"
                specs.append(dict(common, section=section, model=m, batch=20, rank=16,
                                  rounds=max(3, rounds // 2) if big and device == "cpu" else rounds * 2))
        elif section == "order":
            specs.append(dict(common, section=section, model="prose", rounds=max(3, rounds // 2) if args.quick
                              else rounds))
        else:
            for m in (models if section in ("overhead", "vmap", "today") else ["prose"]):
                specs.append(dict(common, section=section, model=m, rounds=rounds,
                                  ablations=not args.quick and m == "prose",
                                  vmap_second_order=not args.quick and m == "prose"))

    print(f"torch {torch.__version__} | device {device} | threads {args.threads or torch.get_num_threads()} | "
          f"{len(specs)} section runs x {args.procs} process(es) | {rounds} timed rounds, {warmup} warm-up",
          flush=True)
    if hasattr(os, "getloadavg") and device == "cpu":
        load = os.getloadavg()[0]
        if load > 0.5:
            print(f"note: 1-min load average is {load:.1f} before starting: other jobs share the CPU; variants are "
                  "interleaved and ratios are per-round medians to limit the effect", flush=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")

    def run_worker(spec: dict) -> dict:
        try:
            proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_worker", json.dumps(spec)],
                                  capture_output=True, text=True, env=env, timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return {**spec, "error": f"timed out after {args.timeout}s"}
        line = [ln for ln in proc.stdout.splitlines() if ln.startswith("@@RESULT@@")]
        if line:
            return json.loads(line[-1][len("@@RESULT@@"):])
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {**spec, "error": f"worker exited with {proc.returncode}: {tail[0]}"}

    t_start = time.perf_counter()
    results = []
    for spec in specs:
        res = _merge([run_worker(spec) for _ in range(max(1, args.procs))])
        results.append(res)
        print_section(res, device)
        sys.stdout.flush()
    print("\nSummary (ratio = median over rounds of the per-round ratio, wall time; lower is better):")
    for line in summary(results):
        print("  " + line)
    print(f"total wall time {time.perf_counter() - t_start:.0f}s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
