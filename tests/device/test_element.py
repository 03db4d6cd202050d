"""The secure-element model: keys stay inside, slots lock, counters only rise, OTP is write-once,
sealed storage is encrypted and bound to its name."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.x509.oid import AttributeOID, NameOID

from fabtrust.crypto import hpke
from fabtrust.crypto.encoding import b64
from fabtrust.crypto.keys import KeyType, PrivateKey, verify_signature
from fabtrust.device.element import BIRTH_SLOT, MAX_COUNTER, SecureElement
from fabtrust.errors import (
    Conflict,
    FabtrustError,
    InvalidInput,
    NotFound,
    PolicyViolation,
    VerificationFailed,
)


@pytest.fixture
def element() -> SecureElement:
    return SecureElement("00112233445566ff")


@pytest.mark.parametrize(
    "key_type", [KeyType.P256, KeyType.ED25519, KeyType.X25519], ids=["ok/p256", "ok/ed25519", "ok/x25519"]
)
def test_a_written_slot_is_locked(element: SecureElement, key_type: KeyType) -> None:
    public = element.generate_key("k", key_type)
    with pytest.raises(Conflict, match="key slot 'k' is locked"):
        element.generate_key("k", KeyType.P256)
    assert element.public_key("k") == public
    assert element.slots() == {"k": key_type}


@pytest.mark.parametrize(
    ("slot", "key_type", "error", "message"),
    [
        pytest.param("k", KeyType.P384, InvalidInput, "cannot hold ecdsa-p384", id="fail/p384"),
        pytest.param("k", KeyType.MLDSA65, InvalidInput, "cannot hold ml-dsa-65", id="fail/mldsa"),
        pytest.param("Bad Slot", KeyType.P256, InvalidInput, "slot name", id="fail/slot-name"),
        pytest.param("", KeyType.P256, InvalidInput, "slot name", id="fail/empty-slot-name"),
    ],
)
def test_unsupported_keys_and_names_are_refused(
    element: SecureElement, slot: str, key_type: KeyType, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        element.generate_key(slot, key_type)
    assert element.slots() == {}


def test_signatures_verify_under_the_slot_public_key(element: SecureElement) -> None:
    for slot, key_type in (("p256", KeyType.P256), ("ed", KeyType.ED25519)):
        public = element.generate_key(slot, key_type)
        verify_signature(public, b"message", element.sign(slot, b"message"))


def test_one_key_one_usage(element: SecureElement) -> None:
    element.generate_key("sig", KeyType.P256)
    element.generate_key("agree", KeyType.X25519)
    with pytest.raises(PolicyViolation, match="cannot be used to agree"):
        element.hpke_open("sig", b"\x00" * 100, b"info")
    with pytest.raises(PolicyViolation, match="cannot be used to sign"):
        element.sign("agree", b"message")
    with pytest.raises(NotFound, match="key slot 'nope' is empty"):
        element.sign("nope", b"message")


def test_hpke_open_inside_the_element(element: SecureElement) -> None:
    public = element.generate_key("agree", KeyType.X25519)
    sealed = hpke.seal(public, b"secret", b"info")
    assert element.hpke_open("agree", sealed, b"info") == b"secret"
    with pytest.raises(VerificationFailed):
        element.hpke_open("agree", sealed, b"other info")


def test_csr_is_self_signed_with_serial_and_challenge_password(element: SecureElement) -> None:
    public = element.generate_key("id", KeyType.P256)
    csr = x509.load_der_x509_csr(element.make_csr("id", "0011", "abcdef"))
    assert csr.is_signature_valid
    assert csr.subject == x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "0011")])
    assert csr.attributes.get_attribute_for_oid(AttributeOID.CHALLENGE_PASSWORD).value == b"abcdef"
    assert (
        csr.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == public
    )
    with pytest.raises(InvalidInput, match="challenge password"):
        element.make_csr("id", "0011", "")


def test_counters_only_go_up(element: SecureElement) -> None:
    assert element.counter("boot") == 0
    values = [element.increment("boot") for _ in range(5)]
    assert values == [1, 2, 3, 4, 5]
    assert element.counter("boot") == 5
    assert element.counter("other") == 0
    setters = [
        name for name in dir(element) if "counter" in name and name.startswith(("set", "reset", "decr"))
    ]
    assert setters == []


def test_a_counter_refuses_to_wrap(element: SecureElement) -> None:
    element._counters["boot"] = MAX_COUNTER  # the only way to get there within a test's time
    with pytest.raises(PolicyViolation, match="exhausted"):
        element.increment("boot")
    assert element.counter("boot") == MAX_COUNTER


def test_otp_is_write_once(element: SecureElement) -> None:
    assert element.otp("row") is None
    element.burn("row", b"\x01" * 32)
    element.burn("row", b"\x01" * 32)  # same value: idempotent
    with pytest.raises(Conflict, match="already burnt with another value"):
        element.burn("row", b"\x02" * 32)
    assert element.otp("row") == b"\x01" * 32
    with pytest.raises(InvalidInput, match="1 to 64 bytes"):
        element.burn("big", b"\x00" * 65)


def test_sealed_storage_is_encrypted_and_bound_to_its_name(element: SecureElement) -> None:
    element.store_sealed("secret", b"the device secret")
    assert element.load_sealed("secret") == b"the device secret"
    blob = element.sealed_blob("secret")
    assert b"the device secret" not in blob
    # What an attacker with flash access could do: move or alter the ciphertext.
    element._sealed["moved"] = blob
    with pytest.raises(VerificationFailed, match="'moved' does not open"):
        element.load_sealed("moved")
    element._sealed["secret"] = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(VerificationFailed, match="'secret' does not open"):
        element.load_sealed("secret")
    with pytest.raises(NotFound):
        element.load_sealed("absent")


def test_sealed_storage_does_not_open_on_another_chip(element: SecureElement) -> None:
    element.store_sealed("secret", b"data")
    other = SecureElement(element.uid)  # same UID, another chip-unique key
    other._sealed["secret"] = element.sealed_blob("secret")
    with pytest.raises(VerificationFailed):
        other.load_sealed("secret")


def test_flash_is_plain_rewritable_storage(element: SecureElement) -> None:
    element.flash_write("image", b"v1")
    element.flash_write("image", b"v2")
    assert element.flash_read("image") == b"v2"
    assert element.flash_regions() == frozenset({"image"})
    with pytest.raises(NotFound, match="flash region 'boot' is empty"):
        element.flash_read("boot")


def test_the_birth_chain_is_write_once(element: SecureElement) -> None:
    element.set_birth_chain((b"birth", b"ca"))
    with pytest.raises(Conflict, match="already written"):
        element.set_birth_chain((b"other",))
    assert element.birth_chain == (b"birth", b"ca")


def _private_bytes(key: PrivateKey) -> bytes:
    """The secret scalar or seed of a test key (read through the model's internals, on purpose)."""
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.private_numbers().private_value.to_bytes(32, "big")
    assert isinstance(key, ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey)
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


@pytest.mark.parametrize(
    "attempt",
    [
        pytest.param(pickle.dumps, id="fail/pickle"),
        pytest.param(copy.copy, id="fail/copy"),
        pytest.param(copy.deepcopy, id="fail/deepcopy"),
    ],
)
def test_the_element_cannot_be_serialised_or_copied(attempt: Any) -> None:
    element = SecureElement("00112233445566ff")
    element.generate_key(BIRTH_SLOT, KeyType.P256)
    with pytest.raises(PolicyViolation, match="keys never leave it"):
        attempt(element)


def test_no_public_surface_exposes_a_private_key(element: SecureElement) -> None:
    for slot, key_type in (("p", KeyType.P256), ("e", KeyType.ED25519), ("x", KeyType.X25519)):
        element.generate_key(slot, key_type)
    secrets = [_private_bytes(entry.private_key) for entry in element._slots.values()]
    text = repr(element) + str(element)
    for secret in secrets:
        for rendering in (secret.hex(), b64(secret), repr(secret)):
            assert rendering not in text
    assert "PrivateKey" not in text
    for name in dir(element):
        if name.startswith("_"):
            continue
        try:
            value = getattr(element, name)
        except FabtrustError:  # birth_certificate of a blank element
            continue
        assert "PrivateKey" not in type(value).__name__, name
