"""``lemon-pl experiment NAME --scale tiny|cpu|paper``: run an experiment pipeline, then report.

    lemon-pl experiment scaling --scale cpu                      # results/scaling/cpu/{table.md,results.csv,*.png}
    lemon-pl experiment init-comparison --scale cpu              # scratch/pretrained/LeMON/LeMONS x Prose/DeepONet/FNO
    lemon-pl experiment finetune --scale cpu                     # full vs LoRA ranks vs decoder at N = 20, 50, 100
    lemon-pl experiment zero-shot --scale paper --config configs/trainer/ddp.yaml
    lemon-pl experiment hyper-lr-pinn --scale cpu                # Hyper-LR-PINN vs PINN baselines (Tables 2, 4)
    lemon-pl experiment multilevel --scale cpu                   # multi-level fine-tuning vs single levels per budget
    lemon-pl experiment scaling --scale cpu --dry-run            # list the steps (done / stale / todo)

Re-running the same command skips completed steps (a step whose arguments changed runs again,
with everything after it that needs it); the report is rewritten from all of them.

The stage and experiment configs come from the configs/ folder: --configs DIR, else the folder
named by LEMON_CONFIGS, else ./configs (run from a checkout of the repository, or from a folder
holding a copy of its configs/).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from lemon_pl.cli.args import OneLineArgumentParser

from lemon_pl.experiments import EXPERIMENTS, SCALES, build_steps


def build_parser() -> argparse.ArgumentParser:
    p = OneLineArgumentParser(prog="lemon-pl experiment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", help="one of: " + ", ".join(EXPERIMENTS))
    p.add_argument("--scale", default="cpu", choices=SCALES, help="tiny (tests), cpu (<= 1 h on 2 cores), paper")
    p.add_argument("--config", action="append", default=[], metavar="YAML",
                   help="config overlay added to every fit/test step (repeatable), e.g. configs/trainer/ddp.yaml")
    p.add_argument("--out", default="results", help="results root; the experiment writes to OUT/NAME/SCALE")
    p.add_argument("--experiment-config", default=None, metavar="YAML",
                   help="experiment settings (default: CONFIGS/experiments/NAME.yaml)")
    p.add_argument("--configs", default=None, metavar="DIR",
                   help="lemon-pl's configs/ folder (default: $LEMON_CONFIGS, else ./configs)")
    p.add_argument("--data-root", default=None, help="override the data root of the scale")
    p.add_argument("--dry-run", action="store_true", help="print the steps and exit")
    return p


def _check_step_configs(steps, overlays: Sequence[str]) -> None:
    """Every YAML file the steps will read (``--config`` of every step, the overlays, and what
    they compose through ``defaults:``), read now: a broken one is refused in one line before
    the first step runs. Files that earlier steps write (``{exp_dir}/...``) are checked by
    their step."""
    from lemon_pl.core.yamlio import config_chain

    seen: set[str] = set()
    for path in overlays:
        if path not in seen:
            seen.add(path)
            config_chain(path, "config overlay")
    for step in steps:
        for flag, value in zip(step.argv, step.argv[1:]):
            if flag in ("--config", "-c") and "{" not in value and value not in seen:
                seen.add(value)
                config_chain(value, "config file")


def main(argv: Sequence[str]) -> int:
    import os

    from lemon_pl.core.errors import CheckpointWriteError

    args = build_parser().parse_args(list(argv))
    err = lambda msg: print(f"lemon-pl experiment: error: {' '.join(str(msg).split())}", file=sys.stderr)  # noqa: E731
    overlays = [str(Path(c).resolve()) for c in args.config]
    missing = [c for c in overlays if not Path(c).exists()]
    if missing:
        err(f"config overlay {missing[0]} does not exist")
        return 2
    try:
        steps = build_steps(args.name, args.scale, args.experiment_config, args.data_root, args.configs)
        _check_step_configs(steps, overlays)
    except (KeyError, ValueError, FileNotFoundError) as e:
        err(e.args[0] if isinstance(e, KeyError) and e.args else str(e))
        return 2
    except (TypeError, AttributeError) as e:  # a setting of the wrong kind (a number where a list is due, ...)
        if os.environ.get("LEMON_TRACEBACK"):
            raise
        source = args.experiment_config or f"the {args.name} experiment config"
        err(f"{source}: the settings of scale '{args.scale}' cannot be used ({type(e).__name__}: {e})")
        return 2
    exp_dir = Path(args.out) / args.name / args.scale
    if not args.dry_run:  # the results folder takes files: checked before any step runs
        from lemon_pl.core.resources import cannot_write_in

        base = next((p for p in (exp_dir, *exp_dir.parents) if p.exists()), Path("."))
        why = f"{base} is a file, not a folder" if not base.is_dir() else cannot_write_in(base)
        if why is not None:
            err(f"--out {args.out}: cannot write the results into {base} ({why})" if base.is_dir()
                else f"--out {args.out}: {why}")
            return 2

    from lemon_pl.experiments.runner import ExperimentLocked, StepFailed, describe, global_rank, run_steps

    if args.dry_run:
        print(f"{args.name} ({args.scale}): {len(steps)} steps in {exp_dir}")
        print("\n".join(describe(steps, exp_dir, overlays)))
        return 0
    from lemon_pl.cli import main as lemon_pl_main  # each step is one `lemon-pl ...` command, run in-process
    from lemon_pl.cli.lightning import compose  # analysis steps compose stage configs as `lemon-pl fit` does

    try:
        run_steps(steps, exp_dir, overlays, lemon_pl_main,
                  log=lambda m: print(f"experiment {args.name}: {m}", flush=True), tools={"compose": compose})
    except ExperimentLocked as e:
        err(str(e))
        return 2
    except StepFailed as e:
        err(f"{e}; completed steps are kept in {exp_dir / 'steps'}, re-run the same command to resume")
        return 1
    except OSError as e:  # a step's record could not be written (disk full, read-only folder): one line
        err(f"{e}; completed steps are kept in {exp_dir / 'steps'}, re-run the same command to resume")
        return 2
    from lemon_pl.experiments.report import write_report

    if global_rank() != 0:  # multi-process launch: rank 0 writes the report
        return 0
    try:
        paths = write_report(args.name, exp_dir)
    except (CheckpointWriteError, OSError, ValueError) as e:
        err(str(e))
        return 2
    print(f"experiment {args.name}: wrote " + ", ".join(str(p) for p in paths))
    return 0
