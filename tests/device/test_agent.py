"""The device agent end to end against a test station: install a genuine chip and boot its image,
with the measured boot in the signed receipt; refuse bad provisioning documents without changing the
element; an image that does not boot gives no receipt and leaves the device unprovisioned."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from fabtrust.crypto import hpke
from fabtrust.crypto.canonical import canonical_json
from fabtrust.crypto.keys import KeyType, generate_private_key, spki_der
from fabtrust.device.agent import (
    CERTIFICATES_REGION,
    IMAGE_REGION,
    OEM_KEY_HASH_OTP,
    PROVISIONED_COUNTER,
    SECRETS_OBJECT,
    DeviceAgent,
    unpack_chain,
)
from fabtrust.device.boot import SECURITY_COUNTER
from fabtrust.device.element import SecureElement
from fabtrust.device.protocol import (
    ExpectedFirmware,
    GenuineChip,
    GenuinenessResponse,
    InstallReceipt,
    Provisioning,
    secrets_info,
    verify_genuineness,
    verify_measurement,
    verify_receipt,
)
from fabtrust.device.vendor import SiliconVendor
from fabtrust.errors import Conflict, FabtrustError, PolicyViolation, VerificationFailed
from fabtrust.firmware.image import sign_image
from tests.device.helpers import (
    CLASS_KEY,
    DEVICE_SERIAL,
    IMAGE,
    IMAGE_DIGEST,
    IMAGE_SECURITY_COUNTER,
    IMAGE_VERSION,
    NOW,
    OEM_KEY_HASH,
    SECRETS,
    IssuingCa,
    challenge,
    der,
    genuine,
    provisioning_for,
    signed_image,
    state_of,
)

EXPECTED = ExpectedFirmware(IMAGE_DIGEST, IMAGE_VERSION, IMAGE_SECURITY_COUNTER)


@pytest.mark.parametrize("identity_key", [KeyType.P256, KeyType.ED25519], ids=["ok/p256", "ok/ed25519"])
def test_a_genuine_chip_is_provisioned(
    vendor: SiliconVendor, issuing_ca: IssuingCa, chip: SecureElement, identity_key: KeyType
) -> None:
    agent = DeviceAgent(chip, identity_key_type=identity_key)
    sent = challenge()
    response = GenuinenessResponse.parse(agent.answer(sent.to_json()))
    verified = verify_genuineness(response, sent, [vendor.root], NOW)
    provisioning, certificate = provisioning_for(verified, issuing_ca)

    receipt = InstallReceipt.parse(agent.install(provisioning.to_json(), IMAGE))

    verify_receipt(receipt, certificate, hashlib.sha256(IMAGE).digest())
    verify_measurement(receipt, EXPECTED)
    assert (receipt.chip_uid, receipt.device_serial, receipt.counter) == (chip.uid, DEVICE_SERIAL, 1)
    # the measured boot: the plaintext digest (SHA256 TLV), version and security counter
    assert (receipt.firmware_digest, receipt.firmware_version, receipt.security_counter) == (
        IMAGE_DIGEST,
        IMAGE_VERSION,
        IMAGE_SECURITY_COUNTER,
    )
    assert chip.counter(SECURITY_COUNTER) == IMAGE_SECURITY_COUNTER  # the boot set it
    assert receipt.secrets_sha256 == hashlib.sha256(SECRETS).digest()
    assert chip.counter(PROVISIONED_COUNTER) == 1
    assert chip.otp(OEM_KEY_HASH_OTP) == OEM_KEY_HASH
    assert chip.load_sealed(SECRETS_OBJECT) == SECRETS
    assert SECRETS not in chip.sealed_blob(SECRETS_OBJECT)
    assert chip.flash_read(IMAGE_REGION) == IMAGE
    assert unpack_chain(chip.flash_read(CERTIFICATES_REGION)) == provisioning.certificate_chain
    assert agent.certificate() == certificate
    assert agent.provisioned


def _provisioned(vendor: SiliconVendor, issuing_ca: IssuingCa, agent: DeviceAgent) -> InstallReceipt:
    provisioning, _ = provisioning_for(genuine(agent, vendor), issuing_ca)
    return InstallReceipt.parse(agent.install(provisioning.to_json(), IMAGE))


def _other_chip_sealing_key() -> bytes:
    return spki_der(generate_private_key(KeyType.X25519).public_key())


BAD_PROVISIONING = [
    pytest.param(
        lambda chip, ca: provisioning_for(chip, ca, image_digest=hashlib.sha256(b"other").digest())[0],
        VerificationFailed,
        "firmware image does not match its expected SHA-256 digest",
        id="fail/wrong-image-digest",
    ),
    pytest.param(
        lambda chip, ca: provisioning_for(
            chip, ca, public_key=ec.generate_private_key(ec.SECP256R1()).public_key()
        )[0],
        VerificationFailed,
        "device certificate is for another key",
        id="fail/certificate-for-another-key",
    ),
    pytest.param(
        lambda chip, ca: dataclasses.replace(provisioning_for(chip, ca)[0], device_serial="SN-0002"),
        VerificationFailed,
        "device certificate is for another device serial",
        id="fail/certificate-for-another-serial",
    ),
    pytest.param(
        lambda chip, ca: provisioning_for(
            chip,
            ca,
            sealed_secrets=_flip_last(hpke.seal(chip.sealing_key, SECRETS, secrets_info(chip.chip_uid))),
        )[0],
        VerificationFailed,
        "sealed message does not open",
        id="fail/tampered-sealed-secrets",
    ),
    pytest.param(
        lambda chip, ca: provisioning_for(
            chip,
            ca,
            sealed_secrets=hpke.seal(_other_chip_sealing_key(), SECRETS, secrets_info(chip.chip_uid)),
        )[0],
        VerificationFailed,
        "sealed message does not open",
        id="fail/secrets-for-another-device",
    ),
    pytest.param(
        lambda chip, ca: provisioning_for(
            chip, ca, sealed_secrets=hpke.seal(chip.sealing_key, SECRETS, secrets_info("ffffffffffffffff"))
        )[0],
        VerificationFailed,
        "sealed message does not open",
        id="fail/secrets-bound-to-another-uid",
    ),
    pytest.param(
        lambda chip, ca: _with_foreign_ca(provisioning_for(chip, ca)[0]),
        VerificationFailed,
        "certificate chain is broken after entry 0",
        id="fail/broken-certificate-chain",
    ),
]


def _with_foreign_ca(document: Provisioning) -> Provisioning:
    chain = (document.certificate_chain[0], der(IssuingCa.new().certificate))
    return dataclasses.replace(document, certificate_chain=chain)


def _flip_last(data: bytes) -> bytes:
    return data[:-1] + bytes([data[-1] ^ 1])


@pytest.mark.parametrize(("make", "error", "message"), BAD_PROVISIONING)
def test_bad_provisioning_is_refused_and_changes_nothing(
    vendor: SiliconVendor,
    issuing_ca: IssuingCa,
    agent: DeviceAgent,
    make: Callable[[GenuineChip, IssuingCa], Provisioning],
    error: type[FabtrustError],
    message: str,
) -> None:
    verified = genuine(agent, vendor)
    document = make(verified, issuing_ca)
    before = state_of(agent.element)
    with pytest.raises(error, match=message):
        agent.install(document.to_json(), IMAGE)
    assert state_of(agent.element) == before
    assert agent.element.counter(PROVISIONED_COUNTER) == 0
    assert agent.element.otp(OEM_KEY_HASH_OTP) is None
    assert not agent.provisioned
    # the same device still installs a good document afterwards
    good, certificate = provisioning_for(verified, issuing_ca)
    verify_receipt(
        InstallReceipt.parse(agent.install(good.to_json(), IMAGE)),
        certificate,
        hashlib.sha256(IMAGE).digest(),
    )


def test_an_oem_key_hash_burnt_before_is_not_overwritten(
    vendor: SiliconVendor, issuing_ca: IssuingCa, agent: DeviceAgent
) -> None:
    agent.element.burn(OEM_KEY_HASH_OTP, hashlib.sha256(b"another OEM").digest())
    provisioning, _ = provisioning_for(genuine(agent, vendor), issuing_ca)
    before = state_of(agent.element)
    with pytest.raises(Conflict, match="another OEM key hash is already burnt"):
        agent.install(provisioning.to_json(), IMAGE)
    assert state_of(agent.element) == before


def test_a_provisioned_device_refuses_to_answer_or_install_again(
    vendor: SiliconVendor, issuing_ca: IssuingCa, agent: DeviceAgent
) -> None:
    _provisioned(vendor, issuing_ca, agent)
    before = state_of(agent.element)
    with pytest.raises(Conflict, match="device is already provisioned"):
        agent.answer(challenge().to_json())
    assert state_of(agent.element) == before


def test_a_second_install_is_refused(
    vendor: SiliconVendor, issuing_ca: IssuingCa, agent: DeviceAgent
) -> None:
    verified = genuine(agent, vendor)
    provisioning, _ = provisioning_for(verified, issuing_ca)
    agent.install(provisioning.to_json(), IMAGE)
    before = state_of(agent.element)
    again, _ = provisioning_for(verified, issuing_ca, device_serial="SN-0002")
    with pytest.raises(Conflict, match="device is already provisioned"):
        agent.install(again.to_json(), IMAGE)
    assert state_of(agent.element) == before


def test_install_before_answering_is_refused(
    issuing_ca: IssuingCa, vendor: SiliconVendor, chip: SecureElement
) -> None:
    other = DeviceAgent(vendor.make_chip())
    provisioning, _ = provisioning_for(genuine(other, vendor), issuing_ca)
    before = state_of(chip)
    with pytest.raises(PolicyViolation, match="has not answered a genuineness challenge"):
        DeviceAgent(chip).install(provisioning.to_json(), IMAGE)
    assert state_of(chip) == before


def test_answering_again_before_install_reuses_the_locked_keys(
    vendor: SiliconVendor, agent: DeviceAgent
) -> None:
    first, second = genuine(agent, vendor), genuine(agent, vendor)
    assert first.csr.public_key() == second.csr.public_key()
    assert first.sealing_key == second.sealing_key
    assert first.csr.public_bytes(Encoding.DER) != second.csr.public_bytes(Encoding.DER)  # new binding


def test_a_receipt_is_checked_against_certificate_and_image(
    vendor: SiliconVendor, issuing_ca: IssuingCa, agent: DeviceAgent
) -> None:
    provisioning, certificate = provisioning_for(genuine(agent, vendor), issuing_ca)
    receipt = InstallReceipt.parse(agent.install(provisioning.to_json(), IMAGE))
    other_certificate = issuing_ca.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), DEVICE_SERIAL)
    with pytest.raises(VerificationFailed, match="does not verify under the device certificate's key"):
        verify_receipt(receipt, other_certificate, hashlib.sha256(IMAGE).digest())
    with pytest.raises(VerificationFailed, match="device stored another firmware image than expected"):
        verify_receipt(receipt, certificate, hashlib.sha256(b"other image").digest())
    forged = dataclasses.replace(receipt, counter=2)
    with pytest.raises(VerificationFailed, match="does not verify"):
        verify_receipt(forged, certificate, hashlib.sha256(IMAGE).digest())


def test_a_blank_element_cannot_answer() -> None:
    blank = SecureElement("0123456789abcdef")
    with pytest.raises(PolicyViolation, match="not made by a silicon vendor"):
        DeviceAgent(blank).answer(challenge().to_json())
    assert blank.slots() == {}


def _unbootable(kind: str) -> tuple[bytes, bytes]:
    """(image, device-class secrets) whose image does not boot on a device of this OEM."""
    if kind == "tampered":
        image = bytearray(IMAGE)
        image[0x200 + 10] ^= 1  # a ciphertext byte of the body: the SHA256 TLV no longer matches
        return bytes(image), SECRETS
    if kind == "another-signer":
        other = ec.generate_private_key(ec.SECP256R1())
        image = sign_image(
            b"firmware" * 64,
            version=IMAGE_VERSION,
            security_counter=IMAGE_SECURITY_COUNTER,
            signing_key=other,
            encrypt_to=CLASS_KEY.public_key(),
            embed_public_key=True,
        )
        return image, SECRETS
    return IMAGE, canonical_json({"class-key": "AAAA"})  # no image-key: it cannot decrypt


@pytest.mark.parametrize(
    ("kind", "error", "message"),
    [
        ("tampered", VerificationFailed, "image hash does not match"),
        ("another-signer", VerificationFailed, "not signed by the OEM key"),
        ("no-image-key", PolicyViolation, "no 'image-key' secret"),
    ],
    ids=["fail/tampered-image", "fail/image-by-another-key", "fail/no-image-key"],
)
def test_an_image_that_does_not_boot_gives_no_receipt(
    vendor: SiliconVendor,
    issuing_ca: IssuingCa,
    agent: DeviceAgent,
    kind: str,
    error: type[FabtrustError],
    message: str,
) -> None:
    image, secrets = _unbootable(kind)
    verified = genuine(agent, vendor)
    sealed = hpke.seal(verified.sealing_key, secrets, secrets_info(verified.chip_uid))
    document, _ = provisioning_for(verified, issuing_ca, image=image, sealed_secrets=sealed)
    with pytest.raises(error, match=message):
        agent.install(document.to_json(), image)
    element = agent.element
    # not provisioned: no certificate chain, the counters where they were; what the boot needed stays
    assert not agent.provisioned
    assert CERTIFICATES_REGION not in element.flash_regions()
    assert element.counter(PROVISIONED_COUNTER) == 0
    assert element.counter(SECURITY_COUNTER) == 0
    assert element.flash_read(IMAGE_REGION) == image
    # rework: the same device answers again and installs an image that boots
    again = genuine(agent, vendor)
    good, certificate = provisioning_for(again, issuing_ca)
    receipt = InstallReceipt.parse(agent.install(good.to_json(), IMAGE))
    verify_receipt(receipt, certificate, hashlib.sha256(IMAGE).digest())
    verify_measurement(receipt, EXPECTED)
    assert agent.provisioned


def test_a_rollback_below_the_devices_counter_does_not_boot(
    vendor: SiliconVendor, issuing_ca: IssuingCa, agent: DeviceAgent
) -> None:
    agent.element.advance(SECURITY_COUNTER, IMAGE_SECURITY_COUNTER + 1)  # this chip saw newer firmware
    document, _ = provisioning_for(genuine(agent, vendor), issuing_ca)
    with pytest.raises(PolicyViolation, match="rollback refused"):
        agent.install(document.to_json(), IMAGE)
    assert not agent.provisioned


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"firmware_digest": b"\x01" * 32}, "booted firmware with digest"),
        ({"firmware_version": "1.2.4+0"}, "booted firmware version 1.2.4"),
        ({"security_counter": IMAGE_SECURITY_COUNTER + 1}, "security counter 4"),
    ],
    ids=["fail/digest", "fail/version", "fail/security-counter"],
)
def test_a_measurement_other_than_the_release_is_refused(
    vendor: SiliconVendor, issuing_ca: IssuingCa, agent: DeviceAgent, change: dict[str, object], message: str
) -> None:
    receipt = _provisioned(vendor, issuing_ca, agent)
    verify_measurement(receipt, EXPECTED)
    with pytest.raises(VerificationFailed, match=message):
        verify_measurement(dataclasses.replace(receipt, **change), EXPECTED)  # type: ignore[arg-type]
    # the same measurement written another way is the same version
    verify_measurement(receipt, ExpectedFirmware(IMAGE_DIGEST, "1.2.3", IMAGE_SECURITY_COUNTER))


def test_another_signed_image_of_the_same_oem_boots_and_is_measured(
    vendor: SiliconVendor, issuing_ca: IssuingCa, agent: DeviceAgent
) -> None:
    image = signed_image(b"another build" * 50, version="2.0.0+7", security_counter=9)
    document, _ = provisioning_for(genuine(agent, vendor), issuing_ca, image=image)
    receipt = InstallReceipt.parse(agent.install(document.to_json(), image))
    assert (receipt.firmware_version, receipt.security_counter) == ("2.0.0+7", 9)
    assert receipt.firmware_digest != IMAGE_DIGEST
