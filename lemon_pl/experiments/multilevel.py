"""Multi-level fine-tuning against single-level training at equal data-generation budgets.

    lemon-pl experiment multilevel --scale cpu
        -> results/multilevel/cpu/{table.md,results.csv,error_vs_budget.png,allocations.md}

Per problem (``problems`` in ``configs/experiments/multilevel.yaml``: the Schrödinger ground state,
the rough elliptic map, inviscid Burgers from the data engine):

1. generate every level's training samples (``--levels``; measured seconds per sample recorded in
   the files) and the validation/test splits;
2. the budget plan of ``lemon-pl multilevel plan`` as ordinary steps (the same pieces,
   ``lemon_pl.multilevel.plan``): an analysis step ``<problem>_pilots`` checks the config, level
   files and budgets and writes one overlay per pilot fit; the pilot fits ``<problem>_pilot_L<l>_N<n>``
   (every level alone on every ``pilot`` count) and ``<problem>_pilot_chain`` (the curriculum pilot)
   are ordinary fit steps; the analysis step ``<problem>_plan`` reads their ``{summary:ID}``
   outputs and writes, for every budget (in finest samples' measured cost, ``budgets``), one overlay
   per method: ``fine_only``, ``coarse_only``, ``equal`` (equal budget split over the levels),
   ``mlmc`` (``N_l ∝ sqrt(V_l / c_l)``) and ``allocator`` (the estimated-error optimum), and
   ``plan.json``;
3. for every budget, method (``methods``) and seed: ``fit`` with the plan's overlay
   ``{overlay:<problem>_plan/<method>_b<budget>}`` (the level curriculum; the same total
   optimiser steps for every method) and ``test`` on the finest level's test split.

The report gives test relative L2 (mean ± std over seeds) per problem, budget and method, the
ratio fine-only / allocator, the allocations with the plan's estimated error beside the measured
one, and the error-vs-budget plot (budget in measured generation seconds).

Settings: ``seeds``, ``overlays``, ``budgets``, ``methods``, ``pilot``, ``preset``, ``data_root``,
``generate_workers``, ``problems``: ``{name: {config, family, levels, train: [per-level counts],
count: n_samples | n_operators, generate: [extra generate arguments]}}`` and ``variants``: labelled
extra rows ``{label: {overlays: [...], args: {key: value}, problems: [...], budgets: [...], methods:
[...]}}``, each fit and tested like the main rows with its overlays and arguments added (e.g. the
FNO on native grids against interpolated labels); they appear as ``<method> [<label>]``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lemon_pl.experiments.common import Builder, require
from lemon_pl.experiments.runner import EXP_DIR, Context, Step

if TYPE_CHECKING:
    from lemon_pl.experiments.report import Report

NAME = "multilevel"
ORDER = 6
METRICS = ("rel_l2",)
TABLE_HEAD = ("Per problem, budget and method", "Relative L2 on the finest level's test split, mean ± std over "
              "seeds (the family column names the problem's family).", ("relative L2",))
METHOD_LABEL = {"fine_only": "fine only", "coarse_only": "coarse only", "equal": "multi-level, equal split",
                "mlmc": "multi-level, MLMC rule", "allocator": "multi-level, allocator"}


def _csv(values) -> str:
    return ",".join(str(v) for v in values)


#: the seed of the pilot fits (``lemon-pl multilevel plan``'s default ``--seed``)
PILOT_SEED = 0


def steps(sc: dict) -> list[Step]:
    require(sc, "problems", "budgets", "methods", "seeds", "pilot")
    b = Builder(sc)
    out: list[Step] = []
    budgets = [float(v) for v in sc["budgets"]]
    pilot = sorted(int(v) for v in sc["pilot"])
    for name, p in sc["problems"].items():
        levels = [int(g) for g in p["levels"]]
        count_flag = "--n-operators" if p.get("count", "n_samples") == "n_operators" else "--n-samples"
        gen = ["--levels", _csv(levels), *[str(a) for a in p.get("generate", [])]]
        out.append(b.generate(f"{name}_generate_train", [p["family"]], *gen, "--splits", "train", count_flag,
                              _csv(p["train"])))
        out.append(b.generate(f"{name}_generate_eval", [p["family"]], *gen, "--splits", "val,test"))
        plan_id = _plan_steps(b, sc, name, p, levels, budgets, pilot, out)
        rows = [("", {}, budgets, sc["methods"])]
        for label, v in (sc.get("variants") or {}).items():
            if name in v.get("problems", [name]):
                rows.append((label, v, [float(x) for x in v.get("budgets", budgets)], v.get("methods", sc["methods"])))
        for label, v, row_budgets, methods in rows:
            for budget in row_budgets:
                for method in methods:
                    out += _fit_and_test(b, sc, name, p, plan_id, budget, method, label, v)
    return out


def _plan_steps(b: Builder, sc: dict, name: str, p: dict, levels: list[int], budgets: list[float],
                pilot: list[int], out: list[Step]) -> str:
    """The plan of one problem as ordinary steps: an analysis that checks the config, the level files
    and the budgets and writes one overlay per pilot fit; the pilot fits (every level alone on every
    ``pilot`` count, then the curriculum pilot); the plan analysis, whose overlays
    (``{overlay:<name>_plan/<method>_b<budget>}``) the fits read. Returns the plan step's id."""
    from lemon_pl.multilevel import plan as pl

    configs = [b.config(p["config"]), *(b.config(o) for o in (sc.get("overlays") or []))]
    common = {"configs": configs, "root": b.root, "levels": levels, "pilot": pilot, "budgets": budgets, "unit": "fine"}
    prep_id = f"{name}_pilots"
    counts = [pilot] * len(levels)
    chain = pl.chain_counts(counts)
    runs = {f"L{l + 1}_N{n}": [n if j == l else 0 for j in range(len(levels))]
            for l in range(len(levels)) for n in pilot}
    runs["chain"] = pl.chain_n(chain, len(levels))
    out.append(Step(prep_id, ["analysis", "multilevel-pilots"], needs=[f"{name}_generate_train", f"{name}_generate_eval"],
                    analysis=write_pilot_overlays,
                    params={**common, "runs": runs, "out_dir": f"{EXP_DIR}/pilots/{name}"},
                    outputs={f"overlay/{k}": f"{EXP_DIR}/pilots/{name}/{k}.yaml" for k in runs}))
    summaries: dict[str, str] = {}
    for key in runs:
        sid = f"{name}_pilot_{key}"
        out.append(b.stage("fit", p["config"], "", {"data.init_args.seed": PILOT_SEED,
                                                    "trainer.enable_progress_bar": False},
                           seed=PILOT_SEED, step_id=sid, overlays=[f"{{overlay:{prep_id}/{key}}}"],
                           data={"data.init_args.root": b.root}, outputs={"summary": "{run_dir}/fit_summary.json"}))
        summaries[key] = f"{{summary:{sid}}}"
    plan_id = f"{name}_plan"
    pilots = {str(l + 1): [[n, summaries[f"L{l + 1}_N{n}"]] for n in pilot] for l in range(len(levels))}
    plan_dir = f"{EXP_DIR}/plans/{name}"
    outputs = {f"overlay/{k}": f"{plan_dir}/{f}" for k, f in pl.overlay_names(budgets).items()}
    out.append(Step(plan_id, ["analysis", "multilevel-plan"], analysis=plan_analysis,
                    params={**common, "pilots": pilots, "chain": {"counts": list(chain), "summary": summaries["chain"]},
                            "out_dir": plan_dir},
                    outputs={**outputs, "plan": f"{plan_dir}/plan.json"}))
    return plan_id


def _prepare(ctx: Context, params: dict) -> dict:
    """The composed settings (the CLI's composer, passed to the runner) and every check of the plan."""
    from lemon_pl.multilevel import plan as pl

    d = pl.composed_settings(ctx.tool("compose"), [*params["configs"], *ctx.overlays], params["root"])
    if d["levels"] != list(params["levels"]):
        raise pl.PlanError(f"{params['configs'][0]}: data.init_args.levels {d['levels']} are not the levels the "
                           f"experiment generates {params['levels']}")
    prep = pl.prepare(d, params["budgets"], params["pilot"], None, params["unit"])
    if prep["counts"] != [list(params["pilot"])] * len(d["levels"]):
        short = next(l for l, c in enumerate(prep["counts"]) if c != list(params["pilot"]))
        raise pl.PlanError(f"level {short + 1} holds {prep['available'][short]} training samples, fewer than the "
                           f"pilot counts {params['pilot']}; generate more or lower 'pilot'")
    return prep


def write_pilot_overlays(ctx: Context, params: dict) -> None:
    """Analysis step: everything the plan will need is checked (config, level files, budgets, pilot
    counts), then one overlay per pilot fit (its samples per level, the config's total epochs shared
    by them: ``plan.pilot_data_args``) is written."""
    from lemon_pl.core.checkpointing import atomic_write_many
    from lemon_pl.multilevel import plan as pl

    prep = _prepare(ctx, params)
    files = {}
    for key, n in params["runs"].items():
        data = pl.pilot_data_args(prep["d"], n)
        files[Path(params["out_dir"]) / f"{key}.yaml"] = pl.overlay_text(
            data["data.init_args.n_samples"], data["data.init_args.epochs"], [f"pilot fit {key} of the plan"])
    atomic_write_many(files)


def plan_analysis(ctx: Context, params: dict) -> None:
    """Analysis step: the plan from the pilot fits' summaries (``{summary:ID}`` outputs), printed and
    written (every method's overlay per budget and ``plan.json``) into ``out_dir``."""
    import io

    from lemon_pl.multilevel import plan as pl

    prep = _prepare(ctx, params)
    pilots = {int(l) - 1: [(int(n), pl.pilot_error(Path(path))) for n, path in runs]
              for l, runs in params["pilots"].items()}
    chain = tuple(int(c) for c in params["chain"]["counts"])
    plan = pl.assemble_plan(prep, params["budgets"], pilots, chain, pl.pilot_error(Path(params["chain"]["summary"])),
                            params["unit"])
    text = io.StringIO()
    pl.print_plan(plan, text)
    for line in text.getvalue().splitlines():
        ctx.log(line)
    pl.write_plan(plan, None, Path(params["out_dir"]))


def _fit_and_test(b: Builder, sc: dict, name: str, p: dict, plan_id: str, budget: float,
                  method: str, label: str, variant: dict) -> list[Step]:
    """Per seed: the fit of the level curriculum with the plan's overlay for ``method`` at ``budget``
    (after a variant's overlays: the plan wins), and its test on the finest level's test split."""
    out = []
    tag = f"{method} [{label}]" if label else method
    overlays = [*(variant.get("overlays") or []), f"{{overlay:{plan_id}/{method}_b{budget:g}}}"]
    data = {"data.init_args.root": b.root}  # the multi-level data module has no preset
    for seed in sc["seeds"]:
        fid = f"{name}_{method}_b{budget:g}" + (f"_{label}" if label else "") + f"_s{seed}"
        args = {"data.init_args.seed": seed, "trainer.enable_progress_bar": False, **(variant.get("args") or {})}
        fit = b.stage("fit", p["config"], "fit", args, seed=seed, step_id=fid, overlays=overlays, data=data)
        tags = {"condition": f"{name} B={budget:g} {tag}", "problem": name, "method": tag, "budget": budget,
                "seed": seed, "fit": fid, "family": p["family"]}
        test = b.stage("test", p["config"], "test", {**args, "ckpt_path": f"{{ckpt:{fid}}}"}, seed=seed,
                       step_id=f"{fid}_test", tags=tags, overlays=overlays, data=data)
        out += [fit, test]
    return out


# ----------------------------------------------------------------------------- report


def _plans(rep: "Report") -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((rep.exp_dir / "plans").glob("*/plan.json")):
        out[path.parent.name] = json.loads(path.read_text())
    return out


def _row(rep: "Report", problem: str, budget: float, method: str) -> dict[str, Any] | None:
    cond = f"{problem} B={budget:g} {method}"
    return next((r for r in rep.rows if r["condition"] == cond and r["family"] != "overall"), None)


def report(rep: "Report") -> None:
    """Summary table (error per problem x budget x method), the allocations beside the estimates,
    the target check and ``error_vs_budget.png``."""
    from lemon_pl.experiments.report import fmt

    plans = _plans(rep)
    problems = list(dict.fromkeys(r["tags"]["problem"] for r in rep.results))
    all_methods = list(dict.fromkeys(r["tags"]["method"] for r in rep.results))
    methods = [m for m in all_methods if "[" not in m]
    variants = [m for m in all_methods if "[" in m]
    budgets = sorted({float(r["tags"]["budget"]) for r in rep.results})
    lines = ["## Test relative L2 at equal generation budget", "",
             "Budget: measured solver seconds of the training samples used (`B` in finest-sample units; the "
             "seconds per budget are in the allocation table). Mean ± std over seeds.", "",
             "| problem | B (finest samples) | " + " | ".join(METHOD_LABEL.get(m, m) for m in methods)
             + " | fine-only / allocator |", "|---|---|" + "---|" * (len(methods) + 1)]
    verdicts = []
    for p in problems:
        for bud in budgets:
            cells, vals = [], {}
            for m in methods:
                row = _row(rep, p, bud, m)
                cells.append(fmt(row["rel_l2_mean"], row["rel_l2_std"]) if row else "n/a")
                if row:
                    vals[m] = (row["rel_l2_mean"], row["rel_l2_std"])
            ratio = (vals["fine_only"][0] / vals["allocator"][0]) if {"fine_only", "allocator"} <= set(vals) else math.nan
            lines.append(f"| {p} | {bud:g} | " + " | ".join(cells) + f" | {ratio:.2f}× |")
            if {"fine_only", "coarse_only", "allocator"} <= set(vals):
                best = min(("fine_only", "coarse_only"), key=lambda k: vals[k][0])
                worse = vals["allocator"][0] - vals[best][0]
                spread = max(vals["allocator"][1], vals[best][1])
                verdicts.append((p, bud, ratio, best, worse <= spread, worse))
    lines.append("")
    if verdicts:
        hit = [v for v in verdicts if v[2] >= 2.0]
        lines.append("**Target** (allocator ≥ 2× lower than fine-only on at least one problem): "
                     + ("met: " + ", ".join(f"{p} at B={b:g} ({r:.2f}×)" for p, b, r, *_ in hit) if hit
                        else "not met (best ratio " + f"{max(v[2] for v in verdicts):.2f}×)") + ".")
        bad = [v for v in verdicts if not v[4]]
        lines.append("**Never worse than the better single-level baseline beyond the seed spread**: "
                     + ("holds in every cell." if not bad else "fails at " + ", ".join(
                         f"{p} B={b:g} (allocator worse than {best} by {w:.3g})" for p, b, _, best, _, w in bad)) + "")
        lines.append("")
    if variants:
        lines += ["## Labelled variants", "", "| problem | B | row | relative L2 | same method, main row |", "|---|---|---|---|---|"]
        for p in problems:
            for bud in budgets:
                for m in variants:
                    row = _row(rep, p, bud, m)
                    base = _row(rep, p, bud, m.split(" [")[0])
                    if row:
                        lines.append(f"| {p} | {bud:g} | {m} | {fmt(row['rel_l2_mean'], row['rel_l2_std'])} | "
                                     + (fmt(base["rel_l2_mean"], base["rel_l2_std"]) if base else "n/a") + " |")
        lines.append("")
    lines += _allocation_lines(rep, plans, problems, budgets, methods)
    rep.summary = lines
    _plot(rep, plans, problems, methods, budgets)
    rep.examples = {"keep": lambda r: False}


def _allocation_lines(rep, plans, problems, budgets, methods) -> list[str]:
    from lemon_pl.experiments.report import fmt

    lines = ["## Allocations, and the plan's estimate beside the measurement", ""]
    for p in problems:
        plan = plans.get(p)
        if not plan:
            continue
        costs = ", ".join(f"{1e3 * c:.3g}" for c in plan["seconds_per_sample"])
        models = "; ".join(f"L{l + 1}: {m['b']:.3g} + {m['a']:.3g} N^-{m['alpha']:.2f}"
                           for l, m in enumerate(plan["models"]))
        lines += [f"**{p}** ({plan['family']}, levels {plan['levels']}): measured ms per sample {costs}; "
                  f"MLMC V_l {', '.join(f'{v:.3g}' for v in plan['variances'])}; fitted error models {models}.", "",
                  "| B | seconds | method | N per level | estimated | measured |", "|---|---|---|---|---|---|"]
        for bud in budgets:
            entry = plan["budgets"].get(f"{bud:g}", {})
            for m in methods:
                v = entry.get(m)
                row = _row(rep, p, bud, m)
                if v:
                    meas = fmt(row["rel_l2_mean"], row["rel_l2_std"]) if row else "n/a"
                    lines.append(f"| {bud:g} | {v['budget_seconds']:.3g} | {m} | {v['n_samples']} | "
                                 f"{v['estimate']:.3g} | {meas} |")
        lines.append("")
    return lines


def _plot(rep, plans, problems, methods, budgets) -> None:
    from lemon_pl.core.figures import pyplot, save_figure

    plt = pyplot()
    fig, axes = plt.subplots(1, len(problems), figsize=(4.2 * len(problems), 3.6), squeeze=False,
                             constrained_layout=True)
    for ax, p in zip(axes[0], problems):
        plan = plans.get(p, {})
        for m in methods:
            xs, ys, es = [], [], []
            for bud in budgets:
                row = _row(rep, p, bud, m)
                if not row:
                    continue
                sec = plan.get("budgets", {}).get(f"{bud:g}", {}).get(m, {}).get("budget_seconds", bud)
                xs.append(sec)
                ys.append(row["rel_l2_mean"])
                es.append(row["rel_l2_std"])
            if xs:
                ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=METHOD_LABEL.get(m, m))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("budget: measured generation seconds")
        ax.set_ylabel("test relative L2")
        ax.set_title(p)
        ax.grid(alpha=0.3, which="both")
    axes[0][0].legend(fontsize=7)
    save_figure(fig, rep.add("error_vs_budget.png"), dpi=110)
