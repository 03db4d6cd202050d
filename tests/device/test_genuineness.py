"""Station-side genuineness check: a genuine chip passes; every kind of bad chip or answer is refused
with its own reason, except the perfect clone, which genuineness cannot see (duplicates are found by
the station's records)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import AttributeOID, NameOID

from fabtrust.crypto.keys import KeyType, generate_private_key, key_id, spki_der
from fabtrust.device.agent import IDENTITY_SLOT, DeviceAgent, ReplayingAgent
from fabtrust.device.element import BIRTH_SLOT, SecureElement
from fabtrust.device.protocol import Challenge, GenuinenessResponse, verify_genuineness
from fabtrust.device.vendor import NO_EXPIRY, SiliconVendor
from fabtrust.errors import InvalidInput, VerificationFailed
from tests.device.helpers import NOW, challenge, der


def _answer(element: SecureElement, sent: Challenge) -> GenuinenessResponse:
    return GenuinenessResponse.parse(DeviceAgent(element).answer(sent.to_json()))


@pytest.mark.parametrize(
    ("vendor_key", "identity_key"),
    [
        pytest.param(KeyType.P256, KeyType.P256, id="ok/p256-vendor/p256-identity"),
        pytest.param(KeyType.ED25519, KeyType.ED25519, id="ok/ed25519-vendor/ed25519-identity"),
    ],
)
def test_a_genuine_chip_passes(vendor_key: KeyType, identity_key: KeyType) -> None:
    vendor = SiliconVendor("Acme Silicon", now=NOW, key_type=vendor_key)
    chip = vendor.make_chip()
    sent = challenge()
    response = GenuinenessResponse.parse(
        DeviceAgent(chip, identity_key_type=identity_key).answer(sent.to_json())
    )
    result = verify_genuineness(response, sent, [vendor.root], NOW)
    assert result.chip_uid == chip.uid
    assert result.vendor == "Acme Silicon"
    assert result.birth_key_id == key_id(chip.public_key(BIRTH_SLOT))
    assert result.sealing_key == chip.public_key("sealing")
    assert result.csr.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) == chip.public_key(IDENTITY_SLOT)
    assert result.csr.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == chip.uid


def test_birth_certificate_follows_ieee_802_1ar(vendor: SiliconVendor, chip: SecureElement) -> None:
    birth = x509.load_der_x509_certificate(chip.birth_certificate)
    assert birth.not_valid_after_utc == NO_EXPIRY  # 99991231235959Z
    assert birth.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == chip.uid
    assert birth.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == vendor.name
    usage = birth.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature
    assert not usage.key_cert_sign
    assert chip.birth_chain[1:] == (der(vendor.birth_ca),)


def test_the_accepted_vendor_is_found_among_several_anchors(
    vendor: SiliconVendor, chip: SecureElement
) -> None:
    other = SiliconVendor("Other Fab", now=NOW)
    sent = challenge()
    result = verify_genuineness(_answer(chip, sent), sent, [other.root, vendor.root], NOW)
    assert result.vendor == "Acme Silicon"


def test_a_chip_of_an_unknown_vendor_is_refused(vendor: SiliconVendor) -> None:
    stranger = SiliconVendor("Other Fab", now=NOW).make_chip()
    sent = challenge()
    with pytest.raises(VerificationFailed, match="chip is not from an accepted silicon vendor"):
        verify_genuineness(_answer(stranger, sent), sent, [vendor.root], NOW)


def test_a_forged_uid_is_refused_because_its_signature_fails(
    vendor: SiliconVendor, chip: SecureElement
) -> None:
    forged = vendor.forge_uid(chip)
    assert forged.uid == chip.uid
    assert forged.birth_chain == chip.birth_chain
    sent = challenge()
    with pytest.raises(VerificationFailed, match="does not verify under the chip's birth key"):
        verify_genuineness(_answer(forged, sent), sent, [vendor.root], NOW)


def test_a_perfect_clone_passes_genuineness(vendor: SiliconVendor, chip: SecureElement) -> None:
    """Genuineness proves possession of a certified birth key, which a clone has. The station finds
    clones by seeing one chip UID (and birth key) twice."""
    clone = vendor.clone(chip)
    results = []
    for element in (chip, clone):
        sent = challenge()
        results.append(verify_genuineness(_answer(element, sent), sent, [vendor.root], NOW))
    original, copied = results
    assert (copied.chip_uid, copied.birth_key_id) == (original.chip_uid, original.birth_key_id)
    assert copied.csr.public_key() != original.csr.public_key()  # fresh identity keys on each
    assert clone.slots() == {BIRTH_SLOT: KeyType.P256, IDENTITY_SLOT: KeyType.P256, "sealing": KeyType.X25519}


def test_a_replayed_response_is_refused(vendor: SiliconVendor, chip: SecureElement) -> None:
    first = challenge()
    recorded = DeviceAgent(chip).answer(first.to_json())
    verify_genuineness(GenuinenessResponse.parse(recorded), first, [vendor.root], NOW)
    second = challenge()
    replayed = ReplayingAgent(recorded).answer(second.to_json())
    with pytest.raises(VerificationFailed, match="does not answer this challenge"):
        verify_genuineness(GenuinenessResponse.parse(replayed), second, [vendor.root], NOW)


def _software_csr(serial: str, password: bytes | None) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)])
    )
    if password is not None:
        builder = builder.add_attribute(AttributeOID.CHALLENGE_PASSWORD, password)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _signed_by_birth_key(element: SecureElement, sent: Challenge, csr: bytes) -> GenuinenessResponse:
    """A response built by hand around ``csr``, properly signed by the chip's birth key."""
    draft = GenuinenessResponse(
        chip_uid=element.uid,
        nonce=sent.nonce,
        csr=csr,
        sealing_key=element.public_key("sealing"),
        birth_chain=element.birth_chain,
        signature=b"\x00",
    )
    return dataclasses.replace(draft, signature=element.sign(BIRTH_SLOT, draft.signed_payload()))


@pytest.mark.parametrize(
    "password",
    [
        pytest.param("another-nonce", id="fail/other-challenge"),
        pytest.param("uppercase", id="fail/uppercase-hex"),
        pytest.param("raw", id="fail/raw-nonce-text"),
        pytest.param(None, id="fail/no-challenge-password"),
    ],
)
def test_a_csr_not_bound_to_the_challenge_is_refused(
    vendor: SiliconVendor, chip: SecureElement, password: str | None
) -> None:
    sent = challenge()
    _answer(chip, challenge())  # creates the identity and sealing keys
    if password is None:
        csr = _software_csr(chip.uid, None)
    else:
        value = {
            "another-nonce": challenge().nonce.hex(),
            "uppercase": sent.nonce.hex().upper(),
            "raw": sent.nonce.hex()[:-2],
        }[password]
        csr = chip.make_csr(IDENTITY_SLOT, chip.uid, value)
    response = _signed_by_birth_key(chip, sent, csr)
    with pytest.raises(VerificationFailed, match="certificate request is not bound to this challenge"):
        verify_genuineness(response, sent, [vendor.root], NOW)


def test_a_csr_for_another_chip_uid_is_refused(vendor: SiliconVendor, chip: SecureElement) -> None:
    sent = challenge()
    _answer(chip, challenge())
    response = _signed_by_birth_key(
        chip, sent, chip.make_csr(IDENTITY_SLOT, "ffffffffffffffff", sent.nonce.hex())
    )
    with pytest.raises(VerificationFailed, match="certificate request is for another chip UID"):
        verify_genuineness(response, sent, [vendor.root], NOW)


@pytest.mark.parametrize(
    ("string_type", "accepted"),
    [
        pytest.param(_ASN1Type.PrintableString, True, id="ok/printable-string"),
        pytest.param(_ASN1Type.UTF8String, True, id="ok/utf8-string"),
        pytest.param(_ASN1Type.BMPString, False, id="fail/bmp-string"),
    ],
)
def test_the_requests_serial_number_is_a_printable_or_utf8_string(
    vendor: SiliconVendor, chip: SecureElement, string_type: _ASN1Type, accepted: bool
) -> None:
    """X.520 gives serialNumber the PrintableString syntax; UTF8String is let through, other
    string types are not read as the chip UID."""
    sent = challenge()
    _answer(chip, challenge())
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, chip.uid, _type=string_type)]))
        .add_attribute(AttributeOID.CHALLENGE_PASSWORD, sent.nonce.hex().encode())
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )
    response = _signed_by_birth_key(chip, sent, csr)
    if accepted:
        genuine = verify_genuineness(response, sent, [vendor.root], NOW)
        assert genuine.csr_key == key.public_key()
        assert genuine.csr_spki == spki_der(key.public_key())
    else:
        with pytest.raises(VerificationFailed, match="certificate request is for another chip UID"):
            verify_genuineness(response, sent, [vendor.root], NOW)


def test_a_sealing_key_that_is_not_x25519_is_refused(vendor: SiliconVendor, chip: SecureElement) -> None:
    sent = challenge()
    _answer(chip, challenge())
    draft = _signed_by_birth_key(chip, sent, chip.make_csr(IDENTITY_SLOT, chip.uid, sent.nonce.hex()))
    draft = dataclasses.replace(draft, sealing_key=chip.public_key(IDENTITY_SLOT))
    response = dataclasses.replace(draft, signature=chip.sign(BIRTH_SLOT, draft.signed_payload()))
    with pytest.raises(InvalidInput, match="sealing key is not an X25519 public key"):
        verify_genuineness(response, sent, [vendor.root], NOW)


def _tamper(response: GenuinenessResponse, field: str, sent: Challenge) -> GenuinenessResponse:
    if field == "sealing_key":  # a man in the middle substitutes his own sealing key
        return dataclasses.replace(
            response, sealing_key=spki_der(generate_private_key(KeyType.X25519).public_key())
        )
    if field == "csr":  # ... or his own identity key, bound to the right nonce
        return dataclasses.replace(response, csr=_software_csr(response.chip_uid, sent.nonce.hex().encode()))
    if field == "signature":
        return dataclasses.replace(
            response, signature=response.signature[:-1] + bytes([response.signature[-1] ^ 1])
        )
    raise AssertionError(field)


@pytest.mark.parametrize("field", ["sealing_key", "csr", "signature"], ids=lambda f: f"fail/tampered-{f}")
def test_a_tampered_response_is_refused(vendor: SiliconVendor, chip: SecureElement, field: str) -> None:
    sent = challenge()
    response = _tamper(_answer(chip, sent), field, sent)
    with pytest.raises(VerificationFailed, match="does not verify under the chip's birth key"):
        verify_genuineness(response, sent, [vendor.root], NOW)


def test_a_response_claiming_another_uid_is_refused(vendor: SiliconVendor, chip: SecureElement) -> None:
    sent = challenge()
    response = dataclasses.replace(_answer(chip, sent), chip_uid="ffffffffffffffff")
    with pytest.raises(VerificationFailed, match="birth certificate is for another chip UID"):
        verify_genuineness(response, sent, [vendor.root], NOW)


@pytest.mark.parametrize(
    ("offset", "message"),
    [
        pytest.param(
            -timedelta(seconds=1), "birth chain entry 0 is not yet valid", id="fail/before-manufacture"
        ),
        pytest.param(timedelta(days=21 * 365), "birth chain entry 1 expired", id="fail/birth-ca-expired"),
    ],
)
def test_a_vendor_chain_outside_its_validity_is_refused(
    vendor: SiliconVendor, chip: SecureElement, offset: timedelta, message: str
) -> None:
    sent = challenge()
    response = _answer(chip, sent)
    with pytest.raises(VerificationFailed, match=message):
        verify_genuineness(response, sent, [vendor.root], NOW + offset)


def test_a_broken_birth_chain_is_refused(vendor: SiliconVendor, chip: SecureElement) -> None:
    """The birth CA of another vendor between the birth certificate and the accepted root."""
    other = SiliconVendor("Other Fab", now=NOW)
    sent = challenge()
    response = _answer(chip, sent)
    response = dataclasses.replace(response, birth_chain=(response.birth_chain[0], der(other.birth_ca)))
    with pytest.raises(VerificationFailed, match="birth certificate chain is broken after entry 0"):
        verify_genuineness(response, sent, [vendor.root, other.root], NOW)


def _certificate(
    subject: x509.Name, issuer: x509.Name, public_key: object, signer: ec.EllipticCurvePrivateKey, *, ca: bool
) -> x509.Certificate:
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )


def test_an_end_entity_certificate_cannot_issue_birth_certificates(chip: SecureElement) -> None:
    """RFC 5280 6.1.4 (k): only a CA:TRUE certificate may issue. A leaf whose key signed a 'birth
    certificate' (as an extracted birth key could) does not make that certificate genuine."""
    root_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Trusted Fab")])
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a chip")])
    root = _certificate(root_name, root_name, root_key.public_key(), root_key, ca=True)
    leaf = _certificate(leaf_name, root_name, leaf_key.public_key(), root_key, ca=False)
    birth = _certificate(
        x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, chip.uid)]),
        leaf_name,
        serialization.load_der_public_key(chip.public_key(BIRTH_SLOT)),
        leaf_key,
        ca=False,
    )
    sent = challenge()
    response = _answer(chip, sent)
    draft = dataclasses.replace(response, birth_chain=(der(birth), der(leaf)))
    response = dataclasses.replace(draft, signature=chip.sign(BIRTH_SLOT, draft.signed_payload()))
    with pytest.raises(VerificationFailed, match="birth certificate chain is broken after entry 0"):
        verify_genuineness(response, sent, [root], NOW)
    leaf_as_ca = _certificate(leaf_name, root_name, leaf_key.public_key(), root_key, ca=True)
    draft = dataclasses.replace(response, birth_chain=(der(birth), der(leaf_as_ca)))
    response = dataclasses.replace(draft, signature=chip.sign(BIRTH_SLOT, draft.signed_payload()))
    assert verify_genuineness(response, sent, [root], NOW).vendor == "Trusted Fab"  # control


@pytest.mark.parametrize(
    ("case", "message"),
    [
        pytest.param("no-anchors", "no accepted silicon vendors", id="fail/no-anchors"),
        pytest.param("naive-time", "timezone-aware", id="fail/naive-time"),
        pytest.param("bad-der", "birth chain entry 0 is not a DER certificate", id="fail/bad-der"),
    ],
)
def test_bad_arguments_are_invalid_input(
    vendor: SiliconVendor, chip: SecureElement, case: str, message: str
) -> None:
    sent = challenge()
    response = _answer(chip, sent)
    anchors = [] if case == "no-anchors" else [vendor.root]
    now = NOW.replace(tzinfo=None) if case == "naive-time" else NOW
    if case == "bad-der":
        response = dataclasses.replace(response, birth_chain=(b"not a certificate",))
    with pytest.raises(InvalidInput, match=message):
        verify_genuineness(response, sent, anchors, now)
