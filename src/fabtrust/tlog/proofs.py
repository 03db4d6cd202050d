"""Proof documents: inclusion and consistency proofs as JSON an outside verifier can check offline.

``fabtrust.inclusion-proof/v1``: origin, index, size, leaf_hash, hashes, root.
``fabtrust.consistency-proof/v1``: origin, old_size, new_size, old_root, new_root, hashes.
Hashes are standard base64. A proof document is only half the story: the root it claims must be
the root of a checkpoint signed by the log's key (``verify_with_checkpoint``).
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from fabtrust.crypto.encoding import b64 as _b64
from fabtrust.crypto.encoding import unb64
from fabtrust.errors import InvalidInput, VerificationFailed
from fabtrust.tlog import merkle
from fabtrust.tlog.checkpoint import NoteVerifier, open_checkpoint
from fabtrust.tlog.log import ConsistencyProof, InclusionProof

INCLUSION = "fabtrust.inclusion-proof/v1"
CONSISTENCY = "fabtrust.consistency-proof/v1"
MAX_PROOF_DOC = 64 * 1024
_MAX_HASHES = 128


def _hash(value: object, what: str) -> bytes:
    raw = unb64(value, what)
    if len(raw) != merkle.HASH_SIZE:
        raise InvalidInput(f"{what} must be {merkle.HASH_SIZE} bytes")
    return raw


def _int(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value >= 2**63:
        raise InvalidInput(f"{what} must be a non-negative integer")
    return value


def _hashes(value: object) -> tuple[bytes, ...]:
    if not isinstance(value, list) or len(value) > _MAX_HASHES:
        raise InvalidInput(f"hashes must be a list of at most {_MAX_HASHES} entries")
    return tuple(_hash(h, f"hashes[{i}]") for i, h in enumerate(value))


def inclusion_doc(origin: str, proof: InclusionProof) -> dict[str, Any]:
    return {
        "format": INCLUSION,
        "origin": origin,
        "index": proof.index,
        "size": proof.size,
        "leaf_hash": _b64(proof.leaf_hash),
        "hashes": [_b64(h) for h in proof.hashes],
        "root": _b64(proof.root),
    }


def consistency_doc(origin: str, proof: ConsistencyProof) -> dict[str, Any]:
    return {
        "format": CONSISTENCY,
        "origin": origin,
        "old_size": proof.old_size,
        "new_size": proof.new_size,
        "old_root": _b64(proof.old_root),
        "new_root": _b64(proof.new_root),
        "hashes": [_b64(h) for h in proof.hashes],
    }


def parse_doc(raw: bytes) -> tuple[str, InclusionProof | ConsistencyProof]:
    """Parse a proof document (either kind); returns (origin, proof). Malformed → InvalidInput."""
    if len(raw) > MAX_PROOF_DOC:
        raise InvalidInput("proof document is too large")
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput("proof document is not valid JSON") from None
    if not isinstance(doc, dict):
        raise InvalidInput("proof document must be a JSON object")
    origin = doc.get("origin")
    if not isinstance(origin, str) or not origin:
        raise InvalidInput("proof document has no origin")
    kind = doc.get("format")
    if kind == INCLUSION:
        expected = {"format", "origin", "index", "size", "leaf_hash", "hashes", "root"}
        if set(doc) != expected:
            raise InvalidInput("inclusion proof has missing or unknown fields")
        return origin, InclusionProof(
            _int(doc["index"], "index"),
            _int(doc["size"], "size"),
            _hash(doc["leaf_hash"], "leaf_hash"),
            _hashes(doc["hashes"]),
            _hash(doc["root"], "root"),
        )
    if kind == CONSISTENCY:
        expected = {"format", "origin", "old_size", "new_size", "old_root", "new_root", "hashes"}
        if set(doc) != expected:
            raise InvalidInput("consistency proof has missing or unknown fields")
        return origin, ConsistencyProof(
            _int(doc["old_size"], "old_size"),
            _int(doc["new_size"], "new_size"),
            _hashes(doc["hashes"]),
            _hash(doc["old_root"], "old_root"),
            _hash(doc["new_root"], "new_root"),
        )
    raise InvalidInput(f"unknown proof format {kind!r}")


def verify_with_checkpoint(
    origin: str,
    proof: InclusionProof | ConsistencyProof,
    checkpoint_note: bytes,
    verifier: NoteVerifier,
    *,
    entry: bytes | None = None,
    old_checkpoint_note: bytes | None = None,
) -> None:
    """Verify a proof and tie it to a checkpoint signed by the log key; raise on any failure.

    Inclusion: the proof's tree size and root must be the checkpoint's; with ``entry``, the leaf
    must be that entry. Consistency: the new size and root must be the checkpoint's; with
    ``old_checkpoint_note``, the old size and root must be that (signed) checkpoint's.
    """
    checkpoint = open_checkpoint(checkpoint_note, verifier, origin)
    proof.verify()
    if isinstance(proof, InclusionProof):
        if proof.size != checkpoint.size or not hmac.compare_digest(proof.root, checkpoint.root):
            raise VerificationFailed(
                f"proof is for a tree of size {proof.size} whose root is not the checkpoint's "
                f"(size {checkpoint.size})"
            )
        if entry is not None and not hmac.compare_digest(merkle.leaf_hash(entry), proof.leaf_hash):
            raise VerificationFailed("the entry is not the leaf this proof is about")
        return
    if proof.new_size != checkpoint.size or not hmac.compare_digest(proof.new_root, checkpoint.root):
        raise VerificationFailed("consistency proof does not end at the checkpoint's tree")
    if old_checkpoint_note is not None:
        old = open_checkpoint(old_checkpoint_note, verifier, origin)
        if proof.old_size != old.size or not hmac.compare_digest(proof.old_root, old.root):
            raise VerificationFailed("consistency proof does not start at the old checkpoint's tree")
