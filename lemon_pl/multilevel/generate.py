"""Write the map families (``lemon_pl.multilevel.families``) at one level: ``ROOT/<family>/<split>.h5``.

``lemon-pl generate --families schrodinger,rough_elliptic --levels 32,64,128`` calls this once per
level with ``ROOT/n<level>`` (``lemon_pl.cli.generate``). A file holds ``n_samples`` samples
in chunks of ``chunk``; every chunk has its own seed, ``SeedSequence(seed, spawn_key=(family, split,
"inputs", chunk))``, and its inputs are drawn on the *finest* grid, so every level of one split holds
the same inputs (nested levels) and the arrays do not depend on the number of workers.

Datasets (chunk-major, ``C = ceil(n_samples / chunk)``): ``inputs_fine`` ``(C, chunk, n_fine)`` the
input on the finest grid (what a network reads), ``inputs`` ``(C, chunk, n)`` its restriction (what
the solver used), ``u`` ``(C, chunk, n)`` the labels, ``solve_seconds`` ``(C,)`` the solver's wall
time per chunk, ``x`` and ``x_fine``, plus ``op_done`` / ``u_crc32`` per chunk. Attributes: the
identity (family, split, n_samples, chunk, level_grid, finest_grid, restriction, seed, version),
``grid``, ``seconds_per_sample`` (measured, one process, BLAS threads as set), ``complete``.

The same guarantees as the data engine, through the same store (:mod:`lemon_pl.data.store`): a ``.partial`` file renamed only when every chunk is
written, checksummed and read back; a re-run verifies and resumes; ``flock`` per file. A full disk
(or any other write error) ends with one line naming the ``.partial`` (no traceback, no HDF5 error
stack, no crash at exit): files are written through :func:`lemon_pl.data.io.open_for_writing`, so
a failed write raises where it happens instead of when h5py frees a dataset object, and HDF5's
error output is kept quiet around the writes (:func:`lemon_pl.data.store.quiet_hdf5`). A
``.partial`` with no finished chunk is started over (nothing to keep, and a first write that did
not fit can leave a file HDF5 cannot extend), and so, once and with one warning line, is one that
verifies but that HDF5 can no longer write to. :func:`check_map_space` estimates, before anything
is written, whether the files fit the disk.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from lemon_pl.data import store
from lemon_pl.data.generate import seeded_rng
from lemon_pl.data.io import CHECKSUM, describe_problems, mark_written, open_for_reading, open_for_writing, verify_operators
from lemon_pl.data.store import (GenerationError, SplitReport, acquire_locks, check_disk_space, close_quietly,
                                 file_path, finish_partial, guarded_write, partial_path, prepare_root, release_locks,
                                 reopen_partial, same_identity)
from lemon_pl.multilevel.families import MAP_FAMILIES, MapFamily

MAP_GENERATOR_VERSION = "1.0"
CHUNK = 64
#: samples per split of each preset (the data engine's presets count operators x trajectories)
MAP_PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"train": 64, "val": 32, "test": 32},
    "default": {"train": 1024, "val": 256, "test": 256},
    "paper": {"train": 8192, "val": 1024, "test": 1024},
}


@dataclass(frozen=True)
class MapSplitSpec:
    family: str
    split: str
    n_samples: int
    n: int  # the level's grid
    n_fine: int  # the finest level's grid (where inputs are drawn)
    restriction: str
    seed: int
    chunk: int = CHUNK

    @property
    def n_chunks(self) -> int:
        return -(-self.n_samples // self.chunk)

    def identity(self) -> dict:
        return {"family": self.family, "split": self.split, "n_samples": self.n_samples, "chunk": self.chunk,
                "level_grid": self.n, "finest_grid": self.n_fine, "restriction": self.restriction,
                "seed": self.seed, "generator_version": MAP_GENERATOR_VERSION}


def map_specs(family: str, preset: str, splits: Sequence[str], n: int, n_fine: int, seed: int,
              n_samples: int | None = None, restriction: str | None = None) -> list[MapSplitSpec]:
    fam = MAP_FAMILIES[family]
    how = restriction or fam.restriction
    from lemon_pl.data.transfer import RESTRICTIONS

    if how not in RESTRICTIONS[fam.grid]:
        raise GenerationError(f"--restriction {how!r} is not one of {', '.join(RESTRICTIONS[fam.grid])} "
                              f"for {family}")
    if n_fine % n:
        raise GenerationError(f"--levels: the finest grid {n_fine} is not a multiple of {n}")
    if n < 8:
        raise GenerationError(f"--levels: a level needs at least 8 points, got {n}")
    counts = MAP_PRESETS[preset]
    return [MapSplitSpec(family, s, n_samples or counts[s], n, n_fine, how, seed) for s in splits]


def solve_chunk(family: str, seed: int, split: str, index: int, chunk: int, n: int, n_fine: int,
                restriction: str):
    """One chunk: ``(inputs_fine, inputs, u)`` as float32 and the solver's wall seconds."""
    fam = MAP_FAMILIES[family]
    rng = seeded_rng(seed, family, split, "inputs", index)
    fine = fam.sample_inputs(rng, n_fine, chunk)
    coarse = fam.restrict(fine, n, restriction)
    start = time.perf_counter()
    u = fam.solve(coarse)
    seconds = time.perf_counter() - start
    if not np.all(np.isfinite(u)):
        raise GenerationError(f"{family} chunk {index} of split {split!r} at n={n}: the solver returned "
                              "non-finite values")
    return fine.astype(np.float32), coarse.astype(np.float32), u.astype(np.float32), seconds


def _worker(args):
    return args[-1], solve_chunk(*args[:-1])


# ----------------------------------------------------------------------------- disk space


def map_file_bytes(spec: MapSplitSpec, command: str = "") -> int:
    """Size of a complete file of ``spec`` on disk, estimated from above: the three sample arrays
    (the last chunk padded) with their fletcher32 checksums, the grids, the per-chunk arrays, the
    attributes and HDF5's headers."""
    c, k = spec.n_chunks, spec.chunk
    size = c * (k * (spec.n_fine + 2 * spec.n) * 4 + 3 * 4)  # inputs_fine, inputs, u (+ fletcher32)
    size += (spec.n + spec.n_fine) * 8  # x, x_fine
    size += c * (8 + 1 + 4 + 3 * 64)  # solve_seconds, op_done, u_crc32, the chunk index
    return size + 64 * 1024 + 4 * len(command.encode())


def map_bytes_to_write(root: str | os.PathLike, specs: Sequence[MapSplitSpec], overwrite: bool = False,
                       command: str = "") -> int:
    """Disk space still needed under ``root`` (one level): a complete file of every spec whose
    ``<split>.h5`` is not there (or is replaced), less what its ``.partial`` already holds."""
    return store.bytes_to_write(root, specs, lambda spec: map_file_bytes(spec, command), overwrite)


def check_map_space(targets: Sequence[tuple[str | os.PathLike, Sequence[MapSplitSpec]]], overwrite: bool = False,
                    command: str = "", also_needed: int = 0) -> None:
    """Refuse, in one line and before anything is written, map files that cannot fit: the files
    still to write under each ``(root, specs)`` of ``targets`` (one root per level), plus
    ``also_needed`` bytes (e.g. the operator families' files of the same run), against the free
    space of the disk they are on (:func:`lemon_pl.data.store.check_disk_space`)."""
    targets = [(Path(r), list(sp)) for r, sp in targets]
    if not any(sp for _, sp in targets):
        return
    need = also_needed + sum(map_bytes_to_write(r, sp, overwrite, command) for r, sp in targets)
    check_disk_space([r for r, _ in targets], need, "--n-samples or the finest --levels")


# ----------------------------------------------------------------------------- writing


def _create(path: Path, spec: MapSplitSpec, fam: MapFamily, command: str):
    f = open_for_writing(path, "w")  # every write raises where it happens (see open_for_writing)
    try:
        c, k = spec.n_chunks, spec.chunk
        for name, width in (("inputs_fine", spec.n_fine), ("inputs", spec.n), ("u", spec.n)):
            f.create_dataset(name, shape=(c, k, width), dtype="f4", chunks=(1, k, width), fletcher32=True)
        f.create_dataset("x", data=fam.x_grid(spec.n))
        f.create_dataset("x_fine", data=fam.x_grid(spec.n_fine))
        f.create_dataset("solve_seconds", data=np.zeros(c))
        f.create_dataset("op_done", data=np.zeros(c, dtype=bool))
        f.create_dataset(CHECKSUM, data=np.zeros(c, dtype=np.uint32))
        f.attrs.update(spec.identity())
        f.attrs.update({"kind": "map", "grid": fam.grid, "input_name": fam.input_name,
                        "input_transform": fam.input_transform, "description": fam.description,
                        "solver": fam.solver, "problem": json.dumps(_problem_settings(fam)),
                        "seconds_per_sample": float("nan"), "complete": False, "command": command})
        f.flush()
    except BaseException:
        close_quietly(f)
        raise
    return f


def _problem_settings(fam: MapFamily) -> dict:
    from dataclasses import asdict

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(fam.problem).items()}


def _status(path: Path, spec: MapSplitSpec, overwrite: bool) -> str:
    """``missing`` | ``complete`` | ``partial`` (resume it) | raise for a file with other settings."""
    import h5py

    if overwrite or not path.exists():
        return "missing"
    try:
        with open_for_reading(path) as f:
            attrs = dict(f.attrs)
            if not same_identity(attrs, spec.identity()):
                diff = [f"{k}={attrs.get(k)!r} (wanted {v!r})" for k, v in spec.identity().items()
                        if not same_identity({k: attrs.get(k)}, {k: v})]
                raise GenerationError(f"{path} exists with different settings: {', '.join(diff)}; "
                                      "pass --overwrite to replace it or use another --root")
            bad = verify_operators(f)
            complete = bool(attrs.get("complete", False))
    except GenerationError:
        raise
    except Exception:  # noqa: BLE001 - unreadable: regenerate
        print(f"warning: {path} is unreadable; regenerating it", file=sys.stderr)
        return "missing"
    if bad or not complete:
        print(f"warning: {path} {describe_problems(bad) if bad else 'is not marked complete'}; "
              "regenerating the damaged chunks", file=sys.stderr)
        return "partial"
    return "complete"


def _open_partial(path: Path, spec: MapSplitSpec):
    """Re-open a partial file if it belongs to ``spec`` and has a finished chunk, else None (start
    over): :func:`lemon_pl.data.store.reopen_partial`, which verifies the chunks marked done and
    marks those that fail undone."""

    def belongs(f, done) -> bool:
        return same_identity(dict(f.attrs), spec.identity()) and done.shape == (spec.n_chunks,)

    return reopen_partial(path, belongs)


def write_map_split(root: Path, spec: MapSplitSpec, pool, bar, command: str, overwrite: bool) -> SplitReport:
    """Write (or resume, or repair) ``ROOT/<family>/<split>.h5``; any write error is one
    :class:`GenerationError` line naming the ``.partial``, which the same command resumes
    (:func:`lemon_pl.data.store.guarded_write`, as the operator families' writer)."""
    path = file_path(root, spec)
    partial = partial_path(path)
    resuming = partial.exists() or (path.exists() and not overwrite)  # a damaged file is repaired in place
    return guarded_write(partial, resuming,
                         lambda: _write_map_split_unchecked(path, partial, spec, pool, bar, command, overwrite),
                         lambda: write_map_split(root, spec, pool, bar, command, overwrite))


def _write_map_split_unchecked(path: Path, partial: Path, spec: MapSplitSpec, pool, bar, command: str,
                               overwrite: bool) -> SplitReport:
    status = _status(path, spec, overwrite)
    if status == "complete":
        return SplitReport(str(path), "skipped", spec.n_samples, 1, 0, 0, 0.0)
    t0 = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    if status == "partial":  # a damaged complete file: it becomes the partial, its bad chunks are redone
        os.replace(path, partial)
    f = _open_partial(partial, spec) if partial.exists() else None
    how = ("repaired" if status == "partial" else "resumed") if f is not None else "written"
    if f is None:
        f = _create(partial, spec, MAP_FAMILIES[spec.family], command)
    try:
        done = f["op_done"][:]
        bar.update(int(done.sum()))
        jobs = [(spec.family, spec.seed, spec.split, int(i), spec.chunk, spec.n, spec.n_fine, spec.restriction,
                 int(i)) for i in np.flatnonzero(~done)]
        results = pool.imap(_worker, jobs) if pool is not None else map(_worker, jobs)
        for i, (fine, coarse, u, seconds) in results:
            f["inputs_fine"][i], f["inputs"][i], f["u"][i] = fine, coarse, u
            f["solve_seconds"][i] = seconds
            mark_written(f, i, u)
            bar.update(1)
        f.attrs["seconds_per_sample"] = float(f["solve_seconds"][:].sum()) / (spec.n_chunks * spec.chunk)
        f.attrs["complete"] = True
        f.flush()
    except BaseException:
        close_quietly(f)
        raise
    finish_partial(f, partial, path, "chunks")
    return SplitReport(str(path), how, spec.n_samples, 1, 0, 0, time.perf_counter() - t0)


def generate_maps(root: str | os.PathLike, specs: Sequence[MapSplitSpec], workers: int = 1,
                  overwrite: bool = False, progress: bool = True, command: str = "", *,
                  check_space: bool = False) -> list[SplitReport]:
    """Write every spec's file under ``root`` (one level); returns one report per file.

    ``check_space``: first refuse, in one line and before anything is created, files that cannot
    fit the disk (:func:`check_map_space`; a run of several levels checks them all at once
    before the first)."""
    from tqdm.auto import tqdm

    from lemon_pl.core.progress import bar_kwargs

    if check_space:
        check_map_space([(root, specs)], overwrite, command)
    root = Path(root)
    prepare_root(root)
    locks = acquire_locks(root, specs)
    pool = None
    try:
        total = sum(s.n_chunks for s in specs)
        bar = tqdm(total=total, unit="chunk", desc=f"generate {root.name}", disable=not progress, **bar_kwargs())
        if workers > 1:
            import multiprocessing as mp

            pool = mp.get_context("spawn").Pool(workers)
        try:
            return [write_map_split(root, s, pool, bar, command, overwrite) for s in specs]
        finally:
            bar.close()
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        release_locks(locks)


__all__ = ["MAP_PRESETS", "MapSplitSpec", "map_specs", "solve_chunk", "generate_maps", "write_map_split",
           "map_file_bytes", "map_bytes_to_write", "check_map_space"]
