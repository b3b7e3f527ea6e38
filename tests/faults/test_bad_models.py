"""Truncated, corrupted and foreign model files, pushed onto the models topic and written
straight into a replica's store under load: each is refused and counted, the version before
keeps serving every request, and the next good version is served within moments."""

import time
import uuid

import pytest

from bandit.policies import build_policy
from kafkaio.produce import produce
from kafkaio.topics import ensure_topics
from storage.config_file import load_config
from storage.model_store import ModelStore
from tests.faults.harness import ROWS, FaultRow, PageLoad, ServeProcess
from tests.helpers import Client, wait_for


def _served(port: int) -> str:
    return Client("127.0.0.1", port).get("/readyz")[1]["versions"]["artwork"]


@pytest.mark.slow
def test_bad_model_files_are_refused_and_the_previous_version_keeps_serving(broker, tmp_path):
    overrides = [f'kafka.bootstrap_servers="{broker.bootstrap_servers}"',
                 f'kafka.topics.models="models-{uuid.uuid4().hex[:8]}"',
                 f'model_store.path="{tmp_path / "replica"}"',
                 "serving.reload_interval_s=0.5"]  # fmt: skip
    config = load_config(overrides=overrides, environ={})
    ensure_topics(config, broker.bootstrap_servers)
    learner_store = ModelStore(tmp_path / "learner")
    policy = build_policy(config.slots["artwork"])
    versions = [learner_store.save("artwork", policy) for _ in range(4)]  # v1 good, v2-v4 spoilt
    files = [learner_store.version_file("artwork", v.version) for v in versions]

    def publish(*values: bytes) -> None:
        produce(broker.bootstrap_servers, config.kafka.topics.models,
                [("artwork", value) for value in values])  # fmt: skip

    publish(files[0])
    serve = ServeProcess(overrides, workers=1)
    try:
        wait_for(lambda: _served(serve.port) == versions[0].version, timeout_s=30)
        with PageLoad([serve.port], threads=2, rate=20.0) as load:
            publish(
                files[1][: len(files[1]) // 2],  # truncated
                files[2][:-10] + bytes(b ^ 0xFF for b in files[2][-10:]),  # corrupted payload
                b"artbandit-policy/1\n{not json at all",  # foreign
            )
            replica = tmp_path / "replica" / "artwork"
            (replica / "v00000008.policy").write_bytes(files[3][:100])  # truncated in the store
            (replica / "v00000009.policy").write_bytes(files[3])  # misfiled: it says v4
            wait_for(lambda: serve.metric("artbandit_models_received_total", result="refused")
                     == 3, timeout_s=30)  # fmt: skip
            wait_for(lambda: serve.metric("artbandit_policy_reload_failures_total") >= 2, 30)
            still = _served(serve.port)
            good = learner_store.save("artwork", policy)  # v5: below the spoilt ones in the store
            pushed_at = time.monotonic()
            publish(learner_store.version_file("artwork", good.version))
            wait_for(lambda: _served(serve.port) == good.version, timeout_s=30, interval_s=0.02)
            recovery_s = time.monotonic() - pushed_at
            time.sleep(1)
    finally:
        serve.stop()

    assert still == versions[0].version  # the version before kept serving
    assert load.failed == 0 and len(load.answers) > 0
    ROWS.append(
        FaultRow(
            "bad model files: 3 on the topic, 2 in the store",
            f"40 pages/s ({len(load.answers)} pages)",
            load.failed,
            None,
            None,
            recovery_s,
            "all 5 refused and counted; v1 kept serving; recovery = next good version served",
        )
    )
