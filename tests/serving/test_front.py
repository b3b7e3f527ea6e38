"""The shipped front (configs/nginx/nginx.conf, run as it is but for its two addresses) keeps
slow clients away from gunicorn's sync workers, and answers its own errors as JSON."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
from pathlib import Path

import pytest

from benchmarks.front_bench import running_front, under_slowloris

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="needs nginx (Debian package nginx-light; .ci/run installs it)"
)


@pytest.fixture(scope="module")
def front(tmp_path_factory):
    """`artbandit serve` (2 sync workers) behind the shipped nginx front; its port."""
    with running_front(tmp_path_factory.mktemp("front"), NGINX) as (_, front_port):
        yield front_port


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
