"""The key-store interface: a small protocol every backend implements, keys addressed by URI.

Backends hold private keys and never hand them out. Callers name a key by its URI
(``soft:<label>`` or an RFC 7512 ``pkcs11:`` URI) and get back signatures, shared secrets or opened
HPKE messages. Which backend serves a URI is chosen by its scheme (securesystemslib style).
Auditing (who used which key, for what) is added around a backend by ``KeyService``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, x25519

from fabtrust.crypto.keys import KeyType, KeyUsage, PrivateKey, key_id, key_type_of
from fabtrust.errors import InvalidInput

LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_label(label: str) -> str:
    if not LABEL_RE.fullmatch(label):
        raise InvalidInput(
            "key label must be 1-64 characters of A-Z a-z 0-9 . _ - and start with a letter or digit"
        )
    return label


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """Public facts about a key. Never carries private material."""

    uri: str
    label: str
    key_type: KeyType
    usage: KeyUsage
    public_key_der: bytes

    @property
    def key_id(self) -> str:
        return key_id(self.public_key_der)


class KeyStore(Protocol):
    """A home for private keys that do not leave it."""

    scheme: str

    def generate(self, label: str, key_type: KeyType, usage: KeyUsage) -> KeyInfo:
        """Create a new non-exportable key. Conflict if the label is taken."""
        ...

    def get(self, uri: str) -> KeyInfo:
        """The key's public facts. NotFound if there is no such key."""
        ...

    def list(self) -> list[KeyInfo]:
        """All keys, sorted by label."""
        ...

    def sign(self, uri: str, message: bytes) -> bytes:
        """Sign ``message`` (see ``fabtrust.crypto.keys`` for encodings). Needs usage ``sign``."""
        ...

    def sign_digest(self, uri: str, digest: bytes) -> bytes:
        """ECDSA-sign a precomputed ``digest`` (DER Ecdsa-Sig-Value, as ``sign``). Needs usage ``sign``.

        For callers whose format defines the signature over a hash they compute themselves (MCUboot
        signs SHA-256 of the image). The digest must be the key's own hash length (see
        :func:`check_ecdsa_digest`); an Ed25519 key has no prehashed form and is refused.
        """
        ...

    def exchange(self, uri: str, peer_public_key_der: bytes) -> bytes:
        """ECDH/X25519 shared secret with a peer's DER SubjectPublicKeyInfo. Needs usage ``agree``."""
        ...

    def hpke_open(self, uri: str, sealed: bytes, info: bytes) -> bytes:
        """Open an HPKE base-mode message (RFC 9180) sealed to this key (``fabtrust.crypto.hpke``)."""
        ...

    def destroy(self, uri: str) -> None:
        """Delete the key for good. NotFound if there is no such key."""
        ...

    def close(self) -> None:
        """Release sessions and wipe cached key handles."""
        ...


# The hash each ECDSA key type signs with (``fabtrust.crypto.keys.ecdsa_digest``) and its digest size.
_ECDSA_DIGEST_SIZE: dict[KeyType, tuple[str, int]] = {
    KeyType.P256: ("SHA-256", 32),
    KeyType.P384: ("SHA-384", 48),
}


def check_ecdsa_digest(key_type: KeyType, digest: bytes) -> bytes:
    """``digest`` if a ``key_type`` key may sign it prehashed (``KeyStore.sign_digest``); else InvalidInput.

    P-256 keys sign a 32-byte SHA-256 digest and P-384 keys a 48-byte SHA-384 digest, the hashes
    they use for messages. Ed25519 (RFC 8032 pure) and ML-DSA have no prehashed form here: a format
    that signs a digest with them (MCUboot's Ed25519) signs it as the message, with ``sign``.
    """
    if not isinstance(digest, bytes):
        raise InvalidInput("the digest to sign must be bytes")
    expected = _ECDSA_DIGEST_SIZE.get(key_type)
    if expected is None:
        raise InvalidInput(
            f"a {key_type.value} key has no prehashed signing: only ECDSA keys sign a digest "
            "(sign the message itself)"
        )
    name, size = expected
    if len(digest) != size:
        raise InvalidInput(
            f"a {key_type.value} key signs a {size}-byte {name} digest, not {len(digest)} bytes"
        )
    return digest


# --- optional capability: importing a private key ------------------------------------------------


@runtime_checkable
class KeyImporter(Protocol):
    """A key store that can take in a private key created elsewhere (root key ceremony, restore).

    An imported key is held exactly like a generated one and is non-exportable from then on: the
    store never hands it out again. What the store cannot undo is the copy the caller still holds.
    The caller is responsible for wiping it, and in Python that is best effort only: ``bytes`` are
    immutable, and the interpreter, pyca/cryptography and the PKCS#11 binding make copies that stay
    in memory until reused. Keep the material in as few objects as possible, for as short a time as
    possible, and drop every reference after the import.
    """

    def import_private_key(self, label: str, key_type: KeyType, usage: KeyUsage, pkcs8_der: bytes) -> KeyInfo:
        """Store an unencrypted PKCS#8 private key (RFC 5208 / RFC 5958) under ``label``.

        InvalidInput if the PKCS#8 is malformed, encrypted, not of ``key_type``, or ``usage`` is
        not allowed for that type (or this store cannot hold the type); Conflict if the label is
        taken. Nothing changes on a refusal.
        """
        ...


def importer(store: KeyStore) -> KeyImporter:
    """``store`` as a :class:`KeyImporter`; InvalidInput if its backend cannot import keys."""
    if isinstance(store, KeyImporter):
        return store
    raise InvalidInput(f"the {store.scheme} key store cannot import keys")


def _der_header(data: bytes, offset: int) -> tuple[int, int, int] | None:
    """(tag, content offset, content length) of the DER element at ``offset``, or None."""
    if len(data) < offset + 2:
        return None
    tag, length, start = data[offset], data[offset + 1], offset + 2
    if length & 0x80:
        n = length & 0x7F
        if not 1 <= n <= 3 or len(data) < start + n:
            return None
        length, start = int.from_bytes(data[start : start + n], "big"), start + n
    if len(data) < start + length:
        return None
    return tag, start, length


def load_pkcs8_private_key(pkcs8_der: bytes, key_type: KeyType) -> PrivateKey:
    """Load an unencrypted DER PKCS#8 private key that must be of ``key_type``; else InvalidInput.

    Shared by every :class:`KeyImporter`. The outer structure is checked to be a PrivateKeyInfo
    (RFC 5208 5) / OneAsymmetricKey (RFC 5958 2): SEQUENCE { INTEGER 0 or 1, AlgorithmIdentifier,
    ... }, so a SEC1 or PKCS#1 key, or an EncryptedPrivateKeyInfo, is refused by name;
    pyca/cryptography parses the rest and checks that an embedded public key matches.
    """
    if not isinstance(pkcs8_der, bytes):
        raise InvalidInput("the private key must be DER PKCS#8 bytes")
    outer = _der_header(pkcs8_der, 0)
    if outer is None or outer[0] != 0x30 or outer[1] + outer[2] != len(pkcs8_der):
        raise InvalidInput("the private key is not a DER PKCS#8 structure")
    version = _der_header(pkcs8_der, outer[1])
    if version is not None and version[0] == 0x30:
        raise InvalidInput("the private key is encrypted PKCS#8: decrypt it before importing")
    algorithm = None if version is None else _der_header(pkcs8_der, version[1] + version[2])
    if (
        version is None
        or version[0] != 0x02
        or pkcs8_der[version[1] : version[1] + version[2]] not in (b"\x00", b"\x01")
        or algorithm is None
        or algorithm[0] != 0x30
    ):
        raise InvalidInput("the private key is not PKCS#8 (a SEC1 or PKCS#1 key must be converted first)")
    try:
        key = serialization.load_der_private_key(pkcs8_der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The library's message may quote parts of the input: never pass it on.
        raise InvalidInput("the private key is not a valid unencrypted PKCS#8 key") from None
    if not isinstance(
        key,
        ec.EllipticCurvePrivateKey
        | ed25519.Ed25519PrivateKey
        | mldsa.MLDSA65PrivateKey
        | x25519.X25519PrivateKey,
    ):
        raise InvalidInput("the private key's algorithm is not supported")
    actual = key_type_of(key.public_key())  # another curve than P-256/P-384 is InvalidInput
    if actual is not key_type:
        raise InvalidInput(f"the private key is a {actual.value} key, not {key_type.value}")
    return key


class InProcessKeys(Protocol):
    """Optional capability of a key store whose private keys live in this process's memory anyway
    (the soft store, once unlocked): hand a signing key object to a library that signs natively.
    An HSM-backed store never offers it. The key object must not be stored, logged or exported."""

    def in_process_signing_key(self, uri: str) -> PrivateKey: ...
