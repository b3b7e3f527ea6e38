"""JSON features -> VW multiline (ADF) text examples.

Shared features go in the `User` and `Context` namespaces, candidate features in `Action`
and the candidate id in `Id`; rows add one `Slot` line per position. Strings become
categorical features `name=value`, numbers `name:value` (float32 precision; magnitudes
below 1e-20 are dropped, as VW would read them as 0), booleans `name=true|false`.
Any string is escaped injectively (percent-encoding of the bytes VW's text format treats
as syntax), so spaces, `|`, `:`, newlines or unicode can never corrupt an example.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import msgspec

from bandit.contracts.events import Candidate, Context

# Whitespace splits tokens, `|` starts a namespace, `:` separates a value, `=` separates a
# categorical name from its value, `'` starts a tag; `%` is escaped so the escape is injective.
_UNSAFE = re.compile(
    r"[\x00-\x20\x7f|:=%'\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
)
_ESCAPES = {ord(ch): f"%{ord(ch):02X}" for ch in "\x7f|:=%'"} | {
    i: f"%{i:02X}" for i in range(0x21)
}


# VW keeps weights in float32, so 9 significant digits say all it can hold. Its text parser
# reads much smaller magnitudes as 0 (and drops zero-valued features): we drop them first.
MIN_MAGNITUDE = 1e-20


def escape(text: str) -> str:
    """Make `text` safe as (part of) a VW feature name.

    >>> escape("title:123 |x")
    'title%3A123%20%7Cx'
    """
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escape_char, text)


def _escape_char(match: re.Match[str]) -> str:
    ch = match.group()
    return _ESCAPES.get(ord(ch)) or "".join(f"%{b:02X}" for b in ch.encode())


def features_text(features: Mapping[str, object]) -> str:
    """The feature tokens of one namespace, space separated."""
    tokens = []
    for name, value in features.items():
        if value is True:
            tokens.append(f"{escape(name)}=true")
        elif value is False:
            tokens.append(f"{escape(name)}=false")
        elif isinstance(value, str):
            tokens.append(f"{escape(name)}={escape(value)}")
        elif isinstance(value, int | float) and abs(value) >= MIN_MAGNITUDE:
            tokens.append(f"{escape(name)}:{value:.9g}")
    return " ".join(tokens)


def shared_text(context: Context) -> str:
    return f"|User {features_text(context.user)} |Context {features_text(context.request)}"


def action_text(candidate: Candidate) -> str:
    """The namespaces of one candidate. Catalogue candidates recur on every page, so their
    text is memoised, keyed by the candidate's exact JSON (which tells `true` from `1`)."""
    key = _candidate_key(candidate)
    text = _action_texts.get(key)
    if text is None:
        if len(_action_texts) >= ACTION_CACHE_SIZE:
            _action_texts.clear()  # cheap bound; a full catalogue refills it in a few pages
        text = f"|Action {features_text(candidate.features)} |Id {escape(candidate.id)}"
        _action_texts[key] = text
    return text


ACTION_CACHE_SIZE = 65_536
_action_texts: dict[bytes, str] = {}
_candidate_key = msgspec.json.Encoder().encode


def cb_example(
    context: Context, candidates: Sequence[Candidate], label: tuple[int, float, float] | None = None
) -> list[str]:
    """A `--cb_explore_adf` example; `label` is (chosen index, cost, probability) to learn."""
    lines = [f"shared {shared_text(context)}"]
    for i, candidate in enumerate(candidates):
        prefix = f"0:{label[1]!r}:{label[2]!r} " if label is not None and label[0] == i else ""
        lines.append(prefix + action_text(candidate))
    return lines


def ccb_example(
    context: Context,
    candidates: Sequence[Candidate],
    positions: int,
    labels: Sequence[tuple[int, float, float]] = (),
    include: Sequence[int] | None = None,
    placed: Sequence[int] = (),
) -> list[str]:
    """A `--ccb_explore_adf` example with one slot per position of the ranked list.

    `labels` are (chosen index, cost, probability) per position, to learn. `placed` fills
    the first positions with those candidate indices (one-action slots), so the slots after
    them are predicted at their own position: VW crosses every feature with the slot's
    index. `include` restricts the slots after `placed` to those candidate indices.
    """
    lines = [f"ccb shared {shared_text(context)}"]
    lines.extend(f"ccb action {action_text(c)}" for c in candidates)
    lines.extend(f"ccb slot {index} |Slot p{position}" for position, index in enumerate(placed))
    include_text = ",".join(map(str, include)) + " " if include is not None else ""
    for offset in range(positions):
        label = ""
        if offset < len(labels):
            index, cost, probability = labels[offset]
            label = f"{index}:{cost!r}:{probability!r} "
        lines.append(f"ccb slot {label}{include_text}|Slot p{len(placed) + offset}")
    return lines


def interaction_args(interactions: Sequence[str], lrq: Sequence[str]) -> list[str]:
    """VW arguments for quadratic/cubic interactions and low-rank (`--lrq`) terms."""
    args: list[str] = []
    for term in interactions:
        args += ["-q" if len(term) == 2 else "--cubic", term]
    for term in lrq:
        args += ["--lrq", term]
    return args
