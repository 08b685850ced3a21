"""Check that data solves the equation its tokens describe.

``equation_residual`` decodes a token sequence, evaluates every term of the equation on a
trajectory (time derivatives by central differences in *stored* time, space derivatives
spectrally) and returns the size of the residual relative to the largest term. A sign or
time-scaling error in either the solver or the tokens makes it O(1).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from lemon_pl.data.ics import grid
from lemon_pl.data.solvers import spectral_derivative
from lemon_pl.data.symbols import Expr, decode


def derivative_env(u: np.ndarray, ds: float) -> dict[str, np.ndarray]:
    """Variables for equation evaluation on the interior frames of ``u`` (..., nt, nx).

    ``ds`` is the stored-time spacing of the frames. Returned arrays have nt - 2 frames.
    """
    nx = u.shape[-1]
    mid = u[..., 1:-1, :]
    env = {
        "u_0": mid,
        "ut_0": (u[..., 2:, :] - u[..., :-2, :]) / (2 * ds),
        "utt_0": (u[..., 2:, :] - 2 * mid + u[..., :-2, :]) / ds**2,
        "x": grid(nx),
    }
    for order, name in enumerate(("ux_0", "uxx_0", "uxxx_0", "uxxxx_0"), start=1):
        env[name] = spectral_derivative(mid, order)
    return env


def equation_residual(tokens: Sequence[int] | Expr, u: np.ndarray, ds: float,
                      frames: slice = slice(None), cells: np.ndarray | slice = slice(None)) -> float:
    """Relative residual ||sum of terms|| / max_i ||term_i|| of the decoded equation on ``u``.

    ``frames`` and ``cells`` restrict the evaluation (after dropping the two end frames),
    e.g. to the smooth part of a trajectory that later develops a shock.
    """
    tree = tokens if isinstance(tokens, Expr) else decode(tokens)
    env = derivative_env(np.asarray(u, dtype=np.float64), ds)
    terms = []
    for term in tree.terms():
        val = np.broadcast_to(term.evaluate(env), env["u_0"].shape)
        terms.append(val[..., frames, :][..., cells])
    residual = np.sum(terms, axis=0)
    scale = max(float(np.linalg.norm(t)) for t in terms)
    return float(np.linalg.norm(residual)) / max(scale, 1e-300)
