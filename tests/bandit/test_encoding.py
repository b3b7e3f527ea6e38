import functools
import re

import vowpalwabbit
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.contracts.events import Candidate, Context
from bandit.policies import encoding
from tests.strategies import features


@functools.cache
def workspace(reduction: str) -> vowpalwabbit.Workspace:
    # Not a fixture: hypothesis would take a VW workspace argument for a test class instance.
    return vowpalwabbit.Workspace(f"--{reduction} --quiet -q UA")


def _expected_count(feats: dict) -> int:
    # Numbers too small for VW to tell from 0 are dropped, as VW drops zero-valued features.
    return sum(
        1 for v in feats.values() if isinstance(v, bool | str) or abs(v) >= encoding.MIN_MAGNITUDE
    )


@settings(max_examples=300, deadline=None)
@given(
    features, features, st.lists(features, min_size=1, max_size=4), st.text(min_size=1, max_size=20)
)
def test_any_features_parse_into_exactly_their_vw_features(user, request, actions, odd_id):
    cb_workspace = workspace("cb_explore_adf")
    context = Context(user=user, request=request)
    candidates = [Candidate(id=f"{odd_id}{i}", features=f) for i, f in enumerate(actions)]
    examples = cb_workspace.parse(encoding.cb_example(context, candidates))
    try:
        assert len(examples) == 1 + len(candidates)
        shared, *action_examples = examples
        assert shared.num_features_in("U") == _expected_count(user)
        assert shared.num_features_in("C") == _expected_count(request)
        for example, candidate in zip(action_examples, candidates, strict=True):
            assert example.num_features_in("A") == _expected_count(candidate.features)
            assert example.num_features_in("I") == 1
    finally:
        cb_workspace.finish_example(examples)


@settings(max_examples=100, deadline=None)
@given(features, st.lists(features, min_size=1, max_size=4), st.integers(1, 4))
def test_ranked_examples_parse_with_one_slot_per_position(user, actions, positions):
    candidates = [Candidate(id=f"r{i}", features=f) for i, f in enumerate(actions)]
    positions = min(positions, len(candidates))  # VW needs at least as many actions as slots
    lines = encoding.ccb_example(Context(user=user), candidates, positions)
    prediction = workspace("ccb_explore_adf").predict(lines)
    assert len(prediction) == positions
    placed = [scores[0][0] for scores in prediction if scores]
    assert len(set(placed)) == len(placed) == positions


@given(st.text(), st.text())
def test_escape_is_injective_and_leaves_no_vw_syntax(a, b):
    assert (encoding.escape(a) == encoding.escape(b)) == (a == b)
    assert not re.search(r"[\s|:=']", encoding.escape(a))


def test_learning_label_lands_on_the_chosen_action():
    lines = encoding.cb_example(Context(), [Candidate(id="a"), Candidate(id="b")], (1, -1.0, 0.25))
    assert lines[2].startswith("0:-1.0:0.25 ")
    assert not lines[1][0].isdigit()


def test_interaction_arguments():
    assert encoding.interaction_args(["UA", "UCA"], ["UA8"]) == [
        "-q", "UA", "--cubic", "UCA", "--lrq", "UA8",
    ]  # fmt: skip


def test_memoised_candidate_text_tells_true_from_one_and_stays_bounded(monkeypatch):
    as_bool = encoding.action_text(Candidate(id="x", features={"new": True}))
    as_int = encoding.action_text(Candidate(id="x", features={"new": 1}))
    assert as_bool == "|Action new=true |Id x"
    assert as_int == "|Action new:1 |Id x"
    monkeypatch.setattr(encoding, "ACTION_CACHE_SIZE", 10)
    for i in range(25):
        encoding.action_text(Candidate(id=f"bounded{i}"))
        assert len(encoding._action_texts) <= 10
