"""End-to-end learner throughput catching up on a backlog, against a bare kafka-python consume.

Pre-produces N decisions (10 candidates each) and their feedback (about 90% impressed, clicks
and plays per a synthetic world) to the embedded broker, then measures:

  bare     a kafka-python consumer reading every decision and feedback message (no decoding)
  learner  `artbandit learn`'s loop from its first message until every rewarded event is
           joined, learned and written to artbandit.rewarded (checkpoints included)

and prints decisions/s for both and their ratio. Targets: learner >= 10,000 decisions/s,
ratio >= 0.4. The group join before the first message is excluded from both.

Run: python benchmarks/learner_bench.py [--decisions N]   (or: make bench)
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from kafka import KafkaConsumer

from bandit.config import load_config
from bandit.policies import build_policy
from bandit.slots import SlotConfig, SlotKind
from kafkaio.embedded_broker import EmbeddedBroker
from kafkaio.produce import produce_stream
from learner.loop import KafkaLearner
from sim.synthetic import SyntheticWorld, logged_stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=60_000)
    args = parser.parse_args()
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        config = load_config(
            overrides=[
                f'kafka.bootstrap_servers="{broker.bootstrap_servers}"',
                f'model_store.path="{Path(tmp) / "models"}"',
                f'learner.checkpoint_dir="{Path(tmp) / "checkpoints"}"',
                "learner.metrics_port=0",
                "slots.artwork.attribution_window_s=60",
                "learner.allowed_lateness_s=10",
            ],
            environ={},
        )
        world = SyntheticWorld(
            SlotKind.ARTWORK, seed=1, candidates_per_round=10, catalogue_size=400
        )
        logging_policy = build_policy(SlotConfig(kind=SlotKind.ARTWORK, policy="uniform", seed=1))
        started = time.perf_counter()
        stream = logged_stream(
            world, logging_policy, "artwork", args.decisions, time.time() - 86_400, 0.01
        )
        decisions, feedback = produce_stream(config, stream.events)
        print(
            f"backlog: {decisions:,} decisions + {feedback:,} feedback "
            f"({stream.impressed:,} impressed, {stream.learnable:,} learnable), "
            f"made and produced in {time.perf_counter() - started:.1f} s"
        )
        bare_s = bare_consume(config, decisions + feedback)
        learner_s = learn(config, stream.learnable)
        bare_rate, learner_rate = decisions / bare_s, decisions / learner_s
        print(f"bare kafka-python consume: {(decisions + feedback) / bare_s:,.0f} messages/s "
              f"= {bare_rate:,.0f} decisions/s ({bare_s:.2f} s)")  # fmt: skip
        print(f"learner (join + learn + rewarded + checkpoints): {learner_rate:,.0f} decisions/s "
              f"({learner_s:.2f} s)")  # fmt: skip
        print(f"ratio learner / bare: {learner_rate / bare_rate:.2f}   "
              f"(targets: >= 10,000 decisions/s, ratio >= 0.4)")  # fmt: skip


def bare_consume(config, total: int) -> float:
    topics = config.kafka.topics
    consumer = KafkaConsumer(
        topics.decisions, topics.feedback, bootstrap_servers=config.kafka.bootstrap_servers,
        auto_offset_reset="earliest", check_crcs=False, fetch_max_bytes=64 << 20,
        max_partition_fetch_bytes=8 << 20, max_poll_records=5000,
    )  # fmt: skip
    read, first = 0, None
    while read < total:
        for messages in consumer.poll(timeout_ms=500).values():
            first = first or time.perf_counter()
            read += len(messages)
    elapsed = time.perf_counter() - first
    consumer.close()
    return elapsed


def learn(config, learnable: int) -> float:
    learner = KafkaLearner(config, config.kafka.bootstrap_servers)
    stop = threading.Event()
    thread = threading.Thread(target=learner.run, args=(stop,), daemon=True)
    thread.start()
    while learner.status().consumed == 0:
        time.sleep(0.005)
    first = time.perf_counter()
    while learner.status().learned.get("artwork", 0) < learnable:
        time.sleep(0.005)
    elapsed = time.perf_counter() - first
    stop.set()
    thread.join(60)
    return elapsed


if __name__ == "__main__":
    main()
