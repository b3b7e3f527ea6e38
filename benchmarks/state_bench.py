"""A learner member's state at real traffic: the default attribution window (1,800 s), about
1,000 decisions/s of event time, realistic artwork decisions, two million open decisions.

Puts a backlog of `--minutes` of event time on the embedded broker (decisions at `--rate`
per second, 8 candidates of 2 features and 3 user features each; 92% impressed a second
later, 6% of those clicked within 15 minutes, 40% of clicks played), in event-time order
as a frontend would send it. Then runs `artbandit learn` as its own process with the
default settings and watches it from outside every second: RSS, open decisions, each
checkpoint's duration and bytes, throughput. At `--kill-at` of the backlog it SIGKILLs the
learner and times the restart until it learns again; then it lets the learner catch up and
close every window, and checks the counts: every impressed treatment decision learned
exactly once, every impressed decision on the rewarded topic.

Run: python benchmarks/state_bench.py [--minutes 40] [--rate 1100]   (about 25 minutes)
"""

from __future__ import annotations

import argparse
import heapq
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from bandit.contracts import events
from bandit.contracts.events import Candidate, Context, DecisionEvent, FeedbackEvent, PolicyRef
from kafkaio import clients
from kafkaio.embedded_broker import EmbeddedBroker, free_port
from kafkaio.read import read_topic
from learner.checkpoint_store import CheckpointStore
from storage.config_file import load_config

CANDIDATES = 8
GENRES = ["drama", "comedy", "crime", "family", "documentary", "horror"]


@dataclass
class Backlog:
    decisions: int = 0
    feedback: int = 0
    impressed: int = 0
    learnable: int = 0  # impressed treatment decisions


@dataclass
class Sample:
    at: float
    rss_mb: float
    open: float
    consumed: float
    checkpoint_at: float
    checkpoint_s: float
    checkpoint_bytes: float


@dataclass
class Watch:
    samples: list[Sample] = field(default_factory=list)

    def checkpoints(self) -> list[Sample]:
        """One sample per checkpoint written, in order."""
        seen: dict[float, Sample] = {}
        for sample in self.samples:
            if sample.checkpoint_at > 0:
                seen.setdefault(sample.checkpoint_at, sample)
        return list(seen.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=40.0, help="of event time")
    parser.add_argument("--rate", type=float, default=1100.0, help="decisions/s of event time")
    parser.add_argument("--kill-at", type=float, default=0.6, help="fraction of the backlog")
    args = parser.parse_args()
    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        overrides = [
            f'kafka.bootstrap_servers="{broker.bootstrap_servers}"',
            f'model_store.path="{Path(tmp) / "models"}"',
            f'learner.checkpoint_dir="{Path(tmp) / "checkpoints"}"',
        ]
        config = load_config(overrides=overrides, environ={})
        window = config.slots["artwork"].attribution_window_s
        started = time.perf_counter()
        backlog = produce(config, args.rate, args.minutes * 60)
        print(f"backlog: {backlog.decisions:,} decisions + {backlog.feedback:,} feedback "
              f"({backlog.impressed:,} impressed, {backlog.learnable:,} learnable) over "
              f"{args.minutes:.0f} min of event time at {args.rate:,.0f}/s, window {window:.0f} s; "
              f"made and produced in {time.perf_counter() - started:.0f} s")  # fmt: skip
        run = Run(overrides, Path(tmp))
        watch = Watch()
        run.start()
        run.follow(watch, until=lambda s: s.consumed >= args.kill_at * backlog.decisions)
        killed = watch.samples[-1]
        run.kill()
        restart = run.restart(watch)
        resumed = len(watch.samples)
        run.follow(watch, until=lambda s: s.open == 0 and run.caught_up())
        run.stop()
        report(watch, killed, restart, resumed, run)
        verify(config, Path(tmp), backlog)


def decisions_and_feedback(rate: float, seconds: float, seed: int = 1) -> Iterator[object]:
    """Decisions at `rate`/s of event time ending an hour ago, with their feedback, merged in
    event-time order: what the frontend and serving would have sent."""
    rng = random.Random(seed)
    start = time.time() - seconds - 3600
    pending: list[tuple[float, int, FeedbackEvent]] = []
    count = int(rate * seconds)
    for n in range(count):
        ts = start + n / rate
        while pending and pending[0][0] <= ts:
            yield heapq.heappop(pending)[2]
        decision = make_decision(rng, f"d{n:09d}-{rng.getrandbits(48):012x}", ts)
        yield decision
        if rng.random() < 0.92:
            for feedback in feedback_of(rng, decision):
                heapq.heappush(pending, (feedback.ts, n, feedback))
    while pending:
        yield heapq.heappop(pending)[2]


def make_decision(rng: random.Random, decision_id: str, ts: float) -> DecisionEvent:
    ids = [f"art-{rng.randrange(2000)}" for _ in range(CANDIDATES)]
    ids = list(dict.fromkeys(ids)) or ["art-0"]
    candidates = [
        Candidate(
            id=i,
            features={"genre": rng.choice(GENRES), "warmth": round(rng.random(), 3)},
            default=k == 0,
        )
        for k, i in enumerate(ids)
    ]
    chosen = rng.randrange(len(ids))
    return DecisionEvent(
        decision_id=decision_id, ts=ts, slot="artwork", key=f"title-{rng.randrange(500)}",
        user_hash=f"u{rng.randrange(1_000_000):07d}",
        group="treatment" if rng.random() < 0.9 else "control",
        policy=PolicyRef(name="vw", version="v00000001"),
        context=Context(user={"country": rng.choice(["us", "gb", "de", "br"]),
                              "device": rng.choice(["tv", "phone", "web"]),
                              "tenure": float(rng.randrange(60))}),
        candidates=candidates, chosen=[ids[chosen]], probabilities=[0.2 + 0.6 * rng.random()],
        explored=False,
    )  # fmt: skip


def feedback_of(rng: random.Random, decision: DecisionEvent) -> list[FeedbackEvent]:
    seen = decision.ts + 1.0
    out = [FeedbackEvent(decision_id=decision.decision_id, ts=seen, type="impression")]
    if rng.random() < 0.06:
        clicked = seen + rng.uniform(2, 900)
        out.append(FeedbackEvent(decision_id=decision.decision_id, ts=clicked, type="click"))
        if rng.random() < 0.4:
            out.append(FeedbackEvent(decision_id=decision.decision_id, ts=clicked + 5, type="play"))
    return out


def produce(config, rate: float, seconds: float) -> Backlog:
    topics = config.kafka.topics
    producer = clients.producer(
        config.kafka, "tool_producer", config.kafka.bootstrap_servers,
        linger_ms=20, batch_size=512 << 10, max_request_size=8 << 20,
    )  # fmt: skip
    backlog = Backlog()
    treatment: set[str] = set()
    total = int(rate * seconds)
    shown = -1
    for event in decisions_and_feedback(rate, seconds):
        key = event.decision_id.encode()  # type: ignore[attr-defined]
        if isinstance(event, DecisionEvent):
            producer.send(topics.decisions, key=key, value=events.encode(event))
            backlog.decisions += 1
            if event.group == "treatment":
                treatment.add(event.decision_id)
            if backlog.decisions * 10 // total != shown:
                shown = backlog.decisions * 10 // total
                print(f"  producing: {backlog.decisions:,} of {total:,} decisions", flush=True)
        else:
            assert isinstance(event, FeedbackEvent)
            producer.send(topics.feedback, key=key, value=events.encode(event))
            backlog.feedback += 1
            if event.type == "impression":
                backlog.impressed += 1
                backlog.learnable += event.decision_id in treatment
    producer.flush(600)
    producer.close(30)
    return backlog


class Run:
    """`artbandit learn` as its own process, with the default settings and a metrics port."""

    def __init__(self, overrides: list[str], root: Path):
        self.overrides = overrides
        self.log = root / "learner.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.checkpoint_dir = root / "checkpoints"

    def start(self) -> None:
        self.port = free_port()
        args = [f"--set={o}" for o in [*self.overrides, f"learner.metrics_port={self.port}"]]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "artbandit", "learn", "--quiet", *args],
                stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

    def metrics(self) -> dict[str, float]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return {}
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("#") or not line:
                continue
            sample, _, value = line.rpartition(" ")
            name = sample.split("{", 1)[0]
            values[name] = values.get(name, 0.0) + float(value)
        return values

    def sample(self) -> Sample | None:
        assert self.process is not None
        values = self.metrics()
        if not values:
            return None
        return Sample(
            at=time.monotonic(),
            rss_mb=rss_mb(self.process.pid),
            open=values.get("artbandit_learner_open_decisions", 0.0),
            consumed=values.get("artbandit_learner_events_consumed_total", 0.0),
            checkpoint_at=values.get("artbandit_learner_last_checkpoint_timestamp_seconds", 0.0),
            checkpoint_s=values.get("artbandit_learner_last_checkpoint_duration_seconds", 0.0),
            checkpoint_bytes=values.get("artbandit_learner_last_checkpoint_bytes", 0.0),
        )

    def follow(self, watch: Watch, until) -> None:
        """Sample every second until `until(sample)`; print a line every 30 s."""
        assert self.process is not None
        last_print = 0.0
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the learner exited with {self.process.returncode}; "
                                   f"see {self.log}")  # fmt: skip
            sample = self.sample()
            if sample is not None:
                sample.consumed = self.decisions_read()
                watch.samples.append(sample)
                if sample.at - last_print >= 30:
                    last_print = sample.at
                    print(f"  {sample.consumed:>12,.0f} decisions read, {sample.open:>10,.0f} "
                          f"open, RSS {sample.rss_mb:,.0f} MB, last checkpoint "
                          f"{sample.checkpoint_s:.2f} s / {sample.checkpoint_bytes / 1e6:.1f} MB",
                          flush=True)  # fmt: skip
                if until(sample):
                    return
            time.sleep(1.0)

    def decisions_read(self) -> float:
        values = self.metrics_labelled("artbandit_learner_events_consumed_total")
        return sum(v for labels, v in values if 'topic="artbandit.decisions"' in labels)

    def metrics_labelled(self, name: str) -> list[tuple[str, float]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return []
        out = []
        for line in text.splitlines():
            if line.startswith(name + "{"):
                sample, _, value = line.rpartition(" ")
                out.append((sample, float(value)))
        return out

    def caught_up(self) -> bool:
        return self.metrics().get("artbandit_learner_consumer_lag", 1.0) == 0

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def restart(self, watch: Watch) -> tuple[float, float, float]:
        """Start again; seconds until it serves metrics, until the group assigned it its
        partitions, and until it learns again (their open decisions are back: the gauge is
        set after the first step, which reads them back)."""
        started = time.monotonic()
        self.start()
        up = assigned = None
        while True:
            values = self.metrics()
            now = time.monotonic() - started
            if values and up is None:
                up = now
            if values.get("artbandit_learner_assigned_partitions", 0) > 0 and assigned is None:
                assigned = now
            sample = self.sample() if values else None
            if sample is not None and sample.open > 0:
                watch.samples.append(sample)
                return up or now, assigned or now, now
            time.sleep(0.1)

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(300)


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def report(
    watch: Watch, killed: Sample, restart: tuple[float, float, float], resumed: int, run: Run
) -> None:
    samples = watch.samples
    peak_open = max(s.open for s in samples)
    held = [s for s in samples if s.open >= 0.9 * peak_open]
    checkpoints = watch.checkpoints()
    durations = sorted(s.checkpoint_s for s in checkpoints)
    sizes = [s.checkpoint_bytes for s in checkpoints]
    p = lambda q: durations[min(len(durations) - 1, int(q * len(durations)))]  # noqa: E731
    rate_window = [s for s in samples if s.at <= killed.at]
    first = next(s for s in rate_window if s.consumed > 0)
    throughput = (killed.consumed - first.consumed) / max(killed.at - first.at, 1e-9)
    log = run.log.read_text(errors="replace")
    heartbeat = [line for line in log.splitlines()
                 if "heartbeat" in line.lower() or "session" in line.lower()]  # fmt: skip
    print("\nresults")
    print(f"  open decisions: peak {peak_open:,.0f}; at the kill {killed.open:,.0f}")
    print(f"  RSS while >= 90% of peak open: median {statistics.median(s.rss_mb for s in held):,.0f} MB,"
          f" max {max(s.rss_mb for s in held):,.0f} MB; max over the run "
          f"{max(s.rss_mb for s in samples):,.0f} MB")  # fmt: skip
    print(f"  checkpoints: {len(checkpoints)}; duration p50 {p(0.5):.3f} s, p99 {p(0.99):.3f} s, "
          f"max {durations[-1]:.3f} s")  # fmt: skip
    print(f"  bytes per checkpoint: median {statistics.median(sizes) / 1e6:.1f} MB, max "
          f"{max(sizes) / 1e6:.1f} MB")  # fmt: skip
    # at steady state: every window full, closing as many as open (after the restart)
    full = [s for s in samples[resumed:] if s.open >= 0.95 * peak_open]
    steady = (full[-1].consumed - full[0].consumed) / max(full[-1].at - full[0].at, 1e-9)
    print(f"  throughput: {throughput:,.0f} decisions/s while the first window fills (nothing "
          f"closes, nothing is learned); {steady:,.0f} decisions/s at steady state "
          f"({len(full)} s with >= 95% of peak open: reading, closing and learning)")  # fmt: skip
    up, assigned, learning = restart
    print(f"  restore after SIGKILL: {learning:.1f} s from the new process's start until it "
          f"learns again: metrics up at {up:.1f} s, partitions assigned at {assigned:.1f} s "
          "(the group waits out the dead member's session), open decisions read back by "
          f"{learning:.1f} s")  # fmt: skip
    print(f"  heartbeat or session lines in the learner's log: {len(heartbeat)}")
    for line in heartbeat[:5]:
        print(f"    {line[:160]}")
    segments = run.checkpoint_dir / "segments"
    on_disk = sum(f.stat().st_size for f in segments.rglob("*.seg")) if segments.exists() else 0
    print(f"  segments on disk at the end: {on_disk / 1e6:,.0f} MB")


def verify(config, root: Path, backlog: Backlog) -> None:
    checkpoint = CheckpointStore(root / "checkpoints", config.learner.member).latest()
    assert checkpoint is not None
    learned = checkpoint.slots["artwork"].learned_here
    ids: set[str] = set()

    class Id(msgspec.Struct):
        decision_id: str

    decoder = msgspec.json.Decoder(Id)
    for value in read_topic(config.kafka, config.kafka.bootstrap_servers,
                            config.kafka.topics.rewarded):  # fmt: skip
        ids.add(decoder.decode(value).decision_id)
    print(f"  learned {learned:,} of {backlog.learnable:,} learnable "
          f"({'exact' if learned == backlog.learnable else 'NOT EXACT'}); rewarded topic: "
          f"{len(ids):,} distinct of {backlog.impressed:,} impressed "
          f"({'exact' if len(ids) == backlog.impressed else 'NOT EXACT'})")  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
