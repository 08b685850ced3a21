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


def test_even_split_spreads_the_remainder_and_covers_every_unit():
    s = PhaseSchedule.even(11, 3)
    assert s.lengths == (4, 4, 3) and s.total == 11


@pytest.mark.parametrize("bad", [(), (-1, 2)])
def test_bad_lengths_are_refused(bad):
    with pytest.raises(ValueError):
        PhaseSchedule(bad)
