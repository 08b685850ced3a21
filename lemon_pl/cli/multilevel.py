"""``lemon-pl multilevel plan``: the parser and the order of work; the plan itself is
``lemon_pl.multilevel.plan`` (its docstring is this command's ``--help``).

    lemon-pl multilevel plan --config configs/multilevel/burgers.yaml --budget 600
    lemon-pl multilevel plan --config configs/multilevel/burgers.yaml --budget 20,60,200 --out-dir plans/

Every option and config is checked before the first pilot fit (one ``lemon-pl multilevel: error:``
line, exit 2, nothing written); the config is composed by :func:`lemon_pl.cli.lightning.compose`
(the composition of ``lemon-pl fit --config``), the pilot fits run through :func:`lemon_pl.cli.main`,
the in-process entry point the experiment steps run through, and are reused from ``--pilot-dir``
by a re-run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from lemon_pl.cli.args import OneLineArgumentParser


def build_parser() -> argparse.ArgumentParser:
    from lemon_pl.multilevel import plan as pl

    p = OneLineArgumentParser(prog="lemon-pl multilevel", description="Multi-level fine-tuning tools.",
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, parser_class=OneLineArgumentParser)
    q = sub.add_parser("plan", help="samples per level for a generation budget", description=pl.__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("--config", action="append", required=True, metavar="YAML",
                   help="the multi-level stage config (and overlays, repeatable)")
    q.add_argument("--budget", required=True,
                   help=f"generation budget(s) in measured seconds, comma-separated (each > 0, at most "
                        f"{pl.MAX_BUDGET:g})")
    q.add_argument("--budget-unit", default="s", choices=("s", "fine"),
                   help="s: seconds; fine: multiples of the measured cost of one finest-level sample")
    q.add_argument("--pilot", default="64,256,1024",
                   help=f"sample counts of the pilot fits of every level (3 to {pl.MAX_PILOTS} distinct whole numbers)")
    q.add_argument("--pilot-dir", default=None, help="pilot runs (default: runs/multilevel_plan/<family>)")
    q.add_argument("--root", default=None, help="override data.init_args.root")
    q.add_argument("--seed", type=int, default=0, help="seed of the pilot fits")
    q.add_argument("--out", default=None, help="write the allocator's overlay here (one budget)")
    q.add_argument("--out-dir", default=None, help="write every method's overlay per budget and plan.json here")
    return p


def make_plan(configs: Sequence[str], budgets: Sequence[float], pilot: Sequence[int], pilot_dir: Path | None,
              seed: int = 0, root: str | None = None, extra: Sequence[str] = (), log=print, unit: str = "s",
              check_config: bool = True, entry: Callable | None = None) -> dict[str, Any]:
    """Compose the config, check everything (``plan.prepare``), run the pilot fits (reused when
    finished) through ``entry`` (default :func:`lemon_pl.cli.main`) with ``pilot_dir`` locked, and
    assemble the plan. ``pilot_dir`` None: ``runs/multilevel_plan/<family>``."""
    from lemon_pl.cli import main as lemon_pl_main
    from lemon_pl.cli.lightning import check_lightning_args, compose
    from lemon_pl.multilevel import plan as pl

    entry = lemon_pl_main if entry is None else entry
    d = pl.composed_settings(compose, configs, root)
    pilot_dir = Path(pilot_dir or Path("runs") / "multilevel_plan" / d["family"])

    def check(counts: list[list[int]]) -> str | None:  # the first pilot fit's config, built but not run
        first = [0] * len(d["levels"])
        first[0] = counts[0][0]
        return check_lightning_args(pl.pilot_argv(configs, d, first, "check", pilot_dir, seed, extra))

    prep = pl.prepare(d, budgets, pilot, pilot_dir, unit, check if check_config else None)
    lock = pl.lock_pilots(pilot_dir)
    try:
        pilots = pl.run_pilots(configs, d, pilot, prep["available"], pilot_dir, seed, extra, log, entry)
        counts = [[n for n, _ in pilots[l]] for l in sorted(pilots)]
        chain = pl.chain_counts(counts)
        chain_err = pl.pilot_fit(configs, d, pl.chain_n(chain, len(counts)), pl.chain_name(chain, seed), pilot_dir,
                                 seed, extra, log, entry)
    finally:
        lock.close()
    return pl.assemble_plan(prep, budgets, pilots, chain, chain_err, unit)


def main(argv: Sequence[str] | None = None) -> int:
    from lemon_pl.core.errors import CheckpointWriteError, one_line
    from lemon_pl.data.io import DataFileError
    from lemon_pl.multilevel import plan as pl

    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    err = lambda msg: print(f"lemon-pl multilevel: error: {' '.join(str(msg).split())}", file=sys.stderr)  # noqa: E731
    try:  # everything that can fail before the first pilot fit
        budgets = pl.parse_budgets(args.budget)
        pilot = pl.parse_pilots(args.pilot)
        if not 0 <= args.seed < 2 ** 32:
            raise pl.PlanError(f"--seed must be between 0 and {2 ** 32 - 1}, got {args.seed}")
        if args.out and len(budgets) != 1:
            raise pl.PlanError("--out writes one overlay: give one --budget (or use --out-dir)")
        out_file = Path(args.out) if args.out else None
        out_dir = Path(args.out_dir) if args.out_dir else None
        if out_file is not None:
            pl.check_writable(out_file, "--out", folder=False)
        if out_dir is not None:
            pl.check_writable(out_dir, "--out-dir", folder=True)
        plan = make_plan(args.config, budgets, pilot, Path(args.pilot_dir) if args.pilot_dir else None, args.seed,
                         args.root, log=lambda m: print(m, file=sys.stderr, flush=True), unit=args.budget_unit)
    except (pl.PlanError, ValueError, KeyError, OSError, DataFileError) as e:
        err(one_line(e))
        return 2
    pl.print_plan(plan)
    try:
        paths = pl.write_plan(plan, out_file, out_dir)
    except (CheckpointWriteError, OSError) as e:
        err(f"{one_line(e)} (the plan above was not saved; free some space or choose another --out/--out-dir)")
        return 2
    if paths:
        print("wrote " + ", ".join(str(p) for p in paths))
    return 0
