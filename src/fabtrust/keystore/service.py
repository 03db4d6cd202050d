"""Audited key use: every creation, use and destruction of a key becomes an audit event.

``KeyService`` wraps a backend and reports each operation (key id, operation, purpose, outcome)
to a recorder callback; the data home wires that callback to the audit log. Refusals are
reported too. No key material, message or plaintext is ever passed to the recorder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from fabtrust.crypto.keys import KeyType, KeyUsage
from fabtrust.errors import FabtrustError, InvalidInput
from fabtrust.keystore.base import KeyInfo, KeyStore, importer
from fabtrust.keystore.uri import SCHEME as PKCS11_SCHEME
from fabtrust.keystore.uri import parse_pkcs11_uri

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class KeyEvent:
    operation: str  # key.generate | key.import | key.sign | key.exchange | key.hpke-open | key.destroy
    uri: str
    key_id: str | None
    purpose: str
    outcome: str  # ok | refused | failed
    reason: str | None = None  # the error code of a refusal, never a secret


KeyRecorder = Callable[[KeyEvent], None]


def _loggable_uri(uri: str) -> str:
    """``uri`` as it may appear in an event: a PKCS#11 URI loses its ``pin-value`` (RFC 7512 2.3)."""
    if uri[: len(PKCS11_SCHEME) + 1].lower() != PKCS11_SCHEME + ":":
        return uri
    try:
        return parse_pkcs11_uri(uri).format()  # format() never writes pin-value
    except InvalidInput:
        return f"{PKCS11_SCHEME}:<unparsable>"


class KeyService:
    """A key store whose every key creation and use is recorded."""

    def __init__(self, store: KeyStore, record: KeyRecorder) -> None:
        self.store = store
        self._record = record

    def _run(self, operation: str, subject: tuple[str, str | None], purpose: str, act: Callable[[], T]) -> T:
        """Run ``act`` and record it; ``subject`` is the (loggable URI, key id) it acts on."""
        uri, key_id = subject
        if not purpose or len(purpose) > 128:
            raise InvalidInput("a key operation needs a purpose of 1-128 characters")
        try:
            result = act()
        except FabtrustError as exc:
            self._record(KeyEvent(operation, uri, key_id, purpose, "refused", exc.code))
            raise
        except Exception:
            self._record(KeyEvent(operation, uri, key_id, purpose, "failed", "internal"))
            raise
        if isinstance(result, KeyInfo):
            key_id, uri = result.key_id, result.uri
        self._record(KeyEvent(operation, uri, key_id, purpose, "ok"))
        return result

    def _subject(self, uri: str) -> tuple[str, str | None]:
        """The key's canonical URI and id, or (if it cannot be found) the URI without secrets."""
        try:
            info = self.store.get(uri)
        except FabtrustError:
            return _loggable_uri(uri), None
        return info.uri, info.key_id

    def generate(self, label: str, key_type: KeyType, usage: KeyUsage, *, purpose: str) -> KeyInfo:
        return self._run(
            "key.generate",
            (_loggable_uri(label), None),
            purpose,
            lambda: self.store.generate(label, key_type, usage),
        )

    def import_key(
        self, label: str, key_type: KeyType, usage: KeyUsage, pkcs8_der: bytes, *, purpose: str
    ) -> KeyInfo:
        """Import a PKCS#8 private key (root ceremony, restore); non-exportable from then on.

        Recorded like ``generate``, refusals included (a backend that cannot import is one); the
        event names the key by URI and id, never its material. Wiping ``pkcs8_der`` is the
        caller's job (see :class:`fabtrust.keystore.base.KeyImporter`).
        """
        return self._run(
            "key.import",
            (_loggable_uri(label), None),
            purpose,
            lambda: importer(self.store).import_private_key(label, key_type, usage, pkcs8_der),
        )

    def get(self, uri: str) -> KeyInfo:
        return self.store.get(uri)

    def list(self) -> list[KeyInfo]:
        return self.store.list()

    def sign(self, uri: str, message: bytes, *, purpose: str) -> bytes:
        return self._run("key.sign", self._subject(uri), purpose, lambda: self.store.sign(uri, message))

    def sign_digest(self, uri: str, digest: bytes, *, purpose: str) -> bytes:
        """ECDSA over a precomputed digest; recorded as ``key.sign`` like any other signature."""
        return self._run("key.sign", self._subject(uri), purpose, lambda: self.store.sign_digest(uri, digest))

    def exchange(self, uri: str, peer_public_key_der: bytes, *, purpose: str) -> bytes:
        return self._run(
            "key.exchange", self._subject(uri), purpose, lambda: self.store.exchange(uri, peer_public_key_der)
        )

    def hpke_open(self, uri: str, sealed: bytes, info: bytes, *, purpose: str) -> bytes:
        return self._run(
            "key.hpke-open", self._subject(uri), purpose, lambda: self.store.hpke_open(uri, sealed, info)
        )

    def destroy(self, uri: str, *, purpose: str) -> None:
        self._run("key.destroy", self._subject(uri), purpose, lambda: self.store.destroy(uri))
