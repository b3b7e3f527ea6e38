"""How much of the learnable value a slot's policy gets, across the world suite (sim/suite.py).

For each world and seed: the slot's policy (built-in defaults, plus any --set) decides every
request and learns from its clicks `delay` requests later, in process. Prints, per world,
the policy's expected reward as a share of the observable optimum's over the last 10% of
the decisions before each checkpoint (10k, 50k, 200k), the mean and the worst over its
seeds, uniform random's share for reference, and the median and worst over every run of
each half of the suite (`tuning`, where defaults are chosen, and `held-out`, where they are
only reported) and of all of them.

    python benchmarks/suite_bench.py [--decisions 50000] [--seeds 3] [--half tuning|held-out]
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
from replay.progress import Progress
from sim.suite import CHECKPOINTS, HALVES, SUITE, WorldSpec, play
from storage.config_file import load_config


def run(
    spec: WorldSpec, decisions: int, settings: argparse.Namespace, policy_type: str | None = None
) -> dict[int, float]:
    """{checkpoint: share of the optimum} over the window before it, with the slot's policy
    from `settings` (--config, --set), or `policy_type` instead."""
    slot_config = world_config(spec, settings, policy_type).slots[spec.kind.value]
    progress = Progress(decisions, f"{spec.name:<24}", quiet=settings.quiet)
    played = play(spec, decisions, slot_config, progress=progress.update)
    progress.close()
    return played.shares


def world_config(spec: WorldSpec, settings: argparse.Namespace, policy_type: str | None = None):
    """The config of a world's run: its slot seeded and sized, then --config and --set."""
    slot = spec.kind.value
    world_settings = [f"slots.{slot}.seed={spec.seed}", f"slots.{slot}.select={spec.select}"]
    if policy_type:
        world_settings.append(f'slots.{slot}.policy="{policy_type}"')
    return load_config(settings.config, [*world_settings, *settings.overrides], environ={})


def measure(
    spec: WorldSpec, args: argparse.Namespace
) -> tuple[WorldSpec, dict[int, float], dict[int, float], float]:
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
        f"{'median ' + label:<37}{'':>{width - 9}}{statistics.median(finals):>9.1%}",
        f"{'worst ' + label:<37}{'':>{width - 9}}{min(finals):>9.1%}",
    ]


def add_world_arguments(parser: argparse.ArgumentParser) -> None:
    """--decisions, --seeds, --half, --world, --jobs, and --config, --set and --quiet as for
    artbandit."""
    parser.add_argument("--decisions", type=int, default=50_000)
    parser.add_argument("--seeds", type=int, default=3, help="draws of each world")
    parser.add_argument("--half", choices=sorted(HALVES), help="only this half of the suite")
    parser.add_argument("--world", action="append", default=[], help="only these worlds")
    parser.add_argument("--jobs", type=int, default=1, help="worlds run in parallel")
    add_common_arguments(parser)


def selected_worlds(args: argparse.Namespace) -> list[WorldSpec]:
    """The worlds --half and --world pick, each --seeds times (none: a message on stderr)."""
    pool = HALVES[args.half] if args.half else SUITE
    specs = [s for s in pool if not args.world or s.name in args.world]
    if not specs:
        print(f"no such world; the suite: {', '.join(s.name for s in SUITE)}", file=sys.stderr)
    return [spec.seeded(k) for spec in specs for k in range(args.seeds)]


def half_of(spec: WorldSpec) -> str:
    return next(h for h, worlds in HALVES.items() if any(w.name == spec.name for w in worlds))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_world_arguments(parser)
    parser.add_argument("--no-uniform", action="store_true", help="skip the uniform reference")
    args = parser.parse_args()
    specs = selected_worlds(args)
    if not specs:
        return 2
    checkpoints = [c for c in CHECKPOINTS if c <= args.decisions]
    last = checkpoints[-1]
    header = "".join(f"{f'@{c // 1000}k':>9}" for c in checkpoints)
    print(f"{'world':<28} {'slot':<8}{header}{'worst':>9}   uniform@{last // 1000}k   seconds")
    finals: dict[str, list[float]] = {name: [] for name in HALVES}
    runs: dict[str, list[tuple[dict[int, float], dict[int, float], float]]] = {}
    with concurrent.futures.ProcessPoolExecutor(max(1, args.jobs)) as workers:
        for spec, shares, uniform, seconds in workers.map(measure, specs, [args] * len(specs)):
            seeds = runs.setdefault(spec.name, [])
            seeds.append((shares, uniform, seconds))
            finals[half_of(spec)].append(shares[last])
            if len(seeds) < args.seeds:
                continue
            means = "".join(f"{np.mean([r[0][c] for r in seeds]):>9.1%}" for c in checkpoints)
            worst = min(r[0][last] for r in seeds)
            reference = f"{np.mean([r[1][last] for r in seeds]):>9.1%}" if uniform else f"{'':>9}"
            seconds = sum(r[2] for r in seeds)
            print(f"{spec.name:<28} {spec.kind.value:<8}{means}{worst:>9.1%}   {reference}"
                  f"   {seconds:7.1f}", flush=True)  # fmt: skip
    width = 9 * len(checkpoints)
    lines = [line for half in sorted(HALVES) for line in summary(f"({half})", finals[half], width)]
    lines += summary("(all)", [f for half in finals.values() for f in half], width)
    print("\n".join(lines))
    print(f"(share of the observable optimum's expected reward over the last 10% of decisions "
          f"before each checkpoint, mean over {args.seeds} seeds and the worst seed at "
          f"{last // 1000}k; medians and worsts are over every run; settings: "
          f"{' '.join(args.overrides) or 'built-in defaults'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
