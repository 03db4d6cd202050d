"""Log entries are stored as the pieces their appends made (``log_pieces``: the entries one append
added to one bundle of 256, by the log index of the first) instead of bundle rows that every append
re-wrote as they grew (``log_bundles``): an append then writes its own entries only. Every bundle
becomes one piece.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_WIDTH = 256  # entries in a bundle (C2SP tlog-tiles)


def upgrade() -> None:
    op.create_table(
        "log_pieces",
        sa.Column("log_id", sa.Integer(), nullable=False),
        sa.Column("start", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entries", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["log_id"], ["log_heads.log_id"], name="fk_log_pieces_log_id_log_heads"),
        sa.PrimaryKeyConstraint("log_id", "start", name="pk_log_pieces"),
    )
    op.execute(
        "INSERT INTO log_pieces (log_id, start, entries) SELECT log_id, idx * 256, entries FROM log_bundles"
    )
    op.drop_table("log_bundles")


def downgrade() -> None:
    op.create_table(
        "log_bundles",
        sa.Column("log_id", sa.Integer(), nullable=False),
        sa.Column("idx", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entries", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["log_id"], ["log_heads.log_id"], name="fk_log_bundles_log_id_log_heads"),
        sa.PrimaryKeyConstraint("log_id", "idx", name="pk_log_bundles"),
        sqlite_with_rowid=False,
    )
    # a bundle is its pieces in order (a piece never spans two bundles)
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT log_id, start, entries FROM log_pieces ORDER BY log_id, start"))
    bundles: dict[tuple[int, int], bytes] = {}
    for log_id, start, entries in rows:
        key = (log_id, start // _WIDTH)
        bundles[key] = bundles.get(key, b"") + bytes(entries)
    table = sa.table(
        "log_bundles", sa.column("log_id"), sa.column("idx"), sa.column("entries", sa.LargeBinary())
    )
    for (log_id, idx), blob in bundles.items():
        bind.execute(sa.insert(table).values(log_id=log_id, idx=idx, entries=blob))
    op.drop_table("log_pieces")
