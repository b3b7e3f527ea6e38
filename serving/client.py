"""A small keep-alive HTTP/1.1 client of the decision service, for the simulator and tests."""

from __future__ import annotations

import http.client
import json
from typing import Any


class Client:
    """One persistent connection; use one client per thread."""

    def __init__(self, host: str, port: int, timeout_s: float = 30.0):
        self.connection = http.client.HTTPConnection(host, port, timeout=timeout_s)

    def request(
        self, method: str, path: str, body: Any = None, raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, Any]:  # fmt: skip
        """(status, decoded JSON body, or the text of a non-JSON body)."""
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        self.connection.request(
            method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})}
        )
        response = self.connection.getresponse()
        payload = response.read()
        content_type = response.getheader("Content-Type", "")
        return response.status, json.loads(payload) if "json" in content_type else payload.decode()

    def post(self, path: str, body: Any = None, **kwargs: Any) -> tuple[int, Any]:
        return self.request("POST", path, body, **kwargs)

    def get(self, path: str) -> tuple[int, Any]:
        return self.request("GET", path)

    def close(self) -> None:
        self.connection.close()
