"""The `artbandit` command as a user runs it: real processes, real exit codes."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from kafkaio.embedded_broker import free_port

ARTBANDIT = str(Path(sys.executable).with_name("artbandit"))


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ARTBANDIT, *args], capture_output=True, text=True, timeout=timeout,
        env={k: v for k, v in os.environ.items() if k != "ARTBANDIT_CONFIG"},
    )  # fmt: skip


def test_bad_config_exits_2_naming_the_key():
    result = run("demo", "--set", "slots.rows.exploration.epsilon=7")
    assert result.returncode == 2
    assert "slots.rows.exploration.epsilon" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_usage_exits_2():
    assert run("no-such-verb").returncode == 2


def test_broker_verb_serves_until_sigterm():
    port = free_port()
    process = subprocess.Popen(
        [ARTBANDIT, "broker", "--port", str(port)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert "listening on 127.0.0.1" in process.stdout.readline()
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "broker port never opened"
                time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()
    deadline = time.monotonic() + 10
    while True:  # the broker child is gone with its parent
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            break
        assert time.monotonic() < deadline, "broker still listening after the verb exited"
        time.sleep(0.1)


def test_learn_refuses_a_bad_member_name_naming_the_key():
    result = run("learn", "--set", "learner.member=two words", timeout=30)
    assert result.returncode == 2
    assert "learner.member" in result.stderr


def test_learn_exits_cleanly_on_sigterm_after_its_final_checkpoint(tmp_path, broker):
    process = subprocess.Popen(
        [ARTBANDIT, "learn", "--quiet",
         "--set", f"kafka.bootstrap_servers={broker.bootstrap_servers}",
         "--set", f'learner.checkpoint_dir="{tmp_path / "ck"}"',
         "--set", f'model_store.path="{tmp_path / "models"}"',
         "--set", f"learner.metrics_port={free_port()}",
         "--set", f'learner.group_id="cli-{time.time_ns()}"'],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not list((tmp_path / "ck" / "learner").glob("checkpoint-*.bin")):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.1)  # its first checkpoint follows the group's assignment
    threads = os.listdir(f"/proc/{process.pid}/task")
    assert len(threads) > 1  # the consumer's and the metrics server's too
    assert {os.getpriority(os.PRIO_PROCESS, int(t)) for t in threads} == {10}  # learner.nice
    assert "libarrow" not in Path(f"/proc/{process.pid}/maps").read_text()  # 60 MB it needs not
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0


def test_version_is_printed_and_importable():
    import artbandit

    done = run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"artbandit {artbandit.__version__}"
    assert artbandit.__version__[0].isdigit()


def test_building_every_verbs_parser_loads_no_pyarrow():
    """Every verb's parser is built at start; pyarrow (60 MB of RSS, 0.4 s) is for the verbs
    that read or write Parquet, never for the learner, the tuner or the service's processes."""
    probe = (
        "import sys\n"
        "from artbandit.cli import build_parser\n"
        "for verb in ('learn', 'tune', 'serve'):\n"
        "    build_parser().parse_args([verb])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'pyarrow'))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
