"""A partitioned Parquet log: its rounds come from columns, not decoded events; its
estimates are the same on every engine (this process, a local Dask cluster) to the last
bit, and equal a single-process replay of the whole log where they do not resample."""

import subprocess
import sys

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bandit.contracts.slots import SlotKind
from replay import columnar
from replay.evaluate import evaluate
from replay.logs import ReplayLog, write_log
from replay.partitioned import replay_partitioned
from replay.results import Settings
from replay.rounds import Rounds
from replay.targets import parse_target
from storage.config_file import load_config
from tests.replay.conftest import uniform_log

SPECS = ["uniform", "default"]
NO_MODEL = ("ips", "clipped_ips", "snips")


@pytest.fixture(scope="module")
def mixed_log():
    """Artwork and rows, some of each in control, with marked defaults."""
    log = []
    for slot, count in (("artwork", 1500), ("rows", 900)):
        for i, event in enumerate(uniform_log(SlotKind(slot), count, seed=7, slot=slot)):
            candidates = [msgspec.structs.replace(c, default=j == i % 3)
                          for j, c in enumerate(event.candidates)]  # fmt: skip
            log.append(msgspec.structs.replace(
                event, decision_id=f"{slot}-{i}", candidates=candidates,
                group="control" if i % 10 == 0 else "treatment",
            ))  # fmt: skip
    log.sort(key=lambda e: e.ts)
    return log


@pytest.fixture(scope="module")
def partitioned(mixed_log, tmp_path_factory):
    directory = tmp_path_factory.mktemp("partitioned")
    paths = columnar.write_partitions(mixed_log, directory, rows_per_file=500)
    assert len(paths) == 5
    return directory


def test_rounds_from_columns_equal_rounds_from_events_and_decode_nothing(mixed_log, partitioned):
    part = columnar.read_partition(columnar.partition_paths(partitioned)[0])
    for slot in ("artwork", "rows"):
        from_columns = part.rounds(slot, "treatment")
        events = [e for e in mixed_log[:500] if e.slot == slot and e.group == "treatment"]
        from_events = Rounds.from_events(slot, events)
        for name in ("event_index", "position", "chosen", "propensity", "reward", "sizes"):
            np.testing.assert_array_equal(getattr(from_columns, name), getattr(from_events, name))
        assert from_columns.width == from_events.width
        for name in ("offsets", "values"):
            np.testing.assert_array_equal(
                getattr(from_columns.defaults, name), getattr(from_events.defaults, name)
            )
        config = load_config(environ={})
        for spec in SPECS:
            pmf = parse_target(spec, config, 0).probabilities(None, from_columns, True)
            expected = parse_target(spec, config, 0).probabilities(None, from_events, True)
            np.testing.assert_array_equal(pmf, expected)
        assert not from_columns.events.is_decoded
        assert from_columns.events[0] == events[0]  # decoded when asked for


def _estimates(result):
    out = {}
    for slot in result.slots:
        for target in slot.targets:
            for e in target.estimates:
                out[(slot.slot, target.target, target.position, e.estimator)] = e
        for page in slot.pages:
            for e in page.estimates:
                out[(slot.slot, page.target, "page", e.estimator)] = e
    return out


def test_every_engine_gives_the_same_estimates_and_no_resampling_equals_the_whole_log(
    mixed_log, partitioned
):
    config = load_config(environ={}, overrides=["slots.rows.select=3"])
    settings = Settings(bootstrap=50, seed=3, reward_model=True)
    local = replay_partitioned(str(partitioned), SPECS, config, settings, "local")
    cluster = replay_partitioned(str(partitioned), SPECS, config, settings, "dask", workers=2)
    here, there = _estimates(local), _estimates(cluster)
    assert here.keys() == there.keys() and len(here) > 40
    for key, estimate in here.items():
        assert estimate == there[key], key  # bit for bit, bootstrap and DR included
    assert {name for *_, name in here} >= {"dr", "snips", "standard_ips"}
    assert _gaps(local) == _gaps(cluster) and len(_gaps(local)) > 6  # the holdout check too

    plain = Settings(estimators=NO_MODEL, bootstrap=0, reward_model=False)
    merged = _estimates(replay_partitioned(str(partitioned), SPECS, config, plain))
    whole = _estimates(evaluate(ReplayLog(mixed_log, "whole"), [
        parse_target(spec, config, 0) for spec in SPECS
    ], config, plain))  # fmt: skip
    compared = [key for key in whole if key in merged]
    assert len(compared) == len(merged) > 20
    for key in compared:
        a, b = merged[key], whole[key]
        assert a.rounds == b.rounds, key
        assert a.value == pytest.approx(b.value, rel=1e-12, abs=1e-12), key
        assert a.std_error == pytest.approx(b.std_error, rel=1e-9, abs=1e-12), key


def test_a_partition_that_breaks_the_contract_is_named(tmp_path, mixed_log):
    path = tmp_path / "part-00000.parquet"
    write_log(path, mixed_log[:20])
    table = pq.read_table(path)
    broken = table.set_column(
        table.column_names.index("probabilities"), "probabilities",
        pa.array([[0.0]] * len(table), pa.list_(pa.float64())),
    )  # fmt: skip
    pq.write_table(broken, path)
    with pytest.raises(columnar.ColumnarError, match=r"part-00000\.parquet: probabilities"):
        columnar.read_partition(path)
    index = table.column_names.index("default_terms")
    for terms, problem in (([1.0] * 5, "not 6 entries"), ([float("nan")] * 6, "finite")):
        wrong = table.set_column(index, "default_terms",
                                 pa.array([terms] * len(table), pa.list_(pa.float64())))  # fmt: skip
        pq.write_table(wrong, path)
        with pytest.raises(columnar.ColumnarError, match=f"default_terms: .*{problem}"):
            columnar.read_partition(path)
    old = tmp_path / "old.parquet"  # written before the round columns: decoded instead
    pq.write_table(table.select(["decision_id", "ts", "slot", "group", "reward", "event"]), old)
    part = columnar.read_partition(old)
    assert len(part.table) == 20 and part.duplicates == 0
    repeated = tmp_path / "repeated.parquet"
    pq.write_table(pa.concat_tables([table, table.slice(0, 3)]), repeated)
    assert columnar.read_partition(repeated).duplicates == 3


def test_export_then_replay_on_a_local_dask_cluster_from_the_command_line(tmp_path, mixed_log):
    source = tmp_path / "log.jsonl.gz"
    write_log(source, mixed_log)
    cli = [sys.executable, "-m", "artbandit.cli"]
    exported = subprocess.run(
        [*cli, "export", "--log", str(source), "--out", str(tmp_path / "parts"),
         "--rows-per-file", "1000"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    assert "2,400 events in 3 partitions" in exported.stdout
    replayed = subprocess.run(
        [*cli, "replay", "--log", str(tmp_path / "parts"), "--engine", "dask", "--workers", "2",
         "--no-reward-model", "--bootstrap", "20", "--out", str(tmp_path / "report"),
         "--quiet"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stderr
    assert "snips" in replayed.stdout and "partitioned replay leaves out" in replayed.stdout
    assert (tmp_path / "report" / "report.html").exists()
    refused = subprocess.run(
        [*cli, "replay", "--log", str(tmp_path / "parts"), "--policy", "learn:learning_rate=0.1",
         "--quiet"], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 2 and "learns as it goes" in refused.stderr


def test_ragged_lists_index_and_first_like_lists():
    from replay.rounds import Ragged

    lists = [[], [3, 1], [], [0], []]
    ragged = Ragged.of(lists)
    assert [ragged[i].tolist() for i in range(5)] == lists
    assert ragged.first(missing=-1).tolist() == [-1, 3, -1, 0, -1]
    assert Ragged.of([[], []]).first(missing=0).tolist() == [0, 0]


def _gaps(result):
    return {(slot.slot, gap.estimator): gap for slot in result.slots for gap in slot.calibration}


@pytest.mark.parametrize("logged_default", [False, True])
def test_the_check_against_the_holdout_equals_the_whole_logs(mixed_log, tmp_path, logged_default):
    # With the default's probability logged, the check keeps to where it is at least 5%
    # (about two artwork decisions in three here); without, it takes every decision.
    log = [
        msgspec.structs.replace(e, default_probability=(0.01 if i % 4 == 0 else 0.2)
                                if logged_default else None)
        if e.slot == "artwork" else e
        for i, e in enumerate(mixed_log)
    ]  # fmt: skip
    columnar.write_partitions(log, tmp_path, rows_per_file=700)
    config = load_config(environ={}, overrides=["slots.rows.select=3"])
    plain = Settings(estimators=NO_MODEL, bootstrap=0, reward_model=False)
    merged = _gaps(replay_partitioned(str(tmp_path), SPECS, config, plain))
    targets = [parse_target(spec, config, 0) for spec in SPECS]
    whole = _gaps(evaluate(ReplayLog(log, "whole"), targets, config, plain))
    assert merged.keys() == whole.keys() and len(whole) == 2 * len(NO_MODEL)
    for key, gap in whole.items():
        other = merged[key]
        assert (other.scope, other.judged, other.flagged) == (gap.scope, gap.judged, gap.flagged)
        for name in ("estimate", "control", "low", "high", "effective_rounds", "mean_weight"):
            assert getattr(other, name) == pytest.approx(getattr(gap, name), rel=1e-12), name
    scopes = {slot: gap.scope for (slot, _), gap in whole.items()}
    assert scopes["rows"] == "all decisions"
    assert scopes["artwork"].startswith("where the policy gives") == logged_default


def test_segments_equal_the_whole_logs(mixed_log, partitioned):
    config = load_config(environ={}, overrides=["slots.rows.select=3"])
    plain = Settings(estimators=NO_MODEL, bootstrap=0, reward_model=False, segment="user.taste")
    merged = replay_partitioned(str(partitioned), SPECS, config, plain)
    targets = [parse_target(spec, config, 0) for spec in SPECS]
    whole = evaluate(ReplayLog(mixed_log, "whole"), targets, config, plain)

    def segments(result):
        return {(slot.slot, t.target, t.position, value, e.estimator): e
                for slot in result.slots for t in slot.targets
                for value, estimates in t.segments.items() for e in estimates}  # fmt: skip

    here, there = segments(merged), segments(whole)
    assert here.keys() == there.keys() and len(here) > 30
    for key, estimate in there.items():
        assert here[key].rounds == estimate.rounds, key
        close = {"rel": 1e-12, "abs": 1e-12, "nan_ok": True}  # SNIPS of no weight: nan in both
        assert here[key].value == pytest.approx(estimate.value, **close), key
        assert here[key].std_error == pytest.approx(estimate.std_error, **{**close, "rel": 1e-9})
    order = [list(t.segments) for slot in whole.slots for t in slot.targets]
    assert order == [list(t.segments) for slot in merged.slots for t in slot.targets]
    with pytest.raises(ValueError, match=r"not user\.<name>"):
        replay_partitioned(str(partitioned), SPECS, config, Settings(segment="taste"))


def test_the_exposure_of_floored_candidates_equals_the_whole_logs(mixed_log, tmp_path):
    # the first candidate is flagged in artwork decisions from the 300th on: some partitions
    # have none, and the share is over every round
    log = [
        msgspec.structs.replace(e, candidates=[
            msgspec.structs.replace(c, floor=e.slot == "artwork" and i >= 300 and j == 0)
            for j, c in enumerate(e.candidates)
        ])
        for i, e in enumerate(mixed_log)
    ]  # fmt: skip
    columnar.write_partitions(log, tmp_path, rows_per_file=400)
    config = load_config(environ={}, overrides=["slots.rows.select=3"])
    plain = Settings(estimators=NO_MODEL, bootstrap=0, reward_model=False)
    merged = replay_partitioned(str(tmp_path), SPECS, config, plain)
    whole = evaluate(ReplayLog(log, "whole"), [parse_target(s, config, 0) for s in SPECS],
                     config, plain)  # fmt: skip
    shares = {s.slot: s.flagged_exposure for s in merged.slots}
    expected = {s.slot: s.flagged_exposure for s in whole.slots}
    assert shares["rows"] == expected["rows"] == {}
    assert list(shares["artwork"]) == list(expected["artwork"]) == ["shown", *SPECS]
    for name, share in expected["artwork"].items():
        assert 0 < share < 1 and shares["artwork"][name] == pytest.approx(share, rel=1e-12)
