"""Samples per level under a data-generation budget: error models, an estimator, allocators.

Multi-level fine-tuning (Li, Fan & Ying, arXiv 2102.07169) trains one network on ``N_1`` samples
of the coarsest level, then fine-tunes it on ``N_2`` samples of the next finer level, and so on to
level ``L``.  A sample of level ``l`` costs ``c_l`` seconds to generate (measured, see
``problems.measure_cost``) and the plan must keep ``sum_l N_l c_l <= B``.  This module holds pure
numpy/scipy functions for choosing the ``N_l``:

* ``mlmc_allocation``: the Multi-Level Monte Carlo rule ``N_l ∝ sqrt(V_l / c_l)`` (a baseline);
* ``equal_split``: the same budget share for every level (a baseline);
* ``fit_level_model`` / ``LevelModel``: ``e(N) = b + a N**-alpha`` fitted to pilot fits of one
  level (validation error on the finest level's validation set vs the number of samples);
* ``estimate_final_error``: the estimated error of a curriculum from the level models (the model
  and its justification are in that function's docstring);
* ``optimal_allocation``: integer ``N_l`` that minimise that estimate within the budget;
* ``plan_table``: printable lines of a plan.

The paper's own estimator comes from an NTK-regime analysis that is not available here
(UNVERIFIED, see ``shared/reference/pinn-methods.md`` §3); ``estimate_final_error`` is this
package's own, simple, documented stand-in with the same telescoping structure as MLMC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import scipy.optimize

ArrayLike = Union[Sequence[float], np.ndarray]

ALPHA_BOUNDS = (0.05, 2.0)

#: the most samples any allocator gives one level (2**40, about 1.1e12). Counts stay exact in
#: float64 and a plan's spent seconds change with every sample added, so every rounding loop
#: ends; a budget that would buy more is spent only up to this many samples per level (or up to
#: the ``upper`` counts given, e.g. what the level files hold), the rest stays unspent.
MAX_SAMPLES = 2 ** 40
#: rounding adds at most this many single samples, then spends what is left in bulk
_GREEDY_STEPS = 10_000


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------


def _costs(costs: ArrayLike) -> np.ndarray:
    c = np.asarray(costs, dtype=float)
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"costs must be a non-empty 1-D sequence, got shape {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c <= 0):
        raise ValueError(f"costs must be finite and > 0, got {c.tolist()}")
    return c


def _budget(budget: float, c: np.ndarray) -> float:
    try:
        b = float(budget)
    except (TypeError, ValueError):
        raise ValueError(f"budget must be a number, got {budget!r}") from None
    if not math.isfinite(b) or b <= 0:
        raise ValueError(f"budget must be finite and > 0, got {budget!r}")
    if b < c.min():
        raise ValueError(f"budget={b:g} is below the cheapest sample (min(costs)={c.min():g})")
    return b


def _min_samples(min_samples: int, c: np.ndarray, budget: float) -> int:
    if isinstance(min_samples, bool) or int(min_samples) != min_samples or min_samples < 0:
        raise ValueError(f"min_samples must be an integer >= 0, got {min_samples!r}")
    m = int(min_samples)
    if m * c.sum() > budget:
        raise ValueError(f"min_samples={m} on every level costs {m * c.sum():g} > "
                         f"budget={budget:g}")
    return m


def _upper(upper: Optional[ArrayLike], c: np.ndarray) -> np.ndarray:
    """The most samples of every level: ``upper`` (e.g. what each level's file holds) capped at
    :data:`MAX_SAMPLES`; all :data:`MAX_SAMPLES` when ``None``."""
    if upper is None:
        return np.full(c.size, MAX_SAMPLES, dtype=np.int64)
    u = np.asarray(upper, dtype=float)
    _same_length("upper", u, c)
    if np.any(np.isnan(u)) or np.any(u < 0):
        raise ValueError(f"upper must hold counts >= 0, got {u.tolist()}")
    return np.minimum(np.floor(u), MAX_SAMPLES).astype(np.int64)


def _cap_budget(budget: float, c: np.ndarray, upper: np.ndarray) -> float:
    """The budget, but no more than what buys ``upper`` samples of every level."""
    return min(budget, float(upper @ c))


def _same_length(name: str, x: np.ndarray, c: np.ndarray) -> None:
    if x.ndim != 1 or x.size != c.size:
        raise ValueError(f"{name} must have one entry per level ({c.size}, the length of costs), "
                         f"got shape {x.shape}")


# --------------------------------------------------------------------------------------------
# greedy integer rounding
# --------------------------------------------------------------------------------------------


def _greedy_fill(n: np.ndarray, c: np.ndarray, budget: float, gain, allowed=None, upper=None) -> np.ndarray:
    """Add one sample at a time where ``gain(l, N_l) / c_l`` is largest, while one is affordable.

    ``gain(l, N)`` is the decrease of the objective from ``N`` to ``N + 1`` samples of level
    ``l``.  Stops when no allowed level below its ``upper`` count fits in the remaining budget,
    so the leftover is below the cheapest allowed cost (and never negative).  The remaining
    budget is kept as a running difference (it falls by ``c_l`` with every sample, so the loop
    ends however large the counts); after :data:`_GREEDY_STEPS` single samples (costs that
    differ by many orders of magnitude) the rest goes in bulk to the level of largest gain per
    second, then the next, within ``upper``.
    """
    n = n.copy()
    allowed = np.ones(c.size, bool) if allowed is None else allowed
    upper = np.full(c.size, MAX_SAMPLES, dtype=np.int64) if upper is None else upper
    left = budget - float(n @ c)
    for _ in range(_GREEDY_STEPS):
        fits = np.flatnonzero(allowed & (n < upper) & (c <= left * (1 + 1e-12)))
        if fits.size == 1:  # one level left to fill: the order does not matter, fill it at once
            break
        best, best_ratio = -1, -math.inf
        for l in fits:
            ratio = gain(l, n[l]) / c[l]
            if ratio > best_ratio:
                best, best_ratio = l, ratio
        if best < 0:
            return n
        n[best] += 1
        left -= c[best]
    while True:  # bulk: as many samples as fit, level by level in order of gain per second
        fits = np.flatnonzero(allowed & (n < upper) & (c <= left * (1 + 1e-12)))
        if fits.size == 0:
            return n
        l = max(fits, key=lambda k: gain(k, n[k]) / c[k])
        k = int(min(float(upper[l] - n[l]), max(1.0, math.floor(min(left / c[l], float(MAX_SAMPLES))))))
        n[l] += k
        left -= k * c[l]


# --------------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------------


def mlmc_continuous(costs: ArrayLike, variances: ArrayLike, budget: float) -> np.ndarray:
    """The real-valued MLMC optimum ``N_l = (B / sum_k sqrt(V_k c_k)) sqrt(V_l / c_l)``.

    It minimises the estimator variance ``sum_l V_l / N_l`` subject to ``sum_l N_l c_l = B``
    (Lagrange: ``V_l / N_l**2 = lambda c_l``).  No validation beyond shapes; see
    ``mlmc_allocation``.
    """
    c = np.asarray(costs, float)
    v = np.asarray(variances, float)
    return budget * (np.sqrt(v / c) / np.sum(np.sqrt(v * c)))


@np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore")
def mlmc_allocation(costs: ArrayLike, variances: ArrayLike, budget: float,
                    min_samples: int = 1, upper: Optional[ArrayLike] = None) -> np.ndarray:
    """The Multi-Level Monte Carlo rule ``N_l ∝ sqrt(V_l / c_l)``, as integers within the budget.

    ``V_l`` is the variance of level ``l``'s contribution (in MLMC, of the correction
    ``P_l - P_{l-1}``); the rule minimises ``sum_l V_l / N_l`` under ``sum_l N_l c_l <= B`` and is
    the baseline allocator of the reference notes (not the MLFT paper's estimator).

    Rounding keeps the budget: start from ``max(floor(N_l*), min_samples)`` with ``N_l*`` from
    ``mlmc_continuous``; if raising levels to ``min_samples`` overspent, remove samples (from
    levels above ``min_samples``) where that raises ``sum V_l / N_l`` least per second saved;
    then greedily add one sample at a time where it lowers ``sum V_l / N_l`` most per unit cost,
    while any level still fits.  The result costs at most ``B`` and leaves less than
    ``min(costs)`` unspent, unless levels reached their ``upper`` count (default and at most
    :data:`MAX_SAMPLES`): a level gets no more than that, and a budget beyond what buys every
    level's ``upper`` is left unspent.

    Returns an int64 array ``N`` of one count per level.  Raises ``ValueError`` for costs that
    are not positive, variances that are negative, all zero or of the wrong length, a budget that
    is not positive or is below the cheapest sample, or ``min_samples`` that do not fit.
    """
    c = _costs(costs)
    v = np.asarray(variances, dtype=float)
    _same_length("variances", v, c)
    if not np.all(np.isfinite(v)) or np.any(v < 0) or not np.any(v > 0):
        raise ValueError(f"variances must be finite, >= 0 and not all zero, got {v.tolist()}")
    budget = _budget(budget, c)
    m = _min_samples(min_samples, c, budget)
    up = _upper(upper, c)
    if np.any(up < m):
        raise ValueError(f"min_samples={m} exceeds the most samples of a level (upper={up.tolist()})")
    budget = _cap_budget(budget, c, up)

    def gain(l, k):  # decrease of V_l / N_l from k to k + 1 samples
        if v[l] == 0:
            return 0.0
        return math.inf if k == 0 else v[l] / (k * (k + 1.0))

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        star = np.nan_to_num(mlmc_continuous(c, v, budget), nan=0.0, posinf=float(MAX_SAMPLES))
    n = np.maximum(np.floor(np.minimum(star * (1 + 1e-12), up)), m).astype(np.int64)
    while n @ c > budget:  # only after raising levels to min_samples or rounding up
        cand = np.flatnonzero(n > m)
        loss = [(v[l] / (n[l] - 1.0) - v[l] / n[l]) / c[l] if n[l] > 1 else math.inf
                for l in cand]
        n[cand[int(np.argmin(loss))]] -= 1
    return _greedy_fill(n, c, budget, gain, upper=up)


@np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore")
def equal_split(costs: ArrayLike, budget: float, upper: Optional[ArrayLike] = None) -> np.ndarray:
    """``N_l = floor(B / (L c_l))``: every level gets the same share ``B / L`` of the budget.

    The leftover of each share is not moved to other levels (this is the "equal split" baseline
    of the experiment); a level whose sample costs more than ``B / L`` gets none, and none gets
    more than its ``upper`` count (default and at most :data:`MAX_SAMPLES`).
    """
    c = _costs(costs)
    budget = _budget(budget, c)
    up = _upper(upper, c)
    with np.errstate(over="ignore"):
        share = budget / (c.size * c) * (1 + 1e-12)
    return np.floor(np.minimum(share, up)).astype(np.int64)


# --------------------------------------------------------------------------------------------
# error model of one level
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LevelModel:
    """Error of a network trained on ``N`` samples of one level: ``e(N) = b + a N**-alpha``.

    ``a N**-alpha`` is the sample (generalisation) error that more samples remove; ``b`` is the
    level's floor, the error that more samples of this level cannot remove: its discretisation
    bias against the finest level (plus whatever floor the network and training have).  Errors
    are measured on the finest level's validation set.
    """

    a: float
    alpha: float
    b: float

    def predict(self, n_samples: Union[float, ArrayLike]) -> Union[float, np.ndarray]:
        """``b + a N**-alpha`` (``inf`` at ``N = 0`` unless ``a = 0``); scalar in, float out."""
        n = np.asarray(n_samples, dtype=float)
        if np.any(n < 0):
            raise ValueError(f"n_samples must be >= 0, got {n_samples!r}")
        with np.errstate(divide="ignore"):
            out = self.b + (self.a * n ** -self.alpha if self.a > 0 else 0.0 * n)
        return float(out) if out.ndim == 0 else out

    def sample_term(self, n_samples: Union[float, ArrayLike]) -> Union[float, np.ndarray]:
        """``a N**-alpha``: the part of the error that more samples of this level remove."""
        return LevelModel(self.a, self.alpha, 0.0).predict(n_samples)

    def __call__(self, n_samples: Union[float, ArrayLike]) -> Union[float, np.ndarray]:
        return self.predict(n_samples)


def fit_level_model(n_samples: ArrayLike, errors: ArrayLike) -> LevelModel:
    """Fit ``e(N) = b + a N**-alpha`` (``a, b >= 0``, ``alpha`` in [0.05, 2]) to pilot fits.

    Least squares in log space (``log e_i - log(b + a N_i**-alpha)``), so every pilot fit counts
    by its relative misfit and the small errors at large ``N`` that fix ``b`` are not swamped by
    the large ones at small ``N``.  The start comes from profiling over a grid of ``alpha``
    values, where the model is linear in ``(a, b)`` and a non-negative least-squares solve (rows
    weighted by ``1 / e_i``, the linearisation of the log misfit) gives the best pair; the best
    start is refined by ``scipy.optimize.least_squares`` with the bounds.  Repeated ``N`` (several
    seeds) are fine.  Needs at least 3 distinct ``N``; with noisy or flat data the fit stays
    within the bounds (flat data give ``a`` near 0 and ``b`` near the level).
    """
    n = np.asarray(n_samples, dtype=float)
    e = np.asarray(errors, dtype=float)
    if n.ndim != 1 or e.ndim != 1 or n.size != e.size:
        raise ValueError(f"n_samples and errors must be 1-D of one length, got shapes {n.shape} "
                         f"and {e.shape}")
    if not np.all(np.isfinite(n)) or np.any(n <= 0):
        raise ValueError(f"n_samples must be finite and > 0, got {n.tolist()}")
    if not np.all(np.isfinite(e)) or np.any(e <= 0):
        raise ValueError(f"errors must be finite and > 0, got {e.tolist()}")
    if np.unique(n).size < 3:
        raise ValueError(f"n_samples needs at least 3 distinct values to fit (a, alpha, b), "
                         f"got {np.unique(n).tolist()}")
    log_e = np.log(e)
    tiny = 1e-300

    def residual(x):
        a, alpha, b = x
        return np.log(np.maximum(b + a * n ** -alpha, tiny)) - log_e

    best, best_cost = None, math.inf
    for alpha in np.linspace(*ALPHA_BOUNDS, 40):
        design = np.stack([n ** -alpha, np.ones_like(n)], axis=1) / e[:, None]
        (a, b), _ = scipy.optimize.nnls(design, np.ones_like(n))
        if a + b <= 0:
            continue
        x = np.array([a, alpha, b])
        cost = float(np.sum(residual(x) ** 2))
        if cost < best_cost:
            best, best_cost = x, cost
    if best is None:  # cannot happen for positive errors; kept as a guard
        best = np.array([0.0, 1.0, float(np.exp(log_e.mean()))])
    lo = [0.0, ALPHA_BOUNDS[0], 0.0]
    hi = [np.inf, ALPHA_BOUNDS[1], np.inf]
    x0 = np.clip(best, lo, [1e300, ALPHA_BOUNDS[1], 1e300])
    fit = scipy.optimize.least_squares(residual, x0, bounds=(lo, hi), method="trf",
                                       x_scale="jac", xtol=1e-14, ftol=1e-14, gtol=1e-14,
                                       max_nfev=2000)
    x = fit.x if 2 * fit.cost <= best_cost else best
    a, alpha, b = (float(v) for v in x)
    return LevelModel(a=max(a, 0.0), alpha=float(np.clip(alpha, *ALPHA_BOUNDS)), b=max(b, 0.0))


# --------------------------------------------------------------------------------------------
# the multi-level estimate
# --------------------------------------------------------------------------------------------


def _check_models(models: Sequence[LevelModel]) -> list:
    models = list(models)
    if not models or not all(isinstance(m, LevelModel) for m in models):
        raise ValueError("models must be a non-empty sequence of LevelModel")
    return models


def _weight(models, k: int, l: int, scale: float) -> float:
    """Relative size of the correction from level ``k``'s map to level ``l``'s, capped at 1."""
    return min(1.0, abs(models[k].b - models[l].b) / scale)


def _chain_error(models, order, n, scale) -> float:
    """The estimate of one curriculum: the levels ``order`` (ascending), all with ``n > 0``."""
    total = models[order[-1]].b + models[order[0]].sample_term(n[order[0]])
    for k, l in zip(order[:-1], order[1:]):
        total += _weight(models, k, l, scale) * models[l].sample_term(n[l])
    return float(total)


def estimate_final_error(models: Sequence[LevelModel], n: ArrayLike, scale: float = 1.0) -> float:
    """Estimated error after the curriculum that trains on ``n[0]`` samples of level 1, then
    fine-tunes on ``n[1]`` of level 2, ..., from the level models (coarsest first).

    The model is a telescoping (MLMC-like) decomposition of the finest map,
    ``f_J = f_{j1} + sum_i (f_{j(i)} - f_{j(i-1)})``, over the levels ``j1 < ... < jm = J`` that
    get samples.  The first level learns its whole map, with that level's sample error
    ``a N**-alpha``; each later level starts from the previous level's weights and only has to
    learn the correction between the two levels' maps, whose size is estimated by the difference
    of the two levels' floors ``|b_k - b_l|`` (relative to ``scale``, the size of the whole map in
    the error's units: 1 for relative errors), so its sample error is weighted by
    ``w = min(1, |b_k - b_l| / scale)``.  What no level can remove is the bias floor ``b_J`` of
    the finest level used.  So, for the curriculum ``j1 < ... < jm``::

        E = b_{jm} + a_{j1} N_{j1}**-alpha_{j1}
                   + sum_{i >= 2} min(1, |b_{j(i-1)} - b_{j(i)}| / scale) a_{j(i)} N_{j(i)}**-alpha

    Why: in the lazy (NTK / kernel) regime, fine-tuning from the previous weights is kernel
    regression of the residual, and kernel-regression error scales with the size of the target,
    so a small correction needs few samples; this is what makes fine levels cheap to use.  It is
    optimistic where corrections are rougher than the map (they often are: shocks, jumps), and
    ``|b_k - b_l|`` is a lower bound on the correction's size (triangle inequality).  A single
    level reduces exactly to its own model, ``E = b_l + a_l N_l**-alpha_l``.

    Levels with few samples may do more harm than good; the estimate takes the best
    sub-curriculum of the levels with ``N_l > 0`` (as if such levels were skipped: a shortest
    path over the levels, exact), which makes it non-increasing in every ``N_l``, from 0 on
    too.  ``n`` may be real (the continuous relaxation); all zeros give ``inf``.
    """
    models = _check_models(models)
    n = np.asarray(n, dtype=float)
    if n.ndim != 1 or n.size != len(models):
        raise ValueError(f"n must have one entry per level ({len(models)}), got shape {n.shape}")
    if not np.all(np.isfinite(n)) or np.any(n < 0):
        raise ValueError(f"n must be finite and >= 0, got {n.tolist()}")
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0, got {scale!r}")
    used = np.flatnonzero(n > 0)
    if used.size == 0:
        return math.inf
    best = {}  # best[l]: smallest sample-error sum of a curriculum that ends at level l
    for j, l in enumerate(used):
        term = models[l].sample_term(n[l])
        options = [term] + [best[k] + _weight(models, k, l, scale) * term for k in used[:j]]
        best[l] = min(options)
    return float(min(best[l] + models[l].b for l in used))


def curriculum_errors(models: Sequence[LevelModel], n: ArrayLike,
                      scale: float = 1.0) -> np.ndarray:
    """The estimate after each level of the curriculum (levels after ``l`` given no samples)."""
    n = np.asarray(n, dtype=float)
    out = []
    for l in range(n.size):
        head = n.copy()
        head[l + 1:] = 0
        out.append(estimate_final_error(models, head, scale))
    return np.array(out)


# --------------------------------------------------------------------------------------------
# the optimal allocation
# --------------------------------------------------------------------------------------------


@np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore")
def continuous_optimum(coeffs: ArrayLike, alphas: ArrayLike, costs: ArrayLike, budget: float,
                       lower: float = 1.0, upper: Optional[ArrayLike] = None) -> np.ndarray:
    """Real ``N`` minimising ``sum_l k_l N_l**-alpha_l``, ``sum_l c_l N_l <= B``,
    ``lower <= N <= upper`` (``upper``: default :data:`MAX_SAMPLES` per level).

    The problem is convex and separable, so the KKT conditions are sufficient:
    ``N_l(lambda) = clip((alpha_l k_l / (lambda c_l))**(1 / (1 + alpha_l)), lower, upper_l)``
    with the multiplier ``lambda`` found by a bracketed root find on the budget (``brentq`` in
    ``log lambda``, every term computed in logs so that no budget overflows it).  Levels with
    ``k_l = 0`` get ``lower``; if the budget buys ``upper`` of every level, that is the optimum.
    With equal ``alpha`` and no active bound this is the closed form
    ``N_l ∝ (k_l / c_l)**(1 / (1 + alpha))``.
    """
    k = np.asarray(coeffs, float)
    al = np.asarray(alphas, float)
    c = np.asarray(costs, float)
    base = np.full(c.size, float(lower))
    top = np.full(c.size, float(MAX_SAMPLES)) if upper is None else np.minimum(np.asarray(upper, float),
                                                                                  float(MAX_SAMPLES))
    top = np.maximum(top, base)
    if base @ c >= budget or not np.any(k > 0):
        return base
    act = k > 0
    top_spend = float(top[act] @ c[act] + base[~act] @ c[~act])
    if top_spend <= budget:
        out = base.copy()
        out[act] = top[act]
        return out
    log_q = np.log(al[act]) + np.log(k[act]) - np.log(c[act])  # log(alpha k / c), finite for finite k > 0

    def n_of(log_lam):
        out = base.copy()
        out[act] = np.clip(np.exp(np.minimum((log_q - log_lam) / (1 + al[act]), 700.0)), lower, top[act])
        return out

    def excess(log_lam):
        return float(n_of(log_lam) @ c) / budget - 1.0

    # lambda at which every level wants its upper count (too much) or the lower one (too few)
    log_hi = log_q - (1 + al[act]) * np.log(max(lower, 1e-300))
    log_lo = log_q - (1 + al[act]) * np.log(top[act])
    lo, hi = float(log_lo.min()) - 1.0, float(log_hi.max()) + 1.0
    log_lam = scipy.optimize.brentq(excess, lo, hi, xtol=1e-14, rtol=1e-14, maxiter=500)
    out = n_of(log_lam)
    over = out @ c
    return out * min(1.0, budget / over) if over > budget else out


def _round_support(models, c, budget, support, rest, m, scale, upper) -> Optional[np.ndarray]:
    """Best integer allocation found for one curriculum ``support`` (others get ``m`` each)."""
    lower = max(m, 1)
    n = np.zeros(c.size)
    n[rest] = m
    left = budget - float(n @ c)
    if lower * c[support].sum() > left or np.any(upper[support] < lower):
        return None
    order = list(support)
    weights = np.ones(len(order))
    for i in range(1, len(order)):
        weights[i] = _weight(models, order[i - 1], order[i], scale)
    coeffs = weights * np.array([models[l].a for l in order])
    alphas = np.array([models[l].alpha for l in order])
    n[order] = continuous_optimum(coeffs, alphas, c[order], left, lower, upper[order])
    n = np.maximum(np.floor(np.minimum(n * (1 + 1e-12), upper)), 0).astype(np.int64)
    n[order] = np.maximum(n[order], lower)
    n[rest] = m
    while n @ c > budget:  # rounding up by the 1e-12 slack overspent: one sample back from the dearest
        dear = [l for l in order if n[l] > lower]
        if not dear:
            return None
        n[max(dear, key=lambda l: c[l])] -= 1
    k_of = dict(zip(order, coeffs))
    a_of = dict(zip(order, alphas))
    allowed = np.zeros(c.size, bool)
    allowed[order] = True

    def gain(l, k):
        return k_of[l] * (k ** -a_of[l] - (k + 1.0) ** -a_of[l])

    def objective(x):
        return _chain_error(models, order, x, scale)

    n = _greedy_fill(n, c, budget, gain, allowed, upper)
    # polish: move one sample out of a level and refill greedily, while that helps
    current = objective(n)
    for _ in range(10_000):
        improved = False
        for l in order:
            if n[l] <= lower:
                continue
            trial = n.copy()
            trial[l] -= 1
            trial = _greedy_fill(trial, c, budget, gain, allowed, upper)
            value = objective(trial)
            if value < current * (1 - 1e-13):
                n, current, improved = trial, value, True
        if not improved:
            break
    return n


@np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore")
def optimal_allocation(models: Sequence[LevelModel], costs: ArrayLike, budget: float,
                       min_samples: int = 0, scale: float = 1.0,
                       upper: Optional[ArrayLike] = None) -> np.ndarray:
    """Integer ``N_l`` minimising ``estimate_final_error`` subject to ``sum_l N_l c_l <= B`` and
    ``N_l <= upper_l`` (default and at most :data:`MAX_SAMPLES`; e.g. what each level's file
    holds).

    ``min_samples`` is the least count of every level (default 0: a level may be left out, so
    coarse-only and fine-only plans are candidates).  Because the estimate is the best
    sub-curriculum, the optimum is the best, over the non-empty sets of levels that carry the
    curriculum (all ``2**L - 1`` of them; the others get ``min_samples``), of the optimum of that
    curriculum's error ``b_J + sum_l k_l N_l**-alpha_l``, a convex separable problem: its
    continuous relaxation is solved exactly from the Lagrange conditions
    (``continuous_optimum``), then rounded down and the leftover spent greedily one sample at a
    time where it lowers the estimate most per second, then polished by moving single samples
    between levels while that lowers the estimate.  The result costs at most ``B`` and leaves
    less than the largest cost unspent, unless it is ``upper`` itself (the estimate does not
    grow with any ``N_l``, so a budget that buys every level's ``upper`` gets exactly that).
    """
    models = _check_models(models)
    c = _costs(costs)
    if len(models) != c.size:
        raise ValueError(f"models and costs must have one entry per level, got {len(models)} "
                         f"and {c.size}")
    budget = _budget(budget, c)
    m = _min_samples(min_samples, c, budget)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be finite and > 0, got {scale!r}")
    if c.size > 12:
        raise ValueError(f"at most 12 levels are supported, got {c.size}")
    up = _upper(upper, c)
    if np.any(up < m):
        raise ValueError(f"min_samples={m} exceeds the most samples of a level (upper={up.tolist()})")
    if not np.any(up > 0):
        raise ValueError("upper allows no sample of any level")
    if float(up @ c) <= budget:
        return up.copy()
    best, best_value = None, math.inf
    for mask in range(1, 2 ** c.size):
        support = [l for l in range(c.size) if mask >> l & 1]
        rest = [l for l in range(c.size) if not mask >> l & 1]
        n = _round_support(models, c, budget, support, rest, m, scale, up)
        if n is None:
            continue
        value = estimate_final_error(models, n, scale)
        if value < best_value:
            best, best_value = n, value
    if best is None:  # no level alone fits the budget within its upper count
        raise ValueError("no allocation fits the budget")
    return best.astype(np.int64)


# --------------------------------------------------------------------------------------------
# printing
# --------------------------------------------------------------------------------------------


def plan_table(levels: Sequence, costs: ArrayLike, allocation: ArrayLike,
               estimate: Union[float, ArrayLike, None] = None,
               budget: Optional[float] = None) -> list:
    """Lines of a plan: level, grid, cost per sample, ``N_l``, budget share, estimated error.

    ``levels`` names each level's grid (e.g. ``[32, 64, 128]``).  ``estimate`` is either one
    number per level (e.g. ``curriculum_errors``: the estimate after that level), printed on the
    rows, or one number, the final estimate, printed on the total row.  The share is of
    ``budget`` when given, else of the total spent.
    """
    c = _costs(costs)
    n = np.asarray(allocation)
    _same_length("allocation", n, c)
    if len(levels) != c.size:
        raise ValueError(f"levels must have one entry per level ({c.size}), got {len(levels)}")
    spent = n * c
    total = float(spent.sum())
    denom = float(budget) if budget is not None else total
    per_level = final = None
    if estimate is not None:
        est = np.asarray(estimate, dtype=float)
        if est.ndim == 0:
            final = float(est)
        else:
            _same_length("estimate", est, c)
            per_level, final = est, float(est[-1])

    def fmt(x):
        return "-" if x is None else f"{x:.4g}"

    head = (f"{'level':>5}  {'grid':>8}  {'s/sample':>10}  {'N_l':>8}  {'seconds':>10}  "
            f"{'share':>6}  {'est. error':>10}")
    lines = [head, "-" * len(head)]
    for l in range(c.size):
        share = spent[l] / denom if denom > 0 else 0.0
        est = None if per_level is None else float(per_level[l])
        lines.append(f"{l + 1:>5}  {str(levels[l]):>8}  {c[l]:>10.4g}  {int(n[l]):>8d}  "
                     f"{spent[l]:>10.4g}  {share:>6.1%}  {fmt(est):>10}")
    lines.append("-" * len(head))
    share = total / denom if denom > 0 else 0.0
    lines.append(f"{'total':>5}  {'':>8}  {'':>10}  {int(n.sum()):>8d}  {total:>10.4g}  "
                 f"{share:>6.1%}  {fmt(final):>10}")
    return lines
