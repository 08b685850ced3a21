"""Fine-tuning variants compared: full, decoder only and LoRA ranks, at several sample counts N,
with their trainable parameters and time per step.

    lemon-pl experiment finetune --scale cpu
        -> results/finetune/cpu/{table.md,results.csv,error_vs_n.png,examples.png}

Settings (``configs/experiments/finetune.yaml``): ``pretrain_families``, ``targets``, ``seeds``,
``n_samples`` (one N or a list), ``variants``; optionally ``variant_args``,
``lora_alpha_per_rank`` and ``finetune_batch_size``.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lemon_pl.experiments.common import Builder, require
from lemon_pl.experiments.runner import Step

if TYPE_CHECKING:
    from lemon_pl.experiments.report import Report

NAME = "finetune"
ORDER = 4  # position in ``lemon-pl experiment``'s list


def steps(sc: dict) -> list[Step]:
    """Per seed: pretrain on ``pretrain_families``; then for each N of ``n_samples`` and each
    variant of ``variants`` (``full``, ``decoder``, ``lora_r<rank>``) fine-tune on the first N
    training trajectories of each ``targets`` family and test on its test split. ``variant_args``
    adds arguments per variant (e.g. a learning rate for the LoRA variants). The report adds
    trainable parameters and time per step (``fit_summary.json`` of each fine-tuning run)."""
    require(sc, "pretrain_families", "targets", "seeds", "n_samples", "variants")
    b = Builder(sc)
    fams, targets, seeds = list(sc["pretrain_families"]), list(sc["targets"]), list(sc["seeds"])
    out = [b.generate("generate", fams + targets)]
    variants = list(sc["variants"])
    for v in variants:
        if v not in ("full", "decoder") and not (v.startswith("lora_r") and v[6:].isdigit()):
            raise ValueError(f"unknown fine-tuning variant {v!r}: use full, decoder or lora_r<rank>")
    for s in seeds:
        pid = f"pretrain_s{s}"
        out.append(b.stage("fit", "pretrain.yaml", "pretrain", {"data.init_args.train_families": fams}, s,
                           ["generate"], pid))
        for n in (sc["n_samples"] if isinstance(sc["n_samples"], list) else [sc["n_samples"]]):
            n = int(n)
            for v in variants:
                for t in targets:
                    args = {"model.init_args.init_from": f"{{ckpt:{pid}}}", "data.init_args.train_families": [t],
                            "data.init_args.num_train_samples": n,
                            "data.init_args.batch_size": min(n, int(sc.get("finetune_batch_size", n)))}
                    if v.startswith("lora_r"):
                        rank = int(v[6:])
                        args.update({"model.init_args.mode": "lora", "model.init_args.lora_rank": rank,
                                     "model.init_args.lora_alpha": float(sc.get("lora_alpha_per_rank", 1.0)) * rank})
                    else:
                        args["model.init_args.mode"] = v
                    args.update((sc.get("variant_args") or {}).get(v) or {})
                    sid = f"{v}_n{n}_{t}_s{s}"
                    fit = b.stage("fit", "finetune.yaml", "finetune", args, s, ["generate"], f"finetune_{sid}")
                    test = b.stage("test", "finetune.yaml", "test", {**args, "ckpt_path": f"{{ckpt:{fit.id}}}"}, s,
                                   step_id=f"test_{sid}", tags={"condition": f"{v} N={n}", "seed": s, "group": v,
                                                                "x": n, "family": t, "fit": fit.id})
                    out += [fit, test]
    return out


def report(rep: Report) -> None:
    """The variant x N summary with costs, ``error_vs_n.png`` and the examples at the largest N."""
    costs = fit_costs(rep.results)
    rep.summary = summary(rep.rows, costs)
    plot_error_vs_n(rep.rows, costs, rep.add("error_vs_n.png"))
    nmax = max((r["tags"].get("x", 0) for r in rep.results), default=0)
    rep.examples = {"keep": lambda r: r["tags"].get("x") == nmax}


def fit_costs(results: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
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


def summary(rows: list[dict[str, Any]], costs: dict[str, dict[str, float]]) -> list[str]:
    """Variant x N: error, trainable parameters, time per step."""
    from lemon_pl.experiments.report import OVERALL, fmt

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
            cells.append(fmt(r["rel_l2_mean"], r["rel_l2_std"]) if r else "n/a")
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
    from lemon_pl.core.figures import pyplot, save_figure
    from lemon_pl.experiments.report import OVERALL

    plt = pyplot()
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
    save_figure(fig, path, dpi=120)
