"""What the fault tests share: the table they fill, `artbandit serve` processes, and steady
page traffic from a round-robin client that fails over to the next replica."""

from __future__ import annotations

import http.client
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
from kafka import KafkaConsumer

from bandit.config import Config
from bandit.contracts import events
from bandit.contracts.slots import SlotKind
from bandit.measurement.tallies import merge
from bandit.policies import build_policy
from kafkaio.embedded_broker import die_with_parent, free_port
from kafkaio.produce import produce_stream
from learner.checkpoint_store import CheckpointStore
from serving.client import Client
from sim.synthetic import LoggedStream, SyntheticWorld, logged_stream
from storage.config_file import load_config
from storage.model_store import ModelStore
from tests.helpers import metric_value, read_all, wait_for

ARTBANDIT = str(Path(sys.executable).with_name("artbandit"))


@dataclass(frozen=True)
class FaultRow:
    """One line of the table the suite prints; None where a column does not apply."""

    fault: str
    load: str
    requests_failed: int | None
    events_lost: int | None
    events_duplicated: int | None
    recovery_s: float | None
    note: str = ""


ROWS: list[FaultRow] = []


def table(rows: list[FaultRow]) -> list[str]:
    header = ("fault", "load during fault", "requests failed", "events lost",
              "events duplicated", "recovery", "note")  # fmt: skip

    def cell(value) -> str:
        if value is None:
            return "-"
        return f"{value:.2f} s" if isinstance(value, float) else str(value)

    body = [
        (r.fault, r.load, cell(r.requests_failed), cell(r.events_lost),
         cell(r.events_duplicated), cell(r.recovery_s), r.note)
        for r in rows
    ]  # fmt: skip
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in
            [header, tuple("-" * w for w in widths), *body]]  # fmt: skip


class ServeProcess:
    """`artbandit serve` on its own loopback port, with `overrides`; killed at the end."""

    def __init__(self, overrides: list[str], workers: int = 2):
        self.port = free_port()
        args = [a for o in overrides for a in ("--set", o)]
        args += ["--set", f"serving.port={self.port}", "--set", f"serving.workers={workers}"]
        self.process = subprocess.Popen(
            [ARTBANDIT, "serve", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent, start_new_session=True,
        )  # fmt: skip
        wait_for(self.ready, timeout_s=60, interval_s=0.2)

    def ready(self) -> bool:
        try:
            return Client("127.0.0.1", self.port, timeout_s=2).get("/readyz")[0] == 200
        except OSError:
            return False

    def metric(self, name: str, **labels: str) -> float:
        return metric_value(Client("127.0.0.1", self.port).get("/metrics")[1], name, **labels)

    def kill(self) -> None:
        """SIGKILL to the server and its workers at once, as when its machine dies."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


PAGE = {
    "context": {"device": "tv"},
    "slots": [
        {"slot": "hero", "candidates": [{"id": f"t{i}"} for i in range(4)]},
        {"slot": "artwork", "key": "title:1", "candidates": [{"id": f"a{i}"} for i in range(4)]},
        {"slot": "rows", "key": "home", "select": 3,
         "candidates": [{"id": f"r{i}"} for i in range(6)]},
    ],
}  # fmt: skip


@dataclass
class Answer:
    started: float  # monotonic
    latency_s: float
    ok: bool
    decision_ids: list[str] = field(default_factory=list)


class PageLoad:
    """`threads` clients, each asking for `rate` pages a second, round-robin over `ports`.

    A request whose replica cannot be reached (refused, reset) goes to the next one, as a
    load balancer would retry it; only a request no replica answers with 200 fails.
    """

    def __init__(self, ports: list[int], threads: int = 4, rate: float = 20.0):
        self.ports = ports
        self.interval_s = 1.0 / rate
        self.answers: list[Answer] = []
        self.failovers = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)
        ]

    def __enter__(self) -> PageLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, n: int) -> None:
        clients: dict[int, Client] = {}
        turn = n
        user = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            user += 1
            body = {**PAGE, "user": {"id": f"u{n}-{user}"}}
            started = time.monotonic()
            answer = Answer(started, 0.0, False)
            for attempt in range(len(self.ports)):
                port = self.ports[(turn + attempt) % len(self.ports)]
                try:
                    client = clients.get(port) or clients.setdefault(
                        port, Client("127.0.0.1", port, timeout_s=10)
                    )
                    status, payload = client.post("/v1/decide", body)
                except (OSError, http.client.HTTPException):  # killed mid-answer, too
                    clients.pop(port, None)
                    with self._lock:
                        self.failovers += 1
                    continue
                if status == 200:
                    answer.ok = True
                    answer.decision_ids = [d["decision_id"] for d in payload["decisions"]]
                break
            turn += 1
            answer.latency_s = time.monotonic() - started
            with self._lock:
                self.answers.append(answer)
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def between(self, start: float, end: float) -> list[Answer]:
        with self._lock:
            return [a for a in self.answers if start <= a.started < end]

    @property
    def failed(self) -> int:
        with self._lock:
            return sum(not a.ok for a in self.answers)

    def decision_ids(self) -> list[str]:
        with self._lock:
            return [i for a in self.answers for i in a.decision_ids]


def p99_ms(answers: list[Answer]) -> float:
    return float(np.percentile([a.latency_s for a in answers], 99) * 1000) if answers else 0.0


def lineage_overrides(root: str | Path, name: str) -> list[str]:
    """`--set` overrides that give a learner lineage its own group, output topics, checkpoints
    and model store (new ones on every call), over input topics it shares with others."""
    suffix = f"{name}-{os.getpid()}-{time.time_ns()}"
    return [
        f'learner.group_id="{suffix}"',
        f'kafka.topics.rewarded="rewarded-{suffix}"',
        f'kafka.topics.deadletter="deadletter-{suffix}"',
        f'kafka.topics.models="models-{suffix}"',
        f'learner.checkpoint_dir="{root}/{suffix}"',
        f'model_store.path="{root}/{suffix}-models"',
    ]


class LearnerRun:
    """One learner lineage (its own group, checkpoints and output topics) as subprocesses."""

    def __init__(self, base: list[str], root: str, name: str):
        self.name = name
        self.overrides = [*base, *lineage_overrides(root, name)]
        self.config = load_config(overrides=self.overrides, environ={})
        consumer = KafkaConsumer(bootstrap_servers=self.config.kafka.bootstrap_servers)
        self.partitions = len(consumer.partitions_for_topic(self.config.kafka.topics.decisions))
        consumer.close()
        self.process: subprocess.Popen | None = None
        self.log = Path(root) / f"{name}-learner.log"  # every start's stderr, appended
        self.port = 0

    def start(self, max_file_bytes: int | None = None) -> None:
        """Start a learner; `max_file_bytes` makes writing a larger file fail (EFBIG), as a
        full disk would (stderr then goes to a pipe, which the limit does not cover)."""
        self.port = free_port()
        args = [f"--set={o}" for o in [*self.overrides, f"learner.metrics_port={self.port}"]]
        self.log.parent.mkdir(parents=True, exist_ok=True)

        def limit() -> None:  # pragma: no cover - runs in the child
            if max_file_bytes is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_bytes, max_file_bytes))

        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "artbandit", "learn", "--quiet", *args],
                stdout=subprocess.DEVNULL, preexec_fn=limit,
                stderr=log if max_file_bytes is None else subprocess.PIPE,
            )  # fmt: skip

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(60) == 0

    def learned_so_far(self) -> float:
        """This lineage's examples learned (restored from its checkpoint, then counted on)."""
        return self.metric("artbandit_learner_examples_learned_total")

    def metric(self, name: str) -> float:
        assert self.process.poll() is None, f"learner exited with {self.process.returncode}"
        try:
            text = Client("127.0.0.1", self.port).get("/metrics")[1]
        except OSError:  # not listening yet
            return 0
        return metric_value(text, name)

    def rewarded(self) -> dict[str, tuple]:
        """Deduplicated by decision_id, as replay reads the topic."""
        out = {}
        for value in read_all(
            self.config.kafka.bootstrap_servers, self.config.kafka.topics.rewarded, 1.0
        ):
            event = events.decode(value, events.RewardedEvent)
            out[event.decision_id] = msgspec.to_builtins(event)
        return out

    def rewarded_ids(self) -> set[str]:
        return set(self.rewarded())

    def wait_until_rewarded(self, count: int) -> None:
        """Until the topic holds every rewarded event and this learner has caught up (a killed
        predecessor's outputs may already be on the topic before its successor re-learns)."""
        wait_for(
            lambda: (len(self.rewarded_ids()) >= count and self.caught_up())
            or self.process.poll() is not None,
            timeout_s=240, interval_s=1.0,
        )  # fmt: skip
        assert self.process.poll() is None, f"learner exited with {self.process.returncode}"

    def caught_up(self) -> bool:
        """Both inputs read to their ends on every partition, and no window left open."""
        try:
            text = Client("127.0.0.1", self.port).get("/metrics")[1]
        except OSError:
            return False
        lag_series = [
            line for line in text.splitlines() if line.startswith("artbandit_learner_consumer_lag{")
        ]
        return (
            len(lag_series) == 2 * self.partitions
            and metric_value(text, "artbandit_learner_consumer_lag") == 0
            and metric_value(text, "artbandit_learner_open_decisions") == 0
        )

    def lift_sums(self) -> dict[tuple[str, str, str], tuple[list[int], list[float]]]:
        """The lift endpoint's sums as this lineage wrote them: (slot, period, group) ->
        (decisions, reward per bucket of people), added over partitions."""
        store = ModelStore(self.config.model_store.path)
        tallies = merge({t.slot: t.periods} for s in self.config.slots for t in store.tallies(s))
        return {
            (slot, period, name): (g.decisions, g.reward)
            for slot, periods in tallies.items()
            for period, groups in periods.items()
            for name, g in groups.items()
        }

    def learned(self) -> dict[str, int]:
        learner = self.config.learner
        checkpoint = CheckpointStore(learner.checkpoint_dir, learner.member).latest()
        return {slot: state.learned_here for slot, state in checkpoint.slots.items()}


def artwork_backlog(overrides: list[str], seed: int, decisions: int) -> tuple[Config, LoggedStream]:
    """A two-hour-old artwork stream of `decisions` put on the topics of `overrides`: windows
    close as it is read, so a learner catching up on it learns everything by the end."""
    config = load_config(overrides=overrides, environ={})
    world = SyntheticWorld(SlotKind.ARTWORK, seed=seed, candidates_per_round=10, catalogue_size=200)
    stream = logged_stream(
        world, build_policy(config.slots["artwork"]), "artwork", decisions,
        start_ts=time.time() - 7200, spacing_s=0.05,
    )  # fmt: skip
    produce_stream(config, stream.events)
    return config, stream
