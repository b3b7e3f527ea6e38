"""End-to-end learner throughput catching up on a backlog, against a bare kafka-python consume.

Pre-produces N decisions (10 candidates each) and their feedback (about 90% impressed, clicks
and plays per a synthetic world) to the embedded broker, then measures:

  bare     a kafka-python consumer reading every decision and feedback message (no decoding)
  learner  `artbandit learn`'s loop from its first message until every rewarded event is
           joined, learned and written to artbandit.rewarded (checkpoints included), once
           with a 60 s attribution window and once with the default (1,800 s), each in a
           lineage of its own (group, checkpoints, outputs) over the same backlog

and prints decisions/s for each and their ratio to the bare consume. Targets: learner >=
10,000 decisions/s, ratio >= 0.4. The group join before the first message is excluded.
With the default window the backlog's 60,000 decisions (10 minutes of event time) are all
open at once until the inputs are read to their ends; benchmarks/state_bench.py runs the
default window at two million open decisions.

Then the scaled design (docs/operations.md, "Scaling the learner"), on fresh topics with the
same backlog:

  join k=1, k=2  k join-only members (`learner.learns=false`, one process each) from the
                 first rewarded event written until every impressed decision is written
  rewarded       one rewarded learner (`artbandit learn --from-rewarded`) learning the
                 artwork slot from every partition of what they wrote

Run: python benchmarks/learner_bench.py [--decisions N]   (or: make bench)
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgspec
from kafka import KafkaConsumer

from bandit.contracts.slots import SlotConfig, SlotKind
from bandit.policies import build_policy
from kafkaio.embedded_broker import EmbeddedBroker
from kafkaio.produce import produce_stream
from learner.loop import KafkaLearner
from learner.rewarded_loop import RewardedLearner
from sim.synthetic import SyntheticWorld, logged_stream
from storage.config_file import load_config


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
        bare_rate = decisions / bare_s
        print(f"bare kafka-python consume: {(decisions + feedback) / bare_s:,.0f} messages/s "
              f"= {bare_rate:,.0f} decisions/s ({bare_s:.2f} s)")  # fmt: skip
        settings = (
            ("60 s", ["slots.artwork.attribution_window_s=60", "learner.allowed_lateness_s=10"]),
            ("default", []),
        )
        for name, extra in settings:
            run_config = lineage(config, f"w{len(extra)}", extra)
            window = run_config.slots["artwork"].attribution_window_s
            learner_s = learn(run_config, stream.learnable)
            learner_rate = decisions / learner_s
            print(f"learner, {name} window ({window:,.0f} s; join + learn + rewarded + "
                  f"checkpoints): {learner_rate:,.0f} decisions/s ({learner_s:.2f} s), "
                  f"ratio to bare {learner_rate / bare_rate:.2f}")  # fmt: skip
        print("targets: >= 10,000 decisions/s, ratio >= 0.4")
        print("\nscaled: join-only members, then one rewarded learner of every partition")
        for members in (1, 2):
            scaled = fresh_topics(config, f"k{members}")
            join_s = join_only(scaled, members, stream.impressed)
            print(f"join, k={members}: {decisions / join_s:,.0f} decisions/s ({join_s:.2f} s)")
        scaled_config = load_config(overrides=scaled, environ={})
        learned, learn_s = learn_rewarded(scaled_config, stream.learnable)
        print(f"rewarded learner (one process, every partition): {learned / learn_s:,.0f} "
              f"rewarded events learned/s = {decisions / learn_s:,.0f} decisions/s "
              f"({learned:,} learned once each in {learn_s:.2f} s; target >= 10,000)")  # fmt: skip


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


def lineage(config, name: str, extra: list[str]):
    """`config` with its own group, output topics, checkpoints and store, and `extra`."""
    root = Path(config.learner.checkpoint_dir).parent / name
    overrides = [
        f'kafka.bootstrap_servers="{config.kafka.bootstrap_servers}"',
        *(f'kafka.topics.{t}="{t}-{name}"' for t in ("rewarded", "models", "deadletter")),
        f'model_store.path="{root / "models"}"', f'learner.checkpoint_dir="{root / "ckpt"}"',
        f'learner.group_id="bench-{name}"', "learner.metrics_port=0", *extra,
    ]  # fmt: skip
    return load_config(overrides=overrides, environ={})


def fresh_topics(config, name: str) -> list[str]:
    """Settings of join-only members over `config`'s inputs, with their own group, output
    topics, checkpoints and store: a run that shares only the backlog."""
    topics = ("rewarded", "models", "deadletter")
    root = Path(config.learner.checkpoint_dir).parent / name
    return [
        f'kafka.bootstrap_servers="{config.kafka.bootstrap_servers}"',
        f'kafka.topics.decisions="{config.kafka.topics.decisions}"',
        f'kafka.topics.feedback="{config.kafka.topics.feedback}"',
        *(f'kafka.topics.{t}="{t}-{name}"' for t in topics),
        f'model_store.path="{root / "models"}"', f'learner.checkpoint_dir="{root / "ckpt"}"',
        f'learner.group_id="bench-{name}"', "learner.metrics_port=0",
        "slots.artwork.attribution_window_s=60", "learner.allowed_lateness_s=10",
        "learner.learns=false", "learner.max_poll_records=5000",
        "kafka.consumer.session_timeout_ms=2000", "kafka.consumer.heartbeat_interval_ms=400",
    ]  # fmt: skip


def join_only(overrides: list[str], members: int, impressed: int) -> float:
    """Seconds from the first rewarded event written by `members` join-only processes run
    with `overrides` until all `impressed` are."""
    config = load_config(overrides=overrides, environ={})
    settings = [f"--set={override}" for override in overrides]
    command = [sys.executable, "-m", "artbandit", "learn", "--quiet", *settings]
    processes = [
        subprocess.Popen(
            [*command, f'--set=learner.member="join-{i}"'],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in range(members)
    ]
    consumer = KafkaConsumer(
        config.kafka.topics.rewarded, bootstrap_servers=config.kafka.bootstrap_servers,
        auto_offset_reset="earliest", enable_auto_commit=False,
    )  # fmt: skip
    try:  # counted as read: the embedded broker's end offsets can lag what it serves
        read, first, deadline = 0, None, time.monotonic() + 600
        while read < impressed and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=100).values():
                first = first or time.perf_counter()
                read += len(messages)
        if read < impressed:
            raise RuntimeError(f"{read:,} of {impressed:,} rewarded events written in 600 s")
        return time.perf_counter() - first
    finally:
        consumer.close()
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(60)


def learn_rewarded(config, learnable: int) -> tuple[int, float]:
    """The rewarded learner of artwork over what the join members wrote, in this process."""
    slot = load_config(overrides=['learner.member="rewarded"', 'learner.slots=["artwork"]'],
                       environ={})  # fmt: skip
    config = msgspec.structs.replace(config, learner=msgspec.structs.replace(
        config.learner, member=slot.learner.member, slots=slot.learner.slots))  # fmt: skip
    learner = RewardedLearner(config, config.kafka.bootstrap_servers, serve_metrics=False)
    stop = threading.Event()
    thread = threading.Thread(target=learner.run, args=(stop,), daemon=True)
    thread.start()
    while learner.consumed == 0:
        time.sleep(0.002)
    first = time.perf_counter()
    while learner.outcomes["learned"] < learnable:
        time.sleep(0.002)
    elapsed = time.perf_counter() - first
    stop.set()
    thread.join(60)
    return learner.outcomes["learned"], elapsed


if __name__ == "__main__":
    main()
