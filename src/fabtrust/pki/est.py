"""Enrollment over Secure Transport (EST, RFC 7030): the wire codec, one-time enrollment tokens and
the enrollment service the ``/.well-known/est`` router calls.

The codec is pure (bytes in, bytes or values out):

- requests carry a base64 PKCS#10 request, ``Content-Type: application/pkcs10`` (RFC 7030 4.2.1);
  a ``Content-Transfer-Encoding`` header, where sent, must say ``base64`` (RFC 8951 3.2: the body is
  always base64). Line breaks in the base64 are allowed (RFC 2045 6.8); nothing else is.
- responses are a PKCS#7 "certs-only" SignedData (RFC 7030 4.1.3, 4.2.3), base64 in 64-character
  lines, ``Content-Type: application/pkcs7-mime; smime-type=certs-only``.

Authorisation (RFC 7030 3.2.3 allows HTTP-based client authentication besides TLS client
certificates):

- ``simpleenroll``: ``Authorization: Bearer <token>`` (RFC 6750 syntax) with a one-time token
  bound to a CA, a certificate profile and a production order. Tokens are stored as their SHA-256
  only and looked up by that hash; the token itself is shown once, when it is made.
  **Order of the checks, and when the token is spent:** transport and syntax first (size, content
  type, base64, the CSR's DER and its self-signature, RFC 2986 4.2), none of which looks at the
  token, so they reveal nothing about it; then the token is redeemed with one atomic statement;
  then the certificate is issued. A token is spent as soon as it authorises an issuance attempt:
  if the issuance is then refused (a policy rule, a duplicate device serial, a cloned key) the token
  stays spent — one-time means one attempt, so a stolen token cannot be used to probe the policy.
- ``simplereenroll``: the current client certificate, from TLS client authentication at the proxy
  (DESIGN.md "Serving"). The certificate is checked again here: it must be one this data home
  issued (found by its issuer CA and serial, byte for byte the same), good and valid now. The new
  request must carry the same subject (RFC 7030 4.2.2), as a set of attributes: the order of the
  relative distinguished names is not significant here, since fabtrust writes subjects in its own
  order. Subject alternative names are never taken from a request (fabtrust derives them), so the
  rule that they stay the same holds by construction. The new certificate supersedes the old one:
  both happen in one transaction (``PkiService.reissue``), the old one revoked as ``superseded``.
  The new key may be the old one (renewal) or a new one (rekey).

Not implemented: TLS channel binding of the CSR (RFC 7030 3.5, tls-unique in challengePassword):
TLS ends at the proxy, and TLS 1.3 has no tls-unique. Server-side key generation, full CMC and CSR
attributes (RFC 7030 4.3-4.5) are not offered.

Every refusal is an audit entry (``fabtrust.audit.pki/v1``, actions ``est.*``); tokens never
enter the log, only their id (the first 16 hex digits of their SHA-256).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7
from sqlalchemy import insert, select, update

from fabtrust.clock import Clock, rfc3339, system_clock
from fabtrust.errors import (
    FabtrustError,
    InvalidInput,
    NotAuthorised,
    NotFound,
    PayloadTooLarge,
    PolicyViolation,
)
from fabtrust.pki.issuance import MAX_CSR_BYTES, NameRequest, load_csr
from fabtrust.pki.profiles import Profiles
from fabtrust.pki.service import AUDIT_PKI, CaRecord, Issued, PkiService, serial_hex
from fabtrust.store.engine import Store
from fabtrust.store.tables import pki_cas, pki_est_tokens
from fabtrust.tlog.audit import AuditEntry, AuditLog, Outcome

# RFC 7030 4.2.1 / 4.1.3: the media types of requests and responses.
PKCS10_TYPE = "application/pkcs10"
CERTS_ONLY_TYPE = "application/pkcs7-mime; smime-type=certs-only"

MAX_BODY_BYTES = MAX_CSR_BYTES  # a request body larger than this is refused before it is parsed
MAX_CERT_HEADER = 16 * 1024  # a forwarded client certificate (URL-escaped PEM)
EST_PROFILES = frozenset({"device-idevid"})  # what EST enrollment issues today
MIN_TTL = timedelta(minutes=1)
MAX_TTL = timedelta(days=30)

_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{32,128}")  # secrets.token_urlsafe(32) gives 43 characters
_ORDER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LABEL_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")  # RFC 7030 3.2.2 labels; ours are CA ids
_B64_RE = re.compile(rb"[A-Za-z0-9+/]*={0,2}")
_WS = re.compile(rb"[ \t\r\n]+")
NO_CLIENT_CERT = "re-enrollment needs the current client certificate (mutual TLS)"
_TOKEN_FAILED = "EST token is unknown, spent, expired or not valid for this CA"  # noqa: S105 (a message)

# Subject attribute OIDs as fabtrust's NameRequest names them (issuance._ATTRIBUTES).
_SUBJECT_NAMES = {
    x509.NameOID.COUNTRY_NAME: "countryName",
    x509.NameOID.ORGANIZATION_NAME: "organizationName",
    x509.NameOID.ORGANIZATIONAL_UNIT_NAME: "organizationalUnitName",
    x509.NameOID.COMMON_NAME: "commonName",
    x509.NameOID.SERIAL_NUMBER: "serialNumber",
}


class EstUnauthorised(NotAuthorised):
    """No usable credentials: HTTP 401 with a ``WWW-Authenticate`` challenge (RFC 9110 11.6.1)."""

    http_status = 401
    code = "unauthorised"


class UnsupportedMediaType(InvalidInput):
    http_status = 415
    code = "unsupported_media_type"


# -- the codec (pure) ------------------------------------------------------------------------------


_Named = x509.Name | x509.CertificateSigningRequest | x509.Certificate


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def decode_csr_body(body: bytes, content_type: str | None, transfer_encoding: str | None = None) -> bytes:
    """The DER PKCS#10 request in an EST request body (RFC 7030 4.2.1); syntax only, no signature."""
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"request body is larger than {MAX_BODY_BYTES} bytes")
    if _media_type(content_type) != PKCS10_TYPE:
        raise UnsupportedMediaType(f"an EST enrollment request is {PKCS10_TYPE} (RFC 7030 4.2.1)")
    if transfer_encoding is not None and transfer_encoding.strip().lower() != "base64":
        raise UnsupportedMediaType("EST bodies are base64 (RFC 8951 3.2): Content-Transfer-Encoding base64")
    compact = _WS.sub(b"", body)
    if not compact:
        raise InvalidInput("certificate request is empty")
    if len(compact) % 4 or not _B64_RE.fullmatch(compact):
        raise InvalidInput("certificate request is not valid base64 (RFC 7030 4.2.1)")
    try:
        der = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("certificate request is not valid base64 (RFC 7030 4.2.1)") from None
    if not der.startswith(b"\x30"):  # a DER SEQUENCE; a PEM inside base64 is not EST
        raise InvalidInput("certificate request is not a DER PKCS#10 structure")
    return der


def encode_certs_only(certificates: Sequence[x509.Certificate]) -> bytes:
    """A base64 PKCS#7 certs-only SignedData (RFC 7030 4.1.3, RFC 5751 3.2.2), 64-character lines.

    ``certificates`` is a SET OF (RFC 5652 5.1): DER sorts it, so clients must not rely on order."""
    if not certificates:
        raise InvalidInput("a certs-only response needs at least one certificate")
    der = pkcs7.serialize_certificates(list(certificates), serialization.Encoding.DER)
    text = base64.b64encode(der)
    return b"".join(text[i : i + 64] + b"\n" for i in range(0, len(text), 64))


def decode_certs_only(data: bytes) -> list[x509.Certificate]:
    """The certificates of a base64 certs-only response (what an EST client does with one)."""
    compact = _WS.sub(b"", data)
    try:
        der = base64.b64decode(compact, validate=True)
        return pkcs7.load_der_pkcs7_certificates(der)
    except (binascii.Error, ValueError):
        raise InvalidInput("not a base64 PKCS#7 certs-only structure") from None


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 2.1); 401 otherwise."""
    if not authorization:
        raise EstUnauthorised("enrollment needs an EST token: Authorization: Bearer <token>")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN_RE.fullmatch(token):
        raise EstUnauthorised("enrollment needs an EST token: Authorization: Bearer <token>")
    return token


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def parse_forwarded_certificate(escaped: str) -> x509.Certificate:
    """The client certificate a proxy forwards as URL-escaped PEM (nginx ``$ssl_client_escaped_cert``)."""
    if len(escaped) > MAX_CERT_HEADER:
        raise NotAuthorised("the forwarded client certificate is too large")
    pem = unquote(escaped)  # not unquote_plus: "+" is a base64 character
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise NotAuthorised("the forwarded client certificate is malformed") from None


def subject_attributes(source: _Named) -> dict[str, str]:
    """A subject as NameRequest attributes; unknown, repeated or multi-valued attributes are refused,
    as is a subject that does not parse (cryptography decodes names lazily)."""
    try:
        name = source if isinstance(source, x509.Name) else source.subject
        rdns = list(name.rdns)
    except ValueError:
        raise InvalidInput("certificate request subject is malformed") from None
    attributes: dict[str, str] = {}
    for rdn in rdns:
        if len(rdn) != 1:
            raise InvalidInput("certificate request subject has a multi-valued name component")
        (attribute,) = list(rdn)
        key = _SUBJECT_NAMES.get(attribute.oid)
        if key is None:
            raise InvalidInput(
                f"certificate request subject has an unsupported attribute {attribute.oid.dotted_string}"
            )
        if key in attributes:
            raise InvalidInput(f"certificate request subject repeats {key}")
        if not isinstance(attribute.value, str):
            raise InvalidInput(f"certificate request subject {key} is not a string")
        attributes[key] = attribute.value
    return attributes


def device_uri(device_domain: str, device_serial: str) -> str:
    """The device's URI name: ``https://<device_domain>/devices/<serial>`` (serial percent-encoded)."""
    return f"https://{device_domain}/devices/{quote(device_serial, safe='')}"


def check_label(label: str | None) -> str | None:
    """An RFC 7030 3.2.2 label (here: a CA id), or None for the default."""
    if label is not None and not _LABEL_RE.fullmatch(label):
        raise NotFound("no such EST label")
    return label


# -- one-time enrollment tokens --------------------------------------------------------------------


@dataclass(frozen=True)
class EstBinding:
    """What a token authorises: one enrollment at this CA, with this profile, for this order."""

    token_id: str  # first 16 hex digits of the token's SHA-256: names the token in logs
    ca_id: str
    profile: str
    order_id: str | None
    label: str
    expires_at: datetime


@dataclass(frozen=True)
class NewToken:
    """A token just made: ``token`` is shown once and never stored (only its hash is)."""

    token: str = field(repr=False)
    binding: EstBinding


class EstTokens:
    """One-time EST enrollment tokens, stored hashed (``pki_est_tokens``). Each act and each refusal
    is an audit entry written in the same transaction as the change it records."""

    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        clock: Clock = system_clock,
        *,
        actor: str,
        profiles: Profiles | None = None,
    ) -> None:
        self._store = store
        self._audit = audit
        self._clock = clock
        self._actor = actor
        self._profiles = profiles or Profiles.builtin()

    def _entry(
        self, action: str, subject: str, outcome: Outcome, actor: str | None, **details: Any
    ) -> AuditEntry:
        return self._audit.entry(AUDIT_PKI, actor or self._actor, action, subject, outcome, details)

    def create(
        self, ca_id: str, profile: str, order_id: str | None, label: str, ttl: timedelta | int
    ) -> NewToken:
        """Make a token bound to a CA, profile and order; the caller shows ``token`` once."""
        ttl = ttl if isinstance(ttl, timedelta) else timedelta(seconds=ttl)
        try:
            if profile not in EST_PROFILES:
                raise PolicyViolation(f"EST enrolls {', '.join(sorted(EST_PROFILES))} certificates only")
            self._profiles.get(profile)
            if not MIN_TTL <= ttl <= MAX_TTL:
                raise InvalidInput("the token lifetime must be between 60 seconds and 30 days")
            if not label or len(label) > 128 or any(ord(c) < 0x20 or ord(c) == 0x7F for c in label):
                raise InvalidInput("the token label must be 1-128 characters without control characters")
            if order_id is not None and not _ORDER_RE.fullmatch(order_id):
                raise InvalidInput("the order id must be 1-64 characters of A-Z, a-z, 0-9, '.', '_', '-'")
            with self._store.read() as conn:
                ca = conn.execute(select(pki_cas).where(pki_cas.c.ca_id == ca_id)).mappings().first()
            if ca is None:
                raise NotFound(f"no CA {ca_id!r}")
            if ca["kind"] == "root-ca" or ca["key_uri"] is None:
                raise PolicyViolation(f"CA {ca_id} cannot issue device certificates from this data home")
            if ca["status"] != "active":
                raise PolicyViolation(f"CA {ca_id} is revoked")
            if ca["order_id"] is not None:
                if order_id is None:
                    order_id = ca["order_id"]
                elif order_id != ca["order_id"]:
                    raise PolicyViolation(f"CA {ca_id} issues for order {ca['order_id']}, not {order_id}")
        except FabtrustError as exc:
            refusal = self._entry(
                "est.token-create",
                f"ca:{ca_id}"[:64],
                Outcome.REFUSED,
                None,
                reason=exc.code,
                message=exc.message,
            )
            self._audit.append([refusal])
            raise
        token = secrets.token_urlsafe(32)
        digest = token_hash(token)
        now = self._clock()
        binding = EstBinding(digest[:16], ca_id, profile, order_id, label, now + ttl)
        with self._store.write() as conn:
            conn.execute(
                insert(pki_est_tokens).values(
                    token_hash=digest,
                    ca_id=ca_id,
                    profile=profile,
                    order_id=order_id,
                    label=label,
                    expires_at=binding.expires_at,
                    used_at=None,
                    created_at=now,
                )
            )
            entry = self._entry(
                "est.token-create",
                f"est-token:{binding.token_id}",
                Outcome.OK,
                None,
                ca=ca_id,
                profile=profile,
                order=order_id,
                label=label,
                expires=rfc3339(binding.expires_at),
            )
            self._audit.append([entry], conn=conn)
        return NewToken(token, binding)

    def redeem(self, token: str, *, ca_id: str | None = None, actor: str | None = None) -> EstBinding:
        """Spend a token with one atomic statement (``UPDATE ... WHERE token_hash = ? AND used_at IS
        NULL AND expires_at > now``, and the CA when ``ca_id`` is given); only a changed row counts.
        The lookup is by hash: the token itself is never stored or compared. Any refusal is logged
        with its reason and answered with one safe message that does not say which it was."""
        if not _TOKEN_RE.fullmatch(token):
            self._audit.append(
                [
                    self._entry(
                        "est.token-redeem", "est-token:malformed", Outcome.REFUSED, actor, reason="malformed"
                    )
                ]
            )
            raise EstUnauthorised(_TOKEN_FAILED)
        digest = token_hash(token)
        subject = f"est-token:{digest[:16]}"
        now = self._clock()
        query = update(pki_est_tokens).where(
            pki_est_tokens.c.token_hash == digest,
            pki_est_tokens.c.used_at.is_(None),
            pki_est_tokens.c.expires_at > now,
        )
        if ca_id is not None:
            query = query.where(pki_est_tokens.c.ca_id == ca_id)
        with self._store.write() as conn:
            changed = conn.execute(query.values(used_at=now)).rowcount
            row = (
                conn.execute(select(pki_est_tokens).where(pki_est_tokens.c.token_hash == digest))
                .mappings()
                .first()
            )
            if changed == 1 and row is not None:
                binding = EstBinding(
                    digest[:16],
                    row["ca_id"],
                    row["profile"],
                    row["order_id"],
                    row["label"],
                    row["expires_at"],
                )
                entry = self._entry(
                    "est.token-redeem", subject, Outcome.OK, actor, ca=binding.ca_id, order=binding.order_id
                )
                self._audit.append([entry], conn=conn)
                return binding
            if row is None:
                reason = "unknown"
            elif row["used_at"] is not None:
                reason = "spent"
            elif row["expires_at"] <= now:
                reason = "expired"
            else:
                reason = "foreign"  # bound to another CA than the one the request names
            entry = self._entry("est.token-redeem", subject, Outcome.REFUSED, actor, reason=reason, ca=ca_id)
            self._audit.append([entry], conn=conn)
        raise EstUnauthorised(_TOKEN_FAILED)


# -- the enrollment service ------------------------------------------------------------------------


@dataclass(frozen=True)
class EnrollRequest:
    """An EST enrollment as the router hands it over (transport values, not yet checked)."""

    body: bytes
    content_type: str | None
    transfer_encoding: str | None
    label: str | None
    peer: str  # the client address as the server saw it (the proxy, behind one)


class EstService:
    """simpleenroll, simplereenroll and cacerts over the PKI service; every refusal logged."""

    def __init__(
        self,
        pki: PkiService,
        tokens: EstTokens,
        audit: AuditLog,
        clock: Clock = system_clock,
        *,
        actor: str = "est-client",
    ) -> None:
        self._pki = pki
        self._tokens = tokens
        self._audit = audit
        self._clock = clock
        self._actor = actor

    def refused(self, action: str, subject: str, error: FabtrustError, *, peer: str, **details: Any) -> None:
        """Log a refusal (also for the router's own refusals: oversized bodies, untrusted headers)."""
        self._audit.record(
            AUDIT_PKI,
            f"{self._actor}@{peer}",
            action,
            subject,
            Outcome.REFUSED,
            {"reason": error.code, "message": error.message, **details},
        )

    # -- cacerts (RFC 7030 4.1) --

    def default_ca(self) -> CaRecord:
        """The CA of the default label: the one issuing CA whose key this data home holds."""
        candidates = [
            r
            for r in self._pki.cas()
            if r.kind == "issuing-ca" and r.key_uri is not None and r.status == "active"
        ]
        if len(candidates) != 1:
            raise NotFound("this server has no single default EST CA: name it, /.well-known/est/<ca-id>/...")
        return candidates[0]

    def cacerts(self, label: str | None) -> list[x509.Certificate]:
        """The CA's certificate and its issuers up to the root (RFC 7030 4.1.3 wants the root in)."""
        ca_id = check_label(label) or self.default_ca().ca_id
        return [r.certificate for r in self._pki.chain(ca_id)]

    # -- simpleenroll (RFC 7030 4.2.1) --

    def enroll(self, request: EnrollRequest, authorization: str | None) -> Issued:
        actor = f"{self._actor}@{request.peer}"
        subject = "est:enroll"
        try:
            label = check_label(request.label)
            der = decode_csr_body(request.body, request.content_type, request.transfer_encoding)
            csr = load_csr(der)  # RFC 2986 4.2: the self-signature, before the token is looked at
            attributes = subject_attributes(csr)
            token = bearer_token(authorization)
        except FabtrustError as exc:
            self.refused("est.enroll", subject, exc, peer=request.peer)
            raise
        binding = self._tokens.redeem(token, ca_id=label, actor=actor)  # logs its own refusals
        subject = f"est-token:{binding.token_id}"
        try:
            ca = self._pki.ca(binding.ca_id)
            if ca.order_id is not None and ca.order_id != binding.order_id:
                raise EstUnauthorised(_TOKEN_FAILED)
            device_serial = attributes.pop("serialNumber", None)
            if binding.profile == "device-idevid":
                if not device_serial:
                    raise InvalidInput(
                        "a device certificate request needs the device serial (subject serialNumber)"
                    )
                if not ca.device_domain:
                    raise PolicyViolation(f"CA {ca.ca_id} has no device domain to name devices in")
            uris = (
                (device_uri(ca.device_domain, device_serial),) if ca.device_domain and device_serial else ()
            )
            issued = self._pki.issue(
                ca.ca_id,
                binding.profile,
                der,
                NameRequest(attributes, uris=uris),
                device_serial=device_serial,
                order_id=binding.order_id,
            )
        except FabtrustError as exc:
            self.refused("est.enroll", subject, exc, peer=request.peer, ca=binding.ca_id, token_spent=True)
            raise
        self._audit.record(
            AUDIT_PKI,
            actor,
            "est.enroll",
            subject,
            Outcome.OK,
            {"ca": issued.ca_id, "serial": issued.serial, "order": binding.order_id},
        )
        return issued

    # -- simplereenroll (RFC 7030 4.2.2) --

    def authenticate(self, certificate: x509.Certificate) -> tuple[CaRecord, str]:
        """Check a client certificate against this home's own records: issued here (the same bytes,
        signed by the CA's key), good, valid now. Returns the issuing CA and the serial."""
        der = certificate.public_bytes(serialization.Encoding.DER)
        serial = serial_hex(certificate.serial_number)
        try:
            issuer = certificate.issuer
        except ValueError:
            raise NotAuthorised("the client certificate is malformed") from None
        for ca in self._pki.cas():
            if ca.certificate.subject != issuer:
                continue
            try:
                certificate.verify_directly_issued_by(ca.certificate)
            except (InvalidSignature, ValueError, TypeError):
                continue
            try:
                _, row = self._pki.certificate(ca.ca_id, serial)
            except NotFound:
                continue
            if row["cert_der"] != der:
                continue
            if row["status"] != "good":
                raise NotAuthorised("the client certificate is revoked")
            now = self._clock()
            if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
                raise NotAuthorised("the client certificate is expired or not yet valid")
            return ca, serial
        raise NotAuthorised("the client certificate was not issued here")

    def reenroll(self, request: EnrollRequest, certificate: x509.Certificate | None) -> Issued:
        actor = f"{self._actor}@{request.peer}"
        subject = "est:reenroll"
        try:
            label = check_label(request.label)
            der = decode_csr_body(request.body, request.content_type, request.transfer_encoding)
            csr = load_csr(der)
            attributes = subject_attributes(csr)
            if certificate is None:
                raise NotAuthorised(NO_CLIENT_CERT)
            subject = f"cert:{serial_hex(certificate.serial_number)}"
            ca, serial = self.authenticate(certificate)
            subject = f"cert:{ca.ca_id}:{serial}"
            actor = f"device-cert:{ca.ca_id}:{serial}@{request.peer}"
            if label is not None and label != ca.ca_id:
                raise NotAuthorised("the client certificate was not issued by the CA of this label")
            current = subject_attributes(certificate)
            if attributes != current:
                # RFC 7030 4.2.2: the Subject field MUST be identical to the certificate's
                raise PolicyViolation(
                    "a re-enrollment request must carry the subject of the current certificate"
                )
            _, row = self._pki.certificate(ca.ca_id, serial)
            if row["profile"] not in EST_PROFILES:
                raise PolicyViolation(f"EST re-enrolls {', '.join(sorted(EST_PROFILES))} certificates only")
            device_serial: str | None = row["device_serial"]
            if device_serial is not None and current.pop("serialNumber", None) != device_serial:
                raise PolicyViolation("the client certificate does not name its device serial")
            uris = (
                (device_uri(ca.device_domain, device_serial),) if ca.device_domain and device_serial else ()
            )
            issued = self._pki.reissue(
                ca.ca_id,
                serial,
                row["profile"],
                der,
                NameRequest(current, uris=uris),
                device_serial=device_serial,
                order_id=row["order_id"],
            )
        except FabtrustError as exc:
            self.refused("est.reenroll", subject, exc, peer=request.peer)
            raise
        self._audit.record(
            AUDIT_PKI,
            actor,
            "est.reenroll",
            subject,
            Outcome.OK,
            {"ca": issued.ca_id, "serial": issued.serial, "supersedes": serial},
        )
        return issued
