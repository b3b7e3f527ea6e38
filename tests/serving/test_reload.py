"""Hot reload, readiness and the admin endpoints, over real HTTP."""

import tempfile
import threading

from bandit.contracts.slots import SlotConfig, SlotKind
from bandit.policies import VWChoicePolicy, build_policy
from serving.policy_registry import PolicyRegistry
from storage.config_file import load_config
from storage.model_store import ModelStore
from tests.helpers import metric_value, running_service, wait_for

TOKEN = "s3cret-token"
HERO = {"slots": [{"slot": "hero", "candidates": [{"id": f"h{i}"} for i in range(6)]}]}


def store_of(config) -> ModelStore:
    return ModelStore(config.model_store.path)


def save_version(config, slot="hero") -> str:
    policy = build_policy(config.slots[slot])
    try:
        return store_of(config).save(slot, policy).version
    finally:
        policy.close()


def corrupt(config, version: str, slot="hero") -> None:
    path = store_of(config).root / slot / f"{version}.policy"
    path.write_bytes(path.read_bytes()[:-5])


def served_version(client) -> str:
    return client.post("/v1/decide", HERO)[1]["decisions"][0]["policy_version"]


def test_hot_swap_under_concurrent_requests_loses_none(make_config):
    config = make_config("slots.hero.holdout_fraction=0", 'kafka.bootstrap_servers="127.0.0.1:9"')
    save_version(config)
    with running_service(config) as service:
        stop, results, seen = threading.Event(), [], set()

        def hammer():
            client = service.client()
            while not stop.is_set():
                status, answer = client.post("/v1/decide", HERO)
                results.append(status)
                if status == 200:
                    seen.add(answer["decisions"][0]["policy_version"])

        threads = [threading.Thread(target=hammer) for _ in range(4)]
        for thread in threads:
            thread.start()
        published = []
        for _ in range(6):
            published.append(save_version(config))
            wait_for(lambda v=published[-1]: v in seen)
        bad = save_version(config)
        corrupt(config, bad)
        wait_for(lambda: metric_value(service.client().get("/metrics")[1],
                                      "artbandit_policy_reload_failures_total", slot="hero") >= 1)  # fmt: skip
        stop.set()
        for thread in threads:
            thread.join()
        assert served_version(service.client()) == published[-1], "the corrupt version is refused"
    assert len(results) > 100 and set(results) == {200}, (
        f"{len(results)} requests, statuses {set(results)}"
    )
    assert set(published) <= seen and bad not in seen


def test_readyz_waits_for_a_trained_policy_when_required(make_config):
    config = make_config("serving.require_trained_policy=true", "slots.hero.holdout_fraction=0")
    with running_service(config) as service:
        client = service.client()
        status, answer = client.get("/readyz")
        assert status == 503 and answer["missing"] == ["artwork", "hero", "rows"]
        status, answer = client.post("/v1/decide", HERO)
        assert status == 503 and answer["error"]["reason"] == "not_ready"
        for slot in ("artwork", "hero", "rows"):
            save_version(config, slot)
        wait_for(lambda: client.get("/readyz")[0] == 200)
        assert served_version(client) == "v00000001"


def test_admin_endpoints_need_the_bearer_token(make_config):
    with running_service(make_config(), environ={"ARTBANDIT_ADMIN_TOKEN": TOKEN}) as service:
        client = service.client()
        for path in ("/v1/admin/promote", "/v1/admin/rollback", "/v1/admin/reload"):
            assert client.post(path, {"slot": "hero"})[0] == 401
            assert (
                client.post(path, {"slot": "hero"}, headers={"Authorization": "Bearer nope"})[0]
                == 401
            )
    with running_service(make_config(), environ={}) as service:  # no token configured: closed
        assert (
            service.client().post("/v1/admin/reload", headers={"Authorization": "Bearer "})[0]
            == 401
        )


def test_promote_pins_a_version_rollback_steps_back_and_latest_unpins(make_config):
    config = make_config("slots.hero.holdout_fraction=0")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    v1, v2, v3 = save_version(config), save_version(config), save_version(config)
    with running_service(config, environ={"ARTBANDIT_ADMIN_TOKEN": TOKEN}) as service:
        client = service.client()
        assert served_version(client) == v3
        status, answer = client.post("/v1/admin/rollback", {"slot": "hero"}, headers=auth)
        assert (status, answer["version"], answer["pinned"]) == (200, v2, v2)
        assert served_version(client) == v2
        v4 = save_version(config)
        assert served_version(client) == v2, "a pin holds against newer versions"
        assert (
            client.post("/v1/admin/promote", {"slot": "hero", "version": v1}, headers=auth)[1][
                "version"
            ]
            == v1
        )
        corrupt(config, v4)
        status, answer = client.post(
            "/v1/admin/promote", {"slot": "hero", "version": v4}, headers=auth
        )
        assert status == 409 and answer["error"]["field"] == "version"
        assert config.model_store.path not in answer["error"]["message"]  # no paths leak
        status, answer = client.post(
            "/v1/admin/promote", {"slot": "hero", "version": "v-1"}, headers=auth
        )
        assert (status, answer["error"]["message"]) == (
            409, "hero/v-1: no such version (stored: v00000001 to v00000004, 4 versions)")  # fmt: skip
        status, answer = client.post("/v1/admin/rollback", {"slot": "hero"}, headers=auth)
        assert status == 409 and answer["error"]["reason"] == "nothing_to_roll_back"
        answer = client.post(
            "/v1/admin/promote", {"slot": "hero", "version": "latest"}, headers=auth
        )[1]
        # Unpinned, the newest is wanted; v4 is corrupt, so the newest whole one (v3) serves.
        assert answer["pinned"] is None and answer["version"] == v3
        status, answer = client.post(
            "/v1/admin/promote", {"slot": "carousel", "version": v1}, headers=auth
        )
        assert status == 400 and answer["error"]["field"] == "slot"


def test_reload_rereads_the_config(make_config):
    config = make_config("slots.hero.holdout_fraction=0")
    reloaded = make_config("slots.hero.holdout_fraction=1")
    environ = {"ARTBANDIT_ADMIN_TOKEN": TOKEN}
    with running_service(config, environ=environ, config_loader=lambda: reloaded) as service:
        client = service.client()
        assert client.post("/v1/decide", HERO)[1]["decisions"][0]["group"] == "treatment"
        assert (
            client.post("/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        )
        assert client.post("/v1/decide", HERO)[1]["decisions"][0]["group"] == "control"


def test_reload_with_a_bad_config_is_refused_and_keeps_serving(make_config):
    from bandit.config import ConfigError

    def broken():
        raise ConfigError("slots.hero.exploration.epsilon", "Expected `float` <= 1.0")

    environ = {"ARTBANDIT_ADMIN_TOKEN": TOKEN}
    with running_service(make_config(), environ=environ, config_loader=broken) as service:
        client = service.client()
        status, answer = client.post(
            "/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert status == 400 and answer["error"]["field"] == "slots.hero.exploration.epsilon"
        assert client.post("/v1/decide", HERO)[0] == 200


def test_a_reload_reaches_every_worker_sharing_the_store(make_config):
    config = make_config("slots.hero.holdout_fraction=0")
    reloaded = make_config("slots.hero.holdout_fraction=1")
    environ = {"ARTBANDIT_ADMIN_TOKEN": TOKEN}
    # Two services on one model store stand for two gunicorn workers (or two replicas).
    with (
        running_service(config, environ=environ, config_loader=lambda: reloaded) as first,
        running_service(config, environ=environ, config_loader=lambda: reloaded) as second,
    ):
        other = second.client()
        assert other.post("/v1/decide", HERO)[1]["decisions"][0]["group"] == "treatment"
        assert (
            first.client().post("/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})[0]
            == 200
        )
        wait_for(lambda: other.post("/v1/decide", HERO)[1]["decisions"][0]["group"] == "control")


def test_a_version_that_cannot_load_for_lack_of_disk_is_retried_once_there_is_room(
    make_config, monkeypatch, tmp_path
):
    config = make_config("slots.hero.holdout_fraction=0", 'kafka.bootstrap_servers="127.0.0.1:9"')
    first = save_version(config)
    with running_service(config) as service:
        client = service.client()
        assert served_version(client) == first
        # VW loads a model through a temp file: a temp directory that cannot be written
        # stands for a full disk. The version is fine, so it must not stay refused.
        elsewhere = ModelStore(tmp_path / "learner")
        policy = build_policy(config.slots["hero"])
        second = [elsewhere.save("hero", policy) for _ in range(2)][-1].version
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "full"))
        store_of(config).install(elsewhere.version_file("hero", second))
        wait_for(lambda: metric_value(client.get("/metrics")[1],
                                      "artbandit_policy_reload_failures_total", slot="hero") >= 1)  # fmt: skip
        assert served_version(client) == first
        monkeypatch.undo()
        wait_for(lambda: served_version(client) == second)


def test_a_stored_version_that_loads_but_cannot_decide_is_refused(tmp_path):
    # a model saved under other VW arguments (a single-line learner): it loads, then fails
    # on the first page; the registry refuses it, so /readyz names the slot as missing
    config = load_config(overrides=[f'model_store.path="{tmp_path}"'], environ={})
    store = ModelStore(config.model_store.path)
    wrong = SlotConfig(kind=SlotKind.ARTWORK, vw_args="--cb_explore 4")
    store.save("artwork", VWChoicePolicy(wrong))
    events = []
    registry = PolicyRegistry(config, store, on_reload=lambda event, entry: events.append(event))
    registry.refresh()
    refused = [e for e in events if not e.ok]
    assert [(e.slot, e.version) for e in refused] == [("artwork", "v00000001")]
    assert "cannot decide" in refused[0].detail
    assert "artwork" not in registry.versions()
    assert registry.versions()["hero"] == "untrained"
