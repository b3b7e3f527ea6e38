"""`artbandit audit`: logged decisions re-scored with the real VW versions that logged them
(from a real model store) agree exactly, and every injected logging error is caught, by
kind and by count."""

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from bandit.contracts.events import PolicyRef
from bandit.contracts.slots import SlotKind
from replay.audit import audit
from replay.logs import write_log
from tests.replay.conftest import logged_by_real_versions

ARTBANDIT = str(Path(sys.executable).with_name("artbandit"))


@pytest.mark.parametrize(("slot", "kind"), [("artwork", SlotKind.ARTWORK), ("rows", SlotKind.ROWS)])
def test_a_log_written_by_real_versions_rescores_exactly(tmp_path, slot, kind):
    config, store, log, _ = logged_by_real_versions(tmp_path, slot, kind, 60)
    (result,) = audit(log, config, store)
    positions = 3 if kind.ranked else 1
    assert result.rescored_rounds == 120 * positions  # untrained and stored, every position
    assert result.mismatches == 0 and result.largest_difference < 1e-6, result.examples  # float32
    assert result.control_not_default == 0 and result.missing_versions == {}
    assert result.findings == []


def test_every_injected_logging_error_is_caught_by_kind_and_count(tmp_path):
    config, store, log, version = logged_by_real_versions(tmp_path, "artwork", SlotKind.ARTWORK, 80)
    trained = [i for i, e in enumerate(log) if e.policy.version == version]
    control = [i for i, e in enumerate(log) if e.group == "control"]
    explored = [i for i in trained if log[i].probabilities[0] < 0.99]
    halved, certain, stale = explored[:7], explored[7:11], trained[-5:]
    assert len(certain) == 4 and not set(stale) & set(halved + certain)
    for i in halved:
        log[i] = msgspec.structs.replace(log[i], probabilities=[log[i].probabilities[0] / 2])
    for i in certain:
        log[i] = msgspec.structs.replace(log[i], probabilities=[1.0])
    for i in control[:3]:  # control showing what the treatment chose
        log[i] = msgspec.structs.replace(log[i], chosen=[log[i].candidates[-1].id])
    for i in stale:
        log[i] = msgspec.structs.replace(log[i], policy=PolicyRef(name="vw", version="v00000099"))
    (result,) = audit(log, config, store, targets=["uniform"])
    assert result.mismatches == len(halved) + len(certain)
    assert {m.decision_id for m in result.examples} <= {
        log[i].decision_id for i in halved + certain
    }
    genuine = sum(e.probabilities[0] >= 1.0 for e in log if e.group == "treatment") - len(certain)
    assert result.deterministic_rounds == len(certain) + genuine
    assert result.control_not_default == 3
    assert result.missing_versions == {"v00000099": 5}
    assert len(result.findings) >= 3
    # a sample audits that many decisions, the same ones for the same seed
    small = audit(log, config, store, sample=50, seed=3)[0]
    assert small.sampled == 50 and small == audit(log, config, store, sample=50, seed=3)[0]


def test_the_command_exits_1_on_findings_0_on_a_clean_log_and_2_on_a_bad_one(tmp_path):
    config, _, log, _ = logged_by_real_versions(tmp_path, "artwork", SlotKind.ARTWORK, 30)
    store_setting = f'--set=model_store.path="{config.model_store.path}"'
    clean, broken = tmp_path / "clean.jsonl", tmp_path / "broken.jsonl"
    write_log(clean, log)
    log[40] = msgspec.structs.replace(log[40], probabilities=[log[40].probabilities[0] / 3])
    write_log(broken, log)

    def run(path) -> subprocess.CompletedProcess:
        return subprocess.run([ARTBANDIT, "audit", "--log", str(path), store_setting,
                               "--json", str(tmp_path / "audit.json")],
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    ok = run(clean)
    assert ok.returncode == 0 and "ok: nothing found" in ok.stdout, ok.stderr
    found = run(broken)
    assert found.returncode == 1 and "1 of 60 re-scored rounds" in found.stdout, found.stdout
    assert log[40].decision_id in found.stdout
    assert run(tmp_path / "missing.jsonl").returncode == 2
