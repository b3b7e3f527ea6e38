"""Scaling out on one machine: decisions/s of 1 vs 2 serving replicas, and joined decisions/s
of 1 vs 2 learner members of one consumer group.

Serving: `artbandit serve` replicas with one sync worker each, decisions logged to the
embedded broker, driven by wrk with full-page requests (8 connections in all, split over
the replicas as a round-robin load balancer would). Learners: `artbandit learn` processes
(one group, a shared checkpoint directory) catching up on the same backlog of decisions and
feedback in 4 partitions, timed from the last poll before any message was read to the last
example learned.
On 2 cores the replicas and members share the same CPUs as the broker and the load, so the
ratio shows what a second process buys here, not on a second machine.

    python benchmarks/scale_bench.py [--seconds 10] [--decisions 30000]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from serving_bench import full_page, ready, wrk

from bandit.contracts.slots import SlotConfig, SlotKind
from bandit.policies import build_policy
from kafkaio.embedded_broker import EmbeddedBroker, free_port
from kafkaio.produce import produce_stream
from sim.demo import scrape
from sim.synthetic import SyntheticWorld, logged_stream
from storage.config_file import load_config

ARTBANDIT = str(Path(sys.executable).with_name("artbandit"))


def _artbandit(verb: str, *settings: str) -> subprocess.Popen[bytes]:
    """`artbandit VERB --set S ...` in the background, quiet."""
    args = [ARTBANDIT, verb, "--quiet", *(a for setting in settings for a in ("--set", setting))]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def serving(bootstrap: str, replicas: int, seconds: float, workdir: str) -> float:
    """Requests/s summed over `replicas` replicas, 8 connections in all."""
    ports = [free_port() for _ in range(replicas)]
    processes = [
        _artbandit("serve", f"serving.port={port}", "serving.workers=1",
                   f'kafka.bootstrap_servers="{bootstrap}"',
                   f'model_store.path="{workdir}/models-{port}"')
        for port in ports
    ]  # fmt: skip
    try:
        for port in ports:
            deadline = time.monotonic() + 60
            while not ready(port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"replica on {port} did not become ready")
                time.sleep(0.2)
        for port in ports:
            wrk(port, full_page(), 2, 2, workdir)  # warm up
        results: list[float] = []

        def load(port: int) -> None:
            results.append(wrk(port, full_page(), 8 // replicas, seconds, workdir)["rps"])

        threads = [threading.Thread(target=load, args=(port,)) for port in ports]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return sum(results)
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)


def learners(bootstrap: str, members: int, decisions: int, workdir: Path) -> tuple[float, int]:
    """Decisions/s that `members` learners join and learn a fresh backlog at."""
    suffix = f"m{members}-{time.monotonic_ns()}"
    overrides = [
        f'kafka.bootstrap_servers="{bootstrap}"',
        *(f'kafka.topics.{t}="{t}-{suffix}"'
          for t in ("decisions", "feedback", "rewarded", "models", "deadletter")),
        f'model_store.path="{workdir / suffix / "models"}"',
        f'learner.checkpoint_dir="{workdir / suffix / "checkpoints"}"',
        f'learner.group_id="group-{suffix}"',
        "slots.artwork.attribution_window_s=60", "learner.allowed_lateness_s=10",
        "learner.partitions=4",
    ]  # fmt: skip
    config = load_config(overrides=overrides, environ={})
    world = SyntheticWorld(SlotKind.ARTWORK, seed=1, candidates_per_round=10, catalogue_size=400)
    logging_policy = build_policy(SlotConfig(kind=SlotKind.ARTWORK, policy="uniform", seed=1))
    stream = logged_stream(world, logging_policy, "artwork", decisions, time.time() - 86_400, 0.01)
    produce_stream(config, stream.events)
    ports = [free_port() for _ in range(members)]
    processes = [
        _artbandit("learn", *overrides, f"learner.member=member-{i}",
                   f"learner.metrics_port={port}")
        for i, port in enumerate(ports)
    ]  # fmt: skip
    try:
        # the last poll before anything was read: timing from there errs long, by one poll
        started = time.perf_counter()
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            polled = time.perf_counter()
            metrics = [scrape(port) for port in ports]
            consumed = sum(sum(m.get("artbandit_learner_events_consumed_total", {}).values())
                           for m in metrics)  # fmt: skip
            learned = sum(sum(m.get("artbandit_learner_examples_learned_total", {}).values())
                          for m in metrics)  # fmt: skip
            if not consumed:
                started = polled
            if learned >= stream.learnable:
                return decisions / (time.perf_counter() - started), int(learned)
            time.sleep(0.05)
        raise RuntimeError("the learners did not finish the backlog within 10 minutes")
    finally:
        for process in processes:
            process.terminate()
            process.wait(60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="wrk time per case")
    parser.add_argument("--decisions", type=int, default=30_000, help="learner backlog")
    args = parser.parse_args()
    if args.decisions < 10_000:
        parser.error("--decisions: at least 10,000, or the 50 ms polls dominate the timing")
    if shutil.which("wrk") is None:
        print("wrk is needed: apt-get install wrk", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="artbandit-scale-")
    try:
        with EmbeddedBroker() as broker:
            one = serving(broker.bootstrap_servers, 1, args.seconds, workdir)
            two = serving(broker.bootstrap_servers, 2, args.seconds, workdir)
            print(f"serving, full pages, 8 connections: 1 replica {one:,.0f} req/s, "
                  f"2 replicas {two:,.0f} req/s, ratio {two / one:.2f}", flush=True)  # fmt: skip
            single, learned_1 = learners(broker.bootstrap_servers, 1, args.decisions, Path(workdir))
            double, learned_2 = learners(broker.bootstrap_servers, 2, args.decisions, Path(workdir))
            print(f"learners, {args.decisions:,} decisions backlog: 1 member {single:,.0f} "
                  f"decisions/s, 2 members {double:,.0f} decisions/s, ratio {double / single:.2f} "
                  f"(learned {learned_1:,} and {learned_2:,}: each example once)")  # fmt: skip
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
