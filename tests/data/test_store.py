"""The one HDF5 store (lemon_pl.data.store) through its public API, with a minimal writer of its own:
a file with the final name is always complete and verified, a failed or killed write leaves only the
``.partial`` (which is resumed), a full disk is one line, and two runs never write one file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from lemon_pl.data import store
from lemon_pl.data.io import CHECKSUM, mark_written, open_for_writing
from lemon_pl.data.store import GenerationError, SplitReport

UNITS, ROWS = 4, 64


@dataclass(frozen=True)
class Spec:
    family: str = "toy"
    split: str = "train"


def _unit(i: int, value: float = 1.0) -> np.ndarray:
    return np.full((ROWS, 8), value * (i + 1), dtype=np.float32)


def _create(partial: Path):
    f = open_for_writing(partial, "w")
    f.create_dataset("u", shape=(UNITS, ROWS, 8), dtype="f4", chunks=(1, ROWS, 8), fletcher32=True)
    f.create_dataset("op_done", data=np.zeros(UNITS, dtype=bool))
    f.create_dataset(CHECKSUM, data=np.zeros(UNITS, dtype=np.uint32))
    f.attrs.update({"family": "toy", "complete": False})
    f.flush()
    return f


def write(root: Path, value: float = 1.0, corrupt: bool = False, stop_after: int | None = None) -> SplitReport:
    """The store's protocol in full: lock, fill the partial (resuming what it holds), finish."""
    spec = Spec()
    path = store.file_path(root, spec)
    partial = store.partial_path(path)
    store.prepare_root(root)
    locks = store.acquire_locks(root, [spec])

    def unchecked() -> SplitReport:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = store.reopen_partial(partial, lambda f, done: f.attrs["family"] == "toy") if partial.exists() else None
        status = "resumed" if f is not None else "written"
        f = f if f is not None else _create(partial)
        try:
            done = f["op_done"][:]
            for i in np.flatnonzero(~done):
                if stop_after is not None and i >= stop_after:
                    raise OSError(5, "Input/output error")  # a failing disk, after some units
                f["u"][i] = _unit(int(i), value)
                mark_written(f, int(i), _unit(int(i), value) + (1.0 if corrupt else 0.0))
            f.attrs["complete"] = True
            f.flush()
        except BaseException:
            store.close_quietly(f)
            raise
        store.finish_partial(f, partial, path, "units")
        return SplitReport(str(path), status, UNITS, 1, 0, 0, 0.0)

    try:
        return store.guarded_write(partial, partial.exists(), unchecked, unchecked)
    finally:
        store.release_locks(locks)


def _values(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["u"][:]


def test_a_write_renames_only_a_verified_complete_file(tmp_path):
    report = write(tmp_path)
    path = tmp_path / "toy" / "train.h5"
    assert report.status == "written" and path.exists() and not store.partial_path(path).exists()
    assert store.verify_written(path) == ""
    np.testing.assert_array_equal(_values(path)[2], _unit(2))


def test_a_verify_failure_leaves_the_old_file_and_names_the_partial(tmp_path):
    write(tmp_path, value=1.0)
    path = tmp_path / "toy" / "train.h5"
    before = path.read_bytes()
    with pytest.raises(GenerationError, match=r"train\.h5\.partial failed verification after writing .*not renamed"):
        _write_over(tmp_path)
    assert path.read_bytes() == before  # the old complete file is untouched
    assert store.partial_path(path).exists()


def _write_over(root: Path):
    """A new partial next to an existing complete file, checksums wrong: finish_partial must refuse it."""
    partial = store.partial_path(store.file_path(root, Spec()))
    f = _create(partial)
    for i in range(UNITS):
        f["u"][i] = _unit(i, 2.0)
        mark_written(f, i, _unit(i, 3.0))  # CRC-32 of other data
    f.attrs["complete"] = True
    f.flush()
    store.finish_partial(f, partial, store.file_path(root, Spec()), "units")


def test_a_failed_write_is_one_line_and_the_same_command_resumes(tmp_path):
    with pytest.raises(GenerationError) as err:
        write(tmp_path, stop_after=2)
    partial = tmp_path / "toy" / "train.h5.partial"
    assert str(err.value) == (f"cannot write {partial}: Input/output error; run the same command again to resume")
    assert not (tmp_path / "toy" / "train.h5").exists()
    assert write(tmp_path).status == "resumed"  # units 0 and 1 kept, 2 and 3 written
    np.testing.assert_array_equal(_values(tmp_path / "toy" / "train.h5"), np.stack([_unit(i) for i in range(UNITS)]))


def test_a_killed_write_leaves_no_complete_looking_file(tmp_path):
    """SIGKILL in the middle of a write: only the .partial exists, it is not marked complete, and the
    next run resumes it to the same file as an uninterrupted one."""
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})
        from lemon_pl.data.io import mark_written
        import tests.data.test_store as t
        real = mark_written
        def killed(f, i, u):
            real(f, i, u)
            if i == 1:
                os.kill(os.getpid(), signal.SIGKILL)
        t.mark_written = killed
        t.write(__import__("pathlib").Path({str(tmp_path)!r}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    path = tmp_path / "toy" / "train.h5"
    assert not path.exists()
    with h5py.File(store.partial_path(path), "r") as f:
        assert not f.attrs["complete"] and f["op_done"][:].tolist() == [True, True, False, False]
    assert write(tmp_path).status == "resumed"
    reference = tmp_path / "again"
    write(reference)
    np.testing.assert_array_equal(_values(path), _values(reference / "toy" / "train.h5"))


def test_a_full_disk_is_one_line_naming_the_partial(tmp_path):
    from tests.cli.test_full_disk import fill, tmpfs  # here: the subprocesses above import this module

    with tmpfs(tmp_path / "disk", size="1m") as disk:
        store.prepare_root(disk / "data")
        (disk / "data" / "toy").mkdir()
        fill(disk)
        with pytest.raises(GenerationError) as err:
            write(disk / "data")
        partial = disk / "data" / "toy" / "train.h5.partial"
        assert str(err.value) == (f"no space left on device while writing {partial}; free some space and run the "
                                  "same command again to resume")
        assert not (disk / "data" / "toy" / "train.h5").exists()


def test_a_second_writer_is_refused_in_one_line_naming_the_holder(tmp_path):
    locks = store.acquire_locks(tmp_path, [Spec()])
    try:
        code = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r}); "
                "from pathlib import Path; from lemon_pl.data import store; from tests.data.test_store import Spec; "
                f"store.acquire_locks(Path({str(tmp_path)!r}), [Spec()])")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    finally:
        store.release_locks(locks)
    last = proc.stderr.strip().splitlines()[-1]
    assert "GenerationError: another lemon-pl generate is writing" in last and f"(pid {__import__('os').getpid()})" in last


def test_space_estimates_subtract_what_partials_hold(tmp_path):
    write(tmp_path, stop_after=None)
    spec, other = Spec(), Spec(split="val")
    assert store.bytes_to_write(tmp_path, [spec, other], lambda s: 10_000) == 10_000  # train exists
    assert store.bytes_to_write(tmp_path, [spec], lambda s: 10_000, overwrite=True) == 10_000
    with pytest.raises(GenerationError, match="the files need about 1 PiB"):
        store.check_disk_space([tmp_path], 2**50)
    assert store.same_identity({"seed": 3, "gamma": 0.1}, {"seed": 3, "gamma": 0.1 + 1e-12})
    assert not store.same_identity({"seed": 3}, {"seed": 4})
    assert store.same_identity({}, {"solver": "numpy"}, defaults={"solver": "numpy"})
