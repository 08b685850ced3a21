"""Generate operator-family datasets into HDF5: ``lemon-pl generate``.

Layout: ``ROOT/<family>/<split>.h5``, one file per family and split (see ``lemon_pl.data.io``
for the datasets and attributes). The unit of work is one *operator* (one parameter draw and
its K trajectories). Every operator has its own seed, derived from
``SeedSequence(seed, spawn_key=(family, split, operator index))``, so the arrays are
bit-identical whatever the number of worker processes.

Splits are disjoint operator draws: ``val`` avoids the parameter tuples of ``train``,
``test`` those of both, and an extra split (``--split-name``) those of all three, as long as
the (quantised) parameter space has room; families with very few distinct operators
(porous_medium has three) share parameters across splits, and the count is recorded.

Files are written under ``<split>.h5.partial`` and renamed when complete; a re-run skips
complete files and resumes partial ones at the first unfinished operator.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from lemon_pl.data.families import Family, UnknownFamilyError, get_family, resolve_families
from lemon_pl.data.symbols import PAD_ID, pad_batch

GENERATOR_VERSION = "1.0"
STANDARD_SPLITS = ("train", "val", "test")
DEFAULT_SEED = 10086
DEFAULT_GAMMA = 0.1
MAX_IC_ROUNDS = 10  # like the reference: at most 10x the ICs before giving up on an operator
MAX_PARAM_TRIES = 64


class GenerationError(RuntimeError):
    """Data generation cannot proceed (bad arguments, unwritable root, failing operator)."""


@dataclass(frozen=True)
class Preset:
    n_operators: dict[str, int]
    k: int  # trajectories per operator
    description: str


PRESETS: dict[str, Preset] = {
    "tiny": Preset({"train": 4, "val": 2, "test": 2}, 12, "a few operators x 12 ICs: seconds, for tests"),
    "default": Preset({"train": 24, "val": 4, "test": 4}, 50, "24/4/4 operators x 50 ICs: minutes on 2 cores"),
    "paper": Preset({"train": 1024, "val": 16, "test": 80}, 50, "1,024 operators x 50 ICs as LeMON"),
}


@dataclass(frozen=True)
class SplitSpec:
    """Everything that determines the content of one file."""

    family: str
    split: str
    n_operators: int
    k: int
    nx: int = 128
    nt: int = 64
    gamma: float = DEFAULT_GAMMA
    seed: int = DEFAULT_SEED
    preset: str = "custom"
    # operator counts of the standard splits, which this split's parameters must avoid
    reserved: tuple[tuple[str, int, float], ...] = field(default=())

    def identity(self) -> dict:
        """Attributes that must match for an existing file to count as this split."""
        return {
            "family": self.family, "split": self.split, "n_operators": self.n_operators,
            "k": self.k, "nx": self.nx, "nt": self.nt, "gamma": float(self.gamma),
            "seed": self.seed, "generator_version": GENERATOR_VERSION,
        }


# ----------------------------------------------------------------------------- seeding


def _key(text: str) -> int:
    return zlib.crc32(text.encode())


def _rng(seed: int, *key: int | str) -> np.random.Generator:
    spawn = tuple(_key(k) if isinstance(k, str) else int(k) for k in key)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=spawn))


def plan_params(family: Family, seed: int, splits: Sequence[tuple[str, int, float]]) -> dict[str, tuple[np.ndarray, int]]:
    """Parameters for each ``(split, n_operators, gamma)``, in order, each avoiding earlier splits.

    Returns split -> (params (n, P), number of operators that had to reuse an earlier tuple).
    """
    used: set[tuple[float, ...]] = set()
    out = {}
    for split, n, gamma in splits:
        rng = _rng(seed, family.name, split, "params")
        rows, shared = [], 0
        for _ in range(n):
            for _attempt in range(MAX_PARAM_TRIES):
                row = tuple(family.params_array(family.sample_params(rng, gamma)))
                if row not in used:
                    break
            else:
                shared += 1
            rows.append(row)
        used.update(rows)
        out[split] = (np.array(rows, dtype=np.float64).reshape(n, len(family.params)), shared)
    return out


def generate_operator(family_name: str, params: np.ndarray, seed: int, split: str, index: int,
                      k: int, nx: int, nt: int) -> tuple[np.ndarray, int]:
    """Solve one operator: exactly ``k`` accepted trajectories (k, nt, nx) float32 + rejections."""
    fam = get_family(family_name)
    rng = _rng(seed, family_name, split, "ics", index)
    kept: list[np.ndarray] = []
    n_kept, rejected = 0, 0
    for _round in range(MAX_IC_ROUNDS):
        need = k - n_kept
        u0 = fam.sample_initial_conditions(rng, need, nx)
        with np.errstate(all="ignore"):
            u = fam.solve(params, u0, nt=nt)
        ok = fam.accept(u)
        rejected += int((~ok).sum())
        kept.append(u[ok])
        n_kept += int(ok.sum())
        if n_kept == k:
            return np.concatenate(kept).astype(np.float32), rejected
    raise GenerationError(
        f"{family_name} operator {index} of split {split!r} with parameters "
        f"{dict(zip(fam.param_names, params.tolist()))}: only {n_kept} of {k} trajectories stayed "
        f"finite and bounded after {MAX_IC_ROUNDS} rounds"
    )


def _worker(args):
    return args[-1], generate_operator(*args[:-1])


# ----------------------------------------------------------------------------- planning


def plan(root: str | os.PathLike, preset: str = "default", families: str | Sequence[str] | None = "all",
         splits: Sequence[str] = STANDARD_SPLITS, split_name: str | None = None,
         n_operators: int | None = None, k: int | None = None, nx: int = 128, nt: int = 64,
         gamma: float = DEFAULT_GAMMA, seed: int = DEFAULT_SEED) -> list[SplitSpec]:
    """Validate arguments and list the files to produce."""
    if preset not in PRESETS:
        raise GenerationError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    pre = PRESETS[preset]
    names = resolve_families(families)
    for label, value, low in (("nx", nx, 8), ("nt", nt, 2)):
        if value < low:
            raise GenerationError(f"--{label} must be at least {low}, got {value}")
    if n_operators is not None and n_operators < 1:
        raise GenerationError(f"--n-operators must be positive, got {n_operators}")
    if k is not None and k < 1:
        raise GenerationError(f"--k must be positive, got {k}")
    if not 0 <= gamma < 1:
        raise GenerationError(f"--gamma must lie in [0, 1), got {gamma}")
    if nx % 2:
        raise GenerationError(f"--nx must be even (spectral solvers), got {nx}")
    counts = dict(pre.n_operators)
    if split_name is not None:
        if split_name in STANDARD_SPLITS:
            raise GenerationError(f"--split-name {split_name!r} is a standard split; use --splits instead")
        if not split_name.replace("_", "").replace("-", "").isalnum():
            raise GenerationError(f"--split-name must be alphanumeric (with - or _), got {split_name!r}")
        wanted = [split_name]
        counts[split_name] = pre.n_operators["test"]
    else:
        wanted = list(splits)
        bad = [s for s in wanted if s not in STANDARD_SPLITS]
        if bad:
            raise GenerationError(f"unknown split(s) {bad}; standard splits are {STANDARD_SPLITS} "
                                  "(use --split-name for an extra split)")
    if n_operators is not None:
        for s in wanted:
            counts[s] = n_operators
    std_gamma = gamma if split_name is None else DEFAULT_GAMMA
    reserved = tuple((s, counts[s], std_gamma) for s in STANDARD_SPLITS)
    specs = []
    for fam in names:
        for s in wanted:
            specs.append(SplitSpec(fam, s, counts[s], k or pre.k, nx, nt, gamma, seed, preset,
                                   reserved=reserved if split_name else reserved[: STANDARD_SPLITS.index(s)]))
    _check_root(Path(root))
    return specs


def _check_root(root: Path) -> None:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise GenerationError(f"cannot create data root {str(root)!r}: {err.strerror}") from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise GenerationError(f"data root {str(root)!r} is not writable")


# ----------------------------------------------------------------------------- writing


@dataclass
class SplitReport:
    path: str
    status: str  # written | resumed | skipped
    n_operators: int
    k: int
    rejected: int
    shared_params: int
    seconds: float


def _operator_params(spec: SplitSpec) -> tuple[np.ndarray, int]:
    fam = get_family(spec.family)
    order = [*spec.reserved, (spec.split, spec.n_operators, spec.gamma)]
    return plan_params(fam, spec.seed, order)[spec.split]


def _create_partial(path: Path, spec: SplitSpec, params: np.ndarray, shared: int, command: str):
    import h5py

    fam = get_family(spec.family)
    toks, lens = pad_batch([fam.tokens(p) for p in params])
    f = h5py.File(path, "w")
    f.create_dataset("u", shape=(spec.n_operators, spec.k, spec.nt, spec.nx), dtype="f4",
                     chunks=(1, spec.k, spec.nt, spec.nx), fletcher32=True)
    f.create_dataset("params", data=params).attrs["param_names"] = list(fam.param_names)
    f.create_dataset("tokens", data=toks)
    f.create_dataset("token_len", data=lens)
    f.create_dataset("x", data=fam.x_grid(spec.nx))
    f.create_dataset("t", data=fam.t_grid(spec.nt))
    f.create_dataset("n_rejected", data=np.zeros(spec.n_operators, dtype=np.int32))
    f.create_dataset("op_done", data=np.zeros(spec.n_operators, dtype=bool))
    attrs = f.attrs
    for key, val in spec.identity().items():
        attrs[key] = val
    attrs.update({
        "preset": spec.preset, "equation_template": fam.template, "t_final": fam.t_final,
        "c_t": fam.c_t, "ic_type": fam.ic_type, "second_order": fam.second_order,
        "pad_id": PAD_ID, "n_shared_params": shared, "complete": False, "command": command,
        "time_convention": "t is physical time; stored (model) time = c_t * t in [0, 2)",
    })
    f.flush()
    return f


def _open_partial(path: Path, spec: SplitSpec):
    """Re-open a partial file if it belongs to ``spec`` and is readable, else None."""
    import h5py

    try:
        f = h5py.File(path, "r+")
        ident = {k: f.attrs[k] for k in spec.identity()}
        _ = f["op_done"][:]
    except Exception:  # corrupt, truncated or foreign partial file: start over
        try:
            f.close()
        except Exception:
            pass
        return None
    if not _same_identity(ident, spec.identity()):
        f.close()
        return None
    return f


def _same_identity(attrs: dict, ident: dict) -> bool:
    for key, val in ident.items():
        got = attrs.get(key)
        if isinstance(got, bytes):
            got = got.decode()
        if isinstance(val, float):
            if got is None or not np.isclose(float(got), val):
                return False
        elif str(got) != str(val):
            return False
    return True


def _existing_status(path: Path, spec: SplitSpec, overwrite: bool) -> str:
    """'missing', 'complete' or raise if a file with other settings is in the way."""
    from lemon_pl.data.io import DataFileError, read_attrs

    if not path.exists():
        return "missing"
    if overwrite:
        return "missing"
    try:
        attrs = read_attrs(path)
    except DataFileError as err:
        print(f"warning: {err}; regenerating it", file=sys.stderr)
        return "missing"
    if not _same_identity(attrs, spec.identity()):
        diff = [f"{k}={attrs.get(k)!r} (wanted {v!r})" for k, v in spec.identity().items()
                if not _same_identity({k: attrs.get(k)}, {k: v})]
        raise GenerationError(f"{path} exists with different settings: {', '.join(diff)}; "
                              "pass --overwrite to replace it or use another --root")
    return "complete"


def generate(root: str | os.PathLike, preset: str = "default", families: str | Sequence[str] | None = "all",
             splits: Sequence[str] = STANDARD_SPLITS, split_name: str | None = None,
             n_operators: int | None = None, k: int | None = None, nx: int = 128, nt: int = 64,
             gamma: float = DEFAULT_GAMMA, seed: int = DEFAULT_SEED, workers: int = 1,
             overwrite: bool = False, progress: bool = True, command: str = "") -> list[SplitReport]:
    """Generate (or complete) the requested files; returns one report per file."""
    if workers < 1:
        raise GenerationError(f"--workers must be at least 1, got {workers}")
    specs = plan(root, preset, families, splits, split_name, n_operators, k, nx, nt, gamma, seed)
    root = Path(root)
    command = command or f"lemon-pl generate --root {shlex.quote(str(root))} --preset {preset}"
    from tqdm.auto import tqdm

    from lemon_pl.progress import bar_kwargs

    todo = []
    for spec in specs:
        path = root / spec.family / f"{spec.split}.h5"
        todo.append((spec, path, _existing_status(path, spec, overwrite)))
    total_ops = sum(s.n_operators for s, _, st in todo if st != "complete")
    # off a terminal (CI logs) bar_kwargs makes this a few plain lines instead of \r redraws
    bar = tqdm(total=total_ops, unit="op", desc="generate", disable=not progress or total_ops == 0,
               dynamic_ncols=True, **bar_kwargs())
    fam_order = list(dict.fromkeys(s.family for s, _, _ in todo))
    pool = None
    if workers > 1 and total_ops > 1:
        import multiprocessing as mp

        pool = mp.get_context("spawn").Pool(workers)
    reports = []
    try:
        for spec, path, status in todo:
            if status == "complete":
                reports.append(SplitReport(str(path), "skipped", spec.n_operators, spec.k, -1, -1, 0.0))
                continue
            bar.set_description(f"family {fam_order.index(spec.family) + 1}/{len(fam_order)} "
                                f"{spec.family}/{spec.split}")
            reports.append(_write_split(spec, path, pool, bar, command))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        bar.close()
    return reports


def _write_split(spec: SplitSpec, path: Path, pool, bar, command: str) -> SplitReport:
    t0 = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    f = _open_partial(partial, spec) if partial.exists() else None
    status = "resumed" if f is not None else "written"
    if f is None:
        params, shared = _operator_params(spec)
        f = _create_partial(partial, spec, params, shared, command)
    try:
        done = f["op_done"][:]
        params = f["params"][:]
        bar.update(int(done.sum()))
        jobs = [(spec.family, params[i], spec.seed, spec.split, i, spec.k, spec.nx, spec.nt, i)
                for i in np.flatnonzero(~done)]
        results: Iterable = (pool.imap(_worker, jobs) if pool is not None else map(_worker, jobs))
        for i, (u, rejected) in results:
            f["u"][i] = u
            f["n_rejected"][i] = rejected
            f["op_done"][i] = True
            f.flush()
            bar.update(1)
            if rejected:
                bar.set_postfix(rejected=int(f["n_rejected"][:].sum()))
        f.attrs["complete"] = True
        rejected_total = int(f["n_rejected"][:].sum())
        shared = int(f.attrs["n_shared_params"])
    finally:
        f.close()
    os.replace(partial, path)  # atomic: a file named <split>.h5 is always complete
    return SplitReport(str(path), status, spec.n_operators, spec.k, rejected_total, shared,
                       time.perf_counter() - t0)


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
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
    p.add_argument("--n-operators", type=int, default=None, help="override the preset's operators per split")
    p.add_argument("--k", type=int, default=None, help="override the preset's trajectories per operator")
    p.add_argument("--nx", type=int, default=128, help="grid points")
    p.add_argument("--nt", type=int, default=64, help="stored frames per trajectory")
    p.add_argument("--gamma", type=float, default=DEFAULT_GAMMA, help="parameter range: q_c*(1 +- gamma)")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--workers", type=int, default=1, help="worker processes (output does not depend on it)")
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
        return 0
    t0 = time.perf_counter()
    try:
        reports = generate(
            args.root, args.preset, args.families, [s.strip() for s in args.splits.split(",") if s.strip()],
            args.split_name, args.n_operators, args.k, args.nx, args.nt, args.gamma, args.seed,
            args.workers, args.overwrite, not args.no_progress,
            command="lemon-pl generate " + " ".join(shlex.quote(a) for a in argv),
        )
    except (GenerationError, UnknownFamilyError, ValueError) as err:
        print(f"lemon-pl generate: error: {err}", file=sys.stderr)
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


__all__ = ["PRESETS", "GenerationError", "generate", "generate_operator", "plan", "plan_params", "main",
           "SplitReport", "SplitSpec"]
