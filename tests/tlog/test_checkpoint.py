"""C2SP tlog-checkpoint bodies and C2SP signed notes (Ed25519).

Published vectors, each with its source:

* golang.org/x/mod ``sumdb/note/note_test.go`` (golang/mod, commit 02c991387e35f9e4c0a9b7ce137717055f8d716d,
  BSD-3-Clause): the PeterNeumann and EnochRoot verifier keys, the PeterNeumann signer key, the signed
  note of ``TestSign``/``TestOpen`` and the malformed notes of ``TestOpen``.
* A production checkpoint of the Go checksum database, from transparency-dev/trillian-tessera
  ``internal/parse/parse_test.go`` (``BenchmarkCheckpointUnsafe``; upstream leaves off the final
  newline of the signature line, restored here), verified with the sum.golang.org key of golang/go
  ``src/cmd/go/internal/modfetch/key.go``.
* The example checkpoint body of c2sp.org/tlog-checkpoint.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from fabtrust.errors import InvalidInput, VerificationFailed
from fabtrust.tlog.checkpoint import (
    MAX_CHECKPOINT_BODY,
    MAX_NOTE_SIZE,
    Checkpoint,
    Ed25519NoteSigner,
    NoteSigner,
    NoteVerifier,
    note_key_hash,
    open_checkpoint,
    open_note,
    parse_checkpoint_body,
    sign_checkpoint,
    sign_note,
    verifier_key,
)

# --- golang.org/x/mod/sumdb/note note_test.go ---------------------------------------------------------

PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
GO_TEXT = (
    b"If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
)
PETER_SIG = (
    "— PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
).encode()
ENOCH_SIG = (
    "— EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
).encode()
GO_NOTE = GO_TEXT + b"\n" + PETER_SIG

# --- sum.golang.org ----------------------------------------------------------------------------------

SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_NOTE = (
    "go.sum database tree\n31700353\nqINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=\n\n"
    "— sum.golang.org "
    "Az3grnmrIUEDFqHzAElIQCPNoRFRAAdFo47fooyWKMHb89k11GJh5zHIfNCOBmwn/C3YI8oW9/C8DJ87F61QqspBYwM=\n"
).encode()

# --- c2sp.org/tlog-checkpoint example ------------------------------------------------------------------

C2SP_BODY = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"

ROOT = bytes(range(32))
ROOT_B64 = base64.b64encode(ROOT).decode()


def peter_signer() -> Ed25519NoteSigner:
    raw = base64.b64decode(PETER_SKEY.split("+", 4)[4])
    assert len(raw) == 33
    assert raw[0] == 0x01  # algorithm byte, then the RFC 8032 seed
    return Ed25519NoteSigner("PeterNeumann", Ed25519PrivateKey.from_private_bytes(raw[1:]))


def new_signer(name: str = "log.example/test") -> Ed25519NoteSigner:
    return Ed25519NoteSigner(name, Ed25519PrivateKey.generate())


SIGNER = new_signer()
OTHER = new_signer("log.example/other")


# --- published vectors ----------------------------------------------------------------------------------


def test_go_verifier_key_parses_and_reencodes() -> None:
    v = NoteVerifier.parse(PETER_VKEY)
    assert v.name == "PeterNeumann"
    assert v.key_hash == bytes.fromhex("c74f20a3")
    assert note_key_hash(v.name, v.public_key_raw) == v.key_hash
    assert verifier_key(v.name, v.public_key_raw) == PETER_VKEY == v.vkey()


def test_go_signer_reproduces_the_published_note_byte_for_byte() -> None:
    signer = peter_signer()
    assert signer.verifier() == NoteVerifier.parse(PETER_VKEY)
    assert sign_note(GO_TEXT, [signer]) == GO_NOTE  # Ed25519 is deterministic (RFC 8032)


def test_go_note_opens() -> None:
    assert open_note(GO_NOTE, [NoteVerifier.parse(PETER_VKEY)]) == GO_TEXT


@pytest.mark.parametrize(
    "vkeys",
    [
        pytest.param([PETER_VKEY], id="ok/peter-only-enoch-ignored"),
        pytest.param([ENOCH_VKEY], id="ok/enoch-only-peter-ignored"),
        pytest.param([PETER_VKEY, ENOCH_VKEY], id="ok/both"),
        pytest.param([ENOCH_VKEY, PETER_VKEY, ENOCH_VKEY], id="ok/duplicated-verifier"),
    ],
)
def test_go_note_with_two_signatures_opens(vkeys: list[str]) -> None:
    note = GO_TEXT + b"\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, [NoteVerifier.parse(k) for k in vkeys]) == GO_TEXT


def test_go_note_without_a_trusted_key_fails() -> None:
    with pytest.raises(VerificationFailed, match="no signature from a trusted key"):
        open_note(GO_TEXT + b"\n" + PETER_SIG, [NoteVerifier.parse(ENOCH_VKEY)])
    with pytest.raises(VerificationFailed):
        open_note(GO_NOTE, [])


def test_go_note_with_changed_text_fails() -> None:
    with pytest.raises(VerificationFailed):
        open_note(GO_NOTE.replace(b"cryptography", b"cryptographY"), [NoteVerifier.parse(PETER_VKEY)])


def test_go_note_with_invalid_signature_from_known_key_fails() -> None:
    # TestOpen "Invalid signature": four base64 characters spliced into the signature.
    bad = PETER_SIG[:60] + b"ABCD" + PETER_SIG[60:]
    with pytest.raises(VerificationFailed):
        open_note(GO_TEXT + b"\n" + bad, [NoteVerifier.parse(PETER_VKEY)])
    # A known key's bad signature rejects the whole note, even next to a good one.
    with pytest.raises(VerificationFailed):
        open_note(GO_TEXT + b"\n" + PETER_SIG + bad, [NoteVerifier.parse(PETER_VKEY)])


def test_go_note_with_unknown_bad_signatures_still_opens() -> None:
    # TestOpen "Duplicated verified and unverified signatures": unknown keys are ignored.
    enoch_abcd = ENOCH_SIG[:60] + b"ABCD" + ENOCH_SIG[60:]
    note = GO_TEXT + b"\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    assert open_note(note, [NoteVerifier.parse(PETER_VKEY)]) == GO_TEXT


@pytest.mark.parametrize(
    "note",
    [
        pytest.param(GO_TEXT, id="bad/no-signatures"),
        pytest.param(GO_TEXT + b"\n", id="bad/blank-line-only"),
        pytest.param(GO_TEXT + b"\n" + PETER_SIG[:-1], id="bad/missing-final-newline"),
        pytest.param(b"\x01" + GO_NOTE, id="bad/control-character"),
        pytest.param(b"\xff" + GO_NOTE, id="bad/invalid-utf8"),
        pytest.param(
            GO_TEXT + b"\n" + PETER_SIG.replace(b"PeterNeumann", b"Bad Name")[:-1],
            id="bad/name-with-space",
        ),
        pytest.param(GO_NOTE + b"Unexpected line.\n", id="bad/unexpected-line"),
        pytest.param(GO_TEXT + b"\n" + PETER_SIG * 101, id="bad/too-many-signatures"),
        pytest.param(GO_TEXT + b"\n" + PETER_SIG.replace("—".encode(), b"-"), id="bad/hyphen-not-em-dash"),
        pytest.param(
            GO_TEXT + b"\n" + PETER_SIG.replace(b"x08go/", b"x08go*"), id="bad/signature-not-base64"
        ),
        pytest.param(GO_TEXT + b"\n" + "— PeterNeumann x08g\n".encode(), id="bad/signature-too-short"),
        pytest.param(
            GO_TEXT + b"\n" + PETER_SIG.replace(b"PeterNeumann", b"Peter+Neumann"), id="bad/name-with-plus"
        ),
        pytest.param(GO_TEXT.replace(b"\n", b"\r\n") + b"\n" + PETER_SIG, id="bad/crlf"),
        pytest.param(GO_TEXT + b"\n" + PETER_SIG + b"\n", id="bad/trailing-blank-line"),
        pytest.param(GO_NOTE.decode(), id="bad/not-bytes"),
    ],
)
def test_go_malformed_notes_are_invalid_input(note: Any) -> None:
    with pytest.raises(InvalidInput):
        open_note(note, [NoteVerifier.parse(PETER_VKEY)])


def test_go_verifier_key_manglings_are_refused() -> None:
    # TestNewVerifier: every proper substring and every single-byte increment must be refused.
    b = PETER_VKEY.encode()
    for i in range(len(b) + 1):
        for j in range(i + 1, len(b) + 1):
            if (i, j) != (0, len(b)):
                with pytest.raises(InvalidInput):
                    NoteVerifier.parse(b[i:j].decode())
    for i in range(len(b)):
        mangled = bytearray(b)
        mangled[i] += 1
        with pytest.raises(InvalidInput):
            NoteVerifier.parse(mangled.decode())


@pytest.mark.parametrize(
    "vkey",
    [
        pytest.param(
            "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==", id="bad/key-length"
        ),
        pytest.param(
            "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", id="bad/algorithm"
        ),
        pytest.param("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", id="bad/key-hash"),
        pytest.param(
            "PeterNeumann+c74f20a+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", id="bad/key-hash-short"
        ),
        pytest.param(
            "PeterNeumann+c74f20g3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", id="bad/key-hash-not-hex"
        ),
        pytest.param(
            "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10T", id="bad/key-base64-truncated"
        ),
        pytest.param("PeterNeumann+c74f20a3", id="bad/no-key"),
        pytest.param("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", id="bad/empty-name"),
        pytest.param(
            "Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", id="bad/name-space"
        ),
        pytest.param("", id="bad/empty"),
    ],
)
def test_bad_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(InvalidInput):
        NoteVerifier.parse(vkey)


def test_verifier_key_hash_must_match_its_key() -> None:
    v = NoteVerifier.parse(PETER_VKEY)
    with pytest.raises(InvalidInput):
        NoteVerifier(v.name, b"\x00\x00\x00\x00", v.public_key_raw)
    with pytest.raises(InvalidInput):
        NoteVerifier("EnochRoot", v.key_hash, v.public_key_raw)


def test_sumdb_checkpoint_opens() -> None:
    verifier = NoteVerifier.parse(SUMDB_VKEY)
    cp = open_checkpoint(SUMDB_NOTE, verifier, origin="go.sum database tree")
    assert cp == Checkpoint(
        "go.sum database tree", 31700353, base64.b64decode("qINS1GRFhWHwdkUeqLEoP4yEMkTBBzxBkGwGQlVlVcs=")
    )
    with pytest.raises(VerificationFailed, match="origin"):
        open_checkpoint(SUMDB_NOTE, verifier, origin="example.com/other")
    with pytest.raises(VerificationFailed):
        open_checkpoint(SUMDB_NOTE.replace(b"31700353", b"31700354"), verifier)


def test_c2sp_example_body_parses() -> None:
    cp = parse_checkpoint_body(C2SP_BODY)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert cp.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert cp.body() == C2SP_BODY


# --- checkpoint bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(f"log\n0\n{ROOT_B64}\n".encode(), Checkpoint("log", 0, ROOT), id="ok/size-zero"),
        pytest.param(
            f"log\n18446744073709551615\n{ROOT_B64}\n".encode(),
            Checkpoint("log", 2**64 - 1, ROOT),
            id="ok/size-max",
        ),
        pytest.param(
            f"log\n7\n{ROOT_B64}\nx-ext one\n— y\n".encode(),
            Checkpoint("log", 7, ROOT, ("x-ext one", "— y")),
            id="ok/extension-lines",
        ),
        pytest.param(
            f"fabrik.example/Straße 5\n7\n{ROOT_B64}\n".encode(),
            Checkpoint("fabrik.example/Straße 5", 7, ROOT),
            id="ok/unicode-origin-with-space",
        ),
    ],
)
def test_checkpoint_bodies_that_parse(body: bytes, expected: Checkpoint) -> None:
    assert parse_checkpoint_body(body) == expected
    assert expected.body() == body


BAD_BODIES = [
    ("bad/size-leading-zero", f"log\n07\n{ROOT_B64}\n"),
    ("bad/size-plus-sign", f"log\n+7\n{ROOT_B64}\n"),
    ("bad/size-negative", f"log\n-7\n{ROOT_B64}\n"),
    ("bad/size-hex", f"log\n0x7\n{ROOT_B64}\n"),
    ("bad/size-underscore", f"log\n1_000\n{ROOT_B64}\n"),
    ("bad/size-arabic-digits", f"log\n\u0667\n{ROOT_B64}\n"),
    ("bad/size-with-space", f"log\n 7\n{ROOT_B64}\n"),
    ("bad/size-empty", f"log\n\n{ROOT_B64}\n"),
    ("bad/size-too-large", f"log\n18446744073709551616\n{ROOT_B64}\n"),
    ("bad/size-huge", f"log\n{'9' * 5000}\n{ROOT_B64}\n"),
    ("bad/root-not-base64", "log\n7\n!!!!AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"),
    ("bad/root-url-safe-alphabet", "log\n7\n-_-_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"),
    ("bad/root-31-bytes", f"log\n7\n{base64.b64encode(ROOT[:31]).decode()}\n"),
    ("bad/root-33-bytes", f"log\n7\n{base64.b64encode(ROOT + b'x').decode()}\n"),
    ("bad/root-missing-padding", f"log\n7\n{ROOT_B64.rstrip('=')}\n"),
    ("bad/root-non-canonical", f"log\n7\n{ROOT_B64[:-2]}9=\n"),
    ("bad/root-with-space", f"log\n7\n {ROOT_B64}\n"),
    ("bad/missing-final-newline", f"log\n7\n{ROOT_B64}"),
    ("bad/two-lines", "log\n7\n"),
    ("bad/empty", ""),
    ("bad/empty-origin", f"\n7\n{ROOT_B64}\n"),
    ("bad/empty-extension-line", f"log\n7\n{ROOT_B64}\n\next\n"),
    ("bad/trailing-blank-line", f"log\n7\n{ROOT_B64}\n\n"),
    ("bad/crlf", f"log\r\n7\r\n{ROOT_B64}\r\n"),
    ("bad/nul-in-origin", f"l\x00g\n7\n{ROOT_B64}\n"),
    ("bad/tab-in-extension", f"log\n7\n{ROOT_B64}\na\tb\n"),
]


@pytest.mark.parametrize("body", [pytest.param(b.encode(), id=i) for i, b in BAD_BODIES])
def test_malformed_checkpoint_bodies_are_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_checkpoint_body(body)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"\xfflog\n7\n" + ROOT_B64.encode() + b"\n", id="bad/invalid-utf8"),
        pytest.param(
            b"log\n7\n" + ROOT_B64.encode() + b"\n" + b"x" * MAX_CHECKPOINT_BODY + b"\n", id="bad/too-large"
        ),
        pytest.param(f"log\n7\n{ROOT_B64}\n", id="bad/str-not-bytes"),
    ],
)
def test_checkpoint_body_bounds_and_encoding(body: Any) -> None:
    with pytest.raises(InvalidInput):
        parse_checkpoint_body(body)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"origin": ""}, id="bad/empty-origin"),
        pytest.param({"origin": "a\nb"}, id="bad/origin-newline"),
        pytest.param({"origin": "a\x7f\x1bb"}, id="bad/origin-escape"),
        pytest.param({"origin": "\ud800"}, id="bad/origin-lone-surrogate"),
        pytest.param({"size": -1}, id="bad/negative-size"),
        pytest.param({"size": 2**64}, id="bad/size-over-uint64"),
        pytest.param({"size": True}, id="bad/size-bool"),
        pytest.param({"size": "7"}, id="bad/size-str"),
        pytest.param({"root": ROOT[:31]}, id="bad/root-short"),
        pytest.param({"root": ROOT_B64}, id="bad/root-str"),
        pytest.param({"extensions": ("",)}, id="bad/empty-extension"),
        pytest.param({"extensions": ("a\nb",)}, id="bad/extension-newline"),
        pytest.param({"extensions": "abc"}, id="bad/extensions-str"),
    ],
)
def test_checkpoint_values_are_validated(fields: dict[str, Any]) -> None:
    base: dict[str, Any] = {"origin": "log", "size": 7, "root": ROOT}
    with pytest.raises(InvalidInput):
        Checkpoint(**{**base, **fields})


def test_checkpoint_is_frozen_and_extensions_become_a_tuple() -> None:
    cp = Checkpoint("log", 7, ROOT, ["a", "b"])  # type: ignore[arg-type]
    assert cp.extensions == ("a", "b")
    assert hash(cp) == hash(Checkpoint("log", 7, ROOT, ("a", "b")))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cp.size = 8  # type: ignore[misc]


lines = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\n", min_codepoint=0x20),
    min_size=1,
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(
    origin=lines,
    size=st.integers(0, 2**64 - 1),
    root=st.binary(min_size=32, max_size=32),
    extensions=st.lists(lines, max_size=3).map(tuple),
)
def test_checkpoint_round_trip_property(
    origin: str, size: int, root: bytes, extensions: tuple[str, ...]
) -> None:
    cp = Checkpoint(origin, size, root, extensions)
    assert parse_checkpoint_body(cp.body()) == cp
    assert open_checkpoint(sign_checkpoint(cp, SIGNER), SIGNER.verifier(), origin) == cp


# --- signing and opening --------------------------------------------------------------------------------


def test_signed_checkpoint_round_trip_and_layout() -> None:
    cp = Checkpoint("log.example/test", 42, ROOT, ("ext",))
    note = sign_checkpoint(cp, SIGNER)
    body, sig_line = note.rstrip(b"\n").split(b"\n\n")
    assert body + b"\n" == cp.body()
    assert sig_line.startswith("— log.example/test ".encode())
    blob = base64.b64decode(sig_line.split(b" ")[-1], validate=True)
    assert len(blob) == 4 + 64
    assert blob[:4] == note_key_hash(SIGNER.name, SIGNER.public_key_raw)
    assert open_checkpoint(note, SIGNER.verifier(), "log.example/test") == cp
    assert open_checkpoint(note, NoteVerifier.parse(verifier_key(SIGNER.name, SIGNER.public_key_raw))) == cp


def test_flipping_any_bit_of_a_signed_checkpoint_fails() -> None:
    cp = Checkpoint("log.example/test", 42, ROOT)
    note = sign_checkpoint(cp, SIGNER)
    verifier = SIGNER.verifier()
    body = cp.body()
    # Every bit of the body: the note never opens (malformed text or a failed signature).
    for bit in range(8 * len(body)):
        flipped = bytearray(note)
        flipped[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((InvalidInput, VerificationFailed)):
            open_checkpoint(bytes(flipped), verifier)
    # Every bit of the key ID and signature, re-encoded as valid base64: always VerificationFailed.
    prefix, b64 = note.rsplit(b" ", 1)
    blob = base64.b64decode(b64)
    for bit in range(8 * len(blob)):
        tampered = bytearray(blob)
        tampered[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(VerificationFailed):
            open_checkpoint(prefix + b" " + base64.b64encode(bytes(tampered)) + b"\n", verifier)


def test_notes_with_several_signers() -> None:
    note = sign_note(b"hello\n", [SIGNER, OTHER])
    assert note.count("—".encode()) == 2
    assert open_note(note, [SIGNER.verifier()]) == b"hello\n"
    assert open_note(note, [OTHER.verifier()]) == b"hello\n"
    assert open_note(note, [OTHER.verifier(), SIGNER.verifier()]) == b"hello\n"


def test_text_with_blank_lines_splits_at_the_last_one() -> None:
    text = b"first\n\nsecond\n\n"
    assert open_note(sign_note(text, [SIGNER]), [SIGNER.verifier()]) == text


def test_signature_from_same_name_other_key_is_ignored_not_trusted() -> None:
    impostor = new_signer(SIGNER.name)  # same name, different key, so a different key ID
    note = sign_note(b"hello\n", [impostor])
    with pytest.raises(VerificationFailed, match="no signature from a trusted key"):
        open_note(note, [SIGNER.verifier()])


def test_ambiguous_verifiers_are_refused() -> None:
    v = SIGNER.verifier()
    clash = object.__new__(NoteVerifier)  # bypasses the key ID check to build a colliding verifier
    object.__setattr__(clash, "name", v.name)
    object.__setattr__(clash, "key_hash", v.key_hash)
    object.__setattr__(clash, "public_key_raw", OTHER.public_key_raw)
    with pytest.raises(InvalidInput, match="share the name and key ID"):
        open_note(sign_note(b"hello\n", [SIGNER]), [v, clash])


def test_open_note_is_bounded() -> None:
    with pytest.raises(InvalidInput, match="larger than"):
        open_note(b"x" * (MAX_NOTE_SIZE + 1), [SIGNER.verifier()])
    with pytest.raises(InvalidInput, match="larger than"):
        sign_note(b"x" * MAX_NOTE_SIZE + b"\n", [SIGNER])


def test_open_checkpoint_refuses_a_note_that_is_not_a_checkpoint() -> None:
    with pytest.raises(InvalidInput):
        open_checkpoint(sign_note(b"just some text\n", [SIGNER]), SIGNER.verifier())


@dataclasses.dataclass
class PlainSigner:
    """A NoteSigner with plain attributes, as a key store adapter might be."""

    name: str
    public_key_raw: bytes
    key: Ed25519PrivateKey

    def sign(self, message: bytes) -> bytes:
        return self.key.sign(message)


def test_protocol_implementations_other_than_the_software_signer() -> None:
    key = Ed25519PrivateKey.generate()
    raw = Ed25519NoteSigner("x", key).public_key_raw
    signer: NoteSigner = PlainSigner("plain.example", raw, key)
    note = sign_note(b"hello\n", [signer])
    assert (
        open_note(note, [NoteVerifier("plain.example", note_key_hash("plain.example", raw), raw)])
        == b"hello\n"
    )


@pytest.mark.parametrize(
    ("text", "signers", "error"),
    [
        pytest.param(b"no newline", [SIGNER], InvalidInput, id="bad/text-without-final-newline"),
        pytest.param(b"", [SIGNER], InvalidInput, id="bad/empty-text"),
        pytest.param(b"a\x00b\n", [SIGNER], InvalidInput, id="bad/control-character"),
        pytest.param(b"\xff\n", [SIGNER], InvalidInput, id="bad/invalid-utf8"),
        pytest.param("hello\n", [SIGNER], InvalidInput, id="bad/text-str"),
        pytest.param(b"hello\n", [], InvalidInput, id="bad/no-signers"),
        pytest.param(b"hello\n", [SIGNER, SIGNER], InvalidInput, id="bad/duplicate-signer"),
        pytest.param(
            b"hello\n",
            [PlainSigner("a b", SIGNER.public_key_raw, Ed25519PrivateKey.generate())],
            InvalidInput,
            id="bad/name-with-space",
        ),
        pytest.param(
            b"hello\n",
            [PlainSigner("a+b", SIGNER.public_key_raw, Ed25519PrivateKey.generate())],
            InvalidInput,
            id="bad/name-with-plus",
        ),
        pytest.param(
            b"hello\n",
            [PlainSigner("liar", SIGNER.public_key_raw, Ed25519PrivateKey.generate())],
            VerificationFailed,
            id="bad/public-key-does-not-match-signing-key",
        ),
        pytest.param(
            b"hello\n",
            [PlainSigner("short", SIGNER.public_key_raw[:31], Ed25519PrivateKey.generate())],
            InvalidInput,
            id="bad/public-key-short",
        ),
    ],
)
def test_sign_note_refuses(text: Any, signers: list[NoteSigner], error: type[Exception]) -> None:
    with pytest.raises(error):
        sign_note(text, signers)


def test_software_signer_validates_its_name() -> None:
    with pytest.raises(InvalidInput):
        Ed25519NoteSigner("has space", Ed25519PrivateKey.generate())
    with pytest.raises(InvalidInput):
        Ed25519NoteSigner("", Ed25519PrivateKey.generate())


@pytest.mark.parametrize(
    ("message", "signature"),
    [
        pytest.param(b"hello\n", b"\x00" * 64, id="bad/zero-signature"),
        pytest.param(b"hello\n", b"\x00" * 63, id="bad/short-signature"),
        pytest.param(b"hello\n", "x" * 64, id="bad/str-signature"),
        pytest.param("hello\n", None, id="bad/str-message"),
    ],
)
def test_note_verifier_verify_raises(message: Any, signature: Any) -> None:
    good = SIGNER.sign(b"hello\n")
    SIGNER.verifier().verify(b"hello\n", good)  # the unmodified case passes
    with pytest.raises(VerificationFailed):
        SIGNER.verifier().verify(message, good if signature is None else signature)
