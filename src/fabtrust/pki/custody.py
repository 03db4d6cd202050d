"""Root-key custody: the root key's encrypted backup and the custodians' sealed shares of its key.

Pure functions over bytes; the ceremony (CLI, key store, CA, transcript) writes the files. Two
JSON documents, each with a type and version (anything else is refused):

Root backup, ``fabtrust.root-backup/v1``::

    {format, ceremony, root_fingerprint, key_type, created, nonce, ciphertext}

``ciphertext`` is AES-256-GCM under a fresh random 32-byte *backup key*, nonce ``nonce``, over the
PKCS#8 DER of the root private key; the associated data is the canonical JSON (RFC 8785) of all
the other fields. ``root_fingerprint`` is the hex SHA-256 of the root's DER SubjectPublicKeyInfo.

Custodian share, ``fabtrust.custodian-share/v1``::

    {format, ceremony, custodian, index, threshold, count, root_fingerprint, share_fingerprint,
     kdf: {alg: "scrypt", salt, n, r, p, check}, nonce, ciphertext}

The backup key is split k-of-n with :mod:`fabtrust.crypto.shamir`; each custodian's share is sealed
under ``scrypt(passphrase)`` (RFC 7914; passphrase NFC-normalised, UTF-8) with AES-256-GCM, the
associated data being the canonical JSON of all the other fields, so an edited index, threshold,
ceremony or fingerprint fails to open. ``share_fingerprint`` is the hex SHA-256 of the index byte
followed by the share data: it goes into the ceremony transcript in place of the share itself.

``kdf.check`` is a passphrase check, as the soft key store's header has one: scrypt derives 48
bytes, the first 32 are the AES key and the next 16 are stored as ``check``. (They are separate
PBKDF2-HMAC-SHA256 output blocks of scrypt's last step, so ``check`` says nothing about the key.)
It lets a wrong passphrase be reported as such (NotAuthorised) apart from a tampered document
(VerificationFailed), and gives an attacker no more than the ciphertext already does: either is an
offline test of a guessed passphrase, at the cost of one scrypt.

Integrity of the reconstruction: Shamir sharing detects nothing by itself. :func:`recover_private_key`
checks ceremonies, indexes, the threshold and root fingerprints first, then relies on the backup's
AES-GCM tag to reject a backup key interpolated from a wrong, corrupted or substituted share, and
finally checks that the decrypted key's public key has the recorded fingerprint.

Secrets (passphrases, share data, keys) never appear in exception messages or reprs. Python cannot
wipe them from memory; run the ceremony on a trusted, offline machine.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeGuard

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from fabtrust.crypto import shamir
from fabtrust.crypto.canonical import canonical_json
from fabtrust.crypto.encoding import b64 as _b64
from fabtrust.crypto.encoding import unb64 as _unb64
from fabtrust.crypto.keys import USAGES, KeyType, KeyUsage, key_id, key_type_of, spki_der
from fabtrust.crypto.shamir import Share
from fabtrust.errors import InvalidInput, NotAuthorised, VerificationFailed

BACKUP_FORMAT = "fabtrust.root-backup/v1"
SHARE_FORMAT = "fabtrust.custodian-share/v1"
#: Largest document accepted (either kind).
MAX_DOCUMENT = 64 * 1024
BACKUP_KEY_SIZE = 32
MIN_PASSPHRASE = 8
MAX_CUSTODIAN_NAME = 64
MAX_CEREMONY_ID = 128
# scrypt cost as in the soft key store: n=2**15, r=8 (32 MiB, ~0.1 s) by default. A document may ask
# for more, within bounds (at most 256 MiB, 128*n*r bytes), never less.
DEFAULT_SCRYPT_N = 2**15
SCRYPT_N_RANGE = (2**14, 2**20)
_SCRYPT_R, _SCRYPT_P = 8, 1
_SCRYPT_MAX_NR = 2**21
_SALT_SIZE, _MAX_SALT = 16, 64
_CHECK_SIZE = 16
_NONCE_SIZE, _TAG_SIZE = 12, 16
_MAX_CREATED = 64

_BACKUP_FIELDS = frozenset(
    {"format", "ceremony", "root_fingerprint", "key_type", "created", "nonce", "ciphertext"}
)
_SHARE_FIELDS = frozenset(
    {
        "format",
        "ceremony",
        "custodian",
        "index",
        "threshold",
        "count",
        "root_fingerprint",
        "share_fingerprint",
        "kdf",
        "nonce",
        "ciphertext",
    }
)
_KDF_FIELDS = frozenset({"alg", "salt", "n", "r", "p", "check"})


@dataclass(frozen=True)
class CustodianShare:
    """An opened custodian share: the document's public fields and the decrypted share."""

    ceremony: str
    custodian: str
    index: int
    threshold: int
    count: int
    root_fingerprint: str
    share_fingerprint: str
    share: Share  # Share's repr leaves the data out

    def __post_init__(self) -> None:
        if self.share.index != self.index:
            raise InvalidInput(f"custodian {self.custodian!r}: share index does not match the document")


# --- small strict helpers --------------------------------------------------------------------------


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidInput("document has a duplicate member")
        result[key] = value
    return result


def _refuse_number(text: str) -> Any:
    raise InvalidInput("document contains a non-integer number")


def _load(document: bytes, what: str) -> dict[str, Any]:
    if not isinstance(document, bytes):
        raise InvalidInput(f"{what} must be bytes")
    if len(document) > MAX_DOCUMENT:
        raise InvalidInput(f"{what} is too large ({len(document)} bytes, at most {MAX_DOCUMENT})")
    try:
        value = json.loads(
            document.decode("utf-8"),
            object_pairs_hook=_no_duplicates,
            parse_float=_refuse_number,
            parse_constant=_refuse_number,
        )
    except (ValueError, RecursionError):
        # ValueError covers bad UTF-8, bad JSON and integer literals too long to convert.
        raise InvalidInput(f"{what} is corrupt or truncated (not valid JSON)") from None
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} is corrupt (not a JSON object)")
    return value


def _check_members(doc: dict[str, Any], expected: frozenset[str], what: str) -> None:
    if set(doc) == expected:
        return
    missing = sorted(expected - set(doc))
    if missing:
        raise InvalidInput(f"{what} is missing {', '.join(missing)}")
    extra = sorted(set(doc) - expected)
    names = ", ".join(repr(name[:40]) for name in extra[:5])
    raise InvalidInput(f"{what} has unexpected member(s) {names}")


def _check_format(doc: dict[str, Any], expected: str, what: str) -> None:
    fmt = doc.get("format")
    if fmt != expected:
        shown = repr(fmt[:80]) if isinstance(fmt, str) else "missing or not a string"
        raise InvalidInput(f"{what} has unknown format {shown} (expected {expected})")


def _text(value: object, what: str, max_len: int) -> str:
    """A non-empty printable name with no surrounding whitespace, at most ``max_len`` characters."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{what} must be a non-empty string")
    if len(value) > max_len:
        raise InvalidInput(f"{what} is longer than {max_len} characters")
    if not value.isprintable() or value.strip() != value:
        raise InvalidInput(f"{what} has control characters or surrounding whitespace")
    return value


def _fingerprint(value: object, what: str) -> str:
    """A hex SHA-256: 64 lowercase hex digits."""
    if not isinstance(value, str) or len(value) != 64 or not all(c in "0123456789abcdef" for c in value):
        raise InvalidInput(f"{what} is not a hex SHA-256 (64 lowercase hex digits)")
    return value


def _created(value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > _MAX_CREATED:
        raise InvalidInput("created must be an RFC 3339 timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidInput("created must be an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise InvalidInput("created must be an RFC 3339 timestamp with a time zone")
    return value


def _scrypt_n_ok(n: object) -> TypeGuard[int]:
    return _is_int(n) and SCRYPT_N_RANGE[0] <= n <= SCRYPT_N_RANGE[1] and n & (n - 1) == 0


def _passphrase(passphrase: object, custodian: str) -> bytes:
    if not isinstance(passphrase, str):
        raise InvalidInput(f"custodian {custodian!r}: the passphrase must be a string")
    try:
        return unicodedata.normalize("NFC", passphrase).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"custodian {custodian!r}: the passphrase is not valid text") from None


def _derive(passphrase: bytes, salt: bytes, n: int, r: int, p: int) -> tuple[bytes, bytes]:
    """(AES-256 key, passphrase check) from one scrypt run."""
    out = Scrypt(salt=salt, length=32 + _CHECK_SIZE, n=n, r=r, p=p).derive(passphrase)
    return out[:32], out[32:]


def share_fingerprint(share: Share) -> str:
    """Hex SHA-256 of the index byte followed by the share data."""
    return hashlib.sha256(bytes([share.index]) + share.data).hexdigest()


def _render(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=2, sort_keys=True).encode("ascii") + b"\n"


def _root_identity(private_key_pkcs8: bytes) -> tuple[KeyType, str]:
    """(key type, fingerprint) of a PKCS#8 DER signing key; InvalidInput if it is not one."""
    if not isinstance(private_key_pkcs8, bytes):
        raise InvalidInput("the root private key must be PKCS#8 DER bytes")
    try:
        key = serialization.load_der_private_key(private_key_pkcs8, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InvalidInput("the root private key is not a valid unencrypted PKCS#8 DER key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | mldsa.MLDSA65PrivateKey):
        raise InvalidInput("the root private key is of an unsupported algorithm")
    public = key.public_key()
    return key_type_of(public), key_id(spki_der(public))


# --- parsed documents -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Backup:
    ceremony: str
    root_fingerprint: str
    key_type: KeyType
    nonce: bytes
    ciphertext: bytes
    aad: bytes


def _parse_backup(document: bytes) -> _Backup:
    what = "root backup"
    doc = _load(document, what)
    _check_format(doc, BACKUP_FORMAT, what)
    _check_members(doc, _BACKUP_FIELDS, what)
    ceremony = _text(doc["ceremony"], f"{what} ceremony", MAX_CEREMONY_ID)
    root_fingerprint = _fingerprint(doc["root_fingerprint"], f"{what} root_fingerprint")
    if not isinstance(doc["key_type"], str):
        raise InvalidInput(f"{what} key_type is not a string")
    key_type = KeyType.parse(doc["key_type"])
    _created(doc["created"])
    nonce = _unb64(doc["nonce"], f"{what} nonce")
    if len(nonce) != _NONCE_SIZE:
        raise InvalidInput(f"{what} nonce must be {_NONCE_SIZE} bytes")
    ciphertext = _unb64(doc["ciphertext"], f"{what} ciphertext")
    if len(ciphertext) <= _TAG_SIZE:
        raise InvalidInput(f"{what} ciphertext is truncated")
    aad = canonical_json({k: v for k, v in doc.items() if k != "ciphertext"})
    return _Backup(ceremony, root_fingerprint, key_type, nonce, ciphertext, aad)


@dataclass(frozen=True)
class _SealedShare:
    ceremony: str
    custodian: str
    index: int
    threshold: int
    count: int
    root_fingerprint: str
    share_fingerprint: str
    salt: bytes
    n: int
    r: int
    p: int
    check: bytes
    nonce: bytes
    ciphertext: bytes
    aad: bytes


def _parse_share(document: bytes) -> _SealedShare:
    what = "custodian share"
    doc = _load(document, what)
    _check_format(doc, SHARE_FORMAT, what)
    _check_members(doc, _SHARE_FIELDS, what)
    ceremony = _text(doc["ceremony"], f"{what} ceremony", MAX_CEREMONY_ID)
    custodian = _text(doc["custodian"], f"{what} custodian", MAX_CUSTODIAN_NAME)
    what = f"the share of custodian {custodian!r}"
    index, threshold, count = doc["index"], doc["threshold"], doc["count"]
    if not (_is_int(index) and _is_int(threshold) and _is_int(count)):
        raise InvalidInput(f"{what}: index, threshold and count must be integers")
    if not (2 <= threshold <= count <= shamir.MAX_SHARES and 1 <= index <= count):
        raise InvalidInput(f"{what}: index {index}, threshold {threshold}, count {count} are inconsistent")
    root_fingerprint = _fingerprint(doc["root_fingerprint"], f"{what} root_fingerprint")
    fingerprint = _fingerprint(doc["share_fingerprint"], f"{what} share_fingerprint")
    kdf = doc["kdf"]
    if not isinstance(kdf, dict):
        raise InvalidInput(f"{what}: kdf is not an object")
    _check_members(kdf, _KDF_FIELDS, f"{what} kdf")
    if kdf["alg"] != "scrypt":
        raise InvalidInput(f"{what}: unknown key-derivation algorithm")
    n, r, p = kdf["n"], kdf["r"], kdf["p"]
    if not (_is_int(r) and _is_int(p) and _scrypt_n_ok(n)):
        raise InvalidInput(f"{what} has scrypt parameters outside the accepted range")
    if not (1 <= r <= 32 and p == 1 and n * r <= _SCRYPT_MAX_NR):
        # bounded so that a planted document cannot make opening cost gigabytes (128*n*r bytes)
        raise InvalidInput(f"{what} has scrypt parameters outside the accepted range")
    salt = _unb64(kdf["salt"], f"{what} salt")
    if not _SALT_SIZE <= len(salt) <= _MAX_SALT:
        raise InvalidInput(f"{what} salt must be {_SALT_SIZE} to {_MAX_SALT} bytes")
    check = _unb64(kdf["check"], f"{what} passphrase check")
    if len(check) != _CHECK_SIZE:
        raise InvalidInput(f"{what} passphrase check must be {_CHECK_SIZE} bytes")
    nonce = _unb64(doc["nonce"], f"{what} nonce")
    if len(nonce) != _NONCE_SIZE:
        raise InvalidInput(f"{what} nonce must be {_NONCE_SIZE} bytes")
    ciphertext = _unb64(doc["ciphertext"], f"{what} ciphertext")
    if len(ciphertext) != BACKUP_KEY_SIZE + _TAG_SIZE:
        raise InvalidInput(f"{what} ciphertext has the wrong length (truncated?)")
    aad = canonical_json({k: v for k, v in doc.items() if k != "ciphertext"})
    return _SealedShare(
        ceremony,
        custodian,
        index,
        threshold,
        count,
        root_fingerprint,
        fingerprint,
        salt,
        n,
        r,
        p,
        check,
        nonce,
        ciphertext,
        aad,
    )


# --- the API ----------------------------------------------------------------------------------------


def new_backup(
    private_key_pkcs8: bytes, key_type: str, root_fingerprint: str, ceremony: str, created: str
) -> tuple[bytes, bytes]:
    """Encrypt the root key under a fresh backup key: (backup document, 32-byte backup key).

    The key must be a signing key of ``key_type`` whose public key has ``root_fingerprint``.
    """
    _text(ceremony, "ceremony", MAX_CEREMONY_ID)
    _fingerprint(root_fingerprint, "root_fingerprint")
    _created(created)
    if not isinstance(key_type, str):
        raise InvalidInput("key_type must be a string")
    declared = KeyType.parse(key_type)
    if KeyUsage.SIGN not in USAGES[declared]:
        raise InvalidInput(f"a {declared.value} key cannot be a root key (it cannot sign)")
    actual, fingerprint = _root_identity(private_key_pkcs8)
    if actual is not declared:
        raise InvalidInput(f"the root private key is a {actual.value} key, not {declared.value}")
    if fingerprint != root_fingerprint:
        raise InvalidInput("root_fingerprint does not match the root private key")
    backup_key = secrets.token_bytes(BACKUP_KEY_SIZE)
    nonce = secrets.token_bytes(_NONCE_SIZE)
    public = {
        "format": BACKUP_FORMAT,
        "ceremony": ceremony,
        "root_fingerprint": root_fingerprint,
        "key_type": declared.value,
        "created": created,
        "nonce": _b64(nonce),
    }
    sealed = AESGCM(backup_key).encrypt(nonce, private_key_pkcs8, canonical_json(public))
    return _render({**public, "ciphertext": _b64(sealed)}), backup_key


def split_backup_key(
    backup_key: bytes,
    custodians: Sequence[tuple[str, str]],
    threshold: int,
    ceremony: str,
    root_fingerprint: str,
    *,
    scrypt_n: int = DEFAULT_SCRYPT_N,
) -> list[tuple[str, bytes]]:
    """Split the backup key ``threshold``-of-``len(custodians)`` and seal each share under its
    custodian's passphrase: [(custodian name, share document)], in the order given.

    Custodian names are non-empty, printable, at most 64 characters and unique (ignoring case);
    passphrases have at least 8 characters. Errors name the custodian, never the passphrase.
    """
    if not isinstance(backup_key, bytes) or len(backup_key) != BACKUP_KEY_SIZE:
        raise InvalidInput(f"the backup key must be {BACKUP_KEY_SIZE} bytes")
    _text(ceremony, "ceremony", MAX_CEREMONY_ID)
    _fingerprint(root_fingerprint, "root_fingerprint")
    if not _scrypt_n_ok(scrypt_n):
        # A share that open_share would refuse must not be made.
        raise InvalidInput(f"scrypt_n must be a power of two from {SCRYPT_N_RANGE[0]} to {SCRYPT_N_RANGE[1]}")
    if not _is_int(threshold):
        raise InvalidInput("threshold must be an integer")
    seen: dict[str, str] = {}
    encoded: list[bytes] = []
    for entry in custodians:
        if not isinstance(entry, tuple) or len(entry) != 2:
            raise InvalidInput("custodians must be (name, passphrase) pairs")
        name = _text(entry[0], "custodian name", MAX_CUSTODIAN_NAME)
        folded = name.casefold()
        if folded in seen:
            raise InvalidInput(f"custodian {name!r} is named twice (as {seen[folded]!r} too)")
        seen[folded] = name
        if not isinstance(entry[1], str) or not entry[1]:
            raise InvalidInput(f"custodian {name!r} has an empty passphrase")
        passphrase = _passphrase(entry[1], name)
        if len(passphrase.decode("utf-8")) < MIN_PASSPHRASE:  # characters, after NFC
            raise InvalidInput(
                f"the passphrase of custodian {name!r} is too short (at least {MIN_PASSPHRASE} characters)"
            )
        encoded.append(passphrase)
    if threshold < 2:
        raise InvalidInput(
            f"threshold {threshold} refused: a threshold below 2 would give every custodian "
            "the whole backup key"
        )
    if threshold > len(custodians):
        raise InvalidInput(
            f"threshold {threshold} is larger than the number of custodians ({len(custodians)})"
        )
    if len(custodians) > shamir.MAX_SHARES:
        raise InvalidInput(f"at most {shamir.MAX_SHARES} custodians (got {len(custodians)})")

    shares = shamir.split(backup_key, threshold, len(custodians))
    out: list[tuple[str, bytes]] = []
    for (name, _), passphrase, share in zip(custodians, encoded, shares, strict=True):
        salt = secrets.token_bytes(_SALT_SIZE)
        key, check = _derive(passphrase, salt, scrypt_n, _SCRYPT_R, _SCRYPT_P)
        nonce = secrets.token_bytes(_NONCE_SIZE)
        public = {
            "format": SHARE_FORMAT,
            "ceremony": ceremony,
            "custodian": name,
            "index": share.index,
            "threshold": threshold,
            "count": len(custodians),
            "root_fingerprint": root_fingerprint,
            "share_fingerprint": share_fingerprint(share),
            "kdf": {
                "alg": "scrypt",
                "salt": _b64(salt),
                "n": scrypt_n,
                "r": _SCRYPT_R,
                "p": _SCRYPT_P,
                "check": _b64(check),
            },
            "nonce": _b64(nonce),
        }
        sealed = AESGCM(key).encrypt(nonce, share.data, canonical_json(public))
        out.append((name, _render({**public, "ciphertext": _b64(sealed)})))
    return out


def open_share(document: bytes, passphrase: str) -> CustodianShare:
    """Open a custodian's share document with that custodian's passphrase.

    Malformed → InvalidInput; wrong passphrase → NotAuthorised; altered fields or ciphertext, or a
    share that does not match its recorded fingerprint → VerificationFailed.
    """
    sealed = _parse_share(document)
    who = f"the share of custodian {sealed.custodian!r} in ceremony {sealed.ceremony!r}"
    if not isinstance(passphrase, str) or not passphrase:
        raise NotAuthorised(f"no passphrase given for {who}")
    key, check = _derive(_passphrase(passphrase, sealed.custodian), sealed.salt, sealed.n, sealed.r, sealed.p)
    if not hmac.compare_digest(check, sealed.check):
        raise NotAuthorised(f"wrong passphrase for {who} (or its key-derivation fields were altered)")
    try:
        data = AESGCM(key).decrypt(sealed.nonce, sealed.ciphertext, sealed.aad)
    except InvalidTag:
        raise VerificationFailed(f"{who} was altered or is corrupt") from None
    share = Share(sealed.index, data)
    if not hmac.compare_digest(share_fingerprint(share), sealed.share_fingerprint):
        raise VerificationFailed(f"{who} does not match its share_fingerprint")
    return CustodianShare(
        ceremony=sealed.ceremony,
        custodian=sealed.custodian,
        index=sealed.index,
        threshold=sealed.threshold,
        count=sealed.count,
        root_fingerprint=sealed.root_fingerprint,
        share_fingerprint=sealed.share_fingerprint,
        share=share,
    )


def share_fingerprints(document: bytes) -> tuple[str, int, str]:
    """(custodian, index, share_fingerprint) of a share document, read without its passphrase.

    The document is parsed as strictly as by :func:`open_share`, but nothing here is authenticated:
    only opening proves the fields were sealed by someone who knew the passphrase.
    """
    sealed = _parse_share(document)
    return sealed.custodian, sealed.index, sealed.share_fingerprint


def recover_private_key(backup_document: bytes, shares: Sequence[CustodianShare]) -> bytes:
    """Rebuild the backup key from opened shares and decrypt the root key (PKCS#8 DER).

    Refuses shares from another ceremony, duplicate indexes and fewer shares than the threshold
    (InvalidInput); a share for another root key, a backup key that does not decrypt the backup,
    or a decrypted key whose fingerprint differs from the recorded one is VerificationFailed.
    """
    backup = _parse_backup(backup_document)
    if not shares:
        raise InvalidInput("no shares given")
    for s in shares:
        if not isinstance(s, CustodianShare):
            raise InvalidInput("recover_private_key takes opened custodian shares")
        if s.ceremony != backup.ceremony:
            raise InvalidInput(
                f"share from another ceremony: custodian {s.custodian!r} holds a share of ceremony "
                f"{s.ceremony!r}, the backup is from {backup.ceremony!r}"
            )
    first = shares[0]
    for s in shares:
        if (s.threshold, s.count) != (first.threshold, first.count):
            raise InvalidInput(
                f"custodian {s.custodian!r} has a share for {s.threshold} of {s.count}, "
                f"custodian {first.custodian!r} one for {first.threshold} of {first.count}"
            )
    holders: dict[int, str] = {}
    for s in shares:
        if s.index in holders:
            raise InvalidInput(
                f"custodians {holders[s.index]!r} and {s.custodian!r} both give share index {s.index}"
            )
        holders[s.index] = s.custodian
    if len(shares) < first.threshold:
        raise InvalidInput(
            f"{len(shares)} of {first.threshold} shares given: at least {first.threshold} of the "
            f"{first.count} custodians must take part"
        )
    for s in shares:
        if s.root_fingerprint != backup.root_fingerprint:
            raise VerificationFailed(f"the share of custodian {s.custodian!r} is for another root key")

    backup_key = shamir.combine([s.share for s in shares])
    try:
        pkcs8 = AESGCM(backup_key).decrypt(backup.nonce, backup.ciphertext, backup.aad)
    except InvalidTag:
        raise VerificationFailed(
            "the shares do not reconstruct the backup key (a share is wrong or corrupted, "
            "or the backup was altered)"
        ) from None
    try:
        key_type, fingerprint = _root_identity(pkcs8)
    except InvalidInput:
        raise VerificationFailed("the backup does not hold a valid root private key") from None
    if key_type is not backup.key_type or not hmac.compare_digest(fingerprint, backup.root_fingerprint):
        raise VerificationFailed(
            "the recovered key does not match the backup's root_fingerprint and key_type"
        )
    return pkcs8
