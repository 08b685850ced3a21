#!/usr/bin/env python
"""Speed ratios of the physics-informed (PINN) subsystem, each measured within one run.

Every comparison times two variants, A and B, of one training computation and reports
A_ms / B_ms, i.e. how many times faster B is than A:

1. ``pinn/phase2``    the train step of the 10,401-parameter ``PINN`` (A) vs the Hyper-LR-PINN
                      phase-2 train step (B: ``HyperLRPINN().adapt([30, 0, 0])``, 351 trainable
                      parameters: s, first, last), both on one μ (β = 30, table2_convection) with
                      the release point sets (1000 collocation + 256 IC + 100 periodic BC pairs).
                      A step = ``PINNModule.loss_terms`` + ``total_loss`` + backward + Adam step.
                      Target (the paper's claim): phase 2 trains > 4x faster per epoch.
2. ``loop/batched``   Hyper-LR-PINN phase 1 over the 11 μ of table2_convection: a per-μ Python loop
                      (A: 11 ``loss_terms`` calls on the batch sliced to one μ, each loss / 11
                      back-propagated, the orthogonality penalty once, one Adam step) vs one batched
                      ``loss_terms`` call over every μ (B: ``mu_index``), penalty weights 0.0016,
                      backward, Adam step. Both compute the same loss (checked once: the gradients
                      of the two are compared before timing). Target (the issue): >= 3x.
3. ``func/autograd``  the CDR residual u_t + β u_x − ν u_xx − ρ u(1 − u) of the PINN on the 1000
                      collocation points, forward + residual + backward into the parameters: through
                      ``torch.func`` (A: ``func_derivatives``, vmap of jacfwd(jacrev)) vs batch
                      autograd (B: ``problem.residual``, built on ``derivatives.grad``/``partial``).
                      μ = (30, 1, 1) here so that every term, u_xx included, is non-zero.
4. ``1thr/2thr``      the PINN train step of (1) with 1 (A) vs 2 (B) torch threads, each in a fresh
                      process (``--worker pinn --threads N``, OMP_NUM_THREADS=N,
                      OMP_WAIT_POLICY=PASSIVE) that reports the median of its timed steps as JSON.

5. ``engine``        loss + backward per step (zero_grad, loss, backward; no optimiser step) with the
                      input derivatives of the residual from ``lemon_pl.pinn.jets.derivatives``:
                      nested autograd (A: ``engine="autograd"``, the same requested derivatives) vs
                      the jet (B: ``engine="jet"``, one Taylor-mode forward), and, where a stage
                      exists, today's stage loss (``PINNModule.loss_terms``, u_xx only where some nu != 0) and that stage with
                      u_xx always formed (as before issue 24)
                      as a third variant in the same rounds (its ratio stage/jet printed too), for
                      (a) Hyper-LR-PINN phase 1 over the 11 μ of table2_convection (release point sets;
                      convection: u_x, u_t only; orthogonality penalty included), (b) phase 2 (one μ,
                      ``adapt([30, 0, 0])``, 351 trainable), (c) a 2-D Helmholtz PINN (10,401
                      parameters, u_xx + u_yy, 1000 interior + 400 boundary points, a1 = a2 = 2.5).
                      Each at every thread count of ``--engine-threads`` (default 1 and 2, set with
                      ``torch.set_num_threads`` in this process), the load average printed per row;
                      the losses of the variants are checked equal once before timing.
                      Keys ``engine/a/1thr`` ... ``engine/c/2thr``; ``--only engine`` runs just these.

Method: in-process comparisons run at ``--threads`` torch threads (default 1). Each variant gets
``--warmup`` untimed steps, then the variants alternate in ``--rounds`` rounds, A B A B ..., so that
drift and load from other jobs hit both alike; a round times ``--steps`` consecutive steps of one
variant (wall clock, ``time.perf_counter``) and records ms per step. Reported: the median ms/step
over rounds, the spread (min-max over rounds), and the ratio = the median over rounds of the
per-round ratio A/B (adjacent measurements). Comparison 4 alternates processes, N = 1, 2, 1, 2, ...,
for ``--proc-rounds`` rounds. Nothing here is a stored timing: every number is measured by the run.

Examples::

    python benchmarks/pinn_step.py --quick           # smoke run: few rounds and steps
    python benchmarks/pinn_step.py                   # defaults: about a minute on 2 CPU cores
    python benchmarks/pinn_step.py --rounds 10 --steps 10 --json pinn_step.json
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MU = [30.0, 0.0, 0.0]  # comparisons 1 and 4: β = 30, the first μ of table2_convection
DERIV_MU = [30.0, 1.0, 1.0]  # comparison 3: every term of the residual non-zero
ORTH_WEIGHT = 0.0016  # phase 1: orth_weight_u = orth_weight_v
LR = 2.5e-4  # Adam, as the release
TARGETS = {"pinn/phase2": 4.0, "loop/batched": 3.0,  # the stated targets (ratios, not timings)
           "engine/a": 4.0, "engine/b": 4.0, "engine/c": 4.0}


# ============================================================================ set-up
def table2_batch():
    """The problem and the full training batch of table2_convection (11 μ, release point sets)."""
    from lemon_pl.pinn.collocation import CollocationDataModule

    dm = CollocationDataModule(preset="table2_convection")
    return dm.pde, dm.train_batch()


def one_mu(batch: dict, i: int) -> dict:
    """The batch restricted to its μ row i (the point sets are shared by every μ)."""
    from lemon_pl.pinn.collocation import select_mu

    return select_mu(batch, slice(i, i + 1))


def mu_row(batch: dict, mu: list[float]) -> int:
    import torch

    hits = (batch["mu"] == torch.tensor(mu)).all(dim=1).nonzero()
    if len(hits) != 1:
        raise SystemExit(f"μ = {mu} is not in the table2_convection batch")
    return int(hits[0])


def batched_backward(module, batch: dict) -> None:
    """The loss of every μ in one ``loss_terms`` call (+ penalty), back-propagated."""
    terms = module.loss_terms(module.field(mu=batch["mu"]), batch)
    module.total_loss(terms, module.penalty()).backward()


def loop_backward(module, subs: list[dict]) -> None:
    """The same loss one μ at a time: each μ's loss / M back-propagated (gradients accumulate),
    then the penalty once."""
    for sub in subs:
        terms = module.loss_terms(module.field(mu=sub["mu"]), sub)
        (module.total_loss(terms) / len(subs)).backward()
    pen = module.penalty()
    if pen is not None:
        pen.backward()


def train_step(module, backward, *args):
    """zero_grad, ``backward(module, *args)``, Adam step over the module's trainable parameters."""
    import torch

    opt = torch.optim.Adam(module.trainable_parameters(), lr=LR)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        backward(module, *args)
        opt.step()

    return step


def pinn_module(batch: dict):
    """The 10,401-parameter PINN stage on one μ (β = 30) and its one-μ batch."""
    import torch

    from lemon_pl.pinn.stages import PINNModule
    from lemon_pl.pinn.networks import PINN

    from lemon_pl.pinn.problems import ConvectionDiffusionReaction

    torch.manual_seed(0)
    pde = ConvectionDiffusionReaction("1+sin")  # table2_convection's problem
    return PINNModule(PINN(), problem=pde, mu_values=[MU]), one_mu(batch, mu_row(batch, MU))


# ============================================================================ timing
def time_rounds(fn_a, fn_b, rounds: int, steps: int, warmup: int) -> tuple[list[float], list[float]]:
    """ms per step of A and of B in each of ``rounds`` alternating rounds (after warm-up)."""
    for fn in (fn_a, fn_b):
        for _ in range(warmup):
            fn()
    ms_a, ms_b = [], []
    for _ in range(rounds):
        for fn, out in ((fn_a, ms_a), (fn_b, ms_b)):
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            out.append(1e3 * (time.perf_counter() - t0) / steps)
    return ms_a, ms_b


def summarise(key: str, title: str, name_a: str, name_b: str, ms_a: list[float], ms_b: list[float],
              **extra) -> dict:
    """One result row; prints its ratio line."""
    row = {"key": key, "title": title, "a": name_a, "b": name_b,
           "a_ms": statistics.median(ms_a), "a_min": min(ms_a), "a_max": max(ms_a), "a_rounds": ms_a,
           "b_ms": statistics.median(ms_b), "b_min": min(ms_b), "b_max": max(ms_b), "b_rounds": ms_b,
           "ratio": statistics.median(a / b for a, b in zip(ms_a, ms_b)),
           "target": TARGETS.get(key, TARGETS.get(key.rsplit("/", 1)[0])), **extra}
    verdict = ""
    if row["target"] is not None:
        verdict = f"  (target >= {row['target']:g}x: {'met' if row['ratio'] >= row['target'] else 'MISSED'})"
    print(f"  {name_a}: {fmt_ms(row, 'a')} ms/step | {name_b}: {fmt_ms(row, 'b')} ms/step", flush=True)
    print(f"ratio {key} = {row['ratio']:.2f}x{verdict}", flush=True)
    return row


def fmt_ms(row: dict, v: str) -> str:
    return f"{row[v + '_ms']:.2f} ({row[v + '_min']:.2f}-{row[v + '_max']:.2f})"


# ============================================================================ comparisons
def compare_pinn_vs_phase2(args, pde, batch) -> dict:
    import torch

    from lemon_pl.pinn.stages import PINNModule
    from lemon_pl.pinn.networks import HyperLRPINN

    print("\n[1] PINN train step vs Hyper-LR-PINN phase-2 train step, one μ (β = 30)", flush=True)
    pinn, one = pinn_module(batch)
    torch.manual_seed(0)
    phase2 = PINNModule(HyperLRPINN().adapt(MU, rank="full"), problem=pde, mu_values=[MU])
    counts = {"a_trainable": pinn.n_trainable, "b_trainable": phase2.n_trainable}
    print(f"  trainable parameters: PINN {counts['a_trainable']:,}, phase 2 {counts['b_trainable']:,}; points: "
          f"{len(one['points']['residual'])} collocation + {len(one['points']['ic'])} IC + "
          f"{len(one['points']['bc'])} BC pairs", flush=True)
    ms_a, ms_b = time_rounds(train_step(pinn, batched_backward, one), train_step(phase2, batched_backward, one),
                             args.rounds, args.steps, args.warmup)
    return summarise("pinn/phase2", "PINN vs phase-2 train step", "PINN", "phase 2", ms_a, ms_b, **counts)


def compare_batched_phase1(args, pde, batch) -> dict:
    import torch

    from lemon_pl.pinn.stages import PINNModule
    from lemon_pl.pinn.networks import HyperLRPINN

    m = batch["mu"].shape[0]
    print(f"\n[2] Hyper-LR-PINN phase 1 over {m} μ: per-μ loop vs one batched loss_terms call", flush=True)
    torch.manual_seed(0)
    batched = PINNModule(HyperLRPINN(), problem=pde, mu_values=batch["mu"].tolist(), orth_weight_u=ORTH_WEIGHT,
                         orth_weight_v=ORTH_WEIGHT)
    loop = copy.deepcopy(batched)
    subs = [one_mu(batch, i) for i in range(m)]
    # the two compute the same loss: compare their gradients at the same weights, once
    batched.zero_grad(set_to_none=True)
    loop.zero_grad(set_to_none=True)
    batched_backward(batched, batch)
    loop_backward(loop, subs)
    pairs = [(p.grad, q.grad) for p, q in zip(batched.trainable_parameters(), loop.trainable_parameters())]
    scale = max(float(g.abs().max()) for g, _ in pairs)
    diff = max(float((g - h).abs().max()) for g, h in pairs) / scale
    print(f"  check: max |grad batched - grad loop| = {diff:.1e} of the largest gradient; "
          f"{batched.n_trainable:,} trainable parameters", flush=True)
    ms_a, ms_b = time_rounds(train_step(loop, loop_backward, subs), train_step(batched, batched_backward, batch),
                             args.rounds, args.steps, args.warmup)
    return summarise("loop/batched", f"phase 1 over {m} μ: loop vs batched", f"loop x{m}", "batched", ms_a, ms_b,
                     grad_rel_diff=diff)


def compare_derivatives(args, pde, batch) -> dict:
    import torch

    from lemon_pl.pinn.derivatives import func_derivatives
    from lemon_pl.pinn.networks import PINN

    pts = batch["points"]["residual"]
    print(f"\n[3] CDR residual (u_xx) of the PINN on {len(pts)} points, forward + residual + backward: "
          f"torch.func vs autograd, μ = {DERIV_MU}", flush=True)
    torch.manual_seed(0)
    net = PINN()
    p = pde.mu(DERIV_MU)

    def residual_autograd():
        x = pts.detach().requires_grad_(True)
        return pde.residual(net(x), x, DERIV_MU)  # derivatives.grad / partial on the batch

    def residual_func():
        u, g, h = func_derivatives(net, pts)  # vmap over points of jacfwd(jacrev)
        return g[:, 1] + p["beta"] * g[:, 0] - p["nu"] * h[:, 0, 0] - p["rho"] * u * (1 - u)

    diff = float((residual_autograd() - residual_func()).detach().abs().max())
    print(f"  check: max |residual autograd - residual torch.func| = {diff:.1e}", flush=True)

    def step(residual):
        def run() -> None:
            net.zero_grad(set_to_none=True)
            residual().square().mean().backward()
        return run

    ms_a, ms_b = time_rounds(step(residual_func), step(residual_autograd), args.rounds, args.steps, args.warmup)
    return summarise("func/autograd", "residual + backward: torch.func vs autograd", "torch.func", "autograd",
                     ms_a, ms_b, residual_max_diff=diff)


def compare_threads(args) -> dict:
    print(f"\n[4] PINN train step with 1 vs 2 torch threads, fresh processes alternating "
          f"({args.proc_rounds} round(s), {args.worker_steps} timed steps each)", flush=True)
    ms = {1: [], 2: []}
    seen = {}
    for _ in range(args.proc_rounds):
        for n in (1, 2):
            env = dict(os.environ, OMP_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n), OMP_WAIT_POLICY="PASSIVE")
            env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "pinn", "--threads", str(n),
                   "--steps", str(args.worker_steps), "--warmup", str(args.warmup)]
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                raise SystemExit(f"worker with {n} thread(s) timed out after {args.timeout}s") from None
            lines = proc.stdout.strip().splitlines()
            if proc.returncode != 0 or not lines:
                tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
                raise SystemExit(f"worker with {n} thread(s) exited with {proc.returncode}:\n{tail}")
            res = json.loads(lines[-1])
            ms[n].append(res["ms"])
            seen[n] = res["torch_threads"]
    return summarise("1thr/2thr", "PINN train step: 1 vs 2 threads", "1 thread", "2 threads", ms[1], ms[2],
                     worker_threads=seen)


def time_variants(fns: dict, rounds: int, steps: int, warmup: int) -> dict[str, list[float]]:
    """ms per step of every variant in each of ``rounds`` rounds, the variants alternating."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    ms: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                fn()
            ms[name].append(1e3 * (time.perf_counter() - t0) / steps)
    return ms


def cdr_wanted(mu):
    """The multi-indices the CDR residual needs for the μ rows of a batch: u_t always, u_x
    where some β != 0, u_xx where some ν != 0 (zero-coefficient terms dropped)."""
    wanted = [(0, 1)]
    if bool((mu[:, 0] != 0).any()):
        wanted.append((1, 0))
    if bool((mu[:, 1] != 0).any()):
        wanted.append((2, 0))
    return wanted


def cdr_engine_loss(module, batch: dict, engine: str):
    """The stage's CDR loss (residual + IC + periodic BC [+ penalty]) with the residual's
    derivatives from ``jets.derivatives(engine=...)``."""
    import torch

    from lemon_pl.pinn.jets import derivatives

    net, mu = module.net, batch["mu"]
    m = mu.shape[0]
    x, idx = module.tile(batch["points"]["residual"], m)
    d = derivatives(net, x, mu, idx, cdr_wanted(mu), engine=engine)
    cols = mu[idx]
    u = d[(0, 0)][:, 0]
    r = d[(0, 1)][:, 0]
    if (1, 0) in d:
        r = r + cols[:, 0] * d[(1, 0)][:, 0]
    if (2, 0) in d:
        r = r - cols[:, 1] * d[(2, 0)][:, 0]
    if bool((mu[:, 2] != 0).any()):
        r = r - cols[:, 2] * u * (1 - u)
    ic, bc, pairs = batch["points"]["ic"], batch["points"]["bc"], batch["pairs"]["bc"]
    xb, ib = module.tile(torch.cat([ic, bc, pairs]), m)
    ub = net(xb, mu, ib).view(m, -1)
    n_ic, n_bc = ic.shape[0], bc.shape[0]
    loss = (r.square().mean() + (ub[:, :n_ic] - batch["targets"]["ic"]).square().mean()
            + (ub[:, n_ic:n_ic + n_bc] - ub[:, n_ic + n_bc:]).square().mean())
    pen = module.penalty()
    return loss if pen is None else loss + pen


def stage_loss(module, batch: dict):
    """Today's stage loss: ``loss_terms`` (nested autograd; u_xx only when some nu != 0) + ``total_loss``."""
    return module.total_loss(module.loss_terms(module.field(mu=batch["mu"]), batch), module.penalty())


def always_uxx_cdr(ic: str):
    """The CDR problem with its residual as the stage formed it before issue 24: u_xx always, also
    where nu = 0 (imported here: torch loads after the thread settings)."""
    from lemon_pl.pinn.derivatives import grad, partial
    from lemon_pl.pinn.problems import ConvectionDiffusionReaction

    class AlwaysUxxCDR(ConvectionDiffusionReaction):
        def residual(self, u, coords, mu=None):
            p = self.mu_columns(mu, coords.shape[0])
            g = grad(u, coords)
            u_xx = partial(g[:, 0], coords, 0)
            u = u.reshape(-1)
            return g[:, 1] + p["beta"] * g[:, 0] - p["nu"] * u_xx - p["rho"] * u * (1 - u)

    return AlwaysUxxCDR(ic)


def stage_loss_always_uxx(module, batch: dict):
    """:func:`stage_loss` with :func:`always_uxx_cdr` in place of the module's problem (same weights)."""
    saved = module.pde
    module.pde = always_uxx_cdr(saved.ic)
    try:
        return stage_loss(module, batch)
    finally:
        module.pde = saved


def helmholtz_setup():
    """A 2-D Helmholtz PINN (10,401 parameters) with 1000 interior and 400 boundary points."""
    import torch

    from lemon_pl.pinn.networks import PINN
    from lemon_pl.pinn.problems.helmholtz import Helmholtz2D

    torch.manual_seed(0)
    pde = Helmholtz2D()
    mu = [2.5, 2.5]
    g = torch.Generator().manual_seed(0)
    inner = torch.rand(1000, 2, generator=g) * 2 - 1
    side = torch.rand(100, generator=g) * 2 - 1
    one = torch.ones(100)
    edge = torch.cat([torch.stack([s1, s2], 1) for s1, s2 in
                      ((side, one), (side, -one), (one, side), (-one, side))])
    forcing = pde.forcing(inner, mu).detach()
    target = pde.boundary_value(edge, mu).detach()
    return PINN(), pde, inner, edge, forcing, target


def helmholtz_loss(net, pde, inner, edge, forcing, target, engine: str):
    from lemon_pl.pinn.jets import derivatives

    d = derivatives(net, inner, None, None, [(2, 0), (0, 2)], engine=engine)
    r = d[(2, 0)][:, 0] + d[(0, 2)][:, 0] + pde.k ** 2 * d[(0, 0)][:, 0] - forcing
    return r.square().mean() + (net(edge)[:, 0] - target).square().mean()


def compare_engine(args, pde, batch) -> list[dict]:
    import torch

    from lemon_pl.pinn.networks import HyperLRPINN
    from lemon_pl.pinn.stages import PINNModule

    m = batch["mu"].shape[0]
    print(f"\n[5] loss + backward per step: nested autograd vs jet (and today's stage loss), "
          f"threads {args.engine_threads}", flush=True)
    torch.manual_seed(0)
    phase1 = PINNModule(HyperLRPINN(), problem=pde, mu_values=batch["mu"].tolist(), orth_weight_u=ORTH_WEIGHT,
                        orth_weight_v=ORTH_WEIGHT)
    torch.manual_seed(0)
    phase2 = PINNModule(HyperLRPINN().adapt(MU, rank="full"), problem=pde, mu_values=[MU])
    one = one_mu(batch, mu_row(batch, MU))
    hnet, hpde, *hdata = helmholtz_setup()
    setups = {
        "a": (f"phase 1 over {m} μ (u_x, u_t)", phase1, {
            "stage": lambda: stage_loss(phase1, batch),
            "stage_uxx": lambda: stage_loss_always_uxx(phase1, batch),
            "autograd": lambda: cdr_engine_loss(phase1, batch, "autograd"),
            "jet": lambda: cdr_engine_loss(phase1, batch, "jet")}),
        "b": ("phase 2, one μ (u_x, u_t)", phase2, {
            "stage": lambda: stage_loss(phase2, one),
            "stage_uxx": lambda: stage_loss_always_uxx(phase2, one),
            "autograd": lambda: cdr_engine_loss(phase2, one, "autograd"),
            "jet": lambda: cdr_engine_loss(phase2, one, "jet")}),
        "c": ("2-D Helmholtz PINN (u_xx + u_yy)", hnet, {
            "autograd": lambda: helmholtz_loss(hnet, hpde, *hdata, engine="autograd"),
            "jet": lambda: helmholtz_loss(hnet, hpde, *hdata, engine="jet")}),
    }
    rows = []
    before = torch.get_num_threads()
    try:
        for key, (title, owner, losses) in setups.items():
            values = {name: float(fn()) for name, fn in losses.items()}
            ref = values["autograd"]
            gap = max(abs(v - ref) for v in values.values()) / abs(ref)
            params = [p for p in owner.parameters() if p.requires_grad]
            print(f"  ({key}) {title}: {sum(p.numel() for p in params):,} trainable; losses "
                  + ", ".join(f"{n} {v:.6g}" for n, v in values.items()) + f" (max rel gap {gap:.1e})", flush=True)

            def step(fn, params=params):
                def run() -> None:
                    for p in params:
                        p.grad = None
                    fn().backward()
                return run

            for n in args.engine_threads:
                torch.set_num_threads(n)
                load = os.getloadavg()
                print(f"  ({key}) threads {n}, load average {' '.join(f'{x:.2f}' for x in load)}", flush=True)
                ms = time_variants({name: step(fn) for name, fn in losses.items()}, args.rounds, args.steps,
                                   args.warmup)
                extra = {"threads": n, "loadavg": load, "loss_rel_gap": gap}
                if "stage" in ms:
                    extra.update(stage_ms=statistics.median(ms["stage"]), stage_min=min(ms["stage"]),
                                 stage_max=max(ms["stage"]), stage_rounds=ms["stage"],
                                 stage_ratio=statistics.median(a / b for a, b in zip(ms["stage"], ms["jet"])),
                                 stage_autograd_ratio=statistics.median(
                                     a / b for a, b in zip(ms["stage"], ms["autograd"])),
                                 uxx_ms=statistics.median(ms["stage_uxx"]),
                                 uxx_ratio=statistics.median(a / b for a, b in zip(ms["stage_uxx"], ms["stage"])))
                    print(f"  stage: {extra['stage_ms']:.2f} ({extra['stage_min']:.2f}-{extra['stage_max']:.2f}) "
                          f"ms/step; stage/jet = {extra['stage_ratio']:.2f}x, stage/autograd = "
                          f"{extra['stage_autograd_ratio']:.2f}x; the stage with u_xx always formed (before): "
                          f"{extra['uxx_ms']:.2f} ms/step, {extra['uxx_ratio']:.2f}x today's", flush=True)
                row = summarise(f"engine/{key}/{n}thr", f"({key}) {title}, {n} thr", "autograd", "jet",
                                ms["autograd"], ms["jet"], **extra)
                rows.append(row)
    finally:
        torch.set_num_threads(before)
    return rows


# ============================================================================ worker
def worker_main(args) -> None:
    """One fresh process: the PINN train step of comparison 1 at ``--threads`` threads; prints
    the median ms over ``--steps`` individually timed steps as one JSON line."""
    import torch

    torch.set_num_threads(args.threads or 1)
    _, batch = table2_batch()
    module, one = pinn_module(batch)
    step = train_step(module, batched_backward, one)
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(1e3 * (time.perf_counter() - t0))
    print(json.dumps({"worker": args.worker, "torch_threads": torch.get_num_threads(),
                      "ms": statistics.median(times), "steps_ms": times}))


# ============================================================================ driver
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke run: few rounds and steps, one process per "
                                                        "thread count")
    p.add_argument("--rounds", type=int, default=None, help="alternating timed rounds (default 5, --quick 3)")
    p.add_argument("--steps", type=int, default=None, help="steps timed per round (default 5, --quick 1)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps of each variant before the rounds")
    p.add_argument("--proc-rounds", type=int, default=None,
                   help="rounds of fresh processes (1 and 2 threads) for comparison 4 (default 3, --quick 1)")
    p.add_argument("--worker-steps", type=int, default=None,
                   help="timed steps in each thread-count process (default 20, --quick 5)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the in-process comparisons")
    p.add_argument("--timeout", type=int, default=300, help="per-process timeout of comparison 4, seconds")
    p.add_argument("--json", type=str, default=None, help="also write the results to this JSON file")
    p.add_argument("--engine-threads", type=int, nargs="+", default=[1, 2],
                   help="torch thread counts of the engine rows (comparison 5; default 1 2)")
    p.add_argument("--only", choices=["all", "engine", "existing"], default="all",
                   help="run every comparison (default), only the engine rows (5) or only 1-4")
    p.add_argument("--worker", choices=["pinn"], default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker is not None:
        args.steps = args.steps or 20
        worker_main(args)
        return
    quick = args.quick
    args.rounds = args.rounds or (3 if quick else 5)
    args.steps = args.steps or (1 if quick else 5)
    args.proc_rounds = args.proc_rounds or (1 if quick else 3)
    args.worker_steps = args.worker_steps or (5 if quick else 20)

    t_start = time.perf_counter()
    load_before = os.getloadavg()
    import torch

    torch.set_num_threads(args.threads)
    cpus = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    print(f"torch {torch.__version__} | in-process threads {torch.get_num_threads()} | CPUs {cpus} "
          f"({usable} usable) | load average before {' '.join(f'{x:.2f}' for x in load_before)}")
    print(f"{args.rounds} alternating rounds x {args.steps} timed step(s) per variant after {args.warmup} warm-up "
          f"step(s); ratio = median over rounds of A/B (how many times faster B is)", flush=True)

    pde, batch = table2_batch()
    print(f"set-up (imports, point sets) {time.perf_counter() - t_start:.1f}s", flush=True)
    rows = []
    if args.only != "engine":
        for compare in (compare_pinn_vs_phase2, compare_batched_phase1, compare_derivatives):
            t0 = time.perf_counter()
            rows.append(compare(args, pde, batch))
            rows[-1]["seconds"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        rows.append(compare_threads(args))
        rows[-1]["seconds"] = time.perf_counter() - t0
    if args.only != "existing":
        t0 = time.perf_counter()
        engine_rows = compare_engine(args, pde, batch)
        for r in engine_rows:
            r["seconds"] = (time.perf_counter() - t0) / len(engine_rows)  # the rows' mean share
        rows += engine_rows
    load_after = os.getloadavg()

    head = f"{'comparison':44s} {'A':10s} {'A ms/step (min-max)':>22s} {'B':10s} {'B ms/step (min-max)':>22s} " \
           f"{'A/B':>7s}  {'took':>6s}  target"
    print("\n" + head)
    print("-" * len(head))
    for r in rows:
        target = ""
        if r["target"] is not None:
            target = f">= {r['target']:g}x {'met' if r['ratio'] >= r['target'] else 'MISSED'}"
        print(f"{r['title']:44s} {r['a']:10s} {fmt_ms(r, 'a'):>22s} {r['b']:10s} {fmt_ms(r, 'b'):>22s} "
              f"{r['ratio']:6.2f}x  {r['seconds']:5.1f}s  {target}")
    for r in rows:
        if "stage_ratio" in r:
            print(f"{r['title']:44s} stage {r['stage_ms']:.2f} ({r['stage_min']:.2f}-{r['stage_max']:.2f}) ms/step, "
                  f"stage/jet {r['stage_ratio']:.2f}x, stage/autograd {r['stage_autograd_ratio']:.2f}x")
    first = rows[0]
    if "a_trainable" in first:
        print(f"trainable parameters: PINN {first['a_trainable']:,} vs phase 2 {first['b_trainable']:,}")
    print(f"load average after {' '.join(f'{x:.2f}' for x in load_after)} | total wall time "
          f"{time.perf_counter() - t_start:.1f}s")
    if args.json:
        out = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": cpus,
               "usable_cpus": usable, "loadavg_before": load_before, "loadavg_after": load_after,
               "settings": {k: getattr(args, k) for k in ("quick", "rounds", "steps", "warmup", "proc_rounds",
                                                          "worker_steps", "threads", "engine_threads",
                                                          "only")},
               "rows": rows}
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
