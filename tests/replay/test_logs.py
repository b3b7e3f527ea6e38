"""Replay logs: every format reads back the same events; repeats and bad lines are counted,
never silently dropped; a topic reads like a file."""

import gzip

import pytest

from bandit.contracts import events
from kafkaio.produce import produce
from replay.logs import LogError, read_log, write_log


@pytest.mark.parametrize("name", ["log.jsonl", "log.jsonl.gz", "log.parquet"])
def test_every_format_reads_back_the_events_written(tmp_path, artwork_log, name):
    path = tmp_path / name
    assert write_log(path, artwork_log[:500]) == 500
    log = read_log(str(path))
    assert log.events == sorted(artwork_log[:500], key=lambda e: e.ts)
    assert log.duplicates == 0 and log.bad == []


def test_repeated_decisions_are_read_once_and_counted(tmp_path, artwork_log):
    path = tmp_path / "log.jsonl"
    write_log(path, [*artwork_log[:100], *artwork_log[50:60]])
    log = read_log(str(path))
    assert len(log.events) == 100 and log.duplicates == 10


def test_a_bad_line_stops_the_read_with_its_number_unless_skipped(tmp_path, artwork_log):
    path = tmp_path / "log.jsonl.gz"
    good = [events.encode(e) for e in artwork_log[:3]]
    with gzip.open(path, "wb") as fh:
        fh.write(b"\n".join([good[0], good[1], b'{"schema": "artbandit.rewarded/1"}', good[2]]))
    with pytest.raises(LogError, match=r"line 3: .*missing field"):
        read_log(str(path))
    log = read_log(str(path), skip_bad=True)
    assert len(log.events) == 3 and len(log.bad) == 1 and log.bad[0].startswith("line 3")


def test_missing_file_and_missing_topic_are_clear_errors(tmp_path, broker):
    with pytest.raises(LogError, match="no such file"):
        read_log(str(tmp_path / "nope.jsonl"))
    with pytest.raises(LogError, match="no such topic"):
        read_log("kafka://never-created-topic", broker.bootstrap_servers)


def test_a_topic_reads_like_a_file_with_repeats_counted(broker, topic, artwork_log):
    messages = [(e.decision_id, events.encode(e)) for e in artwork_log[:300]]
    produce(broker.bootstrap_servers, topic, messages + messages[:7])  # a learner's repeat
    log = read_log(f"kafka://{topic}", broker.bootstrap_servers, quiet=True)
    assert log.events == sorted(artwork_log[:300], key=lambda e: e.ts)
    assert log.duplicates == 7
