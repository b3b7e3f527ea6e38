"""Slot kinds and the VW namespaces that every kind's examples use."""

from enum import StrEnum


class SlotKind(StrEnum):
    """What a slot decides: one artwork, one hero title, or an order of rows."""

    ARTWORK = "artwork"
    HERO = "hero"
    ROWS = "rows"

    @property
    def ranked(self) -> bool:
        """True when the slot chooses an ordered list of several candidates."""
        return self is SlotKind.ROWS


# VW namespaces; interactions (-q, --lrq) name them by first letter.
NAMESPACES = {
    "U": "User",  # user features (shared)
    "C": "Context",  # request context (shared)
    "A": "Action",  # candidate features
    "I": "Id",  # candidate id, so each candidate can have its own weight
    "S": "Slot",  # position, for rows
}
