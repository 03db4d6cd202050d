"""Audit entries, log exports and proof documents: what an outside auditor verifies offline."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from fabtrust.crypto.canonical import canonical_json
from fabtrust.errors import InvalidInput, VerificationFailed
from fabtrust.store.engine import Store, sqlite_url
from fabtrust.tlog import proofs
from fabtrust.tlog.audit import AuditEntry, AuditLog, Outcome
from fabtrust.tlog.checkpoint import Ed25519NoteSigner, NoteVerifier, verifier_key
from fabtrust.tlog.export import verify_export, write_export
from fabtrust.tlog.log import MerkleLog, SignedCheckpoint

ORIGIN = "audit.test/log"
T = datetime(2026, 11, 21, 5, 40, 0, 123456, tzinfo=UTC)


def entry(**overrides: object) -> AuditEntry:
    fields: dict[str, object] = {
        "type": "fabtrust.audit.key/v1",
        "actor": "keystore-holder:alice@host",
        "action": "key.sign",
        "subject": "soft:root",
        "time": T,
        "outcome": Outcome.OK,
        "details": {"purpose": "test", "n": 1},
    }
    fields.update(overrides)
    return AuditEntry(**fields)  # type: ignore[arg-type]


# -- entries --------------------------------------------------------------------------------------


def test_entry_is_canonical_and_round_trips() -> None:
    e = entry()
    data = e.to_json()
    assert data == (
        b'{"action":"key.sign","actor":"keystore-holder:alice@host","details":{"n":1,"purpose":"test"},'
        b'"outcome":"ok","subject":"soft:root","time":"2026-11-21T05:40:00.123456Z","type":"fabtrust.audit.key/v1"}'
    )
    assert AuditEntry.parse(data) == e


@pytest.mark.parametrize(
    "overrides",
    [
        {"type": "audit.key/v1"},
        {"type": "fabtrust.audit.Key/v1"},
        {"type": "fabtrust.audit.key/v0"},
        {"actor": ""},
        {"action": "a\nb"},
        {"subject": "x" * 513},
        {"time": datetime(2026, 1, 1)},  # naive
        {"details": ["not", "an", "object"]},
        {"details": {"f": 1.5}},
    ],
    ids=[
        "bad/type-prefix",
        "bad/type-case",
        "bad/type-v0",
        "bad/empty-actor",
        "bad/newline-action",
        "bad/long-subject",
        "bad/naive-time",
        "bad/details-list",
        "bad/float-detail",
    ],
)
def test_malformed_entries_are_refused(overrides: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        entry(**overrides).to_json()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.replace(b'"outcome":"ok"', b'"outcome":"maybe"'),
        lambda d: d.replace(b"Z", b"+00:00"),
        lambda d: d.replace(b',"type"', b', "type"'),
        lambda d: d[:-1] + b',"extra":1}',
        lambda d: d.replace(b'"subject":"soft:root",', b""),
        lambda d: d.replace(b'"details":{"n":1,"purpose":"test"}', b'"details":"x"'),
        lambda d: d + b"\n",
        lambda d: b"\xff" + d,
    ],
    ids=[
        "bad/outcome",
        "bad/offset-time",
        "bad/whitespace",
        "bad/extra-member",
        "bad/missing-member",
        "bad/details-string",
        "bad/trailing-newline",
        "bad/not-utf8",
    ],
)
def test_parse_refuses_anything_but_the_exact_encoding(mutate: Callable[[bytes], bytes]) -> None:
    with pytest.raises(InvalidInput):
        AuditEntry.parse(mutate(entry().to_json()))


_DETAIL_VALUES = st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=10)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(min_size=1, max_size=40).filter(lambda t: "\n" not in t),
    details=st.dictionaries(
        st.text(max_size=6),
        st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=10),
        max_size=4,
    ),
)
def test_entry_encoding_equals_the_general_canonical_encoder(text: str, details: dict[str, object]) -> None:
    try:
        e = entry(actor=text, action=text, subject=text, details=details)
        fast = e.to_json()
    except InvalidInput:
        with pytest.raises(InvalidInput):
            canonical_json({"x": text, "d": details})
        return
    general = canonical_json(
        {
            "type": e.type,
            "actor": e.actor,
            "action": e.action,
            "subject": e.subject,
            "time": "2026-11-21T05:40:00.123456Z",
            "outcome": e.outcome.value,
            "details": details,
        }
    )
    assert fast == general
    assert AuditEntry.parse(fast) == e


def test_non_utc_times_are_normalised_to_utc() -> None:
    local = T.astimezone(timezone(timedelta(hours=2)))
    assert b'"time":"2026-11-21T05:40:00.123456Z"' in entry(time=local).to_json()


# -- a small real log for exports and proofs ------------------------------------------------------


@pytest.fixture
def audit_log(tmp_path: Path) -> tuple[AuditLog, Ed25519NoteSigner, list[SignedCheckpoint]]:
    store = Store.open(sqlite_url(tmp_path / "a.db"))
    signer = Ed25519NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate())
    audit = AuditLog(MerkleLog.create(store, ORIGIN, signer), clock=lambda: T)
    checkpoints = [audit.log.latest_checkpoint()]
    for batch in range(4):
        checkpoints.append(
            audit.append(
                [
                    entry(subject=f"unit-{batch}-{i}", outcome=Outcome.REFUSED if i == 3 else Outcome.OK)
                    for i in range(100 + batch)
                ]
            )
        )
    return audit, signer, checkpoints


def _verifier(signer: Ed25519NoteSigner) -> NoteVerifier:
    return NoteVerifier.parse(verifier_key(signer.name, signer.public_key_raw))


def _export(audit: AuditLog, size: int | None = None) -> bytes:
    size = audit.log.size() if size is None else size
    out = io.BytesIO()
    write_export(out, ORIGIN, size, audit.log.iter_entries(size))
    return out.getvalue()


def test_an_export_verifies_against_its_checkpoint(
    audit_log: tuple[AuditLog, Ed25519NoteSigner, list[SignedCheckpoint]],
) -> None:
    audit, signer, cps = audit_log
    report = verify_export(io.BytesIO(_export(audit)), cps[-1].note, _verifier(signer))
    assert (report.size, report.checkpoint_size, report.root) == (406, 406, cps[-1].root)
    assert report.types == {"fabtrust.audit.key/v1": 406}
    assert report.refusals == 4
    # an older checkpoint covers a prefix of a longer export
    older = verify_export(io.BytesIO(_export(audit)), cps[2].note, _verifier(signer))
    assert older.checkpoint_size == cps[2].size


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]


def _join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


TAMPER: dict[str, Callable[[bytes], bytes]] = {
    "bad/flipped-byte": lambda d: d.replace(b"unit-2-7", b"unit-2-8", 1),
    "bad/dropped-line": lambda d: _join(_lines(d)[:50] + _lines(d)[51:]),
    "bad/swapped-lines": lambda d: _join([*_lines(d)[:10], _lines(d)[11], _lines(d)[10], *_lines(d)[12:]]),
    "bad/extra-line": lambda d: d + _lines(d)[5] + b"\n",
    "bad/truncated": lambda d: d[: len(d) // 2],
    "bad/header-size-shrunk": lambda d: d.replace(b'"size":406', b'"size":405', 1),
    "bad/header-origin": lambda d: d.replace(ORIGIN.encode(), b"other/log", 1),
    "bad/header-garbage": lambda d: b"not json\n" + d.split(b"\n", 1)[1],
    "bad/empty": lambda d: b"",
    "bad/entry-not-canonical": lambda d: d.replace(b'{"action"', b'{ "action"', 1),
}


@pytest.mark.parametrize("mutate", list(TAMPER.values()), ids=list(TAMPER))
def test_a_tampered_export_is_refused(
    audit_log: tuple[AuditLog, Ed25519NoteSigner, list[SignedCheckpoint]], mutate: Callable[[bytes], bytes]
) -> None:
    audit, signer, cps = audit_log
    with pytest.raises((VerificationFailed, InvalidInput)):
        verify_export(io.BytesIO(mutate(_export(audit))), cps[-1].note, _verifier(signer))


def test_an_export_needs_a_checkpoint_by_the_log_key(
    audit_log: tuple[AuditLog, Ed25519NoteSigner, list[SignedCheckpoint]],
) -> None:
    audit, _signer, cps = audit_log
    stranger = Ed25519NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(VerificationFailed):
        verify_export(io.BytesIO(_export(audit)), cps[-1].note, _verifier(stranger))


def test_a_shorter_export_than_the_checkpoint_is_refused(
    audit_log: tuple[AuditLog, Ed25519NoteSigner, list[SignedCheckpoint]],
) -> None:
    audit, signer, cps = audit_log
    with pytest.raises(VerificationFailed, match="fewer than the checkpoint"):
        verify_export(io.BytesIO(_export(audit, 300)), cps[-1].note, _verifier(signer))


# -- proof documents ------------------------------------------------------------------------------


def test_proof_documents_round_trip_and_bind_to_checkpoints(
    audit_log: tuple[AuditLog, Ed25519NoteSigner, list[SignedCheckpoint]],
) -> None:
    audit, signer, cps = audit_log
    v = _verifier(signer)
    inclusion = audit.log.inclusion_proof(123, cps[-1].size)
    doc = json.dumps(proofs.inclusion_doc(ORIGIN, inclusion)).encode()
    origin, parsed = proofs.parse_doc(doc)
    assert (origin, parsed) == (ORIGIN, inclusion)
    entry_bytes = audit.log.entries(123, 124)[0]
    proofs.verify_with_checkpoint(origin, parsed, cps[-1].note, v, entry=entry_bytes)
    with pytest.raises(VerificationFailed, match="not the leaf"):
        proofs.verify_with_checkpoint(origin, parsed, cps[-1].note, v, entry=entry_bytes + b" ")
    with pytest.raises(VerificationFailed, match="not the checkpoint's"):
        proofs.verify_with_checkpoint(origin, parsed, cps[-2].note, v)

    consistency = audit.log.consistency_proof(cps[1].size, cps[-1].size)
    origin, parsed_c = proofs.parse_doc(json.dumps(proofs.consistency_doc(ORIGIN, consistency)).encode())
    proofs.verify_with_checkpoint(origin, parsed_c, cps[-1].note, v, old_checkpoint_note=cps[1].note)
    with pytest.raises(VerificationFailed, match="old checkpoint"):
        proofs.verify_with_checkpoint(origin, parsed_c, cps[-1].note, v, old_checkpoint_note=cps[2].note)
    with pytest.raises(VerificationFailed):
        proofs.verify_with_checkpoint("other/log", parsed_c, cps[-1].note, v)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda d: {**d, "format": "fabtrust.inclusion-proof/v2"}, InvalidInput),
        (lambda d: {**d, "extra": 1}, InvalidInput),
        (lambda d: {k: v for k, v in d.items() if k != "root"}, InvalidInput),
        (lambda d: {**d, "index": -1}, InvalidInput),
        (lambda d: {**d, "index": True}, InvalidInput),
        (lambda d: {**d, "hashes": ["!!"]}, InvalidInput),
        (lambda d: {**d, "hashes": [_b64(b"x" * 31)]}, InvalidInput),
        (lambda d: {**d, "hashes": [_b64(b"\0" * 32)] * 129}, InvalidInput),
        (lambda d: {**d, "hashes": [_b64(b"\0" * 32), *d["hashes"][1:]]}, VerificationFailed),
        (lambda d: {**d, "hashes": d["hashes"][:-1]}, VerificationFailed),
        (lambda d: {**d, "index": d["index"] + 1}, VerificationFailed),
        (lambda d: {**d, "leaf_hash": _b64(b"\1" * 32)}, VerificationFailed),
    ],
    ids=[
        "bad/format-version",
        "bad/extra-field",
        "bad/missing-root",
        "bad/negative-index",
        "bad/bool-index",
        "bad/hash-not-base64",
        "bad/hash-short",
        "bad/too-many-hashes",
        "tampered/hash",
        "tampered/dropped-hash",
        "tampered/index",
        "tampered/leaf",
    ],
)
def test_malformed_or_tampered_proof_documents(
    audit_log: tuple[AuditLog, Ed25519NoteSigner, list[SignedCheckpoint]],
    mutate: Callable[[dict[str, object]], dict[str, object]],
    error: type[Exception],
) -> None:
    audit, signer, cps = audit_log
    doc = proofs.inclusion_doc(ORIGIN, audit.log.inclusion_proof(200, cps[-1].size))
    raw = json.dumps(mutate(doc)).encode()
    if error is InvalidInput:
        with pytest.raises(InvalidInput):
            proofs.parse_doc(raw)
        return
    origin, proof = proofs.parse_doc(raw)
    with pytest.raises(error):
        proofs.verify_with_checkpoint(origin, proof, cps[-1].note, _verifier(signer))


@pytest.mark.parametrize(
    "raw",
    [b"", b"[]", b"{", b"\xff", b'{"origin":"x"}', b"x" * (65 * 1024)],
    ids=["empty", "array", "truncated", "not-utf8", "no-format", "oversized"],
)
def test_garbage_proof_documents(raw: bytes) -> None:
    with pytest.raises(InvalidInput):
        proofs.parse_doc(raw)
