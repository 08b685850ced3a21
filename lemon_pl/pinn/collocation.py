"""Collocation data for the physics-informed stages: every condition's points and targets, all μ in one batch.

:class:`CollocationDataModule` builds the point sets of a problem's named conditions
(:mod:`lemon_pl.pinn.conditions`) at a set of PDE parameter values μ:

* the problem is built once, from ``problem: {class_path, init_args}`` (a
  :class:`lemon_pl.pinn.problems.Problem` subclass), and the same object is linked to the stage;
* a tensor grid (``n_grid``; CDR: 256 x 100, x = 2πj/256 with the endpoint excluded,
  t = linspace(0, 1, 100)) on which the reference of every μ is computed once;
* per condition, its region's points (:mod:`lemon_pl.pinn.sampling`: ``sampler: grid`` takes grid
  nodes, ``lhs`` a Latin hypercube) - ``n_collocation`` for the interior, ``n_ic`` for the
  initial slice, ``n_bc`` for boundaries, edges and periodic pairs, or ``points: {name: n}`` -
  and its targets at every μ; ``n_test`` test points from the interior nodes, disjoint from the
  first interior condition's (with ``sampler: grid`` both come from one permutation);
* the same locations for every μ, drawn from ``seed`` alone (numpy's ``default_rng``): first the
  interior permutation, then each condition in its declared order, so the data are identical for
  a seed on any machine and with any number of workers.

The batch (one per step, repeated ``steps_per_epoch`` times; PINN papers count full-batch steps as
epochs) holds ``mu`` (M, P) and, per condition name, ``points`` (n, d), ``pairs`` (periodic
partners), ``normals`` (boundary outward normals) and ``targets`` (M, n) or (M, n, c);
:func:`select_mu` keeps some μ rows. Validation and test get ``mu``, ``x_test`` and ``u_test``.

μ sets: ``mu`` (one vector or a list of vectors), ``mu_ranges`` (``{name: [low, high, step]}``
per parameter, inclusive, or ``[value]``; Cartesian product; a parameter left out is 0), or
``preset`` (the problem's ``presets``, e.g. :data:`lemon_pl.pinn.problems.CDR_PRESETS`). Linked
into the stage and its network (``model_links``): ``in_dim``, ``out_dim``, ``mu_dim``, ``problem``
(the object), ``mu_values`` and ``evaluation_grid`` (a function giving the grid and its references).
"""

from __future__ import annotations

import importlib
import itertools
from typing import Any, Callable, Mapping, Optional, Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lemon_pl.data.params import grid_values
from lemon_pl.pinn.conditions import SIZE_KEYS, Condition
from lemon_pl.pinn.problems import ConvectionDiffusionReaction, Problem
from lemon_pl.pinn.sampling import METHODS, Sample, choose, grid_sample, interior_nodes, lhs_sample

#: documented ranges of the data module's values (checked before anything is built)
LIMITS = {
    "mu": 1e6,  # |each parameter value|
    "mu_rows": 10_000,  # μ values of one run
    "n_grid": 100_000,  # points per coordinate
    "points": 10_000_000,  # n_collocation, n_ic, n_bc, n_test each
    "steps_per_epoch": 10_000_000,
    "seed": 2 ** 63 - 1,
    "problem_init_args": 1e6,  # |a numeric constructor argument of the problem|
}
#: the arrays a run builds (references on the grid of every μ, the grid's node indices) at most
MAX_BUILD_BYTES = 8 * 2 ** 30


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
            axes.append(grid_values(low, high, step, decimals=10))
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


def build_problem(spec: Any, overrides: Mapping[str, Any] | None = None) -> Problem:
    """The problem of ``data.init_args.problem``: a :class:`Problem`, or ``{class_path, init_args}``
    (built here, for Python callers; the CLI's parser builds it). ``overrides`` (a preset's)
    replace constructor arguments."""
    if isinstance(spec, Problem) and not overrides:
        return spec
    if isinstance(spec, Problem):
        spec = spec.config()
    if not isinstance(spec, Mapping) or "class_path" not in spec:
        raise ValueError("data.init_args.problem: give {class_path: ..., init_args: {...}} of a "
                         f"lemon_pl.pinn.problems.Problem subclass, got {spec!r}")
    path = str(spec["class_path"])
    module, _, name = path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"data.init_args.problem.class_path: cannot import {path!r}") from None
    if not (isinstance(cls, type) and issubclass(cls, Problem)):
        raise ValueError(f"data.init_args.problem.class_path: {path} is not a lemon_pl.pinn.problems.Problem")
    args = {**dict(spec.get("init_args") or {}), **dict(overrides or {})}
    try:
        return cls(**args)
    except TypeError as err:
        raise ValueError(f"data.init_args.problem.init_args: {err}") from None


def select_mu(batch: dict[str, Any], rows: Sequence[int] | slice) -> dict[str, Any]:
    """The batch restricted to some μ rows (the point sets are shared by every μ)."""
    idx = rows if isinstance(rows, slice) else torch.as_tensor(list(rows), dtype=torch.long)
    out = dict(batch)
    out["mu"] = batch["mu"][idx]
    if "targets" in batch:
        out["targets"] = {k: v[idx] for k, v in batch["targets"].items()}
    if "u_test" in batch:
        out["u_test"] = batch["u_test"][idx]
    return out


class _Repeat(Dataset):
    def __init__(self, batch: dict[str, Any], n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.batch


def _f32(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(a, dtype=torch.float32)


class CollocationDataModule(pl.LightningDataModule):
    """Points and targets of a problem's conditions at a set of μ values (see module doc).

    Args:
        problem: the problem, ``{class_path: lemon_pl.pinn.problems.ConvectionDiffusionReaction,
            init_args: {ic: gauss_pi_2}}`` (default: that class with its default IC, or the
            preset's).
        mu, mu_ranges, preset: the μ set (exactly one). A preset also fixes the constructor
            arguments it was defined with (CDR's ``table4_*`` presets: the ``gauss_pi_2`` IC).
        n_grid: grid points per axis (default: the problem's ``default_grid``; CDR 256 x 100).
        n_collocation, n_ic, n_bc, n_test: points of the interior, initial, boundary (edges,
            periodic pairs) regions and the test set (release: 1000, 256, 100, 1000).
        points: points per condition name, overriding the region's default count.
        sampler: ``grid`` (grid nodes, the release) or ``lhs`` (Latin hypercube).
        seed: the seed of the point locations (the same for every μ).
        steps_per_epoch: full-batch optimiser steps per training epoch.

    Every value is checked before anything is built (one-line errors naming the key; ranges in
    :data:`LIMITS`): μ values finite within ±1e6 and at most 10,000 of them; n_grid 3 to 100,000
    per axis; point counts up to 1e7; the references of all μ on the grid at most 8 GiB.
    """

    model_links = ("in_dim", "out_dim", "mu_dim", "problem", "mu_values", "evaluation_grid")

    def __init__(self, problem: Optional[Problem] = None,
                 mu: list[float] | list[list[float]] | None = None, mu_ranges: dict[str, list[float]] | None = None,
                 preset: str | None = None, n_grid: list[int] | None = None, n_collocation: int = 1000,
                 n_ic: int = 256, n_bc: int = 100, n_test: int = 1000, points: dict[str, int] | None = None,
                 sampler: str = "grid", seed: int = 0, steps_per_epoch: int = 100) -> None:
        super().__init__()
        if problem is None:
            ic = ConvectionDiffusionReaction.presets[preset][0]["ic"] if preset in ConvectionDiffusionReaction.presets \
                else "1+sin"
            problem = ConvectionDiffusionReaction(ic)
        self.pde = build_problem(problem)
        for key, value in self.pde.config()["init_args"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                _check_number(f"problem.init_args.{key}", value, -LIMITS["problem_init_args"], LIMITS["problem_init_args"])
        if preset is not None:
            if not self.pde.presets:
                raise ValueError(f"data.init_args.preset: the {self.pde.name} problem has no presets")
            if mu is not None or mu_ranges is not None:
                raise ValueError("data.init_args: give exactly one of mu, mu_ranges or preset")
            if preset not in self.pde.presets:
                raise ValueError(f"data.init_args.preset: unknown preset {preset!r}; choose from "
                                 f"{sorted(self.pde.presets)}")
            args, values = self.pde.preset_mu(preset)
            if any(self.pde.config()["init_args"].get(k) != v for k, v in args.items()):
                self.pde = build_problem(self.pde, args)  # the preset's IC, as the paper's table has it
            self.mu_values = [[float(v) for v in r] for r in values]
        else:
            self.mu_values = mu_table(self.pde, mu, mu_ranges)
        for m in self.mu_values:
            self.pde.mu(m)  # raises for invalid values (e.g. nu < 0)
        dom = self.pde.domain
        grid = list(n_grid or self.pde.default_grid)
        if len(grid) != dom.dim:
            raise ValueError(f"data.init_args.n_grid: {dom.dim} sizes >= 3 expected, got {grid}")
        for n in grid:
            _check_number("n_grid", n, 3, LIMITS["n_grid"], integer=True)
        for name, v, low in (("n_collocation", n_collocation, 1), ("n_test", n_test, 1), ("n_ic", n_ic, 0),
                             ("n_bc", n_bc, 0)):
            _check_number(name, v, low, LIMITS["points"], integer=True)
        _check_number("steps_per_epoch", steps_per_epoch, 1, LIMITS["steps_per_epoch"], integer=True)
        _check_number("seed", seed, 0, LIMITS["seed"], integer=True)
        if sampler not in METHODS:
            raise ValueError(f"data.init_args.sampler: choose from {', '.join(METHODS)}, got {sampler!r}")
        self.conditions: dict[str, Condition] = dict(self.pde.conditions())
        unknown = set(points or {}) - set(self.conditions)
        if unknown:
            raise ValueError(f"data.init_args.points: unknown conditions {sorted(unknown)}; {self.pde.name} has "
                             f"{list(self.conditions)}")
        for name, v in dict(points or {}).items():
            _check_number(f"points.{name}", v, 0, LIMITS["points"], integer=True)
        grid = [int(n) for n in grid]
        nodes = float(np.prod([float(n) for n in grid]))
        need = 8.0 * nodes * (len(self.mu_values) * len(self.pde.fields) + len(grid))  # references + node indices
        if need > MAX_BUILD_BYTES:
            raise ValueError(f"data.init_args: the {'x'.join(map(str, grid))} grid with {len(self.mu_values)} μ "
                             f"values needs about {need / 2 ** 30:.1f} GiB for its references (at most "
                             f"{MAX_BUILD_BYTES / 2 ** 30:g} GiB); use a smaller n_grid or fewer μ values")
        self.n_grid, self.seed, self.steps_per_epoch, self.sampler = grid, int(seed), int(steps_per_epoch), sampler
        counts = {"n_collocation": int(n_collocation), "n_ic": int(n_ic), "n_bc": int(n_bc)}
        self.sizes = {name: int((points or {}).get(name, counts[SIZE_KEYS[c.region.kind]]))
                      for name, c in self.conditions.items()}
        self.sizes["test"] = int(n_test)
        interior = int(np.prod([n - 1 if (dom.periodic[i] or i == dom.time_index) else n - 2
                                for i, n in enumerate(grid)]))
        first = self._first_interior()
        taken = self.sizes[first] if (first is not None and sampler == "grid") else 0
        if taken + n_test > interior:
            raise ValueError(f"data.init_args: n_collocation + n_test = {taken + n_test} exceeds the "
                             f"{interior} interior nodes of the {'x'.join(map(str, grid))} grid")
        self._built: dict[str, Any] | None = None

    def _first_interior(self) -> str | None:
        return next((n for n, c in self.conditions.items() if c.region.kind == "interior"), None)

    # ------------------------------------------------------------------ linked values
    @property
    def problem(self) -> Problem:
        return self.pde

    @property
    def in_dim(self) -> int:
        return self.pde.domain.dim

    @property
    def out_dim(self) -> int:
        return len(self.pde.fields)

    @property
    def mu_dim(self) -> int:
        return len(self.pde.params)

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.pde.param_names

    @property
    def evaluation_grid(self) -> Callable[[], dict[str, Any]]:
        """The grid of predictions files and figures, as a function (built when first called)."""
        return self.grid

    # ------------------------------------------------------------------ point sets
    def axes(self) -> list[np.ndarray]:
        """The grid axes in ``domain.names`` order."""
        return self.pde.domain.grid(self.n_grid)

    def build(self) -> dict[str, Any]:
        """Every array of the run (computed once): μ, per condition its points and targets, the
        test points and their references, the references on the grid."""
        if self._built is not None:
            return self._built
        pde, rng, dom = self.pde, np.random.default_rng(self.seed), self.pde.domain
        axes = self.axes()
        d = dom.dim

        def coords(idx: np.ndarray) -> np.ndarray:
            return np.stack([axes[i][idx[:, i]] for i in range(d)], -1)

        first = self._first_interior()
        nodes = interior_nodes(dom, self.n_grid)
        n_first = self.sizes[first] if (first is not None and self.sampler == "grid") else 0
        pick = rng.permutation(len(nodes))
        test_idx = nodes[pick[n_first:n_first + self.sizes["test"]]]
        samples: dict[str, Sample] = {}
        for name, cond in self.conditions.items():
            n = self.sizes[name]
            if n == 0:
                continue
            if self.sampler == "lhs":
                samples[name] = lhs_sample(cond.region, dom, n, rng)
            elif name == first:
                samples[name] = Sample(coords(nodes[pick[:n]]))
            elif cond.region.kind == "interior":
                samples[name] = Sample(coords(nodes[choose(rng, len(nodes), n)]))
            else:
                samples[name] = grid_sample(cond.region, dom, axes, n, rng)

        mu = np.asarray(self.mu_values, dtype=np.float64)
        refs = np.stack([np.asarray(pde.reference(m, *axes), dtype=np.float64) for m in mu])
        shape = tuple(len(a) for a in axes[::-1])
        if refs.shape[1:1 + d] != shape:
            raise RuntimeError(f"reference of {pde.name} has shape {refs.shape[1:]}, expected {shape}")
        out: dict[str, Any] = {"mu": mu, "points": {}, "pairs": {}, "normals": {}, "targets": {},
                               "x_test": coords(test_idx), "u_test": refs[(slice(None), *test_idx[:, ::-1].T)],
                               "grid_ref": refs}
        for name, sample in samples.items():
            cond = self.conditions[name]
            out["points"][name] = sample.points
            if sample.pairs is not None:
                out["pairs"][name] = sample.pairs
            if sample.normals is not None and cond.kind == "flux":
                out["normals"][name] = sample.normals
            if cond.kind in ("value", "flux"):
                out["targets"][name] = self._targets(name, cond, sample.points, mu)
        self._built = out
        return out

    def _targets(self, name: str, cond: Condition, points: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """Targets of a condition at every μ: (M, n) for one component, (M, n, c) for several."""
        comps = self.pde.components(cond.components)
        vals = np.stack([np.asarray(cond.target(self.pde.mu(m), points), dtype=np.float64) for m in mu])
        want = (len(mu), len(points)) if len(comps) == 1 else (len(mu), len(points), len(comps))
        if len(comps) == 1 and vals.ndim == 3 and vals.shape[2] == 1:
            vals = vals[..., 0]
        if vals.shape != want:
            raise ValueError(f"{self.pde.name}: condition {name!r} gives targets of shape {vals.shape[1:]} for "
                             f"{len(points)} points and {len(comps)} component(s); expected {want[1:]}")
        return vals

    def train_batch(self) -> dict[str, Any]:
        b = self.build()
        return {"mu": _f32(b["mu"]), **{k: {n: _f32(v) for n, v in b[k].items()}
                                       for k in ("points", "pairs", "normals", "targets")}}

    def eval_batch(self) -> dict[str, torch.Tensor]:
        b = self.build()
        return {k: _f32(b[k]) for k in ("mu", "x_test", "u_test")}

    def setup(self, stage: str | None = None) -> None:
        self.build()

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Repeat(self.train_batch(), self.steps_per_epoch), batch_size=None, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(_Repeat(self.eval_batch(), 1), batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def grid(self) -> dict[str, Any]:
        """The evaluation grid and its references: axes by name and ``u_ref`` (M, n_{d-1}, ..., n_0)."""
        b = self.build()
        return {"names": np.array(self.pde.domain.names), "axes": self.axes(), "u_ref": b["grid_ref"], "mu": b["mu"]}
