"""Named conditions of a physics-informed problem: a region of the domain, a kind, data and a weight.

A problem (:mod:`lemon_pl.pinn.problems`) declares a dict ``{name: Condition}``; the data module
samples each condition's region (:mod:`lemon_pl.pinn.sampling`) and computes its targets for every
μ; the stage's loss is ``Σ weight[name] · term[name]`` in the declared order. Regions:

* :func:`interior` - the open domain (the time axis without its initial slice);
* :func:`initial` - the slice t = t0 of a time-dependent problem (every spatial point);
* :func:`boundary` - the boundary of the spatial axes that are not periodic, x every time;
* :func:`edge` - one named edge, ``edge("x", "high")`` (x = its upper bound, every other axis);
* :func:`periodic` - pairs (x = low, x = high) at the same other coordinates.

Kinds: ``residual`` (the problem's PDE residual is zero), ``value`` (chosen field components
equal the target), ``flux`` (a function of derivatives - by default the outward normal
derivative of the chosen components, or any ``operator(u, coords, normal, mu)`` such as a
traction - equals the target), ``periodic`` (the field is equal on both points of a pair).

A target is ``target(mu, points) -> (n,) or (n, c)`` - the argument order of
:meth:`Problem.solution`, so ``value(boundary(), self.solution)`` takes the exact solution's values -
with ``mu`` the parameters by name (floats) and ``points`` a float64 numpy array (n, d), columns in
the order of the domain's axes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from lemon_pl.pinn.derivatives import grad

#: region kinds, and the kinds of a condition
REGIONS = ("interior", "initial", "boundary", "edge", "periodic")
KINDS = ("residual", "value", "flux", "periodic")
#: the point-count argument of the data module that sizes each region by default
SIZE_KEYS = {"interior": "n_collocation", "initial": "n_ic", "boundary": "n_bc", "edge": "n_bc", "periodic": "n_bc"}

Target = Callable[[dict, np.ndarray], np.ndarray]
#: a flux operator: (u (N,) or (N, k), coords (N, d) requiring grad, outward normals (N, d), mu (N, P)) -> (N,) or (N, c)
Flux = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


@dataclass(frozen=True)
class Region:
    """Where a condition's points lie (see the module doc); ``axis``/``side`` name an edge or a
    periodic axis."""

    kind: str
    axis: Optional[str] = None
    side: Optional[str] = None

    def __post_init__(self) -> None:
        if self.kind not in REGIONS:
            raise ValueError(f"unknown region {self.kind!r}; choose from {', '.join(REGIONS)}")
        if self.kind in ("edge", "periodic") and not self.axis:
            raise ValueError(f"a {self.kind} region names its axis")
        if self.kind == "edge" and self.side not in ("low", "high"):
            raise ValueError(f"an edge's side is 'low' or 'high', got {self.side!r}")


def interior() -> Region:
    return Region("interior")


def initial() -> Region:
    return Region("initial")


def boundary() -> Region:
    return Region("boundary")


def edge(axis: str, side: str) -> Region:
    return Region("edge", axis, side)


def periodic(axis: str) -> Region:
    return Region("periodic", axis)


@dataclass(frozen=True)
class Condition:
    """One named condition: ``region``, ``kind``, ``target`` (value and flux), the field
    ``components`` it constrains (names or indices; default every field), an optional flux
    ``operator`` and its loss ``weight``."""

    region: Region
    kind: str
    target: Optional[Target] = None
    components: Optional[Sequence[Union[str, int]]] = None
    operator: Optional[Flux] = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown condition kind {self.kind!r}; choose from {', '.join(KINDS)}")
        if self.kind in ("value", "flux") and self.target is None:
            raise ValueError(f"a {self.kind} condition needs a target(mu, points)")
        if self.kind == "periodic" and self.region.kind != "periodic":
            raise ValueError("a periodic condition lives on a periodic region")
        if self.region.kind == "periodic" and self.kind != "periodic":
            raise ValueError("a periodic region carries a periodic condition")

    @property
    def needs_derivatives(self) -> bool:
        """Residual and flux conditions differentiate the field: they get their own forward pass."""
        return self.kind in ("residual", "flux")


def residual(region: Region | None = None, weight: float = 1.0) -> Condition:
    """The PDE residual on ``region`` (default: the interior)."""
    return Condition(region or interior(), "residual", weight=weight)


def value(region: Region, target: Target, components: Sequence[Union[str, int]] | None = None,
          weight: float = 1.0) -> Condition:
    return Condition(region, "value", target, components, weight=weight)


def flux(region: Region, target: Target, components: Sequence[Union[str, int]] | None = None,
         operator: Flux | None = None, weight: float = 1.0) -> Condition:
    return Condition(region, "flux", target, components, operator, weight=weight)


def periodic_pairs(axis: str, weight: float = 1.0) -> Condition:
    return Condition(periodic(axis), "periodic", weight=weight)


def normal_derivative(u: Tensor, coords: Tensor, normal: Tensor, columns: Sequence[int]) -> Tensor:
    """n · ∇u_c for each chosen component c: (N,) for one component, (N, c) for several."""
    u2 = u[:, None] if u.ndim == 1 else u
    out = [(grad(u2[:, c], coords) * normal).sum(dim=1) for c in columns]
    return out[0] if len(out) == 1 else torch.stack(out, dim=1)


def mean_square(pred: Tensor, target: Tensor) -> Tensor:
    """The mean square of ``pred - target``: one loss term."""
    return (pred - target).square().mean()


__all__ = ["Condition", "Region", "REGIONS", "KINDS", "SIZE_KEYS", "interior", "initial", "boundary", "edge",
           "periodic", "residual", "value", "flux", "periodic_pairs", "normal_derivative", "mean_square"]
