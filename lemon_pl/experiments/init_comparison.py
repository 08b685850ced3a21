"""Initialisations compared: scratch, pretrained, LeMON, LeMONS and pretrained+LeMONS, per model,
tested few-shot on unseen operators and unseen families.

    lemon-pl experiment init-comparison --scale cpu
        -> results/init-comparison/cpu/{table.md,results.csv,curve.csv,error_vs_steps.png,
                                        init_comparison.png,examples.png}

Settings (``configs/experiments/init_comparison.yaml``): ``train_families``, ``unseen``,
``seeds``, ``models`` (name -> ``overlay``, ``net``, optionally ``inits``); optionally ``inits``,
``eval_curve`` and ``hybrid`` (``pretrain`` and ``meta`` arguments of pretrained+LeMONS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lemon_pl.experiments.common import Builder, require
from lemon_pl.experiments.runner import Step

if TYPE_CHECKING:
    from lemon_pl.experiments.report import Report

NAME = "init-comparison"
ORDER = 3  # position in ``lemon-pl experiment``'s list
INITS = ("scratch", "pretrained", "LeMON", "LeMONS", "pretrained+LeMONS")


def steps(sc: dict) -> list[Step]:
    """For each model of ``models`` and each seed: plain pretraining (``pretrain``), LeMON
    meta-learning with a fixed inner rate and LeMONS (the equation sets the rate) on
    ``train_families``, each with the budget of its section; then one few-shot test per
    initialisation (and from scratch) on the test operators of the training families (unseen
    operators) and of ``unseen`` families, with the error recorded after each step count of
    ``eval_curve``. ``pretrained+LeMONS`` splits the budget: a shorter pretraining, then LeMONS
    meta-training from it (the ``hybrid`` section's ``pretrain`` and ``meta`` arguments). A model
    entry may list its own ``inits``."""
    require(sc, "train_families", "unseen", "seeds", "models")
    b = Builder(sc)
    fams, unseen, seeds = list(sc["train_families"]), list(sc["unseen"]), list(sc["seeds"])
    models = dict(sc["models"])
    inits = list(sc.get("inits") or INITS)
    if set(inits) - set(INITS):
        raise ValueError(f"unknown initialisations {sorted(set(inits) - set(INITS))}; choose from {', '.join(INITS)}")
    out = [b.generate("generate", fams + unseen)]
    groups = {"unseen operators": fams, "unseen families": unseen}
    meta_rate = {"LeMON": "fixed", "LeMONS": "learned_symbolic"}
    test_rate = {**meta_rate, "pretrained+LeMONS": "learned_symbolic"}  # the rate head each was trained with
    hybrid = dict(sc.get("hybrid") or {})
    for name, model in models.items():
        model_inits = list(model.get("inits") or inits)
        if set(model_inits) - set(INITS):
            raise ValueError(f"unknown initialisations {sorted(set(model_inits) - set(INITS))} for model {name}")
        for s in seeds:
            ckpts: dict[str, str | None] = {"scratch": None}
            if "pretrained" in model_inits:
                pid = f"{name}_pretrain_s{s}"
                out.append(b.stage("fit", "pretrain.yaml", "pretrain", {"data.init_args.train_families": fams},
                                   s, ["generate"], pid, model=model))
                ckpts["pretrained"] = f"{{ckpt:{pid}}}"
            for init, rate in meta_rate.items():
                if init in model_inits:
                    mid = f"{name}_{init}_s{s}"
                    out.append(b.stage("fit", "meta.yaml", "meta", {"data.init_args.train_families": fams,
                                                                   "model.init_args.inner_lr": rate},
                                       s, ["generate"], mid, model=model))
                    ckpts[init] = f"{{ckpt:{mid}}}"
            if "pretrained+LeMONS" in model_inits:
                hp, hm = f"{name}_hybrid_pretrain_s{s}", f"{name}_hybrid_LeMONS_s{s}"
                out.append(b.stage("fit", "pretrain.yaml", "pretrain", {"data.init_args.train_families": fams,
                                                                       **(hybrid.get("pretrain") or {})},
                                   s, ["generate"], hp, model=model))
                out.append(b.stage("fit", "meta.yaml", "meta", {
                    "data.init_args.train_families": fams, "model.init_args.inner_lr": "learned_symbolic",
                    "model.init_args.init_from": f"{{ckpt:{hp}}}", **(hybrid.get("meta") or {})}, s, [hp], hm,
                    model=model))
                ckpts["pretrained+LeMONS"] = f"{{ckpt:{hm}}}"
            for init in model_inits:
                args = {"data.init_args.train_families": fams, "data.init_args.eval_families": fams + unseen,
                        "model.init_args.inner_lr": test_rate.get(init, "fixed"),
                        "model.init_args.eval_curve": list(sc.get("eval_curve") or [])}
                if ckpts.get(init):
                    args["ckpt_path"] = ckpts[init]
                tags = {"condition": f"{name} {init}", "seed": s, "group": init, "model": name, "groups": groups}
                out.append(b.stage("test", "fewshot.yaml", "test", args, s, ["generate"],
                                   f"test_{name}_{init.replace('pretrained+LeMONS', 'hybrid')}_s{s}", tags,
                                   model=model))
    return out


def report(rep: Report) -> None:
    """The model x initialisation summary, ``init_comparison.png`` and the examples of the first
    unseen family."""
    from lemon_pl.experiments.report import plot_model_bars

    rep.summary = summary(rep.rows, rep.curves)
    plot_model_bars(rep.rows, rep.add("init_comparison.png"), "query relative L2 after few-shot adaptation")
    unseen = next((fams for r in rep.results for g, fams in (r["tags"].get("groups") or {}).items()
                   if g == "unseen families"), None)
    rep.examples = {"family": unseen[0] if unseen else None}


def summary(rows: list[dict[str, Any]], curves: list[dict[str, Any]]) -> list[str]:
    """Model x initialisation: zero-shot and few-shot error on each family group."""
    from lemon_pl.experiments.report import fmt

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
            cells += [fmt(z["rel_l2_mean"], z["rel_l2_std"]) if z else "n/a",
                      fmt(few["rel_l2_mean"], few["rel_l2_std"]) if few else "n/a"]
        lines.append(f"| {first.get('model', '')} | {first.get('group', cond)} | " + " | ".join(cells) + " |")
    return lines + [""]
