"""What every learner process holds, whatever it learns from: its settings, metrics (and
the server that shows them), the model store, its checkpoint directory, readiness, and the
sampled importance weights behind the replay gauges. Each learner is built from this and
its own parts; none inherits from another."""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol, TypedDict, Unpack

from prometheus_client import CollectorRegistry

from bandit.config import Config
from bandit.contracts.slots import SlotConfig
from bandit.learning.tuning import Tuned
from bandit.policies import Policy
from kafkaio import memory
from learner.cadence import Cadence
from learner.checkpoint_store import CheckpointStore
from learner.metrics import LearnerMetrics, MetricsServer
from storage.model_store import ModelStore, ModelStoreError

RECENT_WEIGHTS = 10_000  # sampled importance weights per slot behind the replay gauges
FLUSH_S = 60.0  # how long a checkpoint waits for Kafka to acknowledge the outputs
FINAL_FLUSH_S = 10.0  # the same, for the checkpoint on the way out


class LearnerError(RuntimeError):
    """The learner cannot go on safely (e.g. Kafka refused an output); restart it."""


class Steps(Protocol):
    """What `LearnerResources.run_steps` drives."""

    def step(self) -> None: ...

    def checkpoint(self, in_rebalance: bool = False, final: bool = False) -> None: ...

    def follow_tuning(self) -> None: ...

    def progress(self) -> str: ...


class LearnerOptions(TypedDict, total=False):
    """How a learner process runs besides its config: the metrics registry (default: its
    own), whether it serves /metrics (default yes) and prints progress (default no)."""

    registry: CollectorRegistry | None
    serve_metrics: bool
    progress: bool


class LearnerResources:
    def __init__(self, config: Config, bootstrap_servers: str, **options: Unpack[LearnerOptions]):
        self.config = config
        self.bootstrap_servers = bootstrap_servers
        self.metrics = LearnerMetrics(options.get("registry") or CollectorRegistry())
        self.serve_metrics = options.get("serve_metrics", True)
        self.progress = options.get("progress", False)
        self.metrics_port: int | None = None
        self.store = ModelStore(config.model_store.path, config.model_store.keep_versions)
        settings = config.learner
        self.checkpoints = CheckpointStore(
            settings.checkpoint_dir, settings.member, settings.keep_checkpoints
        )
        self.ready = threading.Event()
        self.weights: dict[str, deque[float]] = {}  # slot -> recent sampled weights

    def weighed(self, weights: Mapping[str, list[float]]) -> None:
        """Keep the newest RECENT_WEIGHTS sampled importance weights per slot."""
        for slot, sampled in weights.items():
            self.weights.setdefault(slot, deque(maxlen=RECENT_WEIGHTS)).extend(sampled)

    def show_weights(self) -> None:
        for slot in self.config.learned_slots:
            self.metrics.weighed(slot, self.weights.get(slot, ()))

    def run_steps(
        self,
        stop: threading.Event,
        cadence: Cadence,
        steps: Steps,
        every_s: float,
    ) -> None:
        """Step until `stop` is set: checkpoint when due, read the tuning history right after
        a checkpoint, print progress every `every_s` when asked, hand freed memory back to
        the system each minute; then the final checkpoint."""
        last_progress = time.monotonic()
        upkeep = memory.Upkeep()  # a burst's freed memory back to the system (kafkaio.memory)
        while not stop.is_set():
            steps.step()
            if cadence.checkpoint_due():
                steps.checkpoint()
            if cadence.tuning_due():
                steps.follow_tuning()  # right after a checkpoint: it has everything
            upkeep.due()
            if self.progress and time.monotonic() - last_progress > every_s:
                last_progress = time.monotonic()
                print(steps.progress(), file=sys.stderr, flush=True)
        steps.checkpoint(final=True)

    @contextmanager
    def running(self) -> Iterator[None]:
        """The checkpoint directory locked, and the metrics served, while a learner runs."""
        self.checkpoints.lock()
        try:
            server = None
            if self.serve_metrics:
                settings = self.config.learner
                server = MetricsServer(
                    self.metrics.registry, settings.metrics_host, settings.metrics_port
                )
                self.metrics_port = server.port
            try:
                yield
            finally:
                if server is not None:
                    server.stop()
        finally:
            self.checkpoints.unlock()


class ResourceViews:
    """What a caller watching a learner run reads of it: its metrics, when it is ready, and
    the port its metrics are served on."""

    resources: LearnerResources

    @property
    def metrics(self) -> LearnerMetrics:
        return self.resources.metrics

    @property
    def ready(self) -> threading.Event:
        return self.resources.ready

    @property
    def metrics_port(self) -> int | None:
        return self.resources.metrics_port


def warm_start_policies(
    store: ModelStore, keys: Mapping[str, SlotConfig]
) -> tuple[dict[str, Policy], dict[str, Tuned]]:
    """The policies of `keys` (slots, shadows) that have a published version: the newest,
    and the tuned settings it learned under. A slot without a checkpointed model starts
    from it."""
    policies, tuning = {}, {}
    for slot, slot_config in keys.items():
        try:
            stored = store.load_latest(slot, slot_config)
        except ModelStoreError:
            continue
        policies[slot] = stored.policy
        tuning[slot] = Tuned(stored.info.tuning_revision, tuple(stored.info.tuned))
    return policies, tuning
