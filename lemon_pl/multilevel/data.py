"""``MultilevelDataModule``: the training data of each level and the finest level's validation/test.

Reads ``ROOT/n<grid>/<family>/<split>.h5`` (``lemon-pl generate --levels ...``). Level ``l`` trains on
the first ``n_samples[l]`` samples of its ``train`` file for ``epochs[l]`` epochs; validation and
test always use the *finest* level's ``val`` / ``test`` files, so every level is scored against the
same fine labels and forgetting shows in the validation curve.

What a network sees (default, every network): the input on the finest grid (levels share their
inputs: generation draws them on the finest grid) and the level's labels brought to that grid by
``interpolation`` (``lemon_pl.data.transfer``; default spectral for periodic grids, linear
otherwise). With ``native: true`` (resolution-agnostic networks such as the FNO) level ``l``
trains on its own grid instead: the restricted input the solver used and the labels as solved.

Map families store ``inputs_fine`` / ``inputs`` / ``u``; an engine family (e.g. ``inviscid_burgers``)
is read as the map ``u(t=0) -> u(frame output_frame)`` of its trajectories (``u0_fine`` on coarse
levels). Inputs pass through the family's transform (``log`` for elliptic coefficients).

Linked to the stage and network (``model_links``): ``nx`` (the finest grid), ``input_len`` and
``output_len`` (1 and 1: one field in, one out), ``level_epochs`` (the level schedule, one
``lemon_pl.core.phases.PhaseSchedule`` on both sides), and two values read from the training
files: ``data_stats`` (mean and std of the first level's inputs and labels, the stage's
standardisation) and ``data_summary`` (family, levels, samples, epochs, measured solver seconds
per sample ``level_costs``, the budget ``sum n_l c_l``, interpolation, native), which the stage
writes to ``fit_summary.json`` and ``test_metrics.json``. Both are computed when first asked
(the CLI asks when it links them, before the run starts), from the same read of the training files
that ``setup`` uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lemon_pl.core.phases import PhaseSchedule
from lemon_pl.data.io import DataFileError, open_for_reading
from lemon_pl.multilevel.families import level_view
from lemon_pl.data.transfer import INTERPOLATIONS, interpolate


class _Pairs(Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x = torch.as_tensor(x, dtype=torch.float32)[:, None]
        self.y = torch.as_tensor(y, dtype=torch.float32)[:, None]

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i]}


class _EpochSampler(torch.utils.data.Sampler):
    """``length`` indices per epoch from concatenated random permutations, seeded by (seed, epoch)."""

    def __init__(self, n: int, length: int, seed: int, epoch: int):
        self.n, self.length, self.seed, self.epoch = n, length, seed, epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        reps = -(-self.length // self.n)
        return iter(torch.cat([torch.randperm(self.n, generator=g) for _ in range(reps)])[: self.length].tolist())


def read_level(path: Path, n_samples: int | None, native: bool, output_frame: int = -1):
    """``(inputs, labels, grid, seconds_per_sample, attrs)`` of one file (see the module doc)."""
    if not path.exists():
        raise DataFileError(f"{path} does not exist; create it with `lemon-pl generate --levels ...` "
                            "(see `lemon-pl generate --help`)")
    try:
        with open_for_reading(path) as f:
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            if not bool(attrs.get("complete", False)):
                raise DataFileError(f"{path} is not complete; run the generate command again to finish it")
            grid = int(attrs.get("level_grid", attrs.get("nx", 0)))
            if attrs.get("kind") == "map":
                total = int(attrs["n_samples"])
                n = total if n_samples is None else int(n_samples)
                if n > total:
                    raise DataFileError(f"{path} holds {total} samples, {n} were asked for")
                x = f["inputs" if native else "inputs_fine"][()].reshape(-1, f["inputs" if native else "inputs_fine"].shape[-1])[:n]
                y = f["u"][()].reshape(-1, grid)[:n]
            else:
                u = f["u"]
                ops, k = u.shape[:2]
                total = ops * k
                n = total if n_samples is None else int(n_samples)
                if n > total:
                    raise DataFileError(f"{path} holds {total} trajectories, {n} were asked for")
                ops_needed = -(-n // k)
                frames = u[:ops_needed]
                y = frames[:, :, output_frame].reshape(-1, grid)[:n]
                if native or "u0_fine" not in f:
                    x = frames[:, :, 0].reshape(-1, grid)[:n]
                else:
                    x = f["u0_fine"][:ops_needed].reshape(-1, f["u0_fine"].shape[-1])[:n]
            cost = float(attrs.get("seconds_per_sample", float("nan")))
    except DataFileError:
        raise
    except (OSError, KeyError) as err:
        raise DataFileError(f"{path} cannot be read as multi-level data: {err}") from None
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), grid, cost, attrs


class MultilevelDataModule(pl.LightningDataModule):
    """Levels of one family for the multi-level stage (see the module docstring).

    Args:
        root: folder with one ``n<grid>`` root per level.
        family: a map family (``schrodinger``, ``schrodinger_osc``, ``rough_elliptic``) or an
            engine family read as ``u(0) -> u(output_frame)``.
        levels: the grids of the levels in training order (coarse to fine); the last one is the
            finest and holds the validation and test files.
        n_samples: training samples of each level (a list as long as ``levels``).
        epochs: epochs of each level; with ``steps_per_epoch`` an epoch is that many batches drawn
            from the level's samples (so a level's optimiser steps do not depend on its size).
        interpolation: how labels reach the finest grid (None: the family's default).
        native: train each level on its own grid (resolution-agnostic networks only).
        output_frame: which stored frame an engine family's map predicts.
        val_samples, test_samples: keep the first N of the finest level's val / test (None: all).
    """

    model_links = ("nx", "input_len", "output_len", "level_epochs", "data_stats", "data_summary")
    input_len = 1  # one input field
    output_len = 1  # one output field

    def __init__(self, root: str = "data/multilevel", family: str = "schrodinger",
                 levels: Sequence[int] = (32, 64, 128), n_samples: Sequence[int] = (256, 64, 16),
                 epochs: Sequence[int] = (10, 10, 10), steps_per_epoch: int | None = None,
                 interpolation: str | None = None, native: bool = False, output_frame: int = -1,
                 batch_size: int = 32, eval_batch_size: int = 256, val_samples: int | None = None,
                 test_samples: int | None = None, num_workers: int = 0, seed: int = 0) -> None:
        super().__init__()
        self.save_hyperparameters()
        levels, n_samples, epochs = list(levels), list(n_samples), list(epochs)
        if not levels:
            raise ValueError("data.levels: give at least one level grid")
        for key, vals in (("n_samples", n_samples), ("epochs", epochs)):
            if len(vals) != len(levels):
                raise ValueError(f"data.{key}: {len(vals)} values for {len(levels)} levels {levels}")
            if any(int(v) < 0 for v in vals):
                raise ValueError(f"data.{key} must be non-negative, got {vals}")
        if any(n > 0 and e == 0 for n, e in zip(n_samples, epochs)) or any(n == 0 and e > 0 for n, e in
                                                                            zip(n_samples, epochs)):
            raise ValueError(f"data.n_samples {n_samples} and data.epochs {epochs}: a level trains with "
                             "samples and epochs, or is skipped with 0 and 0")
        if sum(epochs) == 0:
            raise ValueError("data.epochs: every level has 0 epochs; nothing would train")
        self.view = level_view(family)
        if interpolation is not None and interpolation not in INTERPOLATIONS[self.view.grid]:
            raise ValueError(f"data.interpolation {interpolation!r} is not one of "
                             f"{', '.join(INTERPOLATIONS[self.view.grid])} for {family} ({self.view.grid} grid)")
        self.root = Path(root)
        self.levels, self.n_samples, self.epochs = [int(v) for v in levels], [int(v) for v in n_samples], \
            [int(v) for v in epochs]
        self.interpolation = interpolation or self.view.interpolation
        self.finest = max(self.levels)
        self.nx = self.finest
        self.level_epochs = self.epochs
        self.schedule = PhaseSchedule(self.epochs)
        self._train: dict[int, _Pairs] = {}
        self._eval: dict[str, _Pairs] = {}
        self.level_costs: list[float] = []
        self.stats: dict[str, float] = {}

    # ------------------------------------------------------------------ files
    def path(self, grid: int, split: str) -> Path:
        return self.root / f"n{grid}" / self.hparams.family / f"{split}.h5"

    def level_at_epoch(self, epoch: int) -> int:
        return self.schedule.phase_at(epoch)

    @property
    def budget(self) -> float:
        """Measured generation seconds of the training samples used: ``sum n_l c_l``."""
        return float(sum(n * c for n, c in zip(self.n_samples, self.level_costs) if n > 0))  # skipped: no cost

    @property
    def data_stats(self) -> dict[str, float]:
        """Mean and std of the first training level's network inputs and labels (read when first asked)."""
        self._load_train()
        return dict(self.stats)

    @property
    def data_summary(self) -> dict[str, object]:
        """What the data of the run is and cost (see the module doc; read when first asked)."""
        self._load_train()
        return {"family": self.hparams.family, "levels": list(self.levels), "n_samples": list(self.n_samples),
                "epochs": list(self.epochs), "seconds_per_sample": list(self.level_costs),
                "budget_seconds": self.budget, "interpolation": self.interpolation,
                "native": bool(self.hparams.native)}

    def setup(self, stage: str | None = None) -> None:
        self._load_train()
        for split, cap in (("val", self.hparams.val_samples), ("test", self.hparams.test_samples)):
            if split not in self._eval and (stage in (None, "fit", "validate") or split == "test"):
                x, y, _, _, _ = read_level(self.path(self.finest, split), cap, False, self.hparams.output_frame)
                self._eval[split] = _Pairs(self.view.network_input(x), y)

    def _load_train(self) -> None:
        """Every level's training pairs, costs and the first level's statistics (once)."""
        if self.level_costs:
            return
        costs = []  # assigned when every level is read: a failed read is retried, not half-kept
        for l, grid in enumerate(self.levels):
            if self.n_samples[l] == 0:
                costs.append(float("nan"))
                continue
            x, y, got, cost, _ = read_level(self.path(grid, "train"), self.n_samples[l], self.hparams.native,
                                            self.hparams.output_frame)
            if got != grid:
                raise DataFileError(f"{self.path(grid, 'train')} holds grid {got}, level {l} is {grid}")
            if not self.hparams.native:
                y = interpolate(y, self.finest, self.view.grid, self.interpolation)
            self._train[l] = _Pairs(self.view.network_input(x), y)
            costs.append(cost)
        first = self._train[min(self._train)]
        self.stats = {"in_mean": float(first.x.mean()), "in_std": float(first.x.std()) or 1.0,
                      "out_mean": float(first.y.mean()), "out_std": float(first.y.std()) or 1.0}
        self.level_costs = costs

    # ------------------------------------------------------------------ loaders
    def train_dataloader(self) -> DataLoader:
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        level = self.level_at_epoch(epoch)
        data = self._train[level]
        bs = min(self.hparams.batch_size, len(data))
        steps = self.hparams.steps_per_epoch or -(-len(data) // bs)
        sampler = _EpochSampler(len(data), steps * bs, self.hparams.seed, epoch)
        return DataLoader(data, batch_size=bs, sampler=sampler, num_workers=self.hparams.num_workers)

    def _eval_loader(self, split: str) -> DataLoader:
        return DataLoader(self._eval[split], batch_size=self.hparams.eval_batch_size,
                          num_workers=self.hparams.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")


__all__ = ["MultilevelDataModule", "read_level"]
