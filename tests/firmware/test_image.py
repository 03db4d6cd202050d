"""The MCUboot image format: round trips for both signing/encryption families and both AES key sizes,
versions and security counters, every structural refusal, tampering, wrong keys, and a fuzz that
only fabtrust errors ever leave the parser and verifier.

Images with hand-made TLV areas come from :func:`assemble`, a small independent writer of the format
(it is checked against :func:`sign_image` byte for byte with deterministic Ed25519), so that refusals
are shown on correctly hashed and signed images: the structural rule fires, not the hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import struct
from collections.abc import Callable, Sequence

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.hashes import SHA256
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fabtrust.errors import FabtrustError, InvalidInput, PolicyViolation, VerificationFailed
from fabtrust.firmware.image import (
    MAX_IMAGE,
    Image,
    ImageFlag,
    ImageVersion,
    TlvType,
    VerifiedImage,
    decrypt_image,
    key_hash,
    sign_image,
    verify_image,
)

# Keys are made once per test session (at import), never stored.
P256 = ec.generate_private_key(ec.SECP256R1())
ED25519 = ed25519.Ed25519PrivateKey.generate()
P256_ENC = ec.generate_private_key(ec.SECP256R1())
X25519_ENC = x25519.X25519PrivateKey.generate()
OTHER_P256 = ec.generate_private_key(ec.SECP256R1())
OTHER_ED25519 = ed25519.Ed25519PrivateKey.generate()

SIGNERS: dict[str, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey] = {
    "p256": P256,
    "ed25519": ED25519,
}
RECIPIENTS: dict[str, ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey] = {
    "p256": P256_ENC,
    "x25519": X25519_ENC,
}
BODY = bytes(range(256)) * 3 + b"odd tail"  # 776 bytes: not a multiple of 16
MAGIC = 0x96F3B83D


def spki(key: ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | x25519.X25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


# --- an independent writer for hand-made images ----------------------------------------------------


def tlv(tlv_type: int, value: bytes) -> bytes:
    return struct.pack("<HH", tlv_type, len(value)) + value


def area(magic: int, entries: Sequence[bytes]) -> bytes:
    payload = b"".join(entries)
    return struct.pack("<HH", magic, 4 + len(payload)) + payload


def sec_cnt(value: int) -> bytes:
    return tlv(0x50, struct.pack("<I", value))


def signature_tlvs(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey, digest: bytes) -> list[bytes]:
    hashed = hashlib.sha256(spki(key.public_key())).digest()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return [tlv(0x01, hashed), tlv(0x22, key.sign(digest, ec.ECDSA(Prehashed(SHA256()))))]
    return [tlv(0x01, hashed), tlv(0x24, key.sign(digest))]


def assemble(
    body: bytes = BODY,
    *,
    protected: Sequence[bytes] = (sec_cnt(7),),
    signers: Sequence[ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey] = (P256,),
    extra: Sequence[bytes] = (),
    flags: int = 0,
    hdr_size: int = 0x200,
    with_sha: bool = True,
) -> bytes:
    """Header (version 1.2.3+4, padding 0xff), body, protected area, then SHA256, each signer's
    KEYHASH and signature, and ``extra`` TLVs, hashed and signed over the plaintext."""
    prot = area(0x6908, protected) if protected else b""
    header = struct.pack("<IIHHIIBBHII", MAGIC, 0, hdr_size, len(prot), len(body), flags, 1, 2, 3, 4, 0)
    header = header.ljust(hdr_size, b"\xff")
    digest = hashlib.sha256(header + body + prot).digest()
    entries = [tlv(0x10, digest)] if with_sha else []
    for key in signers:
        entries += signature_tlvs(key, digest)
    entries += extra
    return header + body + prot + area(0x6907, entries)


def test_the_test_writer_matches_sign_image_byte_for_byte() -> None:
    # Ed25519 is deterministic, so the whole image is.
    ours = sign_image(BODY, version="1.2.3+4", security_counter=7, signing_key=ED25519)
    assert assemble(signers=[ED25519]) == ours


# --- round trips ----------------------------------------------------------------------------------

ROUND_TRIPS = [
    pytest.param("p256", None, 128, id="ok/p256/plain"),
    pytest.param("p256", "p256", 128, id="ok/p256/ecies-p256/aes128"),
    pytest.param("p256", "p256", 256, id="ok/p256/ecies-p256/aes256"),
    pytest.param("ed25519", None, 128, id="ok/ed25519/plain"),
    pytest.param("ed25519", "x25519", 128, id="ok/ed25519/ecies-x25519/aes128"),
    pytest.param("ed25519", "x25519", 256, id="ok/ed25519/ecies-x25519/aes256"),
]


@pytest.mark.parametrize(("signer_name", "recipient_name", "bits"), ROUND_TRIPS)
def test_round_trip(signer_name: str, recipient_name: str | None, bits: int) -> None:
    signer = SIGNERS[signer_name]
    recipient = RECIPIENTS[recipient_name] if recipient_name else None
    data = sign_image(
        BODY,
        version="1.2.3+4",
        security_counter=7,
        signing_key=signer,
        encrypt_to=recipient.public_key() if recipient else None,
        aes_key_bits=bits,
    )

    image = Image.parse(data)
    header = image.header
    assert (header.hdr_size, header.protect_tlv_size, header.load_addr) == (0x200, 12, 0)
    assert header.version == ImageVersion(1, 2, 3, 4)
    assert image.security_counter == 7
    assert header.encrypted is (recipient is not None)
    assert header.aes_key_bits == (bits if recipient else None)
    assert data[32:0x200] == b"\xff" * (0x200 - 32)
    expected_sig = TlvType.ECDSA_SIG if signer_name == "p256" else TlvType.ED25519
    assert [s.signature_type for s in image.signatures] == [expected_sig]
    assert image.signatures[0].key == hashlib.sha256(spki(signer.public_key())).digest()

    trusted = [signer.public_key()]
    if recipient is None:
        assert header.img_size == len(BODY)
        assert bytes(image.body) == BODY
        verified = verify_image(data, trusted_keys=trusted)
        assert verified.image is data
    else:
        # imgtool pads header + body to a 16-byte boundary before encrypting
        assert (0x200 + header.img_size) % 16 == 0
        assert len(BODY) <= header.img_size < len(BODY) + 16
        assert image.wrapped_key is not None
        assert image.wrapped_key.scheme == (
            TlvType.ENC_EC256 if recipient_name == "p256" else TlvType.ENC_X25519
        )
        assert len(image.wrapped_key.cipherkey) == bits // 8
        assert bytes(image.body[: len(BODY)]) != BODY
        with pytest.raises(VerificationFailed, match="encrypted"):
            verify_image(data, trusted_keys=trusted)
        verified = verify_image(data, trusted_keys=trusted, decryption_key=recipient)
        clear = decrypt_image(data, recipient)
        assert clear == verified.image
        assert len(clear) == len(data)
        # header and TLVs untouched; only the body differs
        assert clear[:0x200] == data[:0x200]
        assert clear[image.body_end :] == data[image.body_end :]
        again = verify_image(clear, trusted_keys=trusted)
        assert again.digest == verified.digest

    assert isinstance(verified, VerifiedImage)
    assert bytes(verified.body[: len(BODY)]) == BODY
    assert bytes(verified.body[len(BODY) :]) == bytes(header.img_size - len(BODY))
    assert str(verified.version) == "1.2.3+4"
    assert verified.security_counter == 7
    assert verified.encrypted is (recipient is not None)
    assert verified.key_hash == key_hash(signer.public_key())
    assert verified.digest == hashlib.sha256(verified.image[: image.hashed_size]).digest() == image.sha256


def test_each_encryption_uses_a_fresh_image_key() -> None:
    first, second = (
        sign_image(
            BODY, version="1.0.0", security_counter=1, signing_key=P256, encrypt_to=P256_ENC.public_key()
        )
        for _ in range(2)
    )
    assert Image.parse(first).body != Image.parse(second).body
    assert verify_image(first, trusted_keys=[P256.public_key()], decryption_key=P256_ENC).body == BODY.ljust(
        Image.parse(first).header.img_size, b"\0"
    )


@pytest.mark.parametrize(
    ("header_size", "load_addr", "flags"),
    [
        pytest.param(0x20, 0, ImageFlag(0), id="ok/bare-header"),
        pytest.param(0x400, 0x2000_0000, ImageFlag.RAM_LOAD, id="ok/ram-load"),
    ],
)
def test_header_size_and_load_address(header_size: int, load_addr: int, flags: ImageFlag) -> None:
    data = sign_image(
        BODY,
        version="0.9",
        security_counter=0,
        signing_key=ED25519,
        header_size=header_size,
        load_addr=load_addr,
    )
    header = Image.parse(data).header
    assert (header.hdr_size, header.load_addr, header.flags) == (header_size, load_addr, flags)
    verified = verify_image(data, trusted_keys=[ED25519.public_key()])
    assert bytes(verified.body) == BODY
    assert verified.version == ImageVersion(0, 9, 0, 0)


def test_full_public_key_verifies_against_a_trusted_key_hash() -> None:
    data = sign_image(BODY, version="1.2.3", security_counter=3, signing_key=P256, embed_public_key=True)
    image = Image.parse(data)
    assert image.signatures[0].key_type == TlvType.PUBKEY
    assert image.signatures[0].key == spki(P256.public_key())
    verified = verify_image(data, trusted_keys=[key_hash(P256.public_key())])
    assert verified.key_hash == key_hash(P256.public_key())
    # the same key known only by hash cannot check an image that carries only the hash
    keyhash_only = sign_image(BODY, version="1.2.3", security_counter=3, signing_key=P256)
    with pytest.raises(VerificationFailed, match="no signature by a trusted key"):
        verify_image(keyhash_only, trusted_keys=[key_hash(P256.public_key())])


def test_several_signatures_any_trusted_one_suffices() -> None:
    data = assemble(signers=[P256, ED25519])
    assert verify_image(data, trusted_keys=[ED25519.public_key()]).key_hash == key_hash(ED25519.public_key())
    assert verify_image(data, trusted_keys=[P256.public_key()]).key_hash == key_hash(P256.public_key())


def test_a_bad_signature_by_an_untrusted_key_is_ignored_but_by_a_trusted_key_is_fatal() -> None:
    digest_placeholder = bytes(64)
    bogus = [tlv(0x01, key_hash(ED25519.public_key())), tlv(0x24, digest_placeholder)]
    data = assemble(signers=[P256], extra=bogus)
    assert verify_image(data, trusted_keys=[P256.public_key()]).key_hash == key_hash(P256.public_key())
    with pytest.raises(VerificationFailed, match="does not verify"):
        verify_image(data, trusted_keys=[P256.public_key(), ED25519.public_key()])


def test_signature_type_must_match_the_named_key() -> None:
    # the KEYHASH names the P-256 key, the signature after it is an Ed25519 one
    digest_tlvs = signature_tlvs(ED25519, bytes(32))
    data = assemble(signers=[], extra=[tlv(0x01, key_hash(P256.public_key())), digest_tlvs[1]])
    with pytest.raises(VerificationFailed, match="cannot come from"):
        verify_image(data, trusted_keys=[P256.public_key()])


def test_dependencies_and_boot_record_are_read() -> None:
    dependency = struct.pack("<B3xBBHI", 1, 2, 3, 4, 5)
    data = assemble(protected=[sec_cnt(9), tlv(0x40, dependency), tlv(0x60, b"\xa1\x01\x02")])
    verified = verify_image(data, trusted_keys=[P256.public_key()])
    assert verified.security_counter == 9
    assert [(d.image_id, d.min_version) for d in verified.dependencies] == [(1, ImageVersion(2, 3, 4, 5))]


# --- versions and counters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("1", (1, 0, 0, 0), id="ok/major-only"),
        pytest.param("1.2", (1, 2, 0, 0), id="ok/major-minor"),
        pytest.param("1.2.3", (1, 2, 3, 0), id="ok/no-build"),
        pytest.param("1.2.3+4", (1, 2, 3, 4), id="ok/full"),
        pytest.param("0.0.0+0", (0, 0, 0, 0), id="ok/zero"),
        pytest.param("255.255.65535+4294967295", (255, 255, 65535, 4294967295), id="ok/maximum"),
    ],
)
def test_version_parses(text: str, expected: tuple[int, int, int, int]) -> None:
    version = ImageVersion.parse(text)
    assert (version.major, version.minor, version.revision, version.build) == expected
    assert ImageVersion.parse(str(version)) == version
    data = sign_image(b"fw", version=text, security_counter=1, signing_key=ED25519)
    assert Image.parse(data).header.version == version


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="fail/empty"),
        pytest.param("01.2.3", id="fail/leading-zero"),
        pytest.param("1.2.3.4", id="fail/four-parts"),
        pytest.param("1.2+3", id="fail/build-without-revision"),
        pytest.param("1.2.3+", id="fail/empty-build"),
        pytest.param("256.0.0", id="fail/major-too-big"),
        pytest.param("1.256.0", id="fail/minor-too-big"),
        pytest.param("1.0.65536", id="fail/revision-too-big"),
        pytest.param("1.0.0+4294967296", id="fail/build-too-big"),
        pytest.param(" 1.0.0", id="fail/space"),
        pytest.param("1.0.0\n", id="fail/newline"),
        pytest.param("v1.0.0", id="fail/prefix"),
        pytest.param("\u0661.0.0", id="fail/non-ascii-digit"),
        pytest.param("9" * 5000, id="fail/huge"),
    ],
)
def test_version_refuses(text: str) -> None:
    with pytest.raises(InvalidInput, match="version"):
        ImageVersion.parse(text)


def test_version_order() -> None:
    assert ImageVersion.parse("1.2.3+4") < ImageVersion.parse("1.2.4") < ImageVersion.parse("1.10")


@pytest.mark.parametrize("counter", [0, 1, 0xFFFFFFFF])
def test_security_counter_round_trips(counter: int) -> None:
    data = sign_image(BODY, version="1.0.0", security_counter=counter, signing_key=P256)
    assert Image.parse(data).security_counter == counter
    assert (
        verify_image(data, trusted_keys=[P256.public_key()], min_security_counter=counter).security_counter
        == counter
    )


def test_rollback_below_the_minimum_counter_is_refused() -> None:
    data = sign_image(BODY, version="1.0.0", security_counter=5, signing_key=P256)
    with pytest.raises(PolicyViolation, match="rollback"):
        verify_image(data, trusted_keys=[P256.public_key()], min_security_counter=6)


def test_an_image_without_a_security_counter_is_refused() -> None:
    data = assemble(protected=())
    assert Image.parse(data).security_counter is None
    with pytest.raises(InvalidInput, match="security counter"):
        verify_image(data, trusted_keys=[P256.public_key()])


# --- sign_image refusals --------------------------------------------------------------------------

SIGN_REFUSALS: list[tuple[str, dict[str, object], str]] = [
    ("fail/counter-negative", {"security_counter": -1}, "security counter"),
    ("fail/counter-too-big", {"security_counter": 2**32}, "security counter"),
    ("fail/counter-bool", {"security_counter": True}, "security counter"),
    ("fail/header-too-small", {"header_size": 16}, "header size"),
    ("fail/header-too-big", {"header_size": 0x10000}, "header size"),
    ("fail/load-addr", {"load_addr": 2**32}, "load address"),
    ("fail/p384-signer", {"signing_key": ec.generate_private_key(ec.SECP384R1())}, "P-256 or Ed25519"),
    ("fail/x25519-signer", {"signing_key": X25519_ENC}, "P-256 or Ed25519"),
    ("fail/p256-with-x25519", {"encrypt_to": X25519_ENC.public_key()}, "must match"),
    (
        "fail/ed25519-with-p256",
        {"signing_key": ED25519, "encrypt_to": P256_ENC.public_key()},
        "must match",
    ),
    (
        "fail/p384-recipient",
        {"encrypt_to": ec.generate_private_key(ec.SECP384R1()).public_key()},
        "must match",
    ),
    ("fail/aes-192", {"encrypt_to": P256_ENC.public_key(), "aes_key_bits": 192}, "aes_key_bits"),
    ("fail/aes-without-encryption", {"aes_key_bits": 256}, "aes_key_bits"),
    ("fail/version", {"version": "1.2.3-rc1"}, "version"),
    ("fail/body-type", {"body": "text"}, "bytes"),
    ("fail/too-big", {"max_size": 1024}, "limit"),
]


@pytest.mark.parametrize(("overrides", "message"), [pytest.param(o, m, id=i) for i, o, m in SIGN_REFUSALS])
def test_sign_image_refuses(overrides: dict[str, object], message: str) -> None:
    kwargs: dict[str, object] = {"version": "1.0.0", "security_counter": 1, "signing_key": P256}
    kwargs.update(overrides)
    body = kwargs.pop("body", BODY)
    with pytest.raises(InvalidInput, match=message):
        sign_image(body, **kwargs)  # type: ignore[arg-type]


# --- structural refusals --------------------------------------------------------------------------

VALID = sign_image(BODY, version="1.2.3+4", security_counter=7, signing_key=P256)
BODY_END = 0x200 + len(BODY)
TLV_START = BODY_END + 12  # after the 12-byte protected area (info + SEC_CNT)


def patched(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new) :]


def header_field(fmt: str, offset: int, value: int) -> bytes:
    return patched(VALID, offset, struct.pack("<" + fmt, value))


STRUCTURE: list[tuple[str, Callable[[], bytes], str]] = [
    ("fail/empty", lambda: b"", "truncated"),
    ("fail/short-header", lambda: VALID[:31], "truncated"),
    ("fail/truncated-body", lambda: VALID[: 0x200 + 10], "truncated"),
    ("fail/truncated-protected", lambda: VALID[: BODY_END + 6], "truncated"),
    ("fail/truncated-tlv-info", lambda: VALID[: TLV_START + 2], "truncated"),
    ("fail/truncated-last-tlv", lambda: VALID[:-1], "truncated"),
    ("fail/trailing-bytes", lambda: VALID + b"\xff" * 16, "unexpected bytes after"),
    ("fail/bad-magic", lambda: header_field("I", 0, 0x12345678), "header magic"),
    ("fail/v1-magic", lambda: header_field("I", 0, 0x96F3B83C), "legacy"),
    ("fail/reserved-field", lambda: header_field("I", 28, 1), "reserved"),
    ("fail/header-size-below-32", lambda: header_field("H", 8, 16), "smaller than"),
    ("fail/header-size-zero", lambda: header_field("H", 8, 0), "smaller than"),
    ("fail/image-size-past-end", lambda: header_field("I", 12, 0xFFFFFFF0), "truncated"),
    ("fail/flag-pic", lambda: header_field("I", 16, 0x01), "flags"),
    ("fail/flag-unknown", lambda: header_field("I", 16, 0x1000), "flags"),
    ("fail/flag-compressed", lambda: header_field("I", 16, 0x400), "flags"),
    ("fail/flag-both-aes", lambda: header_field("I", 16, 0x0C), "both"),
    ("fail/protected-size-mismatch", lambda: header_field("H", 10, 16), "header says"),
    ("fail/protected-size-zero", lambda: header_field("H", 10, 0), "header says it has none"),
    ("fail/protected-size-small", lambda: header_field("H", 10, 2), "header says"),
    ("fail/protected-area-tiny", lambda: patched(VALID, BODY_END + 2, b"\x02\x00"), "shorter than its info"),
    ("fail/protected-magic", lambda: patched(VALID, BODY_END, b"\x07\x69"), "protected TLV area magic"),
    ("fail/unprotected-magic", lambda: patched(VALID, TLV_START, b"\x08\x69"), "unprotected TLV area magic"),
    (
        "fail/unprotected-area-past-end",
        lambda: patched(VALID, TLV_START + 2, struct.pack("<H", len(VALID) - TLV_START + 1)),
        "truncated",
    ),
    (
        "fail/unprotected-area-tiny",
        lambda: patched(VALID, TLV_START + 2, b"\x02\x00"),
        "shorter than its info",
    ),
    (
        "fail/tlv-length-past-area",
        lambda: patched(VALID, TLV_START + 6, b"\xff\xff"),
        "runs past the end of its",
    ),
    (
        "fail/protected-tlv-length-past-area",
        lambda: patched(VALID, BODY_END + 6, b"\x08\x00"),
        "runs past the end of its",
    ),
    (
        "fail/tlv-header-past-area",
        lambda: VALID[:TLV_START] + area(0x6907, [VALID[TLV_START + 4 :], b"\x10\x00"]),
        "header runs past",
    ),
    # correctly hashed and signed, structurally wrong
    ("fail/unknown-protected-tlv", lambda: assemble(protected=[sec_cnt(7), tlv(0x99, b"x")]), "0x0099"),
    ("fail/custom-protected-tlv", lambda: assemble(protected=[sec_cnt(7), tlv(0xA0, b"vendor")]), "0x00a0"),
    (
        "fail/compression-protected-tlv",
        lambda: assemble(protected=[sec_cnt(7), tlv(0x70, bytes(4))]),
        "DECOMP",
    ),
    ("fail/duplicate-security-counter", lambda: assemble(protected=[sec_cnt(7), sec_cnt(8)]), "duplicate"),
    ("fail/security-counter-length", lambda: assemble(protected=[tlv(0x50, bytes(8))]), "bad length"),
    ("fail/dependency-length", lambda: assemble(protected=[sec_cnt(1), tlv(0x40, bytes(11))]), "bad length"),
    ("fail/duplicate-sha256", lambda: assemble(extra=[tlv(0x10, bytes(32))]), "duplicate"),
    ("fail/missing-sha256", lambda: assemble(with_sha=False), "no SHA256"),
    ("fail/sha384", lambda: assemble(extra=[tlv(0x11, bytes(48))]), "SHA384"),
    ("fail/sig-pure", lambda: assemble(extra=[tlv(0x25, b"\x01")]), "SIG_PURE"),
    ("fail/rsa-signature", lambda: assemble(extra=[tlv(0x01, bytes(32)), tlv(0x20, bytes(256))]), "RSA2048"),
    ("fail/enc-rsa", lambda: assemble(extra=[tlv(0x30, bytes(256))]), "ENC_RSA2048"),
    ("fail/enc-x25519-sha512", lambda: assemble(extra=[tlv(0x34, bytes(112))]), "ENC_X25519_SHA512"),
    ("fail/vendor-unprotected", lambda: assemble(extra=[tlv(0xA0, b"x")]), "0x00a0"),
    ("fail/security-counter-unprotected", lambda: assemble(protected=(), extra=[sec_cnt(7)]), "SEC_CNT"),
    (
        "fail/keyhash-length",
        lambda: assemble(extra=[tlv(0x01, bytes(31)), tlv(0x24, bytes(64))]),
        "bad length",
    ),
    (
        "fail/ed25519-length",
        lambda: assemble(extra=[tlv(0x01, bytes(32)), tlv(0x24, bytes(63))]),
        "bad length",
    ),
    (
        "fail/ecdsa-too-long",
        lambda: assemble(extra=[tlv(0x01, bytes(32)), tlv(0x22, bytes(73))]),
        "bad length",
    ),
    ("fail/key-without-signature", lambda: assemble(extra=[tlv(0x01, bytes(32))]), "not followed"),
    (
        "fail/two-keys-one-signature",
        lambda: assemble(extra=[tlv(0x01, bytes(32)), tlv(0x02, b"k")]),
        "not followed",
    ),
    ("fail/signature-without-key", lambda: assemble(extra=[tlv(0x24, bytes(64))]), "not preceded"),
    ("fail/encrypted-without-key-wrap", lambda: assemble(flags=0x04), "no key-wrap"),
    ("fail/key-wrap-without-flag", lambda: assemble(extra=[tlv(0x32, bytes(113))]), "not flagged"),
    (
        "fail/key-wrap-too-short-for-aes256",
        lambda: assemble(flags=0x08, extra=[tlv(0x32, bytes(113))]),
        "AES-256",
    ),
    (
        "fail/key-wrap-too-long-for-aes128",
        lambda: assemble(flags=0x04, extra=[tlv(0x33, bytes(96))]),
        "AES-128",
    ),
    (
        "fail/two-key-wraps",
        lambda: assemble(flags=0x04, extra=[tlv(0x32, bytes(113)), tlv(0x33, bytes(80))]),
        "more than one",
    ),
]


@pytest.mark.parametrize(("build", "message"), [pytest.param(b, m, id=i) for i, b, m in STRUCTURE])
def test_structural_refusals(build: Callable[[], bytes], message: str) -> None:
    data = build()
    with pytest.raises(InvalidInput, match=message):
        Image.parse(data)
    with pytest.raises(InvalidInput, match=message):
        verify_image(data, trusted_keys=[P256.public_key()])


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(InvalidInput, match="limit"):
        Image.parse(VALID, max_size=len(VALID) - 1)
    assert Image.parse(VALID, max_size=len(VALID)).header.img_size == len(BODY)
    with pytest.raises(InvalidInput, match="limit"):
        Image.parse(b"\0" * (MAX_IMAGE + 1))
    with pytest.raises(InvalidInput, match="limit"):
        verify_image(VALID, trusted_keys=[P256.public_key()], max_size=1000)


def test_non_bytes_input_is_refused() -> None:
    with pytest.raises(InvalidInput, match="bytes"):
        Image.parse("not bytes")  # type: ignore[arg-type]
    assert Image.parse(bytearray(VALID)).security_counter == 7
    assert Image.parse(memoryview(VALID)).security_counter == 7


def test_a_public_key_tlv_must_hold_a_supported_key() -> None:
    garbage = b"\x30\x03\x02\x01\x01"
    data = assemble(signers=[], extra=[tlv(0x02, garbage), tlv(0x24, bytes(64))])
    with pytest.raises(InvalidInput, match="PUBKEY"):
        verify_image(data, trusted_keys=[hashlib.sha256(garbage).digest()])
    agreement_key = spki(X25519_ENC.public_key())
    data = assemble(signers=[], extra=[tlv(0x02, agreement_key), tlv(0x24, bytes(64))])
    with pytest.raises(InvalidInput, match="neither"):
        verify_image(data, trusted_keys=[hashlib.sha256(agreement_key).digest()])


@pytest.mark.parametrize(
    ("trusted", "message"),
    [
        pytest.param([], "at least one", id="fail/empty"),
        pytest.param(bytes(32), "at least one", id="fail/bare-bytes"),
        pytest.param([bytes(31)], "32 bytes", id="fail/short-hash"),
        pytest.param([X25519_ENC.public_key()], "trusted keys must be", id="fail/agreement-key"),
        pytest.param(
            [ec.generate_private_key(ec.SECP384R1()).public_key()], "trusted keys must be", id="fail/p384"
        ),
    ],
)
def test_trusted_keys_are_checked(trusted: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        verify_image(VALID, trusted_keys=trusted)  # type: ignore[arg-type]


# --- tampering and wrong keys ---------------------------------------------------------------------


def _region_offsets(data: bytes) -> dict[str, int]:
    image = Image.parse(data)
    by_type = {t.type: t.offset for t in image.tlvs}
    sig_type = image.signatures[0].signature_type
    return {
        "header-version": 20,
        "header-load-address": 4,
        "header-padding": 100,
        "body-first": 0x200,
        "body-middle": 0x200 + len(BODY) // 2,
        "body-last": image.body_end - 1,
        "protected-security-counter": image.body_end + 8,
        "sha256-tlv": by_type[TlvType.SHA256] + 5,
        "keyhash-tlv": by_type[TlvType.KEYHASH] + 3,
        "signature-tlv-start": by_type[sig_type] + 8,
        "signature-tlv-end": by_type[sig_type] + len(image.signatures[0].signature) - 1,
    }


TAMPER_EXPECT = {
    "header-version": "hash",
    "header-load-address": "hash",
    "header-padding": "hash",
    "body-first": "hash",
    "body-middle": "hash",
    "body-last": "hash",
    "protected-security-counter": "hash",
    "sha256-tlv": "hash",
    "keyhash-tlv": "no signature by a trusted key",
    "signature-tlv-start": "does not verify",
    "signature-tlv-end": "does not verify",
}


@pytest.mark.parametrize("signer_name", ["p256", "ed25519"])
@pytest.mark.parametrize("region", sorted(TAMPER_EXPECT))
def test_a_flipped_byte_is_caught(signer_name: str, region: str) -> None:
    signer = SIGNERS[signer_name]
    data = sign_image(BODY, version="1.2.3+4", security_counter=7, signing_key=signer)
    offset = _region_offsets(data)[region]
    tampered = patched(data, offset, bytes([data[offset] ^ 0x01]))
    with pytest.raises(VerificationFailed, match=TAMPER_EXPECT[region]):
        verify_image(tampered, trusted_keys=[signer.public_key()])


@pytest.mark.parametrize(("signer_name", "recipient_name"), [("p256", "p256"), ("ed25519", "x25519")])
def test_a_flipped_ciphertext_byte_is_caught(signer_name: str, recipient_name: str) -> None:
    signer, recipient = SIGNERS[signer_name], RECIPIENTS[recipient_name]
    data = sign_image(
        BODY, version="1.0.0", security_counter=1, signing_key=signer, encrypt_to=recipient.public_key()
    )
    tampered = patched(data, 0x300, bytes([data[0x300] ^ 0x80]))
    with pytest.raises(VerificationFailed, match="hash"):
        verify_image(tampered, trusted_keys=[signer.public_key()], decryption_key=recipient)


def test_a_signature_by_an_unknown_key_is_refused() -> None:
    with pytest.raises(VerificationFailed, match="no signature by a trusted key"):
        verify_image(VALID, trusted_keys=[OTHER_P256.public_key(), OTHER_ED25519.public_key()])


def test_an_unsigned_image_is_refused() -> None:
    data = assemble(signers=[])
    assert Image.parse(data).signatures == ()
    with pytest.raises(VerificationFailed, match="no signature by a trusted key"):
        verify_image(data, trusted_keys=[P256.public_key()])


ENCRYPTED_P256 = sign_image(
    BODY, version="1.0.0", security_counter=1, signing_key=P256, encrypt_to=P256_ENC.public_key()
)
ENCRYPTED_X25519 = sign_image(
    BODY, version="1.0.0", security_counter=1, signing_key=ED25519, encrypt_to=X25519_ENC.public_key()
)


@pytest.mark.parametrize(
    ("data", "key", "error", "message"),
    [
        pytest.param(
            ENCRYPTED_P256,
            ec.generate_private_key(ec.SECP256R1()),
            VerificationFailed,
            "does not authenticate",
            id="fail/p256/wrong-key",
        ),
        pytest.param(
            ENCRYPTED_X25519,
            x25519.X25519PrivateKey.generate(),
            VerificationFailed,
            "does not authenticate",
            id="fail/x25519/wrong-key",
        ),
        pytest.param(
            ENCRYPTED_P256, X25519_ENC, InvalidInput, "P-256 private key", id="fail/p256/x25519-key"
        ),
        pytest.param(
            ENCRYPTED_X25519, P256_ENC, InvalidInput, "X25519 private key", id="fail/x25519/p256-key"
        ),
        pytest.param(
            ENCRYPTED_P256,
            ec.generate_private_key(ec.SECP384R1()),
            InvalidInput,
            "P-256 private key",
            id="fail/p256/p384-key",
        ),
        pytest.param(VALID, P256_ENC, InvalidInput, "not encrypted", id="fail/plain-image"),
    ],
)
def test_wrong_decryption_keys(data: bytes, key: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        decrypt_image(data, key)  # type: ignore[arg-type]
    signer = P256 if data is not ENCRYPTED_X25519 else ED25519
    with pytest.raises(error, match=message):
        verify_image(data, trusted_keys=[signer.public_key()], decryption_key=key)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "key", "part", "error"),
    [
        pytest.param(ENCRYPTED_P256, P256_ENC, "ephemeral", InvalidInput, id="fail/p256/ephemeral-off-curve"),
        pytest.param(ENCRYPTED_P256, P256_ENC, "mac", VerificationFailed, id="fail/p256/tag"),
        pytest.param(ENCRYPTED_P256, P256_ENC, "cipherkey", VerificationFailed, id="fail/p256/wrapped-key"),
        pytest.param(
            ENCRYPTED_X25519, X25519_ENC, "ephemeral", VerificationFailed, id="fail/x25519/ephemeral"
        ),
        pytest.param(ENCRYPTED_X25519, X25519_ENC, "mac", VerificationFailed, id="fail/x25519/tag"),
        pytest.param(
            ENCRYPTED_X25519, X25519_ENC, "cipherkey", VerificationFailed, id="fail/x25519/wrapped-key"
        ),
    ],
)
def test_a_damaged_key_wrap_is_caught(data: bytes, key: object, part: str, error: type[Exception]) -> None:
    image = Image.parse(data)
    wrapped = image.wrapped_key
    assert wrapped is not None
    offset = next(t.offset for t in image.tlvs if t.type == wrapped.scheme)
    offset += {"ephemeral": 10, "mac": len(wrapped.ephemeral) + 3, "cipherkey": len(wrapped.ephemeral) + 33}[
        part
    ]
    tampered = patched(data, offset, bytes([data[offset] ^ 0x04]))
    with pytest.raises(error):
        decrypt_image(tampered, key)  # type: ignore[arg-type]


def test_a_degenerate_x25519_ephemeral_key_is_refused() -> None:
    image = Image.parse(ENCRYPTED_X25519)
    offset = next(t.offset for t in image.tlvs if t.type == TlvType.ENC_X25519)
    tampered = patched(ENCRYPTED_X25519, offset, bytes(32))  # the all-zero (low-order) point
    with pytest.raises(VerificationFailed):
        decrypt_image(tampered, X25519_ENC)


# --- fuzzing: nothing but fabtrust errors ever escapes ---------------------------------------------

SMALL_BODY = bytes(range(61))
FUZZ_BASES = [
    sign_image(SMALL_BODY, version="1.2.3+4", security_counter=3, signing_key=P256, header_size=0x20),
    sign_image(SMALL_BODY, version="1.2.3+4", security_counter=3, signing_key=ED25519, header_size=0x20),
    sign_image(
        SMALL_BODY,
        version="1.0",
        security_counter=3,
        signing_key=P256,
        header_size=0x20,
        encrypt_to=P256_ENC.public_key(),
    ),
    sign_image(
        SMALL_BODY,
        version="1.0",
        security_counter=3,
        signing_key=ED25519,
        header_size=0x20,
        encrypt_to=X25519_ENC.public_key(),
        aes_key_bits=256,
    ),
    sign_image(
        SMALL_BODY,
        version="2.0",
        security_counter=3,
        signing_key=P256,
        header_size=0x20,
        embed_public_key=True,
    ),
    assemble(SMALL_BODY, hdr_size=0x20, protected=[sec_cnt(3), tlv(0x40, bytes(12)), tlv(0x60, b"\xa0")]),
]
TRUSTED = [P256.public_key(), ED25519.public_key(), key_hash(P256.public_key())]


def exercise(data: bytes) -> list[VerifiedImage]:
    """Run every entry point; return the verifications that passed. Any non-fabtrust error fails."""
    passed = []
    with contextlib.suppress(FabtrustError):
        Image.parse(data)
    for key in (None, P256_ENC, X25519_ENC):
        with contextlib.suppress(FabtrustError):
            passed.append(verify_image(data, trusted_keys=TRUSTED, decryption_key=key))
    for key in (P256_ENC, X25519_ENC):
        with contextlib.suppress(FabtrustError):
            decrypt_image(data, key)
    return passed


def test_fuzz_bases_verify() -> None:
    for base in FUZZ_BASES:
        assert exercise(base), "each fuzz base must verify unmutated"


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_byte_mutations(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(FUZZ_BASES))
    hashed_size = Image.parse(base).hashed_size
    position = st.one_of(
        st.integers(0, 31),  # the header
        st.integers(hashed_size - 16, len(base) - 1),  # protected area and TLVs
        st.integers(0, len(base) - 1),
    )
    changes = data.draw(st.lists(st.tuples(position, st.integers(0, 255)), min_size=1, max_size=6))
    mutated = bytearray(base)
    for offset, value in changes:
        mutated[offset] = value
    passed = exercise(bytes(mutated))
    if passed:
        # whatever still verifies must have its signed region untouched
        assert mutated[:hashed_size] == base[:hashed_size]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_structural_mutations(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(FUZZ_BASES))
    start = data.draw(st.integers(0, len(base)))
    end = data.draw(st.integers(start, min(len(base), start + 64)))
    insert = data.draw(st.binary(max_size=64))
    spliced = base[:start] + insert + base[end:]
    cut = data.draw(st.one_of(st.just(len(spliced)), st.integers(0, len(spliced))))
    exercise(spliced[:cut])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_fuzz_random_bytes(blob: bytes) -> None:
    assert exercise(blob) == []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    hdr_size=st.integers(0, 0x60),
    img_size=st.integers(0, 80),
    size_error=st.one_of(st.just(0), st.integers(-8, 8)),
    flags=st.sampled_from([0, 0x04, 0x08, 0x0C, 0x10, 0x20, 0x01, 0xFFFFFFFF]),
    protect_size=st.one_of(st.none(), st.integers(0, 0x80)),
    prot_entries=st.lists(
        st.tuples(st.sampled_from([0x40, 0x50, 0x60, 0x74, 0x99, 0x10]), st.binary(max_size=20)), max_size=3
    ),
    entries=st.lists(
        st.tuples(
            st.one_of(st.sampled_from([int(t) for t in TlvType]), st.integers(0, 0xFFFF)),
            st.binary(max_size=130),
            st.booleans(),
        ),
        max_size=6,
    ),
    tail=st.binary(max_size=8),
)
def test_fuzz_random_tlv_areas(
    hdr_size: int,
    img_size: int,
    size_error: int,
    flags: int,
    protect_size: int | None,
    prot_entries: list[tuple[int, bytes]],
    entries: list[tuple[int, bytes, bool]],
    tail: bytes,
) -> None:
    prot = area(0x6908, [tlv(t, v) for t, v in prot_entries]) if prot_entries else b""
    declared = len(prot) if protect_size is None else protect_size
    header = struct.pack(
        "<IIHHIIBBHII", MAGIC, 0, hdr_size, declared, max(0, img_size + size_error), flags, 1, 0, 0, 0, 0
    )
    header = header.ljust(max(hdr_size, 32), b"\xff")
    unprot = b"".join(
        tlv(t, v) if honest else struct.pack("<HH", t, len(v) + 7) + v for t, v, honest in entries
    )
    blob = header + bytes(img_size) + prot + area(0x6907, [unprot]) + tail
    assert exercise(blob) == []  # nothing here carries a valid signature
