"""The MCUboot image format: parse, sign, encrypt, decrypt and verify, as pure functions over bytes.

An image is laid out as MCUboot's ``docs/design.md`` ("Image format") and ``bootutil/image.h`` define
it, all integers little-endian::

    +------------------------------+  0
    | image_header (32 bytes)      |  magic 0x96f3b83d, load address, hdr_size, protect_tlv_size,
    | padding up to ih_hdr_size    |  img_size, flags, version (u8 major, u8 minor, u16 revision,
    +------------------------------+  ih_hdr_size                     u32 build), u32 reserved
    | body (ih_img_size bytes)     |  the firmware; AES-CTR ciphertext when the image is encrypted
    +------------------------------+  ih_hdr_size + ih_img_size
    | protected TLV area           |  info {0x6908, total} + TLVs; ``total`` == ih_protect_tlv_size
    +------------------------------+
    | TLV area                     |  info {0x6907, total} + TLVs {u16 type, u16 length, value}
    +------------------------------+

The SHA256 TLV is the SHA-256 of everything before the unprotected TLV area (header with its padding,
*plaintext* body, protected TLVs: ``bootutil_img_hash``); the signature TLV signs that digest
(ECDSA P-256, DER, the way ``imgtool``'s ``ECDSA256P1.sign`` does over the same bytes; Ed25519 over
the 32-byte digest, ``imgtool``'s default non-pure mode). The key TLV before a signature names the key:
KEYHASH is the SHA-256 of the key's DER SubjectPublicKeyInfo (``imgtool`` ``get_public_bytes``);
PUBKEY is that DER itself (MCUboot's ``MCUBOOT_HW_KEY`` mode, where the device holds only the hash).

Encryption (``docs/encrypted_images.md``): only the body is encrypted, with AES-CTR under a random
image key, counter zero at the first body byte; header and TLVs stay clear. The image key is wrapped by
ECIES: ephemeral ECDH (P-256 or X25519) with the device's key, HKDF-SHA256 (no salt, info
``MCUBoot_ECIES_v1``) to ``key_len + 32`` bytes, the image key encrypted with AES-CTR (zero nonce) under
the first ``key_len`` bytes and MAC'd with HMAC-SHA256 under the last 32. The ENCEC256 (0x32) /
ENCX25519 (0x33) TLV is ``ephemeral public key || tag || wrapped key``. Flag ENCRYPTED_AES128 (0x04)
or ENCRYPTED_AES256 (0x08) selects the key length.

A decrypted image keeps its header (flag included) and all its TLVs, exactly like MCUboot's primary
slot after an upgrade and ``imgtool sign --clear``: the hash covers the header as signed, so clearing
the flag would break it. :func:`verify_image` hashes the body as it is unless given the decryption
key, so an encrypted image verifies either with its key or after :func:`decrypt_image`.

Parsing is strict and fails closed: every refusal is :class:`InvalidInput` (malformed) or
:class:`VerificationFailed` (hash, signature or key-wrap tag), never another exception. Beyond what
MCUboot itself checks, fabtrust refuses: unknown header flags and the unsupported ones (PIC,
compression), a reserved header field that is not zero, unknown or duplicated protected TLVs,
unprotected TLVs other than the key, hash, signature and key-wrap TLVs fabtrust supports (MCUboot's
``MCUBOOT_USE_TLV_ALLOW_LIST`` in ``image_validate.c``), a key TLV without its signature, and bytes
after the TLV area (so images padded to a slot with ``imgtool --pad`` are refused).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
from typing import Final, TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives import hmac as crypto_hmac
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, x25519
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fabtrust.errors import InvalidInput, PolicyViolation, VerificationFailed

#: Largest image :meth:`Image.parse` and :func:`sign_image` accept by default, in bytes.
MAX_IMAGE: Final = 64 * 1024 * 1024

# bootutil/image.h
IMAGE_MAGIC: Final = 0x96F3B83D
IMAGE_MAGIC_V1: Final = 0x96F3B83C  # the pre-1.0 header layout; not supported
IMAGE_HEADER_SIZE: Final = 32
TLV_INFO_MAGIC: Final = 0x6907
TLV_PROT_INFO_MAGIC: Final = 0x6908
TLV_INFO_SIZE: Final = 4
TLV_HEADER_SIZE: Final = 4

#: ``info`` of the ECIES HKDF (docs/encrypted_images.md, "ECIES encryption").
ECIES_INFO: Final = b"MCUBoot_ECIES_v1"
#: Header padding written by :func:`sign_image`: the erased-flash value ``imgtool --pad-header`` uses.
HEADER_FILL: Final = 0xFF

_HEADER = struct.Struct("<IIHHIIBBHII")
_TLV_INFO = struct.Struct("<HH")
_TLV = struct.Struct("<HH")
_U32 = struct.Struct("<I")
_DEPENDENCY = struct.Struct("<B3xBBHI")
_SHA256_SIZE = 32
_U32_MAX = 0xFFFFFFFF
_U16_MAX = 0xFFFF


class ImageFlag(IntFlag):
    """``ih_flags`` bits (bootutil/image.h; imgtool ``IMAGE_F``)."""

    PIC = 0x01
    ENCRYPTED_AES128 = 0x04
    ENCRYPTED_AES256 = 0x08
    NON_BOOTABLE = 0x10
    RAM_LOAD = 0x20
    ROM_FIXED = 0x100
    COMPRESSED_LZMA1 = 0x200
    COMPRESSED_LZMA2 = 0x400
    COMPRESSED_ARM_THUMB = 0x800


#: Flags fabtrust accepts; PIC is "not supported" by MCUboot and compression is not implemented here.
SUPPORTED_FLAGS: Final = (
    ImageFlag.ENCRYPTED_AES128
    | ImageFlag.ENCRYPTED_AES256
    | ImageFlag.NON_BOOTABLE
    | ImageFlag.RAM_LOAD
    | ImageFlag.ROM_FIXED
)


class TlvType(IntEnum):
    """TLV types (bootutil/image.h; imgtool ``TLV_VALUES``)."""

    KEYHASH = 0x01
    PUBKEY = 0x02
    SHA256 = 0x10
    SHA384 = 0x11
    SHA512 = 0x12
    RSA2048_PSS = 0x20
    ECDSA_SIG = 0x22
    RSA3072_PSS = 0x23
    ED25519 = 0x24
    SIG_PURE = 0x25
    ENC_RSA2048 = 0x30
    ENC_KW = 0x31
    ENC_EC256 = 0x32
    ENC_X25519 = 0x33
    ENC_X25519_SHA512 = 0x34
    DEPENDENCY = 0x40
    SEC_CNT = 0x50
    BOOT_RECORD = 0x60
    DECOMP_SIZE = 0x70
    DECOMP_SHA = 0x71
    DECOMP_SIGNATURE = 0x72
    COMP_DEC_SIZE = 0x73
    UUID_VID = 0x74
    UUID_CID = 0x75


@dataclass(frozen=True)
class _Rule:
    min_len: int
    max_len: int
    repeatable: bool


# What each area may hold, with value lengths. Protected: what imgtool writes there and fabtrust
# understands (security counter, dependencies, boot record, vendor/class UUIDs); compression and
# custom TLVs are refused. Unprotected: the TLVs MCUboot's allow list admits, for the algorithms
# fabtrust supports (SHA-256, ECDSA P-256, Ed25519, ECIES-P256, ECIES-X25519 with HMAC-SHA256).
_PROTECTED_RULES: Final[dict[int, _Rule]] = {
    TlvType.SEC_CNT: _Rule(4, 4, repeatable=False),
    TlvType.DEPENDENCY: _Rule(_DEPENDENCY.size, _DEPENDENCY.size, repeatable=True),
    TlvType.BOOT_RECORD: _Rule(1, 512, repeatable=False),
    TlvType.UUID_VID: _Rule(16, 16, repeatable=False),
    TlvType.UUID_CID: _Rule(16, 16, repeatable=False),
}
_ECDSA_P256_SIG_MAX = 72  # DER SEQUENCE of two INTEGERs of at most 33 bytes
_PUBKEY_MAX = 256
_UNPROTECTED_RULES: Final[dict[int, _Rule]] = {
    TlvType.KEYHASH: _Rule(_SHA256_SIZE, _SHA256_SIZE, repeatable=True),
    TlvType.PUBKEY: _Rule(1, _PUBKEY_MAX, repeatable=True),
    TlvType.SHA256: _Rule(_SHA256_SIZE, _SHA256_SIZE, repeatable=False),
    TlvType.ECDSA_SIG: _Rule(8, _ECDSA_P256_SIG_MAX, repeatable=True),
    TlvType.ED25519: _Rule(64, 64, repeatable=True),
    TlvType.ENC_EC256: _Rule(65 + 32 + 16, 65 + 32 + 32, repeatable=False),
    TlvType.ENC_X25519: _Rule(32 + 32 + 16, 32 + 32 + 32, repeatable=False),
}
_KEY_TLVS: Final = frozenset({TlvType.KEYHASH, TlvType.PUBKEY})
_SIG_TLVS: Final = frozenset({TlvType.ECDSA_SIG, TlvType.ED25519})
_ENC_TLVS: Final = frozenset({TlvType.ENC_EC256, TlvType.ENC_X25519})
_EPHEMERAL_SIZE: Final = {TlvType.ENC_EC256: 65, TlvType.ENC_X25519: 32}
_MAC_SIZE = 32

SigningKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
VerifyingKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
#: A trusted signer: its public key, or the 32-byte SHA-256 of its DER SubjectPublicKeyInfo (usable
#: only with images that carry the full key in a PUBKEY TLV, as on a device that stores the hash).
TrustedKey: TypeAlias = VerifyingKey | bytes
EncryptionKey: TypeAlias = ec.EllipticCurvePublicKey | x25519.X25519PublicKey
DecryptionKey: TypeAlias = ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey


def _name(tlv_type: int) -> str:
    try:
        return f"{TlvType(tlv_type).name} (0x{tlv_type:02x})"
    except ValueError:
        return f"0x{tlv_type:04x}"


# ---------------------------------------------------------------------------------------------------
# version


_VERSION = re.compile(
    r"(0|[1-9][0-9]{0,9})(?:\.(0|[1-9][0-9]{0,9})(?:\.(0|[1-9][0-9]{0,9})(?:\+(0|[1-9][0-9]{0,9}))?)?)?"
)


@dataclass(frozen=True, order=True)
class ImageVersion:
    """``struct image_version``: u8 major, u8 minor, u16 revision, u32 build number.

    Written ``major.minor.revision+build`` (imgtool ``version.py``; the later parts may be left out and
    count as zero). Ordering compares all four parts; MCUboot ignores the build number unless built
    with ``MCUBOOT_VERSION_CMP_USE_BUILD_NUMBER``.
    """

    major: int
    minor: int = 0
    revision: int = 0
    build: int = 0

    def __post_init__(self) -> None:
        for name, value, top in (
            ("major", self.major, 0xFF),
            ("minor", self.minor, 0xFF),
            ("revision", self.revision, _U16_MAX),
            ("build", self.build, _U32_MAX),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
                raise InvalidInput(f"version {name} must be an integer from 0 to {top}")

    @classmethod
    def parse(cls, text: str) -> ImageVersion:
        match = _VERSION.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise InvalidInput("version must look like major.minor.revision+build, e.g. 1.2.3+4")
        return cls(*(int(part) if part is not None else 0 for part in match.groups()))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.revision}+{self.build}"


# ---------------------------------------------------------------------------------------------------
# header and TLVs


@dataclass(frozen=True)
class ImageHeader:
    """``struct image_header`` (32 bytes, little-endian)."""

    load_addr: int
    hdr_size: int
    protect_tlv_size: int
    img_size: int
    flags: ImageFlag
    version: ImageVersion

    def __post_init__(self) -> None:
        if not IMAGE_HEADER_SIZE <= self.hdr_size <= _U16_MAX:
            raise InvalidInput(f"header size must be from {IMAGE_HEADER_SIZE} to {_U16_MAX} bytes")
        if not 0 <= self.protect_tlv_size <= _U16_MAX:
            raise InvalidInput("protected TLV size out of range")
        if not 0 <= self.img_size <= _U32_MAX or not 0 <= self.load_addr <= _U32_MAX:
            raise InvalidInput("image size or load address out of range")
        unsupported = int(self.flags) & ~int(SUPPORTED_FLAGS)
        if unsupported:
            raise InvalidInput(f"unsupported image header flags 0x{unsupported:x}")
        both = ImageFlag.ENCRYPTED_AES128 | ImageFlag.ENCRYPTED_AES256
        if self.flags & both == both:
            raise InvalidInput("image header claims both AES-128 and AES-256 encryption")

    @property
    def encrypted(self) -> bool:
        return bool(self.flags & (ImageFlag.ENCRYPTED_AES128 | ImageFlag.ENCRYPTED_AES256))

    @property
    def aes_key_bits(self) -> int | None:
        """128 or 256 for an encrypted image, else None."""
        if self.flags & ImageFlag.ENCRYPTED_AES256:
            return 256
        if self.flags & ImageFlag.ENCRYPTED_AES128:
            return 128
        return None

    def pack(self) -> bytes:
        """The 32 header bytes (without the padding up to ``hdr_size``)."""
        v = self.version
        return _HEADER.pack(
            IMAGE_MAGIC,
            self.load_addr,
            self.hdr_size,
            self.protect_tlv_size,
            self.img_size,
            int(self.flags),
            v.major,
            v.minor,
            v.revision,
            v.build,
            0,
        )

    @classmethod
    def unpack(cls, data: bytes) -> ImageHeader:
        if len(data) < IMAGE_HEADER_SIZE:
            raise InvalidInput(f"image is truncated: {len(data)} bytes, shorter than its header")
        magic, load, hdr, prot, size, flags, major, minor, rev, build, pad = _HEADER.unpack_from(data)
        if magic == IMAGE_MAGIC_V1:
            raise InvalidInput("legacy MCUboot v1 image header is not supported")
        if magic != IMAGE_MAGIC:
            raise InvalidInput(f"not an MCUboot image: header magic 0x{magic:08x}")
        if pad != 0:
            raise InvalidInput("reserved image header field is not zero")
        if hdr < IMAGE_HEADER_SIZE:
            raise InvalidInput(f"header size {hdr} is smaller than the {IMAGE_HEADER_SIZE}-byte header")
        return cls(load, hdr, prot, size, ImageFlag(flags), ImageVersion(major, minor, rev, build))


@dataclass(frozen=True)
class Tlv:
    """One TLV: its type, its value and where the value starts in the image."""

    type: int
    value: bytes = field(repr=False)
    offset: int


@dataclass(frozen=True)
class Dependency:
    """A DEPENDENCY TLV: this image needs image ``image_id`` at ``min_version`` or later."""

    image_id: int
    min_version: ImageVersion


@dataclass(frozen=True)
class ImageSignature:
    """A key TLV (KEYHASH or PUBKEY) and the signature TLV after it."""

    key_type: TlvType
    key: bytes
    signature_type: TlvType
    signature: bytes = field(repr=False)


@dataclass(frozen=True)
class WrappedKey:
    """An ENCEC256 / ENCX25519 TLV: ephemeral public key, HMAC-SHA256 tag, wrapped image key."""

    scheme: TlvType
    ephemeral: bytes
    mac: bytes
    cipherkey: bytes = field(repr=False)


def _tlv_area(raw: bytes, start: int, magic: int, what: str) -> tuple[int, list[Tlv]]:
    """Parse the TLV area at ``start``; return its end and entries. Lengths are checked against the
    area, the area against the data."""
    if start + TLV_INFO_SIZE > len(raw):
        raise InvalidInput(f"image is truncated: the {what} TLV area is missing")
    found, total = _TLV_INFO.unpack_from(raw, start)
    if found != magic:
        raise InvalidInput(f"bad {what} TLV area magic 0x{found:04x} (expected 0x{magic:04x})")
    if total < TLV_INFO_SIZE:
        raise InvalidInput(f"{what} TLV area length {total} is shorter than its info header")
    end = start + total
    if end > len(raw):
        raise InvalidInput(f"image is truncated: the {what} TLV area runs past the end of the data")
    entries = []
    off = start + TLV_INFO_SIZE
    while off < end:
        if off + TLV_HEADER_SIZE > end:
            raise InvalidInput(f"a TLV header runs past the end of the {what} TLV area")
        tlv_type, length = _TLV.unpack_from(raw, off)
        value_start = off + TLV_HEADER_SIZE
        if value_start + length > end:
            raise InvalidInput(f"{what} TLV {_name(tlv_type)} runs past the end of its area")
        entries.append(Tlv(tlv_type, raw[value_start : value_start + length], value_start))
        off = value_start + length
    return end, entries


def _check_entries(entries: Iterable[Tlv], rules: dict[int, _Rule], what: str) -> None:
    seen: set[int] = set()
    for tlv in entries:
        rule = rules.get(tlv.type)
        if rule is None:
            raise InvalidInput(f"unsupported TLV {_name(tlv.type)} in the {what} TLV area")
        if not rule.repeatable and tlv.type in seen:
            raise InvalidInput(f"duplicate TLV {_name(tlv.type)} in the {what} TLV area")
        seen.add(tlv.type)
        if not rule.min_len <= len(tlv.value) <= rule.max_len:
            raise InvalidInput(f"TLV {_name(tlv.type)} has a bad length {len(tlv.value)}")


@dataclass(frozen=True)
class Image:
    """A structurally valid MCUboot image (nothing cryptographic checked yet: see
    :func:`verify_image`)."""

    raw: bytes = field(repr=False)
    header: ImageHeader
    protected_tlvs: tuple[Tlv, ...]
    tlvs: tuple[Tlv, ...]
    security_counter: int | None
    dependencies: tuple[Dependency, ...]
    sha256: bytes
    signatures: tuple[ImageSignature, ...]
    wrapped_key: WrappedKey | None

    @property
    def body_offset(self) -> int:
        return self.header.hdr_size

    @property
    def body_end(self) -> int:
        return self.header.hdr_size + self.header.img_size

    @property
    def hashed_size(self) -> int:
        """Length of the prefix the SHA256 TLV covers: header, body and protected TLVs."""
        return self.body_end + self.header.protect_tlv_size

    @property
    def body(self) -> memoryview:
        """The body as stored (ciphertext if the image is encrypted), without copying."""
        return memoryview(self.raw)[self.body_offset : self.body_end]

    @classmethod
    def parse(cls, data: bytes, *, max_size: int = MAX_IMAGE) -> Image:
        """Parse ``data`` strictly; any defect is :class:`InvalidInput`."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise InvalidInput("image must be bytes")
        size = len(data) if not isinstance(data, memoryview) else data.nbytes
        if size > max_size:
            raise InvalidInput(f"image is {size} bytes, over the {max_size}-byte limit")
        raw = data if isinstance(data, bytes) else bytes(data)
        header = ImageHeader.unpack(raw)
        body_end = header.hdr_size + header.img_size
        if body_end > len(raw):
            raise InvalidInput("image is truncated: the body runs past the end of the data")

        protected: list[Tlv] = []
        prot_end = body_end
        if header.protect_tlv_size:
            prot_end, protected = _tlv_area(raw, body_end, TLV_PROT_INFO_MAGIC, "protected")
            if prot_end - body_end != header.protect_tlv_size:
                raise InvalidInput(
                    f"protected TLV area is {prot_end - body_end} bytes but the header says "
                    f"{header.protect_tlv_size}"
                )
        elif body_end + TLV_INFO_SIZE <= len(raw):
            (found,) = struct.unpack_from("<H", raw, body_end)
            if found == TLV_PROT_INFO_MAGIC:
                raise InvalidInput("image has a protected TLV area but its header says it has none")
        end, unprotected = _tlv_area(raw, prot_end, TLV_INFO_MAGIC, "unprotected")
        if end != len(raw):
            raise InvalidInput(f"{len(raw) - end} unexpected bytes after the TLV area")

        _check_entries(protected, _PROTECTED_RULES, "protected")
        _check_entries(unprotected, _UNPROTECTED_RULES, "unprotected")

        security_counter = None
        dependencies = []
        for tlv in protected:
            if tlv.type == TlvType.SEC_CNT:
                (security_counter,) = _U32.unpack(tlv.value)
            elif tlv.type == TlvType.DEPENDENCY:
                image_id, major, minor, rev, build = _DEPENDENCY.unpack(tlv.value)
                dependencies.append(Dependency(image_id, ImageVersion(major, minor, rev, build)))

        digest = b""
        signatures = []
        wrap_tlvs = [tlv for tlv in unprotected if tlv.type in _ENC_TLVS]
        if len(wrap_tlvs) > 1:
            raise InvalidInput("image has more than one key-wrap TLV")
        if header.encrypted and not wrap_tlvs:
            raise InvalidInput("image is flagged encrypted but carries no key-wrap TLV")
        if wrap_tlvs and not header.encrypted:
            raise InvalidInput("image carries a key-wrap TLV but is not flagged encrypted")
        wrapped = _split_wrapped_key(wrap_tlvs[0], header) if wrap_tlvs else None
        pending: Tlv | None = None
        for tlv in unprotected:
            if tlv.type in _KEY_TLVS:
                if pending is not None:
                    raise InvalidInput("a key TLV is not followed by its signature TLV")
                pending = tlv
            elif tlv.type in _SIG_TLVS:
                if pending is None:
                    raise InvalidInput("a signature TLV is not preceded by a key TLV")
                signatures.append(
                    ImageSignature(TlvType(pending.type), pending.value, TlvType(tlv.type), tlv.value)
                )
                pending = None
            elif tlv.type == TlvType.SHA256:
                digest = tlv.value
        if pending is not None:
            raise InvalidInput("a key TLV is not followed by its signature TLV")
        if not digest:
            raise InvalidInput("image has no SHA256 TLV")

        return cls(
            raw=raw,
            header=header,
            protected_tlvs=tuple(protected),
            tlvs=tuple(unprotected),
            security_counter=security_counter,
            dependencies=tuple(dependencies),
            sha256=digest,
            signatures=tuple(signatures),
            wrapped_key=wrapped,
        )


def _split_wrapped_key(tlv: Tlv, header: ImageHeader) -> WrappedKey:
    scheme = TlvType(tlv.type)
    bits = header.aes_key_bits or 128
    key_len = bits // 8
    eph = _EPHEMERAL_SIZE[scheme]
    if len(tlv.value) != eph + _MAC_SIZE + key_len:
        raise InvalidInput(f"{scheme.name} TLV length {len(tlv.value)} does not fit AES-{bits}")
    value = tlv.value
    return WrappedKey(scheme, value[:eph], value[eph : eph + _MAC_SIZE], value[eph + _MAC_SIZE :])


# ---------------------------------------------------------------------------------------------------
# keys


def key_hash(public_key: VerifyingKey) -> bytes:
    """The KEYHASH TLV value for a key: SHA-256 of its DER SubjectPublicKeyInfo, as imgtool hashes it
    (``get_public_bytes``) and as a device stores the trusted key's hash."""
    return hashlib.sha256(_spki(public_key)).digest()


def _spki(public_key: VerifyingKey | EncryptionKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _is_p256(key: object) -> bool:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return isinstance(key.curve, ec.SECP256R1)
    return False


def _anchors(trusted_keys: Sequence[TrustedKey]) -> dict[bytes, VerifyingKey | None]:
    if isinstance(trusted_keys, bytes | str) or not trusted_keys:
        raise InvalidInput("verification needs at least one trusted key")
    anchors: dict[bytes, VerifyingKey | None] = {}
    for item in trusted_keys:
        if isinstance(item, bytes):
            if len(item) != _SHA256_SIZE:
                raise InvalidInput("a trusted key hash must be 32 bytes (SHA-256 of the DER public key)")
            anchors.setdefault(item, None)
        elif isinstance(item, ed25519.Ed25519PublicKey) or (
            isinstance(item, ec.EllipticCurvePublicKey) and _is_p256(item)
        ):
            anchors[key_hash(item)] = item
        else:
            raise InvalidInput("trusted keys must be P-256 or Ed25519 public keys or 32-byte key hashes")
    return anchors


def _load_pubkey_tlv(der: bytes) -> VerifyingKey:
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidInput("PUBKEY TLV is not a valid DER public key") from exc
    if isinstance(key, ed25519.Ed25519PublicKey) or (
        isinstance(key, ec.EllipticCurvePublicKey) and _is_p256(key)
    ):
        return key
    raise InvalidInput("PUBKEY TLV holds a key that is neither P-256 nor Ed25519")


def _signer(sig: ImageSignature, anchors: dict[bytes, VerifyingKey | None]) -> VerifyingKey | None:
    """The trusted key a signature names, or None if it names no trusted key."""
    if sig.key_type == TlvType.KEYHASH:
        return anchors.get(sig.key)  # a key trusted only by its hash cannot check a KEYHASH image
    digest = hashlib.sha256(sig.key).digest()
    if digest not in anchors:
        return None
    return _load_pubkey_tlv(sig.key)


def _check_signature(key: VerifyingKey, sig: ImageSignature, digest: bytes) -> None:
    try:
        if sig.signature_type == TlvType.ECDSA_SIG and isinstance(key, ec.EllipticCurvePublicKey):
            # imgtool signs SHA-256(header || body || protected TLVs) with ECDSA-SHA256: the same as
            # signing the digest prehashed.
            key.verify(sig.signature, digest, ec.ECDSA(Prehashed(hashes.SHA256())))
        elif sig.signature_type == TlvType.ED25519 and isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig.signature, digest)  # Ed25519 over the 32-byte digest (not "pure")
        else:
            raise VerificationFailed(
                f"a {sig.signature_type.name} signature cannot come from the trusted key it names"
            )
    except (InvalidSignature, ValueError):
        raise VerificationFailed("image signature by a trusted key does not verify") from None


# ---------------------------------------------------------------------------------------------------
# encryption


def _ecies_keys(shared: bytes, key_len: int) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=key_len + _MAC_SIZE, salt=None, info=ECIES_INFO).derive(
        shared
    )
    return okm[:key_len], okm[key_len:]


def _aes_ctr(key: bytes) -> Cipher[modes.CTR]:
    # docs/encrypted_images.md: AES-CTR, counter block starting from zero
    return Cipher(algorithms.AES(key), modes.CTR(bytes(16)))


def _wrap_image_key(recipient: EncryptionKey, image_key: bytes) -> tuple[TlvType, bytes]:
    """ECIES-P256 / ECIES-X25519 (docs/encrypted_images.md, "ECIES encryption")."""
    if isinstance(recipient, ec.EllipticCurvePublicKey):
        eph_ec = ec.generate_private_key(ec.SECP256R1())
        shared = eph_ec.exchange(ec.ECDH(), recipient)
        eph_pub = eph_ec.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        scheme = TlvType.ENC_EC256
    else:
        eph_x = x25519.X25519PrivateKey.generate()
        shared = eph_x.exchange(recipient)
        eph_pub = eph_x.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        scheme = TlvType.ENC_X25519
    enc_key, mac_key = _ecies_keys(shared, len(image_key))
    encryptor = _aes_ctr(enc_key).encryptor()
    cipherkey = encryptor.update(image_key) + encryptor.finalize()
    tag = crypto_hmac.HMAC(mac_key, hashes.SHA256())
    tag.update(cipherkey)
    return scheme, eph_pub + tag.finalize() + cipherkey


def _unwrap_image_key(image: Image, private_key: DecryptionKey) -> bytes:
    wrapped = image.wrapped_key
    if wrapped is None:
        raise InvalidInput("image is not encrypted")
    try:
        if wrapped.scheme == TlvType.ENC_EC256:
            if not (isinstance(private_key, ec.EllipticCurvePrivateKey) and _is_p256(private_key)):
                raise InvalidInput("the image key is wrapped with ECIES-P256: a P-256 private key is needed")
            try:
                eph_ec = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), wrapped.ephemeral)
            except ValueError:
                raise InvalidInput("ECIES-P256 ephemeral key is not a valid P-256 point") from None
            shared = private_key.exchange(ec.ECDH(), eph_ec)
        else:
            if not isinstance(private_key, x25519.X25519PrivateKey):
                raise InvalidInput(
                    "the image key is wrapped with ECIES-X25519: an X25519 private key is needed"
                )
            eph_x = x25519.X25519PublicKey.from_public_bytes(wrapped.ephemeral)
            shared = private_key.exchange(eph_x)
    except ValueError:
        raise VerificationFailed("ECIES key agreement failed (a degenerate ephemeral key)") from None
    enc_key, mac_key = _ecies_keys(shared, len(wrapped.cipherkey))
    tag = crypto_hmac.HMAC(mac_key, hashes.SHA256())
    tag.update(wrapped.cipherkey)
    try:
        tag.verify(wrapped.mac)
    except InvalidSignature:
        raise VerificationFailed(
            "the image key does not authenticate: wrong decryption key or a damaged key-wrap TLV"
        ) from None
    decryptor = _aes_ctr(enc_key).decryptor()
    return decryptor.update(wrapped.cipherkey) + decryptor.finalize()


def _decrypted(image: Image, private_key: DecryptionKey) -> bytes:
    """The image with its body decrypted and everything else as it was."""
    image_key = _unwrap_image_key(image, private_key)
    view = memoryview(image.raw)
    body = _aes_ctr(image_key).decryptor().update(view[image.body_offset : image.body_end])
    return b"".join((view[: image.body_offset], body, view[image.body_end :]))


def decrypt_image(data: bytes, private_key: DecryptionKey, *, max_size: int = MAX_IMAGE) -> bytes:
    """Decrypt an encrypted image's body; header (encrypted flag included) and TLVs stay as they are.

    The result is what MCUboot leaves in the primary slot and what ``imgtool sign --clear`` writes, so
    ``imgtool verify`` and :func:`verify_image` (without a decryption key) accept it. Only the key-wrap
    tag is checked here; verify the result before trusting it.
    """
    image = Image.parse(data, max_size=max_size)
    if not image.header.encrypted:
        raise InvalidInput("image is not encrypted")
    return _decrypted(image, private_key)


# ---------------------------------------------------------------------------------------------------
# signing


def _tlv(tlv_type: int, value: bytes) -> bytes:
    return _TLV.pack(tlv_type, len(value)) + value


def _check_u32(name: str, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U32_MAX:
        raise InvalidInput(f"{name} must be an integer from 0 to {_U32_MAX}")


def sign_image(
    body: bytes,
    *,
    version: str | ImageVersion,
    security_counter: int,
    signing_key: SigningKey,
    header_size: int = 0x200,
    load_addr: int = 0,
    encrypt_to: EncryptionKey | None = None,
    aes_key_bits: int = 128,
    embed_public_key: bool = False,
    max_size: int = MAX_IMAGE,
) -> bytes:
    """Build a signed (and optionally encrypted) MCUboot image from a raw firmware ``body``.

    The result matches ``imgtool sign --pad-header --header-size H --version V --security-counter N``
    (``--load-addr`` sets RAM_LOAD as imgtool does; ``--encrypt``, ``--encrypt-keylen``; with
    ``embed_public_key`` the full key as ``--public-key-format full``). Signing keys are P-256 (ECDSA)
    or Ed25519; the encryption key must be of the matching family, as imgtool requires: ECIES-P256 to
    a P-256 key with P-256 signing, ECIES-X25519 to an X25519 key with Ed25519 signing. Like imgtool,
    an encrypted image's body is zero-padded so that header and body end on a 16-byte boundary.
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        raise InvalidInput("image body must be bytes")
    ver = version if isinstance(version, ImageVersion) else ImageVersion.parse(version)
    _check_u32("security counter", security_counter)
    _check_u32("load address", load_addr)
    if not isinstance(header_size, int) or not IMAGE_HEADER_SIZE <= header_size <= _U16_MAX:
        raise InvalidInput(f"header size must be from {IMAGE_HEADER_SIZE} to {_U16_MAX} bytes")
    if isinstance(signing_key, ec.EllipticCurvePrivateKey) and _is_p256(signing_key):
        sig_type, enc_ok = TlvType.ECDSA_SIG, _is_p256(encrypt_to)
    elif isinstance(signing_key, ed25519.Ed25519PrivateKey):
        sig_type, enc_ok = TlvType.ED25519, isinstance(encrypt_to, x25519.X25519PublicKey)
    else:
        raise InvalidInput("signing key must be a P-256 or Ed25519 private key")
    if encrypt_to is not None and not enc_ok:
        raise InvalidInput(
            "encryption key must match the signing family: P-256 with ECDSA P-256, X25519 with Ed25519"
        )
    if aes_key_bits not in (128, 256) or (encrypt_to is None and aes_key_bits != 128):
        raise InvalidInput("aes_key_bits must be 128 or 256, and only applies with encrypt_to")

    body_len = len(body) if not isinstance(body, memoryview) else body.nbytes
    pad = (-(header_size + body_len)) % 16 if encrypt_to is not None else 0
    img_size = body_len + pad
    flags = ImageFlag(0)
    if encrypt_to is not None:
        flags |= ImageFlag.ENCRYPTED_AES256 if aes_key_bits == 256 else ImageFlag.ENCRYPTED_AES128
    if load_addr:
        flags |= ImageFlag.RAM_LOAD
    protected_tlvs = _tlv(TlvType.SEC_CNT, _U32.pack(security_counter))
    protected = _TLV_INFO.pack(TLV_PROT_INFO_MAGIC, TLV_INFO_SIZE + len(protected_tlvs)) + protected_tlvs
    header = ImageHeader(load_addr, header_size, len(protected), img_size, flags, ver)
    header_bytes = header.pack() + bytes([HEADER_FILL]) * (header_size - IMAGE_HEADER_SIZE)
    padding = bytes(pad)

    sha = hashlib.sha256(header_bytes)
    sha.update(body)
    sha.update(padding)
    sha.update(protected)
    digest = sha.digest()

    public_key = signing_key.public_key()
    if embed_public_key:
        key_tlv = _tlv(TlvType.PUBKEY, _spki(public_key))
    else:
        key_tlv = _tlv(TlvType.KEYHASH, key_hash(public_key))
    if isinstance(signing_key, ec.EllipticCurvePrivateKey):
        signature = signing_key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    else:
        signature = signing_key.sign(digest)
    entries = [_tlv(TlvType.SHA256, digest), key_tlv, _tlv(sig_type, signature)]

    stored: Sequence[bytes | bytearray | memoryview] = (body, padding)
    if encrypt_to is not None:
        image_key = os.urandom(aes_key_bits // 8)
        scheme, wrapped = _wrap_image_key(encrypt_to, image_key)
        entries.append(_tlv(scheme, wrapped))
        encryptor = _aes_ctr(image_key).encryptor()
        stored = (encryptor.update(body), encryptor.update(padding))
    tlv_body = b"".join(entries)
    tlv_area = _TLV_INFO.pack(TLV_INFO_MAGIC, TLV_INFO_SIZE + len(tlv_body)) + tlv_body

    total = header_size + img_size + len(protected) + len(tlv_area)
    if total > max_size or img_size > _U32_MAX:
        raise InvalidInput(f"image would be {total} bytes, over the {max_size}-byte limit")
    return b"".join((header_bytes, *stored, protected, tlv_area))


# ---------------------------------------------------------------------------------------------------
# verification


@dataclass(frozen=True)
class VerifiedImage:
    """What :func:`verify_image` vouches for."""

    header: ImageHeader
    version: ImageVersion
    security_counter: int
    dependencies: tuple[Dependency, ...]
    #: SHA-256 of header, plaintext body and protected TLVs (the SHA256 TLV).
    digest: bytes
    #: SHA-256 of the DER public key whose signature verified (the KEYHASH value).
    key_hash: bytes
    encrypted: bool
    #: The image with a plaintext body: the input itself, or its decryption (flag and TLVs kept).
    image: bytes = field(repr=False)

    @property
    def body(self) -> memoryview:
        """The plaintext body (including the zero padding imgtool adds before encrypting)."""
        return memoryview(self.image)[self.header.hdr_size : self.header.hdr_size + self.header.img_size]


def verify_image(
    data: bytes,
    *,
    trusted_keys: Sequence[TrustedKey],
    decryption_key: DecryptionKey | None = None,
    min_security_counter: int | None = None,
    max_size: int = MAX_IMAGE,
) -> VerifiedImage:
    """Verify an image as MCUboot would (``bootutil_img_validate``), failing closed.

    Checks the structure (:meth:`Image.parse`), the SHA256 TLV against the plaintext (decrypting the
    body first when ``decryption_key`` is given; otherwise the body is hashed as stored, so an
    encrypted image must be decrypted first), and the signatures: every signature whose key TLV names
    a trusted key must verify and at least one must; signatures by other keys are ignored, as MCUboot
    ignores keys it does not know. fabtrust also requires a security counter (SEC_CNT) and, given
    ``min_security_counter``, refuses an older one (rollback) with :class:`PolicyViolation`.
    """
    anchors = _anchors(trusted_keys)
    if min_security_counter is not None:
        _check_u32("minimum security counter", min_security_counter)
    image = Image.parse(data, max_size=max_size)
    if image.security_counter is None:
        raise InvalidInput("image carries no security counter (SEC_CNT TLV)")
    if decryption_key is not None:
        if not image.header.encrypted:
            raise InvalidInput("a decryption key was given but the image is not encrypted")
        plain = _decrypted(image, decryption_key)
    else:
        plain = image.raw
    digest = hashlib.sha256(memoryview(plain)[: image.hashed_size]).digest()
    if not hmac.compare_digest(digest, image.sha256):
        encrypted_as_stored = image.header.encrypted and decryption_key is None
        hint = " (its body is encrypted: give the decryption key)" if encrypted_as_stored else ""
        raise VerificationFailed("image hash does not match its SHA256 TLV" + hint)

    signer: bytes | None = None
    for sig in image.signatures:
        key = _signer(sig, anchors)
        if key is None:
            continue
        _check_signature(key, sig, digest)
        if signer is None:
            signer = key_hash(key)
    if signer is None:
        raise VerificationFailed("image has no signature by a trusted key")
    if min_security_counter is not None and image.security_counter < min_security_counter:
        raise PolicyViolation(
            f"image security counter {image.security_counter} is below the minimum "
            f"{min_security_counter} (rollback refused)"
        )
    return VerifiedImage(
        header=image.header,
        version=image.header.version,
        security_counter=image.security_counter,
        dependencies=image.dependencies,
        digest=digest,
        key_hash=signer,
        encrypted=image.header.encrypted,
        image=plain,
    )
