"""Class paths of earlier lemon-pl versions, read as today's.

Issue 23 moved the stages and the shared machinery: ``lemon_pl.modules.X`` (operator stages) to
``lemon_pl.operators.X``, ``lemon_pl.modules.pinn`` to ``lemon_pl.pinn.stages``,
``lemon_pl.modules.multilevel`` to ``lemon_pl.multilevel.stage``, the callbacks, metrics and
optimiser helpers of ``modules`` and the top-level helpers (``checkpointing``, ``loggers``, ...)
into ``lemon_pl.core``. A run folder written before the move keeps the old names in its
``config.yaml``; the CLI translates every ``class_path`` of a config it reads (``--config`` files
and what they compose, the sections :func:`lemon_pl.cli.lightning.build` is given), so ``lemon-pl
test --config old/config.yaml``, resuming with ``--ckpt_path`` and ``lemon-pl predict`` keep working
on such runs. Nothing else reads class paths.
"""

from __future__ import annotations

from typing import Any

#: old class path -> new, for the names the old ``lemon_pl.modules`` package exported
MOVED_NAMES = {
    "lemon_pl.modules.Stage": "lemon_pl.core.stage.Stage",
    "lemon_pl.modules.base.Stage": "lemon_pl.core.stage.Stage",
    "lemon_pl.modules.OperatorModule": "lemon_pl.operators.base.OperatorModule",
    "lemon_pl.modules.PretrainModule": "lemon_pl.operators.pretrain.PretrainModule",
    "lemon_pl.modules.MetaModule": "lemon_pl.operators.meta.MetaModule",
    "lemon_pl.modules.FinetuneModule": "lemon_pl.operators.finetune.FinetuneModule",
    "lemon_pl.modules.MultilevelRegression": "lemon_pl.multilevel.stage.MultilevelRegression",
    "lemon_pl.modules.PINNModule": "lemon_pl.pinn.stages.PINNModule",
    "lemon_pl.modules.HyperLRPINNAdapt": "lemon_pl.pinn.stages.HyperLRPINNAdapt",
    "lemon_pl.modules.MetaPINNModule": "lemon_pl.pinn.stages.MetaPINNModule",
    "lemon_pl.modules.TimeMarchingPINN": "lemon_pl.pinn.stages.TimeMarchingPINN",
}

#: old module -> new module (a class path ``OLD.Name`` becomes ``NEW.Name``)
MOVED_MODULES = {
    "lemon_pl.modules.base": "lemon_pl.operators.base",
    "lemon_pl.modules.pretrain": "lemon_pl.operators.pretrain",
    "lemon_pl.modules.meta": "lemon_pl.operators.meta",
    "lemon_pl.modules.finetune": "lemon_pl.operators.finetune",
    "lemon_pl.modules.pinn": "lemon_pl.pinn.stages",
    "lemon_pl.modules.multilevel": "lemon_pl.multilevel.stage",
    "lemon_pl.modules.callbacks": "lemon_pl.core.callbacks",
    "lemon_pl.modules.metrics": "lemon_pl.core.metrics",
    "lemon_pl.modules.optim": "lemon_pl.core.optim",
    "lemon_pl.plotting": "lemon_pl.core.figures",
    **{f"lemon_pl.{m}": f"lemon_pl.core.{m}" for m in (
        "checkpointing", "devices", "errors", "expressions", "locking", "loggers", "progress", "resources", "yamlio")},
}


def translate_class_path(path: str) -> str:
    """Today's class path of ``path`` (``path`` itself if it did not move)."""
    if not isinstance(path, str):
        return path
    if path in MOVED_NAMES:
        return MOVED_NAMES[path]
    module, _, name = path.rpartition(".")
    return f"{MOVED_MODULES[module]}.{name}" if module in MOVED_MODULES else path


#: the physics-informed problems earlier configs named (``data.init_args.problem: cdr``)
OLD_PROBLEMS = {"cdr": "lemon_pl.pinn.problems.ConvectionDiffusionReaction",
                "helmholtz": "lemon_pl.pinn.problems.Helmholtz2D"}
PINN_DATA = "lemon_pl.pinn.collocation.CollocationDataModule"
PINN_STAGES = {f"lemon_pl.pinn.stages.{n}" for n in ("PINNModule", "HyperLRPINNAdapt", "MetaPINNModule",
                                                     "TimeMarchingPINN")}
#: the loss weights of earlier PINN stages -> the condition they weighted
OLD_WEIGHTS = {"weight_residual": "residual", "weight_ic": "ic", "weight_bc": "bc"}


def _pinn_init_args(class_path: str, args: dict[str, Any], changed: list[tuple[str, str]]) -> dict[str, Any]:
    """Earlier physics-informed settings as today's: a problem named by a string (plus
    ``problem_args``) becomes ``{class_path, init_args}``; the stages' own ``problem`` /
    ``problem_args`` go (the problem is linked from the data); ``weight_residual/ic/bc`` become
    ``weights`` by condition (1.0, the old default, is every problem's own weight and is left out)."""
    args = dict(args)
    if class_path == PINN_DATA and isinstance(args.get("problem"), str) and args["problem"] in OLD_PROBLEMS:
        old = args["problem"]
        args["problem"] = {"class_path": OLD_PROBLEMS[old], "init_args": dict(args.pop("problem_args", None) or {})}
        changed.append((f"problem: {old}", f"problem: {{class_path: {OLD_PROBLEMS[old]}}}"))
    if class_path in PINN_STAGES:
        if isinstance(args.get("problem"), str):
            args.pop("problem")  # linked from the data module now
        args.pop("problem_args", None)
        weights = {OLD_WEIGHTS[k]: float(args.pop(k)) for k in list(args) if k in OLD_WEIGHTS}
        kept = {k: v for k, v in weights.items() if v != 1.0}
        if weights:
            args["weights"] = {**kept, **dict(args.get("weights") or {})}
            if not args["weights"]:
                args.pop("weights")
            changed.append(("weight_residual/ic/bc", f"weights: {kept}"))
    return args


def translate_config(tree: Any) -> tuple[Any, list[tuple[str, str]]]:
    """``tree`` (a config's mapping, or any part of it) with every ``class_path`` value translated
    (and earlier physics-informed settings, :func:`_pinn_init_args`), and the ``(old, new)`` pairs
    that changed. ``tree`` itself is not modified."""
    changed: list[tuple[str, str]] = []

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "class_path" and isinstance(v, str):
                    new = translate_class_path(v)
                    if new != v:
                        changed.append((v, new))
                    out[k] = new
                else:
                    out[k] = walk(v)
            if isinstance(out.get("class_path"), str) and isinstance(out.get("init_args"), dict):
                out["init_args"] = _pinn_init_args(out["class_path"], out["init_args"], changed)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(tree), changed


def note(source: str, changed: list[tuple[str, str]]) -> str:
    """The one line that says which old names ``source`` held."""
    pairs = list(dict.fromkeys(changed))
    shown = ", ".join(f"{old} -> {new}" for old, new in pairs[:3]) + (f" (+{len(pairs) - 3} more)" if len(pairs) > 3
                                                                       else "")
    return f"{source} names classes of an earlier lemon-pl, read as today's: {shown}"
