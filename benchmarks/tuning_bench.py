"""Self-tuning against the defaults, world by world across the suite (sim/suite.py).

Each world runs twice from the same seed: once with the built-in defaults, and once with
self-tuning in process: every `--every` decisions the tuner (`tuning.tune.judge`, what
`artbandit tune` runs) replays the slot's log so far through the candidate settings, and
when one wins significantly the policy is warm-started on the same window
(`bandit.learning.tuning.warm_start`, what the learner does) and takes over. Prints each world's
share of the observable optimum at each checkpoint for both, the difference, and when the
tuner switched to what; then the median and worst across the worlds.

    python benchmarks/tuning_bench.py [--decisions 50000] [--every 10000] [--half NAME]
        [--world NAME ...] [--jobs N] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import time

import numpy as np
from suite_bench import add_world_arguments, selected_worlds, world_config

from bandit.contracts.events import RewardedEvent
from bandit.learning.tuning import TuningState, recent_window, tuned_slot, warm_start
from bandit.policies import Policy
from replay.progress import Progress
from sim.suite import CHECKPOINTS, WorldSpec, play
from tuning.tune import advance, judge


def measure(spec: WorldSpec, args: argparse.Namespace):
    np.seterr(over="ignore")
    config = world_config(spec, args)
    slot = spec.kind.value
    configured = config.slots[slot]
    state = TuningState(slot=slot)
    changes: list[str] = []

    def retune(t: int, log: list[RewardedEvent], policy: Policy) -> Policy | None:
        nonlocal state
        verdict = judge(slot, configured, state.overrides, log, config.tuning, seed=spec.seed)
        before, state = state, advance(state, state, verdict, config)
        if state.revision == before.revision:
            return None
        chosen = verdict.chosen
        changes.append(f"{t // 1000}k: {chosen.name} ({chosen.gain:+.4f})")
        window = recent_window(slot, log, config.tuning.window_events)
        return warm_start(tuned_slot(slot, configured, state.overrides), window)

    started = time.perf_counter()
    label = f"{spec.name:<24}"
    fixed = play(
        spec,
        args.decisions,
        configured,
        progress=Progress(args.decisions, label + " defaults", quiet=args.quiet).update,
    )
    tuned = play(spec, args.decisions, configured, retune=retune, every=args.every,
                 progress=Progress(args.decisions, label + " tuned", quiet=args.quiet).update)  # fmt: skip
    return spec, fixed.shares, tuned.shares, changes, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_arguments(parser)
    parser.add_argument("--every", type=int, default=10_000, help="decisions between tunings")
    args = parser.parse_args()
    specs = selected_worlds(args)
    if not specs:
        return 2
    checkpoints = [c for c in CHECKPOINTS if c <= args.decisions]
    last = checkpoints[-1]
    header = "".join(f"{f'@{c // 1000}k':>8}{'tuned':>8}" for c in checkpoints)
    print(f"{'world':<28} {'seed':>5} {'slot':<8}{header}  {'diff':>7}  seconds  switches")
    finals: dict[str, list[tuple[float, float]]] = {"defaults": [], "tuned": []}
    with concurrent.futures.ProcessPoolExecutor(max(1, args.jobs)) as workers:
        for spec, fixed, tuned, changes, seconds in workers.map(
            measure, specs, [args] * len(specs)
        ):
            share = {c: (fixed[c], tuned[c]) for c in checkpoints}
            cells = "".join(f"{a:>8.1%}{b:>8.1%}" for a, b in share.values())
            diff = share[last][1] - share[last][0]
            print(f"{spec.name:<28} {spec.seed:>5} {spec.kind.value:<8}{cells}  {diff * 100:>+6.1f}p  "
                  f"{seconds:7.1f}  {'; '.join(changes) or '-'}", flush=True)  # fmt: skip
            finals["defaults"].append(share[last][0])
            finals["tuned"].append(share[last][1])
    for name, values in finals.items():
        print(f"{name:<10} median {statistics.median(values):.1%}  worst {min(values):.1%}")
    gaps = [t - d for d, t in zip(finals["defaults"], finals["tuned"], strict=True)]
    print(f"tuned minus defaults: worst {min(gaps) * 100:+.1f} points, best {max(gaps) * 100:+.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
