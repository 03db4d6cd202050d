"""Secure boot in the reference device: devices provisioned through the agent (as a station does)
boot the production image, install verified updates, and refuse bad ones with the reason while
nothing changes."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.hashes import SHA256
from hypothesis import given, settings
from hypothesis import strategies as st

from fabtrust.crypto import hpke
from fabtrust.crypto.canonical import canonical_json
from fabtrust.crypto.encoding import b64
from fabtrust.device.agent import IMAGE_REGION, OEM_KEY_HASH_OTP, DeviceAgent
from fabtrust.device.boot import (
    IMAGE_KEY_SECRET,
    PRIMARY_REGION,
    SECURITY_COUNTER,
    UPDATE_REGION,
    BootManager,
    BootResult,
    Slot,
    UpdateStatus,
)
from fabtrust.device.element import MAX_COUNTER, SecureElement
from fabtrust.device.protocol import secrets_info
from fabtrust.device.vendor import SiliconVendor
from fabtrust.errors import (
    FabtrustError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PolicyViolation,
    VerificationFailed,
)
from fabtrust.firmware.image import Image, TlvType, key_hash, sign_image, verify_image
from tests.device.helpers import IssuingCa, genuine, provisioning_for, state_of

BODY = os.urandom(3000) + b"firmware tail"  # not a multiple of 16: encrypted images get padded

Signer = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
ClassKey = ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey


def pkcs8(key: ClassKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Oem:
    """One OEM key family: the firmware signing key and the device-class image key."""

    family: str
    signer: Signer
    class_key: ClassKey

    @classmethod
    def new(cls, family: str) -> Oem:
        if family == "p256":
            return cls(
                family, ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
            )
        return cls(family, ed25519.Ed25519PrivateKey.generate(), x25519.X25519PrivateKey.generate())

    def another_signer(self) -> Signer:
        return Oem.new(self.family).signer

    def another_class_key(self) -> ClassKey:
        return Oem.new(self.family).class_key

    @property
    def key_hash(self) -> bytes:
        return key_hash(self.signer.public_key())

    def image(
        self,
        counter: int,
        *,
        version: str | None = None,
        body: bytes = BODY,
        signer: Signer | None = None,
        encrypt_to: ClassKey | bool | None = True,
        embed_public_key: bool = True,
    ) -> bytes:
        recipient = self.class_key if encrypt_to is True else encrypt_to or None
        return sign_image(
            body,
            version=version or f"1.{counter}.0+{counter}",
            security_counter=counter,
            signing_key=signer or self.signer,
            encrypt_to=recipient.public_key() if recipient is not None else None,
            embed_public_key=embed_public_key,
        )

    def secrets(self) -> bytes:
        """The device-class secrets as a station seals them: canonical JSON of base64 values."""
        return canonical_json({"class-key": b64(b"\x01" * 32), IMAGE_KEY_SECRET: b64(pkcs8(self.class_key))})


@pytest.fixture(scope="module", params=["p256", "ed25519"], ids=["ecdsa-p256+ecies-p256", "ed25519+x25519"])
def oem(request: pytest.FixtureRequest) -> Oem:
    return Oem.new(request.param)


def provision(
    vendor: SiliconVendor,
    ca: IssuingCa,
    oem: Oem,
    image: bytes,
    *,
    secrets: bytes | None = None,
    chip: SecureElement | None = None,
) -> SecureElement:
    """A chip provisioned through the agent with ``image`` in its primary slot, as production does
    (the agent boots it once: the install receipt reports that boot)."""
    chip = chip if chip is not None else vendor.make_chip()
    agent = DeviceAgent(chip)
    verified = genuine(agent, vendor)
    sealed = hpke.seal(
        verified.sealing_key, secrets if secrets is not None else oem.secrets(), secrets_info(chip.uid)
    )
    document, _ = provisioning_for(verified, ca, image=image, sealed_secrets=sealed)
    document = dataclasses.replace(document, oem_key_hash=oem.key_hash)
    agent.install(document.to_json(), image)
    return chip


@dataclass
class Device:
    element: SecureElement
    boot: BootManager
    production_image: bytes
    first: BootResult


@pytest.fixture
def device(vendor: SiliconVendor, issuing_ca: IssuingCa, oem: Oem) -> Device:
    """A provisioned device after its first boot at production (security counter 2)."""
    image = oem.image(2)
    element = provision(vendor, issuing_ca, oem, image)
    manager = BootManager(element)
    return Device(element, manager, image, manager.boot())


def reference(oem: Oem, image: bytes) -> tuple[bytes, bytes]:
    """(digest, plaintext body) by fabtrust's verifier given the keys directly."""
    verified = verify_image(image, trusted_keys=[oem.signer.public_key()], decryption_key=oem.class_key)
    return verified.digest, bytes(verified.body)


# --- booting --------------------------------------------------------------------------------------


def test_first_boot_of_a_production_programmed_encrypted_image(
    vendor: SiliconVendor, issuing_ca: IssuingCa, oem: Oem
) -> None:
    image = oem.image(2, version="1.2.3+4")
    element = provision(vendor, issuing_ca, oem, image)
    assert element.counter(SECURITY_COUNTER) == 2  # production booted it once (the agent's install)

    result = BootManager(element).boot()

    digest, body = reference(oem, image)
    assert (result.slot, result.update, result.update_refusal) == (Slot.PRIMARY, UpdateStatus.NONE, None)
    assert (str(result.version), result.security_counter, result.device_counter) == ("1.2.3+4", 2, 2)
    assert (result.digest, result.key_hash, result.encrypted) == (digest, oem.key_hash, True)
    assert result.image is not None
    assert bytes(result.image.body) == body
    assert body.startswith(BODY)
    assert element.counter(SECURITY_COUNTER) == 2
    # the primary slot keeps the image as delivered: flash never holds the plaintext
    assert element.flash_read(PRIMARY_REGION) == image
    assert BODY[:64] not in element.flash_read(PRIMARY_REGION)

    before = state_of(element)
    again = BootManager(element).boot()  # the manager keeps no state: a new one boots the same
    assert again == result
    assert state_of(element) == before


def test_a_signed_image_in_the_clear_boots_too(
    vendor: SiliconVendor, issuing_ca: IssuingCa, oem: Oem
) -> None:
    image = oem.image(1, encrypt_to=None)
    element = provision(vendor, issuing_ca, oem, image)
    result = BootManager(element).boot()
    assert (result.encrypted, result.security_counter) == (False, 1)
    assert result.image is not None
    assert bytes(result.image.body) == BODY


@pytest.mark.parametrize("counter", [3, 2, MAX_COUNTER], ids=["ok/higher", "ok/same", "ok/max"])
def test_a_verified_update_is_installed(device: Device, oem: Oem, counter: int) -> None:
    update = oem.image(counter, version="2.0.0+9")
    device.boot.stage(update)
    assert device.boot.staged() == update

    result = device.boot.boot()

    digest, _ = reference(oem, update)
    assert (result.slot, result.update, result.update_refusal) == (Slot.UPDATE, UpdateStatus.INSTALLED, None)
    assert (str(result.version), result.security_counter, result.digest) == ("2.0.0+9", counter, digest)
    assert device.element.counter(SECURITY_COUNTER) == result.device_counter == counter
    assert device.element.flash_read(PRIMARY_REGION) == update
    assert device.boot.staged() is None

    after = device.boot.boot()
    assert (after.slot, after.update, after.digest, after.device_counter) == (
        Slot.PRIMARY,
        UpdateStatus.NONE,
        digest,
        counter,
    )


def test_the_counter_is_never_lowered_by_a_later_boot(device: Device, oem: Oem) -> None:
    device.boot.stage(oem.image(7))
    device.boot.boot()
    old = device.production_image  # counter 2, still signed by the OEM
    device.element.flash_write(PRIMARY_REGION, old)  # flash is outside the trust boundary
    before = state_of(device.element)
    with pytest.raises(PolicyViolation, match=r"primary slot image is refused.*rollback refused"):
        device.boot.boot()
    assert state_of(device.element) == before
    assert device.element.counter(SECURITY_COUNTER) == 7


# --- refusing a staged update ---------------------------------------------------------------------


def flipped(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]


def tlv_offset(data: bytes, tlv_type: TlvType) -> int:
    return next(t.offset for t in Image.parse(data).tlvs if t.type == tlv_type)


def protected_offset(data: bytes, tlv_type: TlvType) -> int:
    return next(t.offset for t in Image.parse(data).protected_tlvs if t.type == tlv_type)


def sig_type(oem: Oem) -> TlvType:
    return TlvType.ECDSA_SIG if oem.family == "p256" else TlvType.ED25519


def hand_made(oem: Oem, *, flags: int = 0, dependency: bool = False) -> bytes:
    """An image sign_image cannot write (header flags, DEPENDENCY TLV), signed by the OEM key."""

    def tlv(kind: int, value: bytes) -> bytes:
        return struct.pack("<HH", kind, len(value)) + value

    protected_tlvs = tlv(TlvType.SEC_CNT, struct.pack("<I", 5))
    if dependency:
        protected_tlvs += tlv(TlvType.DEPENDENCY, struct.pack("<B3xBBHI", 1, 1, 0, 0, 0))
    protected = struct.pack("<HH", 0x6908, 4 + len(protected_tlvs)) + protected_tlvs
    header = struct.pack(
        "<IIHHIIBBHII", 0x96F3B83D, 0, 0x200, len(protected), len(BODY), flags, 1, 0, 0, 0, 0
    )
    header = header.ljust(0x200, b"\xff")
    digest = hashlib.sha256(header + BODY + protected).digest()
    public = oem.signer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if isinstance(oem.signer, ec.EllipticCurvePrivateKey):
        signature = tlv(TlvType.ECDSA_SIG, oem.signer.sign(digest, ec.ECDSA(Prehashed(SHA256()))))
    else:
        signature = tlv(TlvType.ED25519, oem.signer.sign(digest))
    entries = tlv(TlvType.SHA256, digest) + tlv(TlvType.PUBKEY, public) + signature
    return header + BODY + protected + struct.pack("<HH", 0x6907, 4 + len(entries)) + entries


@dataclass(frozen=True)
class Bad:
    make: Callable[[Oem], bytes]
    error: type[FabtrustError]
    reason: str


BAD_UPDATES = {
    "refused/downgrade": Bad(lambda o: o.image(1), PolicyViolation, "counter 1 is below the minimum 2"),
    "refused/tampered-body": Bad(
        lambda o: flipped(o.image(3), 0x200 + 100), VerificationFailed, "hash does not match"
    ),
    "refused/tampered-header-version": Bad(lambda o: flipped(o.image(3), 20), VerificationFailed, "hash"),
    "refused/tampered-header-flags": Bad(lambda o: flipped(o.image(3), 16), InvalidInput, "flags"),
    "refused/tampered-protected-tlv": Bad(
        lambda o: (lambda d: flipped(d, protected_offset(d, TlvType.SEC_CNT)))(o.image(3)),
        VerificationFailed,
        "hash does not match",
    ),
    "refused/tampered-signature": Bad(
        lambda o: (lambda d: flipped(d, tlv_offset(d, sig_type(o)) + 10))(o.image(3)),
        VerificationFailed,
        "signature by a trusted key does not verify",
    ),
    "refused/tampered-public-key": Bad(
        lambda o: (lambda d: flipped(d, tlv_offset(d, TlvType.PUBKEY) + 40))(o.image(3)),
        VerificationFailed,
        "not signed by the OEM key",
    ),
    "refused/foreign-key": Bad(
        lambda o: o.image(3, signer=o.another_signer()), VerificationFailed, "not signed by the OEM key"
    ),
    "refused/key-hash-only": Bad(
        lambda o: o.image(3, embed_public_key=False), VerificationFailed, "full public key (PUBKEY TLV)"
    ),
    "refused/another-class-key": Bad(
        lambda o: o.image(3, encrypt_to=o.another_class_key()), VerificationFailed, "does not authenticate"
    ),
    "refused/truncated-body": Bad(lambda o: o.image(3)[:2000], InvalidInput, "truncated"),
    "refused/truncated-tlvs": Bad(lambda o: o.image(3)[:-1], InvalidInput, "truncated"),
    "refused/extended": Bad(lambda o: o.image(3) + b"\xff" * 16, InvalidInput, "unexpected bytes"),
    "refused/garbage": Bad(lambda o: os.urandom(4096), InvalidInput, "not an MCUboot image"),
    "refused/non-bootable": Bad(lambda o: hand_made(o, flags=0x10), PolicyViolation, "non-bootable"),
    "refused/dependency": Bad(lambda o: hand_made(o, dependency=True), PolicyViolation, "single image"),
}


def test_the_hand_made_images_are_otherwise_good(oem: Oem) -> None:
    for image in (hand_made(oem), hand_made(oem, flags=0x10), hand_made(oem, dependency=True)):
        assert verify_image(image, trusted_keys=[oem.key_hash]).security_counter == 5


@pytest.mark.parametrize("bad", BAD_UPDATES.values(), ids=BAD_UPDATES.keys())
def test_a_bad_update_is_refused_and_nothing_changes(device: Device, oem: Oem, bad: Bad) -> None:
    data = bad.make(oem)
    device.boot.stage(data)
    before = state_of(device.element)

    result = device.boot.boot()

    assert (result.slot, result.update) == (Slot.PRIMARY, UpdateStatus.REFUSED)
    assert result.update_refusal is not None
    assert issubclass(result.update_refusal.error, bad.error), result.update_refusal
    assert bad.reason in result.update_refusal.reason
    assert dataclasses.replace(result, update=UpdateStatus.NONE, update_refusal=None) == device.first
    assert state_of(device.element) == before  # update slot included: the refusal is reported again
    with pytest.raises(bad.error) as refused:
        device.boot.verify(data)
    assert refused.value.message == result.update_refusal.reason
    assert device.boot.boot() == result
    assert state_of(device.element) == before


def test_a_refused_update_can_be_discarded(device: Device, oem: Oem) -> None:
    device.boot.stage(oem.image(1))
    assert device.boot.boot().update is UpdateStatus.REFUSED
    device.boot.discard_update()
    assert device.boot.staged() is None
    assert device.boot.boot() == device.first
    device.boot.discard_update()  # erasing an erased slot is a no-op


def test_a_good_update_recovers_a_device_whose_primary_image_is_damaged(device: Device, oem: Oem) -> None:
    device.element.flash_write(PRIMARY_REGION, flipped(device.production_image, 0x200))
    with pytest.raises(VerificationFailed, match="no bootable image: the primary slot image is refused"):
        device.boot.boot()
    device.boot.stage(oem.image(3))
    assert device.boot.boot().update is UpdateStatus.INSTALLED
    assert device.boot.boot().security_counter == 3


# --- nothing to boot ------------------------------------------------------------------------------


def test_no_oem_key_hash_burnt(vendor: SiliconVendor, oem: Oem) -> None:
    chip = vendor.make_chip()
    chip.flash_write(IMAGE_REGION, oem.image(1, encrypt_to=None))
    before = state_of(chip)
    with pytest.raises(PolicyViolation, match="no OEM key hash is burnt"):
        BootManager(chip).boot()
    assert state_of(chip) == before


def test_no_image_at_all(vendor: SiliconVendor, oem: Oem) -> None:
    chip = vendor.make_chip()
    chip.burn(OEM_KEY_HASH_OTP, oem.key_hash)
    before = state_of(chip)
    with pytest.raises(NotFound, match="primary slot is empty and no update is staged"):
        BootManager(chip).boot()
    chip.flash_write(UPDATE_REGION, b"")  # an erased update slot is no update
    with pytest.raises(NotFound, match="no update is staged"):
        BootManager(chip).boot()
    assert state_of(chip) | {"flash": {}} == before | {"flash": {}}


def test_staged_garbage_and_no_primary(vendor: SiliconVendor, oem: Oem) -> None:
    chip = vendor.make_chip()
    chip.burn(OEM_KEY_HASH_OTP, oem.key_hash)
    manager = BootManager(chip)
    manager.stage(b"\x00" * 100)
    before = state_of(chip)
    with pytest.raises(InvalidInput, match="primary slot is empty and the staged update was refused: not an"):
        manager.boot()
    assert state_of(chip) == before


def test_primary_and_update_both_refused_names_both(device: Device, oem: Oem) -> None:
    device.element.flash_write(PRIMARY_REGION, device.production_image[:100])
    device.boot.stage(oem.image(1))
    before = state_of(device.element)
    with pytest.raises(InvalidInput, match=r"truncated.*staged update was refused too: .*rollback refused"):
        device.boot.boot()
    assert state_of(device.element) == before


@pytest.mark.parametrize(
    ("secrets", "error", "reason"),
    [
        (canonical_json({"class-key": b64(b"k" * 32)}), PolicyViolation, "no 'image-key' secret"),
        (b"device-class secret: raw bytes", PolicyViolation, "not a JSON object"),
        (canonical_json({IMAGE_KEY_SECRET: "not base64!"}), InvalidInput, "not valid base64"),
        (canonical_json({IMAGE_KEY_SECRET: b64(b"\x30\x03\x02\x01\x00")}), InvalidInput, "not a PKCS#8"),
        (
            canonical_json({IMAGE_KEY_SECRET: b64(pkcs8(ec.generate_private_key(ec.SECP384R1())))}),
            InvalidInput,
            "neither a P-256 nor an X25519",
        ),
    ],
    ids=[
        "refused/no-image-key",
        "refused/not-json",
        "refused/bad-base64",
        "refused/not-pkcs8",
        "refused/p384",
    ],
)
def test_an_encrypted_image_needs_the_class_key(
    vendor: SiliconVendor,
    issuing_ca: IssuingCa,
    oem: Oem,
    secrets: bytes,
    error: type[FabtrustError],
    reason: str,
) -> None:
    element = vendor.make_chip()
    with pytest.raises(error, match=reason):  # production's boot refuses it: no install receipt
        provision(vendor, issuing_ca, oem, oem.image(1), secrets=secrets, chip=element)
    before = state_of(element)
    with pytest.raises(error, match=reason):
        BootManager(element).boot()
    assert state_of(element) == before


# --- staging --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "error", "reason"),
    [
        (b"", InvalidInput, "cannot be empty"),
        ("text", InvalidInput, "is bytes"),
        (b"\x00" * 4097, PayloadTooLarge, "over the 4096-byte update slot"),
    ],
    ids=["refused/empty", "refused/not-bytes", "refused/too-large"],
)
def test_stage_refuses(device: Device, data: object, error: type[FabtrustError], reason: str) -> None:
    before = state_of(device.element)
    with pytest.raises(error, match=reason):
        BootManager(device.element, slot_size=4096).stage(data)  # type: ignore[arg-type]
    assert state_of(device.element) == before


def test_an_image_larger_than_the_slot_does_not_boot(device: Device) -> None:
    small = BootManager(device.element, slot_size=1024)
    with pytest.raises(InvalidInput, match=r"primary slot image is refused: .*over the 1024-byte limit"):
        small.boot()


def test_slot_size_is_checked() -> None:
    with pytest.raises(InvalidInput, match="slot size"):
        BootManager(SecureElement("0123456789abcdef"), slot_size=0)


# --- the element's monotonic counter advance ------------------------------------------------------


def test_a_counter_advances_but_never_goes_down() -> None:
    element = SecureElement("0123456789abcdef")
    assert element.advance("c", 0) == 0
    assert "c" not in element.counter_names()  # no-op: nothing written
    assert element.advance("c", 5) == 5
    assert element.advance("c", 5) == 5
    with pytest.raises(PolicyViolation, match="cannot go down to 4"):
        element.advance("c", 4)
    assert element.advance("c", MAX_COUNTER) == MAX_COUNTER
    for bad in (-1, MAX_COUNTER + 1, True, "6"):
        with pytest.raises(InvalidInput, match="counter value"):
            element.advance("c", bad)  # type: ignore[arg-type]
    assert element.counter("c") == MAX_COUNTER


# --- fuzzing the update slot ----------------------------------------------------------------------


@st.composite
def mutations(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        pos = draw(st.integers(0, max(0, len(out) - 1)))
        if kind == "flip" and out:
            out[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and out:
            out[pos] = draw(st.integers(0, 255))
        elif kind == "truncate":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del out[pos : pos + draw(st.integers(1, 8))]
    return bytes(out)


@pytest.fixture(scope="module")
def fuzz_images(oem: Oem) -> tuple[bytes, bytes]:
    """(production image, update) made once: ECDSA signatures vary in length, and hypothesis needs
    the same input for every example."""
    return oem.image(2, body=BODY[:600]), oem.image(3, body=BODY[:700])


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_fuzz_a_mutated_update_changes_nothing_unless_it_verifies(
    vendor: SiliconVendor,
    issuing_ca: IssuingCa,
    oem: Oem,
    fuzz_images: tuple[bytes, bytes],
    data: st.DataObject,
) -> None:
    production, update = fuzz_images
    element = provision(vendor, issuing_ca, oem, production)
    manager = BootManager(element)
    manager.boot()
    mutated = data.draw(mutations(update), label="mutated update")
    if not mutated:
        return
    manager.stage(mutated)
    before = state_of(element)

    result = manager.boot()

    try:
        expected = verify_image(
            mutated,
            trusted_keys=[oem.signer.public_key()],
            decryption_key=oem.class_key,
            min_security_counter=2,
        )
    except FabtrustError:
        expected = None
    if result.update is UpdateStatus.INSTALLED:
        assert expected is not None
        assert expected.digest == result.digest
        assert element.flash_read(PRIMARY_REGION) == mutated
        assert element.counter(SECURITY_COUNTER) == expected.security_counter
    else:
        assert result.update is UpdateStatus.REFUSED
        assert result.update_refusal is not None
        assert result.update_refusal.reason
        assert expected is None, result.update_refusal
        assert state_of(element) == before
        assert result.security_counter == 2
