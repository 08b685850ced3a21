"""Hostile input to ``lemon-pl generate`` (issue 22).

README's data commands work as written (scaled by flags only); family groups resolve and an empty
family list is refused; every number, the device string and the root are refused up front in one
line naming the flag, exit 2, nothing created and existing data byte-identical; a run that cannot
fit the memory or the disk is refused before it starts; and a disk that really fills up mid-run
(a small tmpfs) ends in one line saying so and where, never a traceback or a crash, with only
verified files named complete and a rerun that finishes the bit-identical data.
"""

from __future__ import annotations

import collections
import errno
import os
import re
import shlex
import subprocess
import sys
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from lemon_pl.cli import generate as gen_cli
from lemon_pl.data import generate as gen
from lemon_pl.data import store
from lemon_pl.data.families import FINETUNE_FAMILIES, PRETRAIN_FAMILIES, list_families, resolve_families
from lemon_pl.data.io import verify_operators
from tests.cli.test_full_disk import fail_nth_write, tmpfs

REPO = Path(__file__).resolve().parents[2]
PROG = "lemon-pl generate: error: "
#: the smallest run: what every README command is scaled by
SCALE = ["--n-operators", "1", "--k", "1", "--nx", "16", "--nt", "8", "--no-progress"]
HEAT = ["--preset", "tiny", "--families", "heat", "--no-progress"]


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (lock files included) with its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def cli(argv, capsys) -> tuple[int, str, str]:
    rc = gen_cli.main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def assert_complete(path: Path) -> None:
    with h5py.File(path, "r") as f:
        assert bool(f.attrs["complete"]) and f["op_done"][:].all(), path
        assert verify_operators(f) == [], path


# ----------------------------------------------------------------------------- 1. README, family groups


def readme_data_commands() -> list[list[str]]:
    """The commands of README's ``## Data`` block, as a shell splits them (comments dropped)."""
    text = (REPO / "README.md").read_text()
    block = text.split("\n## Data\n", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    return [shlex.split(line, comments=True) for line in block.splitlines() if line.strip()]


def test_readme_data_block_is_what_the_slow_test_runs():
    cmds = readme_data_commands()
    assert cmds and all(c[:2] == ["lemon-pl", "generate"] for c in cmds)
    assert ["lemon-pl", "generate", "--preset", "default", "--root", "data/default"] in cmds  # no --families


@pytest.mark.parametrize("families, expected", [
    (None, list_families()),  # README's first data command
    ("all", list_families()),
    ("pretrain", list(PRETRAIN_FAMILIES)),
    ("finetune", list(FINETUNE_FAMILIES)),
    ("pretrain,kdv", [*PRETRAIN_FAMILIES, "kdv"]),
    ("heat, all", ["heat", *(n for n in list_families() if n != "heat")]),
])
def test_family_groups_resolve_on_the_command_line(tmp_path, capsys, monkeypatch, families, expected):
    """Once 'unknown family all': the groups reach the engine expanded (planned, nothing solved)."""
    seen = []

    def fake_generate(root, preset, names, *args, **kwargs):
        seen.append(list(names))
        return []

    monkeypatch.setattr(gen_cli, "generate", fake_generate)
    root = tmp_path / "data" / "default"
    argv = ["--preset", "default", "--root", root, *(["--families", families] if families else []), *SCALE]
    rc, out, err = cli(argv, capsys)
    assert (rc, err) == (0, "") and seen == [expected]
    assert len(list_families()) == 19 and len(PRETRAIN_FAMILIES) == 7 and len(FINETUNE_FAMILIES) == 12
    assert not root.exists()  # planning and the resource checks create nothing


def test_group_names_expand_inside_lists():
    assert resolve_families(["all"]) == list_families()
    assert resolve_families(["finetune", "heat"]) == [*FINETUNE_FAMILIES, "heat"]
    for empty in ("", ",", " , ", []):
        with pytest.raises(ValueError, match="the family list is empty"):
            resolve_families(empty)


@pytest.mark.parametrize("value", ["", ",", " , ", ",,"])
def test_an_empty_family_list_is_refused(tmp_path, capsys, value):
    root = tmp_path / "data"
    rc, out, err = cli(["--root", root, "--preset", "tiny", "--families", value, "--no-progress"], capsys)
    assert rc == 2 and out == ""
    assert one_line(err) == (f"{PROG}--families {value!r} names no family; give e.g. --families heat,kdv "
                             "or all / pretrain / finetune")
    assert not root.exists()


def test_an_unknown_family_names_the_flag(tmp_path, capsys):
    rc, out, err = cli(["--root", tmp_path / "data", "--preset", "tiny", "--families", "pretrain,nope"], capsys)
    assert rc == 2 and one_line(err).startswith(f"{PROG}--families: unknown family 'nope'; valid families are: ")
    assert not (tmp_path / "data").exists()


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lemon_pl", *cmd[1:]], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_readme_data_commands_run_as_written_scaled_by_flags(tmp_path):
    """README's exact data commands, only smaller flags appended; the no-families one makes all 19."""
    import torch

    cuda = torch.cuda.is_available()
    for cmd in readme_data_commands():
        if "--list" in cmd:
            res = _run(cmd, tmp_path)
            assert res.returncode == 0 and res.stderr == ""
            assert len(res.stdout.splitlines()) == 19 + 3  # + the map families
            continue
        res = _run(cmd + SCALE, tmp_path)
        root = cmd[cmd.index("--root") + 1]
        if "cuda" in cmd and not cuda:  # a CPU build: refused in one line, nothing made
            assert res.returncode == 2 and res.stdout == ""
            assert one_line(res.stderr).startswith(f"{PROG}--device 'cuda': no CUDA device is available to torch")
            assert not (tmp_path / root).exists()
            continue
        assert res.returncode == 0, res.stderr
        fams = cmd[cmd.index("--families") + 1].split(",") if "--families" in cmd else list_families()
        splits = [cmd[cmd.index("--split-name") + 1]] if "--split-name" in cmd else ["train", "val", "test"]
        n = len(fams) * len(splits)
        summary = one_line(res.stdout)
        assert summary.startswith(f"{n} files under {root}: {n} generated ({n} trajectories"), summary
        for fam in fams:
            for split in splits:
                assert_complete(tmp_path / root / fam / f"{split}.h5")
    default = tmp_path / "data" / "default"
    assert sorted(p.name for p in default.iterdir()) == sorted(list_families())
    assert sorted(p.name for p in (default / "heat").glob("*.h5")) == ["ood.h5", "test.h5", "train.h5", "val.h5"]


# ----------------------------------------------------------------------------- 2. numbers and devices

BAD_NUMBERS = [
    (["--nx", "100000"], "--nx must be at most 65,536, got 100000"),
    (["--nx", "-8"], "--nx must be at least 8, got -8"),
    (["--nx", "15"], "--nx must be even (spectral solvers), got 15"),
    (["--nt", "0"], "--nt must be at least 2, got 0"),
    (["--nt", "10000000"], "--nt must be at most 65,536, got 10000000"),
    (["--k", "-3"], "--k must be positive, got -3"),
    (["--k", "1000000000"], "--k must be at most 100,000, got 1000000000"),
    (["--n-operators", "99999999"], "--n-operators must be at most 1,000,000, got 99999999"),
    (["--n-operators", "-1"], "--n-operators must be positive, got -1"),
    (["--n-operators", "nan"], "--n-operators takes an integer or one per level, got 'nan'"),
    (["--n-operators", "inf"], "--n-operators takes an integer or one per level, got 'inf'"),
    (["--n-operators", "1e3"], "--n-operators takes an integer or one per level, got '1e3'"),
    (["--workers", "-1"], "--workers must be at least 1, got -1"),
    (["--workers", "100000"], "--workers must be at most 1,024, got 100000"),
    (["--chunk", "0"], "--chunk must be at least 1, got 0"),
    (["--chunk", "10000000"], "--chunk must be at most 65,536, got 10000000"),
    (["--seed", str(2**63)], f"--seed must be at most 9,223,372,036,854,775,807, got {2**63}"),
    (["--seed", "1" + "0" * 30], f"--seed must be at most 9,223,372,036,854,775,807, got 1{'0' * 30}"),
    (["--gamma", "inf"], "--gamma must lie in [0, 1), got inf"),
    (["--gamma=-inf"], "--gamma must lie in [0, 1), got -inf"),
    (["--gamma", "1e308"], "--gamma must lie in [0, 1), got 1e+308"),
    (["--gamma", "0.999999999999999999"], "--gamma must lie in [0, 1), got 1.0"),
    (["--levels", "8,1000000"], "--levels must be at most 65,536, got 1000000"),
    (["--levels", "4,8"], "--levels needs grids of at least 8 points, got '4,8'"),
    (["--levels", "nan"], "--levels must be comma-separated integers, got 'nan'"),
    (["--levels", ",".join(str(8 * 2**i) for i in range(17))], "--levels lists 17 grids; at most 16"),
    (["--levels", "16,32", "--n-operators", "1,2,3"], "--n-operators gives 3 counts for 2 levels [16, 32]"),
    (["--families", "schrodinger", "--levels", "16,32", "--n-samples", "99999999"],
     "--n-samples must be at most 1,000,000, got 99999999"),
    (["--families", "schrodinger", "--levels", "16,32", "--n-samples", "0"], "--n-samples must be positive, got 0"),
    # products: one operator's trajectories past HDF5's chunk limit, a solve past any memory, files past any disk
    (["--k", "10000", "--nt", "1024", "--nx", "4096"],
     "--k x --nt x --nx = 10000 x 1024 x 4096: one operator's trajectories would take 156.2 GiB, more than the "
     "4 GiB HDF5 stores in one chunk; lower --k, --nt or --nx"),
    (["--k", "2000", "--nt", "2048", "--nx", "256", "--workers", "1024"],
     re.compile(r"--k x --nt x --nx: solving 2000 x 2048 x 256 values on each of 1024 --workers needs about "
                r"[\d.]+ TiB of memory but [\d.]+ [KMGT]iB is available; lower --k, --nt, --nx or --workers")),
    (["--n-operators", "1000000", "--k", "1000"],
     re.compile(r"--root '.*data': the files need about [\d.]+ TiB but [\d.]+ [KMGT]?i?B is free on its disk "
                r"\(.*\); free some space, lower --n-operators, --k, --nt or --nx, use another --root, or pass "
                r"--skip-space-check where the file system compresses")),
]
BAD_DEVICES = [
    (["--device", "bogus"], "--device must be cpu or cuda, got 'bogus' (choose one of cpu, cuda)"),
    (["--device", ""], "--device must be cpu or cuda, got '' (choose one of cpu, cuda)"),
    (["--device", "cuda:7"],
     "--device must be cpu or cuda, got 'cuda:7'; choose the GPU with CUDA_VISIBLE_DEVICES=7 and --device cuda"),
    (["--device", "cuda", "--solver", "numpy"], "--device cuda needs the torch solver (--solver torch)"),
]


def _cuda_missing() -> list:
    import torch

    if torch.cuda.is_available():
        return []
    build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}"
    return [(["--device", "cuda"], f"--device 'cuda': no CUDA device is available to torch ({torch.__version__}, "
                                   f"{build}); use --device cpu")]


@pytest.mark.parametrize("extra, message", BAD_NUMBERS + BAD_DEVICES + _cuda_missing(),
                         ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_numbers_and_devices_are_one_line_naming_the_flag(tmp_path, capsys, extra, message):
    root = tmp_path / "data"
    rc, out, err = cli(["--root", root, *HEAT, *extra], capsys)
    assert rc == 2 and out == ""
    line = one_line(err)
    if isinstance(message, str):
        assert line == PROG + message
    else:
        assert message.fullmatch(line[len(PROG):]), line
    flags = {a.split("=")[0] for a in extra if a.startswith("--")} | {"--root"}
    assert any(flag in line for flag in flags)
    assert "Traceback" not in err
    assert not root.exists()


@pytest.fixture(scope="module")
def existing(tmp_path_factory) -> Path:
    """A finished heat dataset, as an earlier run left it."""
    root = tmp_path_factory.mktemp("existing") / "data"
    assert gen_cli.main(["--root", str(root), *HEAT, *SCALE]) == 0
    return root


@pytest.mark.parametrize("extra", [["--nx", "100000"], ["--gamma", "nan"], ["--device", "bogus"],
                                   ["--families", ","], ["--k", "10000", "--nt", "1024", "--nx", "4096"],
                                   ["--workers", "0"], ["--overwrite", "--seed", "-1"]],
                         ids=lambda v: " ".join(v))
def test_refused_runs_leave_existing_data_byte_identical(existing, capsys, extra):
    before = snapshot(existing)
    rc, out, err = cli(["--root", existing, *HEAT, *SCALE, *extra], capsys)
    assert rc == 2 and one_line(err).startswith(PROG) and out == ""
    assert snapshot(existing) == before


# ----------------------------------------------------------------------------- 3. memory and disk, estimated


def test_a_run_that_cannot_fit_the_memory_is_refused_first(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(gen, "available_memory", lambda: 1024)
    root = tmp_path / "data"
    rc, out, err = cli(["--root", root, *HEAT, *SCALE], capsys)
    assert rc == 2 and one_line(err) == (
        f"{PROG}--k x --nt x --nx: solving 1 x 8 x 16 values needs about 3 KiB of memory but 1 KiB is "
        "available; lower --k, --nt, --nx or --workers")
    assert not root.exists()


Usage = collections.namedtuple("Usage", "total used free")


def test_a_run_that_cannot_fit_the_disk_is_refused_first_unless_told(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(2**20, 2**20 - 1024, 1024))
    root = tmp_path / "data"
    rc, out, err = cli(["--root", root, *HEAT, *SCALE], capsys)
    assert rc == 2
    line = one_line(err)
    assert re.fullmatch(rf"{re.escape(PROG)}--root '{re.escape(str(root))}': the files need about [\d.]+ KiB but "
                        rf"1 KiB is free on its disk \({re.escape(str(tmp_path))}\); .*", line), line
    assert not root.exists()
    # the estimate can be wrong (a compressing file system): --skip-space-check writes anyway
    rc, out, err = cli(["--root", root, *HEAT, *SCALE, "--skip-space-check"], capsys)
    assert rc == 0 and "3 generated" in out
    # complete files need nothing more: a rerun on a full disk is fine
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(2**20, 2**20, 0))
    rc, out, err = cli(["--root", root, *HEAT, *SCALE], capsys)
    assert rc == 0 and "3 already complete" in out


def test_a_chunk_that_cannot_fit_the_gpu_is_refused_first(tmp_path, monkeypatch):
    """The GPU branch of the estimate, on any machine: a CUDA spec against a 1 MiB free GPU."""
    import torch

    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a: (2**20, 80 * 2**30))
    monkeypatch.setattr(gen, "available_memory", lambda: 2**50)
    spec = gen.SplitSpec("burgers", "train", 256, 50, nx=128, nt=64, solver="torch", device="cuda", chunk=256)
    with pytest.raises(gen.GenerationError) as err:
        gen.check_resources([(tmp_path / "data", [spec])], check_space=False)
    assert str(err.value) == ("--chunk: solving 256 operators x 50 x 64 x 128 values on the GPU needs about 2.3 GiB "
                              "but 1 MiB of GPU memory is free; lower --chunk")
    assert not (tmp_path / "data").exists()


def test_the_estimate_bounds_the_real_file_sizes(existing):
    for spec in gen.plan(existing, "tiny", ["heat"], n_operators=1, k=1, nx=16, nt=8, solver="numpy"):
        real = (existing / "heat" / f"{spec.split}.h5").stat().st_size
        assert real <= gen.file_bytes(spec) <= 4 * real + 2**20


# ----------------------------------------------------------------------------- 4. the root


def test_a_root_that_is_a_file_is_refused_and_kept(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"keep me")
    rc, out, err = cli(["--root", blocker, *HEAT, *SCALE], capsys)
    assert rc == 2 and one_line(err) == f"{PROG}--root {str(blocker)!r} is a file, not a folder; give another --root"
    rc, out, err = cli(["--root", blocker / "sub", *HEAT, *SCALE], capsys)
    assert rc == 2 and one_line(err) == (f"{PROG}cannot create data root {str(blocker / 'sub')!r}: "
                                         f"{str(blocker)!r} is a file, not a folder")
    assert blocker.read_bytes() == b"keep me" and sorted(tmp_path.iterdir()) == [blocker]


def test_an_empty_root_is_refused_not_the_current_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = cli(["--root", "", *HEAT, *SCALE], capsys)
    assert rc == 2 and one_line(err) == f"{PROG}--root is empty; give the data folder, e.g. --root data"
    assert list(tmp_path.iterdir()) == []


@pytest.fixture()
def read_only_dir(tmp_path):
    """A folder this process cannot write: a read-only tmpfs as root, else a mode 555 folder."""
    path = tmp_path / "ro"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    with tmpfs(path, "64k", read_only=True):
        yield path


def test_an_unwritable_root_is_refused(read_only_dir, capsys):
    rc, out, err = cli(["--root", read_only_dir, *HEAT, *SCALE], capsys)
    assert rc == 2 and one_line(err) == f"{PROG}data root {str(read_only_dir)!r} is not writable (Read-only file system)"
    sub = read_only_dir / "data"
    rc, out, err = cli(["--root", sub, *HEAT, *SCALE], capsys)
    assert rc == 2 and one_line(err) == (f"{PROG}cannot create data root {str(sub)!r}: folder "
                                         f"{str(read_only_dir)!r} is not writable (Read-only file system)")
    assert list(read_only_dir.iterdir()) == []


# ----------------------------------------------------------------------------- 5. a disk that fills up

DISK_ARGS = ["--preset", "tiny", "--families", "heat,kdv", "--nx", "256", "--nt", "64", "--no-progress"]


@pytest.fixture()
def small_disk(request, tmp_path):
    """A tmpfs of ``request.param`` (e.g. 3m) mounted for the test, unmounted after."""
    with tmpfs(tmp_path / "disk", request.param) as mnt:
        yield mnt


def assert_refused_for_space(res: subprocess.CompletedProcess, root: Path, disk: Path) -> None:
    """The run was refused by the up-front disk estimate, in one line, with nothing written."""
    assert res.returncode == 2 and re.fullmatch(
        rf"{re.escape(PROG)}--root '{re.escape(str(root))}': the files need about [\d.]+ MiB but [\d.]+ [KM]iB is free "
        rf"on its disk \({re.escape(str(disk))}\); .*", one_line(res.stderr)), res.stderr
    assert list(disk.iterdir()) == []


def _generate(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lemon_pl", "generate", *map(str, args)], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


# 64k: the lock files and the new partial fit, its first operator does not (the rerun starts it over);
# 3m: two files and a half fit
@pytest.mark.parametrize("small_disk", ["64k", "3m"], indirect=True)
def test_a_full_disk_ends_in_one_line_and_the_rerun_completes(small_disk, tmp_path, capsys):
    root = small_disk / "data"
    # estimated first: the files cannot fit, nothing is written
    assert_refused_for_space(_generate("--root", root, *DISK_ARGS), root, small_disk)

    # the estimate skipped, the disk really fills up
    res = _generate("--root", root, *DISK_ARGS, "--skip-space-check")
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])  # not -11 (the segmentation fault)
    line = one_line(res.stderr)
    m = re.fullmatch(rf"{re.escape(PROG)}no space left on device while writing ({re.escape(str(root))}/\S+\.h5\.partial); "
                     "free some space and run the same command again to resume", line)
    assert m, line
    for text in ("Traceback", "HDF5-DIAG", "Segmentation", "Exception ignored"):
        assert text not in res.stderr
    assert Path(m.group(1)).exists()
    for path in root.rglob("*.h5"):  # whatever is named complete is complete
        assert_complete(path)

    # space freed: the same command finishes, bit-identical to a run that never ran out
    subprocess.run(["mount", "-o", "remount,size=40m", str(small_disk)], check=True)
    res = _generate("--root", root, *DISK_ARGS)
    assert res.returncode == 0, res.stderr
    assert one_line(res.stdout).startswith(f"6 files under {root}: ")
    assert not list(root.rglob("*.partial"))
    ref = tmp_path / "ref"
    assert gen_cli.main(["--root", str(ref), *DISK_ARGS]) == 0
    capsys.readouterr()
    for fam in ("heat", "kdv"):
        for split in ("train", "val", "test"):
            path = root / fam / f"{split}.h5"
            assert_complete(path)
            with h5py.File(path, "r") as a, h5py.File(ref / fam / f"{split}.h5", "r") as b:
                for key in ("u", "params", "u_crc32"):
                    assert np.array_equal(a[key][:], b[key][:]), (path, key)


def test_hdf5_errors_it_can_only_print_are_collected_not_printed(capsys):
    """What h5py reports while freeing an object ("Exception ignored in ... __dealloc__") is kept from
    stderr around the writes, and handed to the caller (which names the file in one line)."""

    class h5py_ObjectID:  # noqa: N801 - named like what the hook recognises
        def __del__(self):
            raise RuntimeError("Can't decrement id ref count (file write failed: errno = 28, "
                               "error message = 'No space left on device')")

    with store.quiet_hdf5() as ignored:
        h5py_ObjectID()  # freed at once: its error goes to sys.unraisablehook
    assert len(ignored) == 1 and store.is_enospc(ignored[0])
    assert capsys.readouterr().err == ""


def test_a_write_failure_reported_only_while_freeing_is_named_as_a_full_disk(tmp_path, capsys, monkeypatch):
    """If a write fails where h5py can only print it, the file fails verification; the line then says
    why (the disk is full) instead of the bare verification failure, and prints no traceback."""

    class h5py_Dataset:  # noqa: N801 - named like what the hook recognises
        def __del__(self):
            raise RuntimeError("Can't decrement id ref count (file write failed: errno = 28, "
                               "error message = 'No space left on device')")

    def unchecked(spec, path, partial, *args):
        h5py_Dataset()
        raise gen.GenerationError(f"{partial} failed verification after writing (operator 1: no data on disk)")

    monkeypatch.setattr(gen, "_write_split_unchecked", unchecked)
    root = tmp_path / "data"
    rc, out, err = cli(["--root", root, *HEAT, *SCALE, "--splits", "train"], capsys)
    partial = root / "heat" / "train.h5.partial"
    assert rc == 2 and one_line(err) == (f"{PROG}no space left on device while writing {partial}; free some space "
                                         "and run the same command again to resume")


def test_a_resumed_partial_hdf5_cannot_write_to_is_started_over(tmp_path, capsys, monkeypatch):
    """A failed write can leave a partial that verifies but takes no more writes ("addr overflow"):
    the rerun says so in one warning and generates the file again, bit-identical."""
    args = ["--preset", "tiny", "--families", "heat", "--splits", "train", "--n-operators", "3", "--k", "4",
            "--no-progress"]
    ref = tmp_path / "ref"
    assert gen_cli.main(["--root", str(ref), *args]) == 0
    writes = fail_nth_write(monkeypatch)
    root = tmp_path / "data"
    writes.update(fail_at=3, error=OSError(errno.ENOSPC, "No space left on device"))
    assert gen_cli.main(["--root", str(root), *args]) == 2
    partial = root / "heat" / "train.h5.partial"
    assert partial.exists() and "no space left on device" in capsys.readouterr().err
    writes.update(n=0, fail_at=1, error=OSError("Can't synchronously write data (addr overflow, addr = 15164, "
                                                "size = 3656, eoa = 15164)"))
    assert gen_cli.main(["--root", str(root), *args]) == 0
    warning = one_line(capsys.readouterr().err)
    assert warning == (f"warning: {partial} cannot be written to (Can't synchronously write data (addr overflow, "
                       "addr = 15164, size = 3656, eoa = 15164)); generating it again from the start")
    final = root / "heat" / "train.h5"
    assert_complete(final)
    with h5py.File(final, "r") as a, h5py.File(ref / "heat" / "train.h5", "r") as b:
        assert np.array_equal(a["u"][:], b["u"][:]) and np.array_equal(a["u_crc32"][:], b["u_crc32"][:])


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="no /proc on this system")
def test_a_root_that_passes_permission_checks_but_takes_no_files_is_refused(capsys):
    """os.access says yes to /proc (and to anything for root): the check creates a probe file to know."""
    rc, out, err = cli(["--root", "/proc/lemon_data", *HEAT, *SCALE], capsys)
    assert rc == 2 and one_line(err) == (f"{PROG}cannot create data root '/proc/lemon_data': folder '/proc' is not "
                                         "writable (No such file or directory)")
    assert not Path("/proc/lemon_data").exists()


def test_a_fifo_where_a_data_file_belongs_never_blocks(tmp_path, capsys):
    """Opening a FIFO blocks until a writer comes: readers refuse it in one line naming it, and
    generate replaces it with the file that belongs there (before: both hung)."""
    from lemon_pl.data.io import DataFileError, open_split

    root = tmp_path / "data"
    assert gen_cli.main(["--root", str(root), *HEAT, *SCALE]) == 0
    fifo = root / "heat" / "train.h5"
    fifo.unlink()
    os.mkfifo(fifo)
    with pytest.raises(DataFileError, match=re.escape(f"{fifo} is corrupt or truncated ([Errno 22] not a regular "
                                                      "file (a FIFO, a device or a socket)")):
        open_split(root, "heat", "train")
    capsys.readouterr()
    rc, out, err = cli(["--root", root, *HEAT, *SCALE], capsys)
    assert rc == 0 and "not a regular file" in err and fifo.is_file()
    assert_complete(fifo)
