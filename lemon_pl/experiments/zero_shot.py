"""Zero-shot generalisation: the pretrained network tested without any adaptation.

    lemon-pl experiment zero-shot --scale cpu   -> results/zero-shot/cpu/{table.md,results.csv,zero_shot.png}

Settings (``configs/experiments/zero_shot.yaml``): ``pretrain_families``, ``unseen``, ``seeds``;
optionally ``ood_gamma`` (default 0.3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lemon_pl.experiments.common import Builder, require
from lemon_pl.experiments.runner import Step

if TYPE_CHECKING:
    from lemon_pl.experiments.report import Report

NAME = "zero-shot"
ORDER = 2  # position in ``lemon-pl experiment``'s list


def steps(sc: dict) -> list[Step]:
    """Pretrain on ``pretrain_families`` per seed, then test without adaptation on the same
    families (in-distribution), on ``unseen`` families and on out-of-distribution operators of the
    pretraining families (``ood_gamma``)."""
    require(sc, "pretrain_families", "unseen", "seeds")
    b = Builder(sc)
    fams, unseen, seeds = list(sc["pretrain_families"]), list(sc["unseen"]), list(sc["seeds"])
    gamma = float(sc.get("ood_gamma", 0.3))
    out = [b.generate("generate", fams + unseen),
           b.generate("generate_ood", fams, "--split-name", "ood", "--gamma", str(gamma))]
    conditions = [("in-distribution", fams, "test"), ("unseen", unseen, "test"), (f"ood gamma={gamma:g}", fams, "ood")]
    for s in seeds:
        pid = f"pretrain_s{s}"
        out.append(b.stage("fit", "pretrain.yaml", "pretrain", {"data.init_args.train_families": fams}, s,
                           ["generate"], pid))
        for cond, eval_fams, split in conditions:
            key = cond.split()[0]
            args = {"data.init_args.train_families": fams, "data.init_args.eval_families": eval_fams,
                    "data.init_args.test_split": split, "model.init_args.eval_steps": 0, "ckpt_path": f"{{ckpt:{pid}}}"}
            out.append(b.stage("test", "fewshot.yaml", "test", args, s, ["generate", "generate_ood"],
                               f"zeroshot_{key}_s{s}", {"condition": cond, "seed": s, "group": key}))
    return out


def report(rep: Report) -> None:
    """``zero_shot.png``: bars per family and condition."""
    from lemon_pl.experiments.report import plot_bars

    plot_bars(rep.rows, rep.add("zero_shot.png"), "test relative L2, no adaptation")
