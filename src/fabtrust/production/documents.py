"""The documents a production run exchanges, as pure values: built, signed, sealed, parsed and
verified over bytes with the time passed in. No store, no key store (signing is a callback).

- ``fabtrust.station-enrollment/v1`` (station → OEM): signed by the station identity key; CSR.
- ``fabtrust.station-certificate/v1`` (OEM → station): public data; pinned at install.
- ``fabtrust.issuing-request/v1`` (station → OEM): DSSE, station identity key.
- ``fabtrust.production-package/v2`` (OEM → one station): DSSE by the OEM package signer, then
  HPKE-sealed (RFC 9180) to the station's sealing key as ``fabtrust.sealed-package/v1``. It carries
  the order's published firmware release as its encrypted MCUboot image, and in the order terms what
  a device booting it must measure (v2; v1 carried a placeholder image and no measurement).
- ``fabtrust.production-record/v1`` (station → OEM): DSSE, station identity key; logged.
- ``fabtrust.station-export/v1`` (station → OEM): records, receipts (device-signed, with the
  measured boot), the measurement the station recorded, signed checkpoint, proofs.

Every document carries its type and version; unknown ones, unknown fields and malformed values are
refused (fail closed). Documents are canonical JSON (RFC 8785).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fabtrust.clock import parse_rfc3339, rfc3339
from fabtrust.crypto import dsse
from fabtrust.crypto.canonical import canonical_json, parse_canonical
from fabtrust.crypto.encoding import b64, unb64
from fabtrust.crypto.keys import key_id, verify_signature
from fabtrust.errors import InvalidInput, PolicyViolation, VerificationFailed
from fabtrust.firmware.image import Image, ImageVersion

MAX_DOCUMENT = 64 * 1024 * 1024  # a package carries a firmware image
MAX_SMALL_DOCUMENT = 256 * 1024

ENROLLMENT = "fabtrust.station-enrollment/v1"
STATION_CERTIFICATE = "fabtrust.station-certificate/v1"
ISSUING_REQUEST = "fabtrust.issuing-request/v1"
PACKAGE = "fabtrust.production-package/v2"
SEALED_PACKAGE = "fabtrust.sealed-package/v1"
RECORD = "fabtrust.production-record/v1"
EXPORT = "fabtrust.station-export/v1"
PAYLOAD_TYPE = "application/vnd.fabtrust+json"

Signer = Callable[[bytes], bytes]
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_U32_MAX = 0xFFFFFFFF


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_document(
    raw: bytes, fmt: str, fields: Sequence[str], *, limit: int = MAX_SMALL_DOCUMENT
) -> dict[str, Any]:
    """Canonical JSON of one known format with exactly these fields (plus ``format``)."""
    if not isinstance(raw, bytes | bytearray):
        raise InvalidInput(f"{fmt} must be bytes")
    if len(raw) > limit:
        raise InvalidInput(f"{fmt} document is larger than {limit} bytes")
    try:
        doc = parse_canonical(bytes(raw))
    except InvalidInput:
        raise InvalidInput(f"not a {fmt} document (malformed JSON)") from None
    if not isinstance(doc, dict):
        raise InvalidInput(f"not a {fmt} document")
    if doc.get("format") != fmt:
        found = doc.get("format")
        raise InvalidInput(
            f"expected a {fmt} document, got {found!r}" if isinstance(found, str) else f"not a {fmt} document"
        )
    wanted = {"format", *fields}
    if set(doc) != wanted:
        extra, missing = sorted(set(doc) - wanted), sorted(wanted - set(doc))
        raise InvalidInput(f"{fmt}: unknown fields {extra}" if extra else f"{fmt}: missing fields {missing}")
    return doc


def text(doc: Mapping[str, Any], name: str, *, limit: int = 255) -> str:
    value = doc.get(name)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InvalidInput(f"{name} must be a non-empty string of at most {limit} characters")
    return value


def integer(doc: Mapping[str, Any], name: str, *, minimum: int = 0) -> int:
    value = doc.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidInput(f"{name} must be an integer of at least {minimum}")
    return value


def sha256_text(doc: Mapping[str, Any], name: str) -> str:
    """A SHA-256 digest as 64 lower-case hexadecimal digits."""
    value = doc.get(name)
    if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value):
        raise InvalidInput(f"{name} must be a SHA-256 digest: 64 lower-case hexadecimal digits")
    return value


def moment(doc: Mapping[str, Any], name: str) -> datetime:
    try:
        return parse_rfc3339(text(doc, name))
    except (InvalidInput, ValueError):
        raise InvalidInput(f"{name} must be an RFC 3339 UTC time") from None


def blobs(doc: Mapping[str, Any], name: str, *, limit: int = 16) -> tuple[bytes, ...]:
    value = doc.get(name)
    if not isinstance(value, list) or len(value) > limit:
        raise InvalidInput(f"{name} must be a list of at most {limit} base64 values")
    return tuple(unb64(v, name) for v in value)


def signed_envelope(payload: Mapping[str, Any], keyid: str, sign: Signer) -> bytes:
    """A DSSE envelope (JSON) over the canonical payload, signed by one key."""
    return dsse.sign(PAYLOAD_TYPE, canonical_json(payload), [(keyid, sign)]).to_json()


def open_envelope(raw: bytes, signer_spki: bytes, what: str, *, limit: int = MAX_SMALL_DOCUMENT) -> bytes:
    """The payload of a DSSE envelope signed by this key; VerificationFailed otherwise."""
    if len(raw) > limit:
        raise InvalidInput(f"{what} is larger than {limit} bytes")
    envelope = dsse.Envelope.parse(raw)
    return dsse.verify(envelope, PAYLOAD_TYPE, {key_id(signer_spki): signer_spki})


# -- station enrollment ------------------------------------------------------------------------


@dataclass(frozen=True)
class Enrollment:
    """A station asking to be certified: its identity CSR, its sealing key and its log key,
    bound together by the identity key's signature."""

    station_id: str
    csr: bytes  # DER PKCS#10 of the identity key
    sealing_key: bytes  # SPKI DER
    log_vkey: str  # C2SP note verifier key of the station's audit log
    signature: bytes

    def _body(self) -> dict[str, Any]:
        return {
            "format": ENROLLMENT,
            "station_id": self.station_id,
            "csr": b64(self.csr),
            "sealing_key": b64(self.sealing_key),
            "log_vkey": self.log_vkey,
        }

    @classmethod
    def make(cls, station_id: str, csr: bytes, sealing_key: bytes, log_vkey: str, sign: Signer) -> Enrollment:
        unsigned = cls(station_id, csr, sealing_key, log_vkey, b"")
        return cls(station_id, csr, sealing_key, log_vkey, sign(canonical_json(unsigned._body())))

    def to_json(self) -> bytes:
        return canonical_json({**self._body(), "signature": b64(self.signature)})

    @classmethod
    def parse(cls, raw: bytes) -> Enrollment:
        doc = parse_document(raw, ENROLLMENT, ("station_id", "csr", "sealing_key", "log_vkey", "signature"))
        return cls(
            text(doc, "station_id", limit=64),
            unb64(doc["csr"], "csr"),
            unb64(doc["sealing_key"], "sealing_key"),
            text(doc, "log_vkey"),
            unb64(doc["signature"], "signature"),
        )

    def verify(self, identity_spki: bytes) -> None:
        """The identity key (the CSR's) signed the enrollment: the sealing and log keys are its."""
        verify_signature(identity_spki, canonical_json(self._body()), self.signature)


@dataclass(frozen=True)
class StationCertificate:
    """The OEM's answer to an enrollment: the station's certificate chain and the OEM's package
    signing key, which the station pins."""

    station_id: str
    chain: tuple[bytes, ...]  # DER, station certificate first, root last
    oem_signer: bytes  # SPKI DER

    def to_json(self) -> bytes:
        return canonical_json(
            {
                "format": STATION_CERTIFICATE,
                "station_id": self.station_id,
                "chain": [b64(c) for c in self.chain],
                "oem_signer": b64(self.oem_signer),
            }
        )

    @classmethod
    def parse(cls, raw: bytes) -> StationCertificate:
        doc = parse_document(raw, STATION_CERTIFICATE, ("station_id", "chain", "oem_signer"))
        chain = blobs(doc, "chain")
        if not chain:
            raise InvalidInput("chain must hold the station certificate")
        return cls(text(doc, "station_id", limit=64), chain, unb64(doc["oem_signer"], "oem_signer"))


# -- orders and packages -----------------------------------------------------------------------


@dataclass(frozen=True)
class OrderTerms:
    """What an order commits a station to: product, release, quota, window; and what the release's
    image is: its SHA-256 as programmed (``image_sha256``, the encrypted MCUboot image) and what a
    device that boots it measures (``firmware_digest``, the image's SHA256 TLV over the plaintext;
    ``release_version``; ``security_counter``), so a station checks receipts offline."""

    order_id: str
    product: str
    release_id: str
    release_version: str
    image_sha256: str
    firmware_digest: str
    security_counter: int
    stations: tuple[str, ...]
    quota: int
    not_before: datetime
    not_after: datetime

    _FIELDS = (
        "order_id",
        "product",
        "release_id",
        "release_version",
        "image_sha256",
        "firmware_digest",
        "security_counter",
        "stations",
        "quota",
        "not_before",
        "not_after",
    )

    def to_doc(self) -> dict[str, Any]:
        return {
            "order_id": self.order_id,
            "product": self.product,
            "release_id": self.release_id,
            "release_version": self.release_version,
            "image_sha256": self.image_sha256,
            "firmware_digest": self.firmware_digest,
            "security_counter": self.security_counter,
            "stations": list(self.stations),
            "quota": self.quota,
            "not_before": rfc3339(self.not_before),
            "not_after": rfc3339(self.not_after),
        }

    @classmethod
    def from_doc(cls, doc: object) -> OrderTerms:
        if not isinstance(doc, dict) or set(doc) != set(cls._FIELDS):
            raise InvalidInput("order terms are malformed")
        stations = doc["stations"]
        if (
            not isinstance(stations, list)
            or not stations
            or not all(isinstance(s, str) and s for s in stations)
        ):
            raise InvalidInput("order stations must be a non-empty list of station ids")
        version = text(doc, "release_version", limit=40)
        ImageVersion.parse(version)
        counter = integer(doc, "security_counter")
        if counter > _U32_MAX:
            raise InvalidInput(f"security_counter must be at most {_U32_MAX}")
        return cls(
            text(doc, "order_id", limit=64),
            text(doc, "product", limit=40),
            text(doc, "release_id", limit=96),
            version,
            sha256_text(doc, "image_sha256"),
            sha256_text(doc, "firmware_digest"),
            counter,
            tuple(stations),
            integer(doc, "quota", minimum=1),
            moment(doc, "not_before"),
            moment(doc, "not_after"),
        )

    def check_image(self, image: bytes) -> None:
        """``image`` is this order's release: its SHA-256, and the version, security counter and
        SHA256 TLV its MCUboot header and TLVs declare (read, not verified: the image is encrypted and
        the device verifies it when it boots). VerificationFailed otherwise."""
        if sha256_hex(image) != self.image_sha256:
            raise VerificationFailed("the package's image is not the order's release (digest differs)")
        try:
            parsed = Image.parse(image)
        except InvalidInput as exc:
            raise VerificationFailed(f"the package's image is not an MCUboot image ({exc.message})") from None
        if (
            parsed.header.version != ImageVersion.parse(self.release_version)
            or parsed.security_counter != self.security_counter
            or parsed.sha256.hex() != self.firmware_digest
        ):
            raise VerificationFailed(
                "the package's image does not declare the order's release version, security counter "
                "and digest"
            )

    def check_window(self, now: datetime) -> None:
        if now < self.not_before:
            raise PolicyViolation(
                f"order {self.order_id} has not started (its window opens {rfc3339(self.not_before)})"
            )
        if now > self.not_after:
            raise PolicyViolation(
                f"order {self.order_id} has ended (its window closed {rfc3339(self.not_after)})"
            )


@dataclass(frozen=True)
class Package:
    """Everything one station needs for one order. Sealed to that station; never stored open."""

    package_id: str
    station_id: str
    order: OrderTerms
    station_quota: int
    issuing_ca: str
    ca_bundle: bytes  # fabtrust.ca-bundle/v1, the issuing CA first
    vendor_anchors: tuple[bytes, ...]  # DER roots of accepted silicon vendors
    # Device-class secrets, re-sealed by the station to each device: ``image-key``, the product's
    # image decryption key. The station sees them (the package is sealed to it); it is trusted with
    # them as it is with the issuing key, and every device it seals them to is in its log.
    secrets: Mapping[str, bytes]
    image: bytes  # the release's MCUboot image, encrypted to the class key: programmed as it is
    oem_key_hash: bytes  # SHA-256 of the OEM firmware key, burnt into each device
    issued_at: datetime

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": PACKAGE,
            "package_id": self.package_id,
            "station_id": self.station_id,
            "order": self.order.to_doc(),
            "station_quota": self.station_quota,
            "issuing_ca": self.issuing_ca,
            "ca_bundle": b64(self.ca_bundle),
            "vendor_anchors": [b64(a) for a in self.vendor_anchors],
            "secrets": {k: b64(v) for k, v in sorted(self.secrets.items())},
            "image": b64(self.image),
            "oem_key_hash": b64(self.oem_key_hash),
            "issued_at": rfc3339(self.issued_at),
        }

    @classmethod
    def from_payload(cls, payload: bytes) -> Package:
        fields = (
            "package_id",
            "station_id",
            "order",
            "station_quota",
            "issuing_ca",
            "ca_bundle",
            "vendor_anchors",
            "secrets",
            "image",
            "oem_key_hash",
            "issued_at",
        )
        doc = parse_document(payload, PACKAGE, fields, limit=MAX_DOCUMENT)
        secrets = doc["secrets"]
        if not isinstance(secrets, dict) or len(secrets) > 32:
            raise InvalidInput("secrets must be an object of at most 32 named values")
        image = unb64(doc["image"], "image")
        order = OrderTerms.from_doc(doc["order"])
        order.check_image(image)
        return cls(
            text(doc, "package_id", limit=64),
            text(doc, "station_id", limit=64),
            order,
            integer(doc, "station_quota", minimum=1),
            text(doc, "issuing_ca", limit=64),
            unb64(doc["ca_bundle"], "ca_bundle"),
            blobs(doc, "vendor_anchors"),
            {str(k): unb64(v, f"secret {k}") for k, v in secrets.items()},
            image,
            unb64(doc["oem_key_hash"], "oem_key_hash"),
            moment(doc, "issued_at"),
        )


def package_info(station_id: str, package_id: str) -> bytes:
    """HPKE info (RFC 9180 5.1): binds a sealed package to its station and id."""
    return f"{SEALED_PACKAGE}|{station_id}|{package_id}".encode()


@dataclass(frozen=True)
class SealedPackage:
    package_id: str
    station_id: str
    sealed: bytes  # HPKE(enc || ct) of the DSSE envelope

    def to_json(self) -> bytes:
        return canonical_json(
            {
                "format": SEALED_PACKAGE,
                "package_id": self.package_id,
                "station_id": self.station_id,
                "sealed": b64(self.sealed),
            }
        )

    @classmethod
    def parse(cls, raw: bytes) -> SealedPackage:
        doc = parse_document(raw, SEALED_PACKAGE, ("package_id", "station_id", "sealed"), limit=MAX_DOCUMENT)
        return cls(
            text(doc, "package_id", limit=64),
            text(doc, "station_id", limit=64),
            unb64(doc["sealed"], "sealed"),
        )


# -- production records ------------------------------------------------------------------------


@dataclass(frozen=True)
class ProductionRecord:
    """What a station signs for each device it provisions (and logs)."""

    station_id: str
    order_id: str
    package_id: str
    seq: int
    chip_uid: str
    vendor: str
    birth_key_id: str
    device_serial: str
    certificate: bytes  # DER
    image_sha256: str
    provisioned_at: datetime

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": RECORD,
            "station_id": self.station_id,
            "order_id": self.order_id,
            "package_id": self.package_id,
            "seq": self.seq,
            "chip_uid": self.chip_uid,
            "vendor": self.vendor,
            "birth_key_id": self.birth_key_id,
            "device_serial": self.device_serial,
            "certificate": b64(self.certificate),
            "image_sha256": self.image_sha256,
            "provisioned_at": rfc3339(self.provisioned_at),
        }

    @classmethod
    def from_payload(cls, payload: bytes) -> ProductionRecord:
        fields = (
            "station_id",
            "order_id",
            "package_id",
            "seq",
            "chip_uid",
            "vendor",
            "birth_key_id",
            "device_serial",
            "certificate",
            "image_sha256",
            "provisioned_at",
        )
        doc = parse_document(payload, RECORD, fields)
        return cls(
            text(doc, "station_id", limit=64),
            text(doc, "order_id", limit=64),
            text(doc, "package_id", limit=64),
            integer(doc, "seq", minimum=1),
            text(doc, "chip_uid", limit=64),
            text(doc, "vendor"),
            text(doc, "birth_key_id", limit=64),
            text(doc, "device_serial", limit=64),
            unb64(doc["certificate"], "certificate"),
            text(doc, "image_sha256", limit=64),
            moment(doc, "provisioned_at"),
        )
