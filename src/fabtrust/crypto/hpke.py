"""HPKE base mode (RFC 9180) for sealed documents.

Sealing and opening with software keys use ``cryptography.hazmat.primitives.hpke``. A key held in
an HSM cannot be handed to that API, so :func:`open_with_exchange` performs the same base-mode
decryption with the Diffie-Hellman step delegated to a callback (the HSM's ECDH) and the rest of
the RFC 9180 key schedule here. Tests check both paths open what ``cryptography`` seals.

One suite per recipient key type (the KEM follows the key; KDF and AEAD are fixed):

| key        | KEM (RFC 9180 7.1)           | KDF         | AEAD        |
|------------|------------------------------|-------------|-------------|
| ecdsa-p256 | DHKEM(P-256, HKDF-SHA256)     | HKDF-SHA256 | AES-256-GCM |
| ecdsa-p384 | DHKEM(P-384, HKDF-SHA384)     | HKDF-SHA384 | AES-256-GCM |
| x25519     | DHKEM(X25519, HKDF-SHA256)    | HKDF-SHA256 | AES-256-GCM |
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import hpke as _hpke
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from fabtrust.crypto.keys import KeyType, PrivateKey, PublicKey, key_type_of, load_public_key
from fabtrust.errors import InvalidInput, VerificationFailed

_AEAD_ID_AES_256_GCM = 0x0002
_NK, _NN = 32, 12  # AES-256-GCM key and nonce lengths


@dataclass(frozen=True)
class _Kem:
    kem_id: int
    kdf_id: int
    hash_name: str
    n_secret: int
    enc_len: int
    suite: _hpke.Suite


_KEMS: dict[KeyType, _Kem] = {
    KeyType.P256: _Kem(
        0x0010,
        0x0001,
        "sha256",
        32,
        65,
        _hpke.Suite(_hpke.KEM.P256, _hpke.KDF.HKDF_SHA256, _hpke.AEAD.AES_256_GCM),
    ),
    KeyType.P384: _Kem(
        0x0011,
        0x0002,
        "sha384",
        48,
        97,
        _hpke.Suite(_hpke.KEM.P384, _hpke.KDF.HKDF_SHA384, _hpke.AEAD.AES_256_GCM),
    ),
    KeyType.X25519: _Kem(
        0x0020,
        0x0001,
        "sha256",
        32,
        32,
        _hpke.Suite(_hpke.KEM.X25519, _hpke.KDF.HKDF_SHA256, _hpke.AEAD.AES_256_GCM),
    ),
}


def _kem_for(key_type: KeyType) -> _Kem:
    try:
        return _KEMS[key_type]
    except KeyError:
        raise InvalidInput(f"{key_type.value} keys cannot receive HPKE messages") from None


def seal(recipient_public_key_der: bytes, plaintext: bytes, info: bytes) -> bytes:
    """Seal ``plaintext`` to a recipient: returns ``enc || ciphertext``."""
    return seal_to_key(load_public_key(recipient_public_key_der), plaintext, info)


def seal_to_key(public_key: PublicKey, plaintext: bytes, info: bytes) -> bytes:
    """:func:`seal` to a recipient key loaded already (and checked, where it came from a peer)."""
    kem = _kem_for(key_type_of(public_key))
    if not isinstance(public_key, ec.EllipticCurvePublicKey | x25519.X25519PublicKey):
        raise InvalidInput("recipient key cannot receive HPKE messages")
    return kem.suite.encrypt(plaintext, public_key, info=info)


def open_with_private_key(private_key: PrivateKey, key_type: KeyType, sealed: bytes, info: bytes) -> bytes:
    """Open with a software private key (cryptography's HPKE)."""
    kem = _kem_for(key_type)
    if len(sealed) < kem.enc_len + 16:
        raise InvalidInput("sealed message is truncated")
    if not isinstance(private_key, ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey):
        raise InvalidInput("key cannot open HPKE messages")
    if key_type_of(private_key.public_key()) is not key_type:
        raise InvalidInput(f"key is not a {key_type.value} key")
    try:
        return kem.suite.decrypt(sealed, private_key, info=info)
    except (InvalidTag, ValueError) as exc:
        raise VerificationFailed(
            "sealed message does not open with this key (wrong recipient or tampered)"
        ) from exc


def _encap_public_der(key_type: KeyType, enc: bytes) -> bytes:
    """DER SPKI of the sender's ephemeral key from its RFC 9180 serialisation."""
    public: PublicKey
    try:
        if key_type is KeyType.X25519:
            public = x25519.X25519PublicKey.from_public_bytes(enc)
        else:
            curve = ec.SECP256R1() if key_type is KeyType.P256 else ec.SECP384R1()
            public = ec.EllipticCurvePublicKey.from_encoded_point(curve, enc)
    except ValueError as exc:
        raise VerificationFailed("sealed message carries an invalid ephemeral key") from exc
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _serialize_public(public: PublicKey) -> bytes:
    if isinstance(public, x25519.X25519PublicKey):
        return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if isinstance(public, ec.EllipticCurvePublicKey):
        return public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    raise InvalidInput("key cannot receive HPKE messages")


class _Labeled:
    """LabeledExtract / LabeledExpand of RFC 9180 section 4 for one suite_id."""

    def __init__(self, suite_id: bytes, hash_name: str) -> None:
        self.suite_id = suite_id
        self.hash_name = hash_name

    def extract(self, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        # HKDF-Extract (RFC 5869 2.2): HMAC-Hash(salt, IKM); an empty salt is HashLen zeros, which
        # HMAC's key padding makes identical to the empty key.
        return hmac.new(salt, b"HPKE-v1" + self.suite_id + label + ikm, self.hash_name).digest()

    def expand(self, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
        algorithm: hashes.HashAlgorithm = hashes.SHA256() if self.hash_name == "sha256" else hashes.SHA384()
        labeled_info = length.to_bytes(2, "big") + b"HPKE-v1" + self.suite_id + label + info
        return HKDFExpand(algorithm, length, labeled_info).derive(prk)


def open_with_exchange(
    recipient_public_key_der: bytes,
    sealed: bytes,
    info: bytes,
    exchange: Callable[[bytes], bytes],
) -> bytes:
    """Open a base-mode message whose recipient private key lives elsewhere.

    ``exchange(peer_spki_der)`` returns the raw Diffie-Hellman output with the recipient key
    (the x-coordinate for NIST curves, RFC 9180 7.1.1). The rest follows RFC 9180 4.1 (DHKEM
    Decap), 5.1 (KeySchedule, mode_base) and 5.2 (Open, sequence number 0).
    """
    recipient = load_public_key(recipient_public_key_der)
    key_type = key_type_of(recipient)
    kem = _kem_for(key_type)
    if len(sealed) < kem.enc_len + 16:
        raise InvalidInput("sealed message is truncated")
    enc, ciphertext = sealed[: kem.enc_len], sealed[kem.enc_len :]

    # DHKEM Decap (RFC 9180 4.1)
    dh = exchange(_encap_public_der(key_type, enc))
    if not any(dh):
        # RFC 9180 7.1.4: an all-zero shared secret (a low-order ephemeral key) must be refused.
        raise VerificationFailed("sealed message carries an invalid ephemeral key")
    kem_labeled = _Labeled(b"KEM" + kem.kem_id.to_bytes(2, "big"), kem.hash_name)
    kem_context = enc + _serialize_public(recipient)
    eae_prk = kem_labeled.extract(b"", b"eae_prk", dh)
    shared_secret = kem_labeled.expand(eae_prk, b"shared_secret", kem_context, kem.n_secret)

    # KeySchedule, mode_base (RFC 9180 5.1)
    suite_id = b"HPKE" + kem.kem_id.to_bytes(2, "big") + kem.kdf_id.to_bytes(2, "big")
    suite_id += _AEAD_ID_AES_256_GCM.to_bytes(2, "big")
    ks = _Labeled(suite_id, kem.hash_name)
    context = b"\x00" + ks.extract(b"", b"psk_id_hash", b"") + ks.extract(b"", b"info_hash", info)
    secret = ks.extract(shared_secret, b"secret", b"")
    key = ks.expand(secret, b"key", context, _NK)
    base_nonce = ks.expand(secret, b"base_nonce", context, _NN)
    try:
        return AESGCM(key).decrypt(base_nonce, ciphertext, b"")
    except InvalidTag:
        raise VerificationFailed(
            "sealed message does not open with this key (wrong recipient or tampered)"
        ) from None
