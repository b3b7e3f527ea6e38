"""`artbandit demo` end to end: broker, learner, service and traffic all run, the reports
appear, and no process outlives the demo (normal end, Ctrl-C or kill -9)."""

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from replay.logs import read_log
from sim.demo import DEMO_SETTINGS
from storage.config_file import load_config
from tests.helpers import wait_for

ARTBANDIT = str(Path(sys.executable).with_name("artbandit"))
ENV = {k: v for k, v in os.environ.items() if k != "ARTBANDIT_CONFIG"}


def _processes_mentioning(*needles: str) -> list[str]:
    """Command lines of live processes that mention any needle (the demo's children carry
    its output directory or its broker's port in their arguments)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(needle in cmdline for needle in needles):
            found.append(f"{entry.name}: {cmdline}")
    return found


@pytest.mark.slow
def test_the_demo_runs_every_part_reports_and_leaves_no_process(tmp_path):
    out = tmp_path / "demo"
    result = subprocess.run(
        [ARTBANDIT, "demo", "--duration", "20", "--rate", "30", "--out", str(out)],
        capture_output=True, text=True, timeout=400, env=ENV,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr + result.stdout[-3000:]
    port = re.search(r"broker 127\.0\.0\.1:(\d+)", result.stdout).group(1)
    figures = json.loads((out / "summary.json").read_text())
    assert figures["pages"] >= 300  # 20 s at 30 pages/s, allowing a slow start
    assert figures["decisions"] >= 40 * figures["pages"]  # hero, rows and every row's artwork
    assert figures["feedback_sent"] >= 5 * figures["pages"]  # impressions at least
    assert figures["rewarded_events"] >= 5 * figures["pages"]
    assert set(figures["examples_learned"]) == {"artwork", "hero", "rows"}
    assert all(count > 0 for count in figures["examples_learned"].values())
    assert all(version >= 1 for version in figures["published_versions"].values())
    assert set(figures["published_versions"]) == {"artwork", "hero", "rows"}
    log = read_log(str(out / "rewarded.jsonl.gz"), quiet=True)
    assert len(log.events) == figures["rewarded_events"]
    assert {e.group for e in log.events} == {"treatment", "control"}
    report = (out / "report.html").read_text()
    assert report.count("<img") == 3
    assert (out / "replay" / "report.html").exists()
    assert "estimator" in result.stdout  # the replay table
    for words in ("treatment", "control", "lift", "oracle", "published policy versions",
                  "page value", "calibration ips", "guardrail plays per decision", "guardrail ",
                  "re-scored with the version that logged them"):  # fmt: skip
        assert words in result.stdout
    assert all(e.outcomes is not None for e in log.events)  # the guardrails' outcomes
    assert "logged a probability their version does not give" not in result.stdout  # audit
    assert _processes_mentioning(str(out), f"127.0.0.1:{port}") == []
    # every command the demo prints runs as printed, on the demo's own config and store
    printed = [line[2:] for line in result.stdout.splitlines() if line.startswith("$ artbandit")]
    assert len(printed) == 3 and all(f"--config {out}/config.toml" in c for c in printed)
    for command in printed:
        args = shlex.split(command)
        again = subprocess.run([ARTBANDIT, *args[1:]], capture_output=True, text=True,
                               timeout=300, env=ENV, cwd=tmp_path)  # fmt: skip
        assert again.returncode == 0, (command, again.stderr[-2000:])
        if args[1] == "audit":
            assert "nothing re-scored" not in again.stderr and "re-scored with" in again.stdout
    # and every runnable block of the guides, on this demo's output
    for command in runnable_commands():
        args = shlex.split(command.replace("var/demo/", f"{out}/"))
        assert args[0] in ("artbandit", ".venv/bin/artbandit"), command
        again = subprocess.run([ARTBANDIT, *args[1:]], capture_output=True, text=True,
                               timeout=300, env=ENV, cwd=tmp_path)  # fmt: skip
        assert again.returncode == 0, (command, again.stderr[-2000:])


def runnable_commands() -> list[str]:
    """The commands of every fenced block marked `<!-- runnable: after make demo -->` in the
    README and the guides (each run from a scratch directory: the outputs they write under
    var/ land there)."""
    root = Path(__file__).resolve().parents[2]
    commands = []
    for guide in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        blocks = re.findall(r"<!-- runnable: after make demo -->\n```sh\n(.*?)\n```",
                            guide.read_text(), re.S)  # fmt: skip
        commands += [line for block in blocks for line in block.splitlines() if line.strip()]
    assert commands, "no runnable block in the README or docs/"
    return commands


def _start(out: Path) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [ARTBANDIT, "demo", "--duration", "300", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    # learner, server (gunicorn master and workers): all running, and traffic under way
    wait_for(lambda: len(_processes_mentioning(str(out))) >= 4, timeout_s=60, interval_s=0.2)
    wait_for(lambda: list((out / "models").glob("*/*")), timeout_s=60, interval_s=0.2)
    return process


@pytest.mark.slow
def test_ctrl_c_stops_every_process_the_demo_started(tmp_path):
    out = tmp_path / "demo"
    process = _start(out)
    process.send_signal(signal.SIGINT)
    try:
        stdout, stderr = process.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        process.kill()
        stdout, stderr = process.communicate()
        raise AssertionError(f"no exit within 90 s of SIGINT\n{stdout}\n{stderr}") from None
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    port = re.search(r"broker 127\.0\.0\.1:(\d+)", stdout).group(1)
    assert _processes_mentioning(str(out), f"127.0.0.1:{port}") == []


@pytest.mark.slow
def test_children_die_with_a_killed_demo(tmp_path):
    out = tmp_path / "demo"
    process = _start(out)
    process.kill()
    stdout, _ = process.communicate(timeout=30)
    port = re.search(r"broker 127\.0\.0\.1:(\d+)", stdout).group(1)
    needles = (str(out), f"127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while _processes_mentioning(*needles) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_mentioning(*needles) == []


def _flat(table: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_configs_demo_toml_holds_the_demo_settings():
    path = Path(__file__).resolve().parents[2] / "configs" / "demo.toml"
    assert _flat(tomllib.loads(path.read_text())) == DEMO_SETTINGS
    config = load_config(path)  # and it is a valid config for learn, serve and simulate
    assert config.slots["rows"].exploration.strategy == "greedy"


def test_scrape_sums_a_metric_over_its_other_labels():
    """The learner's lag has a sample per topic and partition; the benchmarks add it up, so
    no sample may be lost to another with the same first label."""
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    from kafkaio.embedded_broker import free_port
    from sim.demo import scrape

    registry, port = CollectorRegistry(), free_port()
    lag = Gauge("artbandit_learner_consumer_lag", "lag", ["topic", "partition"], registry=registry)
    for partition, value in enumerate((3, 4, 5)):
        lag.labels("decisions", str(partition)).set(value)
    lag.labels("feedback", "0").set(7)
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        # keyed by the first label by name (the exposition sorts them): here the partition
        assert scrape(port)["artbandit_learner_consumer_lag"] == {"0": 10, "1": 4, "2": 5}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert scrape(port) == {}  # nothing answers: nothing read, no exception
