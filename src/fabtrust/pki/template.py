"""End-entity certificates framed from parts cryptography encodes, for bulk issuance.

cryptography's ``CertificateBuilder`` re-validates and re-encodes every extension object on each
certificate: about 90 µs of Python and Rust around a 23 µs P-256 signature. A CA signing
thousands of device certificates under one issuer and profile repeats most of that work. A
``LeafTemplate`` encodes once what is the same for all of them (issuer name, signature algorithm,
the profile's fixed extensions), each with cryptography's own encoders. Per certificate, the
subject alternative names are encoded by cryptography too, the subject name by
:class:`fabtrust.pki.issuance.Subject` (the tests hold it to cryptography's encoding), and the
SPKI comes as the caller has it. This module only frames the parts (X.690 DER: SEQUENCE, INTEGER,
time, OCTET STRING) into a TBSCertificate (RFC 5280 4.1) and the signed certificate.

The result is byte-for-byte the TBSCertificate ``build_certificate`` gives for the same inputs;
the tests hold the two to that for every leaf profile, issuer key type and name form.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtensionOID

from fabtrust.crypto import der
from fabtrust.crypto.keys import ECDSA_ALGORITHM, KeyType
from fabtrust.errors import InvalidInput
from fabtrust.pki.issuance import NameRequest, Urls, certificate_extensions, check_serial
from fabtrust.pki.profiles import Profile

_SEQUENCE, _INTEGER, _BIT_STRING, _OCTET_STRING, _OID = 0x30, 0x02, 0x03, 0x04, 0x06
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18
_VERSION_3 = bytes.fromhex("a003020102")  # [0] EXPLICIT INTEGER 2
_CRITICAL = bytes.fromhex("0101ff")  # BOOLEAN TRUE (DEFAULT FALSE is omitted)
# AlgorithmIdentifier of the CA's signature: ecdsa-with-SHA256/384 (RFC 5758 3.2, parameters
# absent) and id-Ed25519 (RFC 8410 3, parameters absent)
_SIGNATURE_ALGORITHMS = {
    KeyType.P256: bytes.fromhex("300a06082a8648ce3d040302"),
    KeyType.P384: bytes.fromhex("300a06082a8648ce3d040303"),
    KeyType.ED25519: bytes.fromhex("300506032b6570"),
}
_SKI_OID = ExtensionOID.SUBJECT_KEY_IDENTIFIER
_SAN_OID = ExtensionOID.SUBJECT_ALTERNATIVE_NAME
_SKI_PREFIX = bytes.fromhex("0603551d0e")  # the extension's OID, DER
_SAN_PREFIX = bytes.fromhex("0603551d11")


_tlv = der.encode


def _oid(oid: x509.ObjectIdentifier) -> bytes:
    arcs = [int(a) for a in oid.dotted_string.split(".")]
    body = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return _tlv(_OID, bytes(body))


def _integer(value: int) -> bytes:
    return _tlv(_INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def subject_key_identifier(spki: bytes) -> bytes:
    """RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's bits (without tag,
    length and unused-bits octet); what ``x509.SubjectKeyIdentifier.from_public_key`` computes,
    taken here from SPKI bytes already at hand."""
    _, start, _ = der.tlv(spki, 0)  # SubjectPublicKeyInfo ::= SEQUENCE {
    _, _, algorithm_end = der.tlv(spki, start)  #   algorithm AlgorithmIdentifier,
    _, bits_start, bits_end = der.tlv(spki, algorithm_end)  #   subjectPublicKey BIT STRING }
    return hashlib.sha1(spki[bits_start + 1 : bits_end]).digest()  # noqa: S324 (an identifier, per RFC 5280)


@functools.lru_cache(maxsize=64)
def _validity(not_before: datetime, not_after: datetime) -> bytes:
    return _tlv(_SEQUENCE, _time(not_before) + _time(not_after))


def _time(moment: datetime) -> bytes:
    """RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050, in UTC, to the second."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        raise InvalidInput("certificate times are whole seconds")
    if 1950 <= moment.year < 2050:
        return _tlv(_UTC_TIME, moment.strftime("%y%m%d%H%M%SZ").encode())
    return _tlv(_GENERALIZED_TIME, moment.strftime("%Y%m%d%H%M%SZ").encode())


def _extension(oid: x509.ObjectIdentifier, value: x509.ExtensionType, critical: bool) -> bytes:
    flag = _CRITICAL if critical else b""
    return _tlv(_SEQUENCE, _oid(oid) + flag + _tlv(_OCTET_STRING, value.public_bytes()))


@dataclass(frozen=True)
class LeafTemplate:
    """What every certificate of one profile from one issuer key shares, encoded once."""

    key_type: KeyType
    signature_algorithm: bytes
    issuer: bytes
    # the profile's extensions in order, encoded, with None where the per-certificate subject key
    # identifier and subject alternative names go
    extensions: tuple[bytes | None, ...]
    per_certificate: tuple[x509.ObjectIdentifier, ...]

    @classmethod
    def compile(
        cls, profile: Profile, issuer: x509.Certificate, key_type: KeyType, urls: Urls
    ) -> LeafTemplate:
        if profile.is_ca:
            raise InvalidInput("CA certificates are built one at a time, not from a template")
        algorithm = _SIGNATURE_ALGORITHMS.get(key_type)
        if algorithm is None:
            raise InvalidInput(f"{key_type.value} keys cannot sign certificates here")
        # any key and name stand in for the per-certificate ones: only their slots are kept
        stand_in = issuer.public_key()
        sans = [x509.DNSName("template.invalid")] if profile.san else []
        encoded: list[bytes | None] = []
        slots: list[x509.ObjectIdentifier] = []
        for value, critical in certificate_extensions(
            profile,
            stand_in,
            sans,
            NameRequest({}),
            issuer=issuer,
            urls=urls,
        ):
            if value.oid in (_SKI_OID, _SAN_OID):
                encoded.append(None)
                slots.append(value.oid)
            else:
                encoded.append(_extension(value.oid, value, critical))
        return cls(key_type, algorithm, issuer.subject.public_bytes(), tuple(encoded), tuple(slots))

    def tbs(
        self,
        *,
        serial: int,
        not_before: datetime,
        not_after: datetime,
        subject: bytes,
        spki: bytes,
        sans: Sequence[x509.GeneralName],
    ) -> bytes:
        """The DER TBSCertificate of one certificate (``subject``: its Name, ``spki``: its
        SubjectPublicKeyInfo, both DER)."""
        check_serial(serial)
        per_certificate = iter(self.per_certificate)
        extensions = []
        for part in self.extensions:
            if part is not None:
                extensions.append(part)
                continue
            if next(per_certificate) == _SKI_OID:
                ski = _tlv(_OCTET_STRING, subject_key_identifier(spki))
                extensions.append(_tlv(_SEQUENCE, _SKI_PREFIX + _tlv(_OCTET_STRING, ski)))
            elif sans:
                value = x509.SubjectAlternativeName(sans).public_bytes()
                extensions.append(_tlv(_SEQUENCE, _SAN_PREFIX + _tlv(_OCTET_STRING, value)))
        return _tlv(
            _SEQUENCE,
            b"".join(
                (
                    _VERSION_3,
                    _integer(serial),
                    self.signature_algorithm,
                    self.issuer,
                    _validity(not_before, not_after),
                    subject,
                    spki,
                    _tlv(0xA3, _tlv(_SEQUENCE, b"".join(extensions))),  # [3] EXPLICIT Extensions
                )
            ),
        )

    def signed(self, tbs: bytes, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
        """The DER certificate: the TBSCertificate signed with the issuer's key (RFC 5280 4.1.1)."""
        if isinstance(key, ec.EllipticCurvePrivateKey):
            signature = key.sign(tbs, ECDSA_ALGORITHM[self.key_type])
        else:
            signature = key.sign(tbs)
        return _tlv(_SEQUENCE, tbs + self.signature_algorithm + _tlv(_BIT_STRING, b"\x00" + signature))

    def sign(
        self, tbs: bytes, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ) -> x509.Certificate:
        """:meth:`signed`, loaded."""
        return x509.load_der_x509_certificate(self.signed(tbs, key))
