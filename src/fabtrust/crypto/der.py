"""A few fields read straight from DER that cryptography has already parsed, and DER framing.

cryptography hands out a certificate's subject and public key as Python objects only: an
``x509.Name`` built attribute by attribute in Python, a key object that OpenSSL's encoders turn back
into a SubjectPublicKeyInfo. A station reads the serialNumber and the key identifier of every
chip's birth certificate and certificate request; building those objects cost it some 20-30 µs a
device, a third of a signature check. These functions take the two fields from the DER instead.

They are meant for DER that ``x509.load_der_x509_certificate`` or ``x509.load_der_x509_csr`` has
accepted, whose structure cryptography's parser has checked: they only step over the elements
before the field (X.690 definite-length TLVs at positions RFC 5280 4.1 and RFC 2986 4 fix). Given
anything else they raise InvalidInput, never an IndexError. :func:`key_spki` re-encodes an SPKI
that cryptography would encode differently (a compressed EC point, another key type).
"""

from __future__ import annotations

from fabtrust.crypto.keys import PublicKey, spki_der
from fabtrust.errors import InvalidInput

_SEQUENCE, _SET, _PRINTABLE_STRING, _UTF8_STRING = 0x30, 0x31, 0x13, 0x0C
_CONTEXT_0 = 0xA0  # [0] EXPLICIT version (absent in version 1 certificates)
_SERIAL_NUMBER = bytes.fromhex("0603550405")  # id-at-serialNumber (X.520), DER
# SubjectPublicKeyInfo up to the key's first octet, as cryptography encodes a key of each type:
# named curve P-256 / P-384 (RFC 5480 2.1.1) with an uncompressed point (0x04), Ed25519 (RFC 8410 4)
_SPKI_PREFIXES = {
    91: bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200" + "04"),
    120: bytes.fromhex("3076301006072a8648ce3d020106052b81040022036200" + "04"),
    44: bytes.fromhex("302a300506032b6570032100"),
}


def encode(tag: int, contents: bytes) -> bytes:
    """The DER TLV of ``contents`` under a one-octet ``tag`` (X.690 8.1.3: definite length)."""
    size = len(contents)
    if size < 0x80:
        return bytes((tag, size)) + contents
    octets = (size.bit_length() + 7) // 8
    return bytes((tag, 0x80 | octets)) + size.to_bytes(octets, "big") + contents


def tlv(data: bytes, offset: int, limit: int | None = None) -> tuple[int, int, int]:
    """(tag, contents start, contents end) of the DER TLV at ``offset`` (one-octet tags), which
    must end by ``limit`` (its container's end; by default the end of ``data``)."""
    limit = len(data) if limit is None else limit
    if offset + 2 > limit:
        raise InvalidInput("DER element is cut short")
    tag, first = data[offset], data[offset + 1]
    if first < 0x80:
        start, size = offset + 2, first
    else:
        octets = first & 0x7F
        if not 1 <= octets <= 4:
            raise InvalidInput("DER length is indefinite or too long")
        start = offset + 2 + octets
        size = int.from_bytes(data[offset + 2 : start], "big")
    end = start + size
    if end > limit:
        raise InvalidInput("DER element is longer than its container")
    return tag, start, end


def _expect(data: bytes, offset: int, tag: int, what: str, limit: int | None = None) -> tuple[int, int]:
    found, start, end = tlv(data, offset, limit)
    if found != tag:
        raise InvalidInput(f"DER: expected {what}")
    return start, end


def _subject_and_key(der: bytes, at: int, limit: int) -> tuple[bytes, bytes]:
    subject_end = _expect(der, at, _SEQUENCE, "subject", limit)[1]
    spki_end = _expect(der, subject_end, _SEQUENCE, "subjectPublicKeyInfo", limit)[1]
    return der[at:subject_end], der[subject_end:spki_end]


def certificate_fields(der: bytes) -> tuple[bytes, bytes]:
    """The subject Name and the SubjectPublicKeyInfo (each a whole TLV) of a DER certificate."""
    start, end = _expect(der, 0, _SEQUENCE, "Certificate")
    at, limit = _expect(der, start, _SEQUENCE, "TBSCertificate", end)
    tag, _, version_end = tlv(der, at, limit)
    if tag == _CONTEXT_0:
        at = version_end
    for _ in range(4):  # serialNumber, signature, issuer, validity
        at = tlv(der, at, limit)[2]
    return _subject_and_key(der, at, limit)


def request_fields(der: bytes) -> tuple[bytes, bytes]:
    """The subject Name and the SubjectPublicKeyInfo (each a whole TLV) of a DER PKCS#10 request."""
    start, end = _expect(der, 0, _SEQUENCE, "CertificationRequest")
    at, limit = _expect(der, start, _SEQUENCE, "CertificationRequestInfo", end)
    at = tlv(der, at, limit)[2]  # version
    return _subject_and_key(der, at, limit)


def canonical_spki(spki: bytes) -> bytes | None:
    """``spki`` if it is exactly what cryptography encodes for its key (a P-256 or P-384 key with an
    uncompressed point, or an Ed25519 key), so that hashing it names the key as
    ``public_bytes(DER, SubjectPublicKeyInfo)`` would; None for any other form or key type."""
    prefix = _SPKI_PREFIXES.get(len(spki))
    return spki if prefix is not None and spki.startswith(prefix) else None


def key_spki(read: bytes, key: PublicKey) -> bytes:
    """``key``'s SubjectPublicKeyInfo as cryptography encodes it: ``read`` (the SPKI the DER
    carried ``key`` in) where that is its encoding already, else encoded again."""
    return canonical_spki(read) or spki_der(key)


def serial_number(name: bytes) -> bytes | None:
    """The value octets of the one serialNumber attribute of a DER Name, if it is a
    PrintableString (X.520's syntax for it) or a UTF8String; None if the name has none, several,
    or one of another string type."""
    found: list[bytes] = []
    start, end = _expect(name, 0, _SEQUENCE, "Name")
    while start < end:
        at, rdn_end = _expect(name, start, _SET, "RelativeDistinguishedName", end)
        while at < rdn_end:
            attribute, attribute_end = _expect(name, at, _SEQUENCE, "AttributeTypeAndValue", rdn_end)
            _, _, type_end = tlv(name, attribute, attribute_end)
            if name[attribute:type_end] == _SERIAL_NUMBER:
                tag, value_start, value_end = tlv(name, type_end, attribute_end)
                if tag not in (_PRINTABLE_STRING, _UTF8_STRING):
                    return None
                found.append(name[value_start:value_end])
            at = attribute_end
        start = rdn_end
    return found[0] if len(found) == 1 else None
