"""Two `artbandit serve` replicas, each with a model store of its own, follow the versions a
learner publishes on the models topic: both serve the newest within a bounded time."""

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bandit.contracts.slots import SlotKind
from bandit.policies import build_policy
from kafkaio.embedded_broker import die_with_parent, free_port
from kafkaio.produce import produce_stream
from serving.client import Client
from sim.synthetic import SyntheticWorld, logged_stream
from storage.config_file import load_config
from storage.model_store import ModelStore
from tests.helpers import metric_value, running_learner, wait_for

ARTBANDIT = str(Path(sys.executable).with_name("artbandit"))
PROPAGATION_BOUND_S = 10.0


def _served(port: int) -> str | None:
    try:
        status, body = Client("127.0.0.1", port, timeout_s=2).get("/readyz")
    except OSError:
        return None
    return body["versions"]["artwork"] if status == 200 else None


@pytest.mark.slow
def test_every_replica_serves_a_new_version_within_a_bounded_time(learner_overrides, tmp_path):
    # Each batch is recent (its windows close by the wall clock once read), so it is not
    # late after the previous batch moved the learner's clock to now.
    overrides = learner_overrides(
        "slots.artwork.attribution_window_s=12", "learner.allowed_lateness_s=1"
    )
    replicas = []
    try:
        for name in ("replica-a", "replica-b"):
            port = free_port()
            args = [a for o in overrides for a in ("--set", o)] + [
                "--set", f"serving.port={port}", "--set", "serving.workers=1",
                "--set", "serving.reload_interval_s=0.5",
                "--set", f'model_store.path="{tmp_path / name}"',
            ]  # fmt: skip
            process = subprocess.Popen([ARTBANDIT, "serve", *args], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)  # fmt: skip
            replicas.append((process, port))
        for _, port in replicas:
            wait_for(lambda port=port: _served(port) == "untrained", timeout_s=60)

        config = load_config(overrides=overrides, environ={})
        world = SyntheticWorld(SlotKind.ARTWORK, seed=9)
        policy = build_policy(config.slots["artwork"])

        def published() -> list[str]:
            return ModelStore(config.model_store.path).versions("artwork")

        lags = []
        with running_learner(config):
            for _ in range(2):  # two batches, two published versions
                stream = logged_stream(world, policy, "artwork", 200, time.time(), 0.001)
                before = len(published())
                produce_stream(config, stream.events)
                wait_for(lambda before=before: len(published()) > before, 60, 0.05)
                published_at, newest = time.monotonic(), published()[-1]
                for _, port in replicas:
                    wait_for(lambda port=port, newest=newest: (_served(port) or "") >= newest,
                             timeout_s=30, interval_s=0.05)  # fmt: skip
                lags.append(time.monotonic() - published_at)
        assert max(lags) < PROPAGATION_BOUND_S, lags
        newest = published()[-1]
        versions = []
        for _, port in replicas:
            wait_for(lambda port=port: _served(port) == newest, timeout_s=30)
            exposition = Client("127.0.0.1", port).get("/metrics")[1]
            versions.append(metric_value(exposition, "artbandit_policy_version", slot="artwork"))
        assert versions[0] == versions[1] == int(newest.removeprefix("v"))  # no skew left
    finally:
        for process, _ in replicas:
            process.terminate()
            process.wait(30)
