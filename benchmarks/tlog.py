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
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cryptography.hazmat.primitives.asymmetric import ed25519

from _common import console, parser, report, row, summary_ms
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


def bench_fabtrust(
    workdir: Path, entries: list[bytes], batch: int, proof_indices: list[int]
) -> dict[str, float]:
    store = Store.open(sqlite_url(workdir / "fabtrust.db"))
    signer = Ed25519NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate())
    log = MerkleLog.create(store, ORIGIN, signer)
    n = len(entries)
    with console.status("fabtrust: appending"):
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            log.append(entries[start : start + batch])
        append_s = time.perf_counter() - t0
    # latency of one durable append with its signed checkpoint (a log at n entries)
    single = []
    for i in range(200):
        t = time.perf_counter()
        log.append([entries[i]])
        single.append(time.perf_counter() - t)
    size = log.size()
    cold = MerkleLog(store, ORIGIN, None)  # a fresh reader: nothing cached
    cold_s, warm_s = [], []
    for idx in proof_indices:
        t = time.perf_counter()
        proof = cold.inclusion_proof(idx, size)
        cold_s.append(time.perf_counter() - t)
        proof.verify()
    for idx in proof_indices:
        t = time.perf_counter()
        cold.inclusion_proof(idx, size)
        warm_s.append(time.perf_counter() - t)
    cons = []
    for old in proof_indices[:200]:
        t = time.perf_counter()
        cold.consistency_proof(old + 1, size).verify()
        cons.append(time.perf_counter() - t)
    db_bytes = sum(p.stat().st_size for p in workdir.glob("fabtrust.db*"))
    store.close()
    return {
        "appends_per_s": n / append_s,
        "checkpoint": summary_ms(single),
        "proof_cold": summary_ms(cold_s),
        "proof_warm": summary_ms(warm_s),
        "consistency": summary_ms(cons),
        "bytes_per_entry": db_bytes / size,
    }


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


def bench_pymerkle(
    workdir: Path, entries: list[bytes], batch: int, proof_indices: list[int]
) -> dict[str, float]:
    from pymerkle import SqliteTree

    tree = SqliteTree(str(workdir / "pymerkle.db"))
    n = len(entries)
    with console.status("pymerkle: appending"):
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            tree.append_entries(entries[start : start + batch])
            tree.get_state()
        append_s = time.perf_counter() - t0
    single = []
    for i in range(200):
        t = time.perf_counter()
        tree.append_entries([entries[i]])
        tree.get_state()
        single.append(time.perf_counter() - t)
    size = tree.get_size()
    tree.close()
    tree = SqliteTree(str(workdir / "pymerkle.db"))  # fresh cache, as for fabtrust's cold reader
    cold_s, warm_s = [], []
    with console.status("pymerkle: proofs"):
        for idx in proof_indices:
            t = time.perf_counter()
            tree.prove_inclusion(idx + 1, size)  # pymerkle counts leaves from one
            cold_s.append(time.perf_counter() - t)
        for idx in proof_indices:
            t = time.perf_counter()
            tree.prove_inclusion(idx + 1, size)
            warm_s.append(time.perf_counter() - t)
        cons = []
        for old in proof_indices[:200]:
            t = time.perf_counter()
            tree.prove_consistency(old + 1, size)
            cons.append(time.perf_counter() - t)
    tree.close()
    return {
        "appends_per_s": n / append_s,
        "checkpoint": summary_ms(single),
        "proof_cold": summary_ms(cold_s),
        "proof_warm": summary_ms(warm_s),
        "consistency": summary_ms(cons),
        "bytes_per_entry": (workdir / "pymerkle.db").stat().st_size / size,
    }


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
