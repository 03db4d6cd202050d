"""CA keys sign X.509 structures through the key store: natively where the store keeps its keys in
this process (soft), through a stand-in whose sign() calls the store otherwise (PKCS#11)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.x509.oid import NameOID

from fabtrust.crypto.keys import KeyType, KeyUsage
from fabtrust.errors import InvalidInput
from fabtrust.keystore.base import KeyStore
from fabtrust.keystore.soft import SoftKeyStore
from fabtrust.pki.signing import ca_private_key, signature_hash

NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signing test")])


def _self_signed(store: KeyStore, label: str, key_type: KeyType) -> tuple[x509.Certificate, object]:
    info = store.generate(label, key_type, KeyUsage.SIGN)
    key = ca_private_key(store, info)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(NAME)
        .issuer_name(NAME)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, signature_hash(info))
    )
    return cert, key


@pytest.mark.parametrize("key_type", [KeyType.P256, KeyType.P384, KeyType.ED25519], ids=lambda k: k.value)
def test_soft_keys_sign_natively(tmp_path: Path, key_type: KeyType) -> None:
    store = SoftKeyStore.create(tmp_path / "ks", "signing-test-passphrase", scrypt_n=2**14)
    cert, key = _self_signed(store, f"ca-{key_type.value}", key_type)
    cert.verify_directly_issued_by(cert)
    assert type(key).__module__.startswith("cryptography")  # the library's own key object


@pytest.mark.parametrize("key_type", [KeyType.P256, KeyType.P384, KeyType.ED25519], ids=lambda k: k.value)
def test_hsm_keys_sign_through_the_store(pkcs11_keystore: KeyStore, key_type: KeyType) -> None:
    cert, key = _self_signed(pkcs11_keystore, f"ca-{key_type.value}", key_type)
    cert.verify_directly_issued_by(cert)
    assert type(key).__module__ == "fabtrust.pki.signing"  # a stand-in: the key stays in the token


def test_a_stand_in_refuses_the_wrong_hash_and_export(pkcs11_keystore: KeyStore) -> None:
    info = pkcs11_keystore.generate("ca-p256", KeyType.P256, KeyUsage.SIGN)
    key = ca_private_key(pkcs11_keystore, info)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    with pytest.raises(InvalidInput, match="signs with ECDSA and sha256"):
        key.sign(b"tbs", ec.ECDSA(hashes.SHA384()))
    with pytest.raises(InvalidInput, match="cannot be exported"):
        key.private_numbers()


def test_soft_signing_keys_only(tmp_path: Path) -> None:
    store = SoftKeyStore.create(tmp_path / "ks", "signing-test-passphrase", scrypt_n=2**14)
    info = store.generate("agree", KeyType.P256, KeyUsage.AGREE)
    with pytest.raises(InvalidInput, match="cannot sign"):
        ca_private_key(store, info)


PREHASHED_HASHES = [
    pytest.param(KeyType.P256, hashes.SHA256, id="p256"),
    pytest.param(KeyType.P384, hashes.SHA384, id="p384"),
]


@pytest.mark.parametrize(("key_type", "hash_type"), PREHASHED_HASHES)
def test_a_stand_in_signs_a_prehashed_digest_in_the_store(
    pkcs11_keystore: KeyStore, key_type: KeyType, hash_type: type[hashes.HashAlgorithm]
) -> None:
    """What MCUboot image signing asks of the key: ECDSA over a digest it hashed itself."""
    info = pkcs11_keystore.generate(f"fw-{key_type.value}", key_type, KeyUsage.SIGN)
    key = ca_private_key(pkcs11_keystore, info)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    h = hashes.Hash(hash_type())
    h.update(b"image header || body || protected TLVs")
    digest = h.finalize()
    signature = key.sign(digest, ec.ECDSA(Prehashed(hash_type())))
    key.public_key().verify(signature, digest, ec.ECDSA(Prehashed(hash_type())))
    # the message form still signs the message
    message_signature = key.sign(b"tbs", ec.ECDSA(hash_type()))
    key.public_key().verify(message_signature, b"tbs", ec.ECDSA(hash_type()))


@pytest.mark.parametrize(
    ("algorithm", "data", "match"),
    [
        pytest.param(
            ec.ECDSA(Prehashed(hashes.SHA384())),
            bytes(48),
            "signs with ECDSA and sha256",
            id="prehashed-sha384",
        ),
        pytest.param(
            ec.ECDSA(Prehashed(hashes.SHA3_256())),
            bytes(32),
            "signs with ECDSA and sha256",
            id="prehashed-sha3",
        ),
        pytest.param(
            ec.ECDSA(Prehashed(hashes.SHA512_256())),
            bytes(32),
            "signs with ECDSA and sha256",
            id="prehashed-sha512-256",
        ),
        pytest.param(
            ec.ECDSA(Prehashed(hashes.SHA256())), bytes(31), "32-byte SHA-256 digest", id="prehashed-short"
        ),
        pytest.param(ec.ECDSA(hashes.SHA3_256()), b"tbs", "signs with ECDSA and sha256", id="message-sha3"),
        pytest.param(
            ec.ECDSA(hashes.SHA256(), deterministic_signing=True), b"tbs", "deterministic", id="deterministic"
        ),
    ],
)
def test_a_stand_in_refuses_other_prehashed_forms(
    pkcs11_keystore: KeyStore, algorithm: ec.ECDSA, data: bytes, match: str
) -> None:
    info = pkcs11_keystore.generate("fw-p256", KeyType.P256, KeyUsage.SIGN)
    key = ca_private_key(pkcs11_keystore, info)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    with pytest.raises(InvalidInput, match=match):
        key.sign(data, algorithm)
