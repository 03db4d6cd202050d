"""The key-store interface: a small protocol every backend implements, keys addressed by URI.

Backends hold private keys and never hand them out. Callers name a key by its URI
(``soft:<label>`` or an RFC 7512 ``pkcs11:`` URI) and get back signatures, shared secrets or opened
HPKE messages. Which backend serves a URI is chosen by its scheme (securesystemslib style).
Auditing (who used which key, for what) is added around a backend by ``KeyService``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from fabtrust.crypto.keys import KeyType, KeyUsage, key_id
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
