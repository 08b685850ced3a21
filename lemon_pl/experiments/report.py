"""Tables and plots from the finished steps of an experiment (plain Python, csv and matplotlib):
the generic part of every report. :func:`write_report` writes ``results.csv``, ``table.md``,
the adaptation curves and the examples figure, and calls the experiment module's ``report(rep)``
hook (a :class:`Report`) for its summary lines and its own figures.

Every finished ``test`` step records its tags (``condition``, ``seed``, optionally ``family``,
``x``, ``group``, ``model``, ``groups``, ``fit``) and the path of its ``test_metrics.json``. Per
(condition, seed) the per-family errors of all its steps are merged; ``overall`` is the
unweighted mean over the families of that condition, and each named family group of the
``groups`` tag (e.g. "unseen families") gets a row with the mean over its families. Each
(condition, family) row reports mean and sample std over seeds
(:func:`lemon_pl.core.metrics.mean_std` of the metrics in ``REPORTED``).
"""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from lemon_pl.core.metrics import OVERALL, REPORTED, mean_std
from lemon_pl.core.figures import pyplot, save_figure


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


def aggregate(results: list[dict[str, Any]], metrics: tuple[str, ...] = REPORTED) -> list[dict[str, Any]]:
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
            for m in metrics:
                vals = []
                for s in seeds:
                    fm = per[(cond, s)]
                    pool = list(fm) if fam == OVERALL else [f for f in (members or []) if f in fm]
                    if fam == OVERALL or members is not None:
                        vals.append(statistics.fmean(float(fm[f][m]) for f in pool) if pool else math.nan)
                    elif fam in fm:
                        vals.append(float(fm[fam][m]))
                row[m] = vals
                row[f"{m}_mean"], row[f"{m}_std"] = mean_std(vals)
            row["n_seeds"] = len(row["rel_l2"])
            rows.append(row)
    return rows


def fmt(mean: float, std: float) -> str:
    return "n/a" if math.isnan(mean) else f"{mean:.4g} ± {std:.2g}"


def write_csv(rows: list[dict[str, Any]], path: Path, metrics: tuple[str, ...] = REPORTED) -> None:
    header = ["condition", "family", "n_seeds", "seeds"]
    for m in metrics:
        header += [f"{m}_mean", f"{m}_std", f"{m}_per_seed"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        for r in rows:
            line = [r["condition"], r["family"], r["n_seeds"], " ".join(str(s) for s in r["seeds"])]
            for m in metrics:
                line += [f"{r[f'{m}_mean']:.6g}", f"{r[f'{m}_std']:.6g}", " ".join(f"{v:.6g}" for v in r[m])]
            w.writerow(line)


#: the per-family section of ``table.md`` for the operator metrics (an experiment module may
#: declare its own ``METRICS`` and ``TABLE_HEAD``: section title, note, column names)
OPERATOR_TABLE = ("Per family", "Relative L2 error, mean ± std over seeds (first / second half of the predicted "
                  "frames). `overall` is the unweighted mean over the families of the condition.",
                  ("rel_l2", "rel_l2 first half", "rel_l2 second half"))


def write_markdown(rows: list[dict[str, Any]], path: Path, title: str, summary: list[str] | None = None,
                   metrics: tuple[str, ...] = REPORTED, head: tuple = OPERATOR_TABLE) -> None:
    section, note, columns = head
    lines = [f"# {title}", "", *(summary or []), f"## {section}", "", note, "",
             "| condition | family | seeds | " + " | ".join(columns) + " |", "|---|---|---|" + "---|" * len(columns)]
    for r in rows:
        fam = f"**{r['family']}**" if r["family"] == OVERALL or r.get("is_group") else r["family"]
        lines.append(f"| {r['condition']} | {fam} | {r['n_seeds']} | "
                     + " | ".join(fmt(r[f"{m}_mean"], r[f"{m}_std"]) for m in metrics) + " |")
    path.write_text("\n".join(lines) + "\n")


def plot_bars(rows: list[dict[str, Any]], path: Path, ylabel: str) -> None:
    """Grouped bars: one group per family, one bar per condition that has it (mean ± std)."""
    plt = pyplot()
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
    save_figure(fig, path, dpi=120)


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
        mean, std = mean_std(list(by_seed.values()))
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
    plt = pyplot()
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
    save_figure(fig, path, dpi=110)


def plot_model_bars(rows: list[dict[str, Any]], path: Path, ylabel: str) -> None:
    """One panel per family group; models along x, one bar per initialisation (same colour in
    every panel), mean ± std over seeds."""
    plt = pyplot()
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
    save_figure(fig, path, dpi=120)


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
    plt = pyplot()
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
    save_figure(fig, path, dpi=100)
    return path


# ------------------------------------------------------------------ the report
@dataclass
class Report:
    """What an experiment's ``report(rep)`` hook reads (the finished test steps, their rows per
    condition and family, the adaptation curves) and adds to: ``summary`` lines at the top of
    ``table.md``, figures (:meth:`add` gives a file's path and lists it), and ``examples``, the
    keyword arguments of :func:`plot_examples` (``family``, ``keep``)."""

    name: str
    exp_dir: Path
    out: Path
    results: list[dict[str, Any]]
    rows: list[dict[str, Any]]
    curves: list[dict[str, Any]]
    paths: list[Path] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    examples: dict[str, Any] = field(default_factory=dict)

    def add(self, filename: str) -> Path:
        """The path of a file in the report folder, added to the written paths."""
        self.paths.append(self.out / filename)
        return self.paths[-1]


def write_report(experiment: str | ModuleType, exp_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write ``results.csv``, ``table.md``, the adaptation curves (``curve.csv``,
    ``error_vs_steps.png``) if the tests recorded any, what the experiment's ``report`` hook adds
    (an experiment module or the name of one; without a hook: bars per family, ``NAME.png``) and
    ``examples.png``. Returns the written paths.

    All or nothing: every file is first written into a temporary folder inside the report
    folder and flushed to disk; only when all of them are complete are they renamed into place.
    A failed write (a full disk, a read-only folder) raises one
    :class:`~lemon_pl.core.errors.CheckpointWriteError` line and leaves the previous report as it was."""
    import os
    import shutil
    import tempfile

    from lemon_pl.core.checkpointing import os_error_cause
    from lemon_pl.core.errors import CheckpointWriteError

    if isinstance(experiment, str):
        from lemon_pl.experiments import EXPERIMENTS

        name, module = experiment, EXPERIMENTS.get(experiment)
    else:
        name, module = experiment.NAME, experiment
    exp_dir = Path(exp_dir)
    out = Path(out_dir or exp_dir)
    results = load_results(exp_dir)
    metrics = tuple(getattr(module, "METRICS", REPORTED))
    rows = aggregate(results, metrics)
    if not rows:
        raise ValueError(f"no finished test steps under {exp_dir / 'steps'}")
    stage = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        stage = Path(tempfile.mkdtemp(prefix=f".report.tmp-{os.getpid()}-", dir=out))
        written = _write_report_files(name, module, exp_dir, stage, results, rows, metrics)
        for path in written:  # every file complete on disk before any replaces its previous version
            with open(path, "rb+") as fh:
                os.fsync(fh.fileno())
        final = []
        for path in written:
            target = out / path.relative_to(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            final.append(target)
        return final
    except Exception as err:  # noqa: BLE001 - only write failures are translated, the rest re-raised
        cause = os_error_cause(err)
        if cause is None:
            raise
        reason = cause.strerror or str(cause) or type(cause).__name__
        failure = CheckpointWriteError(f"could not write the report into {out}: {reason}; the previous report "
                                       "files are intact (free some space and run the same command again)")
        failure.errno = cause.errno
        raise failure from None
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)


def _write_report_files(name: str, module: ModuleType | None, exp_dir: Path, out: Path, results: list[dict[str, Any]],
                        rows: list[dict[str, Any]], metrics: tuple[str, ...]) -> list[Path]:
    """The report's files, written into ``out``; their paths."""
    rep = Report(name, exp_dir, out, results, rows, aggregate_curves(results), [out / "results.csv", out / "table.md"])
    write_csv(rows, rep.paths[0], metrics)
    if rep.curves:
        write_curve_csv(rep.curves, rep.add("curve.csv"))
        plot_curves(rep.curves, rep.add("error_vs_steps.png"))
    hook = getattr(module, "report", None)
    if hook is not None:
        hook(rep)
    else:
        plot_bars(rows, rep.add(f"{name}.png"), "test relative L2")
    write_markdown(rows, rep.paths[1], f"{name} ({exp_dir.name})", rep.summary, metrics,
                   getattr(module, "TABLE_HEAD", OPERATOR_TABLE))
    ex = plot_examples(results, out / "examples.png", **rep.examples)
    if ex:
        rep.paths.append(ex)
    return [p for p in dict.fromkeys(rep.paths) if p.is_file()]
