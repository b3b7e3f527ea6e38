"""Kafka over TLS, for real: a TLS terminator from Debian (stunnel4) in front of the embedded
broker, which advertises the terminator's port, so every client must speak TLS and verify
the broker's certificate against the configured CA. The service logs decisions, the learner
joins and learns, and `artbandit replay kafka://` reads the rewarded topic, all through it;
a wrong CA stops `learn` and `replay` at once with a message that says so."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bandit.config import Config
from bandit.contracts import events
from kafkaio.embedded_broker import EmbeddedBroker, free_port
from kafkaio.produce import produce
from replay.logs import read_log
from storage.config_file import load_config
from tests.conftest import learner_settings
from tests.helpers import running_learner, running_service, wait_for
from tests.serving.test_decide import page

ARTBANDIT = str(Path(sys.executable).with_name("artbandit"))
needs_tls_tools = pytest.mark.skipif(
    not (shutil.which("stunnel4") and shutil.which("openssl")),
    reason="needs stunnel4 and openssl: apt-get install stunnel4 (Debian; .ci/run does)",
)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _authority(directory: Path, name: str) -> None:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
             f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.pem", cwd=directory)  # fmt: skip


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> Path:
    """A CA, a broker certificate it signed for 127.0.0.1, and an unrelated CA."""
    directory = tmp_path_factory.mktemp("tls")
    _authority(directory, "ca")
    _authority(directory, "other-ca")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "broker.key", "-out", "broker.csr", cwd=directory)  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "broker.pem",
             cwd=directory)  # fmt: skip
    return directory


@contextlib.contextmanager
def tls_broker(certificates: Path) -> Iterator[str]:
    """The embedded broker behind stunnel4; yields the TLS bootstrap address."""
    tls_port = free_port()
    conf = certificates / f"stunnel-{tls_port}.conf"
    with EmbeddedBroker(advertised_port=tls_port) as broker:
        conf.write_text(
            "foreground = yes\npid =\n"
            f"[kafka]\naccept = 127.0.0.1:{tls_port}\nconnect = {broker.bootstrap_servers}\n"
            f"cert = {certificates / 'broker.pem'}\nkey = {certificates / 'broker.key'}\n"
        )
        stunnel = subprocess.Popen(["stunnel4", str(conf)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            wait_for(lambda: _answers(tls_port), 20)
            yield f"127.0.0.1:{tls_port}"
        finally:
            stunnel.terminate()
            stunnel.wait(10)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _tls(ca: Path) -> list[str]:
    return ['kafka.security_protocol="SSL"', f'kafka.ssl_cafile="{ca}"']


def _config(root: Path, bootstrap: str, ca: Path) -> Config:
    overrides = learner_settings(root, bootstrap, *_tls(ca),
                                 *(f"slots.{s}.attribution_window_s=2" for s in ("artwork", "hero", "rows")),
                                 "learner.allowed_lateness_s=0")  # fmt: skip
    return load_config(overrides=overrides, environ={})


@needs_tls_tools
@pytest.mark.slow
def test_serve_learn_and_replay_run_over_tls_and_a_wrong_ca_fails_fast(certificates, tmp_path):
    with tls_broker(certificates) as bootstrap:
        config = _config(tmp_path, bootstrap, certificates / "ca.pem")
        topics = config.kafka.topics
        with running_learner(config) as learner, running_service(config) as service:
            decided = []
            for _ in range(5):
                status, answer = service.client().post("/v1/decide", page())
                assert status == 200, answer
                decided += answer["decisions"]
            feedback = [
                events.FeedbackEvent(decision_id=d["decision_id"], ts=time.time(), type=kind)
                for d in decided for kind in ("impression", "click")
            ]  # fmt: skip
            produce(bootstrap, topics.feedback,
                    [(f.decision_id, events.encode(f)) for f in feedback], config.kafka)  # fmt: skip
            # every decision was logged over TLS, joined, and its reward written back over TLS
            wait_for(lambda: learner.status().consumed >= len(decided) + len(feedback), 60)
            wait_for(lambda: sum(learner.status().learned.values()) > 0, 60)
            # and every window closed (2 s after the last feedback), so all were rewarded
            wait_for(lambda: learner.status().open_decisions == 0, 60)
        log = read_log(f"kafka://{topics.rewarded}", bootstrap, quiet=True, kafka=config.kafka)
        assert {e.decision_id for e in log.events} == {d["decision_id"] for d in decided}

        settings = [f"--set={o}" for o in learner_settings(tmp_path, bootstrap)]
        rewarded = f'--set=kafka.topics.rewarded="{topics.rewarded}"'
        tls = [f"--set={o}" for o in _tls(certificates / "ca.pem")]
        done = subprocess.run(
            [ARTBANDIT, "replay", "--log", f"kafka://{topics.rewarded}", "--policy", "default",
             "--out", str(tmp_path / "replay"), "--quiet", *settings, rewarded, *tls],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"{len(decided)} events" in done.stdout

        wrong = [f"--set={o}" for o in _tls(certificates / "other-ca.pem")]
        for verb in (["learn"], ["replay", "--log", f"kafka://{topics.rewarded}"]):
            started = time.monotonic()
            failed = subprocess.run([ARTBANDIT, *verb, "--quiet", *settings, *wrong],
                                    capture_output=True, text=True, timeout=120)  # fmt: skip
            assert failed.returncode == 2, (verb, failed.stdout, failed.stderr)
            assert "TLS to 127.0.0.1" in failed.stderr and "CERTIFICATE_VERIFY_FAILED" in (
                failed.stderr
            ), failed.stderr
            assert time.monotonic() - started < 15


def test_sasl_settings_are_validated_and_the_password_is_read_not_configured(tmp_path):
    from bandit.config import ConfigError
    from kafkaio.clients import KafkaSettingsError, client_settings

    with pytest.raises(ConfigError, match="needs sasl_mechanism"):
        load_config(overrides=['kafka.security_protocol="SASL_SSL"'], environ={})
    with pytest.raises(ConfigError, match="exactly one of sasl_password_env"):
        load_config(overrides=['kafka.security_protocol="SASL_PLAINTEXT"',
                               'kafka.sasl_mechanism="SCRAM-SHA-512"',
                               'kafka.sasl_username="artbandit"'], environ={})  # fmt: skip
    with pytest.raises(ConfigError, match="sasl_mechanism"):
        load_config(overrides=['kafka.sasl_mechanism="GSSAPI"'], environ={})
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    config = load_config(overrides=['kafka.security_protocol="SASL_PLAINTEXT"',
                                    'kafka.sasl_mechanism="SCRAM-SHA-256"',
                                    'kafka.sasl_username="artbandit"',
                                    f'kafka.sasl_password_file="{secret}"',
                                    "kafka.producer.linger_ms=5"], environ={})  # fmt: skip
    assert "s3cret" not in repr(config)
    settings = client_settings(config.kafka, "event_producer", "127.0.0.1:1")
    assert settings["sasl_plain_password"] == "s3cret"
    assert (settings["sasl_mechanism"], settings["linger_ms"], settings["acks"]) == (
        "SCRAM-SHA-256", 5, 1)  # fmt: skip
    secret.unlink()
    with pytest.raises(KafkaSettingsError, match="cannot read") as caught:
        client_settings(config.kafka, "reader")
    assert "s3cret" not in str(caught.value)
