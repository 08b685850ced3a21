"""Shared pieces of the benchmark scripts: runner options and device resolution."""

from __future__ import annotations

import argparse
import sys


def add_runner_args(p: argparse.ArgumentParser, timeout: int) -> None:
    """Options every subprocess-per-row benchmark takes (threads, timeout, JSON output)."""
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = leave default)")
    p.add_argument("--timeout", type=int, default=timeout, help="per-process timeout in seconds")
    p.add_argument("--json", type=str, default=None, help="also write all results to this JSON file")
    p.add_argument("--_worker", type=str, default=None, help=argparse.SUPPRESS)


def resolve_device(device: str) -> str:
    """'auto' -> cuda if available else cpu; exits with a message if CUDA is asked for but absent."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        sys.exit("--device cuda requested but CUDA is not available")
    return device


def family_token_lengths() -> list[int]:
    """The equation length (prefix tokens) of each of the 19 families, at parameters drawn with
    seed 0: what a mixed pretraining batch pads to its longest member (11 to 33 tokens)."""
    import numpy as np

    from lemon_pl.data.families import get_family, list_families

    rng = np.random.default_rng(0)
    return [len(get_family(n).tokens(get_family(n).sample_params(rng))) for n in list_families()]
