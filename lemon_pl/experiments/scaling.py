"""Scaling: how the number of pretraining families changes the error after fine-tuning.

    lemon-pl experiment scaling --scale cpu     -> results/scaling/cpu/{table.md,results.csv,scaling.png}

Settings (``configs/experiments/scaling.yaml``): ``family_order``, ``family_counts``,
``targets``, ``n_samples``, ``seeds``; optionally ``finetune_mode`` and ``finetune_batch_size``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lemon_pl.experiments.common import Builder, require
from lemon_pl.experiments.runner import Step

if TYPE_CHECKING:
    from lemon_pl.experiments.report import Report

NAME = "scaling"
ORDER = 1  # position in ``lemon-pl experiment``'s list


def steps(sc: dict) -> list[Step]:
    """Pretrain on the first k families of ``family_order`` for each k in ``family_counts``,
    fine-tune on ``n_samples`` trajectories of each ``targets`` family and test on it; the
    baseline fine-tunes the same network from scratch with the same samples and steps."""
    require(sc, "family_order", "family_counts", "targets", "seeds", "n_samples")
    b = Builder(sc)
    order, counts, targets = list(sc["family_order"]), list(sc["family_counts"]), list(sc["targets"])
    seeds, n = list(sc["seeds"]), int(sc["n_samples"])
    if max(counts) > len(order):
        raise ValueError(f"family_counts goes up to {max(counts)} but family_order lists {len(order)} families")
    out = [b.generate("generate", order[:max(counts)] + targets)]
    ft_common = {"model.init_args.mode": sc.get("finetune_mode", "full"), "data.init_args.num_train_samples": n,
                 "data.init_args.batch_size": min(n, int(sc.get("finetune_batch_size", n)))}

    def finetune(sid: str, target: str, seed: int, init_from: str | None, tags: dict) -> list[Step]:
        args = {**ft_common, "data.init_args.train_families": [target], "model.init_args.init_from": init_from}
        fit = b.stage("fit", "finetune.yaml", "finetune", args, seed, ["generate"], f"finetune_{sid}")
        test = b.stage("test", "finetune.yaml", "test", {**args, "ckpt_path": f"{{ckpt:{fit.id}}}"}, seed,
                       step_id=f"test_{sid}", tags={**tags, "seed": seed, "family": target})
        return [fit, test]

    for k in counts:
        for s in seeds:
            pid = f"pretrain_k{k}_s{s}"
            out.append(b.stage("fit", "pretrain.yaml", "pretrain", {"data.init_args.train_families": order[:k]},
                               s, ["generate"], pid))
            for t in targets:
                out += finetune(f"k{k}_{t}_s{s}", t, s, f"{{ckpt:{pid}}}",
                                {"condition": f"pretrained k={k}", "x": k, "group": "pretrained"})
    for s in seeds:
        for t in targets:
            out += finetune(f"scratch_{t}_s{s}", t, s, None, {"condition": "scratch", "group": "scratch"})
    return out


def report(rep: Report) -> None:
    """``scaling.png``."""
    plot(rep.rows, rep.add("scaling.png"))


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Error vs number of pretraining families, one line per target family and overall; the
    scratch baseline (overall) as a horizontal band of ± std."""
    from lemon_pl.core.figures import pyplot, save_figure
    from lemon_pl.experiments.report import OVERALL

    plt = pyplot()
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
    save_figure(fig, path, dpi=120)
