"""``lemon-pl generate``: the command line of the data engine (``lemon_pl.data.generate``) and of
the multi-level map families (``lemon_pl.multilevel.generate``), which it dispatches per level.

Kept out of both packages so that neither imports the other's writer: the engine's writer is
shared by the map writer, and this module is the one place that knows both."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

from lemon_pl.data.families import UnknownFamilyError, get_family, resolve_families
from lemon_pl.data.generate import (DEFAULT_CHUNK, DEFAULT_GAMMA, DEFAULT_SEED, DEFAULT_SOLVER, DEVICES, PRESETS,
                                    SOLVER_DTYPES, SOLVERS, GenerationError, SplitReport,
                                    bytes_to_write, check_disk_space, check_gamma, check_int,
                                    check_resources, check_root_writable, check_solver, generate, plan, range_text,
                                    write_error_message)
from lemon_pl.core.errors import one_line

#: most grids one --levels may list
MAX_LEVELS = 16


def build_parser() -> argparse.ArgumentParser:
    from lemon_pl.cli.args import OneLineArgumentParser

    p = OneLineArgumentParser(
        prog="lemon-pl generate",
        description="Generate operator-family datasets as ROOT/<family>/<split>.h5.",
        epilog="Every number is checked against the range its help gives, and the memory a solve needs and the disk "
               "space the files need are estimated, before anything is written; a bad value or a run that "
               "cannot fit is refused in one line naming the flag (exit 2).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--root", default="data", help="output folder")
    p.add_argument("--preset", default="default", choices=list(PRESETS),
                   help="; ".join(f"{k}: {v.description}" for k, v in PRESETS.items()))
    p.add_argument("--families", default="all",
                   help="comma-separated family names, or all / pretrain / finetune (groups may be mixed with "
                        "names); an empty list is an error")
    p.add_argument("--splits", default="train,val,test", help="comma-separated standard splits")
    p.add_argument("--split-name", default=None,
                   help="generate one extra split with this name (e.g. ood with --gamma 0.3)")
    p.add_argument("--n-operators", default=None,
                   help="override the preset's operators per split (with --levels: one value, or one per level; "
                        f"{range_text('--n-operators')})")
    p.add_argument("--k", type=int, default=None,
                   help=f"override the preset's trajectories per operator ({range_text('--k')})")
    p.add_argument("--nx", type=int, default=128, help=f"grid points (even, {range_text('--nx')})")
    p.add_argument("--levels", default=None,
                   help="multi-level data: comma-separated grids (e.g. 32,64,128; each "
                        f"{range_text('--levels')}, at most {MAX_LEVELS}, each dividing the finest), "
                        "one root ROOT/n<grid> each; "
                        "inputs are drawn on the finest grid and restricted, the solver's seconds per sample "
                        "are recorded in every file")
    p.add_argument("--restriction", default=None,
                   help="how inputs reach a coarser level (default per family: average for the data engine's "
                        "cells, sample for Schrödinger's points, harmonic for elliptic coefficients)")
    p.add_argument("--n-samples", default=None,
                   help="samples per split of the map families (schrodinger, rough_elliptic); default by preset; "
                        f"with --levels one value, or one per level ({range_text('--n-samples')})")
    p.add_argument("--nt", type=int, default=64, help=f"stored frames per trajectory ({range_text('--nt')})")
    p.add_argument("--gamma", type=float, default=DEFAULT_GAMMA,
                   help="parameter range: q_c*(1 +- gamma), a number in [0, 1)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed ({range_text('--seed')})")
    p.add_argument("--workers", type=int, default=1,
                   help=f"worker processes (output does not depend on it; {range_text('--workers')})")
    p.add_argument("--solver", default=DEFAULT_SOLVER, choices=list(SOLVERS),
                   help="torch: the batched torch solvers (CPU or CUDA) where a family has one, numpy elsewhere; "
                        "numpy: the numpy/scipy solvers for every family")
    p.add_argument("--device", default="cpu", metavar="{" + ",".join(DEVICES) + "}",
                   help="where the torch solvers run (cuda needs --solver torch and a CUDA device; pick one GPU "
                        "of several with CUDA_VISIBLE_DEVICES)")
    p.add_argument("--solver-dtype", default="float64", choices=list(SOLVER_DTYPES),
                   help="working precision of the torch solvers (stored data is float32 either way)")
    p.add_argument("--solver-compile", action="store_true",
                   help="run the torch solvers' steps through torch.compile (fused kernels, several times faster "
                        "on CPU; tens of seconds of compilation per family and dtype in a fresh process)")
    p.add_argument("--chunk", type=int, default=None,
                   help="operators solved together by the torch solvers (fixed chunks of consecutive operators; "
                        f"default {DEFAULT_CHUNK['cpu']} on cpu, {DEFAULT_CHUNK['cuda']} on cuda; "
                        f"{range_text('--chunk')})")
    p.add_argument("--overwrite", action="store_true", help="regenerate files that already exist")
    p.add_argument("--skip-space-check", action="store_true",
                   help="do not refuse a run whose files (estimated before anything is written) exceed the free "
                        "space of --root's disk, e.g. on a compressing file system; a disk that fills up still "
                        "stops the run with one line and a .partial file the same command resumes")
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
        _check_arguments(args)
        reports = _generate_levels(args, splits, "lemon-pl generate " + " ".join(shlex.quote(a) for a in argv))
    except (GenerationError, UnknownFamilyError, ValueError) as err:
        print(f"lemon-pl generate: error: {one_line(err)}", file=sys.stderr)
        return 2
    except OSError as err:  # anything not already named by a file: still one line
        print(f"lemon-pl generate: error: {write_error_message(err, Path(args.root))}", file=sys.stderr)
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


def _check_arguments(args) -> None:
    """Every number and the device, in one line naming the flag, before anything is planned or written."""
    for flag, value in (("--nx", args.nx), ("--nt", args.nt), ("--seed", args.seed), ("--workers", args.workers),
                        ("--k", args.k), ("--chunk", args.chunk)):
        if value is not None:
            check_int(flag, value)
    check_gamma(args.gamma)
    device = args.device
    if device not in DEVICES:
        m = re.fullmatch(r"cuda:(\d+)", device.strip())
        hint = (f"; choose the GPU with CUDA_VISIBLE_DEVICES={m.group(1)} and --device cuda" if m
                else f" (choose one of {', '.join(DEVICES)})")
        raise GenerationError(f"--device must be {' or '.join(DEVICES)}, got {device!r}{hint}")
    check_solver(args.solver, args.device, args.solver_dtype, args.chunk)  # cuda: is one there?
    check_root_writable(args.root)


def _parse_levels(text: str | None, nx: int) -> list[int]:
    if text is None:
        return [nx]
    try:
        levels = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise GenerationError(f"--levels must be comma-separated integers, got {text!r}") from None
    if not levels or levels[0] < 8:
        raise GenerationError(f"--levels needs grids of at least 8 points, got {text!r}")
    if len(levels) > MAX_LEVELS:
        raise GenerationError(f"--levels lists {len(levels)} grids; at most {MAX_LEVELS}")
    for n in levels:
        check_int("--levels", n)
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
    for v in vals:
        check_int(flag, v)
    return vals


def _generate_levels(args, splits: list[str], command: str) -> list[SplitReport]:
    """Every requested family at every level (one root per level with ``--levels``)."""
    from lemon_pl.multilevel.families import MAP_FAMILIES
    from lemon_pl.multilevel.generate import check_map_space, generate_maps, map_specs

    levels = _parse_levels(args.levels, args.nx)
    n_ops = _per_level(args.n_operators, "--n-operators", levels)
    n_maps = _per_level(args.n_samples, "--n-samples", levels)
    names = [n.strip() for n in args.families.split(",") if n.strip()]
    if not names:
        raise GenerationError(f"--families {args.families!r} names no family; give e.g. --families heat,kdv "
                              "or all / pretrain / finetune")
    maps = [n for n in names if n in MAP_FAMILIES]
    engine_names = [n for n in names if n not in MAP_FAMILIES]
    if maps and args.split_name is not None:
        raise GenerationError(f"--split-name is not supported for the map families {maps}")
    try:  # groups (all / pretrain / finetune) expand here; an unknown name fails before anything is written
        engine = resolve_families(engine_names) if engine_names else []
    except UnknownFamilyError as err:
        raise GenerationError(f"--families: {one_line(err)}") from None
    multi = args.levels is not None
    restriction = args.restriction or "average"
    roots = [Path(args.root) / f"n{n}" if multi else Path(args.root) for n in levels]
    # every level planned, its memory checked and the disk space of all files (operator and map
    # families of every level together) estimated, before the first file is written
    need = 0
    if engine:
        targets = [(root, plan(root, args.preset, engine, splits, args.split_name, ops, args.k, n, args.nt,
                               args.gamma, args.seed, levels[-1] if multi else 0, restriction,
                               solver=args.solver, device=args.device, solver_dtype=args.solver_dtype,
                               chunk=args.chunk, solver_compile=args.solver_compile))
                   for root, n, ops in zip(roots, levels, n_ops)]
        check_resources(targets, args.workers, args.overwrite, check_space=False)
        need = sum(bytes_to_write(r, sp, args.overwrite) for r, sp in targets)
    if not args.skip_space_check:
        if maps:
            map_targets = [(root, [s for fam in maps for s in map_specs(fam, args.preset, splits, n, levels[-1],
                                                                        args.seed, maps_n, args.restriction)])
                           for root, n, maps_n in zip(roots, levels, n_maps)]
            check_map_space(map_targets, args.overwrite, command, also_needed=need)
        elif engine:
            check_disk_space(roots, need)
    reports: list[SplitReport] = []
    for root, n, ops, maps_n in zip(roots, levels, n_ops, n_maps):
        if engine:
            reports += generate(root, args.preset, engine, splits, args.split_name, ops, args.k,
                                n, args.nt, args.gamma, args.seed, args.workers, args.overwrite,
                                not args.no_progress, command=command, ic_nx=levels[-1] if multi else 0,
                                restriction=restriction, solver=args.solver, device=args.device,
                                solver_dtype=args.solver_dtype, chunk=args.chunk, solver_compile=args.solver_compile,
                                check_space=not args.skip_space_check)
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
