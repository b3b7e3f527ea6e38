import threading

import msgspec
import pytest

from bandit.contracts.events import Candidate, Context
from bandit.contracts.slots import SlotConfig, SlotKind
from bandit.policies import build_policy
from sim.synthetic import SyntheticWorld
from storage.model_store import CorruptVersion, ModelStore, ModelStoreError

CONTEXT = Context(user={"taste": "action"})
PAGE = [
    Candidate(id=f"c{i}", features={"genre": "action" if i == 2 else "romance"}) for i in range(4)
]


def trained_policy(kind=SlotKind.ARTWORK, rounds=200, policy="vw"):
    policy = build_policy(SlotConfig(kind=kind, policy=policy, seed=1, select=2))
    world = SyntheticWorld(kind, seed=2)
    for _ in range(rounds):
        round_ = world.draw()
        policy.learn(
            world.rewarded_event(round_, policy.decide(round_.context, round_.candidates), "s")
        )
    return policy


@pytest.mark.parametrize("kind", list(SlotKind))
@pytest.mark.parametrize("policy_type", ["vw", "thompson", "uniform", "default"])
def test_saved_version_loads_as_the_same_policy(tmp_path, kind, policy_type):
    store = ModelStore(tmp_path)
    policy = trained_policy(kind, policy=policy_type)
    info = store.save("slot", policy)
    loaded = store.load("slot", info.version)
    assert loaded.info == info
    assert loaded.info.examples_learned == policy.examples_learned == 200
    assert loaded.policy.examples_learned == 200
    assert loaded.info.policy_type == policy_type
    assert loaded.policy.slot == policy.slot
    if policy_type in ("vw", "default"):
        assert loaded.policy.decide(CONTEXT, PAGE, greedy=True) == policy.decide(
            CONTEXT, PAGE, greedy=True
        )


def test_versions_increase_and_old_ones_are_pruned(tmp_path):
    store = ModelStore(tmp_path, keep_versions=3)
    policy = trained_policy(rounds=1)
    infos = [store.save("artwork", policy) for _ in range(5)]
    assert [i.version for i in infos] == [f"v{n:08d}" for n in range(1, 6)]
    assert store.versions("artwork") == ["v00000003", "v00000004", "v00000005"]
    assert not list(tmp_path.glob("artwork/.tmp-*")), "no temp files left behind"


def test_truncated_version_is_refused_and_the_previous_stays_usable(tmp_path):
    store = ModelStore(tmp_path)
    policy = trained_policy()
    good = store.save("artwork", policy)
    newest = store.save("artwork", policy)
    path = tmp_path / "artwork" / f"{newest.version}.policy"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(CorruptVersion, match="truncated"):
        store.load("artwork", newest.version)
    assert store.load_latest("artwork").info.version == good.version


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda data: data[:10], "not an artbandit policy file"),
        (lambda data: data[: data.index(b"\n") + 20], "truncated inside its metadata"),
        (lambda data: data[:-1] + bytes([data[-1] ^ 1]), "checksum mismatch"),
        (lambda data: data.replace(b'"size": ', b'"size": x', 1), "unreadable metadata"),
        (lambda data: b"", "not an artbandit policy file"),
    ],
)
def test_damaged_version_is_refused_with_a_clear_error(tmp_path, damage, message):
    store = ModelStore(tmp_path)
    info = store.save("artwork", trained_policy(rounds=5))
    path = tmp_path / "artwork" / f"{info.version}.policy"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CorruptVersion, match=message):
        store.load("artwork", info.version)
    with pytest.raises(ModelStoreError, match="no usable version"):
        store.load_latest("artwork")


def test_model_bytes_vw_cannot_read_are_refused(tmp_path):
    store = ModelStore(tmp_path)
    policy = trained_policy(rounds=5)
    policy.to_bytes = lambda: b"not a vw model"  # a payload that passes the checksum
    info = store.save("artwork", policy)
    with pytest.raises(CorruptVersion, match="cannot load policy"):
        store.load("artwork", info.version)


def test_empty_store_says_so(tmp_path):
    with pytest.raises(ModelStoreError, match="no usable version of slot 'hero'"):
        ModelStore(tmp_path).load_latest("hero")


def test_concurrent_writers_never_overwrite_each_other(tmp_path):
    store = ModelStore(tmp_path, keep_versions=1000)
    policy = trained_policy(rounds=1, policy="thompson")
    versions: list[str] = []

    def write():
        for _ in range(10):
            versions.append(store.save("hero", policy).version)

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(versions)) == 40
    assert store.versions("hero") == sorted(versions)


def test_loading_with_a_new_slot_config_changes_exploration(tmp_path):
    store = ModelStore(tmp_path)
    policy = trained_policy()
    info = store.save("artwork", policy)
    wider = msgspec.structs.replace(policy.slot, exploration=msgspec.structs.replace(
        policy.slot.exploration, epsilon=0.5))  # fmt: skip
    loaded = store.load("artwork", info.version, slot_config=wider)
    assert loaded.policy.slot.exploration.epsilon == 0.5
    assert min(loaded.policy.decide(CONTEXT, PAGE).probabilities) >= 0.5 / len(PAGE) - 1e-6


def test_a_version_is_found_by_its_short_name_and_a_wrong_one_names_what_is_stored(tmp_path):
    store = ModelStore(tmp_path)
    policy = build_policy(SlotConfig(kind=SlotKind.HERO))
    saved = [store.save("hero", policy).version for _ in range(3)]
    assert saved[1] == "v00000002"
    for name in ("v2", "2", "v00000002"):
        assert store.load("hero", name).info.version == "v00000002"
    with pytest.raises(ModelStoreError, match=r"v00000009: no such version \(stored: "
                                              r"v00000001 to v00000003, 3 versions\)"):  # fmt: skip
        store.load("hero", "v9")
    with pytest.raises(ModelStoreError, match="no version of artwork is stored"):
        store.load("artwork", "v1")
