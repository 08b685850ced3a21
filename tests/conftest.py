"""Shared fixtures: W&B off, one tiny generated dataset for the whole session."""

from __future__ import annotations

import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
TINY_FAMILIES = ["advection", "heat", "diff_bistablereact_1D", "conservation_sinflux",
                 "inviscid_conservation_cubicflux", "Klein_Gordon", "fplanck", "kdv", "Sine_Gordon"]


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    """The 'tiny' preset for the 7 pretraining families plus two held-out ones."""
    from lemon_pl.data.generate import generate

    root = tmp_path_factory.mktemp("tiny_data")
    generate(root, "tiny", TINY_FAMILIES, progress=False)
    return root


def pytest_collection_modifyitems(config, items):
    import torch

    if not torch.cuda.is_available():
        skip = pytest.mark.skip(reason="needs a CUDA device")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def exp_data(tmp_path_factory) -> Path:
    """Only the families the tiny experiments use, tiny preset."""
    from lemon_pl.data.generate import generate

    root = tmp_path_factory.mktemp("exp_data")
    generate(root, "tiny", ["heat", "advection", "kdv"], progress=False)
    return root
