"""A test-only station for the device tests: a throwaway issuing CA, a throwaway OEM firmware key and
class key with one signed and encrypted MCUboot image, and the documents a real station
(``fabtrust.production``) would send, built with cryptography's builders."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fabtrust.crypto import hpke
from fabtrust.crypto.canonical import canonical_json
from fabtrust.crypto.encoding import b64
from fabtrust.device.agent import DeviceAgent
from fabtrust.device.element import SecureElement
from fabtrust.device.protocol import (
    Challenge,
    GenuineChip,
    GenuinenessResponse,
    Provisioning,
    secrets_info,
    verify_genuineness,
)
from fabtrust.device.vendor import SiliconVendor
from fabtrust.firmware.image import key_hash, sign_image, verify_image

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
#: The OEM's firmware (image signing) key and the product's class (image decryption) key.
FIRMWARE_KEY = ec.generate_private_key(ec.SECP256R1())
CLASS_KEY = ec.generate_private_key(ec.SECP256R1())
OEM_KEY_HASH = key_hash(FIRMWARE_KEY.public_key())
IMAGE_VERSION = "1.2.3+0"
IMAGE_SECURITY_COUNTER = 3


def signed_image(
    body: bytes, *, version: str = IMAGE_VERSION, security_counter: int = IMAGE_SECURITY_COUNTER
) -> bytes:
    """An MCUboot image as a published release carries it: signed by the firmware key (full public
    key in the image), encrypted to the class key."""
    return sign_image(
        body,
        version=version,
        security_counter=security_counter,
        signing_key=FIRMWARE_KEY,
        encrypt_to=CLASS_KEY.public_key(),
        embed_public_key=True,
    )


IMAGE = signed_image(b"firmware image 1.2.3 " * 64)
#: The SHA256 TLV of IMAGE: what a device measures when it boots it.
IMAGE_DIGEST = verify_image(IMAGE, trusted_keys=[OEM_KEY_HASH], decryption_key=CLASS_KEY).digest
#: The device-class secrets as a station seals them: the image decryption key (PKCS#8 DER).
SECRETS = canonical_json(
    {
        "image-key": b64(
            CLASS_KEY.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    }
)
DEVICE_SERIAL = "SN-0001"


def der(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.DER)


@dataclass
class IssuingCa:
    """A throwaway CA standing in for the station's order-bound issuing key."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @classmethod
    def new(cls) -> IssuingCa:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test issuing CA")])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(NOW + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate)

    def issue(self, public_key: Any, device_serial: str) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, device_serial)]))
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(NOW + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )


def challenge(order: str = "order-1") -> Challenge:
    return Challenge.new("station-1", order, NOW)


def genuine(agent: DeviceAgent, vendor: SiliconVendor) -> GenuineChip:
    """Challenge the agent's chip and verify the answer, as a station does."""
    sent = challenge()
    response = GenuinenessResponse.parse(agent.answer(sent.to_json()))
    return verify_genuineness(response, sent, [vendor.root], NOW)


def provisioning_for(
    chip: GenuineChip,
    ca: IssuingCa,
    *,
    device_serial: str = DEVICE_SERIAL,
    public_key: Any = None,
    image: bytes = IMAGE,
    image_digest: bytes | None = None,
    sealed_secrets: bytes | None = None,
) -> tuple[Provisioning, x509.Certificate]:
    """The Provisioning document for a verified chip, and the device certificate inside it."""
    certificate = ca.issue(public_key if public_key is not None else chip.csr.public_key(), device_serial)
    document = Provisioning(
        device_serial=device_serial,
        certificate_chain=(der(certificate), der(ca.certificate)),
        sealed_secrets=(
            sealed_secrets
            if sealed_secrets is not None
            else hpke.seal(chip.sealing_key, SECRETS, secrets_info(chip.chip_uid))
        ),
        image_digest=image_digest if image_digest is not None else hashlib.sha256(image).digest(),
        oem_key_hash=OEM_KEY_HASH,
    )
    return document, certificate


def state_of(element: SecureElement) -> dict[str, Any]:
    """Everything an install could change, for "state unchanged" assertions."""
    return {
        "slots": element.slots(),
        "counters": {name: element.counter(name) for name in element.counter_names()},
        "otp": {name: element.otp(name) for name in element.otp_names()},
        "flash": {region: element.flash_read(region) for region in element.flash_regions()},
        "sealed": {name: element.sealed_blob(name) for name in element.sealed_names()},
    }
