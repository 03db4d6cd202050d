"""The device firmware's provisioning agent: answers a station's challenge, installs what the
station sends, keeping every key inside the secure element, and boots the programmed image once
(:class:`~fabtrust.device.boot.BootManager`) so that its install receipt reports the measured boot.

The agent holds no state of its own (firmware restarts); everything lives in the element. On any
refusal of the documents it raises a fabtrust error and leaves the element as it found it: every
check runs before the first write. The boot is the one check that can only come after writes (a
device boots from what its flash, OTP and sealed storage hold): an image that does not boot leaves
the image, the device-class secrets and the OEM key hash written, but no certificate chain and no
advanced provisioning counter, so the device is not provisioned, sends no receipt, raises the boot
manager's refusal, and can be programmed again (rework) with an image that boots.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from fabtrust.crypto.keys import KeyType
from fabtrust.device.element import BIRTH_SLOT, MAX_COUNTER, SLOT_USAGE, SecureElement
from fabtrust.device.protocol import (
    Challenge,
    GenuinenessResponse,
    InstallReceipt,
    Provisioning,
    load_certificates,
    secrets_info,
    subject_serial_number,
)
from fabtrust.errors import Conflict, InvalidInput, PolicyViolation, VerificationFailed

IDENTITY_SLOT = "identity"
SEALING_SLOT = "sealing"
CERTIFICATES_REGION = "certificates"
IMAGE_REGION = "image"
SECRETS_OBJECT = "device-secrets"
OEM_KEY_HASH_OTP = "oem-key-hash"
PROVISIONED_COUNTER = "provisioned"


def _pack_chain(chain: tuple[bytes, ...]) -> bytes:
    """Certificates as flash holds them: each DER prefixed by its 4-byte big-endian length."""
    return b"".join(len(der).to_bytes(4, "big") + der for der in chain)


def unpack_chain(data: bytes) -> tuple[bytes, ...]:
    """The inverse of the flash layout written by :meth:`DeviceAgent.install`."""
    chain: list[bytes] = []
    offset = 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise InvalidInput("stored certificate chain is truncated")
        size = int.from_bytes(data[offset : offset + 4], "big")
        offset += 4
        if size == 0 or offset + size > len(data):
            raise InvalidInput("stored certificate chain is truncated")
        chain.append(data[offset : offset + size])
        offset += size
    return tuple(chain)


class DeviceAgent:
    """Provisioning agent over one :class:`SecureElement`."""

    def __init__(self, element: SecureElement, *, identity_key_type: KeyType = KeyType.P256) -> None:
        if identity_key_type not in SLOT_USAGE or identity_key_type is KeyType.X25519:
            raise InvalidInput("identity key must be an ecdsa-p256 or ed25519 key")
        self.element = element
        self.identity_key_type = identity_key_type

    @property
    def provisioned(self) -> bool:
        """True once a certificate chain is installed for the identity key."""
        return self.element.has_key(IDENTITY_SLOT) and CERTIFICATES_REGION in self.element.flash_regions()

    def answer(self, challenge_json: bytes) -> bytes:
        """Answer a genuineness challenge with a :class:`GenuinenessResponse` (JSON).

        Generates the identity and sealing keys in the element unless an earlier, unfinished
        provisioning already did (slots are write-once; the keys are reused with a CSR bound to the
        new challenge). Refuses once the device is provisioned.
        """
        challenge = Challenge.parse(challenge_json)
        if self.provisioned:
            raise Conflict("device is already provisioned")
        element = self.element
        if not element.birth_chain or not element.has_key(BIRTH_SLOT):
            raise PolicyViolation("chip has no birth key and certificate (not made by a silicon vendor)")
        if not element.has_key(IDENTITY_SLOT):
            element.generate_key(IDENTITY_SLOT, self.identity_key_type)
        if not element.has_key(SEALING_SLOT):
            element.generate_key(SEALING_SLOT, KeyType.X25519)
        # RFC 2986 4.1 / RFC 2985 5.4.1: the challengePassword binds the CSR to this challenge.
        csr = element.make_csr(IDENTITY_SLOT, element.uid, challenge.nonce.hex())
        draft = GenuinenessResponse(
            chip_uid=element.uid,
            nonce=challenge.nonce,
            csr=csr,
            sealing_key=element.public_key(SEALING_SLOT),
            birth_chain=element.birth_chain,
            signature=b"\x00",  # placeholder: the signature covers every other member
        )
        signature = element.sign(BIRTH_SLOT, draft.signed_payload())
        return dataclasses.replace(draft, signature=signature).to_json()

    def install(self, provisioning_json: bytes, image: bytes) -> bytes:
        """Install a :class:`Provisioning` document and the order's firmware ``image``, boot the
        image, and return a signed :class:`InstallReceipt` with the measured boot. Raises the boot
        manager's refusal, and sends no receipt, if the image does not boot."""
        # boot imports this module's layout constants: import it when it is needed
        from fabtrust.device.boot import BootManager

        provisioning = Provisioning.parse(provisioning_json)
        if not isinstance(image, bytes):
            raise InvalidInput("the firmware image is bytes")
        element = self.element
        if self.provisioned:
            raise Conflict("device is already provisioned")
        if not element.has_key(IDENTITY_SLOT) or not element.has_key(SEALING_SLOT):
            raise PolicyViolation("device has not answered a genuineness challenge yet")

        # -- checks: nothing below writes until all of them pass --
        chain = load_certificates(provisioning.certificate_chain, "certificate chain")
        device_certificate = chain[0]
        spki = device_certificate.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if not hmac.compare_digest(spki, element.public_key(IDENTITY_SLOT)):
            raise VerificationFailed("device certificate is for another key than this device's identity key")
        if subject_serial_number(device_certificate.subject) != provisioning.device_serial:
            raise VerificationFailed("device certificate is for another device serial")
        for position in range(len(chain) - 1):
            try:
                chain[position].verify_directly_issued_by(chain[position + 1])
            except (ValueError, TypeError, InvalidSignature):
                raise VerificationFailed(f"certificate chain is broken after entry {position}") from None
        if not hmac.compare_digest(hashlib.sha256(image).digest(), provisioning.image_digest):
            raise VerificationFailed("firmware image does not match its expected SHA-256 digest")
        burnt = element.otp(OEM_KEY_HASH_OTP)
        if burnt is not None and burnt != provisioning.oem_key_hash:
            raise Conflict("another OEM key hash is already burnt into this device")
        if element.counter(PROVISIONED_COUNTER) >= MAX_COUNTER:
            raise PolicyViolation("provisioning counter is exhausted")
        # RFC 9180 5.2 Open; a wrong recipient or a tampered message is VerificationFailed.
        device_secrets = element.hpke_open(
            SEALING_SLOT, provisioning.sealed_secrets, secrets_info(element.uid)
        )

        # -- writes the boot needs, then the boot (its refusal is raised: no receipt) --
        element.store_sealed(SECRETS_OBJECT, device_secrets)
        element.flash_write(IMAGE_REGION, image)
        element.burn(OEM_KEY_HASH_OTP, provisioning.oem_key_hash)
        booted = BootManager(element).boot()

        # -- the device is provisioned once its image booted --
        element.flash_write(CERTIFICATES_REGION, _pack_chain(provisioning.certificate_chain))
        counter = element.increment(PROVISIONED_COUNTER)

        # -- receipt, measured from what was stored and what booted --
        draft = InstallReceipt(
            chip_uid=element.uid,
            device_serial=provisioning.device_serial,
            certificate_sha256=hashlib.sha256(
                unpack_chain(element.flash_read(CERTIFICATES_REGION))[0]
            ).digest(),
            image_sha256=hashlib.sha256(element.flash_read(IMAGE_REGION)).digest(),
            secrets_sha256=hashlib.sha256(element.load_sealed(SECRETS_OBJECT)).digest(),
            firmware_digest=booted.digest,
            firmware_version=str(booted.version),
            security_counter=booted.security_counter,
            counter=counter,
            signature=b"\x00",  # placeholder: the signature covers every other member
        )
        signature = element.sign(IDENTITY_SLOT, draft.signed_payload())
        return dataclasses.replace(draft, signature=signature).to_json()

    def certificate(self) -> x509.Certificate:
        """The installed device certificate."""
        chain = unpack_chain(self.element.flash_read(CERTIFICATES_REGION))
        return load_certificates(chain, "stored certificate chain")[0]


class ReplayingAgent:
    """A replay attacker: answers every challenge with one recorded response."""

    def __init__(self, recorded_response: bytes) -> None:
        self.recorded_response = recorded_response

    def answer(self, challenge_json: bytes) -> bytes:
        return self.recorded_response
