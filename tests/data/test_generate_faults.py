"""Generation faults: nothing lost, nothing silently wrong.

Disk full, lost writes, two concurrent runs, hand-damaged complete files, nonsense arguments,
and a NaN read by a DataLoader worker. Each ends in one clear line (exit 2) or in the
bit-identical file, never in a file that looks complete but is not.
"""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from lemon_pl.cli import generate as gen_cli
from lemon_pl.data import generate as gen
from lemon_pl.data.io import CHECKSUM, DataFileError, FamilySplit, operator_checksum, verify_operators

REPO = Path(__file__).resolve().parents[2]
ARGS = ["--preset", "tiny", "--families", "heat", "--splits", "train", "--n-operators", "3", "--k", "4",
        "--no-progress"]
KEYS = ("u", CHECKSUM, "params", "tokens", "token_len", "n_rejected", "op_done")


def run(root, *extra) -> int:
    return gen_cli.main(["--root", str(root), *ARGS, *extra])


def arrays(path) -> dict:
    with h5py.File(path, "r") as f:
        return {k: f[k][:] for k in KEYS}


def assert_identical(path, ref_path):
    a, b = arrays(path), arrays(ref_path)
    for k in KEYS:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture(scope="module")
def ref(tmp_path_factory) -> Path:
    """A clean generation of heat/train (3 operators x 4 trajectories)."""
    root = tmp_path_factory.mktemp("ref")
    assert run(root) == 0
    return root / "heat" / "train.h5"


@pytest.fixture()
def done_copy(ref, tmp_path) -> Path:
    """A complete file in a fresh root, as a finished earlier run left it."""
    path = tmp_path / "heat" / "train.h5"
    path.parent.mkdir(parents=True)
    shutil.copyfile(ref, path)
    return path


def test_clean_file_verifies_and_records_completeness(ref):
    with h5py.File(ref, "r") as f:
        assert f.attrs["complete"] and f["op_done"][:].all()
        assert verify_operators(f) == []
        assert [operator_checksum(f["u"][i]) for i in range(3)] == f[CHECKSUM][:].tolist()


# ----------------------------------------------------------------------------- 1. disk full

ENOSPC_ERRORS = {
    "errno": lambda: OSError(errno.ENOSPC, "No space left on device"),
    # what h5py raises from a failed write: errno not set, the reason inside the message
    "h5py": lambda: OSError("Can't synchronously write data (file write failed: time = Mon Jan  1 00:00:00 2024\n"
                            ", filename = 'train.h5.partial', file descriptor = 5, errno = 28, error message = "
                            "'No space left on device', buf = 0x1, total write size = 24576)"),
}


def _patch_u_writes(monkeypatch, on_write):
    real = h5py.Dataset.__setitem__

    def setitem(self, key, value):
        if self.name == "/u" and on_write(key) == "drop":
            return
        real(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", setitem)


@pytest.mark.parametrize("kind", sorted(ENOSPC_ERRORS))
@pytest.mark.parametrize("where", ["write", "flush"])
def test_disk_full_leaves_a_resumable_partial(ref, tmp_path, monkeypatch, capsys, kind, where):
    writes = {"n": 0}

    def on_write(key):
        writes["n"] += 1
        if where == "write" and writes["n"] == 3:  # two operators fit, the third does not
            raise ENOSPC_ERRORS[kind]()

    _patch_u_writes(monkeypatch, on_write)
    if where == "flush":  # the data of the third operator reach HDF5's cache, not the disk
        real_flush = h5py.File.flush

        def flush(self):
            if writes["n"] == 3:
                raise ENOSPC_ERRORS[kind]()
            real_flush(self)

        monkeypatch.setattr(h5py.File, "flush", flush)

    assert run(tmp_path) == 2
    final = tmp_path / "heat" / "train.h5"
    partial = final.with_name("train.h5.partial")
    line = one_line(capsys.readouterr().err)
    assert line == (f"lemon-pl generate: error: no space left on device while writing {partial}; "
                    "free some space and run the same command again to resume")
    assert not final.exists() and partial.exists()

    monkeypatch.undo()  # space freed
    assert run(tmp_path) == 0
    out = capsys.readouterr().out
    assert "1 generated" in out and "0 already complete" in out
    assert not partial.exists()
    assert_identical(final, ref)


def test_lost_write_is_caught_before_the_rename(ref, tmp_path, monkeypatch, capsys):
    # a write that silently never reaches the disk (operator 1 would read back as zeros)
    _patch_u_writes(monkeypatch, lambda key: "drop" if key == 1 else None)
    assert run(tmp_path) == 2
    final = tmp_path / "heat" / "train.h5"
    partial = final.with_name("train.h5.partial")
    line = one_line(capsys.readouterr().err)
    assert line == (f"lemon-pl generate: error: {partial} failed verification after writing (operator 1: "
                    "no data on disk); it was not renamed; run the same command again to regenerate the "
                    "damaged operators")
    assert not final.exists(), "a file with an unwritten operator must never be called complete"

    monkeypatch.undo()
    assert run(tmp_path) == 0
    err = capsys.readouterr().err
    assert f"{partial} operator 1: no data on disk; generating again" in err
    assert_identical(final, ref)


def test_complete_name_with_an_unfinished_operator_is_not_already_complete(ref, done_copy, capsys):
    with h5py.File(done_copy, "r+") as f:  # as if the done flag of operator 2 never reached the disk
        f["op_done"][2] = False
    with pytest.raises(DataFileError, match="incomplete"):
        FamilySplit(done_copy)
    assert run(done_copy.parents[1]) == 0
    cap = capsys.readouterr()
    assert one_line(cap.err) == (f"warning: {done_copy} fails verification (operator 2: not written); "
                                 "regenerating the damaged operators")
    assert "1 generated" in cap.out
    assert_identical(done_copy, ref)


# ----------------------------------------------------------------------------- 2. two runs at once


def test_a_held_lock_stops_a_second_run_before_it_writes(ref, tmp_path, capsys):
    lock = tmp_path / "heat" / ".train.lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("4242\n")
        held.flush()
        assert run(tmp_path) == 2
        partial = tmp_path / "heat" / "train.h5.partial"
        assert one_line(capsys.readouterr().err) == (
            f"lemon-pl generate: error: another lemon-pl generate is writing {partial} (pid 4242); "
            "wait for it or use another --root")
        assert sorted(p.name for p in lock.parent.iterdir()) == [".train.lock"]  # nothing opened
    assert run(tmp_path) == 0  # lock released
    assert_identical(tmp_path / "heat" / "train.h5", ref)


def test_two_real_runs_exclude_each_other(ref, tmp_path, monkeypatch, capsys):
    """While this process generates, a second ``lemon-pl generate`` on the same root is refused."""
    real = gen.generate_operator
    loser = {}

    def solve_and_compete(*args, **kwargs):
        if args[4] == 1 and not loser:  # mid-way: operator 0 written, the partial open
            loser["res"] = subprocess.run(
                [sys.executable, "-m", "lemon_pl.cli", "generate", "--root", str(tmp_path), *ARGS],
                capture_output=True, text=True, cwd=REPO, timeout=120)
        return real(*args, **kwargs)

    monkeypatch.setattr(gen, "generate_operator", solve_and_compete)
    assert run(tmp_path) == 0
    res = loser["res"]
    partial = tmp_path / "heat" / "train.h5.partial"
    assert res.returncode == 2, res.stderr
    assert one_line(res.stderr) == (f"lemon-pl generate: error: another lemon-pl generate is writing {partial} "
                                    f"(pid {os.getpid()}); wait for it or use another --root")
    final = tmp_path / "heat" / "train.h5"
    with h5py.File(final, "r") as f:
        assert verify_operators(f) == []
    assert_identical(final, ref)


# ----------------------------------------------------------------------------- 3. damaged complete files


def test_flipped_bytes_in_a_complete_file_are_repaired(ref, done_copy, capsys):
    with h5py.File(done_copy, "r") as f:
        offset = f["u"].id.get_chunk_info(1).byte_offset
    raw = bytearray(done_copy.read_bytes())
    raw[offset + 1000: offset + 1016] = b"\xff" * 16
    done_copy.write_bytes(bytes(raw))
    assert run(done_copy.parents[1]) == 0
    cap = capsys.readouterr()
    line = one_line(cap.err)
    assert line.startswith(f"warning: {done_copy} fails verification (operator 1: unreadable, chunk checksum failed")
    assert line.endswith("; regenerating the damaged operators")
    assert "1 generated" in cap.out and "0 already complete" in cap.out
    assert_identical(done_copy, ref)
    assert run(done_copy.parents[1]) == 0 and "1 already complete" in capsys.readouterr().out


def test_edited_values_with_a_valid_chunk_checksum_are_repaired(ref, done_copy, capsys):
    with h5py.File(done_copy, "r+") as f:  # h5py recomputes fletcher32; only u_crc32 can tell
        f["u"][2, 0, 5, 7] += 1.0
    assert run(done_copy.parents[1]) == 0
    assert one_line(capsys.readouterr().err) == (
        f"warning: {done_copy} fails verification (operator 2: data do not match their CRC-32 checksum); "
        "regenerating the damaged operators")
    assert_identical(done_copy, ref)


def test_truncated_complete_file_is_regenerated(ref, done_copy, capsys):
    data = done_copy.read_bytes()
    done_copy.write_bytes(data[: len(data) * 2 // 3])
    assert run(done_copy.parents[1]) == 0
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"warning: {done_copy} is unreadable, corrupt or truncated (")
    assert line.endswith("); regenerating it")
    assert_identical(done_copy, ref)


# ----------------------------------------------------------------------------- 4. nonsense arguments


@pytest.mark.parametrize("splits", ["", " , ", ","])
def test_empty_splits_is_an_error(tmp_path, capsys, splits):
    rc = gen_cli.main(["--root", str(tmp_path), "--preset", "tiny", "--families", "heat", "--splits", splits])
    assert rc == 2
    assert one_line(capsys.readouterr().err) == (
        f"lemon-pl generate: error: --splits {splits!r} names no split; give e.g. --splits train,val,test")
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


@pytest.mark.parametrize("option, value, message", [
    ("--nx", "0", "--nx must be at least 8, got 0"),
    ("--nt", "-1", "--nt must be at least 2, got -1"),
    ("--k", "0", "--k must be positive, got 0"),
    ("--n-operators", "0", "--n-operators must be positive, got 0"),
    ("--workers", "0", "--workers must be at least 1, got 0"),
    ("--gamma", "-0.1", "--gamma must lie in [0, 1), got -0.1"),
    ("--gamma", "1", "--gamma must lie in [0, 1), got 1.0"),
    ("--gamma", "nan", "--gamma must lie in [0, 1), got nan"),
    ("--seed", "-1", "--seed must be non-negative, got -1"),
])
def test_out_of_range_numbers_name_the_option(tmp_path, capsys, option, value, message):
    root = tmp_path / "data"
    rc = gen_cli.main(["--root", str(root), "--preset", "tiny", "--families", "heat", option, value])
    assert rc == 2
    assert one_line(capsys.readouterr().err) == f"lemon-pl generate: error: {message}"
    assert not root.exists()


@pytest.mark.parametrize("argv, message", [
    (["--nope"], "unrecognized arguments: --nope"),
    (["--nx"], "argument --nx: expected one argument"),
    (["--nx", "abc"], "argument --nx: invalid int value: 'abc'"),
    (["--preset", "huge"], "argument --preset: invalid choice: 'huge'"),
])
def test_argparse_errors_are_one_line_and_a_hint(capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        gen_cli.main(argv)
    assert exc.value.code == 2
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 2 and cap.out == ""
    assert lines[0].startswith(f"lemon-pl generate: error: {message}")
    assert lines[1] == "see lemon-pl generate --help"


# ----------------------------------------------------------------------------- 5. NaN read by a worker


@pytest.fixture(scope="module")
def nan_root(tmp_path_factory) -> Path:
    """heat (tiny) with one NaN in train operator 2, trajectory 5, frame 3 (an output frame)."""
    root = tmp_path_factory.mktemp("nan")
    gen.generate(root, "tiny", "heat", progress=False)
    with h5py.File(root / "heat" / "train.h5", "r+") as f:
        f["u"][2, 5, 3, 10] = np.nan
        f[CHECKSUM][2] = operator_checksum(f["u"][2])  # a correctly checksummed NaN
    return root


def _dm(root, **kw):
    from lemon_pl.data.datamodule import OperatorFamilyDataModule

    args = dict(root=str(root), train_families="heat", preset="tiny", generate=False, batch_size=4,
                eval_batch_size=8, num_workers=1, in_memory=False)
    return OperatorFamilyDataModule(**(args | kw))


@pytest.mark.parametrize("unit", ["sample", "task"])
def test_nan_read_in_a_worker_names_file_operator_and_trajectory(nan_root, unit):
    d = _dm(nan_root, unit=unit, tasks_per_batch=1)
    d.setup("fit")
    with pytest.raises(DataFileError) as exc:
        for _ in d.train_dataloader():
            pass
    first = str(exc.value).splitlines()[0]  # what the CLI prints (innermost cause's first line)
    assert first.startswith(f"{nan_root / 'heat' / 'train.h5'}: non-finite value (NaN/Inf) in operator 2 "
                            "trajectory 5; regenerate it with:")
    assert first.endswith("(in DataLoader worker process 0)")
    assert exc.value.worker_traceback and "Traceback" in exc.value.worker_traceback


def test_nan_read_into_memory_names_file_operator_and_trajectory(nan_root):
    d = _dm(nan_root, in_memory=True)
    with pytest.raises(DataFileError, match=r"train\.h5: non-finite value \(NaN/Inf\) in operator 2 trajectory 5;"):
        d.setup("fit")


def test_checksum_failure_read_in_a_worker_names_file_and_operator(tmp_path):
    gen.generate(tmp_path, "tiny", "heat", progress=False)
    path = tmp_path / "heat" / "train.h5"
    with h5py.File(path, "r") as f:
        offset = f["u"].id.get_chunk_info(1).byte_offset
    raw = bytearray(path.read_bytes())
    raw[offset + 1000: offset + 1016] = b"\xff" * 16
    path.write_bytes(bytes(raw))
    d = _dm(tmp_path)
    d.setup("fit")
    with pytest.raises(DataFileError) as exc:
        for _ in d.train_dataloader():
            pass
    first = str(exc.value).splitlines()[0]
    assert first.startswith(f"{path}: cannot read operator 1 trajectory ")
    assert "the file is corrupt; regenerate it with:" in first
    assert first.endswith("(in DataLoader worker process 0)")
