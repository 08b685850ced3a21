"""The one vocabulary of PDE parameters: :class:`Param` (one parameter) and :class:`ParamSpace` (a
problem's parameters in order, with named presets).

A parameter is one of

* **centred**: ``Param("nu", 3e-3)``, a centre ``q_c``. The data engine draws it uniformly in
  ``[(1 - gamma) q_c, (1 + gamma) q_c]`` (``gamma``: the out-of-distribution width of a split,
  ``lemon-pl generate --gamma``); ``lemon-pl predict`` accepts it within a factor
  :data:`ACCEPT_FACTOR` of ``q_c``;
* **ranged**: ``Param("a", low=0.0, high=1.0)``, drawn uniformly in the fixed range whatever
  ``gamma``, accepted within it; with a ``step`` (``Param("beta", low=0.0, high=40.0, step=1.0,
  default=1.0)``, the physics-informed problems' parameters) it also has a grid of studied values,
  :meth:`Param.values`;
* **discrete**: ``Param("m", choices=(2, 3, 4))``, drawn and accepted among its choices.

Draws are rounded to 3 significant digits (the float tokenizer's precision, so tokens describe
the data exactly; ``round_draws=False`` keeps them as drawn). :meth:`Param.sample` makes exactly
the random calls the data engine always made (one ``uniform`` or one ``integers`` per
parameter, in the order of the space), so generated data do not depend on this module's shape.

Scaling: :meth:`Param.unit_affine` / :meth:`ParamSpace.to_unit` map the box ``[low, high]`` of
each parameter to ``[-1, 1]`` (a component with ``low == high`` is only shifted): the
normalisation a hypernetwork applies to its parameter input.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Iterator, Mapping, Sequence

import numpy as np

from lemon_pl.data.symbols import round_sig

#: a centred parameter may be given to ``lemon-pl predict`` within this factor of its centre q_c
#: (q_c / ACCEPT_FACTOR .. q_c * ACCEPT_FACTOR, with q_c's sign): the families' data use
#: q_c (1 +- gamma), and the solvers' cost grows with the parameters (the conservation laws' steps
#: with k, ~10 s per initial condition at 100 q_c)
ACCEPT_FACTOR = 100.0
#: decimals kept by :func:`grid_values` (float steps such as 0.1 land on round numbers)
GRID_DECIMALS = 12


def grid_values(low: float, high: float, step: float, decimals: int = GRID_DECIMALS) -> np.ndarray:
    """``low, low + step, ..., high`` (the count rounded, so ``high`` is reached despite round-off),
    each rounded to ``decimals`` decimals."""
    n = int(round((high - low) / step)) + 1
    return np.round(low + step * np.arange(n), decimals)


def format_value(v: float) -> str:
    """``3`` for an integral value, else 4 significant digits (``0.00022``)."""
    return str(int(v)) if float(v).is_integer() and abs(v) < 1e6 else f"{v:.4g}"


@dataclass(frozen=True)
class Param:
    """One parameter: centred (``centre``), ranged (``low``, ``high``, optionally a grid ``step``)
    or discrete (``choices``); ``default``: its value when none is given (else the centre, the
    middle of the range, or the first choice)."""

    name: str
    centre: float | None = None  # q_c, sampled in [(1-gamma) q_c, (1+gamma) q_c]
    low: float | None = None  # fixed range instead (gamma-independent)
    high: float | None = None
    choices: tuple[int, ...] | None = None  # integer choice (gamma-independent)
    default: float | None = None
    step: float | None = None  # spacing of the studied values low, low + step, ..., high
    round_draws: bool = True  # draws rounded to 3 significant digits (the tokenizer's)

    def __post_init__(self) -> None:
        kinds = (self.centre is not None) + (self.low is not None or self.high is not None) + (self.choices is not None)
        if kinds != 1:
            raise ValueError(f"parameter {self.name!r}: give exactly one of centre, low/high or choices")
        if (self.low is None) != (self.high is None):
            raise ValueError(f"parameter {self.name!r}: give both low and high")
        if self.low is not None and not self.low <= self.high:
            raise ValueError(f"parameter {self.name!r}: low {self.low} is above high {self.high}")
        if self.step is not None and (self.low is None or not self.step > 0):
            raise ValueError(f"parameter {self.name!r}: a step needs low/high and must be positive")

    @property
    def kind(self) -> str:
        """``centred``, ``ranged`` or ``discrete``."""
        return "discrete" if self.choices is not None else "centred" if self.centre is not None else "ranged"

    # ------------------------------------------------------------------ drawing (the data engine)
    def sampling_range(self, gamma: float = 0.1) -> tuple[float, float]:
        """The interval draws come from at width ``gamma``: ``((1-gamma) q_c, (1+gamma) q_c)`` (in
        that order, also for a negative centre), the fixed range, or the smallest and largest choice."""
        if self.choices is not None:
            return float(min(self.choices)), float(max(self.choices))
        if self.centre is not None:
            return (1 - gamma) * self.centre, (1 + gamma) * self.centre
        return self.low, self.high

    def sample(self, rng: np.random.Generator, gamma: float = 0.1) -> float:
        """One draw: a uniform choice, or uniform in :meth:`sampling_range` (rounded unless
        ``round_draws`` is off). One ``rng`` call, the same as the data engine always made."""
        if self.choices is not None:
            return float(self.choices[int(rng.integers(len(self.choices)))])
        value = rng.uniform(*self.sampling_range(gamma))
        return round_sig(value) if self.round_draws else float(value)

    # ------------------------------------------------------------------ accepting (lemon-pl predict)
    def accepted_range(self, factor: float = ACCEPT_FACTOR) -> tuple[float, ...]:
        """The values a user may give: ``(low, high)`` for a continuous parameter (a ``factor``
        around its centre, or its fixed range), the choices of a discrete one."""
        if self.choices is not None:
            return tuple(float(c) for c in self.choices)
        if self.centre is not None:
            a, b = float(self.centre) / factor, float(self.centre) * factor
            return (min(a, b), max(a, b))
        return (float(self.low), float(self.high))

    def contains(self, value: float, factor: float = ACCEPT_FACTOR) -> bool:
        """Whether ``value`` is finite and within :meth:`accepted_range`."""
        if not math.isfinite(value):
            return False
        r = self.accepted_range(factor)
        if self.choices is not None:
            return value in r
        return r[0] <= value <= r[1]

    def describe_range(self, factor: float = ACCEPT_FACTOR) -> str:
        """``0.00022 .. 2.2`` / ``one of 2, 3, 4``: :meth:`accepted_range` as documented."""
        r = self.accepted_range(factor)
        if self.choices is not None:
            return "one of " + ", ".join(format_value(v) for v in r)
        return f"{r[0]:.4g} .. {r[1]:.4g}"

    def start(self) -> tuple[float, float]:
        """(initial value, scale) of a continuous parameter for a fit: the centre and its size,
        or the middle of the range and its largest end."""
        if self.centre is not None:
            return float(self.centre), abs(float(self.centre)) or 1.0
        lo, hi = float(self.low), float(self.high)
        return 0.5 * (lo + hi), max(abs(lo), abs(hi)) or 1.0

    @property
    def default_value(self) -> float:
        """``default`` if set, else the first choice, the centre or the middle of the range."""
        if self.default is not None:
            return float(self.default)
        if self.choices is not None:
            return float(self.choices[0])
        return self.start()[0]

    # ------------------------------------------------------------------ studied values, scaling
    def values(self) -> np.ndarray:
        """The studied values: ``low, low + step, ..., high`` (:func:`grid_values`), the choices of a
        discrete parameter."""
        if self.choices is not None:
            return np.array(self.choices, dtype=np.float64)
        if self.step is None:
            raise ValueError(f"parameter {self.name!r} has no step, so no grid of values")
        return grid_values(self.low, self.high, self.step)

    def box(self, gamma: float = 0.1) -> tuple[float, float]:
        """``(low, high)`` of the parameter's values: the fixed range, the choices' extent, or the
        sorted sampling range of a centred one at ``gamma``."""
        lo, hi = self.sampling_range(gamma)
        return (min(lo, hi), max(lo, hi))

    def unit_affine(self, gamma: float = 0.1) -> tuple[float, float]:
        """``(shift, scale)`` with ``(value - shift) / scale`` mapping :meth:`box` onto [-1, 1]:
        the middle and the half width (1 where the box is one point)."""
        lo, hi = self.box(gamma)
        half = (hi - lo) / 2
        return (lo + hi) / 2, (half if half > 0 else 1.0)


@dataclass(frozen=True)
class ParamSpace:
    """A problem's parameters in their order, and named ``presets``: a preset is one tuple of
    values per parameter, whose Cartesian product is the preset's set of parameter rows."""

    params: tuple[Param, ...]
    presets: Mapping[str, tuple[tuple[float, ...], ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError(f"parameter names repeat: {names}")
        for name, axes in self.presets.items():
            if len(axes) != len(names):
                raise ValueError(f"preset {name!r} gives {len(axes)} axes for the parameters {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __getitem__(self, key: int | str) -> Param:
        if isinstance(key, str):
            for p in self.params:
                if p.name == key:
                    return p
            raise KeyError(f"no parameter {key!r}; the parameters are {', '.join(self.names)}")
        return self.params[key]

    def sample(self, rng: np.random.Generator, gamma: float = 0.1) -> dict[str, float]:
        """One draw of every parameter, in order (:meth:`Param.sample`)."""
        return {p.name: p.sample(rng, gamma) for p in self.params}

    def defaults(self) -> dict[str, float]:
        """Every parameter's :attr:`Param.default_value`."""
        return {p.name: p.default_value for p in self.params}

    def row(self, values: Mapping[str, float]) -> np.ndarray:
        """The values of a mapping as a float64 row in the space's order."""
        return np.array([float(values[n]) for n in self.names], dtype=np.float64)

    def grid(self, axes: Sequence[Sequence[float]] | None = None) -> np.ndarray:
        """The Cartesian product ``(M, P)`` of one axis of values per parameter (default: every
        parameter's :meth:`Param.values`), the last parameter varying fastest."""
        axes = [p.values() for p in self.params] if axes is None else axes
        if len(axes) != len(self.params):
            raise ValueError(f"{len(axes)} axes for the parameters {self.names}")
        return np.array(list(itertools.product(*axes)), dtype=np.float64).reshape(-1, len(self.params))

    def preset(self, name: str) -> np.ndarray:
        """The parameter rows ``(M, P)`` of the preset ``name``."""
        if name not in self.presets:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(self.presets)}")
        return self.grid(self.presets[name])

    def to_unit(self, values: np.ndarray, gamma: float = 0.1) -> np.ndarray:
        """Rows ``(..., P)`` scaled per parameter by :meth:`Param.unit_affine` (box -> [-1, 1])."""
        shift, scale = np.array([p.unit_affine(gamma) for p in self.params], dtype=np.float64).T
        return (np.asarray(values, dtype=np.float64) - shift) / scale


__all__ = ["ACCEPT_FACTOR", "Param", "ParamSpace", "grid_values", "format_value"]
