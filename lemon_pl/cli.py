"""The ``lemon-pl`` console script.

Non-training tools are dispatched first (``lemon-pl generate ...``); everything else goes to
the Lightning CLI (``lemon-pl fit|validate|test|predict --config ...``).
"""

from __future__ import annotations

import sys
from typing import Callable, Sequence


def _generate(argv: Sequence[str]) -> int:
    from lemon_pl.data.generate import main

    return main(argv)


def _merge_lora(argv: Sequence[str]) -> int:
    from lemon_pl.tools import merge_lora_main

    return merge_lora_main(argv)


def _experiment(argv: Sequence[str]) -> int:
    from lemon_pl.experiments.cli import main

    return main(argv)


TOOLS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "generate": (_generate, "generate operator-family datasets (HDF5)"),
    "merge-lora": (_merge_lora, "fold LoRA adapters into the weights of a fine-tuning checkpoint"),
    "experiment": (_experiment, "run an experiment (scaling, init-comparison, finetune, zero-shot), write its report"),
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
        try:
            return TOOLS[argv[0]][0](argv[1:])
        except BrokenPipeError:  # output piped into `head` and friends: stop quietly
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    from lemon_pl.app import run_lightning_cli

    return run_lightning_cli(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
