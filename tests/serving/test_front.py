"""The shipped front (configs/nginx/nginx.conf, run as it is but for its two addresses) keeps
slow clients away from gunicorn's sync workers, and answers its own errors as JSON."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.front_bench import under_slowloris
from kafkaio.embedded_broker import free_port
from tests.helpers import wait_for

REPO = Path(__file__).resolve().parents[2]
ARTBANDIT = str(Path(sys.executable).with_name("artbandit"))
NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
PAGE = {"user": {"id": "u"}, "slots": [{"slot": "hero", "candidates": [{"id": "a"}, {"id": "b"}]}]}

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="needs nginx (Debian package nginx-light; .ci/run installs it)"
)


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(30)
    finally:
        process.kill()


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    """`artbandit serve` (2 sync workers) behind nginx; yields the front's port."""
    root = tmp_path_factory.mktemp("front")
    service_port, broker_port, front_port = free_port(), free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("ARTBANDIT_CONFIG", "PROMETHEUS_MULTIPROC_DIR")}  # fmt: skip
    service = subprocess.Popen(
        [ARTBANDIT, "serve", "--set", f"serving.port={service_port}", "--set", "serving.workers=2",
         "--set", f"kafka.embedded_port={broker_port}", "--set", f'model_store.path="{root}/m"'],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    shipped = (REPO / "configs/nginx/nginx.conf").read_text()
    assert "listen 8000;" in shipped and "server 127.0.0.1:8080;" in shipped
    conf = root / "nginx.conf"
    conf.write_text(
        shipped.replace("listen 8000;", f"listen 127.0.0.1:{front_port};").replace(
            "server 127.0.0.1:8080;", f"server 127.0.0.1:{service_port};"
        )
    )
    (root / "tmp").mkdir()
    nginx = subprocess.Popen([NGINX, "-p", str(root), "-c", str(conf)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: _request(front_port, "GET", "/readyz")[0] == 200, timeout_s=60)
        yield front_port
    finally:
        _stop(nginx)
        _stop(service)


def _request(port: int, method: str, path: str, body: bytes | None = None, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read(), response
    except OSError:
        return 0, b"", None
    finally:
        connection.close()


def test_slow_clients_do_not_stall_normal_requests(front):
    count, failed, _, p99_ms = under_slowloris(front, seconds=8.0)
    assert failed == 0, f"{failed} of {count} normal requests failed"
    assert count >= 100 and p99_ms < 100, (count, p99_ms)


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        (b"NOT A REQUEST LINE\r\n\r\n", 400, "(request)"),
        (b"GET /readyz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40_000 + b"\r\n\r\n", 431, "(headers)"),
        (b"POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n\r\n", 413, "(body)"),
        (b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "(path)"),
    ],
)  # fmt: skip
def test_the_fronts_own_errors_are_json(front, raw, status, field):
    with socket.create_connection(("127.0.0.1", front), timeout=10) as connection:
        connection.sendall(raw)
        response = http.client.HTTPResponse(connection)
        response.begin()
        answer = json.loads(response.read())
    assert (response.status, answer["error"]["field"]) == (status, field)
    assert response.getheader("Content-Type") == "application/json"
    assert response.getheader("Server") == "nginx"  # no version, no gunicorn
