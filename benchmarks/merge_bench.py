"""Can k learner members learn one model by averaging? VW's `merge_models` measured.

Design question of the scale issue: k members each learn 1/k of the traffic; every `sync`
examples one merges their models (VW's `merge_models`, weighted by what each learned since
the common base) and every member continues from the merge. Against one learner that
learns every example, on the same logged stream of the synthetic artwork world (uniform
logger, so the stream does not depend on the learner), the greedy policy's share of the
oracle's reward on fresh rounds, and how long learning and merging take.

Found with VW 9.11: the merge averages the regressor faithfully, but not SquareCB's
example counter (the default explorer): a merged model's pmf is uniform until it learns
again. So the merged model is scored twice: as merged, and after learning 50 held-out
examples (which restores the counter, as a member's next examples would).

Run: python benchmarks/merge_bench.py [--rounds N] [--members K] [--sync S]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import vowpalwabbit

from bandit.contracts.slots import SlotKind
from bandit.policies.encoding import cb_example
from bandit.policies.vw import vw_arguments
from sim.synthetic import SyntheticWorld
from storage.config_file import load_config


def workspace(args: list[str], model: str | None = None) -> vowpalwabbit.Workspace:
    extra = ["--preserve_performance_counters", "--save_resume"]
    if model is not None:
        extra += ["--initial_regressor", model]
    return vowpalwabbit.Workspace(arg_list=args + extra)


def share(vw: vowpalwabbit.Workspace, world: SyntheticWorld, rounds: list) -> float:
    """The greedy choice's expected reward over the oracle's, on `rounds`."""
    got = best = 0.0
    for round_ in rounds:
        pmf = vw.predict(cb_example(round_.context, round_.candidates))
        choice = round_.candidates[int(np.argmax(pmf))].id
        got += world.expected_reward(round_, [choice])
        best += world.oracle_reward(round_)
    return got / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40_000)
    parser.add_argument("--members", type=int, default=2)
    parser.add_argument("--sync", type=int, default=2_000, help="examples between merges")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    slot = load_config(environ={}).slots["artwork"]
    vw_args = vw_arguments(slot, "cb_explore_adf", fresh=False)
    world = SyntheticWorld(SlotKind.ARTWORK, seed=args.seed, candidates_per_round=10)
    rng = np.random.default_rng(args.seed)
    stream = []
    for _ in range(args.rounds + 50):
        round_ = world.draw()
        index = int(rng.integers(len(round_.candidates)))
        reward = world.sample_rewards(round_, [round_.candidates[index].id])[0]
        label = (index, -reward, 1.0 / len(round_.candidates))
        stream.append(cb_example(round_.context, round_.candidates, label))
    stream, held_out = stream[: args.rounds], stream[args.rounds :]
    test = [world.draw() for _ in range(3_000)]

    single = workspace(vw_args)
    started = time.perf_counter()
    for example in stream:
        single.learn(example)
    single_s = time.perf_counter() - started

    with tempfile.TemporaryDirectory() as tmp:
        base_path = os.path.join(tmp, "base.model")
        workspace(vw_args).save(base_path)
        base = workspace(vw_args, base_path)
        members = [workspace(vw_args, base_path) for _ in range(args.members)]
        learn_s = merge_s = 0.0
        merges = 0
        for start in range(0, len(stream), args.sync):
            chunk = stream[start : start + args.sync]
            started = time.perf_counter()
            for n, example in enumerate(chunk):  # member m learns every k-th example
                members[n % args.members].learn(example)
            learn_s += time.perf_counter() - started
            started = time.perf_counter()
            merged = vowpalwabbit.merge_models(base, members)
            merged.save(base_path)
            base = workspace(vw_args, base_path)
            members = [workspace(vw_args, base_path) for _ in range(args.members)]
            merge_s += time.perf_counter() - started
            merges += 1
        merged_share = share(base, world, test)
        for example in held_out:
            base.learn(example)
        restored_share = share(base, world, test)
    single_share = share(single, world, test)
    print(f"{args.rounds:,} logged rounds (uniform logger, 10 candidates), {args.members} members, "
          f"merge every {args.sync:,} examples ({merges} merges)")  # fmt: skip
    print(
        f"one learner, every example:   share of oracle {single_share:.3f}, learn {single_s:.1f} s"
    )
    print(f"{args.members} members + merge_models: share of oracle {merged_share:.3f}, "
          f"learn {learn_s:.1f} s in all ({learn_s / args.members:.1f} s each in parallel), "
          f"merging {merge_s:.1f} s")  # fmt: skip
    print(
        f"  the merge after 50 more examples (SquareCB's counter back): share {restored_share:.3f}"
    )
    print(
        f"gap: {100 * (single_share - restored_share):+.1f} points of the oracle (target: within 2)"
    )


if __name__ == "__main__":
    main()
