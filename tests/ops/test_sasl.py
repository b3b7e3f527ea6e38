"""SASL against a broker that checks it: the embedded broker with `--authentication`.

What the shipped broker build can and cannot do (evidence in docs/operations.md, "SASL"):
it requires SASL and offers SCRAM-SHA-256 and SCRAM-SHA-512 (PLAIN is refused at the
handshake), but it cannot hold a SCRAM user: `tansu user create` needs an unauthenticated
connection, which `--authentication` refuses, and its in-memory and object-store engines
keep no credentials (the SQL engines are not built in). So every login is refused here, and
these tests check the refusal path end to end, with real processes: the service, the learner
and `replay kafka://` exit 2 within seconds, naming the mechanism and the user and never the
password. The accepted path is checked against RFC 7677's published exchange and against a
SCRAM server computed independently in this file.
"""

import base64
import hashlib
import hmac
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkaio.embedded_broker import EmbeddedBroker
from kafkaio.preflight import Scram

ARTBANDIT = str(Path(sys.executable).with_name("artbandit"))
PASSWORD = "correct-horse-battery-staple"
ENV = {**{k: v for k, v in os.environ.items() if k != "ARTBANDIT_CONFIG"},
       "ARTBANDIT_SASL": PASSWORD}  # fmt: skip


@pytest.fixture(scope="module")
def sasl_broker():
    with EmbeddedBroker(authentication=True) as broker:
        yield broker


def _run(verb: list[str], bootstrap: str, tmp_path: Path, *security: str) -> tuple[int, str, float]:
    overrides = [
        f'kafka.bootstrap_servers="{bootstrap}"',
        f'model_store.path="{tmp_path / "models"}"',
        f'learner.checkpoint_dir="{tmp_path / "checkpoints"}"',
        "learner.metrics_port=0",
        *security,
    ]
    started = time.monotonic()
    done = subprocess.run(
        [ARTBANDIT, *verb, *(f"--set={o}" for o in overrides)],
        capture_output=True, text=True, timeout=120, env=ENV,
    )  # fmt: skip
    return done.returncode, done.stderr + done.stdout, time.monotonic() - started


def _sasl(mechanism: str, user: str = "alice") -> list[str]:
    return ['kafka.security_protocol="SASL_PLAINTEXT"', f'kafka.sasl_mechanism="{mechanism}"',
            f'kafka.sasl_username="{user}"', 'kafka.sasl_password_env="ARTBANDIT_SASL"']  # fmt: skip


VERBS = [["serve"], ["learn", "--quiet"],
         ["replay", "--log", "kafka://artbandit.rewarded", "--policy", "default", "--quiet"]]  # fmt: skip


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: v[0])
def test_refused_credentials_exit_2_fast_naming_mechanism_and_user(sasl_broker, tmp_path, verb):
    for mechanism in ("SCRAM-SHA-512", "SCRAM-SHA-256"):
        code, output, took = _run(verb, sasl_broker.bootstrap_servers, tmp_path,
                                  *_sasl(mechanism))  # fmt: skip
        assert code == 2, output
        assert f"SASL {mechanism} as user 'alice' was refused" in output, output
        assert "unknown-user" in output and "ARTBANDIT_SASL" in output
        assert PASSWORD not in output and "Traceback" not in output
        assert took < 15, took


def test_a_mechanism_the_broker_does_not_offer_and_no_sasl_at_all_exit_2(sasl_broker, tmp_path):
    code, output, _ = _run(["learn", "--quiet"], sasl_broker.bootstrap_servers, tmp_path,
                           *_sasl("PLAIN", "bob"))  # fmt: skip
    assert code == 2 and "SASL PLAIN as user 'bob'" in output and "handshake" in output, output
    assert PASSWORD not in output
    code, output, took = _run(["serve"], sasl_broker.bootstrap_servers, tmp_path)
    assert code == 2 and "kafka.security_protocol" in output and "want SASL" in output, output
    assert took < 15


def test_sasl_against_a_broker_without_it_says_so(broker, tmp_path):
    code, output, _ = _run(["learn", "--quiet"], broker.bootstrap_servers, tmp_path,
                           *_sasl("SCRAM-SHA-512"))  # fmt: skip
    assert code == 2 and "does not authenticate with SASL there" in output, output


def test_the_scram_client_reproduces_rfc_7677():
    scram = Scram("SCRAM-SHA-256", "user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")
    assert scram.client_first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    final = scram.client_final(b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                               b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")  # fmt: skip
    assert final == (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")  # fmt: skip
    scram.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def _server(mechanism: str, password: str, salt: bytes, rounds: int):
    """A SCRAM server's stored credential, computed from RFC 5802's definitions."""
    name = "sha256" if mechanism.endswith("256") else "sha512"
    salted = hashlib.pbkdf2_hmac(name, password.encode(), salt, rounds)
    client_key = hmac.new(salted, b"Client Key", name).digest()
    stored = hashlib.new(name, client_key).digest()
    server_key = hmac.new(salted, b"Server Key", name).digest()
    return name, stored, server_key


@settings(max_examples=40, deadline=None)
@given(mechanism=st.sampled_from(["SCRAM-SHA-256", "SCRAM-SHA-512"]),
       user=st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1,
                    max_size=12),
       password=st.text(min_size=1, max_size=20), wrong=st.booleans(),
       salt=st.binary(min_size=8, max_size=16))  # fmt: skip
def test_the_scram_client_proves_exactly_the_right_password(mechanism, user, password, wrong,
                                                             salt):  # fmt: skip
    name, stored, server_key = _server(mechanism, password, salt, 4096)
    scram = Scram(mechanism, user, password + ("x" if wrong else ""))
    first = scram.client_first().decode()
    assert first.startswith("n,,n=") and first.count(",") == 3  # "," in a name is escaped
    nonce = first.split(",r=")[1] + "server"
    server_first = f"r={nonce},s={base64.b64encode(salt).decode()},i=4096"
    final = scram.client_final(server_first.encode()).decode()
    without_proof, _, proof = final.rpartition(",p=")
    auth = f"{first[3:]},{server_first},{without_proof}".encode()
    signature = hmac.new(stored, auth, name).digest()
    client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), signature, strict=True))
    accepted = hashlib.new(name, client_key).digest() == stored
    assert accepted is not wrong
    server_signature = base64.b64encode(hmac.new(server_key, auth, name).digest()).decode()
    if accepted:
        scram.verify(f"v={server_signature}".encode())


def test_an_answer_that_is_not_kafkas_protocol_is_named_not_a_crash(monkeypatch):
    """A server on the bootstrap port that answers too little for the SASL handshake."""
    import socket
    import threading

    from bandit.contracts.kafka import KafkaConfig
    from kafkaio.clients import KafkaSettingsError
    from kafkaio.preflight import check_connection

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_badly() -> None:
        connection, _ = listener.accept()
        connection.recv(1000)
        connection.sendall(b"\x00\x00\x00\x06" + b"\x00\x00\x00\x01" + b"\x00\x00")
        connection.close()
        listener.close()

    threading.Thread(target=answer_badly, daemon=True).start()
    monkeypatch.setenv("ARTBANDIT_SASL", PASSWORD)
    kafka = KafkaConfig(bootstrap_servers=f"127.0.0.1:{port}", security_protocol="SASL_PLAINTEXT",
                        sasl_mechanism="SCRAM-SHA-512", sasl_username="alice",
                        sasl_password_env="ARTBANDIT_SASL")  # fmt: skip
    with pytest.raises(KafkaSettingsError, match="does not answer in Kafka's protocol"):
        check_connection(kafka)
