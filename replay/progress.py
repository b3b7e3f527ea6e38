"""A one-line progress display: redrawn on a terminal, silent otherwise or with --quiet."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, total: int, label: str, quiet: bool = False, stream: TextIO = sys.stderr):
        self.total = total
        self.label = label
        self.stream = stream
        self.enabled = not quiet and stream.isatty()
        self.started = time.monotonic()
        self._last_draw = 0.0

    def update(self, done: int, detail: str = "") -> None:
        now = time.monotonic()
        if not self.enabled or (now - self._last_draw < 0.1 and done < self.total):
            return
        self._last_draw = now
        rate = done / max(now - self.started, 1e-9)
        self.stream.write(
            f"\r{self.label}: {done}/{self.total} ({100 * done / self.total:.0f}%, "
            f"{rate:,.0f}/s) {detail}\033[K"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
