"""Learning quality in the seeded world: the treatment policy (the configured VW policies)
against the editorial control, uniform random, non-contextual Thompson sampling and the
oracle, each over the same pages until it has served --impressions impressions.

Runs in process through the project's policies (with the demo's slot settings, see
sim/demo.py) and the learner's reward mapping (no HTTP,
no Kafka); feedback arrives --delay pages late. Prints, per arm: click-through over all
impressions and over the last 10% (sampled clicks, and the world's expected clicks for the
pages served, which has no sampling noise), play rate, cumulative regret against the
oracle, and the lift over control. Targets: treatment >= +20% over control, >= 90% of oracle.
The arms `consistent` and `floor` are treatment with consistent artwork draws or exposure
floors on (OPTION_ARMS): what those product options cost. The arms `split2` and `joined2`
are treatment learned the two ways two learner members can (MEMBER_ARMS): `split2`, each
member its own model of half the traffic, serving following the newest published version;
`joined2`, join-only members and one rewarded learner, one model of all the traffic.

    python benchmarks/quality_bench.py [--impressions 200000] [--seed 7] [--world configs/world.toml]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

from replay.progress import Progress
from sim.arms import PolicyArm, decision_ids, seeded
from sim.demo import slot_settings
from sim.page import PageMaker, expected_clicks, oracle, sample
from sim.world import World, load_world
from storage.config_file import load_config


@dataclass
class Tally:
    impressions: int = 0
    clicks: int = 0
    plays: int = 0
    expected: float = 0.0  # the world's expected clicks of the pages served
    regret: float = 0.0  # oracle's expected clicks minus the arm's
    tail_impressions: int = 0
    tail_clicks: int = 0
    tail_expected: float = 0.0

    def ctr(self) -> float:
        return self.clicks / self.impressions

    def tail_ctr(self) -> float:
        return self.tail_clicks / self.tail_impressions

    def tail_expected_ctr(self) -> float:
        return self.tail_expected / self.tail_impressions


# Treatment with a product option on: what the option costs in learning (sim seconds: a
# page is 0.05 s, so 200,000 impressions last about 1,000 s and a period of 100 s is a
# tenth of the run, a person's visits in it all showing the same artwork per title).
OPTION_ARMS = {
    "consistent": ["slots.artwork.exposure.consistent_period_s=100.0"],
    "floor": [f"slots.{slot}.exposure.{name}=0.05"
              for slot in ("hero", "artwork") for name in ("floor", "below_share")],
}  # fmt: skip


# arm -> (members, split): the learner's ways to scale out (sim.arms.PolicyArm)
MEMBER_ARMS = {"split2": (2, True), "joined2": (2, False)}


def run_arm(world: World, arm: str, impressions: int, seed: int, delay: int) -> Tally:
    """Serve pages until `impressions`; the last 10% of impressions form the tail."""
    # the policies as the demo runs them
    config = load_config(None, [*slot_settings(), *OPTION_ARMS.get(arm, [])])
    pages = PageMaker(world, seeded(seed, 1))
    outcomes, clicks_rng = seeded(seed, 2), seeded(seed, 3)
    treated = ("treatment", "oracle", *OPTION_ARMS, *MEMBER_ARMS)
    policy = None if arm in treated else {"control": "default"}.get(arm, arm)
    members, split = MEMBER_ARMS.get(arm, (1, False))
    player = (
        None if arm == "oracle" else PolicyArm(world, config, policy, seed, delay, members, split)
    )
    tally = Tally()
    tail_from = impressions - impressions // 10
    progress = Progress(impressions, f"{arm:<10}")
    clock = 0.0
    try:
        while tally.impressions < impressions:
            page = pages.page(clock)
            best = oracle(world, page)
            if player is None:
                choice, decisions = best, []
            else:
                choice, decisions = player.decide(page, clock)
            outcome = sample(world, page, choice, outcomes)
            expected = outcome.expected_clicks
            tally.impressions += outcome.impressions
            tally.clicks += outcome.clicks
            tally.plays += outcome.plays
            tally.expected += expected
            tally.regret += expected_clicks(world, page, best) - expected
            if tally.impressions > tail_from:
                tally.tail_impressions += outcome.impressions
                tally.tail_clicks += outcome.clicks
                tally.tail_expected += expected
            if player is not None:
                ids = decision_ids(decisions)
                player.feedback(decisions, outcome.feedback(world, choice, ids, clock, clicks_rng))
            clock += 0.05
            progress.update(min(tally.impressions, impressions))
    finally:
        progress.close()
        if player is not None:
            player.close()
    return tally


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impressions", type=int, default=200_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--delay", type=int, default=50, help="pages before feedback is learned")
    parser.add_argument("--world", help="world TOML (default: built-in, as configs/world.toml)")
    parser.add_argument("--arms", default="treatment,control,uniform,thompson,oracle",
                        help=f"also {', '.join([*OPTION_ARMS, *MEMBER_ARMS])}: treatment with that "
                        "option, or learned by two members")  # fmt: skip
    args = parser.parse_args()
    world = World(load_world(args.world))
    print(
        f"world: {len(world.tastes)} taste clusters, {len(world.titles)} titles, "
        f"{len(world.rows)} rows, {world.params.users:,} people; seed {args.seed}; "
        f"{args.impressions:,} impressions per arm, feedback {args.delay} pages late"
    )
    results: dict[str, Tally] = {}
    for arm in args.arms.split(","):
        started = time.perf_counter()
        results[arm] = run_arm(world, arm, args.impressions, args.seed, args.delay)
        print(f"  {arm} took {time.perf_counter() - started:.1f} s", file=sys.stderr)
    print(
        f"{'arm':<11}{'CTR':>8}{'play':>8}{'last10%':>9}{'expected':>10}{'regret':>9}"
        f"{'vs control':>12}{'of oracle':>11}"
    )
    control = results.get("control")
    best = results.get("oracle")
    for arm, t in results.items():
        lift = t.tail_expected_ctr() / control.tail_expected_ctr() - 1 if control else float("nan")
        share = t.tail_expected_ctr() / best.tail_expected_ctr() if best else float("nan")
        print(
            f"{arm:<11}{t.ctr():>8.2%}{t.plays / t.impressions:>8.2%}{t.tail_ctr():>9.2%}"
            f"{t.tail_expected_ctr():>10.2%}{t.regret:>9.0f}{lift:>+12.1%}{share:>11.1%}"
        )
    print(
        "CTR: clicks per impression (hero and tiles above the fold); last10%/expected: over "
        "the last 10% of impressions, sampled / the world's expectation; regret: expected "
        "clicks lost to the oracle, cumulative; lift and share use the expected tail CTR."
    )
    if "treatment" in results and control and best:
        t = results["treatment"]
        lift = t.tail_expected_ctr() / control.tail_expected_ctr() - 1
        share = t.tail_expected_ctr() / best.tail_expected_ctr()
        ok = lift >= 0.20 and share >= 0.90
        print(
            f"targets (lift >= +20%, >= 90% of oracle): lift {lift:+.1%}, {share:.1%} of oracle "
            f"-> {'met' if ok else 'NOT met'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
