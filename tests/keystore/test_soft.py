"""The software key store: encrypted at rest, tamper-evident, and refusing bad input unchanged."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, x25519

from fabtrust.crypto import hpke
from fabtrust.crypto.keys import (
    KeyType,
    KeyUsage,
    PrivateKey,
    key_type_of,
    load_public_key,
    spki_der,
    verify_signature,
)
from fabtrust.errors import (
    Conflict,
    FabtrustError,
    InvalidInput,
    NotAuthorised,
    NotFound,
    Unavailable,
    VerificationFailed,
)
from fabtrust.keystore.base import KeyInfo, KeyStore
from fabtrust.keystore.soft import SoftKeyStore, soft_uri

PASSPHRASE = "correct horse battery staple"
FAST_N = 2**14  # the smallest scrypt cost the store accepts: keeps the suite quick
CLOCK_TIME = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)

KINDS = [
    ("p256-sign", KeyType.P256, KeyUsage.SIGN),
    ("p384-sign", KeyType.P384, KeyUsage.SIGN),
    ("ed-sign", KeyType.ED25519, KeyUsage.SIGN),
    ("mldsa-sign", KeyType.MLDSA65, KeyUsage.SIGN),
    ("p256-agree", KeyType.P256, KeyUsage.AGREE),
    ("p384-agree", KeyType.P384, KeyUsage.AGREE),
    ("x25519-agree", KeyType.X25519, KeyUsage.AGREE),
]
CURVES: dict[KeyType, ec.EllipticCurve] = {KeyType.P256: ec.SECP256R1(), KeyType.P384: ec.SECP384R1()}


def fixed_clock() -> datetime:
    return CLOCK_TIME


def create(root: Path, passphrase: str = PASSPHRASE) -> SoftKeyStore:
    return SoftKeyStore.create(root, passphrase, scrypt_n=FAST_N, clock=fixed_clock)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes: "nothing changed" is an equal snapshot."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@dataclass(frozen=True)
class Seeded:
    """A store of one key of every kind, for tests that do not change it."""

    root: Path
    store: SoftKeyStore
    keys: dict[str, KeyInfo]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    root = tmp_path_factory.mktemp("soft") / "keystore"
    with create(root) as store:
        keys = {label: store.generate(label, kt, usage) for label, kt, usage in KINDS}
        yield Seeded(root, store, keys)


def software_private(store: SoftKeyStore, label: str) -> PrivateKey:
    """The store's decrypted private key (white box: its private cache), loading it if needed."""
    store.get(soft_uri(label))
    return store._cache[label][1]


# --- the keys work ---------------------------------------------------------------------------------


def test_implements_the_keystore_protocol(tmp_path: Path) -> None:
    store: KeyStore = create(tmp_path / "ks")  # checked by mypy
    assert store.scheme == "soft"
    assert store.list() == []
    store.close()


@pytest.mark.parametrize(("label", "key_type", "usage"), [pytest.param(*kind, id=kind[0]) for kind in KINDS])
def test_generated_key_facts(seeded: Seeded, label: str, key_type: KeyType, usage: KeyUsage) -> None:
    info = seeded.keys[label]
    assert (info.uri, info.label, info.key_type, info.usage) == (soft_uri(label), label, key_type, usage)
    assert key_type_of(load_public_key(info.public_key_der)) is key_type
    assert seeded.store.get(info.uri) == info
    assert spki_der(software_private(seeded.store, label).public_key()) == info.public_key_der


def test_list_is_sorted_by_label(seeded: Seeded) -> None:
    assert seeded.store.list() == sorted(seeded.keys.values(), key=lambda i: i.label)


@pytest.mark.parametrize(
    "label", [pytest.param(label, id=label) for label, _, usage in KINDS if usage is KeyUsage.SIGN]
)
def test_sign(seeded: Seeded, label: str) -> None:
    info = seeded.keys[label]
    signature = seeded.store.sign(info.uri, b"production record 42")
    verify_signature(info.public_key_der, b"production record 42", signature)
    with pytest.raises(VerificationFailed):
        verify_signature(info.public_key_der, b"production record 43", signature)


@pytest.mark.parametrize(
    ("label", "size"),
    [
        pytest.param("mldsa-sign", 32, id="mldsa65"),
        pytest.param("ed-sign", 32, id="ed25519"),
        pytest.param("x25519-agree", 32, id="x25519-agree"),
    ],
)
def test_sign_digest_is_ecdsa_only(seeded: Seeded, label: str, size: int) -> None:
    """The software-only key types have no prehashed signing either (the contract covers ECDSA)."""
    with pytest.raises(InvalidInput, match=r"no prehashed signing|cannot sign"):
        seeded.store.sign_digest(seeded.keys[label].uri, bytes(size))


@pytest.mark.parametrize(
    "label", [pytest.param(label, id=label) for label, _, usage in KINDS if usage is KeyUsage.AGREE]
)
def test_exchange_and_hpke(seeded: Seeded, label: str) -> None:
    info = seeded.keys[label]
    ours = load_public_key(info.public_key_der)
    if isinstance(ours, ec.EllipticCurvePublicKey):
        peer_ec = ec.generate_private_key(CURVES[info.key_type])
        expected = peer_ec.exchange(ec.ECDH(), ours)
        peer_der = spki_der(peer_ec.public_key())
    else:
        assert isinstance(ours, x25519.X25519PublicKey)
        peer_x = x25519.X25519PrivateKey.generate()
        expected = peer_x.exchange(ours)
        peer_der = spki_der(peer_x.public_key())
    assert seeded.store.exchange(info.uri, peer_der) == expected

    sealed = hpke.seal(info.public_key_der, b"device-class secret", b"fabtrust.package/v1")
    assert seeded.store.hpke_open(info.uri, sealed, b"fabtrust.package/v1") == b"device-class secret"
    with pytest.raises(VerificationFailed):
        seeded.store.hpke_open(info.uri, sealed, b"another context")
    with pytest.raises(VerificationFailed):
        seeded.store.hpke_open(info.uri, sealed[:-1] + bytes([sealed[-1] ^ 1]), b"fabtrust.package/v1")


def test_create_open_round_trip(tmp_path: Path) -> None:
    root = tmp_path / "ks"
    with create(root) as store:
        created = [store.generate(label, kt, usage) for label, kt, usage in KINDS]
        signature = store.sign(soft_uri("ed-sign"), b"before")
    with SoftKeyStore.open(root, PASSPHRASE) as reopened:
        assert reopened.list() == sorted(created, key=lambda i: i.label)
        for info in created:
            assert reopened.get(info.uri) == info
        # The same keys: old signatures verify, new ones too, sealed messages open.
        ed = reopened.get(soft_uri("ed-sign"))
        verify_signature(ed.public_key_der, b"before", signature)
        verify_signature(ed.public_key_der, b"after", reopened.sign(ed.uri, b"after"))
        agree = reopened.get(soft_uri("p384-agree"))
        sealed = hpke.seal(agree.public_key_der, b"secret", b"ctx")
        assert reopened.hpke_open(agree.uri, sealed, b"ctx") == b"secret"


def test_key_file_records_the_clock(seeded: Seeded) -> None:
    doc = json.loads((seeded.root / "keys" / "p256-sign.json").read_bytes())
    assert doc["created"] == "2026-03-01T12:00:00Z"
    assert doc["format"] == "fabtrust.soft-key/v1"
    assert (doc["label"], doc["type"], doc["usage"]) == ("p256-sign", "ecdsa-p256", "sign")


# --- secrets at rest -------------------------------------------------------------------------------


def _private_encodings(key: PrivateKey) -> dict[str, bytes]:
    pkcs8 = key.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    encodings = {"pkcs8": pkcs8, "pkcs8-base64": base64.b64encode(pkcs8), "pkcs8-hex": pkcs8.hex().encode()}
    if isinstance(key, ec.EllipticCurvePrivateKey):
        size = (key.curve.key_size + 7) // 8
        encodings["raw"] = key.private_numbers().private_value.to_bytes(size, "big")
    elif isinstance(key, ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey | mldsa.MLDSA65PrivateKey):
        encodings["raw"] = key.private_bytes_raw()
    encodings["raw-base64"] = base64.b64encode(encodings["raw"])
    return encodings


def test_no_private_key_bytes_at_rest(seeded: Seeded) -> None:
    files = snapshot(seeded.root)
    assert set(files) == {"keystore.json", *(f"keys/{label}.json" for label, _, _ in KINDS)}
    for label, _, _ in KINDS:
        for name, encoding in _private_encodings(software_private(seeded.store, label)).items():
            for path, data in files.items():
                assert encoding not in data, f"{name} of {label} found in {path}"


def test_passphrase_not_at_rest(seeded: Seeded) -> None:
    for path, data in snapshot(seeded.root).items():
        assert PASSPHRASE.encode() not in data, path


def test_file_modes(tmp_path: Path) -> None:
    root = tmp_path / "ks"
    old = os.umask(0)  # even with a permissive umask
    try:
        with create(root) as store:
            store.generate("k", KeyType.P256, KeyUsage.SIGN)
    finally:
        os.umask(old)
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "keys").stat().st_mode) == 0o700
    for path in [root / "keystore.json", root / "keys" / "k.json"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert sorted(p.name for p in (root / "keys").iterdir()) == ["k.json"]  # no temporary files left


# --- opening and creating: refusals ------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(PASSPHRASE.upper(), id="case"),
        pytest.param(PASSPHRASE + " ", id="trailing-space"),
        pytest.param(PASSPHRASE[:-1], id="one-short"),
        pytest.param("", id="empty"),
    ],
)
def test_wrong_passphrase(seeded: Seeded, wrong: str) -> None:
    before = snapshot(seeded.root)
    with pytest.raises(NotAuthorised) as err:
        SoftKeyStore.open(seeded.root, wrong)
    assert "passphrase" in err.value.message
    assert wrong not in err.value.message or not wrong
    assert snapshot(seeded.root) == before
    assert seeded.store.list() == sorted(seeded.keys.values(), key=lambda i: i.label)


def test_empty_passphrase_cannot_create(tmp_path: Path) -> None:
    with pytest.raises(NotAuthorised, match="empty"):
        SoftKeyStore.create(tmp_path / "ks", "", scrypt_n=FAST_N)
    assert not (tmp_path / "ks").exists()


def test_second_create_conflicts(seeded: Seeded) -> None:
    before = snapshot(seeded.root)
    for passphrase in (PASSPHRASE, "another passphrase"):
        with pytest.raises(Conflict, match="already exists"):
            create(seeded.root, passphrase)
    assert snapshot(seeded.root) == before


@pytest.mark.parametrize(
    "scrypt_n",
    [
        pytest.param(2**13, id="too-small"),
        pytest.param(2**21, id="too-large"),
        pytest.param(3 * 2**14, id="not-power-of-two"),
        pytest.param(0, id="zero"),
        pytest.param(-(2**15), id="negative"),
        pytest.param(True, id="bool"),
    ],
)
def test_create_refuses_scrypt_cost_open_would_refuse(tmp_path: Path, scrypt_n: int) -> None:
    with pytest.raises(InvalidInput, match="scrypt_n"):
        SoftKeyStore.create(tmp_path / "ks", PASSPHRASE, scrypt_n=scrypt_n)
    assert not (tmp_path / "ks").exists()


def test_open_missing_store(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        SoftKeyStore.open(tmp_path / "nowhere", PASSPHRASE)
    assert not SoftKeyStore.exists(tmp_path / "nowhere")


def _edit_header(change: Callable[[dict[str, Any]], object]) -> Callable[[bytes], bytes]:
    def edit(raw: bytes) -> bytes:
        doc = json.loads(raw)
        change(doc)
        return json.dumps(doc).encode()

    return edit


def _set_kdf(field: str, value: object) -> Callable[[bytes], bytes]:
    return _edit_header(lambda doc: doc["kdf"].__setitem__(field, value))


def _replace(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def edit(raw: bytes) -> bytes:
        assert raw.count(old) == 1
        return raw.replace(old, new)

    return edit


HEADER_DAMAGE = [
    pytest.param(lambda raw: raw[: len(raw) // 2], "corrupt", id="bad/header-truncated"),
    pytest.param(lambda raw: b"", "corrupt", id="bad/header-empty"),
    pytest.param(lambda raw: b"not json at all", "corrupt", id="bad/header-not-json"),
    pytest.param(lambda raw: b"\xff\xfe" + raw, "corrupt", id="bad/header-not-utf8"),
    pytest.param(lambda raw: b"[" + raw + b"]", "not a JSON object", id="bad/header-array"),
    pytest.param(lambda raw: b"null", "not a JSON object", id="bad/header-null"),
    pytest.param(lambda raw: raw + b" " * (64 * 1024), "too large", id="bad/header-oversized"),
    pytest.param(lambda raw: b"[" * 30_000 + b"]" * 30_000, "corrupt", id="bad/header-deeply-nested"),
    pytest.param(_replace(b'"n": 16384', b'"n": ' + b"9" * 5000), "corrupt", id="bad/header-5000-digit-n"),
    pytest.param(
        _edit_header(lambda d: d.__setitem__("format", "fabtrust.soft-keystore/v2")),
        "unknown format",
        id="bad/format-v2",
    ),
    pytest.param(_edit_header(lambda d: d.pop("format")), "unknown format", id="bad/format-missing"),
    pytest.param(_edit_header(lambda d: d.pop("kdf")), "kdf/check", id="bad/kdf-missing"),
    pytest.param(_edit_header(lambda d: d.pop("check")), "kdf/check", id="bad/check-missing"),
    pytest.param(_set_kdf("alg", "pbkdf2"), "kdf/check", id="bad/kdf-alg-pbkdf2"),
    pytest.param(_set_kdf("n", 2**13), "outside the accepted range", id="bad/scrypt-n-too-small"),
    pytest.param(_set_kdf("n", 2**21), "outside the accepted range", id="bad/scrypt-n-too-large"),
    pytest.param(_set_kdf("n", 2**15 + 1), "outside the accepted range", id="bad/scrypt-n-not-power-of-two"),
    pytest.param(_set_kdf("n", 0), "outside the accepted range", id="bad/scrypt-n-zero"),
    pytest.param(_set_kdf("r", 0), "outside the accepted range", id="bad/scrypt-r-zero"),
    pytest.param(_set_kdf("r", 33), "outside the accepted range", id="bad/scrypt-r-too-large"),
    pytest.param(_set_kdf("p", 2), "outside the accepted range", id="bad/scrypt-p-two"),
    pytest.param(_set_kdf("n", "32768"), "scrypt parameters", id="bad/scrypt-n-string"),
    pytest.param(_set_kdf("n", 32768.0), "scrypt parameters", id="bad/scrypt-n-float"),
    pytest.param(_set_kdf("r", True), "scrypt parameters", id="bad/scrypt-r-bool"),
    pytest.param(_set_kdf("p", None), "scrypt parameters", id="bad/scrypt-p-missing"),
    pytest.param(_set_kdf("salt", "AAAA"), "salt is too short", id="bad/salt-short"),
    pytest.param(_set_kdf("salt", "not base64!"), "base64", id="bad/salt-not-base64"),
    pytest.param(_set_kdf("salt", 12), "salt", id="bad/salt-not-string"),
    pytest.param(
        _edit_header(lambda d: d["check"].__setitem__("nonce", "AAAA")),
        "check nonce",
        id="bad/check-nonce-short",
    ),
    pytest.param(
        _edit_header(lambda d: d["check"].__setitem__("ciphertext", "%%%")),
        "base64",
        id="bad/check-not-base64",
    ),
]


@pytest.mark.parametrize(("damage", "fragment"), HEADER_DAMAGE)
def test_damaged_header(
    seeded: Seeded, tmp_path: Path, damage: Callable[[bytes], bytes], fragment: str
) -> None:
    root = tmp_path / "copy"
    shutil.copytree(seeded.root, root)
    header = root / "keystore.json"
    header.write_bytes(damage(header.read_bytes()))
    before = snapshot(root)
    with pytest.raises(InvalidInput) as err:
        SoftKeyStore.open(root, PASSPHRASE)
    assert type(err.value) is InvalidInput
    assert fragment in err.value.message
    assert snapshot(root) == before


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(_set_kdf("n", 2**15), id="tampered/scrypt-n"),
        pytest.param(_set_kdf("salt", base64.b64encode(b"\x00" * 16).decode()), id="tampered/salt"),
        pytest.param(
            _edit_header(lambda d: d["check"].__setitem__("nonce", base64.b64encode(bytes(12)).decode())),
            id="tampered/check-nonce",
        ),
    ],
)
def test_tampered_header_is_refused(seeded: Seeded, tmp_path: Path, damage: Callable[[bytes], bytes]) -> None:
    # A well-formed but altered header cannot be told from a wrong passphrase: both fail the check.
    root = tmp_path / "copy"
    shutil.copytree(seeded.root, root)
    header = root / "keystore.json"
    header.write_bytes(damage(header.read_bytes()))
    with pytest.raises(NotAuthorised, match="tampered"):
        SoftKeyStore.open(root, PASSPHRASE)


# --- key files: damage and tampering -----------------------------------------------------------------


def _edit_key(change: Callable[[dict[str, Any]], object]) -> Callable[[bytes], bytes]:
    def edit(raw: bytes) -> bytes:
        doc = json.loads(raw)
        change(doc)
        return json.dumps(doc, indent=2).encode()

    return edit


def _set(field: str, value: object) -> Callable[[bytes], bytes]:
    return _edit_key(lambda doc: doc.__setitem__(field, value))


def _flip_b64(field: str, index: int = -1) -> Callable[[bytes], bytes]:
    def change(doc: dict[str, Any]) -> None:
        data = bytearray(base64.b64decode(doc[field]))
        data[index] ^= 0x01
        doc[field] = base64.b64encode(bytes(data)).decode()

    return _edit_key(change)


def _cut_b64(field: str, keep: int) -> Callable[[bytes], bytes]:
    return _edit_key(
        lambda doc: doc.__setitem__(field, base64.b64encode(base64.b64decode(doc[field])[:keep]).decode())
    )


OTHER_P256_PUBLIC = base64.b64encode(spki_der(ec.generate_private_key(ec.SECP256R1()).public_key())).decode()

# Damage to p256-sign's file. InvalidInput: the file is unreadable as a key file. VerificationFailed:
# it reads, but does not authenticate (the AEAD binds label, type, usage, public key, creation time
# and the store's salt to the sealed private key).
KEY_FILE_DAMAGE = [
    pytest.param(lambda raw: raw[: len(raw) // 2], InvalidInput, "corrupt", id="bad/key-truncated"),
    pytest.param(lambda raw: b"", InvalidInput, "corrupt", id="bad/key-empty"),
    pytest.param(lambda raw: b'"a string"', InvalidInput, "not a JSON object", id="bad/key-not-object"),
    pytest.param(lambda raw: raw + b" " * (64 * 1024), InvalidInput, "too large", id="bad/key-oversized"),
    pytest.param(_set("format", "fabtrust.soft-key/v2"), InvalidInput, "unknown format", id="bad/key-format"),
    pytest.param(_set("type", "rsa-2048"), InvalidInput, "unknown key type", id="bad/key-type-unknown"),
    pytest.param(_set("usage", "encrypt"), InvalidInput, "unknown usage", id="bad/key-usage-unknown"),
    pytest.param(_set("ciphertext", "***"), InvalidInput, "base64", id="bad/ciphertext-not-base64"),
    pytest.param(_set("nonce", None), InvalidInput, "nonce", id="bad/nonce-missing"),
    pytest.param(_set("public_key", 7), InvalidInput, "public key", id="bad/public-key-not-string"),
    pytest.param(_flip_b64("ciphertext"), VerificationFailed, "tampered", id="tamper/ciphertext-tag-bit"),
    pytest.param(
        _flip_b64("ciphertext", 0), VerificationFailed, "tampered", id="tamper/ciphertext-first-bit"
    ),
    pytest.param(_cut_b64("ciphertext", 40), VerificationFailed, "tampered", id="tamper/ciphertext-cut"),
    pytest.param(_flip_b64("nonce"), VerificationFailed, "tampered", id="tamper/nonce-bit"),
    pytest.param(_cut_b64("nonce", 8), VerificationFailed, "tampered", id="tamper/nonce-short"),
    pytest.param(_set("type", "ecdsa-p384"), VerificationFailed, "tampered", id="swap/type"),
    pytest.param(_set("usage", "agree"), VerificationFailed, "tampered", id="swap/usage-sign-to-agree"),
    pytest.param(_set("public_key", OTHER_P256_PUBLIC), VerificationFailed, "tampered", id="swap/public-key"),
    pytest.param(_set("created", "2020-01-01T00:00:00Z"), VerificationFailed, "tampered", id="swap/created"),
    pytest.param(_set("label", "p384-sign"), VerificationFailed, "another key", id="swap/label"),
]


def _damaged_copy(seeded: Seeded, tmp_path: Path, label: str, damage: Callable[[bytes], bytes]) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(seeded.root, root)
    path = root / "keys" / f"{label}.json"
    path.write_bytes(damage(path.read_bytes()))
    return root


def _refuses_damaged_key(root: Path, uri: str, error: type[FabtrustError], fragment: str) -> None:
    """Every use of the damaged key fails the same way; nothing changes; the other keys still work."""
    before = snapshot(root)
    with SoftKeyStore.open(root, PASSPHRASE) as store:
        for use in (
            lambda: store.get(uri),
            lambda: store.sign(uri, b"m"),
            lambda: store.hpke_open(uri, b"x" * 200, b""),
            store.list,
        ):
            with pytest.raises(error) as err:
                use()
            assert type(err.value) is error
            assert fragment in err.value.message
        info = store.get(soft_uri("ed-sign"))
        verify_signature(info.public_key_der, b"m", store.sign(info.uri, b"m"))
    assert snapshot(root) == before


@pytest.mark.parametrize(("damage", "error", "fragment"), KEY_FILE_DAMAGE)
def test_damaged_key_file(
    seeded: Seeded,
    tmp_path: Path,
    damage: Callable[[bytes], bytes],
    error: type[FabtrustError],
    fragment: str,
) -> None:
    root = _damaged_copy(seeded, tmp_path, "p256-sign", damage)
    _refuses_damaged_key(root, soft_uri("p256-sign"), error, fragment)


def test_fields_swapped_between_key_files(seeded: Seeded, tmp_path: Path) -> None:
    # The sign key's sealed private key under the agree key's public fields: an attempt to turn a
    # signing key into a key-agreement key (or to pair a private key with another public key).
    root = tmp_path / "copy"
    shutil.copytree(seeded.root, root)
    sign_path, agree_path = root / "keys" / "p256-sign.json", root / "keys" / "p256-agree.json"
    sign_doc, agree_doc = json.loads(sign_path.read_bytes()), json.loads(agree_path.read_bytes())
    agree_doc["nonce"], agree_doc["ciphertext"] = sign_doc["nonce"], sign_doc["ciphertext"]
    agree_path.write_text(json.dumps(agree_doc))
    _refuses_damaged_key(root, soft_uri("p256-agree"), VerificationFailed, "tampered")


def test_key_file_renamed_to_another_label(seeded: Seeded, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(seeded.root, root)
    (root / "keys" / "p256-sign.json").replace(root / "keys" / "p256-other.json")
    _refuses_damaged_key(root, soft_uri("p256-other"), VerificationFailed, "another key")
    with SoftKeyStore.open(root, PASSPHRASE) as store, pytest.raises(NotFound):
        store.get(soft_uri("p256-sign"))


def test_key_file_renamed_with_its_label_edited(seeded: Seeded, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(seeded.root, root)
    doc = json.loads((root / "keys" / "p256-sign.json").read_bytes())
    doc["label"] = "p256-other"
    (root / "keys" / "p256-other.json").write_text(json.dumps(doc))
    _refuses_damaged_key(root, soft_uri("p256-other"), VerificationFailed, "tampered")


def test_key_file_from_another_store(seeded: Seeded, tmp_path: Path) -> None:
    # Another store, same passphrase (so the same key would decrypt, but for the salt in the AAD and
    # the KEK), holding a key with the same label: its file dropped into ours must not open.
    root = tmp_path / "copy"
    shutil.copytree(seeded.root, root)
    with create(tmp_path / "other") as other:
        other.generate("p256-sign", KeyType.P256, KeyUsage.SIGN)
        other.generate("intruder", KeyType.P256, KeyUsage.SIGN)
    shutil.copy(tmp_path / "other" / "keys" / "p256-sign.json", root / "keys" / "p256-sign.json")
    shutil.copy(tmp_path / "other" / "keys" / "intruder.json", root / "keys" / "intruder.json")
    _refuses_damaged_key(root, soft_uri("p256-sign"), VerificationFailed, "tampered")
    _refuses_damaged_key(root, soft_uri("intruder"), VerificationFailed, "tampered")


def test_key_file_from_another_store_with_its_header(seeded: Seeded, tmp_path: Path) -> None:
    # Even the other store's header beside it does not help: our passphrase opens neither.
    with create(tmp_path / "other", "the other store's passphrase") as other:
        other.generate("p256-sign", KeyType.P256, KeyUsage.SIGN)
    root = tmp_path / "copy"
    shutil.copytree(seeded.root, root)
    shutil.copy(tmp_path / "other" / "keystore.json", root / "keystore.json")
    with pytest.raises(NotAuthorised):
        SoftKeyStore.open(root, PASSPHRASE)


def test_stray_files_are_not_keys(seeded: Seeded, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(seeded.root, root)
    (root / "keys" / ".p256-sign.json.0badc0de.tmp").write_bytes(b"half-written")
    (root / "keys" / "README.txt").write_text("not a key")
    with SoftKeyStore.open(root, PASSPHRASE) as store:
        assert store.list() == sorted(seeded.keys.values(), key=lambda i: i.label)


# --- bad input: a clear error, and nothing changes ------------------------------------------------------

Action = Callable[[SoftKeyStore], object]


def _peer(make: Callable[[], Any]) -> Callable[[], bytes]:
    return lambda: spki_der(make().public_key())


def _exchange(label: str, peer_der: Callable[[], bytes]) -> Action:
    return lambda s: s.exchange(soft_uri(label), peer_der())


def _generate_labelled(label: str) -> Action:
    return lambda s: s.generate(label, KeyType.P256, KeyUsage.SIGN)


REFUSALS = [
    pytest.param(
        lambda s: s.generate("p256-sign", KeyType.P384, KeyUsage.SIGN),
        Conflict,
        "already exists",
        id="generate/duplicate",
    ),
    pytest.param(
        lambda s: s.generate("edh", KeyType.ED25519, KeyUsage.AGREE),
        InvalidInput,
        "ed25519",
        id="generate/ed25519-agree",
    ),
    pytest.param(
        lambda s: s.generate("pq", KeyType.MLDSA65, KeyUsage.AGREE),
        InvalidInput,
        "ml-dsa-65",
        id="generate/ml-dsa-agree",
    ),
    pytest.param(
        lambda s: s.generate("xs", KeyType.X25519, KeyUsage.SIGN),
        InvalidInput,
        "x25519",
        id="generate/x25519-sign",
    ),
    *[
        pytest.param(
            _generate_labelled(bad),
            InvalidInput,
            "key label",
            id=f"generate/invalid-label/{name}",
        )
        for name, bad in [
            ("empty", ""),
            ("leading-dot", ".hidden"),
            ("leading-dash", "-root"),
            ("slash", "a/b"),
            ("dot-dot", "../keystore"),
            ("space", "a b"),
            ("too-long", "k" * 65),
            ("non-ascii", "clé"),
            ("newline", "a\n"),
        ]
    ],
    pytest.param(
        lambda s: s.sign(soft_uri("p256-agree"), b"m"), InvalidInput, "cannot sign", id="sign/agree-key"
    ),
    pytest.param(
        lambda s: s.sign(soft_uri("x25519-agree"), b"m"), InvalidInput, "cannot sign", id="sign/x25519"
    ),
    pytest.param(
        _exchange("p256-sign", _peer(lambda: ec.generate_private_key(ec.SECP256R1()))),
        InvalidInput,
        "cannot agree",
        id="exchange/sign-key",
    ),
    pytest.param(
        _exchange("ed-sign", _peer(x25519.X25519PrivateKey.generate)),
        InvalidInput,
        "cannot agree",
        id="exchange/ed25519",
    ),
    pytest.param(
        _exchange("p256-agree", _peer(lambda: ec.generate_private_key(ec.SECP384R1()))),
        InvalidInput,
        "another curve",
        id="exchange/peer-wrong-curve",
    ),
    pytest.param(
        _exchange("p256-agree", _peer(x25519.X25519PrivateKey.generate)),
        InvalidInput,
        "does not match",
        id="exchange/peer-x25519-for-p256",
    ),
    pytest.param(
        _exchange("x25519-agree", _peer(ed25519.Ed25519PrivateKey.generate)),
        InvalidInput,
        "does not match",
        id="exchange/peer-ed25519-for-x25519",
    ),
    pytest.param(
        _exchange("x25519-agree", lambda: spki_der(x25519.X25519PublicKey.from_public_bytes(bytes(32)))),
        InvalidInput,
        "low-order",
        id="exchange/peer-x25519-low-order",
    ),
    pytest.param(
        _exchange("p256-agree", lambda: b"not DER"),
        InvalidInput,
        "SubjectPublicKeyInfo",
        id="exchange/peer-garbage",
    ),
    pytest.param(
        lambda s: s.hpke_open(soft_uri("p256-sign"), b"x" * 200, b""),
        InvalidInput,
        "cannot agree",
        id="hpke/sign-key",
    ),
    pytest.param(
        lambda s: s.hpke_open(soft_uri("p256-agree"), b"short", b""),
        InvalidInput,
        "truncated",
        id="hpke/truncated",
    ),
    pytest.param(lambda s: s.get(soft_uri("nope")), NotFound, "'nope'", id="unknown/get"),
    pytest.param(lambda s: s.sign(soft_uri("nope"), b"m"), NotFound, "'nope'", id="unknown/sign"),
    pytest.param(
        _exchange("nope", _peer(lambda: ec.generate_private_key(ec.SECP256R1()))),
        NotFound,
        "'nope'",
        id="unknown/exchange",
    ),
    pytest.param(
        lambda s: s.hpke_open(soft_uri("nope"), b"x" * 200, b""), NotFound, "'nope'", id="unknown/hpke"
    ),
    pytest.param(lambda s: s.destroy(soft_uri("nope")), NotFound, "'nope'", id="unknown/destroy"),
    pytest.param(lambda s: s.get("p256-sign"), InvalidInput, "soft:<label>", id="uri/no-scheme"),
    pytest.param(lambda s: s.get("SOFT:p256-sign"), InvalidInput, "soft:<label>", id="uri/upper-case-scheme"),
    pytest.param(
        lambda s: s.get("pkcs11:token=t;object=p256-sign;type=private"),
        InvalidInput,
        "soft:<label>",
        id="uri/pkcs11",
    ),
    pytest.param(lambda s: s.get("soft:"), InvalidInput, "key label", id="uri/empty-label"),
    pytest.param(lambda s: s.sign("soft:../keystore", b"m"), InvalidInput, "key label", id="uri/traversal"),
    pytest.param(lambda s: s.destroy("soft:a/b"), InvalidInput, "key label", id="uri/slash"),
]


@pytest.mark.parametrize(("action", "error", "fragment"), REFUSALS)
def test_refusal_changes_nothing(
    seeded: Seeded, action: Action, error: type[FabtrustError], fragment: str
) -> None:
    before_files = snapshot(seeded.root)
    before = seeded.store.list()
    with pytest.raises(error) as err:
        action(seeded.store)
    assert type(err.value) is error
    assert fragment in err.value.message
    assert seeded.store.list() == before == sorted(seeded.keys.values(), key=lambda i: i.label)
    assert snapshot(seeded.root) == before_files


# --- destroy and close ---------------------------------------------------------------------------------


def test_destroy(tmp_path: Path) -> None:
    root = tmp_path / "ks"
    with create(root) as store:
        keep = store.generate("keep", KeyType.ED25519, KeyUsage.SIGN)
        doomed = store.generate("doomed", KeyType.P256, KeyUsage.AGREE)
        keep_file = (root / "keys" / "keep.json").read_bytes()
        store.destroy(doomed.uri)

        assert not (root / "keys" / "doomed.json").exists()
        assert (root / "keys" / "keep.json").read_bytes() == keep_file
        assert store.list() == [keep]
        for use in (
            lambda: store.get(doomed.uri),
            lambda: store.exchange(doomed.uri, b""),
            lambda: store.destroy(doomed.uri),
        ):
            with pytest.raises(NotFound):
                use()
        # The label is free again; the new key is a different key.
        again = store.generate("doomed", KeyType.P256, KeyUsage.AGREE)
        assert again.public_key_der != doomed.public_key_der
    with SoftKeyStore.open(root, PASSPHRASE) as reopened:
        assert reopened.list() == [again, keep]


CLOSED_USES = [
    pytest.param(lambda s: s.list(), id="list"),
    pytest.param(lambda s: s.get(soft_uri("k")), id="get"),
    pytest.param(lambda s: s.sign(soft_uri("k"), b"m"), id="sign"),
    pytest.param(lambda s: s.exchange(soft_uri("dh"), b""), id="exchange"),
    pytest.param(lambda s: s.hpke_open(soft_uri("dh"), b"x" * 200, b""), id="hpke-open"),
    pytest.param(lambda s: s.generate("new", KeyType.P256, KeyUsage.SIGN), id="generate"),
    pytest.param(lambda s: s.destroy(soft_uri("k")), id="destroy"),
    pytest.param(lambda s: s.destroy(soft_uri("nope")), id="destroy-unknown"),
]


@pytest.fixture(scope="module")
def closed_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[SoftKeyStore, Path]:
    root = tmp_path_factory.mktemp("closed") / "ks"
    with create(root) as store:
        store.generate("k", KeyType.P256, KeyUsage.SIGN)
        store.generate("dh", KeyType.X25519, KeyUsage.AGREE)
        store.sign(soft_uri("k"), b"warm the cache")
    store.close()  # idempotent
    return store, root


@pytest.mark.parametrize("use", CLOSED_USES)
def test_closed_store_refuses(closed_store: tuple[SoftKeyStore, Path], use: Action) -> None:
    store, root = closed_store
    before = snapshot(root)
    with pytest.raises(Unavailable, match="closed"):
        use(store)
    assert snapshot(root) == before
    assert store._cache == {}  # decrypted keys were dropped at close
