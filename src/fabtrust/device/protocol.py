"""Wire formats between a factory station and a device, and the station's pure checks on them.

Every document is a JSON object in canonical form (RFC 8785, :mod:`fabtrust.crypto.canonical`) whose
``format`` member names its type and version; binary fields are standard padded base64
(:mod:`fabtrust.crypto.encoding`), lists of binary fields are arrays of base64 strings. Parsing fails
closed: malformed or non-canonical JSON, a document over :data:`MAX_DOCUMENT_BYTES`, a missing or
unknown member, another ``format``, bad base64 or an out-of-range value is :class:`InvalidInput`.

Signed documents (:class:`GenuinenessResponse`, :class:`InstallReceipt`) are signed over their
*signed payload*: the canonical JSON of the document object with the ``signature`` member removed,
``format`` included (so a signature over one format can never pass for another). Signatures use
:mod:`fabtrust.crypto.keys` conventions (DER ECDSA over SHA-256 for P-256, plain Ed25519).

The exchange, one device at a time::

    station                                     device (DeviceAgent + SecureElement)
    Challenge            ------------------->
                         <-------------------   GenuinenessResponse (signed by the birth key)
    verify_genuineness(), duplicate check, quota, certificate for the CSR, secrets sealed to the
    sealing key
    Provisioning, image  ------------------->   install, then boot (BootManager)
                         <-------------------   InstallReceipt (signed by the identity key: what
                                                was stored, and the measured boot of the image)
    verify_receipt(), verify_measurement()

Verification raises (:class:`VerificationFailed`, :class:`InvalidInput`), never returns a bool, does
no I/O and takes the time as an argument.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.x509.oid import AttributeOID, NameOID

from fabtrust.crypto import der
from fabtrust.crypto.canonical import canonical_json, parse_canonical
from fabtrust.crypto.encoding import b64, unb64
from fabtrust.crypto.keys import (
    KeyType,
    KeyUsage,
    PublicKey,
    check_usage,
    key_id,
    key_type_of,
    load_public_key,
    spki_der,
    supported_public_key,
    verify_signature,
    verify_with_key,
)
from fabtrust.errors import InvalidInput, VerificationFailed
from fabtrust.firmware.image import ImageVersion

#: Largest document :meth:`parse` accepts, in bytes (base64 makes a firmware image 4/3 larger).
MAX_DOCUMENT_BYTES = 256 * 1024
#: Most certificates in a birth chain or a device certificate chain.
MAX_CHAIN_LENGTH = 8
NONCE_BYTES = 32
_SHA256_BYTES = 32
_MAX_TEXT = 128

_CHIP_UID = re.compile(r"[0-9a-f]{16}")
# X.520 serialNumber is a PrintableString (RFC 5280 Appendix A.1, ub-serial-number 64).
_PRINTABLE_SERIAL = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]{1,64}")
_RFC3339_UTC = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_RFC3339_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

#: HPKE ``info`` prefix for the device secrets (RFC 9180 5.1); the chip UID follows it.
SECRETS_INFO_PREFIX = b"fabtrust device secrets v1|"


def secrets_info(chip_uid: str) -> bytes:
    """The HPKE ``info`` (RFC 9180 5.1) binding sealed device secrets to one chip."""
    check_chip_uid(chip_uid)
    return SECRETS_INFO_PREFIX + chip_uid.encode("ascii")


# -- field checks ---------------------------------------------------------------------------------


def check_chip_uid(value: object) -> str:
    """A chip UID is 16 lowercase hex characters (64 bits)."""
    if not isinstance(value, str) or not _CHIP_UID.fullmatch(value):
        raise InvalidInput("chip UID must be 16 lowercase hex characters")
    return value


def check_device_serial(value: object) -> str:
    if not isinstance(value, str) or not _PRINTABLE_SERIAL.fullmatch(value):
        raise InvalidInput("device serial must be 1 to 64 PrintableString characters")
    return value


def check_firmware_version(value: object) -> str:
    """An image version as ``major.minor.revision+build``, all four parts written (the form
    :class:`~fabtrust.firmware.image.ImageVersion` prints), so that one version has one spelling."""
    if not isinstance(value, str) or len(value) > 32:
        raise InvalidInput("firmware version must be major.minor.revision+build")
    if str(ImageVersion.parse(value)) != value:
        raise InvalidInput("firmware version must be written in full as major.minor.revision+build")
    return value


def _check_text(value: object, what: str) -> None:
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_TEXT or not value.isprintable():
        raise InvalidInput(f"{what} must be 1 to {_MAX_TEXT} printable characters")


def _check_bytes(value: object, what: str, *, size: int | None = None) -> None:
    if not isinstance(value, bytes) or not value:
        raise InvalidInput(f"{what} must be non-empty bytes")
    if size is not None and len(value) != size:
        raise InvalidInput(f"{what} must be {size} bytes")


def _check_chain(value: object, what: str) -> None:
    if not isinstance(value, tuple) or not 0 < len(value) <= MAX_CHAIN_LENGTH:
        raise InvalidInput(f"{what} must hold 1 to {MAX_CHAIN_LENGTH} certificates")
    for item in value:
        _check_bytes(item, f"{what} entry")


def rfc3339_utc(moment: datetime) -> str:
    """``moment`` as an RFC 3339 (section 5.6) UTC timestamp with whole seconds."""
    if moment.tzinfo is None:
        raise InvalidInput("time must be timezone-aware")
    return moment.astimezone(UTC).strftime(_RFC3339_FORMAT)


def _check_timestamp(value: object, what: str) -> None:
    if not isinstance(value, str) or not _RFC3339_UTC.fullmatch(value):
        raise InvalidInput(f"{what} must be an RFC 3339 UTC timestamp (YYYY-MM-DDTHH:MM:SSZ)")
    try:
        datetime.fromisoformat(value)  # the pattern matched: only the calendar is left to check
    except ValueError:
        raise InvalidInput(f"{what} is not a valid date and time") from None


def _aware(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise InvalidInput("time must be timezone-aware")
    return now.astimezone(UTC)


# -- generic encoding -----------------------------------------------------------------------------

_Encode = Callable[[Any], Any]
_Decode = Callable[[Any, str], Any]


def _decode_str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string")
    return value


def _decode_int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f"{what} must be an integer")
    return value


def _decode_bytes(value: Any, what: str) -> bytes:
    # unb64 lets a non-ASCII string through to base64's ValueError; refuse it here first.
    if isinstance(value, str) and not value.isascii():
        raise InvalidInput(f"{what} is not valid base64")
    return unb64(value, what)


def _decode_bytes_seq(value: Any, what: str) -> tuple[bytes, ...]:
    if not isinstance(value, list):
        raise InvalidInput(f"{what} must be an array of base64 strings")
    return tuple(_decode_bytes(item, f"{what} entry") for item in value)


# Codec per annotation string (the module uses postponed annotations, so field types are strings).
_CODECS: dict[str, tuple[_Encode, _Decode]] = {
    "str": (lambda v: v, _decode_str),
    "int": (lambda v: v, _decode_int),
    "bytes": (b64, _decode_bytes),
    "tuple[bytes, ...]": (lambda v: [b64(item) for item in v], _decode_bytes_seq),
}


_CODECS_OF: dict[type, dict[str, tuple[_Encode, _Decode]]] = {}


def _codecs(cls: type) -> dict[str, tuple[_Encode, _Decode]]:
    codecs = _CODECS_OF.get(cls)
    if codecs is None:  # once per document class
        codecs = _CODECS_OF[cls] = {field.name: _CODECS[str(field.type)] for field in dataclasses.fields(cls)}
    return codecs


def _encode(document: object, fmt: str, *, without: str | None = None) -> bytes:
    obj: dict[str, Any] = {"format": fmt}
    for name, (encode, _) in _codecs(type(document)).items():
        if name != without:
            obj[name] = encode(getattr(document, name))
    return canonical_json(obj)


def _decode(raw: bytes, fmt: str, cls: type) -> dict[str, Any]:
    """Members of a ``fmt`` document, decoded to field values; the dataclass checks ranges."""
    if not isinstance(raw, bytes):
        raise InvalidInput("document must be bytes")
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise InvalidInput(f"document is larger than {MAX_DOCUMENT_BYTES} bytes")
    obj = parse_canonical(raw)
    if not isinstance(obj, dict):
        raise InvalidInput("document must be a JSON object")
    if obj.get("format") != fmt:
        raise InvalidInput(f"document is not a {fmt} document")
    codecs = _codecs(cls)
    unknown = sorted(set(obj) - set(codecs) - {"format"})
    if unknown:
        raise InvalidInput(f"{fmt} document has unknown member {unknown[0]!r}")
    missing = sorted(set(codecs) - set(obj))
    if missing:
        raise InvalidInput(f"{fmt} document lacks member {missing[0]!r}")
    return {name: decode(obj[name], name) for name, (_, decode) in codecs.items()}


# -- documents ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Challenge:
    """Station -> device: prove you are a genuine chip, and bind a new identity key to this nonce."""

    FORMAT: ClassVar[str] = "fabtrust.genuineness-challenge/v1"

    nonce: bytes
    station: str
    order: str
    issued_at: str

    def __post_init__(self) -> None:
        _check_bytes(self.nonce, "nonce", size=NONCE_BYTES)
        _check_text(self.station, "station")
        _check_text(self.order, "order")
        _check_timestamp(self.issued_at, "issued_at")

    @classmethod
    def new(cls, station: str, order: str, now: datetime) -> Challenge:
        """A challenge with a fresh 32-byte nonce from the operating system's CSPRNG."""
        return cls(nonce=os.urandom(NONCE_BYTES), station=station, order=order, issued_at=rfc3339_utc(now))

    def to_json(self) -> bytes:
        return _encode(self, self.FORMAT)

    @classmethod
    def parse(cls, raw: bytes) -> Challenge:
        return cls(**_decode(raw, cls.FORMAT, cls))


@dataclass(frozen=True)
class GenuinenessResponse:
    """Device -> station: the chip's birth chain, a CSR for its new identity key and its new X25519
    sealing key, signed by the chip's birth key over :meth:`signed_payload`.

    ``birth_chain`` is DER: the chip's birth certificate first, then the vendor's intermediates;
    the vendor root is the station's trust anchor and is not sent.
    """

    FORMAT: ClassVar[str] = "fabtrust.genuineness-response/v1"

    chip_uid: str
    nonce: bytes
    csr: bytes
    sealing_key: bytes
    birth_chain: tuple[bytes, ...]
    signature: bytes

    def __post_init__(self) -> None:
        check_chip_uid(self.chip_uid)
        _check_bytes(self.nonce, "nonce", size=NONCE_BYTES)
        _check_bytes(self.csr, "csr")
        _check_bytes(self.sealing_key, "sealing_key")
        _check_chain(self.birth_chain, "birth_chain")
        _check_bytes(self.signature, "signature")

    def signed_payload(self) -> bytes:
        """Canonical JSON (RFC 8785) of this document without its ``signature`` member."""
        parsed: bytes | None = self.__dict__.get("_signed_payload")
        return parsed if parsed is not None else _encode(self, self.FORMAT, without="signature")

    def to_json(self) -> bytes:
        return _encode(self, self.FORMAT)

    @classmethod
    def parse(cls, raw: bytes) -> GenuinenessResponse:
        response = cls(**_decode(raw, cls.FORMAT, cls))
        # ``raw`` is canonical, and ``signature`` sorts last among the members: the signed payload
        # is ``raw`` without its last member, which a station need not encode again
        cut = raw.rfind(b',"signature":"')
        if cut > 0 and raw.endswith(b'"}'):
            object.__setattr__(response, "_signed_payload", raw[:cut] + b"}")
        return response


@dataclass(frozen=True)
class Provisioning:
    """Station -> device: the device's certificate chain, its secrets sealed to its sealing key
    (HPKE, RFC 9180, ``info`` = :func:`secrets_info`), the SHA-256 of the firmware image the
    station programs, and the OEM key hash to burn into OTP.

    The image itself is not in the document: it is the same for every device of an order, is
    programmed alongside (a gang programmer writes one image to all its sockets), and may be
    megabytes; the device checks it against ``image_digest`` before writing anything."""

    FORMAT: ClassVar[str] = "fabtrust.device-provisioning/v1"

    device_serial: str
    certificate_chain: tuple[bytes, ...]
    sealed_secrets: bytes
    image_digest: bytes
    oem_key_hash: bytes

    def __post_init__(self) -> None:
        check_device_serial(self.device_serial)
        _check_chain(self.certificate_chain, "certificate_chain")
        _check_bytes(self.sealed_secrets, "sealed_secrets")
        _check_bytes(self.image_digest, "image_digest", size=_SHA256_BYTES)
        _check_bytes(self.oem_key_hash, "oem_key_hash", size=_SHA256_BYTES)

    def to_json(self) -> bytes:
        return _encode(self, self.FORMAT)

    @classmethod
    def parse(cls, raw: bytes) -> Provisioning:
        return cls(**_decode(raw, cls.FORMAT, cls))


@dataclass(frozen=True)
class InstallReceipt:
    """Device -> station: what the device installed and what it then booted, measured by the device
    itself and signed by its identity key over :meth:`signed_payload`.

    ``image_sha256`` is the SHA-256 of the image as stored (encrypted, as programmed);
    ``firmware_digest``, ``firmware_version`` and ``security_counter`` are the measured boot: the
    image's SHA256 TLV (header, *plaintext* body and protected TLVs, recomputed by the boot manager
    after decrypting), its version (``major.minor.revision+build``) and its SEC_CNT. ``counter`` is the
    device's monotonic provisioning counter after this install. A device whose image does not boot
    sends no receipt."""

    FORMAT: ClassVar[str] = "fabtrust.install-receipt/v2"

    chip_uid: str
    device_serial: str
    certificate_sha256: bytes
    image_sha256: bytes
    secrets_sha256: bytes
    firmware_digest: bytes
    firmware_version: str
    security_counter: int
    counter: int
    signature: bytes

    def __post_init__(self) -> None:
        check_chip_uid(self.chip_uid)
        check_device_serial(self.device_serial)
        _check_bytes(self.certificate_sha256, "certificate_sha256", size=_SHA256_BYTES)
        _check_bytes(self.image_sha256, "image_sha256", size=_SHA256_BYTES)
        _check_bytes(self.secrets_sha256, "secrets_sha256", size=_SHA256_BYTES)
        _check_bytes(self.firmware_digest, "firmware_digest", size=_SHA256_BYTES)
        check_firmware_version(self.firmware_version)
        if (
            not isinstance(self.security_counter, int)
            or isinstance(self.security_counter, bool)
            or not 0 <= self.security_counter < 2**32
        ):
            raise InvalidInput("security_counter must be an integer from 0 to 2**32 - 1")
        if (
            not isinstance(self.counter, int)
            or isinstance(self.counter, bool)
            or not 0 < self.counter < 2**32
        ):
            raise InvalidInput("counter must be an integer from 1 to 2**32 - 1")
        _check_bytes(self.signature, "signature")

    def signed_payload(self) -> bytes:
        """Canonical JSON (RFC 8785) of this document without its ``signature`` member."""
        return _encode(self, self.FORMAT, without="signature")

    def to_json(self) -> bytes:
        return _encode(self, self.FORMAT)

    @classmethod
    def parse(cls, raw: bytes) -> InstallReceipt:
        return cls(**_decode(raw, cls.FORMAT, cls))


for _cls in (Challenge, GenuinenessResponse, Provisioning, InstallReceipt):
    _codecs(_cls)  # every field type has a codec (a KeyError here is a programming error)


# -- station-side verification (pure) -------------------------------------------------------------


@dataclass(frozen=True)
class GenuineChip:
    """What :func:`verify_genuineness` established about a chip."""

    chip_uid: str
    vendor: str
    birth_key_id: str
    csr: x509.CertificateSigningRequest
    csr_key: PublicKey  # the request's public key (a signing key of a type fabtrust supports)
    csr_spki: bytes  # csr_key as cryptography encodes it (DER SubjectPublicKeyInfo)
    sealing_public: x25519.X25519PublicKey  # the chip's new sealing key, checked to be X25519

    @property
    def sealing_key(self) -> bytes:
        """The sealing key as DER SubjectPublicKeyInfo, as the chip sent it."""
        return spki_der(self.sealing_public)


def _spki(certificate: x509.Certificate) -> bytes:
    return certificate.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def subject_serial_number(name: x509.Name) -> str | None:
    """The one serialNumber attribute (X.520) of a name, as PrintableString or UTF8String, or None
    if it has none, several or one of another type: :func:`fabtrust.crypto.der.serial_number`."""
    value = der.serial_number(name.public_bytes())
    return None if value is None else value.decode("utf-8")


def load_certificates(chain: Sequence[bytes], what: str) -> list[x509.Certificate]:
    certificates = []
    for position, data in enumerate(chain):
        try:
            certificates.append(x509.load_der_x509_certificate(data))
        except ValueError:
            raise InvalidInput(f"{what} entry {position} is not a DER certificate") from None
    return certificates


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True if ``issuer`` is a CA certificate (RFC 5280 6.1.4 (k)) whose key signed ``child``
    under ``child``'s issuer name."""
    try:
        constraints = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca:
        return False
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _check_validity(certificate: x509.Certificate, now: datetime, what: str) -> None:
    # RFC 5280 6.1.3 (a)(2): the certificate validity period includes the current time.
    if now < certificate.not_valid_before_utc:
        raise VerificationFailed(f"{what} is not yet valid at {rfc3339_utc(now)}")
    if now > certificate.not_valid_after_utc:
        raise VerificationFailed(f"{what} expired before {rfc3339_utc(now)}")


@functools.lru_cache(maxsize=64)  # anchors are few and long-lived; certificates hash by their DER
def _vendor_name(anchor: x509.Certificate) -> str:
    for oid in (NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME):
        values = anchor.subject.get_attributes_for_oid(oid)
        if values and isinstance(values[0].value, str):
            return values[0].value
    raise InvalidInput("trust anchor names no organisation or common name")


def verify_genuineness(
    response: GenuinenessResponse,
    challenge: Challenge,
    anchors: Sequence[x509.Certificate],
    now: datetime,
) -> GenuineChip:
    """Check that ``response`` answers ``challenge`` from a genuine chip of an accepted vendor.

    Raises :class:`VerificationFailed` or :class:`InvalidInput` naming the first check that fails.
    A perfect clone (a chip whose birth key was extracted) passes: genuineness proves possession of
    a vendor-certified key, and duplicates of one chip UID are found by the station's records.
    """
    if not anchors:
        raise InvalidInput("no accepted silicon vendors (trust anchors) given")
    now = _aware(now)
    if not hmac.compare_digest(response.nonce, challenge.nonce):
        raise VerificationFailed("response does not answer this challenge (replayed or foreign response)")

    chain = load_certificates(response.birth_chain, "birth chain")
    for position in range(len(chain) - 1):
        if not _issued_by(chain[position], chain[position + 1]):
            raise VerificationFailed(f"birth certificate chain is broken after entry {position}")
    anchor = next((a for a in anchors if _issued_by(chain[-1], a)), None)
    if anchor is None:
        raise VerificationFailed("chip is not from an accepted silicon vendor")
    for position, certificate in enumerate(chain):
        _check_validity(certificate, now, f"birth chain entry {position}")
    _check_validity(anchor, now, "the silicon vendor's root certificate")

    # the subject's serialNumber and the key's SPKI read from the DER cryptography has just
    # loaded (building an x509.Name and re-encoding the key cost more than they check)
    birth = chain[0]
    uid = response.chip_uid.encode("ascii")
    birth_subject, birth_spki = der.certificate_fields(response.birth_chain[0])
    if der.serial_number(birth_subject) != uid:
        raise VerificationFailed("birth certificate is for another chip UID")
    birth_key = birth.public_key()
    try:
        verify_with_key(supported_public_key(birth_key), response.signed_payload(), response.signature)
    except VerificationFailed:
        raise VerificationFailed(
            "response signature does not verify under the chip's birth key (forged or tampered)"
        ) from None

    try:
        csr = x509.load_der_x509_csr(response.csr)
    except ValueError:
        raise InvalidInput("certificate request is not a DER PKCS#10 request") from None
    if not csr.is_signature_valid:
        raise VerificationFailed("certificate request's self-signature does not verify")
    csr_key = supported_public_key(csr.public_key())
    check_usage(key_type_of(csr_key), KeyUsage.SIGN)
    # RFC 2986 4.1 attributes / RFC 2985 5.4.1 challengePassword: here it carries the challenge
    # nonce in lowercase hex, binding the new identity key to this one challenge.
    try:
        password = csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value
    except x509.AttributeNotFound:
        password = b""
    if not hmac.compare_digest(password, challenge.nonce.hex().encode("ascii")):
        raise VerificationFailed("certificate request is not bound to this challenge")
    csr_subject, csr_spki = der.request_fields(response.csr)
    if der.serial_number(csr_subject) != uid:
        raise VerificationFailed("certificate request is for another chip UID")

    sealing_public = load_public_key(response.sealing_key)
    if key_type_of(sealing_public) is not KeyType.X25519:
        raise InvalidInput("sealing key is not an X25519 public key")

    return GenuineChip(
        chip_uid=response.chip_uid,
        vendor=_vendor_name(anchor),
        birth_key_id=key_id(der.key_spki(birth_spki, supported_public_key(birth_key))),
        csr=csr,
        csr_key=csr_key,
        csr_spki=der.key_spki(csr_spki, csr_key),
        sealing_public=cast(x25519.X25519PublicKey, sealing_public),
    )


def verify_receipt(
    receipt: InstallReceipt, certificate: x509.Certificate, expected_image_sha256: bytes
) -> None:
    """Check a device's install receipt against the certificate issued to it and the image sent.

    The receipt's ``chip_uid`` and ``counter`` are the station's to compare with its own record, its
    measured boot is :func:`verify_measurement`'s to compare with the release.
    """
    try:
        verify_signature(_spki(certificate), receipt.signed_payload(), receipt.signature)
    except VerificationFailed:
        raise VerificationFailed(
            "install receipt signature does not verify under the device certificate's key"
        ) from None
    der = certificate.public_bytes(serialization.Encoding.DER)
    if not hmac.compare_digest(receipt.certificate_sha256, hashlib.sha256(der).digest()):
        raise VerificationFailed("install receipt is for another certificate")
    if subject_serial_number(certificate.subject) != receipt.device_serial:
        raise VerificationFailed("install receipt names another device serial than the certificate")
    if not hmac.compare_digest(receipt.image_sha256, expected_image_sha256):
        raise VerificationFailed("device stored another firmware image than expected")


@dataclass(frozen=True)
class ExpectedFirmware:
    """What a device of an order must have booted: the release's image digest (SHA256 TLV), version
    and security counter."""

    digest: bytes
    version: str
    security_counter: int

    def __post_init__(self) -> None:
        _check_bytes(self.digest, "firmware digest", size=_SHA256_BYTES)
        if not isinstance(self.version, str):
            raise InvalidInput("firmware version must be a string")
        ImageVersion.parse(self.version)
        if not isinstance(self.security_counter, int) or isinstance(self.security_counter, bool):
            raise InvalidInput("security counter must be an integer")


def verify_measurement(receipt: InstallReceipt, expected: ExpectedFirmware) -> None:
    """Check the boot a receipt reports against the release the device was programmed with.

    Call it after :func:`verify_receipt` (which establishes that the device signed the receipt).
    Raises :class:`VerificationFailed` naming the first measurement that differs."""
    if not hmac.compare_digest(receipt.firmware_digest, expected.digest):
        raise VerificationFailed(
            f"device booted firmware with digest {receipt.firmware_digest.hex()[:16]}…, "
            f"not the release's {expected.digest.hex()[:16]}…"
        )
    if ImageVersion.parse(receipt.firmware_version) != ImageVersion.parse(expected.version):
        raise VerificationFailed(
            f"device booted firmware version {receipt.firmware_version}, not the release's {expected.version}"
        )
    if receipt.security_counter != expected.security_counter:
        raise VerificationFailed(
            f"device booted firmware with security counter {receipt.security_counter}, "
            f"not the release's {expected.security_counter}"
        )


__all__ = [
    "MAX_CHAIN_LENGTH",
    "MAX_DOCUMENT_BYTES",
    "NONCE_BYTES",
    "SECRETS_INFO_PREFIX",
    "Challenge",
    "ExpectedFirmware",
    "GenuineChip",
    "GenuinenessResponse",
    "InstallReceipt",
    "Provisioning",
    "check_chip_uid",
    "check_device_serial",
    "check_firmware_version",
    "load_certificates",
    "rfc3339_utc",
    "secrets_info",
    "subject_serial_number",
    "verify_genuineness",
    "verify_measurement",
    "verify_receipt",
]
