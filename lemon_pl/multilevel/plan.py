"""The multi-level budget plan: samples per level for a data-generation budget, as a config overlay.

    lemon-pl multilevel plan --config configs/multilevel/burgers.yaml --budget 600
    lemon-pl multilevel plan --config configs/multilevel/burgers.yaml --budget 20,60,200 --out-dir plans/

1. **Cost per level** ``c_l``: the solver seconds per sample measured when the level was generated
   (``seconds_per_sample`` of each level's ``train.h5``, ``lemon-pl generate --levels``).
2. **Pilot fits**: for every level alone, short fits (the config's total epochs) on ``--pilot``
   sample counts, each scored on the finest level's validation set; ``e_l(N) = b_l + a_l
   N**-alpha_l`` is fitted to them (``allocate.fit_level_model``): ``b_l`` is the level's floor (its
   discretisation bias against the finest labels), ``a_l N**-alpha_l`` its sample error. Pilot runs
   go to ``--pilot-dir`` and are reused by a re-run (their data are not part of the budget). One
   more pilot, a curriculum (the coarsest level's largest pilot count, then the finest level's
   middle one), calibrates how much of a fine-tuning level's sample error the curriculum pays
   (``calibrate_scale``): measured, fine-tuning on few samples can cost more than the correction
   it learns, and the estimator must know.
3. **Allocation**: ``N_l`` minimising the estimated final error of the curriculum
   (``allocate.estimate_final_error``: the first level learns the whole map, every later level only
   the correction between two levels' maps, its sample error weighted by ``|b_k - b_l| / scale``
   with the calibrated ``scale``; the documented stand-in for the paper's NTK estimator, which is
   not available) subject to ``sum N_l c_l <= B``
   (``allocate.optimal_allocation``). Baselines in the same table: the MLMC rule ``N_l ∝ sqrt(V_l /
   c_l)`` with ``V_l`` the mean squared difference of successive levels' labels on the same inputs
   (level 1: of its labels), an equal budget split, fine-only and coarse-only.

The plan is printed; ``--out FILE`` writes the allocator's overlay (``data.init_args.n_samples`` and
``epochs``; use it as a second ``--config``), ``--out-dir DIR`` writes one overlay per method and
budget (``<method>_b<budget>.yaml``) and ``plan.json`` (costs, variances, pilot errors, the fitted
models, every allocation and its estimate). Every level that gets samples trains for its share of the config's total epochs in proportion to its samples (``epochs_for``), so all plans train
for the same number of optimiser steps.

Everything that can be checked is checked before the first pilot fit, each refusal one
``lemon-pl multilevel: error:`` line with exit code 2 and nothing written: ``--budget`` (finite,
> 0, at most ``MAX_BUDGET`` = 1e12 seconds or finest samples, none twice, at least one finest
sample), ``--pilot`` (3 to 10 distinct whole counts in [1, 1e9], at least 3 distinct within what
every level file holds), ``--seed``, ``--out`` / ``--out-dir`` / ``--pilot-dir`` (no folder where a
file goes and no file where a folder goes, a writable nearest existing folder), every config
file and what it composes through ``defaults:`` (the CLI's composer), the values the plan reads
(levels, epochs, family), the level files and their measured costs, and the pilot fits' own
config, built but not run (``lemon_pl.cli.lightning.check_lightning_args``, passed in). One plan at a time
uses a pilot folder (a lock on ``PILOT_DIR/.plan.lock``; a second is refused naming the first's
pid). No level gets more samples than its file holds (the allocator optimises within those
counts), so no budget can make the allocators loop or overflow. The overlays and ``plan.json``
are written all or nothing (``checkpointing.atomic_write_many``): a full disk is one line and
leaves the previous plan as it was.

Its pieces serve both ``lemon-pl multilevel plan`` (``lemon_pl.cli.multilevel``: the parser, the
pilot fits through the CLI's in-process entry point) and the ``multilevel`` experiment
(``lemon_pl.experiments.multilevel``: the pilots as ordinary fit steps, the plan as an analysis
step whose overlays later steps read). The config is composed by the CLI's one composer
(``lemon_pl.cli.lightning.compose``, passed in): :func:`settings` only checks the values the plan
reads. This module imports no CLI and no experiment.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from lemon_pl.core.errors import one_line

METHODS = ("allocator", "mlmc", "equal", "fine_only", "coarse_only")


class PlanError(ValueError):
    """A plan cannot be made (bad config, missing data, too small a budget)."""


# ----------------------------------------------------------------------------- config


#: the largest ``--budget``: seconds, or finest samples with ``--budget-unit fine`` (1e12 s is
#: 30 000 years of solver time; counts are also capped by what the level files hold)
MAX_BUDGET = 1e12
#: the largest ``--pilot`` count and the most pilot counts (every count is one fit per level)
MAX_PILOT = 10 ** 9
MAX_PILOTS = 10
#: the most measured seconds per sample a level file may record (more is a damaged file)
MAX_COST = 1e9
#: the most levels a plan takes (``allocate.optimal_allocation`` tries every subset)
MAX_LEVELS = 12


def _int_list(values: Any, key: str, source: str, minimum: int) -> list[int]:
    if isinstance(values, (str, bytes)) or not isinstance(values, (list, tuple)):
        raise PlanError(f"{source}: data.init_args.{key} must be a list of integers, got {values!r}"[:300])
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer() or v < minimum:
            raise PlanError(f"{source}: data.init_args.{key} must hold integers >= {minimum}, "
                            f"got {list(values)!r}"[:300])
        out.append(int(v))
    return out


#: the data module a plan's config must use
DATA_CLASS = "lemon_pl.multilevel.data.MultilevelDataModule"


def settings(config: dict[str, Any], sources: dict[str, str] | None = None, root: str | None = None,
             first: str = "the config") -> dict[str, Any]:
    """``data.init_args`` of a composed config (``lemon_pl.cli.lightning.compose``: ``defaults``
    applied, the data module's defaults filled in), with the values the plan uses checked, each
    refusal one :class:`PlanError` line naming the file that set the key (``sources``) or the
    data module's default. ``root`` overrides ``data.init_args.root``."""
    sources = dict(sources or {})
    data = config.get("data")
    if not isinstance(data, dict) or data.get("class_path") != DATA_CLASS:
        class_path = data.get("class_path") if isinstance(data, dict) else data
        where = sources.get("data.class_path", sources.get("data", first))
        raise PlanError(f"{where}: data.class_path is {class_path}, not the multi-level data module")
    merged: dict[str, Any] = dict(data.get("init_args") or {})
    where = lambda key: sources.get(f"data.init_args.{key}", "the data module's default")  # noqa: E731
    if root is not None:
        merged["root"] = root
        sources["data.init_args.root"] = "--root"
    if not isinstance(merged.get("root"), str) or not merged["root"]:
        raise PlanError(f"{where('root')}: data.init_args.root must be a folder name, got {merged.get('root')!r}")
    if not isinstance(merged.get("family"), str) or not merged["family"]:
        raise PlanError(f"{where('family')}: data.init_args.family must be a family name, got {merged.get('family')!r}")
    merged["levels"] = _int_list(merged.get("levels"), "levels", where("levels"), 1)
    merged["epochs"] = _int_list(merged.get("epochs"), "epochs", where("epochs"), 0)
    if not 2 <= len(merged["levels"]) <= MAX_LEVELS:
        raise PlanError(f"{where('levels')}: data.init_args.levels {merged['levels']}: a plan needs 2 to {MAX_LEVELS} "
                        "levels")
    if len(set(merged["levels"])) != len(merged["levels"]) or merged["levels"] != sorted(merged["levels"]):
        raise PlanError(f"{where('levels')}: data.init_args.levels {merged['levels']} must be distinct grids, "
                        "coarse to fine")
    if len(merged["epochs"]) != len(merged["levels"]):
        raise PlanError(f"{where('epochs')}: data.init_args.epochs has {len(merged['epochs'])} values for "
                        f"{len(merged['levels'])} levels {merged['levels']}")
    if sum(merged["epochs"]) < 1:
        raise PlanError(f"{where('epochs')}: data.init_args.epochs {merged['epochs']}: the pilot fits need at least "
                        "one epoch")
    try:
        from lemon_pl.multilevel.families import level_view

        level_view(merged["family"])
    except (KeyError, ValueError) as err:
        raise PlanError(f"{where('family')}: data.init_args.family: {one_line(err)}") from None
    return merged


def composed_settings(compose: Callable, configs: Sequence[str], root: str | None = None,
                      extra: Sequence[str] = ()) -> dict[str, Any]:
    """:func:`settings` of ``configs`` (and ``extra`` arguments) composed by ``compose(argv) ->
    (config, sources)`` (``lemon_pl.cli.lightning.compose``); its one-line ``ValueError`` is a
    :class:`PlanError`."""
    argv = ["fit", *[x for c in configs for x in ("--config", str(c))], *extra]
    if root is not None:
        argv += ["--data.init_args.root", str(root)]
    try:
        config, sources = compose(argv)
    except ValueError as err:
        raise PlanError(one_line(err)) from None
    return settings(config, sources, root, first=str(configs[0]) if configs else "the config")


def level_files(d: dict[str, Any], split: str = "train") -> list[Path]:
    return [Path(d["root"]) / f"n{g}" / d["family"] / f"{split}.h5" for g in d["levels"]]


def level_costs(d: dict[str, Any]) -> tuple[list[float], list[int]]:
    """Measured seconds per sample and available samples of every level's training file."""
    from lemon_pl.data.io import open_for_reading

    costs, sizes = [], []
    for path in level_files(d):
        if not path.exists():
            raise PlanError(f"{path} does not exist; generate the levels first (`lemon-pl generate --levels ...`)")
        try:
            f = open_for_reading(path)
        except OSError as err:
            raise PlanError(f"{path} is not a readable level file ({one_line(err)}); regenerate it") from None
        with f:
            cost = float(f.attrs.get("seconds_per_sample", float("nan")))
            size = int(f.attrs["n_samples"]) if f.attrs.get("kind") == "map" else int(np.prod(f["u"].shape[:2]))
        if not (math.isfinite(cost) and 0 < cost <= MAX_COST):
            raise PlanError(f"{path} records no usable measured cost (seconds_per_sample {cost:g}); regenerate it "
                            "with `lemon-pl generate --levels ...`")
        costs.append(cost)
        sizes.append(size)
    return costs, sizes


def level_variances(d: dict[str, Any], n: int = 256) -> list[float]:
    """MLMC's ``V_l``: mean squared size of level ``l``'s labels minus level ``l-1``'s (level 1: its
    labels), on the same inputs, on the finest grid, relative to the mean squared finest label."""
    from lemon_pl.multilevel.data import read_level
    from lemon_pl.multilevel.families import level_view
    from lemon_pl.data.transfer import interpolate

    view = level_view(d["family"])
    how = d.get("interpolation") or view.interpolation
    finest = max(d["levels"])
    labels = []
    for path in level_files(d):
        _, y, _, _, _ = read_level(path, None, False, d.get("output_frame", -1))
        labels.append(interpolate(y[:n], finest, view.grid, how))
    m = min(len(y) for y in labels)
    scale = float(np.mean(labels[-1][:m] ** 2))
    out = [float(np.mean(labels[0][:m] ** 2)) / scale]
    for lo, hi in zip(labels[:-1], labels[1:]):
        out.append(max(float(np.mean((hi[:m] - lo[:m]) ** 2)) / scale, 1e-12))
    return out


# ----------------------------------------------------------------------------- pilots


def epochs_for(n: Sequence[int], total: int) -> list[int]:
    """``total`` epochs shared by the levels with samples in proportion to their sample counts
    (largest remainders; at least one epoch each), so every training sample is visited about
    equally often and a small fine level is not trained on for as long as a big coarse one (which
    overfits its few samples and forgets the coarse level)."""
    used = [l for l, v in enumerate(n) if v > 0]
    out = [0] * len(n)
    if not used:
        return out
    total = max(int(total), len(used))
    weights = np.array([float(n[l]) for l in used])
    share = weights / weights.sum() * (total - len(used))  # one epoch each, the rest in proportion
    base = np.floor(share).astype(int)
    for i in np.argsort(-(share - base))[: total - len(used) - int(base.sum())]:
        base[i] += 1
    for l, e in zip(used, base):
        out[l] = 1 + int(e)
    return out


def pilot_counts(sizes: Sequence[int], available: Sequence[int], levels: Sequence[int]) -> list[list[int]]:
    """The pilot sample counts of every level: ``--pilot`` capped at what the level's file holds;
    refused (one line) for a level where fewer than 3 distinct counts remain."""
    out = []
    for l, grid in enumerate(levels):
        counts = sorted({min(int(s), available[l]) for s in sizes})
        if len(counts) < 3:
            raise PlanError(f"level {l + 1} (n={grid}) has {available[l]} training samples: too few for 3 distinct "
                            f"pilot sizes from --pilot {','.join(map(str, sizes))}")
        out.append(counts)
    return out


def pilot_name(level: int, grid: int, count: int, seed: int) -> str:
    """The run name of level ``level``'s (0-based) pilot on ``count`` samples."""
    return f"level{level + 1}_n{grid}_N{count}_s{seed}"


def chain_counts(counts: Sequence[Sequence[int]]) -> tuple[int, int]:
    """The curriculum pilot's counts: the coarsest level's largest pilot, the finest level's middle one."""
    return counts[0][-1], counts[-1][1]


def chain_n(chain: tuple[int, int], n_levels: int) -> list[int]:
    return [chain[0]] + [0] * (n_levels - 2) + [chain[1]]


def chain_name(chain: tuple[int, int], seed: int) -> str:
    return f"chain_N{chain[0]}_N{chain[1]}_s{seed}"


def pilot_data_args(d: dict[str, Any], n: Sequence[int]) -> dict[str, list[int]]:
    """The data arguments of a pilot fit with ``n`` samples per level: those samples, and the
    config's total epochs shared by the levels that get any (:func:`epochs_for`)."""
    return {"data.init_args.n_samples": [int(x) for x in n],
            "data.init_args.epochs": epochs_for(n, sum(d["epochs"]))}


def run_pilots(configs: Sequence[str], d: dict[str, Any], sizes: Sequence[int], available: Sequence[int],
               pilot_dir: Path, seed: int, extra: Sequence[str] = (), log=print,
               entry: Callable | None = None) -> dict[int, list[tuple[int, float]]]:
    """Single-level fits: level -> [(N, finest-level validation relative L2), ...]."""
    out: dict[int, list[tuple[int, float]]] = {}
    for l, (grid, counts) in enumerate(zip(d["levels"], pilot_counts(sizes, available, d["levels"]))):
        out[l] = []
        for count in counts:
            n = [0] * len(d["levels"])
            n[l] = count
            err = pilot_fit(configs, d, n, pilot_name(l, grid, count, seed), pilot_dir, seed, extra, log, entry)
            out[l].append((count, err))
    return out


def pilot_argv(configs: Sequence[str], d: dict[str, Any], n: Sequence[int], name: str, pilot_dir: Path, seed: int,
               extra: Sequence[str] = ()) -> list[str]:
    """The ``lemon-pl fit`` arguments of one pilot run (``n`` samples per level)."""
    def _value(v: Sequence[int]) -> str:
        return "[" + ",".join(str(int(x)) for x in v) + "]"

    data = pilot_data_args(d, n)
    return ["fit", *[x for c in configs for x in ("--config", c)], "--data.init_args.root", str(d["root"]),
            "--data.init_args.n_samples", _value(data["data.init_args.n_samples"]),
            "--data.init_args.epochs", _value(data["data.init_args.epochs"]),
            "--seed_everything", str(seed), "--data.init_args.seed", str(seed),
            "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(pilot_dir),
            "--trainer.logger.init_args.name", name, "--trainer.logger.init_args.version", "0", *extra]


def pilot_error(summary: Path, run: Path | None = None) -> float:
    """A pilot run's final validation relative L2 on the finest level, from its ``fit_summary.json``."""
    try:
        err = json.loads(Path(summary).read_text())["level_val_rel_l2"]
        return float(err[max(err, key=int)])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        run = run or Path(summary).parent.parent
        raise PlanError(f"{summary} is not a readable pilot summary ({one_line(e)}); delete {run} "
                        "to run that pilot again") from None


def pilot_fit(configs: Sequence[str], d: dict[str, Any], n: Sequence[int], name: str, pilot_dir: Path, seed: int,
              extra: Sequence[str] = (), log=print, entry: Callable | None = None) -> float:
    """One pilot run of the stage with ``n`` samples per level (``epochs_for``), run as ``entry(argv)``
    (the CLI's in-process entry point, ``lemon_pl.cli.main``, passed in; the experiment steps run
    through the same); its final validation relative L2 on the finest level. A finished run in
    ``pilot_dir`` is reused."""
    summary = pilot_dir / name / "version_0" / "fit_summary.json"
    if not summary.exists():
        if entry is None:
            raise PlanError(f"pilot fit {name} has not run and no entry point was given to run it")
        log(f"pilot fit {name}")
        code = entry(pilot_argv(configs, d, n, name, pilot_dir, seed, extra))
        if code != 0 or not summary.exists():
            raise PlanError(f"pilot fit {name} failed (exit {code}); see {pilot_dir / name}")
    return pilot_error(summary, pilot_dir / name)


def calibrate_scale(models, chain: tuple[int, int], measured: float) -> tuple[float, float]:
    """The estimator's ``scale`` from one two-level pilot (coarsest ``N_1``, then finest ``N_L``).

    ``estimate_final_error`` weights a fine-tuning level's sample error by ``w = |b_k - b_l| /
    scale``; the pilot's measured error gives ``w = (E - b_L - a_1 N_1**-alpha_1) / (a_L
    N_L**-alpha_L)`` for the pair (1, L), hence ``scale = |b_1 - b_L| / w``. Returns ``(w, scale)``;
    ``w`` is kept in [1e-3, 1e3] (a measurement at or below the floors means corrections are cheap;
    far above, fine-tuning costs its full sample error or more)."""
    first, last = models[0], models[-1]
    n1, nl = chain
    w = (measured - last.b - first.sample_term(n1)) / max(last.sample_term(nl), 1e-12)
    w = float(np.clip(w, 1e-3, 1e3))
    gap = abs(first.b - last.b)
    return w, (gap / w if gap > 0 else 1.0)


# ----------------------------------------------------------------------------- allocation


def allocations(models, costs, variances, budget: float, available: Sequence[int],
                scale: float = 1.0) -> dict[str, np.ndarray]:
    """Every method's samples per level for ``budget`` seconds, none above what the level files
    hold (``available``): the allocator optimises within those counts, the baselines are capped
    at them."""
    from lemon_pl.multilevel import allocate as al

    c = np.asarray(costs, float)
    if not (math.isfinite(budget) and budget > 0):
        raise PlanError(f"the budget must be a finite number of seconds > 0, got {budget!r}")
    if budget < c.max():
        raise PlanError(f"--budget {budget:g} s is below the cost of one finest sample ({c.max():.3g} s)")
    up = np.minimum(np.asarray(available, dtype=np.int64), al.MAX_SAMPLES)
    plans = {
        "allocator": al.optimal_allocation(models, c, budget, scale=scale, upper=up),
        # MLMC wants one sample of every level; a budget below that lets it leave levels out
        "mlmc": al.mlmc_allocation(c, variances, budget, min_samples=1 if budget >= c.sum() else 0, upper=up),
        "equal": al.equal_split(c, budget, upper=up),
        "fine_only": np.array([0] * (c.size - 1) + [min(int(min(budget / c[-1], al.MAX_SAMPLES)), int(up[-1]))]),
        "coarse_only": np.array([min(int(min(budget / c[0], al.MAX_SAMPLES)), int(up[0]))] + [0] * (c.size - 1)),
    }
    return plans


def _capped(n: np.ndarray, available: Sequence[int], costs: Sequence[float] = (),
            budget: float | None = None) -> tuple[np.ndarray, list[str]]:
    """``n`` within what the files hold, and a note for every level that uses all its samples
    while the budget would have bought more."""
    capped, notes = np.minimum(n, np.asarray(available, dtype=np.int64)), []
    left = None if budget is None or not len(costs) else budget - float(np.dot(capped, costs))
    for l, (v, a) in enumerate(zip(n, available)):
        if v > a or (v == a and left is not None and left >= costs[l]):
            notes.append(f"level {l + 1} uses all {a} samples its file holds; the budget would buy more "
                         "(generate more with --n-samples / --n-operators)")
    return capped, notes


def overlay_text(n: Sequence[int], epochs: Sequence[int], header: list[str]) -> str:
    """A plan's config overlay: ``data.init_args.n_samples`` and ``epochs`` under a comment header."""
    body = "\n".join(f"# {h}" for h in header)
    return body + (f"\ndata:\n  init_args:\n    n_samples: [{', '.join(str(int(v)) for v in n)}]\n"
                   f"    epochs: [{', '.join(str(int(v)) for v in epochs)}]\n")


def check_budgets(budgets: Sequence[float], costs: Sequence[float], unit: str = "s") -> list[float]:
    """The budgets in seconds; a budget that is not finite and positive, above :data:`MAX_BUDGET`
    or below the cost of one finest sample is refused (before any pilot fit)."""
    out = []
    for label in budgets:
        if not (math.isfinite(label) and 0 < label <= MAX_BUDGET):
            raise PlanError(f"--budget must be finite, > 0 and at most {MAX_BUDGET:g}, got {label!r}")
        seconds = float(label) * (costs[-1] if unit == "fine" else 1.0)
        if seconds < max(costs):
            raise PlanError(f"--budget {label:g} ({seconds:.3g} s) is below the cost of one finest sample "
                            f"({max(costs):.3g} s)")
        out.append(seconds)
    return out


def prepare(d: dict[str, Any], budgets: Sequence[float], pilot: Sequence[int], pilot_dir: Path | None,
            unit: str = "s", check: Callable[[list[list[int]]], str | None] | None = None) -> dict[str, Any]:
    """Every check that can fail before the first pilot fit, on the composed settings ``d``
    (:func:`settings`): the level files and their measured costs, the budgets, the pilot counts
    against the files, the pilot folder, and (``check(counts) -> error line or None``: the pilot fit's
    config built but not run, ``lemon_pl.cli.lightning.check_lightning_args``) the fit the pilots
    run. Returns ``d``, ``costs``, ``available``, ``seconds`` (per budget) and ``counts`` (per level)."""
    costs, available = level_costs(d)
    seconds = check_budgets(budgets, costs, unit)
    counts = pilot_counts(pilot, available, d["levels"])
    if pilot_dir is not None:
        check_writable(Path(pilot_dir), "--pilot-dir", folder=True)
    if check is not None:
        problem = check(counts)
        if problem:
            raise PlanError(f"the pilot fits' config would fail: {problem}")
    return {"d": d, "costs": costs, "available": available, "seconds": seconds, "counts": counts}


def lock_pilots(pilot_dir: Path):
    """An exclusive lock on ``pilot_dir`` for one plan (:func:`lemon_pl.core.locking.hold_lock`);
    close the returned file to release it. Another plan holding it is one :class:`PlanError`."""
    from lemon_pl.core.locking import LockHeld, hold_lock

    try:
        return hold_lock(Path(pilot_dir) / ".plan.lock")
    except LockHeld as held:
        raise PlanError(f"another plan is using {pilot_dir} (pid {held.holder}); wait for it or use another "
                        "--pilot-dir") from None


def assemble_plan(prep: dict[str, Any], budgets: Sequence[float], pilots: dict[int, list[tuple[int, float]]],
                  chain: tuple[int, int], chain_err: float, unit: str = "s") -> dict[str, Any]:
    """The plan for every budget (``unit``: ``s`` seconds, or ``fine``: multiples of one finest
    sample's measured cost) from :func:`prepare`'s result and the pilots' measured errors: the
    fitted error models, the calibrated scale, every method's allocation and its estimate."""
    from lemon_pl.multilevel import allocate as al

    d, costs, available = prep["d"], prep["costs"], prep["available"]
    variances = level_variances(d)
    models = [al.fit_level_model([p[0] for p in pilots[l]], [p[1] for p in pilots[l]]) for l in sorted(pilots)]
    n_chain = chain_n(chain, len(models))
    weight, scale = calibrate_scale(models, chain, chain_err)
    total = sum(d["epochs"])
    result: dict[str, Any] = {
        "family": d["family"], "levels": d["levels"], "seconds_per_sample": costs, "available": available,
        "variances": variances, "total_epochs": total,
        "pilots": {str(l + 1): [list(p) for p in pilots[l]] for l in pilots},
        "models": [{"a": m.a, "alpha": m.alpha, "b": m.b} for m in models], "budget_unit": unit,
        "chain_pilot": {"n_samples": n_chain, "val_rel_l2": chain_err, "weight": weight, "scale": scale},
        "budgets": {}}
    for label, budget in zip(budgets, prep["seconds"]):
        entry: dict[str, Any] = {}
        for method, n in allocations(models, costs, variances, budget, available, scale).items():
            n, notes = _capped(np.asarray(n), available, costs, budget)
            entry[method] = {"n_samples": [int(v) for v in n], "epochs": epochs_for(n, total),
                             "spent": float(np.dot(n, costs)),
                             "estimate": float(al.estimate_final_error(models, n, scale)), "notes": notes,
                             "budget_seconds": budget}
        result["budgets"][f"{label:g}"] = entry
    return result


def overlay_names(budgets: Sequence[float], methods: Sequence[str] = METHODS) -> dict[str, str]:
    """Output name -> file name of every overlay ``write_plan`` writes into ``--out-dir``."""
    return {f"{m}_b{b:g}": f"{m}_b{b:g}.yaml" for b in budgets for m in methods}


def print_plan(plan: dict[str, Any], out=None) -> None:
    out = out or sys.stdout
    from lemon_pl.multilevel import allocate as al
    from lemon_pl.multilevel.allocate import LevelModel

    models = [LevelModel(**m) for m in plan["models"]]
    print(f"{plan['family']}: levels {plan['levels']}, measured s/sample "
          f"{', '.join(f'{c:.3g}' for c in plan['seconds_per_sample'])}", file=out)
    for l, m in enumerate(models):
        pts = ", ".join(f"N={n}: {e:.3g}" for n, e in plan["pilots"][str(l + 1)])
        print(f"  level {l + 1}: e(N) = {m.b:.3g} + {m.a:.3g} N^-{m.alpha:.2f}   (pilots {pts})", file=out)
    ch = plan.get("chain_pilot")
    scale = 1.0
    if ch:
        scale = ch["scale"]
        print(f"  curriculum pilot N={ch['n_samples']}: {ch['val_rel_l2']:.3g} -> fine-tuning weight "
              f"w = {ch['weight']:.3g} (estimator scale {scale:.3g})", file=out)
    for budget, entry in plan["budgets"].items():
        a = entry["allocator"]
        seconds = a["budget_seconds"]
        unit = f" ({budget} finest samples)" if plan.get("budget_unit") == "fine" else ""
        print(f"\nbudget {seconds:.4g} s{unit}: the allocator's plan", file=out)
        est = al.curriculum_errors(models, a["n_samples"], scale)
        for line in al.plan_table(plan["levels"], plan["seconds_per_sample"], a["n_samples"], est, seconds):
            print("  " + line, file=out)
        print("  estimated final error per method: " + ", ".join(
            f"{k} {v['estimate']:.3g} (N={v['n_samples']})" for k, v in entry.items()), file=out)
        for k, v in entry.items():
            for note in v["notes"]:
                print(f"  note ({k}): {note}", file=out)


def write_plan(plan: dict[str, Any], out_file: Path | None, out_dir: Path | None) -> list[Path]:
    """Write the overlays (and ``plan.json``) all or nothing
    (:func:`lemon_pl.core.checkpointing.atomic_write_many`: every file complete on disk before any
    replaces its previous version, ``plan.json`` last); a failed write (disk full) is one
    ``CheckpointWriteError`` line and leaves every previous file as it was."""
    from lemon_pl.core.checkpointing import atomic_write_many

    files: dict[Path, str] = {}
    for budget, entry in plan["budgets"].items():
        for method, v in entry.items():
            header = [f"lemon-pl multilevel plan: {method} for a budget of {v['budget_seconds']:.4g} s of measured "
                      "generation time",
                      f"{plan['family']} levels {plan['levels']}; spends {v['spent']:.4g} s; "
                      f"estimated final error {v['estimate']:.3g}"]
            if out_dir is not None:
                files[out_dir / f"{method}_b{budget}.yaml"] = overlay_text(v["n_samples"], v["epochs"], header)
            if out_file is not None and method == "allocator" and len(plan["budgets"]) == 1:
                files[out_file] = overlay_text(v["n_samples"], v["epochs"], header)
    if out_dir is not None:
        files[out_dir / "plan.json"] = json.dumps(plan, indent=2)
    return atomic_write_many(files) if files else []


def check_writable(path: Path, flag: str, folder: bool) -> None:
    """Refuse (one :class:`PlanError` line) an output that cannot be written: ``folder``: a
    file where the folder should be; else a folder where the file should be; and a nearest
    existing parent that is a file or not writable (permissions, read-only file system).
    Writes nothing (an empty probe file is created and removed)."""
    import os

    from lemon_pl.core.resources import cannot_write_in

    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise PlanError(f"{flag} {path} is a file, not a folder")
    if not folder and path.is_dir():
        raise PlanError(f"{flag} {path} is a folder; give the overlay's file name (or use --out-dir)")
    if not folder and path.exists() and not path.is_file():
        raise PlanError(f"{flag} {path} is not a regular file")
    target = path if folder and path.exists() else path.parent
    anc = target
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        raise PlanError(f"{flag} {path}: {anc} is a file, not a folder")
    why = cannot_write_in(anc)
    if why is not None:
        raise PlanError(f"{flag} {path}: cannot write into {anc} ({why})")
    if not folder and path.exists() and not os.access(path, os.W_OK):
        raise PlanError(f"{flag} {path}: the file is not writable")


# ----------------------------------------------------------------------------- values of the options


def parse_budgets(text: str) -> list[float]:
    """``--budget``'s comma-separated numbers, each finite, > 0, at most :data:`MAX_BUDGET`, none twice."""
    parts = [b.strip() for b in str(text).split(",") if b.strip()]
    try:
        values = [float(b) for b in parts]
    except ValueError:
        raise PlanError(f"--budget takes comma-separated numbers, got {text!r}") from None
    if not values:
        raise PlanError(f"--budget takes comma-separated numbers, got {text!r}")
    for b in values:
        if not math.isfinite(b) or b <= 0:
            raise PlanError(f"--budget must be positive and finite, got {text!r}")
        if b > MAX_BUDGET:
            raise PlanError(f"--budget {b:g} is above the most a plan takes ({MAX_BUDGET:g}, in seconds or, with "
                            "--budget-unit fine, finest samples)")
    labels = [f"{b:g}" for b in values]
    twice = sorted({x for x in labels if labels.count(x) > 1})
    if twice:
        raise PlanError(f"--budget lists {twice[0]} twice")
    return values


def parse_pilots(text: str) -> list[int]:
    """``--pilot``'s comma-separated sample counts: integers in [1, :data:`MAX_PILOT`], at least 3
    and at most :data:`MAX_PILOTS` of them, none twice."""
    parts = [v.strip() for v in str(text).split(",") if v.strip()]
    try:
        values = [int(v) for v in parts]
    except ValueError:
        raise PlanError(f"--pilot takes comma-separated whole numbers of samples, got {text!r}") from None
    bad = [v for v in values if not 1 <= v <= MAX_PILOT]
    if bad:
        raise PlanError(f"--pilot counts must be between 1 and {MAX_PILOT}, got {bad[0]} in {text!r}")
    if len(set(values)) != len(values):
        raise PlanError(f"--pilot lists {sorted(v for v in values if values.count(v) > 1)[0]} twice")
    if not 3 <= len(values) <= MAX_PILOTS:
        raise PlanError(f"--pilot needs 3 to {MAX_PILOTS} sample counts (the error model has 3 parameters; every "
                        f"count is one fit per level), got {len(values)}")
    return values


__all__ = ["DATA_CLASS", "MAX_BUDGET", "MAX_COST", "MAX_LEVELS", "MAX_PILOT", "MAX_PILOTS", "METHODS", "PlanError",
           "allocations", "assemble_plan", "chain_counts", "chain_n", "chain_name", "check_budgets",
           "check_writable", "composed_settings", "epochs_for", "level_costs", "level_variances", "lock_pilots",
           "overlay_names", "overlay_text", "parse_budgets", "parse_pilots", "pilot_argv", "pilot_counts",
           "pilot_data_args", "pilot_error", "pilot_fit", "pilot_name", "prepare", "print_plan", "run_pilots",
           "settings", "write_plan"]
