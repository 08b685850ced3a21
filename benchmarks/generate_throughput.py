"""Data-generation throughput: samples/s per family and wall time of a whole preset.

    python benchmarks/generate_throughput.py                  # every family + the default preset
    python benchmarks/generate_throughput.py --preset tiny    # quicker end-to-end figure
    python benchmarks/generate_throughput.py --families kdv,heat --no-preset
    python benchmarks/generate_throughput.py --levels 32,64,128,256     # cost vs resolution, fitted exponent

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
import os
import tempfile
import time

import numpy as np

from lemon_pl.data.families import get_family, resolve_families
from lemon_pl.data.generate import PRESETS, generate, generate_operator, plan_params

TARGET_SAMPLES_PER_S = 50.0
TARGET_DEFAULT_S = 300.0


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
    args = ap.parse_args()
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
