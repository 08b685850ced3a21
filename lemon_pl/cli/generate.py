"""``lemon-pl generate``: the command line of the data engine (``lemon_pl.data.generate``) and of
the multi-level map families (``lemon_pl.multilevel.generate``), which it dispatches per level.

Kept out of both packages so that neither imports the other's writer: the engine's writer is
shared by the map writer, and this module is the one place that knows both."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

from lemon_pl.data.families import UnknownFamilyError, get_family, resolve_families
from lemon_pl.data.generate import (DEFAULT_CHUNK, DEFAULT_GAMMA, DEFAULT_SEED, DEFAULT_SOLVER, DEVICES, PRESETS,
                                    SOLVER_DTYPES, SOLVERS, GenerationError, SplitReport, _one_line,
                                    _os_error_message, generate)


def build_parser() -> argparse.ArgumentParser:
    from lemon_pl.cli.args import OneLineArgumentParser

    p = OneLineArgumentParser(
        prog="lemon-pl generate",
        description="Generate operator-family datasets as ROOT/<family>/<split>.h5.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--root", default="data", help="output folder")
    p.add_argument("--preset", default="default", choices=list(PRESETS),
                   help="; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()))
    p.add_argument("--families", default="all",
                   help="comma-separated family names, or all / pretrain / finetune")
    p.add_argument("--splits", default="train,val,test", help="comma-separated standard splits")
    p.add_argument("--split-name", default=None,
                   help="generate one extra split with this name (e.g. ood with --gamma 0.3)")
    p.add_argument("--n-operators", default=None,
                   help="override the preset's operators per split (with --levels: one value, or one per level)")
    p.add_argument("--k", type=int, default=None, help="override the preset's trajectories per operator")
    p.add_argument("--nx", type=int, default=128, help="grid points")
    p.add_argument("--levels", default=None,
                   help="multi-level data: comma-separated grids (e.g. 32,64,128), one root ROOT/n<grid> each; "
                        "inputs are drawn on the finest grid and restricted, the solver's seconds per sample "
                        "are recorded in every file")
    p.add_argument("--restriction", default=None,
                   help="how inputs reach a coarser level (default per family: average for the data engine's "
                        "cells, sample for Schrödinger's points, harmonic for elliptic coefficients)")
    p.add_argument("--n-samples", default=None,
                   help="samples per split of the map families (schrodinger, rough_elliptic); default by preset; "
                        "with --levels one value, or one per level")
    p.add_argument("--nt", type=int, default=64, help="stored frames per trajectory")
    p.add_argument("--gamma", type=float, default=DEFAULT_GAMMA, help="parameter range: q_c*(1 +- gamma)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--workers", type=int, default=1, help="worker processes (output does not depend on it)")
    p.add_argument("--solver", default=DEFAULT_SOLVER, choices=list(SOLVERS),
                   help="torch: the batched torch solvers (CPU or CUDA) where a family has one, numpy elsewhere; "
                        "numpy: the numpy/scipy solvers for every family")
    p.add_argument("--device", default="cpu", choices=list(DEVICES),
                   help="where the torch solvers run (cuda needs --solver torch and a CUDA device)")
    p.add_argument("--solver-dtype", default="float64", choices=list(SOLVER_DTYPES),
                   help="working precision of the torch solvers (stored data is float32 either way)")
    p.add_argument("--solver-compile", action="store_true",
                   help="run the torch solvers' steps through torch.compile (fused kernels, several times faster "
                        "on CPU; tens of seconds of compilation per family and dtype in a fresh process)")
    p.add_argument("--chunk", type=int, default=None,
                   help="operators solved together by the torch solvers (fixed chunks of consecutive operators; "
                        f"default {DEFAULT_CHUNK['cpu']} on cpu, {DEFAULT_CHUNK['cuda']} on cuda)")
    p.add_argument("--overwrite", action="store_true", help="regenerate files that already exist")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--list", action="store_true", help="list the families and exit")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.list:
        from lemon_pl.data.families import PRETRAIN_FAMILIES, list_families

        for name in list_families():
            fam = get_family(name)
            tag = "pretrain" if name in PRETRAIN_FAMILIES else "finetune"
            print(f"{name:34s} {tag:9s} t_f={fam.t_final:<4g} {fam.template}")
        from lemon_pl.multilevel.families import MAP_FAMILIES

        for name, mfam in MAP_FAMILIES.items():
            print(f"{name:34s} {'map':9s} {mfam.input_name} -> u: {mfam.description}")
        return 0
    t0 = time.perf_counter()
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    if not splits and args.split_name is None:
        print(f"lemon-pl generate: error: --splits {args.splits!r} names no split; give e.g. --splits train,val,test",
              file=sys.stderr)
        return 2
    try:
        reports = _generate_levels(args, splits, "lemon-pl generate " + " ".join(shlex.quote(a) for a in argv))
    except (GenerationError, UnknownFamilyError, ValueError) as err:
        print(f"lemon-pl generate: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # anything not already named by a file: still one line
        print(f"lemon-pl generate: error: {_os_error_message(err, Path(args.root))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lemon-pl generate: interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    n_new = sum(r.n_operators * r.k for r in reports if r.status != "skipped")
    n_skip = sum(1 for r in reports if r.status == "skipped")
    rejected = sum(max(r.rejected, 0) for r in reports)
    print(f"{len(reports)} files under {args.root}: {len(reports) - n_skip} generated "
          f"({n_new} trajectories, {rejected} blow-ups rejected and resampled), {n_skip} already complete; "
          f"{time.perf_counter() - t0:.1f} s")
    return 0


def _parse_levels(text: str | None, nx: int) -> list[int]:
    if text is None:
        return [nx]
    try:
        levels = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise GenerationError(f"--levels must be comma-separated integers, got {text!r}") from None
    if not levels or levels[0] < 8:
        raise GenerationError(f"--levels needs grids of at least 8 points, got {text!r}")
    bad = [n for n in levels if levels[-1] % n]
    if bad:
        raise GenerationError(f"--levels: the finest grid {levels[-1]} is not a multiple of {bad}")
    return levels


def _per_level(text: str | None, flag: str, levels: list[int]) -> list[int | None]:
    """``None`` / one count for every level / one count per level."""
    if text is None:
        return [None] * len(levels)
    try:
        vals = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise GenerationError(f"{flag} takes an integer or one per level, got {text!r}") from None
    if len(vals) == 1:
        vals = vals * len(levels)
    if len(vals) != len(levels):
        raise GenerationError(f"{flag} gives {len(vals)} counts for {len(levels)} levels {levels}")
    if any(v < 1 for v in vals):
        raise GenerationError(f"{flag} must be positive, got {text}")
    return vals


def _generate_levels(args, splits: list[str], command: str) -> list[SplitReport]:
    """Every requested family at every level (one root per level with ``--levels``)."""
    from lemon_pl.multilevel.families import MAP_FAMILIES
    from lemon_pl.multilevel.generate import generate_maps, map_specs

    levels = _parse_levels(args.levels, args.nx)
    n_ops = _per_level(args.n_operators, "--n-operators", levels)
    n_maps = _per_level(args.n_samples, "--n-samples", levels)
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    maps = [n for n in names if n in MAP_FAMILIES]
    engine = [n for n in names if n not in MAP_FAMILIES]
    if maps and args.split_name is not None:
        raise GenerationError(f"--split-name is not supported for the map families {maps}")
    if engine:
        resolve_families(engine)  # an unknown name fails before anything is written
    multi = args.levels is not None
    reports: list[SplitReport] = []
    for n, ops, maps_n in zip(levels, n_ops, n_maps):
        root = Path(args.root) / f"n{n}" if multi else Path(args.root)
        if engine:
            restriction = args.restriction or "average"
            reports += generate(root, args.preset, engine, splits, args.split_name, ops, args.k,
                                n, args.nt, args.gamma, args.seed, args.workers, args.overwrite,
                                not args.no_progress, command=command, ic_nx=levels[-1] if multi else 0,
                                restriction=restriction, solver=args.solver, device=args.device,
                                solver_dtype=args.solver_dtype, chunk=args.chunk, solver_compile=args.solver_compile)
        if maps:
            specs = [s for fam in maps for s in map_specs(fam, args.preset, splits, n, levels[-1], args.seed,
                                                          maps_n, args.restriction)]
            reports += generate_maps(root, specs, args.workers, args.overwrite, not args.no_progress, command)
    if multi:
        _print_costs(reports)
    return reports


def _print_costs(reports: Sequence[SplitReport]) -> None:
    """The measured solver cost per sample of every training file (read back from the files)."""
    import h5py

    for r in reports:
        if not r.path.endswith("train.h5"):
            continue
        with h5py.File(r.path, "r") as f:
            cost = float(f.attrs.get("seconds_per_sample", float("nan")))
        print(f"{r.path}: {1e3 * cost:.4g} ms per sample (measured solver time)")


__all__ = ["build_parser", "main"]
