"""The PKCS#11 key store against a real SoftHSM2 token (fresh tokens, random PINs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import exceptions as p11
from pkcs11.constants import Attribute, ObjectClass
from pkcs11.types import Session

from fabtrust.crypto import hpke
from fabtrust.crypto.keys import KeyType, KeyUsage, key_type_of, load_public_key, spki_der, verify_signature
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
from fabtrust.keystore.pkcs11 import MODULE_ENV, PIN_ENV, WRONG_PIN, Pkcs11KeyStore, _login_error
from fabtrust.keystore.uri import Pkcs11Uri, key_uri
from tests.fixtures.softhsm import HsmToken, SoftHsm

pytestmark = pytest.mark.softhsm

SIGNING_TYPES = [
    pytest.param(KeyType.P256, id="ecdsa-p256"),
    pytest.param(KeyType.P384, id="ecdsa-p384"),
    pytest.param(KeyType.ED25519, id="ed25519"),
]
AGREEMENT_TYPES = [
    pytest.param(KeyType.P256, id="ecdsa-p256"),
    pytest.param(KeyType.P384, id="ecdsa-p384"),
]
CURVES: dict[KeyType, ec.EllipticCurve] = {KeyType.P256: ec.SECP256R1(), KeyType.P384: ec.SECP384R1()}


@dataclass(frozen=True)
class Seeded:
    """A store shared by this module's read-only tests, holding one key of every supported kind."""

    store: Pkcs11KeyStore
    token: HsmToken
    keys: dict[str, KeyInfo]

    def uri(self, label: str) -> str:
        return key_uri(self.token.label, label)


@pytest.fixture(scope="module")
def seeded(softhsm: SoftHsm) -> Iterator[Seeded]:
    token = softhsm.new_token()
    with Pkcs11KeyStore(softhsm.module_path, token.label, token.pin) as store:
        kinds = [
            ("p256-sign", KeyType.P256, KeyUsage.SIGN),
            ("p384-sign", KeyType.P384, KeyUsage.SIGN),
            ("ed-sign", KeyType.ED25519, KeyUsage.SIGN),
            ("p256-agree", KeyType.P256, KeyUsage.AGREE),
            ("p384-agree", KeyType.P384, KeyUsage.AGREE),
        ]
        keys = {label: store.generate(label, kt, usage) for label, kt, usage in kinds}
        yield Seeded(store, token, keys)


@contextmanager
def outside_session(softhsm: SoftHsm, token_label: str) -> Iterator[Session]:
    """A session opened directly with python-pkcs11, as an outside tool would.

    No PIN: PKCS#11 login is per process, and the store under test is logged in already.
    """
    token = pkcs11.lib(softhsm.module_path).get_token(token_label=token_label)
    session = token.open()
    try:
        yield session
    finally:
        session.close()


def objects(session: Session, label: str, object_class: ObjectClass) -> list[Any]:
    return list(session.get_objects({Attribute.CLASS: object_class, Attribute.LABEL: label}))


def peer_der(curve: ec.EllipticCurve) -> bytes:
    return spki_der(ec.generate_private_key(curve).public_key())


# --- the keys work -----------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", SIGNING_TYPES)
def test_generate_get_list_sign(pkcs11_keystore: Pkcs11KeyStore, key_type: KeyType) -> None:
    store = pkcs11_keystore
    info = store.generate("signer-1", key_type, KeyUsage.SIGN)

    assert info.uri == key_uri(store.token_label, "signer-1")
    assert (info.label, info.key_type, info.usage) == ("signer-1", key_type, KeyUsage.SIGN)
    assert key_type_of(load_public_key(info.public_key_der)) is key_type
    assert store.get(info.uri) == info
    assert store.list() == [info]

    signature = store.sign(info.uri, b"production record 42")
    verify_signature(info.public_key_der, b"production record 42", signature)
    with pytest.raises(VerificationFailed):
        verify_signature(info.public_key_der, b"production record 43", signature)


def test_implements_the_keystore_protocol(pkcs11_keystore: Pkcs11KeyStore) -> None:
    store: KeyStore = pkcs11_keystore  # checked by mypy
    assert store.scheme == "pkcs11"
    assert store.list() == []


def test_list_is_sorted_by_label(pkcs11_keystore: Pkcs11KeyStore) -> None:
    for label in ["zulu", "alpha", "mike"]:
        pkcs11_keystore.generate(label, KeyType.P256, KeyUsage.SIGN)
    assert [info.label for info in pkcs11_keystore.list()] == ["alpha", "mike", "zulu"]


def test_token_offers_ec_and_ed25519_only(pkcs11_keystore: Pkcs11KeyStore) -> None:
    assert pkcs11_keystore.supported_key_types == {KeyType.P256, KeyType.P384, KeyType.ED25519}


def test_private_key_cannot_be_read(
    pkcs11_keystore: Pkcs11KeyStore, softhsm: SoftHsm, hsm_token: HsmToken
) -> None:
    created = [
        pkcs11_keystore.generate("sig", KeyType.P256, KeyUsage.SIGN),
        pkcs11_keystore.generate("ed", KeyType.ED25519, KeyUsage.SIGN),
        pkcs11_keystore.generate("dh", KeyType.P384, KeyUsage.AGREE),
    ]
    with outside_session(softhsm, hsm_token.label) as session:
        for info in created:
            [private] = objects(session, info.label, ObjectClass.PRIVATE_KEY)
            [public] = objects(session, info.label, ObjectClass.PUBLIC_KEY)
            with pytest.raises(p11.AttributeSensitive):
                private[Attribute.VALUE]
            assert private[Attribute.EXTRACTABLE] is False
            assert private[Attribute.SENSITIVE] is True
            assert private[Attribute.NEVER_EXTRACTABLE] is True
            assert private[Attribute.ALWAYS_SENSITIVE] is True
            assert private[Attribute.TOKEN] is True
            assert private[Attribute.PRIVATE] is True
            assert private[Attribute.SIGN] is (info.usage is KeyUsage.SIGN)
            assert private[Attribute.DERIVE] is (info.usage is KeyUsage.AGREE)
            assert public[Attribute.TOKEN] is True
            assert len(private[Attribute.ID]) == 16
            assert public[Attribute.ID] == private[Attribute.ID]


def test_second_store_sees_identical_keys(
    pkcs11_keystore: Pkcs11KeyStore, softhsm: SoftHsm, hsm_token: HsmToken
) -> None:
    first = pkcs11_keystore
    created = [
        first.generate("a-sign", KeyType.P384, KeyUsage.SIGN),
        first.generate("b-agree", KeyType.P256, KeyUsage.AGREE),
        first.generate("c-ed", KeyType.ED25519, KeyUsage.SIGN),
    ]
    second = Pkcs11KeyStore(softhsm.module_path, hsm_token.label, hsm_token.pin)
    try:
        assert second.list() == created
        for info in created:
            assert second.get(info.uri) == info
        signature = second.sign(created[0].uri, b"m")
    finally:
        second.close()
    verify_signature(created[0].public_key_der, b"m", signature)
    # Closing the second store must not log the first one out (login is per process and token).
    verify_signature(created[2].public_key_der, b"n", first.sign(created[2].uri, b"n"))
    assert first.list() == created


CHILD = """
import json, sys
from fabtrust.crypto.keys import KeyType, KeyUsage
from fabtrust.keystore.pkcs11 import Pkcs11KeyStore

with Pkcs11KeyStore.open(sys.argv[1], module_path=sys.argv[2]) as store:  # PIN from the environment
    store.generate("from-child", KeyType.P384, KeyUsage.AGREE)
    keys = [[i.uri, i.label, i.key_type.value, i.usage.value, i.public_key_der.hex()] for i in store.list()]
    print(json.dumps({"keys": keys, "signature": store.sign(sys.argv[3], b"from another process").hex()}))
"""


def test_another_process_sees_and_adds_keys(
    pkcs11_keystore: Pkcs11KeyStore, softhsm: SoftHsm, hsm_token: HsmToken
) -> None:
    mine = pkcs11_keystore.generate("from-parent", KeyType.ED25519, KeyUsage.SIGN)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, hsm_token.label, softhsm.module_path, mine.uri],
        env={**os.environ, PIN_ENV: hsm_token.pin},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert child.returncode == 0, child.stderr
    seen = json.loads(child.stdout)
    theirs = pkcs11_keystore.get(key_uri(hsm_token.label, "from-child"))
    assert seen["keys"] == [
        [i.uri, i.label, i.key_type.value, i.usage.value, i.public_key_der.hex()] for i in (theirs, mine)
    ]
    assert pkcs11_keystore.list() == [theirs, mine]
    verify_signature(mine.public_key_der, b"from another process", bytes.fromhex(seen["signature"]))


@pytest.mark.parametrize("key_type", AGREEMENT_TYPES)
def test_exchange_equals_software_ecdh(pkcs11_keystore: Pkcs11KeyStore, key_type: KeyType) -> None:
    info = pkcs11_keystore.generate("dh", key_type, KeyUsage.AGREE)
    peer = ec.generate_private_key(CURVES[key_type])
    shared = pkcs11_keystore.exchange(info.uri, spki_der(peer.public_key()))
    ours = serialization.load_der_public_key(info.public_key_der)
    assert isinstance(ours, ec.EllipticCurvePublicKey)
    assert shared == peer.exchange(ec.ECDH(), ours)
    assert len(shared) == (CURVES[key_type].key_size + 7) // 8


def test_exchange_leaves_no_derived_objects(
    pkcs11_keystore: Pkcs11KeyStore, softhsm: SoftHsm, hsm_token: HsmToken
) -> None:
    info = pkcs11_keystore.generate("dh", KeyType.P256, KeyUsage.AGREE)
    pkcs11_keystore.exchange(info.uri, peer_der(ec.SECP256R1()))
    with outside_session(softhsm, hsm_token.label) as session:
        assert list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})) == []


@pytest.mark.parametrize("key_type", AGREEMENT_TYPES)
def test_hpke_open(pkcs11_keystore: Pkcs11KeyStore, key_type: KeyType) -> None:
    info = pkcs11_keystore.generate("sealing", key_type, KeyUsage.AGREE)
    sealed = hpke.seal(info.public_key_der, b"device-class secret", b"fabtrust.package/v1")
    assert pkcs11_keystore.hpke_open(info.uri, sealed, b"fabtrust.package/v1") == b"device-class secret"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda b: b[:-1] + bytes([b[-1] ^ 1]), id="ciphertext-bit"),
        pytest.param(lambda b: bytes([b[0] ^ 0xFF]) + b[1:], id="ephemeral-key"),
        pytest.param(lambda b: b[:70] + bytes([b[70] ^ 1]) + b[71:], id="tag-region"),
    ],
)
def test_hpke_open_tampered(seeded: Seeded, tamper: Callable[[bytes], bytes]) -> None:
    info = seeded.keys["p256-agree"]
    sealed = hpke.seal(info.public_key_der, b"secret", b"ctx")
    with pytest.raises(VerificationFailed):
        seeded.store.hpke_open(info.uri, tamper(sealed), b"ctx")
    with pytest.raises(VerificationFailed):
        seeded.store.hpke_open(info.uri, sealed, b"other context")


def test_destroy_removes_both_halves(
    pkcs11_keystore: Pkcs11KeyStore, softhsm: SoftHsm, hsm_token: HsmToken
) -> None:
    keep = pkcs11_keystore.generate("keep", KeyType.P256, KeyUsage.SIGN)
    doomed = pkcs11_keystore.generate("doomed", KeyType.P256, KeyUsage.AGREE)
    pkcs11_keystore.destroy(doomed.uri)

    assert pkcs11_keystore.list() == [keep]
    with pytest.raises(NotFound):
        pkcs11_keystore.get(doomed.uri)
    with outside_session(softhsm, hsm_token.label) as session:
        assert list(session.get_objects({Attribute.LABEL: "doomed"})) == []
    with pytest.raises(NotFound):
        pkcs11_keystore.destroy(doomed.uri)
    # The label is free again; the new key is a different key.
    again = pkcs11_keystore.generate("doomed", KeyType.P256, KeyUsage.AGREE)
    assert again.public_key_der != doomed.public_key_der


def test_concurrent_signing_is_serialised(seeded: Seeded) -> None:
    info = seeded.keys["p256-sign"]
    results: list[list[tuple[bytes, bytes]]] = [[] for _ in range(4)]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(200):
                message = f"thread {n} message {i}".encode()
                results[n].append((message, seeded.store.sign(info.uri, message)))
        except BaseException as exc:  # report in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert [len(r) for r in results] == [200] * 4
    for message, signature in (pair for r in results for pair in r):
        verify_signature(info.public_key_der, message, signature)


def test_closed_store_refuses_and_keys_persist(softhsm: SoftHsm, hsm_token: HsmToken) -> None:
    with Pkcs11KeyStore(softhsm.module_path, hsm_token.label, hsm_token.pin) as store:
        info = store.generate("persistent", KeyType.ED25519, KeyUsage.SIGN)
    store.close()  # idempotent
    with pytest.raises(Unavailable, match="closed"):
        store.list()
    with pytest.raises(Unavailable, match="closed"):
        store.sign(info.uri, b"m")
    with Pkcs11KeyStore(softhsm.module_path, hsm_token.label, hsm_token.pin) as reopened:
        assert reopened.list() == [info]


# --- bad input: a clear error, and nothing changes ------------------------------------------------

Action = Callable[[Seeded], object]


def _generate_labelled(label: str) -> Action:
    return lambda s: s.store.generate(label, KeyType.P256, KeyUsage.SIGN)


REFUSALS = [
    pytest.param(
        lambda s: s.store.generate("p256-sign", KeyType.P384, KeyUsage.SIGN),
        Conflict,
        "already exists",
        id="generate/duplicate-label",
    ),
    pytest.param(
        lambda s: s.store.generate("pq", KeyType.MLDSA65, KeyUsage.SIGN),
        InvalidInput,
        "ml-dsa-65",
        id="generate/ml-dsa-refused",
    ),
    pytest.param(
        lambda s: s.store.generate("xdh", KeyType.X25519, KeyUsage.AGREE),
        InvalidInput,
        "x25519",
        id="generate/x25519-refused",
    ),
    pytest.param(
        lambda s: s.store.generate("edh", KeyType.ED25519, KeyUsage.AGREE),
        InvalidInput,
        "ed25519",
        id="generate/ed25519-cannot-agree",
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
            ("leading-dash", "-root"),
            ("slash", "a/b"),
            ("space", "a b"),
            ("too-long", "k" * 65),
            ("non-ascii", "clé"),
        ]
    ],
    pytest.param(
        lambda s: s.store.sign(s.uri("p256-agree"), b"m"), InvalidInput, "cannot sign", id="sign/agree-key"
    ),
    pytest.param(
        lambda s: s.store.exchange(s.uri("p256-sign"), peer_der(ec.SECP256R1())),
        InvalidInput,
        "cannot do key agreement",
        id="exchange/sign-key",
    ),
    pytest.param(
        lambda s: s.store.exchange(s.uri("ed-sign"), peer_der(ec.SECP256R1())),
        InvalidInput,
        "cannot do key agreement",
        id="exchange/ed25519-key",
    ),
    pytest.param(
        lambda s: s.store.exchange(s.uri("p256-agree"), peer_der(ec.SECP384R1())),
        InvalidInput,
        "not a ecdsa-p256",
        id="exchange/peer-wrong-curve",
    ),
    pytest.param(
        lambda s: s.store.exchange(s.uri("p256-agree"), b"not DER"),
        InvalidInput,
        "SubjectPublicKeyInfo",
        id="exchange/peer-garbage",
    ),
    pytest.param(
        lambda s: s.store.hpke_open(s.uri("p256-sign"), b"x" * 100, b""),
        InvalidInput,
        "cannot open",
        id="hpke/sign-key",
    ),
    pytest.param(
        lambda s: s.store.hpke_open(s.uri("p256-agree"), b"short", b""),
        InvalidInput,
        "truncated",
        id="hpke/truncated",
    ),
    pytest.param(lambda s: s.store.get(s.uri("nope")), NotFound, "'nope'", id="unknown/get"),
    pytest.param(lambda s: s.store.sign(s.uri("nope"), b"m"), NotFound, "'nope'", id="unknown/sign"),
    pytest.param(
        lambda s: s.store.exchange(s.uri("nope"), peer_der(ec.SECP256R1())),
        NotFound,
        "'nope'",
        id="unknown/exchange",
    ),
    pytest.param(
        lambda s: s.store.hpke_open(s.uri("nope"), b"x" * 100, b""), NotFound, "'nope'", id="unknown/hpke"
    ),
    pytest.param(lambda s: s.store.destroy(s.uri("nope")), NotFound, "'nope'", id="unknown/destroy"),
    pytest.param(
        lambda s: s.store.get(Pkcs11Uri(object="p256-sign", id=b"\x00" * 16).format()),
        NotFound,
        "p256-sign",
        id="unknown/id-mismatch",
    ),
    pytest.param(
        lambda s: s.store.get(key_uri("some-other-token", "p256-sign")),
        InvalidInput,
        "names token",
        id="uri/other-token",
    ),
    pytest.param(lambda s: s.store.get("soft:p256-sign"), InvalidInput, "pkcs11: URI", id="uri/other-scheme"),
    pytest.param(
        lambda s: s.store.get(Pkcs11Uri(token=s.token.label).format()),
        InvalidInput,
        "object=",
        id="uri/no-object",
    ),
    pytest.param(
        lambda s: s.store.sign(Pkcs11Uri(object="p256-sign", type="cert").format(), b"m"),
        InvalidInput,
        "type",
        id="uri/type-cert",
    ),
    pytest.param(
        lambda s: s.store.destroy(key_uri(s.token.label, "bad/label")),
        InvalidInput,
        "key label",
        id="uri/invalid-label",
    ),
    pytest.param(
        lambda s: s.store.get("pkcs11:serial=1"), InvalidInput, "not supported", id="uri/unparsable"
    ),
]


@pytest.mark.parametrize(("action", "error", "fragment"), REFUSALS)
def test_refusal_changes_nothing(
    seeded: Seeded, action: Action, error: type[FabtrustError], fragment: str
) -> None:
    before = seeded.store.list()
    with pytest.raises(error) as err:
        action(seeded)
    assert type(err.value) is error
    assert fragment in err.value.message
    assert seeded.store.list() == before == sorted(seeded.keys.values(), key=lambda i: i.label)


def test_wrong_pin_on_fresh_login(softhsm: SoftHsm, hsm_token: HsmToken) -> None:
    with Pkcs11KeyStore(softhsm.module_path, hsm_token.label, hsm_token.pin) as store:
        before = [store.generate("k", KeyType.P256, KeyUsage.SIGN)]
    wrong = hsm_token.pin[::-1] + "0"
    with pytest.raises(NotAuthorised) as err:
        Pkcs11KeyStore(softhsm.module_path, hsm_token.label, wrong)
    assert err.value.message == WRONG_PIN
    assert wrong not in str(err.value)
    assert hsm_token.pin not in str(err.value)
    with Pkcs11KeyStore(softhsm.module_path, hsm_token.label, hsm_token.pin) as store:
        assert store.list() == before


def test_wrong_pin_while_token_is_logged_in(seeded: Seeded, softhsm: SoftHsm) -> None:
    # The token is logged in (by `seeded`), so C_Login cannot check: the store must still refuse.
    before = seeded.store.list()
    wrong = seeded.token.pin + "x"
    with pytest.raises(NotAuthorised) as err:
        Pkcs11KeyStore(softhsm.module_path, seeded.token.label, wrong)
    assert err.value.message == WRONG_PIN
    assert wrong not in str(err.value)
    assert seeded.store.list() == before
    info = seeded.keys["ed-sign"]
    verify_signature(info.public_key_der, b"still", seeded.store.sign(info.uri, b"still"))


def test_missing_token_label(seeded: Seeded, softhsm: SoftHsm) -> None:
    before = seeded.store.list()
    with pytest.raises(Unavailable) as err:
        Pkcs11KeyStore(softhsm.module_path, "no-such-token", seeded.token.pin)
    assert "'no-such-token'" in err.value.message
    assert seeded.store.list() == before


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make_path", "fragment"),
    [
        pytest.param(lambda tmp: tmp / "missing" / "libnope.so", "not found", id="missing-file"),
        pytest.param(lambda tmp: tmp, "not found", id="directory"),
        pytest.param(
            lambda tmp: _write(tmp / "libgarbage.so", b"not an ELF file"), "cannot be loaded", id="garbage"
        ),
    ],
)
def test_bad_module_path(tmp_path: Path, make_path: Callable[[Path], Path], fragment: str) -> None:
    path = str(make_path(tmp_path))
    with pytest.raises(Unavailable) as err:
        Pkcs11KeyStore(path, "any", "1234")
    assert fragment in err.value.message
    assert path in err.value.message


@pytest.mark.parametrize(
    ("exc", "error", "fragment"),
    [
        pytest.param(p11.PinIncorrect(), NotAuthorised, "wrong PIN", id="pin-incorrect"),
        pytest.param(p11.PinLenRange(), NotAuthorised, "wrong PIN", id="pin-length"),
        pytest.param(p11.PinLocked(), NotAuthorised, "locked", id="pin-locked"),
        pytest.param(p11.PinExpired(), NotAuthorised, "expired", id="pin-expired"),
        pytest.param(p11.UserPinNotInitialized(), NotAuthorised, "not initialised", id="pin-uninitialised"),
        pytest.param(p11.DeviceError(), Unavailable, "DeviceError", id="device-error"),
    ],
)
def test_login_errors_translate(exc: p11.PKCS11Error, error: type[FabtrustError], fragment: str) -> None:
    # SoftHSM 2.6 never locks a PIN, so the translation of C_Login's errors is checked directly.
    translated = _login_error(exc)
    assert type(translated) is error
    assert fragment in translated.message


# --- open(): URI, PIN and module resolution ------------------------------------------------------


def test_open_with_pin_source_file(seeded: Seeded, softhsm: SoftHsm, tmp_path: Path) -> None:
    pin_file = tmp_path / "pin"
    pin_file.write_text(seeded.token.pin + "\n")
    uri = Pkcs11Uri(
        token=seeded.token.label, module_path=softhsm.module_path, pin_source=f"file:{pin_file}"
    ).format()
    with Pkcs11KeyStore.open(uri) as store:
        assert store.list() == seeded.store.list()


def test_open_pin_order(seeded: Seeded, softhsm: SoftHsm, monkeypatch: pytest.MonkeyPatch) -> None:
    label, pin = seeded.token
    monkeypatch.setenv(MODULE_ENV, softhsm.module_path)
    monkeypatch.setenv(PIN_ENV, pin)
    with Pkcs11KeyStore.open(label) as store:  # PIN and module from the environment
        assert store.list() == seeded.store.list()
    monkeypatch.setenv(PIN_ENV, pin + "-wrong")
    with Pkcs11KeyStore.open(label, pin=pin) as store:  # the explicit PIN wins
        assert store.token_label == label
    with pytest.raises(NotAuthorised, match="wrong PIN"):
        Pkcs11KeyStore.open(f"pkcs11:token={label}")


@pytest.mark.parametrize(
    ("uri", "error", "fragment"),
    [
        pytest.param("{token}", NotAuthorised, "PIN not provided", id="no-pin"),
        pytest.param("pkcs11:object=k", InvalidInput, "must name a token", id="uri-without-token"),
        pytest.param(
            "pkcs11:token={token}?pin-source=file:/nonexistent/pin",
            NotAuthorised,
            "cannot be read",
            id="pin-file",
        ),
        pytest.param(
            "pkcs11:token={token}?pin-source=relative", InvalidInput, "pin-source", id="pin-source-rel"
        ),
        pytest.param(
            "pkcs11:token={token}?pin-source=%7Ccat", InvalidInput, "pin-source", id="pin-source-cmd"
        ),
        pytest.param("", InvalidInput, "empty", id="empty-label"),
    ],
)
def test_open_refusals(
    seeded: Seeded,
    monkeypatch: pytest.MonkeyPatch,
    uri: str,
    error: type[FabtrustError],
    fragment: str,
) -> None:
    monkeypatch.delenv(PIN_ENV, raising=False)
    before = seeded.store.list()
    with pytest.raises(error) as err:
        Pkcs11KeyStore.open(uri.format(token=seeded.token.label))
    assert fragment in err.value.message
    assert seeded.store.list() == before
