"""Bad invocations, as a new user makes them: each exits 2 with one line that names the
mistake (the option or setting, and what exists), never a traceback or a bare exception."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bandit.contracts.slots import SlotKind
from replay.columnar import write_partitions
from replay.logs import write_log
from tests.replay.conftest import uniform_log

ARTBANDIT = str(Path(sys.executable).with_name("artbandit"))
ENV = {k: v for k, v in os.environ.items() if k != "ARTBANDIT_CONFIG"}
LOG = ("--log", "log.jsonl")

# (arguments, text the one line must contain)
BAD = [
    ((), "required"),
    (("nosuchverb",), "invalid choice"),
    (("replay",), "--log"),
    (("replay", "--log", "missing.jsonl"), "missing.jsonl"),
    (("replay", *LOG, "--segment", "fav_genre"), "--segment"),
    (("replay", *LOG, "--segment", "user.fav_genre"), "user.taste"),
    (("replay", "--log", "parts", "--policy", "uniform", "--segment", "user.fav_genre"),
     "user.taste"),
    (("replay", *LOG, "--slot", "artworks"), "its slots: artwork, rows"),
    (("replay", *LOG, "--policy", "store:artwork@v12:greedy"), "no version of artwork"),
    (("replay", *LOG, "--policy", "nosuch:x"), "nosuch:x"),
    (("replay", *LOG, "--estimators", "ips,bogus"), "bogus"),
    (("replay", *LOG, "--confidence", "2"), "--confidence"),
    (("replay", *LOG, "--clip", "0"), "--clip"),
    (("replay", "--log", "kafka://artbandit.rewarded", "--set",
      'kafka.bootstrap_servers="127.0.0.1:9"'), "kafka.bootstrap_servers"),
    (("export", *LOG, "--out", "log.jsonl"), "--out"),
    (("export", *LOG, "--out", "parts", "--rows-per-file", "0"), "--rows-per-file"),
    (("audit", *LOG), "model_store.path"),
    (("audit", *LOG, "--sample", "0"), "--sample"),
    (("train", *LOG, "--slot", "nope"), "nope"),
    (("tune", *LOG, "--slot", "nope"), "nope"),
    (("serve", "--set", "serving.port=-1"), "serving.port"),
    (("serve", "--set", "nosuch.key=1"), "nosuch"),
    (("learn", "--config", "/nonexistent/artbandit.toml"), "/nonexistent/artbandit.toml"),
    (("report", "lift", "--log", "missing.jsonl"), "missing.jsonl"),
    (("serve", "--set", 'kafka.security_protocol="SASL_SSL"'), "sasl_mechanism"),
]  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("usage")
    log = uniform_log(SlotKind.ARTWORK, 200, slot="artwork") + uniform_log(
        SlotKind.ROWS, 100, slot="rows"
    )
    write_log(root / "log.jsonl", log)
    write_partitions(log, root / "parts", rows_per_file=120)
    return root


def test_the_table_is_long_enough():
    assert len(BAD) >= 20


@pytest.mark.parametrize(("args", "named"), BAD, ids=[" ".join(a)[:60] for a, _ in BAD])
def test_bad_usage_exits_2_with_one_line_naming_the_mistake(workdir, args, named):
    store = ["--set", f'model_store.path="{workdir / "empty-store"}"']
    takes_settings = bool(args) and args[0] not in ("nosuchverb", "report")
    done = subprocess.run([ARTBANDIT, *args, *(store if takes_settings else [])], cwd=workdir,
                          capture_output=True, text=True, timeout=60, env=ENV)  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:], done.stdout[-500:])
    assert "Traceback" not in done.stderr
    assert any(named in line for line in lines), done.stderr
    message = [line for line in lines if line.startswith(("artbandit", "usage:"))]
    assert message, done.stderr
    for line in lines:
        assert not line.startswith(("ValueError", "KeyError", "FileExistsError", "KafkaTimeout"))
