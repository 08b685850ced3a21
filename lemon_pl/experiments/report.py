"""Tables and plots from the finished steps of an experiment (plain Python, csv and matplotlib).

Every finished ``test`` step records its tags (``condition``, ``seed``, optionally ``family``,
``x``, ``group``) and the path of its ``test_metrics.json``. Per (condition, seed) the
per-family errors of all its steps are merged; ``overall`` is the unweighted mean over the
families of that condition. Each (condition, family) row reports mean and sample std over seeds.
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
    for rec in sorted(records, key=lambda r: (r.get("index", 0), r["id"])):  # pipeline order
        metrics = rec.get("outputs", {}).get("metrics")
        if not metrics or "condition" not in rec.get("tags", {}):
            continue
        fams = json.loads(Path(metrics).read_text())["families"]
        out.append({"id": rec["id"], "tags": rec["tags"], "families": fams})
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
    for r in results:
        tags = r["tags"]
        cond = tags["condition"]
        info.setdefault(cond, {k: v for k, v in tags.items() if k in ("x", "group")})
        fams = {f: m for f, m in r["families"].items() if f != OVERALL}
        if tags.get("family"):
            fams = {f: m for f, m in fams.items() if f == tags["family"]}
        per.setdefault((cond, tags.get("seed")), {}).update(fams)
    conditions = list(dict.fromkeys(c for c, _ in per))
    rows = []
    for cond in conditions:
        seeds = sorted((s for c, s in per if c == cond), key=str)
        families = list(dict.fromkeys(f for s in seeds for f in per[(cond, s)]))
        for fam in [*families, OVERALL]:
            row: dict[str, Any] = {"condition": cond, "family": fam, **info[cond], "seeds": seeds}
            for m in METRICS:
                vals = []
                for s in seeds:
                    fm = per[(cond, s)]
                    if fam == OVERALL:
                        vals.append(statistics.fmean(float(fm[f][m]) for f in fm) if fm else math.nan)
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


def write_markdown(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    lines = [f"# {title}", "",
             "Relative L2 error, mean ± std over seeds (first / second half of the predicted frames). "
             "`overall` is the unweighted mean over the families of the condition.", "",
             "| condition | family | seeds | rel_l2 | rel_l2 first half | rel_l2 second half |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        fam = f"**{r['family']}**" if r["family"] == OVERALL else r["family"]
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


def write_report(name: str, exp_dir: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """Write table.md, results.csv and the experiment's plots; returns the written paths."""
    exp_dir = Path(exp_dir)
    out = Path(out_dir or exp_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = aggregate(load_results(exp_dir))
    if not rows:
        raise ValueError(f"no finished test steps under {exp_dir / 'steps'}")
    paths = [out / "results.csv", out / "table.md"]
    write_csv(rows, paths[0])
    write_markdown(rows, paths[1], f"{name} ({exp_dir.name})")
    if name == "scaling":
        paths.append(out / "scaling.png")
        plot_scaling(rows, paths[-1])
    elif name == "zero-shot":
        paths.append(out / "zero_shot.png")
        plot_bars(rows, paths[-1], "test relative L2, no adaptation")
    else:
        paths.append(out / f"{name}.png")
        plot_bars(rows, paths[-1], "test relative L2")
    return paths
