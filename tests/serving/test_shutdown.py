"""`artbandit serve` stops cleanly from every signal pattern an operator's tools send: SIGTERM
to the master (`kill`, docker stop), SIGTERM to the whole process group (systemd's default
KillMode, some shells), SIGINT to the group (Ctrl-C) and SIGTERM twice. With a real broker
and traffic running while it stops: exit 0, no traceback, no child started after the stop
began, and every decision answered 200 is on the decisions topic (the broker is up, so none
may be dropped)."""

import http.client
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from bandit.contracts import events
from kafkaio.embedded_broker import free_port
from tests.helpers import children_of, read_all, shippers_of, start_serve, wait_for

PAGE = {"slots": [{"slot": "hero", "candidates": [{"id": "a"}, {"id": "b"}]}]}
TRIES = 5  # per pattern, as the acceptance asks


def _decide(port: int) -> str | None:
    """One decision; its id if answered 200, None if the service is gone or going."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/v1/decide", body=json.dumps(PAGE),
                           headers={"Content-Type": "application/json"})  # fmt: skip
        response = connection.getresponse()
        body = response.read()
        return json.loads(body)["decisions"][0]["decision_id"] if response.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def _signal(process: subprocess.Popen[str], pattern: str) -> None:
    if pattern == "term_master":
        process.send_signal(signal.SIGTERM)
    elif pattern == "term_group":
        os.killpg(process.pid, signal.SIGTERM)
    elif pattern == "int_group":
        os.killpg(process.pid, signal.SIGINT)
    elif pattern == "term_twice":
        process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        process.send_signal(signal.SIGTERM)


def _workers(pid: int) -> set[int]:
    """The gunicorn workers of `pid`: its forks (the shipper and broker run other programs)."""
    own = Path(f"/proc/{pid}/cmdline").read_bytes()
    return {child for child, cmdline in children_of(pid).items() if cmdline == own}


def stop_under_traffic(tmp_path: Path, bootstrap: str, pattern: str) -> dict[str, object]:
    """Run `artbandit serve` (2 workers) with traffic, stop it with `pattern`; what happened."""
    port, topic = free_port(), f"decisions-{uuid.uuid4().hex[:8]}"
    process = start_serve(f"serving.port={port}", "serving.workers=2",
                     f'kafka.bootstrap_servers="{bootstrap}"', f'kafka.topics.decisions="{topic}"',
                     f'model_store.path="{tmp_path / topic}"')  # fmt: skip
    answered: list[str] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            decision = _decide(port)
            if decision is not None:
                answered.append(decision)

    clients = [threading.Thread(target=traffic, daemon=True) for _ in range(3)]
    try:
        wait_for(lambda: _decide(port) is not None, timeout_s=60)
        shipper = shippers_of(process.pid)
        for client in clients:
            client.start()
        wait_for(lambda: len(answered) >= 30, timeout_s=30)
        before = set(children_of(process.pid))
        _signal(process, pattern)
        started_later: set[int] = set()
        deadline = time.monotonic() + 40
        while process.poll() is None and time.monotonic() < deadline:
            started_later |= set(children_of(process.pid)) - before
            time.sleep(0.02)
        code = process.wait(timeout=1)
    finally:
        stop.set()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        for client in clients:
            client.join(15)
    stderr = process.stderr.read() if process.stderr else ""
    delivered = {events.decode(v).decision_id for v in read_all(bootstrap, topic, idle_s=1.0)}
    return {"code": code, "stderr": stderr, "answered": answered, "delivered": delivered,
            "started_later": started_later, "shipper": shipper}  # fmt: skip


@pytest.mark.parametrize("pattern", ["term_master", "term_group", "int_group", "term_twice"])
def test_serve_stops_cleanly_under_traffic(tmp_path, broker, pattern):
    for _ in range(TRIES):
        seen = stop_under_traffic(tmp_path, broker.bootstrap_servers, pattern)
        stderr = str(seen["stderr"])
        assert seen["code"] == 0, stderr[-3000:]
        assert "Traceback" not in stderr and "Error" not in stderr, stderr[-3000:]
        assert seen["started_later"] == set(), (seen["started_later"], stderr[-3000:])
        assert len(seen["shipper"]) == 1  # type: ignore[arg-type]
        answered = seen["answered"]
        assert len(answered) >= 30  # type: ignore[arg-type]
        missing = set(answered) - seen["delivered"]  # type: ignore[arg-type, operator]
        assert not missing, f"{len(missing)} answered decisions never reached the topic"


def test_a_stop_while_the_workers_start_forks_no_more_of_them(tmp_path, broker):
    """gunicorn forks its first workers one by one, sleeping up to 0.1 s between forks, and
    handles signals only between its steps: a stop as soon as the first worker exists must
    not fork the others (measured before the guard: 3 of 4 forked after the stop, in 3 of
    5 tries). One fork may be in flight when the signal lands (the master checks for a stop,
    then forks; Python runs the handler once `fork` returns) and shows up after the signal:
    that one, and only one, is no fault (seen once in CI, under the load of the whole suite)."""
    for attempt in range(TRIES):
        process = start_serve(f"serving.port={free_port()}", "serving.workers=4",
                         f'kafka.bootstrap_servers="{broker.bootstrap_servers}"',
                         f'model_store.path="{tmp_path / str(attempt)}"')  # fmt: skip
        try:
            pid = process.pid
            wait_for(lambda: bool(_workers(pid)), timeout_s=60, interval_s=0.001)  # noqa: B023
            os.killpg(process.pid, signal.SIGTERM)
            # seen right after the signal: a worker forked just before it is no fault
            before = set(children_of(process.pid))
            started_later: set[int] = set()
            deadline = time.monotonic() + 40
            while process.poll() is None and time.monotonic() < deadline:
                started_later |= set(children_of(process.pid)) - before
                time.sleep(0.01)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            code = process.wait(timeout=40)
        stderr = process.stderr.read() if process.stderr else ""
        assert code == 0, stderr[-3000:]
        assert "Traceback" not in stderr, stderr[-3000:]
        assert len(started_later) <= 1, (started_later, stderr[-3000:])


@pytest.mark.parametrize("target", ["master", "group"])
def test_a_stop_at_any_moment_of_the_start_is_never_lost(tmp_path, broker, target):
    """A stop signal at any moment of the start, from the first instant to the workers
    booting, ends the service with 0 within its graceful timeout. Seen in CI before
    `EarlyStop`: a SIGTERM that arrived while the master forked the shipper was raised as
    SystemExit inside an at-fork hook, printed as "Exception ignored" and lost; the master
    served on, and the test that sent it waited forever."""
    delays = [0.0, 0.05, 0.1, 0.2, 0.3, 0.45, 0.6, 0.8, 1.0, 1.3, 1.6, 2.0]
    for attempt, delay in enumerate(delays):
        process = start_serve(f"serving.port={free_port()}", "serving.workers=2",
                         f'kafka.bootstrap_servers="{broker.bootstrap_servers}"',
                         f'model_store.path="{tmp_path / str(attempt)}"')  # fmt: skip
        try:
            time.sleep(delay)
            if target == "master":
                process.send_signal(signal.SIGTERM)
            else:
                os.killpg(process.pid, signal.SIGTERM)
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        stderr = process.stderr.read() if process.stderr else ""
        # before the interpreter has run the command, the signal's default action ends it:
        # nothing said, nothing started
        before_start = code == -signal.SIGTERM and not stderr
        assert code == 0 or before_start, (delay, code, stderr[-3000:])
        assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr[-3000:]
        assert not children_of(process.pid)


def test_a_worker_exiting_alone_leaves_the_shipper_broker_and_metrics_running(tmp_path):
    """gunicorn's workers exit by unwinding the frames they were forked in, the master's: a
    worker that times out (SIGABRT) must not stop the shipper or the embedded broker, nor
    delete the metrics directory, on its way out."""
    from tests.helpers import metric_value

    port, broker_port = free_port(), free_port()
    process = start_serve(
        f"serving.port={port}",
        "serving.workers=2",
        f"kafka.embedded_port={broker_port}",
        f'model_store.path="{tmp_path}"',
    )
    try:
        wait_for(lambda: _decide(port) is not None, timeout_s=60)
        shipper = shippers_of(process.pid)
        workers = _workers(process.pid)
        assert len(workers) == 2
        os.kill(min(workers), signal.SIGABRT)  # what gunicorn sends a worker that timed out
        wait_for(lambda: len(_workers(process.pid) - workers) == 1, timeout_s=30)
        answered = [d for d in (_decide(port) for _ in range(40)) if d is not None]
        assert len(answered) == 40
        assert shippers_of(process.pid) == shipper  # the same shipper, never stopped
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/metrics")
        exposition = connection.getresponse().read().decode()
        connection.close()
        assert metric_value(exposition, "artbandit_decisions_total", slot="hero") >= 41
        topic = "artbandit.decisions"
        delivered = {events.decode(v).decision_id
                     for v in read_all(f"127.0.0.1:{broker_port}", topic, idle_s=1.0)}  # fmt: skip
        assert set(answered) <= delivered
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=40)
    stderr = process.stderr.read() if process.stderr else ""
    assert code == 0, stderr[-3000:]
