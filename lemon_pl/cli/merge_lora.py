"""``lemon-pl merge-lora``: fold the LoRA adapters of a fine-tuning checkpoint into its weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from lemon_pl.core.resources import cannot_write_in


def check_out(out: Path, ckpt: Path) -> None:
    """Refuse an ``--out`` that cannot be written before anything is loaded or written."""
    if out.is_dir():
        raise ValueError(f"--out {out} is a directory; give the file to write, e.g. {out / 'merged.ckpt'}")
    folder = out.parent
    if not folder.exists():
        raise ValueError(f"--out {out}: the folder {folder} does not exist")
    if not folder.is_dir():
        raise ValueError(f"--out {out}: {folder} is not a folder")
    why = cannot_write_in(folder)
    if why is not None:
        raise ValueError(f"--out {out}: the folder {folder} is not writable ({why})")
    if out.resolve() == ckpt.resolve():
        raise ValueError("--out must differ from --ckpt (the adapter checkpoint is kept)")


def merge_lora(ckpt: str | Path, out: str | Path) -> Path:
    """Fold LoRA adapters of a fine-tuning checkpoint into the weights; returns the output path.

    The checkpoint is loaded as data (:func:`lemon_pl.core.checkpointing.load_checkpoint`); an
    adapter-only checkpoint is merged onto the base it was trained on (its recorded absolute path,
    refused when that file's weights have changed)."""
    from lemon_pl.core.checkpointing import atomic_torch_save, load_checkpoint, net_state_of

    ckpt, out = Path(ckpt), Path(out)
    check_out(out, ckpt)
    raw = load_checkpoint(ckpt)
    hp = dict(raw.get("hyper_parameters") or {})
    if hp.get("mode") != "lora":
        raise ValueError(f"{ckpt} is not a LoRA fine-tuning checkpoint (mode={hp.get('mode')!r})")
    state = net_state_of(raw, ckpt)
    hp.update(mode="full", init_from=None)
    merged = {
        "state_dict": {"net." + k: v for k, v in state.items()},
        "hyper_parameters": hp,
        "lemon_merged_from": str(ckpt),
        "pytorch-lightning_version": raw.get("pytorch-lightning_version"),
    }
    atomic_torch_save(merged, out)
    return out


def main(argv: Sequence[str]) -> int:
    from lemon_pl.core.errors import CheckpointWriteError

    p = argparse.ArgumentParser(prog="lemon-pl merge-lora",
                                description="Fold LoRA adapters into the base weights of a fine-tuning checkpoint.")
    p.add_argument("--ckpt", required=True, help="LoRA fine-tuning checkpoint (adapter-only or full)")
    p.add_argument("--out", required=True, help="merged checkpoint to write (mode: full, no adapters)")
    args = p.parse_args(list(argv))
    try:
        path = merge_lora(args.ckpt, args.out)
    except (ValueError, FileNotFoundError, RuntimeError, KeyError, CheckpointWriteError) as err:
        print(f"lemon-pl merge-lora: error: {err}", file=sys.stderr)
        return 2
    print(f"merged checkpoint written to {path}")
    return 0
