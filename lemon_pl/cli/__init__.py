"""The ``lemon-pl`` console script: tools first, then the Lightning CLI.

Non-training tools are dispatched first (``lemon-pl generate|merge-lora|experiment ...``);
everything else goes to the Lightning CLI (``lemon-pl fit|validate|test|predict --config ...``,
``lemon_pl.cli.lightning``). Each tool module exposes ``main(argv) -> exit code``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Sequence

#: tool name -> (module with ``main(argv)``, one-line description)
TOOLS: dict[str, tuple[str, str]] = {
    "generate": ("lemon_pl.data.generate", "generate operator-family datasets (HDF5)"),
    "merge-lora": ("lemon_pl.cli.merge_lora", "fold LoRA adapters into the weights of a fine-tuning checkpoint"),
    "multilevel": ("lemon_pl.multilevel.plan", "multi-level fine-tuning tools: `multilevel plan` splits a budget"),
    "experiment": ("lemon_pl.cli.experiment",
                   "run an experiment (scaling, init-comparison, finetune, zero-shot), write its report"),
}


def _usage() -> str:
    lines = ["usage: lemon-pl <command> [options]", "", "tools:"]
    lines += [f"  {name:10s} {desc}" for name, (_, desc) in TOOLS.items()]
    lines += ["", "training (Lightning CLI):", "  fit | validate | test | predict  --config configs/<stage>.yaml"]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in TOOLS:
        tool = importlib.import_module(TOOLS[argv[0]][0])
        try:
            return tool.main(argv[1:])
        except BrokenPipeError:  # output piped into `head` and friends: stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    from lemon_pl.cli.lightning import run_lightning_cli

    return run_lightning_cli(argv)
