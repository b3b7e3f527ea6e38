"""Every metric of the decision service, on an injected registry.

Label values are bounded: slot names and topics come from config, groups, reasons and
endpoints from fixed sets; never a title, candidate or user id. Under gunicorn the values
live in PROMETHEUS_MULTIPROC_DIR and `/metrics` aggregates all workers.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from bandit.contracts.events import GROUPS

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServingMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.decisions = Counter(
            "artbandit_decisions_total",
            "Slot decisions served.",
            ["slot", "group", "explored"],
            registry=registry,
        )
        self.unconsented = Counter(
            "artbandit_unconsented_decisions_total",
            "Slot decisions for people who do not consent to personalization, by what they got "
            "(default: the editorial default, not logged; context: the policy without user "
            "features or hash).",
            ["slot", "served"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "artbandit_request_duration_seconds",
            "Time to answer a request, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.request_errors = Counter(
            "artbandit_request_errors_total",
            "Requests answered with an error, by endpoint, reason and HTTP status.",
            ["endpoint", "reason", "status"],
            registry=registry,
        )
        self.events_sent = Counter(
            "artbandit_events_sent_total",
            "Events acknowledged by Kafka.",
            ["topic"],
            registry=registry,
        )
        self.events_dropped = Counter(
            "artbandit_events_dropped_total",
            "Events not delivered to Kafka (buffer full, broker unavailable, send failed).",
            ["topic", "reason"],
            registry=registry,
        )
        self.events_buffered = Gauge(
            "artbandit_events_buffered",
            "Events queued or in flight to Kafka, not yet acknowledged.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.feedback = Counter(
            "artbandit_feedback_forwarded_total",
            "Feedback events accepted over HTTP for Kafka.",
            ["type"],
            registry=registry,
        )
        self.policy_version = Gauge(
            "artbandit_policy_version",
            "Version number of the policy served per slot (0: untrained).",
            ["slot"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.policy_age = Gauge(
            "artbandit_policy_age_seconds",
            "Seconds since the served policy version was created.",
            ["slot"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.policy_reload_failures = Counter(
            "artbandit_policy_reload_failures_total",
            "Policy versions refused (corrupt or unloadable); the previous one kept serving.",
            ["slot"],
            registry=registry,
        )

        self.models_received = Counter(
            "artbandit_models_received_total",
            "Policy versions read from the models topic: installed or refused.",
            ["result"],
            registry=registry,
        )

    def start_at_zero(
        self, slots: list[str], topics: list[str], drop_reasons: tuple[str, ...]
    ) -> None:
        """Create the series of every known label value at 0, so `rate()` and alerts see a
        zero instead of no data until the first increment."""
        for slot in slots:
            self.policy_reload_failures.labels(slot)
            for served in ("default", "context"):
                self.unconsented.labels(slot, served)
            for group in GROUPS:
                for explored in ("true", "false"):
                    self.decisions.labels(slot, group, explored)
        for topic in topics:
            self.events_sent.labels(topic)
            for reason in drop_reasons:
                self.events_dropped.labels(topic, reason)

    def exposition(self) -> bytes:
        """The text exposition: this process's registry, or all gunicorn workers' files."""
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            registry = CollectorRegistry()
            registry.register(WorkerFiles(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
            return generate_latest(registry)
        return generate_latest(self.registry)


class WorkerFiles:
    """All workers' metric files, read as `MultiProcessCollector` reads them, except that a
    file not sized yet counts as holding nothing. A worker creates a file the first time it
    sets a metric of a kind, and the file exists at 0 bytes for a moment before it is
    sized (prometheus/client_python#1199): a scrape that met it answered 500."""

    def __init__(self, path: str):
        self.path = path

    def collect(self) -> Iterable[Metric]:
        files = [path for path in glob.glob(os.path.join(self.path, "*.db")) if _sized(path)]
        metrics: Iterable[Metric] = MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]
        return metrics


def _sized(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except FileNotFoundError:  # a live gauge's file, its worker gone since the glob
        return False


def version_number(version: str) -> int:
    """`v00000012` (or a promoted shadow's `shadow:v00000012`) -> 12; anything else (e.g.
    `untrained`) -> 0."""
    version = version.rpartition(":")[2]
    digits = version[1:] if version.startswith("v") else ""
    return int(digits) if digits.isdigit() else 0
