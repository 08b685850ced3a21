"""Checkpoints: the one atomic writer, loading and matching network weights, W&B run ids.

``atomic_write`` is the only way lemon-pl writes a file that must never be half-written
(checkpoints, merged LoRA checkpoints, experiment records). ``load_net_state`` reads plain
network weights from a checkpoint of any stage (LoRA adapters merged onto their base) and
``check_state_match`` is the one comparison of a checkpoint's weights with a network's.

``AtomicCheckpointIO`` writes each checkpoint to a temporary file in the target folder,
flushes it to disk and renames it over the target (``os.replace`` is atomic on POSIX), so a
job killed while saving leaves the previous ``last.ckpt`` intact.

``load_checkpoint`` is the only way lemon-pl reads a checkpoint (``init_from``, ``--ckpt_path``
through ``AtomicCheckpointIO.load_checkpoint``, ``merge-lora``, W&B run ids): it unpickles with
``weights_only=True`` and allows only the plain data types of :data:`SAFE_GLOBALS`, so loading a
checkpoint never runs code from it. A file that is not a readable checkpoint, or one that needs
anything else to load, is refused with one ``CheckpointMismatchError`` line.

``RunIdentity`` stores the W&B run id in every checkpoint; ``LemonCLI`` reads it back when a
run is resumed with ``--ckpt_path`` so the resumed job continues the same W&B run.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import socket
from pathlib import Path
from typing import IO, Any, Callable, Mapping

import torch
from lightning.pytorch import Callback
from lightning.pytorch.plugins.io import TorchCheckpointIO

WANDB_ID_KEY = "lemon_wandb_run_id"
#: set in checkpoints that hold only LoRA adapters (their base is ``BASE_PATH_KEY``)
ADAPTERS_ONLY_KEY = "lemon_adapters_only"
#: adapter-only checkpoints: the absolute path of the base checkpoint the adapters were trained on
BASE_PATH_KEY = "lemon_base_checkpoint"
#: adapter-only checkpoints: :func:`state_fingerprint` of that base's network weights
BASE_FINGERPRINT_KEY = "lemon_base_sha256"

_HOST = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname()) or "localhost"


def _safe_globals() -> list:
    """What a lemon-pl checkpoint may need beyond torch's own ``weights_only`` allow-list
    (tensors, storages, dtypes, ``OrderedDict``, ``torch.Size``, builtins): values, none of which
    runs code when it is rebuilt.

    * ``pathlib`` paths: ``init_from``, a data ``root`` or any path passed as a ``Path`` from
      Python ends up in ``hyper_parameters`` as one;
    * numpy scalars (``scalar`` plus numeric dtypes only, no object/string/void dtype): a
      hyper-parameter computed with numpy (``np.float64`` learning rates of a sweep).
    """
    import pathlib

    import numpy as np

    out: list = [pathlib.PosixPath, pathlib.PurePosixPath, pathlib.WindowsPath, pathlib.PureWindowsPath, np.dtype]
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    out += [scalar, (scalar, "numpy.core.multiarray.scalar")]  # numpy 1 names it numpy.core
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25: the dtype classes a scalar's dtype is rebuilt as
    for name in sorted(dir(dtypes) if dtypes is not None else []):
        cls = getattr(dtypes, name)
        kind = getattr(cls, "type", object)
        if (name.endswith("DType") and isinstance(cls, type) and cls not in out and not issubclass(kind, np.timedelta64)
                and issubclass(kind, (np.bool_, np.integer, np.floating, np.complexfloating))):
            out.append(cls)
    return out


#: the globals :func:`load_checkpoint` allows beyond torch's defaults (see :func:`_safe_globals`)
SAFE_GLOBALS = _safe_globals()

_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a"  # torch.save(_use_new_zipfile_serialization=False): pickled magic number
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu", mmap: bool = False) -> dict[str, Any]:
    """Load a checkpoint as data: ``torch.load(weights_only=True)`` with only :data:`SAFE_GLOBALS`
    allowed beyond torch's defaults, so nothing in the file can run code.

    Raises ``FileNotFoundError`` for a missing path and a one-line ``CheckpointMismatchError``
    for a directory, a file that is not a readable checkpoint (empty, truncated, corrupted, another
    format) and a checkpoint that needs anything else to load (refused: it could run code)."""
    from lemon_pl.core.errors import CheckpointMismatchError

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointMismatchError(f"{path} is a directory, not a checkpoint file")
    if not path.is_file():  # a FIFO or a device would block or never end
        raise CheckpointMismatchError(f"{path} is not a regular file, not a checkpoint file")

    def unreadable(reason: str) -> CheckpointMismatchError:
        return CheckpointMismatchError(f"{path} is not a readable checkpoint ({reason})")

    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as err:
        raise unreadable(err.strerror or str(err)) from None
    if not head:
        raise unreadable("the file is empty")
    if head.startswith(_HDF5_MAGIC):
        raise unreadable("it is an HDF5 file, not a PyTorch checkpoint")
    zipped = head.startswith(_ZIP_MAGIC)
    if not zipped and not head.startswith(_LEGACY_MAGIC):
        raise unreadable(f"not a PyTorch checkpoint: unknown format starting with {head[:4]!r}")
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            ckpt = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap and zipped)
    except pickle.UnpicklingError as err:
        msg = str(err)
        detail = _first_line(msg.split("WeightsUnpickler error:", 1)[-1])
        found = re.search(r"GLOBAL (\S+) (?:was not an allowed global|whose module)", msg)
        if found or re.match(r"(Can only (create|build)|Trying to call reduce)", detail):
            needs = found.group(1) if found else f"more than plain data ({detail})"
            raise CheckpointMismatchError(f"{path} is not a plain lemon-pl checkpoint: it needs {needs} to load "
                                          "(refused: loading it could run code)") from None
        raise unreadable(f"corrupted: {detail}") from None
    except EOFError:
        raise unreadable("it ends too early: truncated") from None
    except (RuntimeError, ValueError, KeyError, IndexError, OSError, TypeError, AttributeError,
            NotImplementedError, MemoryError) as err:
        reason = _first_line(str(err)) or type(err).__name__
        raise unreadable(f"truncated or corrupted: {reason}" if "PytorchStreamReader" in reason else reason) from None
    if not isinstance(ckpt, dict):
        raise CheckpointMismatchError(f"{path} is not a lemon-pl checkpoint (it holds a {type(ckpt).__name__}, "
                                      "not a checkpoint dictionary)")
    return ckpt


def _first_line(msg: str, limit: int = 200) -> str:
    """The first line of an error message, its first sentence when long (torch's are verbose)."""
    line = msg.strip().splitlines()[0].strip() if msg.strip() else ""
    if len(line) > limit and ". " in line:
        line = line.split(". ", 1)[0]
    return line[:limit]

def _write_synced(tmp: Path, data: bytes | str | Callable[[IO[bytes]], None]) -> None:
    """``data`` (text as UTF-8, or a callable writing into the open file) into ``tmp``, flushed to disk."""
    with open(tmp, "wb") as fh:
        if callable(data):
            data(fh)
        else:
            fh.write(data.encode() if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` so that it is either complete or untouched: the bytes (text is UTF-8
    encoded, a callable writes into the open file) go to a temporary file in the same folder,
    which is flushed to disk and renamed over the target (``os.replace`` is atomic on POSIX).

    The temporary file is ``.<name>.tmp-<pid>@<host>``; temporary files of the same target left
    by dead processes of this host (a killed job) are removed first. Any ``OSError`` (disk full,
    read-only folder, ...) becomes one :class:`~lemon_pl.core.errors.CheckpointWriteError` that says
    the previous file is intact."""
    path = Path(path)
    existed = path.is_file()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}@{_HOST}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        _write_synced(tmp, data)
        os.replace(tmp, path)
    except Exception as err:  # noqa: BLE001 - only write failures are translated, the rest re-raised
        cause = os_error_cause(err)
        if cause is None:
            raise
        from lemon_pl.core.errors import CheckpointWriteError

        reason = cause.strerror or str(cause) or type(cause).__name__
        kept = f"the previous {path.name} is intact" if existed else "nothing was written"
        failure = CheckpointWriteError(f"could not write {path}: {reason}; {kept}")
        failure.errno = cause.errno
        raise failure from None
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return path


def atomic_write_many(files: Mapping[str | os.PathLike, bytes | str | Callable[[IO[bytes]], None]]) -> list[Path]:
    """:func:`atomic_write` for a set of files that belong together (a plan's overlays and its
    ``plan.json``): all of them are first written to temporary files and flushed to disk, and only
    when every one is complete are they renamed over their targets, in the order given (put the
    file that marks the set complete last). A failed write (disk full, read-only folder) raises
    one :class:`~lemon_pl.core.errors.CheckpointWriteError` line and changes none of the targets."""
    staged: list[tuple[Path, Path]] = []
    current, replaced = None, 0
    created: list[Path] = []  # folders made for the targets: removed again if nothing was written
    try:
        for target, data in files.items():
            current = Path(target)
            tmp = current.with_name(f".{current.name}.tmp-{os.getpid()}@{_HOST}")
            missing = [d for d in (current.parent, *current.parent.parents) if not d.exists()]
            current.parent.mkdir(parents=True, exist_ok=True)
            created += [d for d in missing if d not in created]
            remove_stale_temporaries(current)
            staged.append((tmp, current))
            _write_synced(tmp, data)
        for tmp, target in staged:
            current = target
            os.replace(tmp, target)
            replaced += 1
    except Exception as err:  # noqa: BLE001 - only write failures are translated, the rest re-raised
        cause = os_error_cause(err)
        if cause is None:
            raise
        from lemon_pl.core.errors import CheckpointWriteError

        reason = cause.strerror or str(cause) or type(cause).__name__
        kept = "nothing was changed" if replaced == 0 else f"{replaced} of {len(staged)} files were replaced"
        if replaced == 0:
            for tmp, _ in staged:
                try:
                    tmp.unlink(missing_ok=True)
                except OSError:
                    pass
            for folder in created:  # deepest first
                try:
                    folder.rmdir()
                except OSError:
                    pass
        failure = CheckpointWriteError(f"could not write {current}: {reason}; {kept}")
        failure.errno = cause.errno
        raise failure from None
    finally:
        for tmp, _ in staged:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
    return [target for _, target in staged]


def os_error_cause(err: BaseException) -> OSError | None:
    """The ``OSError`` behind ``err``, if any: ``err`` itself, or one of its causes (torch's
    writer reports a failed ``write`` as a ``RuntimeError`` raised while handling it)."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, OSError):
            return err
        err, seen = err.__cause__ or err.__context__, seen + 1
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or not a pid we can ask about): keep its file
    return True


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove ``.<name>.tmp-<pid>[@<host>]`` files of ``path`` left by dead processes of this host
    (a job killed while writing); files of live processes and of other hosts are kept."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.tmp-(\d+)(?:@(.+))?")
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if not m or (m[2] is not None and m[2] != _HOST):
            continue
        pid = int(m[1])
        if pid == os.getpid() or _pid_alive(pid):
            continue
        try:
            entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through :func:`atomic_write`."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with every checkpoint written by :func:`atomic_torch_save`."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        atomic_torch_save(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        """Lightning's ``--ckpt_path`` loading, through the safe :func:`load_checkpoint`
        (``weights_only`` is always true; tensors are loaded on the CPU unless ``map_location``
        says otherwise, Lightning moves them to the model's device)."""
        return load_checkpoint(path, map_location="cpu" if map_location is None else map_location)


class RunIdentity(Callback):
    """Records the W&B run id in checkpoints (so a resume continues the same run)."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        from lightning.pytorch.loggers import WandbLogger

        for lg in trainer.loggers:
            if isinstance(lg, WandbLogger) and lg.version:
                checkpoint[WANDB_ID_KEY] = lg.version


def wandb_run_id(ckpt_path: str | os.PathLike) -> str | None:
    """The W&B run id stored in a checkpoint, if any."""
    if not Path(ckpt_path).is_file():
        return None  # "last", "best", a missing path: Lightning reports or resolves it
    return load_checkpoint(ckpt_path, mmap=True).get(WANDB_ID_KEY)


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
    from lemon_pl.core.errors import CheckpointMismatchError

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
    """Plain network weights (no ``net.`` prefix, LoRA merged) from any lemon-pl checkpoint.

    An adapter-only LoRA checkpoint is merged onto the base it was trained on: the absolute path
    it stores, refused in one line when that file's weights are no longer the ones the adapters
    were trained on (their fingerprint differs)."""
    path = Path(path)
    return net_state_of(load_checkpoint(path), path)


def net_state_of(ckpt: dict[str, Any], path: str | os.PathLike,
                 _seen: frozenset[Path] = frozenset()) -> dict[str, torch.Tensor]:
    """:func:`load_net_state` of a checkpoint already loaded from ``path``."""
    from lemon_pl.core.adapters import is_adapter, lora_state_dict, merge_state
    from lemon_pl.core.errors import CheckpointMismatchError

    path = Path(path)
    state = net_state(ckpt.get("state_dict") or {})
    hp = ckpt.get("hyper_parameters") or {}
    if ckpt.get(ADAPTERS_ONLY_KEY):
        expected = ckpt.get(BASE_FINGERPRINT_KEY)
        base = ckpt.get(BASE_PATH_KEY) or hp.get("init_from")  # older checkpoints: init_from as given
        if not base:
            raise CheckpointMismatchError(f"{path} holds LoRA adapters only and names no base checkpoint")
        base = Path(base)
        if not base.exists() and expected and hp.get("init_from") and Path(hp["init_from"]).exists():
            base = Path(hp["init_from"])  # moved runs: init_from as given, accepted only if the fingerprint matches
        seen = _seen | {path.resolve()}
        if base.resolve() in seen:
            raise CheckpointMismatchError(f"{path} holds LoRA adapters whose base {base} is itself")
        if not base.exists():
            raise CheckpointMismatchError(
                f"{path} holds LoRA adapters only; their base checkpoint {base} does not exist")
        base_state = net_state_of(load_checkpoint(base), base, seen)
        if expected and state_fingerprint(base_state) != expected:
            stored = ckpt.get(BASE_PATH_KEY)
            if stored and Path(stored) != base:
                raise CheckpointMismatchError(
                    f"{path} holds LoRA adapters trained on the base {stored}, which does not exist; {base} "
                    "(its init_from as given) holds other weights (fingerprint differs)")
            raise CheckpointMismatchError(
                f"{path} holds LoRA adapters trained on another base: {base} no longer holds the weights they "
                "were trained on (fingerprint differs); restore that base checkpoint or fine-tune again")
        return merge_state(base_state, lora_state_dict(state), hp["lora_alpha"] / hp["lora_rank"])
    if any(is_adapter(k) for k in state):
        return merge_state(state, lora_state_dict(state), hp["lora_alpha"] / hp["lora_rank"])
    if not state:
        raise CheckpointMismatchError(f"{path} holds no network weights (keys starting with 'net.')")
    return state


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of plain network weights: sorted names, dtypes, shapes and tensor bytes."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_into(net: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Strictly load plain weights ``state`` into ``net`` with one clear error on any mismatch."""
    check_state_match(net.state_dict(), state, type(net).__name__, f"checkpoint {source}")
    net.load_state_dict(state)
