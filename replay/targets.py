"""Target policies for replay, named by a spec string on the command line.

  uniform | default          the baselines, as they are (no learning)
  thompson                   non-contextual Thompson, trained on the training part
  store:SLOT[@vN][:greedy]   a saved version from the model store (newest without @vN);
                             its exploring distribution, or its greedy choice
  train:KEY=VALUE ...        the slot's config with these overrides (e.g.
                             `train:exploration.epsilon=0.1 lrq=["UA8"] learning_rate=0.2`);
                             values are TOML, bare words strings. A fresh VW
                             policy trained on the training part, then frozen
  learn:KEY=VALUE ...        the same config replayed as if deployed: progressive
                             validation over the evaluated part, each event first scored,
                             then learned (after learning the training part, if any)
  logged                     the versions that logged each decision, from the model
                             store: the logger itself (rows: what `--logger` defaults to)
  shadow                     the slot's shadow policy, from the pmfs logged with each
                             decision (`slots.<slot>.shadow`)
  python:MODULE:FUNCTION     a callable pi(context, candidates) -> probabilities, one
  python:FILE.py:FUNCTION    per candidate (rows: called per position with the rows left)

Every target yields the same thing: an (n, width) matrix of its probabilities over each
round's candidates, zero where a candidate was not available. Asked with `each_page`, it
also hands over, per event, its pmf after any prefix of rows (`PmfOf`), before it learns
that event: what the slate estimators enumerate orderings with.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from bandit.config import SHADOW, Config, override_slot, shadow_key, shadow_slot
from bandit.contracts.events import Candidate, Context, RewardedEvent
from bandit.contracts.slots import SlotConfig
from bandit.policies import Policy, build_policy
from replay.progress import Progress
from replay.rounds import Rounds
from replay.slates import PmfOf
from storage.model_store import UNTRAINED, ModelStore, ModelStoreError

PMF_TOLERANCE = 1e-6
PageHook = Callable[[int, PmfOf], None]  # (event index in rounds.events, its pmf after a prefix)


class TargetError(ValueError):
    """A target spec that cannot be built, or a target that returned a wrong distribution."""


@dataclass(kw_only=True)
class Target:
    """A named way to get a policy's probabilities over logged rounds."""

    name: str
    trains: bool = False  # needs the training part of the log
    only_slot: str | None = None  # a saved version replays its own slot only

    enumerates: bool = True  # can give its pmf after any prefix (`each_page`)

    def applies_to(self, slot: str) -> bool:
        return self.only_slot in (None, slot)

    @property
    def sequential(self) -> bool:
        """It reads the log in order (trains on its first part, or learns as it scores), so
        a partitioned log cannot be scored one partition at a time."""
        return self.trains

    def probabilities(
        self, train: Rounds | None, rounds: Rounds, quiet: bool, each_page: PageHook | None = None
    ) -> np.ndarray:
        raise NotImplementedError


@dataclass(kw_only=True)
class PolicyTarget(Target):
    """A `Policy` built per slot; `mode` says whether it learns before or while scoring."""

    make: Callable[[str, SlotConfig], Policy]
    slot_config: Callable[[str], SlotConfig]
    greedy: bool = False
    mode: str = "static"  # static | trained | learning

    @property
    def sequential(self) -> bool:
        return self.trains or self.mode == "learning"

    def probabilities(
        self, train: Rounds | None, rounds: Rounds, quiet: bool, each_page: PageHook | None = None
    ) -> np.ndarray:
        policy = self.make(rounds.slot, self.slot_config(rounds.slot))
        try:
            if self.mode != "static" and train is not None:
                for event in _progress(train.events, f"{self.name}: training", quiet):
                    policy.learn(event)
            return score(lambda event: policy, rounds, self.greedy, self.mode == "learning",
                         self.name, quiet, each_page)  # fmt: skip
        finally:
            policy.close()


@dataclass(kw_only=True)
class BaselineTarget(PolicyTarget):
    """uniform or default (its `name`), computed from the rounds' arrays, so that a Parquet
    log's events are never decoded for them; through the policy itself where the exposure
    floor may change uniform's pmf, or when a page's orderings are asked for."""

    def probabilities(
        self, train: Rounds | None, rounds: Rounds, quiet: bool, each_page: PageHook | None = None
    ) -> np.ndarray:
        floor = self.slot_config(rounds.slot).exposure.floor
        if each_page is not None or (
            self.name == "uniform" and floor > 0 and bool(rounds.floored.any())
        ):
            return super().probabilities(train, rounds, quiet, each_page)
        return baseline_probabilities(self.name, rounds)


def baseline_probabilities(kind: str, rounds: Rounds) -> np.ndarray:
    """uniform: each candidate not placed above equally likely; default: the first of
    `default_order` not placed above, with probability 1. Rounds are whole events."""
    n = len(rounds)
    sizes = rounds.sizes[rounds.event_index]
    placed = [
        np.flatnonzero(rounds.position >= above)
        for above in range(1, int(rounds.position.max(initial=0)) + 1)
    ]
    out = np.zeros((n, rounds.width))
    if kind == "uniform":
        out[np.arange(rounds.width)[None, :] < sizes[:, None]] = 1.0
        for above, rows in enumerate(placed, start=1):
            assert np.all(rounds.event_index[rows - above] == rounds.event_index[rows])
            out[rows, rounds.chosen[rows - above]] = 0.0
        out /= rounds.choices_left()[:, None]
        return out
    first = rounds.defaults.first(missing=0)[rounds.event_index]
    for i in np.flatnonzero(rounds.position > 0).tolist():
        taken = set(rounds.chosen[i - int(rounds.position[i]) : i].tolist())
        event = int(rounds.event_index[i])
        order = [*rounds.defaults[event].tolist(), *range(int(rounds.sizes[event]))]
        first[i] = next(j for j in order if j not in taken)
    out[np.arange(n), first] = 1.0
    return out


@dataclass(kw_only=True)
class LoggedTarget(Target):
    """Each decision's own logging version, loaded from the model store as serving loads it."""

    config: Config

    def probabilities(
        self, train: Rounds | None, rounds: Rounds, quiet: bool, each_page: PageHook | None = None
    ) -> np.ndarray:
        store = ModelStore(self.config.model_store.path, self.config.model_store.keep_versions)
        policies: dict[str, Policy] = {}

        def policy_of(event: RewardedEvent) -> Policy:
            version = event.policy.version
            if version not in policies:
                policy = stored_policy(rounds.slot, version, self.config, store)
                if policy is None:
                    raise TargetError(
                        f"logged: version {version} of slot {rounds.slot} is not in the model "
                        f"store {self.config.model_store.path}"
                    )
                policies[version] = policy
            return policies[version]

        try:
            return score(policy_of, rounds, False, False, self.name, quiet, each_page)
        finally:
            for policy in policies.values():
                policy.close()


def stored_policy(slot: str, version: str, config: Config, store: ModelStore) -> Policy | None:
    """The policy `version` served, as serving loads it (a promoted shadow's `shadow:vN`
    from the shadow's versions); None when the store or the config lacks it."""
    promoted, _, own = version.rpartition(":")
    key, slot_config = slot, config.slots[slot]
    if promoted == SHADOW:  # only then build (and probe) the shadow's settings
        key, shadow = shadow_key(slot), shadow_slot(slot, slot_config)
        if shadow is None:
            return None
        slot_config = shadow
    if own == UNTRAINED:
        return build_policy(slot_config)
    try:
        return store.load(key, own, slot_config).policy
    except (ModelStoreError, FileNotFoundError):
        return None


@dataclass(kw_only=True)
class ShadowTarget(Target):
    """The slot's shadow policy, from the pmfs logged with each decision (rows: at the logged
    rows above only, so it cannot enumerate a page's orderings)."""

    enumerates: bool = False

    def probabilities(
        self, train: Rounds | None, rounds: Rounds, quiet: bool, each_page: PageHook | None = None
    ) -> np.ndarray:
        out = np.zeros((len(rounds), rounds.width))
        missing = 0
        for i, (event_index, position) in enumerate(
            zip(rounds.event_index.tolist(), rounds.position.tolist(), strict=True)
        ):
            shadow = rounds.events[event_index].shadow
            if shadow is None:
                missing += 1
                continue
            pmf = shadow.probabilities[position]
            out[i, : len(pmf)] = pmf
        if missing:
            raise TargetError(
                f"shadow: {missing:,} of {len(rounds):,} rounds of slot {rounds.slot} logged no "
                "shadow pmf (no shadow configured, or logged before it was)"
            )
        return out


@dataclass(kw_only=True)
class CallableTarget(Target):
    """A user's `pi(context, candidates) -> probabilities`."""

    function: Callable[[Context, list[Candidate]], Sequence[float]]

    def probabilities(
        self, train: Rounds | None, rounds: Rounds, quiet: bool, each_page: PageHook | None = None
    ) -> np.ndarray:
        out = np.zeros((len(rounds), rounds.width))
        for i in range(len(rounds)):
            event = rounds.events[rounds.event_index[i]]
            pmf = self._pmf(event, rounds.placed(i))
            out[i, : len(pmf)] = pmf
            last = i + 1 == len(rounds) or rounds.event_index[i + 1] != rounds.event_index[i]
            if each_page is not None and last:
                each_page(int(rounds.event_index[i]), functools.partial(self._pmf, event))
        return out

    def _pmf(self, event: RewardedEvent, placed: Sequence[int]) -> np.ndarray:
        """The function's pmf over the rows left after `placed`, as one over all candidates."""
        taken = set(placed)
        remaining = [j for j in range(len(event.candidates)) if j not in taken]
        pmf = np.asarray(
            self.function(event.context, [event.candidates[j] for j in remaining]), float
        )
        if (
            pmf.shape != (len(remaining),)
            or np.any(~(pmf >= 0))
            or abs(pmf.sum() - 1) > PMF_TOLERANCE
        ):
            raise TargetError(
                f"{self.name}: for decision {event.decision_id} it returned {pmf.tolist()!r}"
                f", not {len(remaining)} probabilities summing to 1"
            )
        out = np.zeros(len(event.candidates))
        out[remaining] = pmf
        return out


def score(
    policy_of: Callable[[RewardedEvent], Policy],
    rounds: Rounds,
    greedy: bool,
    learn: bool,
    label: str,
    quiet: bool,
    each_page: PageHook | None = None,
) -> np.ndarray:
    """The probabilities of each event's policy for each round; with `learn`, it learns each
    event right after scoring all of that event's rounds (progressive validation)."""
    out = np.zeros((len(rounds), rounds.width))
    progress = Progress(len(rounds), label, quiet=quiet)
    i, n = 0, len(rounds)
    while i < n:
        event = rounds.events[rounds.event_index[i]]
        policy = policy_of(event)
        start = i
        while i < n and rounds.event_index[i] == rounds.event_index[start]:
            pmf = policy.action_probabilities(
                event.context, event.candidates, rounds.placed(i), greedy
            )
            out[i, : len(pmf)] = pmf
            i += 1
        if each_page is not None:
            each_page(int(rounds.event_index[start]), partial(
                policy.action_probabilities, event.context, event.candidates, greedy=greedy
            ))  # fmt: skip
        if learn:
            policy.learn(event)
        if i % 2048 < i - start or i == n:
            progress.update(i)
    progress.close()
    return out


def parse_target(spec: str, config: Config, seed: int | None) -> Target:
    """Build the target a spec names (see the module docstring)."""
    kind, _, rest = spec.partition(":")

    def configured(slot: str) -> SlotConfig:
        if slot not in config.slots:
            raise TargetError(f"{spec}: slot {slot!r} is not in the config")
        return config.slots[slot]

    def seeded(slot_config: SlotConfig) -> SlotConfig:
        return msgspec.structs.replace(slot_config, seed=seed) if seed is not None else slot_config

    if kind in ("uniform", "default") and not rest:
        return BaselineTarget(
            name=spec, slot_config=configured,
            make=lambda slot, c: build_policy(seeded(msgspec.structs.replace(c, policy=kind))),
        )  # fmt: skip
    if kind == "thompson" and not rest:
        return PolicyTarget(
            name=spec, trains=kind == "thompson",
            make=lambda slot, c: build_policy(seeded(msgspec.structs.replace(c, policy=kind))),
            slot_config=configured, mode="trained" if kind == "thompson" else "static",
        )  # fmt: skip
    if kind in ("train", "learn"):
        overrides = _split_overrides(spec, rest)

        def make(slot: str, slot_config: SlotConfig) -> Policy:
            base = msgspec.structs.replace(slot_config, policy="vw")
            try:
                return build_policy(seeded(override_slot(slot, base, overrides)))
            except ValueError as exc:
                raise TargetError(f"{spec}: {exc}") from None

        mode = "trained" if kind == "train" else "learning"
        return PolicyTarget(name=spec, trains=kind == "train", make=make,
                            slot_config=configured, mode=mode)  # fmt: skip
    if kind == "store":
        return _store_target(spec, rest, config)
    if kind == "logged" and not rest:
        return LoggedTarget(name=spec, config=config)
    if kind == "shadow" and not rest:
        return ShadowTarget(name=spec)
    if kind == "python":
        return CallableTarget(name=spec, function=_load_callable(spec, rest))
    raise TargetError(
        f"{spec}: unknown target; use uniform, default, thompson, logged, shadow, "
        "store:SLOT[@vN][:greedy], train:KEY=VALUE..., learn:KEY=VALUE... or "
        "python:MODULE:FUNCTION"
    )


_OVERRIDE = re.compile(r"""\s*([\w.]+)=(\[[^\]]*\]|"[^"]*"|'[^']*'|[^\s\[\]"']+)\s*""")


def _split_overrides(spec: str, rest: str) -> list[str]:
    """`a=1 b=["UA", "UI"] c='-l 0.5'` -> ["a=1", 'b=["UA", "UI"]', "c='-l 0.5'"]: values
    are TOML (arrays and quoted strings may hold spaces), bare words are strings."""
    overrides, position = [], 0
    while position < len(rest):
        match = _OVERRIDE.match(rest, position)
        if match is None:
            bad = rest[position:].split()[0]
            raise TargetError(f"{spec}: {bad!r} is not KEY=VALUE")
        overrides.append(f"{match.group(1)}={match.group(2)}")
        position = match.end()
    return overrides


def _store_target(spec: str, rest: str, config: Config) -> Target:
    where, _, mode = rest.partition(":")
    if mode not in ("", "greedy", "explore"):
        raise TargetError(f"{spec}: after the version comes :greedy or :explore, not {mode!r}")
    slot, _, version = where.partition("@")
    if slot not in config.slots:
        raise TargetError(f"{spec}: slot {slot!r} is not in the config")
    store = ModelStore(config.model_store.path, config.model_store.keep_versions)
    try:
        stored = store.load(slot, version) if version else store.load_latest(slot)
    except ModelStoreError as exc:
        raise TargetError(f"{spec}: {exc}") from None

    return PolicyTarget(
        name=f"store:{slot}@{stored.info.version}" + (":greedy" if mode == "greedy" else ""),
        only_slot=slot, make=lambda evaluated, slot_config: stored.policy,
        slot_config=lambda s: config.slots[s], greedy=mode == "greedy",
    )  # fmt: skip


def _load_callable(spec: str, rest: str) -> Callable[..., Any]:
    module_name, _, function_name = rest.rpartition(":")
    if not module_name or not function_name:
        raise TargetError(f"{spec}: expected python:MODULE:FUNCTION or python:FILE.py:FUNCTION")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            if module_spec is None or module_spec.loader is None or not path.is_file():
                raise TargetError(f"{spec}: no such file {path}")
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
    except TargetError:
        raise
    except Exception as exc:  # the user's module may fail in any way while importing
        raise TargetError(f"{spec}: cannot import {module_name}: {exc}") from None
    function = getattr(module, function_name, None)
    if not callable(function):
        raise TargetError(f"{spec}: {module_name} has no callable {function_name!r}")
    result: Callable[..., Any] = function
    return result


def _progress(items: Sequence[RewardedEvent], label: str, quiet: bool) -> Iterator[RewardedEvent]:
    progress = Progress(len(items), label, quiet=quiet)
    for count, item in enumerate(items, start=1):
        yield item
        if count % 2048 == 0:
            progress.update(count)
    progress.close()
