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
    UniqueConstraint,
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

# -- device PKI (issue 3) -----------------------------------------------------------------------

pki_cas = Table(
    "pki_cas",
    metadata,
    Column("ca_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # root-ca | product-ca | issuing-ca
    Column("parent_id", String(64), ForeignKey("pki_cas.ca_id"), nullable=True),
    Column("profile", String(40), nullable=False),
    Column("key_uri", String(512), nullable=True),  # None: this home holds the certificate only
    Column("cert_der", LargeBinary, nullable=False),
    Column("subject", String(512), nullable=False),
    Column("serial", String(40), nullable=False),
    Column("not_before", DateTime(timezone=True), nullable=False),
    Column("not_after", DateTime(timezone=True), nullable=False),
    Column("base_url", String(255), nullable=False),  # CRL and OCSP URLs of what this CA issues
    Column("device_domain", String(253), nullable=True),  # product CAs: host of device URIs
    Column("order_id", String(64), nullable=True),  # issuing CAs: the production order
    Column("status", String(16), nullable=False),  # active | revoked
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("revocation_reason", String(32), nullable=True),
    Column("crl_number", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

pki_certs = Table(
    "pki_certs",
    metadata,
    Column("ca_id", String(64), ForeignKey("pki_cas.ca_id"), primary_key=True),
    Column("serial", String(40), primary_key=True),  # lower-case hex, no leading zeros
    Column("profile", String(40), nullable=False),
    Column("subject", String(512), nullable=False),
    Column("key_id", String(64), nullable=False, index=True),  # SHA-256 of the subject's SPKI
    # the device's current certificate holds the serial; a superseded one gives it up (re-enrollment)
    Column("device_serial", String(64), nullable=True),
    Column("order_id", String(64), nullable=True, index=True),
    Column("not_before", DateTime(timezone=True), nullable=False),
    Column("not_after", DateTime(timezone=True), nullable=False),
    Column("cert_der", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),  # good | revoked
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("revocation_reason", String(32), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("device_serial", name="uq_pki_certs_device_serial"),
)

pki_crls = Table(
    "pki_crls",
    metadata,
    Column("ca_id", String(64), ForeignKey("pki_cas.ca_id"), primary_key=True),
    Column("number", BigInteger, primary_key=True, autoincrement=False),
    Column("base_number", BigInteger, nullable=True),  # delta CRLs: the full CRL they extend
    Column("this_update", DateTime(timezone=True), nullable=False),
    Column("next_update", DateTime(timezone=True), nullable=False),
    Column("der", LargeBinary, nullable=False),
)

pki_est_tokens = Table(
    "pki_est_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),  # SHA-256 of the token; the token is shown once
    Column("ca_id", String(64), ForeignKey("pki_cas.ca_id"), nullable=False),
    Column("profile", String(40), nullable=False),
    Column("order_id", String(64), nullable=True),
    Column("label", String(128), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
