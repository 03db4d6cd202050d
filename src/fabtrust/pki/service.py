"""The CA service: root ceremony, product and issuing CAs, issuance from CSRs, revocation state.

Straight lines (read → validate → authorise → act → record): the rules live in the pure
``issuance`` module, persistence in the ``pki_*`` tables, keys in the key store. Every act and
every refusal is an audit entry (``fabtrust.audit.pki/v1``) naming the CA key used.

Where the keys live:

- root and product CAs: the OEM's key store (the root key is imported from the ceremony, so that
  its encrypted backup can exist; it is non-exportable from then on);
- issuing CAs: the station's key store. The OEM signs the station's CSR and records the CA
  without a key; the station records the same certificate with its key (``adopt_issuing_ca``).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Connection, RowMapping, insert, select, update
from sqlalchemy.exc import IntegrityError

from fabtrust.access.policy import ApprovalAction
from fabtrust.access.service import ApprovalTicket, ticket_request_id
from fabtrust.clock import Clock, rfc3339, system_clock
from fabtrust.crypto import dsse
from fabtrust.crypto.keys import KeyType, KeyUsage, generate_private_key, key_id, spki_der
from fabtrust.errors import Conflict, FabtrustError, InvalidInput, NotFound, PolicyViolation
from fabtrust.keystore.base import KeyInfo, KeyStore, importer
from fabtrust.pki import custody
from fabtrust.pki.issuance import (
    IssuerView,
    NameRequest,
    Urls,
    VerifiedCsr,
    build_certificate,
    check_chain,
    check_dns_name,
    check_name_constraints,
    check_subject,
    csr_key_type,
    load_csr,
    load_csr_and_key,
    san_entries,
    subject_name,
    validity,
)
from fabtrust.pki.profiles import Profile, Profiles
from fabtrust.pki.signing import ca_private_key, signature_hash
from fabtrust.pki.template import LeafTemplate
from fabtrust.store import dbapi
from fabtrust.store.dbapi import Sql
from fabtrust.store.engine import Store
from fabtrust.store.tables import pki_cas, pki_certs
from fabtrust.tlog.audit import AuditEntry, AuditLog, Outcome

AUDIT_PKI = "fabtrust.audit.pki/v1"

# Statements on the issuance path, built once: SQLAlchemy then only binds values (a statement built
# per call costs several times its execution on SQLite).
# the rows of issued certificates, and what the store forbids for a batch in one round trip:
# (kind, value) rows for revoked or retired CAs of the chains, device serials certified already and
# device keys certified already (SQL text on the DBAPI connection: fabtrust.store.dbapi)
_INSERT_CERTS = Sql.portable(
    "INSERT INTO pki_certs (ca_id, serial, profile, subject, key_id, device_serial, order_id, not_before,"
    " not_after, cert_der, status, created_at) VALUES (:ca_id, :serial, :profile, :subject, :key_id,"
    " :device_serial, :order_id, :not_before, :not_after, :cert_der, 'good', :created_at)"
)
_ADMIT_CONFLICTS = Sql.portable(
    "SELECT 'ca', ca_id FROM pki_cas"
    " WHERE ca_id IN (SELECT value FROM json_each(:ids)) AND status != 'active'"
    " UNION ALL SELECT 'serial', device_serial FROM pki_certs"
    " WHERE device_serial IN (SELECT value FROM json_each(:serials))"
    " UNION ALL SELECT 'key', key_id FROM pki_certs"
    " WHERE key_id IN (SELECT value FROM json_each(:key_ids)) AND profile = 'device-idevid'",
    postgresql="SELECT 'ca', ca_id FROM pki_cas WHERE ca_id = ANY(:ids) AND status != 'active'"
    " UNION ALL SELECT 'serial', device_serial FROM pki_certs WHERE device_serial = ANY(:serials)"
    " UNION ALL SELECT 'key', key_id FROM pki_certs"
    " WHERE key_id = ANY(:key_ids) AND profile = 'device-idevid'",
)
BUNDLE_FORMAT = "fabtrust.ca-bundle/v1"
CEREMONY_TYPE = "application/vnd.fabtrust.root-ceremony+json"
ROOT_ID = "root"
DEFAULT_BASE_URL = "http://pki.fabtrust.local"
MAX_BATCH = 10_000
CHAIN_CACHE_SECONDS = 5.0

# RFC 5280 5.3.1 reasonCode values fabtrust uses (certificateHold and removeFromCRL are not offered:
# revocation here is final).
REASONS: dict[str, x509.ReasonFlags] = {
    "unspecified": x509.ReasonFlags.unspecified,
    "keyCompromise": x509.ReasonFlags.key_compromise,
    "cACompromise": x509.ReasonFlags.ca_compromise,
    "affiliationChanged": x509.ReasonFlags.affiliation_changed,
    "superseded": x509.ReasonFlags.superseded,
    "cessationOfOperation": x509.ReasonFlags.cessation_of_operation,
    "privilegeWithdrawn": x509.ReasonFlags.privilege_withdrawn,
}


def serial_hex(serial: int) -> str:
    return format(serial, "x")


def fingerprint(cert: x509.Certificate) -> str:
    """Hex SHA-256 of the certificate's public key (SPKI): what custodians and auditors compare."""
    return key_id(spki_der(cert.public_key()))  # type: ignore[arg-type]


@dataclass(frozen=True)
class CaRecord:
    ca_id: str
    kind: str
    parent_id: str | None
    profile: str
    key_uri: str | None
    certificate: x509.Certificate
    base_url: str
    device_domain: str | None
    order_id: str | None
    status: str
    crl_number: int

    @classmethod
    def from_row(cls, row: RowMapping) -> CaRecord:
        return cls(
            row["ca_id"],
            row["kind"],
            row["parent_id"],
            row["profile"],
            row["key_uri"],
            x509.load_der_x509_certificate(row["cert_der"]),
            row["base_url"],
            row["device_domain"],
            row["order_id"],
            row["status"],
            int(row["crl_number"]),
        )

    def urls(self) -> Urls:
        return Urls(crl=f"{self.base_url}/pki/crl/{self.ca_id}.crl", ocsp=f"{self.base_url}/pki/ocsp")


@dataclass(frozen=True)
class Ceremony:
    """What the root ceremony hands back for the faces to write out; the service writes no files."""

    ceremony_id: str
    root: CaRecord
    backup: bytes  # fabtrust.root-backup/v1
    shares: list[tuple[str, bytes]]  # (custodian, fabtrust.custodian-share/v1)
    transcript: bytes  # DSSE envelope signed by the root key


@dataclass(frozen=True)
class _Signer:
    """An issuer as one batch uses it: its chain (checked once), key and leaf template."""

    chain: list[CaRecord]
    views: list[IssuerView]
    info: KeyInfo
    key: Any
    template: LeafTemplate
    validity: tuple[datetime, datetime]  # of a certificate whose request names no notAfter


_ChainCache = dict[tuple[str, str], _Signer]


@dataclass(frozen=True)
class IssueRequest:
    """One certificate wanted: which CA, which profile, the CSR (PEM/DER bytes, verified here, or
    a :class:`VerifiedCsr` its holder has verified already), and the approved names."""

    ca_id: str
    profile: str
    csr: bytes | VerifiedCsr
    names: NameRequest
    device_serial: str | None = None
    order_id: str | None = None
    not_after: datetime | None = None


@dataclass(frozen=True)
class _Prepared:
    subject: str
    index: int
    request: IssueRequest
    profile: str
    ca_id: str
    chain: list[str]
    issuer_key_id: str
    certificate: x509.Certificate
    subject_key_id: str
    # what the certificate says, as issuance chose it (not read back from the certificate)
    serial: int
    not_before: datetime
    not_after: datetime
    der: bytes

    def row(self, conn: Connection, now: datetime) -> dict[str, Any]:
        """The certificate's ``pki_certs`` row, as ``_INSERT_CERTS`` binds it."""
        return {
            "ca_id": self.ca_id,
            "serial": serial_hex(self.serial),
            "profile": self.profile,
            "subject": self.subject,
            "key_id": self.subject_key_id,
            "device_serial": self.request.device_serial,
            "order_id": self.request.order_id,
            "not_before": dbapi.db_time(conn, self.not_before),
            "not_after": dbapi.db_time(conn, self.not_after),
            "cert_der": self.der,
            "created_at": dbapi.db_time(conn, now),
        }


@dataclass(frozen=True)
class Issued:
    ca_id: str
    certificate: x509.Certificate
    # SHA-256 key ids of the issuing and the certified key, where issuance knew them
    issuer_key_id: str | None = None
    subject_key_id: str | None = None

    @property
    def serial(self) -> str:
        return serial_hex(self.certificate.serial_number)


class PkiService:
    def __init__(
        self,
        store: Store,
        keystore: KeyStore,
        audit: AuditLog,
        *,
        actor: str,
        clock: Clock = system_clock,
        profiles: Profiles | None = None,
    ) -> None:
        self._store = store
        self._keystore = keystore
        self._audit = audit
        self._actor = actor
        self._clock = clock
        self.profiles = profiles or Profiles.builtin()
        self._ca_cache: dict[str, CaRecord] = {}
        self._chain_cache: dict[str, tuple[float, list[CaRecord]]] = {}
        self._templates: dict[tuple[str, str], tuple[x509.Certificate, Urls, LeafTemplate]] = {}

    # -- records -----------------------------------------------------------------------------------

    def _record(self, action: str, subject: str, *, outcome: Outcome = Outcome.OK, **details: Any) -> None:
        self._audit.record(AUDIT_PKI, self._actor, action, subject, outcome, details)

    def _refusal(self, action: str, subject: str, error: FabtrustError, **details: Any) -> None:
        self._record(
            action, subject, outcome=Outcome.REFUSED, reason=error.code, message=error.message, **details
        )

    def ca(self, ca_id: str) -> CaRecord:
        with self._store.read() as conn:
            row = conn.execute(select(pki_cas).where(pki_cas.c.ca_id == ca_id)).mappings().first()
        if row is None:
            raise NotFound(f"no CA {ca_id!r}")
        return CaRecord.from_row(row)

    def cas(self) -> list[CaRecord]:
        with self._store.read() as conn:
            rows = conn.execute(select(pki_cas).order_by(pki_cas.c.created_at)).mappings().all()
        return [CaRecord.from_row(r) for r in rows]

    def chain(self, ca_id: str) -> list[CaRecord]:
        """The CA and its ancestors, nearest first, ending at the root."""
        chain, seen = [], set()
        current: str | None = ca_id
        while current is not None:
            if current in seen:
                raise Conflict("CA hierarchy has a cycle (store damaged)")
            seen.add(current)
            record = self.ca(current)
            chain.append(record)
            current = record.parent_id
        return chain

    def _issuer_chain(self, ca_id: str) -> list[CaRecord]:
        """``chain(ca_id)``, cached for a few seconds for issuance. A CA's certificate never changes;
        its status may, and every issuance re-checks it inside its write transaction (``_admit``)."""
        seen = time.monotonic()
        hit = self._chain_cache.get(ca_id)
        if hit is not None and seen - hit[0] < CHAIN_CACHE_SECONDS:
            return hit[1]
        chain = self.chain(ca_id)
        self._chain_cache[ca_id] = (seen, chain)
        return chain

    def _views(self, chain: Sequence[CaRecord]) -> list[IssuerView]:
        return [IssuerView(r.certificate, r.status == "revoked", r.ca_id) for r in chain]

    def _ca_key(self, record: CaRecord) -> tuple[KeyInfo, Any]:
        if record.key_uri is None:
            raise PolicyViolation(f"this data home does not hold the key of CA {record.ca_id}")
        info = self._keystore.get(record.key_uri)
        return info, ca_private_key(self._keystore, info)

    def _template(self, issuer: CaRecord, profile: Profile, key_type: KeyType) -> LeafTemplate:
        """The issuer's leaf template for this profile, compiled once while the issuer is unchanged."""
        urls = issuer.urls()
        cached = self._templates.get((issuer.ca_id, profile.name))
        if cached is not None:
            certificate, cached_urls, template = cached
            if certificate == issuer.certificate and cached_urls == urls and template.key_type is key_type:
                return template
        template = LeafTemplate.compile(profile, issuer.certificate, key_type, urls)
        self._templates[(issuer.ca_id, profile.name)] = (issuer.certificate, urls, template)
        return template

    def _insert_ca(
        self,
        conn: Connection,
        ca_id: str,
        kind: str,
        parent: str | None,
        profile: Profile,
        key_uri: str | None,
        cert: x509.Certificate,
        base_url: str,
        *,
        device_domain: str | None = None,
        order_id: str | None = None,
    ) -> None:
        self._chain_cache.clear()
        if conn.execute(select(pki_cas.c.ca_id).where(pki_cas.c.ca_id == ca_id)).first():
            raise Conflict(f"CA {ca_id!r} exists already")
        conn.execute(
            insert(pki_cas).values(
                ca_id=ca_id,
                kind=kind,
                parent_id=parent,
                profile=profile.name,
                key_uri=key_uri,
                cert_der=cert.public_bytes(serialization.Encoding.DER),
                subject=cert.subject.rfc4514_string(),
                serial=serial_hex(cert.serial_number),
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                base_url=base_url,
                device_domain=device_domain,
                order_id=order_id,
                status="active",
                crl_number=0,
                created_at=self._clock(),
            )
        )

    # -- the root ceremony -------------------------------------------------------------------------

    def init_root(
        self,
        *,
        attributes: dict[str, str],
        custodians: Sequence[tuple[str, str]],
        threshold: int,
        key_type: KeyType = KeyType.P384,
        validity_days: int | None = None,
        base_url: str = DEFAULT_BASE_URL,
        scrypt_n: int = 2**15,
    ) -> Ceremony:
        """Create the root key and certificate, its encrypted backup and the custodians' shares.

        A refused ceremony is logged and leaves nothing behind (no key in the key store)."""
        try:
            return self._init_root(
                attributes, custodians, threshold, key_type, validity_days, base_url, scrypt_n
            )
        except FabtrustError as exc:
            self._refusal("ca.init-root", ROOT_ID, exc, custodians=len(custodians), threshold=threshold)
            raise

    def _init_root(
        self,
        attributes: dict[str, str],
        custodians: Sequence[tuple[str, str]],
        threshold: int,
        key_type: KeyType,
        validity_days: int | None,
        base_url: str,
        scrypt_n: int,
    ) -> Ceremony:
        profile = self.profiles.get("root-ca")
        with self._store.read() as conn:
            if conn.execute(select(pki_cas.c.ca_id).where(pki_cas.c.ca_id == ROOT_ID)).first():
                raise Conflict("a root CA exists already in this data home")
        if key_type not in profile.key_types:
            raise PolicyViolation(
                f"the root key must be one of {', '.join(k.value for k in profile.key_types)}"
            )
        _check_base_url(base_url)
        subject_name(profile, attributes)  # checked before any key exists: a refusal changes nothing
        now = self._clock()
        not_before, not_after = validity(profile, None, now, _days_after(now, validity_days))
        ceremony_id = secrets.token_hex(8)
        private = generate_private_key(key_type)
        root_fp = key_id(spki_der(private.public_key()))
        pkcs8 = private.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        backup, backup_key = custody.new_backup(pkcs8, key_type.value, root_fp, ceremony_id, rfc3339(now))
        shares = custody.split_backup_key(
            backup_key, custodians, threshold, ceremony_id, root_fp, scrypt_n=scrypt_n
        )
        label = f"root-ca-{ceremony_id}"
        info = importer(self._keystore).import_private_key(label, key_type, KeyUsage.SIGN, pkcs8)
        del pkcs8, private, backup_key  # the key store holds the only usable copy from here
        builder = build_certificate(
            profile,
            ca_private_key(self._keystore, info).public_key(),
            NameRequest(attributes),
            issuer=None,
            serial=x509.random_serial_number(),
            not_before=not_before,
            not_after=not_after,
            urls=Urls(),
        )
        cert = builder.sign(ca_private_key(self._keystore, info), signature_hash(info))
        transcript_doc = {
            "format": "fabtrust.root-ceremony/v1",
            "ceremony": ceremony_id,
            "time": rfc3339(now),
            "operator": self._actor,
            "root": {
                "subject": cert.subject.rfc4514_string(),
                "fingerprint": root_fp,
                "key_type": key_type.value,
                "key_uri": info.uri,
                "not_after": rfc3339(cert.not_valid_after_utc),
                "serial": serial_hex(cert.serial_number),
            },
            "threshold": threshold,
            "custodians": [
                {"custodian": c, "index": i, "share_fingerprint": fp}
                for c, i, fp in (custody.share_fingerprints(doc) for _, doc in shares)
            ],
            "backup_sha256": hashlib.sha256(backup).hexdigest(),
        }
        payload = json.dumps(transcript_doc, sort_keys=True, indent=2).encode()
        envelope = dsse.sign(
            CEREMONY_TYPE, payload, [(info.key_id, lambda m: self._keystore.sign(info.uri, m))]
        )
        with self._store.write() as conn:
            self._insert_ca(conn, ROOT_ID, "root-ca", None, profile, info.uri, cert, base_url)
        self._record(
            "ca.init-root",
            ROOT_ID,
            ceremony=ceremony_id,
            fingerprint=root_fp,
            key_id=info.key_id,
            threshold=threshold,
            custodians=len(custodians),
            transcript_sha256=hashlib.sha256(payload).hexdigest(),
        )
        return Ceremony(ceremony_id, self.ca(ROOT_ID), backup, shares, envelope.to_json())

    def restore_root(
        self,
        backup: bytes,
        shares: Sequence[custody.CustodianShare],
        *,
        root_certificate: x509.Certificate | None = None,
        base_url: str = DEFAULT_BASE_URL,
        approval: ApprovalTicket,
    ) -> CaRecord:
        """Rebuild the root key from its backup and enough custodian shares, into this key store.
        Spends ``approval``, a ``root.restore`` request (k security officers) for this root's key
        fingerprint (:func:`root_restore_terms`)."""
        self._chain_cache.clear()
        subject = f"ca:{ROOT_ID}"
        info: KeyInfo | None = None
        try:
            pkcs8 = custody.recover_private_key(backup, shares)
            private = serialization.load_der_private_key(pkcs8, password=None)
            root_fp = key_id(spki_der(private.public_key()))  # type: ignore[arg-type]
            with self._store.read() as conn:
                row = conn.execute(select(pki_cas).where(pki_cas.c.ca_id == ROOT_ID)).mappings().first()
            existing = CaRecord.from_row(row) if row is not None else None
            cert = existing.certificate if existing is not None else root_certificate
            if cert is None:
                raise InvalidInput("this data home has no root CA: give the root certificate to restore it")
            if fingerprint(cert) != root_fp:
                raise PolicyViolation("the restored key does not belong to the root certificate")
            terms = root_restore_terms(cert)
            # refused before the key enters the key store; spent below with the store's change
            approval.access.check_ticket(approval, ApprovalAction.ROOT_RESTORE, subject, terms)
            key_type = KeyType(custody_key_type(backup))
            label = f"root-ca-restored-{secrets.token_hex(4)}"
            info = importer(self._keystore).import_private_key(label, key_type, KeyUsage.SIGN, pkcs8)
            del pkcs8, private
            with self._store.write() as conn:
                request = approval.spend(conn, ApprovalAction.ROOT_RESTORE, subject, terms)
                if existing is None:
                    self._insert_ca(
                        conn, ROOT_ID, "root-ca", None, self.profiles.get("root-ca"), info.uri, cert, base_url
                    )
                else:
                    conn.execute(update(pki_cas).where(pki_cas.c.ca_id == ROOT_ID).values(key_uri=info.uri))
        except FabtrustError as exc:
            if info is not None:  # imported, then the approval or the store refused: take it out again
                self._keystore.destroy(info.uri)
            self._refusal(
                "ca.restore-root",
                ROOT_ID,
                exc,
                shares=len(shares),
                request_id=ticket_request_id(approval),
            )
            raise
        self._record(
            "ca.restore-root",
            ROOT_ID,
            fingerprint=root_fp,
            key_id=info.key_id,
            custodians=sorted(s.custodian for s in shares),
            request_id=request.request_id,
            approvers=[a.principal_id for a in request.approvals],
        )
        return self.ca(ROOT_ID)

    # -- product and issuing CAs -------------------------------------------------------------------

    def create_product_ca(
        self,
        name: str,
        *,
        attributes: dict[str, str],
        device_domain: str,
        key_type: KeyType = KeyType.P384,
        validity_days: int | None = None,
    ) -> CaRecord:
        """A CA for one product line, key in this key store, signed by the root.

        Every refusal is logged and comes before the key is generated (a refusal changes nothing)."""
        ca_id = "product-ca"
        profile = self.profiles.get("product-ca")
        try:
            ca_id = f"product-{check_name(name)}"
            if key_type not in profile.key_types:
                raise PolicyViolation(f"profile product-ca does not allow {key_type.value} keys")
            root = self.ca(ROOT_ID)
            now = self._clock()
            check_chain(self._views([root]), profile, now)
            domain = check_dns_name(device_domain)
            subject_name(profile, attributes)
            validity(profile, root.certificate, now, _days_after(now, validity_days))
            self._ca_key(root)  # the root key must be here to sign
            with self._store.read() as conn:
                if conn.execute(select(pki_cas.c.ca_id).where(pki_cas.c.ca_id == ca_id)).first():
                    raise Conflict(f"CA {ca_id!r} exists already")
            info = self._keystore.generate(f"{ca_id}-{secrets.token_hex(4)}", key_type, KeyUsage.SIGN)
            cert = self._sign_ca(
                root,
                profile,
                ca_private_key(self._keystore, info).public_key(),
                NameRequest(attributes),
                validity_days,
            )
            with self._store.write() as conn:
                self._insert_ca(
                    conn,
                    ca_id,
                    "product-ca",
                    ROOT_ID,
                    profile,
                    info.uri,
                    cert,
                    root.base_url,
                    device_domain=domain,
                )
        except FabtrustError as exc:
            self._refusal("ca.create-product", ca_id, exc)
            raise
        self._record(
            "ca.create-product",
            ca_id,
            key_id=info.key_id,
            device_domain=domain,
            serial=serial_hex(cert.serial_number),
            issuer_key_id=self._key_id_of(root),
        )
        return self.ca(ca_id)

    def sign_issuing_ca(
        self,
        product: str,
        csr_data: bytes,
        *,
        station: str,
        order_id: str,
        not_after: datetime,
        attributes: dict[str, str] | None = None,
    ) -> CaRecord:
        """Certify a station's order-bound issuing key (its CSR): path length 0, valid until the end of
        the order's window, constrained to the product's device URIs. Every refusal is logged."""
        ca_id = "issuing-ca"
        profile = self.profiles.get("issuing-ca")
        try:
            parent = self.ca(f"product-{check_name(product)}")
            ca_id = f"issuing-{check_name(station)}-{check_name(order_id)}"
            csr = load_csr(csr_data)
            csr_key_type(csr, profile)
            check_chain(self._views(self.chain(parent.ca_id)), profile, self._clock())
            org = parent.certificate.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
            attrs = attributes or {
                "commonName": f"{station} {order_id}"[:64],
                "organizationName": str(org[0].value) if org else "fabtrust",
            }
            request = NameRequest(attrs, permitted_dns=(parent.device_domain or "",))
            if not parent.device_domain:
                raise PolicyViolation(
                    f"product CA {parent.ca_id} has no device domain to constrain issuing CAs to"
                )
            cert = self._sign_ca(parent, profile, csr, request, None, not_after=not_after)
            with self._store.write() as conn:
                self._insert_ca(
                    conn,
                    ca_id,
                    "issuing-ca",
                    parent.ca_id,
                    profile,
                    None,
                    cert,
                    parent.base_url,
                    order_id=order_id,
                    device_domain=parent.device_domain,
                )
        except FabtrustError as exc:
            self._refusal("ca.sign-issuing", ca_id, exc, order=order_id)
            raise
        self._record(
            "ca.sign-issuing",
            ca_id,
            order=order_id,
            station=station,
            serial=serial_hex(cert.serial_number),
            key_id=key_id(spki_der(cert.public_key())),  # type: ignore[arg-type]
            issuer_key_id=self._key_id_of(parent),
            not_after=rfc3339(cert.not_valid_after_utc),
        )
        return self.ca(ca_id)

    def export_bundle(self, ca_id: str) -> bytes:
        """A ``fabtrust.ca-bundle/v1`` document: the CA and its issuers up to the root, with the ids,
        kinds and URLs another data home (a station) needs to adopt it. Public data only."""
        entries = [
            {
                "ca_id": r.ca_id,
                "kind": r.kind,
                "parent_id": r.parent_id,
                "profile": r.profile,
                "certificate": r.certificate.public_bytes(serialization.Encoding.PEM).decode(),
                "base_url": r.base_url,
                "device_domain": r.device_domain,
                "order_id": r.order_id,
            }
            for r in self.chain(ca_id)
        ]
        return json.dumps({"format": BUNDLE_FORMAT, "cas": entries}, indent=2).encode() + b"\n"

    def adopt_bundle(self, bundle: bytes, *, key_uri: str | None) -> CaRecord:
        """Record the CAs of a bundle (nearest first); at a station, with the key of the first one.

        Every link must verify up to a self-signed root; a root already known here must be the same
        certificate; the key, if named, must be the first CA's public key. Refusals are logged.
        """
        self._chain_cache.clear()
        try:
            entries = self._adopt(bundle, key_uri)
        except FabtrustError as exc:
            digest = hashlib.sha256(bundle).hexdigest() if isinstance(bundle, bytes) else None
            self._refusal("ca.adopt", "ca-bundle", exc, bundle_sha256=digest, with_key=key_uri is not None)
            raise
        first = entries[0][0]["ca_id"]
        self._record("ca.adopt", first, chain=[e[0]["ca_id"] for e in entries], with_key=key_uri is not None)
        return self.ca(first)

    def _adopt(self, bundle: bytes, key_uri: str | None) -> list[tuple[dict[str, Any], x509.Certificate]]:
        entries = _parse_bundle(bundle)
        if entries[-1][0]["kind"] != "root-ca" or entries[-1][0]["ca_id"] != ROOT_ID:
            # the root is known by its id: a bundle naming its root otherwise would slip past the
            # same-root check below and bring a second root into this home
            raise InvalidInput(f"CA bundle must end at the root CA {ROOT_ID!r}")
        certs = [e[1] for e in entries]
        for child, parent in itertools.pairwise(certs):
            try:
                child.verify_directly_issued_by(parent)
            except (ValueError, TypeError, InvalidSignature) as exc:
                raise PolicyViolation(
                    "CA bundle does not link (a certificate is not issued by the next)"
                ) from exc
        try:
            certs[-1].verify_directly_issued_by(certs[-1])
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise PolicyViolation("CA bundle does not end at a self-signed root") from exc
        if key_uri is not None:
            info = self._keystore.get(key_uri)
            if info.public_key_der != spki_der(certs[0].public_key()):  # type: ignore[arg-type]
                raise PolicyViolation("the key does not belong to the CA certificate")
        with self._store.write() as conn:
            for position, (entry, cert) in reversed(list(enumerate(entries))):
                row = (
                    conn.execute(select(pki_cas).where(pki_cas.c.ca_id == entry["ca_id"])).mappings().first()
                )
                own_key = key_uri if position == 0 else None
                if row is None:
                    self._insert_ca(
                        conn,
                        entry["ca_id"],
                        entry["kind"],
                        entry["parent_id"],
                        self.profiles.get(entry["profile"]),
                        own_key,
                        cert,
                        entry["base_url"],
                        device_domain=entry["device_domain"],
                        order_id=entry["order_id"],
                    )
                elif row["cert_der"] != cert.public_bytes(serialization.Encoding.DER):
                    raise Conflict(f"CA {entry['ca_id']!r} exists here with another certificate")
                elif own_key is not None:
                    conn.execute(
                        update(pki_cas).where(pki_cas.c.ca_id == entry["ca_id"]).values(key_uri=own_key)
                    )
        return entries

    def _sign_ca(
        self,
        issuer: CaRecord,
        profile: Profile,
        subject_key: Any,
        request: NameRequest,
        validity_days: int | None,
        *,
        not_after: datetime | None = None,
    ) -> x509.Certificate:
        now = self._clock()
        info, key = self._ca_key(issuer)
        start, end = validity(profile, issuer.certificate, now, not_after or _days_after(now, validity_days))
        builder = build_certificate(
            profile,
            subject_key,
            request,
            issuer=issuer.certificate,
            serial=x509.random_serial_number(),
            not_before=start,
            not_after=end,
            urls=issuer.urls(),
        )
        return builder.sign(key, signature_hash(info))

    def _key_id_of(self, record: CaRecord) -> str:
        return key_id(spki_der(record.certificate.public_key()))  # type: ignore[arg-type]

    # -- issuance ----------------------------------------------------------------------------------

    def issue(
        self,
        ca_id: str,
        profile_name: str,
        csr_data: bytes,
        request: NameRequest,
        *,
        device_serial: str | None = None,
        order_id: str | None = None,
        not_after: datetime | None = None,
    ) -> Issued:
        """Issue one end-entity certificate from a CSR, as the profile and the chain allow."""
        result = self.issue_batch(
            [IssueRequest(ca_id, profile_name, csr_data, request, device_serial, order_id, not_after)]
        )[0]
        if isinstance(result, FabtrustError):
            raise result
        return result

    def issue_batch(
        self,
        requests: Sequence[IssueRequest],
        *,
        conn: Connection | None = None,
        entries: list[AuditEntry] | None = None,
        audited_by_caller: bool = False,
    ) -> list[Issued | FabtrustError]:
        """Issue many certificates with one durable commit (group commit).

        Each request is checked and signed on its own; a refused one gets its error in the result
        list and changes nothing. The accepted certificates, their audit entries and the refusals'
        audit entries commit in one transaction: a certificate is never stored without its entry.
        Duplicate device serials and device keys are refused against the store and within the batch.

        ``conn``: join the caller's write transaction instead (a station stores the certificates,
        its quota and its production records atomically); nothing is retried then, and a
        concurrent duplicate surfaces as the store's IntegrityError for the caller to handle.
        ``entries`` (with ``conn``): the audit entries are added to this list for the caller to
        append with its own, in the same transaction (one log append, one checkpoint).
        ``audited_by_caller`` (with ``conn``): no ``cert.issue`` entries at all; the caller's own
        entry for each request, in the same transaction, names the certificate (a station's
        ``device.provision`` entry: issuer, serial, subject key), or the refusal.
        """
        if not requests:
            return []
        if len(requests) > MAX_BATCH:
            raise InvalidInput(f"at most {MAX_BATCH} certificates per batch")
        now = self._clock()
        if conn is not None:
            return self._issue_in(conn, requests, now, entries, audited_by_caller=audited_by_caller)
        if audited_by_caller:
            raise InvalidInput("only a caller's own transaction can carry its audit entries")
        chains: _ChainCache = {}
        results: list[Issued | FabtrustError | None] = [None] * len(requests)
        prepared: list[_Prepared] = []
        for index, req in enumerate(requests):
            try:
                prepared.append(self._prepare(index, req, now, chains))
            except FabtrustError as exc:
                results[index] = exc
        for attempt in range(3):
            try:
                with self._store.write() as conn:
                    accepted = self._admit(conn, prepared, results)
                    if accepted:
                        dbapi.execute_many(conn, _INSERT_CERTS, [p.row(conn, now) for p in accepted])
                    entries = [self._issue_entry(requests[i], r) for i, r in enumerate(results)]
                    self._audit.append(entries, conn=conn)
                break
            except IntegrityError:
                # another writer stored the same device serial between our check and insert
                # (PostgreSQL); the next attempt sees it and refuses that request
                for p in prepared:
                    if isinstance(results[p.index], Issued):
                        results[p.index] = None
                if attempt == 2:
                    raise Conflict("certificates could not be stored (concurrent duplicates)") from None
        return [r if r is not None else Conflict("not issued") for r in results]

    def _issue_in(
        self,
        conn: Connection,
        requests: Sequence[IssueRequest],
        now: datetime,
        out: list[AuditEntry] | None = None,
        *,
        audited_by_caller: bool = False,
    ) -> list[Issued | FabtrustError]:
        chains: _ChainCache = {}
        results: list[Issued | FabtrustError | None] = [None] * len(requests)
        prepared: list[_Prepared] = []
        for index, req in enumerate(requests):
            try:
                prepared.append(self._prepare(index, req, now, chains))
            except FabtrustError as exc:
                results[index] = exc
        accepted = self._admit(conn, prepared, results)
        if accepted:
            dbapi.execute_many(conn, _INSERT_CERTS, [p.row(conn, now) for p in accepted])
        if audited_by_caller:
            return [r if r is not None else Conflict("not issued") for r in results]
        entries = [self._issue_entry(requests[i], r) for i, r in enumerate(results)]
        if out is not None:
            out.extend(entries)
        else:
            self._audit.append(entries, conn=conn)
        return [r if r is not None else Conflict("not issued") for r in results]

    def _prepare(self, index: int, req: IssueRequest, now: datetime, chains: _ChainCache) -> _Prepared:
        profile = self.profiles.get(req.profile)
        if profile.is_ca:
            raise PolicyViolation("CA certificates are made by the CA commands, not issued from here")
        if isinstance(req.csr, VerifiedCsr):
            csr, public, spki = req.csr.csr, req.csr.key, req.csr.spki
        else:
            (csr, public), spki = load_csr_and_key(req.csr), None
        csr_key_type(csr, profile, public)
        signer = chains.get((req.ca_id, profile.name))
        if signer is None:
            # once per CA and profile in a batch: the chain and the time are the same for all
            chain = self._issuer_chain(req.ca_id)
            views = self._views(chain)
            check_chain(views, profile, now)
            info, key = self._ca_key(chain[0])
            template = self._template(chain[0], profile, info.key_type)
            default = validity(profile, chain[0].certificate, now, None)
            signer = chains[(req.ca_id, profile.name)] = _Signer(chain, views, info, key, template, default)
        chain, views = signer.chain, signer.views
        issuer = chain[0]
        if profile.issuers and issuer.kind not in profile.issuers:
            # device identities come from an order-bound issuing CA only (quota, reconciliation)
            allowed = ", ".join(profile.issuers)
            raise PolicyViolation(f"profile {profile.name} is issued by {allowed} only, not by {issuer.kind}")
        if issuer.order_id is not None and req.order_id is not None and req.order_id != issuer.order_id:
            # an order-bound issuing CA certifies devices of its own order only (quota, reconciliation)
            raise PolicyViolation(f"CA {issuer.ca_id} issues for order {issuer.order_id}, not {req.order_id}")
        names = req.names
        if profile.name == "device-idevid":
            if not req.device_serial:
                raise InvalidInput("a device certificate needs the device serial")
            dns, uris = names.dns, names.uris
            if issuer.device_domain:
                # the device's names under its product's domain: in DNS form (what the issuing CA's
                # name constraints bound, checkable by any verifier) and, unless given, as a URI
                dns = (*dns, device_dns_name(req.device_serial, issuer.device_domain))
                uris = uris or (f"https://{issuer.device_domain}/devices/{req.device_serial}",)
            names = NameRequest({**names.attributes, "serialNumber": req.device_serial}, uris, dns, names.ips)
        check_name_constraints(views, names)
        if req.not_after is None:
            start, end = signer.validity
        else:
            start, end = validity(profile, issuer.certificate, now, req.not_after)
        subject = check_subject(profile, names.attributes)
        template = signer.template
        spki = spki or spki_der(public)  # type: ignore[arg-type]
        serial = x509.random_serial_number()
        tbs = template.tbs(
            serial=serial,
            not_before=start,
            not_after=end,
            subject=subject.der(),
            spki=spki,
            sans=san_entries(profile, names),
        )
        signed = template.signed(tbs, signer.key)
        return _Prepared(
            subject.rfc4514(),
            index,
            req,
            profile.name,
            issuer.ca_id,
            [c.ca_id for c in chain],
            signer.info.key_id,
            x509.load_der_x509_certificate(signed),
            key_id(spki),
            serial,
            start,
            end,
            signed,
        )

    def _admit(
        self, conn: Connection, prepared: Sequence[_Prepared], results: list[Issued | FabtrustError | None]
    ) -> list[_Prepared]:
        """Inside the write transaction: refuse what the store forbids now (revoked CAs, duplicates)."""
        ca_ids = {ca for p in prepared for ca in p.chain}
        serials = [p.request.device_serial for p in prepared if p.request.device_serial]
        key_ids = [p.subject_key_id for p in prepared if p.profile == "device-idevid"]
        found: dict[str, set[str]] = {"ca": set(), "serial": set(), "key": set()}
        lists = {"ids": sorted(ca_ids), "serials": serials, "key_ids": key_ids}
        for kind, value in dbapi.execute(
            conn, _ADMIT_CONFLICTS, {k: dbapi.db_list(conn, v) for k, v in lists.items()}
        ):
            found[kind].add(value)
        revoked, taken_serials, taken_keys = found["ca"], found["serial"], found["key"]
        accepted = []
        for p in prepared:
            serial = p.request.device_serial
            error: FabtrustError | None = None
            if revoked.intersection(p.chain):
                error = PolicyViolation(f"issuer {sorted(revoked.intersection(p.chain))[0]} is revoked")
            elif serial and serial in taken_serials:
                error = Conflict(f"device serial {serial} has a certificate already")
            elif p.profile == "device-idevid" and p.subject_key_id in taken_keys:
                error = Conflict("this device key is certified already (a cloned or replayed key)")
            if error is not None:
                results[p.index] = error
                continue
            if serial:
                taken_serials.add(serial)
            if p.profile == "device-idevid":
                taken_keys.add(p.subject_key_id)
            results[p.index] = Issued(p.ca_id, p.certificate, p.issuer_key_id, p.subject_key_id)
            accepted.append(p)
        return accepted

    def _issue_entry(self, req: IssueRequest, result: Issued | FabtrustError | None) -> AuditEntry:
        """The audit entry of one issuance or refusal."""
        subject = f"device:{req.device_serial}" if req.device_serial else f"ca:{req.ca_id}"
        if isinstance(result, Issued):
            issuer_key_id = result.issuer_key_id or self._key_id_of(self.ca_cached(result.ca_id))
            subject_key_id = result.subject_key_id or key_id(spki_der(result.certificate.public_key()))  # type: ignore[arg-type]
            details: dict[str, Any] = {
                "ca": result.ca_id,
                "profile": req.profile,
                "serial": result.serial,
                "key_id": issuer_key_id,
                "purpose": "certificate issuance",
                "subject_key_id": subject_key_id,
                "order": req.order_id,
            }
            return self._audit.entry(AUDIT_PKI, self._actor, "cert.issue", subject, Outcome.OK, details)
        error = result if result is not None else Conflict("not issued")
        details = {"ca": req.ca_id, "profile": req.profile, "reason": error.code, "message": error.message}
        return self._audit.entry(AUDIT_PKI, self._actor, "cert.issue", subject, Outcome.REFUSED, details)

    def reissue(
        self,
        ca_id: str,
        superseded_serial: str,
        profile_name: str,
        csr_data: bytes,
        request: NameRequest,
        *,
        device_serial: str | None = None,
        order_id: str | None = None,
    ) -> Issued:
        """Re-enrollment (RFC 7030 4.2.2): a new certificate that supersedes a good one of the same CA.

        One transaction revokes the old certificate (reason ``superseded``), moves the device serial
        from it to the new one (``pki_certs.device_serial`` is unique; the old row keeps its subject,
        which names the serial) and stores the new one with both audit entries. The new key may be
        the old one (renewal) or a key never certified (rekey); any other certified key is refused
        as a clone. The caller has authenticated the holder of the old certificate.
        """
        req = IssueRequest(ca_id, profile_name, csr_data, request, device_serial, order_id)
        old_serial = superseded_serial.lower().lstrip("0")
        subject = f"device:{device_serial}" if device_serial else f"ca:{ca_id}"
        now = self._clock()
        try:
            prepared = self._prepare(0, req, now, {})
            with self._store.write() as conn:
                old = (
                    conn.execute(
                        select(pki_certs).where(
                            pki_certs.c.ca_id == prepared.ca_id, pki_certs.c.serial == old_serial
                        )
                    )
                    .mappings()
                    .first()
                )
                if (
                    old is None
                    or old["profile"] != prepared.profile
                    or old["device_serial"] != device_serial
                    or old["order_id"] != order_id
                ):
                    raise PolicyViolation("the certificate to supersede is not one of this device and CA")
                if conn.execute(
                    select(pki_cas.c.ca_id).where(
                        pki_cas.c.ca_id.in_(prepared.chain), pki_cas.c.status != "active"
                    )
                ).first():
                    raise PolicyViolation("an issuer in the chain is revoked")
                if prepared.profile == "device-idevid" and prepared.subject_key_id != old["key_id"]:
                    clone = conn.execute(
                        select(pki_certs.c.serial).where(
                            pki_certs.c.key_id == prepared.subject_key_id,
                            pki_certs.c.profile == "device-idevid",
                        )
                    ).first()
                    if clone is not None:
                        raise Conflict("this device key is certified already (a cloned or replayed key)")
                superseded = conn.execute(
                    update(pki_certs)
                    .where(
                        pki_certs.c.ca_id == prepared.ca_id,
                        pki_certs.c.serial == old_serial,
                        pki_certs.c.status == "good",
                    )
                    .values(
                        status="revoked", revoked_at=now, revocation_reason="superseded", device_serial=None
                    )
                ).rowcount
                if superseded != 1:
                    raise Conflict("the certificate to supersede is revoked or superseded already")
                try:
                    dbapi.execute(conn, _INSERT_CERTS, prepared.row(conn, now))
                except IntegrityError:
                    raise Conflict("a certificate with this device serial or serial number exists") from None
                issued = Issued(
                    prepared.ca_id, prepared.certificate, prepared.issuer_key_id, prepared.subject_key_id
                )
                self._audit.append(
                    [
                        self._audit.entry(
                            AUDIT_PKI,
                            self._actor,
                            "cert.revoke",
                            f"cert:{prepared.ca_id}:{old_serial}",
                            Outcome.OK,
                            {"reason": "superseded", "count": 1, "superseded_by": issued.serial},
                        ),
                        self._issue_entry(req, issued),
                    ],
                    conn=conn,
                )
        except FabtrustError as exc:
            self._refusal("cert.reissue", subject, exc, ca=ca_id, supersedes=old_serial)
            raise
        return issued

    def ca_cached(self, ca_id: str) -> CaRecord:
        """A CA record for read-only facts that never change (its certificate)."""
        record = self._ca_cache.get(ca_id)
        if record is None:
            record = self._ca_cache[ca_id] = self.ca(ca_id)
        return record

    def certificate(self, ca_id: str, serial: str) -> tuple[x509.Certificate, RowMapping]:
        with self._store.read() as conn:
            row = (
                conn.execute(
                    select(pki_certs).where(
                        pki_certs.c.ca_id == ca_id, pki_certs.c.serial == serial.lower().lstrip("0")
                    )
                )
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"no certificate {serial} issued by {ca_id}")
        return x509.load_der_x509_certificate(row["cert_der"]), row

    def certificates(self, ca_id: str | None = None) -> Iterator[RowMapping]:
        with self._store.read() as conn:
            query = select(pki_certs).order_by(pki_certs.c.created_at)
            if ca_id is not None:
                query = query.where(pki_certs.c.ca_id == ca_id)
            yield from conn.execute(query).mappings().all()

    # -- revocation state --------------------------------------------------------------------------

    def revoke(
        self,
        *,
        reason: str,
        ca_id: str | None = None,
        serial: str | None = None,
        device_serial: str | None = None,
        order_id: str | None = None,
        issuing_ca: str | None = None,
        approval: ApprovalTicket | None = None,
    ) -> int:
        """Revoke by serial (with its CA), device serial, production order or CA (``issuing_ca``:
        a product or issuing CA, which spends ``approval``, a ``ca.revoke`` request of k security
        officers for this CA and reason, :func:`ca_revoke_terms`).

        Returns how many certificates (or CAs) changed; revoking what is revoked already counts
        nothing and is not an error.
        """
        self._chain_cache.clear()
        if reason not in REASONS:
            raise InvalidInput(f"unknown revocation reason {reason!r} (RFC 5280 5.3.1: {', '.join(REASONS)})")
        chosen = [x for x in (serial, device_serial, order_id, issuing_ca) if x is not None]
        if len(chosen) != 1 or (serial is not None and ca_id is None):
            raise InvalidInput("revoke one thing: --serial with --ca, --device, --order or --issuing-ca")
        if issuing_ca is not None:
            return self._revoke_ca(issuing_ca, reason, approval)
        now = self._clock()
        query = update(pki_certs).where(pki_certs.c.status == "good")
        if serial is not None:
            query = query.where(pki_certs.c.ca_id == ca_id, pki_certs.c.serial == serial.lower().lstrip("0"))
            what = f"cert:{ca_id}:{serial}"
        elif device_serial is not None:
            query = query.where(pki_certs.c.device_serial == device_serial)
            what = f"device:{device_serial}"
        else:
            query = query.where(pki_certs.c.order_id == order_id)
            what = f"order:{order_id}"
        with self._store.write() as conn:
            changed = conn.execute(
                query.values(status="revoked", revoked_at=now, revocation_reason=reason)
            ).rowcount
        if changed == 0 and (serial is not None or device_serial is not None):
            self._check_exists(ca_id, serial, device_serial)
        self._record("cert.revoke", what, reason=reason, count=changed)
        return int(changed)

    def _revoke_ca(self, ca_id: str, reason: str, approval: ApprovalTicket | None) -> int:
        subject = f"ca:{ca_id}"
        try:
            record = self.ca(ca_id)
            if record.kind == "root-ca":
                raise PolicyViolation("the root cannot be revoked; retire it with a new ceremony")
            if approval is None:
                raise PolicyViolation(
                    f"revoking CA {ca_id} needs an approved ca.revoke request (k-of-n security officers)"
                )
            with self._store.write() as conn:
                request = approval.spend(
                    conn, ApprovalAction.CA_REVOKE, subject, ca_revoke_terms(record, reason)
                )
                changed = conn.execute(
                    update(pki_cas)
                    .where(pki_cas.c.ca_id == ca_id, pki_cas.c.status == "active")
                    .values(status="revoked", revoked_at=self._clock(), revocation_reason=reason)
                ).rowcount
                if changed != 1:
                    raise Conflict(f"CA {ca_id} is {record.status} already")
        except FabtrustError as exc:
            self._refusal(
                "ca.revoke", subject, exc, revocation_reason=reason, request_id=ticket_request_id(approval)
            )
            raise
        self._chain_cache.clear()
        self._record(
            "ca.revoke",
            subject,
            reason=reason,
            fingerprint=fingerprint(record.certificate),
            request_id=request.request_id,
            requested_by=request.requested_by,
            approvers=[a.principal_id for a in request.approvals],
        )
        return 1

    def _check_exists(self, ca_id: str | None, serial: str | None, device_serial: str | None) -> None:
        with self._store.read() as conn:
            if serial is not None:
                found = conn.execute(
                    select(pki_certs.c.serial).where(
                        pki_certs.c.ca_id == ca_id, pki_certs.c.serial == serial.lower().lstrip("0")
                    )
                ).first()
            elif device_serial is not None:
                found = conn.execute(
                    select(pki_certs.c.serial).where(pki_certs.c.device_serial == device_serial)
                ).first()
            else:
                return
        if found is None:
            raise NotFound("no such certificate")


def ca_revoke_terms(record: CaRecord, reason: str) -> dict[str, Any]:
    """What the approvers of a CA's revocation review, and the revocation is held to."""
    if record.kind == "root-ca":
        raise PolicyViolation("the root cannot be revoked; retire it with a new ceremony")
    return {"ca_id": record.ca_id, "fingerprint": fingerprint(record.certificate), "reason": reason}


def root_restore_terms(root: x509.Certificate) -> dict[str, Any]:
    """What the approvers of a root restore review: which root key comes back."""
    return {"ca_id": ROOT_ID, "fingerprint": fingerprint(root)}


def custody_key_type(backup: bytes) -> str:
    doc = json.loads(backup)
    value = doc.get("key_type") if isinstance(doc, dict) else None
    if not isinstance(value, str):
        raise InvalidInput("root backup has no key type")
    return value


def _days_after(now: datetime, days: int | None) -> datetime | None:
    return None if days is None else now.replace(microsecond=0) + timedelta(days=days)


def check_name(value: str, what: str = "a name") -> str:
    """A name that becomes part of CA ids and file names: 1-41 characters of a-z, 0-9 and -."""
    if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,40}", value):
        raise InvalidInput(f"{what} {value!r} must be 1-41 characters of a-z, 0-9 and -")
    return value


def _check_base_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query:
        # RFC 5280 4.2.1.13 / RFC 6960: relying parties fetch CRLs and OCSP over plain HTTP
        raise InvalidInput("the PKI base URL must be http://host[:port] (CRL and OCSP are fetched over HTTP)")


_BUNDLE_FIELDS = {
    "ca_id",
    "kind",
    "parent_id",
    "profile",
    "certificate",
    "base_url",
    "device_domain",
    "order_id",
}


def _parse_bundle(raw: bytes) -> list[tuple[dict[str, Any], x509.Certificate]]:
    """Strictly parse a CA bundle: nearest CA first, each entry's parent the next one's id."""
    if len(raw) > 1024 * 1024:
        raise InvalidInput("CA bundle is too large")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput("CA bundle is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != BUNDLE_FORMAT or set(doc) != {"format", "cas"}:
        raise InvalidInput(f"not a {BUNDLE_FORMAT} document")
    cas = doc["cas"]
    if not isinstance(cas, list) or not 1 <= len(cas) <= 8:
        raise InvalidInput("CA bundle must list 1 to 8 CAs")
    result = []
    for i, entry in enumerate(cas):
        if not isinstance(entry, dict) or set(entry) != _BUNDLE_FIELDS:
            raise InvalidInput(f"CA bundle entry {i} has missing or unknown fields")
        if entry["kind"] not in ("root-ca", "product-ca", "issuing-ca") or not isinstance(
            entry["ca_id"], str
        ):
            raise InvalidInput(f"CA bundle entry {i} has an unknown kind")
        expected_parent = cas[i + 1]["ca_id"] if i + 1 < len(cas) and isinstance(cas[i + 1], dict) else None
        if entry["parent_id"] != expected_parent:
            raise InvalidInput(f"CA bundle entry {i} does not name the next entry as its parent")
        _check_base_url(entry["base_url"])
        try:
            cert = x509.load_pem_x509_certificate(entry["certificate"].encode())
        except (ValueError, AttributeError):
            raise InvalidInput(f"CA bundle entry {i} holds no valid certificate") from None
        result.append((entry, cert))
    return result


def make_csr(
    keystore: KeyStore,
    key_uri: str,
    attributes: dict[str, str],
    encoding: serialization.Encoding = serialization.Encoding.PEM,
) -> bytes:
    """A PKCS#10 request for a key in the key store (a station asking for its issuing CA)."""
    info = keystore.get(key_uri)
    profile = Profiles.builtin().get("issuing-ca")
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject_name(profile, attributes))
    csr = builder.sign(ca_private_key(keystore, info), signature_hash(info))
    return csr.public_bytes(encoding)


_DEVICE_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def device_dns_name(device_serial: str, device_domain: str) -> str:
    """``<serial>.<device domain>``: the DNS name a device certificate carries. A device serial must
    therefore be a DNS label (letters, digits and inner hyphens, at most 63)."""
    if not _DEVICE_LABEL.fullmatch(device_serial):
        raise InvalidInput(
            "a device serial must be 1-63 letters, digits or inner hyphens (it names the device in DNS form)"
        )
    return f"{device_serial.lower()}.{device_domain}"
