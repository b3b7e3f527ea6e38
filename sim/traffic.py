"""Traffic like a real frontend: page requests through `POST /v1/decide`, impressions for
what shows above the fold, then clicks and plays a few seconds later, sent to the feedback
topic keyed by decision id (as a frontend's event pipeline would).

People come back over time (frequent visitors more often), so the sticky holdout and the
learner see the same users again.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable

import numpy as np

from bandit.contracts import events
from bandit.contracts.events import FeedbackEvent
from bandit.contracts.kafka import KafkaConfig
from kafkaio import clients
from serving.client import Client
from sim.page import (
    ARTWORK,
    HERO,
    ROWS,
    PageChoice,
    PageMaker,
    artwork_index,
    decide_request,
    expected_clicks,
    oracle,
    sample,
)
from sim.tally import PageRecord, Tally
from sim.world import World


class TrafficError(RuntimeError):
    """The service answered a page request with something other than decisions."""


class Frontend:
    """Requests pages at `rate` per second from the service at `client` and sends the
    feedback through `send` when it is due."""

    def __init__(
        self,
        world: World,
        client: Client,
        send: Callable[[FeedbackEvent], None],
        tally: Tally,
        rate: float,
        seed: int,
    ):
        self.world = world
        self.client = client
        self.send = send
        self.tally = tally
        self.rate = rate
        self.pages = PageMaker(world, np.random.default_rng([seed, 1]))
        self.outcomes = np.random.default_rng([seed, 2])
        self.delays = np.random.default_rng([seed, 3])
        self._due: list[tuple[float, int, FeedbackEvent]] = []
        self._sequence = 0
        self.decisions = 0  # decisions received
        self.sent = 0  # feedback events sent

    def run(self, stop: threading.Event, duration_s: float) -> None:
        """Serve pages until `stop` or `duration_s`; then send all feedback still pending."""
        started = time.monotonic()
        next_page = started
        while not stop.is_set():
            now = time.monotonic()
            if now - started >= duration_s:
                break
            self._send_due(time.time())
            if now < next_page:
                stop.wait(min(next_page - now, 0.05))
                continue
            next_page = max(next_page + 1.0 / self.rate, now - 1.0)  # catch up at most 1 s
            self.page(now - started)
        self._send_due(float("inf"))

    def page(self, elapsed_s: float) -> None:
        """One page view: ask, show, act, and schedule the feedback."""
        world = self.world
        page = self.pages.page(elapsed_s)
        status, body = self.client.post("/v1/decide", decide_request(world, page))
        if status != 200:
            raise TrafficError(f"/v1/decide answered {status}: {body}")
        ts = time.time()
        self.decisions += len(body["decisions"])
        ids, chosen, groups, versions = {}, {}, set(), {}
        for decision in body["decisions"]:
            slot, key = decision["slot"], decision["key"]
            ids[slot, key] = decision["decision_id"]
            chosen[slot, key] = decision["chosen"]
            groups.add(decision["group"])
            if decision["group"] == "treatment":
                versions[slot] = decision["policy_version"]
        choice = PageChoice(
            hero=chosen[HERO, "hero"][0],
            rows=tuple(chosen[ROWS, "home"]),
            artwork={
                key.removeprefix("title:"): artwork_index(ids_chosen[0])
                for (slot, key), ids_chosen in chosen.items()
                if slot == ARTWORK
            },
        )
        outcome = sample(world, page, choice, self.outcomes)
        for event in outcome.feedback(world, choice, ids, ts, self.delays):
            self._sequence += 1
            heapq.heappush(self._due, (event.ts, self._sequence, event))
        group = "control" if groups == {"control"} else "treatment"
        tones = [world.titles[t.title].tones[t.artwork] for t in outcome.tiles if t.row >= 0]
        record = PageRecord(
            at=elapsed_s,
            group=group,
            taste=page.person.taste,
            impressions=outcome.impressions,
            clicks=outcome.clicks,
            plays=outcome.plays,
            expected=outcome.expected_clicks,
            oracle=expected_clicks(world, page, oracle(world, page)),
        )
        self.tally.add(record, tones, versions)

    def _send_due(self, now: float) -> None:
        while self._due and self._due[0][0] <= now:
            _, _, event = heapq.heappop(self._due)
            self.send(event)
            self.sent += 1


def drive(
    frontend_of: Callable[[Callable[[FeedbackEvent], None]], Frontend],
    kafka: KafkaConfig,
    bootstrap: str,
    topic: str,
    duration_s: float,
    tick: Callable[[float], None],
) -> Frontend:
    """Run a frontend in a thread for `duration_s`, its feedback produced to `topic`; this
    thread calls `tick(elapsed_s)` about once a second (an exception there stops the
    traffic and propagates). Every feedback event is acknowledged before it returns."""
    producer = clients.producer(kafka, "tool_producer", bootstrap)

    def send(event: FeedbackEvent) -> None:
        producer.send(topic, key=event.decision_id.encode(), value=events.encode(event))

    frontend = frontend_of(send)
    stop = threading.Event()
    failure: list[BaseException] = []

    def traffic() -> None:
        try:
            frontend.run(stop, duration_s)
        except BaseException as exc:  # raised again in the calling thread
            failure.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=traffic, name="traffic", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(1.0)
            tick(time.monotonic() - started)
    finally:
        stop.set()
        thread.join(30)
        producer.flush(30)
        producer.close(10)
    if failure:
        raise failure[0]
    return frontend
