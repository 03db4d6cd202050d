"""Software key store: private keys sealed at rest under a passphrase.

Layout of a key-store directory (format ``fabtrust.soft-keystore/v1``)::

    keystore.json        header: KDF parameters and salt, and a check block
    keys/<label>.json    one file per key (format ``fabtrust.soft-key/v1``)

The key-encryption key is ``scrypt(passphrase, salt, n, r, p)`` (RFC 7914), 32 bytes, used with
AES-256-GCM. The header's check block is an AES-GCM encryption of a fixed string under that key,
so a wrong passphrase is reported as such before any key is touched. Each key file holds the PKCS#8
private key encrypted under the same key with a fresh 96-bit nonce; its associated data is the
canonical JSON of the file's public fields plus the store's salt, so a label, type, usage or public
key swapped between files, or a file moved from another store, fails to open. No private key is
ever written unencrypted; files are written atomically with mode 0600.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeGuard

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from fabtrust.clock import Clock, rfc3339, system_clock
from fabtrust.crypto import hpke
from fabtrust.crypto.canonical import canonical_json
from fabtrust.crypto.encoding import b64 as _b64
from fabtrust.crypto.encoding import unb64 as _unb64
from fabtrust.crypto.keys import (
    KeyType,
    KeyUsage,
    PrivateKey,
    check_usage,
    generate_private_key,
    load_public_key,
    sign_with,
    spki_der,
)
from fabtrust.errors import Conflict, InvalidInput, NotAuthorised, NotFound, Unavailable, VerificationFailed
from fabtrust.keystore.base import KeyInfo, check_ecdsa_digest, check_label, load_pkcs8_private_key

STORE_FORMAT = "fabtrust.soft-keystore/v1"
KEY_FORMAT = "fabtrust.soft-key/v1"
SCHEME = "soft"
_CHECK_PLAINTEXT = b"fabtrust soft key store: passphrase check"
_MAX_FILE = 64 * 1024
# The hash an ECDSA key signs with (as ``sign_with``): the prehashed digest must be of this hash.
_ECDSA_HASH: dict[KeyType, type[hashes.HashAlgorithm]] = {
    KeyType.P256: hashes.SHA256,
    KeyType.P384: hashes.SHA384,
}
# scrypt cost: n=2**15, r=8 (32 MiB, ~0.1 s). A header may ask for more, within bounds, never less.
DEFAULT_SCRYPT_N = 2**15
_SCRYPT_N_RANGE = (2**14, 2**20)
_SCRYPT_MAX_NR = 2**21  # scrypt needs 128*n*r bytes: at most 256 MiB


def soft_uri(label: str) -> str:
    return f"{SCHEME}:{label}"


def _label_from_uri(uri: str) -> str:
    scheme, sep, label = uri.partition(":")
    if scheme != SCHEME or not sep:
        raise InvalidInput(f"not a soft key-store URI: {uri!r} (expected soft:<label>)")
    return check_label(label)


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        size = path.stat().st_size
        if size > _MAX_FILE:
            raise InvalidInput(f"{what} is too large ({size} bytes)")
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{what} not found") from None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8, bad JSON and integer literals too long to convert.
        raise InvalidInput(f"{what} is corrupt or truncated (not valid JSON)") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} is corrupt (not a JSON object)")
    return value


def _write_atomic(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the whole new one.

    With ``exclusive``, the final name is claimed with link(2), which fails if it exists: two
    processes generating the same label cannot overwrite each other's key.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    if exclusive:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise Conflict(f"{path.name} exists already") from None
        finally:
            os.unlink(tmp)
    else:
        os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class _Header:
    salt: bytes
    n: int
    r: int
    p: int
    check_nonce: bytes
    check_ciphertext: bytes

    def kdf_fields(self) -> dict[str, Any]:
        return {"alg": "scrypt", "salt": _b64(self.salt), "n": self.n, "r": self.r, "p": self.p}

    def aad(self) -> bytes:
        return canonical_json({"format": STORE_FORMAT, "kdf": self.kdf_fields()})

    def to_json(self) -> bytes:
        doc = {
            "format": STORE_FORMAT,
            "kdf": self.kdf_fields(),
            "check": {"nonce": _b64(self.check_nonce), "ciphertext": _b64(self.check_ciphertext)},
        }
        return json.dumps(doc, indent=2).encode() + b"\n"

    @classmethod
    def parse(cls, doc: dict[str, Any]) -> _Header:
        what = "key store header"
        if doc.get("format") != STORE_FORMAT:
            raise InvalidInput(f"{what} has unknown format {doc.get('format')!r} (expected {STORE_FORMAT})")
        kdf, check = doc.get("kdf"), doc.get("check")
        if not isinstance(kdf, dict) or not isinstance(check, dict) or kdf.get("alg") != "scrypt":
            raise InvalidInput(f"{what} is corrupt (kdf/check)")
        n, r, p = kdf.get("n"), kdf.get("r"), kdf.get("p")
        if not (_is_int(n) and _is_int(r) and _is_int(p)):
            raise InvalidInput(f"{what} is corrupt (scrypt parameters)")
        if not (_scrypt_n_ok(n) and 1 <= r <= 32 and p == 1 and n * r <= _SCRYPT_MAX_NR):
            # bounded so that a planted header cannot make opening cost gigabytes (128*n*r bytes)
            raise InvalidInput(f"{what} has scrypt parameters outside the accepted range")
        salt = _unb64(kdf.get("salt"), f"{what} salt")
        if len(salt) < 16:
            raise InvalidInput(f"{what} salt is too short")
        check_nonce = _unb64(check.get("nonce"), f"{what} check")
        if len(check_nonce) != 12:
            raise InvalidInput(f"{what} is corrupt (check nonce)")
        return cls(salt, n, r, p, check_nonce, _unb64(check.get("ciphertext"), f"{what} check"))


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _scrypt_n_ok(n: int) -> bool:
    return _SCRYPT_N_RANGE[0] <= n <= _SCRYPT_N_RANGE[1] and n & (n - 1) == 0


def _derive(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    if not passphrase:
        raise NotAuthorised("key-store passphrase is empty")
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode("utf-8"))


class SoftKeyStore:
    """Key store backed by a directory of encrypted files (see module docstring)."""

    scheme = SCHEME

    def __init__(self, root: Path, kek: bytes, header: _Header, clock: Clock = system_clock) -> None:
        self._root = root
        self._aead: AESGCM | None = AESGCM(kek)
        self._header = header
        self._clock = clock
        self._cache: dict[str, tuple[KeyInfo, PrivateKey]] = {}

    # -- opening -------------------------------------------------------------------------------

    @classmethod
    def create(
        cls, root: Path, passphrase: str, *, scrypt_n: int = DEFAULT_SCRYPT_N, clock: Clock = system_clock
    ) -> SoftKeyStore:
        """Create a new, empty key store in ``root`` (Conflict if one is there)."""
        header_path = root / "keystore.json"
        if header_path.exists():
            raise Conflict(f"a key store already exists at {root}")
        if not (_is_int(scrypt_n) and _scrypt_n_ok(scrypt_n)):
            # A store whose header open() would refuse must not be created.
            raise InvalidInput(
                f"scrypt_n must be a power of two from {_SCRYPT_N_RANGE[0]} to {_SCRYPT_N_RANGE[1]}"
            )
        salt = secrets.token_bytes(16)
        kek = _derive(passphrase, salt, scrypt_n, 8, 1)
        nonce = secrets.token_bytes(12)
        header = _Header(salt, scrypt_n, 8, 1, nonce, b"")
        header = _Header(
            salt, scrypt_n, 8, 1, nonce, AESGCM(kek).encrypt(nonce, _CHECK_PLAINTEXT, header.aad())
        )
        (root / "keys").mkdir(parents=True, exist_ok=True, mode=0o700)
        root.chmod(0o700)
        _write_atomic(header_path, header.to_json())
        return cls(root, kek, header, clock)

    @classmethod
    def open(cls, root: Path, passphrase: str, *, clock: Clock = system_clock) -> SoftKeyStore:
        """Open an existing key store; a wrong passphrase is NotAuthorised, a damaged header InvalidInput."""
        header = _Header.parse(_read_json(root / "keystore.json", f"key store header in {root}"))
        kek = _derive(passphrase, header.salt, header.n, header.r, header.p)
        try:
            check = AESGCM(kek).decrypt(header.check_nonce, header.check_ciphertext, header.aad())
        except InvalidTag:
            raise NotAuthorised(
                "wrong key-store passphrase (or the key store header was tampered with)"
            ) from None
        if check != _CHECK_PLAINTEXT:
            raise VerificationFailed("key store header check block is invalid")
        return cls(root, kek, header, clock)

    @staticmethod
    def exists(root: Path) -> bool:
        return (root / "keystore.json").is_file()

    # -- KeyStore protocol -----------------------------------------------------------------------

    def _path(self, label: str) -> Path:
        return self._root / "keys" / f"{check_label(label)}.json"

    def _aead_or_closed(self) -> AESGCM:
        if self._aead is None:
            raise Unavailable("key store is closed")
        return self._aead

    def _key_aad(self, public: dict[str, Any]) -> bytes:
        return canonical_json({"key": public, "store_salt": _b64(self._header.salt)})

    def generate(self, label: str, key_type: KeyType, usage: KeyUsage) -> KeyInfo:
        return self._add(label, key_type, usage, lambda: generate_private_key(key_type))

    def import_private_key(self, label: str, key_type: KeyType, usage: KeyUsage, pkcs8_der: bytes) -> KeyInfo:
        """Seal a PKCS#8 private key into the store (see :class:`fabtrust.keystore.base.KeyImporter`).

        The key file is the same as a generated key's; the caller's copy of the key is the only
        one left outside the store, and wiping it is the caller's job.
        """
        return self._add(label, key_type, usage, lambda: load_pkcs8_private_key(pkcs8_der, key_type))

    def _add(
        self, label: str, key_type: KeyType, usage: KeyUsage, private_key_source: Callable[[], PrivateKey]
    ) -> KeyInfo:
        """Seal a new key into a new key file: Conflict if the label is taken, now or meanwhile."""
        self._aead_or_closed()
        check_usage(key_type, usage)
        path = self._path(label)
        if path.exists():
            raise Conflict(f"a key labelled {label!r} already exists")
        private_key = private_key_source()
        info = KeyInfo(soft_uri(label), label, key_type, usage, spki_der(private_key.public_key()))
        public = {
            "format": KEY_FORMAT,
            "label": label,
            "type": key_type.value,
            "usage": usage.value,
            "public_key": _b64(info.public_key_der),
            "created": rfc3339(self._clock()),
        }
        pkcs8 = private_key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        nonce = secrets.token_bytes(12)
        sealed = self._aead_or_closed().encrypt(nonce, pkcs8, self._key_aad(public))
        doc = {**public, "nonce": _b64(nonce), "ciphertext": _b64(sealed)}
        try:
            _write_atomic(path, json.dumps(doc, indent=2).encode() + b"\n", exclusive=True)
        except Conflict:
            raise Conflict(f"a key labelled {label!r} already exists") from None
        self._cache[label] = (info, private_key)
        return info

    def _load(self, label: str) -> tuple[KeyInfo, PrivateKey]:
        cached = self._cache.get(label)
        if cached is not None:
            return cached
        what = f"key file for {label!r}"
        doc = _read_json(self._path(label), what)
        public = {k: doc.get(k) for k in ("format", "label", "type", "usage", "public_key", "created")}
        if public["format"] != KEY_FORMAT:
            raise InvalidInput(f"{what} has unknown format {public['format']!r} (expected {KEY_FORMAT})")
        if public["label"] != label:
            raise VerificationFailed(f"{what} names another key (moved or tampered with)")
        key_type = KeyType.parse(str(public["type"]))
        try:
            usage = KeyUsage(str(public["usage"]))
        except ValueError:
            raise InvalidInput(f"{what} has unknown usage") from None
        public_der = _unb64(public["public_key"], f"{what} public key")
        nonce, sealed = (
            _unb64(doc.get("nonce"), f"{what} nonce"),
            _unb64(doc.get("ciphertext"), f"{what} ciphertext"),
        )
        try:
            pkcs8 = self._aead_or_closed().decrypt(nonce, sealed, self._key_aad(public))
        except (InvalidTag, ValueError):
            raise VerificationFailed(f"{what} is corrupt or was tampered with") from None
        loaded = serialization.load_der_private_key(pkcs8, password=None)
        if spki_der(loaded.public_key()) != public_der:  # type: ignore[arg-type]
            raise VerificationFailed(f"{what}: private key does not match its public key")
        info = KeyInfo(soft_uri(label), label, key_type, usage, public_der)
        entry = (info, loaded)
        self._cache[label] = entry  # type: ignore[assignment]
        return entry  # type: ignore[return-value]

    def get(self, uri: str) -> KeyInfo:
        self._aead_or_closed()
        return self._load(_label_from_uri(uri))[0]

    def list(self) -> list[KeyInfo]:
        self._aead_or_closed()
        labels = sorted(p.stem for p in (self._root / "keys").glob("*.json") if not p.name.startswith("."))
        return [self._load(label)[0] for label in labels]

    def _private(self, uri: str, usage: KeyUsage) -> tuple[KeyInfo, PrivateKey]:
        self._aead_or_closed()
        info, key = self._load(_label_from_uri(uri))
        if info.usage is not usage:
            raise InvalidInput(f"key {info.label!r} is a {info.usage.value} key and cannot {usage.value}")
        return info, key

    def sign(self, uri: str, message: bytes) -> bytes:
        info, key = self._private(uri, KeyUsage.SIGN)
        return sign_with(key, info.key_type, message)

    def sign_digest(self, uri: str, digest: bytes) -> bytes:
        info, key = self._private(uri, KeyUsage.SIGN)
        check_ecdsa_digest(info.key_type, digest)
        if not isinstance(key, ec.EllipticCurvePrivateKey):  # the stored type is checked at load
            raise InvalidInput(f"key {info.label!r} is not an ECDSA key")
        return key.sign(digest, ec.ECDSA(Prehashed(_ECDSA_HASH[info.key_type]())))

    def in_process_signing_key(self, uri: str) -> PrivateKey:
        """The unlocked signing key itself (``InProcessKeys``): it is in this process already."""
        return self._private(uri, KeyUsage.SIGN)[1]

    def exchange(self, uri: str, peer_public_key_der: bytes) -> bytes:
        _, key = self._private(uri, KeyUsage.AGREE)
        peer = load_public_key(peer_public_key_der)
        if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(peer, ec.EllipticCurvePublicKey):
            if peer.curve.name != key.curve.name:
                raise InvalidInput("peer key is on another curve")
            return key.exchange(ec.ECDH(), peer)
        if isinstance(key, x25519.X25519PrivateKey) and isinstance(peer, x25519.X25519PublicKey):
            try:
                return key.exchange(peer)
            except ValueError:  # RFC 7748 6.1: an all-zero output, from a low-order peer key
                raise InvalidInput("peer key is a low-order X25519 point") from None
        raise InvalidInput("peer key type does not match the key")

    def hpke_open(self, uri: str, sealed: bytes, info: bytes) -> bytes:
        key_info, key = self._private(uri, KeyUsage.AGREE)
        return hpke.open_with_private_key(key, key_info.key_type, sealed, info)

    def destroy(self, uri: str) -> None:
        self._aead_or_closed()
        label = _label_from_uri(uri)
        path = self._path(label)
        if not path.exists():
            raise NotFound(f"no key labelled {label!r}")
        path.unlink()
        self._cache.pop(label, None)

    def close(self) -> None:
        self._cache.clear()
        self._aead = None

    def __enter__(self) -> SoftKeyStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
