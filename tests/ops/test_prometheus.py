"""The SRE side, checked by the real tools: promtool validates and unit-tests the alert
rules, and a real Prometheus scrapes a running service and learner on loopback and answers
every query of the Grafana dashboard (Debian's `prometheus` package; `.ci/run` installs it)."""

import json
import re
import shutil
import subprocess
import threading
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaProducer

from bandit.contracts import events
from kafkaio.embedded_broker import die_with_parent, free_port
from sim.tally import Tally
from sim.traffic import Frontend
from sim.world import World
from storage.config_file import load_config
from tests.helpers import running_learner, running_service, wait_for

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "configs" / "prometheus"
DASHBOARD = ROOT / "configs" / "grafana" / "artbandit.json"
needs_prometheus = pytest.mark.skipif(
    not (shutil.which("prometheus") and shutil.which("promtool")),
    reason="needs Prometheus and promtool: apt-get install prometheus (Debian; .ci/run does)",
)


def _promtool(*args: str, cwd: Path = RULES) -> str:
    done = subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@needs_prometheus
def test_promtool_checks_the_rules_and_the_example_config():
    assert "SUCCESS: 15 rules found" in _promtool("check", "rules", "alerts.yml")
    _promtool("check", "config", "prometheus.yml")


@needs_prometheus
def test_promtool_unit_tests_every_alert():
    assert "SUCCESS" in _promtool("test", "rules", "alerts_test.yml")
    alerts = set(re.findall(r"^\s+- alert: (\w+)", (RULES / "alerts.yml").read_text(), re.M))
    tested = set(re.findall(r"alertname: (\w+)", (RULES / "alerts_test.yml").read_text()))
    assert alerts == tested and len(alerts) == 15
    runbooks = (RULES / "RUNBOOKS.md").read_text()
    assert all(f"## {alert}\n" in runbooks for alert in alerts)


def dashboard_queries() -> list[str]:
    """Every PromQL expression of the dashboard, with Grafana's rate interval filled in."""
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [t["expr"].replace("$__rate_interval", "1m") for p in panels for t in p["targets"]]


def _query(port: int, expr: str) -> dict:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.slow
@needs_prometheus
def test_a_real_prometheus_answers_every_dashboard_query(broker, tmp_path):
    suffix = uuid.uuid4().hex[:8]
    topics = ("decisions", "feedback", "rewarded", "models", "deadletter")
    config = load_config(environ={}, overrides=[
        f'kafka.bootstrap_servers="{broker.bootstrap_servers}"',
        *(f'kafka.topics.{t}="{t}-{suffix}"' for t in topics),
        f'model_store.path="{tmp_path / "models"}"',
        f'learner.checkpoint_dir="{tmp_path / "checkpoints"}"',
        f'learner.group_id="learner-{suffix}"',
        f"learner.metrics_port={free_port()}", "learner.partitions=2",
        "learner.checkpoint_interval_s=0.5", "learner.publish_interval_s=0",
        "learner.allowed_lateness_s=0.5", "serving.reload_interval_s=0.5",
        *(f"slots.{s}.attribution_window_s=1" for s in ("artwork", "hero", "rows")),
        *(f"slots.{s}.holdout_fraction=0.3" for s in ("artwork", "hero", "rows")),
    ])  # fmt: skip
    world = World()
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, linger_ms=5)
    stop = threading.Event()

    def send(event: events.FeedbackEvent) -> None:
        producer.send(config.kafka.topics.feedback, key=event.decision_id.encode(),
                      value=events.encode(event))  # fmt: skip

    with running_learner(config) as learner, running_service(config) as service:
        frontend = Frontend(world, service.client(), send, Tally(world.tastes), 5.0, seed=3)
        traffic = threading.Thread(target=frontend.run, args=(stop, 120.0), daemon=True)
        traffic.start()
        assert service.client().post("/v1/decide", {"slots": []})[0] == 400  # a 4xx to count
        prometheus = _start_prometheus(tmp_path, service.port, learner.metrics_port)
        try:
            wait_for(lambda: sum(learner.status().learned.values()) > 0, timeout_s=60)
            # both targets up, and enough scrapes for rates over a minute
            wait_for(lambda: len(_query(prometheus.port, "up == 1")["data"]["result"]) == 2,
                     timeout_s=60, interval_s=0.5)  # fmt: skip
            wait_for(lambda: _query(prometheus.port, "count_over_time(up[1m])")["data"]["result"]
                     and min(float(r["value"][1]) for r in _query(
                         prometheus.port, "count_over_time(up[1m])")["data"]["result"]) >= 5,
                     timeout_s=60, interval_s=0.5)  # fmt: skip
            wait_for(lambda: _query(prometheus.port, "artbandit_learner_published_version")[
                "data"]["result"], timeout_s=60, interval_s=0.5)  # fmt: skip
            empty = []
            for expr in dashboard_queries():
                answer = _query(prometheus.port, expr)
                assert answer["status"] == "success", (expr, answer)
                if not answer["data"]["result"]:
                    empty.append(expr)
            assert empty == [], f"dashboard queries without data: {empty}"
            with urllib.request.urlopen(
                f"http://127.0.0.1:{prometheus.port}/api/v1/rules", timeout=10
            ) as response:
                groups = json.loads(response.read())["data"]["groups"]
            rules = [rule for group in groups for rule in group["rules"]]
            assert len(rules) == 15
            assert all(rule["health"] in ("ok", "unknown") for rule in rules), rules
        finally:
            stop.set()
            traffic.join(30)
            producer.close(10)
            prometheus.stop()


class _Prometheus:
    def __init__(self, process: subprocess.Popen, port: int):
        self.process = process
        self.port = port

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


def _start_prometheus(tmp_path: Path, serving_port: int, learner_port: int) -> _Prometheus:
    shutil.copy(RULES / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "rule_files: [alerts.yml]\n"
        "scrape_configs:\n"
        f"  - job_name: artbandit-serving\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{serving_port}']}}]\n"
        f"  - job_name: artbandit-learner\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{learner_port}']}}]\n"
    )
    port = free_port()
    process = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=(tmp_path / "prometheus.log").open("wb"), stderr=subprocess.STDOUT,
        preexec_fn=die_with_parent,
    )  # fmt: skip
    prometheus = _Prometheus(process, port)
    try:
        wait_for(lambda: process.poll() is not None or _ready(port), timeout_s=60)
    except AssertionError:
        prometheus.stop()
        raise
    if process.poll() is not None:
        raise AssertionError((tmp_path / "prometheus.log").read_text()[-3000:])
    return prometheus


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_dashboard_queries_are_what_the_issue_asks_for():
    """The dashboard's panels cover the SRE list: rates, latency, errors, drops, lag, joins,
    learning, checkpoints, versions, exploration and reward by group."""
    text = " ".join(dashboard_queries())
    for metric in ("artbandit_decisions_total", "artbandit_request_duration_seconds_bucket",
                   "artbandit_request_errors_total", "artbandit_events_dropped_total",
                   "artbandit_learner_consumer_lag", "artbandit_learner_joins_total",
                   "artbandit_learner_examples_learned_total",
                   "artbandit_learner_last_checkpoint_timestamp_seconds",
                   "artbandit_policy_version", "artbandit_policy_age_seconds",
                   'explored="true"', "artbandit_learner_reward_total"):  # fmt: skip
        assert metric in text, metric
    assert np.all([q.count("(") == q.count(")") for q in dashboard_queries()])
