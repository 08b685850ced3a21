"""Derivatives of a network's output with respect to its input coordinates, for PINN residuals.

Two interchangeable paths:

* **autograd on a batch** — the network is evaluated once on ``coords`` (N, d) with
  ``requires_grad``; ``grad``, ``partial``, ``partial2`` and ``laplacian`` differentiate its
  output ``u`` (N,) or (N, 1). Every call uses ``create_graph=True``, so a loss built from
  the derivatives back-propagates into the network parameters. The batch trick (the gradient
  of ``sum(u)``) is exact only when point i's output depends on point i alone (true of an
  MLP; not of batch norm across points).
* **torch.func** — ``func_grad``, ``func_hessian``, ``func_derivatives`` and
  ``func_laplacian`` take the network ``f(coords) -> u`` itself and use ``jacrev`` /
  ``jacfwd`` per point under ``vmap``. Parameter gradients flow through these too.

Second derivatives need float32 or float64 (no autocast). ``benchmark()`` times both paths
on a CDR-style residual; run ``python -m lemon_pl.pinn.derivatives``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, Sequence

import torch
from torch import Tensor
from torch.func import jacfwd, jacrev, vmap

Field = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------- autograd on a batch


def _flat(u: Tensor, coords: Tensor) -> Tensor:
    """``u`` as (N,), checked against ``coords`` (N, d)."""
    if coords.ndim != 2:
        raise ValueError(f"coords must have shape (N, d), got {tuple(coords.shape)}")
    if u.ndim == 2 and u.shape[1] == 1:
        u = u[:, 0]
    if u.ndim != 1 or u.shape[0] != coords.shape[0]:
        raise ValueError(f"u must have shape (N,) or (N, 1) with N = {coords.shape[0]}, got {tuple(u.shape)}")
    return u


def grad(u: Tensor, coords: Tensor) -> Tensor:
    """Gradient (N, d) of the scalar field ``u`` (N,) or (N, 1) at each of the N points.

    ``coords`` must require grad and be the very tensor ``u`` was computed from (a fresh
    slice ``c[:, :2]`` is a different tensor). A field that does not depend on ``coords``
    (a constant, or a derivative that vanished) gives zeros.
    """
    u = _flat(u, coords)
    if not coords.requires_grad:
        raise ValueError("coords must require grad (coords.requires_grad_())")
    if not u.requires_grad:
        return torch.zeros_like(coords)
    (g,) = torch.autograd.grad(u, coords, grad_outputs=torch.ones_like(u), create_graph=True,
                               allow_unused=True)
    return torch.zeros_like(coords) if g is None else g


def partial(u: Tensor, coords: Tensor, i: int) -> Tensor:
    """First partial derivative du/dx_i (N,)."""
    return grad(u, coords)[:, i]


def partial2(u: Tensor, coords: Tensor, i: int, j: int | None = None) -> Tensor:
    """Second partial derivative d^2u / dx_i dx_j (N,); ``j`` defaults to ``i``."""
    return partial(partial(u, coords, i), coords, i if j is None else j)


def laplacian(u: Tensor, coords: Tensor, dims: Sequence[int] | None = None) -> Tensor:
    """Sum of d^2u/dx_i^2 over ``dims`` (default: every coordinate), shape (N,)."""
    g = grad(u, coords)
    dims = range(coords.shape[1]) if dims is None else dims
    out = torch.zeros_like(g[:, 0])
    for i in dims:
        out = out + grad(g[:, i], coords)[:, i]
    return out


# --------------------------------------------------------------------------- torch.func on a network


def _at_point(f: Field) -> Callable[[Tensor], Tensor]:
    """The batched field ``f`` (N, d) -> (N,) or (N, 1) as a function of one point (d,) -> ()."""

    def one(p: Tensor) -> Tensor:
        return f(p.unsqueeze(0)).reshape(())

    return one


def func_grad(f: Field, coords: Tensor) -> Tensor:
    """Gradient (N, d) of ``f`` at each point, by ``vmap(jacrev)``."""
    return vmap(jacrev(_at_point(f)))(coords)


def func_hessian(f: Field, coords: Tensor) -> Tensor:
    """Hessian (N, d, d) of ``f`` at each point, by ``vmap(jacfwd(jacrev))``."""
    return vmap(jacfwd(jacrev(_at_point(f))))(coords)


def func_derivatives(f: Field, coords: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Value (N,), gradient (N, d) and Hessian (N, d, d) of ``f`` in one nested pass."""
    one = _at_point(f)

    def value_and_grad(p):
        g, u = jacrev(lambda q: (one(q), one(q)), has_aux=True)(p)
        return g, (u, g)

    def all_three(p):
        h, (u, g) = jacfwd(value_and_grad, has_aux=True)(p)
        return u, g, h

    return vmap(all_three)(coords)


def func_laplacian(f: Field, coords: Tensor, dims: Sequence[int] | None = None) -> Tensor:
    """Sum of the Hessian's diagonal over ``dims`` (default: every coordinate), shape (N,)."""
    h = func_hessian(f, coords)
    dims = list(range(coords.shape[1])) if dims is None else list(dims)
    return h.diagonal(dim1=1, dim2=2)[:, dims].sum(dim=1)


# --------------------------------------------------------------------------- benchmark


def _mlp(width: int, depth: int, d_in: int = 2) -> torch.nn.Module:
    layers: list[torch.nn.Module] = [torch.nn.Linear(d_in, width), torch.nn.Tanh()]
    for _ in range(depth - 1):
        layers += [torch.nn.Linear(width, width), torch.nn.Tanh()]
    layers.append(torch.nn.Linear(width, 1))
    return torch.nn.Sequential(*layers)


def _residual_autograd(net: torch.nn.Module, xt: Tensor) -> Tensor:
    """u_t + u_x - u_xx - u(1 - u) through the batch autograd helpers."""
    xt = xt.detach().requires_grad_(True)
    u = net(xt)[:, 0]
    g = grad(u, xt)
    u_xx = partial(g[:, 0], xt, 0)
    return g[:, 1] + g[:, 0] - u_xx - u * (1 - u)


def _residual_func(net: torch.nn.Module, xt: Tensor) -> Tensor:
    """The same residual through ``func_derivatives``."""
    u, g, h = func_derivatives(net, xt)
    return g[:, 1] + g[:, 0] - h[:, 0, 0] - u * (1 - u)


def _median_time(fn: Callable[[], None], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def benchmark(n_points: int = 1000, width: int = 50, depth: int = 3, threads: Sequence[int] = (1, 2),
              repeats: int = 30, dtype: torch.dtype = torch.float32, seed: int = 0) -> list[dict]:
    """Time one residual evaluation (forward) and one training step (forward + backward).

    The network is a tanh MLP 2 -> ``width`` x ``depth`` hidden layers -> 1 on ``n_points``
    random (x, t) points; the residual needs u, u_x, u_t and u_xx. Prints the median time of
    each path per thread count and the ratio torch.func / autograd (> 1: autograd is faster).
    Restores the previous thread count. Returns one row per (threads, mode).
    """
    torch.manual_seed(seed)
    net = _mlp(width, depth).to(dtype)
    xt = torch.rand(n_points, 2, dtype=dtype)
    paths = {"autograd": _residual_autograd, "torch.func": _residual_func}
    diff = (paths["autograd"](net, xt) - paths["torch.func"](net, xt)).abs().max().item()
    before = torch.get_num_threads()
    rows = []
    print(f"tanh MLP 2-{'-'.join([str(width)] * depth)}-1, {n_points} points, {dtype}, "
          f"median of {repeats}; max |autograd - func| residual = {diff:.1e}")
    try:
        for n in threads:
            torch.set_num_threads(n)
            for mode in ("forward", "forward+backward"):
                res = {}
                for name, path in paths.items():
                    def step(path=path):
                        r = path(net, xt)
                        if mode != "forward":
                            net.zero_grad(set_to_none=True)
                            r.pow(2).mean().backward()
                    res[name] = _median_time(step, repeats)
                ratio = res["torch.func"] / res["autograd"]
                rows.append({"threads": n, "mode": mode, **res, "ratio": ratio})
                print(f"threads={n} {mode:>16}: autograd {1e3 * res['autograd']:7.2f} ms, "
                      f"torch.func {1e3 * res['torch.func']:7.2f} ms, func/autograd = {ratio:.2f}")
    finally:
        torch.set_num_threads(before)
    return rows


def _main() -> None:
    ap = argparse.ArgumentParser(description=benchmark.__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--width", type=int, default=50)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--float64", action="store_true")
    a = ap.parse_args()
    benchmark(a.points, a.width, a.depth, a.threads, a.repeats, torch.float64 if a.float64 else torch.float32)


if __name__ == "__main__":
    _main()
