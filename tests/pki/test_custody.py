"""Root-key custody: a 3-of-5 ceremony round trip with a real P-384 key, and every refusal the
ceremony relies on (too few shares, other ceremonies, substituted, tampered or malformed shares,
wrong passphrases), without secrets in any message."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from fabtrust.crypto.canonical import canonical_json
from fabtrust.crypto.keys import key_id, spki_der
from fabtrust.crypto.shamir import Share
from fabtrust.errors import FabtrustError, InvalidInput, NotAuthorised, VerificationFailed
from fabtrust.pki.custody import (
    BACKUP_FORMAT,
    MAX_DOCUMENT,
    SHARE_FORMAT,
    CustodianShare,
    new_backup,
    open_share,
    recover_private_key,
    share_fingerprints,
    split_backup_key,
)

FAST_N = 2**14  # the smallest scrypt cost accepted, to keep the tests quick
CREATED = "2025-03-01T09:00:00Z"
CUSTODIANS = [
    ("alice", "alice-passphrase-1"),
    ("bob", "bob-passphrase-22"),
    ("carol", "carol-passphrase-333"),
    ("dave", "dave-passphrase-4444"),
    ("erin", "erin-passphrase-55555"),
]
PASSPHRASES = dict(CUSTODIANS)


def pkcs8(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass(frozen=True)
class Ceremony:
    ceremony: str
    private_key: bytes
    fingerprint: str
    backup: bytes
    backup_key: bytes
    documents: dict[str, bytes]
    opened: dict[str, CustodianShare]


def run_ceremony(
    ceremony: str, custodians: list[tuple[str, str]], threshold: int, curve: ec.EllipticCurve
) -> Ceremony:
    key = ec.generate_private_key(curve)
    der = pkcs8(key)
    fingerprint = key_id(spki_der(key.public_key()))
    key_type = "ecdsa-p384" if isinstance(curve, ec.SECP384R1) else "ecdsa-p256"
    backup, backup_key = new_backup(der, key_type, fingerprint, ceremony, CREATED)
    documents = dict(
        split_backup_key(backup_key, custodians, threshold, ceremony, fingerprint, scrypt_n=FAST_N)
    )
    opened = {name: open_share(documents[name], passphrase) for name, passphrase in custodians}
    return Ceremony(ceremony, der, fingerprint, backup, backup_key, documents, opened)


@pytest.fixture(scope="module")
def root() -> Ceremony:
    return run_ceremony("root-2025-03", CUSTODIANS, 3, ec.SECP384R1())


@pytest.fixture(scope="module")
def other() -> Ceremony:
    """Another ceremony, for another root key."""
    return run_ceremony("root-2025-04", CUSTODIANS[:3], 2, ec.SECP256R1())


def edit(document: bytes, change: Callable[[dict[str, Any]], Any]) -> bytes:
    doc = json.loads(document)
    change(doc)
    return json.dumps(doc, indent=2).encode()


def flip_b64(value: str, position: int = 0) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[position] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


# --- round trip ----------------------------------------------------------------------------------


def test_every_three_or_more_custodians_recover_the_root_key(root: Ceremony) -> None:
    names = list(root.opened)
    for m in (3, 4, 5):
        for subset in itertools.combinations(names, m):
            shares = [root.opened[name] for name in subset]
            assert recover_private_key(root.backup, shares) == root.private_key, subset
    # Order does not matter.
    shares = [root.opened[name] for name in ("erin", "alice", "carol")]
    recovered = serialization.load_der_private_key(recover_private_key(root.backup, shares), None)
    assert key_id(spki_der(recovered.public_key())) == root.fingerprint  # type: ignore[arg-type]


def test_documents_carry_the_documented_fields_and_no_secrets(root: Ceremony) -> None:
    backup = json.loads(root.backup)
    assert backup["format"] == BACKUP_FORMAT
    assert set(backup) == {
        "format",
        "ceremony",
        "root_fingerprint",
        "key_type",
        "created",
        "nonce",
        "ciphertext",
    }
    assert (backup["ceremony"], backup["root_fingerprint"], backup["key_type"], backup["created"]) == (
        root.ceremony,
        root.fingerprint,
        "ecdsa-p384",
        CREATED,
    )
    for name, document in root.documents.items():
        doc = json.loads(document)
        assert doc["format"] == SHARE_FORMAT
        assert (doc["ceremony"], doc["custodian"], doc["threshold"], doc["count"]) == (
            root.ceremony,
            name,
            3,
            5,
        )
        assert doc["kdf"]["alg"] == "scrypt"
        assert (doc["kdf"]["n"], doc["kdf"]["r"], doc["kdf"]["p"]) == (FAST_N, 8, 1)
        share = root.opened[name].share
        for secret in (PASSPHRASES[name].encode(), share.data, base64.b64encode(share.data), root.backup_key):
            assert secret not in document
            assert secret not in root.backup
        assert share.data.hex().encode() not in document
    assert sorted(s.index for s in root.opened.values()) == [1, 2, 3, 4, 5]


def test_backup_decrypts_as_documented(root: Ceremony) -> None:
    """An independent reading of the documented backup format."""
    doc = json.loads(root.backup)
    aad = canonical_json({k: v for k, v in doc.items() if k != "ciphertext"})
    plain = AESGCM(root.backup_key).decrypt(
        base64.b64decode(doc["nonce"]), base64.b64decode(doc["ciphertext"]), aad
    )
    assert plain == root.private_key


def _independent_open(document: bytes, passphrase: str) -> bytes:
    doc = json.loads(document)
    kdf = doc["kdf"]
    out = Scrypt(salt=base64.b64decode(kdf["salt"]), length=48, n=kdf["n"], r=kdf["r"], p=kdf["p"]).derive(
        unicodedata.normalize("NFC", passphrase).encode()
    )
    assert out[32:] == base64.b64decode(kdf["check"])
    aad = canonical_json({k: v for k, v in doc.items() if k != "ciphertext"})
    return AESGCM(out[:32]).decrypt(base64.b64decode(doc["nonce"]), base64.b64decode(doc["ciphertext"]), aad)


def _seal(public: dict[str, Any], data: bytes, passphrase: str) -> bytes:
    """Seal a share document by the documented recipe, with whatever public fields are given."""
    salt = bytes(range(16))
    out = Scrypt(salt=salt, length=48, n=FAST_N, r=8, p=1).derive(passphrase.encode())
    public = {
        **public,
        "kdf": {
            "alg": "scrypt",
            "salt": base64.b64encode(salt).decode(),
            "n": FAST_N,
            "r": 8,
            "p": 1,
            "check": base64.b64encode(out[32:]).decode(),
        },
        "nonce": base64.b64encode(bytes(12)).decode(),
    }
    sealed = AESGCM(out[:32]).encrypt(bytes(12), data, canonical_json(public))
    return json.dumps({**public, "ciphertext": base64.b64encode(sealed).decode()}).encode()


def test_share_decrypts_as_documented_and_fingerprints_match(root: Ceremony) -> None:
    for name, document in root.documents.items():
        opened = root.opened[name]
        assert _independent_open(document, PASSPHRASES[name]) == opened.share.data
        expected = hashlib.sha256(bytes([opened.index]) + opened.share.data).hexdigest()
        assert opened.share_fingerprint == expected
        assert share_fingerprints(document) == (name, opened.index, expected)
        assert (opened.ceremony, opened.custodian, opened.root_fingerprint) == (
            root.ceremony,
            name,
            root.fingerprint,
        )


def test_opened_share_repr_has_no_share_data(root: Ceremony) -> None:
    opened = root.opened["alice"]
    text = repr(opened)
    assert "alice" in text
    assert opened.share.data.hex() not in text
    assert repr(opened.share.data) not in text


def test_passphrases_are_nfc_normalised() -> None:
    composed = unicodedata.normalize("NFC", "pässwörd-ÿ")
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    docs = split_backup_key(
        b"k" * 32, [("zoë", composed), ("yann", "yann-passphrase")], 2, "c", "ab" * 32, scrypt_n=FAST_N
    )
    assert open_share(docs[0][1], decomposed).custodian == "zoë"


# --- refusals at recovery ------------------------------------------------------------------------


def test_two_shares_are_not_enough(root: Ceremony) -> None:
    with pytest.raises(InvalidInput, match="2 of 3 shares given"):
        recover_private_key(root.backup, [root.opened["alice"], root.opened["bob"]])
    with pytest.raises(InvalidInput, match="no shares given"):
        recover_private_key(root.backup, [])


def test_a_share_from_another_ceremony_is_refused(root: Ceremony, other: Ceremony) -> None:
    shares = [root.opened["alice"], root.opened["bob"], other.opened["carol"]]
    with pytest.raises(InvalidInput, match=r"share from another ceremony: custodian 'carol'"):
        recover_private_key(root.backup, shares)


def test_a_backup_from_another_ceremony_is_refused(root: Ceremony, other: Ceremony) -> None:
    shares = [root.opened[name] for name in ("alice", "bob", "carol")]
    with pytest.raises(InvalidInput, match="share from another ceremony"):
        recover_private_key(other.backup, shares)


def test_two_shares_with_the_same_index_are_refused(root: Ceremony) -> None:
    alice = root.opened["alice"]
    with pytest.raises(InvalidInput, match="both give share index 1"):
        recover_private_key(root.backup, [alice, root.opened["bob"], alice])


def resplit(root: Ceremony, threshold: int = 3, fingerprint: str | None = None) -> dict[str, CustodianShare]:
    """What an attacker holding the ceremony id could do: split a key of their own choosing."""
    own_key = bytes(range(32))
    fp = fingerprint or root.fingerprint
    docs = split_backup_key(own_key, CUSTODIANS, threshold, root.ceremony, fp, scrypt_n=FAST_N)
    return {name: open_share(doc, PASSPHRASES[name]) for name, doc in docs[:3]}


def test_a_substitute_share_from_a_resplit_fails_at_decryption(root: Ceremony) -> None:
    forged = resplit(root)
    # The forged share for carol (index 3) replaces the real one.
    shares = [root.opened["alice"], root.opened["bob"], forged["carol"]]
    with pytest.raises(VerificationFailed, match="the shares do not reconstruct the backup key"):
        recover_private_key(root.backup, shares)
    # With a fourth, genuine share, the forged one still spoils the interpolation.
    with pytest.raises(VerificationFailed, match="do not reconstruct"):
        recover_private_key(root.backup, [*shares, root.opened["dave"]])
    # Same index as a genuine share: refused before combining.
    with pytest.raises(InvalidInput, match="both give share index 1"):
        recover_private_key(root.backup, [root.opened["alice"], forged["alice"], root.opened["carol"]])


def test_shares_disagreeing_on_the_threshold_are_refused(root: Ceremony) -> None:
    forged = resplit(root, threshold=2)
    with pytest.raises(InvalidInput, match="has a share for 2 of 5"):
        recover_private_key(root.backup, [root.opened["alice"], root.opened["bob"], forged["carol"]])


def test_a_share_for_another_root_key_is_refused(root: Ceremony) -> None:
    forged = resplit(root, fingerprint="cd" * 32)
    with pytest.raises(VerificationFailed, match="the share of custodian 'carol' is for another root key"):
        recover_private_key(root.backup, [root.opened["alice"], root.opened["bob"], forged["carol"]])


def test_a_tampered_backup_is_refused(root: Ceremony) -> None:
    shares = [root.opened[name] for name in ("alice", "bob", "carol")]
    flipped = edit(root.backup, lambda d: d.update(ciphertext=flip_b64(d["ciphertext"], 5)))
    with pytest.raises(VerificationFailed, match="do not reconstruct the backup key"):
        recover_private_key(flipped, shares)
    redated = edit(root.backup, lambda d: d.update(created="2030-01-01T00:00:00Z"))
    with pytest.raises(VerificationFailed):
        recover_private_key(redated, shares)


def test_a_backup_holding_another_key_is_refused(root: Ceremony) -> None:
    """A backup sealed under the right backup key but over another key (a forger who knew the key)."""
    doc = json.loads(root.backup)
    public = {k: v for k, v in doc.items() if k != "ciphertext"}
    wrong = pkcs8(ec.generate_private_key(ec.SECP384R1()))
    sealed = AESGCM(root.backup_key).encrypt(base64.b64decode(doc["nonce"]), wrong, canonical_json(public))
    forged = json.dumps({**public, "ciphertext": base64.b64encode(sealed).decode()}).encode()
    shares = [root.opened[name] for name in ("alice", "bob", "carol")]
    with pytest.raises(VerificationFailed, match="does not match the backup's root_fingerprint"):
        recover_private_key(forged, shares)
    garbage = AESGCM(root.backup_key).encrypt(
        base64.b64decode(doc["nonce"]), b"not a key", canonical_json(public)
    )
    forged = json.dumps({**public, "ciphertext": base64.b64encode(garbage).decode()}).encode()
    with pytest.raises(VerificationFailed, match="valid root private key"):
        recover_private_key(forged, shares)


# --- refusals at opening -------------------------------------------------------------------------


def test_wrong_passphrase_is_not_authorised_and_not_echoed(root: Ceremony) -> None:
    wrong = "carol-passphrase-333"  # another custodian's passphrase
    with pytest.raises(NotAuthorised) as info:
        open_share(root.documents["alice"], wrong)
    message = info.value.message
    assert "alice" in message
    assert root.ceremony in message
    assert wrong not in message
    assert PASSPHRASES["alice"] not in message
    with pytest.raises(NotAuthorised):
        open_share(root.documents["alice"], "")


@pytest.mark.parametrize(
    "position", [0, 31, 32, 47], ids=["data-first", "data-last", "tag-first", "tag-last"]
)
def test_flipped_ciphertext_byte_is_detected(root: Ceremony, position: int) -> None:
    tampered = edit(root.documents["bob"], lambda d: d.update(ciphertext=flip_b64(d["ciphertext"], position)))
    with pytest.raises(
        VerificationFailed, match="the share of custodian 'bob' in ceremony 'root-2025-03' was altered"
    ):
        open_share(tampered, PASSPHRASES["bob"])


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda d: d.update(index=d["index"] % 5 + 1), id="index"),
        pytest.param(lambda d: d.update(threshold=2), id="threshold"),
        pytest.param(lambda d: d.update(count=4), id="count"),
        pytest.param(lambda d: d.update(ceremony="root-2099"), id="ceremony"),
        pytest.param(lambda d: d.update(custodian="mallory"), id="custodian"),
        pytest.param(lambda d: d.update(root_fingerprint="ef" * 32), id="root-fingerprint"),
        pytest.param(lambda d: d.update(share_fingerprint="00" * 32), id="share-fingerprint"),
        pytest.param(lambda d: d.update(nonce=flip_b64(d["nonce"])), id="nonce"),
    ],
)
def test_edited_public_fields_are_detected(root: Ceremony, change: Callable[[dict[str, Any]], Any]) -> None:
    tampered = edit(root.documents["bob"], change)
    with pytest.raises(VerificationFailed):
        open_share(tampered, PASSPHRASES["bob"])


def test_edited_kdf_fields_look_like_a_wrong_passphrase(root: Ceremony) -> None:
    tampered = edit(root.documents["bob"], lambda d: d["kdf"].update(salt=flip_b64(d["kdf"]["salt"])))
    with pytest.raises(NotAuthorised, match="or its key-derivation fields were altered"):
        open_share(tampered, PASSPHRASES["bob"])


def test_a_share_not_matching_its_fingerprint_is_refused() -> None:
    data = bytes(range(32))
    public = {
        "format": SHARE_FORMAT,
        "ceremony": "c1",
        "custodian": "mallory",
        "index": 2,
        "threshold": 2,
        "count": 3,
        "root_fingerprint": "ab" * 32,
        "share_fingerprint": hashlib.sha256(b"\x01" + data).hexdigest(),  # index 1, not 2
    }
    with pytest.raises(VerificationFailed, match="does not match its share_fingerprint"):
        open_share(_seal(public, data, "mallory-passphrase"), "mallory-passphrase")
    public["share_fingerprint"] = hashlib.sha256(b"\x02" + data).hexdigest()
    opened = open_share(_seal(public, data, "mallory-passphrase"), "mallory-passphrase")
    assert opened.share == Share(2, data)


def _kdf(**changes: Any) -> Callable[[dict[str, Any]], Any]:
    return lambda d: d["kdf"].update(changes)


MALFORMED_SHARES: list[Any] = [
    pytest.param(lambda b: b[: len(b) // 2], "not valid JSON", id="truncated"),
    pytest.param(lambda b: b"hello", "not valid JSON", id="not-json"),
    pytest.param(lambda b: b"\xff\xfe{}", "not valid JSON", id="not-utf8"),
    pytest.param(lambda b: b"[1, 2]", "not a JSON object", id="not-object"),
    pytest.param(lambda b: b" " * (MAX_DOCUMENT + 1), "too large", id="too-large"),
    pytest.param(lambda b: b[:-2] + b', "index": 1}', "duplicate member", id="duplicate-member"),
    pytest.param(
        lambda b: edit(b, lambda d: d.update(format="fabtrust.custodian-share/v2")),
        "unknown format 'fabtrust.custodian-share/v2'",
        id="unknown-version",
    ),
    pytest.param(
        lambda b: edit(b, lambda d: d.update(format=BACKUP_FORMAT)), "unknown format", id="backup-not-share"
    ),
    pytest.param(lambda b: edit(b, lambda d: d.pop("format")), "unknown format", id="no-format"),
    pytest.param(
        lambda b: edit(b, lambda d: d.update(note="hi")), "unexpected member.*'note'", id="extra-field"
    ),
    pytest.param(lambda b: edit(b, lambda d: d.pop("nonce")), "missing nonce", id="missing-field"),
    pytest.param(lambda b: edit(b, _kdf(extra=1)), "unexpected member", id="kdf-extra-field"),
    pytest.param(lambda b: edit(b, lambda d: d.update(kdf="scrypt")), "not an object", id="kdf-not-object"),
    pytest.param(lambda b: edit(b, _kdf(alg="pbkdf2")), "unknown key-derivation", id="kdf-alg"),
    pytest.param(lambda b: edit(b, _kdf(n=2**40)), "scrypt parameters", id="scrypt-n-huge"),
    pytest.param(lambda b: edit(b, _kdf(n=2**13)), "scrypt parameters", id="scrypt-n-small"),
    pytest.param(lambda b: edit(b, _kdf(n=3 * 2**14)), "scrypt parameters", id="scrypt-n-not-power-of-2"),
    pytest.param(lambda b: edit(b, _kdf(n=2**20, r=8)), "scrypt parameters", id="scrypt-memory-too-big"),
    pytest.param(lambda b: edit(b, _kdf(r=0)), "scrypt parameters", id="scrypt-r-0"),
    pytest.param(lambda b: edit(b, _kdf(p=2)), "scrypt parameters", id="scrypt-p-2"),
    pytest.param(lambda b: edit(b, _kdf(n="16384")), "scrypt parameters", id="scrypt-n-string"),
    pytest.param(lambda b: edit(b, _kdf(salt="AAAA")), "salt must be", id="salt-short"),
    pytest.param(lambda b: edit(b, _kdf(check="AAAA")), "passphrase check must be", id="check-short"),
    pytest.param(lambda b: edit(b, lambda d: d.update(index=0)), "inconsistent", id="index-0"),
    pytest.param(lambda b: edit(b, lambda d: d.update(index=6)), "inconsistent", id="index-above-count"),
    pytest.param(lambda b: edit(b, lambda d: d.update(index=True)), "integers", id="index-bool"),
    pytest.param(lambda b: b.replace(b'"index": 1', b'"index": 1.0'), "non-integer number", id="index-float"),
    pytest.param(lambda b: edit(b, lambda d: d.update(threshold=1)), "inconsistent", id="threshold-1"),
    pytest.param(
        lambda b: edit(b, lambda d: d.update(count=256, threshold=2)), "inconsistent", id="count-256"
    ),
    pytest.param(lambda b: edit(b, lambda d: d.update(custodian="")), "non-empty", id="custodian-empty"),
    pytest.param(lambda b: edit(b, lambda d: d.update(custodian="a\nb")), "control", id="custodian-newline"),
    pytest.param(
        lambda b: edit(b, lambda d: d.update(ceremony=7)), "non-empty string", id="ceremony-not-string"
    ),
    pytest.param(
        lambda b: edit(b, lambda d: d.update(root_fingerprint="AB" * 32)),
        "hex SHA-256",
        id="fingerprint-upper",
    ),
    pytest.param(
        lambda b: edit(b, lambda d: d.update(share_fingerprint="ab")),
        "hex SHA-256",
        id="share-fingerprint-short",
    ),
    pytest.param(lambda b: edit(b, lambda d: d.update(nonce="AAAA")), "nonce must be 12", id="nonce-short"),
    pytest.param(
        lambda b: edit(b, lambda d: d.update(nonce="!!!!")), "not valid base64", id="nonce-not-base64"
    ),
    pytest.param(
        lambda b: edit(b, lambda d: d.update(ciphertext=d["ciphertext"][:-4])),
        "wrong length",
        id="ciphertext-short",
    ),
]


@pytest.mark.parametrize(("mutate", "match"), MALFORMED_SHARES)
def test_malformed_share_documents_are_invalid_input(
    root: Ceremony, mutate: Callable[[bytes], bytes], match: str
) -> None:
    document = mutate(root.documents["alice"])
    with pytest.raises(InvalidInput, match=match):
        open_share(document, PASSPHRASES["alice"])
    with pytest.raises(InvalidInput, match=match):
        share_fingerprints(document)


def test_base64_with_slack_bits_is_refused(root: Ceremony) -> None:
    # The 16-byte check is 24 base64 characters ending '==': the last data character has 4 unused
    # bits, so several texts decode to the same bytes. Only the canonical one is accepted.
    canonical = base64.b64encode(bytes(16)).decode()
    assert canonical.endswith("A==")
    slack = canonical[:-3] + "B=="  # same bytes, a non-zero padding bit
    assert base64.b64decode(slack) == bytes(16)
    with pytest.raises(InvalidInput, match="not canonical base64"):
        open_share(edit(root.documents["alice"], _kdf(check=slack)), PASSPHRASES["alice"])


MALFORMED_BACKUPS: list[Any] = [
    pytest.param(lambda b: b[:40], "not valid JSON", id="truncated"),
    pytest.param(lambda b: b"null", "not a JSON object", id="not-object"),
    pytest.param(
        lambda b: edit(b, lambda d: d.update(format="fabtrust.root-backup/v2")),
        "unknown format",
        id="unknown-version",
    ),
    pytest.param(lambda b: edit(b, lambda d: d.update(extra=None)), "unexpected member", id="extra-field"),
    pytest.param(lambda b: edit(b, lambda d: d.pop("created")), "missing created", id="missing-field"),
    pytest.param(
        lambda b: edit(b, lambda d: d.update(key_type="rsa-4096")), "unknown key type", id="key-type"
    ),
    pytest.param(lambda b: edit(b, lambda d: d.update(created="yesterday")), "RFC 3339", id="created"),
    pytest.param(
        lambda b: edit(b, lambda d: d.update(ciphertext="AAAA")), "truncated", id="ciphertext-short"
    ),
    pytest.param(lambda b: edit(b, lambda d: d.update(nonce="AAAA")), "nonce must be 12", id="nonce-short"),
]


@pytest.mark.parametrize(("mutate", "match"), MALFORMED_BACKUPS)
def test_malformed_backups_are_invalid_input(
    root: Ceremony, mutate: Callable[[bytes], bytes], match: str
) -> None:
    shares = [root.opened[name] for name in ("alice", "bob", "carol")]
    with pytest.raises(InvalidInput, match=match):
        recover_private_key(mutate(root.backup), shares)


# --- refusals at the ceremony --------------------------------------------------------------------

FP = "ab" * 32
KEY = b"k" * 32


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param(
            {"custodians": [("a", "passphrase-a"), ("a", "passphrase-b")]},
            "'a' is named twice",
            id="dup-name",
        ),
        pytest.param(
            {"custodians": [("Ann", "passphrase-a"), ("ann", "passphrase-b")]},
            "named twice",
            id="dup-name-case",
        ),
        pytest.param(
            {"custodians": [("", "passphrase-a"), ("b", "passphrase-b")]}, "non-empty", id="empty-name"
        ),
        pytest.param(
            {"custodians": [("x" * 65, "passphrase-a"), ("b", "passphrase-b")]}, "64", id="long-name"
        ),
        pytest.param(
            {"custodians": [("a\tb", "passphrase-a"), ("b", "passphrase-b")]}, "control", id="name-tab"
        ),
        pytest.param(
            {"custodians": [(" a", "passphrase-a"), ("b", "passphrase-b")]}, "whitespace", id="name-space"
        ),
        pytest.param(
            {"custodians": [("a", ""), ("b", "passphrase-b")]}, "'a' has an empty passphrase", id="empty-pass"
        ),
        pytest.param(
            {"custodians": [("a", "short12"), ("b", "passphrase-b")]},
            "passphrase of custodian 'a' is too short",
            id="weak",
        ),
        pytest.param(
            {"custodians": [("a", "passphrase-a"), ("b", "\udc80" * 9)]},
            "'b': the passphrase",
            id="surrogate",
        ),
        pytest.param({"custodians": [["a", "passphrase-a"]]}, "pairs", id="not-pairs"),
        pytest.param({"threshold": 1}, "threshold 1 refused", id="threshold-1"),
        pytest.param({"threshold": 3}, "larger than the number of custodians", id="threshold-above-count"),
        pytest.param({"custodians": []}, "larger than the number of custodians", id="no-custodians"),
        pytest.param({"backup_key": b"k" * 16}, "32 bytes", id="short-key"),
        pytest.param({"ceremony": ""}, "ceremony", id="empty-ceremony"),
        pytest.param({"root_fingerprint": "xyz"}, "hex SHA-256", id="bad-fingerprint"),
        pytest.param({"scrypt_n": 2**13}, "scrypt_n", id="scrypt-n-small"),
        pytest.param({"scrypt_n": 2**15 + 1}, "scrypt_n", id="scrypt-n-odd"),
        pytest.param({"scrypt_n": 2**21}, "scrypt_n", id="scrypt-n-huge"),
    ],
)
def test_split_refuses_bad_input(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {
        "backup_key": KEY,
        "custodians": [("a", "passphrase-a"), ("b", "passphrase-b")],
        "threshold": 2,
        "ceremony": "c1",
        "root_fingerprint": FP,
        "scrypt_n": FAST_N,
        **kwargs,
    }
    with pytest.raises(InvalidInput, match=match) as info:
        split_backup_key(**args)
    for entry in args["custodians"]:
        if isinstance(entry, tuple | list) and entry[1]:
            assert entry[1] not in info.value.message


@pytest.fixture(scope="module")
def p384() -> tuple[bytes, str]:
    key = ec.generate_private_key(ec.SECP384R1())
    return pkcs8(key), key_id(spki_der(key.public_key()))


def test_new_backup_refuses_bad_input(p384: tuple[bytes, str]) -> None:
    der, fp = p384
    cases: list[tuple[tuple[Any, ...], str]] = [
        ((der, "ecdsa-p384", "cd" * 32, "c", CREATED), "does not match the root private key"),
        ((der, "ecdsa-p256", fp, "c", CREATED), "is a ecdsa-p384 key, not ecdsa-p256"),
        ((der, "x25519", fp, "c", CREATED), "cannot be a root key"),
        ((der, "rsa", fp, "c", CREATED), "unknown key type"),
        ((b"\x30\x00", "ecdsa-p384", fp, "c", CREATED), "not a valid unencrypted PKCS#8"),
        ((der, "ecdsa-p384", fp, "", CREATED), "ceremony"),
        ((der, "ecdsa-p384", fp, "c", "2025-03-01T09:00:00"), "time zone"),
        ((der, "ecdsa-p384", fp, "c", "soon"), "RFC 3339"),
    ]
    for args, match in cases:
        with pytest.raises(InvalidInput, match=match):
            new_backup(*args)


def test_new_backup_refuses_a_key_agreement_key() -> None:
    key = x25519.X25519PrivateKey.generate()
    der = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(InvalidInput, match="unsupported algorithm"):
        new_backup(der, "ecdsa-p384", key_id(spki_der(key.public_key())), "c", CREATED)


def test_errors_are_fabtrust_errors_with_safe_messages(root: Ceremony) -> None:
    # Every refusal above is a FabtrustError; spot-check that no share data leaks into any message.
    shares = [root.opened["alice"], root.opened["bob"]]
    with pytest.raises(FabtrustError) as info:
        recover_private_key(root.backup, shares)
    for share in shares:
        assert share.share.data.hex() not in info.value.message
