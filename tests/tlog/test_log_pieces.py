"""The partial right-most bundle kept as pieces, one per append (migration 0008): an append writes
its own entries only, the pieces fold into one bundle row when it fills up, readers see one
consistent run of entries, damage is reported, and migration 0008 moves partial bundles both ways."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import create_engine, delete, select

from fabtrust.errors import Conflict
from fabtrust.store import tables
from fabtrust.store.engine import Store, _alembic_config, head_revision, parse_db_url
from fabtrust.store.tables import log_bundles, log_heads, log_pieces
from fabtrust.tlog import merkle
from fabtrust.tlog.checkpoint import Ed25519NoteSigner
from fabtrust.tlog.log import TILE_WIDTH, MerkleLog

ORIGIN = "pieces.fabtrust.local/log"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    yield s
    s.close()


@pytest.fixture
def signer() -> Ed25519NoteSigner:
    return Ed25519NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate())


def bodies(start: int, n: int) -> list[bytes]:
    return [b'{"entry":%d,"pad":"%s"}' % (i, b"x" * (i % 40)) for i in range(start, start + n)]


def bundle(entries: list[bytes]) -> bytes:
    return b"".join(len(e).to_bytes(2, "big") + e for e in entries)


def stored(store: Store) -> tuple[list[int], dict[int, bytes]]:
    with store.read() as conn:
        indices = sorted(conn.execute(select(log_bundles.c.idx)).scalars())
        pieces = {int(r.start): bytes(r.entries) for r in conn.execute(select(log_pieces))}
    return indices, pieces


def root(entries: list[bytes]) -> bytes:
    return merkle.root_from_leaf_hashes([merkle.leaf_hash(e) for e in entries])


def test_one_entry_per_append_writes_one_piece_each_and_folds_full_bundles(
    store: Store, signer: Ed25519NoteSigner
) -> None:
    log = MerkleLog.create(store, ORIGIN, signer)
    written = bodies(0, 2 * TILE_WIDTH + 90)
    for body in written:
        log.append([body])
    indices, pieces = stored(store)
    assert indices == [0, 1]  # two full bundles, no partial one among them
    # the partial bundle: one piece per append, each holding exactly its own entry
    assert pieces == {2 * TILE_WIDTH + i: bundle([written[2 * TILE_WIDTH + i]]) for i in range(90)}
    assert list(log.iter_entries(len(written))) == written
    assert (
        log.entries(2 * TILE_WIDTH + 3, 2 * TILE_WIDTH + 9)
        == written[2 * TILE_WIDTH + 3 : 2 * TILE_WIDTH + 9]
    )
    assert log.latest_checkpoint().root == root(written)
    proof = log.inclusion_proof(len(written) - 1)
    proof.verify()
    assert proof.leaf_hash == merkle.leaf_hash(written[-1])


def test_a_writer_without_the_edge_folds_the_pieces_it_reads(store: Store, signer: Ed25519NoteSigner) -> None:
    first = MerkleLog.create(store, ORIGIN, signer)
    written = bodies(0, 200)
    for start in range(0, 200, 20):
        first.append(written[start : start + 20])
    other = MerkleLog(store, ORIGIN, signer)  # a second process: no cached partial bundle
    more = bodies(200, TILE_WIDTH + 70)
    cp = other.append(more)
    written += more
    assert cp.root == root(written)
    indices, pieces = stored(store)
    assert indices == [0, 1]
    assert pieces == {2 * TILE_WIDTH: bundle(written[2 * TILE_WIDTH :])}
    assert list(first.iter_entries(len(written))) == written
    # and the first writer, whose cached edge is stale now, appends on top correctly
    last = bodies(len(written), 3)
    assert first.append(last).root == root(written + last)


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_a_missing_piece_is_reported_and_a_fold_over_it_changes_nothing(
    store: Store, signer: Ed25519NoteSigner, where: str
) -> None:
    log = MerkleLog.create(store, ORIGIN, signer)
    for start in range(0, 250, 10):
        log.append(bodies(start, 10))
    lost = {"first": 0, "middle": 120, "last": 240}[where]
    with store.write() as conn:
        conn.execute(delete(log_pieces).where(log_pieces.c.start == lost))
    with pytest.raises(Conflict, match="store damaged"):
        log.entries(0, 250)
    before = log.latest_checkpoint()
    fresh = MerkleLog(store, ORIGIN, signer)  # reads the pieces to fold them
    with pytest.raises(Conflict, match="store damaged"):
        fresh.append(bodies(250, 10))
    assert fresh.latest_checkpoint() == before
    assert stored(store)[0] == []


def _migrate(url: str, action: str, revision: str) -> None:
    engine = create_engine(parse_db_url(url))
    try:
        with engine.begin() as conn:
            getattr(command, action)(_alembic_config(conn), revision)
    finally:
        engine.dispose()


def test_the_migrated_log_tables_are_the_declared_ones(store: Store) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = [d for d in compare_metadata(context, tables.metadata) if "log_" in repr(d)]
    assert diff == []


def test_migration_0008_moves_partial_bundles_to_pieces_and_back(
    db_url: str, signer: Ed25519NoteSigner
) -> None:
    store = Store.open(db_url)
    log = MerkleLog.create(store, ORIGIN, signer)
    written = bodies(0, TILE_WIDTH + 44)
    for start in range(0, len(written), 50):
        log.append(written[start : start + 50])
    other = MerkleLog.create(store, "other.fabtrust.local/log", signer)
    exact = bodies(0, TILE_WIDTH)
    other.append(exact)  # a log ending on a bundle boundary: nothing partial to move
    store.close()

    _migrate(db_url, "downgrade", "0007")  # the layout before 0008: the partial bundle in one row
    engine = create_engine(parse_db_url(db_url))
    with engine.connect() as conn:
        rows = conn.execute(select(log_bundles.c.log_id, log_bundles.c.idx, log_bundles.c.entries)).all()
        heads = dict(conn.execute(select(log_heads.c.origin, log_heads.c.log_id)).all())
    engine.dispose()
    by_key = {(r.log_id, r.idx): bytes(r.entries) for r in rows}
    assert by_key == {
        (heads[ORIGIN], 0): bundle(written[:TILE_WIDTH]),
        (heads[ORIGIN], 1): bundle(written[TILE_WIDTH:]),
        (heads[other.origin], 0): bundle(exact),
    }

    store = Store.open(db_url)  # upgrades to the head again
    try:
        assert store.schema_revision() == head_revision()
        indices, pieces = stored(store)
        assert indices == [0, 0]  # one full bundle per log
        assert pieces == {TILE_WIDTH: bundle(written[TILE_WIDTH:])}
        again = MerkleLog(store, ORIGIN, signer)
        assert list(again.iter_entries(len(written))) == written
        more = bodies(len(written), TILE_WIDTH)
        assert again.append(more).root == root(written + more)
        assert list(again.iter_entries(len(written) + TILE_WIDTH)) == written + more
    finally:
        store.close()
