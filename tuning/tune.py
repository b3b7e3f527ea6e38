"""Self-tuning: judge candidate learning settings on a slot's recent log and pick one only
when its gain over the running settings is significant.

Each candidate changes one setting of what the slot runs now (`tuning.candidates`), or
drops one override back to its configured value. Every one of them, and the running
settings too, is run from scratch over the same window of the slot's most recent treatment
events and judged over the window's *later half*, once it has learned the first: a switch
warm-starts the new settings on the whole window, so how they run after learning is what
matters, not how fast they learn from nothing.

How they are judged (`tuning.estimator`):
- `loss` (the default): how well each learns the rewards of what was shown, as the
  progressive squared error of a reward regression with its learning rate and
  interactions, importance-weighted as VW's cb learner weighs the logged choice. It needs
  no counterfactual. The alternatives below replay the policies themselves, and on the log
  of a confident explorer (SquareCB gives the choices it does not make propensities near
  zero) their estimates rest on huge weights or on a reward model: across the world suite
  `switch-dr` switched to settings that were worse as often as to better ones.
- `dr`, `switch-dr`, `snips`: the off-policy value of each setting's policy, replayed with
  progressive validation (the `learn:` replay target), per decision (per page for rows,
  positions summed with the cascade weights).

The gain of a candidate is the difference of its value and the running settings' on the
*same* decisions, so its standard error comes from the paired per-decision terms: where
both settings agree, the difference is exactly zero. A candidate wins a round when the
lower confidence bound of its gain is above zero, Bonferroni-corrected over the candidates,
and the gain is at least `min_gain` of the running value; after `confirmations` wins in a
row it becomes the slot's next tuning revision. The learner then warm-starts it on the same
window and switches (`learner.loop`); see docs/operations.md, "Self-tuning".
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec
import numpy as np

from bandit.config import LOSS_JUDGES, Config, TuningConfig, parse_override
from bandit.contracts.events import RewardedEvent
from bandit.contracts.slots import SlotConfig
from bandit.learning.tuning import TuningState, recent_window, tuned_slot
from bandit.policies import build_policy
from kafkaio.forked import ChildDied, run_forked
from replay import reward_model
from replay.logs import KAFKA_PREFIX, LogError, read_log, read_recent_treatment
from replay.rounds import Rounds
from replay.targets import score
from storage.model_store import ModelStore, ModelStoreError

SWITCH_TAU = 20.0


@dataclass(frozen=True)
class Scored:
    """One setting's replayed value and its gain over the running settings."""

    overrides: tuple[str, ...]
    value: float  # reward per decision (per page for rows), or minus the loss
    gain: float  # value minus the running settings' value, on the same rounds
    std_error: float  # of the gain (0 for the running settings themselves)
    lower_bound: float  # gain - z * std_error
    judge: str = "loss"  # the estimator that judged it
    needed: float = 0.0  # the least gain that counts (tuning.min_gain of what is reducible)

    @property
    def name(self) -> str:
        return " ".join(self.overrides) or "(configured settings)"

    @property
    def qualifies(self) -> bool:
        return self.lower_bound > 0 and self.gain >= self.needed

    @property
    def significance(self) -> float:
        """The gain in standard errors: how candidates judged on different scales rank."""
        if self.std_error > 0:
            return self.gain / self.std_error
        return float("inf") if self.gain > 0 else float("-inf")


@dataclass(frozen=True)
class Verdict:
    slot: str
    events: int  # treatment events replayed
    running: Scored
    candidates: list[Scored]
    chosen: Scored | None  # the significant winner, if any
    reason: str  # why this verdict, in words


def candidate_settings(running: Sequence[str], moves: Sequence[str]) -> list[tuple[str, ...]]:
    """Each move applied to the running overrides (replacing its key), then each running
    override dropped (back to the configured value of its key); without repeats and without
    the running settings themselves."""
    keyed = {parse_override(o)[0]: o for o in running}
    changed = [{**keyed, parse_override(move)[0]: move} for move in moves]
    dropped = [{k: v for k, v in keyed.items() if k != key} for key in keyed]
    found: list[tuple[str, ...]] = []
    for settings in changed + dropped:
        candidate = tuple(sorted(settings.values()))
        if candidate != tuple(sorted(running)) and candidate not in found:
            found.append(candidate)
    return found


def judge_for(running: Sequence[str], candidate: Sequence[str], estimator: str) -> str:
    """The estimator that judges `candidate` against `running`: `estimator`, or for "auto"
    the loss when every key it changes is one a reward regression mirrors, else snips."""
    if estimator != "auto":
        return estimator
    before = dict(parse_override(o) for o in running)
    after = dict(parse_override(o) for o in candidate)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    return "loss" if all(k in LOSS_JUDGES for k in changed) else "snips"


def judge(
    slot: str,
    configured: SlotConfig,
    running: Sequence[str],
    rewarded: Sequence[RewardedEvent],
    tuning: TuningConfig,
    seed: int = 0,
) -> Verdict:
    """Replay the running settings and every candidate on the slot's recent events of
    `rewarded` and say which candidate, if any, is significantly better."""
    window = recent_window(slot, rewarded, tuning.window_events)
    settings = candidate_settings(running, tuning.candidates)
    empty = Scored(tuple(running), float("nan"), 0.0, 0.0, 0.0)
    if len(window) < tuning.min_events:
        reason = f"{len(window)} treatment events, fewer than tuning.min_events {tuning.min_events}"
        return Verdict(slot, len(window), empty, [], None, reason)
    rounds = Rounds.from_events(slot, window)
    judges = {overrides: judge_for(running, overrides, tuning.estimator) for overrides in settings}
    used = set(judges.values()) or {judge_for(running, running, tuning.estimator)}
    off_policy = bool(used & {"dr", "switch-dr"})
    q = reward_model.fit_predict(rounds, configured, seed) if off_policy else None
    tau = SWITCH_TAU if tuning.estimator == "switch-dr" else np.inf
    judged = len(window) // 2  # the later half: a setting as it runs once it has learned

    def influence(estimator: str, overrides: Sequence[str]) -> tuple[float, np.ndarray]:
        if estimator == "loss":
            return _fit(rounds, tuned_slot(slot, configured, overrides), judged)
        pmf = _replay(slot, configured, overrides, rounds, seed)
        return _influence(rounds, pmf, q if estimator != "snips" else None, tau, judged)

    live = {name: influence(name, running) for name in sorted(used)}
    needed = {
        name: tuning.min_gain
        * (_reducible(rounds, judged, value) if name == "loss" else abs(value))
        for name, (value, _) in live.items()
    }
    first = "loss" if "loss" in live else sorted(live)[0]
    running_scored = Scored(tuple(running), live[first][0], 0.0, 0.0, 0.0, first, needed[first])
    z = statistics.NormalDist().inv_cdf(1 - (1 - tuning.confidence) / max(len(settings), 1))
    scored = []
    for overrides in settings:
        name = judges[overrides]
        value, terms = influence(name, overrides)
        live_value, live_terms = live[name]
        difference = terms - live_terms
        error = float(difference.std(ddof=1) / np.sqrt(len(difference)))
        gain = value - live_value
        scored.append(Scored(overrides, value, gain, error, gain - z * error, name, needed[name]))
    scored.sort(key=lambda s: (s.qualifies, s.significance), reverse=True)
    return _verdict(slot, len(window), running_scored, scored, tuning.confidence)


def _verdict(
    slot: str, events: int, running: Scored, scored: list[Scored], confidence: float
) -> Verdict:
    """The round's verdict on candidates ranked best first: the best wins when its gain is
    significant and at least what tuning.min_gain asks."""
    best = scored[0] if scored else None
    if best is None:
        return Verdict(slot, events, running, scored, None, "no candidates")
    if best.lower_bound <= 0:  # none qualifies: the first is the most significant
        reason = (
            f"no candidate's gain is significant (best: {best.name}, lower bound "
            f"{best.lower_bound:+.5f})"
        )
        return Verdict(slot, events, running, scored, None, reason)
    if not best.qualifies:
        reason = (f"the best gain {best.gain:+.5f} ({best.name}, {best.judge}) is below "
                  f"tuning.min_gain ({best.needed:.5f})")  # fmt: skip
        return Verdict(slot, events, running, scored, None, reason)
    reason = (f"{best.name}: gain {best.gain:+.5f} ({best.judge}), lower bound "
              f"{best.lower_bound:+.5f} > 0 at {confidence:.0%} over "
              f"{len(scored)} candidates")  # fmt: skip
    return Verdict(slot, events, running, scored, best, reason)


def _reducible(rounds: Rounds, first: int, running_value: float) -> float:
    """How much of the loss the running settings remove: a constant predictor's progressive
    squared error (the running mean of the rewards so far) minus theirs, over the events
    from `first` on; 0 when they remove none."""
    seen = np.concatenate(([0.0], np.cumsum(rounds.reward)[:-1]))
    counts = np.arange(len(rounds), dtype=float)
    constant = np.divide(seen, counts, out=np.zeros(len(rounds)), where=counts > 0)
    errors = (rounds.reward - constant) ** 2
    per_event = np.bincount(rounds.event_index, weights=errors, minlength=len(rounds.events))
    return max(running_value - float(-per_event[first:].mean()), 0.0)


def _replay(
    slot: str, configured: SlotConfig, overrides: Sequence[str], rounds: Rounds, seed: int
) -> np.ndarray:
    """The settings' probabilities on each round, learning as it goes (progressive)."""
    settings = tuned_slot(slot, configured, overrides)
    policy = build_policy(msgspec.structs.replace(settings, policy="vw", seed=seed))
    try:
        return score(lambda event: policy, rounds, greedy=False, learn=True, label=slot, quiet=True)
    finally:
        policy.close()


def _fit(rounds: Rounds, settings: SlotConfig, first: int) -> tuple[float, np.ndarray]:
    """Minus the progressive squared error of a reward regression with `settings`' learning
    rate, decay and interactions (each round predicted, then learned, importance-weighted by
    its logged propensity and capped as VW's cb learner weighs it), over the events from
    `first` on: how
    well those settings learn the rewards of what was shown. It needs no counterfactual,
    so a confident explorer's log (huge weights anywhere else) judges it as well as any."""
    model = reward_model.Regression(
        settings, settings.learning_rate, power_t=settings.learning_rate_decay
    )
    cap = settings.importance_weight_cap
    errors = np.zeros(len(rounds))
    try:
        for i in range(len(rounds)):
            predicted = model.predict_chosen(rounds, i)
            errors[i] = (rounds.reward[i] - predicted) ** 2
            model.learn(rounds, i, weight=min(1.0 / rounds.propensity[i], cap))
    finally:
        model.close()
    per_event = np.bincount(rounds.event_index, weights=errors, minlength=len(rounds.events))
    terms = -per_event[first:]
    return float(terms.mean()), terms


def _influence(
    rounds: Rounds, pmf: np.ndarray, q: np.ndarray | None, tau: float, first: int = 0
) -> tuple[float, np.ndarray]:
    """The value of the page (positions summed) over the events from `first` on, and each
    of those events' influence term, so that a difference of two settings' terms has the
    variance of their values' difference: doubly robust with the reward model `q` (the
    model alone where a round's weight exceeds `tau`: switch-DR), else self-normalized IPS."""
    index = np.arange(len(rounds))
    ratio = pmf[index, rounds.chosen] / rounds.propensity
    prefix = rounds.prefix_product(ratio)
    events = len(rounds.events)
    if q is not None:
        direct = (pmf * q).sum(axis=1)
        weight = prefix * ratio
        residual = rounds.reward - q[index, rounds.chosen]
        per_round = prefix * direct + np.where(weight <= tau, weight, 0.0) * residual
        terms: np.ndarray = np.bincount(rounds.event_index, weights=per_round, minlength=events)[
            first:
        ]
        return float(terms.mean()), terms
    weight = prefix * ratio
    value, terms = 0.0, np.zeros(events - first)
    for position in np.unique(rounds.position):
        at = rounds.position == position
        w = np.zeros(events)
        wr = np.zeros(events)
        w[rounds.event_index[at]] = weight[at]
        wr[rounds.event_index[at]] = weight[at] * rounds.reward[at]
        w, wr = w[first:], wr[first:]
        mean_weight = w.mean()
        if mean_weight <= 0:
            continue  # the setting never takes the logged choice here: no evidence
        position_value = wr.mean() / mean_weight
        value += position_value
        terms += (wr - position_value * w) / mean_weight + position_value
    return value, terms


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log", metavar="SOURCE", help="rewarded log (as for replay; default: the rewarded topic)"
    )
    parser.add_argument(
        "--slot", action="append", default=[], help="only this slot (repeatable; default: all)"
    )
    parser.add_argument("--every", type=float, metavar="SECONDS", nargs="?", const=-1.0,
                        help="go on tuning every SECONDS (alone: tuning.interval_s) until "
                             "stopped; default: once")  # fmt: skip
    parser.add_argument("--dry-run", action="store_true", help="say what it would switch to")
    parser.add_argument("--skip-bad", action="store_true", help="count and skip bad lines")


def run(args: argparse.Namespace, config: Config, bootstrap: str, stop: threading.Event) -> int:
    """`artbandit tune`: one round, or one every `--every` seconds until `stop` is set."""
    slots = args.slot or [n for n, s in config.slots.items() if s.policy == "vw"]
    unknown = [s for s in slots if s not in config.slots or config.slots[s].policy != "vw"]
    if unknown:
        print(f"artbandit tune: {unknown[0]!r} is not a VW slot of the config", file=sys.stderr)
        return 2
    source = args.log or f"{KAFKA_PREFIX}{config.kafka.topics.rewarded}"
    store = ModelStore(config.model_store.path, config.model_store.keep_versions)
    interval = config.tuning.interval_s if args.every == -1.0 else args.every

    def one_round() -> None:
        try:
            window = _window_reader(args, config, bootstrap, source)
            for slot in slots:
                tune_slot(store, config, slot, window(slot), dry_run=args.dry_run)
        finally:  # a forked round ends without the interpreter's own flush
            sys.stdout.flush()
            sys.stderr.flush()

    while True:
        try:
            if interval is None:
                one_round()
            else:  # each round in a forked child: between rounds, the size of the start;
                # during one, on CPU time serving and learning leave
                run_forked(one_round, stop, background=True)
        except ChildDied as exc:
            if not stop.is_set():
                print(f"artbandit tune: the round's process died: {exc}", file=sys.stderr)
        except LogError as exc:
            print(f"artbandit tune: {exc}", file=sys.stderr)
            if interval is None:
                return 2
        except (OSError, ModelStoreError) as exc:
            print(f"artbandit tune: the model store: {exc}", file=sys.stderr)
            if interval is None:
                return 1
        if interval is None or stop.wait(interval):
            return 0


def _window_reader(
    args: argparse.Namespace, config: Config, bootstrap: str, source: str
) -> Callable[[str], Sequence[RewardedEvent]]:
    """What a round judges each slot on: from a topic only the slot's newest
    `tuning.window_events` treatment events, read from the end (a round costs the same
    however long the topic); from a file, the whole file, read once."""
    if source.startswith(KAFKA_PREFIX):
        count = config.tuning.window_events
        return lambda slot: read_recent_treatment(source, bootstrap, config.kafka, slot, count)
    log = read_log(source, bootstrap, skip_bad=args.skip_bad, quiet=args.quiet,
                   kafka=config.kafka)  # fmt: skip
    return lambda slot: log.events


def tune_slot(
    store: ModelStore, config: Config, slot: str, rewarded: Sequence[RewardedEvent],
    dry_run: bool = False,
) -> Verdict | None:  # fmt: skip
    """One tuning round of `slot`: judge, print, and record a winner in its history."""
    state = store.tuning(slot)
    if state.pinned:
        print(f"tune {slot}: pinned at revision {state.revision} "
              f"({' '.join(state.overrides) or 'configured settings'}); left alone")  # fmt: skip
        return None
    verdict = judge(slot, config.slots[slot], state.overrides, rewarded, config.tuning)
    print(render(verdict), flush=True)
    if dry_run:
        return verdict
    updated = store.update_tuning(slot, lambda current: advance(current, state, verdict, config))
    if updated.revision != state.revision:
        print(f"tune {slot}: revision {updated.revision} recorded; the learner switches at "
              "its next checkpoint", flush=True)  # fmt: skip
    elif updated.proposal is not None:
        print(f"tune {slot}: {' '.join(updated.proposal)} won {updated.proposal_rounds} of "
              f"{config.tuning.confirmations} rounds in a row needed", flush=True)  # fmt: skip
    return verdict


def advance(
    current: TuningState, judged: TuningState, verdict: Verdict, config: Config
) -> TuningState:
    """The slot's tuning state after `verdict`, judged on state `judged`: its winner counts
    a round, and becomes the next revision once it has won `tuning.confirmations` rounds in
    a row. An operator's change since `judged` (a new revision, a pin) stands."""
    if current.revision != judged.revision or current.pinned:
        return current
    chosen = verdict.chosen
    proposed = current.propose(list(chosen.overrides) if chosen is not None else None)
    if chosen is None or proposed.proposal_rounds < config.tuning.confirmations:
        return proposed
    return proposed.record(
        list(chosen.overrides), "tuned", "tuner", at=time.time(), value=chosen.value,
        baseline=verdict.running.value, gain=chosen.gain,
        lower_bound=chosen.lower_bound, events=verdict.events,
    )  # fmt: skip


def render(verdict: Verdict) -> str:
    running = verdict.running
    lines = [f"tune {verdict.slot}: {verdict.events:,} treatment events; running "
             f"{running.name}: {running.value:.5f} per decision"]  # fmt: skip
    if verdict.candidates:
        lines.append(f"  {'candidate':<48}{'judge':>7}{'value':>10}{'gain':>10}"
                     f"{'lower bound':>13}{'needed':>10}")  # fmt: skip
        for s in verdict.candidates:
            lines.append(f"  {s.name:<48}{s.judge:>7}{s.value:>10.5f}{s.gain:>+10.5f}"
                         f"{s.lower_bound:>+13.5f}{s.needed:>10.5f}")  # fmt: skip
    verb = "switch" if verdict.chosen is not None else "keep"
    lines.append(f"  -> {verb}: {verdict.reason}")
    return "\n".join(lines)
