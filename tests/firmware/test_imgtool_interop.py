"""Interoperability with MCUboot's own ``imgtool`` (PyPI package, the venv's CLI), both ways.

(a) fabtrust writes, imgtool reads: ``imgtool verify`` accepts our signed images (P-256 and Ed25519,
KEYHASH and full public key) and our encrypted images once we have decrypted them; on the encrypted
image itself it reports an invalid hash, since the hash covers the plaintext. ``imgtool dumpinfo``
reads back the header and TLVs we wrote.
(b) imgtool writes, fabtrust reads: images from ``imgtool sign`` (plain and encrypted, AES-128 and
AES-256, ECIES-P256 and ECIES-X25519) pass :func:`verify_image` / :func:`decrypt_image` with version,
security counter and body intact.
With deterministic Ed25519 the two writers produce the same bytes.

A missing imgtool fails the suite (``pip install -e .[dev]`` installs it); nothing is skipped.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519

from fabtrust.errors import VerificationFailed
from fabtrust.firmware.image import Image, ImageVersion, decrypt_image, key_hash, sign_image, verify_image

BODY = os.urandom(5000) + b"tail"  # 5004 bytes: encrypted images get padded
SLOT_SIZE = "0x100000"


@pytest.fixture(scope="module")
def imgtool() -> str:
    found = shutil.which("imgtool", path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail("imgtool is not installed in the venv (it is a dev dependency: pip install -e '.[dev]')")
    return found


def run(imgtool: str, *args: str | Path, ok: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [imgtool, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )
    if ok:
        assert result.returncode == 0, f"imgtool {args[0]} failed: {result.stdout}{result.stderr}"
    return result


def write_private(
    path: Path, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | x25519.X25519PrivateKey
) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


def write_public(
    path: Path, key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | x25519.X25519PublicKey
) -> Path:
    path.write_bytes(
        key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return path


class Keys:
    """A signing key and an encryption key of one family, as objects and as PEM files."""

    def __init__(self, directory: Path, imgtool: str, family: str) -> None:
        directory.mkdir()
        if family == "p256":
            self.signer: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey = ec.generate_private_key(
                ec.SECP256R1()
            )
            self.recipient: ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey = ec.generate_private_key(
                ec.SECP256R1()
            )
            self.signer_pem = write_private(directory / "sign.pem", self.signer)
            self.recipient_private_pem = write_private(directory / "enc-private.pem", self.recipient)
        else:
            # this family's keys come from imgtool keygen
            self.signer_pem = directory / "sign.pem"
            self.recipient_private_pem = directory / "enc-private.pem"
            run(imgtool, "keygen", "-k", self.signer_pem, "-t", "ed25519")
            run(imgtool, "keygen", "-k", self.recipient_private_pem, "-t", "x25519")
            signer = serialization.load_pem_private_key(self.signer_pem.read_bytes(), password=None)
            recipient = serialization.load_pem_private_key(
                self.recipient_private_pem.read_bytes(), password=None
            )
            assert isinstance(signer, ed25519.Ed25519PrivateKey)
            assert isinstance(recipient, x25519.X25519PrivateKey)
            self.signer, self.recipient = signer, recipient
        self.public_pem = write_public(directory / "sign-public.pem", self.signer.public_key())
        self.recipient_pem = write_public(directory / "enc-public.pem", self.recipient.public_key())


@pytest.fixture(scope="module", params=["p256", "ed25519"])
def keys(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, imgtool: str) -> Keys:
    return Keys(tmp_path_factory.mktemp("keys") / request.param, imgtool, request.param)


def another_like(
    key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey,
) -> ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey:
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def imgtool_verify(imgtool: str, key: Path, image: Path) -> subprocess.CompletedProcess[str]:
    return run(imgtool, "verify", "-k", key, image, ok=False)


# --- (a) fabtrust writes, imgtool reads ------------------------------------------------------------


@pytest.mark.parametrize("embed_public_key", [False, True], ids=["keyhash", "full-public-key"])
def test_imgtool_verifies_our_signed_image(
    imgtool: str, keys: Keys, tmp_path: Path, embed_public_key: bool
) -> None:
    data = sign_image(
        BODY,
        version="1.2.3+4",
        security_counter=17,
        signing_key=keys.signer,
        embed_public_key=embed_public_key,
    )
    ours = verify_image(data, trusted_keys=[keys.signer.public_key()])
    path = tmp_path / "signed.bin"
    path.write_bytes(data)

    for key_file in (keys.public_pem, keys.signer_pem):  # imgtool takes either
        result = imgtool_verify(imgtool, key_file, path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Image was correctly validated" in result.stdout
        assert "Image version: 1.2.3+4" in result.stdout
        assert f"Image digest: {ours.digest.hex()}" in result.stdout

    other = write_public(tmp_path / "other.pem", another_like(keys.signer).public_key())
    refused = imgtool_verify(imgtool, other, path)
    assert refused.returncode != 0
    assert "No signature found for the given key" in refused.stdout


def test_imgtool_dumpinfo_reads_our_layout(imgtool: str, keys: Keys, tmp_path: Path) -> None:
    data = sign_image(
        BODY,
        version="7.8.9+10",
        security_counter=0x01020304,
        signing_key=keys.signer,
        encrypt_to=keys.recipient.public_key(),
        aes_key_bits=256,
    )
    path = tmp_path / "encrypted.bin"
    path.write_bytes(data)
    info = json.loads(run(imgtool, "dumpinfo", "-f", "json", path).stdout)
    image = Image.parse(data)
    header = info["header"]
    assert header["magic"] == 0x96F3B83D
    assert header["hdr_size"] == 0x200 == image.header.hdr_size
    assert header["img_size"] == image.header.img_size
    assert header["protected_tlv_size"] == image.header.protect_tlv_size
    assert header["flags"] == 0x08  # ENCRYPTED_AES256
    assert header["version"] == "7.8.9+10"
    assert [(t["type_name"], bytes.fromhex(t["data"])) for t in info["tlv_area"]["tlvs_prot"]] == [
        ("SEC_CNT", (0x01020304).to_bytes(4, "little"))
    ]
    names = [t["type_name"] for t in info["tlv_area"]["tlvs"]]
    signature = "ECDSASIG" if isinstance(keys.signer, ec.EllipticCurvePrivateKey) else "ED25519"
    wrap = "ENCEC256" if isinstance(keys.signer, ec.EllipticCurvePrivateKey) else "ENCX25519"
    assert names == ["SHA256", "KEYHASH", signature, wrap]
    assert bytes.fromhex(info["tlv_area"]["tlvs"][1]["data"]) == key_hash(keys.signer.public_key())


@pytest.mark.parametrize("bits", [128, 256])
def test_imgtool_verifies_our_encrypted_image_once_we_decrypt_it(
    imgtool: str, keys: Keys, tmp_path: Path, bits: int
) -> None:
    data = sign_image(
        BODY,
        version="2.0.0+1",
        security_counter=3,
        signing_key=keys.signer,
        encrypt_to=keys.recipient.public_key(),
        aes_key_bits=bits,
    )
    encrypted = tmp_path / "encrypted.bin"
    encrypted.write_bytes(data)
    # the hash covers the plaintext, so imgtool cannot verify the ciphertext (RECIPES.md)
    refused = imgtool_verify(imgtool, keys.public_pem, encrypted)
    assert refused.returncode != 0
    assert "Image has an invalid hash" in refused.stdout

    decrypted = tmp_path / "decrypted.bin"
    decrypted.write_bytes(decrypt_image(data, keys.recipient))
    result = imgtool_verify(imgtool, keys.public_pem, decrypted)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Image version: 2.0.0+1" in result.stdout


# --- (b) imgtool writes, fabtrust reads ------------------------------------------------------------


def imgtool_sign(imgtool: str, keys: Keys, tmp_path: Path, *extra: str | Path, body: bytes = BODY) -> bytes:
    source, target = tmp_path / "body.bin", tmp_path / "imgtool-signed.bin"
    source.write_bytes(body)
    run(
        imgtool,
        "sign",
        "--key",
        keys.signer_pem,
        "--version",
        "3.1.4+159",
        "--security-counter",
        "42",
        "--header-size",
        "0x200",
        "--pad-header",
        "--slot-size",
        SLOT_SIZE,
        *extra,
        source,
        target,
    )
    return target.read_bytes()


def test_we_verify_imgtool_signed_images(imgtool: str, keys: Keys, tmp_path: Path) -> None:
    data = imgtool_sign(imgtool, keys, tmp_path)
    verified = verify_image(data, trusted_keys=[keys.signer.public_key()], min_security_counter=42)
    assert verified.version == ImageVersion(3, 1, 4, 159)
    assert verified.security_counter == 42
    assert not verified.encrypted
    assert bytes(verified.body) == BODY
    assert verified.key_hash == key_hash(keys.signer.public_key())
    assert verified.digest == hashlib.sha256(data[: Image.parse(data).hashed_size]).digest()
    with pytest.raises(VerificationFailed, match="no signature by a trusted key"):
        verify_image(data, trusted_keys=[another_like(keys.signer).public_key()])


def test_we_verify_imgtool_images_carrying_the_full_public_key(
    imgtool: str, keys: Keys, tmp_path: Path
) -> None:
    data = imgtool_sign(imgtool, keys, tmp_path, "--public-key-format", "full")
    verified = verify_image(data, trusted_keys=[key_hash(keys.signer.public_key())])
    assert verified.key_hash == key_hash(keys.signer.public_key())
    assert bytes(verified.body) == BODY


@pytest.mark.parametrize("bits", ["128", "256"])
def test_we_decrypt_and_verify_imgtool_encrypted_images(
    imgtool: str, keys: Keys, tmp_path: Path, bits: str
) -> None:
    data = imgtool_sign(imgtool, keys, tmp_path, "--encrypt", keys.recipient_pem, "--encrypt-keylen", bits)
    image = Image.parse(data)
    assert image.header.aes_key_bits == int(bits)
    assert bytes(image.body[: len(BODY)]) != BODY

    verified = verify_image(data, trusted_keys=[keys.signer.public_key()], decryption_key=keys.recipient)
    assert verified.version == ImageVersion(3, 1, 4, 159)
    assert verified.security_counter == 42
    assert verified.encrypted
    # imgtool zero-pads header + body to 16 bytes before encrypting
    assert bytes(verified.body[: len(BODY)]) == BODY
    assert bytes(verified.body[len(BODY) :]) == bytes(image.header.img_size - len(BODY))

    clear = decrypt_image(data, keys.recipient)
    assert clear == verified.image
    assert verify_image(clear, trusted_keys=[keys.signer.public_key()]).digest == verified.digest
    with pytest.raises(VerificationFailed, match="encrypted"):
        verify_image(data, trusted_keys=[keys.signer.public_key()])

    # imgtool agrees with our decryption
    path = tmp_path / "decrypted.bin"
    path.write_bytes(clear)
    assert imgtool_verify(imgtool, keys.public_pem, path).returncode == 0


def test_imgtool_clear_output_equals_our_decryption_layout(imgtool: str, keys: Keys, tmp_path: Path) -> None:
    # `imgtool sign --clear` writes an encryption-capable image with a plaintext body: the same layout
    # decrypt_image produces, so it verifies without a decryption key
    data = imgtool_sign(imgtool, keys, tmp_path, "--encrypt", keys.recipient_pem, "--clear")
    verified = verify_image(data, trusted_keys=[keys.signer.public_key()])
    assert verified.encrypted
    assert bytes(verified.body[: len(BODY)]) == BODY


@pytest.mark.parametrize(
    ("header_size", "load_addr"),
    [pytest.param(0x200, 0, id="header-0x200"), pytest.param(0x20, 0x2000_0000, id="header-0x20/ram-load")],
)
def test_ed25519_images_are_byte_identical_to_imgtool(
    imgtool: str, tmp_path: Path, header_size: int, load_addr: int
) -> None:
    signer = ed25519.Ed25519PrivateKey.generate()
    key_file = write_private(tmp_path / "ed25519.pem", signer)
    source, target = tmp_path / "body.bin", tmp_path / "imgtool.bin"
    source.write_bytes(BODY)
    args: list[str | Path] = ["sign", "--key", key_file, "--version", "5.6.7+8", "--security-counter", "9"]
    args += ["--header-size", hex(header_size), "--pad-header", "--slot-size", SLOT_SIZE]
    if load_addr:
        args += ["--load-addr", hex(load_addr)]
    run(imgtool, *args, source, target)
    ours = sign_image(
        BODY,
        version="5.6.7+8",
        security_counter=9,
        signing_key=signer,
        header_size=header_size,
        load_addr=load_addr,
    )
    assert target.read_bytes() == ours
