"""An ``argparse`` parser whose errors are one line (plus one hint), for the ``lemon-pl`` tools.

argparse prints the whole usage block before ``error: ...``; for a tool run from scripts and
CI logs one line is easier to read and to grep::

    lemon-pl generate: error: unrecognized arguments: --nope
    see lemon-pl generate --help

The exit code stays 2 (argparse's own).
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn


class OneLineArgumentParser(argparse.ArgumentParser):
    """``ArgumentParser`` whose ``error()`` prints ``PROG: error: MESSAGE`` and a help hint."""

    def error(self, message: str) -> NoReturn:
        text = " ".join(str(message).split())  # argparse messages can wrap; keep one line
        self.exit(2, f"{self.prog}: error: {text}\nsee {self.prog} --help\n")


def usage_error(prog: str, message: str) -> int:
    """Print ``PROG: error: MESSAGE`` (one line) on stderr and return the exit code 2."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


__all__ = ["OneLineArgumentParser", "usage_error"]
