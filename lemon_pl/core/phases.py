"""``PhaseSchedule``: a run cut into consecutive phases, defined once.

Time-marching segments of a PINN, the levels of a multi-level curriculum and the task cycles of
a meta-learner all split a run (counted in optimiser steps or epochs) into phases of given
lengths. ``PhaseSchedule((3, 5, 2))`` has phases 0..2 covering units [0, 3), [3, 8), [8, 10);
units past the end belong to the last phase.
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class PhaseSchedule:
    """Phases of ``lengths`` units each (steps or epochs; a phase may have length 0)."""

    lengths: tuple[int, ...]

    def __init__(self, lengths: Sequence[int]) -> None:
        lengths = tuple(int(n) for n in lengths)
        if not lengths or any(n < 0 for n in lengths):
            raise ValueError(f"a phase schedule needs at least one phase and lengths >= 0, got {list(lengths)}")
        object.__setattr__(self, "lengths", lengths)

    @classmethod
    def even(cls, total: int, phases: int) -> "PhaseSchedule":
        """``phases`` near-equal phases over ``total`` units: unit s belongs to phase
        floor(s * phases / total) (so phase k starts at ceil(k * total / phases))."""
        if phases < 1:
            raise ValueError(f"phases must be >= 1, got {phases}")
        total = max(int(total), 1)
        starts = [-(-k * total // phases) for k in range(phases + 1)]
        return cls([b - a for a, b in zip(starts, starts[1:])])

    @property
    def total(self) -> int:
        return sum(self.lengths)

    def __len__(self) -> int:
        return len(self.lengths)

    def start(self, phase: int) -> int:
        """First unit of ``phase``."""
        return sum(self.lengths[:phase])

    def end(self, phase: int) -> int:
        """One past the last unit of ``phase``."""
        return self.start(phase) + self.lengths[phase]

    def phase_at(self, unit: int) -> int:
        """The phase unit ``unit`` belongs to (the last one past the end; empty phases are skipped)."""
        ends = list(itertools.accumulate(self.lengths))
        return min(bisect.bisect_right(ends, int(unit)), len(self.lengths) - 1)

    def progress(self, unit: int) -> tuple[int, int, int]:
        """``(phase, units done in it, its length)`` at ``unit``."""
        k = self.phase_at(unit)
        return k, int(unit) - self.start(k), self.lengths[k]

    def is_first(self, unit: int) -> bool:
        """``unit`` starts its phase."""
        k = self.phase_at(unit)
        return int(unit) == self.start(k)

    def is_last(self, unit: int) -> bool:
        """``unit`` ends its phase."""
        k = self.phase_at(unit)
        return int(unit) == self.end(k) - 1


__all__ = ["PhaseSchedule"]
