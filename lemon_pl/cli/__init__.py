"""The ``lemon-pl`` console script: tools first, then the Lightning CLI.

Non-training tools are dispatched first (``lemon-pl generate|merge-lora|experiment ...``);
everything else goes to the Lightning CLI (``lemon-pl fit|validate|test|predict --config ...``,
``lemon_pl.cli.lightning``). ``lemon-pl predict`` without ``--config`` is the prediction tool
(``lemon_pl.cli.predict``: ``--ckpt_path CKPT --equation EQ ...``). Each tool module exposes
``main(argv) -> exit code``.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Sequence

#: tool name -> (module with ``main(argv)``, one-line description)
TOOLS: dict[str, tuple[str, str]] = {
    "generate": ("lemon_pl.cli.generate", "generate operator-family datasets (HDF5)"),
    "merge-lora": ("lemon_pl.cli.merge_lora", "fold LoRA adapters into the weights of a fine-tuning checkpoint"),
    "multilevel": ("lemon_pl.cli.multilevel", "multi-level fine-tuning tools: `multilevel plan` splits a budget"),
    "experiment": ("lemon_pl.cli.experiment",
                   "run an experiment (scaling, init-comparison, finetune, zero-shot, hyper-lr-pinn, multilevel), write its report"),
}


def _usage() -> str:
    lines = ["usage: lemon-pl <command> [options]", "", "tools:"]
    lines += [f"  {name:10s} {desc}" for name, (_, desc) in TOOLS.items()]
    lines += [f"  {'predict':10s} predict a PDE you write down: --ckpt_path CKPT --equation 'u_t + 0.5*u_x = 0' --u0 ..."]
    lines += ["", "training (Lightning CLI):", "  fit | validate | test | predict  --config configs/<stage>.yaml"]
    return "\n".join(lines)


def _lightning_predict(args: Sequence[str]) -> bool:
    """``predict`` with a config is Lightning's predict over a data split; without one it is the tool."""
    return any(a in ("--config", "-c", "--print_config") or a.startswith(("--config=", "--print_config="))
               for a in args)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in TOOLS or (argv[0] == "predict" and not _lightning_predict(argv[1:])):
        tool = importlib.import_module(TOOLS[argv[0]][0] if argv[0] in TOOLS else "lemon_pl.cli.predict")
        try:
            return tool.main(argv[1:])
        except BrokenPipeError:  # output piped into `head` and friends: stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    from lemon_pl.cli.lightning import run_lightning_cli

    return run_lightning_cli(argv)
