"""The solution-map families of multi-level fine-tuning, and the level view of the data engine's.

A *map family* is a problem ``input field -> solution field`` (no time axis) with a sampler on
the finest grid, a restriction of that input to a coarser level and a batched solver at any
resolution (``lemon_pl.multilevel.problems``). ``lemon-pl generate --families NAME --levels
32,64,128`` writes them next to the data engine's families (``lemon_pl.multilevel.generate``).

Every family usable by the multi-level stage, map or engine, is described by a
:class:`LevelView`: its grid kind (``lemon_pl.data.transfer``), the default restriction
of inputs and interpolation of labels, and how a network sees the input (``log`` for positive
coefficients). Engine families (e.g. ``inviscid_burgers``) are viewed as the map ``u(0) ->
u(t_last)`` of their stored trajectories.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable

import numpy as np

from lemon_pl.multilevel.problems import RoughElliptic, SchrodingerGroundState
from lemon_pl.data.params import Param, ParamSpace
from lemon_pl.data.transfer import DEFAULT_INTERPOLATION, DEFAULT_RESTRICTION


@dataclass(frozen=True)
class MapFamily:
    """One solution-map family: ``problem`` solves, the rest says how the data are stored."""

    name: str
    problem: Any
    grid: str  # a transfer.GRID_KINDS entry
    description: str
    input_name: str
    restriction: str
    input_transform: str = "identity"  # how a network sees the input: identity | log
    solver: str = ""

    def sample_inputs(self, rng: np.random.Generator, n_fine: int, size: int) -> np.ndarray:
        return self.problem.sample_inputs(rng, n_fine, size=size)

    def restrict(self, inputs: np.ndarray, n: int, how: str | None = None) -> np.ndarray:
        return self.problem.restrict(inputs, n, how=how or self.restriction)

    def solve(self, inputs: np.ndarray) -> np.ndarray:
        return self.problem.solve_batch(inputs)

    def x_grid(self, n: int) -> np.ndarray:
        offset = 0.0 if self.grid == "periodic_nodes" else 0.5
        return (np.arange(n) + offset) / n

    @property
    def space(self) -> ParamSpace:
        """The input sampler's settings in the parameter vocabulary of the data engine
        (:class:`lemon_pl.data.params.ParamSpace`): a number is a one-point range (its value is the
        default), a pair ``(low, high)`` a range (integer pairs with step 1: their values are the
        integers between). Describes the problem's fields; the sampler itself reads the fields."""
        params = []
        for f in fields(self.problem):
            value = getattr(self.problem, f.name)
            if isinstance(value, tuple) and len(value) == 2:
                lo, hi = value
                step = 1.0 if all(isinstance(v, int) for v in value) else None
                params.append(Param(f.name, low=float(lo), high=float(hi), step=step))
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                params.append(Param(f.name, low=float(value), high=float(value), default=float(value)))
        return ParamSpace(tuple(params))


@dataclass(frozen=True)
class _Oscillatory(SchrodingerGroundState):
    default_kind: str = "oscillatory"


MAP_FAMILIES: dict[str, MapFamily] = {f.name: f for f in (
    MapFamily("schrodinger", SchrodingerGroundState(), "periodic_nodes",
              "ground state of -u''/2 + V u = E u on the periodic [0, 1), rough random-Fourier V",
              "V", "sample", solver="2nd-order FD, lowest eigenpair (LAPACK ?syevr / ARPACK shift-invert)"),
    MapFamily("schrodinger_osc", _Oscillatory(), "periodic_nodes",
              "the same ground state for oscillatory V (3 cosines of wavenumber 8-32)",
              "V", "sample", solver="2nd-order FD, lowest eigenpair"),
    MapFamily("rough_elliptic", RoughElliptic(), "dirichlet_cells",
              "-(a u')' = 1 on (0, 1), u(0) = u(1) = 0, log-normal a (exponential covariance) with a jump",
              "a", "harmonic", input_transform="log", solver="cell-centred FV, tridiagonal LDL^T (LAPACK ?ptsv)"),
)}


@dataclass(frozen=True)
class LevelView:
    """How the multi-level stage reads one family at every level."""

    name: str
    grid: str
    restriction: str
    interpolation: str
    input_transform: str = "identity"
    is_map: bool = True

    def network_input(self, x: np.ndarray) -> np.ndarray:
        return _TRANSFORMS[self.input_transform](x)


_TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"identity": lambda x: x, "log": np.log}


def level_view(name: str) -> LevelView:
    """The :class:`LevelView` of a map family or of an engine family (periodic cell centres)."""
    if name in MAP_FAMILIES:
        fam = MAP_FAMILIES[name]
        return LevelView(name, fam.grid, fam.restriction, DEFAULT_INTERPOLATION[fam.grid], fam.input_transform)
    from lemon_pl.data.families import get_family

    get_family(name)  # raises UnknownFamilyError naming the choices
    grid = "periodic_cells"
    return LevelView(name, grid, DEFAULT_RESTRICTION[grid], DEFAULT_INTERPOLATION[grid], is_map=False)


def is_map_family(name: str) -> bool:
    return name in MAP_FAMILIES


__all__ = ["MAP_FAMILIES", "MapFamily", "LevelView", "level_view", "is_map_family"]
