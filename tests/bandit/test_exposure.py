"""Exposure floors and consistent draws keep every logged probability exact: the floor is the
least change to the pmf that meets it, choices follow the logged pmf (chi-square), and a
consistent draw is fixed for a person, key and period but uniform across them."""

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from bandit.contracts.events import Candidate, Context
from bandit.contracts.slots import Exploration, Exposure, SlotConfig, SlotKind
from bandit.policies import build_policy
from bandit.policies.exposure import consistent_draw, floored

pmfs = st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12).filter(lambda v: sum(v) > 0.01)


@settings(max_examples=200, deadline=None)
@given(values=pmfs, data=st.data())
def test_a_floored_pmf_is_a_pmf_that_meets_the_floor_and_moves_no_more_than_it_must(values, data):
    pmf = np.asarray(values) / sum(values)
    flags = data.draw(st.lists(st.booleans(), min_size=len(pmf), max_size=len(pmf)))
    floor = data.draw(st.floats(0.0, 1.0))
    out = floored(pmf, flags, floor)
    assert out.sum() == pytest.approx(1.0) and np.all(out >= 0)
    flagged = np.asarray(flags, dtype=bool)
    if flagged.any() and floor > 0:
        level = min(floor, 1 / flagged.sum())
        assert np.all(out[flagged] >= level - 1e-12)
        # nothing that met the floor already is raised, and unflagged ones only shrink
        assert np.all(out[~flagged] <= pmf[~flagged] + 1e-12)
        raised = out > pmf + 1e-12
        assert np.all(flagged[raised]) and np.allclose(out[raised], level)
    else:
        assert np.array_equal(out, pmf)


def _slot(kind=SlotKind.ARTWORK, **exposure) -> SlotConfig:
    return SlotConfig(kind=kind, seed=3, exposure=Exposure(**exposure),
                      exploration=Exploration(epsilon=0.2, floor=0.0))  # fmt: skip


CANDIDATES = [Candidate(id="a", default=True), Candidate(id="b"), Candidate(id="c"),
              Candidate(id="fresh", floor=True)]  # fmt: skip


def test_choices_follow_the_logged_floored_pmf():
    """A cold policy puts 0.8 + 0.05 on the default and 0.05 elsewhere; the flagged title
    gets the floor of 0.25, and 20,000 decisions are distributed as the logged pmf says."""
    policy = build_policy(_slot(floor=0.25))
    pmf = policy.action_probabilities(Context(), CANDIDATES)
    assert pmf[3] == pytest.approx(0.25) and pmf.sum() == pytest.approx(1.0)
    counts = dict.fromkeys("abc", 0) | {"fresh": 0}
    for _ in range(20_000):
        choice = policy.decide(Context(), CANDIDATES)
        (chosen,), (probability,) = choice.chosen, choice.probabilities
        counts[chosen] += 1
        assert probability == pytest.approx(pmf[[c.id for c in CANDIDATES].index(chosen)])
    assert chisquare(list(counts.values()), pmf * 20_000).pvalue > 1e-3, counts


def test_the_editorial_default_and_unflagged_requests_are_not_floored():
    slot = _slot(floor=0.25)
    control = build_policy(msgspec.structs.replace(slot, policy="default"))
    assert control.decide(Context(), CANDIDATES).chosen == ("a",)
    plain = [msgspec.structs.replace(c, floor=False) for c in CANDIDATES]
    assert build_policy(slot).action_probabilities(Context(), plain)[3] == pytest.approx(0.05)


def test_floors_and_consistent_draws_are_refused_for_rows():
    with pytest.raises(ValueError, match="single-choice"):
        _slot(SlotKind.ROWS, floor=0.1)
    with pytest.raises(ValueError, match="below_share needs"):
        _slot(below_share=0.1)


def test_a_consistent_draw_is_fixed_within_a_period_and_uniform_across():
    secret, day = b"salt", 86_400.0
    same = {consistent_draw(secret, "p1", "artwork", "title:9", 3 * day + t, day)
            for t in (0, 60, 3600, 86_399)}  # fmt: skip
    assert len(same) == 1
    assert consistent_draw(secret, "p1", "artwork", "title:9", 4 * day, day) not in same
    assert consistent_draw(b"rotated", "p1", "artwork", "title:9", 3 * day, day) not in same
    draws = [consistent_draw(secret, f"p{i}", "artwork", "title:9", 5 * day, day)
             for i in range(20_000)]  # fmt: skip
    assert chisquare(np.histogram(draws, bins=20, range=(0, 1))[0]).pvalue > 1e-3


def test_consistent_choices_repeat_within_a_period_and_match_the_pmf_across_periods():
    """The same person and title get the same artwork on 10 visits of a period; over 4,000
    periods the choices are distributed as the pmf logged with them."""
    policy = build_policy(_slot(consistent_period_s=86_400.0))
    pmf = policy.action_probabilities(Context(), CANDIDATES)

    def visit(period: int, hour: int) -> tuple[str, float]:
        draw = consistent_draw(b"s", "p1", "artwork", "title:1", period * 86_400 + hour * 3600,
                               86_400.0)  # fmt: skip
        choice = policy.decide(Context(), CANDIDATES, draw=draw)
        return choice.chosen[0], choice.probabilities[0]

    assert len({visit(7, hour) for hour in range(10)}) == 1
    counts = dict.fromkeys([c.id for c in CANDIDATES], 0)
    for period in range(4000):
        chosen, probability = visit(period, 0)
        counts[chosen] += 1
        assert probability == pytest.approx(pmf[list(counts).index(chosen)])
    assert len({c for c, n in counts.items() if n}) == 4
    assert chisquare(list(counts.values()), pmf * 4000).pvalue > 1e-3, counts
