"""A model of a device's secure element: on-chip keys, monotonic counters, OTP and sealed storage.

What the model promises, and what the tests hold it to:

* Private keys are generated inside the element, in named slots, and never leave it: no method
  returns one, ``repr`` shows only public facts and the element refuses to be pickled or copied.
  A slot, once written, is locked.
* Counters only go up (no setter, no decrement: :meth:`advance` refuses a lower value); OTP rows
  are write-once.
* Sealed storage is AES-256-GCM under a chip-unique key held inside the element; the ciphertexts
  are kept apart, as flash would hold them, and each is bound to its name.
* Flash is plain, rewritable storage outside the trust boundary.

The birth key (slot ``"birth"``) and birth certificate chain are put in by the silicon vendor at
manufacture (:mod:`fabtrust.device.vendor`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import AttributeOID, NameOID

from fabtrust.crypto.hpke import open_with_private_key
from fabtrust.crypto.keys import KeyType, KeyUsage, PrivateKey, generate_private_key, sign_with, spki_der
from fabtrust.errors import Conflict, InvalidInput, NotFound, PolicyViolation, VerificationFailed

#: Slot of the key the silicon vendor certifies at manufacture.
BIRTH_SLOT = "birth"
#: Key types the element can generate, and what each slot is then for (one key, one usage).
SLOT_USAGE: dict[KeyType, KeyUsage] = {
    KeyType.P256: KeyUsage.SIGN,
    KeyType.ED25519: KeyUsage.SIGN,
    KeyType.X25519: KeyUsage.AGREE,
}
MAX_COUNTER = 2**32 - 1
MAX_OTP_BYTES = 64
MAX_CHALLENGE_PASSWORD = 255  # PKCS#9 ub-challenge-password (RFC 2985 5.4.1)
_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
_UID = re.compile(r"[0-9a-f]{16}")
_SERIAL = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]{1,64}")  # X.520 PrintableString, ub 64
_NONCE_BYTES = 12
_SEALED_AAD = b"fabtrust sealed storage v1|"


def _check_name(name: str, what: str) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise InvalidInput(f"{what} name must be 1 to 64 of a-z 0-9 _ . - (starting alphanumeric)")


def _check_data(data: bytes, what: str) -> None:
    if not isinstance(data, bytes):
        raise InvalidInput(f"{what} must be bytes")


@dataclass(frozen=True)
class _Slot:
    key_type: KeyType
    private_key: PrivateKey
    public_der: bytes

    def __repr__(self) -> str:
        return f"_Slot({self.key_type.value})"


class SecureElement:
    """One chip's secure element. Construct through a :class:`~fabtrust.device.vendor.SiliconVendor`."""

    def __init__(self, uid: str) -> None:
        if not isinstance(uid, str) or not _UID.fullmatch(uid):
            raise InvalidInput("chip UID must be 16 lowercase hex characters")
        self._uid = uid
        self._slots: dict[str, _Slot] = {}
        self._birth_chain: tuple[bytes, ...] = ()
        self._counters: dict[str, int] = {}
        self._otp: dict[str, bytes] = {}
        self._storage_key = AESGCM.generate_key(bit_length=256)  # chip-unique, never leaves
        self._sealed: dict[str, bytes] = {}  # what flash would hold: nonce || ciphertext || tag
        self._flash: dict[str, bytes] = {}

    # -- identity ------------------------------------------------------------------------------

    @property
    def uid(self) -> str:
        return self._uid

    @property
    def birth_chain(self) -> tuple[bytes, ...]:
        """DER: the birth certificate, then the vendor's intermediates (empty before manufacture)."""
        return self._birth_chain

    @property
    def birth_certificate(self) -> bytes:
        if not self._birth_chain:
            raise NotFound("the element has no birth certificate")
        return self._birth_chain[0]

    def set_birth_chain(self, chain: Sequence[bytes]) -> None:
        """Done once by the vendor at manufacture; the chain is write-once like OTP."""
        chain = tuple(chain)
        if not chain or not all(isinstance(der, bytes) and der for der in chain):
            raise InvalidInput("birth chain must be one or more DER certificates")
        if self._birth_chain:
            raise Conflict("the element's birth chain is already written")
        self._birth_chain = chain

    # -- key slots -----------------------------------------------------------------------------

    def generate_key(self, slot: str, key_type: KeyType) -> bytes:
        """Generate a key inside the element in ``slot``; returns its DER SubjectPublicKeyInfo."""
        _check_name(slot, "slot")
        if key_type not in SLOT_USAGE:
            supported = ", ".join(kt.value for kt in SLOT_USAGE)
            raise InvalidInput(f"the element cannot hold {key_type} keys (supported: {supported})")
        if slot in self._slots:
            raise Conflict(f"key slot {slot!r} is locked")
        private_key = generate_private_key(key_type)
        public_der = spki_der(private_key.public_key())
        self._slots[slot] = _Slot(key_type, private_key, public_der)
        return public_der

    def slots(self) -> dict[str, KeyType]:
        """The written slots and their key types (public facts)."""
        return {name: slot.key_type for name, slot in self._slots.items()}

    def has_key(self, slot: str) -> bool:
        return slot in self._slots

    def _slot(self, slot: str, usage: KeyUsage) -> _Slot:
        try:
            entry = self._slots[slot]
        except KeyError:
            raise NotFound(f"key slot {slot!r} is empty") from None
        if SLOT_USAGE[entry.key_type] is not usage:
            raise PolicyViolation(f"the key in slot {slot!r} cannot be used to {usage.value}")
        return entry

    def public_key(self, slot: str) -> bytes:
        try:
            return self._slots[slot].public_der
        except KeyError:
            raise NotFound(f"key slot {slot!r} is empty") from None

    def key_type(self, slot: str) -> KeyType:
        try:
            return self._slots[slot].key_type
        except KeyError:
            raise NotFound(f"key slot {slot!r} is empty") from None

    def sign(self, slot: str, message: bytes) -> bytes:
        """Sign like :func:`fabtrust.crypto.keys.sign_with` (P-256: DER ECDSA over SHA-256)."""
        _check_data(message, "message")
        entry = self._slot(slot, KeyUsage.SIGN)
        return sign_with(entry.private_key, entry.key_type, message)

    def hpke_open(self, slot: str, sealed: bytes, info: bytes) -> bytes:
        """Open an HPKE base-mode message (RFC 9180 5.1, 5.2) sealed to the key in ``slot``."""
        _check_data(sealed, "sealed message")
        _check_data(info, "info")
        entry = self._slot(slot, KeyUsage.AGREE)
        return open_with_private_key(entry.private_key, entry.key_type, sealed, info)

    def make_csr(self, slot: str, subject_serial: str, challenge_password: str) -> bytes:
        """A DER PKCS#10 request (RFC 2986) for the key in ``slot``, signed inside the element.

        The subject is a single serialNumber attribute; ``challenge_password`` goes into the
        PKCS#9 challengePassword attribute (RFC 2985 5.4.1, carried per RFC 2986 4.1).
        """
        if not isinstance(subject_serial, str) or not _SERIAL.fullmatch(subject_serial):
            raise InvalidInput("subject serial must be 1 to 64 PrintableString characters")
        if (
            not isinstance(challenge_password, str)
            or not 0 < len(challenge_password) <= MAX_CHALLENGE_PASSWORD
            or not challenge_password.isprintable()
        ):
            raise InvalidInput(
                f"challenge password must be 1 to {MAX_CHALLENGE_PASSWORD} printable characters"
            )
        entry = self._slot(slot, KeyUsage.SIGN)
        builder = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, subject_serial)]))
            .add_attribute(AttributeOID.CHALLENGE_PASSWORD, challenge_password.encode("utf-8"))
        )
        algorithm = hashes.SHA256() if entry.key_type is KeyType.P256 else None  # Ed25519: none
        key = entry.private_key
        if not isinstance(key, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
            raise PolicyViolation(f"the key in slot {slot!r} cannot sign a certificate request")
        csr = builder.sign(key, algorithm)
        return csr.public_bytes(serialization.Encoding.DER)

    # -- monotonic counters --------------------------------------------------------------------

    def counter(self, name: str) -> int:
        _check_name(name, "counter")
        return self._counters.get(name, 0)

    def increment(self, name: str) -> int:
        """Add one and return the new value. Counters never decrease (there is no setter); at
        :data:`MAX_COUNTER` the element refuses rather than wrap."""
        value = self.counter(name)
        if value >= MAX_COUNTER:
            raise PolicyViolation(f"counter {name!r} is exhausted")
        self._counters[name] = value + 1
        return value + 1

    def advance(self, name: str, value: int) -> int:
        """Raise counter ``name`` to ``value`` and return it, in one step: the same value is a no-op,
        a lower one is refused. The monotonic "set" a bootloader's security counter needs (TF-M's
        ``tfm_plat_set_nv_counter``, behind MCUboot's ``boot_nv_security_counter_update``), which
        would otherwise take up to 2**32 increments."""
        current = self.counter(name)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNTER:
            raise InvalidInput(f"a counter value must be an integer from 0 to {MAX_COUNTER}")
        if value < current:
            raise PolicyViolation(f"counter {name!r} is at {current}: it cannot go down to {value}")
        if value > current:
            self._counters[name] = value
        return value

    def counter_names(self) -> frozenset[str]:
        return frozenset(self._counters)

    # -- one-time-programmable fuses -----------------------------------------------------------

    def burn(self, name: str, value: bytes) -> None:
        """Burn ``value`` into OTP row ``name``. Burning the same value again is a no-op;
        a different value is refused."""
        _check_name(name, "OTP row")
        if not isinstance(value, bytes) or not 0 < len(value) <= MAX_OTP_BYTES:
            raise InvalidInput(f"OTP value must be 1 to {MAX_OTP_BYTES} bytes")
        current = self._otp.get(name)
        if current is not None and current != value:
            raise Conflict(f"OTP row {name!r} is already burnt with another value")
        self._otp[name] = value

    def otp(self, name: str) -> bytes | None:
        _check_name(name, "OTP row")
        return self._otp.get(name)

    def otp_names(self) -> frozenset[str]:
        return frozenset(self._otp)

    # -- sealed storage ------------------------------------------------------------------------

    def _aad(self, name: str) -> bytes:
        return _SEALED_AAD + self._uid.encode("ascii") + b"|" + name.encode("ascii")

    def store_sealed(self, name: str, data: bytes) -> None:
        """Keep ``data`` encrypted (AES-256-GCM, 96-bit random nonce) under the chip-unique key."""
        _check_name(name, "sealed object")
        _check_data(data, "sealed data")
        nonce = os.urandom(_NONCE_BYTES)
        self._sealed[name] = nonce + AESGCM(self._storage_key).encrypt(nonce, data, self._aad(name))

    def load_sealed(self, name: str) -> bytes:
        _check_name(name, "sealed object")
        try:
            blob = self._sealed[name]
        except KeyError:
            raise NotFound(f"no sealed object {name!r}") from None
        try:
            return AESGCM(self._storage_key).decrypt(
                blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], self._aad(name)
            )
        except InvalidTag:
            raise VerificationFailed(f"sealed object {name!r} does not open (tampered)") from None

    def sealed_blob(self, name: str) -> bytes:
        """The ciphertext flash holds for sealed object ``name`` (no secret)."""
        try:
            return self._sealed[name]
        except KeyError:
            raise NotFound(f"no sealed object {name!r}") from None

    def sealed_names(self) -> frozenset[str]:
        return frozenset(self._sealed)

    # -- flash ---------------------------------------------------------------------------------

    def flash_write(self, region: str, data: bytes) -> None:
        _check_name(region, "flash region")
        _check_data(data, "flash data")
        self._flash[region] = data

    def flash_read(self, region: str) -> bytes:
        _check_name(region, "flash region")
        try:
            return self._flash[region]
        except KeyError:
            raise NotFound(f"flash region {region!r} is empty") from None

    def flash_regions(self) -> frozenset[str]:
        return frozenset(self._flash)

    # -- no way out for the keys ---------------------------------------------------------------

    def __repr__(self) -> str:
        slots = ", ".join(f"{name}:{slot.key_type.value}" for name, slot in sorted(self._slots.items()))
        return f"SecureElement(uid={self._uid!r}, slots=[{slots}])"

    def _refuse(self) -> NoReturn:
        raise PolicyViolation("a secure element cannot be serialised or copied: its keys never leave it")

    def __getstate__(self) -> NoReturn:
        self._refuse()

    def __reduce_ex__(self, protocol: object) -> NoReturn:
        self._refuse()

    def __copy__(self) -> NoReturn:
        self._refuse()

    def __deepcopy__(self, memo: object) -> NoReturn:
        self._refuse()

    def _physical_clone(self) -> SecureElement:
        """Simulate a physical key-extraction attack: a new element with this one's UID, birth key
        and birth chain (nothing else). Not part of the element's interface: a real element has
        no such path; only :meth:`SiliconVendor.clone` uses it, to give tests a perfect clone."""
        clone = SecureElement(self._uid)
        clone._slots[BIRTH_SLOT] = self._slots[BIRTH_SLOT]
        clone._birth_chain = self._birth_chain
        return clone
