"""C2SP tlog-checkpoint bodies in C2SP signed notes with Ed25519 signatures. Pure: bytes in, bytes out.

A checkpoint (c2sp.org/tlog-checkpoint) is the note text::

    <origin>
    <tree size, decimal>
    <root hash, base64>
    [extension lines]

A signed note (c2sp.org/signed-note) is that text, a blank line, and signature lines
``— <key name> <base64(4-byte key ID || signature)>``. Key IDs and verifier keys follow
golang.org/x/mod/sumdb/note, so Go witnesses and verifiers accept our notes and we accept theirs.

Parsing is strict and bounded; malformed input raises :class:`InvalidInput`. Signatures and origins
that do not check out raise :class:`VerificationFailed`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from fabtrust.errors import InvalidInput, VerificationFailed

__all__ = [
    "ALG_ED25519",
    "MAX_CHECKPOINT_BODY",
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Checkpoint",
    "Ed25519NoteSigner",
    "NoteSigner",
    "NoteVerifier",
    "note_key_hash",
    "open_checkpoint",
    "open_note",
    "parse_checkpoint_body",
    "sign_checkpoint",
    "sign_note",
    "verifier_key",
]

ROOT_SIZE = 32
MAX_CHECKPOINT_BODY = 64 * 1024
MAX_NOTE_SIZE = 1024 * 1024
# c2sp.org/signed-note: verifiers SHOULD bound the number of signatures and MUST accept at least 16.
# golang.org/x/mod/sumdb/note rejects notes with more than 100.
MAX_SIGNATURES = 100
MAX_TREE_SIZE = 2**64 - 1  # RFC 9162 TreeHeadDataV2.tree_size is a uint64

# c2sp.org/signed-note "Signature types": 0x01 is Ed25519.
ALG_ED25519 = 0x01
_ED25519_PUBLIC_SIZE = 32
_ED25519_SIGNATURE_SIZE = 64
_KEY_HASH_SIZE = 4

_SIG_PREFIX = "— "  # U+2014 EM DASH, U+0020 SPACE (c2sp.org/signed-note "Format")
# c2sp.org/signed-note: notes MUST NOT contain ASCII control characters other than newline.
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")
_KEY_HASH_HEX = re.compile(r"[0-9a-fA-F]{8}")


# --- shared checks ------------------------------------------------------------------------------


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode_strict(text: str, what: str) -> bytes:
    """Standard base64 (RFC 4648 section 4) with padding, canonical form only."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{what} is not valid base64") from exc
    # Re-encoding rejects non-zero padding bits, so each value has exactly one accepted spelling.
    if _b64encode(raw) != text:
        raise InvalidInput(f"{what} is not canonical base64")
    return raw


def _check_line(value: object, what: str) -> str:
    """A non-empty single line of valid UTF-8 text without control characters."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what} must be a non-empty string")
    if "\n" in value or _CONTROL.search(value):
        raise InvalidInput(f"{what} must be one line without control characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} is not encodable as UTF-8") from exc
    return value


def _check_key_name(name: object) -> str:
    """c2sp.org/signed-note: key names MUST be non-empty and MUST NOT contain Unicode spaces or '+'."""
    name = _check_line(name, "key name")
    if "+" in name or any(c.isspace() for c in name):
        raise InvalidInput("key name must not contain spaces or '+'")
    return name


def _check_public_key(public_key_raw: object) -> bytes:
    if not isinstance(public_key_raw, bytes) or len(public_key_raw) != _ED25519_PUBLIC_SIZE:
        raise InvalidInput(f"Ed25519 public key must be {_ED25519_PUBLIC_SIZE} bytes")
    return public_key_raw


def _decode_text(data: object, limit: int, what: str) -> str:
    if not isinstance(data, bytes):
        raise InvalidInput(f"{what} must be bytes")
    if len(data) > limit:
        raise InvalidInput(f"{what} is larger than {limit} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{what} is not valid UTF-8") from exc
    if _CONTROL.search(text):
        raise InvalidInput(f"{what} contains control characters")
    return text


# --- checkpoint body ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """A log's tree head: c2sp.org/tlog-checkpoint "Note text"."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # 1. The origin MUST be non-empty (and, as note text, one line without control characters).
        _check_line(self.origin, "checkpoint origin")
        # 2. The tree size: RFC 9162 tree sizes are uint64.
        if (
            not isinstance(self.size, int)
            or isinstance(self.size, bool)
            or not 0 <= self.size <= MAX_TREE_SIZE
        ):
            raise InvalidInput("checkpoint size must be an integer in [0, 2^64)")
        # 3. The root hash of the RFC 6962 tree: SHA-256.
        if not isinstance(self.root, bytes) or len(self.root) != ROOT_SIZE:
            raise InvalidInput(f"checkpoint root must be {ROOT_SIZE} bytes")
        # 4. Extension lines, if any, MUST be non-empty.
        if isinstance(self.extensions, (str, bytes)):
            raise InvalidInput("checkpoint extensions must be a sequence of lines")
        extensions = tuple(self.extensions)
        for line in extensions:
            _check_line(line, "checkpoint extension line")
        object.__setattr__(self, "extensions", extensions)

    def body(self) -> bytes:
        """The note text: origin, size, base64 root and extension lines, each ending in a newline."""
        lines = [self.origin, str(self.size), _b64encode(self.root), *self.extensions]
        return "".join(line + "\n" for line in lines).encode("utf-8")


def parse_checkpoint_body(body: bytes) -> Checkpoint:
    """Parse a checkpoint note text strictly (c2sp.org/tlog-checkpoint "Note text").

    Exactly one spelling is accepted for each checkpoint: ``parse_checkpoint_body(b).body() == b``.
    """
    text = _decode_text(body, MAX_CHECKPOINT_BODY, "checkpoint body")
    if not text.endswith("\n"):
        raise InvalidInput("checkpoint body must end with a newline")
    # "a sequence of at least three non-empty lines, separated by newlines"
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise InvalidInput("checkpoint body must have at least three lines")
    if any(not line for line in lines):
        raise InvalidInput("checkpoint body must not contain empty lines")
    origin, size_text, root_text, *extensions = lines
    # "ASCII decimal ... with no leading zeroes (unless the tree is empty ...)"
    if not _DECIMAL.fullmatch(size_text):
        raise InvalidInput("checkpoint size must be a decimal number without sign or leading zeros")
    root = _b64decode_strict(root_text, "checkpoint root hash")
    if len(root) != ROOT_SIZE:
        raise InvalidInput(f"checkpoint root hash must be {ROOT_SIZE} bytes")
    checkpoint = Checkpoint(origin=origin, size=int(size_text), root=root, extensions=tuple(extensions))
    if checkpoint.body() != body:
        raise InvalidInput("checkpoint body is not in canonical form")
    return checkpoint


# --- keys ---------------------------------------------------------------------------------------


def note_key_hash(name: str, public_key_raw: bytes) -> bytes:
    """c2sp.org/signed-note "Ed25519 signatures": key ID = SHA-256(name || 0x0A || 0x01 || key)[:4]."""
    name = _check_key_name(name)
    public_key_raw = _check_public_key(public_key_raw)
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key_raw).digest()
    return digest[:_KEY_HASH_SIZE]


def verifier_key(name: str, public_key_raw: bytes) -> str:
    """Verifier key string ``<name>+<8 hex key ID>+<base64(0x01 || public key)>`` (sumdb/note format)."""
    key_hash = note_key_hash(name, public_key_raw)
    return f"{name}+{key_hash.hex()}+{_b64encode(bytes([ALG_ED25519]) + public_key_raw)}"


class NoteSigner(Protocol):
    """Signs note texts with an Ed25519 key; implemented in software here and by the key store."""

    @property
    def name(self) -> str:
        """The key name written on the signature line."""
        ...

    @property
    def public_key_raw(self) -> bytes:
        """The 32-byte Ed25519 public key (RFC 8032 encoding)."""
        ...

    def sign(self, message: bytes) -> bytes:
        """A 64-byte Ed25519 signature (RFC 8032) over ``message``."""
        ...


class Ed25519NoteSigner:
    """Software :class:`NoteSigner` over a pyca/cryptography Ed25519 private key."""

    __slots__ = ("_name", "_private_key", "_public_key_raw")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not isinstance(private_key, Ed25519PrivateKey):
            raise InvalidInput("note signer needs an Ed25519 private key")
        self._name = _check_key_name(name)
        self._private_key = private_key
        self._public_key_raw = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def name(self) -> str:
        return self._name

    @property
    def public_key_raw(self) -> bytes:
        return self._public_key_raw

    def sign(self, message: bytes) -> bytes:
        return self._private_key.sign(message)

    def verifier(self) -> NoteVerifier:
        """The matching verifier."""
        return NoteVerifier(self._name, note_key_hash(self._name, self._public_key_raw), self._public_key_raw)

    def __repr__(self) -> str:
        return f"Ed25519NoteSigner({self._name!r})"


@dataclass(frozen=True)
class NoteVerifier:
    """A trusted Ed25519 note key. Construction checks that ``key_hash`` matches name and key."""

    name: str
    key_hash: bytes
    public_key_raw: bytes
    _key: Ed25519PublicKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        expected = note_key_hash(self.name, self.public_key_raw)
        if not isinstance(self.key_hash, bytes) or self.key_hash != expected:
            raise InvalidInput("verifier key ID does not match its name and public key")
        try:
            key = Ed25519PublicKey.from_public_bytes(self.public_key_raw)
        except ValueError as exc:
            raise InvalidInput("verifier key is not a valid Ed25519 public key") from exc
        object.__setattr__(self, "_key", key)

    @classmethod
    def parse(cls, vkey: str) -> NoteVerifier:
        """Parse ``<name>+<8 hex key ID>+<base64(0x01 || public key)>``; fail closed on anything else."""
        if not isinstance(vkey, str):
            raise InvalidInput("verifier key must be a string")
        # The base64 part may itself contain '+', so split twice only.
        parts = vkey.split("+", 2)
        if len(parts) != 3:
            raise InvalidInput("verifier key must have the form <name>+<key ID>+<key>")
        name, hash_hex, key_b64 = parts
        _check_key_name(name)
        if not _KEY_HASH_HEX.fullmatch(hash_hex):
            raise InvalidInput("verifier key ID must be 8 hexadecimal digits")
        key = _b64decode_strict(key_b64, "verifier key")
        if not key or key[0] != ALG_ED25519:
            raise InvalidInput("verifier key uses an unsupported signature algorithm")
        if len(key) != 1 + _ED25519_PUBLIC_SIZE:
            raise InvalidInput(f"Ed25519 verifier key must be {_ED25519_PUBLIC_SIZE} bytes")
        return cls(name, bytes.fromhex(hash_hex), key[1:])

    def vkey(self) -> str:
        """The verifier key string of this key."""
        return verifier_key(self.name, self.public_key_raw)

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check an Ed25519 signature over ``message``; raise :class:`VerificationFailed` if it is wrong."""
        if not isinstance(signature, bytes) or len(signature) != _ED25519_SIGNATURE_SIZE:
            raise VerificationFailed(
                f"Ed25519 signature by {self.name} must be {_ED25519_SIGNATURE_SIZE} bytes"
            )
        if not isinstance(message, bytes):
            raise VerificationFailed("signed message must be bytes")
        try:
            self._key.verify(signature, message)
        except InvalidSignature as exc:
            raise VerificationFailed(
                f"signature by {self.name}+{self.key_hash.hex()} does not verify"
            ) from exc


# --- signed notes -------------------------------------------------------------------------------


def _check_note_text(text: object) -> str:
    decoded = _decode_text(text, MAX_NOTE_SIZE, "note text")
    # c2sp.org/signed-note "Format": a text ending in newline.
    if not decoded.endswith("\n"):
        raise InvalidInput("note text must end with a newline")
    return decoded


def sign_note(text: bytes, signers: Sequence[NoteSigner]) -> bytes:
    """Sign ``text`` with every signer: ``text || "\\n" || one signature line per signer``.

    Each signature is checked against the signer's public key before it is written, so a key store
    that reports the wrong public key or a faulty signature fails here, not at the verifier.
    """
    _check_note_text(text)
    if not signers:
        raise InvalidInput("a signed note needs at least one signer")
    if len(signers) > MAX_SIGNATURES:
        raise InvalidInput(f"a signed note carries at most {MAX_SIGNATURES} signatures")
    seen: set[tuple[str, bytes]] = set()
    lines: list[str] = []
    for signer in signers:
        name = _check_key_name(signer.name)
        public_key_raw = _check_public_key(signer.public_key_raw)
        key_hash = note_key_hash(name, public_key_raw)
        if (name, key_hash) in seen:
            raise InvalidInput(f"note signer {name}+{key_hash.hex()} is given twice")
        seen.add((name, key_hash))
        signature = signer.sign(text)
        NoteVerifier(name, key_hash, public_key_raw).verify(text, signature)
        lines.append(f"{_SIG_PREFIX}{name} {_b64encode(key_hash + signature)}\n")
    note = text + b"\n" + "".join(lines).encode("utf-8")
    if len(note) > MAX_NOTE_SIZE:
        raise InvalidInput(f"signed note would be larger than {MAX_NOTE_SIZE} bytes")
    return note


def _parse_signature_line(line: str) -> tuple[str, bytes, bytes]:
    """``— <key name> <base64(key ID || signature)>`` (c2sp.org/signed-note "Signatures")."""
    if not line.startswith(_SIG_PREFIX):
        raise InvalidInput("note signature line must start with an em dash and a space")
    parts = line[len(_SIG_PREFIX) :].split(" ")
    if len(parts) != 2:
        raise InvalidInput("note signature line must be '— <key name> <signature>'")
    name, blob_b64 = parts
    _check_key_name(name)
    blob = _b64decode_strict(blob_b64, "note signature")
    if len(blob) <= _KEY_HASH_SIZE:
        raise InvalidInput("note signature is too short")
    return name, blob[:_KEY_HASH_SIZE], blob[_KEY_HASH_SIZE:]


def open_note(note: bytes, verifiers: Sequence[NoteVerifier]) -> bytes:
    """Verify a signed note against trusted keys and return its text.

    Per c2sp.org/signed-note "Signatures": lines from unknown keys (name and key ID not both matching
    a verifier) are ignored; a line from a known key is verified and a bad one rejects the whole note;
    at least one known key must have signed. Malformed notes raise :class:`InvalidInput`.
    """
    decoded = _decode_text(note, MAX_NOTE_SIZE, "signed note")
    trusted: dict[tuple[str, bytes], NoteVerifier] = {}
    for verifier in verifiers:
        if not isinstance(verifier, NoteVerifier):
            raise InvalidInput("note verifiers must be NoteVerifier values")
        known = trusted.setdefault((verifier.name, verifier.key_hash), verifier)
        if known.public_key_raw != verifier.public_key_raw:
            raise InvalidInput(
                f"two verifier keys share the name and key ID {verifier.name}+{verifier.key_hash.hex()}"
            )
    # "the text is separated from the signatures by the last empty line in the note"
    split = decoded.rfind("\n\n")
    if split < 0:
        raise InvalidInput("signed note has no blank line before its signatures")
    text, signature_block = decoded[: split + 1], decoded[split + 2 :]
    if not signature_block.endswith("\n"):
        raise InvalidInput("signed note must end with a newline after its last signature")
    lines = signature_block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise InvalidInput(f"signed note carries more than {MAX_SIGNATURES} signatures")
    parsed = [_parse_signature_line(line) for line in lines]
    message = text.encode("utf-8")
    verified = 0
    for name, key_hash, signature in parsed:
        known_key = trusted.get((name, key_hash))
        if known_key is None:
            continue
        known_key.verify(message, signature)
        verified += 1
    if not verified:
        raise VerificationFailed("signed note has no signature from a trusted key")
    return message


# --- signed checkpoints -------------------------------------------------------------------------


def sign_checkpoint(cp: Checkpoint, signer: NoteSigner) -> bytes:
    """The checkpoint as a signed note with one signature line."""
    return sign_note(cp.body(), [signer])


def open_checkpoint(note: bytes, verifier: NoteVerifier, origin: str | None = None) -> Checkpoint:
    """Verify a signed checkpoint and parse its body; with ``origin``, it must name that log."""
    text = open_note(note, [verifier])
    checkpoint = parse_checkpoint_body(text)
    if origin is not None and checkpoint.origin != origin:
        raise VerificationFailed("checkpoint origin does not match the expected log")
    return checkpoint
