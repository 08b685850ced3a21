"""The problem base: fields, parameters, a domain of space axes and an optional time axis, named
conditions, the PDE residual and a reference that evaluates at any points.

A new problem is one small class (``tests/pinn/test_new_problem.py`` trains this one through
``lemon-pl fit``)::

    class Heat1D(Problem):
        name = "heat"
        domain = Domain(("x", "t"), ((0.0, 1.0), (0.0, 1.0)), time="t")
        params = (Param("k", low=0.1, high=1.0, step=0.1, default=0.5),)
        default_grid = (33, 21)

        def conditions(self):
            return {"residual": residual(), "ic": value(initial(), self.solution),
                    "bc": value(boundary(), self.solution)}

        def residual(self, u, coords, mu=None):
            g = grad(u, coords)
            return g[:, 1] - self.mu_columns(mu, len(coords))["k"] * partial(g[:, 0], coords, 0)

        def solution(self, mu, points):
            k = self.mu(mu)["k"]
            return np.exp(-k * points[:, 1]) * (np.cos(points[:, 0]) + np.sin(points[:, 0]))

It is selected by ``class_path`` in the data config (``data.init_args.problem``), built once by the
parser, and the same object is linked to the stage. Collocation points are the rows of ``coords``
(N, d), columns in ``domain.names`` order; a PDE parameter vector ``mu`` is a mapping by name, a
sequence in ``param_names`` order, or a tensor (P,) or (N, P) (one value per point).
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from lemon_pl.data.params import Param, ParamSpace
from lemon_pl.pinn.conditions import Condition

Mu = Union[Mapping[str, Union[float, Tensor]], Sequence[float], Tensor, None]


def lib(x):
    """numpy or torch, whichever ``x`` belongs to (problems' formulas serve both)."""
    return torch if isinstance(x, Tensor) else np


@dataclass(frozen=True)
class Domain:
    """Axis names, closed bounds per axis, which axes are periodic, and the time axis (or None).

    Every axis but ``time`` is a space axis; there may be any number of them."""

    names: tuple[str, ...]
    bounds: tuple[tuple[float, float], ...]
    periodic: tuple[bool, ...] = ()
    time: Optional[str] = None

    def __post_init__(self) -> None:
        if not self.periodic:
            object.__setattr__(self, "periodic", (False,) * len(self.names))
        if not (len(self.names) == len(self.bounds) == len(self.periodic)):
            raise ValueError("a domain needs one bound pair and one periodic flag per axis")
        if self.time is not None and self.time not in self.names:
            raise ValueError(f"the time axis {self.time!r} is not one of {self.names}")

    @property
    def dim(self) -> int:
        return len(self.names)

    @property
    def time_index(self) -> Optional[int]:
        return None if self.time is None else self.names.index(self.time)

    def index(self, axis: str) -> int:
        if axis not in self.names:
            raise ValueError(f"unknown axis {axis!r}; the domain has {self.names}")
        return self.names.index(axis)

    def space(self) -> list[int]:
        """Indices of the space axes."""
        return [i for i in range(self.dim) if i != self.time_index]

    def grid(self, sizes: Sequence[int]) -> list[np.ndarray]:
        """Uniform axes: periodic ones without their upper endpoint (lo + (hi - lo) j / n), the
        others closed (``linspace``)."""
        out = []
        for (lo, hi), per, n in zip(self.bounds, self.periodic, sizes):
            out.append(lo + (hi - lo) * np.arange(n) / n if per else np.linspace(lo, hi, n))
        return out


class Problem(ABC):
    """A parameterised PDE problem (see the module doc). Subclasses set ``name``, ``domain``,
    ``params`` (and ``fields``, default one scalar ``u``) and define :meth:`conditions`,
    :meth:`residual` and either :meth:`solution` (any points) or :meth:`reference` (a grid).

    Constructor arguments are kept as attributes of the same name (:meth:`config` reads them)."""

    name: str = "problem"
    domain: Domain
    params: tuple[Param, ...] = ()
    fields: tuple[str, ...] = ("u",)
    #: the default grid (points per axis) of the data module
    default_grid: tuple[int, ...] = ()
    #: named μ sets: ``{name: (constructor arguments, axes of values per parameter)}``
    presets: dict[str, tuple[dict[str, Any], tuple[tuple[float, ...], ...]]] = {}

    # ------------------------------------------------------------------ description
    @abstractmethod
    def conditions(self) -> dict[str, Condition]:
        """The named conditions, in the order of the loss terms."""

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def time_dependent(self) -> bool:
        return self.domain.time is not None

    @property
    def boundary(self) -> str:
        """``periodic``, ``dirichlet`` (values on the boundary), ``mixed`` or ``none``: a summary."""
        kinds = {c.kind for c in self.conditions().values() if c.region.kind not in ("interior", "initial")}
        if not kinds:
            return "none"
        if kinds == {"periodic"}:
            return "periodic"
        return "dirichlet" if kinds == {"value"} else "mixed"

    def config(self) -> dict[str, Any]:
        """``{class_path, init_args}`` of this object (the constructor's arguments read back)."""
        init_args = {}
        for name, par in inspect.signature(type(self).__init__).parameters.items():
            if name != "self" and par.kind not in (par.VAR_POSITIONAL, par.VAR_KEYWORD) and hasattr(self, name):
                init_args[name] = getattr(self, name)
        return {"class_path": f"{type(self).__module__}.{type(self).__qualname__}", "init_args": init_args}

    def components(self, names: Sequence[Union[str, int]] | None) -> list[int]:
        """Field indices of ``names`` (field names or indices; None: every field)."""
        if names is None:
            return list(range(len(self.fields)))
        out = []
        for c in names:
            if isinstance(c, str):
                if c not in self.fields:
                    raise ValueError(f"{self.name}: unknown field {c!r}; the fields are {self.fields}")
                out.append(self.fields.index(c))
            else:
                out.append(int(c))
        return out

    # ------------------------------------------------------------------ parameters
    @property
    def space(self) -> ParamSpace:
        """The parameters as the shared vocabulary (``lemon_pl.data.params.ParamSpace``), presets included."""
        return ParamSpace(tuple(self.params), {name: axes for name, (_, axes) in self.presets.items()})

    def defaults(self) -> dict[str, float]:
        return self.space.defaults()

    def mu(self, mu: Mu = None) -> dict[str, float]:
        """One parameter value as floats by name (``None``: the defaults)."""
        if mu is None:
            return self.defaults()
        if isinstance(mu, Mapping):
            missing = set(self.param_names) - set(mu)
            if missing:
                raise ValueError(f"{self.name}: missing parameters {sorted(missing)}; expects {self.param_names}")
            return {n: float(mu[n]) for n in self.param_names}
        vals = np.asarray(mu.detach().cpu() if isinstance(mu, Tensor) else mu, dtype=np.float64).reshape(-1)
        if vals.size != len(self.params):
            raise ValueError(f"{self.name}: expected {len(self.params)} parameters {self.param_names}, got {vals.size}")
        return dict(zip(self.param_names, map(float, vals)))

    def mu_columns(self, mu: Mu, n: int) -> dict[str, Union[float, Tensor]]:
        """Parameters for a residual: floats, or per-point tensors (n,) from an (n, P) tensor."""
        if isinstance(mu, Tensor) and mu.ndim == 2:
            if mu.shape != (n, len(self.params)):
                raise ValueError(f"{self.name}: per-point mu must have shape ({n}, {len(self.params)}), got {tuple(mu.shape)}")
            return {name: mu[:, i] for i, name in enumerate(self.param_names)}
        if isinstance(mu, Mapping) and any(isinstance(v, Tensor) and v.numel() > 1 for v in mu.values()):
            return {name: mu[name].reshape(-1) if isinstance(mu[name], Tensor) else float(mu[name])
                    for name in self.param_names}
        return self.mu(mu)

    def preset_mu(self, name: str) -> tuple[dict[str, Any], np.ndarray]:
        """The constructor arguments and the μ values (M, P) of the named preset."""
        values = self.space.preset(name)  # refuses an unknown name in one line
        return dict(self.presets[name][0]), values

    # ------------------------------------------------------------------ equations
    @abstractmethod
    def residual(self, u: Tensor, coords: Tensor, mu: Mu = None) -> Tensor:
        """PDE residual (N,) (or (N, r) for systems) of the network output ``u`` computed from ``coords``."""

    def residual_of(self, u_fn: Callable[[Tensor], Tensor], coords: Tensor, mu: Mu = None) -> Tensor:
        """Residual of the field ``u_fn`` (a network or a reference) at ``coords``."""
        coords = coords.detach().requires_grad_(True)
        return self.residual(u_fn(coords), coords, mu)

    # ------------------------------------------------------------------ references
    def solution(self, mu: Mu, points: np.ndarray) -> np.ndarray:
        """The reference at any points (n, d): (n,) for one field, (n, k) for several."""
        raise NotImplementedError(f"{type(self).__name__} defines no reference solution at points")

    def reference(self, mu: Mu, *axes: np.ndarray) -> np.ndarray:
        """The reference on the tensor grid of ``axes`` (in ``domain.names`` order), shaped
        (len(axes[-1]), ..., len(axes[0])) (plus a last axis of the fields when there are several):
        :meth:`solution` at every node."""
        mesh = np.stack(np.meshgrid(*axes[::-1], indexing="ij")[::-1], -1)
        vals = np.asarray(self.solution(mu, mesh.reshape(-1, len(axes))), dtype=np.float64)
        return vals.reshape(*mesh.shape[:-1], *vals.shape[1:])

    def initial_condition(self, x):
        raise ValueError(f"{self.name} is steady: it has no initial condition")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}: params {self.param_names}, conditions {list(self.conditions())}>"


__all__ = ["Domain", "Mu", "Param", "Problem", "lib"]
