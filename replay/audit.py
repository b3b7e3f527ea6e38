"""The propensity audit (`artbandit audit`): does the log say what was really decided?

Every off-policy figure divides by logged probabilities, so a logging bug (a frontend that
re-orders what was decided, a probability computed before a renormalisation, a stale model
reported as the live one) biases all of them silently. The audit re-scores a seeded sample
of logged decisions with the policy version that logged them, from the model store (serving
only predicts, so a version gives the same probabilities for the same request whenever it
is asked), and counts:

- rounds whose logged probability differs from the version's (`--tolerance`);
- versions the store no longer holds (`model_store.keep_versions`), which cannot be checked;
- treatment rounds logged with probability 1 among several candidates (nothing explored:
  no other policy can be evaluated there);
- control decisions that did not show the editorial default (the holdout is not what it
  claims to be);
- with `--target`, the share of each target's probability on candidates the log never
  chose in that slot (what no estimator can value).
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from bandit.config import Config
from bandit.contracts.events import RewardedEvent
from bandit.policies import Policy
from bandit.policies.base import default_order
from replay.logs import LogError, read_log_argument
from replay.rounds import Rounds
from replay.targets import TargetError, parse_target, stored_policy
from storage.model_store import ModelStore

CONTROL = "editorial"  # the control group's policy version
EXAMPLES = 5


@dataclass(frozen=True)
class Mismatch:
    decision_id: str
    position: int
    version: str
    logged: float
    rescored: float


@dataclass
class SlotAudit:
    slot: str
    events: int
    sampled: int
    rescored_rounds: int = 0
    mismatches: int = 0
    examples: list[Mismatch] = field(default_factory=list)
    largest_difference: float = 0.0
    missing_versions: dict[str, int] = field(default_factory=dict)  # version -> decisions
    deterministic_rounds: int = 0
    control_not_default: int = 0
    unsupported: dict[str, float] = field(default_factory=dict)  # target -> mass share

    @property
    def findings(self) -> list[str]:
        found = []
        if self.mismatches:
            found.append(
                f"{self.mismatches:,} of {self.rescored_rounds:,} re-scored rounds logged a "
                f"probability their version does not give (largest difference "
                f"{self.largest_difference:.3g})"
            )
        if self.deterministic_rounds:
            found.append(
                f"{self.deterministic_rounds:,} treatment rounds logged with probability 1 "
                "among several candidates"
            )
        if self.control_not_default:
            found.append(
                f"{self.control_not_default:,} control decisions did not show the editorial default"
            )
        for target, share in self.unsupported.items():
            if share > 0.01:
                found.append(
                    f"target {target}: {share:.1%} of its probability is on candidates the log "
                    "never chose"
                )
        return found


def audit(
    events: list[RewardedEvent],
    config: Config,
    store: ModelStore,
    sample: int = 10_000,
    seed: int = 0,
    tolerance: float = 1e-6,
    targets: Iterable[str] = (),
) -> list[SlotAudit]:
    """One `SlotAudit` per slot of the log that is in the config, in slot order."""
    by_slot: dict[str, list[RewardedEvent]] = defaultdict(list)
    for event in events:
        by_slot[event.slot].append(event)
    audits = []
    rng = random.Random(seed)
    for slot in sorted(by_slot):
        if slot not in config.slots:
            continue
        slot_events = by_slot[slot]
        chosen = rng.sample(slot_events, min(sample, len(slot_events)))
        result = SlotAudit(slot, len(slot_events), len(chosen))
        _rescore(result, chosen, config, store, tolerance)
        treatment = [e for e in slot_events if e.group == "treatment"]
        if treatment:
            for spec in targets:
                result.unsupported[spec] = _unsupported(spec, slot, treatment, config, seed)
        audits.append(result)
    return audits


def _rescore(
    result: SlotAudit,
    events: list[RewardedEvent],
    config: Config,
    store: ModelStore,
    tolerance: float,
) -> None:
    by_version: dict[str, list[RewardedEvent]] = defaultdict(list)
    for event in events:
        if event.group == "control":
            result.control_not_default += _not_default(event)
        else:
            by_version[event.policy.version].append(event)
            result.deterministic_rounds += sum(
                probability >= 1.0 and len(event.candidates) - k > 1
                for k, probability in enumerate(event.probabilities)
            )
    missing: Counter[str] = Counter()
    for version, logged in sorted(by_version.items()):
        policy = stored_policy(result.slot, version, config, store)
        if policy is None:
            missing[version] += len(logged)
            continue
        try:
            for event in logged:
                _compare(result, event, policy, tolerance)
        finally:
            policy.close()
    result.missing_versions = dict(missing)


def _compare(result: SlotAudit, event: RewardedEvent, policy: Policy, tolerance: float) -> None:
    rescored_all = policy.logged_choice_probabilities(event)
    for k, (rescored, logged) in enumerate(zip(rescored_all, event.probabilities, strict=True)):
        result.rescored_rounds += 1
        difference = abs(rescored - logged)
        result.largest_difference = max(result.largest_difference, difference)
        if difference > tolerance:
            result.mismatches += 1
            if len(result.examples) < EXAMPLES:
                result.examples.append(
                    Mismatch(event.decision_id, k, event.policy.version, logged, rescored)
                )


def _not_default(event: RewardedEvent) -> bool:
    order = [event.candidates[i].id for i in default_order(event.candidates)]
    return event.chosen != order[: len(event.chosen)]


def _unsupported(
    spec: str, slot: str, treatment: list[RewardedEvent], config: Config, seed: int
) -> float:
    """The share of the target's probability, over the slot's treatment rounds, on
    candidates that no logged round of the slot chose."""
    target = parse_target(spec, config, seed)
    if not target.applies_to(slot):
        return 0.0
    rounds = Rounds.from_events(slot, treatment)
    return rounds.unsupported_share(target.probabilities(None, rounds, True))


def table(audits: list[SlotAudit]) -> str:
    lines = []
    for a in audits:
        missing = sum(a.missing_versions.values())
        lines.append(
            f"slot {a.slot}: {a.sampled:,} of {a.events:,} decisions sampled, "
            f"{a.rescored_rounds:,} rounds re-scored with the version that logged them"
            + (f", {missing:,} decisions of versions no longer stored" if missing else "")
        )
        findings = a.findings
        lines += [f"  ! {finding}" for finding in findings] or ["  ok: nothing found"]
        for m in a.examples:
            lines.append(
                f"    {m.decision_id} @{m.position} ({m.version}): logged {m.logged:.6g}, "
                f"the version gives {m.rescored:.6g}"
            )
        if missing:
            versions = ", ".join(f"{v} ({n:,})" for v, n in sorted(a.missing_versions.items()))
            lines.append(f"  not checked: {versions}; keep more (model_store.keep_versions)")
    return "\n".join(lines)


def unchecked_reason(audits: list[SlotAudit], store: ModelStore) -> str | None:
    """Why nothing could be re-scored, when nothing was for want of the logging versions:
    an audit that checked nothing is no "ok" (most often the wrong model_store.path)."""
    if any(a.rescored_rounds for a in audits):
        return None
    missing = sorted({v for a in audits for v in a.missing_versions})
    if not missing:
        return None
    where = f"model_store.path {store.root}"
    held = sum(len(store.versions(a.slot)) for a in audits)
    state = "does not exist" if not store.root.exists() else (
        "holds no version of these slots" if not held else "holds none of them")  # fmt: skip
    return (
        f"nothing re-scored: the log was decided by {', '.join(missing[:5])}"
        f"{', ...' if len(missing) > 5 else ''} and {where} {state} "
        "(point --set model_store.path at the store that served the log)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log", required=True, help="FILE (.jsonl[.gz], .parquet) or kafka://TOPIC"
    )
    parser.add_argument("--sample", type=int, default=10_000, help="decisions per slot")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-6, help="largest |difference|")
    parser.add_argument("--target", action="append", default=[], metavar="SPEC",
                        help="a replay target whose support to check (repeatable)")  # fmt: skip
    parser.add_argument("--json", metavar="PATH", help="also write the audit as JSON here")
    parser.add_argument("--skip-bad", action="store_true", help="count and skip bad lines")


def run(args: argparse.Namespace, config: Config) -> int:
    """0: nothing found; 1: findings; 2: the log or the arguments are unusable."""
    if args.sample < 1 or not args.tolerance >= 0:
        print("artbandit audit: --sample must be >= 1 and --tolerance >= 0", file=sys.stderr)
        return 2
    try:
        log = read_log_argument(args, config)
        store = ModelStore(config.model_store.path, config.model_store.keep_versions)
        audits = audit(log.events, config, store, args.sample, args.seed, args.tolerance,
                       args.target)  # fmt: skip
    except (LogError, TargetError) as exc:
        print(f"artbandit audit: {exc}", file=sys.stderr)
        return 2
    if not audits:
        print(f"artbandit audit: {args.log} has no events of a configured slot", file=sys.stderr)
        return 2
    unchecked = unchecked_reason(audits, store)
    if unchecked is not None:
        print(f"artbandit audit: {unchecked}", file=sys.stderr)
        return 2
    print(f"audit of {args.log}: {len(log.events):,} rewarded decisions")
    print(table(audits))
    if args.json:
        with open(args.json, "wb") as fh:
            fh.write(msgspec.json.format(msgspec.json.encode(audits), indent=2) + b"\n")
    return 1 if any(a.findings for a in audits) else 0
