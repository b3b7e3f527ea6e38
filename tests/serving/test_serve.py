"""`artbandit serve`: gunicorn workers, the embedded broker started for zero-config, metrics
aggregated over workers, and a clean stop on SIGTERM."""

import http.client
import json
import signal
import socket
import time
from pathlib import Path

from kafkaio.embedded_broker import free_port
from tests.helpers import metric_value, read_topic, shippers_of, start_serve, wait_for

HERO = {"user": {"id": "u"}, "slots": [{"slot": "hero", "candidates": [{"id": "a"}, {"id": "b"}]}]}


def call(port: int, method: str, path: str, body=None) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=json.dumps(body) if body is not None else None)
        response = connection.getresponse()
        return response.status, response.read().decode()
    except OSError:
        return 0, ""
    finally:
        connection.close()


def raw_call(port: int, request: bytes) -> tuple[int, dict]:
    """Send bytes as they are (a malformed body no HTTP client would write); the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        connection.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(connection)
        response.begin()
        return response.status, json.loads(response.read())


BAD_CHUNKS = [b"zz\r\n{}\r\n0\r\n\r\n", b"-5\r\n{}\r\n0\r\n\r\n", b"2\r\n{}}}}\r\n0\r\n\r\n"]


GUNICORN_PARSE_ERRORS = [
    (b"NOT A REQUEST LINE\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
]


def test_serve_runs_gunicorn_workers_on_the_embedded_broker(tmp_path):
    port, broker_port = free_port(), free_port()
    process = start_serve(f"serving.port={port}", "serving.workers=2",
                          f"kafka.embedded_port={broker_port}", f'model_store.path="{tmp_path}"')  # fmt: skip
    try:
        wait_for(lambda: call(port, "GET", "/readyz")[0] == 200, timeout_s=60)
        for _ in range(40):
            assert call(port, "POST", "/v1/decide", HERO)[0] == 200
        for raw, status in GUNICORN_PARSE_ERRORS:  # gunicorn's own pages are JSON too
            assert raw_call(port, raw)[0] == status
        for body in BAD_CHUNKS:  # the server's own parse errors are the client's, as JSON
            head = b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            status, error = raw_call(port, head + b"Content-Type: application/json\r\n\r\n" + body)
            assert (status, error["error"]["field"]) == (400, "(body)"), (body, error)
        # Every scrape, whichever worker answers it, sees all workers' decisions.
        for _ in range(6):
            status, exposition = call(port, "GET", "/metrics")
            assert status == 200
            assert metric_value(exposition, "artbandit_decisions_total", slot="hero") == 40
        logged = read_topic(f"127.0.0.1:{broker_port}", "artbandit.decisions", 40)
        assert len(logged) == 40  # logged through the host's one shipper
        shippers = shippers_of(process.pid)
        assert len(shippers) == 1
        wait_for(
            lambda: (
                metric_value(call(port, "GET", "/metrics")[1], "artbandit_events_sent_total") == 40
            )
        )
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            code = process.wait(timeout=30)
        finally:
            process.kill()
        stderr = process.stderr.read()
    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    deadline = time.monotonic() + 10
    while (
        call(broker_port, "GET", "/")[0] != 0
        or call(port, "GET", "/healthz")[0] != 0
        or Path(f"/proc/{shippers[0]}").exists()
    ):
        assert time.monotonic() < deadline, "server, shipper or broker outlived serve"
        time.sleep(0.2)
