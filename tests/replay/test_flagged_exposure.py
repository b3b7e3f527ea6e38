"""Replay shows how much of each policy's probability goes to candidates flagged for the
exposure floor, beside the share the log showed them."""

import msgspec

from bandit.contracts.events import Candidate, Context, PolicyRef, RewardedEvent
from bandit.policies import build_policy
from replay.evaluate import evaluate
from replay.logs import ReplayLog
from replay.report import table
from replay.results import Settings
from replay.targets import parse_target
from storage.config_file import load_config


def test_the_flagged_share_of_the_log_and_of_each_target():
    config = load_config(environ={}, overrides=["slots.hero.exposure.floor=0.3",
                                                "slots.hero.seed=5"])  # fmt: skip
    policy = build_policy(config.slots["hero"])  # cold: the default 0.95, the floor lifts "new"
    candidates = [Candidate(id="top", default=True), Candidate(id="b"), Candidate(id="c"),
                  Candidate(id="new", floor=True)]  # fmt: skip
    log = []
    for n in range(4000):
        choice = policy.decide(Context(), candidates)
        event = choice.event(f"d{n}", 1.7e9 + n, "hero", "hero", Context(), candidates,
                             PolicyRef(name="vw", version="untrained"))  # fmt: skip
        log.append(RewardedEvent.from_decision(event, [0.0], True, 1.7e9 + n))
    settings = Settings(bootstrap=0, reward_model=False, estimators=("ips",))
    targets = [parse_target(spec, config, 0) for spec in ("uniform", "default", "logged")]
    (slot,) = evaluate(ReplayLog(log, "floored"), targets, config, settings).slots
    shares = slot.flagged_exposure
    assert abs(shares["shown"] - 0.3) < 0.03  # Binomial(4000, 0.3): sd 0.007
    # a target deployed in this slot is floored too (1/4 lifted to 0.3); control's is not
    assert abs(shares["uniform"] - 0.3) < 1e-9 and shares["default"] == 0.0
    assert abs(shares["logged"] - 0.3) < 1e-9  # the logger re-scored, floor and all
    assert "flagged for the floor" in table(
        evaluate(ReplayLog(log, "x"), targets, config, settings)
    )
    plain = [msgspec.structs.replace(e, candidates=[msgspec.structs.replace(c, floor=False)
                                                   for c in e.candidates]) for e in log]  # fmt: skip
    (slot,) = evaluate(ReplayLog(plain, "plain"), targets, config, settings).slots
    assert slot.flagged_exposure == {}
