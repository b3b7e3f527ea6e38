"""How much of the learnable value a slot's policy gets, across the world suite (sim/suite.py).

For each world: the slot's policy (built-in defaults, plus any --set) decides every request
and learns from its clicks `delay` requests later, in process. Prints, per world, the
policy's expected reward as a share of the observable optimum's over the last 10% of the
decisions before each checkpoint (10k, 50k, 200k), uniform random's share for reference,
and the median and worst across the worlds of each half of the suite (`tuning`, where
defaults are chosen, and `held-out`, where they are only reported) and of all of them.

    python benchmarks/suite_bench.py [--decisions 50000] [--half tuning|held-out]
        [--world NAME ...] [--config PATH] [--set KEY=VALUE ...] [--jobs N]

The slot settings come from --config and --set only (the built-in defaults without them),
never from $ARTBANDIT_CONFIG, so a run says what it measured.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import statistics
import sys
import time

import numpy as np

from artbandit.cli import add_common_arguments
from bandit.config import load_config
from replay.progress import Progress
from sim.suite import HALVES, SUITE, WorldSpec, play

CHECKPOINTS = (10_000, 50_000, 200_000)


def run(
    spec: WorldSpec, decisions: int, settings: argparse.Namespace, policy_type: str | None = None
) -> dict[int, tuple[float, float]]:
    """{checkpoint: (policy's expected reward, optimum's)} over the window before it, with
    the slot's policy from `settings` (--config, --set), or `policy_type` instead."""
    slot_config = world_config(spec, settings, policy_type).slots[spec.kind.value]
    progress = Progress(decisions, f"{spec.name:<24}", quiet=settings.quiet)
    played = play(spec, decisions, slot_config, CHECKPOINTS, progress=progress.update)
    progress.close()
    return played.shares


def world_config(spec: WorldSpec, settings: argparse.Namespace, policy_type: str | None = None):
    """The config of a world's run: its slot seeded and sized, then --config and --set."""
    slot = spec.kind.value
    world_settings = [f"slots.{slot}.seed={spec.seed}", f"slots.{slot}.select={spec.select}"]
    if policy_type:
        world_settings.append(f'slots.{slot}.policy="{policy_type}"')
    return load_config(settings.config, [*world_settings, *settings.overrides], environ={})


def measure(spec: WorldSpec, args: argparse.Namespace) -> tuple[WorldSpec, dict, dict, float]:
    """One world's shares (and uniform's), in a worker process when --jobs > 1."""
    np.seterr(over="ignore")
    started = time.perf_counter()
    shares = run(spec, args.decisions, args)
    seconds = time.perf_counter() - started
    uniform = {} if args.no_uniform else run(spec, args.decisions, args, "uniform")
    return spec, shares, uniform, seconds


def summary(label: str, finals: list[float], width: int) -> list[str]:
    if not finals:
        return []
    return [
        f"{'median ' + label:<33}{'':>{width}}{statistics.median(finals):>9.1%}",
        f"{'worst ' + label:<33}{'':>{width}}{min(finals):>9.1%}",
    ]


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """--decisions, --half, --world, --jobs, and --config, --set and --quiet as for artbandit."""
    parser.add_argument("--decisions", type=int, default=50_000)
    parser.add_argument("--half", choices=sorted(HALVES), help="only this half of the suite")
    parser.add_argument("--world", action="append", default=[], help="only these worlds")
    parser.add_argument("--jobs", type=int, default=1, help="worlds run in parallel")
    add_common_arguments(parser)


def selected_worlds(args: argparse.Namespace) -> list[WorldSpec]:
    """The worlds --half and --world pick (none: a message on stderr)."""
    pool = HALVES[args.half] if args.half else SUITE
    specs = [s for s in pool if not args.world or s.name in args.world]
    if not specs:
        print(f"no such world; the suite: {', '.join(s.name for s in SUITE)}", file=sys.stderr)
    return specs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_arguments(parser)
    parser.add_argument("--no-uniform", action="store_true", help="skip the uniform reference")
    args = parser.parse_args()
    specs = selected_worlds(args)
    if not specs:
        return 2
    checkpoints = [c for c in CHECKPOINTS if c <= args.decisions]
    header = "".join(f"{f'@{c // 1000}k':>9}" for c in checkpoints)
    print(f"{'world':<24} {'slot':<8}{header}   uniform@{checkpoints[-1] // 1000}k   seconds")
    last = checkpoints[-1]
    finals: dict[str, list[float]] = {name: [] for name in HALVES}
    with concurrent.futures.ProcessPoolExecutor(max(1, args.jobs)) as workers:
        for spec, shares, uniform, seconds in workers.map(measure, specs, [args] * len(specs)):
            cells = "".join(f"{shares[c][0] / shares[c][1]:>9.1%}" for c in checkpoints)
            reference = f"{uniform[last][0] / uniform[last][1]:>9.1%}" if uniform else f"{'':>9}"
            print(f"{spec.name:<24} {spec.kind.value:<8}{cells}   {reference}   {seconds:7.1f}",
                  flush=True)  # fmt: skip
            half = next(name for name, worlds in HALVES.items() if spec in worlds)
            finals[half].append(shares[last][0] / shares[last][1])
    width = 9 * (len(checkpoints) - 1)
    lines = [line for half in sorted(HALVES) for line in summary(f"({half})", finals[half], width)]
    lines += summary("(all)", [f for half in finals.values() for f in half], width)
    print("\n".join(lines))
    print(f"(share of the observable optimum's expected reward over the last 10% of decisions "
          f"before each checkpoint; settings: {' '.join(args.overrides) or 'built-in defaults'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
