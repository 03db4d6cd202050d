"""Time is passed in: services take a ``Clock`` so tests and pure cores never read the wall clock."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The wall clock, in UTC, to the microsecond."""
    return datetime.now(UTC)


@functools.lru_cache(maxsize=256)  # a batch stamps many documents with the same few times
def rfc3339(t: datetime) -> str:
    """RFC 3339 UTC timestamp with a ``Z`` suffix (microseconds kept when present)."""
    if t.tzinfo is None:
        raise ValueError("naive datetime")
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_rfc3339(value: str) -> datetime:
    """The inverse of ``rfc3339``: a UTC timestamp ending in ``Z``; ValueError otherwise."""
    if not isinstance(value, str) or not value.endswith("Z") or len(value) > 40:
        raise ValueError("not an RFC 3339 UTC timestamp")
    parsed = datetime.fromisoformat(value[:-1] + "+00:00")
    if "T" not in value or parsed.utcoffset() is None:
        raise ValueError("not an RFC 3339 UTC timestamp")
    return parsed.astimezone(UTC)
