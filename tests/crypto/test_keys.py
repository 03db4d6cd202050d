"""Key types, signatures, public-key loading and the usage matrix."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, mldsa, rsa, utils, x448, x25519

from fabtrust.crypto.keys import (
    USAGES,
    KeyType,
    KeyUsage,
    check_usage,
    ec_curve,
    ecdsa_digest,
    generate_private_key,
    key_id,
    key_type_of,
    load_public_key,
    sign_with,
    spki_der,
    supported_public_key,
    verify_signature,
)
from fabtrust.errors import InvalidInput, VerificationFailed

SIGNING_TYPES = [
    pytest.param(KeyType.P256, id="ecdsa-p256"),
    pytest.param(KeyType.P384, id="ecdsa-p384"),
    pytest.param(KeyType.ED25519, id="ed25519"),
    pytest.param(KeyType.MLDSA65, id="ml-dsa-65"),
]
ALL_TYPES = [pytest.param(kt, id=kt.value) for kt in KeyType]
PRIVATE_CLASS = {
    KeyType.P256: ec.EllipticCurvePrivateKey,
    KeyType.P384: ec.EllipticCurvePrivateKey,
    KeyType.ED25519: ed25519.Ed25519PrivateKey,
    KeyType.MLDSA65: mldsa.MLDSA65PrivateKey,
    KeyType.X25519: x25519.X25519PrivateKey,
}
MESSAGE = b"production record 42"


@pytest.mark.parametrize("key_type", ALL_TYPES)
def test_generate(key_type: KeyType) -> None:
    key = generate_private_key(key_type)
    assert isinstance(key, PRIVATE_CLASS[key_type])
    der = spki_der(key.public_key())
    loaded = load_public_key(der)
    assert key_type_of(loaded) is key_type
    assert spki_der(loaded) == der
    assert key_id(der) == hashlib.sha256(der).hexdigest()
    assert spki_der(generate_private_key(key_type).public_key()) != der  # fresh every time


@pytest.mark.parametrize("key_type", SIGNING_TYPES)
def test_sign_and_verify(key_type: KeyType) -> None:
    key = generate_private_key(key_type)
    der = spki_der(key.public_key())
    signature = sign_with(key, key_type, MESSAGE)
    verify_signature(der, MESSAGE, signature)
    verify_signature(der, b"", sign_with(key, key_type, b""))


def test_ecdsa_encoding_and_hash() -> None:
    # DER Ecdsa-Sig-Value (RFC 3279 2.2.3) over SHA-256 / SHA-384: pyca's own verifier agrees.
    for key_type, algorithm in [(KeyType.P256, hashes.SHA256()), (KeyType.P384, hashes.SHA384())]:
        key = generate_private_key(key_type)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        signature = sign_with(key, key_type, MESSAGE)
        utils.decode_dss_signature(signature)  # raises unless DER
        key.public_key().verify(signature, MESSAGE, ec.ECDSA(algorithm))
        digest = ecdsa_digest(key_type, MESSAGE)
        assert len(digest) == algorithm.digest_size
        key.public_key().verify(signature, digest, ec.ECDSA(utils.Prehashed(algorithm)))


def _flip_last(signature: bytes) -> bytes:
    return signature[:-1] + bytes([signature[-1] ^ 1])


def _flip_first(signature: bytes) -> bytes:
    return bytes([signature[0] ^ 0x80]) + signature[1:]


SIGNATURE_TAMPERS = [
    pytest.param(lambda s: _flip_last(s), id="last-bit"),
    pytest.param(lambda s: _flip_first(s), id="first-bit"),
    pytest.param(lambda s: s[:-1], id="truncated"),
    pytest.param(lambda s: s + b"\x00", id="extended"),
    pytest.param(lambda s: b"", id="empty"),
    pytest.param(lambda s: bytes(len(s)), id="zeros"),
]


@pytest.mark.parametrize("key_type", SIGNING_TYPES)
@pytest.mark.parametrize("tamper", SIGNATURE_TAMPERS)
def test_tampered_signature_fails(key_type: KeyType, tamper: Callable[[bytes], bytes]) -> None:
    key = generate_private_key(key_type)
    der = spki_der(key.public_key())
    with pytest.raises(VerificationFailed):
        verify_signature(der, MESSAGE, tamper(sign_with(key, key_type, MESSAGE)))


@pytest.mark.parametrize("key_type", SIGNING_TYPES)
def test_signature_over_another_message_or_key_fails(key_type: KeyType) -> None:
    key = generate_private_key(key_type)
    signature = sign_with(key, key_type, MESSAGE)
    with pytest.raises(VerificationFailed):
        verify_signature(spki_der(key.public_key()), MESSAGE + b"!", signature)
    with pytest.raises(VerificationFailed):
        verify_signature(spki_der(key.public_key()), b"", signature)
    other = spki_der(generate_private_key(key_type).public_key())
    with pytest.raises(VerificationFailed):
        verify_signature(other, MESSAGE, signature)


def test_signature_with_wrong_ecdsa_hash_fails() -> None:
    # A P-384 signature over SHA-256 is not a fabtrust P-384 signature.
    key = generate_private_key(KeyType.P384)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    signature = key.sign(MESSAGE, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(VerificationFailed):
        verify_signature(spki_der(key.public_key()), MESSAGE, signature)


@pytest.mark.parametrize(
    ("key_type", "claimed"),
    [
        pytest.param(KeyType.P384, KeyType.P256, id="p384-key-claimed-p256"),
        pytest.param(KeyType.P256, KeyType.P384, id="p256-key-claimed-p384"),
        pytest.param(KeyType.P256, KeyType.ED25519, id="p256-key-claimed-ed25519"),
        pytest.param(KeyType.ED25519, KeyType.MLDSA65, id="ed25519-key-claimed-ml-dsa"),
        pytest.param(KeyType.X25519, KeyType.ED25519, id="x25519-key-claimed-ed25519"),
    ],
)
def test_sign_with_mismatched_type_is_refused(key_type: KeyType, claimed: KeyType) -> None:
    with pytest.raises(InvalidInput, match=key_type.value):
        sign_with(generate_private_key(key_type), claimed, MESSAGE)


def test_x25519_cannot_sign_or_verify() -> None:
    key = generate_private_key(KeyType.X25519)
    with pytest.raises(InvalidInput, match="cannot sign"):
        sign_with(key, KeyType.X25519, MESSAGE)
    with pytest.raises(InvalidInput, match="cannot verify"):
        verify_signature(spki_der(key.public_key()), MESSAGE, b"\x00" * 64)


def _der(key: object) -> bytes:
    public = key.public_key()  # type: ignore[attr-defined]
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


P256_DER = spki_der(generate_private_key(KeyType.P256).public_key())

REFUSED_PUBLIC_KEYS = [
    pytest.param(lambda: _der(rsa.generate_private_key(65537, 2048)), "unsupported", id="rsa-2048"),
    pytest.param(lambda: _der(dsa.generate_private_key(2048)), "unsupported", id="dsa"),
    pytest.param(lambda: _der(ed448.Ed448PrivateKey.generate()), "unsupported", id="ed448"),
    pytest.param(lambda: _der(x448.X448PrivateKey.generate()), "unsupported", id="x448"),
    pytest.param(lambda: _der(ec.generate_private_key(ec.SECP521R1())), "curve", id="ec-p521"),
    pytest.param(lambda: _der(ec.generate_private_key(ec.SECP256K1())), "curve", id="ec-secp256k1"),
    pytest.param(lambda: b"", "SubjectPublicKeyInfo", id="empty"),
    pytest.param(lambda: b"garbage", "SubjectPublicKeyInfo", id="garbage"),
    pytest.param(lambda: b"\x30\x00", "SubjectPublicKeyInfo", id="empty-sequence"),
    pytest.param(lambda: P256_DER[:-1], "SubjectPublicKeyInfo", id="truncated"),
    pytest.param(lambda: P256_DER + b"\x00", "SubjectPublicKeyInfo", id="trailing-byte"),
    pytest.param(
        lambda: P256_DER[:-1] + bytes([P256_DER[-1] ^ 1]), "SubjectPublicKeyInfo", id="point-off-curve"
    ),
    pytest.param(
        lambda: generate_private_key(KeyType.P256).private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        "SubjectPublicKeyInfo",
        id="private-key-der",
    ),
    pytest.param(
        lambda: serialization.load_der_public_key(P256_DER).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "SubjectPublicKeyInfo",
        id="pem-not-der",
    ),
]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: "not a key", id="str"),
        pytest.param(lambda: None, id="none"),
        pytest.param(lambda: rsa.generate_private_key(65537, 2048).public_key(), id="rsa-object"),
        pytest.param(lambda: ed448.Ed448PrivateKey.generate().public_key(), id="ed448-object"),
        pytest.param(lambda: generate_private_key(KeyType.P256), id="private-key-object"),
    ],
)
def test_supported_public_key_refuses_other_objects(make: Callable[[], object]) -> None:
    thing = make()
    for _ in range(2):  # the second time from the per-class answer kept after the first
        with pytest.raises(InvalidInput, match="unsupported public key algorithm"):
            supported_public_key(thing)


@pytest.mark.parametrize("key_type", ALL_TYPES)
def test_supported_public_key_keeps_known_types(key_type: KeyType) -> None:
    public = generate_private_key(key_type).public_key()
    for _ in range(2):
        assert supported_public_key(public) is public
        assert key_type_of(public) is key_type


@pytest.mark.parametrize(("make_der", "fragment"), REFUSED_PUBLIC_KEYS)
def test_load_public_key_refuses(make_der: Callable[[], bytes], fragment: str) -> None:
    der = make_der()
    with pytest.raises(InvalidInput) as err:
        load_public_key(der)
    assert fragment in err.value.message
    with pytest.raises(InvalidInput):
        verify_signature(der, MESSAGE, b"\x00" * 64)


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("rsa-2048", id="rsa"),
        pytest.param("ECDSA-P256", id="wrong-case"),
        pytest.param("ecdsa-p256 ", id="trailing-space"),
        pytest.param("", id="empty"),
        pytest.param("ecdsa-p521", id="p521"),
    ],
)
def test_key_type_parse_unknown(value: str) -> None:
    with pytest.raises(InvalidInput) as err:
        KeyType.parse(value)
    assert repr(value) in err.value.message
    assert "ecdsa-p256" in err.value.message  # names what is known


@pytest.mark.parametrize("key_type", ALL_TYPES)
def test_key_type_parse_known(key_type: KeyType) -> None:
    assert KeyType.parse(key_type.value) is key_type


USAGE_MATRIX = [
    (KeyType.P256, KeyUsage.SIGN, True),
    (KeyType.P256, KeyUsage.AGREE, True),
    (KeyType.P384, KeyUsage.SIGN, True),
    (KeyType.P384, KeyUsage.AGREE, True),
    (KeyType.ED25519, KeyUsage.SIGN, True),
    (KeyType.ED25519, KeyUsage.AGREE, False),
    (KeyType.MLDSA65, KeyUsage.SIGN, True),
    (KeyType.MLDSA65, KeyUsage.AGREE, False),
    (KeyType.X25519, KeyUsage.SIGN, False),
    (KeyType.X25519, KeyUsage.AGREE, True),
]


@pytest.mark.parametrize(
    ("key_type", "usage", "allowed"),
    [
        pytest.param(kt, u, ok, id=f"{'ok' if ok else 'refused'}/{kt.value}/{u.value}")
        for kt, u, ok in USAGE_MATRIX
    ],
)
def test_check_usage(key_type: KeyType, usage: KeyUsage, allowed: bool) -> None:
    assert (usage in USAGES[key_type]) is allowed
    if allowed:
        check_usage(key_type, usage)
    else:
        with pytest.raises(InvalidInput, match=key_type.value):
            check_usage(key_type, usage)


def test_usage_matrix_is_complete() -> None:
    assert {(kt, u) for kt, u, _ in USAGE_MATRIX} == {(kt, u) for kt in KeyType for u in KeyUsage}


@pytest.mark.parametrize(
    ("key_type", "curve"),
    [pytest.param(KeyType.P256, "secp256r1", id="p256"), pytest.param(KeyType.P384, "secp384r1", id="p384")],
)
def test_ec_helpers(key_type: KeyType, curve: str) -> None:
    assert ec_curve(key_type).name == curve


@pytest.mark.parametrize("key_type", [KeyType.ED25519, KeyType.MLDSA65, KeyType.X25519])
def test_ec_helpers_refuse_other_types(key_type: KeyType) -> None:
    with pytest.raises(InvalidInput):
        ec_curve(key_type)
    with pytest.raises(InvalidInput):
        ecdsa_digest(key_type, MESSAGE)
