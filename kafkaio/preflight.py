"""Fail fast on connection settings a broker refuses, before any client is built.

kafka-python retries a refused TLS handshake, a SASL mechanism the broker does not offer,
rejected credentials and a broker that wants TLS or SASL from a client configured without,
for as long as its timeouts allow, then reports only "Unable to bootstrap". `check_connection`
asks the first bootstrap server that answers, over one short connection: the TLS handshake
(the CA and host name checks of the config), then the SASL handshake and authentication
(RFC 5802 SCRAM, or PLAIN) with the configured user, or, without SASL, an ApiVersions and
a Metadata request. A refusal, or an answer that is not Kafka's protocol, raises
`KafkaSettingsError` naming the setting, the mechanism and the user; never the password.
A server that does not answer is left alone: that is an outage, which every client rides
out in its own way.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import socket
import ssl
import struct
from dataclasses import dataclass

from bandit.contracts.kafka import KafkaConfig
from kafkaio.clients import KafkaSettingsError, security_settings

TIMEOUT_S = 5.0
_METADATA, _API_VERSIONS, _SASL_HANDSHAKE, _SASL_AUTHENTICATE = 3, 18, 17, 36


class _Refused(Exception):
    """The broker refused, with why (no secret in it)."""


class _Closed(Exception):
    """The broker hung up without answering (the message says when)."""


def check_connection(
    kafka: KafkaConfig, bootstrap_servers: str | None = None, must_answer: bool = False
) -> None:
    """Raise `KafkaSettingsError` when the first bootstrap server that answers refuses the
    config's TLS or SASL settings (see the module docstring), or, with `must_answer` (a
    one-shot read, which has no outage to ride out), when none answers."""
    settings = security_settings(kafka)  # reads the password: a missing one fails here
    context = _tls_context(kafka) if kafka.security_protocol.endswith("SSL") else None
    servers = bootstrap_servers or kafka.bootstrap_servers
    for server in servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            raw = socket.create_connection((host, int(port)), timeout=TIMEOUT_S)
        except (OSError, ValueError):
            continue  # not answering (or not host:port): try the next one
        try:
            _check(kafka, server.strip(), raw, context, settings.get("sasl_plain_password", ""))
            return
        except OSError:
            continue  # an outage mid-check: as above
        except struct.error:  # an answer too short for what Kafka's protocol says it holds
            raise KafkaSettingsError(
                f"{server.strip()} does not answer in Kafka's protocol (kafka.bootstrap_servers)"
            ) from None
        finally:
            raw.close()
    if must_answer:
        raise KafkaSettingsError(
            f"no Kafka broker answers at {servers} (kafka.bootstrap_servers; "
            "`artbandit broker` runs the embedded one)"
        )


def _tls_context(kafka: KafkaConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=kafka.ssl_cafile)
    context.check_hostname = kafka.ssl_check_hostname
    if kafka.ssl_certfile is not None:
        context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile)
    return context


def _check(
    kafka: KafkaConfig,
    server: str,
    raw: socket.socket,
    context: ssl.SSLContext | None,
    password: str,
) -> None:
    sock: socket.socket = raw
    if context is not None:
        host = server.rpartition(":")[0]
        try:
            sock = context.wrap_socket(raw, server_hostname=host)
        except ssl.SSLError as exc:
            where = kafka.ssl_cafile or "the system's CAs"
            raise KafkaSettingsError(
                f"TLS to {server} failed: {exc.reason or exc} (the broker's certificate "
                f"against {where}; kafka.ssl_cafile, kafka.ssl_check_hostname)"
            ) from None
    wire = _Wire(sock, kafka.client_id)
    if not kafka.security_protocol.startswith("SASL"):
        try:  # ApiVersions is answered before authentication; Metadata is not
            wire.call(_API_VERSIONS, 0, b"")
            wire.call(_METADATA, 1, struct.pack("!i", 0))
        except _Closed:
            raise KafkaSettingsError(
                f"{server} closed the connection without answering a metadata request as "
                f"{kafka.security_protocol}: does its listener want SASL or TLS? "
                "(kafka.security_protocol)"
            ) from None
        return
    mechanism, user = kafka.sasl_mechanism or "", kafka.sasl_username or ""
    try:
        _authenticate(wire, mechanism, user, password)
    except _Refused as exc:
        secret = (
            f"the environment variable {kafka.sasl_password_env}"
            if kafka.sasl_password_env
            else f"the file {kafka.sasl_password_file}"
        )
        raise KafkaSettingsError(
            f"SASL {mechanism} as user {user!r} was refused by {server}: {exc} "
            f"(kafka.sasl_mechanism, kafka.sasl_username, and the password in {secret})"
        ) from None
    except _Closed as exc:
        raise KafkaSettingsError(
            f"SASL {mechanism} as user {user!r}: {server} closed the connection {exc} "
            "(kafka.sasl_mechanism, kafka.sasl_username, the password)"
        ) from None


def _authenticate(wire: _Wire, mechanism: str, user: str, password: str) -> None:
    try:
        body = wire.call(_SASL_HANDSHAKE, 1, _string(mechanism))
    except _Closed:
        raise _Closed("at the SASL handshake (no such mechanism, or no SASL there)") from None
    error, offered = _Reader(body).handshake()
    if (error and mechanism in offered) or not offered:  # a listener without SASL
        raise _Refused("it does not authenticate with SASL there (kafka.security_protocol)")
    if error or mechanism not in offered:
        raise _Refused(f"it offers {', '.join(offered)}, not {mechanism}")
    try:
        _sasl_exchange(wire, mechanism, user, password)
    except _Closed:
        raise _Closed("during the authentication: it refused the credentials") from None


def _sasl_exchange(wire: _Wire, mechanism: str, user: str, password: str) -> None:
    if mechanism == "PLAIN":
        _exchange(wire, b"\0" + user.encode() + b"\0" + password.encode())
        return
    scram = Scram(mechanism, user, password)
    server_first = _exchange(wire, scram.client_first())
    server_final = _exchange(wire, scram.client_final(server_first))
    scram.verify(server_final)


def _exchange(wire: _Wire, token: bytes) -> bytes:
    error, message, answer = _Reader(wire.call(_SASL_AUTHENTICATE, 0, _bytes(token))).auth()
    if error:
        raise _Refused(message or f"error code {error}")
    return answer


class Scram:
    """The client side of SCRAM-SHA-256/512 (RFC 5802, RFC 7677), without channel binding."""

    def __init__(self, mechanism: str, user: str, password: str, nonce: str | None = None):
        self.hash = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}[mechanism]
        name = user.replace("=", "=3D").replace(",", "=2C")
        self.nonce = nonce or secrets.token_urlsafe(24)
        self.first_bare = f"n={name},r={self.nonce}"
        self.password = password.encode()
        self._server_signature = b""

    def client_first(self) -> bytes:
        return f"n,,{self.first_bare}".encode()

    def client_final(self, server_first: bytes) -> bytes:
        text = server_first.decode(errors="replace")
        fields = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        if "e" in fields:
            raise _Refused(f"the server says {fields['e']}")
        nonce, salt, rounds = fields.get("r", ""), fields.get("s"), fields.get("i", "")
        if not nonce.startswith(self.nonce) or salt is None or not rounds.isdigit():
            raise _Refused("its SCRAM challenge is malformed")
        salted = hashlib.pbkdf2_hmac(self.hash, self.password, base64.b64decode(salt), int(rounds))
        without_proof = f"c=biws,r={nonce}"
        auth_message = f"{self.first_bare},{text},{without_proof}".encode()
        client_key = self._hmac(salted, b"Client Key")
        signature = self._hmac(hashlib.new(self.hash, client_key).digest(), auth_message)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        self._server_signature = self._hmac(self._hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        text = server_final.decode(errors="replace")
        if text.startswith("e="):
            raise _Refused(f"the server says {text[2:]}")
        expected = "v=" + base64.b64encode(self._server_signature).decode()
        if not hmac.compare_digest(text.split(",")[0], expected):
            raise _Refused("the server's SCRAM signature does not verify (not the broker?)")

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self.hash).digest()


@dataclass
class _Wire:
    """One connection speaking Kafka's request/response framing (header v1, no tags)."""

    sock: socket.socket
    client_id: str
    correlation: int = 0

    def call(self, api_key: int, version: int, body: bytes) -> bytes:
        self.correlation += 1
        head = struct.pack("!hhi", api_key, version, self.correlation) + _string(self.client_id)
        request = head + body
        self.sock.sendall(struct.pack("!i", len(request)) + request)
        size = struct.unpack("!i", self._read(4))[0]
        answer = self._read(size)
        return answer[4:]  # after the correlation id

    def _read(self, count: int) -> bytes:
        data = bytearray()
        while len(data) < count:
            chunk = self.sock.recv(count - len(data))
            if not chunk:
                raise _Closed()
            data += chunk
        return bytes(data)


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def handshake(self) -> tuple[int, list[str]]:
        error = self._int("!h")
        return error, [self._str() or "" for _ in range(max(self._int("!i"), 0))]

    def auth(self) -> tuple[int, str | None, bytes]:
        error, message = self._int("!h"), self._str()
        size = self._int("!i")
        answer = self.data[self.at : self.at + max(size, 0)]
        return error, message, answer

    def _int(self, fmt: str) -> int:
        value: int = struct.unpack_from(fmt, self.data, self.at)[0]
        self.at += struct.calcsize(fmt)
        return value

    def _str(self) -> str | None:
        size = self._int("!h")
        if size < 0:
            return None
        value = self.data[self.at : self.at + size].decode(errors="replace")
        self.at += size
        return value


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!h", len(data)) + data


def _bytes(data: bytes) -> bytes:
    return struct.pack("!i", len(data)) + data
