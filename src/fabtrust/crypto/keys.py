"""Key types, signature conventions and public-key handling shared by every key store.

Signature encodings are the ones X.509 and DSSE expect: ECDSA signatures are DER
``Ecdsa-Sig-Value`` (RFC 3279 2.2.3) over SHA-256 (P-256) or SHA-384 (P-384); Ed25519 (RFC 8032)
and ML-DSA-65 (FIPS 204) sign the message itself.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import TypeAlias, cast

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, x25519

from fabtrust.errors import InvalidInput, VerificationFailed

PrivateKey: TypeAlias = (
    ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | mldsa.MLDSA65PrivateKey | x25519.X25519PrivateKey
)
PublicKey: TypeAlias = (
    ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | mldsa.MLDSA65PublicKey | x25519.X25519PublicKey
)


class KeyType(StrEnum):
    """Key algorithms fabtrust knows. Anything else is refused (fail closed)."""

    P256 = "ecdsa-p256"
    P384 = "ecdsa-p384"
    ED25519 = "ed25519"
    MLDSA65 = "ml-dsa-65"
    X25519 = "x25519"

    @classmethod
    def parse(cls, value: str) -> KeyType:
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(k.value for k in cls)
            raise InvalidInput(f"unknown key type {value!r} (known: {known})") from None


class KeyUsage(StrEnum):
    """What a key may do. One key, one usage: signing keys never do key agreement and vice versa."""

    SIGN = "sign"
    AGREE = "agree"


#: Which usages each key type supports.
USAGES: dict[KeyType, frozenset[KeyUsage]] = {
    KeyType.P256: frozenset({KeyUsage.SIGN, KeyUsage.AGREE}),
    KeyType.P384: frozenset({KeyUsage.SIGN, KeyUsage.AGREE}),
    KeyType.ED25519: frozenset({KeyUsage.SIGN}),
    KeyType.MLDSA65: frozenset({KeyUsage.SIGN}),
    KeyType.X25519: frozenset({KeyUsage.AGREE}),
}

_CURVES: dict[KeyType, ec.EllipticCurve] = {KeyType.P256: ec.SECP256R1(), KeyType.P384: ec.SECP384R1()}
_ECDSA_HASH: dict[KeyType, type[hashes.HashAlgorithm]] = {
    KeyType.P256: hashes.SHA256,
    KeyType.P384: hashes.SHA384,
}
# the ECDSA signature algorithm of each curve, made once: cryptography's ECDSA objects hold only
# their hash and are never changed, and a station signs and verifies several times per device
ECDSA_ALGORITHM: dict[KeyType, ec.ECDSA] = {kt: ec.ECDSA(h()) for kt, h in _ECDSA_HASH.items()}


def check_usage(key_type: KeyType, usage: KeyUsage) -> None:
    if usage not in USAGES[key_type]:
        raise InvalidInput(f"a {key_type.value} key cannot be used to {usage.value}")


def ec_curve(key_type: KeyType) -> ec.EllipticCurve:
    try:
        return _CURVES[key_type]
    except KeyError:
        raise InvalidInput(f"{key_type.value} is not an elliptic-curve key type") from None


def ecdsa_digest(key_type: KeyType, message: bytes) -> bytes:
    """The digest an ECDSA key signs: SHA-256 for P-256, SHA-384 for P-384 (hashed on the host)."""
    if key_type is KeyType.P256:
        return hashlib.sha256(message).digest()
    if key_type is KeyType.P384:
        return hashlib.sha384(message).digest()
    raise InvalidInput(f"{key_type.value} is not an ECDSA key type")


def generate_private_key(key_type: KeyType) -> PrivateKey:
    """A fresh software private key of the given type."""
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type])
    if key_type is KeyType.ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    if key_type is KeyType.MLDSA65:
        return mldsa.MLDSA65PrivateKey.generate()
    if key_type is KeyType.X25519:
        return x25519.X25519PrivateKey.generate()
    raise InvalidInput(f"cannot generate {key_type.value} keys")


def sign_with(private_key: PrivateKey, key_type: KeyType, message: bytes) -> bytes:
    """Sign ``message`` with a software key, in the encoding described in the module docstring.

    ``key_type`` must be the key's own type: the ECDSA hash follows the curve, and a signature made
    with another hash would never verify.
    """
    actual = key_type_of(private_key.public_key())
    if actual is not key_type:
        raise InvalidInput(f"the key is a {actual.value} key, not {key_type.value}")
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.sign(message, ECDSA_ALGORITHM[key_type])
    if isinstance(private_key, ed25519.Ed25519PrivateKey | mldsa.MLDSA65PrivateKey):
        return private_key.sign(message)
    raise InvalidInput(f"a {key_type.value} key cannot sign")


def spki_der(public_key: PublicKey) -> bytes:
    """DER SubjectPublicKeyInfo (RFC 5280 4.1.2.7)."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_id(public_key_der: bytes) -> str:
    """A key's stable identifier: hex SHA-256 of its DER SubjectPublicKeyInfo."""
    return hashlib.sha256(public_key_der).hexdigest()


def load_public_key(der: bytes) -> PublicKey:
    """Load a DER SubjectPublicKeyInfo of a supported type; anything else is InvalidInput."""
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidInput("public key is not a valid DER SubjectPublicKeyInfo") from exc
    return supported_public_key(key)


_PUBLIC_FAMILIES: tuple[type, ...] = (
    ec.EllipticCurvePublicKey,
    ed25519.Ed25519PublicKey,
    mldsa.MLDSA65PublicKey,
    x25519.X25519PublicKey,
)


_FAMILY_OF: dict[type, type | None] = {}


def _public_family(cls: type) -> type | None:
    """The supported public-key interface that instances of ``cls`` implement, or None; found once
    per concrete class (the interfaces are abstract classes, an isinstance test against them costs
    about a microsecond, and a station checks several keys per device)."""
    try:
        return _FAMILY_OF[cls]
    except KeyError:
        family = _FAMILY_OF[cls] = next((f for f in _PUBLIC_FAMILIES if issubclass(cls, f)), None)
        return family


def supported_public_key(key: object) -> PublicKey:
    """``key`` (from a certificate or request) if it is of a type fabtrust knows, else InvalidInput."""
    if _public_family(type(key)) is None:
        raise InvalidInput("unsupported public key algorithm")
    public = cast(PublicKey, key)
    key_type_of(public)  # an EC key on another curve than P-256/P-384 is InvalidInput
    return public


def key_type_of(public_key: PublicKey) -> KeyType:
    family = _public_family(type(public_key))
    if family is ec.EllipticCurvePublicKey:
        curve = cast(ec.EllipticCurvePublicKey, public_key).curve.name
        for kt, known in _CURVES.items():
            if curve == known.name:
                return kt
        raise InvalidInput(f"unsupported curve {curve}")
    if family is ed25519.Ed25519PublicKey:
        return KeyType.ED25519
    if family is mldsa.MLDSA65PublicKey:
        return KeyType.MLDSA65
    return KeyType.X25519


def verify_signature(public_key_der: bytes, message: bytes, signature: bytes) -> None:
    """Verify ``signature`` over ``message``; raise VerificationFailed if it does not verify."""
    verify_with_key(load_public_key(public_key_der), message, signature)


def verify_with_key(key: PublicKey, message: bytes, signature: bytes) -> None:
    """:func:`verify_signature` with a public key object loaded already (from a certificate)."""
    family = _public_family(type(key))
    try:
        if family is ec.EllipticCurvePublicKey:
            ec_key = cast(ec.EllipticCurvePublicKey, key)
            ec_key.verify(signature, message, ECDSA_ALGORITHM[key_type_of(ec_key)])
        elif family is ed25519.Ed25519PublicKey or family is mldsa.MLDSA65PublicKey:
            cast("ed25519.Ed25519PublicKey | mldsa.MLDSA65PublicKey", key).verify(signature, message)
        else:
            raise InvalidInput("an x25519 key cannot verify signatures")
    except InvalidSignature:
        raise VerificationFailed("signature does not verify") from None
