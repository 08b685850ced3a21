"""A real full disk (a small tmpfs, filled to the last byte) while lemon-pl writes: checkpoints,
validation figures, experiment step records and reports. Every case is one ``error:`` line
naming the file or folder and saying the disk is full ("No space left on device"), exit 2, no
traceback, the previous files byte-identical and no temporary file left behind.

Mounting needs root (or CAP_SYS_ADMIN); elsewhere these tests are skipped with the reason."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import lightning.pytorch  # noqa: F401 - imported at collection, so its log handler writes to the real stderr
import pytest

from lemon_pl.cli import main
from tests.conftest import CONFIGS

NET = ["--model.init_args.net.init_args.d_model", "16", "--model.init_args.net.init_args.dim_ffn", "32",
       "--model.init_args.net.init_args.n_heads", "2"]


@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "2m", read_only: bool = False):
    """A ``size`` tmpfs mounted on ``folder`` (``read_only``: mounted read-only, so that not even
    root can write) for the block; skips the test where mounting is not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill ({(proc.stderr or proc.stdout).strip() or 'mount failed'}); "
                    "needs root or CAP_SYS_ADMIN")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path) -> None:
    """Write a filler file into ``folder`` until its file system has no byte left."""
    with open(folder / "filler", "wb", buffering=0) as fh:
        block = b"\0" * 4096
        try:
            while True:
                fh.write(block)
        except OSError as err:
            assert err.errno == 28, err  # ENOSPC
        for size in (512, 64, 1):  # and the tail of the last page
            try:
                while True:
                    fh.write(b"\0" * size)
            except OSError:
                pass


def fail_nth_write(monkeypatch, dataset: str = "/u") -> dict:
    """Make the ``fail_at``-th write into HDF5 dataset ``dataset`` raise ``error`` (both set in the
    returned dict, ``n`` counts the writes); fail_at 0 never fails."""
    import h5py

    real = h5py.Dataset.__setitem__
    state = {"n": 0, "fail_at": 0, "error": None}

    def setitem(self, key, value):
        if self.name == dataset:
            state["n"] += 1
            if state["n"] == state["fail_at"]:
                raise state["error"]
        real(self, key, value)

    monkeypatch.setattr(h5py.Dataset, "__setitem__", setitem)
    return state


def snapshot(folder: Path, skip: tuple[str, ...] = ("filler", ".lock")) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in skip}


def one_error_line(capsys, code: int, prog: str = "lemon-pl") -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2, err
    assert "Traceback" not in err, err
    errors = [ln for ln in lines if f"{prog}: error:" in ln]
    assert len(errors) == 1 and errors[0].startswith(f"{prog}: error:"), err
    return errors[0]


# ------------------------------------------------------------------------ checkpoints and figures


@pytest.fixture(scope="module")
def two_families(tmp_path_factory) -> Path:
    from lemon_pl.data.generate import generate

    root = tmp_path_factory.mktemp("full_disk_data")
    generate(root, "tiny", ["heat", "kdv"], progress=False)
    return root


def _fit(root: Path, save_dir: Path, *extra: str) -> list[str]:
    return ["fit", "--config", str(CONFIGS / "pretrain.yaml"), "--config", str(CONFIGS / "trainer/cpu.yaml"),
            "--data.init_args.root", str(root), "--data.init_args.preset", "tiny",
            "--data.init_args.train_families", "heat,kdv", "--data.init_args.batch_size", "8",
            "--trainer.logger.init_args.save_dir", str(save_dir), "--trainer.logger.init_args.version", "0",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1", *NET, *extra]


@pytest.mark.parametrize("figures", [False, True], ids=["checkpoint", "figure"])
def test_a_full_disk_while_training_is_one_line_and_keeps_the_checkpoints(two_families, tmp_path, capsys,
                                                                          monkeypatch, figures):
    """The first epoch's checkpoints fit; the disk is then filled and the run resumed: the next
    write (the validation figure, or with figures off the checkpoint) fails in one line and the
    checkpoints of the first epoch are byte-identical (before: the figure was a PIL traceback)."""
    monkeypatch.chdir(tmp_path)
    with tmpfs(tmp_path / "disk") as disk:
        flag = ["--model.init_args.log_figures", str(figures).lower()]
        assert main(_fit(two_families, disk / "runs", "--trainer.max_epochs", "1", *flag)) == 0
        ckpts = disk / "runs" / "pretrain" / "version_0" / "checkpoints"
        before = snapshot(ckpts)
        assert set(before) == {"last.ckpt", "best.ckpt"}
        fill(disk)
        capsys.readouterr()
        code = main(_fit(two_families, disk / "runs", "--trainer.max_epochs", "2", *flag,
                         "--ckpt_path", str(ckpts / "last.ckpt")))
        line = one_error_line(capsys, code)
        if figures:
            target = disk / "runs" / "pretrain" / "version_0" / "figures" / "epoch001_heat.png"
            assert line == f"lemon-pl: error: could not write {target}: No space left on device; nothing was written"
            assert not target.exists()
        else:
            assert line == (f"lemon-pl: error: could not write {ckpts / 'last.ckpt'}: No space left on device; "
                            "the previous last.ckpt is intact")
        assert snapshot(ckpts) == before  # same names (no temporary file), same bytes


# ------------------------------------------------------------------------ experiment records and reports


class FakeSteps:
    """Stands in for ``lemon_pl.cli.main`` inside ``lemon-pl experiment``: generate does nothing,
    fit writes a checkpoint, test writes metrics (the files that records and reports need)."""

    def __call__(self, argv):
        argv = list(argv)
        if argv[0] not in ("fit", "test"):
            return 0
        name = argv[argv.index("--trainer.logger.init_args.name") + 1]
        folder = Path(argv[argv.index("--trainer.logger.init_args.save_dir") + 1]) / name / "version_0"
        (folder / "checkpoints").mkdir(parents=True, exist_ok=True)
        if argv[0] == "fit":
            (folder / "checkpoints" / "last.ckpt").write_text("ckpt")
        else:
            fams = {f: {"rel_l2": 0.5, "rel_l2_first": 0.4, "rel_l2_second": 0.6} for f in ("heat", "kdv")}
            (folder / "test_metrics.json").write_text(json.dumps({"families": fams}))
        return 0


@pytest.fixture
def fake_steps(monkeypatch):
    import lemon_pl.cli as cli

    real = cli.main
    monkeypatch.setattr(cli, "main", FakeSteps())  # what `lemon-pl experiment` runs each step through
    return real


def test_a_full_disk_while_recording_steps_or_writing_the_report(fake_steps, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = fake_steps  # the real `lemon-pl` entry point
    argv = ["experiment", "zero-shot", "--scale", "tiny", "--configs", str(CONFIGS), "--data-root",
            str(tmp_path / "data")]
    with tmpfs(tmp_path / "disk", "1m") as disk:
        assert run([*argv, "--out", str(disk / "res")]) == 0
        exp = disk / "res" / "zero-shot" / "tiny"
        before = snapshot(exp)
        assert {"table.md", "results.csv", "steps/generate.json"} <= set(before)
        fill(disk)
        capsys.readouterr()
        # the same command again: every step is done, the report is rewritten - onto a full disk
        line = one_error_line(capsys, run([*argv, "--out", str(disk / "res")]), "lemon-pl experiment")
        assert line == (f"lemon-pl experiment: error: could not write the report into {exp}: No space left on "
                        "device; the previous report files are intact (free some space and run the same command "
                        "again)")
        assert snapshot(exp) == before  # no report file changed, no temporary folder left
        # a new experiment on the full disk: its first step's record cannot be written
        line = one_error_line(capsys, run([*argv, "--out", str(disk / "new")]), "lemon-pl experiment")
        steps = disk / "new" / "zero-shot" / "tiny" / "steps"
        assert line == (f"lemon-pl experiment: error: could not write {steps / 'generate.json'}: No space left on "
                        f"device; nothing was written; completed steps are kept in {steps}, re-run the same command "
                        "to resume")
        assert not [p for p in steps.rglob("*") if p.is_file()]  # no record, no temporary file



def test_a_full_disk_while_a_pinn_test_writes_its_outputs_is_one_line(tmp_path, capsys, monkeypatch):
    """`lemon-pl test` of a PINN writes its table, predictions and figures into a new run folder on a
    full disk: one line naming the file, nothing half-written (before: the figures were PIL tracebacks)."""
    small = ["--data.init_args.n_grid", "[32,20]", "--data.init_args.n_collocation", "64", "--data.init_args.n_ic",
             "16", "--data.init_args.n_bc", "8", "--data.init_args.n_test", "64", "--data.init_args.steps_per_epoch",
             "2", "--trainer.max_steps", "2", "--trainer.enable_progress_bar", "false", "--data.init_args.mu", "[1,0,0]"]
    monkeypatch.chdir(tmp_path)
    fit = tmp_path / "fit"
    assert main(["fit", "--config", str(CONFIGS / "pinn/pinn.yaml"), *small,
                 "--trainer.logger.init_args.save_dir", str(fit)]) == 0
    ckpt = next(fit.rglob("last.ckpt"))
    with tmpfs(tmp_path / "disk", "1m") as disk:
        (disk / "runs").mkdir()
        fill(disk)
        capsys.readouterr()
        code = main(["test", "--config", str(CONFIGS / "pinn/pinn.yaml"), *small, "--ckpt_path", str(ckpt),
                     "--trainer.logger.init_args.save_dir", str(disk / "runs")])
        line = one_error_line(capsys, code)
        assert "No space left on device" in line and str(disk / "runs") in line, line
        partial = [p for p in disk.rglob("*") if p.is_file() and p.name != "filler" and p.stat().st_size == 0
                   and p.suffix in (".png", ".npz", ".json", ".csv")]
        assert not partial and not list(disk.rglob(".*.tmp-*"))


def test_a_full_disk_in_a_write_lemon_pl_does_not_make_is_one_line(tmp_path, capsys, monkeypatch):
    """Lightning's own files (the CSV logger's metrics.csv) on a full disk: one line naming the file
    and how to resume, exit 2, not a traceback."""
    import errno

    from lightning.pytorch.loggers.csv_logs import ExperimentWriter

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs" / "metrics.csv"))

    monkeypatch.setattr(ExperimentWriter, "save", full)
    monkeypatch.chdir(tmp_path)
    code = main(["fit", "--config", str(CONFIGS / "pinn/pinn.yaml"), "--data.init_args.n_grid", "[32,20]",
                 "--data.init_args.n_collocation", "64", "--data.init_args.n_test", "64", "--data.init_args.mu",
                 "[1,0,0]", "--data.init_args.steps_per_epoch", "2", "--trainer.max_steps", "2",
                 "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path / "runs")])
    line = one_error_line(capsys, code)
    assert line == (f"lemon-pl: error: No space left on device while writing {tmp_path / 'runs' / 'metrics.csv'}; "
                    "free some space (or choose another --trainer.logger.init_args.save_dir) and resume with "
                    "--ckpt_path <run>/checkpoints/last.ckpt")
