"""The lift report: intervals that cover the true lift, a sample-ratio check that fires on a
skewed split and stays quiet on a fair one, sums that add up across partitions, and
`artbandit report lift`."""

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bandit.contracts.events import Outcomes
from bandit.contracts.slots import SlotKind
from bandit.measurement.lift import RecentTallies, lift_over_time, lift_report, table
from bandit.measurement.stats import ratio_rate
from bandit.measurement.tallies import UNIT_BUCKETS, merge, tally
from replay.logs import write_log
from storage.config_file import load_config
from tests.replay.conftest import uniform_log

CONFIG = load_config(environ={})  # holdout_fraction 0.05 for every slot
FIFTH = load_config(environ={}, overrides=["slots.artwork.holdout_fraction=0.2"])
SRM_FLOOR = 0.001
# one decision copied with made-up groups and rewards: its logging says nothing of a default
TEMPLATE = msgspec.structs.replace(uniform_log(SlotKind.ARTWORK, 1)[0], default_probability=None)


def experiment(rng, people=3000, control_share=0.05, rate_t=0.24, rate_c=0.20, slot="artwork"):
    """Rewarded decisions of `people` people, each with 1-6 decisions and a personal
    propensity (so decisions of one person are correlated), randomised to control with
    `control_share`. Returns the events and the true lift."""
    events = []
    for person in range(people):
        group = "control" if rng.random() < control_share else "treatment"
        base = rate_c if group == "control" else rate_t
        mood = np.clip(rng.normal(base, base / 2), 0.0, 1.0)
        for n in range(int(rng.integers(1, 7))):
            reward = float(rng.random() < mood)
            events.append(
                msgspec.structs.replace(
                    TEMPLATE, decision_id=f"{person}-{n}", user_hash=f"u{person}", group=group,
                    slot=slot, rewards=[reward], reward=reward,
                )
            )  # fmt: skip
    return events, rate_t / rate_c - 1


@pytest.mark.slow
def test_the_interval_covers_the_true_lift_in_at_least_90_percent_of_experiments():
    rng = np.random.default_rng(2026)
    runs, covered = 120, 0
    for _ in range(runs):
        events, truth = experiment(rng, control_share=0.2)
        (result,) = lift_report(tally(events), FIFTH)
        covered += result.lift.low <= truth <= result.lift.high
    # expected 95%; 120 runs have a binomial sd of 2 points
    assert covered / runs >= 0.90


def test_a_clear_lift_is_found_and_no_lift_is_not():
    rng = np.random.default_rng(3)
    events, _ = experiment(rng, people=20000, control_share=0.2, rate_t=0.3, rate_c=0.2)
    (result,) = lift_report(tally(events), FIFTH)
    assert result.lift.p_value < 0.001 and result.lift.low > 0.3
    assert result.srm_p_value > SRM_FLOOR and not result.warnings
    events, _ = experiment(rng, people=20000, control_share=0.2, rate_t=0.2, rate_c=0.2)
    (same,) = lift_report(tally(events), FIFTH)
    assert same.lift.low < 0.0 < same.lift.high


def test_the_sample_ratio_check_fires_on_a_skewed_split():
    rng = np.random.default_rng(4)
    skewed, _ = experiment(rng, people=4000, control_share=0.08)  # configured: 5%
    (result,) = lift_report(tally(skewed), CONFIG)
    assert result.srm_p_value < SRM_FLOOR
    assert any("sample-ratio mismatch" in w for w in result.warnings)
    fair, _ = experiment(rng, people=4000, control_share=0.05)
    (result,) = lift_report(tally(fair), CONFIG)
    assert result.srm_p_value > SRM_FLOOR
    assert not any("sample-ratio" in w for w in result.warnings)


@pytest.mark.slow
def test_the_sample_ratio_check_rarely_fires_on_fair_splits():
    rng = np.random.default_rng(8)
    p_values = [
        lift_report(tally(experiment(rng, people=800, control_share=0.2)[0]), FIFTH)[0].srm_p_value
        for _ in range(150)
    ]
    # a calibrated test is below 0.05 in 5% of fair experiments (binomial sd 1.8 points)
    assert 0.01 <= np.mean(np.array(p_values) < 0.05) <= 0.10


def test_buckets_of_people_give_the_interval_people_give():
    rng = np.random.default_rng(9)
    events, _ = experiment(rng, people=6000, control_share=0.0)
    (result,) = lift_report(tally(events), CONFIG)
    reward: dict[str, float] = {}
    count: dict[str, int] = {}
    for e in events:
        reward[e.user_hash] = reward.get(e.user_hash, 0.0) + e.reward
        count[e.user_hash] = count.get(e.user_hash, 0) + 1
    people = ratio_rate(np.array(list(reward.values())), np.array(list(count.values())))
    assert result.treatment.rate.value == pytest.approx(people.value, rel=1e-12)
    assert result.treatment.rate.std_error == pytest.approx(people.std_error, rel=0.15)
    assert result.treatment.units == UNIT_BUCKETS


PARTS = st.lists(
    st.tuples(st.integers(0, 40), st.sampled_from(["treatment", "control"]),
              st.sampled_from(["artwork", "hero"]), st.floats(0, 3), st.booleans(),
              st.sampled_from([None, 0.05, 0.1])),
    max_size=60,
)  # fmt: skip


def flat(tallies):
    return {
        (slot, period, name): (group.decisions, group.reward)
        for slot, periods in tallies.items()
        for period, groups in periods.items()
        for name, group in groups.items()
    }


@settings(max_examples=60, deadline=None)
@given(st.lists(PARTS, min_size=1, max_size=4))
def test_partition_sums_add_up_to_the_sums_of_the_whole_log(parts):
    def event(n, person, group, slot, reward, anonymous, holdout):
        return msgspec.structs.replace(
            TEMPLATE, decision_id=f"d{n}", user_hash=None if anonymous else f"u{person}",
            group=group, slot=slot, rewards=[reward], reward=reward, holdout_fraction=holdout,
        )  # fmt: skip

    logs = [[event(f"{i}-{n}", *e) for n, e in enumerate(part)] for i, part in enumerate(parts)]
    whole = flat(tally(e for log in logs for e in log))
    added = flat(merge(tally(log) for log in logs))
    assert added.keys() == whole.keys()
    for key, (decisions, reward) in whole.items():
        assert added[key][0] == decisions
        assert added[key][1] == pytest.approx(reward, abs=1e-9)


def test_the_split_is_checked_per_holdout_period_the_log_carries():
    """Decisions logged under 5%, then under 20%: each period is checked against its own
    fraction, whatever the reader's config says (here 20% for the whole slot)."""
    rng = np.random.default_rng(12)
    early, _ = experiment(rng, people=3000, control_share=0.05)
    late, _ = experiment(rng, people=3000, control_share=0.2)
    logged = [msgspec.structs.replace(e, holdout_fraction=0.05) for e in early] + [
        msgspec.structs.replace(e, decision_id=f"late-{e.decision_id}", holdout_fraction=0.2)
        for e in late
    ]
    report = lift_report(tally(logged), FIFTH)
    assert [(r.expected_control_share, r.holdout_from) for r in report] == [
        (0.05, "log"), (0.2, "log"),
    ]  # fmt: skip
    assert all(r.srm_p_value > SRM_FLOOR and not r.warnings for r in report)
    (unlogged,) = lift_report(tally(early), FIFTH)  # an older writer: the config is all there is
    assert (unlogged.expected_control_share, unlogged.holdout_from) == (0.2, "config")
    assert unlogged.srm_p_value < SRM_FLOOR


def test_small_samples_and_unknown_slots_are_flagged():
    rng = np.random.default_rng(5)
    events, _ = experiment(rng, people=300, slot="banner")
    (result,) = lift_report(tally(events), CONFIG)
    assert result.expected_control_share is None
    assert any("not in the config" in w for w in result.warnings)
    assert result.holdout_from == "none"
    assert any("decisions in control" in w for w in result.warnings)


def test_every_decision_counts_once_and_anonymous_ones_are_their_own_units():
    rng = np.random.default_rng(6)
    events, _ = experiment(rng, people=500)
    anonymous = [msgspec.structs.replace(e, user_hash=None) for e in events[:40]]
    tallies = tally(events[40:] + anonymous)
    (result,) = lift_report(tallies, CONFIG)
    assert result.treatment.decisions + result.control.decisions == len(events)
    reward = sum(e.reward for e in events)
    summed = sum(sum(g.reward) for g in tallies["artwork"][""].values())
    assert summed == pytest.approx(reward)
    person = [e for e in events if e.user_hash == events[0].user_hash]
    (group,) = tally(person)["artwork"][""].values()
    assert sum(d > 0 for d in group.decisions) == 1  # a person's decisions share one bucket
    spread = tally(msgspec.structs.replace(e, group="control") for e in anonymous)
    assert sum(d > 0 for d in spread["artwork"][""]["control"].decisions) > 30  # 40 ids in 512


def test_report_lift_command(tmp_path):
    rng = np.random.default_rng(7)
    events, _ = experiment(rng, people=2000)
    events = [msgspec.structs.replace(e, ts=e.ts + i) for i, e in enumerate(events)]
    log = tmp_path / "rewarded.jsonl"
    write_log(log, events)
    artbandit = str(Path(sys.executable).with_name("artbandit"))
    out, scorecard = tmp_path / "lift.json", tmp_path / "lift.html"
    done = subprocess.run([artbandit, "report", "lift", "--log", str(log), "--json", str(out),
                           "--html", str(scorecard)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "artwork" in done.stdout and "lift" in done.stdout
    report = json.loads(out.read_text())
    (slot,) = report["slots"]
    assert slot["treatment"]["decisions"] + slot["control"]["decisions"] == len(events)
    page = scorecard.read_text()
    assert page.count("class='card'") == 1 and "sample ratio ok" in page
    assert "alt='cumulative lift'" in page
    lift = slot["lift"]
    assert f"{lift['value']:+.1%} reward per decision" in page
    missing = subprocess.run([artbandit, "report", "lift", "--log", str(tmp_path / "nope.jsonl")],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 2 and "no such file" in missing.stderr


def _with_outcomes(events, rng, plays_t, plays_c):
    """The events with outcomes: a click wherever there is reward, plays at a group's rate."""
    out = []
    for event in events:
        rate = plays_t if event.group == "treatment" else plays_c
        outcomes = Outcomes(clicks=event.reward, plays=float(rng.random() < rate))
        out.append(msgspec.structs.replace(event, outcomes=outcomes))
    return out


def test_a_guardrail_that_falls_while_the_reward_rises_is_flagged():
    rng = np.random.default_rng(11)
    events, _ = experiment(rng, people=4000, control_share=0.2, rate_t=0.30, rate_c=0.20)
    (result,) = lift_report(tally(_with_outcomes(events, rng, 0.10, 0.15)), FIFTH)
    by_outcome = {g.outcome: g for g in result.guardrails}
    assert set(by_outcome) == {"clicks", "plays", "watch_minutes"}
    assert by_outcome["plays"].flagged and by_outcome["plays"].lift.high < 0
    assert not by_outcome["clicks"].flagged and by_outcome["clicks"].lift.low > 0
    assert not by_outcome["watch_minutes"].flagged  # none watched: no lift to judge
    assert any(w.startswith("guardrail: plays") for w in result.warnings)
    assert "guardrail plays per decision" in table([result]) and "FALLS" in table([result])
    # equal plays: nothing flagged; and events without outcomes (older writers): no guardrails
    (fair,) = lift_report(tally(_with_outcomes(events, rng, 0.15, 0.15)), FIFTH)
    assert not any(g.flagged for g in fair.guardrails)
    (old,) = lift_report(tally(events), FIFTH)
    assert old.guardrails == []


def test_the_lift_over_time_grows_to_the_report_of_the_whole_log():
    rng = np.random.default_rng(5)
    events, _ = experiment(rng, people=1500)
    events = [msgspec.structs.replace(e, ts=e.ts + i // 7) for i, e in enumerate(events)]
    shuffled = [events[i] for i in rng.permutation(len(events))]
    history = lift_over_time(shuffled, CONFIG, points=10)
    assert 2 <= len(history) <= 10
    times = [ts for ts, _ in history]
    assert times == sorted(times) and times[-1] == max(e.ts for e in events)
    counts = [r.treatment.decisions + r.control.decisions for _, (r,) in history]
    assert counts == sorted(counts) and counts[-1] == len(events)
    for ts, (r,) in history:  # each look counts exactly the decisions made by then
        assert r.treatment.decisions + r.control.decisions == sum(e.ts <= ts for e in events)
    (whole,) = lift_report(tally(events), CONFIG)
    assert history[-1][1][0].lift == whole.lift
    assert lift_over_time([], CONFIG) == []


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0.0, 400.0),
            st.sampled_from(["artwork", "hero"]),
            st.sampled_from(["treatment", "control"]),
            st.floats(0.0, 1.0),
            st.integers(0, 30),
            st.booleans(),
        ),
        min_size=1,
        max_size=120,
    )
)
def test_the_recent_window_sums_exactly_the_decisions_of_its_slices(made):
    """Whatever the order of decision times (late ones go to older slices, packed or not)
    and whenever it is read, the window holds exactly the decisions of its last `slices`
    slices, summed."""
    recent = RecentTallies(window_s=100.0, slices=4)  # 25 s slices
    logged = []
    for n, (ts, slot, group, reward, person, look) in enumerate(made):
        logged.append(msgspec.structs.replace(
            TEMPLATE, decision_id=f"d{n}", ts=ts, slot=slot, group=group,
            user_hash=f"u{person}", rewards=[reward], reward=reward,
        ))  # fmt: skip
        recent.add(logged[-1])
        if look or n == len(made) - 1:
            _assert_window(recent, logged)


def _assert_window(recent, logged):
    newest = max(int(e.ts // 25.0) for e in logged)
    whole = tally(e for e in logged if int(e.ts // 25.0) > newest - 4)
    for slot in ("artwork", "hero"):
        groups = recent.groups(slot)
        expected = next(iter(whole.get(slot, {}).values()), {})  # one holdout period
        assert groups.keys() == expected.keys()
        for name, group in groups.items():
            assert group.decisions == expected[name].decisions
            for field in ("reward", "default", "supported"):
                mine, theirs = (msgspec.to_builtins(getattr(g, field))
                                for g in (group, expected[name]))  # fmt: skip
                assert np.allclose(_values(mine), _values(theirs), atol=1e-9), field


def _values(sums):
    return np.asarray(sums if isinstance(sums, list) else [sums[k] for k in sorted(sums)])
