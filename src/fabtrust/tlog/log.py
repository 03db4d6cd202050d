"""A persistent, append-only Merkle log (RFC 9162 hashing) with a signed checkpoint per batch.

Storage (``fabtrust.store.tables``) follows C2SP tlog-tiles for the tree. Entries are written once,
as the pieces their appends made: each piece holds the entries one append added to one bundle of
256 (C2SP's entry bundle: each entry prefixed by its length), so a bundle is its pieces in order,
and an append never re-writes the bundle it grows (a station appending one device at a time would
otherwise re-write up to 255 entries per device). Tile level ``L`` holds, for every complete
subtree of height ``8L``, its hash; 256 hashes a tile, the right-most tile of each level partial and
rewritten as it grows (a tile's hashes only ever grow, so any older tree size reads a prefix of
it). The head row keeps the log's size and the frontier of its tree (the roots of its maximal
complete subtrees), so an append reads O(log n) bytes, hashes only the new leaves and their new
parents, and writes its entries (a piece per bundle they land in) plus a handful of tile rows. Any
proof needs O(log n) node hashes from a few tiles; a tile is read once, expanded into its inner
nodes and cached (about 16 KiB each; 4096 tiles by default).

Appends are serialised by the database: the head row is locked (``FOR UPDATE`` on PostgreSQL;
SQLite's write transaction is already exclusive), so several processes may append to one log.
Entries, tiles, head and the new checkpoint commit in one transaction: a batch is integrated
and signed, or not at all.
"""

from __future__ import annotations

import hmac
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select

from fabtrust.clock import Clock, system_clock
from fabtrust.errors import Conflict, InvalidInput, NotFound, VerificationFailed
from fabtrust.store import dbapi
from fabtrust.store.dbapi import Sql
from fabtrust.store.engine import Store
from fabtrust.store.tables import log_checkpoints, log_heads, log_pieces, log_tiles
from fabtrust.tlog import merkle
from fabtrust.tlog.checkpoint import Checkpoint, NoteSigner, sign_checkpoint

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_ENTRY_BYTES = 0xFFFF  # an entry bundle prefixes each entry with a uint16 length
MAX_BATCH = 100_000
MAX_ENTRIES_PER_READ = 1000
_H = merkle.HASH_SIZE


@dataclass(frozen=True, slots=True)
class SignedCheckpoint:
    checkpoint: Checkpoint
    note: bytes

    @property
    def size(self) -> int:
        return self.checkpoint.size

    @property
    def root(self) -> bytes:
        return self.checkpoint.root


@dataclass(frozen=True, slots=True)
class InclusionProof:
    index: int
    size: int
    leaf_hash: bytes
    hashes: tuple[bytes, ...]
    root: bytes

    def verify(self) -> None:
        merkle.verify_inclusion(self.leaf_hash, self.index, self.size, self.hashes, self.root)


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]
    old_root: bytes
    new_root: bytes

    def verify(self) -> None:
        if self.old_size == 0:
            # RFC 9162 defines no proof from the empty tree: it is a prefix of every tree. Accept only
            # the empty proof and the empty tree's root.
            if self.hashes or not hmac.compare_digest(self.old_root, merkle.EMPTY_ROOT):
                raise VerificationFailed(
                    "a proof from the empty tree must be empty and start at the empty root"
                )
            return
        merkle.verify_consistency(self.old_size, self.new_size, self.hashes, self.old_root, self.new_root)


@dataclass(frozen=True, slots=True)
class _Edge:
    """The right edge as this process left it: the partial tiles, valid for (size, frontier)."""

    size: int
    frontier: bytes
    tiles: dict[int, bytes]


class _LazyRead:
    """A read transaction opened on first use: a proof served from cached tiles touches no database."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._cm: AbstractContextManager[Connection] | None = None
        self._conn: Connection | None = None

    def conn(self) -> Connection:
        if self._conn is None:
            self._cm = self._store.read()
            self._conn = self._cm.__enter__()
        return self._conn

    def __enter__(self) -> _LazyRead:
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)


def _split(blob: bytes) -> list[bytes]:
    return [blob[i : i + _H] for i in range(0, len(blob), _H)]


def _decode_bundle(blob: bytes) -> list[bytes]:
    """Entries of a bundle: each is a big-endian uint16 length, then that many bytes (C2SP tlog-tiles)."""
    out: list[bytes] = []
    pos, end = 0, len(blob)
    while pos < end:
        if pos + 2 > end:
            raise Conflict("log entry bundle is truncated (store damaged)")
        n = int.from_bytes(blob[pos : pos + 2], "big")
        pos += 2
        if n == 0 or pos + n > end:
            raise Conflict("log entry bundle is truncated (store damaged)")
        out.append(blob[pos : pos + n])
        pos += n
    return out


def _decode_run(rows: Sequence[Any], first: int) -> list[bytes]:
    """The entries of stored pieces ``rows`` (each by its first entry's log index), which must run
    on from index ``first`` without a gap or an overlap."""
    out: list[bytes] = []
    for row in rows:
        if row.start != first + len(out):
            raise Conflict("log entries are missing or overlap (store damaged)")
        out.extend(_decode_bundle(bytes(row.entries)))
    return out


def _pieces(size: int, entries: Sequence[bytes]) -> Iterator[tuple[int, bytes]]:
    """The pieces appending ``entries`` to a log of ``size`` makes: the entries that land in each
    bundle of 256, in bundle encoding, by the log index of the first."""
    encoded = [len(body).to_bytes(2, "big") + body for body in entries]
    first = 0
    while first < len(encoded):
        take = TILE_WIDTH - (size + first) % TILE_WIDTH
        yield size + first, b"".join(encoded[first : first + take])
        first += take


# the statements of every append, as SQL text (fabtrust.store.dbapi): the head (row-locked on
# PostgreSQL; SQLite's write lock is held already), the new entries, the tiles they complete or
# grow (right-edge tiles grow in place), the new head and its signed checkpoint
_HEAD_FOR_UPDATE = Sql.portable(
    "SELECT size, frontier FROM log_heads WHERE log_id = :log_id",
    postgresql="SELECT size, frontier FROM log_heads WHERE log_id = :log_id FOR UPDATE",
)
_INSERT_PIECE = Sql.portable(
    "INSERT INTO log_pieces (log_id, start, entries) VALUES (:log_id, :start, :entries)"
)
_UPSERT_TILE = Sql.portable(
    "INSERT INTO log_tiles (log_id, level, idx, hashes) VALUES (:log_id, :level, :idx, :hashes)"
    " ON CONFLICT (log_id, level, idx) DO UPDATE SET hashes = excluded.hashes"
)
_UPDATE_HEAD = Sql.portable("UPDATE log_heads SET size = :size, frontier = :frontier WHERE log_id = :log_id")
_INSERT_CHECKPOINT = Sql.portable(
    "INSERT INTO log_checkpoints (log_id, size, root, note, created_at)"
    " VALUES (:log_id, :size, :root, :note, :created_at)"
)


class MerkleLog:
    """One named log (its checkpoint origin) in a store."""

    def __init__(
        self,
        store: Store,
        origin: str,
        signer: NoteSigner | None,
        *,
        clock: Clock = system_clock,
        tile_cache_size: int = 4096,
    ) -> None:
        self._store = store
        self.origin = origin
        self._signer = signer
        self._clock = clock
        with store.read() as conn:
            log_id = conn.execute(select(log_heads.c.log_id).where(log_heads.c.origin == origin)).scalar()
        if log_id is None:
            raise NotFound(f"no log with origin {origin!r} in this store")
        self._log_id: int = log_id
        self._roots: OrderedDict[int, bytes] = OrderedDict()
        # The right edge after this process's last append: (size, partial tiles by level).
        # Used only when the locked head still has that size, i.e. nobody else appended since.
        self._edge: _Edge | None = None
        self._tiles: OrderedDict[tuple[int, int], list[list[bytes]]] = OrderedDict()
        self._size_seen = 0  # the largest tree size this process has seen committed
        self._size_stmt = select(log_heads.c.size).where(log_heads.c.log_id == bindparam("log_id"))
        self._tile_cache_size = tile_cache_size
        self._pieces_stmt = (
            select(log_pieces.c.start, log_pieces.c.entries)
            .where(
                log_pieces.c.log_id == bindparam("log_id"),
                log_pieces.c.start >= bindparam("first"),
                log_pieces.c.start < bindparam("end"),
            )
            .order_by(log_pieces.c.start)
        )
        self._tile_stmt = select(log_tiles.c.hashes).where(
            log_tiles.c.log_id == bindparam("log_id"),
            log_tiles.c.level == bindparam("level"),
            log_tiles.c.idx == bindparam("idx"),
        )

    @staticmethod
    def create(store: Store, origin: str, signer: NoteSigner, *, clock: Clock = system_clock) -> MerkleLog:
        """Create an empty log and sign its first checkpoint (size 0)."""
        Checkpoint(origin, 0, merkle.EMPTY_ROOT)  # validates the origin
        now = clock()
        with store.write() as conn:
            if conn.execute(select(log_heads.c.log_id).where(log_heads.c.origin == origin)).first():
                raise Conflict(f"a log with origin {origin!r} exists already")
            inserted = conn.execute(
                log_heads.insert().values(origin=origin, size=0, frontier=b"", created_at=now)
            ).inserted_primary_key
            assert inserted is not None
            log_id = inserted[0]
            cp = Checkpoint(origin, 0, merkle.EMPTY_ROOT)
            conn.execute(
                log_checkpoints.insert().values(
                    log_id=log_id, size=0, root=cp.root, note=sign_checkpoint(cp, signer), created_at=now
                )
            )
        return MerkleLog(store, origin, signer, clock=clock)

    # -- writing ---------------------------------------------------------------------------------

    def append(self, entries: Sequence[bytes], *, conn: Connection | None = None) -> SignedCheckpoint:
        """Integrate ``entries`` durably, in order, and return the signed checkpoint covering them.

        The first new entry's index is ``checkpoint.size - len(entries)``. With ``conn``, the
        entries join the caller's write transaction (so that, say, a certificate and its audit
        entry commit together); they are durable when the caller commits.
        """
        signer = self._signer
        if signer is None:
            raise InvalidInput("this log was opened read-only (no checkpoint signer)")
        if not entries:
            raise InvalidInput("nothing to append")
        if len(entries) > MAX_BATCH:
            raise InvalidInput(f"a batch holds at most {MAX_BATCH} entries")
        for body in entries:
            if not isinstance(body, bytes) or not 0 < len(body) <= MAX_ENTRY_BYTES:
                raise InvalidInput(f"a log entry must be 1 to {MAX_ENTRY_BYTES} bytes")
        if conn is not None:
            return self._append_in(conn, entries, signer)
        with self._store.write() as own:
            return self._append_in(own, entries, signer)

    def _append_in(self, conn: Connection, entries: Sequence[bytes], signer: NoteSigner) -> SignedCheckpoint:
        leaf_hash = merkle.leaf_hash
        leaf_hashes = [leaf_hash(body) for body in entries]
        log_id = self._log_id
        head = dbapi.execute(conn, _HEAD_FOR_UPDATE, {"log_id": log_id}).fetchone()
        if head is None:
            raise NotFound(f"log {self.origin!r} is gone from this store")
        size: int = head[0]
        old_frontier = bytes(head[1])
        edge = self._edge
        self._edge = None  # stale until this transaction's work is done
        if edge is None or edge.size != size or edge.frontier != old_frontier:
            edge = _Edge(size, old_frontier, {})
        frontier, runs = merkle.frontier_extend_runs(size, _split(old_frontier), leaf_hashes, TILE_HEIGHT)
        new_size = size + len(entries)
        tiles, edge_tiles = self._updated_tiles(conn, size, runs, edge.tiles)
        cp = Checkpoint(self.origin, new_size, merkle.frontier_root(frontier))
        note = sign_checkpoint(cp, signer)
        new_frontier = b"".join(frontier)
        dbapi.execute_many(
            conn,
            _INSERT_PIECE,
            [{"log_id": log_id, "start": start, "entries": blob} for start, blob in _pieces(size, entries)],
        )
        dbapi.execute_many(
            conn,
            _UPSERT_TILE,
            [{"log_id": log_id, "level": lvl, "idx": i, "hashes": b} for (lvl, i), b in tiles.items()],
        )
        dbapi.execute(conn, _UPDATE_HEAD, {"log_id": log_id, "size": new_size, "frontier": new_frontier})
        dbapi.execute(
            conn,
            _INSERT_CHECKPOINT,
            {
                "log_id": log_id,
                "size": new_size,
                "root": cp.root,
                "note": note,
                "created_at": dbapi.db_time(conn, self._clock()),
            },
        )
        # Safe even if the transaction later rolls back: the next append uses this edge only when the
        # locked head still shows exactly this size and frontier.
        self._edge = _Edge(new_size, new_frontier, edge_tiles)
        return SignedCheckpoint(cp, note)

    def _updated_tiles(
        self,
        conn: Connection,
        old_size: int,
        runs: Sequence[tuple[int, int, list[bytes]]],
        known_partials: dict[int, bytes],
    ) -> tuple[dict[tuple[int, int], bytes], dict[int, bytes]]:
        """New contents of every tile the new complete nodes land in, and the new partial tile per level.

        ``known_partials`` maps tile levels to their current right-most partial tile (as left by
        this process's previous append); levels not in it are read from the store.
        """
        result: dict[tuple[int, int], bytes] = {}
        partials = dict(known_partials)
        for level, count, hashes in runs:
            tile_level = level // TILE_HEIGHT
            # ``count``, the run's first index, is the number of complete nodes at this level before the batch
            tile_idx, offset = divmod(count, TILE_WIDTH)
            prefix = b""
            if offset:
                prefix = partials.get(tile_level) or b""
                if len(prefix) != offset * _H:
                    prefix = self._read_tile(conn, tile_level, tile_idx)
                    if len(prefix) != offset * _H:
                        raise Conflict("log tiles disagree with the log head (store damaged)")
            blob = prefix + b"".join(hashes)
            step = TILE_WIDTH * _H
            for pos in range(0, len(blob), step):
                result[(tile_level, tile_idx)] = blob[pos : pos + step]
                tile_idx += 1
            partials[tile_level] = b"" if len(blob) % step == 0 else result[(tile_level, tile_idx - 1)]
        return result, partials

    def _read_tile(self, conn: Connection, tile_level: int, tile_idx: int) -> bytes:
        blob = conn.execute(
            self._tile_stmt, {"log_id": self._log_id, "level": tile_level, "idx": tile_idx}
        ).scalar()
        return bytes(blob or b"")

    # -- reading ---------------------------------------------------------------------------------

    @property
    def log_id(self) -> int:
        return self._log_id

    def size(self) -> int:
        with self._store.read() as conn:
            return int(
                conn.execute(select(log_heads.c.size).where(log_heads.c.log_id == self._log_id)).scalar_one()
            )

    def latest_checkpoint(self) -> SignedCheckpoint:
        with self._store.read() as conn:
            row = conn.execute(
                select(log_checkpoints.c.size, log_checkpoints.c.root, log_checkpoints.c.note)
                .where(log_checkpoints.c.log_id == self._log_id)
                .order_by(log_checkpoints.c.size.desc())
                .limit(1)
            ).one()
        return SignedCheckpoint(Checkpoint(self.origin, row.size, row.root), row.note)

    def checkpoint_at(self, size: int) -> SignedCheckpoint:
        with self._store.read() as conn:
            row = conn.execute(
                select(log_checkpoints.c.root, log_checkpoints.c.note).where(
                    log_checkpoints.c.log_id == self._log_id, log_checkpoints.c.size == size
                )
            ).first()
        if row is None:
            raise NotFound(f"no checkpoint was signed at size {size}")
        return SignedCheckpoint(Checkpoint(self.origin, size, row.root), row.note)

    def checkpoint_sizes(self) -> list[int]:
        with self._store.read() as conn:
            rows = conn.execute(
                select(log_checkpoints.c.size)
                .where(log_checkpoints.c.log_id == self._log_id)
                .order_by(log_checkpoints.c.size)
            )
            return [int(r[0]) for r in rows]

    def entries(self, start: int, end: int) -> list[bytes]:
        """Entries ``[start, end)``; at most MAX_ENTRIES_PER_READ, all of them within the log."""
        size = self.size()
        if not 0 <= start < end <= size:
            raise InvalidInput(f"entry range [{start}, {end}) is outside the log (size {size})")
        if end - start > MAX_ENTRIES_PER_READ:
            raise InvalidInput(f"at most {MAX_ENTRIES_PER_READ} entries per read")
        first = start - start % TILE_WIDTH  # pieces never span bundles: one starts each bundle
        with self._store.read() as conn:
            rows = conn.execute(self._pieces_stmt, {"log_id": self._log_id, "first": first, "end": end}).all()
        result = _decode_run(rows, first)
        if first + len(result) < end:
            raise Conflict("log entries are fewer than the log head says (store damaged)")
        return result[start - first : end - first]

    def iter_entries(self, end: int, chunk: int = MAX_ENTRIES_PER_READ) -> Iterator[bytes]:
        """All entries ``[0, end)`` in order (for exports)."""
        for start in range(0, end, chunk):
            yield from self.entries(start, min(end, start + chunk))

    def _tile_levels(
        self, reader: _LazyRead, tile_level: int, tile_idx: int, width: int
    ) -> list[list[bytes]]:
        """The tile's hashes and every complete node above them inside the tile, cached.

        ``levels[r][j]`` is the node at tree level ``8 * tile_level + r`` and index
        ``(tile_idx << (8 - r)) + j``. A cached tile serves any request within its width: a tile's
        hashes only ever grow at the right, so a narrower copy is a prefix of the current one.
        """
        key = (tile_level, tile_idx)
        cached = self._tiles.get(key)
        if cached is not None and len(cached[0]) >= width:
            self._tiles.move_to_end(key)
            return cached
        base = _split(self._read_tile(reader.conn(), tile_level, tile_idx))
        if len(base) < width:
            raise Conflict("log tiles are missing hashes the log head says exist (store damaged)")
        levels = [base]
        node_hash = merkle.node_hash
        row = base
        while len(row) >= 2:
            row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)]
            levels.append(row)
        self._tiles[key] = levels
        if len(self._tiles) > self._tile_cache_size:
            self._tiles.popitem(last=False)
        return levels

    def _node_reader(self, reader: _LazyRead, size: int) -> merkle.NodeReader:
        def node(level: int, index: int) -> bytes:
            if (index + 1) << level > size:
                raise InvalidInput(f"node ({level}, {index}) is not complete in a tree of size {size}")
            tile_level, sub = divmod(level, TILE_HEIGHT)
            tile_idx = (index << sub) >> TILE_HEIGHT
            within = index - (tile_idx << (TILE_HEIGHT - sub))
            levels = self._tile_levels(reader, tile_level, tile_idx, (within + 1) << sub)
            return levels[sub][within]

        return node

    def _root(self, size: int, node: merkle.NodeReader) -> bytes:
        """Root of the tree of ``size`` leaves; a root never changes, so it is cached."""
        if size == 0:
            return merkle.EMPTY_ROOT
        root = self._roots.get(size)
        if root is None:
            root = self._roots[size] = merkle.subtree_root(0, size, node)
            if len(self._roots) > 1024:
                self._roots.popitem(last=False)
        return root

    def _resolve_size(self, reader: _LazyRead, size: int | None) -> int:
        """The tree size to answer for: ``size`` if the log has reached it, else the current size.

        A log only grows, so a size at or below one already seen needs no query.
        """
        if size is not None and 0 <= size <= self._size_seen:
            return size
        current = int(reader.conn().execute(self._size_stmt, {"log_id": self._log_id}).scalar_one())
        self._size_seen = max(self._size_seen, current)
        if size is None:
            return current
        if not 0 <= size <= current:
            raise InvalidInput(f"tree size {size} is outside the log (size {current})")
        return size

    def root_at(self, size: int) -> bytes:
        with _LazyRead(self._store) as reader:
            size = self._resolve_size(reader, size)
            return self._root(size, self._node_reader(reader, size))

    def inclusion_proof(self, index: int, size: int | None = None) -> InclusionProof:
        """Proof that entry ``index`` is in the tree of ``size`` entries (default: the whole log)."""
        with _LazyRead(self._store) as reader:
            size = self._resolve_size(reader, size)
            if not 0 <= index < size:
                raise InvalidInput(f"entry index {index} is outside a tree of size {size}")
            node = self._node_reader(reader, size)
            hashes = merkle.inclusion_proof(index, size, node)
            return InclusionProof(index, size, node(0, index), tuple(hashes), self._root(size, node))

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """Proof that the tree of ``old_size`` is a prefix of the tree of ``new_size``."""
        with _LazyRead(self._store) as reader:
            new_size = self._resolve_size(reader, new_size)
            if not 0 <= old_size <= new_size:
                raise InvalidInput(f"old size {old_size} must be between 0 and the new size {new_size}")
            node = self._node_reader(reader, new_size)
            hashes = merkle.consistency_proof(old_size, new_size, node) if 0 < old_size < new_size else []
            return ConsistencyProof(
                old_size, new_size, tuple(hashes), self._root(old_size, node), self._root(new_size, node)
            )
