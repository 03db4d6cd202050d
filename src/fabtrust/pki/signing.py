"""Sign X.509 structures with keys that stay in a key store.

cryptography's builders (certificates, CRLs, OCSP responses) accept any object implementing its
private-key interface and call its ``sign``; these proxies forward that call to the key store, so
an HSM-held CA key never leaves the HSM. MCUboot image signing (``fabtrust.firmware.image``) uses
the same proxies with a prehashed ECDSA digest. Only what a builder needs is implemented; the rest
refuses. The hash a builder asks for must be the one the key store uses for that key type.
"""

from __future__ import annotations

from typing import Any, NoReturn

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from fabtrust.crypto.keys import KeyType, load_public_key
from fabtrust.errors import InvalidInput
from fabtrust.keystore.base import KeyInfo, KeyStore

CaPrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey

_HASH: dict[KeyType, type[hashes.HashAlgorithm]] = {KeyType.P256: hashes.SHA256, KeyType.P384: hashes.SHA384}


def _refuse(*_: Any) -> NoReturn:
    raise InvalidInput("a key-store key cannot be exported or used for this")


class _StoreEcKey(ec.EllipticCurvePrivateKey):
    def __init__(self, store: KeyStore, info: KeyInfo) -> None:
        public = load_public_key(info.public_key_der)
        assert isinstance(public, ec.EllipticCurvePublicKey)
        self._store, self._info, self._public = store, info, public

    def sign(self, data: Any, signature_algorithm: ec.EllipticCurveSignatureAlgorithm) -> bytes:
        """``ECDSA(<hash>)`` signs ``data`` as a message; ``ECDSA(Prehashed(<hash>))`` signs ``data``
        as that hash's digest (``KeyStore.sign_digest``, MCUboot images). ``<hash>`` must be the
        key's own (SHA-256 for P-256, SHA-384 for P-384); anything else is refused."""
        wanted = _HASH[self._info.key_type]
        refused = InvalidInput(
            f"a {self._info.key_type.value} key signs with ECDSA and {wanted.name} "
            f"(over a message, or a {wanted.name} digest with Prehashed)"
        )
        if not isinstance(signature_algorithm, ec.ECDSA):
            raise refused
        if signature_algorithm.deterministic_signing:
            raise InvalidInput("a key-store key does not offer deterministic ECDSA (RFC 6979)")
        algorithm = signature_algorithm.algorithm
        if isinstance(algorithm, Prehashed):
            # Prehashed names its hash only in _algorithm (cryptography's own backend reads it);
            # the digest size alone would let SHA3-256 or SHA-512/256 pass as SHA-256.
            if not isinstance(getattr(algorithm, "_algorithm", None), wanted):
                raise refused
            return self._store.sign_digest(self._info.uri, bytes(data))
        if not isinstance(algorithm, wanted):
            raise refused
        return self._store.sign(self._info.uri, bytes(data))

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._public.curve

    @property
    def key_size(self) -> int:
        return self._public.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._public

    exchange = private_numbers = private_bytes = _refuse  # type: ignore[assignment]

    def __copy__(self) -> _StoreEcKey:
        return self

    def __deepcopy__(self, memo: Any) -> _StoreEcKey:
        return self


class _StoreEd25519Key(ed25519.Ed25519PrivateKey):
    def __init__(self, store: KeyStore, info: KeyInfo) -> None:
        public = load_public_key(info.public_key_der)
        assert isinstance(public, ed25519.Ed25519PublicKey)
        self._store, self._info, self._public = store, info, public

    def sign(self, data: Any) -> bytes:
        return self._store.sign(self._info.uri, bytes(data))

    def public_key(self) -> ed25519.Ed25519PublicKey:
        return self._public

    private_bytes = private_bytes_raw = _refuse  # type: ignore[assignment]

    def __copy__(self) -> _StoreEd25519Key:
        return self

    def __deepcopy__(self, memo: Any) -> _StoreEd25519Key:
        return self


def ca_private_key(store: KeyStore, info: KeyInfo) -> CaPrivateKey:
    """A private key for cryptography's builders: a stand-in signing through the key store, or,
    where the store keeps its keys in this process anyway (``InProcessKeys``), the key itself so
    that the builder signs natively (measured: ~35 µs less per certificate)."""
    local = getattr(store, "in_process_signing_key", None)
    if local is not None:
        key = local(info.uri)
        if isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            return key
    if info.key_type in _HASH:
        return _StoreEcKey(store, info)
    if info.key_type is KeyType.ED25519:
        return _StoreEd25519Key(store, info)
    raise InvalidInput(
        f"{info.key_type.value} keys cannot sign certificates here (use P-256, P-384 or Ed25519)"
    )


def signature_hash(info: KeyInfo) -> hashes.SHA256 | hashes.SHA384 | None:
    """The hash a builder must be given for this CA key (None for Ed25519)."""
    if info.key_type is KeyType.P256:
        return hashes.SHA256()
    if info.key_type is KeyType.P384:
        return hashes.SHA384()
    return None
