"""The policies a serving worker runs, one per slot, swapped in place when a new version
(or a pin) appears in the model store.

A swap never fails a request: a request holds the entry it started with (under that entry's
lock, since a VW workspace is not thread-safe), the new entry is built fully before it is
published, and the old workspace is closed under its lock once no request uses it. A version
that does not load is refused, remembered, and the current one keeps serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bandit.config import SHADOW, Config, policy_slots, shadow_key
from bandit.contracts.slots import SlotConfig
from bandit.policies import Policy, build_policy
from bandit.policies.probe import probe_scoring
from storage.model_store import UNTRAINED, CorruptVersion, ModelStore, ModelStoreError

log = logging.getLogger(__name__)


@dataclass
class PolicyEntry:
    policy: Policy
    version: str
    created_at: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    closed: bool = False


@dataclass(frozen=True)
class ReloadEvent:
    slot: str
    version: str
    ok: bool
    detail: str = ""


class PolicyRegistry:
    def __init__(
        self,
        config: Config,
        store: ModelStore,
        on_reload: Callable[[ReloadEvent, PolicyEntry | None], None] = lambda event, entry: None,
    ):
        self.config = config
        self.configs = policy_slots(config)  # each slot's policy, and its shadow's
        self.store = store
        self.on_reload = on_reload
        self._entries: dict[str, PolicyEntry] = {}
        self._refused: set[tuple[str, str]] = set()
        self._refresh_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def get(self, slot: str) -> PolicyEntry | None:
        return self._entries.get(slot)

    def versions(self) -> dict[str, str]:
        return {slot: entry.version for slot, entry in self._entries.items()}

    def previous_version(self, slot: str) -> str | None:
        """The newest whole version of `slot` older than the one served (a rollback's
        target), or None."""
        entry = self._entries.get(slot)
        current = entry.version if entry else None
        older = [v for v in self.store.versions(slot) if current is None or v < current]
        for version in reversed(older):
            try:
                self.store.read_info(slot, version)
            except ModelStoreError:
                continue
            return version
        return None

    def refresh(self) -> list[ReloadEvent]:
        """Bring every slot to the version the store wants; returns what changed or failed."""
        with self._refresh_lock:
            return [event for slot in self.configs if (event := self._refresh_slot(slot))]

    def replace_config(self, config: Config) -> list[ReloadEvent]:
        """Adopt a new config: every slot reloads its version under its new slot config."""
        with self._refresh_lock:
            self.config = config
            self.configs = policy_slots(config)
            self._refused.clear()
            for slot in [s for s in self._entries if s not in self.configs]:
                self._publish(slot, None)
            return [e for s in self.configs if (e := self._refresh_slot(s, force=True))]

    def start(self, interval_s: float, on_tick: Callable[[], None] = lambda: None) -> None:
        """Refresh every `interval_s` in a background thread (started lazily per process);
        `on_tick` runs first on each round (the app checks for a config reload there)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(
            target=self._loop, args=(interval_s, on_tick), name="policy-reload", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self, interval_s: float, on_tick: Callable[[], None]) -> None:
        while not self._stop.wait(interval_s):
            try:
                on_tick()
                self.refresh()
            except Exception:  # the loop must outlive any one bad refresh
                log.exception("policy refresh failed")

    def promoted(self, slot: str) -> bool:
        """Whether `slot` serves its shadow (pinned by `/v1/admin/promote`)."""
        return shadow_key(slot) in self.configs and self.store.pinned(slot) == SHADOW

    def _refresh_slot(self, slot: str, force: bool = False) -> ReloadEvent | None:
        # A promoted slot serves its shadow's versions, named "shadow:<version>".
        source, prefix = (shadow_key(slot), f"{SHADOW}:") if self.promoted(slot) else (slot, "")
        slot_config = self.configs[source]
        current = self._entries.get(slot)
        if current is not None and current.version.startswith(f"{SHADOW}:") != bool(prefix):
            force = True  # promoted or unpromoted since: the other source, whatever it holds
        try:
            wanted = self.store.wanted_version(source)
        except OSError as exc:
            return self._refuse(slot, "?", f"model store unreadable: {exc}")
        if wanted is None:
            if (current is None or force) and not self.config.serving.require_trained_policy:
                untrained = prefix + UNTRAINED
                self._publish(slot, PolicyEntry(build_policy(slot_config), untrained, time.time()))
                return ReloadEvent(slot, untrained, ok=True, detail="no stored version")
            return None
        # A pin is served or nothing; else the newest version that loads, so a spoilt file
        # (truncated, corrupt) with a high number never blocks the good ones after it.
        pinned = self.store.pinned(source) is not None
        refusal = None
        for version in [wanted] if pinned else reversed(self.store.versions(source)):
            if current is not None and current.version == prefix + version and not force:
                break  # nothing newer loads: keep serving the current one
            if (slot, prefix + version) in self._refused:
                continue
            event = self._load(slot, version, slot_config, source, prefix)
            if event.ok:
                return event
            refusal = event
        return refusal

    def _load(
        self, slot: str, version: str, slot_config: SlotConfig, source: str, prefix: str
    ) -> ReloadEvent:
        named = prefix + version
        try:
            stored = self.store.load(source, version, slot_config)
        except ModelStoreError as exc:  # a corrupt file stays refused; anything else retries
            return self._refuse(slot, named, str(exc), remember=isinstance(exc, CorruptVersion))
        try:  # a version that loads but cannot decide (another kind of learner) never serves
            probe_scoring(stored.policy)
        except Exception as exc:
            stored.policy.close()
            return self._refuse(slot, named, f"it loads but cannot decide: {exc}")
        version = named
        self._publish(slot, PolicyEntry(stored.policy, version, stored.info.created_at))
        log.info("slot %s now serves %s", slot, version)
        return ReloadEvent(slot, version, ok=True)

    def _refuse(self, slot: str, version: str, detail: str, remember: bool = True) -> ReloadEvent:
        if remember:
            self._refused.add((slot, version))
        log.error("slot %s: refused version %s, keeping the current one: %s", slot, version, detail)
        event = ReloadEvent(slot, version, ok=False, detail=detail)
        self.on_reload(event, self._entries.get(slot))
        return event

    def _publish(self, slot: str, entry: PolicyEntry | None) -> None:
        old = self._entries.get(slot)
        if entry is None:
            self._entries.pop(slot, None)
        else:
            self._entries[slot] = entry
            self.on_reload(ReloadEvent(slot, entry.version, ok=True), entry)
        if old is not None:
            with old.lock:  # waits for a request still deciding with the old policy
                old.closed = True
                old.policy.close()
