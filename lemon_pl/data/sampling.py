"""A training loader that continues an interrupted epoch exactly where it stopped.

When Lightning resumes from a checkpoint written in the middle of an epoch (``ModelCheckpoint(
every_n_train_steps=...)``, a requeued SLURM job, a save on Ctrl-C or on a NaN loss), it restores
its loop counters and continues counting from the saved batch, but it does not skip anything:
the loader is expected to yield only the rest of the epoch (its fetcher starts at
``batch_progress.current.ready`` and stops the epoch at the full length). A plain loader starts
the epoch again, so the resumed run trains on different batches.

:class:`ResumableDataLoader` asks, when a pass over the data starts, how many batches of this
epoch are already done (the data module answers with Lightning's restored counter; 0 in a
fresh epoch), and its :class:`ResumableSampler` then leaves out exactly those indices of the
epoch's permutation, without reading them. The shuffle depends only on (seed, epoch), as in
:class:`~torch.utils.data.DistributedSampler`, so the rest of the epoch is the one an
uninterrupted run sees; under DDP every rank restores the same counter and skips that many
batches of its own shard (the shards are padded to equal length).

Why the counter, and not a position saved by the loader (Lightning's ``state_dict`` protocol for
loaders): the stages call ``trainer.estimated_stepping_batches`` in ``configure_optimizers``,
which builds the training loader before the loop state is restored, so Lightning never hands a
saved loader state back; and a checkpoint written between fetching a batch and finishing it
(Ctrl-C, a NaN stop) would be one batch off. Lightning's counter is what it continues from by
definition, and checkpoints written before this loader existed resume exactly as well.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable, Iterator

import math
from typing import Sequence

import torch
from torch.utils.data import DataLoader, DistributedSampler


class ResumableSampler(DistributedSampler):
    """A ``DistributedSampler`` whose next pass can start part-way through the epoch.

    ``skip_next(n)`` makes the next ``__iter__`` leave out the first ``n`` indices of this rank's
    shard (used up by that ``__iter__``). ``len()`` stays the full shard.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._skip = 0

    def skip_next(self, n: int) -> None:
        self._skip = max(0, int(n))

    def __iter__(self) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        indices = self._epoch_indices()
        return itertools.islice(indices, skip, None) if skip else indices

    def _epoch_indices(self) -> Iterator[int]:
        """This rank's indices of the current epoch (``DistributedSampler``'s shuffle)."""
        return super().__iter__()


class OperatorGroupedSampler(ResumableSampler):
    """Shuffled training indices in which runs of ``group_size`` trajectories share one operator.

    Each epoch (seeded by ``seed + epoch``, like ``DistributedSampler``) every operator's
    trajectories are shuffled and cut into groups of ``group_size`` (the last group of an
    operator may be shorter), and the groups are shuffled. A loader whose batch size is a
    multiple of ``group_size`` then sees ``batch_size / group_size`` operators per batch, and
    :class:`~lemon_pl.models.Prose` encodes each operator's equation once per batch. Every
    trajectory is still seen exactly once per epoch. Under DDP each rank takes a contiguous
    share of the group sequence (padded, as ``DistributedSampler`` pads, by repeating its
    start), so groups stay whole on a rank. Mid-epoch resumption works as for
    :class:`ResumableSampler`.

    Args:
        operator_blocks: ``(start, stop)`` dataset index range of every operator.
    """

    def __init__(self, dataset, operator_blocks: Sequence[tuple[int, int]], group_size: int, **kwargs: Any) -> None:
        if group_size < 1:
            raise ValueError(f"group_size must be positive, got {group_size}")
        kwargs.setdefault("drop_last", False)
        if kwargs["drop_last"]:
            raise ValueError("OperatorGroupedSampler does not drop samples (drop_last=False)")
        super().__init__(dataset, **kwargs)
        self.blocks = [(int(a), int(b)) for a, b in operator_blocks if b > a]
        self.group_size = int(group_size)
        if sum(b - a for a, b in self.blocks) != len(dataset):
            raise ValueError("operator_blocks must cover the dataset")

    def _epoch_indices(self) -> Iterator[int]:
        g = torch.Generator()
        g.manual_seed(self.seed + self.epoch)
        groups: list[torch.Tensor] = []
        for a, b in self.blocks:
            idx = a + torch.randperm(b - a, generator=g) if self.shuffle else torch.arange(a, b)
            groups += list(idx.split(self.group_size))
        if self.shuffle:
            groups = [groups[i] for i in torch.randperm(len(groups), generator=g).tolist()]
        flat = torch.cat(groups).tolist()
        if len(flat) < self.total_size:  # pad like DistributedSampler (drop_last=False)
            flat += (flat * math.ceil(self.total_size / len(flat)))[: self.total_size - len(flat)]
        start = self.rank * self.num_samples
        return iter(flat[start:start + self.num_samples])


class ResumableDataLoader(DataLoader):
    """A DataLoader over a :class:`ResumableSampler` that continues a partly trained epoch.

    Args:
        batches_done: called when a pass over the data starts (at its first ``next``); returns
            how many batches of the current epoch were already trained. Those are skipped in
            the sampler. None: always 0. Ignored (nothing is skipped) if the sampler is not a
            :class:`ResumableSampler`, e.g. after Lightning swapped it (``overfit_batches``).

    Iterating is lazy: the underlying iterator (and, with ``num_workers > 0``, the first
    requests to the workers, which draw indices from the sampler) is made at the first
    ``next``. By then Lightning has called ``set_epoch`` and restored its counters; it makes
    the first iterator of a run before both, which with workers would also shuffle the first
    epoch of a resumed run as epoch 0.

    ``state_dict()`` (saved by Lightning in checkpoints) records the epoch and the batches
    yielded in it, for inspection; it also tells Lightning the loader is resumable.
    ``load_state_dict`` has nothing to restore, since the position comes from ``batches_done``.
    """

    def __init__(self, *args: Any, batches_done: Callable[[], int] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batches_done = batches_done if isinstance(self.sampler, ResumableSampler) else None
        self._position = {"epoch": getattr(self.sampler, "epoch", 0), "batches": 0}

    def __iter__(self) -> Iterator[Any]:
        return self._rest_of_epoch()

    def _rest_of_epoch(self) -> Iterator[Any]:
        done = min(int(self._batches_done()), len(self)) if self._batches_done is not None else 0
        epoch = getattr(self.sampler, "epoch", 0)
        self._position = {"epoch": epoch, "batches": done}
        if done:
            self.sampler.skip_next(done * self.batch_size)
        for batch in super().__iter__():
            done += 1
            self._position = {"epoch": epoch, "batches": done}
            yield batch

    def state_dict(self) -> dict[str, int]:
        return dict(self._position)

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Nothing to do: the position in the epoch comes from ``batches_done`` (Lightning's counter)."""
