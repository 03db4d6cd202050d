"""One behavioural contract, run against every key-store backend (software and PKCS#11/SoftHSM2).

Only what both backends implement is here (P-256, P-384 and Ed25519); ML-DSA-65 and X25519 are
software-only and tested in test_soft.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from fabtrust.crypto import hpke
from fabtrust.crypto.keys import KeyType, KeyUsage, key_type_of, load_public_key, spki_der, verify_signature
from fabtrust.errors import (
    Conflict,
    FabtrustError,
    InvalidInput,
    NotFound,
    Unavailable,
    VerificationFailed,
)
from fabtrust.keystore.base import KeyInfo, KeyStore
from fabtrust.keystore.pkcs11 import Pkcs11KeyStore
from fabtrust.keystore.soft import SoftKeyStore, soft_uri
from fabtrust.keystore.uri import key_uri
from tests.fixtures.softhsm import SoftHsm

pytestmark = pytest.mark.softhsm

BACKENDS = ["soft", "pkcs11"]
PASSPHRASE = "contract passphrase"
KINDS = [
    ("p256-sign", KeyType.P256, KeyUsage.SIGN),
    ("p384-sign", KeyType.P384, KeyUsage.SIGN),
    ("ed-sign", KeyType.ED25519, KeyUsage.SIGN),
    ("p256-agree", KeyType.P256, KeyUsage.AGREE),
    ("p384-agree", KeyType.P384, KeyUsage.AGREE),
]
SIGNING = [pytest.param(label, id=label) for label, _, usage in KINDS if usage is KeyUsage.SIGN]
ECDSA_HASHES: dict[KeyType, type[hashes.HashAlgorithm]] = {
    KeyType.P256: hashes.SHA256,
    KeyType.P384: hashes.SHA384,
}
ECDSA_SIGNING = [
    pytest.param(label, id=label)
    for label, kt, usage in KINDS
    if usage is KeyUsage.SIGN and kt in ECDSA_HASHES
]
AGREEING = [pytest.param(label, id=label) for label, _, usage in KINDS if usage is KeyUsage.AGREE]
# Long enough that a message sealed to a P-256 key is not "truncated" for a P-384 key.
SECRET = b"device-class secret " * 4
CURVES: dict[KeyType, ec.EllipticCurve] = {KeyType.P256: ec.SECP256R1(), KeyType.P384: ec.SECP384R1()}


def _digest(hash_type: type[hashes.HashAlgorithm], data: bytes) -> bytes:
    h = hashes.Hash(hash_type())
    h.update(data)
    return h.finalize()


@dataclass(frozen=True)
class Backend:
    name: str
    store: KeyStore
    token_label: str | None = None  # PKCS#11 only

    def uri(self, label: str) -> str:
        return soft_uri(label) if self.token_label is None else key_uri(self.token_label, label)


def _soft(root: Path) -> Backend:
    return Backend("soft", SoftKeyStore.create(root, PASSPHRASE, scrypt_n=2**14))


@pytest.fixture(params=BACKENDS)
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A new, empty store of each backend (PKCS#11: a fresh token)."""
    if request.param == "soft":
        backend = _soft(tmp_path / "ks")
    else:
        store: Pkcs11KeyStore = request.getfixturevalue("pkcs11_keystore")
        backend = Backend("pkcs11", store, store.token_label)
    yield backend
    backend.store.close()


@dataclass(frozen=True)
class Seeded:
    backend: Backend
    keys: dict[str, KeyInfo]

    @property
    def store(self) -> KeyStore:
        return self.backend.store

    def uri(self, label: str) -> str:
        return self.backend.uri(label)


@pytest.fixture(scope="module", params=BACKENDS)
def seeded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """One store per backend with a key of every kind, shared by tests that do not change it."""
    if request.param == "soft":
        backend = _soft(tmp_path_factory.mktemp("contract") / "ks")
    else:
        softhsm: SoftHsm = request.getfixturevalue("softhsm")
        token = softhsm.new_token()
        store = Pkcs11KeyStore(softhsm.module_path, token.label, token.pin)
        backend = Backend("pkcs11", store, token.label)
    try:
        keys = {label: backend.store.generate(label, kt, usage) for label, kt, usage in KINDS}
        yield Seeded(backend, keys)
    finally:
        backend.store.close()


# --- the contract ----------------------------------------------------------------------------------


def test_lifecycle(empty: Backend) -> None:
    store = empty.store
    assert store.list() == []
    created: list[KeyInfo] = []
    # Generated out of label order: list() sorts.
    for label, key_type, usage in [
        ("zulu", KeyType.P256, KeyUsage.SIGN),
        ("alpha", KeyType.ED25519, KeyUsage.SIGN),
        ("mike", KeyType.P384, KeyUsage.AGREE),
        ("bravo", KeyType.P256, KeyUsage.AGREE),
        ("kilo", KeyType.P384, KeyUsage.SIGN),
    ]:
        info = store.generate(label, key_type, usage)
        assert (info.uri, info.label, info.key_type, info.usage) == (empty.uri(label), label, key_type, usage)
        assert key_type_of(load_public_key(info.public_key_der)) is key_type
        assert store.get(info.uri) == info
        created.append(info)
    by_label = sorted(created, key=lambda i: i.label)
    assert [i.label for i in store.list()] == ["alpha", "bravo", "kilo", "mike", "zulu"]
    assert store.list() == by_label
    assert len({i.public_key_der for i in created}) == len(created)

    doomed = created[2]  # mike
    store.destroy(doomed.uri)
    for use in (
        lambda: store.get(doomed.uri),
        lambda: store.destroy(doomed.uri),
        lambda: store.hpke_open(doomed.uri, b"x" * 200, b""),
    ):
        with pytest.raises(NotFound):
            use()
    assert store.list() == [i for i in by_label if i is not doomed]

    store.close()
    store.close()  # idempotent
    for use in (
        store.list,
        lambda: store.get(created[0].uri),
        lambda: store.sign(created[0].uri, b"m"),
        lambda: store.sign_digest(created[0].uri, bytes(32)),
    ):
        with pytest.raises(Unavailable, match="closed"):
            use()


def test_implements_the_protocol(seeded: Seeded) -> None:
    store: KeyStore = seeded.store  # checked by mypy
    assert store.scheme == seeded.backend.name


def test_get_and_list_match_generate(seeded: Seeded) -> None:
    for info in seeded.keys.values():
        assert seeded.store.get(info.uri) == info
    assert seeded.store.list() == sorted(seeded.keys.values(), key=lambda i: i.label)


@pytest.mark.parametrize("label", SIGNING)
def test_sign_verify(seeded: Seeded, label: str) -> None:
    info = seeded.keys[label]
    first = seeded.store.sign(info.uri, b"production record 42")
    verify_signature(info.public_key_der, b"production record 42", first)
    verify_signature(info.public_key_der, b"", seeded.store.sign(info.uri, b""))
    with pytest.raises(VerificationFailed):
        verify_signature(info.public_key_der, b"production record 43", first)
    other = seeded.keys["p384-sign" if label != "p384-sign" else "p256-sign"]
    with pytest.raises(VerificationFailed):
        verify_signature(other.public_key_der, b"production record 42", first)


@pytest.mark.parametrize("label", ECDSA_SIGNING)
def test_sign_digest_verifies_as_prehashed_ecdsa(seeded: Seeded, label: str) -> None:
    info = seeded.keys[label]
    public = load_public_key(info.public_key_der)
    assert isinstance(public, ec.EllipticCurvePublicKey)
    hash_type = ECDSA_HASHES[info.key_type]
    digest = _digest(hash_type, b"mcuboot image header || body || protected TLVs")
    prehashed = ec.ECDSA(Prehashed(hash_type()))

    signature = seeded.store.sign_digest(info.uri, digest)
    public.verify(signature, digest, prehashed)
    # The same ECDSA: a signed digest is a signature over the message it was hashed from.
    verify_signature(info.public_key_der, b"mcuboot image header || body || protected TLVs", signature)
    # Any digest-sized value is signed as given, not hashed again.
    arbitrary = bytes(range(hash_type.digest_size))
    public.verify(seeded.store.sign_digest(info.uri, arbitrary), arbitrary, prehashed)
    for wrong in (bytes([digest[0] ^ 1]) + digest[1:], _digest(hash_type, digest)):
        with pytest.raises(InvalidSignature):
            public.verify(signature, wrong, prehashed)
    other = load_public_key(seeded.keys["p384-sign" if label != "p384-sign" else "p256-sign"].public_key_der)
    assert isinstance(other, ec.EllipticCurvePublicKey)
    with pytest.raises(InvalidSignature):
        other.verify(signature, digest, prehashed)


SIGN_DIGEST_REFUSALS = [
    pytest.param("p256-sign", bytes(48), "32-byte SHA-256 digest, not 48 bytes", id="p256/sha384-length"),
    pytest.param("p256-sign", bytes(31), "32-byte SHA-256 digest, not 31 bytes", id="p256/short"),
    pytest.param("p256-sign", bytes(33), "32-byte SHA-256 digest, not 33 bytes", id="p256/long"),
    pytest.param("p256-sign", b"", "32-byte SHA-256 digest, not 0 bytes", id="p256/empty"),
    pytest.param("p384-sign", bytes(32), "48-byte SHA-384 digest, not 32 bytes", id="p384/sha256-length"),
    pytest.param("p384-sign", bytes(64), "48-byte SHA-384 digest, not 64 bytes", id="p384/sha512-length"),
    pytest.param("ed-sign", bytes(32), "ed25519 key has no prehashed signing", id="ed25519/32-bytes"),
    pytest.param("ed-sign", bytes(64), "ed25519 key has no prehashed signing", id="ed25519/64-bytes"),
    pytest.param("p256-agree", bytes(32), "cannot sign", id="p256-agree/usage"),
    pytest.param("p256-sign", "0" * 32, "must be bytes", id="p256/str"),
]


@pytest.mark.parametrize(("label", "digest", "match"), SIGN_DIGEST_REFUSALS)
def test_sign_digest_refusals(seeded: Seeded, label: str, digest: bytes, match: str) -> None:
    with pytest.raises(InvalidInput, match=match) as err:
        seeded.store.sign_digest(seeded.uri(label), digest)
    assert type(err.value) is InvalidInput


@pytest.mark.parametrize("label", AGREEING)
def test_exchange_equals_software_ecdh(seeded: Seeded, label: str) -> None:
    info = seeded.keys[label]
    ours = load_public_key(info.public_key_der)
    assert isinstance(ours, ec.EllipticCurvePublicKey)
    peer = ec.generate_private_key(CURVES[info.key_type])
    shared = seeded.store.exchange(info.uri, spki_der(peer.public_key()))
    assert shared == peer.exchange(ec.ECDH(), ours)
    assert len(shared) == (CURVES[info.key_type].key_size + 7) // 8


@pytest.mark.parametrize("label", AGREEING)
def test_hpke_open(seeded: Seeded, label: str) -> None:
    info = seeded.keys[label]
    sealed = hpke.seal(info.public_key_der, SECRET, b"fabtrust.package/v1")
    assert seeded.store.hpke_open(info.uri, sealed, b"fabtrust.package/v1") == SECRET
    for bad in (sealed[:-1] + bytes([sealed[-1] ^ 1]), bytes([sealed[0] ^ 0xFF]) + sealed[1:], sealed[:-1]):
        with pytest.raises(VerificationFailed):
            seeded.store.hpke_open(info.uri, bad, b"fabtrust.package/v1")
    with pytest.raises(VerificationFailed):
        seeded.store.hpke_open(info.uri, sealed, b"fabtrust.package/v2")
    with pytest.raises(InvalidInput, match="truncated"):
        seeded.store.hpke_open(info.uri, sealed[:20], b"fabtrust.package/v1")
    other = seeded.keys["p384-agree" if label != "p384-agree" else "p256-agree"]
    with pytest.raises(VerificationFailed):
        seeded.store.hpke_open(other.uri, sealed, b"fabtrust.package/v1")


# --- refusals: the same family from every backend, and nothing changes -------------------------------

Action = Callable[[Seeded], object]


def _peer_der(
    make: Callable[[], ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey],
) -> Callable[[], bytes]:
    return lambda: spki_der(make().public_key())


def _generate_labelled(label: str) -> Action:
    return lambda s: s.store.generate(label, KeyType.P256, KeyUsage.SIGN)


P256_PEER = _peer_der(lambda: ec.generate_private_key(ec.SECP256R1()))

REFUSALS = [
    pytest.param(
        lambda s: s.store.generate("p256-sign", KeyType.P384, KeyUsage.SIGN),
        Conflict,
        id="generate/duplicate-label",
    ),
    pytest.param(
        lambda s: s.store.generate("p256-agree", KeyType.P256, KeyUsage.AGREE),
        Conflict,
        id="generate/duplicate-label-same-kind",
    ),
    pytest.param(
        lambda s: s.store.generate("edh", KeyType.ED25519, KeyUsage.AGREE),
        InvalidInput,
        id="generate/ed25519-agree",
    ),
    *[
        pytest.param(_generate_labelled(bad), InvalidInput, id=f"generate/invalid-label/{name}")
        for name, bad in [
            ("empty", ""),
            ("leading-dash", "-root"),
            ("slash", "a/b"),
            ("space", "a b"),
            ("too-long", "k" * 65),
            ("non-ascii", "clé"),
        ]
    ],
    pytest.param(lambda s: s.store.sign(s.uri("p256-agree"), b"m"), InvalidInput, id="sign/agree-key"),
    pytest.param(
        lambda s: s.store.exchange(s.uri("p256-sign"), P256_PEER()), InvalidInput, id="exchange/sign-key"
    ),
    pytest.param(
        lambda s: s.store.exchange(s.uri("ed-sign"), P256_PEER()), InvalidInput, id="exchange/ed25519-key"
    ),
    pytest.param(
        lambda s: s.store.exchange(
            s.uri("p256-agree"), spki_der(ec.generate_private_key(ec.SECP384R1()).public_key())
        ),
        InvalidInput,
        id="exchange/peer-wrong-curve",
    ),
    pytest.param(
        lambda s: s.store.exchange(
            s.uri("p256-agree"), spki_der(ed25519.Ed25519PrivateKey.generate().public_key())
        ),
        InvalidInput,
        id="exchange/peer-ed25519",
    ),
    pytest.param(
        lambda s: s.store.exchange(s.uri("p256-agree"), b"not DER"), InvalidInput, id="exchange/peer-garbage"
    ),
    pytest.param(
        lambda s: s.store.hpke_open(s.uri("p256-sign"), b"x" * 200, b""), InvalidInput, id="hpke/sign-key"
    ),
    pytest.param(
        lambda s: s.store.hpke_open(s.uri("ed-sign"), b"x" * 200, b""), InvalidInput, id="hpke/ed25519-key"
    ),
    pytest.param(
        lambda s: s.store.hpke_open(s.uri("p256-agree"), b"short", b""), InvalidInput, id="hpke/truncated"
    ),
    pytest.param(lambda s: s.store.get(s.uri("nope")), NotFound, id="unknown/get"),
    pytest.param(lambda s: s.store.sign(s.uri("nope"), b"m"), NotFound, id="unknown/sign"),
    pytest.param(lambda s: s.store.sign_digest(s.uri("nope"), bytes(32)), NotFound, id="unknown/sign-digest"),
    pytest.param(
        lambda s: s.store.sign_digest(s.uri("p256-sign"), bytes(48)), InvalidInput, id="sign-digest/length"
    ),
    pytest.param(
        lambda s: s.store.sign_digest(s.uri("ed-sign"), bytes(32)), InvalidInput, id="sign-digest/ed25519"
    ),
    pytest.param(lambda s: s.store.exchange(s.uri("nope"), P256_PEER()), NotFound, id="unknown/exchange"),
    pytest.param(lambda s: s.store.hpke_open(s.uri("nope"), b"x" * 200, b""), NotFound, id="unknown/hpke"),
    pytest.param(lambda s: s.store.destroy(s.uri("nope")), NotFound, id="unknown/destroy"),
    pytest.param(lambda s: s.store.get(s.uri("bad/label")), InvalidInput, id="uri/invalid-label"),
    pytest.param(lambda s: s.store.get("https://example.com/k"), InvalidInput, id="uri/other-scheme"),
]


@pytest.mark.parametrize(("action", "error"), REFUSALS)
def test_refusal_changes_nothing(seeded: Seeded, action: Action, error: type[FabtrustError]) -> None:
    before = seeded.store.list()
    with pytest.raises(error) as err:
        action(seeded)
    assert type(err.value) is error
    assert err.value.message
    assert seeded.store.list() == before == sorted(seeded.keys.values(), key=lambda i: i.label)
