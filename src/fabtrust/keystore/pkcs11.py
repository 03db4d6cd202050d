"""PKCS#11 (HSM) key store: keys generated in the token, used through python-pkcs11, never exported.

A key created elsewhere (the root key ceremony) can be imported with C_CreateObject; from then on
it is held like a generated key, with the same templates (see ``import_private_key``).

Keys are addressed by RFC 7512 URIs (``pkcs11:token=<t>;object=<label>;type=private``). Each key
is a pair of token objects sharing CKA_LABEL and a random CKA_ID; the private half is CKA_PRIVATE,
CKA_SENSITIVE and not CKA_EXTRACTABLE, and carries CKA_SIGN or CKA_DERIVE according to its usage,
never both. Everything :class:`KeyInfo` reports is read back from the token, so a second store,
in this process or another, sees the same keys.

Mechanisms (SoftHSM 2.6 has no CKM_ECDSA_SHA256):

| key type   | generate                    | use                                                   |
|------------|-----------------------------|-------------------------------------------------------|
| ecdsa-p256 | CKM_EC_KEY_PAIR_GEN         | sign: SHA-256 on the host, CKM_ECDSA, r||s -> DER      |
| ecdsa-p384 | CKM_EC_KEY_PAIR_GEN         | sign: SHA-384 on the host, CKM_ECDSA, r||s -> DER      |
| ecdsa-p*   |                             | agree: CKM_ECDH1_DERIVE, KDF NULL (the x-coordinate)  |
| ed25519    | CKM_EC_EDWARDS_KEY_PAIR_GEN | sign: CKM_EDDSA over the message (RFC 8032 pure)      |

``sign_digest`` takes the same CKM_ECDSA path with a digest the caller hashed (32 bytes for P-256,
48 for P-384); Ed25519 has no prehashed form and is refused.

ML-DSA-65 and X25519 are refused: the backend does not implement them (SoftHSM 2.6 offers neither
ML-DSA nor CKK_EC_MONTGOMERY).

Process-wide state. python-pkcs11 keeps one library instance per module path per process, and
two threads calling into one instance at once corrupt its heap (SoftHSM); PKCS#11 login state is
also per process and token (C_Login in one session logs in every session, C_Logout in one logs out
all). So this module keeps two registries that mirror those process-wide resources: a lock per
module path, held around every call into the library, and a login per token that stays open while
any store uses the token. A second store on a logged-in token must present the same PIN; it is
compared with an HMAC under a random per-process key, and the PIN itself is never kept.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, cast

import pkcs11
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pkcs11 import exceptions as p11
from pkcs11.constants import Attribute, MechanismFlag, ObjectClass
from pkcs11.mechanisms import KDF, Mechanism
from pkcs11.mechanisms import KeyType as P11KeyType
from pkcs11.types import DeriveMixin, Object, Session, SignMixin, Token
from pkcs11.util.ec import encode_ecdsa_signature

from fabtrust.crypto import hpke
from fabtrust.crypto.keys import (
    KeyType,
    KeyUsage,
    PublicKey,
    check_usage,
    ecdsa_digest,
    load_public_key,
    spki_der,
)
from fabtrust.errors import Conflict, FabtrustError, InvalidInput, NotAuthorised, NotFound, Unavailable
from fabtrust.keystore.base import (
    LABEL_RE,
    KeyInfo,
    check_ecdsa_digest,
    check_label,
    load_pkcs8_private_key,
)
from fabtrust.keystore.uri import Pkcs11Uri, key_uri, parse_pkcs11_uri

DEFAULT_MODULE_PATH = "/usr/lib/softhsm/libsofthsm2.so"
MODULE_ENV = "FABTRUST_PKCS11_MODULE"
PIN_ENV = "FABTRUST_PKCS11_PIN"

WRONG_PIN = "PKCS#11 login failed: wrong PIN"
_MAX_PIN_FILE = 4096

# CKA_EC_PARAMS as written at generation: DER namedCurve OIDs (RFC 5480 2.1.1.1) and id-Ed25519
# (RFC 8410 section 3). PKCS#11 3.0 (2.3.6) also allows an Edwards curve named by PrintableString.
_EC_PARAMS: dict[KeyType, bytes] = {
    KeyType.P256: bytes.fromhex("06082a8648ce3d030107"),  # 1.2.840.10045.3.1.7 secp256r1
    KeyType.P384: bytes.fromhex("06052b81040022"),  # 1.3.132.0.34 secp384r1
    KeyType.ED25519: bytes.fromhex("06032b6570"),  # 1.3.101.112 id-Ed25519
}
_ED25519_PRINTABLE = b"\x13\x0c" + b"edwards25519"
_CURVES: dict[KeyType, ec.EllipticCurve] = {KeyType.P256: ec.SECP256R1(), KeyType.P384: ec.SECP384R1()}
_P11_KEY_TYPE: dict[KeyType, P11KeyType] = {
    KeyType.P256: P11KeyType.EC,
    KeyType.P384: P11KeyType.EC,
    KeyType.ED25519: P11KeyType.EC_EDWARDS,
}
# What the token must offer for each (key type, usage) this backend implements.
_NEEDS: dict[tuple[KeyType, KeyUsage], frozenset[int]] = {
    (KeyType.P256, KeyUsage.SIGN): frozenset({Mechanism.EC_KEY_PAIR_GEN, Mechanism.ECDSA}),
    (KeyType.P256, KeyUsage.AGREE): frozenset({Mechanism.EC_KEY_PAIR_GEN, Mechanism.ECDH1_DERIVE}),
    (KeyType.P384, KeyUsage.SIGN): frozenset({Mechanism.EC_KEY_PAIR_GEN, Mechanism.ECDSA}),
    (KeyType.P384, KeyUsage.AGREE): frozenset({Mechanism.EC_KEY_PAIR_GEN, Mechanism.ECDH1_DERIVE}),
    (KeyType.ED25519, KeyUsage.SIGN): frozenset({Mechanism.EC_EDWARDS_KEY_PAIR_GEN, Mechanism.EDDSA}),
}
_BACKEND_TYPES = frozenset(key_type for key_type, _ in _NEEDS)


# --- process-wide registries (see the module docstring for why these are module-level) ---------

_REGISTRY_GUARD = threading.Lock()
_LIBRARY_LOCKS: dict[str, threading.RLock] = {}


@dataclass
class _Login:
    """A token's login: ``holder`` is the session that logged in and logs out when closed."""

    holder: Session
    pin_mac: bytes
    users: int = 0


# Keyed by (module path, slot id); only touched while holding that module's library lock.
_LOGINS: dict[tuple[str, int], _Login] = {}
_PIN_MAC_KEY = secrets.token_bytes(32)


def _library_lock(module_path: str) -> threading.RLock:
    with _REGISTRY_GUARD:
        return _LIBRARY_LOCKS.setdefault(module_path, threading.RLock())


def _pin_mac(pin: str) -> bytes:
    return hmac.new(_PIN_MAC_KEY, pin.encode("utf-8"), hashlib.sha256).digest()


# --- error translation ---------------------------------------------------------------------------


@contextmanager
def _library_call(action: str) -> Iterator[None]:
    """Translate any python-pkcs11 failure into Unavailable, naming the action, never the data."""
    try:
        yield
    except p11.PKCS11Error as exc:
        raise Unavailable(f"PKCS#11 {action} failed ({type(exc).__name__})") from exc


def _login_error(exc: p11.PKCS11Error) -> FabtrustError:
    """The safe error for a failed C_Login. The PIN never appears in it."""
    if isinstance(exc, p11.PinIncorrect | p11.PinInvalid | p11.PinLenRange):
        return NotAuthorised(WRONG_PIN)
    if isinstance(exc, p11.PinLocked):
        return NotAuthorised("PKCS#11 login failed: the PIN is locked (the security officer must reset it)")
    if isinstance(exc, p11.PinExpired):
        return NotAuthorised("PKCS#11 login failed: the PIN has expired")
    if isinstance(exc, p11.UserPinNotInitialized):
        return NotAuthorised("PKCS#11 login failed: the token's user PIN is not initialised")
    return Unavailable(f"PKCS#11 login failed ({type(exc).__name__})")


# --- helpers over token objects ------------------------------------------------------------------


@dataclass(frozen=True)
class _PrivateKey:
    obj: Object
    label: str
    key_id: bytes
    key_type: KeyType
    usage: KeyUsage


def _unsupported(label: str) -> InvalidInput:
    return InvalidInput(f"key {label!r} on the token has a type or usage fabtrust does not support")


def _key_type_of(label: str, p11_type: Any, ec_params: bytes) -> KeyType:
    for key_type, params in _EC_PARAMS.items():
        if p11_type == _P11_KEY_TYPE[key_type] and ec_params == params:
            return key_type
    if p11_type == P11KeyType.EC_EDWARDS and ec_params == _ED25519_PRINTABLE:
        return KeyType.ED25519
    raise _unsupported(label)


def _usage_of(label: str, key_type: KeyType, can_sign: bool, can_derive: bool) -> KeyUsage:
    if can_sign and not can_derive:
        usage = KeyUsage.SIGN
    elif can_derive and not can_sign:
        usage = KeyUsage.AGREE
    else:
        raise _unsupported(label)
    if (key_type, usage) not in _NEEDS:
        raise _unsupported(label)
    return usage


def _der_octet_string(value: bytes) -> bytes | None:
    """The content of a DER OCTET STRING, or None if ``value`` is not exactly one."""
    if len(value) < 2 or value[0] != 0x04:
        return None
    length, offset = value[1], 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 2 or len(value) < 2 + n:
            return None
        length, offset = int.from_bytes(value[2 : 2 + n], "big"), 2 + n
    return value[offset:] if len(value) - offset == length else None


def _der_octet_string_encode(content: bytes) -> bytes:
    """``content`` as a DER OCTET STRING (X.690 8.7, definite length)."""
    n = len(content)
    if n < 0x80:
        return bytes([0x04, n]) + content
    length = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x04, 0x80 | len(length)]) + length + content


def _templates(
    label: str, key_id: bytes, key_type: KeyType, usage: KeyUsage
) -> tuple[dict[Attribute, Any], dict[Attribute, Any]]:
    """(public, private) attribute templates of a key pair, for generation and import alike."""
    sign = usage is KeyUsage.SIGN
    common = {
        Attribute.TOKEN: True,
        Attribute.LABEL: label,
        Attribute.ID: key_id,
        Attribute.MODIFIABLE: False,
        Attribute.DERIVE: not sign,
    }
    public_template = {
        **common,
        # Private too: only a logged-in user may see or delete the public half.
        Attribute.PRIVATE: True,
        Attribute.EC_PARAMS: _EC_PARAMS[key_type],
        Attribute.VERIFY: sign,
        Attribute.ENCRYPT: False,
        Attribute.WRAP: False,
    }
    private_template = {
        **common,
        Attribute.PRIVATE: True,
        Attribute.SENSITIVE: True,
        Attribute.EXTRACTABLE: False,
        Attribute.SIGN: sign,
        Attribute.DECRYPT: False,
        Attribute.UNWRAP: False,
    }
    return public_template, private_template


def _public_key_der(label: str, key_type: KeyType, ec_point: bytes) -> bytes:
    """DER SubjectPublicKeyInfo from CKA_EC_POINT (a DER OCTET STRING; some tokens give it raw)."""
    point = _der_octet_string(ec_point)
    if point is None:
        point = ec_point
    public: PublicKey
    try:
        if key_type is KeyType.ED25519:
            public = ed25519.Ed25519PublicKey.from_public_bytes(point)
        else:
            public = ec.EllipticCurvePublicKey.from_encoded_point(_CURVES[key_type], point)
    except ValueError as exc:
        raise Unavailable(f"key {label!r} has an invalid public key on the token") from exc
    return spki_der(public)


def _read_pin_source(source: str) -> str:
    """The PIN from an RFC 7512 ``pin-source``: a local ``file:`` URI or an absolute path."""
    path = source
    if source.startswith("file:"):
        path = source[len("file:") :]
        if path.startswith("//"):
            authority, slash, rest = path[2:].partition("/")
            if authority not in ("", "localhost") or not slash:
                raise InvalidInput("PKCS#11 pin-source must name a local file")
            path = "/" + rest
    if not path.startswith("/"):
        raise InvalidInput("PKCS#11 pin-source must be a file: URI or an absolute path")
    try:
        with open(path, "rb") as fh:
            raw = fh.read(_MAX_PIN_FILE + 1)
    except OSError as exc:
        raise NotAuthorised(f"PKCS#11 PIN source {path} cannot be read") from exc
    if len(raw) > _MAX_PIN_FILE:
        raise InvalidInput(f"PKCS#11 PIN source {path} is too large to hold a PIN")
    try:
        pin = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"PKCS#11 PIN source {path} is not UTF-8 text") from None
    pin = pin.removesuffix("\n").removesuffix("\r")
    if not pin:
        raise NotAuthorised(f"PKCS#11 PIN source {path} is empty")
    return pin


def default_module_path() -> str:
    """``$FABTRUST_PKCS11_MODULE`` if set, else the SoftHSM2 module."""
    return os.environ.get(MODULE_ENV) or DEFAULT_MODULE_PATH


# --- the store -----------------------------------------------------------------------------------


class Pkcs11KeyStore:
    """A :class:`fabtrust.keystore.base.KeyStore` on one PKCS#11 token.

    One session per store, logged in once (see the module docstring); every call into the
    library holds the per-module lock, so a store may be shared between threads. Close it (or use
    it as a context manager) to release the session.
    """

    scheme = "pkcs11"

    def __init__(self, module_path: str, token_label: str, pin: str) -> None:
        if not os.path.isfile(module_path):
            raise Unavailable(f"PKCS#11 module {module_path} not found")
        self._module_name = module_path  # as given, for messages
        # One library instance and one lock per file, however the path is spelt.
        self._module_path = os.path.realpath(module_path)
        self._lock = _library_lock(self._module_path)
        self._closed = True
        with self._lock:
            token = self._find_token(token_label)
            self._token_label: str = token.label
            with _library_call("mechanism query"):
                self._mechanisms = frozenset(int(m) for m in token.slot.get_mechanisms())
                self._login_key = (self._module_path, int(token.slot.slot_id))
            self._session = self._log_in_and_open(token, pin)
            self._closed = False

    @classmethod
    def open(
        cls,
        uri_or_token_label: str,
        pin: str | None = None,
        module_path: str | None = None,
    ) -> Pkcs11KeyStore:
        """Open a store from a ``pkcs11:`` URI naming a token, or from a bare token label.

        Module: ``module_path``, else the URI's ``module-path``, else ``$FABTRUST_PKCS11_MODULE``,
        else SoftHSM2. PIN: ``pin``, else the URI's ``pin-source`` file (or ``pin-value``), else
        ``$FABTRUST_PKCS11_PIN``; none of them is NotAuthorised.
        """
        uri: Pkcs11Uri | None = None
        if uri_or_token_label.lower().startswith("pkcs11:"):
            uri = parse_pkcs11_uri(uri_or_token_label)
            if not uri.token:
                raise InvalidInput("PKCS#11 URI must name a token (token=...)")
            token_label = uri.token
        else:
            token_label = uri_or_token_label
            if not token_label:
                raise InvalidInput("PKCS#11 token label is empty")
        module = module_path or (uri.module_path if uri else None) or default_module_path()
        resolved = pin
        if resolved is None and uri is not None:
            if uri.pin_source is not None:
                resolved = _read_pin_source(uri.pin_source)
            elif uri.pin_value is not None:
                resolved = uri.pin_value
        if resolved is None:
            resolved = os.environ.get(PIN_ENV) or None
        if resolved is None:
            raise NotAuthorised(
                f"PKCS#11 PIN not provided (pass it, give a pin-source in the URI or set {PIN_ENV})"
            )
        return cls(module, token_label, resolved)

    # -- KeyStore protocol ---------------------------------------------------------------------

    @property
    def token_label(self) -> str:
        return self._token_label

    @property
    def supported_key_types(self) -> frozenset[KeyType]:
        """Key types this backend implements and this token's mechanisms allow."""
        return frozenset(kt for (kt, _), needs in _NEEDS.items() if needs <= self._mechanisms)

    def generate(self, label: str, key_type: KeyType, usage: KeyUsage) -> KeyInfo:
        self._check_new_key(label, key_type, usage)
        with self._lock:
            self._check_open()
            self._check_label_free(label)
            key_id = secrets.token_bytes(16)
            public_template, private_template = _templates(label, key_id, key_type, usage)
            sign = usage is KeyUsage.SIGN
            capabilities = MechanismFlag.SIGN | MechanismFlag.VERIFY if sign else MechanismFlag.DERIVE
            with _library_call(f"{key_type.value} key generation"):
                public, private = self._session.generate_keypair(
                    _P11_KEY_TYPE[key_type],
                    id=key_id,
                    label=label,
                    store=True,
                    capabilities=capabilities,
                    public_template=public_template,
                    private_template=private_template,
                )
            return self._read_back(private, public, None)

    def import_private_key(self, label: str, key_type: KeyType, usage: KeyUsage, pkcs8_der: bytes) -> KeyInfo:
        """Create the key pair on the token from a PKCS#8 private key (C_CreateObject).

        See :class:`fabtrust.keystore.base.KeyImporter`. The private object gets the attributes a
        generated key has (token, private, sensitive, not extractable, not modifiable, sign or
        derive by usage) and, like it, cannot be read or exported afterwards (CKA_VALUE is
        sensitive). PKCS#11 records its history honestly, though: CKA_LOCAL, CKA_ALWAYS_SENSITIVE
        and CKA_NEVER_EXTRACTABLE are CK_FALSE for an imported key (PKCS#11 3.0 4.9, private key
        objects), because its value existed outside the token; a relying party that needs a key
        born in the HSM must generate it there. The caller must wipe its own copy of the key
        (best effort in Python).
        """
        self._check_new_key(label, key_type, usage)
        key = load_pkcs8_private_key(pkcs8_der, key_type)
        expected = spki_der(key.public_key())
        value: bytes
        point: bytes
        if isinstance(key, ec.EllipticCurvePrivateKey):
            # CKA_VALUE: the scalar d, big-endian, padded to the field size (PKCS#11 3.0 Current
            # Mechanisms, "Elliptic curve private key objects").
            value = key.private_numbers().private_value.to_bytes((key.curve.key_size + 7) // 8, "big")
            point = key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            # CKA_VALUE: the 32-byte private key of RFC 8032 (PKCS#11 3.0 Current Mechanisms,
            # "Edwards elliptic curve private key objects").
            value, point = key.private_bytes_raw(), key.public_key().public_bytes_raw()
        else:  # unreachable: _check_new_key admits EC and Ed25519 types only
            raise InvalidInput(f"the PKCS#11 key store cannot hold {key_type.value} keys")
        del key  # drops our references only: Python cannot wipe them (see KeyImporter)
        with self._lock:
            self._check_open()
            self._check_label_free(label)
            key_id = secrets.token_bytes(16)
            public_template, private_template = _templates(label, key_id, key_type, usage)
            common = {Attribute.KEY_TYPE: _P11_KEY_TYPE[key_type], Attribute.EC_PARAMS: _EC_PARAMS[key_type]}
            with _library_call(f"{key_type.value} key import"):
                # CKA_EC_POINT as a generated key has it: a DER OCTET STRING (see _public_key_der).
                public = self._session.create_object(
                    {
                        **public_template,
                        **common,
                        Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                        Attribute.EC_POINT: _der_octet_string_encode(point),
                    }
                )
            try:
                with _library_call(f"{key_type.value} key import"):
                    private = self._session.create_object(
                        {
                            **private_template,
                            **common,
                            Attribute.CLASS: ObjectClass.PRIVATE_KEY,
                            Attribute.VALUE: value,
                        }
                    )
            except BaseException:
                with _library_call("key clean-up"):
                    public.destroy()
                raise
            finally:
                del value
            return self._read_back(private, public, expected)

    def get(self, uri: str) -> KeyInfo:
        label, key_id = self._resolve(uri)
        with self._lock:
            self._check_open()
            private = self._private_key(label, key_id)
            return self._info(private, self._public_key(private))

    def list(self) -> list[KeyInfo]:
        with self._lock:
            self._check_open()
            privates = self._find({Attribute.CLASS: ObjectClass.PRIVATE_KEY})
            publics = self._find({Attribute.CLASS: ObjectClass.PUBLIC_KEY})
            with _library_call("attribute read"):
                private_labels = [cast(str, obj[Attribute.LABEL]) for obj in privates]
                public_index: dict[tuple[str, bytes], list[Object]] = {}
                for obj in publics:
                    key = (cast(str, obj[Attribute.LABEL]), cast(bytes, obj[Attribute.ID]))
                    public_index.setdefault(key, []).append(obj)
            infos: list[KeyInfo] = []
            for obj, label in zip(privates, private_labels, strict=True):
                # Only unambiguous, complete pairs with a fabtrust label and a supported type.
                if not LABEL_RE.fullmatch(label) or private_labels.count(label) != 1:
                    continue
                try:
                    private = self._describe(obj)
                except InvalidInput:
                    continue
                matching = public_index.get((label, private.key_id), [])
                if len(matching) == 1:
                    infos.append(self._info(private, matching[0]))
            return sorted(infos, key=lambda info: info.label)

    def sign(self, uri: str, message: bytes) -> bytes:
        label, key_id = self._resolve(uri)
        with self._lock:
            self._check_open()
            private = self._signing_key(label, key_id)
            if private.key_type is KeyType.ED25519:
                with _library_call("signing"):
                    return cast(SignMixin, private.obj).sign(message, mechanism=Mechanism.EDDSA)
            return self._ecdsa(private, ecdsa_digest(private.key_type, message))

    def sign_digest(self, uri: str, digest: bytes) -> bytes:
        label, key_id = self._resolve(uri)
        with self._lock:
            self._check_open()
            private = self._signing_key(label, key_id)
            return self._ecdsa(private, check_ecdsa_digest(private.key_type, digest))

    def exchange(self, uri: str, peer_public_key_der: bytes) -> bytes:
        label, key_id = self._resolve(uri)
        peer = load_public_key(peer_public_key_der)
        with self._lock:
            self._check_open()
            private = self._private_key(label, key_id)
            if private.usage is not KeyUsage.AGREE:
                raise InvalidInput(f"key {label!r} is a signing key and cannot do key agreement")
            curve = _CURVES[private.key_type]
            if not isinstance(peer, ec.EllipticCurvePublicKey) or peer.curve.name != curve.name:
                raise InvalidInput(f"peer key is not a {private.key_type.value} public key")
            point = peer.public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
            )
            field_bytes = (curve.key_size + 7) // 8
            deriver = cast(DeriveMixin, private.obj)
            with _library_call("key agreement"):
                # The derived object is the ephemeral DH output, not a long-term key: it must be
                # readable, and it lives only in this session until destroyed below.
                secret = deriver.derive_key(
                    P11KeyType.GENERIC_SECRET,
                    field_bytes * 8,
                    mechanism=Mechanism.ECDH1_DERIVE,
                    mechanism_param=(KDF.NULL, None, point),
                    template={
                        Attribute.TOKEN: False,
                        Attribute.SENSITIVE: False,
                        Attribute.EXTRACTABLE: True,
                    },
                )
                try:
                    value = cast(bytes, secret[Attribute.VALUE])
                finally:
                    secret.destroy()
        return value

    def hpke_open(self, uri: str, sealed: bytes, info: bytes) -> bytes:
        key = self.get(uri)
        if key.usage is not KeyUsage.AGREE:
            raise InvalidInput(f"key {key.label!r} is a signing key and cannot open sealed messages")
        return hpke.open_with_exchange(
            key.public_key_der, sealed, info, lambda peer: self.exchange(uri, peer)
        )

    def destroy(self, uri: str) -> None:
        label, key_id = self._resolve(uri)
        with self._lock:
            self._check_open()
            private = self._private_key(label, key_id)
            publics = self._find(
                {
                    Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                    Attribute.LABEL: label,
                    Attribute.ID: private.key_id,
                }
            )
            with _library_call("key deletion"):
                # The secret half first: if anything fails after it, no usable key remains.
                private.obj.destroy()
                for public in publics:
                    public.destroy()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                with _library_call("session close"):
                    self._session.close()
            finally:
                self._release_login()

    def __enter__(self) -> Pkcs11KeyStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Pkcs11KeyStore(module={self._module_path!r}, token={self._token_label!r})"

    # -- internals (callers hold self._lock) -----------------------------------------------------

    def _find_token(self, token_label: str) -> Token:
        try:
            library = pkcs11.lib(self._module_path)
        except p11.PKCS11Error as exc:
            raise Unavailable(f"PKCS#11 module {self._module_name} cannot be loaded") from exc
        try:
            return library.get_token(token_label=token_label)
        except p11.NoSuchToken as exc:
            raise Unavailable(f"no PKCS#11 token labelled {token_label!r} in {self._module_name}") from exc
        except p11.MultipleTokensReturned as exc:
            raise Unavailable(f"more than one PKCS#11 token is labelled {token_label!r}") from exc
        except p11.PKCS11Error as exc:
            raise Unavailable(f"PKCS#11 token lookup failed ({type(exc).__name__})") from exc

    def _log_in_and_open(self, token: Token, pin: str) -> Session:
        mac = _pin_mac(pin)
        login = _LOGINS.get(self._login_key)
        if login is None:
            try:
                holder = token.open(user_pin=pin)
            except p11.PKCS11Error as exc:
                raise _login_error(exc) from exc
            login = _LOGINS[self._login_key] = _Login(holder=holder, pin_mac=mac)
        elif not hmac.compare_digest(login.pin_mac, mac):
            # The token is already logged in (login is per process), so C_Login cannot check.
            raise NotAuthorised(WRONG_PIN)
        try:
            with _library_call("session open"):
                session = token.open(rw=True)
        except Unavailable:
            if login.users == 0:
                self._drop_login(login)
            raise
        login.users += 1
        return session

    def _release_login(self) -> None:
        login = _LOGINS.get(self._login_key)
        if login is None:
            return
        login.users -= 1
        if login.users <= 0:
            self._drop_login(login)

    def _drop_login(self, login: _Login) -> None:
        del _LOGINS[self._login_key]
        with _library_call("logout"):
            login.holder.close()

    def _check_new_key(self, label: str, key_type: KeyType, usage: KeyUsage) -> None:
        """Refuse, before touching the token, a key this backend or token cannot hold."""
        check_label(label)
        if key_type not in _BACKEND_TYPES:
            offered = ", ".join(sorted(kt.value for kt in self.supported_key_types))
            raise InvalidInput(
                f"the PKCS#11 key store cannot hold {key_type.value} keys (it offers: {offered})"
            )
        check_usage(key_type, usage)
        if not _NEEDS[(key_type, usage)] <= self._mechanisms:
            raise InvalidInput(f"this PKCS#11 token cannot {usage.value} with {key_type.value} keys")

    def _check_label_free(self, label: str) -> None:
        if self._find({Attribute.LABEL: label}):
            raise Conflict(f"a key labelled {label!r} already exists on token {self._token_label!r}")

    def _read_back(self, private: Object, public: Object, expected_public_der: bytes | None) -> KeyInfo:
        """The new pair's KeyInfo as read from the token; on any failure both objects are destroyed.

        ``expected_public_der``, for an imported key, must be what the token now reports.
        """
        try:
            info = self._info(self._describe(private), public)
            if expected_public_der is not None and info.public_key_der != expected_public_der:
                raise Unavailable(
                    f"the token holds another public key than the one imported as {info.label!r}"
                )
            return info
        except BaseException:
            with _library_call("key clean-up"):
                private.destroy()
                public.destroy()
            raise

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("PKCS#11 key store is closed")

    def _resolve(self, uri: str) -> tuple[str, bytes | None]:
        """The (label, id) a key URI names on this store's token."""
        if not uri.lower().startswith("pkcs11:"):
            raise InvalidInput("a PKCS#11 key is named by a pkcs11: URI")
        parsed = parse_pkcs11_uri(uri)
        if parsed.token is not None and parsed.token != self._token_label:
            raise InvalidInput(
                f"key URI names token {parsed.token!r}, but this key store is on token {self._token_label!r}"
            )
        if parsed.type not in (None, "private", "public"):
            raise InvalidInput(f"key URI type must be private or public, not {parsed.type}")
        if parsed.object is None:
            raise InvalidInput("key URI must name the key (object=...)")
        return check_label(parsed.object), parsed.id

    def _find(self, attrs: dict[Attribute, Any]) -> builtins.list[Object]:  # `list` is a method here
        with _library_call("object search"):
            # Drain the generator: an unfinished search would leave C_FindObjects active.
            return list(self._session.get_objects(attrs))

    def _private_key(self, label: str, key_id: bytes | None) -> _PrivateKey:
        attrs: dict[Attribute, Any] = {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: label}
        if key_id is not None:
            attrs[Attribute.ID] = key_id
        found = self._find(attrs)
        if not found:
            raise NotFound(f"no key {label!r} on PKCS#11 token {self._token_label!r}")
        if len(found) > 1:
            raise Conflict(f"more than one key is labelled {label!r} on PKCS#11 token {self._token_label!r}")
        return self._describe(found[0])

    def _signing_key(self, label: str, key_id: bytes | None) -> _PrivateKey:
        private = self._private_key(label, key_id)
        if private.usage is not KeyUsage.SIGN:
            raise InvalidInput(f"key {label!r} is a key-agreement key and cannot sign")
        return private

    def _ecdsa(self, private: _PrivateKey, digest: bytes) -> bytes:
        """CKM_ECDSA over a digest hashed on the host (the caller checked its length), as DER."""
        with _library_call("signing"):
            raw = cast(SignMixin, private.obj).sign(digest, mechanism=Mechanism.ECDSA)
        # PKCS#11 returns r || s; X.509 and cryptography want Ecdsa-Sig-Value (RFC 3279 2.2.3).
        return encode_ecdsa_signature(raw)

    def _describe(self, obj: Object) -> _PrivateKey:
        with _library_call("attribute read"):
            label = cast(str, obj[Attribute.LABEL])
            p11_type = obj[Attribute.KEY_TYPE]
            if p11_type not in (P11KeyType.EC, P11KeyType.EC_EDWARDS):
                raise _unsupported(label)
            ec_params = cast(bytes, obj[Attribute.EC_PARAMS])
            key_id = cast(bytes, obj[Attribute.ID])
            can_sign = bool(obj[Attribute.SIGN])
            can_derive = bool(obj[Attribute.DERIVE])
        key_type = _key_type_of(label, p11_type, ec_params)
        return _PrivateKey(obj, label, key_id, key_type, _usage_of(label, key_type, can_sign, can_derive))

    def _public_key(self, private: _PrivateKey) -> Object:
        found = self._find(
            {
                Attribute.CLASS: ObjectClass.PUBLIC_KEY,
                Attribute.LABEL: private.label,
                Attribute.ID: private.key_id,
            }
        )
        if len(found) != 1:
            raise Unavailable(f"key {private.label!r} has no unique public half on the token")
        return found[0]

    def _info(self, private: _PrivateKey, public: Object) -> KeyInfo:
        with _library_call("attribute read"):
            p11_type = public[Attribute.KEY_TYPE]
            ec_params = cast(bytes, public[Attribute.EC_PARAMS])
            ec_point = cast(bytes, public[Attribute.EC_POINT])
        if _key_type_of(private.label, p11_type, ec_params) is not private.key_type:
            raise Unavailable(f"the two halves of key {private.label!r} do not match")
        return KeyInfo(
            uri=key_uri(self._token_label, private.label),
            label=private.label,
            key_type=private.key_type,
            usage=private.usage,
            public_key_der=_public_key_der(private.label, private.key_type, ec_point),
        )
