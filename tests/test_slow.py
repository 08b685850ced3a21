"""Slower end-to-end checks (``pytest -m slow``; a separate CI step)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from lemon_pl.data.families import get_family, list_families
from lemon_pl.data.generate import generate
from lemon_pl.data.io import open_split
from lemon_pl.data.symbols import decode

pytestmark = pytest.mark.slow


def test_every_family_generates_valid_files_with_two_workers(tmp_path):
    reports = generate(tmp_path, "tiny", "all", workers=2, progress=False)
    assert len(reports) == 57 and {r.status for r in reports} == {"written"}
    for name in list_families():
        fam = get_family(name)
        for split in ("train", "val", "test"):
            s = open_split(tmp_path, name, split)
            u = np.stack([s.operator(i) for i in range(s.n_operators)])
            assert np.isfinite(u).all() and fam.accept(u.reshape(-1, s.nt, s.nx).astype(np.float64)).all()
            for i in range(s.n_operators):
                assert decode(s.operator_tokens(i)).prefix() == fam.tree(s.params[i]).prefix()


def test_pretraining_beats_the_persistence_baseline(tiny_root, tmp_path, monkeypatch):
    from lemon_pl.cli import main
    from tests.conftest import CONFIGS

    monkeypatch.chdir(tmp_path)
    code = main(["fit", "--config", str(CONFIGS / "quickstart.yaml"), "--data.init_args.root", str(tiny_root),
                 "--data.init_args.preset", "tiny", "--data.init_args.batch_size", "16",
                 "--trainer.max_epochs", "15", "--trainer.enable_progress_bar", "false",
                 "--trainer.logger.init_args.save_dir", str(tmp_path)])
    assert code == 0
    rows = [r for r in csv.DictReader(open(tmp_path / "quickstart/version_0/metrics.csv")) if r.get("val/rel_l2")]
    final = rows[-1]
    assert float(final["val/rel_l2"]) < 0.7 * float(final["val/rel_l2_persistence"])
    assert float(final["val/rel_l2"]) < float(rows[0]["val/rel_l2"])
