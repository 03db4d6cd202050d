"""DSSE envelopes (Dead Simple Signing Envelope, secure-systems-lab/dsse v1.0).

A signature covers PAE(payloadType, payload) =
``"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`` (lengths in ASCII decimal), never the JSON
envelope itself, so the payload type is bound and nothing needs canonicalising. Several signatures
may sit in one envelope (k-of-n approvals); ``verify`` counts distinct trusted keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from fabtrust.crypto.encoding import b64, unb64
from fabtrust.crypto.keys import verify_signature
from fabtrust.errors import InvalidInput, VerificationFailed

MAX_ENVELOPE = 16 * 1024 * 1024
# one encoder for every envelope (json.dumps with options builds a new one per call)
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def pae(payload_type: str, payload: bytes) -> bytes:
    """Pre-authentication encoding (DSSE protocol, "Signature definition")."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def to_json(self) -> bytes:
        return _ENCODE(
            {
                "payload": b64(self.payload),
                "payloadType": self.payload_type,
                "signatures": [{"keyid": s.keyid, "sig": b64(s.sig)} for s in self.signatures],
            }
        ).encode()

    @classmethod
    def parse(cls, raw: bytes) -> Envelope:
        if len(raw) > MAX_ENVELOPE:
            raise InvalidInput("signed envelope is too large")
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InvalidInput("signed envelope is not valid JSON") from None
        if not isinstance(doc, dict) or set(doc) != {"payload", "payloadType", "signatures"}:
            raise InvalidInput("signed envelope must have exactly payload, payloadType and signatures")
        payload_type, sigs = doc["payloadType"], doc["signatures"]
        if not isinstance(payload_type, str) or not payload_type or not isinstance(sigs, list) or not sigs:
            raise InvalidInput("signed envelope needs a payloadType and at least one signature")
        signatures = []
        for s in sigs:
            if (
                not isinstance(s, dict)
                or set(s) - {"keyid", "sig"}
                or not isinstance(s.get("keyid", ""), str)
            ):
                raise InvalidInput("signed envelope has a malformed signature")
            signatures.append(Signature(s.get("keyid", ""), unb64(s.get("sig"), "signed envelope signature")))
        return cls(payload_type, unb64(doc["payload"], "signed envelope payload"), tuple(signatures))


def sign(
    payload_type: str, payload: bytes, signers: Sequence[tuple[str, Callable[[bytes], bytes]]]
) -> Envelope:
    """Envelope ``payload`` signed by each ``(keyid, sign)``; ``sign`` gets the PAE bytes."""
    if not signers:
        raise InvalidInput("an envelope needs at least one signer")
    message = pae(payload_type, payload)
    return Envelope(payload_type, payload, tuple(Signature(keyid, fn(message)) for keyid, fn in signers))


def verify(envelope: Envelope, payload_type: str, trusted: Mapping[str, bytes], threshold: int = 1) -> bytes:
    """Return the payload if at least ``threshold`` distinct trusted keys signed it.

    ``trusted`` maps key ids to DER SubjectPublicKeyInfo. Signatures by unknown key ids are
    ignored; a second signature by the same key counts once; a bad signature by a trusted key
    is an error (it means tampering, not absence).
    """
    if threshold < 1:
        raise InvalidInput("threshold must be at least 1")
    if envelope.payload_type != payload_type:
        raise VerificationFailed(f"envelope holds {envelope.payload_type!r}, expected {payload_type!r}")
    message = pae(envelope.payload_type, envelope.payload)
    good: set[str] = set()
    for s in envelope.signatures:
        key = trusted.get(s.keyid)
        if key is None or s.keyid in good:
            continue
        verify_signature(key, message, s.sig)
        good.add(s.keyid)
    if len(good) < threshold:
        raise VerificationFailed(
            f"envelope has {len(good)} valid signature(s) by trusted keys, {threshold} needed"
        )
    return envelope.payload
