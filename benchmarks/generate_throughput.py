"""Data-generation throughput: samples/s per family and wall time of a whole preset.

    python benchmarks/generate_throughput.py                  # every family + the default preset
    python benchmarks/generate_throughput.py --preset tiny    # quicker end-to-end figure
    python benchmarks/generate_throughput.py --families kdv,heat --no-preset
    python benchmarks/generate_throughput.py --levels 32,64,128,256     # cost vs resolution, fitted exponent
    python benchmarks/generate_throughput.py --solvers                  # numpy vs torch solvers, same run
    python benchmarks/generate_throughput.py --solvers --device cuda    # the torch solvers on a GPU
    python benchmarks/generate_throughput.py --solvers --compiled       # + torch.compile'd steps

``--solvers``: the cost of one *solved* trajectory (128 x 64) of every family with a torch
solver, for the numpy solver and the torch solver in float64 and float32 (``--compiled``: also
through ``torch.compile``, ``torch64c`` / ``torch32c``; the first, compiling call is excluded and
printed), measured in the same process in ``--rounds`` rounds that alternate the variants
(median and min-max over the rounds). Only the solve is timed (ICs are drawn beforehand; CUDA
is synchronised). torch solves ``--solver-batch`` trajectories at once (``--solver-batch``/50
operators x 50 ICs, per-row parameters, as ``lemon-pl generate --chunk`` does), numpy one
operator of K=50 at a time (its natural batch) for the first ``--numpy-operators`` of those
operators (porous_medium's operators cycle through m = 2, 3, 4). Printed: threads, machine
load, the torch/numpy ratio, the reference (JAX) figures and the 2x targets with PASS/MISS.
``--procs N`` runs N such copies at once (e.g. ``--procs 2 --threads 1``: the two cores used as
``lemon-pl generate --workers 2`` uses them, one torch thread per worker) and prints the machine
time per trajectory, a copy's median / N.

``--levels``: the multi-level families' cost per sample at every level (the solver alone, as
``lemon-pl generate --levels`` records it: map families by their batched solve of ``--batch``
inputs, engine families by ``generate_operator``'s solver seconds over K trajectories), the best
of ``--repeats`` timings, and the exponent ``p`` of a least-squares fit ``cost = C n**p`` in
log-log (the slope between the two finest levels beside it). Set ``OMP_NUM_THREADS=1`` to
compare levels fairly.

Per-family figures time ``generate_operator`` (IC sampling, batched solve, blow-up filter) for
``--operators`` operators of K=50 trajectories at 128 x 64 in this process. The preset figure is
the wall time of ``lemon-pl generate`` into a temporary folder with ``--workers`` processes.
Target on 2 CPU cores: every family >= 50 samples/s, the default preset in <= 5 minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lemon_pl.data.families import get_family, resolve_families
from lemon_pl.data.generate import PRESETS, generate, generate_operator, plan_params

TARGET_SAMPLES_PER_S = 50.0
TARGET_DEFAULT_S = 300.0

SOLVER_FAMILIES = ("burgers,conservation_sinflux,conservation_cubicflux,inviscid_burgers,inviscid_conservation_sinflux,"
                   "inviscid_conservation_cubicflux,diff_logisreact_1D,diff_linearreact_1D,diff_bistablereact_1D,"
                   "diff_squarelogisticreact_1D,porous_medium")
#: measured reference (JAX) ms per trajectory at 128 x 64 on 2 CPU cores, where known
REFERENCE_MS = {"diff_logisreact_1D": 0.13, "conservation_sinflux": 3.7}
#: the targets: at least 2x faster than the reference; FV families <= 1.8 ms, RD <= 0.06 ms, and
#: porous_medium (no reference figure) half of the top of the reference range (4.3 ms)
TARGET_MS_FV, TARGET_MS_RD, TARGET_MS_POROUS = 1.8, 0.06, 2.15


def _target_ms(name: str) -> float:
    if name in REFERENCE_MS:
        return min(REFERENCE_MS[name] / 2, TARGET_MS_RD if name.startswith("diff_") else TARGET_MS_FV)
    if name.startswith("diff_"):
        return TARGET_MS_RD
    return TARGET_MS_POROUS if name == "porous_medium" else TARGET_MS_FV


def _verdict(variant: str, ms: float, target: float) -> str:
    """PASS/MISS of a torch variant against its target ('' for the numpy baseline)."""
    return "" if variant == "numpy" else ("PASS" if ms <= target else "MISS")


def solver_comparison(families: str, batch: int, rounds: int, numpy_ops: int, device: str, threads: int,
                      compiled: bool = False, k: int = 50, nx: int = 128, nt: int = 64, seed: int = 0,
                      json_path: str | None = None) -> None:
    """numpy vs torch (float64, float32) ms per solved trajectory, alternating in rounds (see the docstring)."""
    import torch

    from lemon_pl.data import torch_solvers as ts

    torch.set_num_threads(threads)
    names = resolve_families(families)
    n_ops = max(1, batch // k)
    batch = n_ops * k
    print(f"solver comparison: ms per solved trajectory ({nx} x {nt}); torch batch {batch} = {n_ops} operators x {k} "
          f"ICs on {device}, numpy {min(numpy_ops, n_ops)} operators x {k} one operator at a time; "
          f"{rounds} alternating rounds (median, min-max); torch threads {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}; load {_load()}")
    head = (f"{'family':32s} {'variant':8s} {'median':>9s} {'min-max':>17s} {'traj/s':>9s} {'/numpy':>7s} "
            f"{'ref':>6s} {'target':>7s} {'':5s} {'load':>5s}")
    print(head)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    summary = []
    for name in names:
        fam = get_family(name)
        if not fam.has_torch:
            print(f"{name:32s} (no torch solver)")
            continue
        rng = np.random.default_rng(seed)
        if name == "porous_medium":  # m cycles through 2, 3, 4 (numpy's operators cover all three)
            ops = np.array([[float(2 + i % 3)] for i in range(n_ops)])
        else:
            ops, _ = plan_params(fam, seed, [("bench", n_ops, 0.1)])["bench"]
        rows = np.repeat(ops, k, axis=0)
        u0 = fam.sample_initial_conditions(rng, batch, nx)
        n_np = min(numpy_ops, n_ops)
        u0_dev = torch.as_tensor(u0, device=device)

        def run_numpy():
            for i in range(n_np):
                fam.solve(ops[i], u0[i * k:(i + 1) * k], nt=nt)
            return n_np * k

        def run_torch(dtype, compiled):
            def go():
                ts.set_compile(compiled)
                try:
                    fam.solve_torch(rows, u0_dev, nt=nt, device=device, dtype=dtype)
                    sync()
                finally:
                    ts.set_compile(False)
                return batch
            return go

        variants = {"numpy": run_numpy, "torch64": run_torch(torch.float64, False),
                    "torch32": run_torch(torch.float32, False)}
        if compiled:
            variants.update(torch64c=run_torch(torch.float64, True), torch32c=run_torch(torch.float32, True))
        fam.solve(ops[0], u0[:2], nt=nt)  # warm-up: imports, FFT plans, allocator; compilation
        warm = {}
        for v in variants:
            if v != "numpy":
                t0 = time.perf_counter()
                dt = torch.float64 if "64" in v else torch.float32
                ts.set_compile(v.endswith("c"))
                # the full batch: a smaller one would compile for its shape and leave the
                # recompile for the timed batch size inside the first timed round
                fam.solve_torch(rows, u0_dev, nt=nt, device=device, dtype=dt)
                ts.set_compile(False)
                sync()
                warm[v] = time.perf_counter() - t0
        times: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(rounds):
            for v, fn in variants.items():
                t0 = time.perf_counter()
                n = fn()
                times[v].append((time.perf_counter() - t0) / n * 1e3)
        med = {v: statistics.median(tv) for v, tv in times.items()}
        ref = REFERENCE_MS.get(name)
        target = _target_ms(name)
        for v, tv in times.items():
            ratio = f"{med[v] / med['numpy']:7.3f}" if v != "numpy" else f"{'1':>7s}"
            verdict = _verdict(v, med[v], target)
            warmup = f"  (first call {warm[v]:.1f} s)" if v.endswith("c") else ""
            print(f"{name:32s} {v:8s} {med[v]:9.4f} {min(tv):8.4f}-{max(tv):<8.4f} {1e3 / med[v]:9.0f} {ratio} "
                  f"{(f'{ref:.2f}' if ref else '-'):>6s} {target:7.3f} {verdict:5s} {os.getloadavg()[0]:5.2f}{warmup}",
                  flush=True)
        summary.append((name, med))
    print("summary (median ms/trajectory; speed-up = numpy / torch; PASS/MISS against the target):")
    for name, med in summary:
        target = _target_ms(name)
        cells = [f"{v} {med[v]:8.4f} ({med['numpy'] / med[v]:5.1f}x {'PASS' if med[v] <= target else 'MISS'})"
                 for v in med if v != "numpy"]
        print(f"  {name:32s} numpy {med['numpy']:7.3f}  " + "  ".join(cells) + f"  target <= {target:.3f}")
    print(f"machine load at the end: {_load()}")
    if json_path:  # the GPU suite's summary reads this
        import json

        out = {"device": device, "batch": batch, "load": _load(), "families": {
            name: {v: {"ms": m, "traj_per_s": 1e3 / m, "batch": batch if v != "numpy" else k} for v, m in med.items()}
            for name, med in summary}}
        Path(json_path).write_text(json.dumps(out, indent=2))


def concurrent_solver_comparison(args) -> None:
    """``--procs N``: N copies of ``--solvers`` at once (each ``--threads`` threads, its own
    alternating rounds); a trajectory's machine time is a copy's median ms / N (N copies solve N
    batches in that wall time). Prints one aggregate table; each copy's own table is in its log."""
    import json
    import subprocess

    tmp = Path(tempfile.mkdtemp(prefix="gen-procs-"))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--solvers", "--solver-families", args.solver_families,
           "--device", args.device, "--rounds", str(args.rounds), "--numpy-operators", str(args.numpy_operators),
           "--threads", str(args.threads), "--nx", str(args.nx), "--nt", str(args.nt)]
    cmd += ["--compiled"] if args.compiled else []
    cmd += ["--solver-batch", str(args.solver_batch)] if args.solver_batch else []
    load0 = _load()
    with contextlib.ExitStack() as stack:  # the copies' logs closed once they have all finished
        logs = [stack.enter_context(open(tmp / f"{i}.log", "w")) for i in range(args.procs)]
        procs = [subprocess.Popen(cmd + ["--json", str(tmp / f"{i}.json")], stdout=log, stderr=subprocess.STDOUT)
                 for i, log in enumerate(logs)]
        codes = [p.wait() for p in procs]
    if any(codes):
        sys.exit(f"a copy failed (exit codes {codes}); logs in {tmp}")
    runs = [json.loads((tmp / f"{i}.json").read_text()) for i in range(args.procs)]
    n = args.procs
    print(f"{n} concurrent copies x {args.threads} torch thread(s); machine ms per solved trajectory = a copy's "
          f"median / {n} (median over copies, min-max); load {load0} -> {_load()}; logs in {tmp}")
    print(f"{'family':32s} {'variant':8s} {'ms/traj':>9s} {'(min-max)':>18s} {'traj/s':>9s} {'target':>7s}")
    out = {"device": args.device, "procs": n, "threads": args.threads, "families": {}}
    for name in runs[0]["families"]:
        target = _target_ms(name)
        for v in runs[0]["families"][name]:
            per = [r["families"][name][v]["ms"] / n for r in runs]
            med = statistics.median(per)
            verdict = _verdict(v, med, target)
            print(f"{name:32s} {v:8s} {med:9.4f} {min(per):8.4f}-{max(per):<9.4f} {1e3 / med:9.0f} {target:7.3f} {verdict}")
            out["families"].setdefault(name, {})[v] = {"ms": med, "ms_per_copy": per}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


def _load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg()) + " (1/5/15 min)"


def family_throughput(name: str, operators: int, k: int, nx: int, nt: int, seed: int = 0) -> float:
    fam = get_family(name)
    params, _ = plan_params(fam, seed, [("bench", operators, 0.1)])["bench"]
    generate_operator(name, params[0], seed, "bench", 0, 2, nx, nt)  # warm caches/imports
    t0 = time.perf_counter()
    for i in range(operators):
        generate_operator(name, params[i], seed, "bench", i, k, nx, nt)
    return operators * k / (time.perf_counter() - t0)


LEVEL_FAMILIES = "inviscid_burgers,schrodinger,schrodinger_osc,rough_elliptic"


def level_cost(name: str, n: int, n_fine: int, batch: int, repeats: int) -> float:
    """Seconds per sample of one level's solve (see the module docstring)."""
    from lemon_pl.multilevel.families import MAP_FAMILIES

    best = float("inf")
    for r in range(repeats):
        if name in MAP_FAMILIES:
            fam = MAP_FAMILIES[name]
            x = fam.restrict(fam.sample_inputs(np.random.default_rng(r), n_fine, batch), n)
            t0 = time.perf_counter()
            fam.solve(x)
            best = min(best, (time.perf_counter() - t0) / batch)
        else:
            fam = get_family(name)
            params = fam.params_array(fam.sample_params(np.random.default_rng(r), 0.0))
            _, _, seconds, _ = generate_operator(name, params, r, "bench", 0, batch, n, 2, n_fine)
            best = min(best, seconds / batch)
    return best


def level_costs(families: str, levels: list[int], batch: int, repeats: int) -> None:
    print(f"cost per sample vs resolution (solver only; best of {repeats}; batch {batch}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; load {os.getloadavg()[0]:.2f})")
    print(f"{'family':20s} " + " ".join(f"{'n=' + str(n):>10s}" for n in levels) + f" {'exponent p':>11s} {'finest pair':>12s}")
    for name in [f.strip() for f in families.split(",") if f.strip()]:
        costs = [level_cost(name, n, levels[-1], batch, repeats) for n in levels]
        p = np.polyfit(np.log(levels), np.log(costs), 1)[0]
        last = np.log(costs[-1] / costs[-2]) / np.log(levels[-1] / levels[-2])
        print(f"{name:20s} " + " ".join(f"{1e3 * c:9.4f}m" for c in costs) + f" {p:11.2f} {last:12.2f}", flush=True)
    print("(m = milliseconds per sample)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default="all")
    ap.add_argument("--operators", type=int, default=3)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--nx", type=int, default=128)
    ap.add_argument("--nt", type=int, default=64)
    ap.add_argument("--preset", default="default", choices=list(PRESETS))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-preset", action="store_true", help="skip the whole-preset timing")
    ap.add_argument("--levels", default=None, help="multi-level cost table at these grids instead, e.g. 32,64,128,256")
    ap.add_argument("--level-families", default=LEVEL_FAMILIES)
    ap.add_argument("--batch", type=int, default=64, help="samples per timed solve (--levels)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--solvers", action="store_true", help="numpy vs torch solver comparison instead")
    ap.add_argument("--solver-families", default=SOLVER_FAMILIES)
    ap.add_argument("--device", default="cpu", help="device of the torch solvers (--solvers): cpu or cuda")
    ap.add_argument("--solver-batch", type=int, default=None,
                    help="trajectories per torch solve (--solvers; default 400 on CPU, 16000 on CUDA)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (--solvers)")
    ap.add_argument("--numpy-operators", type=int, default=3, help="operators of K=50 timed with numpy (--solvers)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (--solvers)")
    ap.add_argument("--compiled", action="store_true",
                    help="also time the torch solvers through torch.compile (--solvers; compile time excluded)")
    ap.add_argument("--json", default=None, help="also write the --solvers table to this JSON file")
    ap.add_argument("--procs", type=int, default=1,
                    help="--solvers: run this many copies at once (as `lemon-pl generate --workers N` uses the "
                         "cores) and report the machine time per trajectory, each copy's time / N")
    args = ap.parse_args()
    if args.solvers and args.procs > 1:
        concurrent_solver_comparison(args)
        return
    if args.solvers:
        batch = args.solver_batch or (16000 if args.device.startswith("cuda") else 400)
        solver_comparison(args.solver_families, batch, args.rounds, args.numpy_operators, args.device, args.threads,
                          args.compiled, nx=args.nx, nt=args.nt, json_path=args.json)
        return
    if args.levels:
        level_costs(args.level_families, sorted(int(v) for v in args.levels.split(",")), args.batch, args.repeats)
        return

    names = resolve_families(args.families)
    print(f"per-family throughput: {args.operators} operators x K={args.k}, nx={args.nx}, nt={args.nt}, 1 process")
    print(f"{'family':34s} {'samples/s':>10s} {'ms/sample':>10s} {'vs target':>10s}")
    rates = {}
    for name in names:
        rate = family_throughput(name, args.operators, args.k, args.nx, args.nt)
        rates[name] = rate
        print(f"{name:34s} {rate:10.1f} {1000 / rate:10.2f} {rate / TARGET_SAMPLES_PER_S:9.1f}x", flush=True)
    slowest = min(rates, key=rates.get)
    print(f"slowest: {slowest} at {rates[slowest]:.1f} samples/s "
          f"({'meets' if rates[slowest] >= TARGET_SAMPLES_PER_S else 'MISSES'} the {TARGET_SAMPLES_PER_S:.0f}/s target)")
    if args.no_preset:
        return
    pre = PRESETS[args.preset]
    n_traj = len(names) * sum(pre.n_operators.values()) * pre.k
    with tempfile.TemporaryDirectory() as root:
        t0 = time.perf_counter()
        generate(root, args.preset, names, workers=args.workers, progress=False)
        wall = time.perf_counter() - t0
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)
    print(f"preset {args.preset!r}: {len(names)} families, {n_traj} trajectories, {args.workers} workers: "
          f"{wall:.1f} s wall ({n_traj / wall:.0f} samples/s overall, {size / 2**20:.0f} MiB on disk)")
    if args.preset == "default":
        print(f"target <= {TARGET_DEFAULT_S:.0f} s: {'met' if wall <= TARGET_DEFAULT_S else 'MISSED'} "
              f"({TARGET_DEFAULT_S / wall:.2f}x margin)")


if __name__ == "__main__":
    main()
