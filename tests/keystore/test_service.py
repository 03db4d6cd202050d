"""KeyService: one audit event per key operation, refusals included, and never a secret in one."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from fabtrust.crypto import hpke
from fabtrust.crypto.keys import KeyType, KeyUsage, spki_der, verify_signature
from fabtrust.errors import (
    Conflict,
    FabtrustError,
    InvalidInput,
    NotFound,
    Unavailable,
    VerificationFailed,
)
from fabtrust.keystore.base import KeyInfo
from fabtrust.keystore.pkcs11 import Pkcs11KeyStore
from fabtrust.keystore.service import KeyEvent, KeyService
from fabtrust.keystore.soft import SoftKeyStore, soft_uri
from fabtrust.keystore.uri import key_uri

PURPOSE = "sign production record 42"
MESSAGE = b"production record 42: the message"
PLAINTEXT = b"device-class secret: the plaintext"
INFO = b"fabtrust.package/v1"


class Recorder:
    def __init__(self) -> None:
        self.events: list[KeyEvent] = []

    def __call__(self, event: KeyEvent) -> None:
        self.events.append(event)


@dataclass(frozen=True)
class Seeded:
    store: SoftKeyStore
    keys: dict[str, KeyInfo]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    root = tmp_path_factory.mktemp("service") / "ks"
    with SoftKeyStore.create(root, "service passphrase", scrypt_n=2**14) as store:
        kinds = [
            ("sign", KeyType.P256, KeyUsage.SIGN),
            ("agree", KeyType.P256, KeyUsage.AGREE),
            ("x-agree", KeyType.X25519, KeyUsage.AGREE),
        ]
        yield Seeded(store, {label: store.generate(label, kt, usage) for label, kt, usage in kinds})


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def service(seeded: Seeded, recorder: Recorder) -> KeyService:
    return KeyService(seeded.store, recorder)


def p256_peer() -> bytes:
    return spki_der(ec.generate_private_key(ec.SECP256R1()).public_key())


# --- successful operations -------------------------------------------------------------------------


def test_generate_and_destroy(service: KeyService, recorder: Recorder) -> None:
    info = service.generate("fresh-key", KeyType.ED25519, KeyUsage.SIGN, purpose="issue station identity")
    assert recorder.events == [
        KeyEvent("key.generate", info.uri, info.key_id, "issue station identity", "ok")
    ]
    recorder.events.clear()

    service.destroy(info.uri, purpose="station retired")
    assert recorder.events == [KeyEvent("key.destroy", info.uri, info.key_id, "station retired", "ok")]
    with pytest.raises(NotFound):
        service.get(info.uri)


def test_sign(service: KeyService, recorder: Recorder, seeded: Seeded) -> None:
    info = seeded.keys["sign"]
    verify_signature(info.public_key_der, MESSAGE, service.sign(info.uri, MESSAGE, purpose=PURPOSE))
    assert recorder.events == [KeyEvent("key.sign", info.uri, info.key_id, PURPOSE, "ok")]


def test_sign_digest_is_recorded_as_a_signature(
    service: KeyService, recorder: Recorder, seeded: Seeded
) -> None:
    info = seeded.keys["sign"]
    digest = hashlib.sha256(MESSAGE).digest()
    signature = service.sign_digest(info.uri, digest, purpose="sign MCUboot image widget-1.0.0")
    verify_signature(info.public_key_der, MESSAGE, signature)  # ECDSA-SHA256 over the message
    assert recorder.events == [
        KeyEvent("key.sign", info.uri, info.key_id, "sign MCUboot image widget-1.0.0", "ok")
    ]


def test_exchange(service: KeyService, recorder: Recorder, seeded: Seeded) -> None:
    info = seeded.keys["agree"]
    peer = ec.generate_private_key(ec.SECP256R1())
    ours = serialization.load_der_public_key(info.public_key_der)
    assert isinstance(ours, ec.EllipticCurvePublicKey)
    shared = service.exchange(info.uri, spki_der(peer.public_key()), purpose="session key")
    assert shared == peer.exchange(ec.ECDH(), ours)
    assert recorder.events == [KeyEvent("key.exchange", info.uri, info.key_id, "session key", "ok")]


def test_hpke_open(service: KeyService, recorder: Recorder, seeded: Seeded) -> None:
    info = seeded.keys["x-agree"]
    sealed = hpke.seal(info.public_key_der, PLAINTEXT, INFO)
    assert service.hpke_open(info.uri, sealed, INFO, purpose="open package") == PLAINTEXT
    assert recorder.events == [KeyEvent("key.hpke-open", info.uri, info.key_id, "open package", "ok")]


def test_reads_are_not_recorded(service: KeyService, recorder: Recorder, seeded: Seeded) -> None:
    assert service.list() == seeded.store.list()
    assert service.get(seeded.keys["sign"].uri) == seeded.keys["sign"]
    assert recorder.events == []


@pytest.mark.parametrize(
    "purpose", [pytest.param("x", id="one-char"), pytest.param("p" * 128, id="128-chars")]
)
def test_purpose_length_bounds_accepted(
    service: KeyService, recorder: Recorder, seeded: Seeded, purpose: str
) -> None:
    service.sign(seeded.keys["sign"].uri, MESSAGE, purpose=purpose)
    assert [e.purpose for e in recorder.events] == [purpose]


# --- refusals: recorded, and the error still reaches the caller ---------------------------------------

Action = Callable[[KeyService, Seeded], object]


def _sealed_for(label: str, info: bytes = INFO) -> Callable[[Seeded], bytes]:
    return lambda s: hpke.seal(s.keys[label].public_key_der, PLAINTEXT, info)


REFUSALS = [
    pytest.param(
        lambda k, s: k.sign(soft_uri("nope"), MESSAGE, purpose=PURPOSE),
        NotFound,
        ("key.sign", soft_uri("nope"), None),
        id="sign/unknown-key",
    ),
    pytest.param(
        lambda k, s: k.sign(s.keys["agree"].uri, MESSAGE, purpose=PURPOSE),
        InvalidInput,
        ("key.sign", soft_uri("agree"), "agree"),
        id="sign/wrong-usage",
    ),
    pytest.param(
        lambda k, s: k.sign("soft:bad/label", MESSAGE, purpose=PURPOSE),
        InvalidInput,
        ("key.sign", "soft:bad/label", None),
        id="sign/invalid-uri",
    ),
    pytest.param(
        lambda k, s: k.sign_digest(s.keys["sign"].uri, bytes(48), purpose=PURPOSE),
        InvalidInput,
        ("key.sign", soft_uri("sign"), "sign"),
        id="sign-digest/wrong-length",
    ),
    pytest.param(
        lambda k, s: k.sign_digest(s.keys["agree"].uri, bytes(32), purpose=PURPOSE),
        InvalidInput,
        ("key.sign", soft_uri("agree"), "agree"),
        id="sign-digest/wrong-usage",
    ),
    pytest.param(
        lambda k, s: k.sign_digest(soft_uri("nope"), bytes(32), purpose=PURPOSE),
        NotFound,
        ("key.sign", soft_uri("nope"), None),
        id="sign-digest/unknown-key",
    ),
    pytest.param(
        lambda k, s: k.exchange(s.keys["sign"].uri, p256_peer(), purpose=PURPOSE),
        InvalidInput,
        ("key.exchange", soft_uri("sign"), "sign"),
        id="exchange/wrong-usage",
    ),
    pytest.param(
        lambda k, s: k.exchange(s.keys["agree"].uri, b"not DER", purpose=PURPOSE),
        InvalidInput,
        ("key.exchange", soft_uri("agree"), "agree"),
        id="exchange/bad-peer",
    ),
    pytest.param(
        lambda k, s: k.exchange(
            s.keys["x-agree"].uri,
            spki_der(x25519.X25519PublicKey.from_public_bytes(bytes(32))),
            purpose=PURPOSE,
        ),
        InvalidInput,
        ("key.exchange", soft_uri("x-agree"), "x-agree"),
        id="exchange/low-order-peer",
    ),
    pytest.param(
        lambda k, s: k.hpke_open(s.keys["x-agree"].uri, _sealed_for("x-agree")(s), b"other", purpose=PURPOSE),
        VerificationFailed,
        ("key.hpke-open", soft_uri("x-agree"), "x-agree"),
        id="hpke-open/wrong-info",
    ),
    pytest.param(
        lambda k, s: k.hpke_open(s.keys["agree"].uri, _sealed_for("x-agree")(s), INFO, purpose=PURPOSE),
        VerificationFailed,
        ("key.hpke-open", soft_uri("agree"), "agree"),
        id="hpke-open/wrong-recipient",
    ),
    pytest.param(
        lambda k, s: k.hpke_open(s.keys["sign"].uri, b"x" * 200, INFO, purpose=PURPOSE),
        InvalidInput,
        ("key.hpke-open", soft_uri("sign"), "sign"),
        id="hpke-open/wrong-usage",
    ),
    pytest.param(
        lambda k, s: k.generate("sign", KeyType.P256, KeyUsage.SIGN, purpose=PURPOSE),
        Conflict,
        ("key.generate", "sign", None),
        id="generate/duplicate-label",
    ),
    pytest.param(
        lambda k, s: k.generate("bad/label", KeyType.P256, KeyUsage.SIGN, purpose=PURPOSE),
        InvalidInput,
        ("key.generate", "bad/label", None),
        id="generate/invalid-label",
    ),
    pytest.param(
        lambda k, s: k.generate("xs", KeyType.X25519, KeyUsage.SIGN, purpose=PURPOSE),
        InvalidInput,
        ("key.generate", "xs", None),
        id="generate/wrong-usage",
    ),
    pytest.param(
        lambda k, s: k.destroy(soft_uri("nope"), purpose=PURPOSE),
        NotFound,
        ("key.destroy", soft_uri("nope"), None),
        id="destroy/unknown-key",
    ),
]


@pytest.mark.parametrize(("action", "error", "expected"), REFUSALS)
def test_refusal_is_recorded_and_raised(
    service: KeyService,
    recorder: Recorder,
    seeded: Seeded,
    action: Action,
    error: type[FabtrustError],
    expected: tuple[str, str, str | None],
) -> None:
    before = seeded.store.list()
    with pytest.raises(error) as err:
        action(service, seeded)
    assert type(err.value) is error
    operation, uri, label = expected
    key_id = seeded.keys[label].key_id if label else None
    assert recorder.events == [KeyEvent(operation, uri, key_id, PURPOSE, "refused", error.code)]
    assert seeded.store.list() == before


def test_closed_store_is_recorded_as_refused(tmp_path: Path) -> None:
    store = SoftKeyStore.create(tmp_path / "ks", "pass", scrypt_n=2**14)
    info = store.generate("k", KeyType.P256, KeyUsage.SIGN)
    store.close()
    recorder = Recorder()
    with pytest.raises(Unavailable):
        KeyService(store, recorder).sign(info.uri, MESSAGE, purpose=PURPOSE)
    assert recorder.events == [KeyEvent("key.sign", info.uri, None, PURPOSE, "refused", "unavailable")]


class BrokenSigner:
    """A real store whose sign() fails with a foreign (non-fabtrust) error, as a driver bug would."""

    def __init__(self, store: SoftKeyStore) -> None:
        self.scheme = store.scheme
        self._store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self._store, name)

    def sign(self, uri: str, message: bytes) -> bytes:
        raise RuntimeError("driver exploded")


def test_foreign_error_is_recorded_as_failed(seeded: Seeded, recorder: Recorder) -> None:
    service = KeyService(BrokenSigner(seeded.store), recorder)  # type: ignore[arg-type]
    info = seeded.keys["sign"]
    with pytest.raises(RuntimeError, match="exploded"):
        service.sign(info.uri, MESSAGE, purpose=PURPOSE)
    assert recorder.events == [KeyEvent("key.sign", info.uri, info.key_id, PURPOSE, "failed", "internal")]


# --- purpose --------------------------------------------------------------------------------------------

BAD_PURPOSES = [
    pytest.param("", id="empty"),
    pytest.param("p" * 129, id="129-chars"),
    pytest.param("p" * 200, id="200-chars"),
]
PURPOSE_ACTIONS = [
    pytest.param(
        lambda k, s, p: k.generate("never-made", KeyType.P256, KeyUsage.SIGN, purpose=p), id="generate"
    ),
    pytest.param(lambda k, s, p: k.sign(s.keys["sign"].uri, MESSAGE, purpose=p), id="sign"),
    pytest.param(lambda k, s, p: k.sign_digest(s.keys["sign"].uri, bytes(32), purpose=p), id="sign-digest"),
    pytest.param(lambda k, s, p: k.exchange(s.keys["agree"].uri, p256_peer(), purpose=p), id="exchange"),
    pytest.param(
        lambda k, s, p: k.hpke_open(s.keys["x-agree"].uri, _sealed_for("x-agree")(s), INFO, purpose=p),
        id="hpke-open",
    ),
    pytest.param(lambda k, s, p: k.destroy(s.keys["sign"].uri, purpose=p), id="destroy"),
]


@pytest.mark.parametrize("purpose", BAD_PURPOSES)
@pytest.mark.parametrize("action", PURPOSE_ACTIONS)
def test_bad_purpose_is_refused_before_acting(
    service: KeyService,
    recorder: Recorder,
    seeded: Seeded,
    action: Callable[[KeyService, Seeded, str], object],
    purpose: str,
) -> None:
    before = seeded.store.list()
    with pytest.raises(InvalidInput, match="purpose"):
        action(service, seeded, purpose)
    assert seeded.store.list() == before  # nothing generated, nothing destroyed
    assert recorder.events == []  # the key was not used, so there is no use to record


# --- no secrets in events -----------------------------------------------------------------------------


def _forms(secret: bytes) -> list[bytes]:
    """The ways a secret could show up in an event's repr."""
    return [secret, secret.hex().encode(), base64.b64encode(secret), repr(secret).encode()]


def test_events_carry_no_secrets(seeded: Seeded, tmp_path: Path) -> None:
    recorder = Recorder()
    store = SoftKeyStore.create(tmp_path / "ks", "pass", scrypt_n=2**14)
    service = KeyService(store, recorder)
    secrets: list[bytes] = [MESSAGE, PLAINTEXT]

    sign = service.generate("s", KeyType.P256, KeyUsage.SIGN, purpose=PURPOSE)
    agree = service.generate("a", KeyType.X25519, KeyUsage.AGREE, purpose=PURPOSE)
    secrets.append(service.sign(sign.uri, MESSAGE, purpose=PURPOSE))
    peer = x25519.X25519PrivateKey.generate()
    secrets.append(service.exchange(agree.uri, spki_der(peer.public_key()), purpose=PURPOSE))
    sealed = hpke.seal(agree.public_key_der, PLAINTEXT, INFO)
    secrets.append(sealed)
    assert service.hpke_open(agree.uri, sealed, INFO, purpose=PURPOSE) == PLAINTEXT
    with pytest.raises(VerificationFailed):
        service.hpke_open(agree.uri, sealed, b"wrong", purpose=PURPOSE)
    with pytest.raises(InvalidInput):
        service.sign(agree.uri, MESSAGE, purpose=PURPOSE)
    for label in ("s", "a"):
        key = store._cache[label][1]
        secrets.append(
            key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        secrets.append(store.get(soft_uri(label)).public_key_der)
    secrets.append(peer.private_bytes_raw())
    service.destroy(sign.uri, purpose=PURPOSE)

    assert [(e.operation, e.outcome) for e in recorder.events] == [
        ("key.generate", "ok"),
        ("key.generate", "ok"),
        ("key.sign", "ok"),
        ("key.exchange", "ok"),
        ("key.hpke-open", "ok"),
        ("key.hpke-open", "refused"),
        ("key.sign", "refused"),
        ("key.destroy", "ok"),
    ]
    for event in recorder.events:
        text = repr(event).encode()
        for secret in secrets:
            for form in _forms(secret):
                assert form not in text, event
        assert {f.name for f in fields(event)} == {
            "operation",
            "uri",
            "key_id",
            "purpose",
            "outcome",
            "reason",
        }


def test_pkcs11_pin_value_never_recorded(pkcs11_keystore: Pkcs11KeyStore) -> None:
    # RFC 7512 lets a URI carry the PIN (pin-value); the store accepts such a URI, the event must not
    # repeat it. The token's real PIN is not needed: the store is logged in already.
    recorder = Recorder()
    service = KeyService(pkcs11_keystore, recorder)
    info = service.generate("signer", KeyType.P256, KeyUsage.SIGN, purpose=PURPOSE)
    pin = "9876-secret-pin"
    with_pin = key_uri(pkcs11_keystore.token_label, "signer") + f"?pin-value={pin}"
    signature = service.sign(with_pin, MESSAGE, purpose=PURPOSE)
    verify_signature(info.public_key_der, MESSAGE, signature)
    with pytest.raises(NotFound):
        service.sign(
            key_uri(pkcs11_keystore.token_label, "nope") + f"?pin-value={pin}", MESSAGE, purpose=PURPOSE
        )
    with pytest.raises(InvalidInput):
        service.sign(f"pkcs11:object=signer;serial=1?pin-value={pin}", MESSAGE, purpose=PURPOSE)

    assert recorder.events == [
        KeyEvent("key.generate", info.uri, info.key_id, PURPOSE, "ok"),
        KeyEvent("key.sign", info.uri, info.key_id, PURPOSE, "ok"),
        KeyEvent(
            "key.sign", key_uri(pkcs11_keystore.token_label, "nope"), None, PURPOSE, "refused", "not_found"
        ),
        KeyEvent("key.sign", "pkcs11:<unparsable>", None, PURPOSE, "refused", "invalid_input"),
    ]
    for event in recorder.events:
        assert pin not in repr(event)


def test_soft_store_refuses_pkcs11_uri_and_records_no_pin(service: KeyService, recorder: Recorder) -> None:
    with pytest.raises(InvalidInput):
        service.sign("pkcs11:object=sign?pin-value=1234", MESSAGE, purpose=PURPOSE)
    assert recorder.events == [
        KeyEvent("key.sign", "pkcs11:object=sign", None, PURPOSE, "refused", "invalid_input")
    ]
