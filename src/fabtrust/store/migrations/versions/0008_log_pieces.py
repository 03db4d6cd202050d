"""The partial right-most entry bundle of a log is kept as pieces (``log_pieces``, one row per
append) instead of one row rewritten by every append: an append then writes its own entries, not
the up to 255 before them. Existing partial bundles become one piece each.

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

# the bundle a log's head leaves partial (index size / 256, when size % 256 is not 0) moves
_MOVE = """
INSERT INTO log_pieces (log_id, start, entries)
SELECT log_bundles.log_id, log_bundles.idx * 256, log_bundles.entries
FROM log_bundles JOIN log_heads h
ON h.log_id = log_bundles.log_id AND h.size % 256 <> 0 AND log_bundles.idx = h.size / 256
"""
_DROP = """
DELETE FROM log_bundles WHERE EXISTS (
    SELECT 1 FROM log_heads h
    WHERE h.log_id = log_bundles.log_id AND h.size % 256 <> 0 AND log_bundles.idx = h.size / 256
)
"""


def upgrade() -> None:
    op.create_table(
        "log_pieces",
        sa.Column("log_id", sa.Integer(), nullable=False),
        sa.Column("start", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("entries", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["log_id"], ["log_heads.log_id"], name="fk_log_pieces_log_id_log_heads"),
        sa.PrimaryKeyConstraint("log_id", "start", name="pk_log_pieces"),
    )
    op.execute(_MOVE)
    op.execute(_DROP)


def downgrade() -> None:
    # each partial bundle again as one row: its pieces, in order, concatenated (bundle encoding)
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT log_id, start, entries FROM log_pieces ORDER BY log_id, start"))
    partial: dict[tuple[int, int], bytes] = {}
    for log_id, start, entries in rows:
        key = (log_id, start // 256)
        partial[key] = partial.get(key, b"") + bytes(entries)
    bundles = sa.table(
        "log_bundles", sa.column("log_id"), sa.column("idx"), sa.column("entries", sa.LargeBinary())
    )
    for (log_id, idx), blob in partial.items():
        bind.execute(sa.insert(bundles).values(log_id=log_id, idx=idx, entries=blob))
    op.drop_table("log_pieces")
