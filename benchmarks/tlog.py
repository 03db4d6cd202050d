"""Audit-log benchmark: durable appends, checkpoint latency and proof time at 1,000,000 entries,
beside pymerkle's SQLite tree doing the same in the same run.

fabtrust: ``MerkleLog`` on SQLite (WAL, synchronous=FULL), one transaction and one signed C2SP
checkpoint (Ed25519) per batch. pymerkle: ``SqliteTree.append_entries`` per batch (one
transaction; SQLite's default rollback journal, synchronous=FULL), its root computed per batch as
its nearest equivalent of a checkpoint. Both get the same entries (audit-entry-sized canonical JSON).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from _common import Subject, console, measure, parser, report, row
from fabtrust.store.engine import Store, sqlite_url
from fabtrust.tlog.audit import AuditEntry, AuditLog, Outcome
from fabtrust.tlog.checkpoint import Ed25519NoteSigner
from fabtrust.tlog.log import MerkleLog

ORIGIN = "bench.fabtrust.local/audit"


def make_entries(n: int) -> list[bytes]:
    t = datetime(2026, 11, 21, tzinfo=UTC)
    proto = AuditEntry(
        "fabtrust.audit.bench/v1",
        "station:line-1",
        "device.provision",
        "unit-0000000",
        t,
        Outcome.OK,
        {"order": "PO-2026-0001", "serial": 0, "key_id": "ab" * 16},
    ).to_json()
    return [
        proto.replace(b"unit-0000000", b"unit-%07d" % i).replace(b'"serial":0', b'"serial":%d' % i)
        for i in range(n)
    ]


def bench_fabtrust(workdir: Path, entries: list[bytes], batch: int, indices: list[int]) -> dict[str, Any]:
    store = Store.open(sqlite_url(workdir / "fabtrust.db"))
    signer = Ed25519NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate())
    log = MerkleLog.create(store, ORIGIN, signer)

    def fresh_reader(size: int) -> tuple[Callable[[int], object], Callable[[int], object]]:
        reader = MerkleLog(store, ORIGIN, None)  # nothing cached
        return (lambda i: reader.inclusion_proof(i, size)), (lambda m: reader.consistency_proof(m, size))

    result = measure(
        Subject(log.append, lambda e: log.append([e]), log.size, fresh_reader),
        "fabtrust",
        entries,
        batch,
        indices,
    )
    for i in indices[:50]:  # the proofs timed are real: they verify
        log.inclusion_proof(i, result["size"]).verify()
    result["bytes_per_entry"] = sum(p.stat().st_size for p in workdir.glob("fabtrust.db*")) / result["size"]
    store.close()
    return result


def bench_typed(workdir: Path, n: int, batch: int) -> float:
    """Typed audit entries end to end: AuditEntry objects, canonical JSON, durable append."""
    store = Store.open(sqlite_url(workdir / "typed.db"))
    signer = Ed25519NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate())
    audit = AuditLog(MerkleLog.create(store, ORIGIN, signer))
    t0 = time.perf_counter()
    for start in range(0, n, batch):
        audit.append(
            [
                audit.entry(
                    "fabtrust.audit.bench/v1",
                    "station:line-1",
                    "device.provision",
                    f"unit-{i:07d}",
                    Outcome.OK,
                    {"order": "PO-2026-0001", "serial": i},
                )
                for i in range(start, start + batch)
            ]
        )
    elapsed = time.perf_counter() - t0
    store.close()
    return n / elapsed


def bench_pymerkle(workdir: Path, entries: list[bytes], batch: int, indices: list[int]) -> dict[str, Any]:
    from pymerkle import SqliteTree

    path = str(workdir / "pymerkle.db")
    tree = SqliteTree(path)

    def append_batch(batch_entries: list[bytes]) -> None:
        tree.append_entries(batch_entries)
        tree.get_root()

    def append_one(entry: bytes) -> None:
        tree.append_entries([entry])
        tree.get_root()

    def fresh_reader(size: int) -> tuple[Callable[[int], object], Callable[[int], object]]:
        reader = SqliteTree(path)  # fresh cache, as for fabtrust's fresh reader
        # pymerkle counts leaves from one
        return (lambda i: reader.prove_inclusion(i + 1, size)), (lambda m: reader.prove_consistency(m, size))

    result = measure(
        Subject(append_batch, append_one, tree.get_size, fresh_reader), "pymerkle", entries, batch, indices
    )
    result["bytes_per_entry"] = (workdir / "pymerkle.db").stat().st_size / result["size"]
    return result


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--entries", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--proofs", type=int, default=1000)
    p.add_argument("--typed", type=int, default=200_000, help="Typed audit entries for the end-to-end row.")
    args = p.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fabtrust-bench-tlog-"))
    try:
        entries = make_entries(args.entries)
        rng = random.Random(6962)
        indices = [rng.randrange(args.entries) for _ in range(args.proofs)]
        console.print(f"{args.entries:,} entries of ~{len(entries[0])} bytes, batches of {args.batch:,}")
        ours = bench_fabtrust(workdir, entries, args.batch, indices)
        typed = bench_typed(workdir, args.typed, args.batch)
        theirs = bench_pymerkle(workdir, entries, args.batch, indices)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    pm = "pymerkle SqliteTree"
    rows = [
        row(
            "durable appends/s (signed checkpoint per batch)",
            "entries/s",
            ours["appends_per_s"],
            theirs["appends_per_s"],
            pm,
            True,
        ),
        row("typed audit entries/s (encode + append)", "entries/s", typed, theirs["appends_per_s"], pm, True),
        row(
            "checkpoint latency p50 (1-entry durable append)",
            "ms",
            ours["checkpoint"]["p50_ms"],
            theirs["checkpoint"]["p50_ms"],
            pm,
            False,
        ),
        row(
            "checkpoint latency p99",
            "ms",
            ours["checkpoint"]["p99_ms"],
            theirs["checkpoint"]["p99_ms"],
            pm,
            False,
        ),
        row(
            f"inclusion proof at {args.entries:,}, cold, mean",
            "ms",
            ours["proof_cold"]["mean_ms"],
            theirs["proof_cold"]["mean_ms"],
            pm,
            False,
        ),
        row(
            "inclusion proof, cold, p99",
            "ms",
            ours["proof_cold"]["p99_ms"],
            theirs["proof_cold"]["p99_ms"],
            pm,
            False,
        ),
        row(
            "inclusion proof, warm, mean",
            "ms",
            ours["proof_warm"]["mean_ms"],
            theirs["proof_warm"]["mean_ms"],
            pm,
            False,
        ),
        row(
            "consistency proof, cold, mean",
            "ms",
            ours["consistency"]["mean_ms"],
            theirs["consistency"]["mean_ms"],
            pm,
            False,
        ),
        row(
            "database bytes per entry", "bytes", ours["bytes_per_entry"], theirs["bytes_per_entry"], pm, False
        ),
    ]
    report(
        "tlog",
        rows,
        args.out,
        {
            "entries": args.entries,
            "batch": args.batch,
            "fabtrust": ours,
            "pymerkle": theirs,
            "typed_entries_per_s": typed,
        },
    )


if __name__ == "__main__":
    main()
