"""Point samplers of the condition regions, in any number of dimensions, seeded.

Two methods (``data.init_args.sampler``):

* ``grid``: nodes of the data module's tensor grid (:meth:`Domain.grid`) - the interior nodes
  (no boundary node of a closed space axis, no node at x = low of a periodic axis, no initial
  time), the initial slice, the spatial boundary x every time node, one edge, or the periodic
  pairs; a region with more nodes than requested gives a sorted random subset
  (``rng.choice`` without replacement), otherwise all of its nodes;
* ``lhs``: a Latin hypercube in the region's box (each axis cut into n equal strata, one point
  per stratum, the strata paired at random), the region's fixed coordinates set exactly.

Every sampler takes numpy's ``Generator``; the same seed gives the same points on any machine.
A boundary sample carries the outward unit normal of each point (for flux conditions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from lemon_pl.pinn.conditions import Region
from lemon_pl.pinn.problems.base import Domain

METHODS = ("grid", "lhs")


@dataclass
class Sample:
    """The points of one condition: ``points`` (n, d), the partner points of periodic pairs
    (``pairs``), and outward unit normals on the boundary (``normals``)."""

    points: np.ndarray
    pairs: Optional[np.ndarray] = None
    normals: Optional[np.ndarray] = None


def choose(rng: np.random.Generator, count: int, n: int) -> np.ndarray:
    """Indices of n of ``count`` candidates: all of them if n >= count, else a sorted random subset."""
    return np.arange(count) if n >= count else np.sort(rng.choice(count, n, replace=False))


def product(axes: Sequence[np.ndarray]) -> np.ndarray:
    """Every combination of the axes' values, (prod len, len(axes)), the last axis fastest."""
    return np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))


def interior_nodes(domain: Domain, sizes: Sequence[int]) -> np.ndarray:
    """Node indices (K, d) of the grid's interior: index 1.. of every axis, up to the last node of
    periodic axes and the time axis, up to the one before the last of closed space axes."""
    ranges = []
    for i, n in enumerate(sizes):
        hi = n if (domain.periodic[i] or i == domain.time_index) else n - 1
        ranges.append(np.arange(1, hi))
    return product(ranges)


def lhs(rng: np.random.Generator, n: int, lows: Sequence[float], highs: Sequence[float]) -> np.ndarray:
    """n Latin-hypercube points in the box [lows, highs] (one point in each of n strata per axis)."""
    d = len(lows)
    u = (np.stack([rng.permutation(n) for _ in range(d)], 1) + rng.random((n, d))) / max(n, 1)
    lo, hi = np.asarray(lows, dtype=np.float64), np.asarray(highs, dtype=np.float64)
    return lo + (hi - lo) * u


def _normals(domain: Domain, pts: np.ndarray, axes: Sequence[int]) -> np.ndarray:
    """Outward unit normals of boundary points: the first of ``axes`` at one of its bounds."""
    out = np.zeros_like(pts)
    done = np.zeros(len(pts), dtype=bool)
    for i in axes:
        lo, hi = domain.bounds[i]
        for bound, sign in ((lo, -1.0), (hi, 1.0)):
            on = ~done & np.isclose(pts[:, i], bound, rtol=0, atol=1e-12)
            out[on, i] = sign
            done |= on
    return out


def _closed_space(domain: Domain) -> list[int]:
    return [i for i in domain.space() if not domain.periodic[i]]


def grid_sample(region: Region, domain: Domain, axes: Sequence[np.ndarray], n: int,
                rng: np.random.Generator) -> Sample:
    """n grid nodes of a region other than the interior (see the module doc)."""
    d, ti = domain.dim, domain.time_index
    if region.kind == "initial":
        if ti is None:
            raise ValueError(f"an initial region needs a time axis; the domain {domain.names} has none")
        cand = product([axes[i][:1] if i == ti else axes[i] for i in range(d)])
        return Sample(cand[choose(rng, len(cand), n)])
    if region.kind == "periodic":
        p = domain.index(region.axis)
        cand = product([np.zeros(1) if i == p else axes[i] for i in range(d)])
        sel = cand[choose(rng, len(cand), n)]
        a, b = sel.copy(), sel.copy()
        a[:, p], b[:, p] = domain.bounds[p]
        return Sample(a, pairs=b)
    if region.kind == "edge":
        p = domain.index(region.axis)
        bound = domain.bounds[p][0 if region.side == "low" else 1]
        cand = product([np.array([bound]) if i == p else axes[i] for i in range(d)])
        pts = cand[choose(rng, len(cand), n)]
        return Sample(pts, normals=_normals(domain, pts, [p]))
    if region.kind == "boundary":
        closed = _closed_space(domain)
        if not closed:
            raise ValueError(f"the domain {domain.names} has no closed space axis: no boundary region")
        edges = [product([np.array([axes[j][0], axes[j][-1]]) if j == i else axes[j] for j in range(d)])
                 for i in closed]
        cand = np.unique(np.concatenate(edges), axis=0)
        pts = cand[choose(rng, len(cand), n)]
        return Sample(pts, normals=_normals(domain, pts, closed))
    raise ValueError(f"grid_sample: the interior is sampled with the test points (region {region.kind!r})")


def lhs_sample(region: Region, domain: Domain, n: int, rng: np.random.Generator) -> Sample:
    """n Latin-hypercube points of a region (see the module doc)."""
    lows = [b[0] for b in domain.bounds]
    highs = [b[1] for b in domain.bounds]
    pts = lhs(rng, n, lows, highs)
    ti = domain.time_index
    if region.kind == "interior":
        return Sample(pts)
    if region.kind == "initial":
        if ti is None:
            raise ValueError(f"an initial region needs a time axis; the domain {domain.names} has none")
        pts[:, ti] = lows[ti]
        return Sample(pts)
    if region.kind == "periodic":
        p = domain.index(region.axis)
        a, b = pts.copy(), pts.copy()
        a[:, p], b[:, p] = lows[p], highs[p]
        return Sample(a, pairs=b)
    if region.kind == "edge":
        p = domain.index(region.axis)
        pts[:, p] = lows[p] if region.side == "low" else highs[p]
        return Sample(pts, normals=_normals(domain, pts, [p]))
    closed = _closed_space(domain)
    if not closed:
        raise ValueError(f"the domain {domain.names} has no closed space axis: no boundary region")
    which = rng.integers(0, 2 * len(closed), size=n)
    for j, i in enumerate(closed):
        pts[which == 2 * j, i] = lows[i]
        pts[which == 2 * j + 1, i] = highs[i]
    return Sample(pts, normals=_normals(domain, pts, closed))


__all__ = ["METHODS", "Sample", "choose", "grid_sample", "interior_nodes", "lhs", "lhs_sample", "product"]
