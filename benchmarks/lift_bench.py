"""The lift endpoint over 10 M rewarded events: running sums against reading the log.

Prints (1) what keeping the sums costs the learner per rewarded event (`bandit.measurement.lift.tally`
on real events), (2) the time `GET /v1/admin/lift` spends answering from the sums of 10 M
rewarded events spread over 3 slots x 12 partitions (the files a learner writes, built here
with the same buckets), and (3) what reading those 10 M events back would cost instead,
from the measured decode rate of rewarded events alone (a lower bound: no Kafka fetch).

    python benchmarks/lift_bench.py [--events 10000000] [--partitions 12]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import zlib

import msgspec
import numpy as np

from bandit.contracts import events
from bandit.contracts.slots import SlotConfig, SlotKind
from bandit.measurement.tallies import GROUPS, UNIT_BUCKETS, GroupTally, PartitionTally, tally
from bandit.policies import build_policy
from serving.admin import lift_answer
from sim.synthetic import SyntheticWorld, rewarded_log
from storage.config_file import load_config
from storage.model_store import ModelStore

SLOTS = ("artwork", "hero", "rows")


def sample_events(count: int) -> list[events.RewardedEvent]:
    """Rewarded artwork events of a synthetic world, spread over 20,000 people and 2 groups."""
    world = SyntheticWorld(SlotKind.ARTWORK, seed=1, candidates_per_round=5, catalogue_size=40)
    uniform = build_policy(SlotConfig(kind=SlotKind.ARTWORK, policy="uniform", seed=1))
    logged = rewarded_log(world, uniform, "artwork", 1000)
    return [
        msgspec.structs.replace(
            logged[i % len(logged)], decision_id=f"d{i}", user_hash=f"u{i % 20_000}",
            group="control" if i % 20_000 < 1000 else "treatment",
        )
        for i in range(count)
    ]  # fmt: skip


def per_event_cost(sample: list[events.RewardedEvent]) -> float:
    started = time.perf_counter()
    tally(sample)
    return (time.perf_counter() - started) / len(sample)


def decode_rate(sample: list[events.RewardedEvent]) -> float:
    lines = [events.encode(e) for e in sample]
    started = time.perf_counter()
    for line in lines:
        events.decode(line, events.RewardedEvent)
    return len(lines) / (time.perf_counter() - started)


def write_sums(store: ModelStore, topic: str, total: int, partitions: int, seed: int) -> int:
    """Sums of `total` events (people drawn from 2 M, 5% in control, reward 0 / 0.5 / 1.5),
    split over slots and partitions, written as a learner does; returns the events summed."""
    rng = np.random.default_rng(seed)
    people = np.array([zlib.crc32(f"person-{i}".encode()) % UNIT_BUCKETS for i in range(20_000)])
    shares = np.full(len(SLOTS) * partitions, total // (len(SLOTS) * partitions))
    shares[: total % len(shares)] += 1
    summed = 0
    for slot_index, slot in enumerate(SLOTS):
        for partition in range(partitions):
            n = int(shares[slot_index * partitions + partition])
            bucket = people[rng.integers(0, len(people), n)]
            control = rng.random(n) < 0.05
            reward = rng.choice([0.0, 0.5, 1.5], n, p=[0.9, 0.07, 0.03])
            groups = {}
            for name, mask in zip(GROUPS, (~control, control), strict=True):
                counts = np.bincount(bucket[mask], minlength=UNIT_BUCKETS)
                sums = np.bincount(bucket[mask], weights=reward[mask], minlength=UNIT_BUCKETS)
                groups[name] = GroupTally(counts.tolist(), sums.tolist())
            store.write_tally(PartitionTally(slot, partition, topic, n, time.time(), groups))
            summed += n
    return summed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()

    sample = sample_events(200_000)
    print(f"learner: keeping the sums costs {per_event_cost(sample) * 1e6:.2f} us per rewarded "
          f"event ({len(sample):,} events through bandit.measurement.lift.tally)")  # fmt: skip
    rate = decode_rate(sample[:100_000])
    print(f"reading the log instead: decoding alone runs at {rate:,.0f} rewarded events/s, so "
          f"{args.events:,} events take >= {args.events / rate:.0f} s per answer")  # fmt: skip

    with tempfile.TemporaryDirectory() as root:
        config = load_config(environ={}, overrides=[f'model_store.path="{root}/models"'])
        store = ModelStore(config.model_store.path)
        started = time.perf_counter()
        summed = write_sums(store, config.kafka.topics.decisions, args.events, args.partitions, 7)
        print(f"wrote the sums of {summed:,} events: {len(SLOTS)} slots x {args.partitions} "
              f"partitions ({time.perf_counter() - started:.1f} s to build)")  # fmt: skip
        timings = []
        for _ in range(args.requests):
            started = time.perf_counter()
            answer = lift_answer(store, config)
            timings.append(time.perf_counter() - started)
        assert answer["events"] == summed, (answer["events"], summed)
        ms = np.array(timings) * 1e3
        print(f"GET /v1/admin/lift over {answer['events']:,} events: p50 {np.median(ms):.1f} ms, "
              f"p99 {np.percentile(ms, 99):.1f} ms ({args.requests} answers, in process)")  # fmt: skip
        for slot in answer["slots"]:
            x = slot["lift"]
            print(f"  {slot['slot']:<8} lift {x['value']:+.2%} [{x['low']:+.2%}, {x['high']:+.2%}]"
                  f", SRM p = {slot['srm_p_value']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
