"""`artbandit tune` on a rewarded topic as long as its window, and on one 20 times longer.

Puts rewarded events (the artwork slot's treatment and control, and hero's, as a learner
writes them) on two topics of the embedded broker: one holding `--window` artwork treatment
events, one holding 20 times as many. Times one `artbandit tune --dry-run --slot artwork`
round on each (the real command, its own process, `tuning.window_events=--window`), and the
read of the window alone against a read of the whole topic (what a round cost before).

Run: python benchmarks/tune_window_bench.py [--window 10000] [--times 20]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time

from bandit.contracts import events
from bandit.contracts.events import Candidate, Context, DecisionEvent, PolicyRef, RewardedEvent
from bandit.contracts.kafka import KafkaConfig
from kafkaio import clients
from kafkaio.embedded_broker import EmbeddedBroker
from kafkaio.read import decoded, read_topic, recent_treatment_messages

TREATMENT_SHARE = 0.45  # of all rewarded events: artwork treatment (the rest: control, hero)


def rewarded(rng: random.Random, n: int, ts: float) -> RewardedEvent:
    slot = "artwork" if rng.random() < 0.5 else "hero"
    ids = [f"c{rng.randrange(300)}" for _ in range(8)]
    ids = list(dict.fromkeys(ids))
    decision = DecisionEvent(
        decision_id=f"d{n:09d}", ts=ts, slot=slot, key=f"title-{rng.randrange(200)}",
        user_hash=f"u{rng.randrange(100_000)}",
        group="treatment" if rng.random() < 0.9 else "control",
        policy=PolicyRef(name="vw", version="v00000001"),
        context=Context(user={"device": rng.choice(["tv", "web", "phone"])}),
        candidates=[Candidate(id=i, features={"genre": rng.choice("abcdef")}) for i in ids],
        chosen=[ids[0]], probabilities=[0.5], explored=False,
    )  # fmt: skip
    reward = 1.0 if rng.random() < 0.05 + 0.05 * (ids[0] < "c150") else 0.0
    return RewardedEvent.from_decision(decision, [reward], True, ts + 60)


def fill(bootstrap: str, topic: str, treatment_events: int) -> int:
    total = int(treatment_events / TREATMENT_SHARE)
    rng = random.Random(1)
    producer = clients.producer(KafkaConfig(), "tool_producer", bootstrap, linger_ms=20,
                                batch_size=512 << 10)  # fmt: skip
    start = time.time() - total
    for n in range(total):
        event = rewarded(rng, n, start + n)
        producer.send(topic, key=event.decision_id.encode(), value=events.encode(event))
    producer.flush(600)
    producer.close(30)
    return total


def tune_round(bootstrap: str, topic: str, window: int, store: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "artbandit", "tune", "--dry-run", "--quiet", "--slot", "artwork",
         f'--set=kafka.bootstrap_servers="{bootstrap}"',
         f'--set=kafka.topics.rewarded="{topic}"', f"--set=tuning.window_events={window}",
         f'--set=model_store.path="{store}"'],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=10_000, help="tuning.window_events")
    parser.add_argument("--times", type=int, default=20, help="the long topic, in windows")
    args = parser.parse_args()
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        sizes = {"1x": args.window, f"{args.times}x": args.window * args.times}
        for name, treatment in sizes.items():
            total = fill(bootstrap, f"rewarded-{name}", treatment)
            print(f"topic {name}: {total:,} rewarded events, about {treatment:,} artwork "
                  "treatment", flush=True)  # fmt: skip
        print(f"\ntuning.window_events={args.window:,} (default 50,000)")
        for name in sizes:
            topic = f"rewarded-{name}"
            started = time.perf_counter()
            found = recent_treatment_messages(
                KafkaConfig(), bootstrap, topic, "artwork", args.window
            )
            window = list(decoded(found))
            read_s = time.perf_counter() - started
            started = time.perf_counter()
            whole = sum(1 for _ in read_topic(KafkaConfig(), bootstrap, topic))
            whole_s = time.perf_counter() - started
            round_s = [tune_round(bootstrap, topic, args.window, f"/tmp/tune-bench-{name}")
                       for _ in range(2)]  # fmt: skip
            print(f"topic {name}: window read {read_s:.2f} s ({len(window):,} events); whole "
                  f"topic read {whole_s:.2f} s ({whole:,}); `artbandit tune` round "
                  f"{' / '.join(f'{s:.1f}' for s in round_s)} s")  # fmt: skip


if __name__ == "__main__":
    main()
