import pytest

from lemon_pl.core.phases import PhaseSchedule


def level_at_epoch_by_loop(lengths, epoch):
    """The multi-level stage's original loop, the oracle of phase_at."""
    total = 0
    for level, n in enumerate(lengths):
        total += n
        if epoch < total:
            return level
    return len(lengths) - 1


@pytest.mark.parametrize("lengths", [(3,), (3, 5, 2), (0, 4, 0, 2), (1, 1, 1, 1), (0, 0, 5)])
def test_phase_at_matches_the_loop_it_replaces(lengths):
    s = PhaseSchedule(lengths)
    for unit in range(s.total + 3):
        assert s.phase_at(unit) == level_at_epoch_by_loop(lengths, unit)


def test_starts_ends_and_progress():
    s = PhaseSchedule((3, 5, 2))
    assert [s.start(k) for k in range(3)] == [0, 3, 8] and [s.end(k) for k in range(3)] == [3, 8, 10]
    assert s.progress(4) == (1, 1, 5)
    assert s.is_first(3) and not s.is_first(4) and s.is_last(7) and s.total == 10


@pytest.mark.parametrize("total,phases", [(11, 3), (10, 4), (7, 7), (5, 8), (1000, 5), (1, 1)])
def test_even_split_puts_unit_s_in_phase_s_times_phases_over_total(total, phases):
    """The time-marching PINN's rule (segment of step s = min(K - 1, s K // T)) is the oracle."""
    s = PhaseSchedule.even(total, phases)
    assert s.total == max(total, 1) and len(s) == phases
    for unit in range(total + 3):
        assert s.phase_at(unit) == min(phases - 1, unit * phases // total)


@pytest.mark.parametrize("bad", [(), (-1, 2)])
def test_bad_lengths_are_refused(bad):
    with pytest.raises(ValueError):
        PhaseSchedule(bad)
