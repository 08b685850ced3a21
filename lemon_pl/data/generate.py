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

Solvers (``solver``): ``"torch"`` (the default) uses the family's torch solver
(:meth:`Family.solve_torch`, CPU or CUDA, float64 or float32) where it has one, on CPU only
where it is the faster one (``Family.torch_on_cpu``: not for the spectral families and
fplanck, whose numpy solvers are faster on 2 cores), and numpy elsewhere; ``"numpy"`` always
uses the numpy solvers. The torch solver is the default because
it is the same discretisation (its trajectories agree with numpy's to ~1e-12, see
tests/data/test_torch_solvers.py), several times faster on CPU and runs on a GPU. It solves
fixed chunks of ``chunk`` consecutive operators at once (boundaries ``i // chunk``: the same
whatever the number of workers); each operator keeps its own IC stream, so the ICs are those
of the numpy path, and its rejected trajectories are redrawn from it in later rounds that
solve only the operators still short of K. A resumed chunk is solved whole again (the same
batch, so the same numbers) and only its missing operators are written. The effective
backend, its dtype and whether its steps are compiled (``solver_compile``: ``torch.compile``,
fused kernels that round differently; off by default, as compiling costs tens of seconds per
step function in a fresh process) and, for torch files, the revision of the torch numerics
(``TORCH_SOLVER_REVISION``) are part of a file's identity (a numpy file is never resumed by a
torch run, nor a torch file by newer torch numerics); the device kind and the chunk size are recorded (a resumed file keeps
its chunk size).
On CUDA the parent process solves (workers, if any, only serve numpy families); CPU workers
solve with one torch thread each.

Nothing lost, nothing silently wrong (the file machinery - lock, ``.partial``, verify, rename,
fsync, one-line write errors - is the one store, :mod:`lemon_pl.data.store`, which the map
families' writer uses too):

* a file is renamed ``<split>.h5`` only after every operator is written (``op_done``, plus the
  CRC-32 of its data in ``u_crc32``), the file is flushed, closed, fsynced and read back and
  verified (:func:`lemon_pl.data.io.verify_operators`);
* a re-run verifies every existing ``<split>.h5`` before calling it complete. One that fails
  (an operator unwritten, unreadable or not matching its checksum) is reported in one line
  naming the file and operator, becomes the ``.partial`` again and only its damaged operators
  are regenerated; an unreadable (e.g. truncated) one is regenerated from scratch. Either way
  the result is the bit-identical file. Resuming a ``.partial`` verifies its finished
  operators the same way;
* every argument is checked against its range (``LIMITS``), and the memory one solve needs and
  the disk space the files still need are estimated (:func:`check_resources`), before anything is
  created; a run that cannot fit is refused in one line;
* a full disk (or any other write error) ends with one line naming the file, leaving a
  ``.partial`` that the same command resumes once there is space. Files are written without
  HDF5's deferred raw-data writes (:func:`lemon_pl.data.io.open_for_writing`), so a failed write
  is raised by the statement that made it, never while h5py frees an object (which printed
  tracebacks and left HDF5 to crash the interpreter at exit); a partial whose first operator
  did not fit is started over, and one HDF5 can no longer write to is started over once;
* two runs never write one file: each file is guarded by an exclusive ``flock`` on
  ``ROOT/<family>/.<split>.lock`` taken (by the parent process, which does all the writing;
  workers only solve) for every requested file before any of them is opened; a second run
  stops with one line naming the file and the pid holding it.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from lemon_pl.data.families import Family, get_family, resolve_families
from lemon_pl.data import store
from lemon_pl.data.io import (CHECKSUM, REQUIRED, describe_problems, mark_written, open_for_reading, open_for_writing,
                              verify_operators)
from lemon_pl.data.symbols import PAD_ID, pad_batch
from lemon_pl.data.transfer import RESTRICTIONS, restrict
from lemon_pl.data.store import (GenerationError, SplitReport, acquire_locks, check_disk_space,  # noqa: F401 - re-exported
                                 check_root_writable, close_quietly, first_line, guarded_write, finish_partial,
                                 prepare_root, quiet_hdf5, release_locks, reopen_partial, same_identity,
                                 write_error_message)
from lemon_pl.core.resources import available_memory, format_bytes

GENERATOR_VERSION = "1.0"
#: revision of the torch solvers' numerics, part of a torch file's identity (numpy files: 0), so
#: that a torch file from older numerics is never resumed with newer ones. 2: the float32
#: reaction-diffusion sub-step (t_final / 128) and the compiled real-space diffusion (issue 14);
#: 3: one RK4 step per float32 bistable and square-logistic reaction step.
TORCH_SOLVER_REVISION = 3
STANDARD_SPLITS = ("train", "val", "test")
DEFAULT_SEED = 10086
DEFAULT_GAMMA = 0.1
MAX_IC_ROUNDS = 10  # like the reference: at most 10x the ICs before giving up on an operator
MAX_PARAM_TRIES = 64
SOLVERS = ("numpy", "torch")
DEVICES = ("cpu", "cuda")
SOLVER_DTYPES = ("float64", "float32")
DEFAULT_SOLVER = "torch"
#: operators per torch solve when --chunk is not given: on CPU the batch (8 x K = 400 rows at
#: K = 50) stays in the caches (measured faster than 32 operators, benchmarks/generate_throughput.py
#: --solvers); a GPU wants as many rows as it can hold
DEFAULT_CHUNK = {"cpu": 8, "cuda": 256}
#: identity attributes that files written before they existed lack (those files were numpy, float64)
IDENTITY_DEFAULTS = {"solver": "numpy", "solver_dtype": "float64", "solver_compile": False,
                     "torch_solver_revision": 0}
#: documented range (inclusive) of every integer option, checked before anything is written
#: (:func:`check_int`); the products are bounded too: one operator's trajectories must fit an
#: HDF5 chunk (``MAX_CHUNK_BYTES``), a solve must fit the free memory and the files the free disk
#: space (:func:`check_resources`)
LIMITS: dict[str, tuple[int, int]] = {
    "--n-operators": (1, 1_000_000),
    "--k": (1, 100_000),
    "--nx": (8, 65_536),
    "--nt": (2, 65_536),
    "--workers": (1, 1024),
    "--chunk": (1, 65_536),
    "--seed": (0, 2**63 - 1),
    "--n-samples": (1, 1_000_000),  # the map families (lemon_pl.multilevel)
    "--levels": (8, 65_536),  # each grid of --levels
}
_LOW_WORDS = {"--n-operators": "positive", "--k": "positive", "--seed": "non-negative"}
#: HDF5's limit on one chunk (one operator's K x nt x nx float32 trajectories)
MAX_CHUNK_BYTES = 2**32 - 1
#: bytes of memory per trajectory value while an operator is solved (a float64 solution, its
#: accepted rows copied, the float32 copy that is stored)
SOLVE_BYTES_PER_VALUE = 24
#: memory of one worker process before it solves anything (its imports; measured: about 85 MiB with
#: numpy/scipy, 265 MiB once torch is imported)
WORKER_BYTES = {"numpy": 96 * 2**20, "torch": 288 * 2**20}


def range_text(flag: str) -> str:
    """``8 to 65,536``: the documented range of an integer option, for ``--help``."""
    low, high = LIMITS[flag]
    return f"{low:,} to {high:,}"


def check_int(flag: str, value) -> int:
    """``value`` as an int if it is an integer within ``LIMITS[flag]``, else a one-line error naming ``flag``."""
    low, high = LIMITS[flag]
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise GenerationError(f"{flag} must be an integer from {low:,} to {high:,}, got {value!r}")
    if value < low:
        words = _LOW_WORDS.get(flag, f"at least {low}")
        raise GenerationError(f"{flag} must be {words}, got {value}")
    if value > high:
        raise GenerationError(f"{flag} must be at most {high:,}, got {value}")
    return int(value)


def check_gamma(gamma) -> float:
    """``gamma`` as a float if it is a finite number in [0, 1), else a one-line error."""
    try:
        value = float(gamma)
    except (TypeError, ValueError):
        raise GenerationError(f"--gamma must lie in [0, 1), got {gamma!r}") from None
    if not 0 <= value < 1:  # NaN fails too
        raise GenerationError(f"--gamma must lie in [0, 1), got {value}")
    return value


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
    # multi-level data: ICs are drawn on ``ic_nx`` points (the finest level) and restricted to
    # ``nx`` by ``restriction`` (``lemon_pl.data.transfer``); 0 draws them on ``nx``
    ic_nx: int = 0
    restriction: str = "average"
    # the effective solver backend of this family ("torch" only where the family has one), its
    # dtype (always float64 for numpy), the device kind and the operators per torch batch
    solver: str = "numpy"
    solver_dtype: str = "float64"
    device: str = "cpu"
    chunk: int = DEFAULT_CHUNK["cpu"]
    solver_compile: bool = False  # torch.compile'd step functions (fused kernels: round-off differs)

    @property
    def levelled(self) -> bool:
        return bool(self.ic_nx) and self.ic_nx != self.nx

    def identity(self) -> dict:
        """Attributes that must match for an existing file to count as this split."""
        ident = {
            "family": self.family, "split": self.split, "n_operators": self.n_operators,
            "k": self.k, "nx": self.nx, "nt": self.nt, "gamma": float(self.gamma),
            "seed": self.seed, "generator_version": GENERATOR_VERSION,
            "solver": self.solver, "solver_dtype": self.solver_dtype, "solver_compile": bool(self.solver_compile),
            "torch_solver_revision": TORCH_SOLVER_REVISION if self.solver == "torch" else 0,
        }
        if self.levelled:
            ident.update(finest_grid=self.ic_nx, restriction=self.restriction)
        return ident


# ----------------------------------------------------------------------------- seeding


def _key(text: str) -> int:
    return zlib.crc32(text.encode())


def seeded_rng(seed: int, *key: int | str) -> np.random.Generator:
    spawn = tuple(_key(k) if isinstance(k, str) else int(k) for k in key)
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=spawn))


def plan_params(family: Family, seed: int, splits: Sequence[tuple[str, int, float]]) -> dict[str, tuple[np.ndarray, int]]:
    """Parameters for each ``(split, n_operators, gamma)``, in order, each avoiding earlier splits.

    Returns split -> (params (n, P), number of operators that had to reuse an earlier tuple).
    """
    used: set[tuple[float, ...]] = set()
    out = {}
    for split, n, gamma in splits:
        rng = seeded_rng(seed, family.name, split, "params")
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
                      k: int, nx: int, nt: int, ic_nx: int = 0,
                      restriction: str = "average") -> tuple[np.ndarray, int, float, np.ndarray | None]:
    """Solve one operator: exactly ``k`` accepted trajectories (k, nt, nx) float32, the number
    of rejected ones, the solver's wall seconds (every solve, rejected ones included) and, for
    multi-level data (``ic_nx != nx``), the accepted ICs on the ``ic_nx`` grid (k, ic_nx)."""
    fam = get_family(family_name)
    rng = seeded_rng(seed, family_name, split, "ics", index)
    levelled = bool(ic_nx) and ic_nx != nx
    kept: list[np.ndarray] = []
    kept_fine: list[np.ndarray] = []
    n_kept, rejected, seconds = 0, 0, 0.0
    for _round in range(MAX_IC_ROUNDS):
        need = k - n_kept
        if levelled:
            u0_fine = fam.sample_initial_conditions(rng, need, ic_nx)
            u0 = restrict(u0_fine, nx, "periodic_cells", restriction)
        else:
            u0 = fam.sample_initial_conditions(rng, need, nx)
        start = time.perf_counter()
        with np.errstate(all="ignore"):
            u = fam.solve(params, u0, nt=nt)
        seconds += time.perf_counter() - start
        ok = fam.accept(u)
        rejected += int((~ok).sum())
        kept.append(u[ok])
        if levelled:
            kept_fine.append(u0_fine[ok])
        n_kept += int(ok.sum())
        if n_kept == k:
            fine = np.concatenate(kept_fine).astype(np.float32) if levelled else None
            return np.concatenate(kept).astype(np.float32), rejected, seconds, fine
    raise GenerationError(
        f"{family_name} operator {index} of split {split!r} with parameters "
        f"{dict(zip(fam.param_names, params.tolist()))}: only {n_kept} of {k} trajectories stayed "
        f"finite and bounded after {MAX_IC_ROUNDS} rounds"
    )


def generate_chunk(family_name: str, params: np.ndarray, seed: int, split: str, indices: Sequence[int],
                   k: int, nx: int, nt: int, ic_nx: int = 0, restriction: str = "average",
                   device: str = "cpu", dtype: str = "float64",
                   compile: bool = False) -> list[tuple[np.ndarray, int, float, np.ndarray | None]]:
    """Solve the operators ``indices`` (parameters ``params`` (C, P)) together with the torch solver.

    Returns, per operator, what :func:`generate_operator` returns: its K accepted trajectories
    (float32), its rejected count, its share of the solver seconds (the chunk's, divided evenly)
    and the fine ICs of multi-level data. Each operator draws its ICs from its own stream
    exactly as :func:`generate_operator` does; a round solves every operator still short of K.
    ``compile``: the torch solvers' step functions through ``torch.compile``.
    """
    from lemon_pl.data import torch_solvers

    fam = get_family(family_name)
    params = np.asarray(params, dtype=np.float64).reshape(len(indices), len(fam.params))
    rngs = [seeded_rng(seed, family_name, split, "ics", int(i)) for i in indices]
    levelled = bool(ic_nx) and ic_nx != nx
    n_ops = len(indices)
    kept: list[list[np.ndarray]] = [[] for _ in range(n_ops)]
    kept_fine: list[list[np.ndarray]] = [[] for _ in range(n_ops)]
    n_kept, rejected = [0] * n_ops, [0] * n_ops
    seconds = 0.0
    for _round in range(MAX_IC_ROUNDS):
        todo = [j for j in range(n_ops) if n_kept[j] < k]
        if not todo:
            break
        u0s, fines, rows, sizes = [], [], [], []
        for j in todo:
            need = k - n_kept[j]
            if levelled:
                fine = fam.sample_initial_conditions(rngs[j], need, ic_nx)
                fines.append(fine)
                u0s.append(restrict(fine, nx, "periodic_cells", restriction))
            else:
                u0s.append(fam.sample_initial_conditions(rngs[j], need, nx))
            rows.append(np.repeat(params[j][None], need, axis=0))
            sizes.append(need)
        start = time.perf_counter()
        was = torch_solvers.compile_enabled()
        torch_solvers.set_compile(compile)
        try:
            u = fam.solve_torch(np.concatenate(rows), np.concatenate(u0s), nt=nt, device=device, dtype=dtype)
            u = u.cpu().numpy()
        finally:
            torch_solvers.set_compile(was)
        seconds += time.perf_counter() - start
        ok = fam.accept(u)
        at = 0
        for pos, (j, need) in enumerate(zip(todo, sizes)):
            sel = ok[at:at + need]
            kept[j].append(u[at:at + need][sel])
            if levelled:
                kept_fine[j].append(fines[pos][sel])
            rejected[j] += int((~sel).sum())
            n_kept[j] += int(sel.sum())
            at += need
    short = [j for j in range(n_ops) if n_kept[j] < k]
    if short:
        j = short[0]
        raise GenerationError(
            f"{family_name} operator {int(indices[j])} of split {split!r} with parameters "
            f"{dict(zip(fam.param_names, params[j].tolist()))}: only {n_kept[j]} of {k} trajectories stayed "
            f"finite and bounded after {MAX_IC_ROUNDS} rounds"
        )
    share = seconds / max(n_ops, 1)
    return [(np.concatenate(kept[j]).astype(np.float32), rejected[j], share,
             np.concatenate(kept_fine[j]).astype(np.float32) if levelled else None) for j in range(n_ops)]


def _worker(args):
    return args[-1], generate_operator(*args[:-1])


def _chunk_worker(args):
    return args[4], generate_chunk(*args)


def _init_worker(solver: str) -> None:
    """Pool initializer: torch workers solve with one thread each (the workers share the cores)."""
    if solver == "torch":
        import torch

        torch.set_num_threads(1)


def check_solver(solver: str, device: str, solver_dtype: str, chunk: int | None) -> None:
    """The solver, its dtype, the chunk and the device are known and usable here (one line naming the flag)."""
    if solver not in SOLVERS:
        raise GenerationError(f"--solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    if device not in DEVICES:
        raise GenerationError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    if solver_dtype not in SOLVER_DTYPES:
        raise GenerationError(f"--solver-dtype must be one of {', '.join(SOLVER_DTYPES)}, got {solver_dtype!r}")
    if chunk is not None:
        check_int("--chunk", chunk)
    if device == "cuda":
        if solver != "torch":
            raise GenerationError("--device cuda needs the torch solver (--solver torch)")
        from lemon_pl.core.devices import DeviceError, check_device

        try:
            check_device(device, "--device")
        except DeviceError as err:
            raise GenerationError(str(err)) from None


# ----------------------------------------------------------------------------- planning


def plan(root: str | os.PathLike, preset: str = "default", families: str | Sequence[str] | None = "all",
         splits: Sequence[str] = STANDARD_SPLITS, split_name: str | None = None,
         n_operators: int | None = None, k: int | None = None, nx: int = 128, nt: int = 64,
         gamma: float = DEFAULT_GAMMA, seed: int = DEFAULT_SEED, ic_nx: int = 0,
         restriction: str = "average", *, solver: str = DEFAULT_SOLVER, device: str = "cpu",
         solver_dtype: str = "float64", chunk: int | None = None, solver_compile: bool = False) -> list[SplitSpec]:
    """Validate arguments and list the files to produce."""
    if preset not in PRESETS:
        raise GenerationError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    pre = PRESETS[preset]
    names = resolve_families(families)
    check_int("--seed", seed)
    check_int("--nx", nx)
    check_int("--nt", nt)
    if n_operators is not None:
        check_int("--n-operators", n_operators)
    if k is not None:
        check_int("--k", k)
    gamma = check_gamma(gamma)
    chunk_bytes = (k or pre.k) * nt * nx * 4
    if chunk_bytes > MAX_CHUNK_BYTES:
        raise GenerationError(f"--k x --nt x --nx = {k or pre.k} x {nt} x {nx}: one operator's trajectories would "
                              f"take {format_bytes(chunk_bytes)}, more than the 4 GiB HDF5 stores in one chunk; "
                              "lower --k, --nt or --nx")
    if nx % 2:
        raise GenerationError(f"--nx must be even (spectral solvers), got {nx}")
    if ic_nx and ic_nx != nx:
        if ic_nx % nx:
            raise GenerationError(f"--levels: the finest grid {ic_nx} is not a multiple of {nx}")
        if restriction not in RESTRICTIONS["periodic_cells"]:
            raise GenerationError(f"--restriction {restriction!r} is not one of "
                                  f"{', '.join(RESTRICTIONS['periodic_cells'])} for the data engine's families")
    check_solver(solver, device, solver_dtype, chunk)
    chunk = chunk or DEFAULT_CHUNK[device]
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
        if not wanted:
            raise GenerationError("--splits names no split; give e.g. --splits train,val,test")
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
        f = get_family(fam)
        torch_fam = solver == "torch" and f.has_torch and (device == "cuda" or f.torch_on_cpu)
        backend = (dict(solver="torch", solver_dtype=solver_dtype, device=device, chunk=chunk,
                        solver_compile=bool(solver_compile)) if torch_fam else {})
        for s in wanted:
            specs.append(SplitSpec(fam, s, counts[s], k or pre.k, nx, nt, gamma, seed, preset,
                                   reserved=reserved if split_name else reserved[: STANDARD_SPLITS.index(s)],
                                   ic_nx=ic_nx, restriction=restriction, **backend))
    return specs


# ----------------------------------------------------------------------------- resources


def file_bytes(spec: SplitSpec) -> int:
    """Size of a complete file of ``spec`` on disk (an estimate from above: the trajectories with
    their chunk checksums, the fine ICs, the per-operator arrays and HDF5's headers)."""
    values = spec.k * spec.nt * spec.nx
    size = spec.n_operators * (values * 4 + 4)
    if spec.levelled:
        size += spec.n_operators * (spec.k * spec.ic_nx * 4 + 4)
    size += spec.n_operators * (8 * 8 + 64 * 2 + 32 + 64)  # params, tokens, per-operator arrays, chunk index
    return size + 64 * 1024 + (spec.nt + spec.nx) * 8


def bytes_to_write(root: str | os.PathLike, specs: Sequence[SplitSpec], overwrite: bool = False,
                   size: Callable[[SplitSpec], int] | None = None) -> int:
    """Disk space the operator files of ``specs`` still need under ``root``
    (:func:`lemon_pl.data.store.bytes_to_write` with the size estimate :func:`file_bytes`)."""
    return store.bytes_to_write(root, specs, size or file_bytes, overwrite)


def solve_bytes(spec: SplitSpec) -> int:
    """Memory of one solve of ``spec`` (one operator, or one chunk of operators for torch)."""
    rows = spec.k * (min(spec.chunk, spec.n_operators) if spec.solver == "torch" else 1)
    return rows * spec.nt * max(spec.nx, spec.ic_nx or 0) * SOLVE_BYTES_PER_VALUE


def check_resources(targets: Sequence[tuple[str | os.PathLike, Sequence[SplitSpec]]], workers: int = 1,
                    overwrite: bool = False, check_space: bool = True) -> None:
    """Refuse, in one line and before anything is written, a run that cannot fit: one solve times the
    processes solving at once against the free memory (and, on CUDA, one chunk against the free GPU
    memory), and the files still to write under each ``(root, specs)`` of ``targets`` (one root per
    level of multi-level data) against the free space of the disk they are on."""
    specs = [s for _, specs_ in targets for s in specs_]
    if not specs:
        return
    worst = max(specs, key=solve_bytes)
    procs = max(workers, 1) + (1 if workers > 1 else 0)  # the workers solve, the parent holds one result
    mem = solve_bytes(worst) * procs
    if workers > 1:  # each spawned worker imports the solvers first
        mem += workers * WORKER_BYTES["torch" if any(s.solver == "torch" for s in specs) else "numpy"]
    avail = available_memory()
    if avail is not None and mem > avail:
        share = f" on each of {workers} --workers" if workers > 1 else ""
        what = (f"{min(worst.chunk, worst.n_operators)} operators (--chunk) x " if worst.solver == "torch" else "")
        raise GenerationError(
            f"--k x --nt x --nx: solving {what}{worst.k} x {worst.nt} x {worst.nx} values{share} needs about "
            f"{format_bytes(mem)} of memory but {format_bytes(avail)} is available; lower --k, --nt, --nx"
            f"{', --chunk' if worst.solver == 'torch' else ''} or --workers")
    cuda = [s for s in specs if s.solver == "torch" and s.device == "cuda"]
    if cuda:
        import torch

        free, _total = torch.cuda.mem_get_info()
        big = max(cuda, key=solve_bytes)
        gpu = solve_bytes(big) // SOLVE_BYTES_PER_VALUE * (8 if big.solver_dtype == "float64" else 4) * 3
        if gpu > free:
            raise GenerationError(
                f"--chunk: solving {min(big.chunk, big.n_operators)} operators x {big.k} x {big.nt} x {big.nx} "
                f"values on the GPU needs about {format_bytes(gpu)} but {format_bytes(free)} of GPU memory is free; "
                "lower --chunk")
    if check_space:
        check_disk_space([r for r, _ in targets], sum(bytes_to_write(r, sp, overwrite) for r, sp in targets))


# ----------------------------------------------------------------------------- writing


def _operator_params(spec: SplitSpec) -> tuple[np.ndarray, int]:
    fam = get_family(spec.family)
    order = [*spec.reserved, (spec.split, spec.n_operators, spec.gamma)]
    return plan_params(fam, spec.seed, order)[spec.split]


def _create_partial(path: Path, spec: SplitSpec, params: np.ndarray, shared: int, command: str):
    fam = get_family(spec.family)
    toks, lens = pad_batch([fam.tokens(p) for p in params])
    f = open_for_writing(path, "w")  # every write raised where it happens (see open_for_writing)
    try:
        f.create_dataset("u", shape=(spec.n_operators, spec.k, spec.nt, spec.nx), dtype="f4",
                         chunks=(1, spec.k, spec.nt, spec.nx), fletcher32=True)
        f.create_dataset("params", data=params).attrs["param_names"] = list(fam.param_names)
        f.create_dataset("tokens", data=toks)
        f.create_dataset("token_len", data=lens)
        f.create_dataset("x", data=fam.x_grid(spec.nx))
        f.create_dataset("t", data=fam.t_grid(spec.nt))
        f.create_dataset("n_rejected", data=np.zeros(spec.n_operators, dtype=np.int32))
        f.create_dataset("op_done", data=np.zeros(spec.n_operators, dtype=bool))
        f.create_dataset(CHECKSUM, data=np.zeros(spec.n_operators, dtype=np.uint32))
        f.create_dataset("solve_seconds", data=np.zeros(spec.n_operators))  # the measured cost
        if spec.levelled:
            f.create_dataset("u0_fine", shape=(spec.n_operators, spec.k, spec.ic_nx), dtype="f4",
                             chunks=(1, spec.k, spec.ic_nx), fletcher32=True)
        attrs = f.attrs
        for key, val in spec.identity().items():
            attrs[key] = val
        attrs.update({
            "preset": spec.preset, "equation_template": fam.template, "t_final": fam.t_final,
            "c_t": fam.c_t, "ic_type": fam.ic_type, "second_order": fam.second_order,
            "pad_id": PAD_ID, "n_shared_params": shared, "complete": False, "command": command,
            "level_grid": spec.nx, "seconds_per_sample": float("nan"),
            "solver_device": spec.device if spec.solver == "torch" else "cpu",
            "solver_chunk": spec.chunk if spec.solver == "torch" else 1,
            "time_convention": "t is physical time; stored (model) time = c_t * t in [0, 2)",
        })
        f.flush()
    except BaseException:
        close_quietly(f)
        raise
    return f


def _open_partial(path: Path, spec: SplitSpec, warn: bool = True):
    """Re-open a partial file if it belongs to ``spec`` and is worth resuming, else None
    (:func:`lemon_pl.data.store.reopen_partial`: its done operators verified, failing ones redone).
    A partial file without ``u_crc32`` (written before checksums were stored) cannot be trusted and
    is started over."""

    def belongs(f, done) -> bool:
        ident = {k: f.attrs[k] for k in spec.identity() if k in f.attrs}  # missing: IDENTITY_DEFAULTS
        return (same_identity(ident, spec.identity(), IDENTITY_DEFAULTS) and "solve_seconds" in f
                and (not spec.levelled or "u0_fine" in f)
                and f["u"].shape == (spec.n_operators, spec.k, spec.nt, spec.nx) and done.shape == (spec.n_operators,))

    return reopen_partial(path, belongs, warn=warn)


def _existing_status(path: Path, spec: SplitSpec, overwrite: bool) -> str:
    """'missing', 'complete', 'damaged' (to repair) or raise if a file with other settings is in the way.

    A complete file must pass :func:`verify_operators` (every operator read back and checked).
    """
    import h5py

    if not path.exists():
        return "missing"
    if overwrite:
        return "missing"
    try:
        f = open_for_reading(path)
    except OSError as err:
        print(f"warning: {path} is unreadable, corrupt or truncated ({first_line(err)}); regenerating it",
              file=sys.stderr)
        return "missing"
    with f:
        try:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            missing = [d for d in REQUIRED if d not in f]
        except Exception as err:  # noqa: BLE001 - damaged metadata
            missing = [f"? ({first_line(err)})"]
        if missing:
            print(f"warning: {path} lacks datasets {missing}; regenerating it", file=sys.stderr)
            return "missing"
        if not same_identity(attrs, spec.identity(), IDENTITY_DEFAULTS):
            diff = [f"{k}={attrs.get(k, IDENTITY_DEFAULTS.get(k))!r} (wanted {v!r})" for k, v in spec.identity().items()
                    if not same_identity({k: attrs.get(k)}, {k: v}, IDENTITY_DEFAULTS)]
            raise GenerationError(f"{path} exists with different settings: {', '.join(diff)}; "
                                  "pass --overwrite to replace it or use another --root")
        try:
            problems = verify_operators(f)
        except Exception as err:  # noqa: BLE001 - e.g. op_done unreadable
            print(f"warning: {path} cannot be verified ({first_line(err)}); regenerating it", file=sys.stderr)
            return "missing"
        if not problems and not bool(attrs.get("complete", False)):
            problems = [(-1, "")]
        if problems:
            what = ("is not marked complete" if problems[0][0] < 0
                    else f"fails verification ({describe_problems(problems)})")
            print(f"warning: {path} {what}; regenerating the damaged operators", file=sys.stderr)
            return "damaged"
    return "complete"


def generate(root: str | os.PathLike, preset: str = "default", families: str | Sequence[str] | None = "all",
             splits: Sequence[str] = STANDARD_SPLITS, split_name: str | None = None,
             n_operators: int | None = None, k: int | None = None, nx: int = 128, nt: int = 64,
             gamma: float = DEFAULT_GAMMA, seed: int = DEFAULT_SEED, workers: int = 1,
             overwrite: bool = False, progress: bool = True, command: str = "", *, ic_nx: int = 0,
             restriction: str = "average", solver: str = DEFAULT_SOLVER, device: str = "cpu",
             solver_dtype: str = "float64", chunk: int | None = None,
             solver_compile: bool = False, check_space: bool = True) -> list[SplitReport]:
    """Generate (or complete) the requested files; returns one report per file.

    ``ic_nx`` (multi-level data): draw every IC on that finer grid, keep it as ``u0_fine`` and
    solve from its ``restriction`` to ``nx``. ``solver`` / ``device`` / ``solver_dtype`` /
    ``chunk`` / ``solver_compile``: see the module docstring. Every argument is checked, and the
    memory and disk space the run needs (:func:`check_resources`; ``check_space=False`` skips the
    disk estimate) before anything is created."""
    check_int("--workers", workers)
    specs = plan(root, preset, families, splits, split_name, n_operators, k, nx, nt, gamma, seed, ic_nx,
                 restriction, solver=solver, device=device, solver_dtype=solver_dtype, chunk=chunk,
                 solver_compile=solver_compile)
    check_root_writable(root)
    check_resources([(root, specs)], workers, overwrite, check_space)
    root = Path(root)
    prepare_root(root)
    command = command or f"lemon-pl generate --root {shlex.quote(str(root))} --preset {preset}"
    locks = acquire_locks(root, specs)  # before any data file is looked at, created or opened
    try:
        return _generate_locked(root, specs, workers, overwrite, progress, command)
    finally:
        release_locks(locks)


def _generate_locked(root: Path, specs: Sequence[SplitSpec], workers: int, overwrite: bool, progress: bool,
                     command: str) -> list[SplitReport]:
    from tqdm.auto import tqdm

    from lemon_pl.core.progress import bar_kwargs

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

        solver = "torch" if any(s.solver == "torch" for s, _, _ in todo) else "numpy"
        pool = mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(solver,))
    reports = []
    try:
        for spec, path, status in todo:
            if status == "complete":
                reports.append(SplitReport(str(path), "skipped", spec.n_operators, spec.k, -1, -1, 0.0))
                continue
            bar.set_description(f"family {fam_order.index(spec.family) + 1}/{len(fam_order)} "
                                f"{spec.family}/{spec.split}")
            reports.append(_write_split(spec, path, pool, bar, command, repair=status == "damaged"))
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        bar.close()
    return reports


def _write_split(spec: SplitSpec, path: Path, pool, bar, command: str, repair: bool = False) -> SplitReport:
    partial = path.with_name(path.name + ".partial")
    return guarded_write(partial, repair or partial.exists(),
                         lambda: _write_split_unchecked(spec, path, partial, pool, bar, command, repair),
                         lambda: _write_split(spec, path, pool, bar, command))


def _write_split_unchecked(spec: SplitSpec, path: Path, partial: Path, pool, bar, command: str,
                           repair: bool) -> SplitReport:
    t0 = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    if repair:  # a damaged complete file: it becomes the partial, its bad operators are redone
        os.replace(path, partial)
    f = _open_partial(partial, spec, warn=not repair) if partial.exists() else None
    status = ("repaired" if repair else "resumed") if f is not None else "written"
    if f is None:
        params, shared = _operator_params(spec)
        f = _create_partial(partial, spec, params, shared, command)
    try:
        done = f["op_done"][:]
        params = f["params"][:]
        bar.update(int(done.sum()))
        results: Iterable = _solve_undone(spec, f, params, done, pool)
        for i, (u, rejected, seconds, u0_fine) in results:
            # data first, flushed; only then the done flag: a flag never outruns its data
            f["u"][i] = u
            if u0_fine is not None:
                f["u0_fine"][i] = u0_fine
            f["solve_seconds"][i] = seconds
            f["n_rejected"][i] = rejected
            mark_written(f, i, u)
            bar.update(1)
            if rejected:
                bar.set_postfix(rejected=int(f["n_rejected"][:].sum()))
        # measured solver seconds per stored trajectory (rejected solves included: they are paid for)
        f.attrs["seconds_per_sample"] = float(f["solve_seconds"][:].sum()) / (spec.n_operators * spec.k)
        f.attrs["complete"] = True
        rejected_total = int(f["n_rejected"][:].sum())
        shared = int(f.attrs["n_shared_params"])
        f.flush()
    except BaseException:
        close_quietly(f)
        raise
    finish_partial(f, partial, path)
    return SplitReport(str(path), status, spec.n_operators, spec.k, rejected_total, shared,
                       time.perf_counter() - t0)


def _solve_undone(spec: SplitSpec, f, params: np.ndarray, done: np.ndarray, pool) -> Iterable:
    """(operator, result) for every operator not done, in order, from the numpy or torch path."""
    if spec.solver != "torch":
        jobs = [(spec.family, params[i], spec.seed, spec.split, i, spec.k, spec.nx, spec.nt, spec.ic_nx,
                 spec.restriction, i) for i in np.flatnonzero(~done)]
        return pool.imap(_worker, jobs) if pool is not None else map(_worker, jobs)
    chunk = int(f.attrs.get("solver_chunk", spec.chunk))  # a resumed file keeps its own chunks
    devices = set(str(f.attrs.get("solver_device", spec.device)).split("+")) | {spec.device}
    if len(devices) > 1:  # resumed on another device kind: the file says so ("cpu+cuda")
        f.attrs["solver_device"] = "+".join(sorted(devices))
    starts = sorted({int(i) // chunk * chunk for i in np.flatnonzero(~done)})
    jobs = []
    for lo in starts:
        idx = list(range(lo, min(lo + chunk, spec.n_operators)))
        jobs.append((spec.family, params[idx[0]:idx[-1] + 1], spec.seed, spec.split, idx, spec.k, spec.nx,
                     spec.nt, spec.ic_nx, spec.restriction, spec.device, spec.solver_dtype, spec.solver_compile))
    on_pool = pool is not None and spec.device == "cpu"  # CUDA: solved here, never in a worker
    chunks = pool.imap(_chunk_worker, jobs) if on_pool else map(_chunk_worker, jobs)
    return ((i, res) for idx, results in chunks for i, res in zip(idx, results) if not done[i])


__all__ = ["PRESETS", "GenerationError", "generate", "generate_chunk", "generate_operator", "plan", "plan_params",
           "SplitReport", "SplitSpec", "seeded_rng", "bytes_to_write", "check_resources", "file_bytes",
           # the store's, re-exported for the command line (lemon_pl.cli.generate)
           "check_disk_space", "check_root_writable", "write_error_message"]
