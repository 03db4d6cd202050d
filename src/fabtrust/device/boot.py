"""Secure boot in the reference device: an MCUboot-like boot manager over the secure element.

What it trusts, and where each piece lives:

* **The OEM key, by its hash**, burnt into OTP row :data:`~fabtrust.device.agent.OEM_KEY_HASH_OTP`
  at production. The device keeps no copy of the key itself, so an image must carry the full public
  key in a PUBKEY TLV (``sign_image(..., embed_public_key=True)``, ``imgtool sign
  --public-key-format full``), and the boot manager accepts a signature only from a key whose
  SHA-256 (of its DER SubjectPublicKeyInfo) is the burnt hash. That is MCUboot's ``MCUBOOT_HW_KEY``
  mode (``bootutil_find_key`` hashes the PUBKEY TLV and compares it with the hash read from the
  platform's OTP), chosen over MCUboot's default of a key compiled into the bootloader because the
  hash is what production provisions and what OTP can hold. An image that names the OEM key only by
  its hash (KEYHASH TLV) is refused with that reason.
* **The image decryption key** is a device-class secret, ``"image-key"`` (:data:`IMAGE_KEY_SECRET`),
  a PKCS#8 DER private key (P-256 for ECIES-P256 images, X25519 for ECIES-X25519) inside the sealed
  object :data:`~fabtrust.device.agent.SECRETS_OBJECT` the agent stores at production (canonical JSON,
  ``{name: base64(value)}``). It is read from sealed storage only to boot an encrypted image.
* **The security counter** is the element's monotonic counter :data:`SECURITY_COUNTER` (names are
  free-form, values 0 to 2**32 - 1, the range of the SEC_CNT TLV). It is the only rollback floor, as
  with MCUboot's ``MCUBOOT_HW_ROLLBACK_PROT``: an image whose SEC_CNT is below it is refused, an equal
  one is accepted. It is raised to the booted image's counter after that image verified, never
  lowered. Production boots the device once after programming, which sets it.

Slots. The primary slot is flash region :data:`PRIMARY_REGION` (the agent's ``IMAGE_REGION``) and a
staged update goes to :data:`UPDATE_REGION` (MCUboot's secondary slot); an empty region is erased.
The update is handled like MCUboot's overwrite-only upgrade: it is verified in full in its slot
(signature, decryption, security counter), then copied into the primary slot, the counter advanced
and the update slot erased; the device then runs the primary slot. Unlike MCUboot, the primary slot
keeps the image **as delivered, encrypted**: the element's flash is outside the trust boundary (see
:mod:`fabtrust.device.element`), so plaintext firmware is never written to it. Every boot therefore
verifies and decrypts the primary image into RAM, as MCUboot does for encrypted images in its RAM-load
mode (``boot_decrypt_and_copy_image_to_sram``); the plaintext is in :attr:`BootResult.image`.

Refusals. A staged update that does not verify is refused with its reason, reported in
:attr:`BootResult.update_refusal`, and the device falls back to the primary slot; nothing changes:
not the primary slot, the counter, OTP or sealed storage, and not the update slot either (MCUboot
erases a bad secondary slot; here the issue's rule "refused, device state unchanged" wins, so the
refusal is reported at every boot until the update client stages another image or calls
:meth:`BootManager.discard_update`). With no bootable primary image, :meth:`BootManager.boot` raises
the fabtrust error that says why. fabtrust also refuses images flagged NON_BOOTABLE and images with
DEPENDENCY TLVs (the reference device runs a single image, so a dependency cannot be met).

Portable by rule: imports only :mod:`fabtrust.crypto`, :mod:`fabtrust.errors` and the pure image
format :mod:`fabtrust.firmware.image`.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from fabtrust.crypto.canonical import parse_canonical
from fabtrust.crypto.encoding import unb64
from fabtrust.device.agent import IMAGE_REGION, OEM_KEY_HASH_OTP, SECRETS_OBJECT
from fabtrust.device.element import SecureElement
from fabtrust.errors import (
    FabtrustError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PolicyViolation,
    VerificationFailed,
)
from fabtrust.firmware.image import (
    DecryptionKey,
    Image,
    ImageFlag,
    ImageVersion,
    TlvType,
    VerifiedImage,
    verify_image,
)

#: Device-class secret holding the image decryption private key (PKCS#8 DER).
IMAGE_KEY_SECRET: Final = "image-key"  # noqa: S105 (the name of a secret, not one)
#: Flash region of the primary slot: the image the device runs, as delivered (encrypted).
PRIMARY_REGION: Final = IMAGE_REGION
#: Flash region of the update slot (MCUboot's secondary slot).
UPDATE_REGION: Final = "image-update"
#: Monotonic counter holding the security counter of the newest image booted.
SECURITY_COUNTER: Final = "security-counter"
#: Size of each slot, in bytes: the largest image the device stages or boots.
DEFAULT_SLOT_SIZE: Final = 32 * 1024 * 1024
_KEY_HASH_SIZE = 32


class Slot(StrEnum):
    """Where the booted image was verified: the primary slot, or the update slot it was just
    installed from."""

    PRIMARY = "primary"
    UPDATE = "update"


class UpdateStatus(StrEnum):
    NONE = "none"  # nothing staged
    INSTALLED = "installed"  # the staged update verified and is now in the primary slot
    REFUSED = "refused"  # the staged update did not verify; it stays staged, nothing changed


@dataclass(frozen=True)
class Refusal:
    """Why an image was refused: the fabtrust error's class and its (safe) message."""

    error: type[FabtrustError]
    reason: str

    @classmethod
    def of(cls, exc: FabtrustError) -> Refusal:
        return cls(type(exc), exc.message)


@dataclass(frozen=True)
class BootResult:
    """What booted: the measurements a production record or an attestation reports."""

    version: ImageVersion
    #: The booted image's SEC_CNT.
    security_counter: int
    #: The element's security counter after this boot (equal to ``security_counter``).
    device_counter: int
    #: SHA-256 of header, plaintext body and protected TLVs (the image's SHA256 TLV).
    digest: bytes
    #: SHA-256 of the DER public key whose signature verified (the OEM key hash in OTP).
    key_hash: bytes
    encrypted: bool
    slot: Slot
    update: UpdateStatus
    update_refusal: Refusal | None = None
    #: The verified image with its body in plaintext, as loaded into RAM.
    image: VerifiedImage | None = field(default=None, repr=False, compare=False)


class BootManager:
    """The boot manager of one device. Holds no state of its own: everything is in the element."""

    def __init__(self, element: SecureElement, *, slot_size: int = DEFAULT_SLOT_SIZE) -> None:
        if not isinstance(slot_size, int) or isinstance(slot_size, bool) or slot_size <= 0:
            raise InvalidInput("slot size must be a positive number of bytes")
        self.element = element
        self.slot_size = slot_size

    # -- the update client's side --------------------------------------------------------------

    def stage(self, image: bytes) -> None:
        """Write an update image into the update slot, replacing any staged one. Nothing is checked
        but its size: the next :meth:`boot` verifies it (as MCUboot verifies the secondary slot)."""
        if not isinstance(image, bytes):
            raise InvalidInput("an update image is bytes")
        if not image:
            raise InvalidInput("an update image cannot be empty")
        if len(image) > self.slot_size:
            raise PayloadTooLarge(
                f"update image is {len(image)} bytes, over the {self.slot_size}-byte update slot"
            )
        self.element.flash_write(UPDATE_REGION, image)

    def staged(self) -> bytes | None:
        """The image in the update slot, or None if it is erased."""
        return self._read(UPDATE_REGION)

    def discard_update(self) -> None:
        """Erase the update slot."""
        if self._read(UPDATE_REGION) is not None:
            self.element.flash_write(UPDATE_REGION, b"")

    # -- verification and boot -----------------------------------------------------------------

    def verify(self, data: bytes) -> VerifiedImage:
        """Verify an image exactly as :meth:`boot` would, against the current security counter,
        changing nothing. Raises the refusal."""
        return self._verify(data, self._oem_key_hash(), self.element.counter(SECURITY_COUNTER))

    def boot(self) -> BootResult:
        """Boot: install a staged update if it verifies, then run the primary slot.

        Raises when nothing can boot: no OEM key hash in OTP (:class:`PolicyViolation`), no image
        (:class:`NotFound`), or a primary image that does not verify (its refusal, with the staged
        update's refusal too if there was one). State changes only on success: the primary slot
        and the update slot when an update is installed, and the security counter when it rises.
        """
        element = self.element
        oem_key_hash = self._oem_key_hash()
        floor = element.counter(SECURITY_COUNTER)

        refusal: Refusal | None = None
        staged = self._read(UPDATE_REGION)
        if staged is not None:
            try:
                verified = self._verify(staged, oem_key_hash, floor)
            except FabtrustError as exc:
                refusal = Refusal.of(exc)
            else:
                # overwrite-only upgrade: the verified update replaces the primary slot as it is
                # (still encrypted), the counter rises, the update slot is erased. Each step leaves
                # a state the next boot completes: a staged image equal to the primary reinstalls.
                element.flash_write(PRIMARY_REGION, staged)
                counter = element.advance(SECURITY_COUNTER, verified.security_counter)
                element.flash_write(UPDATE_REGION, b"")
                return self._result(verified, counter, Slot.UPDATE, UpdateStatus.INSTALLED, None)

        update = UpdateStatus.REFUSED if refusal is not None else UpdateStatus.NONE
        primary = self._read(PRIMARY_REGION)
        if primary is None:
            if refusal is not None:
                raise refusal.error(
                    "no bootable image: the primary slot is empty and the staged update was refused: "
                    + refusal.reason
                )
            raise NotFound("no bootable image: the primary slot is empty and no update is staged")
        try:
            verified = self._verify(primary, oem_key_hash, floor)
        except FabtrustError as exc:
            message = f"no bootable image: the primary slot image is refused: {exc.message}"
            if refusal is not None:
                message += f"; the staged update was refused too: {refusal.reason}"
            raise type(exc)(message) from exc
        counter = element.advance(SECURITY_COUNTER, verified.security_counter)
        return self._result(verified, counter, Slot.PRIMARY, update, refusal)

    # -- internals -----------------------------------------------------------------------------

    def _read(self, region: str) -> bytes | None:
        if region not in self.element.flash_regions():
            return None
        data = self.element.flash_read(region)
        return data or None

    def _oem_key_hash(self) -> bytes:
        burnt = self.element.otp(OEM_KEY_HASH_OTP)
        if burnt is None:
            raise PolicyViolation("no OEM key hash is burnt into OTP: the device trusts no image yet")
        if len(burnt) != _KEY_HASH_SIZE:
            raise PolicyViolation("the OEM key hash in OTP is not a 32-byte SHA-256")
        return burnt

    def _verify(self, data: bytes, oem_key_hash: bytes, floor: int) -> VerifiedImage:
        image = Image.parse(data, max_size=self.slot_size)
        if image.header.flags & ImageFlag.NON_BOOTABLE:
            raise PolicyViolation("image is flagged non-bootable")
        if image.dependencies:
            raise PolicyViolation("image depends on other images; this device runs a single image")
        # MCUBOOT_HW_KEY: the PUBKEY TLV must hash to the key hash in OTP (bootutil_find_key).
        named = [sig for sig in image.signatures if sig.key_type == TlvType.PUBKEY]
        if not any(hmac.compare_digest(hashlib.sha256(s.key).digest(), oem_key_hash) for s in named):
            if any(s.key_type == TlvType.KEYHASH and s.key == oem_key_hash for s in image.signatures):
                raise VerificationFailed(
                    "image names the OEM key only by its hash (KEYHASH TLV); this device holds just "
                    "the hash, so images must carry the full public key (PUBKEY TLV)"
                )
            raise VerificationFailed("image is not signed by the OEM key whose hash is burnt into OTP")
        key = self._image_key() if image.header.encrypted else None
        return verify_image(
            image.raw,
            trusted_keys=[oem_key_hash],
            decryption_key=key,
            min_security_counter=floor,
            max_size=self.slot_size,
        )

    def _image_key(self) -> DecryptionKey:
        try:
            blob = self.element.load_sealed(SECRETS_OBJECT)
        except NotFound:
            raise PolicyViolation("image is encrypted but the device holds no device-class secrets") from None
        try:
            secrets = parse_canonical(blob)
        except InvalidInput:
            raise PolicyViolation("the device-class secrets are not a JSON object of named values") from None
        value = secrets.get(IMAGE_KEY_SECRET) if isinstance(secrets, dict) else None
        if value is None:
            raise PolicyViolation(f"image is encrypted but the device has no {IMAGE_KEY_SECRET!r} secret")
        der = unb64(value, f"device-class secret {IMAGE_KEY_SECRET!r}")
        try:
            key = serialization.load_der_private_key(der, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise InvalidInput(
                f"device-class secret {IMAGE_KEY_SECRET!r} is not a PKCS#8 DER private key"
            ) from None
        if isinstance(key, x25519.X25519PrivateKey) or (
            isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
        ):
            return key
        raise InvalidInput(f"device-class secret {IMAGE_KEY_SECRET!r} is neither a P-256 nor an X25519 key")

    @staticmethod
    def _result(
        verified: VerifiedImage,
        counter: int,
        slot: Slot,
        update: UpdateStatus,
        refusal: Refusal | None,
    ) -> BootResult:
        return BootResult(
            version=verified.version,
            security_counter=verified.security_counter,
            device_counter=counter,
            digest=verified.digest,
            key_hash=verified.key_hash,
            encrypted=verified.encrypted,
            slot=slot,
            update=update,
            update_refusal=refusal,
            image=verified,
        )
