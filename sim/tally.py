"""What the simulated frontend saw, page by page: the group, the hidden taste, impressions,
clicks and plays, and the world's expected clicks of the page served and of the oracle's
page. The demo's live line, summary and report all read from here."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from bandit.contracts.events import GROUPS
from bandit.measurement.stats import Rate, ratio_rate


@dataclass(frozen=True)
class PageRecord:
    at: float  # seconds since traffic started
    group: str
    taste: int
    impressions: int
    clicks: int
    plays: int
    expected: float  # expected clicks of the page served
    oracle: float  # expected clicks of the oracle's page


class Tally:
    """Thread-safe: the traffic thread adds, the display reads."""

    def __init__(self, tastes: tuple[str, ...]):
        self.tastes = tastes
        self._lock = threading.Lock()
        self._records: list[PageRecord] = []
        # [group, hidden taste, artwork tone] -> impressed tiles
        self.tones = np.zeros((len(GROUPS), len(tastes), len(tastes)), dtype=np.int64)
        self.versions: dict[str, str] = {}  # slot -> newest treatment policy version served

    def add(self, record: PageRecord, tones: list[int], versions: dict[str, str]) -> None:
        with self._lock:
            self._records.append(record)
            g = GROUPS.index(record.group)
            for tone in tones:
                self.tones[g, record.taste, tone] += 1
            self.versions.update(versions)

    def records(self) -> list[PageRecord]:
        with self._lock:
            return list(self._records)

    @property
    def pages(self) -> int:
        return len(self._records)


def columns(records: list[PageRecord]) -> dict[str, np.ndarray]:
    """The records as arrays, one per field."""
    return {
        "at": np.array([r.at for r in records], dtype=float),
        "group": np.array([r.group for r in records]),
        "taste": np.array([r.taste for r in records], dtype=int),
        "impressions": np.array([r.impressions for r in records], dtype=float),
        "clicks": np.array([r.clicks for r in records], dtype=float),
        "plays": np.array([r.plays for r in records], dtype=float),
        "expected": np.array([r.expected for r in records], dtype=float),
        "oracle": np.array([r.oracle for r in records], dtype=float),
    }


def rate(data: dict[str, np.ndarray], what: str, mask: np.ndarray) -> Rate:
    """`what` (clicks, plays, expected, oracle) per impression over the pages in `mask`."""
    return ratio_rate(data[what][mask], data["impressions"][mask])
