"""A run killed mid-epoch and resumed from its mid-epoch ``last.ckpt`` equals an uninterrupted run.

Checkpoints of requeued jobs are written in the middle of an epoch (``ModelCheckpoint(
every_n_train_steps=...)``, Lightning's SLURM ``hpc_ckpt`` on SIGUSR1, Ctrl-C), and the resumed run
must go on with the next batch of that epoch, not start it again. The CLI runs below save
``last.ckpt`` after every step and are killed (SIGKILL, no cleanup) at a step drawn from a seeded
RNG; the run resumed from it must end with bit-identical weights, optimizer and scheduler state
and validation metrics, and must have trained on exactly the batches the uninterrupted run had
left. The loader itself (each DDP rank's shard, worker processes) is tested below them.
"""

from __future__ import annotations

import csv
import itertools
import os
import random
import subprocess
import sys
import warnings

import pytest
import torch
from torch.utils.data import Dataset

from lemon_pl.data.sampling import ResumableDataLoader, ResumableSampler
from tests.conftest import CONFIGS, REPO

NET = ["--model.init_args.net.init_args.d_model", "16", "--model.init_args.net.init_args.dim_ffn", "32",
       "--model.init_args.net.init_args.n_heads", "2"]
META = ["--model.init_args.support_size", "4", "--model.init_args.query_size", "6", "--model.init_args.inner_steps",
        "2", "--model.init_args.eval_support_size", "4", "--model.init_args.eval_query_size", "8",
        "--data.init_args.tasks_per_batch", "2", "--data.init_args.eval_tasks_per_batch", "2"]
BATCHES, EPOCHS = 6, 2

CASES = {  # config, extra arguments, epoch of the kill
    # pretraining, in-process loading (12 batches of 8 per epoch; 6 used)
    "sample": ("pretrain.yaml", [], 0),
    # pretraining with persistent worker processes and input noise, killed in the second epoch (whose
    # shuffle the resumed run must use: Lightning makes the first iterator before calling set_epoch)
    "sample-workers-noise": ("pretrain.yaml", ["--data.init_args.num_workers", "1", "--data.init_args.noise", "0.05"],
                             1),
    # meta-learning over operator tasks (4 batches of 2 tasks per epoch), manual optimization
    "task": ("meta.yaml", META, 0),
}


def args(root, runs, steps, config, *extra):
    return ["fit", "--config", str(CONFIGS / config), "--config", str(CONFIGS / "trainer/cpu.yaml"),
            "--data.init_args.root", str(root), "--data.init_args.preset", "tiny",
            "--data.init_args.train_families", "heat,kdv", "--data.init_args.batch_size", "8",
            "--trainer.logger.init_args.save_dir", str(runs), "--trainer.logger.init_args.name", "run",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.limit_train_batches", str(BATCHES), "--trainer.limit_val_batches", "1",
            "--trainer.max_epochs", str(EPOCHS), "--trainer.num_sanity_val_steps", "0",
            "--model.init_args.log_figures", "false",  # (half the time of these runs)
            # what a requeue-able job adds: a last.ckpt after every training step
            "--trainer.callbacks+=lightning.pytorch.callbacks.ModelCheckpoint",
            "--trainer.callbacks.init_args.dirpath", str(steps),
            "--trainer.callbacks.init_args.every_n_train_steps", "1",
            "--trainer.callbacks.init_args.save_top_k", "0", "--trainer.callbacks.init_args.save_last", "true",
            "--trainer.callbacks+=tests.helpers.RecordRankBatches", *NET, *extra]


def kill_in_subprocess(cmd, cwd, **env):
    """Start the run that KillAt SIGKILLs (stderr goes to ``cwd/killed.err``)."""
    full_env = dict(os.environ, PYTHONPATH=str(REPO), WANDB_MODE="disabled", OMP_NUM_THREADS="1", **env)
    with open(cwd / "killed.err", "w") as err:
        return subprocess.Popen([sys.executable, "-m", "lemon_pl", *cmd], cwd=cwd, env=full_env,
                                stdout=subprocess.DEVNULL, stderr=err)


def fit_here(cmd, record_dir, monkeypatch):
    """Run in this process (no second import of torch/Lightning: the test stays fast)."""
    from lemon_pl.cli import main

    monkeypatch.setenv("LEMON_RECORD_DIR", str(record_dir))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert main(cmd) == 0
    return [str(w.message) for w in caught]


def val_rows(run_dir):
    with open(run_dir / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("val/rel_l2")]
    return [{k: v for k, v in r.items() if k.startswith("val/")} for r in rows]


def differing(a, b, where=""):
    """Paths of the tensors (and other leaves) that differ between two nested checkpoint parts."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        same = isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype \
            and a.shape == b.shape and torch.equal(a, b)
        return [] if same else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{where}: keys {sorted(map(str, set(a) ^ set(b)))}"]
        return [d for k in a for d in differing(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: lengths {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differing(x, y, f"{where}/{i}")]
    return [] if a == b else [where]


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the killed subprocess (OMP_NUM_THREADS=1): same floating-point results
    yield
    torch.set_num_threads(threads)


def kill_step(case):
    """(epoch, batch) of the kill: the batch that never starts, drawn from a seeded RNG."""
    config, _, kill_epoch = CASES[case]
    return kill_epoch, random.Random(f"resume-{case}").randint(1, per_epoch(config) - 1)


def per_epoch(config):
    return 4 if config == "meta.yaml" else BATCHES


@pytest.fixture(scope="module")
def killed_runs(tiny_root, tmp_path_factory, request):
    """The killed run of every selected case (the default tier selects only ``sample``), started at
    once (each spends most of its time importing)."""
    runs = {}
    selected = {item.callspec.params["case"] for item in request.session.items
                if item.originalname == "test_sigkill_then_resume_from_mid_epoch_checkpoint_equals_uninterrupted"}
    for case, (config, extra, _) in CASES.items():
        if case not in selected:
            continue
        work = tmp_path_factory.mktemp(f"resume-{case}")
        epoch, batch = kill_step(case)
        cmd = args(tiny_root, work / "run", work / "run/steps", config, *extra,
                   "--trainer.callbacks+=tests.helpers.KillAt")
        runs[case] = (work, kill_in_subprocess(cmd, work, LEMON_KILL_AT=f"{epoch}:{batch}",
                                               LEMON_RECORD_DIR=str(work / "run/killed")))
    yield runs
    for _, proc in runs.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("case", [c if c == "sample" else pytest.param(c, marks=pytest.mark.slow) for c in CASES])
def test_sigkill_then_resume_from_mid_epoch_checkpoint_equals_uninterrupted(case, tiny_root, killed_runs, monkeypatch,
                                                                             one_thread):
    config, extra, _ = CASES[case]
    kill_epoch, kill_batch = kill_step(case)
    kill_at = kill_epoch * per_epoch(config) + kill_batch  # steps done
    tmp_path, killed = killed_runs[case]
    monkeypatch.chdir(tmp_path)
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    fit_here(args(tiny_root, ref_dir, ref_dir / "steps", config, *extra), ref_dir / "record", monkeypatch)
    assert killed.wait(timeout=600) == -9, (tmp_path / "killed.err").read_text()[-2000:]  # SIGKILL: no cleanup
    mid = run_dir / "steps/last.ckpt"
    saved = torch.load(mid, weights_only=False)
    assert saved["global_step"] == kill_at  # a checkpoint from the middle of an epoch
    assert saved["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": kill_epoch,
                                                                              "batches": kill_batch}]
    caught = fit_here(args(tiny_root, run_dir, run_dir / "steps", config, *extra, "--ckpt_path", str(mid)),
                      run_dir / "record", monkeypatch)
    assert not [w for w in caught if "not resumable" in w]

    # trained on exactly the batches the uninterrupted run had left after the kill
    seen_ref = torch.load(ref_dir / "record/rank0.pt", weights_only=False)["indices"]
    seen = torch.load(run_dir / "record/rank0.pt", weights_only=False)["indices"]
    batch = 2 if config == "meta.yaml" else 8
    assert len(seen_ref) == EPOCHS * per_epoch(config) * batch and seen == seen_ref[kill_at * batch:]

    a = torch.load(ref_dir / "run/version_0/checkpoints/last.ckpt", weights_only=False)
    b = torch.load(run_dir / "run/version_1/checkpoints/last.ckpt", weights_only=False)
    assert a["global_step"] == b["global_step"] == EPOCHS * per_epoch(config)
    problems = (differing(a["state_dict"], b["state_dict"], "state_dict")
                + differing(a["optimizer_states"], b["optimizer_states"], "optimizer_states")
                + differing(a["lr_schedulers"], b["lr_schedulers"], "lr_schedulers"))
    assert not problems, f"{len(problems)} differences ({len(a['state_dict'])} weight tensors): {problems[:10]}"
    ra, rb = val_rows(ref_dir / "run/version_0"), val_rows(run_dir / "run/version_1")
    assert len(ra) == EPOCHS and ra[-1] == rb[-1]


# ---------------------------------------------------------------------------- the loader alone


class Items(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return i


def loader(n=23, world=1, rank=0, batch=4, workers=0, done=None):
    sampler = ResumableSampler(Items(n), num_replicas=world, rank=rank, shuffle=True, seed=7, drop_last=False)
    return ResumableDataLoader(Items(n), batch_size=batch, sampler=sampler, num_workers=workers,
                               persistent_workers=workers > 0, batches_done=done)


def epoch(dl, e, limit=None):
    dl.sampler.set_epoch(e)
    return [b.tolist() for b in itertools.islice(dl, limit)]


@pytest.mark.parametrize("world, workers", [(1, 0), (1, 2), (2, 0), (3, 0)])
def test_loader_skips_the_trained_batches_of_each_rank_shard_then_returns_to_normal(world, workers):
    for rank in range(world):
        ref = loader(world=world, rank=rank, workers=workers)
        full = [epoch(ref, e) for e in range(3)]
        run = loader(world=world, rank=rank, workers=workers)
        assert epoch(run, 0) == full[0] and epoch(run, 1, limit=2) == full[1][:2]
        assert run.state_dict() == {"epoch": 1, "batches": 2}
        done = [2]
        resumed = loader(world=world, rank=rank, workers=workers, done=lambda: done[0])
        assert len(resumed) == len(ref)  # Lightning counts on the full length
        it = iter(resumed)  # Lightning makes the iterator before it calls set_epoch and restores its counters
        resumed.sampler.set_epoch(1)
        assert [b.tolist() for b in it] == full[1][2:]
        assert resumed.state_dict() == {"epoch": 1, "batches": len(ref)}
        done[0] = 0
        assert epoch(resumed, 2) == full[2]  # the next epoch is a whole one


def test_loader_with_a_swapped_sampler_skips_nothing():
    from torch.utils.data import SequentialSampler

    dl = ResumableDataLoader(Items(10), batch_size=4, sampler=SequentialSampler(range(10)), batches_done=lambda: 1)
    assert [b.tolist() for b in dl] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
