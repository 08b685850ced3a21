"""Data-generation throughput: samples/s per family and wall time of a whole preset.

    python benchmarks/generate_throughput.py                  # every family + the default preset
    python benchmarks/generate_throughput.py --preset tiny    # quicker end-to-end figure
    python benchmarks/generate_throughput.py --families kdv,heat --no-preset

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
    args = ap.parse_args()

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
