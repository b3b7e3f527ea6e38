"""How a slot's policy comes through a change of tastes after a long stationary run.

Each world of the suite whose tastes move on the same candidates (`abrupt`, `gradual`) runs
`--change-at` stationary decisions (default 100,000; the issue's long case is 200,000),
then `--after` more (20,000) in the changed world, in process as in the suite. Prints, per
world and seed: the share of the observable optimum over the 10,000 decisions before the
change and over the `--after` decisions after it, and for how many decisions after it the
policy's expected reward was below the editorial default's (counted in blocks of
`--block` decisions, 250 by default; a gradual change is counted from its start), and how
many decisions after the change the change detector first fired (`-`: not within them).

    python benchmarks/drift_bench.py [--change-at 100000] [--after 20000] [--seeds 3]
        [--world NAME ...] [--set KEY=VALUE ...] [--jobs N]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import statistics
import sys
import time

import numpy as np
from suite_bench import add_world_arguments, world_config

from replay.progress import Progress
from sim.suite import SUITE, Played, WorldSpec, play

DRIFTS = tuple(s for s in SUITE if s.change in ("abrupt", "gradual"))


def below_default(played: Played, start: int, block: int) -> int:
    """Decisions from `start` on in blocks where the policy's expected reward was below the
    editorial default's."""
    value, default = played.value[start:], played.default[start:]
    blocks = len(value) // block
    shape = (blocks, block)
    lost = value[: blocks * block].reshape(shape).sum(1) < default[: blocks * block].reshape(
        shape
    ).sum(1)
    return int(lost.sum()) * block


def measure(
    spec: WorldSpec, args: argparse.Namespace
) -> tuple[WorldSpec, float, float, int, int | None, float]:
    np.seterr(over="ignore")
    started = time.perf_counter()
    change_at = args.change_at
    slot_config = world_config(spec, args).slots[spec.kind.value]
    decisions = change_at + args.after
    progress = Progress(decisions, f"{spec.name:<24}", quiet=args.quiet)
    played = play(spec, decisions, slot_config, progress=progress.update)
    progress.close()
    before = played.share(change_at - 10_000, change_at)
    after = played.share(change_at, decisions)
    lost = below_default(played, change_at, args.block)
    detected = next((t - change_at for t in played.changes if t >= change_at), None)
    return spec, before, after, lost, detected, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_arguments(parser)
    parser.add_argument("--change-at", type=int, default=100_000)
    parser.add_argument("--after", type=int, default=20_000)
    parser.add_argument("--block", type=int, default=250)
    args = parser.parse_args()
    pool = [s for s in DRIFTS if not args.world or s.name in args.world]
    if not pool:
        print(f"no such world; drift worlds: {', '.join(s.name for s in DRIFTS)}", file=sys.stderr)
        return 2
    specs = [
        dataclasses.replace(s, change_at=args.change_at).seeded(k)
        for s in pool
        for k in range(args.seeds)
    ]
    print(f"{'world':<24} {'seed':>6} {'before':>8} {'after':>8} {'below default':>14} "
          f"{'detected':>9} {'s':>6}")  # fmt: skip
    afters, losts = [], []
    with concurrent.futures.ProcessPoolExecutor(max(1, args.jobs)) as workers:
        for spec, before, after, lost, detected, seconds in workers.map(
            measure, specs, [args] * len(specs)
        ):
            seen = "-" if detected is None else f"{detected:,}"
            print(f"{spec.name:<24} {spec.seed:>6} {before:>8.1%} {after:>8.1%} {lost:>14,} "
                  f"{seen:>9} {seconds:>6.0f}", flush=True)  # fmt: skip
            afters.append(after)
            losts.append(lost)
    print(f"after the change: median {statistics.median(afters):.1%}, worst {min(afters):.1%}; "
          f"below the editorial default for at most {max(losts):,} decisions")  # fmt: skip
    print(f"(change after {args.change_at:,} stationary decisions, {args.after:,} after it; "
          f"settings: {' '.join(args.overrides) or 'built-in defaults'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
