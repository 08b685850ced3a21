"""The experiments package: found automatically, independent of the CLI, and the configs/ folder
taken from --configs, LEMON_CONFIGS or the current folder, never from the source tree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lemon_pl.cli import main
from lemon_pl.experiments import EXPERIMENTS, build_steps, configs_dir

REPO = Path(__file__).resolve().parents[2]


def test_every_experiment_module_is_registered_in_cli_order():
    assert list(EXPERIMENTS) == ["scaling", "zero-shot", "init-comparison", "finetune", "hyper-lr-pinn", "multilevel"]
    for name, module in EXPERIMENTS.items():
        assert module.NAME == name and callable(module.steps) and callable(module.report)
        assert module.__name__ == f"lemon_pl.experiments.{name.replace('-', '_')}"
        assert (REPO / "configs" / "experiments" / f"{name.replace('-', '_')}.yaml").exists()


def test_building_steps_imports_neither_the_cli_nor_torch():
    """No import cycle with lemon_pl.cli, and listing an experiment stays light."""
    code = ("import sys; import lemon_pl.experiments as e; from lemon_pl.experiments import runner, common; "
            "[e.build_steps(n, 'tiny') for n in e.EXPERIMENTS]; "
            "bad = sorted(m for m in sys.modules if m.startswith(('lemon_pl.cli', 'torch', 'lightning'))); "
            "print(bad); sys.exit(1 if bad else 0)")
    env = dict(os.environ, LEMON_CONFIGS=str(REPO / "configs"))
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    for path in (REPO / "lemon_pl" / "experiments").glob("*.py"):  # not even inside a function
        assert not re.search(r"^\s*(from|import)\s+lemon_pl\.cli\b", path.read_text(), re.M), path.name


def _dry_run(capsys, *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["experiment", "scaling", "--scale", "tiny", "--dry-run", "--out", "res", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_installed_style_run_from_a_folder_holding_configs(tmp_path, monkeypatch, capsys):
    """As from a non-editable install: the package is not beside configs/, the cwd holds a copy."""
    work = tmp_path / "work"
    shutil.copytree(REPO / "configs", work / "configs")
    monkeypatch.chdir(work)
    monkeypatch.delenv("LEMON_CONFIGS", raising=False)
    code, out, _ = _dry_run(capsys)
    assert code == 0 and "scaling (tiny):" in out
    here = work.resolve() / "configs"
    assert f"--config {here / 'pretrain.yaml'} --config {here / 'trainer/cpu.yaml'}" in out  # absolute paths
    assert str(REPO / "configs") not in out
    steps = build_steps("scaling", "tiny")
    assert steps[1].argv[:3] == ["fit", "--config", str(here / "pretrain.yaml")]


def test_configs_from_the_option_then_the_environment(tmp_path, monkeypatch, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    monkeypatch.setenv("LEMON_CONFIGS", str(REPO / "configs"))
    code, out, _ = _dry_run(capsys)
    assert code == 0 and f"--config {REPO / 'configs' / 'pretrain.yaml'}" in out
    copy = tmp_path / "copy"
    shutil.copytree(REPO / "configs", copy)
    code, out, _ = _dry_run(capsys, "--configs", "../copy")  # relative to the cwd, made absolute
    assert code == 0 and f"--config {copy.resolve() / 'pretrain.yaml'}" in out
    assert configs_dir("../copy") == copy.resolve() and configs_dir() == REPO / "configs"
    # --experiment-config still picks the settings; the stage configs still come from the folder
    code, out, _ = _dry_run(capsys, "--configs", str(copy), "--experiment-config",
                            str(REPO / "configs/experiments/scaling.yaml"))
    assert code == 0 and f"--config {copy.resolve() / 'pretrain.yaml'}" in out


@pytest.mark.parametrize("extra, env, message", [
    ((), None, "no configs/ folder in {cwd}; run from a folder holding lemon-pl's configs/, pass --configs DIR "
               "or set LEMON_CONFIGS"),
    (("--configs", "nowhere"), None, "--configs nowhere: no such folder"),
    ((), "nowhere", "LEMON_CONFIGS=nowhere: no such folder"),
])
def test_no_configs_folder_is_a_one_line_error(extra, env, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    if env is None:
        monkeypatch.delenv("LEMON_CONFIGS", raising=False)
    else:
        monkeypatch.setenv("LEMON_CONFIGS", env)
    code, out, err = _dry_run(capsys, *extra)
    assert code == 2 and not out
    assert err.splitlines() == [f"lemon-pl experiment: error: {message.format(cwd=tmp_path.resolve())}"]
    assert not (tmp_path / "res").exists()
