"""``lemon-pl multilevel plan``: samples per level for a data-generation budget, as a config overlay.

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
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lemon_pl.cli.args import OneLineArgumentParser

METHODS = ("allocator", "mlmc", "equal", "fine_only", "coarse_only")


class PlanError(ValueError):
    """A plan cannot be made (bad config, missing data, too small a budget)."""


# ----------------------------------------------------------------------------- config


def _load_yaml(path: Path) -> dict:
    import yaml

    try:
        return yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise PlanError(f"{path}: no such config file") from None
    except yaml.YAMLError as err:
        raise PlanError(f"{path}: not valid YAML ({' '.join(str(err).split())[:160]})") from None


def data_settings(configs: Sequence[str], root: str | None = None) -> dict[str, Any]:
    """``data.init_args`` of the composed configs (later files win), with the data module's defaults."""
    import inspect

    from lemon_pl.multilevel.data import MultilevelDataModule

    merged: dict[str, Any] = {k: p.default for k, p in inspect.signature(MultilevelDataModule).parameters.items()}
    class_path = None
    for c in configs:
        data = _load_yaml(Path(c)).get("data") or {}
        class_path = data.get("class_path", class_path)
        merged.update(data.get("init_args") or {})
    if class_path not in (None, "lemon_pl.multilevel.data.MultilevelDataModule"):
        raise PlanError(f"{configs[0]}: data.class_path is {class_path}, not the multi-level data module")
    if root is not None:
        merged["root"] = root
    merged["levels"] = [int(v) for v in merged["levels"]]
    merged["epochs"] = [int(v) for v in merged["epochs"]]
    return merged


def level_files(d: dict[str, Any], split: str = "train") -> list[Path]:
    return [Path(d["root"]) / f"n{g}" / d["family"] / f"{split}.h5" for g in d["levels"]]


def level_costs(d: dict[str, Any]) -> tuple[list[float], list[int]]:
    """Measured seconds per sample and available samples of every level's training file."""
    import h5py

    costs, sizes = [], []
    for path in level_files(d):
        if not path.exists():
            raise PlanError(f"{path} does not exist; generate the levels first (`lemon-pl generate --levels ...`)")
        with h5py.File(path, "r") as f:
            cost = float(f.attrs.get("seconds_per_sample", float("nan")))
            size = int(f.attrs["n_samples"]) if f.attrs.get("kind") == "map" else int(np.prod(f["u"].shape[:2]))
        if not (math.isfinite(cost) and cost > 0):
            raise PlanError(f"{path} records no measured cost (seconds_per_sample); regenerate it with "
                            "`lemon-pl generate --levels ...`")
        costs.append(cost)
        sizes.append(size)
    return costs, sizes


def level_variances(d: dict[str, Any], n: int = 256) -> list[float]:
    """MLMC's ``V_l``: mean squared size of level ``l``'s labels minus level ``l-1``'s (level 1: its
    labels), on the same inputs, on the finest grid, relative to the mean squared finest label."""
    from lemon_pl.multilevel.data import read_level
    from lemon_pl.multilevel.families import level_view
    from lemon_pl.multilevel.transfer import interpolate

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


def run_pilots(configs: Sequence[str], d: dict[str, Any], sizes: Sequence[int], available: Sequence[int],
               pilot_dir: Path, seed: int, extra: Sequence[str] = (), log=print) -> dict[int, list[tuple[int, float]]]:
    """Single-level fits: level -> [(N, finest-level validation relative L2), ...]."""
    out: dict[int, list[tuple[int, float]]] = {}
    for l, grid in enumerate(d["levels"]):
        counts = sorted({min(int(s), available[l]) for s in sizes})
        if len(counts) < 3:
            raise PlanError(f"level {l + 1} (n={grid}) has {available[l]} training samples: too few for 3 distinct "
                            f"pilot sizes from --pilot {','.join(map(str, sizes))}")
        out[l] = []
        for count in counts:
            n = [0] * len(d["levels"])
            n[l] = count
            err = pilot_fit(configs, d, n, f"level{l + 1}_n{grid}_N{count}_s{seed}", pilot_dir, seed, extra, log)
            out[l].append((count, err))
    return out


def pilot_fit(configs: Sequence[str], d: dict[str, Any], n: Sequence[int], name: str, pilot_dir: Path, seed: int,
              extra: Sequence[str] = (), log=print) -> float:
    """One pilot run of the stage with ``n`` samples per level (``epochs_for``); its final
    validation relative L2 on the finest level. A finished run in ``pilot_dir`` is reused."""
    from lemon_pl.cli import main as lemon_pl_main
    from lemon_pl.experiments.common import _value

    summary = pilot_dir / name / "version_0" / "fit_summary.json"
    if not summary.exists():
        log(f"pilot fit {name}")
        argv = ["fit", *[x for c in configs for x in ("--config", c)], "--data.init_args.root", str(d["root"]),
                "--data.init_args.n_samples", _value(list(n)),
                "--data.init_args.epochs", _value(epochs_for(n, sum(d["epochs"]))),
                "--seed_everything", str(seed), "--data.init_args.seed", str(seed),
                "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(pilot_dir),
                "--trainer.logger.init_args.name", name, "--trainer.logger.init_args.version", "0", *extra]
        code = lemon_pl_main(argv)
        if code != 0 or not summary.exists():
            raise PlanError(f"pilot fit {name} failed (exit {code}); see {pilot_dir / name}")
    err = json.loads(summary.read_text())["level_val_rel_l2"]
    return float(err[max(err, key=int)])


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
    from lemon_pl.multilevel import allocate as al

    c = np.asarray(costs, float)
    if budget < c.max():
        raise PlanError(f"--budget {budget:g} s is below the cost of one finest sample ({c.max():.3g} s)")
    plans = {
        "allocator": al.optimal_allocation(models, c, budget, scale=scale),
        "mlmc": al.mlmc_allocation(c, variances, budget),
        "equal": al.equal_split(c, budget),
        "fine_only": np.array([0] * (c.size - 1) + [int(budget // c[-1])]),
        "coarse_only": np.array([int(budget // c[0])] + [0] * (c.size - 1)),
    }
    return plans


def _capped(n: np.ndarray, available: Sequence[int]) -> tuple[np.ndarray, list[str]]:
    capped, notes = n.copy(), []
    for l, (v, a) in enumerate(zip(n, available)):
        if v > a:
            capped[l] = a
            notes.append(f"level {l + 1} capped at the {a} samples its file holds (wanted {int(v)}); "
                         "generate more with --n-samples / --n-operators")
    return capped, notes


def write_overlay(path: Path, n: Sequence[int], epochs: Sequence[int], header: list[str]) -> None:
    from lemon_pl.checkpointing import atomic_write

    body = "\n".join(f"# {h}" for h in header)
    body += (f"\ndata:\n  init_args:\n    n_samples: [{', '.join(str(int(v)) for v in n)}]\n"
             f"    epochs: [{', '.join(str(int(v)) for v in epochs)}]\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, body)


def make_plan(configs: Sequence[str], budgets: Sequence[float], pilot: Sequence[int], pilot_dir: Path,
              seed: int = 0, root: str | None = None, extra: Sequence[str] = (), log=print,
              unit: str = "s") -> dict[str, Any]:
    """The plan for every budget (``unit``: ``s`` seconds, or ``fine``: multiples of one finest
    sample's measured cost, so a config states budgets independent of the machine)."""
    from lemon_pl.multilevel import allocate as al

    d = data_settings(configs, root)
    costs, available = level_costs(d)
    for label in budgets:  # before any pilot fit: a budget that buys no finest sample is an input error
        seconds = float(label) * (costs[-1] if unit == "fine" else 1.0)
        if seconds < max(costs):
            raise PlanError(f"--budget {label:g} ({seconds:.3g} s) is below the cost of one finest sample "
                            f"({max(costs):.3g} s)")
    variances = level_variances(d)
    pilots = run_pilots(configs, d, pilot, available, pilot_dir, seed, extra, log)
    models = [al.fit_level_model([p[0] for p in pilots[l]], [p[1] for p in pilots[l]]) for l in sorted(pilots)]
    # one curriculum pilot (coarsest level's largest pilot count, then the finest level's middle one)
    # calibrates how much a fine-tuning level's samples cost in error
    chain = (pilots[0][-1][0], pilots[len(models) - 1][1][0])
    n_chain = [chain[0]] + [0] * (len(models) - 2) + [chain[1]]
    chain_err = pilot_fit(configs, d, n_chain, f"chain_N{chain[0]}_N{chain[1]}_s{seed}", pilot_dir, seed, extra, log)
    weight, scale = calibrate_scale(models, chain, chain_err)
    total = sum(d["epochs"])
    result: dict[str, Any] = {
        "family": d["family"], "levels": d["levels"], "seconds_per_sample": costs, "available": available,
        "variances": variances, "total_epochs": total,
        "pilots": {str(l + 1): pilots[l] for l in pilots},
        "models": [{"a": m.a, "alpha": m.alpha, "b": m.b} for m in models], "budget_unit": unit,
        "chain_pilot": {"n_samples": n_chain, "val_rel_l2": chain_err, "weight": weight, "scale": scale},
        "budgets": {}}
    for label in budgets:
        budget = float(label) * (costs[-1] if unit == "fine" else 1.0)
        entry: dict[str, Any] = {}
        for method, n in allocations(models, costs, variances, budget, available, scale).items():
            n, notes = _capped(np.asarray(n), available)
            entry[method] = {"n_samples": [int(v) for v in n], "epochs": epochs_for(n, total),
                             "spent": float(np.dot(n, costs)),
                             "estimate": float(al.estimate_final_error(models, n, scale)), "notes": notes,
                             "budget_seconds": budget}
        result["budgets"][f"{label:g}"] = entry
    return result


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
    from lemon_pl.checkpointing import atomic_write

    written = []
    for budget, entry in plan["budgets"].items():
        for method, v in entry.items():
            header = [f"lemon-pl multilevel plan: {method} for a budget of {v['budget_seconds']:.4g} s of measured "
                      "generation time",
                      f"{plan['family']} levels {plan['levels']}; spends {v['spent']:.4g} s; "
                      f"estimated final error {v['estimate']:.3g}"]
            if out_dir is not None:
                path = out_dir / f"{method}_b{budget}.yaml"
                write_overlay(path, v["n_samples"], v["epochs"], header)
                written.append(path)
            if out_file is not None and method == "allocator" and len(plan["budgets"]) == 1:
                write_overlay(out_file, v["n_samples"], v["epochs"], header)
                written.append(out_file)
    if out_dir is not None:
        atomic_write(out_dir / "plan.json", json.dumps(plan, indent=2))
        written.append(out_dir / "plan.json")
    return written


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog="lemon-pl multilevel", description="Multi-level fine-tuning tools.",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)
    q = sub.add_parser("plan", help="samples per level for a generation budget", description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("--config", action="append", required=True, metavar="YAML",
                   help="the multi-level stage config (and overlays, repeatable)")
    q.add_argument("--budget", required=True, help="generation budget(s) in measured seconds, comma-separated")
    q.add_argument("--budget-unit", default="s", choices=("s", "fine"),
                   help="s: seconds; fine: multiples of the measured cost of one finest-level sample")
    q.add_argument("--pilot", default="64,256,1024", help="sample counts of the pilot fits of every level")
    q.add_argument("--pilot-dir", default=None, help="pilot runs (default: runs/multilevel_plan/<family>)")
    q.add_argument("--root", default=None, help="override data.init_args.root")
    q.add_argument("--seed", type=int, default=0, help="seed of the pilot fits")
    q.add_argument("--out", default=None, help="write the allocator's overlay here (one budget)")
    q.add_argument("--out-dir", default=None, help="write every method's overlay per budget and plan.json here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    err = lambda msg: print(f"lemon-pl multilevel: error: {msg}", file=sys.stderr)  # noqa: E731
    try:
        budgets = [float(b) for b in args.budget.split(",") if b.strip()]
        pilot = [int(v) for v in args.pilot.split(",") if v.strip()]
    except ValueError:
        err(f"--budget and --pilot take comma-separated numbers, got {args.budget!r} and {args.pilot!r}")
        return 2
    if not budgets or any(b <= 0 for b in budgets):
        err(f"--budget must be positive, got {args.budget!r}")
        return 2
    if args.out and len(budgets) != 1:
        err("--out writes one overlay: give one --budget (or use --out-dir)")
        return 2
    try:
        d = data_settings(args.config, args.root)
        pilot_dir = Path(args.pilot_dir or Path("runs") / "multilevel_plan" / d["family"])
        plan = make_plan(args.config, budgets, pilot, pilot_dir, args.seed, args.root,
                         log=lambda m: print(m, file=sys.stderr, flush=True), unit=args.budget_unit)
    except (PlanError, ValueError, KeyError, OSError) as e:
        from lemon_pl.data.generate import _one_line

        err(_one_line(e))
        return 2
    print_plan(plan)
    paths = write_plan(plan, Path(args.out) if args.out else None, Path(args.out_dir) if args.out_dir else None)
    if paths:
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0


__all__ = ["METHODS", "PlanError", "data_settings", "level_costs", "level_variances", "epochs_for",
           "run_pilots", "allocations", "make_plan", "print_plan", "write_plan", "main"]
