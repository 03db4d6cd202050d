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
from fabtrust.keystore.base import KeyInfo, KeyStore

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class KeyEvent:
    operation: str  # key.generate | key.sign | key.exchange | key.hpke-open | key.destroy
    uri: str
    key_id: str | None
    purpose: str
    outcome: str  # ok | refused | failed
    reason: str | None = None  # the error code of a refusal, never a secret


KeyRecorder = Callable[[KeyEvent], None]


class KeyService:
    """A key store whose every key creation and use is recorded."""

    def __init__(self, store: KeyStore, record: KeyRecorder) -> None:
        self.store = store
        self._record = record

    def _run(self, operation: str, uri: str, purpose: str, act: Callable[[], T], key_id: str | None) -> T:
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

    def _key_id(self, uri: str) -> str | None:
        try:
            return self.store.get(uri).key_id
        except FabtrustError:
            return None

    def generate(self, label: str, key_type: KeyType, usage: KeyUsage, *, purpose: str) -> KeyInfo:
        return self._run(
            "key.generate", label, purpose, lambda: self.store.generate(label, key_type, usage), None
        )

    def get(self, uri: str) -> KeyInfo:
        return self.store.get(uri)

    def list(self) -> list[KeyInfo]:
        return self.store.list()

    def sign(self, uri: str, message: bytes, *, purpose: str) -> bytes:
        return self._run("key.sign", uri, purpose, lambda: self.store.sign(uri, message), self._key_id(uri))

    def exchange(self, uri: str, peer_public_key_der: bytes, *, purpose: str) -> bytes:
        return self._run(
            "key.exchange",
            uri,
            purpose,
            lambda: self.store.exchange(uri, peer_public_key_der),
            self._key_id(uri),
        )

    def hpke_open(self, uri: str, sealed: bytes, info: bytes, *, purpose: str) -> bytes:
        return self._run(
            "key.hpke-open", uri, purpose, lambda: self.store.hpke_open(uri, sealed, info), self._key_id(uri)
        )

    def destroy(self, uri: str, *, purpose: str) -> None:
        key_id = self._key_id(uri)
        self._run("key.destroy", uri, purpose, lambda: self.store.destroy(uri), key_id)
