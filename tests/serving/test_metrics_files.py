"""`/metrics` under gunicorn merges every worker's metric files; a file a worker is creating
at that moment exists at 0 bytes before it is sized, and must not fail the scrape."""

import struct

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector

from serving.metrics import WorkerFiles


def test_a_metric_file_not_sized_yet_counts_as_empty(tmp_path):
    written = MmapedDict(str(tmp_path / "counter_101.db"))  # a worker's file, as it writes it
    key = mmap_key("artbandit_decisions", "artbandit_decisions_total", ["slot"], ["hero"], "d")
    written.write_value(key, 42.0, 0.0)
    written.close()
    (tmp_path / "counter_102.db").touch()  # another worker's, created and not sized yet

    with pytest.raises(struct.error):  # what the stock collector does: the scrape answers 500
        list(MultiProcessCollector(None, path=str(tmp_path)).collect())
    registry = CollectorRegistry()
    registry.register(WorkerFiles(str(tmp_path)))
    exposition = generate_latest(registry).decode()
    assert 'artbandit_decisions_total{slot="hero"} 42.0' in exposition
