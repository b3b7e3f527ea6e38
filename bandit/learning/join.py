"""Joining feedback to decisions by event time: the pure core of the streaming learner.

One `RewardJoin` holds the open decisions of one partition (decisions and their feedback
share a partition because both are keyed by decision_id). A decision stays open for its
slot's `attribution_window_s` after its `ts`, plus `allowed_lateness_s` of event time for
out-of-order feedback. Time is event time, never the wall clock: the watermark is the older
of the two inputs' newest `ts`, so when one topic is read ahead of the other (a backlog of
small feedback messages drains faster than one of large decisions) no window closes before
the slower input has caught up, and replaying a partition gives the same outcome every time.
The learner moves the watermark itself (`advance`) when an input has nothing more to read.

When a window closes, an impressed decision becomes a `RewardedEvent` and a decision never
impressed is dropped (the person never saw it). Feedback may arrive before its decision and
is held; duplicate feedback (same decision, type and position; for watch, also the same
minutes) counts once; feedback too late for its window, or for a decision that never
arrives, is a dead letter with a reason.
A learner that owns only some slots (`owned`) passes over the decisions of the others and
their feedback (remembered for as long as a closed decision is), so nothing of another
learner's is held or dead-lettered twice; input that belongs to no slot (an unknown slot,
feedback whose decision never arrives) is dead-lettered only where `reports_unowned` is set.
`snapshot()` / `restore()` carry the state through a checkpoint: the decisions themselves
live in segments (`bandit.learning.segments`), so memory holds only an index of the open
ones and what changed since the last snapshot, and a snapshot writes only that change.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import msgspec

from bandit.contracts.events import DecisionEvent, FeedbackEvent, Outcomes, RewardedEvent
from bandit.contracts.slots import SlotConfig
from bandit.learning.segments import Kind, MemorySegments, Segments, encode_segment, read_index

_NEVER = -1.0  # event time before any event: timestamps are never negative


@dataclass(frozen=True)
class DeadLetter:
    """An input that cannot be joined, and why; the learner sends it to the deadletter topic.

    `code` is one of a few fixed words (a bounded metric label); `reason` is for people.
    """

    event: DecisionEvent | FeedbackEvent
    code: str
    reason: str


@dataclass
class JoinResult:
    """What one step of the join produced (each list may be empty)."""

    rewarded: list[RewardedEvent] = field(default_factory=list)
    not_impressed: list[DecisionEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0
    not_owned: int = 0  # inputs passed over: another learner owns them

    @property
    def closed(self) -> int:
        """Windows closed into this result: each holds a decoded decision until collected."""
        return len(self.rewarded) + len(self.not_impressed)

    def extend(self, other: JoinResult) -> None:
        self.rewarded += other.rewarded
        self.not_impressed += other.not_impressed
        self.dead_letters += other.dead_letters
        self.duplicates += other.duplicates
        self.not_owned += other.not_owned


class _Entry(msgspec.Struct, array_like=True):
    """An open decision as the join holds it: the decision stays encoded (a tenth of its
    size as objects) until its window closes; what feedback needs of it is beside it."""

    decision: msgspec.Raw  # the DecisionEvent, msgpack
    positions: int  # how many were chosen
    closes_at: float
    feedback: list[FeedbackEvent] = msgspec.field(default_factory=list)


class _Open(msgspec.Struct):
    """An open decision as checkpoints before segments held it."""

    decision: DecisionEvent
    closes_at: float
    feedback: list[FeedbackEvent] = msgspec.field(default_factory=list)


class _State(msgspec.Struct):
    """What a checkpoint holds of a join: its clocks, the feedback still waiting for its
    decision, and the segments (name, when all of it is forgotten) that hold the rest."""

    watermark: float
    decisions_time: float
    feedback_time: float
    waiting: list[FeedbackEvent]  # feedback whose decision has not arrived yet
    segments: list[tuple[str, float]] = []  # oldest first
    closed_through: float = _NEVER  # every window closing before it is closed
    # the whole state, as checkpoints before segments held it: read, then written as segments
    open: list[_Open] = []
    closed: list[tuple[str, float]] = []
    ignored: list[tuple[str, float]] = []


# Where an entry's newest copy lies, packed in one int to keep the open index small:
# segment number (this join's), offset and length in the segment.
_OFFSET_BITS, _LENGTH_BITS = 40, 32
_ENCODER = msgspec.msgpack.Encoder()
_ENTRY = msgspec.msgpack.Decoder(_Entry)
_DECISION = msgspec.msgpack.Decoder(DecisionEvent)
CLOSE_BATCH = 2_000  # windows a batch closes at most: a jump of event time closes in steps
# windows one result takes at most: a closed window is a decoded decision, about ten times
# its encoding as objects, so a caller collects (learns and encodes) a result this full
# before more close into a new one (`close_due`), and its live objects stay small
CLOSE_CHUNK = 256


class RewardJoin:
    def __init__(
        self,
        slots: Mapping[str, SlotConfig],
        allowed_lateness_s: float = 60.0,
        owned: Collection[str] | None = None,
        reports_unowned: bool = True,
        segments: Segments | None = None,
    ):
        self.slots = slots
        self.allowed_lateness_s = allowed_lateness_s
        self.owned = frozenset(slots if owned is None else owned)
        self.reports_unowned = reports_unowned
        self.segments: Segments = MemorySegments() if segments is None else segments
        self.watermark = _NEVER  # every window closing at or before it is closed
        self.decisions_time = _NEVER  # newest ts read from each input
        self.feedback_time = _NEVER
        # decision_id -> the open decision if it changed since the last snapshot (hot), else
        # where its newest copy lies in the segments (cold: packed by `_ref`)
        self._open: dict[str, _Entry | int] = {}
        self._hot: list[str] = []  # ids made hot since the last snapshot (may repeat)
        self._markers: list[tuple[str, Kind, float]] = []  # closed or ignored, not yet written
        # segment number -> (name, when all of it is forgotten), for the live segments only:
        # a learner writes a segment per partition at every checkpoint, for months
        self._live: dict[int, tuple[str, float]] = {}
        self._numbered = 0  # segments numbered so far
        self._closing: list[tuple[float, str]] = []  # heap of (closes_at, decision_id)
        self._waiting: dict[str, list[FeedbackEvent]] = {}
        self._closed: dict[str, float] = {}  # decision_id -> until when stragglers are "late"
        self._ignored: dict[str, float] = {}  # decision_id (slot owned elsewhere) -> until when
        self._forgetting: list[tuple[float, str]] = []  # heap over _closed and _ignored
        self._expiring: list[tuple[float, str]] = []  # heap of when waiting feedback is orphaned
        self.budget = CLOSE_BATCH  # windows still to close in this batch (see `refill`)
        self._unread: _State | None = None  # restored, segments not read yet (see `_read`)
        self._unread_bytes = b""

    @property
    def open_decisions(self) -> int:
        self._read()
        return len(self._open)

    @property
    def waiting(self) -> int:
        """Decisions not read yet whose feedback is held here."""
        return len(self._waiting)

    @property
    def unread(self) -> bool:
        """Restored, and its segments' indexes not read yet (the first use reads them)."""
        return self._unread is not None

    def is_open(self, decision_id: str) -> bool:
        """Whether the decision's window is still open here (its reward not yet emitted)."""
        self._read()
        return decision_id in self._open

    def add_decision(self, decision: DecisionEvent, into: JoinResult | None = None) -> JoinResult:
        """Join a decision; what it produced is added to `into` (a new result if none)."""
        self._read()
        result = JoinResult() if into is None else into
        slot = self.slots.get(decision.slot)
        if slot is None:
            if self.reports_unowned:
                reason = f"unknown slot {decision.slot!r}"
                result.dead_letters.append(DeadLetter(decision, "unknown_slot", reason))
            else:
                result.not_owned += 1
        elif decision.decision_id in self._ignored:
            result.duplicates += 1  # as a learner of every slot would count it
        elif decision.slot not in self.owned:
            result.not_owned += 1 + len(self._waiting.pop(decision.decision_id, []))
            forget_at = decision.ts + slot.attribution_window_s + 2 * self.allowed_lateness_s
            self._ignored[decision.decision_id] = forget_at
            self._markers.append((decision.decision_id, Kind.IGNORED, forget_at))
            heapq.heappush(self._forgetting, (forget_at, decision.decision_id))
        elif decision.decision_id in self._open or decision.decision_id in self._closed:
            result.duplicates += 1
        else:
            closes_at = decision.ts + slot.attribution_window_s + self.allowed_lateness_s
            encoded = msgspec.Raw(_ENCODER.encode(decision))
            entry = _Entry(encoded, len(decision.chosen), closes_at)
            self._open[decision.decision_id] = entry
            self._hot.append(decision.decision_id)
            heapq.heappush(self._closing, (closes_at, decision.decision_id))
            for feedback in self._waiting.pop(decision.decision_id, []):
                self._attach(entry, feedback, result)
        self.decisions_time = max(self.decisions_time, decision.ts)
        return self._advance(min(self.decisions_time, self.feedback_time), result)

    def add_feedback(self, feedback: FeedbackEvent, into: JoinResult | None = None) -> JoinResult:
        """Join a feedback event; what it produced is added to `into` (a new result if none)."""
        self._read()
        result = JoinResult() if into is None else into
        found = self._open.get(feedback.decision_id)
        if found is not None:
            entry = found if isinstance(found, _Entry) else self._load(found)
            if self._attach(entry, feedback, result) and entry is not found:
                self._open[feedback.decision_id] = entry  # changed: hot until the next snapshot
                self._hot.append(feedback.decision_id)
        elif feedback.decision_id in self._ignored:
            result.not_owned += 1
        elif feedback.decision_id in self._closed:
            reason = "late: the decision's window had closed"
            result.dead_letters.append(DeadLetter(feedback, "late", reason))
        else:
            waiting = self._waiting.get(feedback.decision_id)
            if waiting is None:
                waiting = self._waiting[feedback.decision_id] = []
                heapq.heappush(
                    self._expiring, (feedback.ts + self._orphan_after_s(), feedback.decision_id)
                )
            if _key(feedback) in [_key(f) for f in waiting]:
                result.duplicates += 1
            else:
                waiting.append(feedback)
        self.feedback_time = max(self.feedback_time, feedback.ts)
        return self._advance(min(self.decisions_time, self.feedback_time), result)

    def advance(self, watermark: float) -> JoinResult:
        """Move event time forward when an input is idle (nothing more to read) and close
        what is due: a new batch, a chunk of it in this call (`close_due` for more); the
        watermark never moves back."""
        self._read()
        self.refill()
        return self._advance(watermark, JoinResult())

    def close_due(self) -> JoinResult:
        """Close more of what is due, within the batch's budget (a chunk at most, as
        every call): for a caller that collected a full result."""
        self._read()
        return self._advance(self.watermark, JoinResult())

    def refill(self) -> None:
        """Start a new batch: up to CLOSE_BATCH more windows may close. A batch's rewarded
        events are held in memory until they are written, so a jump of event time (inputs
        read to their ends, a restart after downtime) must not close millions at once."""
        self.budget = CLOSE_BATCH

    def _attach(self, entry: _Entry, feedback: FeedbackEvent, result: JoinResult) -> bool:
        """Add `feedback` to its open decision; False when it is refused or a duplicate."""
        if feedback.position is not None and feedback.position >= entry.positions:
            reason = f"position {feedback.position} beyond the {entry.positions} chosen"
            result.dead_letters.append(DeadLetter(feedback, "bad_position", reason))
        elif entry.closes_at <= self.watermark:  # due, and closing in a later step
            reason = "late: the decision's window had closed"
            result.dead_letters.append(DeadLetter(feedback, "late", reason))
        elif feedback.ts > entry.closes_at:
            reason = "late: after the attribution window"
            result.dead_letters.append(DeadLetter(feedback, "late", reason))
        elif _key(feedback) in [_key(f) for f in entry.feedback]:
            result.duplicates += 1
        else:
            entry.feedback.append(feedback)
            return True
        return False

    def _advance(self, ts: float, result: JoinResult) -> JoinResult:
        """Raise the watermark to `ts` (never lower it) and close the windows that are due,
        as many as the batch's budget and `result`'s chunk allow.

        A rewarded event's `joined_at` is its window's closing time, not the watermark, so
        it is the same however the two inputs interleaved.
        """
        self.watermark = max(self.watermark, ts)
        while (
            self.budget > 0
            and result.closed < CLOSE_CHUNK
            and self._closing
            and self._closing[0][0] <= self.watermark
        ):
            self.budget -= 1
            closes_at, decision_id = heapq.heappop(self._closing)
            found = self._open.pop(decision_id)
            # Remember it long enough to call its stragglers late rather than unknown.
            forget_at = closes_at + self.allowed_lateness_s
            self._closed[decision_id] = forget_at
            heapq.heappush(self._forgetting, (forget_at, decision_id))
            self._markers.append((decision_id, Kind.CLOSED, forget_at))
            self._close(found if isinstance(found, _Entry) else self._load(found), result)
        self._expire(result)
        return result

    @property
    def behind(self) -> bool:
        """Whether windows are due that a batch's limit left open (`advance` closes more).
        A join not read back yet is not: its first use reads it and closes what is due."""
        return bool(self._closing) and self._closing[0][0] <= self.watermark

    @property
    def closed_through(self) -> float:
        """Every window closing before this is closed (the watermark, unless some are due)."""
        if self._closing and self._closing[0][0] < self.watermark:
            return self._closing[0][0]
        return self.watermark

    def _close(self, entry: _Entry, result: JoinResult) -> None:
        decision = _DECISION.decode(entry.decision)
        if not any(f.type == "impression" for f in entry.feedback):
            result.not_impressed.append(decision)
            return
        rewards = rewards_of(self.slots[decision.slot], len(decision.chosen), entry.feedback)
        outcomes = outcomes_of(entry.feedback)
        result.rewarded.append(
            RewardedEvent.from_decision(decision, rewards, True, entry.closes_at, outcomes)
        )

    def _expire(self, result: JoinResult) -> None:
        while self._forgetting and self._forgetting[0][0] <= self.watermark:
            _, decision_id = heapq.heappop(self._forgetting)
            self._closed.pop(decision_id, None)
            self._ignored.pop(decision_id, None)
        while self._expiring and self._expiring[0][0] <= self.watermark:
            _, decision_id = heapq.heappop(self._expiring)
            orphans = self._waiting.pop(decision_id, [])
            if not self.reports_unowned:
                result.not_owned += len(orphans)
                continue
            for orphan in orphans:
                result.dead_letters.append(
                    DeadLetter(orphan, "unknown_decision", "unknown decision")
                )

    def _orphan_after_s(self) -> float:
        """How long feedback waits for its decision: the longest window, plus lateness twice."""
        longest = max(s.attribution_window_s for s in self.slots.values())
        return longest + 2 * self.allowed_lateness_s

    # ------------------------------------------------------------------ segments
    def _load(self, ref: int) -> _Entry:
        number, offset, length = _unpack(ref)
        return _ENTRY.decode(self.segments.read(self._live[number][0], offset, length))

    def _number(self, name: str, until: float) -> int:
        """Number a new live segment (entries refer to it by number, see `_pack`)."""
        number, self._numbered = self._numbered, self._numbered + 1
        self._live[number] = (name, until)
        return number

    def _write_segment(self) -> None:
        """Write what changed since the last snapshot as one segment (if anything did)."""
        entries: list[tuple[str, Kind, float, bytes]] = [
            (decision_id, kind, until, b"") for decision_id, kind, until in self._markers
        ]
        first_open = len(entries)
        for decision_id in dict.fromkeys(self._hot):
            entry = self._open.get(decision_id)
            if isinstance(entry, _Entry):
                entries.append((decision_id, Kind.OPEN, entry.closes_at, _ENCODER.encode(entry)))
        self._hot.clear()
        self._markers.clear()
        if not entries:
            return
        blob, offsets = encode_segment(entries)
        name = self.segments.write(blob)
        lateness = self.allowed_lateness_s
        number = self._number(
            name,
            max(until + lateness if kind is Kind.OPEN else until for _, kind, until, _ in entries),
        )
        for (decision_id, _, _, body), offset in zip(
            entries[first_open:], offsets[first_open:], strict=True
        ):
            self._open[decision_id] = _pack(number, offset, len(body))

    def snapshot(self) -> bytes:
        """The join's state for a checkpoint: what changed since the last snapshot is written
        as a new segment first, and segments no longer needed are retired."""
        if self._unread is not None:
            return self._unread_bytes  # restored and never touched: the same state
        self._write_segment()
        closed_through = self.closed_through
        retired = [number for number, (_, until) in self._live.items() if until < closed_through]
        self.segments.retire([self._live.pop(number)[0] for number in retired])
        state = _State(
            watermark=self.watermark,
            decisions_time=self.decisions_time,
            feedback_time=self.feedback_time,
            waiting=[f for feedback in self._waiting.values() for f in feedback],
            segments=list(self._live.values()),
            closed_through=closed_through,
        )
        return msgspec.msgpack.encode(state)

    @classmethod
    def restore(
        cls,
        slots: Mapping[str, SlotConfig],
        data: bytes,
        allowed_lateness_s: float = 60.0,
        owned: Collection[str] | None = None,
        reports_unowned: bool = True,
        segments: Segments | None = None,
    ) -> RewardJoin:
        """The join as `snapshot` left it. Its segments' indexes are read on first use, not
        here: a rebalance callback that restores a partition must return at once."""
        join = cls(slots, allowed_lateness_s, owned, reports_unowned, segments)
        join._unread = msgspec.msgpack.decode(data, type=_State)
        join._unread_bytes = data
        join.watermark = join._unread.watermark
        join.decisions_time = join._unread.decisions_time
        join.feedback_time = join._unread.feedback_time
        return join

    def _read(self) -> None:
        """Rebuild the in-memory index from the restored state's segments (once)."""
        state, self._unread = self._unread, None
        if state is None:
            return
        newest: dict[str, tuple[int, float, int]] = {}  # id -> (kind, time, ref)
        for name, until in state.segments:
            number = self._number(name, until)
            index = read_index(self.segments, name)
            for decision_id, kind, time, offset, length in zip(
                index.ids, index.kinds, index.times, index.offsets, index.lengths, strict=True
            ):
                newest[decision_id] = (kind, time, _pack(number, offset, length))
        for legacy in state.open:  # a checkpoint from before segments
            decision_id, decision = legacy.decision.decision_id, legacy.decision
            newest[decision_id] = (Kind.OPEN, legacy.closes_at, -1)
            encoded = msgspec.Raw(_ENCODER.encode(decision))
            entry = _Entry(encoded, len(decision.chosen), legacy.closes_at, legacy.feedback)
            self._open[decision_id] = entry
            self._hot.append(decision_id)
        for decision_id, until in state.closed:
            newest[decision_id] = (Kind.CLOSED, until, -1)
            self._markers.append((decision_id, Kind.CLOSED, until))
        for decision_id, until in state.ignored:
            newest[decision_id] = (Kind.IGNORED, until, -1)
            self._markers.append((decision_id, Kind.IGNORED, until))
        self._index(newest, state.closed_through)
        for feedback in state.waiting:
            if feedback.decision_id not in self._waiting:
                self._waiting[feedback.decision_id] = []
                expires = feedback.ts + self._orphan_after_s()
                self._expiring.append((expires, feedback.decision_id))
            self._waiting[feedback.decision_id].append(feedback)
        heapq.heapify(self._expiring)

    def _index(self, newest: dict[str, tuple[int, float, int]], closed_through: float) -> None:
        """Open, closed and ignored decisions from each id's newest entry. An open entry is
        open unless a later one closed it, or its window closed and was forgotten before
        `closed_through` (the segment that said it closed may be gone)."""
        watermark, lateness = self.watermark, self.allowed_lateness_s
        for decision_id, (kind, time, ref) in newest.items():
            if kind == Kind.OPEN:
                if time + lateness < closed_through:
                    continue  # closed and forgotten
                if ref >= 0:
                    self._open[decision_id] = ref
                self._closing.append((time, decision_id))
            elif time > watermark:
                remembered = self._ignored if kind == Kind.IGNORED else self._closed
                remembered[decision_id] = time
                self._forgetting.append((time, decision_id))
        heapq.heapify(self._closing)
        heapq.heapify(self._forgetting)


def _pack(number: int, offset: int, length: int) -> int:
    if length >> _LENGTH_BITS or offset >> _OFFSET_BITS:
        raise ValueError(f"a segment entry of {length} bytes at {offset} is too large")
    return (number << (_OFFSET_BITS + _LENGTH_BITS)) | (offset << _LENGTH_BITS) | length


def _unpack(ref: int) -> tuple[int, int, int]:
    return (
        ref >> (_OFFSET_BITS + _LENGTH_BITS),
        (ref >> _LENGTH_BITS) & ((1 << _OFFSET_BITS) - 1),
        ref & ((1 << _LENGTH_BITS) - 1),
    )


def rewards_of(slot: SlotConfig, positions: int, feedback: list[FeedbackEvent]) -> list[float]:
    """Per-position reward: click, play and watch minutes weighted by the slot, capped at max.

    Feedback without a position counts for the first position (single-choice slots). Watch
    reports are cumulative minutes, so the largest one counts: repeated or reordered
    progress reports give the same reward.
    """
    mapping = slot.reward
    totals = [0.0] * positions
    minutes = [0.0] * positions
    for event in feedback:
        position = event.position or 0
        if event.type == "click":
            totals[position] += mapping.click
        elif event.type == "play":
            totals[position] += mapping.play
        elif event.type == "watch":
            minutes[position] = max(minutes[position], event.value or 0.0)
    return [
        min(total + mapping.watch_minute * watched, mapping.max)
        for total, watched in zip(totals, minutes, strict=True)
    ]


def outcomes_of(feedback: list[FeedbackEvent]) -> Outcomes:
    """Clicks and plays counted, watch minutes the largest report per position, summed."""
    minutes: dict[int, float] = {}
    for event in feedback:
        if event.type == "watch":
            position = event.position or 0
            minutes[position] = max(minutes.get(position, 0.0), event.value or 0.0)
    return Outcomes(
        clicks=float(sum(event.type == "click" for event in feedback)),
        plays=float(sum(event.type == "play" for event in feedback)),
        watch_minutes=sum(minutes.values()),
    )


def _key(feedback: FeedbackEvent) -> tuple[str, str, int | None, float | None]:
    """Feedback that repeats this key is a duplicate; watch reports differ by their minutes."""
    value = feedback.value if feedback.type == "watch" else None
    return feedback.decision_id, feedback.type, feedback.position, value
