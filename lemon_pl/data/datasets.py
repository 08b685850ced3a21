"""Torch datasets over operator-family files: single trajectories and whole operators (tasks).

A sample is one trajectory split into input frames (the first ``input_len``; default 1, the
initial condition) and output frames (``output_start::output_step``; default the 32 odd
frames). Both are normalised by the mean and standard deviation of the input frames (over
time and space, eps 1e-6), which are returned so metrics can de-normalise. Times are given
in stored (model) time, 2k/nt, identical for every family.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lemon_pl.data.io import DataFileError, FamilySplit, _regen_hint
from lemon_pl.data.symbols import PAD_ID

NORM_EPS = 1e-6


class FrameLayout:
    """Which stored frames are inputs and which are predicted outputs."""

    def __init__(self, nt: int, input_len: int = 1, output_start: int | None = None, output_step: int = 2):
        if input_len < 1 or input_len >= nt:
            raise ValueError(f"input_len must be in [1, nt={nt}), got {input_len}")
        if output_step < 1:
            raise ValueError(f"output_step must be positive, got {output_step}")
        start = input_len if output_start is None else output_start
        if not 0 <= start < nt:
            raise ValueError(f"output_start must be in [0, nt={nt}), got {start}")
        self.nt = nt
        self.input_idx = np.arange(input_len)
        self.output_idx = np.arange(start, nt, output_step)
        self.frames = np.union1d(self.input_idx, self.output_idx)  # what must be read
        self._in_pos = np.searchsorted(self.frames, self.input_idx)
        self._out_pos = np.searchsorted(self.frames, self.output_idx)
        stored = np.arange(nt) * (2.0 / nt)
        self.t_in = torch.tensor(stored[self.input_idx], dtype=torch.float32)
        self.t_out = torch.tensor(stored[self.output_idx], dtype=torch.float32)

    @property
    def input_len(self) -> int:
        return int(self.input_idx.size)

    @property
    def output_len(self) -> int:
        return int(self.output_idx.size)

    def split(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., len(self.frames), nx) -> inputs (..., n_in, nx), outputs (..., n_out, nx)."""
        return frames[..., self._in_pos, :], frames[..., self._out_pos, :]


def normalise(u_in: np.ndarray, u_out: np.ndarray):
    """Per-sample statistics of the input frames, applied to inputs and outputs."""
    axes = (-2, -1)
    mean = u_in.mean(axis=axes, keepdims=True)
    std = u_in.std(axis=axes, keepdims=True) + NORM_EPS
    return (u_in - mean) / std, (u_out - mean) / std, mean[..., 0, 0], std[..., 0, 0]


class _FamilySource:
    """Frames of one family/split, read lazily or held in memory (only the needed frames).

    Every slice read from the file is checked for NaN/Inf; a bad value raises DataFileError
    naming the file, operator and trajectory (also from a DataLoader worker process).
    """

    def __init__(self, split: FamilySplit, layout: FrameLayout, n_samples: int | None, in_memory: bool):
        self.split = split
        self.layout = layout
        total = split.n_operators * split.k
        self.n = total if n_samples is None else min(int(n_samples), total)
        self.data = None
        if in_memory:
            n_ops = -(-self.n // split.k)
            frames = np.stack([split.operator(i)[:, layout.frames] for i in range(n_ops)])
            self.data = frames.reshape(-1, len(layout.frames), split.nx)[: self.n]
            if not np.isfinite(self.data).all():  # name the first bad trajectory actually used
                j = int(np.flatnonzero(~np.isfinite(self.data).reshape(self.n, -1).all(axis=1))[0])
                self._checked(self.data[j], *divmod(j, split.k))

    def _checked(self, arr: np.ndarray, op: int, traj: int | None = None) -> np.ndarray:
        if not np.isfinite(arr).all():
            if traj is None:  # (K, frames, nx): name the first bad trajectory
                traj = int(np.flatnonzero(~np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1))[0])
            raise DataFileError(
                f"{self.split.path}: non-finite value (NaN/Inf) in operator {op} trajectory {traj}; "
                f"{_regen_hint(self.split.path, self.split.attrs)}")
        return arr

    def frames(self, j: int) -> np.ndarray:
        if self.data is not None:
            return self.data[j]
        op, traj = divmod(j, self.split.k)
        return self._checked(self.split.sample(op, traj)[self.layout.frames], op, traj)

    def op_frames(self, op: int) -> np.ndarray:
        if self.data is not None and (op + 1) * self.split.k <= self.n:
            return self.data[op * self.split.k:(op + 1) * self.split.k]
        return self._checked(self.split.operator(op)[:, self.layout.frames], op)


def _item(x_in, y, mean, std, layout: FrameLayout, src: "_FamilySource", op: int, family_id: int,
          index: int) -> dict:
    """One dataset item: float32 tensors plus the operator's tokens and identifiers."""
    return {
        "u_in": torch.from_numpy(np.asarray(x_in, dtype=np.float32)),
        "u_out": torch.from_numpy(np.asarray(y, dtype=np.float32)),
        "mean": torch.as_tensor(np.asarray(mean, dtype=np.float32)),
        "std": torch.as_tensor(np.asarray(std, dtype=np.float32)),
        "t_in": layout.t_in,
        "t_out": layout.t_out,
        "tokens": torch.from_numpy(src.split.operator_tokens(op).copy()),
        "family": torch.tensor(family_id),
        "operator": torch.tensor(op),
        "index": torch.tensor(index),
    }


def _check_finite(arr: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(arr)):
        raise DataFileError(f"non-finite values (NaN/Inf) in {where}; regenerate that file")


class TrajectoryDataset(Dataset):
    """All trajectories of several families (concatenated), one sample per trajectory.

    ``n_samples`` keeps the first N trajectories of each family (operator-major order, so N <= K
    means one operator); ``noise`` adds relative Gaussian noise ``noise * ||u_in|| / ||xi|| * xi``
    to the *inputs* only (the reference also corrupted labels and evaluation data), with a
    fixed realisation per sample derived from ``seed``.
    """

    def __init__(self, splits: Sequence[FamilySplit], layout: FrameLayout, family_ids: Sequence[int],
                 n_samples: int | None = None, in_memory: bool = True, noise: float = 0.0, seed: int = 0):
        self.layout = layout
        self.sources = [_FamilySource(s, layout, n_samples, in_memory) for s in splits]
        self.family_ids = list(family_ids)
        self.offsets = np.cumsum([0] + [s.n for s in self.sources])
        self.noise = float(noise)
        self.seed = int(seed)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def operator_blocks(self) -> list[tuple[int, int]]:
        """``(start, stop)`` index range of every operator's trajectories (operator-major order)."""
        blocks = []
        for off, src in zip(self.offsets[:-1], self.sources):
            k = src.split.k
            blocks += [(int(off + a), int(off + min(a + k, src.n))) for a in range(0, src.n, k)]
        return blocks

    def locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        f = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return f, int(index - self.offsets[f])

    def __getitem__(self, index: int) -> dict:
        f, j = self.locate(index)
        src = self.sources[f]
        frames = np.asarray(src.frames(j), dtype=np.float64)
        u_in, u_out = self.layout.split(frames)
        if self.noise > 0:
            rng = np.random.default_rng((self.seed, index))
            xi = rng.standard_normal(u_in.shape)
            u_in = u_in + self.noise * np.linalg.norm(u_in) / np.linalg.norm(xi) * xi
        x_in, y, mean, std = normalise(u_in, u_out)
        op = j // src.split.k
        if not (np.isfinite(x_in).all() and np.isfinite(y).all()):
            _check_finite(frames, f"{src.split.path} operator {op} trajectory {j % src.split.k}")
        return _item(x_in, y, mean, std, self.layout, src, op, self.family_ids[f], index)


class OperatorTaskDataset(Dataset):
    """One item per operator: all its K trajectories (the task view used by meta-learning)."""

    def __init__(self, splits: Sequence[FamilySplit], layout: FrameLayout, family_ids: Sequence[int],
                 in_memory: bool = True, n_operators: int | None = None):
        self.layout = layout
        self.sources = [_FamilySource(s, layout, None, in_memory) for s in splits]
        self.family_ids = list(family_ids)
        counts = [s.split.n_operators if n_operators is None else min(n_operators, s.split.n_operators)
                  for s in self.sources]
        self.offsets = np.cumsum([0] + counts)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def family_of(self, index: int) -> int:
        return int(np.searchsorted(self.offsets, index, side="right") - 1)

    def __getitem__(self, index: int) -> dict:
        f = self.family_of(index)
        op = int(index - self.offsets[f])
        src = self.sources[f]
        frames = np.asarray(src.op_frames(op), dtype=np.float64)
        u_in, u_out = self.layout.split(frames)
        x_in, y, mean, std = normalise(u_in, u_out)
        _check_finite(x_in, f"{src.split.path} operator {op}")
        return _item(x_in, y, mean, std, self.layout, src, op, self.family_ids[f], index)  # (K, ...) arrays


def collate(samples: Sequence[dict]) -> dict:
    """Stack samples, right-padding equation tokens with PAD_ID (plus a True-at-padding mask)."""
    out = {}
    for key in samples[0]:
        if key == "tokens":
            seqs = [s["tokens"].long() for s in samples]
            length = max(1, max(len(t) for t in seqs))
            toks = torch.full((len(seqs), length), PAD_ID, dtype=torch.long)
            for i, t in enumerate(seqs):
                toks[i, : len(t)] = t
            out["tokens"] = toks
            out["token_pad_mask"] = toks == PAD_ID
        else:
            out[key] = torch.stack([s[key] for s in samples])
    return out
