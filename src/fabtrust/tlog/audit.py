"""Typed audit entries and the audit log that records them.

An entry is canonical JSON (RFC 8785) with exactly these members::

    {"type": "fabtrust.audit.<family>/v<n>", "actor": ..., "action": ..., "subject": ...,
     "time": "<RFC 3339 UTC>", "outcome": "ok" | "refused" | "failed", "details": {...}}

``details`` never holds secrets: key ids and purposes, not keys; token ids, not tokens.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection

from fabtrust.clock import Clock, rfc3339, system_clock
from fabtrust.crypto.canonical import canonical_json, parse_canonical
from fabtrust.errors import InvalidInput
from fabtrust.tlog.log import MerkleLog, SignedCheckpoint

TYPE_RE = re.compile(r"^fabtrust\.audit\.[a-z][a-z0-9-]{0,40}/v[1-9][0-9]{0,3}$")
_FIELDS = frozenset({"type", "actor", "action", "subject", "time", "outcome", "details"})
_MAX_TEXT = 512
_encode_str = json.encoder.encode_basestring  # RFC 8785 3.2.2.2 escaping (C where available)


class Outcome(StrEnum):
    OK = "ok"
    REFUSED = "refused"
    FAILED = "failed"


@functools.lru_cache(maxsize=256)
def _check_type(value: str) -> None:
    if not isinstance(value, str) or not TYPE_RE.fullmatch(value):
        raise InvalidInput(f"audit entry type {value!r} is not of the form fabtrust.audit.<family>/v<n>")


def _text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT or "\n" in value:
        raise InvalidInput(
            f"audit entry {name} must be a non-empty single-line string of at most {_MAX_TEXT} chars"
        )
    return value


@dataclass(frozen=True, slots=True)
class AuditEntry:
    type: str
    actor: str
    action: str
    subject: str
    time: datetime
    outcome: Outcome
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_type(self.type)
        if not isinstance(self.outcome, Outcome):
            try:
                object.__setattr__(self, "outcome", Outcome(self.outcome))
            except ValueError:
                raise InvalidInput(
                    f"audit entry outcome must be one of {[o.value for o in Outcome]}"
                ) from None
        for name in ("actor", "action", "subject"):
            _text(name, getattr(self, name))
        if self.time.tzinfo is None:
            raise InvalidInput("audit entry time must carry a time zone")
        if not isinstance(self.details, Mapping):
            raise InvalidInput("audit entry details must be an object")

    def to_json(self) -> bytes:
        """The entry's canonical JSON (RFC 8785). The seven member names are fixed ASCII, so they are
        written in canonical order directly; only ``details`` goes through the general encoder.
        A test checks this equals ``canonical_json`` of the entry as a dictionary."""
        enc = _encode_str
        head = f'{{"action":{enc(self.action)},"actor":{enc(self.actor)},"details":'
        tail = (
            f',"outcome":"{self.outcome.value}","subject":{enc(self.subject)},'
            f'"time":"{rfc3339(self.time)}","type":{enc(self.type)}}}'
        )
        try:
            return head.encode() + canonical_json(dict(self.details)) + tail.encode()
        except UnicodeEncodeError:
            raise InvalidInput("audit entry text contains a lone surrogate") from None

    @classmethod
    def parse(cls, data: bytes) -> AuditEntry:
        """Parse a logged entry; it must be canonical and have exactly the entry members."""
        doc = parse_canonical(data)
        if not isinstance(doc, dict) or set(doc) != _FIELDS:
            raise InvalidInput("audit entry must be an object with exactly: " + ", ".join(sorted(_FIELDS)))
        try:
            time = datetime.fromisoformat(_text("time", doc["time"]))
            outcome = Outcome(doc["outcome"])
        except ValueError:
            raise InvalidInput("audit entry time or outcome is invalid") from None
        if time.tzinfo is None or time.utcoffset() != UTC.utcoffset(None) or not doc["time"].endswith("Z"):
            raise InvalidInput("audit entry time must be UTC with a Z suffix")
        if not isinstance(doc["details"], dict):
            raise InvalidInput("audit entry details must be an object")
        entry = cls(doc["type"], doc["actor"], doc["action"], doc["subject"], time, outcome, doc["details"])
        if entry.to_json() != data:
            raise InvalidInput("audit entry does not re-encode to the same bytes")
        return entry


class AuditLog:
    """The tamper-evident audit log of one data home."""

    def __init__(self, log: MerkleLog, *, clock: Clock = system_clock) -> None:
        self.log = log
        self._clock = clock

    def entry(
        self,
        type: str,
        actor: str,
        action: str,
        subject: str,
        outcome: Outcome = Outcome.OK,
        details: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        return AuditEntry(type, actor, action, subject, self._clock(), outcome, details or {})

    def append(self, entries: Sequence[AuditEntry], *, conn: Connection | None = None) -> SignedCheckpoint:
        """Integrate entries as one batch under one signed checkpoint; with ``conn``, inside the
        caller's write transaction (see ``MerkleLog.append``)."""
        return self.log.append([e.to_json() for e in entries], conn=conn)

    def record(
        self,
        type: str,
        actor: str,
        action: str,
        subject: str,
        outcome: Outcome = Outcome.OK,
        details: Mapping[str, Any] | None = None,
    ) -> int:
        """Record one entry durably; returns its index."""
        cp = self.append([self.entry(type, actor, action, subject, outcome, details)])
        return cp.size - 1
