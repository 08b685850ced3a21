"""A full disk while ``lemon-pl generate`` writes the map families (issue 22, requirement 4).

A real small tmpfs fills up under ``lemon-pl generate --families rough_elliptic,schrodinger --levels
64,128``: the run ends with one line saying the disk is full and which ``.partial`` it was writing,
exit 2, never a traceback, HDF5's error stack or a segmentation fault (before: HDF5 wrote the data
when h5py freed a dataset object, the write failed outside any error handling, and the interpreter
crashed at exit); whatever is named ``<split>.h5`` verifies; and once there is space the same
command finishes the same arrays as a run that never ran out. The disk estimate made before
anything is written refuses such a run in one line.

Mounting needs root (or CAP_SYS_ADMIN); elsewhere the tmpfs tests are skipped with the reason.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from lemon_pl.cli import generate as gen_cli
from lemon_pl.data import store
from lemon_pl.data.store import GenerationError
from lemon_pl.data.io import verify_operators
from lemon_pl.multilevel import generate as mgen
from tests.cli.test_full_disk import fail_nth_write
from tests.data.test_generate_hostile import PROG, assert_refused_for_space, one_line, small_disk  # noqa: F401 - small_disk: a fixture

FAMILIES = ("rough_elliptic", "schrodinger")
LEVELS = (64, 128)
ARGS = ["--families", ",".join(FAMILIES), "--levels", ",".join(map(str, LEVELS)), "--preset", "tiny",
        "--no-progress"]
#: what HDF5 and Python print when a write fails where nothing handles it
NOISE = ("Traceback", "HDF5-DIAG", "Segmentation", "Exception ignored")
#: the arrays that must equal a clean run's (solve_seconds is a measured wall time)
ARRAYS = ("inputs_fine", "inputs", "u", "x", "x_fine", "op_done", "u_crc32")


def _generate(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lemon_pl", "generate", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _assert_complete(path: Path) -> None:
    """The project's check of a finished file: marked complete, every chunk done, on disk, its
    fletcher32 and CRC-32 checksums matching (:func:`lemon_pl.data.io.verify_operators`)."""
    with h5py.File(path, "r") as f:
        assert bool(f.attrs["complete"]) and f["op_done"][:].all(), path
        assert verify_operators(f) == [], path


def _files(root: Path, splits: tuple[str, ...]) -> list[Path]:
    return [root / f"n{n}" / fam / f"{s}.h5" for n in LEVELS for fam in FAMILIES for s in splits]


def _assert_same_arrays(root: Path, ref: Path, splits: tuple[str, ...]) -> None:
    for path in _files(root, splits):
        _assert_complete(path)
        with h5py.File(path, "r") as a, h5py.File(ref / path.relative_to(root), "r") as b:
            for key in ARRAYS:
                assert np.array_equal(a[key][()], b[key][()]), (path, key)
            for key in ("family", "split", "n_samples", "chunk", "level_grid", "finest_grid", "restriction", "seed"):
                assert a.attrs[key] == b.attrs[key], (path, key)


# 64k: the lock files fit, the first file's first chunk does not (the rerun starts that .partial over);
# 1m: the tiny preset's first level and part of the second fit (one chunk a file);
# 1m with 640 samples: the disk fills in the middle of a file of ten chunks (the rerun resumes it)
CASES = {"first-write": ("64k", []), "tiny": ("1m", []),
         "mid-file": ("1m", ["--n-samples", "640", "--splits", "train,val"])}


@pytest.mark.parametrize("small_disk,extra", list(CASES.values()), ids=list(CASES), indirect=["small_disk"])
def test_a_full_disk_ends_in_one_line_and_the_rerun_completes(small_disk, extra, tmp_path):
    root = small_disk / "R"
    splits = ("train", "val") if "--splits" in extra else ("train", "val", "test")
    res = _generate("--root", root, *ARGS, *extra, "--skip-space-check")
    assert res.returncode == 2, (res.returncode, res.stderr[-3000:])  # not -11 (the segmentation fault)
    for text in NOISE:
        assert text not in res.stderr, res.stderr[-3000:]
    m = re.fullmatch(rf"{re.escape(PROG)}no space left on device while writing "
                     rf"({re.escape(str(root))}/n\d+/\w+/\w+\.h5\.partial); "
                     "free some space and run the same command again to resume", one_line(res.stderr))
    assert m, res.stderr
    assert Path(m.group(1)).exists()
    assert len(list(root.rglob("*.partial"))) == 1
    for path in root.rglob("*.h5"):  # whatever is named complete verifies
        _assert_complete(path)
    if "--n-samples" in extra:  # the disk filled in the middle of a file: some of its chunks are kept
        with h5py.File(m.group(1), "r") as f:
            done = f["op_done"][:]
        assert 0 < done.sum() < len(done), done

    # space freed: the same command finishes the arrays of a run that never ran out
    subprocess.run(["mount", "-o", "remount,size=40m", str(small_disk)], check=True)
    res = _generate("--root", root, *ARGS, *extra, "--skip-space-check")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "warning" not in res.stderr and not any(text in res.stderr for text in NOISE), res.stderr
    assert not list(root.rglob("*.partial"))
    ref = tmp_path / "ref"
    res = _generate("--root", ref, *ARGS, *extra)
    assert res.returncode == 0, res.stderr[-3000:]
    _assert_same_arrays(root, ref, splits)


@pytest.mark.parametrize("small_disk", ["512k"], indirect=True)
def test_the_disk_estimate_refuses_map_files_that_cannot_fit(small_disk):
    """Before anything is written: the files of every level against the free space, in one line."""
    root = small_disk / "R"
    specs = [(root / f"n{n}", [s for fam in FAMILIES for s in mgen.map_specs(fam, "tiny", ["train", "val", "test"],
                                                                            n, LEVELS[-1], 1)])
             for n in LEVELS]
    with pytest.raises(GenerationError) as err:
        mgen.check_map_space(specs)
    assert re.fullmatch(rf"--root '{re.escape(str(root))}': the files need about [\d.]+ MiB but [\d.]+ [KM]iB is "
                        rf"free on its disk \({re.escape(str(small_disk))}\); .*--skip-space-check.*", str(err.value))
    assert "\n" not in str(err.value)
    assert list(small_disk.iterdir()) == []
    # generate_maps checks the same (one level) when asked, before it creates the root or a lock file
    with pytest.raises(GenerationError, match="the files need about"):
        mgen.generate_maps(*specs[-1], progress=False, check_space=True)
    assert list(small_disk.iterdir()) == []


@pytest.mark.parametrize("small_disk", ["1m"], indirect=True)
def test_the_cli_refuses_map_files_that_cannot_fit_unless_told(small_disk):
    """The command line estimates every level's operator and map files together before the first is written."""
    root = small_disk / "R"
    assert_refused_for_space(_generate("--root", root, *ARGS), root, small_disk)


def test_the_estimate_bounds_the_real_file_sizes(tmp_path):
    for extra in ([], ["--n-samples", "200", "--splits", "train"]):
        root = tmp_path / f"r{len(extra)}"
        assert gen_cli.main(["--root", str(root), *ARGS, *extra]) == 0
        n_samples = int(extra[1]) if extra else None
        for n in LEVELS:
            for fam in FAMILIES:
                for spec in mgen.map_specs(fam, "tiny", ["train"], n, LEVELS[-1], 10086, n_samples):
                    size = (root / f"n{n}" / fam / "train.h5").stat().st_size
                    assert size <= mgen.map_file_bytes(spec) <= 2 * size + 128 * 1024, (spec, size)


def test_a_resumed_partial_hdf5_cannot_write_to_is_started_over(tmp_path, capsys, monkeypatch):
    """A failed write can leave a partial that verifies but takes no more writes ("addr overflow"):
    the rerun says so in one warning and writes the file again from the start, with the same arrays."""
    args = ["--families", "rough_elliptic", "--levels", "64", "--preset", "tiny", "--splits", "train",
            "--n-samples", "192", "--no-progress"]
    ref = tmp_path / "ref"
    assert gen_cli.main(["--root", str(ref), *args]) == 0
    writes = fail_nth_write(monkeypatch)
    root = tmp_path / "data"
    writes.update(fail_at=3, error=OSError(errno.ENOSPC, "No space left on device"))
    assert gen_cli.main(["--root", str(root), *args]) == 2
    partial = root / "n64" / "rough_elliptic" / "train.h5.partial"
    assert one_line(capsys.readouterr().err) == (f"{PROG}no space left on device while writing {partial}; free some "
                                                 "space and run the same command again to resume")
    with h5py.File(partial, "r") as f:
        assert f["op_done"][:].tolist() == [True, True, False]
    writes.update(n=0, fail_at=1, error=OSError("Can't synchronously write data (addr overflow, addr = 15164, "
                                                "size = 3656, eoa = 15164)"))
    assert gen_cli.main(["--root", str(root), *args]) == 0
    assert one_line(capsys.readouterr().err) == (
        f"warning: {partial} cannot be written to (Can't synchronously write data (addr overflow, addr = 15164, "
        "size = 3656, eoa = 15164)); generating it again from the start")
    final = root / "n64" / "rough_elliptic" / "train.h5"
    _assert_complete(final)
    with h5py.File(final, "r") as a, h5py.File(ref / "n64" / "rough_elliptic" / "train.h5", "r") as b:
        for key in ARRAYS:
            assert np.array_equal(a[key][()], b[key][()]), key


def test_a_partial_with_no_finished_chunk_is_started_over(tmp_path, capsys, monkeypatch):
    """A first write that did not fit leaves a .partial with nothing done: the rerun does not reopen
    it (HDF5 may not be able to extend it) but writes it again, silently."""
    args = ["--families", "schrodinger", "--levels", "64", "--preset", "tiny", "--splits", "train", "--no-progress"]
    real = h5py.Dataset.__setitem__

    def first_fails(self, key, value):
        if self.name == "/inputs_fine":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, key, value)

    root = tmp_path / "data"
    monkeypatch.setattr(h5py.Dataset, "__setitem__", first_fails)
    assert gen_cli.main(["--root", str(root), *args]) == 2
    partial = root / "n64" / "schrodinger" / "train.h5.partial"
    assert partial.exists() and "no space left on device" in one_line(capsys.readouterr().err)
    monkeypatch.undo()
    opened = []
    real_open = mgen.open_for_writing
    for module in (mgen, store):  # the writer creates files, the store re-opens partials
        monkeypatch.setattr(module, "open_for_writing", lambda p, mode: opened.append(mode) or real_open(p, mode))
    assert gen_cli.main(["--root", str(root), *args]) == 0
    assert capsys.readouterr().err == ""
    assert opened == ["r+", "w"]  # looked at, found empty, started over
    _assert_complete(root / "n64" / "schrodinger" / "train.h5")


def test_a_write_error_from_hdf5_as_runtime_error_is_one_line(tmp_path):
    """h5py reports some failed writes as RuntimeError (no errno, no strerror): one line all the same."""
    from lemon_pl.data.store import write_error_message

    partial = tmp_path / "x.h5.partial"
    full = RuntimeError("Can't decrement id ref count (file write failed: time = Mon Dec  7 23:49:49 2026\n, "
                        "filename = 'x', file descriptor = 9, errno = 28, error message = 'No space left on device')")
    assert write_error_message(full, partial) == (f"no space left on device while writing {partial}; free "
                                                  "some space and run the same command again to resume")
    eio = RuntimeError("Can't write data (file write failed: errno = 5, error message = 'Input/output error')")
    msg = write_error_message(eio, partial)
    assert msg.startswith(f"cannot write {partial}: ") and "Input/output error" in msg and "\n" not in msg
