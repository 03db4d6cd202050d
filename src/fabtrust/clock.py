"""Time is passed in: services take a ``Clock`` so tests and pure cores never read the wall clock."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    """The wall clock, in UTC, to the microsecond."""
    return datetime.now(UTC)


def rfc3339(t: datetime) -> str:
    """RFC 3339 UTC timestamp with a ``Z`` suffix (microseconds kept when present)."""
    if t.tzinfo is None:
        raise ValueError("naive datetime")
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")
