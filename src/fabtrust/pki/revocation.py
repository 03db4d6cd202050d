"""Revocation: CRLs (RFC 5280 section 5) and an OCSP responder (RFC 6960).

A pure core builds and reads CRLs and OCSP messages with the time passed in. ``RevocationService``
around it reads the revocation state that ``PkiService.revoke`` records in ``pki_certs`` and
``pki_cas``, signs with the CA keys through the key store, stores every CRL it issues in
``pki_crls`` and keeps the cache of pre-signed OCSP responses.

Decisions worth knowing:

- **A revoked CA revokes what it issued.** Revoking an issuing CA (or a product CA above it) makes
  every certificate below it revoked in that CA's CRLs and OCSP answers too, at the CA's revocation
  time; the reason becomes cACompromise when the CA's own reason was keyCompromise or cACompromise
  (RFC 5280 5.3.1), and stays the CA's reason otherwise. Relying parties that check only the leaf
  (a device's OCSP answer, nginx ``ssl_ocsp leaf``) then refuse it as chain validation would. The
  revoked CA itself is listed on its parent's CRL.
- **Full CRLs are always current.** A full CRL is issued again as soon as the revocation state
  differs from the latest one (and when less than a quarter of its validity remains), so clients
  that ignore delta CRLs (``openssl verify -crl_check``) see every revocation at once.
- **Delta CRLs are relative to the oldest full CRL still valid through the delta's nextUpdate.**
  RFC 5280 5.2.4 lets a delta be combined with any complete CRL whose number is at least the
  delta's BaseCRLNumber, so a client holding any recent full CRL catches up with one small delta.
- **CRL numbers** come from ``pki_cas.crl_number``, one sequence for full and delta CRLs (RFC 5280
  5.2.3), bumped in the transaction that stores the CRL.
- **OCSP responses are signed by the CA itself** (RFC 6960 4.2.2.2, no delegated responder),
  responder ID by key hash. Pre-signed responses are cached per (CA, serial, CertID hash); each
  answer compares the cached response's status with the status read from the store, so a
  revocation (by any process sharing the database) shows in the very next answer. A request with a
  nonce gets a freshly signed response echoing it and is not cached.
- producedAt is set by pyca/cryptography from the wall clock; thisUpdate/nextUpdate come from the
  injected clock.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509 import ocsp
from sqlalchemy import Connection, RowMapping, func, insert, select, update

from fabtrust.clock import Clock, rfc3339, system_clock
from fabtrust.errors import FabtrustError, InvalidInput, NotAuthorised, NotFound, Unavailable
from fabtrust.keystore.base import KeyInfo
from fabtrust.pki.service import REASONS, CaRecord, PkiService, serial_hex
from fabtrust.pki.signing import CaPrivateKey, signature_hash
from fabtrust.store.engine import Store
from fabtrust.store.tables import pki_cas, pki_certs, pki_crls

log = logging.getLogger("fabtrust.pki.revocation")

FULL_CRL_VALIDITY = timedelta(days=7)
DELTA_CRL_VALIDITY = timedelta(days=1)
OCSP_VALIDITY = timedelta(hours=1)
MAX_OCSP_REQUEST = 64 * 1024
OCSP_CACHE_LIMIT = 500_000  # pre-signed responses kept per service (oldest dropped first)
NONCE_OCTETS = range(1, 33)  # RFC 8954 2.1: echo 1..32 octets; other lengths are answered without
CRL_MEDIA_TYPE = "application/pkix-crl"  # RFC 2585 4.2
OCSP_REQUEST_MEDIA_TYPE = "application/ocsp-request"  # RFC 6960 A.1
OCSP_RESPONSE_MEDIA_TYPE = "application/ocsp-response"

# CertID hash algorithms the responder matches issuers with (RFC 6960 4.1.1; SHA-1 is what most
# clients, openssl included, send by default).
CERT_ID_HASHES: Mapping[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}

# RFC 5280 5.3.1: a certificate revoked because its issuer was revoked for a key problem
_INHERITED_REASON = {"keyCompromise": "cACompromise", "cACompromise": "cACompromise"}


# -- values --------------------------------------------------------------------------------------


def utc_seconds(t: datetime) -> datetime:
    """A stored time as aware UTC to the whole second (SQLite hands back naive UTC; X.509 times
    carry no fractions, RFC 5280 4.1.2.5)."""
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.replace(microsecond=0)


@dataclass(frozen=True)
class Revoked:
    """When and why a certificate was revoked (RFC 5280 5.3.1 reason names, ``REASONS``)."""

    at: datetime
    reason: str

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise InvalidInput(f"unknown revocation reason {self.reason!r}")
        if self.at.tzinfo is None or self.at.microsecond:
            raise InvalidInput("revocation times are aware UTC to the whole second")

    @property
    def reason_flag(self) -> x509.ReasonFlags | None:
        """The reasonCode to encode; None for unspecified, which RFC 5280 5.3.1 says to omit."""
        return None if self.reason == "unspecified" else REASONS[self.reason]

    @classmethod
    def from_row(cls, row: RowMapping) -> Revoked | None:
        """The revocation a ``pki_certs`` or ``pki_cas`` row records, if any."""
        if row["status"] != "revoked":
            return None
        return cls(utc_seconds(row["revoked_at"]), row["revocation_reason"] or "unspecified")


def effective_revocation(own: Revoked | None, issuers: Iterable[Revoked | None]) -> Revoked | None:
    """A certificate's revocation given its own and its issuing CAs' (nearest first): the earliest.

    A revoked CA revokes what it issued; a key problem of the CA becomes cACompromise for them.
    """
    candidates = [own] if own is not None else []
    candidates += [Revoked(r.at, _INHERITED_REASON.get(r.reason, r.reason)) for r in issuers if r is not None]
    if not candidates:
        return None
    # on a tie the certificate's own record wins (it is first in the list; min() is stable)
    return min(candidates, key=lambda r: r.at)


@dataclass(frozen=True)
class CrlEntry:
    """One revokedCertificates entry (RFC 5280 5.1.2.6)."""

    serial: int
    revoked: Revoked


class CertState(enum.Enum):
    """RFC 6960 2.2 certificate status values."""

    GOOD = "good"
    REVOKED = "revoked"
    UNKNOWN = "unknown"  # the responder knows no certificate of that serial from that issuer


@dataclass(frozen=True)
class CertStatus:
    state: CertState
    revoked: Revoked | None = None

    def __post_init__(self) -> None:
        if (self.state is CertState.REVOKED) != (self.revoked is not None):
            raise InvalidInput("a revoked status carries its revocation, the others none")

    @classmethod
    def of(cls, revoked: Revoked | None) -> CertStatus:
        return cls(CertState.GOOD) if revoked is None else cls(CertState.REVOKED, revoked)


_UNKNOWN = CertStatus(CertState.UNKNOWN)


def is_fresh(this_update: datetime, next_update: datetime, now: datetime) -> bool:
    """Whether a signed answer may still be handed out: more than a quarter of its validity left."""
    return this_update <= now < next_update - (next_update - this_update) / 4


# -- CRLs (RFC 5280 section 5) -------------------------------------------------------------------


def authority_key_identifier(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """RFC 5280 5.2.1: the issuer's subject key identifier (or one derived from its key)."""
    try:
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def build_crl(
    issuer: x509.Certificate,
    entries: Iterable[CrlEntry],
    *,
    number: int,
    this_update: datetime,
    next_update: datetime,
    base_number: int | None = None,
    freshest_url: str | None = None,
) -> x509.CertificateRevocationListBuilder:
    """An unsigned CRL: full, or a delta CRL when ``base_number`` names its base CRL."""
    if base_number is not None and freshest_url is not None:
        raise InvalidInput("a delta CRL does not carry a Freshest CRL pointer (RFC 5280 5.2.6)")
    if base_number is not None and not 0 <= base_number < number:
        raise InvalidInput("a delta CRL's base CRL number precedes its own (RFC 5280 5.2.4)")
    if not this_update < next_update:
        raise InvalidInput("a CRL's nextUpdate must follow its thisUpdate (RFC 5280 5.1.2.5)")
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(next_update)
        .add_extension(authority_key_identifier(issuer), critical=False)  # 5.2.1
        .add_extension(x509.CRLNumber(number), critical=False)  # 5.2.3
    )
    if base_number is not None:
        builder = builder.add_extension(x509.DeltaCRLIndicator(base_number), critical=True)  # 5.2.4
    if freshest_url is not None:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(freshest_url)], None, None, None)
        builder = builder.add_extension(x509.FreshestCRL([point]), critical=False)  # 5.2.6
    for entry in sorted(entries, key=lambda e: e.serial):
        revoked = (
            x509.RevokedCertificateBuilder().serial_number(entry.serial).revocation_date(entry.revoked.at)
        )
        flag = entry.revoked.reason_flag
        if flag is not None:  # 5.3.1: omit reasonCode rather than say unspecified
            revoked = revoked.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(revoked.build())
    return builder


_REASON_NAMES = {flag: name for name, flag in REASONS.items()}


def crl_entries(crl: x509.CertificateRevocationList) -> frozenset[CrlEntry]:
    """The entries of a CRL, read back into the values ``build_crl`` takes."""
    entries = set()
    for revoked in crl:
        try:
            flag = revoked.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            flag = x509.ReasonFlags.unspecified
        name = _REASON_NAMES.get(flag)
        if name is None:
            raise InvalidInput(f"CRL entry with a reason fabtrust does not issue: {flag.value}")
        at = utc_seconds(revoked.revocation_date_utc)
        entries.add(CrlEntry(revoked.serial_number, Revoked(at, name)))
    return frozenset(entries)


def delta_crl_url(full_url: str) -> str:
    """Where the delta CRL of a CA is served, beside its full CRL: ``<ca>.crl`` → ``<ca>-delta.crl``."""
    if not full_url.endswith(".crl"):
        raise InvalidInput("a CRL URL ends in .crl")
    return full_url[: -len(".crl")] + "-delta.crl"


# -- OCSP (RFC 6960) -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OcspQuery:
    """The one CertID of an OCSP request (RFC 6960 4.1.1) and its nonce (4.4.1), if echoable."""

    hash_name: str
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    serial: int
    nonce: bytes | None


def parse_ocsp_request(data: bytes) -> OcspQuery:
    """Read an OCSPRequest. InvalidInput when malformed, NotAuthorised for a CertID hash this
    responder cannot match issuers with (it cannot speak for an issuer it cannot identify)."""
    if len(data) > MAX_OCSP_REQUEST:
        raise InvalidInput(f"OCSP request is larger than {MAX_OCSP_REQUEST} bytes")
    try:
        request = ocsp.load_der_ocsp_request(data)
        extensions = list(request.extensions)
    except ValueError as exc:  # also: more than one request in the list (not supported here)
        raise InvalidInput("not a DER OCSPRequest with one request (RFC 6960 4.1.1)") from exc
    try:
        algorithm = request.hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise NotAuthorised("the CertID hash algorithm is not one this responder answers for") from exc
    if algorithm.name not in CERT_ID_HASHES:
        raise NotAuthorised("the CertID hash algorithm is not one this responder answers for")
    if len(request.issuer_name_hash) != algorithm.digest_size or len(request.issuer_key_hash) != (
        algorithm.digest_size
    ):
        raise InvalidInput("CertID hashes do not have the length of their algorithm")
    nonce = None
    for ext in extensions:
        if isinstance(ext.value, x509.OCSPNonce):
            nonce = ext.value.nonce if len(ext.value.nonce) in NONCE_OCTETS else None
        elif ext.critical:  # RFC 6960 4.4: a critical extension not understood cannot be honoured
            raise InvalidInput(
                f"OCSP request has a critical extension not understood: {ext.oid.dotted_string}"
            )
    return OcspQuery(
        algorithm.name, request.issuer_name_hash, request.issuer_key_hash, request.serial_number, nonce
    )


def _subject_public_key(cert: x509.Certificate) -> bytes:
    """The subjectPublicKey BIT STRING value (without tag, length, unused bits)."""
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key.public_bytes_raw()
    raise InvalidInput("CA keys are EC or Ed25519 here")


def issuer_hashes(issuer: x509.Certificate, hash_name: str) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of a CA for a CertID (RFC 6960 4.1.1)."""

    def digest(data: bytes) -> bytes:
        h = hashes.Hash(CERT_ID_HASHES[hash_name]())
        h.update(data)
        return h.finalize()

    return digest(issuer.subject.public_bytes()), digest(_subject_public_key(issuer))


def build_ocsp_response(
    query: OcspQuery,
    issuer: x509.Certificate,
    status: CertStatus,
    *,
    this_update: datetime,
    next_update: datetime,
    nonce: bytes | None = None,
) -> ocsp.OCSPResponseBuilder:
    """An unsigned basic OCSP response for one CertID, to be signed by the issuing CA itself."""
    if not this_update < next_update:
        raise InvalidInput("an OCSP response's nextUpdate must follow its thisUpdate")
    cert_status = {
        CertState.GOOD: ocsp.OCSPCertStatus.GOOD,
        CertState.REVOKED: ocsp.OCSPCertStatus.REVOKED,
        CertState.UNKNOWN: ocsp.OCSPCertStatus.UNKNOWN,
    }[status.state]
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            query.issuer_name_hash,
            query.issuer_key_hash,
            query.serial,
            CERT_ID_HASHES[query.hash_name](),
            cert_status,
            this_update,
            next_update,
            status.revoked.at if status.revoked else None,
            status.revoked.reason_flag if status.revoked else None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)  # 4.2.2.3 byKey
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)  # 4.4.1
    return builder


def ocsp_error(status: ocsp.OCSPResponseStatus) -> bytes:
    """An unsuccessful OCSPResponse (RFC 6960 4.2.1): malformedRequest, unauthorized, tryLater..."""
    return ocsp.OCSPResponseBuilder.build_unsuccessful(status).public_bytes(serialization.Encoding.DER)


# -- the service ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredCrl:
    ca_id: str
    number: int
    base_number: int | None
    this_update: datetime
    next_update: datetime
    der: bytes

    @classmethod
    def from_row(cls, row: RowMapping) -> StoredCrl:
        return cls(
            row["ca_id"],
            int(row["number"]),
            None if row["base_number"] is None else int(row["base_number"]),
            utc_seconds(row["this_update"]),
            utc_seconds(row["next_update"]),
            bytes(row["der"]),
        )


@dataclass(frozen=True)
class _Responder:
    """A CA of this home that answers OCSP: its certificate, key and CertID hashes."""

    record: CaRecord
    chain_ids: tuple[str, ...]  # the CA and its ancestors, nearest first
    info: KeyInfo
    key: CaPrivateKey  # a proxy signing through the key store (fabtrust.pki.signing)


@dataclass(frozen=True)
class _Cached:
    der: bytes
    status: CertStatus
    this_update: datetime
    next_update: datetime


class RevocationService:
    """CRLs and OCSP answers for the CAs whose keys this data home holds."""

    def __init__(
        self,
        pki: PkiService,
        store: Store,
        clock: Clock = system_clock,
        *,
        cache_limit: int = OCSP_CACHE_LIMIT,
    ) -> None:
        self._pki = pki
        self._store = store
        self._clock = clock
        self._cache_limit = cache_limit
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, int, str], _Cached] = OrderedDict()
        self._responders: dict[tuple[str, bytes, bytes], _Responder] = {}
        self._crl_entries: dict[tuple[str, int], frozenset[CrlEntry]] = {}
        self._chains: dict[str, tuple[str, ...]] = {}
        self._responder_cas = -1  # how many CAs with keys the responder index was built from

    # -- revocation state --------------------------------------------------------------------------

    def _issuer_revocations(self, conn: Connection, chain_ids: Sequence[str]) -> list[Revoked | None]:
        rows = conn.execute(
            select(
                pki_cas.c.ca_id, pki_cas.c.status, pki_cas.c.revoked_at, pki_cas.c.revocation_reason
            ).where(pki_cas.c.ca_id.in_(chain_ids))
        ).mappings()
        by_id = {r["ca_id"]: Revoked.from_row(r) for r in rows}
        return [by_id.get(ca_id) for ca_id in chain_ids]

    def _chain_ids(self, ca_id: str) -> tuple[str, ...]:
        """The CA and its ancestors, nearest first (a CA's parent never changes: memoised)."""
        with self._lock:
            found = self._chains.get(ca_id)
        if found is None:
            found = tuple(r.ca_id for r in self._pki.chain(ca_id))
            with self._lock:
                self._chains[ca_id] = found
        return found

    def _entries(self, conn: Connection, record: CaRecord, now: datetime) -> frozenset[CrlEntry]:
        """What a CRL of this CA lists now: revoked certificates and CAs it issued, unexpired
        (RFC 5280 3.3 lets an entry go once the certificate has expired)."""
        inherited = self._issuer_revocations(conn, self._chain_ids(record.ca_id))
        everything = any(r is not None for r in inherited)
        entries = set()
        for table, issuer_column in ((pki_certs, pki_certs.c.ca_id), (pki_cas, pki_cas.c.parent_id)):
            query = select(
                table.c.serial, table.c.status, table.c.revoked_at, table.c.revocation_reason
            ).where(issuer_column == record.ca_id, table.c.not_after > now)
            if not everything:
                query = query.where(table.c.status == "revoked")
            for row in conn.execute(query).mappings():
                revoked = effective_revocation(Revoked.from_row(row), inherited)
                if revoked is not None:
                    entries.add(CrlEntry(int(row["serial"], 16), revoked))
        return frozenset(entries)

    def status(self, ca_id: str, serial: int) -> CertStatus:
        """The RFC 6960 status of a serial issued by a CA, as the store says now."""
        chain = self._chain_ids(ca_id)
        with self._store.read() as conn:
            return self._status(conn, ca_id, chain, serial)

    def _status(self, conn: Connection, ca_id: str, chain_ids: Sequence[str], serial: int) -> CertStatus:
        if serial <= 0:
            return _UNKNOWN
        wanted = serial_hex(serial)
        columns = (pki_certs.c.status, pki_certs.c.revoked_at, pki_certs.c.revocation_reason)
        row = (
            conn.execute(select(*columns).where(pki_certs.c.ca_id == ca_id, pki_certs.c.serial == wanted))
            .mappings()
            .first()
        )
        if row is None:  # a CA certificate this CA issued
            ca_columns = (pki_cas.c.status, pki_cas.c.revoked_at, pki_cas.c.revocation_reason)
            row = (
                conn.execute(
                    select(*ca_columns).where(pki_cas.c.parent_id == ca_id, pki_cas.c.serial == wanted)
                )
                .mappings()
                .first()
            )
        if row is None:
            return _UNKNOWN  # RFC 6960 2.2: not a certificate this issuer issued
        return CertStatus.of(
            effective_revocation(Revoked.from_row(row), self._issuer_revocations(conn, chain_ids))
        )

    # -- CRLs --------------------------------------------------------------------------------------

    def has_ca(self, ca_id: str) -> bool:
        try:
            self._pki.ca(ca_id)
        except NotFound:
            return False
        return True

    def _crl_issuer(self, ca_id: str) -> CaRecord:
        record = self._pki.ca(ca_id)
        if record.key_uri is None:
            raise NotFound(f"this data home does not issue the CRLs of CA {ca_id}")
        return record

    def _stored_entries(self, crl: StoredCrl) -> frozenset[CrlEntry]:
        key = (crl.ca_id, crl.number)
        with self._lock:
            cached = self._crl_entries.get(key)
        if cached is None:
            cached = crl_entries(x509.load_der_x509_crl(crl.der))
            with self._lock:
                if len(self._crl_entries) >= 256:
                    self._crl_entries.clear()
                self._crl_entries[key] = cached
        return cached

    def crl(self, ca_id: str, *, delta: bool = False) -> bytes:
        """The DER of the CA's current full (or delta) CRL, issuing a new one when the stored one is
        stale or no longer says what the store says."""
        record = self._crl_issuer(ca_id)
        self._chain_ids(ca_id)  # outside the transactions below
        now = utc_seconds(self._clock())
        full = self._current_full(record, now)
        return (self._current_delta(record, full, now) if delta else full).der

    def _latest(self, conn: Connection, ca_id: str, *, delta: bool) -> StoredCrl | None:
        kind = pki_crls.c.base_number.is_not(None) if delta else pki_crls.c.base_number.is_(None)
        row = (
            conn.execute(
                select(pki_crls)
                .where(pki_crls.c.ca_id == ca_id, kind)
                .order_by(pki_crls.c.number.desc())
                .limit(1)
            )
            .mappings()
            .first()
        )
        return None if row is None else StoredCrl.from_row(row)

    def _current_full(self, record: CaRecord, now: datetime) -> StoredCrl:
        with self._store.read() as conn:
            entries = self._entries(conn, record, now)
            latest = self._latest(conn, record.ca_id, delta=False)
        if (
            latest is not None
            and is_fresh(latest.this_update, latest.next_update, now)
            and self._stored_entries(latest) == entries
        ):
            return latest
        return self.issue_crl(record.ca_id)

    def _current_delta(self, record: CaRecord, full: StoredCrl, now: datetime) -> StoredCrl:
        with self._store.read() as conn:
            entries = self._entries(conn, record, now)
            latest = self._latest(conn, record.ca_id, delta=True)
            base = None
            if latest is not None and latest.base_number is not None:
                row = (
                    conn.execute(
                        select(pki_crls).where(
                            pki_crls.c.ca_id == record.ca_id, pki_crls.c.number == latest.base_number
                        )
                    )
                    .mappings()
                    .first()
                )
                base = None if row is None else StoredCrl.from_row(row)
        if (
            latest is not None
            and base is not None
            and is_fresh(latest.this_update, latest.next_update, now)
            and self._stored_entries(latest) == entries - self._stored_entries(base)
        ):
            return latest
        return self.issue_crl(record.ca_id, delta=True)

    def issue_crl(self, ca_id: str, *, delta: bool = False) -> StoredCrl:
        """Sign and store a new full (or delta) CRL for the CA now, whatever is stored already."""
        record = self._crl_issuer(ca_id)
        info, key = self._pki._ca_key(record)
        self._chain_ids(ca_id)  # outside the write transaction
        this_update = utc_seconds(self._clock())
        validity = DELTA_CRL_VALIDITY if delta else FULL_CRL_VALIDITY
        next_update = this_update + validity
        with self._store.write() as conn:
            entries = self._entries(conn, record, this_update)
            base = self._delta_base(conn, record.ca_id, next_update) if delta else None
            if delta and base is None:
                raise NotFound(f"CA {ca_id} has no valid full CRL to base a delta CRL on")
            listed = entries - self._stored_entries(base) if base is not None else entries
            conn.execute(
                update(pki_cas).where(pki_cas.c.ca_id == ca_id).values(crl_number=pki_cas.c.crl_number + 1)
            )
            number = int(
                conn.execute(select(pki_cas.c.crl_number).where(pki_cas.c.ca_id == ca_id)).scalar_one()
            )
            builder = build_crl(
                record.certificate,
                listed,
                number=number,
                this_update=this_update,
                next_update=next_update,
                base_number=base.number if base is not None else None,
                freshest_url=None if delta else delta_crl_url(record.urls().crl or ""),
            )
            der = builder.sign(key, signature_hash(info)).public_bytes(serialization.Encoding.DER)
            stored = StoredCrl(
                ca_id, number, base.number if base is not None else None, this_update, next_update, der
            )
            conn.execute(
                insert(pki_crls).values(
                    ca_id=ca_id,
                    number=number,
                    base_number=stored.base_number,
                    this_update=this_update,
                    next_update=next_update,
                    der=der,
                )
            )
        with self._lock:
            self._crl_entries[(ca_id, number)] = frozenset(listed)
        self._pki._record(
            "crl.issue",
            f"ca:{ca_id}",
            number=number,
            delta_base=stored.base_number,
            entries=len(listed),
            next_update=rfc3339(next_update),
            key_id=info.key_id,
            purpose="CRL signing",
        )
        return stored

    def _delta_base(self, conn: Connection, ca_id: str, delta_next_update: datetime) -> StoredCrl | None:
        """The oldest full CRL still valid when the delta expires, else the newest full CRL."""
        query = select(pki_crls).where(pki_crls.c.ca_id == ca_id, pki_crls.c.base_number.is_(None))
        row = (
            conn.execute(
                query.where(pki_crls.c.next_update >= delta_next_update).order_by(pki_crls.c.number).limit(1)
            )
            .mappings()
            .first()
        )
        if row is None:
            row = conn.execute(query.order_by(pki_crls.c.number.desc()).limit(1)).mappings().first()
        return None if row is None else StoredCrl.from_row(row)

    # -- OCSP --------------------------------------------------------------------------------------

    def _load_responders(self) -> None:
        responders: dict[tuple[str, bytes, bytes], _Responder] = {}
        records = [r for r in self._pki.cas() if r.key_uri is not None]
        for record in records:
            try:
                info, key = self._pki._ca_key(record)
            except FabtrustError as exc:  # its key is gone from the key store: it cannot answer
                log.warning("CA %s cannot answer OCSP requests: %s", record.ca_id, exc.message)
                continue
            responder = _Responder(record, self._chain_ids(record.ca_id), info, key)
            for hash_name in CERT_ID_HASHES:
                name_hash, key_hash = issuer_hashes(record.certificate, hash_name)
                responders[(hash_name, name_hash, key_hash)] = responder
        with self._lock:
            self._responders = responders
            self._responder_cas = len(records)

    def _keyed_cas(self) -> int:
        with self._store.read() as conn:
            return int(
                conn.execute(
                    select(func.count()).select_from(pki_cas).where(pki_cas.c.key_uri.is_not(None))
                ).scalar_one()
            )

    def _responder(self, hash_name: str, name_hash: bytes, key_hash: bytes) -> _Responder:
        key = (hash_name, name_hash, key_hash)
        with self._lock:
            found = self._responders.get(key)
            known = self._responder_cas
        if found is None and self._keyed_cas() != known:  # a CA (or its key) came since: load again
            self._load_responders()
            with self._lock:
                found = self._responders.get(key)
        if found is None:
            raise NotAuthorised("this responder does not answer for that issuer")
        return found

    def _responder_for_ca(self, ca_id: str) -> _Responder:
        record = self._pki.ca(ca_id)
        if record.key_uri is None:
            raise NotFound(f"this data home does not hold the key of CA {ca_id}")
        name_hash, key_hash = issuer_hashes(record.certificate, "sha1")
        return self._responder("sha1", name_hash, key_hash)

    def respond(self, request_der: bytes) -> bytes:
        """Answer a DER OCSPRequest with a DER OCSPResponse; client errors become RFC 6960 error
        statuses (malformedRequest, unauthorized), never exceptions."""
        try:
            query = parse_ocsp_request(request_der)
            responder = self._responder(query.hash_name, query.issuer_name_hash, query.issuer_key_hash)
            return self._answer(responder, query, utc_seconds(self._clock()))
        except InvalidInput as exc:
            log.info("OCSP request refused as malformed: %s", exc.message)
            return ocsp_error(ocsp.OCSPResponseStatus.MALFORMED_REQUEST)
        except NotAuthorised as exc:
            log.info("OCSP request refused as unauthorized: %s", exc.message)
            return ocsp_error(ocsp.OCSPResponseStatus.UNAUTHORIZED)
        except Unavailable:
            log.warning("OCSP request deferred: a backend is unavailable", exc_info=True)
            return ocsp_error(ocsp.OCSPResponseStatus.TRY_LATER)
        except FabtrustError:
            log.exception("OCSP request failed")
            return ocsp_error(ocsp.OCSPResponseStatus.INTERNAL_ERROR)

    def _answer(self, responder: _Responder, query: OcspQuery, now: datetime) -> bytes:
        ca_id = responder.record.ca_id
        with self._store.read() as conn:
            status = self._status(conn, ca_id, responder.chain_ids, query.serial)
        cacheable = query.nonce is None and status.state is not CertState.UNKNOWN
        key = (ca_id, query.serial, query.hash_name)
        if cacheable:
            with self._lock:
                cached = self._cache.get(key)
            if (
                cached is not None
                and cached.status == status
                and is_fresh(cached.this_update, cached.next_update, now)
            ):
                return cached.der
        der = self._sign(responder, query, status, now)
        if cacheable:
            self._remember(key, _Cached(der, status, now, now + OCSP_VALIDITY))
        return der

    def _sign(self, responder: _Responder, query: OcspQuery, status: CertStatus, now: datetime) -> bytes:
        builder = build_ocsp_response(
            query,
            responder.record.certificate,
            status,
            this_update=now,
            next_update=now + OCSP_VALIDITY,
            nonce=query.nonce,
        )
        response = builder.sign(responder.key, signature_hash(responder.info))
        return response.public_bytes(serialization.Encoding.DER)

    def _remember(self, key: tuple[str, int, str], entry: _Cached) -> None:
        with self._lock:
            self._cache[key] = entry
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_limit:
                self._cache.popitem(last=False)

    def prewarm(self, ca_id: str, *, hash_names: Sequence[str] = ("sha1",)) -> int:
        """Sign (or refresh) the cached responses for every good certificate of a CA; returns how
        many responses were signed."""
        for name in hash_names:
            if name not in CERT_ID_HASHES:
                raise InvalidInput(f"unknown CertID hash {name!r} (use {', '.join(CERT_ID_HASHES)})")
        responder = self._responder_for_ca(ca_id)
        now = utc_seconds(self._clock())
        with self._store.read() as conn:
            inherited = self._issuer_revocations(conn, responder.chain_ids)
            serials: list[int] = []
            if all(r is None for r in inherited):
                for table, issuer_column in ((pki_certs, pki_certs.c.ca_id), (pki_cas, pki_cas.c.parent_id)):
                    rows = conn.execute(
                        select(table.c.serial).where(issuer_column == ca_id, table.c.status != "revoked")
                    )
                    serials += [int(s, 16) for (s,) in rows]
        signed = 0
        good = CertStatus(CertState.GOOD)
        for hash_name in hash_names:
            name_hash, key_hash = issuer_hashes(responder.record.certificate, hash_name)
            for serial in serials:
                key = (ca_id, serial, hash_name)
                with self._lock:
                    cached = self._cache.get(key)
                if (
                    cached is not None
                    and cached.status == good
                    and is_fresh(cached.this_update, cached.next_update, now)
                ):
                    continue
                query = OcspQuery(hash_name, name_hash, key_hash, serial, None)
                self._remember(
                    key, _Cached(self._sign(responder, query, good, now), good, now, now + OCSP_VALIDITY)
                )
                signed += 1
        return signed

    def cached_responses(self) -> int:
        with self._lock:
            return len(self._cache)
