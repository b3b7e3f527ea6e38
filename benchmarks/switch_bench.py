"""What a tuning round and a learner's switch cost, on a suite world's own log.

Plays `--decisions` requests of a world (sim/suite.py) with the defaults, then times, on
the rewarded events that produced: decoding them from JSON (what the learner does reading
the rewarded topic), warm-starting a policy on the tuning window (what blocks the learner
during a switch), and one tuning round (`tuning.tune.judge`, what `artbandit tune` runs).

    python benchmarks/switch_bench.py [--world hero-device-many] [--decisions 100000]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from suite_bench import world_config

from artbandit.cli import add_common_arguments
from bandit.contracts import events
from bandit.contracts.events import RewardedEvent
from bandit.learning.tuning import recent_window, tuned_slot, warm_start
from bandit.policies import Policy
from sim.suite import SUITE, play
from tuning.tune import judge


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="hero-device-many")
    parser.add_argument("--decisions", type=int, default=100_000)
    add_common_arguments(parser)
    args = parser.parse_args()
    spec = next((s for s in SUITE if s.name == args.world), None)
    if spec is None:
        print(f"no such world; the suite: {', '.join(s.name for s in SUITE)}", file=sys.stderr)
        return 2
    np.seterr(over="ignore")
    config = world_config(spec, args)
    slot = spec.kind.value
    captured: list[RewardedEvent] = []

    def keep(t: int, log: list[RewardedEvent], policy: Policy) -> None:
        captured.extend(log)

    play(spec, args.decisions + 1, config.slots[slot], retune=keep, every=args.decisions)
    encoded = [events.encode(e) for e in captured]
    started = time.perf_counter()
    decoded = [events.decode(v, RewardedEvent) for v in encoded]
    decode_s = time.perf_counter() - started
    window = recent_window(slot, decoded, config.tuning.window_events)
    started = time.perf_counter()
    warm_start(tuned_slot(slot, config.slots[slot], ["learning_rate=0.3"]), window).close()
    warm_s = time.perf_counter() - started
    started = time.perf_counter()
    verdict = judge(slot, config.slots[slot], [], decoded, config.tuning)
    judge_s = time.perf_counter() - started
    candidates = max(len(e.candidates) for e in captured)
    print(f"{spec.name} ({slot}, up to {candidates} candidates): {len(encoded):,} rewarded events")
    print(f"  decode                {decode_s:6.2f} s  ({len(encoded) / decode_s:,.0f}/s)")
    print(f"  warm start on window  {warm_s:6.2f} s  ({len(window):,} events, "
          f"{len(window) / warm_s:,.0f}/s)")  # fmt: skip
    print(f"  tuning round          {judge_s:6.2f} s  ({len(verdict.candidates)} candidates "
          f"and the running settings, estimator {config.tuning.estimator})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
