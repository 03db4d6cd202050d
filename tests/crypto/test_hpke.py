"""HPKE base mode (RFC 9180): both open paths against cryptography's seal, tampering and refusals.

Known-answer vectors: RFC 9180 Appendix A has none for our suites. Its base-mode vectors are
A.1 DHKEM(X25519)/HKDF-SHA256/AES-128-GCM, A.2 .../ChaCha20Poly1305, A.3 DHKEM(P-256)/
HKDF-SHA256/AES-128-GCM, A.4 DHKEM(P-256)/HKDF-SHA512/AES-128-GCM, A.5 DHKEM(P-256)/HKDF-SHA256/
ChaCha20Poly1305, A.6 DHKEM(P-521)/HKDF-SHA512/AES-256-GCM and A.7 (export-only AEAD); ours all
use AES-256-GCM with DHKEM(P-256)/HKDF-SHA256, DHKEM(P-384)/HKDF-SHA384 or DHKEM(X25519)/
HKDF-SHA256, so no published answer applies. ``open_with_exchange`` (our own key schedule) is
instead checked against cryptography's HPKE, which seals every message here.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from fabtrust.crypto import hpke
from fabtrust.crypto.keys import (
    KeyType,
    PrivateKey,
    generate_private_key,
    key_type_of,
    load_public_key,
    spki_der,
)
from fabtrust.errors import FabtrustError, InvalidInput, VerificationFailed

SUITES = [
    pytest.param(KeyType.P256, id="p256"),
    pytest.param(KeyType.P384, id="p384"),
    pytest.param(KeyType.X25519, id="x25519"),
]
ENC_LEN = {KeyType.P256: 65, KeyType.P384: 97, KeyType.X25519: 32}
TAG_LEN = 16
INFO = b"fabtrust.package/v1"
PLAINTEXT = b"device-class secret"


def software_exchange(private_key: PrivateKey, key_type: KeyType) -> Callable[[bytes], bytes]:
    """What a key store's exchange() does, with a software key; checks what it is handed."""

    def exchange(peer_der: bytes) -> bytes:
        peer = load_public_key(peer_der)
        assert key_type_of(peer) is key_type
        if isinstance(private_key, ec.EllipticCurvePrivateKey):
            assert isinstance(peer, ec.EllipticCurvePublicKey)
            return private_key.exchange(ec.ECDH(), peer)
        assert isinstance(private_key, x25519.X25519PrivateKey)
        assert isinstance(peer, x25519.X25519PublicKey)
        return private_key.exchange(peer)

    return exchange


class Recipient:
    def __init__(self, key_type: KeyType) -> None:
        self.key_type = key_type
        self.private_key = generate_private_key(key_type)
        self.public_der = spki_der(self.private_key.public_key())

    def open_private(self, sealed: bytes, info: bytes = INFO) -> bytes:
        return hpke.open_with_private_key(self.private_key, self.key_type, sealed, info)

    def open_exchange(self, sealed: bytes, info: bytes = INFO) -> bytes:
        exchange = software_exchange(self.private_key, self.key_type)
        return hpke.open_with_exchange(self.public_der, sealed, info, exchange)

    def openers(self) -> list[Callable[[bytes, bytes], bytes]]:
        return [self.open_private, self.open_exchange]


RECIPIENTS = {kt: Recipient(kt) for kt in (KeyType.P256, KeyType.P384, KeyType.X25519)}


@pytest.mark.parametrize("key_type", SUITES)
@pytest.mark.parametrize(
    ("plaintext", "info"),
    [
        pytest.param(PLAINTEXT, INFO, id="short"),
        pytest.param(b"", INFO, id="empty-plaintext"),
        pytest.param(b"\x00\xff" * 40_000, INFO, id="80k-plaintext"),
        pytest.param(PLAINTEXT, b"", id="empty-info"),
    ],
)
def test_seal_then_open_both_ways(key_type: KeyType, plaintext: bytes, info: bytes) -> None:
    recipient = RECIPIENTS[key_type]
    sealed = hpke.seal(recipient.public_der, plaintext, info)
    assert len(sealed) == ENC_LEN[key_type] + len(plaintext) + TAG_LEN
    assert plaintext not in sealed or not plaintext
    assert recipient.open_private(sealed, info) == plaintext
    assert recipient.open_exchange(sealed, info) == plaintext


@pytest.mark.parametrize("key_type", SUITES)
def test_each_seal_is_fresh(key_type: KeyType) -> None:
    recipient = RECIPIENTS[key_type]
    first, second = (hpke.seal(recipient.public_der, PLAINTEXT, INFO) for _ in range(2))
    assert first[: ENC_LEN[key_type]] != second[: ENC_LEN[key_type]]  # a new ephemeral key each time
    assert first != second


@pytest.mark.parametrize("key_type", SUITES)
def test_every_flipped_bit_fails_verification(key_type: KeyType) -> None:
    recipient = RECIPIENTS[key_type]
    sealed = hpke.seal(recipient.public_der, PLAINTEXT, INFO)
    for bit in range(len(sealed) * 8):
        tampered = bytearray(sealed)
        tampered[bit // 8] ^= 1 << (bit % 8)
        for open_ in recipient.openers():
            with pytest.raises(VerificationFailed):
                open_(bytes(tampered), INFO)


@pytest.mark.parametrize("key_type", SUITES)
@pytest.mark.parametrize(
    "wrong_info",
    [
        pytest.param(b"fabtrust.package/v2", id="other"),
        pytest.param(b"", id="empty"),
        pytest.param(INFO + b"\x00", id="extended"),
        pytest.param(INFO[:-1], id="shortened"),
    ],
)
def test_info_mismatch_fails_verification(key_type: KeyType, wrong_info: bytes) -> None:
    recipient = RECIPIENTS[key_type]
    sealed = hpke.seal(recipient.public_der, PLAINTEXT, INFO)
    for open_ in recipient.openers():
        with pytest.raises(VerificationFailed):
            open_(sealed, wrong_info)


Tamper = Callable[[bytes, int], bytes]

# Too short to hold enc and a tag: InvalidInput ("truncated"). Long enough but altered: the AEAD
# (or the ephemeral key) cannot tell a cut from any other change, so VerificationFailed.
LENGTH_CHANGES = [
    pytest.param(lambda b, enc: b"", InvalidInput, id="truncated/empty"),
    pytest.param(lambda b, enc: b[:1], InvalidInput, id="truncated/one-byte"),
    pytest.param(lambda b, enc: b[:enc], InvalidInput, id="truncated/enc-only"),
    pytest.param(lambda b, enc: b[: enc + TAG_LEN - 1], InvalidInput, id="truncated/one-short-of-tag"),
    pytest.param(lambda b, enc: b[: enc + TAG_LEN], VerificationFailed, id="cut/to-enc-and-tag"),
    pytest.param(lambda b, enc: b[:-1], VerificationFailed, id="cut/last-byte"),
    pytest.param(lambda b, enc: b[1:], VerificationFailed, id="cut/first-byte"),
    pytest.param(lambda b, enc: b + b"\x00", VerificationFailed, id="extended/one-byte"),
    pytest.param(lambda b, enc: b[:enc] + b[enc + 1 :], VerificationFailed, id="cut/ciphertext-byte"),
    pytest.param(lambda b, enc: b[enc:] + b[:enc], VerificationFailed, id="reordered/enc-last"),
]


@pytest.mark.parametrize("key_type", SUITES)
@pytest.mark.parametrize(("tamper", "error"), LENGTH_CHANGES)
def test_length_changes(key_type: KeyType, tamper: Tamper, error: type[FabtrustError]) -> None:
    recipient = RECIPIENTS[key_type]
    sealed = tamper(hpke.seal(recipient.public_der, PLAINTEXT, INFO), ENC_LEN[key_type])
    for open_ in recipient.openers():
        with pytest.raises(error) as err:
            open_(sealed, INFO)
        assert type(err.value) is error


@pytest.mark.parametrize("key_type", SUITES)
def test_wrong_recipient_fails_verification(key_type: KeyType) -> None:
    sealed = hpke.seal(RECIPIENTS[key_type].public_der, PLAINTEXT, INFO)
    other = Recipient(key_type)
    for open_ in other.openers():
        with pytest.raises(VerificationFailed):
            open_(sealed, INFO)


@pytest.mark.parametrize(
    ("sealed_to", "opened_by"),
    [
        pytest.param(KeyType.P384, KeyType.P256, id="p384-opened-as-p256"),
        pytest.param(KeyType.P256, KeyType.X25519, id="p256-opened-as-x25519"),
        pytest.param(KeyType.X25519, KeyType.P256, id="x25519-opened-as-p256"),
    ],
)
def test_message_for_another_suite_fails(sealed_to: KeyType, opened_by: KeyType) -> None:
    sealed = hpke.seal(RECIPIENTS[sealed_to].public_der, b"x" * 64, INFO)
    recipient = RECIPIENTS[opened_by]
    for open_ in recipient.openers():
        with pytest.raises(VerificationFailed):
            open_(sealed, INFO)


# RFC 7748 / RFC 9180 7.1.4: an X25519 ephemeral key of small order gives an all-zero shared
# secret, which must be refused. (Zero and one are two of the curve's small-order u-coordinates.)
LOW_ORDER_POINTS = [
    pytest.param(bytes(32), id="u=0"),
    pytest.param(b"\x01" + bytes(31), id="u=1"),
]


def _x25519_seal_with_dh(enc: bytes, recipient_raw: bytes, dh: bytes, plaintext: bytes, info: bytes) -> bytes:
    """Base-mode Seal for DHKEM(X25519, HKDF-SHA256)/HKDF-SHA256/AES-256-GCM with a chosen ``enc`` and
    DH output: an independent transcription of RFC 9180 4.1 (Encap), 5.1 (KeySchedule) and 5.2."""

    def extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
        return hmac.new(salt or bytes(32), b"HPKE-v1" + suite_id + label + ikm, hashlib.sha256).digest()

    def expand(suite_id: bytes, prk: bytes, label: bytes, context: bytes, length: int) -> bytes:
        labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + context
        return HKDFExpand(hashes.SHA256(), length, labeled).derive(prk)

    kem_suite, hpke_suite = b"KEM\x00\x20", b"HPKE\x00\x20\x00\x01\x00\x02"
    eae_prk = extract(kem_suite, b"", b"eae_prk", dh)
    shared_secret = expand(kem_suite, eae_prk, b"shared_secret", enc + recipient_raw, 32)
    context = (
        b"\x00" + extract(hpke_suite, b"", b"psk_id_hash", b"") + extract(hpke_suite, b"", b"info_hash", info)
    )
    secret = extract(hpke_suite, shared_secret, b"secret", b"")
    key = expand(hpke_suite, secret, b"key", context, 32)
    nonce = expand(hpke_suite, secret, b"base_nonce", context, 12)
    return enc + AESGCM(key).encrypt(nonce, plaintext, b"")


def test_independent_seal_opens() -> None:
    # Checks the transcription above against cryptography's HPKE, so the next test can trust it.
    recipient = RECIPIENTS[KeyType.X25519]
    assert isinstance(recipient.private_key, x25519.X25519PrivateKey)
    recipient_raw = recipient.private_key.public_key().public_bytes_raw()
    ephemeral = x25519.X25519PrivateKey.generate()
    dh = ephemeral.exchange(recipient.private_key.public_key())
    sealed = _x25519_seal_with_dh(
        ephemeral.public_key().public_bytes_raw(), recipient_raw, dh, PLAINTEXT, INFO
    )
    assert recipient.open_private(sealed, INFO) == PLAINTEXT
    assert recipient.open_exchange(sealed, INFO) == PLAINTEXT


@pytest.mark.parametrize("point", LOW_ORDER_POINTS)
def test_x25519_low_order_ephemeral_key_is_refused(point: bytes) -> None:
    # Anyone can build a message on a small-order ephemeral key whose "shared secret" is all zeros
    # (RFC 9180 7.1.4 requires the recipient to refuse it), so the AEAD alone does not catch it.
    recipient = RECIPIENTS[KeyType.X25519]
    assert isinstance(recipient.private_key, x25519.X25519PrivateKey)
    recipient_raw = recipient.private_key.public_key().public_bytes_raw()
    crafted = _x25519_seal_with_dh(point, recipient_raw, bytes(32), PLAINTEXT, INFO)
    with pytest.raises(VerificationFailed):
        recipient.open_private(crafted, INFO)
    # A backend whose exchange hands back the all-zero output instead of refusing it.
    with pytest.raises(VerificationFailed):
        hpke.open_with_exchange(recipient.public_der, crafted, INFO, lambda peer: bytes(32))


def test_exchange_errors_propagate() -> None:
    recipient = RECIPIENTS[KeyType.P256]
    sealed = hpke.seal(recipient.public_der, PLAINTEXT, INFO)

    def unavailable(peer: bytes) -> bytes:
        raise InvalidInput("key is a signing key")

    with pytest.raises(InvalidInput, match="signing key"):
        hpke.open_with_exchange(recipient.public_der, sealed, INFO, unavailable)


def _public(key_type: KeyType) -> bytes:
    return spki_der(generate_private_key(key_type).public_key())


NOT_RECIPIENTS = [
    pytest.param(lambda: _public(KeyType.ED25519), "ed25519", id="ed25519"),
    pytest.param(lambda: _public(KeyType.MLDSA65), "ml-dsa-65", id="ml-dsa-65"),
    pytest.param(lambda: spki_der(ec.generate_private_key(ec.SECP521R1()).public_key()), "curve", id="p521"),
    pytest.param(lambda: b"not DER", "SubjectPublicKeyInfo", id="garbage"),
    pytest.param(lambda: b"", "SubjectPublicKeyInfo", id="empty"),
]


@pytest.mark.parametrize(("make_der", "fragment"), NOT_RECIPIENTS)
def test_unsuitable_recipient_is_refused(make_der: Callable[[], bytes], fragment: str) -> None:
    der = make_der()
    with pytest.raises(InvalidInput) as err:
        hpke.seal(der, PLAINTEXT, INFO)
    assert fragment in err.value.message
    called: list[bytes] = []
    with pytest.raises(InvalidInput) as err:
        hpke.open_with_exchange(der, b"\x04" * 200, INFO, lambda peer: called.append(peer) or b"")
    assert fragment in err.value.message
    assert called == []  # refused before the key store is asked for anything


@pytest.mark.parametrize(
    ("key_type", "fragment"),
    [
        pytest.param(KeyType.ED25519, "ed25519", id="ed25519"),
        pytest.param(KeyType.MLDSA65, "ml-dsa-65", id="ml-dsa-65"),
    ],
)
def test_signing_private_key_cannot_open(key_type: KeyType, fragment: str) -> None:
    with pytest.raises(InvalidInput) as err:
        hpke.open_with_private_key(generate_private_key(key_type), key_type, b"\x04" * 200, INFO)
    assert fragment in err.value.message


@pytest.mark.parametrize(
    ("key_type", "claimed"),
    [
        pytest.param(KeyType.P384, KeyType.P256, id="p384-key-claimed-p256"),
        pytest.param(KeyType.P256, KeyType.P384, id="p256-key-claimed-p384"),
        pytest.param(KeyType.X25519, KeyType.P256, id="x25519-key-claimed-p256"),
        pytest.param(KeyType.P256, KeyType.X25519, id="p256-key-claimed-x25519"),
        pytest.param(KeyType.ED25519, KeyType.X25519, id="ed25519-key-claimed-x25519"),
    ],
)
def test_private_key_of_another_type_is_refused(key_type: KeyType, claimed: KeyType) -> None:
    sealed = hpke.seal(RECIPIENTS[claimed].public_der, PLAINTEXT, INFO)
    with pytest.raises(InvalidInput):
        hpke.open_with_private_key(generate_private_key(key_type), claimed, sealed, INFO)


def test_exchange_is_handed_the_senders_ephemeral_key() -> None:
    recipient = RECIPIENTS[KeyType.P256]
    sealed = hpke.seal(recipient.public_der, PLAINTEXT, INFO)
    seen: list[bytes] = []

    def exchange(peer: bytes) -> bytes:
        seen.append(peer)
        return software_exchange(recipient.private_key, KeyType.P256)(peer)

    assert hpke.open_with_exchange(recipient.public_der, sealed, INFO, exchange) == PLAINTEXT
    [peer_der] = seen
    peer = serialization.load_der_public_key(peer_der)
    assert isinstance(peer, ec.EllipticCurvePublicKey)
    assert (
        peer.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        == (sealed[:65])
    )
