"""Policy throughput per slot kind, and the cost of the decide path over a raw VW predict.

Prints decisions/s and learns/s for 5, 20 and 50 candidates per slot kind (default config:
epsilon-greedy, -q UA UI CA CI), and for each kind the ratio

    full decide (encode + VW predict + sample) / raw VW predict of a pre-built example

with catalogue candidates seen before (decide/raw, the usual case: encoded candidate text is
memoised) and with every candidate new (cold/raw). Target: ratio <= 1.5 at 20 candidates.

Run: python benchmarks/policy_bench.py [--seconds S]   (or: make bench)
"""

from __future__ import annotations

import argparse
import statistics
import time

import msgspec

from bandit.contracts.events import Candidate, Context, PolicyRef, RewardedEvent
from bandit.contracts.slots import SlotConfig, SlotKind
from bandit.policies import build_policy, encoding
from sim.synthetic import SyntheticWorld

GENRES = ("romance", "action", "comedy", "documentary", "drama")


def page(n: int) -> tuple[Context, list[Candidate]]:
    """A realistic request: 5 user features, 3 context features, 4 features per candidate."""
    context = Context(
        user={"taste": "romance", "age": 34, "country": "DE", "tenure_days": 812, "kids": False},
        request={"device": "tv", "hour": 21, "weekday": "fri"},
    )
    candidates = [
        Candidate(
            id=f"title:{1000 + i}",
            features={
                "genre": GENRES[i % 5],
                "tone": f"tone-{i % 7}",
                "popularity": 0.01 * i,
                "new": i % 3 == 0,
            },
        )
        for i in range(n)
    ]
    return context, candidates


def per_second(fn, seconds: float) -> float:
    """Best of 3 runs of `fn` for `seconds`/3 each: calls per second."""
    rates = []
    for _ in range(3):
        calls, start = 0, time.perf_counter()
        deadline = start + seconds / 3
        while (now := time.perf_counter()) < deadline:
            for _ in range(20):
                fn()
            calls += 20
        rates.append(calls / (now - start))
    return max(rates)


def trained(kind: SlotKind, n: int):
    slot = msgspec.structs.replace(SlotConfig(kind=kind), seed=1, select=min(10, n))
    policy = build_policy(slot)
    world = SyntheticWorld(kind, seed=1, candidates_per_round=min(n, 40), select=slot.select)
    for _ in range(500):
        round_ = world.draw()
        policy.learn(
            world.rewarded_event(round_, policy.decide(round_.context, round_.candidates), "b")
        )
    return policy, world


def bench(kind: SlotKind, n: int, seconds: float) -> dict[str, float]:
    policy, _ = trained(kind, n)
    context, candidates = page(n)
    count = min(policy.slot.select, n) if kind.ranked else 1
    if kind.ranked:
        prebuilt = encoding.ccb_example(context, candidates, count)
    else:
        prebuilt = encoding.cb_example(context, candidates)
    choice = policy.decide(context, candidates)
    decision = choice.event(
        "bench", time.time(), "b", "home", context, candidates, PolicyRef(name="b", version="v1"),
        user_hash="u",
    )  # fmt: skip
    rewards = [1.0] + [0.0] * (len(choice.chosen) - 1)
    event = RewardedEvent.from_decision(decision, rewards, impressed=True, joined_at=time.time())
    raw = per_second(lambda: policy.workspace.predict(prebuilt), seconds)
    decide = per_second(lambda: policy.decide(context, candidates), seconds)
    learn = per_second(lambda: policy.learn(event), seconds)

    def decide_cold():  # every candidate as if never seen: the action-text cache is emptied
        encoding._action_texts.clear()
        policy.decide(context, candidates)

    cold = per_second(decide_cold, seconds)
    return {"raw": raw, "decide": decide, "learn": learn, "ratio": raw / decide, "cold": raw / cold}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="per measurement")
    args = parser.parse_args()
    print(f"{'kind':<8}{'cands':>6}{'decisions/s':>13}{'learns/s':>11}{'raw predict/s':>15}"
          f"{'decide/raw':>12}{'cold/raw':>10}{'us/decide':>11}")  # fmt: skip
    ratios = {}
    for kind in SlotKind:
        for n in (5, 20, 50):
            r = bench(kind, n, args.seconds)
            ratios[(kind, n)] = r["ratio"]
            print(
                f"{kind.value:<8}{n:>6}{r['decide']:>13,.0f}{r['learn']:>11,.0f}"
                f"{r['raw']:>15,.0f}{r['ratio']:>12.2f}{r['cold']:>10.2f}"
                f"{1e6 / r['decide']:>11.1f}",
                flush=True,
            )
    at20 = [ratios[(k, 20)] for k in SlotKind]
    verdict = "meets" if max(at20) <= 1.5 else "MISSES"
    print(
        f"decide/raw at 20 candidates: max {max(at20):.2f}, mean {statistics.mean(at20):.2f} "
        f"({verdict} the 1.5 target); rows place min(10, n) positions"
    )


if __name__ == "__main__":
    main()
