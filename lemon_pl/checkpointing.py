"""Checkpoints: the one atomic writer, loading and matching network weights, W&B run ids.

``atomic_write`` is the only way lemon-pl writes a file that must never be half-written
(checkpoints, merged LoRA checkpoints, experiment records). ``load_net_state`` reads plain
network weights from a checkpoint of any stage (LoRA adapters merged onto their base) and
``check_state_match`` is the one comparison of a checkpoint's weights with a network's.

``AtomicCheckpointIO`` writes each checkpoint to a temporary file in the target folder,
flushes it to disk and renames it over the target (``os.replace`` is atomic on POSIX), so a
job killed while saving leaves the previous ``last.ckpt`` intact.

``RunIdentity`` stores the W&B run id in every checkpoint; ``LemonCLI`` reads it back when a
run is resumed with ``--ckpt_path`` so the resumed job continues the same W&B run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any, Callable

import torch
from lightning.pytorch import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

WANDB_ID_KEY = "lemon_wandb_run_id"
#: set in checkpoints that hold only LoRA adapters (their base is ``hyper_parameters.init_from``)
ADAPTERS_ONLY_KEY = "lemon_adapters_only"


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` so that it is either complete or untouched: the bytes (text is UTF-8
    encoded, a callable writes into the open file) go to a temporary file in the same folder,
    which is flushed to disk and renamed over the target (``os.replace`` is atomic on POSIX)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through :func:`atomic_write`."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with every checkpoint written by :func:`atomic_torch_save`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        atomic_torch_save(checkpoint, path)


class RunIdentity(Callback):
    """Records the W&B run id in checkpoints (so a resume continues the same run)."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for lg in trainer.loggers:
            if isinstance(lg, WandbLogger) and lg.version:
                checkpoint[WANDB_ID_KEY] = lg.version


def wandb_run_id(ckpt_path: str | os.PathLike) -> str | None:
    """The W&B run id stored in a checkpoint, if any."""
    try:
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False, mmap=True)
    except Exception:  # noqa: BLE001 - unreadable checkpoints are reported later by Lightning
        return None
    return ckpt.get(WANDB_ID_KEY)


def check_state_match(own: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], net_name: str,
                      source: str = "the checkpoint") -> None:
    """Raise one clear ``CheckpointMismatchError`` unless ``theirs`` has exactly the keys and
    shapes of ``own`` (both plain network state dicts)."""
    missing = sorted(set(own) - set(theirs))
    unexpected = sorted(set(theirs) - set(own))
    shapes = [f"{k} has shape {tuple(theirs[k].shape)}, the model {tuple(own[k].shape)}"
              for k in own.keys() & theirs.keys() if own[k].shape != theirs[k].shape]
    if not (missing or unexpected or shapes):
        return
    from lemon_pl.errors import CheckpointMismatchError

    detail = "; ".join(filter(None, [
        f"{len(missing)} missing weights {missing[:3]}{'...' if len(missing) > 3 else ''}" if missing else "",
        f"{len(unexpected)} unexpected weights {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}"
        if unexpected else "",
        shapes[0] if shapes else ""]))
    raise CheckpointMismatchError(
        f"{source} is from a different model: it does not match the configured {net_name} ({detail}); "
        "evaluate or resume with the training run's config.yaml or the same model overlay")


def net_state(state_dict: dict[str, torch.Tensor], prefix: str = "net.") -> dict[str, torch.Tensor]:
    """The network's part of a LightningModule state dict, without the prefix."""
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_net_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Plain network weights (no ``net.`` prefix, LoRA merged) from any lemon-pl checkpoint."""
    from lemon_pl.adaptation.lora import is_adapter, lora_state_dict, merge_state
    from lemon_pl.errors import CheckpointMismatchError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise CheckpointMismatchError(f"{path} is not a readable checkpoint ({err})") from None
    state = net_state(ckpt.get("state_dict", {}))
    hp = ckpt.get("hyper_parameters", {})
    if ckpt.get(ADAPTERS_ONLY_KEY):
        base = hp.get("init_from")
        if not base:
            raise CheckpointMismatchError(f"{path} holds LoRA adapters only and names no base checkpoint")
        return merge_state(load_net_state(base), lora_state_dict(state), hp["lora_alpha"] / hp["lora_rank"])
    if any(is_adapter(k) for k in state):
        return merge_state(state, lora_state_dict(state), hp["lora_alpha"] / hp["lora_rank"])
    if not state:
        raise CheckpointMismatchError(f"{path} holds no network weights (keys starting with 'net.')")
    return state


def load_into(net: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strictly load plain weights ``state`` into ``net`` with one clear error on any mismatch."""
    check_state_match(net.state_dict(), state, type(net).__name__, f"checkpoint {source}")
    net.load_state_dict(state)
