"""All tables, in one metadata. Alembic migrations under ``migrations/versions`` create them.

Log tables follow the transparency-log vocabulary (RFC 9162, C2SP tlog-tiles): a log has a head
(size and the right-edge frontier of its Merkle tree), entry bundles (256 entries a row, each
prefixed by its length as a big-endian uint16, as C2SP tlog-tiles entry bundles), tiles (hashes of
complete subtrees, 256 per tile, one tile level per 8 tree levels) and the signed checkpoint
written for every integrated batch. The right-most bundle and tiles are partial and grow in place.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
)

metadata = MetaData(
    naming_convention={
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ix": "ix_%(table_name)s_%(column_0_label)s",
    }
)

log_heads = Table(
    "log_heads",
    metadata,
    Column("log_id", Integer, primary_key=True, autoincrement=True),
    Column("origin", String(255), nullable=False, unique=True),
    Column("size", BigInteger, nullable=False),
    Column("frontier", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

log_bundles = Table(
    "log_bundles",
    metadata,
    Column("log_id", Integer, ForeignKey("log_heads.log_id"), primary_key=True),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("entries", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

log_tiles = Table(
    "log_tiles",
    metadata,
    Column("log_id", Integer, ForeignKey("log_heads.log_id"), primary_key=True),
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hashes", LargeBinary, nullable=False),
    sqlite_with_rowid=False,
)

log_checkpoints = Table(
    "log_checkpoints",
    metadata,
    Column("log_id", Integer, ForeignKey("log_heads.log_id"), primary_key=True),
    Column("size", BigInteger, primary_key=True, autoincrement=False),
    Column("root", LargeBinary, nullable=False),
    Column("note", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    sqlite_with_rowid=False,
)
