"""Collocation data for the physics-informed stages: the point sets of every μ, in one batch.

:class:`CollocationDataModule` builds Hyper-LR-PINN's point sets (pinn-methods.md §1) from a
problem of :data:`PROBLEMS` and a set of PDE parameter values μ:

* a tensor grid (``n_grid``; CDR: 256 x 100, x = 2πj/256 with the endpoint excluded,
  t = linspace(0, 1, 100)) on which the reference solution of every μ is computed once;
* ``n_collocation`` residual points drawn without replacement from the interior nodes (CDR:
  the 255 x 99 nodes with x > 0 and t > 0), ``n_test`` test points from the interior nodes left
  over (disjoint from the others), the ``n_ic`` initial-condition points at t = 0 (CDR: every
  grid x) and ``n_bc`` boundary points: periodic pairs u(0, t) = u(2π, t) at grid times, or
  Dirichlet points on the edges of the grid with the exact boundary values;
* the same locations for every μ, drawn from ``seed`` alone (numpy's ``default_rng``), so
  the data are identical for a seed on any machine and with any number of workers.

All μ of the run are one batch: ``mu`` (M, P) and the shared point sets, so a stage evaluates
every μ in one batched computation (the network receives (M·N, d) coordinates and each
point's μ row, ``mu_index``), not in a loop over μ. A training epoch repeats that full batch
``steps_per_epoch`` times (one optimiser step each; PINN papers count full-batch steps as
epochs); validation and test get one evaluation batch (test points, their reference values).

μ sets: ``mu`` (one vector or a list of vectors), ``mu_ranges`` (``{name: [low, high, step]}``
per parameter, inclusive, or ``[value]``; Cartesian product; a parameter left out is 0), or ``preset`` (:data:`lemon_pl.pinn.problems.CDR_PRESETS`, which
also sets the IC). Linked into the stage and its network (``model_links``): ``in_dim``,
``mu_dim``, ``problem``, ``problem_args``, ``mu_values``.
"""

from __future__ import annotations

import itertools
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lemon_pl.pinn.problems import CDR_PRESETS, ConvectionDiffusionReaction, Helmholtz2D, Problem

#: problem name -> class; ``problem_args`` are its constructor's keyword arguments
PROBLEMS: dict[str, type[Problem]] = {"cdr": ConvectionDiffusionReaction, "helmholtz": Helmholtz2D}
#: default grid per problem (points per coordinate, in ``domain.names`` order)
DEFAULT_GRID = {"cdr": (256, 100), "helmholtz": (101, 101)}


#: documented ranges of the data module's values (checked before anything is built)
LIMITS = {
    "mu": 1e6,  # |each parameter value|
    "mu_rows": 10_000,  # μ values of one run
    "n_grid": 100_000,  # points per coordinate
    "points": 10_000_000,  # n_collocation, n_ic, n_bc, n_test each
    "steps_per_epoch": 10_000_000,
    "seed": 2 ** 63 - 1,
    "problem_args": 1e6,  # |a numeric constructor argument|
}
#: the arrays a run builds (references on the grid of every μ, the grid's node indices) at most
MAX_BUILD_BYTES = 8 * 2 ** 30


def make_problem(name: str, args: dict[str, Any] | None = None) -> Problem:
    """The problem ``name`` of :data:`PROBLEMS` built with ``args`` (one-line errors)."""
    if name not in PROBLEMS:
        raise ValueError(f"data.init_args.problem: unknown problem {name!r}; choose from {', '.join(PROBLEMS)}")
    for key, value in dict(args or {}).items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_number(f"problem_args.{key}", value, -LIMITS["problem_args"], LIMITS["problem_args"])
    try:
        return PROBLEMS[name](**dict(args or {}))
    except TypeError as err:
        raise ValueError(f"data.init_args.problem_args: {err}") from None


def _check_number(key: str, value: Any, low: float, high: float, integer: bool = False) -> None:
    """``data.init_args.KEY`` is a finite number (an integer if ``integer``) within [low, high]."""
    try:
        v = float(value)
        ok = bool(np.isfinite(v)) and low <= v <= high and not isinstance(value, bool)
    except (TypeError, ValueError):
        ok = False
    if ok and integer:
        ok = isinstance(value, (int, np.integer)) or v.is_integer()
    if not ok:
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"data.init_args.{key} must be {kind} from {low:g} to {high:g}, got {value!r}")


def mu_table(problem: Problem, mu: Any = None, mu_ranges: dict[str, Any] | None = None) -> list[list[float]]:
    """The run's μ values (M lists of P floats) from an explicit ``mu`` or per-parameter ranges."""
    names = problem.param_names
    if (mu is None) == (mu_ranges is None):
        raise ValueError("data.init_args: give exactly one of mu, mu_ranges or preset")
    if mu is not None:
        try:
            rows = np.asarray(mu, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"data.init_args.mu: numbers expected, got {mu!r}") from None
        rows = rows[None] if rows.ndim == 1 else rows
        if rows.ndim != 2 or rows.shape[1] != len(names):
            raise ValueError(f"data.init_args.mu: each value needs {len(names)} entries {names}, got shape "
                             f"{list(np.shape(mu))}")
        _check_mu_rows(len(rows), "mu")
        bad = ~(np.isfinite(rows) & (np.abs(rows) <= LIMITS["mu"]))
        if bad.any():
            i, j = map(int, np.argwhere(bad)[0])
            raise ValueError(f"data.init_args.mu: {names[j]} = {float(rows[i, j])!r} (value {i}) is not a finite number "
                             f"within ±{LIMITS['mu']:g}")
        return [[float(v) for v in r] for r in rows]
    unknown = set(mu_ranges) - set(names)
    if unknown:
        raise ValueError(f"data.init_args.mu_ranges: unknown parameters {sorted(unknown)}; {problem.name} has {names}")
    axes = []
    for n in names:
        spec = mu_ranges.get(n, [0.0])
        if isinstance(spec, (int, float)):
            spec = [spec]
        if not isinstance(spec, (list, tuple)) or len(spec) not in (1, 3):
            raise ValueError(f"data.init_args.mu_ranges.{n}: give [low, high, step] or [value], got {spec}")
        for v in spec:
            _check_number(f"mu_ranges.{n}", v, -LIMITS["mu"], LIMITS["mu"])
        if len(spec) == 3:
            low, high, step = map(float, spec)
            if step <= 0 or high < low:
                raise ValueError(f"data.init_args.mu_ranges.{n}: [low, high, step] needs step > 0 and high >= low")
            count = (high - low) / step + 1
            _check_mu_rows(count, f"mu_ranges.{n}")
            axes.append(np.round(low + step * np.arange(int(round((high - low) / step)) + 1), 10))
        else:
            axes.append(np.asarray(spec, dtype=np.float64))
    _check_mu_rows(float(np.prod([float(len(a)) for a in axes])), "mu_ranges")
    return [[float(v) for v in r] for r in itertools.product(*axes)]


def _check_mu_rows(count: float, key: str) -> None:
    if count > LIMITS["mu_rows"]:
        raise ValueError(f"data.init_args.{key} gives {count:,.0f} μ values; a run has at most {LIMITS['mu_rows']:,}")


class _Repeat(Dataset):
    def __init__(self, batch: dict[str, torch.Tensor], n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.batch


class CollocationDataModule(pl.LightningDataModule):
    """Point sets and references of a PDE problem at a set of μ values (see module doc).

    Args:
        problem: a name of :data:`PROBLEMS` (``cdr``, ``helmholtz``).
        problem_args: its constructor's arguments, e.g. ``{ic: gauss_pi_2}`` (CDR) or ``{k: 1}``.
        mu, mu_ranges, preset: the μ set (exactly one).
        n_grid: grid points per coordinate (default per problem: CDR 256 x 100).
        n_collocation, n_ic, n_bc, n_test: sizes of the point sets (release: 1000, 256, 100, 1000).
        seed: the seed of the point locations (the same for every μ).
        steps_per_epoch: full-batch optimiser steps per training epoch.

    Every value is checked before anything is built (one-line errors naming the key; ranges in
    :data:`LIMITS`): μ values finite within ±1e6 and at most 10,000 of them; n_grid 3 to 100,000
    per coordinate; point counts up to 1e7; the references of all μ on the grid at most 8 GiB.
    """

    model_links = ("in_dim", "mu_dim", "problem", "problem_args", "mu_values")

    def __init__(self, problem: str = "cdr", problem_args: dict[str, Any] | None = None,
                 mu: list[float] | list[list[float]] | None = None, mu_ranges: dict[str, list[float]] | None = None,
                 preset: str | None = None, n_grid: list[int] | None = None, n_collocation: int = 1000,
                 n_ic: int = 256, n_bc: int = 100, n_test: int = 1000, seed: int = 0,
                 steps_per_epoch: int = 100) -> None:
        super().__init__()
        args = dict(problem_args or {})
        if preset is not None:
            if problem != "cdr":
                raise ValueError(f"data.init_args.preset: presets exist for the cdr problem only, not {problem!r}")
            if mu is not None or mu_ranges is not None:
                raise ValueError("data.init_args: give exactly one of mu, mu_ranges or preset")
            if preset not in CDR_PRESETS:
                raise ValueError(f"data.init_args.preset: unknown preset {preset!r}; choose from {sorted(CDR_PRESETS)}")
            args.setdefault("ic", CDR_PRESETS[preset][0])
        self.problem_name, self.problem_args = problem, args
        self.pde = make_problem(problem, args)
        if preset is not None:
            _, values = ConvectionDiffusionReaction.preset(preset)
            self.mu_values = [[float(v) for v in r] for r in values]
        else:
            self.mu_values = mu_table(self.pde, mu, mu_ranges)
        for m in self.mu_values:
            self.pde.mu(m)  # raises for invalid values (e.g. nu < 0)
        grid = list(n_grid or DEFAULT_GRID[problem])
        if len(grid) != self.pde.domain.dim:
            raise ValueError(f"data.init_args.n_grid: {self.pde.domain.dim} sizes >= 3 expected, got {grid}")
        for n in grid:
            _check_number("n_grid", n, 3, LIMITS["n_grid"], integer=True)
        for name, v, low in (("n_collocation", n_collocation, 1), ("n_test", n_test, 1), ("n_ic", n_ic, 0),
                             ("n_bc", n_bc, 0)):
            _check_number(name, v, low, LIMITS["points"], integer=True)
        _check_number("steps_per_epoch", steps_per_epoch, 1, LIMITS["steps_per_epoch"], integer=True)
        _check_number("seed", seed, 0, LIMITS["seed"], integer=True)
        grid = [int(n) for n in grid]
        nodes = float(np.prod([float(n) for n in grid]))
        need = 8.0 * nodes * (len(self.mu_values) + len(grid))  # references of every μ + node indices
        if need > MAX_BUILD_BYTES:
            raise ValueError(f"data.init_args: the {'x'.join(map(str, grid))} grid with {len(self.mu_values)} μ "
                             f"values needs about {need / 2 ** 30:.1f} GiB for its references (at most "
                             f"{MAX_BUILD_BYTES / 2 ** 30:g} GiB); use a smaller n_grid or fewer μ values")
        self.n_grid, self.seed, self.steps_per_epoch = grid, int(seed), int(steps_per_epoch)
        self.sizes = {"collocation": int(n_collocation), "ic": int(n_ic), "bc": int(n_bc), "test": int(n_test)}
        dom = self.pde.domain
        interior = int(np.prod([n - 1 if (dom.periodic[i] or dom.names[i] == "t") else n - 2
                                for i, n in enumerate(grid)]))
        if n_collocation + n_test > interior:
            raise ValueError(f"data.init_args: n_collocation + n_test = {n_collocation + n_test} exceeds the "
                             f"{interior} interior nodes of the {'x'.join(map(str, grid))} grid")
        self._built: dict[str, Any] | None = None

    # ------------------------------------------------------------------ linked values
    @property
    def problem(self) -> str:
        return self.problem_name

    @property
    def in_dim(self) -> int:
        return self.pde.domain.dim

    @property
    def mu_dim(self) -> int:
        return len(self.pde.params)

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.pde.param_names

    # ------------------------------------------------------------------ point sets
    def axes(self) -> list[np.ndarray]:
        """The grid axes in ``domain.names`` order."""
        return list(self.pde.grid(*self.n_grid))

    def build(self) -> dict[str, Any]:
        """Every tensor of the run (computed once): point sets, μ, references on the grid."""
        if self._built is not None:
            return self._built
        pde, rng = self.pde, np.random.default_rng(self.seed)
        axes = self.axes()
        dom = pde.domain
        time_axis = dom.names.index("t") if pde.time_dependent else None
        # interior node indices per axis: no boundary node, no initial time
        inner = []
        for i, ax in enumerate(axes):
            lo = 1
            hi = len(ax) if (dom.periodic[i] or i == time_axis) else len(ax) - 1
            inner.append(np.arange(lo, hi))
        nodes = np.stack(np.meshgrid(*inner, indexing="ij"), -1).reshape(-1, len(axes))
        need = self.sizes["collocation"] + self.sizes["test"]  # <= len(nodes): checked in __init__
        pick = rng.permutation(len(nodes))
        f_idx, test_idx = nodes[pick[: self.sizes["collocation"]]], nodes[pick[self.sizes["collocation"]: need]]

        def coords(idx: np.ndarray) -> np.ndarray:
            return np.stack([axes[i][idx[:, i]] for i in range(len(axes))], -1)

        mu = np.asarray(self.mu_values, dtype=np.float64)
        refs = np.stack([pde.reference(m, *axes) for m in mu])  # (M, len(axes[1]), len(axes[0]))
        if refs.shape[1:] != (len(axes[1]), len(axes[0])):
            raise RuntimeError(f"reference of {pde.name} has shape {refs.shape[1:]}")

        def ref_at(idx: np.ndarray) -> np.ndarray:
            return refs[:, idx[:, 1], idx[:, 0]]

        out: dict[str, Any] = {"mu": mu, "x_f": coords(f_idx), "x_test": coords(test_idx), "u_test": ref_at(test_idx),
                               "grid_ref": refs}
        if time_axis is not None and self.sizes["ic"] > 0:
            x_axis = axes[1 - time_axis]
            sel = np.arange(len(x_axis)) if self.sizes["ic"] >= len(x_axis) else np.sort(
                rng.choice(len(x_axis), self.sizes["ic"], replace=False))
            x0 = x_axis[sel]
            t0 = np.full_like(x0, axes[time_axis][0])
            pts = np.stack([x0, t0] if time_axis == 1 else [t0, x0], -1)
            out["x_ic"] = pts
            out["u_ic"] = np.repeat(np.asarray(pde.initial_condition(x0), dtype=np.float64)[None], len(mu), 0)
        if self.sizes["bc"] > 0:
            if pde.boundary == "periodic":
                p = dom.periodic.index(True)
                other = 1 - p
                ax = axes[other]
                sel = np.arange(len(ax)) if self.sizes["bc"] >= len(ax) else np.sort(
                    rng.choice(len(ax), self.sizes["bc"], replace=False))
                lo, hi = dom.bounds[p]
                a = np.zeros((len(sel), 2))
                a[:, other] = ax[sel]
                b = a.copy()
                a[:, p], b[:, p] = lo, hi
                out["x_bc_a"], out["x_bc_b"] = a, b
            else:
                edge = [np.stack(np.meshgrid(*[ax if j != i else np.array([ax[0], ax[-1]]) for j, ax in enumerate(axes)],
                                             indexing="ij"), -1).reshape(-1, len(axes)) for i in range(len(axes))]
                pts = np.unique(np.concatenate(edge), axis=0)
                sel = rng.choice(len(pts), min(self.sizes["bc"], len(pts)), replace=False)
                pts = pts[np.sort(sel)]
                out["x_bd"] = pts
                tp = torch.as_tensor(pts)
                out["u_bd"] = np.stack([pde.boundary_value(tp, m).numpy() for m in mu])
        self._built = out
        return out

    def tensors(self, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
        b = self.build()
        return {k: torch.as_tensor(b[k], dtype=torch.float32) for k in keys if k in b}

    def train_batch(self) -> dict[str, torch.Tensor]:
        return self.tensors(("mu", "x_f", "x_ic", "u_ic", "x_bc_a", "x_bc_b", "x_bd", "u_bd"))

    def eval_batch(self) -> dict[str, torch.Tensor]:
        return self.tensors(("mu", "x_test", "u_test"))

    def setup(self, stage: str | None = None) -> None:
        self.build()

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Repeat(self.train_batch(), self.steps_per_epoch), batch_size=None, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Repeat(self.eval_batch(), 1), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def grid(self) -> dict[str, np.ndarray]:
        """The evaluation grid and its references: axes by name and ``u_ref`` (M, n1, n0)."""
        b = self.build()
        return {"names": np.array(self.pde.domain.names), "axes": self.axes(), "u_ref": b["grid_ref"], "mu": b["mu"]}
