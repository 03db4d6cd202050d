"""The persistent Merkle log, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import multiprocessing
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import delete, select

from fabtrust.errors import Conflict, InvalidInput, NotFound, VerificationFailed
from fabtrust.store.engine import Store, sqlite_url
from fabtrust.store.tables import log_pieces, log_tiles
from fabtrust.tlog import merkle, proofs
from fabtrust.tlog.checkpoint import Ed25519NoteSigner, NoteVerifier, open_checkpoint, verifier_key
from fabtrust.tlog.log import TILE_WIDTH, MerkleLog
from tests.tlog.conftest import ORIGIN


@pytest.fixture
def log(store: Store, signer: Ed25519NoteSigner) -> MerkleLog:
    return MerkleLog.create(store, ORIGIN, signer)


def entries(start: int, n: int) -> list[bytes]:
    return [b'{"n":%d}' % i for i in range(start, start + n)]


def naive_root(bodies: list[bytes]) -> bytes:
    return merkle.root_from_leaf_hashes([merkle.leaf_hash(b) for b in bodies])


def verifier(signer: Ed25519NoteSigner) -> NoteVerifier:
    return NoteVerifier.parse(verifier_key(signer.name, signer.public_key_raw))


@pytest.mark.parametrize(
    "batches",
    [[1], [255, 1], [256], [257], [1, 1, 1, 300, 7], [1000, 24, 65_536 + 3]],
    ids=["one", "fill-first-bundle", "exact-bundle", "cross-bundle", "mixed", "cross-tile-level-2"],
)
def test_appends_match_a_naive_tree_and_every_checkpoint_verifies(
    log: MerkleLog, signer: Ed25519NoteSigner, batches: list[int]
) -> None:
    bodies: list[bytes] = []
    for n in batches:
        new = entries(len(bodies), n)
        cp = log.append(new)
        bodies.extend(new)
        assert cp.size == len(bodies)
        assert cp.root == naive_root(bodies)
        opened = open_checkpoint(cp.note, verifier(signer), ORIGIN)
        assert (opened.size, opened.root) == (len(bodies), cp.root)
    assert log.size() == len(bodies)
    assert log.entries(0, min(1000, len(bodies))) == bodies[:1000]
    assert log.entries(len(bodies) - 1, len(bodies)) == [bodies[-1]]
    assert list(log.iter_entries(len(bodies))) == bodies
    rng = random.Random(len(bodies))
    for _ in range(30):
        size = rng.randint(1, len(bodies))
        index = rng.randrange(size)
        proof = log.inclusion_proof(index, size)
        assert proof.root == naive_root(bodies[:size])
        assert proof.leaf_hash == merkle.leaf_hash(bodies[index])
        proof.verify()
        old = rng.randint(0, size)
        c = log.consistency_proof(old, size)
        assert c.old_root == naive_root(bodies[:old]) if old else merkle.EMPTY_ROOT
        c.verify()
    assert log.checkpoint_sizes() == [0, *[sum(batches[: i + 1]) for i in range(len(batches))]]


def test_a_fresh_reader_sees_the_same_tree(store: Store, log: MerkleLog) -> None:
    bodies = entries(0, 3000)
    log.append(bodies)
    reader = MerkleLog(store, ORIGIN, None)
    for index in (0, 255, 256, 2999):
        assert reader.inclusion_proof(index).hashes == log.inclusion_proof(index).hashes
    assert reader.latest_checkpoint().note == log.latest_checkpoint().note
    with pytest.raises(InvalidInput, match="read-only"):
        reader.append(entries(0, 1))


def test_two_writers_interleaving_keep_one_consistent_tree(store: Store, signer: Ed25519NoteSigner) -> None:
    a = MerkleLog.create(store, ORIGIN, signer)
    b = MerkleLog(store, ORIGIN, signer)
    bodies: list[bytes] = []
    for i, n in enumerate([3, 250, 7, 300, 1, 600]):
        new = entries(len(bodies), n)
        (a if i % 2 else b).append(new)  # each writer's cached right edge goes stale in turn
        bodies.extend(new)
    assert a.latest_checkpoint().root == naive_root(bodies)
    assert list(a.iter_entries(len(bodies))) == bodies


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        ([], "nothing to append"),
        ([b""], "1 to 65535 bytes"),
        ([b"x" * 65_536], "1 to 65535 bytes"),
        (["not bytes"], "1 to 65535 bytes"),
    ],
    ids=["empty-batch", "empty-entry", "oversized-entry", "not-bytes"],
)
def test_bad_batches_are_refused_and_change_nothing(log: MerkleLog, batch: list[bytes], message: str) -> None:
    log.append(entries(0, 5))
    before = log.latest_checkpoint()
    with pytest.raises(InvalidInput, match=message):
        log.append(batch)
    assert log.latest_checkpoint() == before


def test_a_failed_batch_leaves_no_trace(store: Store, log: MerkleLog, signer: Ed25519NoteSigner) -> None:
    log.append(entries(0, 300))
    before = log.latest_checkpoint()

    class Failing:
        name = signer.name
        public_key_raw = signer.public_key_raw

        def sign(self, message: bytes) -> bytes:
            raise RuntimeError("HSM gone")

    broken = MerkleLog(store, ORIGIN, Failing())
    with pytest.raises(RuntimeError):
        broken.append(entries(300, 500))
    assert log.latest_checkpoint() == before
    with store.read() as conn:
        pieces = conn.execute(select(log_pieces.c.start)).scalars().all()
    assert sorted(pieces) == [0, 256]  # the first append's pieces only: 256 entries, then 44
    cp = log.append(entries(300, 500))
    assert cp.root == naive_root(entries(0, 800))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda log: log.inclusion_proof(10, 10), "outside a tree of size 10"),
        (lambda log: log.inclusion_proof(-1), "outside"),
        (lambda log: log.inclusion_proof(0, 11), "outside the log"),
        (lambda log: log.consistency_proof(5, 4), "between 0 and the new size"),
        (lambda log: log.consistency_proof(1, 11), "outside the log"),
        (lambda log: log.entries(5, 11), "outside the log"),
        (lambda log: log.entries(5, 5), "outside the log"),
        (lambda log: log.root_at(11), "outside the log"),
    ],
    ids=[
        "index-equals-size",
        "negative-index",
        "size-beyond-log",
        "old-after-new",
        "new-beyond-log",
        "entries-beyond-log",
        "empty-range",
        "root-beyond-log",
    ],
)
def test_out_of_range_requests_are_refused(log: MerkleLog, call: object, message: str) -> None:
    log.append(entries(0, 10))
    with pytest.raises(InvalidInput, match=message):
        call(log)  # type: ignore[operator]


def test_unknown_and_duplicate_logs(store: Store, signer: Ed25519NoteSigner) -> None:
    MerkleLog.create(store, ORIGIN, signer)
    with pytest.raises(Conflict):
        MerkleLog.create(store, ORIGIN, signer)
    with pytest.raises(NotFound):
        MerkleLog(store, "other.origin/log", None)
    with pytest.raises(NotFound):
        MerkleLog(store, ORIGIN, None).checkpoint_at(7)


def test_a_damaged_store_is_reported_not_papered_over(store: Store, log: MerkleLog) -> None:
    log.append(entries(0, 600))
    with store.write() as conn:
        conn.execute(delete(log_tiles).where(log_tiles.c.level == 0, log_tiles.c.idx == 1))
    reader = MerkleLog(store, ORIGIN, None)
    with pytest.raises(Conflict, match="store damaged"):
        reader.inclusion_proof(300)
    with store.write() as conn:
        conn.execute(delete(log_pieces).where(log_pieces.c.start == 0))
    with pytest.raises(Conflict, match="store damaged"):
        reader.entries(0, 10)


def test_rewritten_history_is_caught_by_an_auditor_holding_an_old_checkpoint(
    tmp_path: Path, log: MerkleLog, signer: Ed25519NoteSigner
) -> None:
    """An insider rebuilds the log from entry 50 on (even with the signing key). The new head signs
    fine, but it is not consistent with the checkpoint the auditor kept from before."""
    log.append(entries(0, 100))
    held = log.latest_checkpoint()
    forged_store = Store.open(sqlite_url(tmp_path / "forged.db"))
    forged = MerkleLog.create(forged_store, ORIGIN, signer)
    forged.append(entries(0, 50) + [b"forged-%d" % i for i in range(60)])
    head = forged.latest_checkpoint()
    proof = forged.consistency_proof(held.size, head.size)
    proof.verify()  # internally consistent ...
    assert proof.old_root != held.root  # ... but not with what the auditor holds
    with pytest.raises(VerificationFailed):
        proofs.verify_with_checkpoint(
            ORIGIN, proof, head.note, verifier(signer), old_checkpoint_note=held.note
        )
    forged_store.close()


def _append_worker(url: str, key: bytes, worker: int, batches: int) -> None:
    store = Store.open(url)
    signer = Ed25519NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.from_private_bytes(key))
    log = MerkleLog(store, ORIGIN, signer)
    for b in range(batches):
        log.append([b"w%d-b%d-e%d" % (worker, b, i) for i in range(1 + (b * 37 + worker) % 300)])
    store.close()


def test_several_processes_append_to_one_log(db_url: str) -> None:
    store = Store.open(db_url)
    key = ed25519.Ed25519PrivateKey.generate()
    signer = Ed25519NoteSigner(ORIGIN, key)
    log = MerkleLog.create(store, ORIGIN, signer)
    raw = key.private_bytes_raw()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_worker, args=(db_url, raw, w, 15)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    expected = sum(1 + (b * 37 + w) % 300 for w in range(3) for b in range(15))
    size = log.size()
    assert size == expected
    bodies = list(log.iter_entries(size))
    assert len(set(bodies)) == expected
    assert log.latest_checkpoint().root == naive_root(bodies)
    sizes = log.checkpoint_sizes()
    assert len(sizes) == 1 + 45
    for old in sizes[1:-1:7]:
        proof = log.consistency_proof(old, size)
        assert proof.old_root == log.checkpoint_at(old).root
        proof.verify()
    store.close()


def test_tampered_proof_fails(log: MerkleLog) -> None:
    log.append(entries(0, 1000))
    proof = log.inclusion_proof(417)
    bad = type(proof)(proof.index, proof.size, proof.leaf_hash, (bytes(32), *proof.hashes[1:]), proof.root)
    with pytest.raises(VerificationFailed):
        bad.verify()
    assert TILE_WIDTH == 256
