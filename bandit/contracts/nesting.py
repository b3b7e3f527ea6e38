"""Where a JSON document nests too deep: the path to name when a decoder gives up.

msgspec decodes recursively, so a document nested past Python's recursion limit (a
100,000-deep array in a feature value) raises `RecursionError`. That is the client's
mistake, not the service's: `too_deep` finds the path to the first value nested deeper
than `limit`, so the answer can name it. It is only called once decoding has failed, so
its cost (a scan of the tokens, tens of milliseconds per MB) is never on the hot path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A JSON string (with escapes) or one structural character; everything else is skipped.
_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{},:]', re.DOTALL)
DEPTH_LIMIT = 256
MAX_NAMED_SEGMENTS = 8
MAX_KEY_CHARS = 40


@dataclass(slots=True)
class _Open:
    """One open container: where in it the scan is (a key, or an array index)."""

    is_object: bool
    key: str = ""
    index: int = 0
    expecting_key: bool = False

    def segment(self) -> str:
        return f".{self.key}" if self.is_object else f"[{self.index}]"


def too_deep(data: bytes | str, limit: int = DEPTH_LIMIT) -> str | None:
    """The path (`user.features.a[0][0]...`) to the first value nested deeper than `limit`
    levels of arrays or objects, "(body)" if that is the document itself, or None."""
    if isinstance(data, str):
        data = data.encode()
    stack: list[_Open] = []
    for match in _TOKEN.finditer(data):
        token = match.group()
        head = token[:1]
        if head == b'"':
            if stack and stack[-1].expecting_key:
                stack[-1].key = _short(token[1:-1].decode(errors="replace"))
                stack[-1].expecting_key = False
        elif head in (b"[", b"{"):
            stack.append(_Open(is_object=head == b"{", expecting_key=head == b"{"))
            if len(stack) > limit:
                return _path(stack[:-1])
        elif head in (b"]", b"}"):
            if stack:
                stack.pop()
        elif head == b"," and stack:
            if stack[-1].is_object:
                stack[-1].expecting_key = True
            else:
                stack[-1].index += 1
    return None


def depth_message(limit: int = DEPTH_LIMIT) -> str:
    return f"nested too deep to decode (more than {limit} levels of arrays or objects)"


def _short(key: str) -> str:
    return key if len(key) <= MAX_KEY_CHARS else key[: MAX_KEY_CHARS - 3] + "..."


def _path(outer: list[_Open]) -> str:
    parts = [frame.segment() for frame in outer[:MAX_NAMED_SEGMENTS]]
    if len(outer) > MAX_NAMED_SEGMENTS:
        parts.append("...")
    return "".join(parts).lstrip(".") or "(body)"
