"""A persistent, append-only Merkle log (RFC 9162 hashing) with a signed checkpoint per batch.

Storage (``fabtrust.store.tables``) follows C2SP tlog-tiles: tile level ``L`` holds, for every
complete subtree of height ``8L``, its hash; 256 hashes a tile, the right-most tile of each level
partial and rewritten as it grows (a tile's hashes only ever grow, so any older tree size reads a
prefix of it). The head row keeps the log's size and the frontier of its tree (the roots of its
maximal complete subtrees), so an append reads O(log n) bytes, hashes only the new leaves and
their new parents, and writes a handful of rows beside the entries themselves. Any proof needs
O(log n) node hashes, each read from one tile; complete nodes never change and are cached.

Appends are serialised by the database: the head row is locked (``FOR UPDATE`` on PostgreSQL;
SQLite's write transaction is already exclusive), so several processes may append to one log.
Entries, tiles, head and the new checkpoint commit in one transaction: a batch is integrated
and signed, or not at all.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Insert, select
from sqlalchemy.dialects import postgresql, sqlite

from fabtrust.clock import Clock, system_clock
from fabtrust.errors import Conflict, InvalidInput, NotFound
from fabtrust.store.engine import Store
from fabtrust.store.tables import log_checkpoints, log_entries, log_heads, log_tiles
from fabtrust.tlog import merkle
from fabtrust.tlog.checkpoint import Checkpoint, NoteSigner, sign_checkpoint

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_ENTRY_BYTES = 64 * 1024
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
        merkle.verify_consistency(self.old_size, self.new_size, self.hashes, self.old_root, self.new_root)


def _split(blob: bytes) -> list[bytes]:
    return [blob[i : i + _H] for i in range(0, len(blob), _H)]


class MerkleLog:
    """One named log (its checkpoint origin) in a store."""

    def __init__(
        self,
        store: Store,
        origin: str,
        signer: NoteSigner | None,
        *,
        clock: Clock = system_clock,
        node_cache_size: int = 200_000,
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
        self._nodes: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._node_cache_size = node_cache_size

    @staticmethod
    def create(store: Store, origin: str, signer: NoteSigner, *, clock: Clock = system_clock) -> MerkleLog:
        """Create an empty log and sign its first checkpoint (size 0)."""
        Checkpoint(origin, 0, merkle.EMPTY_ROOT)  # validates the origin
        now = clock()
        with store.write() as conn:
            if conn.execute(select(log_heads.c.log_id).where(log_heads.c.origin == origin)).first():
                raise Conflict(f"a log with origin {origin!r} exists already")
            log_id = conn.execute(
                log_heads.insert().values(origin=origin, size=0, frontier=b"", created_at=now)
            ).inserted_primary_key[0]
            cp = Checkpoint(origin, 0, merkle.EMPTY_ROOT)
            conn.execute(
                log_checkpoints.insert().values(
                    log_id=log_id, size=0, root=cp.root, note=sign_checkpoint(cp, signer), created_at=now
                )
            )
        return MerkleLog(store, origin, signer, clock=clock)

    # -- writing ---------------------------------------------------------------------------------

    def _upsert(self, conn: Connection) -> Insert:
        if self._store.dialect == "postgresql":
            pg = postgresql.insert(log_tiles)
            return pg.on_conflict_do_update(index_elements=["log_id", "level", "idx"], set_={"hashes": pg.excluded.hashes})
        lite = sqlite.insert(log_tiles)
        return lite.on_conflict_do_update(index_elements=["log_id", "level", "idx"], set_={"hashes": lite.excluded.hashes})

    def append(self, entries: Sequence[bytes]) -> SignedCheckpoint:
        """Integrate ``entries`` durably, in order, and return the signed checkpoint covering them.

        The first new entry's index is ``checkpoint.size - len(entries)``.
        """
        if self._signer is None:
            raise InvalidInput("this log was opened read-only (no checkpoint signer)")
        if not entries:
            raise InvalidInput("nothing to append")
        if len(entries) > MAX_BATCH:
            raise InvalidInput(f"a batch holds at most {MAX_BATCH} entries")
        for body in entries:
            if not isinstance(body, bytes) or not 0 < len(body) <= MAX_ENTRY_BYTES:
                raise InvalidInput(f"a log entry must be 1 to {MAX_ENTRY_BYTES} bytes")
        leaf_hash = merkle.leaf_hash
        leaf_hashes = [leaf_hash(body) for body in entries]
        with self._store.write() as conn:
            head = conn.execute(
                select(log_heads.c.size, log_heads.c.frontier).where(log_heads.c.log_id == self._log_id).with_for_update()
            ).one()
            size: int = head.size
            frontier, completed = merkle.frontier_extend(size, _split(head.frontier), leaf_hashes, TILE_HEIGHT)
            new_size = size + len(entries)
            tiles = self._updated_tiles(conn, size, completed)
            cp = Checkpoint(self.origin, new_size, merkle.frontier_root(frontier))
            note = sign_checkpoint(cp, self._signer)
            log_id = self._log_id
            conn.execute(
                log_entries.insert(),
                [{"log_id": log_id, "idx": size + i, "body": body} for i, body in enumerate(entries)],
            )
            conn.execute(
                self._upsert(conn),
                [{"log_id": log_id, "level": lvl, "idx": idx, "hashes": blob} for (lvl, idx), blob in tiles.items()],
            )
            conn.execute(
                log_heads.update()
                .where(log_heads.c.log_id == log_id)
                .values(size=new_size, frontier=b"".join(frontier))
            )
            conn.execute(
                log_checkpoints.insert().values(
                    log_id=log_id, size=new_size, root=cp.root, note=note, created_at=self._clock()
                )
            )
        return SignedCheckpoint(cp, note)

    def _updated_tiles(
        self, conn: Connection, old_size: int, completed: Sequence[tuple[int, int, bytes]]
    ) -> dict[tuple[int, int], bytes]:
        """New contents of every tile the completed nodes land in (right-edge tiles extended)."""
        by_level: dict[int, list[bytes]] = {}
        first_index: dict[int, int] = {}
        for level, index, node in completed:
            tile_level = level // TILE_HEIGHT
            hashes = by_level.get(tile_level)
            if hashes is None:
                hashes = by_level[tile_level] = []
                first_index[tile_level] = index
            hashes.append(node)
        result: dict[tuple[int, int], bytes] = {}
        for tile_level, hashes in by_level.items():
            start = first_index[tile_level]  # == number of complete nodes at this level before the batch
            assert start == old_size >> (TILE_HEIGHT * tile_level)
            tile_idx, offset = divmod(start, TILE_WIDTH)
            prefix = b""
            if offset:
                prefix = conn.execute(
                    select(log_tiles.c.hashes).where(
                        log_tiles.c.log_id == self._log_id, log_tiles.c.level == tile_level, log_tiles.c.idx == tile_idx
                    )
                ).scalar_one()
                if len(prefix) != offset * _H:
                    raise Conflict("log tiles disagree with the log head (store damaged)")
            blob = prefix + b"".join(hashes)
            for pos in range(0, len(blob), TILE_WIDTH * _H):
                result[(tile_level, tile_idx)] = blob[pos : pos + TILE_WIDTH * _H]
                tile_idx += 1
        return result

    # -- reading ---------------------------------------------------------------------------------

    @property
    def log_id(self) -> int:
        return self._log_id

    def size(self) -> int:
        with self._store.read() as conn:
            return int(conn.execute(select(log_heads.c.size).where(log_heads.c.log_id == self._log_id)).scalar_one())

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
                select(log_checkpoints.c.size).where(log_checkpoints.c.log_id == self._log_id).order_by(log_checkpoints.c.size)
            )
            return [int(r[0]) for r in rows]

    def entries(self, start: int, end: int) -> list[bytes]:
        """Entries ``[start, end)``; at most MAX_ENTRIES_PER_READ, all of them within the log."""
        size = self.size()
        if not 0 <= start < end <= size:
            raise InvalidInput(f"entry range [{start}, {end}) is outside the log (size {size})")
        if end - start > MAX_ENTRIES_PER_READ:
            raise InvalidInput(f"at most {MAX_ENTRIES_PER_READ} entries per read")
        with self._store.read() as conn:
            rows = conn.execute(
                select(log_entries.c.body)
                .where(log_entries.c.log_id == self._log_id, log_entries.c.idx >= start, log_entries.c.idx < end)
                .order_by(log_entries.c.idx)
            )
            return [bytes(r[0]) for r in rows]

    def iter_entries(self, end: int, chunk: int = MAX_ENTRIES_PER_READ) -> Any:
        """All entries ``[0, end)`` in order (for exports)."""
        for start in range(0, end, chunk):
            yield from self.entries(start, min(end, start + chunk))

    def _node_reader(self, conn: Connection, size: int) -> Any:
        cache, log_id, cache_max = self._nodes, self._log_id, self._node_cache_size
        tiles: dict[tuple[int, int], list[bytes]] = {}

        def tile(tile_level: int, tile_idx: int) -> list[bytes]:
            key = (tile_level, tile_idx)
            if key not in tiles:
                blob = conn.execute(
                    select(log_tiles.c.hashes).where(
                        log_tiles.c.log_id == log_id, log_tiles.c.level == tile_level, log_tiles.c.idx == tile_idx
                    )
                ).scalar()
                tiles[key] = _split(blob or b"")
            return tiles[key]

        def node(level: int, index: int) -> bytes:
            if (index + 1) << level > size:
                raise InvalidInput(f"node ({level}, {index}) is not complete in a tree of size {size}")
            key = (level, index)
            hit = cache.get(key)
            if hit is not None:
                return hit
            tile_level, sub = divmod(level, TILE_HEIGHT)
            first = index << sub  # first hash at the tile's base level under this node
            hashes = tile(tile_level, first // TILE_WIDTH)
            offset = first % TILE_WIDTH
            span = hashes[offset : offset + (1 << sub)]
            if len(span) != 1 << sub:
                raise Conflict("log tiles are missing hashes the log head says exist (store damaged)")
            result = merkle.root_from_leaf_hashes(span)
            cache[key] = result
            if len(cache) > cache_max:
                cache.popitem(last=False)
            return result

        return node

    def _resolve_size(self, conn: Connection, size: int | None) -> int:
        current = int(conn.execute(select(log_heads.c.size).where(log_heads.c.log_id == self._log_id)).scalar_one())
        if size is None:
            return current
        if not 0 <= size <= current:
            raise InvalidInput(f"tree size {size} is outside the log (size {current})")
        return size

    def root_at(self, size: int) -> bytes:
        with self._store.read() as conn:
            size = self._resolve_size(conn, size)
            if size == 0:
                return merkle.EMPTY_ROOT
            return merkle.subtree_root(0, size, self._node_reader(conn, size))

    def inclusion_proof(self, index: int, size: int | None = None) -> InclusionProof:
        """Proof that entry ``index`` is in the tree of ``size`` entries (default: the whole log)."""
        with self._store.read() as conn:
            size = self._resolve_size(conn, size)
            if not 0 <= index < size:
                raise InvalidInput(f"entry index {index} is outside a tree of size {size}")
            node = self._node_reader(conn, size)
            hashes = merkle.inclusion_proof(index, size, node)
            root = merkle.subtree_root(0, size, node)
            return InclusionProof(index, size, node(0, index), tuple(hashes), root)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """Proof that the tree of ``old_size`` is a prefix of the tree of ``new_size``."""
        with self._store.read() as conn:
            new_size = self._resolve_size(conn, new_size)
            if not 0 <= old_size <= new_size:
                raise InvalidInput(f"old size {old_size} must be between 0 and the new size {new_size}")
            node = self._node_reader(conn, new_size)
            hashes = merkle.consistency_proof(old_size, new_size, node) if 0 < old_size < new_size else []
            old_root = merkle.subtree_root(0, old_size, node) if old_size else merkle.EMPTY_ROOT
            new_root = merkle.subtree_root(0, new_size, node) if new_size else merkle.EMPTY_ROOT
            return ConsistencyProof(old_size, new_size, tuple(hashes), old_root, new_root)

