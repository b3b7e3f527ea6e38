"""How often this replica has shown each candidate of a slot when it was offered: what
`exposure.below_share` flags candidates by (they then get the slot's exposure floor)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import msgspec

from bandit.contracts.events import Candidate
from bandit.contracts.slots import Exposure

MIN_OFFERS = 50  # a share on fewer offers says nothing yet


class ExposureShares:
    """Per slot, offers and shows per candidate id over about the last `share_window` offers:
    when a slot's offers reach it, every count halves (old traffic fades) and ids offered
    less than once are forgotten (memory stays bounded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, list[float]]] = {}  # slot -> id -> [offers, shows]
        self._offers: dict[str, float] = {}

    def flag(
        self, slot: str, exposure: Exposure, candidates: Sequence[Candidate]
    ) -> Sequence[Candidate]:
        """`candidates` with `floor` set on those shown below the slot's share."""
        if exposure.below_share <= 0:
            return candidates
        with self._lock:
            counts = self._counts.get(slot, {})
            rare = {
                c.id
                for c in candidates
                if not c.floor
                and (seen := counts.get(c.id)) is not None
                and seen[0] >= MIN_OFFERS
                and seen[1] < exposure.below_share * seen[0]
            }
        if not rare:
            return candidates
        return [msgspec.structs.replace(c, floor=True) if c.id in rare else c for c in candidates]

    def record(
        self, slot: str, exposure: Exposure, candidates: Sequence[Candidate], shown: str
    ) -> None:
        if exposure.below_share <= 0:
            return
        with self._lock:
            counts = self._counts.setdefault(slot, {})
            for c in candidates:
                seen = counts.setdefault(c.id, [0.0, 0.0])
                seen[0] += 1.0
                seen[1] += c.id == shown
            self._offers[slot] = self._offers.get(slot, 0.0) + 1.0
            if self._offers[slot] >= exposure.share_window:
                self._offers[slot] /= 2
                self._counts[slot] = {
                    id_: [offers / 2, shows / 2]
                    for id_, (offers, shows) in counts.items()
                    if offers >= 2
                }
