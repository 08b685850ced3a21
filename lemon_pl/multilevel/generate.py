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

The same guarantees as the data engine: a ``.partial`` file renamed only when every chunk is
written, checksummed and read back; a re-run verifies and resumes; ``flock`` per file.
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

from lemon_pl.data.generate import (GenerationError, SplitReport, _acquire_locks, _check_root, _close_quietly, _fsync,
                                    _fsync_dir, _os_error_message, _release_locks, _rng, _same_identity,
                                    _verify_written)
from lemon_pl.data.io import CHECKSUM, describe_problems, mark_written, verify_operators
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
    from lemon_pl.multilevel.transfer import RESTRICTIONS

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
    rng = _rng(seed, family, split, "inputs", index)
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


def _create(path: Path, spec: MapSplitSpec, fam: MapFamily, command: str):
    import h5py

    f = h5py.File(path, "w")
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
        _close_quietly(f)
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
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            if not _same_identity(attrs, spec.identity()):
                diff = [f"{k}={attrs.get(k)!r} (wanted {v!r})" for k, v in spec.identity().items()
                        if not _same_identity({k: attrs.get(k)}, {k: v})]
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
    import h5py

    try:
        f = h5py.File(path, "r+")
    except Exception:  # noqa: BLE001
        return None
    try:
        done = f["op_done"][:]
        ok = _same_identity(dict(f.attrs), spec.identity()) and done.shape == (spec.n_chunks,)
        bad = verify_operators(f, np.flatnonzero(done)) if ok else []
        if ok and bad:
            for i, _ in bad:
                done[i] = False
            f["op_done"][:] = done
            f.flush()
    except Exception:  # noqa: BLE001
        ok = False
    if not ok:
        _close_quietly(f)
        return None
    return f


def write_map_split(root: Path, spec: MapSplitSpec, pool, bar, command: str, overwrite: bool) -> SplitReport:
    path = root / spec.family / f"{spec.split}.h5"
    partial = path.with_name(path.name + ".partial")
    status = _status(path, spec, overwrite)
    if status == "complete":
        return SplitReport(str(path), "skipped", spec.n_samples, 1, 0, 0, 0.0)
    t0 = time.perf_counter()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if status == "partial":
            os.replace(path, partial)
        f = _open_partial(partial, spec) if partial.exists() else None
        how = "resumed" if f is not None else "written"
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
            _close_quietly(f)
            raise
        f.close()
        _fsync(partial)
        problems = _verify_written(partial)
        if problems:
            raise GenerationError(f"{partial} failed verification after writing ({problems}); it was not renamed; "
                                  "run the same command again")
        os.replace(partial, path)
        _fsync_dir(path.parent)
    except OSError as err:
        raise GenerationError(_os_error_message(err, partial)) from None
    return SplitReport(str(path), how, spec.n_samples, 1, 0, 0, time.perf_counter() - t0)


def generate_maps(root: str | os.PathLike, specs: Sequence[MapSplitSpec], workers: int = 1,
                  overwrite: bool = False, progress: bool = True, command: str = "") -> list[SplitReport]:
    """Write every spec's file under ``root`` (one level); returns one report per file."""
    from tqdm.auto import tqdm

    from lemon_pl.progress import bar_kwargs

    root = Path(root)
    _check_root(root)
    locks = _acquire_locks(root, specs)
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
        _release_locks(locks)


__all__ = ["MAP_PRESETS", "MapSplitSpec", "map_specs", "solve_chunk", "generate_maps", "write_map_split"]
