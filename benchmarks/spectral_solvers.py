"""ms per trajectory of the torch spectral solvers (lemon_pl.data.torch_spectral) vs the numpy families.

    OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python benchmarks/spectral_solvers.py   # CPU, 2 torch threads
    OMP_WAIT_POLICY=PASSIVE python benchmarks/spectral_solvers.py --device cuda --batches 1000,10000

Each cell is the best of ``--repeats`` timings of one batched solve of B trajectories at
nx x nt = 128 x 64 with per-row parameters (two parameter rows, half the batch each), after a
warm-up solve. The numpy column is ``Family.solve`` for the same batch (one call per parameter
row, summed), on CPU only. ``--threads`` sets torch's threads; numpy's FFT is single-threaded
and OMP_NUM_THREADS=1 keeps its OpenBLAS (fplanck's eigh) at one thread too: with more, a
loaded machine makes OpenBLAS' spinning threads erratic (seconds per call).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lemon_pl.data import torch_spectral as ts
from lemon_pl.data.families import get_family

FUNCTIONS = {
    "heat": ts.heat, "advection": ts.advection, "wave": ts.wave, "Klein_Gordon": ts.klein_gordon,
    "Sine_Gordon": ts.sine_gordon, "kdv": ts.kdv, "fplanck": ts.fplanck,
}


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _best(fn, repeats: int, device: str) -> float:
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t0)
    return best


def bench(name: str, b: int, nx: int, nt: int, device: str, dtype: torch.dtype, repeats: int,
          with_numpy: bool) -> tuple[float, float]:
    fam = get_family(name)
    rng = np.random.default_rng(0)
    ps = [fam.sample_params(rng), fam.sample_params(rng)]
    u0 = fam.sample_initial_conditions(rng, b, nx)
    half = b // 2
    rows = [slice(0, half), slice(half, b)]
    p = {k: torch.tensor([ps[0][k]] * half + [ps[1][k]] * (b - half), dtype=torch.float64,
                         device=device)[:, None] for k in fam.param_names}
    u0_t = torch.as_tensor(u0, dtype=dtype, device=device)
    t = torch.from_numpy(fam.t_grid(nt))
    fn = FUNCTIONS[name]
    fn(u0_t[:2], t, **{k: v[:2] for k, v in p.items()})  # warm-up (plans, kernels)
    t_torch = _best(lambda: fn(u0_t, t, **p), repeats, device)
    t_np = float("nan")
    if with_numpy:
        t_np = _best(lambda: [fam.solve(ps[i], u0[rows[i]], nt) for i in range(2)], repeats, "cpu")
    return 1e3 * t_torch / b, 1e3 * t_np / b


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--families", default=",".join(FUNCTIONS))
    ap.add_argument("--batches", default="50,1000")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--nx", type=int, default=128)
    ap.add_argument("--nt", type=int, default=64)
    ap.add_argument("--no-numpy", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    batches = [int(s) for s in args.batches.split(",")]
    with_numpy = not args.no_numpy
    print(f"device={args.device} dtype={args.dtype} torch threads={torch.get_num_threads()} "
          f"nx={args.nx} nt={args.nt}; ms per trajectory (best of {args.repeats})")
    head = f"{'family':<14}" + "".join(f"{f'B={b} torch':>14}{f'B={b} numpy':>14}{'speedup':>9}" for b in batches)
    print(head)
    for name in args.families.split(","):
        cells = []
        for b in batches:
            mt, mn = bench(name, b, args.nx, args.nt, args.device, dtype, args.repeats, with_numpy)
            cells.append(f"{mt:>14.4f}{mn:>14.4f}{mn / mt:>9.2f}")
        print(f"{name:<14}" + "".join(cells), flush=True)


if __name__ == "__main__":
    main()
