"""Initial conditions for ``lemon-pl predict``: an expression in x, a ``.npy`` file or a sampler.

Every model and solver of lemon-pl works on the periodic domain x in [0, 2) (``ics.L_DOMAIN``) at
the cell centres ``x_i = (i + 1/2) * 2/nx`` (``ics.grid``); ``nx`` is the model's. A spec is

* ``FILE.npy``: an array (nx,) or (n, nx) of values at those points (a file of another length
  is an error naming it);
* the name of an IC sampler of the data engine (``ics.IC_SAMPLERS``: init_multi, sines,
  kdv_gaussians, gaussian_bump, fplanck_gaussian, gaussian_process), or ``family`` for the
  equation's family's own distribution: ``n`` draws from ``numpy.random.default_rng(seed)``;
* otherwise an expression in x (``sin(pi*x)``, ``exp(-20*(x-1)**2)``, ``0.5 + 0.1*x``; ``^`` or ``**``),
  read by the whitelist grammar of :mod:`lemon_pl.core.expressions` (x, pi, E, numbers, ``+ - * / ^``,
  parentheses and :data:`IC_FUNCTIONS`; nothing else, so it can never run code) and computed with
  numpy on the grid.

A spec that is not periodic on [0, 2) (its value at 0 and 2, or the array's seam, jumps) gets a
warning: the model and the solvers treat x as periodic.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lemon_pl.data import ics
from lemon_pl.data.families import Family
from lemon_pl.core.expressions import MAX_LENGTH, ExpressionError, Node, evaluate, parse

#: what an IC expression may call (computed with numpy on the grid)
IC_FUNCTIONS = ("sin", "cos", "tan", "exp", "log", "sqrt", "tanh", "sinh", "cosh", "atan", "Abs", "abs",
                "sign", "Heaviside", "Min", "Max", "erf")
IC_CONSTANTS = ("pi", "E")
MAX_MIN_MAX_ARGS = 16


class InitialConditionError(ValueError):
    """An initial condition that cannot be used (the message names the file or expression)."""


@dataclass
class InitialConditions:
    """Initial conditions ``u0`` (n, nx) on the model's grid, one label each, and warnings."""

    u0: np.ndarray
    labels: list[str]
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.u0.shape[0])


def describe_grid(nx: int) -> str:
    return (f"nx={nx} cell centres x_i = (i + 1/2)*{ics.L_DOMAIN:g}/{nx} of the periodic domain "
            f"[0, {ics.L_DOMAIN:g})")


def is_sampler(spec: str) -> bool:
    return spec in ics.IC_SAMPLERS or spec == "family"


def initial_conditions(spec: str, nx: int, seed: int = 0, n: int = 1, family: Family | None = None
                       ) -> InitialConditions:
    """The initial conditions of one ``--u0`` spec on the ``nx``-point grid (see the module doc)."""
    spec = str(spec).strip()
    check_spec(spec)  # the length is checked before the text is echoed in any message
    if spec.endswith(".npy") or (Path(spec).suffix and Path(spec).is_file()):
        return _from_file(Path(spec), nx)
    if is_sampler(spec):
        return _from_sampler(spec, nx, seed, n, family)
    return _from_expression(spec, nx)


def check_spec(spec: str) -> None:
    """Refuse a ``--u0`` spec that can never work, before any model or file is loaded: an empty or
    over-long one, or an expression outside the grammar (files and samplers are checked when read)."""
    spec = str(spec).strip()
    if not spec:
        raise InitialConditionError("--u0 is empty")
    if len(spec) > MAX_LENGTH:
        raise InitialConditionError(f"--u0 is {len(spec)} characters long; an expression or path has at most "
                                    f"{MAX_LENGTH}")
    if spec.endswith(".npy"):  # a FIFO or a device named *.npy would block the reads that follow
        path = Path(spec)
        if not path.exists():
            raise InitialConditionError(f"--u0 {path} does not exist")
        if not path.is_file():
            raise InitialConditionError(f"--u0 {path} is not a regular file")
    elif not ((Path(spec).suffix and Path(spec).is_file()) or is_sampler(spec)):
        _parse_expression(spec)


def _from_file(path: Path, nx: int) -> InitialConditions:
    if path.suffix != ".npy":
        raise InitialConditionError(f"--u0 {path}: only .npy files are read (an array (nx,) or (n, nx))")
    if not path.is_file():
        raise InitialConditionError(f"--u0 {path} does not exist" if not path.exists() else f"--u0 {path} is not a file")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise InitialConditionError(f"--u0 {path} is not a readable .npy array ({str(err).splitlines()[0]})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "iuf":
        raise InitialConditionError(f"--u0 {path} holds {getattr(arr, 'dtype', type(arr))} values, not numbers")
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise InitialConditionError(f"--u0 {path} has shape {arr.shape}; expected (nx,) or (n, nx) with nx={nx}")
    if arr.shape[1] != nx:
        raise InitialConditionError(
            f"--u0 {path} holds {arr.shape[1]} points per initial condition, but the model's grid has {describe_grid(nx)}; "
            "resample it to that grid")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise InitialConditionError(f"--u0 {path}: initial condition {int(np.flatnonzero(bad)[0])} has NaN/Inf values")
    labels = [path.name] if len(arr) == 1 else [f"{path.name}[{i}]" for i in range(len(arr))]
    warnings = [w for i, row in enumerate(arr) for w in _seam_warning(row, labels[i])]
    return InitialConditions(arr, labels, warnings)


def _from_sampler(name: str, nx: int, seed: int, n: int, family: Family | None) -> InitialConditions:
    if n < 1:
        raise InitialConditionError(f"--num-ics must be at least 1, got {n}")
    rng = np.random.default_rng(seed)
    if name == "family":
        if family is None:
            raise InitialConditionError("--u0 family needs an equation of a known family (--family NAME, or an "
                                        "equation lemon-pl recognises)")
        u0 = family.sample_initial_conditions(rng, n, nx)
        what = f"{family.ic_type} ({family.name}'s ICs)"
    else:
        u0 = ics.IC_SAMPLERS[name](rng, n, nx)
        what = name
    labels = [f"{what}, seed {seed}" + (f", draw {i}" if n > 1 else "") for i in range(n)]
    return InitialConditions(np.asarray(u0, dtype=np.float64), labels)


def _ic_functions() -> dict:
    """numpy forms of :data:`IC_FUNCTIONS` (SymPy's meanings: ``Heaviside(0) = 1/2``)."""
    from scipy.special import erf

    return {"sin": np.sin, "cos": np.cos, "tan": np.tan, "exp": np.exp, "log": np.log, "sqrt": np.sqrt,
            "tanh": np.tanh, "sinh": np.sinh, "cosh": np.cosh, "atan": np.arctan, "Abs": np.abs, "abs": np.abs,
            "sign": np.sign, "Heaviside": lambda a: np.heaviside(a, 0.5), "erf": erf,
            "Min": lambda *a: np.minimum.reduce(np.broadcast_arrays(*a)),
            "Max": lambda *a: np.maximum.reduce(np.broadcast_arrays(*a))}


def _parse_expression(text: str) -> Node:
    try:
        return parse(text, ("x",), {f: (1, MAX_MIN_MAX_ARGS) if f in ("Min", "Max") else 1 for f in IC_FUNCTIONS},
                     {"pi": math.pi, "E": math.e})
    except ExpressionError as err:
        msg = str(err)
        if msg.startswith("unknown name"):
            samplers = ", ".join(ics.IC_SAMPLERS)
            msg += (f"; an expression may use x, pi, E and {', '.join(IC_FUNCTIONS)}; or give a .npy file, an IC "
                    f"sampler ({samplers}) or 'family'")
        elif msg.startswith(("is ", "ends ")):
            msg = "cannot parse it: the expression " + msg
        else:
            msg = "cannot parse it: " + msg if not msg.startswith("the symbol") else msg
        raise InitialConditionError(f"--u0 {text!r}: {msg}") from None


def _from_expression(text: str, nx: int) -> InitialConditions:
    node = _parse_expression(text)
    grid = ics.grid(nx)
    functions = _ic_functions()
    values = np.broadcast_to(np.asarray(evaluate(node, {"x": grid}, functions), dtype=np.float64), grid.shape)
    ends = np.broadcast_to(np.asarray(evaluate(node, {"x": np.array([0.0, ics.L_DOMAIN])}, functions),
                                      dtype=np.float64), (2,))
    u0 = values.astype(np.float64)
    if not np.isfinite(u0).all():
        at = float(grid[np.flatnonzero(~np.isfinite(u0))[0]])
        raise InitialConditionError(f"--u0 {text!r} is not finite on the grid (at x = {at:.4g})")
    warnings = []
    a, b = ends
    scale = max(1.0, float(np.abs(u0).max()))
    if np.isfinite([a, b]).all() and abs(a - b) > 1e-6 * scale:
        warnings.append(f"--u0 {text!r} is not periodic on [0, {ics.L_DOMAIN:g}): u0(0) = {a:.4g}, "
                        f"u0({ics.L_DOMAIN:g}) = {b:.4g}; the model and the solvers treat x as periodic, "
                        "so the initial condition jumps at x = 0")
    return InitialConditions(u0[None].copy(), [text], warnings)


def _seam_warning(u: np.ndarray, label: str) -> list[str]:
    """A periodic profile's seam jump u[-1] -> u[0] is no larger than its other steps."""
    steps = np.abs(np.diff(u))
    seam = abs(float(u[0] - u[-1]))
    if seam > 3.0 * float(steps.max(initial=0.0)) + 1e-9 * max(1.0, float(np.abs(u).max())):
        return [f"--u0 {label} is not periodic: the jump from x = 2 back to x = 0 ({seam:.3g}) is larger than any "
                f"step inside the grid ({float(steps.max(initial=0.0)):.3g}); the model and the solvers treat x as periodic"]
    return []


def constant_warning(u0: np.ndarray, labels: list[str]) -> list[str]:
    """Inputs are normalised by their spatial standard deviation: a constant one carries no shape."""
    std = u0.std(axis=-1)
    return [f"--u0 {labels[i]} is constant: the model normalises inputs by their standard deviation, so its "
            "prediction is not meaningful" for i in np.flatnonzero(std < 1e-9)]
