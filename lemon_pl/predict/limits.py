"""The documented range of every number ``lemon-pl predict`` takes, and the work it may cause.

Each flag is checked against its range before anything is loaded; a value outside it (NaN,
infinite, negative, zero where it must be positive, huge) is one ``lemon-pl predict: error:`` line
naming the flag, exit 2. ``--help`` shows the same ranges.

==========================  ==========================================================================
``--t_final``               1e-3 .. 1e3 (physical time; c_t = 2/t_final then lies in 2e-3 .. 2e3);
                            a support file's horizon too
``--seed``                  0 .. 2^63 - 1
``--num-ics``               1 .. 100000, and the whole request within the memory limit below
``--steps``                 0 .. 10000
``--lr``                    a number in (0, 10]
``--adapt-operator``        0 .. 2^31 - 1, and an operator of the data-engine file
``--support-size``          1 .. 1024; a support file holding more trajectories needs it
``--params K=V``            a continuous parameter within a factor 100 of its family's centre q_c
                            (q_c/100 .. 100 q_c), a fixed-range one within its range, a discrete one
                            one of its choices (``lemon_pl.data.params.Param.accepted_range``)
``--equation/--equations``  at most 256 equations; an ``--equations`` file at most 1 MiB
memory                      the estimate of a request (predictions x frames x grid, the solvers'
                            solutions, support trajectories) at most min(8 GiB, half the memory
                            available), checked before the initial conditions are allocated
reference solvers           120 s in all; past that a prediction has no reference (a note says so)
==========================  ==========================================================================
"""

from __future__ import annotations

import math

from lemon_pl.core.resources import available_memory, format_bytes

T_FINAL = (1e-3, 1e3)
SEED = (0, 2**63 - 1)
NUM_ICS = (1, 100_000)
STEPS = (0, 10_000)
LR_MAX = 10.0
ADAPT_OPERATOR = (0, 2**31 - 1)
SUPPORT_SIZE = (1, 1024)
MAX_EQUATIONS = 256
MAX_EQUATIONS_BYTES = 1024 * 1024
#: the memory a request may need at most (bytes); lowered to half the available memory
MEMORY_CAP = 8 * 1024**3
#: seconds the reference solvers of one ``lemon-pl predict`` may take in all
SOLVER_SECONDS = 120.0


class LimitError(ValueError):
    """A number outside its documented range (one line naming the flag)."""


def check_int(flag: str, value, bounds: tuple[int, int]) -> int | None:
    """``value`` (None passes) within ``bounds`` (inclusive), or one :class:`LimitError` line."""
    if value is None:
        return None
    lo, hi = bounds
    if not lo <= int(value) <= hi:
        raise LimitError(f"{flag} must be an integer in {lo} .. {hi}, got {_short(value)}")
    return int(value)


def check_float(flag: str, value, low: float, high: float, low_open: bool = False) -> float | None:
    """``value`` (None passes) finite within ``low .. high`` (``(low, high]`` when ``low_open``)."""
    if value is None:
        return None
    v = float(value)
    ok = math.isfinite(v) and (low < v if low_open else low <= v) and v <= high
    if not ok:
        span = f"({low:g}, {high:g}]" if low_open else f"{low:g} .. {high:g}"
        raise LimitError(f"{flag} must be a number in {span}, got {_short(value)}")
    return v


def check_t_final(value, where: str = "--t_final") -> float | None:
    """A horizon within :data:`T_FINAL` (``where`` names the flag or file it comes from)."""
    if value is None:
        return None
    v = float(value)
    if not (math.isfinite(v) and T_FINAL[0] <= v <= T_FINAL[1]):
        raise LimitError(f"{where} must be a physical time in {T_FINAL[0]:g} .. {T_FINAL[1]:g}, got {_short(value)}")
    return v


def _short(value) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def memory_limit() -> tuple[int, str]:
    """(bytes, how it was set): :data:`MEMORY_CAP`, or half the available memory when that is less."""
    avail = available_memory()
    if avail is not None and avail // 2 < MEMORY_CAP:
        return avail // 2, f"half the {format_bytes(avail)} of memory available"
    return MEMORY_CAP, f"lemon-pl predict's cap of {format_bytes(MEMORY_CAP)}"
