"""Log exports and their offline verification (what an outside auditor runs).

An export is JSON Lines: a header line ``{"format": "fabtrust.log-export/v1", "origin": ...,
"size": N}`` followed by exactly N entry lines, each the entry's bytes as logged (canonical JSON
holds no raw newline). Verification recomputes the Merkle tree from scratch, checks that it matches
a checkpoint signed by the log's key, and checks that every entry is a well-formed audit entry.
Nothing here touches a store: bytes and a public key in, an exception or a report out.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from fabtrust.errors import InvalidInput, VerificationFailed
from fabtrust.tlog import merkle
from fabtrust.tlog.audit import AuditEntry
from fabtrust.tlog.checkpoint import Checkpoint, NoteVerifier, open_checkpoint

EXPORT_FORMAT = "fabtrust.log-export/v1"
MAX_LINE = 128 * 1024


def write_export(out: IO[bytes], origin: str, size: int, entries: Iterable[bytes]) -> int:
    header = {"format": EXPORT_FORMAT, "origin": origin, "size": size}
    out.write(json.dumps(header, sort_keys=True, separators=(",", ":")).encode() + b"\n")
    count = 0
    for body in entries:
        if b"\n" in body:
            raise InvalidInput("an entry holds a newline and cannot be exported as a line")
        out.write(body + b"\n")
        count += 1
    if count != size:
        raise InvalidInput(f"export wrote {count} entries, expected {size}")
    return count


@dataclass
class ExportReport:
    origin: str
    size: int
    root: bytes
    checkpoint_size: int
    types: dict[str, int] = field(default_factory=dict)
    refusals: int = 0


def _lines(stream: IO[bytes]) -> Iterator[bytes]:
    while True:
        line = stream.readline(MAX_LINE + 2)
        if not line:
            return
        if not line.endswith(b"\n"):
            raise InvalidInput("export line is too long or the file is truncated")
        yield line[:-1]


def verify_export(stream: IO[bytes], checkpoint_note: bytes, verifier: NoteVerifier) -> ExportReport:
    """Verify an export against a signed checkpoint; raise on any discrepancy.

    The checkpoint may cover a prefix of the export (the log grew after it was signed); the
    export must hold at least the checkpoint's entries.
    """
    checkpoint: Checkpoint = open_checkpoint(checkpoint_note, verifier)
    lines = _lines(stream)
    try:
        header = json.loads(next(lines))
    except StopIteration:
        raise InvalidInput("export is empty") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InvalidInput("export header is not valid JSON") from None
    if not isinstance(header, dict) or header.get("format") != EXPORT_FORMAT:
        raise InvalidInput(f"export header is not a {EXPORT_FORMAT} header")
    origin, size = header.get("origin"), header.get("size")
    if not isinstance(origin, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidInput("export header origin/size are invalid")
    if origin != checkpoint.origin:
        raise VerificationFailed(f"export is of log {origin!r}, checkpoint of {checkpoint.origin!r}")
    if size < checkpoint.size:
        raise VerificationFailed(
            f"export holds {size} entries, fewer than the checkpoint's {checkpoint.size}"
        )

    report = ExportReport(origin, size, b"", checkpoint.size)
    frontier: list[bytes] = []
    pending: list[bytes] = []
    integrated = 0

    def flush() -> None:
        nonlocal frontier, integrated
        if pending:
            # stride 64: no tile level is ever wanted here, only the frontier
            frontier, _ = merkle.frontier_extend(integrated, frontier, pending, 64)
            integrated += len(pending)
            pending.clear()

    count = 0
    for body in lines:
        if count == size:
            raise VerificationFailed(f"export holds more entry lines than its header's {size}")
        try:
            entry = AuditEntry.parse(body)
        except InvalidInput as exc:
            raise VerificationFailed(f"entry {count} is malformed: {exc.message}") from None
        report.types[entry.type] = report.types.get(entry.type, 0) + 1
        if entry.outcome != "ok":
            report.refusals += 1
        pending.append(merkle.leaf_hash(body))
        count += 1
        if count == checkpoint.size:
            flush()
            if not hmac.compare_digest(merkle.frontier_root(frontier), checkpoint.root):
                raise VerificationFailed(
                    f"entries 0..{count - 1} do not hash to the checkpoint's root (log rewritten or tampered)"
                )
        elif len(pending) >= 4096:
            flush()
    flush()
    if count != size:
        raise VerificationFailed(f"export is truncated: {count} entries, header says {size}")
    if checkpoint.size == 0 and not hmac.compare_digest(checkpoint.root, merkle.EMPTY_ROOT):
        raise VerificationFailed("checkpoint of an empty log has a non-empty root")
    report.root = merkle.frontier_root(frontier)
    return report
