"""All tables, in one metadata. Alembic migrations under ``migrations/versions`` create them.

Log tables follow the transparency-log vocabulary (RFC 9162, C2SP tlog-tiles): a log has a head
(size and the right-edge frontier of its Merkle tree), entries, tiles (hashes of complete subtrees,
256 per tile, one tile level per 8 tree levels) and the signed checkpoint written for every
integrated batch. Entries are stored once, as the pieces their appends made (an append's entries
within one entry bundle of 256, each prefixed by its length as a big-endian uint16, as C2SP
tlog-tiles entry bundles); a bundle is its pieces in order. The right-most tiles are partial and
grow in place.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """A time zone-aware timestamp, read back as aware UTC on every engine (SQLite drops the zone
    that PostgreSQL keeps); naive values are refused on the way in."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime stored")
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


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
    Column("created_at", UtcDateTime(), nullable=False),
)

# entries, as the pieces appends made: the entries one append added to one bundle of 256, in bundle
# encoding, by the log index of the first (a rowid table: a piece holds 1 to 256 entries)
log_pieces = Table(
    "log_pieces",
    metadata,
    Column("log_id", Integer, ForeignKey("log_heads.log_id"), primary_key=True),
    Column("start", BigInteger, primary_key=True, autoincrement=False),
    Column("entries", LargeBinary, nullable=False),
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
    Column("created_at", UtcDateTime(), nullable=False),
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
    Column("not_before", UtcDateTime(), nullable=False),
    Column("not_after", UtcDateTime(), nullable=False),
    Column("base_url", String(255), nullable=False),  # CRL and OCSP URLs of what this CA issues
    Column("device_domain", String(253), nullable=True),  # product CAs: host of device URIs
    Column("order_id", String(64), nullable=True),  # issuing CAs: the production order
    Column("status", String(16), nullable=False),  # active | revoked
    Column("revoked_at", UtcDateTime(), nullable=True),
    Column("revocation_reason", String(32), nullable=True),
    Column("crl_number", BigInteger, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
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
    Column("not_before", UtcDateTime(), nullable=False),
    Column("not_after", UtcDateTime(), nullable=False),
    Column("cert_der", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),  # good | revoked
    Column("revoked_at", UtcDateTime(), nullable=True),
    Column("revocation_reason", String(32), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint("device_serial", name="uq_pki_certs_device_serial"),
)

pki_crls = Table(
    "pki_crls",
    metadata,
    Column("ca_id", String(64), ForeignKey("pki_cas.ca_id"), primary_key=True),
    Column("number", BigInteger, primary_key=True, autoincrement=False),
    Column("base_number", BigInteger, nullable=True),  # delta CRLs: the full CRL they extend
    Column("this_update", UtcDateTime(), nullable=False),
    Column("next_update", UtcDateTime(), nullable=False),
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
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("used_at", UtcDateTime(), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
)

# -- production: the OEM side (products, releases, stations, orders, packages) ----------------------
# Documents (orders, packages, records) are kept as the canonical JSON or DSSE bytes that were
# signed; the columns beside them are what queries need.

prod_products = Table(
    "prod_products",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("product_ca", String(64), ForeignKey("pki_cas.ca_id"), nullable=False),
    Column("description", String(255), nullable=False),
    Column("vendors", LargeBinary, nullable=False),  # canonical JSON: accepted silicon-vendor roots
    Column("created_at", UtcDateTime(), nullable=False),
)

prod_stations = Table(
    "prod_stations",
    metadata,
    Column("station_id", String(64), primary_key=True),
    Column("identity_cert", LargeBinary, nullable=False),
    Column("sealing_key", LargeBinary, nullable=False),  # SPKI DER: packages are sealed to it
    Column("log_vkey", String(255), nullable=False),  # the station log's note verifier key
    Column("status", String(16), nullable=False),  # active | retired
    Column("enrolled_at", UtcDateTime(), nullable=False),
)

prod_orders = Table(
    "prod_orders",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("product", String(40), ForeignKey("prod_products.name"), nullable=False),
    Column("release_id", String(96), ForeignKey("fw_releases.release_id"), nullable=False),
    Column("stations", LargeBinary, nullable=False),  # canonical JSON list of station ids
    Column("quota", Integer, nullable=False),
    Column("not_before", UtcDateTime(), nullable=False),
    Column("not_after", UtcDateTime(), nullable=False),
    Column("status", String(16), nullable=False),  # awaiting-approval | approved
    Column("created_by", String(128), nullable=False),
    Column("approved_by", String(128), nullable=True),
    Column("created_at", UtcDateTime(), nullable=False),
)

prod_packages = Table(
    "prod_packages",
    metadata,
    Column("package_id", String(64), primary_key=True),
    Column("order_id", String(64), ForeignKey("prod_orders.order_id"), nullable=False),
    Column("station_id", String(64), ForeignKey("prod_stations.station_id"), nullable=False),
    Column("issuing_ca", String(64), ForeignKey("pki_cas.ca_id"), nullable=False),
    Column("quota", Integer, nullable=False),  # this station's share of the order
    Column("sha256", String(64), nullable=False),  # of the sealed package
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint("order_id", "station_id", name="uq_prod_packages_order_id"),
)

# -- production: the OEM's reconciliation (station checkpoints, records, registry, alerts) ---------

rec_checkpoints = Table(
    "rec_checkpoints",
    metadata,
    Column("station_id", String(64), ForeignKey("prod_stations.station_id"), primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary, nullable=False),
    Column("note", LargeBinary, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

rec_records = Table(
    "rec_records",
    metadata,
    Column("station_id", String(64), ForeignKey("prod_stations.station_id"), primary_key=True),
    Column("order_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("chip_uid", String(64), nullable=False, index=True),
    Column("device_serial", String(64), nullable=False),
    Column("verdict", String(16), nullable=False),  # registered | clone | overproduction | invalid
    Column("record", LargeBinary, nullable=False),  # the station-signed DSSE envelope
    Column("imported_at", UtcDateTime(), nullable=False),
)

fleet_devices = Table(
    "fleet_devices",
    metadata,
    Column("device_serial", String(64), primary_key=True),
    Column("chip_uid", String(64), nullable=False, unique=True),
    Column("key_id", String(64), nullable=False, unique=True),  # SHA-256 of the device key's SPKI
    Column("order_id", String(64), nullable=False, index=True),
    Column("station_id", String(64), nullable=False),
    Column("cert_der", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),  # manufactured | ...
    Column("registered_at", UtcDateTime(), nullable=False),
)

rec_alerts = Table(
    "rec_alerts",
    metadata,
    Column("alert_id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(32), nullable=False),  # clone | overproduction | invalid-record | ...
    Column("station_id", String(64), nullable=True),
    Column("order_id", String(64), nullable=True),
    Column("chip_uid", String(64), nullable=True),
    Column("device_serial", String(64), nullable=True),
    Column("message", String(512), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

# -- production: the station side (its identity, loaded packages, provisioned devices) ------------

st_identity = Table(
    "st_identity",
    metadata,
    Column("station_id", String(64), primary_key=True),
    Column("identity_key", String(512), nullable=False),  # key-store URIs
    Column("sealing_key", String(512), nullable=False),
    Column("identity_cert", LargeBinary, nullable=True),  # set when the OEM's certificate is installed
    Column("oem_signer", LargeBinary, nullable=True),  # SPKI of the OEM package signer, pinned then
    Column("created_at", UtcDateTime(), nullable=False),
)

st_issuing_keys = Table(
    "st_issuing_keys",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("key_uri", String(512), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

st_packages = Table(
    "st_packages",
    metadata,
    Column("order_id", String(64), primary_key=True),
    Column("package_id", String(64), nullable=False, unique=True),
    Column("issuing_ca", String(64), nullable=False),
    Column("quota", Integer, nullable=False),
    Column("used", Integer, nullable=False),  # reserved atomically with each device's records
    Column("not_before", UtcDateTime(), nullable=False),
    Column("not_after", UtcDateTime(), nullable=False),
    Column("sealed", LargeBinary, nullable=False),  # as received: secrets stay sealed at rest
    Column("loaded_at", UtcDateTime(), nullable=False),
)

st_devices = Table(
    "st_devices",
    metadata,
    Column("chip_uid", String(64), primary_key=True),  # one chip, one identity: clones collide here
    Column("order_id", String(64), ForeignKey("st_packages.order_id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("device_serial", String(64), nullable=False, unique=True),
    Column("log_index", BigInteger, nullable=False),  # the record's entry in the station log
    Column("record", LargeBinary, nullable=False),  # station-signed DSSE envelope
    Column("receipt", LargeBinary, nullable=True),  # the device-signed install receipt
    Column("state", String(16), nullable=False),  # issued | programmed
    Column("created_at", UtcDateTime(), nullable=False),
    # the measured boot the receipt reports, checked against the package's release (None until then)
    Column("firmware_digest", String(64), nullable=True),
    Column("firmware_version", String(40), nullable=True),
    Column("security_counter", BigInteger, nullable=True),
    UniqueConstraint("order_id", "seq", name="uq_st_devices_order_id"),
)

# -- firmware: the signed-update repository (TUF, issue 5) ----------------------------------------
# Every version of every role's metadata is kept, as the exact bytes that were signed and are
# served (consistent snapshots: clients fetch ``<version>.<role>.json``); targets are kept by name
# and SHA-256, so a blob an older snapshot names stays available. Which key-store key holds each
# TUF key, and each role's expiry period, are the repository's own configuration.

tuf_metadata = Table(
    "tuf_metadata",
    metadata,
    Column("role", String(16), primary_key=True),  # root | targets | snapshot | timestamp
    Column("version", BigInteger, primary_key=True, autoincrement=False),
    Column("body", LargeBinary, nullable=False),  # the signed metadata, as served
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    sqlite_with_rowid=False,
)

tuf_targets = Table(
    "tuf_targets",
    metadata,
    Column("name", String(255), primary_key=True),  # the TUF target path
    Column("sha256", String(64), primary_key=True),
    Column("length", BigInteger, nullable=False),
    Column("blob", LargeBinary, nullable=False),  # custom metadata is in the signed targets metadata
    Column("created_at", UtcDateTime(), nullable=False),
)

tuf_keys = Table(
    "tuf_keys",
    metadata,
    Column("keyid", String(64), primary_key=True),  # the TUF key id (SHA-256 of the key's canonical JSON)
    Column("key_uri", String(512), nullable=False),  # where the private key lives (key store URI)
    Column("created_at", UtcDateTime(), nullable=False),
)

tuf_roles = Table(
    "tuf_roles",
    metadata,
    Column("role", String(16), primary_key=True),
    Column("expiry_seconds", BigInteger, nullable=False),  # each new version expires this long after
    Column("updated_at", UtcDateTime(), nullable=False),
)

# -- firmware: release signers, approval policies, class keys and releases (issue 5) --------------
# A release keeps its statement (the canonical JSON the signers approve), the one DSSE envelope that
# collects their signatures, the firmware body and SBOM it names, and, once published, the signed and
# encrypted MCUboot image. ``seq`` orders a product's published releases: the highest is current.

fw_signers = Table(
    "fw_signers",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("key_uri", String(512), nullable=False),
    Column("key_id", String(64), nullable=False, unique=True),  # SHA-256 of the SPKI: the DSSE keyid
    Column("public_key", LargeBinary, nullable=False),  # SPKI DER: approvals verify without the key store
    Column("status", String(16), nullable=False),  # active | revoked
    Column("created_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
)

fw_policies = Table(
    "fw_policies",
    metadata,
    Column("product", String(40), ForeignKey("prod_products.name"), primary_key=True),
    Column("threshold", Integer, nullable=False),  # k: distinct active signers a release needs
    Column("updated_at", UtcDateTime(), nullable=False),
)

fw_class_keys = Table(
    "fw_class_keys",
    metadata,
    Column("product", String(40), ForeignKey("prod_products.name"), primary_key=True),
    Column("public_key", LargeBinary, nullable=False),  # SPKI DER: images are encrypted to it
    Column("sealed_private", LargeBinary, nullable=False),  # PKCS#8, HPKE-sealed to the wrap key
    Column("wrap_key_uri", String(512), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
)

fw_releases = Table(
    "fw_releases",
    metadata,
    Column("release_id", String(96), primary_key=True),
    Column("product", String(40), ForeignKey("prod_products.name"), nullable=False),
    Column("version", String(40), nullable=False),
    Column("security_counter", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),  # release | rollback
    Column("statement", LargeBinary, nullable=False),  # canonical JSON, fabtrust.firmware-release/v1
    Column("approvals", LargeBinary, nullable=True),  # the DSSE envelope; None before the first
    Column("body", LargeBinary, nullable=False),
    Column("sbom", LargeBinary, nullable=False),  # CycloneDX 1.6 JSON
    Column("state", String(16), nullable=False),  # draft | published ("approved" is computed)
    Column("seq", Integer, nullable=True),  # set at publication
    Column("image", LargeBinary, nullable=True),  # the signed, encrypted MCUboot image
    Column("image_sha256", String(64), nullable=True),
    Column("created_by", String(128), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("published_by", String(128), nullable=True),
    Column("published_at", UtcDateTime(), nullable=True),
    UniqueConstraint("product", "seq", name="uq_fw_releases_product"),
)

# -- access: principals, time-bound role grants, API tokens, k-of-n approvals (issue 6) -----------
# Token secrets are never stored, only the SHA-256 of the whole token string. An approval request
# keeps the parameters it was asked with (canonical JSON) and the digest of its request statement,
# which each approval names; the threshold and eligible role are copied from the policy when asked.
# Indexes are named explicitly: the ``ix`` convention above would repeat the table name.

acc_principals = Table(
    "acc_principals",
    metadata,
    Column("principal_id", String(80), primary_key=True),  # person id, station:<id> or device:<serial>
    Column("kind", String(16), nullable=False),  # person | station | device
    Column("display_name", String(128), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("disabled_at", UtcDateTime(), nullable=True),  # disabled: authenticates to nothing
)

acc_approval_requests = Table(
    "acc_approval_requests",
    metadata,
    Column("request_id", String(32), primary_key=True),
    Column("action", String(32), nullable=False),
    Column("subject", String(255), nullable=False),
    Column("parameters", LargeBinary, nullable=False),  # canonical JSON object
    Column("digest", String(64), nullable=False),  # SHA-256 of the request statement
    Column("requested_by", String(128), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("threshold", Integer, nullable=False),
    Column("eligible_role", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # pending | executed | cancelled
    Column("executed_at", UtcDateTime(), nullable=True),
    Column("executed_by", String(128), nullable=True),
    Column("cancelled_at", UtcDateTime(), nullable=True),
    Column("cancelled_by", String(128), nullable=True),
)

acc_approvals = Table(
    "acc_approvals",
    metadata,
    Column("request_id", String(32), ForeignKey("acc_approval_requests.request_id"), primary_key=True),
    Column("principal_id", String(80), ForeignKey("acc_principals.principal_id"), primary_key=True),
    Column("digest", String(64), nullable=False),  # the request digest the approver saw
    Column("approved_at", UtcDateTime(), nullable=False),
)

acc_grants = Table(
    "acc_grants",
    metadata,
    Column("grant_id", String(32), primary_key=True),
    Column("principal_id", String(80), ForeignKey("acc_principals.principal_id"), nullable=False),
    Column("role", String(32), nullable=False),
    Column("not_before", UtcDateTime(), nullable=False),
    Column("not_after", UtcDateTime(), nullable=False),  # active while not_before <= t < not_after
    Column("granted_by", String(128), nullable=False),
    Column("granted_at", UtcDateTime(), nullable=False),
    # the role.grant request that authorised it; None only for the bootstrap grants
    Column("approval_id", String(32), ForeignKey("acc_approval_requests.request_id"), nullable=True),
    Column("revoked_at", UtcDateTime(), nullable=True),
    Column("revoked_by", String(128), nullable=True),
    Index("ix_acc_grants_principal_id", "principal_id"),
)

acc_tokens = Table(
    "acc_tokens",
    metadata,
    Column("token_id", String(16), primary_key=True),  # public: the token's second field
    Column("principal_id", String(80), ForeignKey("acc_principals.principal_id"), nullable=False),
    Column("token_hash", String(64), nullable=False),  # SHA-256 hex of the whole token string
    Column("roles", LargeBinary, nullable=False),  # canonical JSON list: the token's scope
    Column("label", String(128), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("expires_at", UtcDateTime(), nullable=False),
    Column("revoked_at", UtcDateTime(), nullable=True),
    Index("ix_acc_tokens_principal_id", "principal_id"),
)

acc_approval_policies = Table(
    "acc_approval_policies",
    metadata,
    Column("action", String(32), primary_key=True),  # absent: the default in fabtrust.access.policy
    Column("threshold", Integer, nullable=False),
    Column("eligible_role", String(32), nullable=False),
    Column("ttl_seconds", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    Column("approval_id", String(32), ForeignKey("acc_approval_requests.request_id"), nullable=False),
)
