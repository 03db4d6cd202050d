"""Log entries stored as the pieces their appends made (migration 0008): an append writes its own
entries once, split at bundle boundaries; readers see one consistent run of entries; damage is
reported; migration 0008 turns bundle rows into pieces and back."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, delete, select, text

from fabtrust.errors import Conflict
from fabtrust.store import tables
from fabtrust.store.engine import Store, _alembic_config, head_revision, parse_db_url
from fabtrust.store.tables import log_heads, log_pieces
from fabtrust.tlog import merkle
from fabtrust.tlog.checkpoint import Ed25519NoteSigner
from fabtrust.tlog.log import TILE_WIDTH, MerkleLog
from tests.tlog.conftest import ORIGIN


def bodies(start: int, n: int) -> list[bytes]:
    return [b'{"entry":%d,"pad":"%s"}' % (i, b"x" * (i % 40)) for i in range(start, start + n)]


def bundle(entries: list[bytes]) -> bytes:
    return b"".join(len(e).to_bytes(2, "big") + e for e in entries)


def pieces(store: Store) -> dict[int, bytes]:
    with store.read() as conn:
        return {int(r.start): bytes(r.entries) for r in conn.execute(select(log_pieces))}


def root(entries: list[bytes]) -> bytes:
    return merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in entries])


@pytest.mark.parametrize(
    "batches",
    [[1] * 300, [50] * 12, [255, 2, 600, 1], [256, 256, 3]],
    ids=["one-at-a-time", "batches-of-50", "across-bundles", "on-boundaries"],
)
def test_each_append_writes_its_entries_once_split_at_bundle_boundaries(
    store: Store, signer: Ed25519NoteSigner, batches: list[int]
) -> None:
    log = MerkleLog.create(store, ORIGIN, signer)
    written: list[bytes] = []
    expected: dict[int, bytes] = {}
    for n in batches:
        new = bodies(len(written), n)
        log.append(new)
        start, end = len(written), len(written) + n
        while start < end:  # one piece per bundle the append lands in
            stop = min(end, (start // TILE_WIDTH + 1) * TILE_WIDTH)
            expected[start] = bundle(new[start - len(written) : stop - len(written)])
            start = stop
        written += new
    assert pieces(store) == expected
    assert sum(len(p) for p in expected.values()) == len(bundle(written))  # nothing written twice
    assert list(log.iter_entries(len(written))) == written
    for start in (0, 1, 255, 256, len(written) - 7):
        if 0 <= start < len(written):
            end = min(len(written), start + 300)
            assert log.entries(start, end) == written[start:end]
    assert log.latest_checkpoint().root == root(written)
    proof = log.inclusion_proof(len(written) - 1)
    proof.verify()
    assert proof.leaf_hash == merkle.leaf_hash(written[-1])


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_missing_piece_is_reported(store: Store, signer: Ed25519NoteSigner, where: str) -> None:
    log = MerkleLog.create(store, ORIGIN, signer)
    for start in range(0, 250, 10):
        log.append(bodies(start, 10))
    lost = {"first": 0, "middle": 120, "last": 240}[where]
    with store.write() as conn:
        conn.execute(delete(log_pieces).where(log_pieces.c.start == lost))
    with pytest.raises(Conflict, match="store damaged"):
        log.entries(0, 250)
    with pytest.raises(Conflict, match="store damaged"):
        log.entries(lost, lost + 1)


def test_overlapping_pieces_are_reported(store: Store, signer: Ed25519NoteSigner) -> None:
    log = MerkleLog.create(store, ORIGIN, signer)
    log.append(bodies(0, 20))
    with store.write() as conn:  # a forged piece inside the first one
        conn.execute(log_pieces.insert().values(log_id=log.log_id, start=5, entries=bundle([b"forged"])))
    with pytest.raises(Conflict, match="store damaged"):
        log.entries(0, 20)


def test_the_migrated_log_tables_are_the_declared_ones(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = [d for d in compare_metadata(context, tables.metadata) if "log_" in repr(d)]
    assert diff == []


def _migrate(url: str, action: str, revision: str) -> None:
    engine = create_engine(parse_db_url(url))
    try:
        with engine.begin() as conn:
            getattr(command, action)(_alembic_config(conn), revision)
    finally:
        engine.dispose()


def test_migration_0008_turns_bundles_into_pieces_and_back(db_url: str, signer: Ed25519NoteSigner) -> None:
    store = Store.open(db_url)
    log = MerkleLog.create(store, ORIGIN, signer)
    written = bodies(0, TILE_WIDTH + 44)
    for start in range(0, len(written), 50):
        log.append(written[start : start + 50])
    other = MerkleLog.create(store, "other.fabtrust.local/log", signer)
    exact = bodies(0, TILE_WIDTH)
    other.append(exact)
    store.close()

    _migrate(db_url, "downgrade", "0007")  # the layout before 0008: one row per bundle
    engine = create_engine(parse_db_url(db_url))
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT log_id, idx, entries FROM log_bundles")).all()
        heads = dict(conn.execute(select(log_heads.c.origin, log_heads.c.log_id)).all())
    engine.dispose()
    assert {(r.log_id, r.idx): bytes(r.entries) for r in rows} == {
        (heads[ORIGIN], 0): bundle(written[:TILE_WIDTH]),
        (heads[ORIGIN], 1): bundle(written[TILE_WIDTH:]),
        (heads[other.origin], 0): bundle(exact),
    }

    store = Store.open(db_url)  # upgrades to the head again: each bundle one piece
    try:
        assert store.schema_revision() == head_revision()
        with store.read() as conn:
            stored = {(r.log_id, r.start): bytes(r.entries) for r in conn.execute(select(log_pieces))}
        assert stored == {
            (heads[ORIGIN], 0): bundle(written[:TILE_WIDTH]),
            (heads[ORIGIN], TILE_WIDTH): bundle(written[TILE_WIDTH:]),
            (heads[other.origin], 0): bundle(exact),
        }
        again = MerkleLog(store, ORIGIN, signer)
        assert list(again.iter_entries(len(written))) == written
        more = bodies(len(written), TILE_WIDTH)
        assert again.append(more).root == root(written + more)
        assert list(again.iter_entries(len(written) + TILE_WIDTH)) == written + more
    finally:
        store.close()
