"""Tables and plots from the finished steps of an experiment (plain Python, csv and matplotlib).

Every finished ``test`` step records its tags (``condition``, ``seed``, optionally ``family``,
``x``, ``group``, ``model``, ``groups``, ``fit``) and the path of its ``test_metrics.json``. Per
(condition, seed) the per-family errors of all its steps are merged; ``overall`` is the
unweighted mean over the families of that condition, and each named family group of the
``groups`` tag (e.g. "unseen families") gets a row with the mean over its families. Each
(condition, family) row reports mean and sample std over seeds.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from pathlib import Path
from typing import Any

METRICS = ("rel_l2", "rel_l2_first", "rel_l2_second")
OVERALL = "overall"


def load_results(exp_dir: str | Path) -> list[dict[str, Any]]:
    """One entry per finished test step: its tags and the per-family metrics."""
    out = []
    records = [json.loads(p.read_text()) for p in (Path(exp_dir) / "steps").glob("*.json")]
    by_id = {r["id"]: r for r in records}
    for rec in sorted(records, key=lambda r: (r.get("index", 0), r["id"])):  # pipeline order
        metrics = rec.get("outputs", {}).get("metrics")
        if not metrics or "condition" not in rec.get("tags", {}):
            continue
        payload = json.loads(Path(metrics).read_text())
        entry = {"id": rec["id"], "tags": rec["tags"], "families": payload["families"],
                 "curve": payload.get("curve") or {}, "log_dir": rec.get("outputs", {}).get("log_dir")}
        fit = rec["tags"].get("fit")
        fit_dir = (by_id.get(fit) or {}).get("outputs", {}).get("log_dir") if fit else None
        if fit_dir and (Path(fit_dir) / "fit_summary.json").exists():
            entry["fit"] = json.loads((Path(fit_dir) / "fit_summary.json").read_text())
        out.append(entry)
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def aggregate(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows per (condition, family): mean, std, n_seeds and raw per-seed values of each metric."""
    per: dict[tuple[str, Any], dict[str, dict[str, float]]] = {}  # (condition, seed) -> family -> metrics
    info: dict[str, dict[str, Any]] = {}
    groups: dict[str, dict[str, list[str]]] = {}
    for r in results:
        tags = r["tags"]
        cond = tags["condition"]
        info.setdefault(cond, {k: v for k, v in tags.items() if k in ("x", "group", "model")})
        fams = {f: m for f, m in r["families"].items() if f != OVERALL}
        if tags.get("family"):
            fams = {f: m for f, m in fams.items() if f == tags["family"]}
        per.setdefault((cond, tags.get("seed")), {}).update(fams)
        groups.setdefault(cond, dict(tags.get("groups") or {}))
    conditions = list(dict.fromkeys(c for c, _ in per))
    rows = []
    for cond in conditions:
        seeds = sorted((s for c, s in per if c == cond), key=str)
        families = list(dict.fromkeys(f for s in seeds for f in per[(cond, s)]))
        for fam in [*families, *groups[cond], OVERALL]:
            members = groups[cond].get(fam)
            row: dict[str, Any] = {"condition": cond, "family": fam, **info[cond], "seeds": seeds,
                                   "is_group": members is not None}
            for m in METRICS:
                vals = []
                for s in seeds:
                    fm = per[(cond, s)]
                    pool = list(fm) if fam == OVERALL else [f for f in (members or []) if f in fm]
                    if fam == OVERALL or members is not None:
                        vals.append(statistics.fmean(float(fm[f][m]) for f in pool) if pool else math.nan)
                    elif fam in fm:
                        vals.append(float(fm[fam][m]))
                row[m] = vals
                row[f"{m}_mean"], row[f"{m}_std"] = _mean_std(vals)
            row["n_seeds"] = len(row["rel_l2"])
            rows.append(row)
    return rows


def _fmt(mean: float, std: float) -> str:
    return "n/a" if math.isnan(mean) else f"{mean:.4g} ± {std:.2g}"


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    header = ["condition", "family", "n_seeds", "seeds"]
    for m in METRICS:
        header += [f"{m}_mean", f"{m}_std", f"{m}_per_seed"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            line = [r["condition"], r["family"], r["n_seeds"], " ".join(str(s) for s in r["seeds"])]
            for m in METRICS:
                line += [f"{r[f'{m}_mean']:.6g}", f"{r[f'{m}_std']:.6g}", " ".join(f"{v:.6g}" for v in r[m])]
            w.writerow(line)


def write_markdown(rows: list[dict[str, Any]], path: Path, title: str, summary: list[str] | None = None) -> None:
    lines = [f"# {title}", "", *(summary or []), "## Per family", "",
             "Relative L2 error, mean ± std over seeds (first / second half of the predicted frames). "
             "`overall` is the unweighted mean over the families of the condition.", "",
             "| condition | family | seeds | rel_l2 | rel_l2 first half | rel_l2 second half |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        fam = f"**{r['family']}**" if r["family"] == OVERALL or r.get("is_group") else r["family"]
        lines.append(f"| {r['condition']} | {fam} | {r['n_seeds']} | "
                     + " | ".join(_fmt(r[f"{m}_mean"], r[f"{m}_std"]) for m in METRICS) + " |")
    path.write_text("\n".join(lines) + "\n")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scaling(rows: list[dict[str, Any]], path: Path) -> None:
    """Error vs number of pretraining families, one line per target family and overall; the
    scratch baseline (overall) as a horizontal band of ± std."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    pre = [r for r in rows if r.get("group") == "pretrained"]
    for fam in dict.fromkeys(r["family"] for r in pre):
        pts = sorted((r["x"], r["rel_l2_mean"], r["rel_l2_std"]) for r in pre if r["family"] == fam)
        xs, ys, es = zip(*pts)
        style = {"lw": 2.5, "color": "k"} if fam == OVERALL else {"lw": 1, "alpha": 0.7}
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=f"pretrained ({fam})", **style)
    for r in rows:
        if r.get("group") == "scratch" and r["family"] == OVERALL:
            m, s = r["rel_l2_mean"], r["rel_l2_std"]
            ax.axhline(m, color="tab:red", ls="--", label="scratch (overall)")
            ax.axhspan(m - s, m + s, color="tab:red", alpha=0.15)
    xs = sorted({r["x"] for r in pre})
    if xs:
        ax.set_xticks(xs)
    ax.set_xlabel("number of pretraining families")
    ax.set_ylabel("test relative L2 after fine-tuning")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_bars(rows: list[dict[str, Any]], path: Path, ylabel: str) -> None:
    """Grouped bars: one group per family, one bar per condition that has it (mean ± std)."""
    plt = _pyplot()
    conds = list(dict.fromkeys(r["condition"] for r in rows))
    fams = list(dict.fromkeys(r["family"] for r in rows if r["family"] != OVERALL)) + [OVERALL]
    width = 0.8 / max(1, len(conds))
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(fams) + 2), 4))
    for i, c in enumerate(conds):
        pts = [(fams.index(r["family"]), r["rel_l2_mean"], r["rel_l2_std"]) for r in rows if r["condition"] == c]
        xs, ys, es = zip(*pts)
        ax.bar([x - 0.4 + (i + 0.5) * width for x in xs], ys, width, yerr=es, capsize=2, label=c)
    ax.set_xticks(range(len(fams)))
    ax.set_xticklabels(fams, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------ adaptation curves
def aggregate_curves(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Error after k adaptation steps: rows per (condition, family group or ``overall``, k) with
    mean and std over seeds of the unweighted mean over the group's families."""
    per: dict[tuple[str, str, int], dict[Any, float]] = {}
    info: dict[str, dict[str, Any]] = {}
    for r in results:
        if not r.get("curve"):
            continue
        tags = r["tags"]
        cond = tags["condition"]
        info.setdefault(cond, {k: v for k, v in tags.items() if k in ("group", "model")})
        named = {**dict(tags.get("groups") or {}), OVERALL: None}
        for k, table in r["curve"].items():
            fams = {f: m for f, m in table.items() if f != OVERALL}
            for gname, members in named.items():
                pool = [f for f in (members if members is not None else fams) if f in fams]
                if pool:
                    value = statistics.fmean(float(fams[f]["rel_l2"]) for f in pool)
                    per.setdefault((cond, gname, int(k)), {})[tags.get("seed")] = value
    rows = []
    for (cond, gname, k), by_seed in per.items():
        mean, std = _mean_std(list(by_seed.values()))
        rows.append({"condition": cond, "family": gname, "steps": k, **info[cond], "n_seeds": len(by_seed),
                     "rel_l2_mean": mean, "rel_l2_std": std})
    return rows


def write_curve_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["condition", "group", "adapt_steps", "n_seeds", "rel_l2_mean", "rel_l2_std"])
        for r in rows:
            w.writerow([r["condition"], r["family"], r["steps"], r["n_seeds"], f"{r['rel_l2_mean']:.6g}",
                        f"{r['rel_l2_std']:.6g}"])


def plot_curves(rows: list[dict[str, Any]], path: Path) -> None:
    """Error vs adaptation steps: one panel per (model, family group), one line per initialisation."""
    plt = _pyplot()
    models = list(dict.fromkeys(r.get("model", "") for r in rows))
    gnames = [g for g in dict.fromkeys(r["family"] for r in rows) if g != OVERALL] or [OVERALL]
    fig, axes = plt.subplots(len(models), len(gnames), figsize=(4.2 * len(gnames), 3.0 * len(models)),
                             squeeze=False, sharex=True)
    for i, model in enumerate(models):
        for j, g in enumerate(gnames):
            ax = axes[i][j]
            sel = [r for r in rows if r.get("model", "") == model and r["family"] == g]
            for init in dict.fromkeys(r.get("group", r["condition"]) for r in sel):
                pts = sorted((r["steps"], r["rel_l2_mean"], r["rel_l2_std"]) for r in sel
                             if r.get("group", r["condition"]) == init)
                ks, ys, es = map(list, zip(*pts))
                ax.errorbar(ks, ys, yerr=es, marker="o", ms=3, capsize=2, label=init)
            ax.set_xscale("symlog", linthresh=1.0)  # k = 0 (zero-shot) stays on the axis
            ax.set_yscale("log")  # a meta-learned start can be far off before its first step
            ticks = sorted({r["steps"] for r in sel})
            ax.set_xticks(ticks, [str(k) for k in ticks])
            ax.xaxis.set_minor_locator(plt.NullLocator())
            ax.set_title(f"{model} - {g}" if model else g, fontsize=9)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("query relative L2")
            if i == len(models) - 1:
                ax.set_xlabel("adaptation steps")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_model_bars(rows: list[dict[str, Any]], path: Path, ylabel: str) -> None:
    """One panel per family group; models along x, one bar per initialisation (same colour in
    every panel), mean ± std over seeds."""
    plt = _pyplot()
    gnames = list(dict.fromkeys(r["family"] for r in rows if r.get("is_group"))) or [OVERALL]
    models = list(dict.fromkeys(r.get("model", "") for r in rows))
    inits = list(dict.fromkeys(r.get("group", r["condition"]) for r in rows))
    colours = plt.get_cmap("tab10")
    width = 0.8 / max(1, len(inits))
    fig, axes = plt.subplots(1, len(gnames), figsize=(4.5 * len(gnames) + 1.5, 3.6), squeeze=False)
    for ax, g in zip(axes[0], gnames):
        for i, init in enumerate(inits):
            pts = [(models.index(r.get("model", "")), r["rel_l2_mean"], r["rel_l2_std"]) for r in rows
                   if r["family"] == g and r.get("group", r["condition"]) == init]
            if pts:
                xs, ys, es = zip(*pts)
                ax.bar([x - 0.4 + (i + 0.5) * width for x in xs], ys, width, yerr=es, capsize=2,
                       color=colours(i % 10), label=init)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models)
        ax.set_title(g, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------ example predictions
def plot_examples(results: list[dict[str, Any]], path: Path, family: str | None = None,
                  keep=lambda r: True) -> Path | None:
    """Truth and each condition's prediction of the first test trajectory of ``family`` (first
    seed; the ``test_examples.npz`` written by every test run). Returns None without examples."""
    import numpy as np

    panels: list[tuple[str, Any]] = []
    truth = None
    seed0 = min((r["tags"].get("seed") for r in results), key=str, default=None)
    for r in results:
        if r["tags"].get("seed") != seed0 or not keep(r) or not r.get("log_dir"):
            continue
        f = Path(r["log_dir"]) / "test_examples.npz"
        if not f.exists():
            continue
        with np.load(f) as z:
            fams = list(dict.fromkeys(k.split("/")[0] for k in z.files))
            fam = family if family in fams else (r["tags"].get("family") or fams[0])
            if f"{fam}/pred" not in z.files:
                continue
            family = fam
            truth = z[f"{fam}/true"] if truth is None else truth
            panels.append((r["tags"]["condition"], z[f"{fam}/pred"]))
    if truth is None or not panels:
        return None
    plt = _pyplot()
    n = len(panels) + 1
    cols = min(n, 5)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.3 * rows), squeeze=False)
    vmin, vmax = float(truth.min()), float(truth.max())
    items = [("truth", truth), *panels]
    for ax, (title, img) in zip(axes.flat, items):
        ax.imshow(img, origin="lower", aspect="auto", vmin=vmin, vmax=vmax, cmap="viridis")
        if title != "truth":
            rel = float(np.linalg.norm(img - truth) / (np.linalg.norm(truth) + 1e-7))
            title = f"{title}\nrel L2 {rel:.3f}"
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(items):]:
        ax.axis("off")
    fig.suptitle(f"{family}: first test trajectory (time upwards, x to the right)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ------------------------------------------------------------------ experiment summaries
def summary_init_comparison(rows: list[dict[str, Any]], curves: list[dict[str, Any]]) -> list[str]:
    """Model x initialisation: zero-shot and few-shot error on each family group."""
    gnames = list(dict.fromkeys(r["family"] for r in rows if r.get("is_group")))
    zero = {(r["condition"], r["family"]): r for r in curves if r["steps"] == 0}
    head = "| model | initialisation | " + " | ".join(f"{g}: zero-shot | {g}: few-shot" for g in gnames) + " |"
    lines = ["## Summary", "", "Relative L2 on the query trajectories, mean ± std over seeds; few-shot = after the "
             "full adaptation (`eval_steps`), zero-shot = before it.", "", head,
             "|" + "---|" * (2 + 2 * len(gnames))]
    for cond in dict.fromkeys(r["condition"] for r in rows):
        first = next(r for r in rows if r["condition"] == cond)
        cells = []
        for g in gnames:
            z = zero.get((cond, g))
            few = next((r for r in rows if r["condition"] == cond and r["family"] == g), None)
            cells += [_fmt(z["rel_l2_mean"], z["rel_l2_std"]) if z else "n/a",
                      _fmt(few["rel_l2_mean"], few["rel_l2_std"]) if few else "n/a"]
        lines.append(f"| {first.get('model', '')} | {first.get('group', cond)} | " + " | ".join(cells) + " |")
    return lines + [""]


def finetune_costs(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per condition: trainable parameters and median ms per fine-tuning step (mean over runs)."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in results:
        fit = r.get("fit")
        if not fit:
            continue
        c = out.setdefault(r["tags"]["condition"], {"trainable_params": [], "total_params": [], "ms_per_step": []})
        for k in c:
            if fit.get(k) is not None:
                c[k].append(float(fit[k]))
    return {cond: {k: statistics.fmean(v) if v else math.nan for k, v in c.items()} for cond, c in out.items()}


def summary_finetune(rows: list[dict[str, Any]], costs: dict[str, dict[str, float]]) -> list[str]:
    """Variant x N: error, trainable parameters, time per step."""
    over = [r for r in rows if r["family"] == OVERALL]
    ns = sorted({r["x"] for r in over})
    variants = list(dict.fromkeys(r["group"] for r in over))
    lines = ["## Summary", "", "Test relative L2 after fine-tuning on N trajectories (mean ± std over seeds), "
             "trainable parameters and measured time per fine-tuning step (median over steps, mean over runs).", "",
             "| variant | " + " | ".join(f"N={n}" for n in ns) + " | trainable params | % of all | "
             + " | ".join(f"ms/step N={n}" for n in ns) + " |",
             "|" + "---|" * (3 + 2 * len(ns))]
    for v in variants:
        cells, times, params, frac = [], [], math.nan, math.nan
        for n in ns:
            r = next((r for r in over if r["group"] == v and r["x"] == n), None)
            cells.append(_fmt(r["rel_l2_mean"], r["rel_l2_std"]) if r else "n/a")
            c = costs.get(r["condition"] if r else "", {})
            times.append(f"{c['ms_per_step']:.0f}" if c and not math.isnan(c["ms_per_step"]) else "n/a")
            if c and not math.isnan(c.get("trainable_params", math.nan)):
                params, frac = c["trainable_params"], c["trainable_params"] / c["total_params"]
        ptxt = "n/a" if math.isnan(params) else f"{params:,.0f}"
        ftxt = "n/a" if math.isnan(frac) else f"{100 * frac:.2f}"
        lines.append(f"| {v} | " + " | ".join(cells) + f" | {ptxt} | {ftxt} | " + " | ".join(times) + " |")
    return lines + [""]


def plot_error_vs_n(rows: list[dict[str, Any]], costs: dict[str, dict[str, float]], path: Path) -> None:
    """Left: error vs N per variant. Right: error at the largest N vs trainable parameters."""
    plt = _pyplot()
    over = [r for r in rows if r["family"] == OVERALL]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    nmax = max(r["x"] for r in over)
    for v in dict.fromkeys(r["group"] for r in over):
        pts = sorted((r["x"], r["rel_l2_mean"], r["rel_l2_std"]) for r in over if r["group"] == v)
        xs, ys, es = zip(*pts)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=v)
        last = next(r for r in over if r["group"] == v and r["x"] == nmax)
        params = costs.get(last["condition"], {}).get("trainable_params", math.nan)
        if not math.isnan(params):
            ax2.errorbar([params], [last["rel_l2_mean"]], yerr=[last["rel_l2_std"]], marker="o", capsize=3, label=v)
    ax.set_xlabel("fine-tuning trajectories N")
    ax.set_xticks(sorted({r["x"] for r in over}))
    ax.set_ylabel("test relative L2")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax2.set_xscale("log")
    ax2.set_xlabel("trainable parameters")
    ax2.set_title(f"N = {nmax}", fontsize=9)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(name: str, exp_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write table.md, results.csv and the experiment's plots; returns the written paths."""
    exp_dir = Path(exp_dir)
    out = Path(out_dir or exp_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = load_results(exp_dir)
    rows = aggregate(results)
    if not rows:
        raise ValueError(f"no finished test steps under {exp_dir / 'steps'}")
    paths = [out / "results.csv", out / "table.md"]
    write_csv(rows, paths[0])
    summary: list[str] = []
    examples: dict[str, Any] = {}  # plot_examples arguments per experiment
    curves = aggregate_curves(results)
    if curves:
        paths.append(out / "curve.csv")
        write_curve_csv(curves, paths[-1])
        paths.append(out / "error_vs_steps.png")
        plot_curves(curves, paths[-1])
    if name == "scaling":
        paths.append(out / "scaling.png")
        plot_scaling(rows, paths[-1])
    elif name == "zero-shot":
        paths.append(out / "zero_shot.png")
        plot_bars(rows, paths[-1], "test relative L2, no adaptation")
    elif name == "init-comparison":
        summary = summary_init_comparison(rows, curves)
        paths.append(out / "init_comparison.png")
        plot_model_bars(rows, paths[-1], "query relative L2 after few-shot adaptation")
        unseen = next((fams for r in results for g, fams in (r["tags"].get("groups") or {}).items()
                       if g == "unseen families"), None)
        examples = {"family": unseen[0] if unseen else None}
    elif name == "finetune":
        costs = finetune_costs(results)
        summary = summary_finetune(rows, costs)
        paths.append(out / "error_vs_n.png")
        plot_error_vs_n(rows, costs, paths[-1])
        nmax = max((r["tags"].get("x", 0) for r in results), default=0)
        examples = {"keep": lambda r: r["tags"].get("x") == nmax}
    else:
        paths.append(out / f"{name}.png")
        plot_bars(rows, paths[-1], "test relative L2")
    write_markdown(rows, paths[1], f"{name} ({exp_dir.name})", summary)
    ex = plot_examples(results, out / "examples.png", **examples)
    if ex:
        paths.append(ex)
    return paths
