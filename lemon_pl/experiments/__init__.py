"""Experiment pipelines: the package turns each experiment into resumable ``lemon-pl`` steps
and their finished test runs into a report (``lemon-pl experiment NAME --scale tiny|cpu|paper``,
``lemon_pl.cli.experiment``).

Modules:

    runner           the resumable step engine (:class:`Step`, :func:`run_steps`): steps declare
                     typed outputs (``ckpt``, ``metrics``, ``summary``, ``overlay/NAME``, ...)
                     that later steps reference as ``{KIND:ID[/NAME]}``; analysis steps are
                     Python functions given a context; it runs each command step through the
                     entry point it is given and imports no CLI (the CLI passes its composer)
    common           the scales, the configs/ folder, experiment config files, :class:`Builder`
                     (the one step builder of every experiment)
    report           tables, curves and generic plots; ``write_report`` calls the experiment's hook
    scaling          error after fine-tuning vs the number of pretraining families
    zero_shot        the pretrained network tested without adaptation
    init_comparison  scratch / pretrained / LeMON / LeMONS / pretrained+LeMONS per model
    finetune         full vs decoder vs LoRA fine-tuning at several N, with their costs
    hyper_lr_pinn    Hyper-LR-PINN beside PINN, PINN-P, S2S, Naive-LR-PINN, curriculum, MAML and
                     Reptile (the paper's Tables 2 and 4, many-query, cost, Helmholtz)
    multilevel       multi-level fine-tuning vs single levels at equal generation budgets; the
                     budget plan as steps (pilot fits, then the plan analysis whose overlays the
                     fits read)

An experiment is one module of this package with ``NAME`` (its CLI name), ``steps(sc) ->
list[Step]`` (``sc``: the merged settings of one scale of ``configs/experiments/<NAME>.yaml``,
``-`` written ``_``), optionally ``report(rep)`` (summary lines and its own figures, see
:class:`lemon_pl.experiments.report.Report`) and ``ORDER`` (its place in the list). Such modules
are found when this package is imported (:data:`EXPERIMENTS`): adding an experiment is adding
its module and its YAML file.
"""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from types import ModuleType

from lemon_pl.experiments.common import SCALES, ConfigsNotFound, config_file, configs_dir, load_scale
from lemon_pl.experiments.runner import Step, StepFailed, run_steps

#: the modules of this package that are no experiment (not imported to look for one)
SHARED = ("common", "report", "runner")


def _discover() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in SHARED or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if not (isinstance(getattr(module, "NAME", None), str) and callable(getattr(module, "steps", None))):
            continue
        if module.NAME in found:
            raise RuntimeError(f"experiment name {module.NAME!r} is declared by {found[module.NAME].__name__} "
                               f"and {module.__name__}")
        found[module.NAME] = module
    return dict(sorted(found.items(), key=lambda kv: (getattr(kv[1], "ORDER", 1000), kv[0])))


#: experiment name -> its module, in the order ``lemon-pl experiment`` lists them
EXPERIMENTS: dict[str, ModuleType] = _discover()


def build_steps(name: str, scale: str, config: str | Path | None = None, data_root: str | None = None,
                configs: str | Path | None = None) -> list[Step]:
    """The steps of experiment ``name`` at ``scale``: settings from ``config`` (default:
    ``<configs>/experiments/<name>.yaml``), stage configs from the ``configs/`` folder
    (:func:`configs_dir`: ``configs``, else ``$LEMON_CONFIGS``, else ``./configs``)."""
    if name not in EXPERIMENTS:
        raise KeyError(f"unknown experiment '{name}'; choose one of {', '.join(EXPERIMENTS)}")
    folder = configs_dir(configs)
    sc = load_scale(config or config_file(name, folder), scale)
    if data_root is not None:
        sc["data_root"] = data_root
    sc["configs"] = str(folder)
    return EXPERIMENTS[name].steps(sc)


__all__ = ["EXPERIMENTS", "SCALES", "ConfigsNotFound", "Step", "StepFailed", "build_steps", "config_file",
           "configs_dir", "load_scale", "run_steps"]
