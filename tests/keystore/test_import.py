"""Importing a private key (root ceremony, restore-root) into both backends, and auditing it.

One store per backend is shared by the module (PKCS#11: one token of the SoftHSM pool, which is
small); each test imports under its own label, and every refusal checks that nothing changed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from pkcs11 import exceptions as p11
from pkcs11.constants import Attribute, ObjectClass

from fabtrust.crypto import hpke
from fabtrust.crypto.keys import KeyType, KeyUsage, generate_private_key, key_id, spki_der, verify_signature
from fabtrust.errors import Conflict, FabtrustError, InvalidInput
from fabtrust.keystore.base import KeyImporter, KeyInfo, KeyStore, importer
from fabtrust.keystore.pkcs11 import Pkcs11KeyStore
from fabtrust.keystore.service import KeyEvent, KeyService
from fabtrust.keystore.soft import SoftKeyStore, soft_uri
from tests.fixtures.softhsm import HsmToken, SoftHsm

pytestmark = pytest.mark.softhsm

PASSPHRASE = "import passphrase"
MESSAGE = b"root ceremony transcript"
SECRET = b"device-class secret " * 4
INFO = b"fabtrust.package/v1"
CURVES: dict[KeyType, ec.EllipticCurve] = {KeyType.P256: ec.SECP256R1(), KeyType.P384: ec.SECP384R1()}
_labels = count()


def pkcs8(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )


def new_label(prefix: str) -> str:
    return f"{prefix}-{next(_labels)}"


@dataclass
class Backend:
    name: str
    store: KeyStore
    reopen: Callable[[], KeyStore]  # a second, independent store instance on the same keys
    token: HsmToken | None = None  # PKCS#11 only


@pytest.fixture(scope="module")
def soft_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    root = tmp_path_factory.mktemp("import") / "ks"
    store = SoftKeyStore.create(root, PASSPHRASE, scrypt_n=2**14)
    try:
        yield Backend("soft", store, lambda: SoftKeyStore.open(root, PASSPHRASE))
    finally:
        store.close()


@pytest.fixture(scope="module")
def pkcs11_backend(softhsm: SoftHsm) -> Iterator[Backend]:
    token = softhsm.new_token()
    store = Pkcs11KeyStore(softhsm.module_path, token.label, token.pin)
    try:
        yield Backend(
            "pkcs11", store, lambda: Pkcs11KeyStore(softhsm.module_path, token.label, token.pin), token
        )
    finally:
        store.close()


@pytest.fixture(scope="module", params=["soft", "pkcs11"])
def backend(request: pytest.FixtureRequest) -> Backend:
    made: Backend = request.getfixturevalue(f"{request.param}_backend")
    return made


def import_key(b: Backend, label: str, key_type: KeyType, usage: KeyUsage, der: bytes) -> KeyInfo:
    return importer(b.store).import_private_key(label, key_type, usage, der)


# --- the imported key is the original key --------------------------------------------------------


SIGNING = [pytest.param(kt, id=kt.value) for kt in (KeyType.P256, KeyType.P384, KeyType.ED25519)]
AGREEING = [pytest.param(kt, id=kt.value) for kt in (KeyType.P256, KeyType.P384)]


@pytest.mark.parametrize("key_type", SIGNING)
def test_import_signing_key(backend: Backend, key_type: KeyType) -> None:
    original = generate_private_key(key_type)
    original_der = spki_der(original.public_key())
    label = new_label("root")

    info = import_key(backend, label, key_type, KeyUsage.SIGN, pkcs8(original))

    assert (info.label, info.key_type, info.usage) == (label, key_type, KeyUsage.SIGN)
    assert info.public_key_der == original_der
    assert backend.store.get(info.uri) == info
    assert info in backend.store.list()
    for message in (MESSAGE, b""):
        verify_signature(original_der, message, backend.store.sign(info.uri, message))
    second = backend.reopen()
    try:
        assert second.get(info.uri) == info
        verify_signature(original_der, MESSAGE, second.sign(info.uri, MESSAGE))
    finally:
        second.close()


@pytest.mark.parametrize("key_type", AGREEING)
def test_import_agreement_key(backend: Backend, key_type: KeyType) -> None:
    original = generate_private_key(key_type)
    assert isinstance(original, ec.EllipticCurvePrivateKey)
    info = import_key(backend, new_label("seal"), key_type, KeyUsage.AGREE, pkcs8(original))
    assert info.public_key_der == spki_der(original.public_key())

    peer = ec.generate_private_key(CURVES[key_type])
    shared = backend.store.exchange(info.uri, spki_der(peer.public_key()))
    assert shared == original.exchange(ec.ECDH(), peer.public_key())

    sealed = hpke.seal(spki_der(original.public_key()), SECRET, INFO)
    assert backend.store.hpke_open(info.uri, sealed, INFO) == SECRET


# --- refusals: the same family from every backend, and nothing changes ---------------------------

Action = Callable[[Backend], object]


def _import(key_type: KeyType, usage: KeyUsage, der: Callable[[], bytes], label: str = "refused") -> Action:
    return lambda b: import_key(b, label, key_type, usage, der())


def _der_of(make: Callable[[], Any]) -> Callable[[], bytes]:
    return lambda: pkcs8(make())


P256 = _der_of(lambda: ec.generate_private_key(ec.SECP256R1()))


def _encrypted_p256() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )


def _sec1_p256() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


REFUSALS = [
    pytest.param(_import(KeyType.P256, KeyUsage.SIGN, P256, label="taken"), Conflict, id="duplicate-label"),
    pytest.param(
        _import(KeyType.P256, KeyUsage.AGREE, P256, label="taken"), Conflict, id="duplicate-label-other-usage"
    ),
    pytest.param(_import(KeyType.P384, KeyUsage.SIGN, P256), InvalidInput, id="type-mismatch/p256-as-p384"),
    pytest.param(
        _import(KeyType.P256, KeyUsage.SIGN, _der_of(ed25519.Ed25519PrivateKey.generate)),
        InvalidInput,
        id="type-mismatch/ed25519-as-p256",
    ),
    pytest.param(
        _import(KeyType.ED25519, KeyUsage.SIGN, _der_of(x25519.X25519PrivateKey.generate)),
        InvalidInput,
        id="type-mismatch/x25519-as-ed25519",
    ),
    pytest.param(_import(KeyType.P256, KeyUsage.SIGN, lambda: b"not a key"), InvalidInput, id="garbage"),
    pytest.param(_import(KeyType.P256, KeyUsage.SIGN, lambda: b""), InvalidInput, id="empty"),
    pytest.param(_import(KeyType.P256, KeyUsage.SIGN, lambda: P256()[:-1]), InvalidInput, id="truncated"),
    pytest.param(
        _import(KeyType.P256, KeyUsage.SIGN, lambda: P256() + b"\x00"), InvalidInput, id="trailing-byte"
    ),
    pytest.param(_import(KeyType.P256, KeyUsage.SIGN, _encrypted_p256), InvalidInput, id="encrypted-pkcs8"),
    pytest.param(_import(KeyType.P256, KeyUsage.SIGN, _sec1_p256), InvalidInput, id="sec1-not-pkcs8"),
    pytest.param(
        _import(KeyType.P256, KeyUsage.SIGN, _der_of(lambda: ec.generate_private_key(ec.SECP256K1()))),
        InvalidInput,
        id="unsupported-curve/secp256k1",
    ),
    pytest.param(
        _import(KeyType.P256, KeyUsage.SIGN, _der_of(lambda: rsa.generate_private_key(65537, 2048))),
        InvalidInput,
        id="unsupported-algorithm/rsa",
    ),
    pytest.param(
        _import(KeyType.ED25519, KeyUsage.AGREE, _der_of(ed25519.Ed25519PrivateKey.generate)),
        InvalidInput,
        id="usage-not-allowed/ed25519-agree",
    ),
    pytest.param(
        _import(KeyType.X25519, KeyUsage.SIGN, _der_of(x25519.X25519PrivateKey.generate)),
        InvalidInput,
        id="usage-not-allowed/x25519-sign",
    ),
    pytest.param(
        lambda b: import_key(b, "bad/label", KeyType.P256, KeyUsage.SIGN, P256()),
        InvalidInput,
        id="invalid-label",
    ),
]


@pytest.fixture(scope="module")
def taken(backend: Backend) -> KeyInfo:
    """A key under the label ``taken`` that refused imports must leave alone."""
    return backend.store.generate("taken", KeyType.P256, KeyUsage.SIGN)


@pytest.mark.parametrize(("action", "error"), REFUSALS)
def test_refusal_changes_nothing(
    backend: Backend, taken: KeyInfo, action: Action, error: type[FabtrustError]
) -> None:
    before = backend.store.list()
    with pytest.raises(error) as err:
        action(backend)
    assert type(err.value) is error
    assert err.value.message
    assert backend.store.list() == before
    assert backend.store.get(taken.uri) == taken
    verify_signature(taken.public_key_der, MESSAGE, backend.store.sign(taken.uri, MESSAGE))


def _corrupt(der: bytes, offset: int) -> bytes:
    return der[:offset] + bytes([der[offset] ^ 0x55]) + der[offset + 1 :]


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(_sec1_p256, id="sec1"),
        pytest.param(lambda: _corrupt(P256(), 12), id="bad-algorithm-oid"),
        pytest.param(lambda: _corrupt(P256(), -1), id="public-key-mismatch"),
        pytest.param(lambda: _corrupt(P256(), 40), id="bad-inner-structure"),
    ],
)
def test_refusal_does_not_echo_the_key(backend: Backend, make: Callable[[], bytes]) -> None:
    der = make()
    before = backend.store.list()
    with pytest.raises(InvalidInput) as err:
        import_key(backend, new_label("x"), KeyType.P256, KeyUsage.SIGN, der)
    message = str(err.value)
    assert der.hex() not in message
    assert der[-32:].hex() not in message
    assert repr(der)[2:40] not in message
    assert err.value.__cause__ is None  # nothing of the library's parse error travels with it
    assert backend.store.list() == before


# --- backend-specific --------------------------------------------------------------------------


SOFT_ONLY = [
    pytest.param(KeyType.MLDSA65, KeyUsage.SIGN, id="ml-dsa-65"),
    pytest.param(KeyType.X25519, KeyUsage.AGREE, id="x25519"),
]


@pytest.mark.parametrize(("key_type", "usage"), SOFT_ONLY)
def test_soft_imports_mldsa_and_x25519(tmp_path: Path, key_type: KeyType, usage: KeyUsage) -> None:
    root = tmp_path / "ks"
    original = generate_private_key(key_type)
    original_der = spki_der(original.public_key())
    with SoftKeyStore.create(root, PASSPHRASE, scrypt_n=2**14) as store:
        info = store.import_private_key("pq", key_type, usage, pkcs8(original))
        assert info.public_key_der == original_der
    with SoftKeyStore.open(root, PASSPHRASE) as store:
        assert store.get(soft_uri("pq")) == info
        if usage is KeyUsage.SIGN:
            verify_signature(original_der, MESSAGE, store.sign(info.uri, MESSAGE))
        else:
            assert isinstance(original, x25519.X25519PrivateKey)
            peer = x25519.X25519PrivateKey.generate()
            assert store.exchange(info.uri, spki_der(peer.public_key())) == original.exchange(
                peer.public_key()
            )
            assert store.hpke_open(info.uri, hpke.seal(original_der, SECRET, INFO), INFO) == SECRET


def test_soft_key_file_is_the_generated_format(tmp_path: Path) -> None:
    """An imported key's file has exactly the fields of a generated one, and no plaintext key."""
    original = ec.generate_private_key(ec.SECP256R1())
    der = pkcs8(original)
    with SoftKeyStore.create(tmp_path / "ks", PASSPHRASE, scrypt_n=2**14) as store:
        store.generate("made", KeyType.P256, KeyUsage.SIGN)
        store.import_private_key("brought", KeyType.P256, KeyUsage.SIGN, der)
    made = json.loads((tmp_path / "ks" / "keys" / "made.json").read_text())
    brought_raw = (tmp_path / "ks" / "keys" / "brought.json").read_bytes()
    brought = json.loads(brought_raw)
    assert sorted(made) == sorted(brought)
    assert brought["format"] == made["format"]
    scalar = original.private_numbers().private_value.to_bytes(32, "big")
    for form in (der, scalar):
        for encoded in (form, form.hex().encode(), base64.b64encode(form)):
            assert encoded not in brought_raw


@pytest.mark.parametrize(("key_type", "usage"), SOFT_ONLY)
def test_pkcs11_refuses_types_it_cannot_hold(
    pkcs11_backend: Backend, key_type: KeyType, usage: KeyUsage
) -> None:
    backend = pkcs11_backend
    before = backend.store.list()
    with pytest.raises(InvalidInput, match="cannot hold"):
        import_key(backend, new_label("pq"), key_type, usage, pkcs8(generate_private_key(key_type)))
    assert backend.store.list() == before


IMPORTED_KINDS = [
    pytest.param(KeyType.P256, KeyUsage.SIGN, id="p256-sign"),
    pytest.param(KeyType.P384, KeyUsage.AGREE, id="p384-agree"),
    pytest.param(KeyType.ED25519, KeyUsage.SIGN, id="ed25519-sign"),
]


@pytest.mark.parametrize(("key_type", "usage"), IMPORTED_KINDS)
def test_pkcs11_imported_key_is_sensitive(
    pkcs11_backend: Backend, softhsm: SoftHsm, key_type: KeyType, usage: KeyUsage
) -> None:
    backend = pkcs11_backend
    assert backend.token is not None
    original = generate_private_key(key_type)
    info = import_key(backend, new_label("hsm"), key_type, usage, pkcs8(original))
    # A second session, opened directly with python-pkcs11 as an outside tool would (no second
    # login: PKCS#11 login is per process and the store is logged in).
    session = pkcs11.lib(softhsm.module_path).get_token(token_label=backend.token.label).open()
    try:
        [private] = session.get_objects(
            {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: info.label}
        )
        [public] = session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.LABEL: info.label})
        with pytest.raises(p11.AttributeSensitive):
            private[Attribute.VALUE]
        assert private[Attribute.SENSITIVE] is True
        assert private[Attribute.EXTRACTABLE] is False
        assert private[Attribute.MODIFIABLE] is False
        assert private[Attribute.TOKEN] is True
        assert private[Attribute.PRIVATE] is True
        assert private[Attribute.SIGN] is (usage is KeyUsage.SIGN)
        assert private[Attribute.DERIVE] is (usage is KeyUsage.AGREE)
        # Honest history: the value existed outside the token (see import_private_key).
        assert private[Attribute.ALWAYS_SENSITIVE] is False
        assert private[Attribute.NEVER_EXTRACTABLE] is False
        assert private[Attribute.LOCAL] is False
        assert len(private[Attribute.ID]) == 16
        assert public[Attribute.ID] == private[Attribute.ID]
        assert public[Attribute.TOKEN] is True
    finally:
        session.close()


# --- the capability and its auditing ------------------------------------------------------------


def test_backends_are_importers(backend: Backend) -> None:
    capability: KeyImporter = importer(backend.store)
    store: object = backend.store
    assert capability is store


class NoImport:
    """A key store without the import capability (only what importer() looks at)."""

    scheme = "plain"


def test_importer_refuses_a_store_without_the_capability() -> None:
    with pytest.raises(InvalidInput, match="the plain key store cannot import keys"):
        importer(NoImport())  # type: ignore[arg-type]


class Recorder:
    def __init__(self) -> None:
        self.events: list[KeyEvent] = []

    def __call__(self, event: KeyEvent) -> None:
        self.events.append(event)


def _secret_forms(der: bytes) -> list[bytes]:
    """The ways a PKCS#8 key, or the P-256 scalar inside it, could show up in an event's repr."""
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    raw = [der, key.private_numbers().private_value.to_bytes(32, "big")]
    return [
        f
        for secret in raw
        for f in (secret, secret.hex().encode(), base64.b64encode(secret), repr(secret).encode())
    ]


def test_service_records_one_import_event(backend: Backend) -> None:
    recorder = Recorder()
    service = KeyService(backend.store, recorder)
    original = ec.generate_private_key(ec.SECP256R1())
    der = pkcs8(original)
    label = new_label("ceremony")

    info = service.import_key(label, KeyType.P256, KeyUsage.SIGN, der, purpose="root ceremony 2026-01")

    assert recorder.events == [KeyEvent("key.import", info.uri, info.key_id, "root ceremony 2026-01", "ok")]
    assert info.key_id == key_id(spki_der(original.public_key()))
    text = repr(recorder.events[0]).encode()
    for form in _secret_forms(der):
        assert form not in text


def test_service_records_refused_imports(backend: Backend, taken: KeyInfo) -> None:
    recorder = Recorder()
    service = KeyService(backend.store, recorder)
    der = P256()
    with pytest.raises(Conflict):
        service.import_key("taken", KeyType.P256, KeyUsage.SIGN, der, purpose="restore-root")
    with pytest.raises(InvalidInput):
        service.import_key("mismatch", KeyType.P384, KeyUsage.SIGN, der, purpose="restore-root")
    assert recorder.events == [
        KeyEvent("key.import", "taken", None, "restore-root", "refused", "conflict"),
        KeyEvent("key.import", "mismatch", None, "restore-root", "refused", "invalid_input"),
    ]
    for event in recorder.events:
        for form in _secret_forms(der):
            assert form not in repr(event).encode()


def test_service_records_a_store_that_cannot_import() -> None:
    recorder = Recorder()
    service = KeyService(NoImport(), recorder)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="cannot import"):
        service.import_key("root", KeyType.P256, KeyUsage.SIGN, P256(), purpose="root ceremony")
    assert recorder.events == [
        KeyEvent("key.import", "root", None, "root ceremony", "refused", "invalid_input")
    ]
