"""``lemon-pl merge-lora``: fold the LoRA adapters of a fine-tuning checkpoint into its weights."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence


def merge_lora(ckpt: str | Path, out: str | Path) -> Path:
    """Fold LoRA adapters of a fine-tuning checkpoint into the weights; returns the output path."""
    import torch

    from lemon_pl.checkpointing import atomic_torch_save, load_net_state

    ckpt, out = Path(ckpt), Path(out)
    raw = torch.load(ckpt, map_location="cpu", weights_only=False)
    hp = dict(raw.get("hyper_parameters", {}))
    if hp.get("mode") != "lora":
        raise ValueError(f"{ckpt} is not a LoRA fine-tuning checkpoint (mode={hp.get('mode')!r})")
    state = load_net_state(ckpt)
    hp.update(mode="full", init_from=None)
    merged = {
        "state_dict": {"net." + k: v for k, v in state.items()},
        "hyper_parameters": hp,
        "lemon_merged_from": str(ckpt),
        "pytorch-lightning_version": raw.get("pytorch-lightning_version"),
    }
    if out.resolve() == ckpt.resolve():
        raise ValueError("--out must differ from --ckpt (the adapter checkpoint is kept)")
    atomic_torch_save(merged, out)
    return out


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="lemon-pl merge-lora",
                                description="Fold LoRA adapters into the base weights of a fine-tuning checkpoint.")
    p.add_argument("--ckpt", required=True, help="LoRA fine-tuning checkpoint (adapter-only or full)")
    p.add_argument("--out", required=True, help="merged checkpoint to write (mode: full, no adapters)")
    args = p.parse_args(list(argv))
    try:
        path = merge_lora(args.ckpt, args.out)
    except (ValueError, FileNotFoundError, RuntimeError, KeyError) as err:
        print(f"lemon-pl merge-lora: error: {err}", file=sys.stderr)
        return 2
    print(f"merged checkpoint written to {path}")
    return 0
