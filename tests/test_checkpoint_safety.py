"""Checkpoints: loaded as data, damaged files and wrong LoRA bases refused in one line, writes that
fail (disk full, unwritable ``--out``) reported in one line, stale temporary files removed."""

from __future__ import annotations

import errno
import os
import pathlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lemon_pl.cli import main
from tests.test_stages import common

FT = ["--model.init_args.mode", "lora", "--model.init_args.lora_rank", "2", "--model.init_args.lr", "1e-2",
      "--data.init_args.num_train_samples", "8", "--trainer.max_steps", "2", "--trainer.check_val_every_n_epoch", "1",
      "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0"]
PRE = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.num_sanity_val_steps", "0"]


def run(*args):
    assert main(list(args)) == 0, args


def one_line_error(capsys, code, prefix="lemon-pl: error:"):
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err[-2000:]
    assert lines and lines[-1].startswith(prefix), err[-2000:]
    assert "Traceback" not in err
    return lines[-1]


def net_of(path):
    return {k: v for k, v in torch.load(path, map_location="cpu", weights_only=False)["state_dict"].items()}


@pytest.fixture(scope="module")
def made(tiny_root, tmp_path_factory):
    """In folder A: a pretraining checkpoint ``base.ckpt`` and an adapter-only LoRA checkpoint
    fine-tuned from it with the *relative* ``init_from base.ckpt``, and that adapter merged in A."""
    a = tmp_path_factory.mktemp("A")
    old = os.getcwd()
    os.chdir(a)
    try:
        run("fit", *common(tiny_root, a / "pre", "pretrain.yaml"), *PRE)
        shutil.copy(a / "pre/pretrain/version_0/checkpoints/last.ckpt", a / "base.ckpt")
        ft = common(tiny_root, a / "ft", "finetune.yaml", "kdv", "--model.init_args.init_from", "base.ckpt", *FT)
        run("fit", *ft)
        adapter = a / "ft/finetune/version_0/checkpoints/last.ckpt"
        run("merge-lora", "--ckpt", str(adapter), "--out", str(a / "merged.ckpt"))
    finally:
        os.chdir(old)
    return {"root": tiny_root, "A": a, "base": a / "base.ckpt", "adapter": adapter, "merged": a / "merged.ckpt",
            "ft": ft}


def pretrain_args(made, runs, *extra):
    return [*common(made["root"], runs, "pretrain.yaml"), *PRE, *extra]


def other_base(made, path):
    """A checkpoint shaped like the base with other weights."""
    raw = torch.load(made["base"], map_location="cpu", weights_only=False)
    raw["state_dict"] = {k: v + 0.25 if v.is_floating_point() else v for k, v in raw["state_dict"].items()}
    torch.save(raw, path)
    return path


# 1. checkpoints are loaded as data ----------------------------------------------------------------
class TouchOnLoad:
    """Unpickling it creates a file (as a malicious checkpoint could run any code)."""

    def __init__(self, marker):
        self.marker = Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


class OpenOnLoad(TouchOnLoad):
    def __reduce__(self):
        return open, (str(self.marker), "w")


def crafted(made, tmp_path, payload):
    marker = tmp_path / "code_ran"
    raw = torch.load(made["base"], map_location="cpu", weights_only=False)
    raw["hyper_parameters"]["note"] = payload(marker)
    path = tmp_path / "shared.ckpt"
    torch.save(raw, path)
    torch.load(path, weights_only=False)  # the file really is dangerous when unpickled blindly
    assert marker.exists()
    marker.unlink()
    return path, marker


ENTRIES = ["load_net_state", "init_from", "merge-lora", "test --ckpt_path", "fit --ckpt_path", "wandb_run_id"]


@pytest.mark.parametrize("entry, payload", [*((e, TouchOnLoad) for e in ENTRIES), ("load_net_state", OpenOnLoad),
                                            ("merge-lora", OpenOnLoad)])
def test_checkpoint_that_runs_code_is_refused(made, tmp_path, monkeypatch, capsys, entry, payload):
    from lemon_pl.core.checkpointing import load_net_state, wandb_run_id
    from lemon_pl.core.errors import CheckpointMismatchError

    monkeypatch.chdir(tmp_path)
    path, marker = crafted(made, tmp_path, payload)
    needs = "getattr" if payload is TouchOnLoad else "io.open"
    expected = (f"{path} is not a plain lemon-pl checkpoint: it needs {needs} to load "
                "(refused: loading it could run code)")
    if entry in ("load_net_state", "wandb_run_id"):
        with pytest.raises(CheckpointMismatchError) as err:
            (load_net_state if entry == "load_net_state" else wandb_run_id)(path)
        assert str(err.value) == expected
    elif entry == "merge-lora":
        line = one_line_error(capsys, main(["merge-lora", "--ckpt", str(path), "--out", str(tmp_path / "m.ckpt")]),
                              "lemon-pl merge-lora: error:")
        assert line.endswith(expected) and not (tmp_path / "m.ckpt").exists()
    elif entry == "init_from":
        line = one_line_error(capsys, main(["fit", *common(made["root"], tmp_path, "finetune.yaml", "kdv"), *FT,
                                            "--model.init_args.init_from", str(path)]))
        assert line.endswith(expected)
    else:
        sub = entry.split()[0]
        line = one_line_error(capsys, main([sub, *pretrain_args(made, tmp_path), "--ckpt_path", str(path)]))
        assert line.endswith(expected)
    assert not marker.exists()


def test_plain_values_in_checkpoints_still_load(tmp_path):
    """What the allow-list is for: paths and numpy scalars given from Python end up in hyper_parameters."""
    import numpy as np

    from lemon_pl.core.checkpointing import load_checkpoint

    hp = {"init_from": Path("/runs/base.ckpt"), "lr": np.float64(1e-3), "steps": np.int64(4), "flag": np.bool_(True)}
    torch.save({"state_dict": {"net.w": torch.ones(2)}, "hyper_parameters": hp}, tmp_path / "c.ckpt")
    assert load_checkpoint(tmp_path / "c.ckpt")["hyper_parameters"] == hp


def test_real_checkpoints_load_safely(made):
    """Every checkpoint lemon-pl writes (pretraining with its callback and loop state, adapter-only,
    merged) loads as data and equals what an unrestricted load gives."""
    from lemon_pl.core.checkpointing import load_checkpoint

    for path in (made["base"], made["adapter"], made["merged"]):
        safe, full = load_checkpoint(path), torch.load(path, map_location="cpu", weights_only=False)
        assert safe.keys() == full.keys()
        assert all(torch.equal(safe["state_dict"][k], v) for k, v in full["state_dict"].items())


# 2. damaged checkpoint files -----------------------------------------------------------------------
def damaged(made, tmp_path, kind):
    good = made["base"].read_bytes()
    path = tmp_path / f"{kind}.ckpt"
    if kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(os.urandom(2048))
    elif kind == "hdf5":
        path = next(made["root"].rglob("*.h5"))
    elif kind == "directory":
        path.mkdir()
    elif kind == "fifo":  # opening it would block until a writer came
        os.mkfifo(path)
    return path


KINDS = {"truncated": "is not a readable checkpoint (truncated or corrupted",
         "empty": "is not a readable checkpoint (the file is empty)",
         "random": "is not a readable checkpoint (not a PyTorch checkpoint",
         "hdf5": "is not a readable checkpoint (it is an HDF5 file, not a PyTorch checkpoint)",
         "directory": "is a directory, not a checkpoint file",
         "fifo": "is not a regular file, not a checkpoint file",
         "missing": "does not exist"}


@pytest.mark.parametrize("entry", ["fit --ckpt_path", "test --ckpt_path", "merge-lora", "init_from"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_damaged_checkpoint_is_one_line(made, tmp_path, monkeypatch, capsys, kind, entry):
    monkeypatch.chdir(tmp_path)
    path = damaged(made, tmp_path, kind)
    if entry == "merge-lora":
        code = main(["merge-lora", "--ckpt", str(path), "--out", str(tmp_path / "m.ckpt")])
        line = one_line_error(capsys, code, "lemon-pl merge-lora: error:")
    elif entry == "init_from":
        code = main(["fit", *common(made["root"], tmp_path, "finetune.yaml", "kdv"), *FT,
                     "--model.init_args.init_from", str(path)])
        line = one_line_error(capsys, code)
    else:
        code = main([entry.split()[0], *pretrain_args(made, tmp_path), "--ckpt_path", str(path)])
        line = one_line_error(capsys, code)
    assert str(path) in line and KINDS[kind] in line, line


# 3. merge-lora onto the wrong base -------------------------------------------------------------------
def test_adapters_merge_onto_their_own_base_and_refuse_a_changed_one(made, tmp_path, monkeypatch, capsys):
    b = tmp_path / "B"
    b.mkdir()
    other_base(made, b / "base.ckpt")  # same relative path, same shapes, other weights
    monkeypatch.chdir(b)
    run("merge-lora", "--ckpt", str(made["adapter"]), "--out", str(b / "merged.ckpt"))
    want, got = net_of(made["merged"]), net_of(b / "merged.ckpt")
    assert want.keys() == got.keys() and all(torch.equal(want[k], got[k]) for k in want)

    # evaluating the adapters on top of B's base (init_from base.ckpt, relative) is refused
    line = one_line_error(capsys, main(["test", *made["ft"], "--ckpt_path", str(made["adapter"])]))
    assert f"trained on the base {made['base']}" in line and f"init_from {b / 'base.ckpt'}" in line

    # A's base replaced by another same-shaped checkpoint: refused by merge-lora and test --ckpt_path
    saved = made["base"].read_bytes()
    try:
        other_base(made, made["base"])
        line = one_line_error(capsys, main(["merge-lora", "--ckpt", str(made["adapter"]), "--out",
                                            str(tmp_path / "m2.ckpt")]), "lemon-pl merge-lora: error:")
        assert str(made["adapter"]) in line and str(made["base"]) in line and "fingerprint differs" in line
        assert not (tmp_path / "m2.ckpt").exists()
        monkeypatch.chdir(made["A"])
        line = one_line_error(capsys, main(["test", *made["ft"], "--ckpt_path", str(made["adapter"])]))
        assert str(made["base"]) in line and "fingerprint differs" in line

        # A's base gone (a moved run): init_from as given is used only when it holds the very weights
        made["base"].unlink()
        c = tmp_path / "C"
        c.mkdir()
        (c / "base.ckpt").write_bytes(saved)
        monkeypatch.chdir(c)
        run("merge-lora", "--ckpt", str(made["adapter"]), "--out", str(c / "merged.ckpt"))
        assert all(torch.equal(v, net_of(c / "merged.ckpt")[k]) for k, v in want.items())
        monkeypatch.chdir(b)
        line = one_line_error(capsys, main(["merge-lora", "--ckpt", str(made["adapter"]), "--out",
                                            str(tmp_path / "m3.ckpt")]), "lemon-pl merge-lora: error:")
        assert f"trained on the base {made['base']}, which does not exist; base.ckpt" in line
    finally:
        made["base"].write_bytes(saved)


def test_adapter_checkpoint_records_its_base(made):
    from lemon_pl.core.checkpointing import BASE_FINGERPRINT_KEY, BASE_PATH_KEY, load_net_state, state_fingerprint

    raw = torch.load(made["adapter"], map_location="cpu", weights_only=False)
    assert raw["hyper_parameters"]["init_from"] == "base.ckpt"  # as given
    assert raw[BASE_PATH_KEY] == str(made["base"]) and Path(raw[BASE_PATH_KEY]).is_absolute()
    assert raw[BASE_FINGERPRINT_KEY] == state_fingerprint(load_net_state(made["base"]))


def test_lora_module_refuses_adapters_of_another_base(tmp_path):
    from lemon_pl.core.errors import CheckpointMismatchError
    from lemon_pl.operators.finetune import FinetuneModule
    from tests.operators.test_finetune import nets, save_plain_checkpoint

    base, other = nets()["deeponet"], nets()["deeponet"]
    for p in other.parameters():
        p.data.add_(1.0)
    save_plain_checkpoint(base, tmp_path / "base.ckpt")
    save_plain_checkpoint(other, tmp_path / "other.ckpt")
    trained = FinetuneModule(nets()["deeponet"], init_from=str(tmp_path / "base.ckpt"), mode="lora", lora_rank=2)
    ckpt = {"state_dict": {"net." + k: v for k, v in trained.net.state_dict().items()}, "hyper_parameters": {}}
    trained.on_save_checkpoint(ckpt)
    FinetuneModule(nets()["deeponet"], init_from=str(tmp_path / "base.ckpt"), mode="lora", lora_rank=2
                   ).on_load_checkpoint(dict(ckpt))  # its own base: fine
    wrong = FinetuneModule(nets()["deeponet"], init_from=str(tmp_path / "other.ckpt"), mode="lora", lora_rank=2)
    with pytest.raises(CheckpointMismatchError, match="trained on the base .*base.ckpt, but init_from .*other.ckpt"):
        wrong.on_load_checkpoint(dict(ckpt))
    none = FinetuneModule(nets()["deeponet"], mode="lora", lora_rank=2)  # a random base
    with pytest.raises(CheckpointMismatchError, match="no base was loaded: set --model.init_args.init_from"):
        none.on_load_checkpoint(dict(ckpt))


# 4. merge-lora --out that cannot be written ----------------------------------------------------------
@pytest.mark.parametrize("where", ["directory", "missing folder", "under a file", "read-only folder", "same as --ckpt"])
def test_unwritable_merge_out_is_one_line(made, tmp_path, capsys, where):
    adapter_bytes = made["adapter"].read_bytes()
    if where == "directory":
        out = tmp_path
    elif where == "missing folder":
        out = tmp_path / "nowhere/merged.ckpt"
    elif where == "under a file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file/merged.ckpt"
    elif where == "read-only folder":
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        out = ro / "merged.ckpt"
        if os.access(ro, os.W_OK):  # root writes anywhere it may: use a folder even root cannot write
            out = Path("/sys/merged.ckpt")
            if not Path("/sys").is_dir():
                pytest.skip("no folder this user cannot write")
    else:
        out = made["adapter"]
    line = one_line_error(capsys, main(["merge-lora", "--ckpt", str(made["adapter"]), "--out", str(out)]),
                          "lemon-pl merge-lora: error:")
    assert str(out) in line or where == "same as --ckpt"
    assert made["adapter"].read_bytes() == adapter_bytes
    assert not (tmp_path / "nowhere").exists()
    if where == "read-only folder":
        assert not out.exists()


def test_merge_of_a_non_lora_checkpoint_is_refused(made, tmp_path, capsys):
    code = main(["merge-lora", "--ckpt", str(made["base"]), "--out", str(tmp_path / "m.ckpt")])
    assert "is not a LoRA fine-tuning checkpoint" in one_line_error(capsys, code, "lemon-pl merge-lora: error:")


# 5. disk full while saving a checkpoint ----------------------------------------------------------------
def test_disk_full_while_saving_is_one_line_and_keeps_the_previous_checkpoint(made, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    real_fsync = os.fsync
    last = tmp_path / "pretrain/version_0/checkpoints/last.ckpt"
    previous = {}

    def fsync(fd):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if ".last.ckpt.tmp-" in target and last.exists():  # the second save of last.ckpt: the disk is full
            previous["bytes"] = last.read_bytes()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    code = main(["fit", *common(made["root"], tmp_path, "pretrain.yaml"), "--trainer.max_epochs", "2",
                 "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"])
    line = one_line_error(capsys, code)
    assert line == f"lemon-pl: error: could not write {last}: No space left on device; the previous last.ckpt is intact"
    assert last.read_bytes() == previous["bytes"]
    from lemon_pl.core.checkpointing import load_checkpoint

    assert load_checkpoint(last)["global_step"] == 2  # the state after the first epoch
    assert not [p.name for p in last.parent.iterdir() if ".tmp-" in p.name]


def test_write_error_message(tmp_path, monkeypatch):
    from lemon_pl.core.checkpointing import atomic_write
    from lemon_pl.core.errors import CheckpointWriteError

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointWriteError) as err:
        atomic_write(tmp_path / "new.json", "{}")
    assert str(err.value) == f"could not write {tmp_path / 'new.json'}: No space left on device; nothing was written"
    assert err.value.errno == errno.ENOSPC and not list(tmp_path.iterdir())


# 6. stale temporary files of killed writes ----------------------------------------------------------------
def test_stale_temporary_files_of_dead_processes_are_removed(tmp_path):
    from lemon_pl.core import checkpointing

    host = getattr(checkpointing, "_HOST", "localhost")  # the writer's name for this host
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead, alive = child.pid, os.getppid()
    names = {"dead": f".last.ckpt.tmp-{dead}", "dead_here": f".last.ckpt.tmp-{dead}@{host}",
             "alive": f".last.ckpt.tmp-{alive}", "other_host": f".last.ckpt.tmp-{dead}@some-other-node",
             "other_target": f".best.ckpt.tmp-{dead}", "not_ours": ".last.ckpt.tmp-backup"}
    for name in names.values():
        (tmp_path / name).write_bytes(b"partial")
    checkpointing.AtomicCheckpointIO().save_checkpoint({"a": torch.ones(2)}, tmp_path / "last.ckpt")
    left = {p.name for p in tmp_path.iterdir()}
    assert names["dead"] not in left and names["dead_here"] not in left
    assert {names[k] for k in ("alive", "other_host", "other_target", "not_ours")} | {"last.ckpt"} == left
