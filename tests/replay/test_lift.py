"""The lift report: intervals that cover the true lift, a sample-ratio check that fires on a
skewed split and stays quiet on a fair one, and `artbandit report lift`."""

import json
import subprocess
import sys
from pathlib import Path

import msgspec
import numpy as np
import pytest

from bandit.config import load_config
from bandit.slots import SlotKind
from replay.lift import lift_report, srm_p_value
from replay.logs import write_log
from tests.replay.conftest import uniform_log

CONFIG = load_config(environ={})  # holdout_fraction 0.05 for every slot
FIFTH = load_config(environ={}, overrides=["slots.artwork.holdout_fraction=0.2"])
SRM_FLOOR = 0.001
TEMPLATE = uniform_log(SlotKind.ARTWORK, 1)[0]


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
        (result,) = lift_report(events, FIFTH)
        covered += result.lift.low <= truth <= result.lift.high
    # expected 95%; 120 runs have a binomial sd of 2 points
    assert covered / runs >= 0.90


def test_a_clear_lift_is_found_and_no_lift_is_not():
    rng = np.random.default_rng(3)
    events, _ = experiment(rng, people=20000, control_share=0.2, rate_t=0.3, rate_c=0.2)
    (result,) = lift_report(events, FIFTH)
    assert result.lift.p_value < 0.001 and result.lift.low > 0.3
    assert result.srm_p_value > SRM_FLOOR and not result.warnings
    events, _ = experiment(rng, people=20000, control_share=0.2, rate_t=0.2, rate_c=0.2)
    (same,) = lift_report(events, FIFTH)
    assert same.lift.low < 0.0 < same.lift.high


def test_the_sample_ratio_check_fires_on_a_skewed_split():
    rng = np.random.default_rng(4)
    skewed, _ = experiment(rng, people=4000, control_share=0.08)  # configured: 5%
    (result,) = lift_report(skewed, CONFIG)
    assert result.srm_p_value < SRM_FLOOR
    assert any("sample-ratio mismatch" in w for w in result.warnings)
    fair, _ = experiment(rng, people=4000, control_share=0.05)
    (result,) = lift_report(fair, CONFIG)
    assert result.srm_p_value > SRM_FLOOR
    assert not any("sample-ratio" in w for w in result.warnings)


def test_srm_p_value_matches_the_chi_square_test():
    from scipy.stats import chisquare

    for control, total, share in [(50, 1000, 0.05), (80, 1000, 0.05), (300, 1000, 0.25)]:
        expected = chisquare([control, total - control], [share * total, (1 - share) * total])
        assert srm_p_value(control, total, share) == pytest.approx(expected.pvalue, rel=1e-9)


def test_small_samples_and_unknown_slots_are_flagged():
    rng = np.random.default_rng(5)
    events, _ = experiment(rng, people=300, slot="banner")
    (result,) = lift_report(events, CONFIG)
    assert result.expected_control_share is None
    assert any("not in the config" in w for w in result.warnings)
    assert any("people in control" in w for w in result.warnings)


def test_people_are_the_units_and_anonymous_decisions_count_alone():
    rng = np.random.default_rng(6)
    events, _ = experiment(rng, people=500)
    anonymous = [msgspec.structs.replace(e, user_hash=None) for e in events[:40]]
    (result,) = lift_report(events[40:] + anonymous, CONFIG)
    people = {e.user_hash for e in events[40:]}
    assert result.treatment.people + result.control.people == len(people) + 40
    assert result.treatment.decisions + result.control.decisions == len(events)


def test_report_lift_command(tmp_path):
    rng = np.random.default_rng(7)
    events, _ = experiment(rng, people=2000)
    log = tmp_path / "rewarded.jsonl"
    write_log(log, events)
    artbandit = str(Path(sys.executable).with_name("artbandit"))
    out = tmp_path / "lift.json"
    done = subprocess.run([artbandit, "report", "lift", "--log", str(log), "--json", str(out)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "artwork" in done.stdout and "lift" in done.stdout
    report = json.loads(out.read_text())
    (slot,) = report["slots"]
    assert slot["treatment"]["decisions"] + slot["control"]["decisions"] == len(events)
    missing = subprocess.run([artbandit, "report", "lift", "--log", str(tmp_path / "nope.jsonl")],
                             capture_output=True, text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 2 and "no such file" in missing.stderr
