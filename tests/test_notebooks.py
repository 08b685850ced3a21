"""The notebooks run top to bottom on tiny settings (executed with nbclient, as a user would)."""

from __future__ import annotations

import pytest

from lemon_pl.cli import main
from tests.conftest import CONFIGS
from tests.conftest import REPO

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")
#: end to end (a kernel, data, training, an experiment): the slow tier
pytestmark = pytest.mark.slow


def execute(name: str) -> str:
    """Run notebooks/<name> in its folder; return all text outputs."""
    nb = nbformat.read(REPO / "notebooks" / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    texts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            texts.append(out.get("text", "") + str(out.get("data", {}).get("text/markdown", "")))
    return "\n".join(texts)


def test_quickstart_notebook(tmp_path, monkeypatch):
    monkeypatch.setenv("LEMON_NB_WORKDIR", str(tmp_path))
    monkeypatch.setenv("LEMON_NB_PRESET", "tiny")
    monkeypatch.setenv("LEMON_NB_STEPS", "4")
    monkeypatch.setenv("WANDB_MODE", "disabled")
    text = execute("quickstart.ipynb")
    assert "FamilySplit(kdv/train" in text and "prefix tokens" in text
    for fam in ("heat", "advection", "kdv", "overall"):
        assert f"{fam:12s} rel L2" in text, fam
    assert (tmp_path / "runs/pretrain/version_0/checkpoints/last.ckpt").exists()
    assert (tmp_path / "runs/fewshot/version_0/test_examples.npz").exists()
    assert "u_t + 0.45*u_x = 0: rel L2" in text and "against the advection solver" in text  # ends with predict
    assert (tmp_path / "predict/prediction.npz").exists() and (tmp_path / "predict/prediction.png").exists()


def test_results_notebook(exp_data, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEMON_CONFIGS", str(CONFIGS))  # run from a folder without configs/
    assert main(["experiment", "zero-shot", "--scale", "tiny", "--data-root", str(exp_data), "--out", "res"]) == 0
    monkeypatch.setenv("LEMON_RESULTS", str(tmp_path / "res"))
    monkeypatch.setenv("LEMON_SCALE", "tiny")
    text = execute("results.ipynb")
    assert "results found for: zero-shot" in text
    assert "lemon-pl experiment finetune --scale tiny" in text  # what to run for the missing ones
    assert "in-distribution" in text and "± " in text
