"""``OperatorFamilyDataModule``: the one LightningDataModule shared by every training stage."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import lightning.pytorch as pl
from torch.utils.data import DataLoader

from lemon_pl.data.datasets import FrameLayout, OperatorTaskDataset, TrajectoryDataset, collate
from lemon_pl.data.families import resolve_families
from lemon_pl.data.generate import DEFAULT_SEED, PRESETS, STANDARD_SPLITS, GenerationError, generate
from lemon_pl.data.io import DataFileError, FamilySplit, open_split
from lemon_pl.data.sampling import OperatorGroupedSampler, ResumableDataLoader, ResumableSampler
from lemon_pl.data.symbols import PAD_ID, VOCAB_SIZE

IN_MEMORY_LIMIT_BYTES = 4 * 2**30


class OperatorFamilyDataModule(pl.LightningDataModule):
    """Operator-family data for pretraining, meta-learning, fine-tuning and evaluation.

    Linked to the stage and its network (``model_links``, wherever a constructor takes them):
    ``nx``, ``input_len``, ``output_len``, ``vocab_size``, ``pad_id``, ``train_family_names``,
    ``eval_family_names`` and ``unit``.

    Args:
        root: folder holding ``<family>/<split>.h5`` (see ``lemon-pl generate``).
        train_families: families to train on: a list, a comma-separated string, or one of
            ``pretrain`` (the reference's 7), ``finetune`` (the other 12) or ``all``.
        eval_families: families for validation/test (default: the training families).
            Each gets its own loader, so metrics are reported per family.
        preset: data preset generated for missing files when ``generate`` is true.
        generate: create missing files in ``prepare_data`` (rank 0 only); otherwise a
            missing file is an error that says how to create it.
        generate_workers: processes used for that generation.
        nx, nt: the grid the data must have (checked against every file); linked to the model.
        input_len: number of leading frames given as input (1 = the initial condition).
        output_start, output_step: predicted frames are ``output_start::output_step``
            (default ``input_len::2``: the 32 odd frames of 64).
        train_split, val_split, test_split: file names of the splits (``ood`` etc. allowed).
        num_train_samples: keep only the first N trajectories of each training family
            (fine-tuning with N samples); None keeps all.
        batch_size, eval_batch_size, num_workers: DataLoader settings.
        in_memory: hold the needed frames in RAM; None decides by size (< 4 GiB).
        noise: relative Gaussian noise level added to training inputs (0 = none).
        seed: seed of the noise realisations and of the shuffle.
        unit: ``sample`` (batches of trajectories) or ``task`` (batches of whole operators,
            each with all K trajectories: meta-learning and few-shot evaluation).
        tasks_per_batch, eval_tasks_per_batch: operators per batch when ``unit`` is ``task``.
        operator_group: with ``unit: sample``, put this many trajectories of one operator next to
            each other in the training shuffle (``OperatorGroupedSampler``): a batch then holds
            ``batch_size / operator_group`` operators and Prose encodes each equation once per
            batch (less work per step, measured by ``benchmarks/train_throughput.py``). It must
            divide ``batch_size``. None (default): a plain shuffle of all trajectories, as the
            reference samples; grouping makes batches less diverse, so treat it as a setting
            to validate, not a free speed-up.
    """

    #: values handed to the model (see ``lemon_pl.cli.lightning``)
    model_links = ("nx", "input_len", "output_len", "vocab_size", "pad_id", "train_family_names",
                   "eval_family_names", "unit")

    def __init__(
        self,
        root: str = "data",
        train_families: str | list[str] = "pretrain",
        eval_families: str | list[str] | None = None,
        preset: str = "default",
        generate: bool = True,
        generate_workers: int = 1,
        nx: int = 128,
        nt: int = 64,
        input_len: int = 1,
        output_start: int | None = None,
        output_step: int = 2,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "test",
        num_train_samples: int | None = None,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        num_workers: int = 0,
        in_memory: bool | None = None,
        noise: float = 0.0,
        seed: int = DEFAULT_SEED,
        unit: str = "sample",
        tasks_per_batch: int = 5,
        eval_tasks_per_batch: int = 4,
        operator_group: int | None = None,
    ):
        super().__init__()
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
        if num_train_samples is not None and num_train_samples < 1:
            raise ValueError(f"num_train_samples must be positive, got {num_train_samples}")
        if unit not in ("sample", "task"):
            raise ValueError(f"unit must be 'sample' or 'task', got {unit!r}")
        if noise < 0:
            raise ValueError(f"noise must be non-negative, got {noise}")
        if operator_group is not None:
            if operator_group < 1 or batch_size % operator_group:
                raise ValueError(f"data.operator_group must be a positive divisor of batch_size={batch_size}, "
                                 f"got {operator_group}")
            if unit != "sample":
                raise ValueError("data.operator_group applies to unit: sample (a task batch holds whole operators)")
        self.save_hyperparameters()
        # generate on global rank 0 only: nodes usually share the data folder, and two writers
        # of the same .partial file would corrupt it
        self.prepare_data_per_node = False
        self.root = Path(root)
        self.train_family_names = resolve_families(train_families)
        self.eval_family_names = (resolve_families(eval_families) if eval_families is not None
                                  else list(self.train_family_names))
        self.layout = FrameLayout(nt, input_len, output_start, output_step)
        self.nx, self.nt = nx, nt
        self._splits: dict[tuple[str, str], FamilySplit] = {}
        self.train_set: TrajectoryDataset | OperatorTaskDataset | None = None

    # ------------------------------------------------------------------ linked values
    @property
    def input_len(self) -> int:
        return self.layout.input_len

    @property
    def output_len(self) -> int:
        return self.layout.output_len

    @property
    def unit(self) -> str:
        return self.hparams.unit

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def all_families(self) -> list[str]:
        return list(dict.fromkeys(self.train_family_names + self.eval_family_names))

    # ------------------------------------------------------------------ files
    def _needed(self, stage: str | None) -> list[tuple[str, str]]:
        hp = self.hparams
        need = []
        if stage in (None, "fit"):
            need += [(f, hp.train_split) for f in self.train_family_names]
        if stage in (None, "fit", "validate"):
            need += [(f, hp.val_split) for f in self.eval_family_names]
        if stage in (None, "test", "predict"):
            need += [(f, hp.test_split) for f in self.eval_family_names]
        return list(dict.fromkeys(need))

    def prepare_data(self) -> None:
        """Generate missing files of the preset (global rank 0 only); complete files are skipped."""
        if not self.hparams.generate:
            return
        missing = [(f, s) for f, s in self._needed(None) if not (self.root / f / f"{s}.h5").exists()]
        if not missing:
            return
        extra = sorted({s for _, s in missing if s not in STANDARD_SPLITS})
        if extra:
            raise DataFileError(
                f"split(s) {extra} are missing under {self.root} and are not standard splits; create them with "
                f"`lemon-pl generate --root {self.root} --split-name {extra[0]} --gamma 0.3 --families ...`")
        fams = sorted({f for f, _ in missing}, key=self.all_families.index)
        splits = [s for s in STANDARD_SPLITS if any(ms == s for _, ms in missing)]
        try:
            generate(self.root, self.hparams.preset, fams, splits=splits, nx=self.nx, nt=self.nt,
                     workers=self.hparams.generate_workers, seed=DEFAULT_SEED)
        except GenerationError as err:
            raise DataFileError(str(err)) from None

    def split(self, family: str, split: str) -> FamilySplit:
        key = (family, split)
        if key not in self._splits:
            s = open_split(self.root, family, split)
            if (s.nt, s.nx) != (self.nt, self.nx):
                raise DataFileError(
                    f"{s.path} holds nt={s.nt} frames x nx={s.nx} points, but the data module (and model) are "
                    f"configured for nt={self.nt}, nx={self.nx}; set data.nt/data.nx to match or regenerate")
            self._splits[key] = s
        return self._splits[key]

    def _in_memory(self, splits: Sequence[FamilySplit]) -> bool:
        if self.hparams.in_memory is not None:
            return bool(self.hparams.in_memory)
        nbytes = sum(len(s) * len(self.layout.frames) * s.nx * 4 for s in splits)
        return nbytes < IN_MEMORY_LIMIT_BYTES

    def _trajectories(self, families: Sequence[str], split: str, ids: Sequence[int], train: bool) -> TrajectoryDataset:
        splits = [self.split(f, split) for f in families]
        return TrajectoryDataset(
            splits, self.layout, ids, n_samples=self.hparams.num_train_samples if train else None,
            in_memory=self._in_memory(splits), noise=self.hparams.noise if train else 0.0, seed=self.hparams.seed)

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        if stage in (None, "fit") and self.train_set is None:
            if hp.unit == "task":
                self.train_set = self.task_dataset(hp.train_split, self.train_family_names)
            else:
                ids = [self.all_families.index(f) for f in self.train_family_names]
                self.train_set = self._trajectories(self.train_family_names, hp.train_split, ids, train=True)
        if stage in (None, "fit", "validate"):
            self.val_sets = self._eval_sets(hp.val_split)
        if stage in (None, "test", "predict"):
            self.test_sets = self._eval_sets(hp.test_split)

    def _eval_sets(self, split: str) -> list:
        if self.hparams.unit == "task":
            return [self.task_dataset(split, [f]) for f in self.eval_family_names]
        return [self._trajectories([f], split, [self.all_families.index(f)], train=False)
                for f in self.eval_family_names]

    def task_dataset(self, split: str | None = None, families: Sequence[str] | None = None,
                     n_operators: int | None = None) -> OperatorTaskDataset:
        """Operator tasks (all K trajectories of one operator per item) of ``families``/``split``."""
        split = split or self.hparams.train_split
        families = list(families or self.train_family_names)
        splits = [self.split(f, split) for f in families]
        return OperatorTaskDataset(splits, self.layout, [self.all_families.index(f) for f in families],
                                   in_memory=self._in_memory(splits), n_operators=n_operators)

    # ------------------------------------------------------------------ loaders
    def _loader(self, ds, batch_size: int, sampler=None, cls: type[DataLoader] = DataLoader, **kw) -> DataLoader:
        workers = self.hparams.num_workers
        return cls(ds, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=workers,
                   collate_fn=collate, persistent_workers=workers > 0, drop_last=False, **kw)

    def train_dataloader(self) -> DataLoader:
        if len(self.train_set) == 0:
            raise DataFileError("the training set is empty")
        # The shuffle depends only on (seed, epoch) - Lightning calls set_epoch - so a resumed run
        # sees exactly the batches an uninterrupted one would; under DDP each rank gets its shard.
        # A run resumed from a mid-epoch checkpoint continues with the next batch of that epoch:
        # the loader skips the batches Lightning's restored counter says were trained
        # (see lemon_pl.data.sampling).
        trainer = self.trainer
        world = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        shard = dict(num_replicas=world, rank=rank, shuffle=True, seed=self.hparams.seed, drop_last=False)
        if self.hparams.operator_group and self.hparams.unit == "sample":
            sampler = OperatorGroupedSampler(self.train_set, self.train_set.operator_blocks(),
                                             self.hparams.operator_group, **shard)
        else:
            sampler = ResumableSampler(self.train_set, **shard)
        batch = self.hparams.tasks_per_batch if self.hparams.unit == "task" else self.hparams.batch_size
        return self._loader(self.train_set, batch, sampler, cls=ResumableDataLoader,
                            batches_done=self._train_batches_done)

    def _train_batches_done(self) -> int:
        """Batches of the current epoch already trained when the loader starts a pass: Lightning's
        counter, which it continues from (0 in a fresh epoch, k after a resume from a checkpoint
        written after k batches of the epoch)."""
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return 0
        return int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(ds, self._eval_batch()) for ds in self.val_sets]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(ds, self._eval_batch()) for ds in self.test_sets]

    def predict_dataloader(self) -> list[DataLoader]:
        """``lemon-pl predict --config``: the test split's loaders, one per evaluation family."""
        return self.test_dataloader()

    def _eval_batch(self) -> int:
        return self.hparams.eval_tasks_per_batch if self.hparams.unit == "task" else self.hparams.eval_batch_size

    def teardown(self, stage: str | None = None) -> None:
        if stage in (None, "test"):
            for s in self._splits.values():
                s.close()
