"""Firmware releases at the OEM: k-of-n approval by release signers, an SBOM, and publication as a
signed, encrypted MCUboot image.

Keys, by role (all in the OEM home's key store unless said otherwise):

- **Release signers** (``release-signer-<name>``, P-256 or Ed25519): one per person who approves
  releases. An approval is that signer's DSSE signature over the release statement; all approvals of
  a release are collected in one envelope. A signer is revoked, never deleted or renamed, so a name
  in the audit log always means the same key.
- **The firmware key** (``production-release-signer``, P-256): the OEM key devices trust. Production
  burns the SHA-256 of its SubjectPublicKeyInfo into every device's OTP
  (``ProductionService.oem_key_hash`` hashes the key with this same label), and it signs the MCUboot
  image of every published release. Images carry the full public key (PUBKEY TLV, MCUboot's
  ``MCUBOOT_HW_KEY`` mode), since devices hold only its hash. Approvals gate whether this key signs:
  it signs nothing before a release has its k approvals.
- **Class keys**, one per product (ECIES-P256, so a P-256 key pair, for the P-256 firmware key;
  X25519 if the firmware key were Ed25519): images are encrypted to the public part
  (docs/encrypted_images.md). The private part is a device-class secret that production seals into
  every device of the product, so it must leave this home, and a key store never hands a key out:
  it is therefore made in software and kept as PKCS#8 HPKE-sealed (RFC 9180) to the key-store key
  ``firmware-class-key-wrap`` (P-256, key agreement), and :meth:`ReleaseService.class_key_private`
  opens it for production, with an audit entry. It never enters a log.

A release goes **draft → approved → published**. ``create`` stores the firmware body, the SBOM and the
release statement (canonical JSON, RFC 8785)::

    {"format": "fabtrust.firmware-release/v1", "product": ..., "version": "1.2.3",
     "security_counter": 7, "body_sha256": ..., "sbom_sha256": ..., "notes": ...,
     "rollback": false, "rollback_from": null}

``approve`` adds one signer's signature over it to the release's DSSE envelope. *Approved* is not
stored: a release is approved while its envelope holds valid signatures by at least the product's
threshold of distinct, *active* signers, so revoking a signer or raising the threshold takes effect at
once. ``publish`` re-checks everything from the stored bytes (statement, envelope, body and SBOM
digests, the SBOM against the CycloneDX 1.6 schema and against the release), checks the succession
rules, builds the image (signed by the firmware key, encrypted to the class key), verifies it as a
device would and stores it. A published release is immutable and the highest-numbered one is the
product's *current* release.

Succession: a release's version must be higher than the current release's and its security counter
not lower. Anything else is a *rollback*, which must be requested explicitly (``create(...,
rollback=True)``): its statement says ``"rollback": true`` and names the release it rolls back from,
so its approvals approve exactly that rollback, and it is refused if the current release has changed
since. (A device whose hardware security counter has already reached a higher value still refuses
an image with a lower one: a rollback below a counter the fleet has seen serves new production and
devices that never installed the newer image.)

Every act and every refusal is an audit entry (``fabtrust.audit.firmware/v1``). A refusal changes
nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from fabtrust.access.policy import ApprovalAction
from fabtrust.access.service import ApprovalTicket, ticket_request_id
from fabtrust.clock import Clock, rfc3339, system_clock
from fabtrust.crypto import dsse, hpke
from fabtrust.crypto.canonical import canonical_json, parse_canonical
from fabtrust.crypto.keys import KeyType, KeyUsage, key_type_of, load_public_key, verify_signature
from fabtrust.errors import (
    Conflict,
    FabtrustError,
    InvalidInput,
    NotFound,
    PolicyViolation,
    Unavailable,
    VerificationFailed,
)
from fabtrust.firmware import sbom as sboms
from fabtrust.firmware.image import (
    IMAGE_MAGIC,
    DecryptionKey,
    EncryptionKey,
    ImageVersion,
    sign_image,
    verify_image,
)
from fabtrust.keystore.base import KeyInfo, KeyStore
from fabtrust.pki.service import check_name
from fabtrust.pki.signing import ca_private_key
from fabtrust.store.engine import Store
from fabtrust.store.tables import fw_class_keys, fw_policies, fw_releases, fw_signers, prod_products
from fabtrust.tlog.audit import AuditLog, Outcome

RELEASE_FORMAT: Final = "fabtrust.firmware-release/v1"
#: DSSE payload type of approval envelopes (the one fabtrust's signed documents use).
PAYLOAD_TYPE: Final = "application/vnd.fabtrust+json"
AUDIT_FIRMWARE: Final = "fabtrust.audit.firmware/v1"
#: Label of the OEM firmware key: the key that signs every published image, whose hash production
#: puts in its packages (``ProductionService.oem_key_hash`` asks this service) for devices to burn.
FIRMWARE_KEY: Final = "production-release-signer"
CLASS_KEY_WRAP: Final = "firmware-class-key-wrap"
SIGNER_PREFIX: Final = "release-signer-"
SIGNER_KEY_TYPES: Final = frozenset({KeyType.P256, KeyType.ED25519})
#: Largest firmware body (it travels base64-encoded inside a production package of at most 64 MiB).
MAX_BODY: Final = 32 * 1024 * 1024
MAX_NOTES: Final = 4096
#: MCUboot header size of published images (``imgtool sign --header-size 0x200 --pad-header``).
HEADER_SIZE: Final = 0x200
_CLASS_KEY_INFO = b"fabtrust.firmware-class-key/v1 product="
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_U32_MAX = 0xFFFFFFFF
_STATEMENT_FIELDS = (
    "product",
    "version",
    "security_counter",
    "body_sha256",
    "sbom_sha256",
    "notes",
    "rollback",
    "rollback_from",
)


class ReleaseState(StrEnum):
    DRAFT = "draft"
    APPROVED = "approved"
    PUBLISHED = "published"


def version_text(version: ImageVersion) -> str:
    """``major.minor.revision``, with ``+build`` only when the build number is not zero."""
    base = f"{version.major}.{version.minor}.{version.revision}"
    return f"{base}+{version.build}" if version.build else base


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------
# the release statement and the rules over it (pure)


@dataclass(frozen=True)
class ReleaseStatement:
    """What the release signers approve: ``fabtrust.firmware-release/v1``."""

    product: str
    version: ImageVersion
    security_counter: int
    body_sha256: str
    sbom_sha256: str
    notes: str
    rollback: bool = False
    rollback_from: str | None = None  # the release a rollback replaces

    def __post_init__(self) -> None:
        check_name(self.product, "product")
        if not isinstance(self.version, ImageVersion):
            raise InvalidInput("release version must be an image version")
        counter = self.security_counter
        if not isinstance(counter, int) or isinstance(counter, bool) or not 0 <= counter <= _U32_MAX:
            raise InvalidInput(f"security counter must be an integer from 0 to {_U32_MAX}")
        for name in ("body_sha256", "sbom_sha256"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _SHA256_HEX.fullmatch(value):
                raise InvalidInput(f"{name} must be 64 lower-case hexadecimal digits")
        if not isinstance(self.notes, str) or len(self.notes) > MAX_NOTES:
            raise InvalidInput(f"release notes must be text of at most {MAX_NOTES} characters")
        if not isinstance(self.rollback, bool):
            raise InvalidInput("rollback must be true or false")
        if self.rollback != (self.rollback_from is not None):
            raise InvalidInput("a rollback names the release it rolls back from, and only a rollback does")
        if self.rollback_from is not None and (
            not isinstance(self.rollback_from, str) or not 1 <= len(self.rollback_from) <= 96
        ):
            raise InvalidInput("rollback_from must be a release id")

    @property
    def release_id(self) -> str:
        base = f"{self.product}-{version_text(self.version)}"
        return f"{base}-rollback" if self.rollback else base

    def to_payload(self) -> dict[str, Any]:
        return {
            "format": RELEASE_FORMAT,
            "product": self.product,
            "version": version_text(self.version),
            "security_counter": self.security_counter,
            "body_sha256": self.body_sha256,
            "sbom_sha256": self.sbom_sha256,
            "notes": self.notes,
            "rollback": self.rollback,
            "rollback_from": self.rollback_from,
        }

    def to_json(self) -> bytes:
        return canonical_json(self.to_payload())

    @classmethod
    def parse(cls, raw: bytes) -> ReleaseStatement:
        """A statement in canonical form with exactly its fields; anything else is InvalidInput."""
        doc = parse_canonical(raw)
        if not isinstance(doc, dict) or doc.get("format") != RELEASE_FORMAT:
            raise InvalidInput(f"not a {RELEASE_FORMAT} statement")
        wanted = {"format", *_STATEMENT_FIELDS}
        if set(doc) != wanted:
            raise InvalidInput(f"{RELEASE_FORMAT}: fields must be exactly {sorted(wanted)}")
        version = doc["version"]
        if not isinstance(version, str):
            raise InvalidInput("release version must be a string")
        statement = cls(
            product=doc["product"],
            version=ImageVersion.parse(version),
            security_counter=doc["security_counter"],
            body_sha256=doc["body_sha256"],
            sbom_sha256=doc["sbom_sha256"],
            notes=doc["notes"],
            rollback=doc["rollback"],
            rollback_from=doc["rollback_from"],
        )
        if statement.to_json() != raw:
            raise InvalidInput(f"{RELEASE_FORMAT}: version is not in its canonical form")
        return statement


def check_succession(statement: ReleaseStatement, current: tuple[str, ReleaseStatement] | None) -> None:
    """May ``statement`` follow the product's current release ``(release id, statement)``?

    Normal releases: a higher version, a security counter not lower. A rollback must name the
    current release and go back in version or security counter. PolicyViolation otherwise.
    """
    if statement.rollback:
        if current is None:
            raise PolicyViolation(
                f"product {statement.product} has no published release: there is nothing to roll back"
            )
        current_id, cur = current
        if statement.rollback_from != current_id:
            raise PolicyViolation(
                f"this rollback was requested from release {statement.rollback_from}, but the current "
                f"release is {current_id}: request and approve a new rollback"
            )
        if statement.version > cur.version and statement.security_counter >= cur.security_counter:
            raise PolicyViolation(
                f"release is marked as a rollback but is newer than the current release {current_id}: "
                "release it as a normal release"
            )
        return
    if current is None:
        return
    current_id, cur = current
    if statement.security_counter < cur.security_counter:
        raise PolicyViolation(
            f"security counter {statement.security_counter} is below {cur.security_counter}, the current "
            f"release {current_id}'s: a rollback must be requested explicitly (--rollback) and approved "
            "on its own"
        )
    if statement.version <= cur.version:
        raise PolicyViolation(
            f"version {version_text(statement.version)} is not higher than {version_text(cur.version)}, "
            f"the current release {current_id}'s: a rollback must be requested explicitly (--rollback) "
            "and approved on its own"
        )


def check_approvals(
    statement: bytes, envelope: bytes | None, trusted: Mapping[str, bytes], threshold: int, release_id: str
) -> int:
    """Count the distinct trusted keys (key id -> SPKI DER) whose signatures over ``statement`` the
    approval ``envelope`` holds, and require ``threshold`` of them.

    PolicyViolation below the threshold; VerificationFailed if the envelope holds another statement
    or a trusted key's signature does not verify (tampering, not absence). Signatures by keys not in
    ``trusted`` (revoked or unknown signers) do not count.
    """
    if threshold < 1:
        raise InvalidInput("the approval threshold must be at least 1")
    if envelope is None:
        raise PolicyViolation(f"release {release_id} has no approvals; {threshold} needed")
    env = dsse.Envelope.parse(envelope)
    if env.payload_type != PAYLOAD_TYPE or not hmac.compare_digest(env.payload, statement):
        raise VerificationFailed(f"the approvals of release {release_id} are not over its statement")
    present = {s.keyid for s in env.signatures if s.keyid in trusted}
    if len(present) < threshold:
        raise PolicyViolation(
            f"release {release_id} has {len(present)} approval(s) by active release signers, "
            f"{threshold} needed"
        )
    try:
        dsse.verify(env, PAYLOAD_TYPE, trusted, threshold)
    except VerificationFailed:
        raise VerificationFailed(
            f"an approval of release {release_id} does not verify: the approval envelope was altered"
        ) from None
    return len(present)


# ---------------------------------------------------------------------------------------------------
# views


@dataclass(frozen=True)
class Signer:
    name: str
    key_id: str
    key_type: KeyType
    status: str  # active | revoked
    created_at: datetime
    revoked_at: datetime | None

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "key_id": self.key_id,
            "key_type": self.key_type.value,
            "status": self.status,
            "created_at": rfc3339(self.created_at),
            "revoked_at": rfc3339(self.revoked_at) if self.revoked_at else None,
        }


@dataclass(frozen=True)
class Approval:
    """One signature in a release's approval envelope, as things stand now."""

    signer: str | None  # None: no release signer has this key
    key_id: str
    status: str  # valid | revoked | unknown-signer | bad-signature


@dataclass(frozen=True)
class Release:
    release_id: str
    statement: ReleaseStatement
    state: ReleaseState
    approvals: tuple[Approval, ...]
    threshold: int | None  # the product's k, None without a policy
    problem: str | None  # why the stored approvals cannot count (an altered envelope)
    image_sha256: str | None
    image_size: int | None
    created_by: str
    created_at: datetime
    published_by: str | None
    published_at: datetime | None

    @property
    def valid_approvals(self) -> int:
        return len({a.key_id for a in self.approvals if a.status == "valid"})

    @property
    def sbom_sha256(self) -> str:
        return self.statement.sbom_sha256

    def to_doc(self) -> dict[str, Any]:
        return {
            "release_id": self.release_id,
            "state": self.state.value,
            "statement": self.statement.to_payload(),
            "approvals": [
                {"signer": a.signer, "key_id": a.key_id, "status": a.status} for a in self.approvals
            ],
            "valid_approvals": self.valid_approvals,
            "threshold": self.threshold,
            "problem": self.problem,
            "sbom_sha256": self.sbom_sha256,
            "image_sha256": self.image_sha256,
            "image_size": self.image_size,
            "created_by": self.created_by,
            "created_at": rfc3339(self.created_at),
            "published_by": self.published_by,
            "published_at": rfc3339(self.published_at) if self.published_at else None,
        }


def _approvals_view(
    statement: bytes, envelope: bytes | None, signers: Mapping[str, Any]
) -> tuple[tuple[Approval, ...], str | None]:
    if envelope is None:
        return (), None
    try:
        env = dsse.Envelope.parse(envelope)
    except InvalidInput as exc:
        return (), f"approval envelope is unreadable ({exc.message})"
    problem = None
    if env.payload_type != PAYLOAD_TYPE or not hmac.compare_digest(env.payload, statement):
        problem = "approval envelope is not over this release's statement"
    message = dsse.pae(env.payload_type, env.payload)
    approvals = []
    for s in env.signatures:
        row = signers.get(s.keyid)
        if row is None:
            approvals.append(Approval(None, s.keyid, "unknown-signer"))
            continue
        status = "valid"
        try:
            verify_signature(row["public_key"], message, s.sig)
        except (VerificationFailed, InvalidInput):
            status = "bad-signature"
        if problem is not None:
            status = "bad-signature"
        elif status == "valid" and row["status"] != "active":
            status = "revoked"
        approvals.append(Approval(row["name"], s.keyid, status))
    if problem is None and any(a.status == "bad-signature" for a in approvals):
        problem = "an approval signature does not verify: the approval envelope was altered"
    return tuple(approvals), problem


# ---------------------------------------------------------------------------------------------------
# the service


class ReleaseService:
    """Release signers, approval policies, class keys and releases of one OEM home."""

    def __init__(
        self,
        store: Store,
        keystore: KeyStore | Callable[[], KeyStore],
        audit: AuditLog,
        *,
        actor: str,
        clock: Clock = system_clock,
    ) -> None:
        # The key store, or a function opening it on first use: reading releases needs no secret.
        self._open_keystore: Callable[[], KeyStore] = keystore if callable(keystore) else lambda: keystore
        self._store, self._audit = store, audit
        self._actor, self._clock = actor, clock

    @property
    def _keystore(self) -> KeyStore:
        return self._open_keystore()

    # -- logging -----------------------------------------------------------------------------------

    def _log(self, action: str, subject: str, outcome: Outcome = Outcome.OK, **details: Any) -> None:
        self._audit.record(AUDIT_FIRMWARE, self._actor, action, subject, outcome, details)

    def _refused(self, action: str, subject: str, exc: FabtrustError, **details: Any) -> None:
        self._log(action, subject, Outcome.REFUSED, reason=exc.code, message=exc.message, **details)

    # -- the OEM firmware key ----------------------------------------------------------------------

    def _own_key(self, label: str, key_type: KeyType, usage: KeyUsage, purpose: str) -> KeyInfo:
        for info in self._keystore.list():
            if info.label == label:
                if info.usage is not usage:
                    raise Unavailable(f"key-store key {label} exists but is not a {usage.value} key")
                return info
        info = self._keystore.generate(label, key_type, usage)
        self._log("key.generate", info.uri, key_id=info.key_id, type=key_type.value, purpose=purpose)
        return info

    def firmware_key(self) -> KeyInfo:
        """The OEM firmware key (created on first use): signs every published image."""
        info = self._own_key(FIRMWARE_KEY, KeyType.P256, KeyUsage.SIGN, "firmware image signing")
        if info.key_type not in (KeyType.P256, KeyType.ED25519):
            raise Unavailable(f"the firmware key is {info.key_type.value}; MCUboot needs P-256 or Ed25519")
        return info

    def firmware_key_hash(self) -> bytes:
        """SHA-256 of the firmware key's DER SubjectPublicKeyInfo: what devices burn into OTP."""
        return hashlib.sha256(self.firmware_key().public_key_der).digest()

    # -- class keys --------------------------------------------------------------------------------

    def _class_key_row(self, conn: Connection, product: str) -> Any:
        return (
            conn.execute(select(fw_class_keys).where(fw_class_keys.c.product == product)).mappings().first()
        )

    def class_key_public(self, product: str) -> bytes:
        """The product's image-encryption public key (SPKI DER), made on first use."""
        with self._store.read() as conn:
            _require_product(conn, product)
            row = self._class_key_row(conn, product)
        if row is not None:
            return bytes(row["public_key"])
        return self._make_class_key(product)

    def _make_class_key(self, product: str) -> bytes:
        subject = f"product:{product}"
        try:
            wrap = self._own_key(CLASS_KEY_WRAP, KeyType.P256, KeyUsage.AGREE, "class-key wrapping")
            private: ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey
            if self.firmware_key().key_type is KeyType.P256:
                private = ec.generate_private_key(ec.SECP256R1())  # ECIES-P256
            else:
                private = x25519.X25519PrivateKey.generate()  # ECIES-X25519
            public = private.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            sealed = hpke.seal(
                wrap.public_key_der,
                private.private_bytes(
                    serialization.Encoding.DER,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
                _CLASS_KEY_INFO + product.encode(),
            )
            del private
            with self._store.write() as conn:
                if self._class_key_row(conn, product) is None:
                    conn.execute(
                        insert(fw_class_keys).values(
                            product=product,
                            public_key=public,
                            sealed_private=sealed,
                            wrap_key_uri=wrap.uri,
                            created_at=self._clock(),
                        )
                    )
                    made = True
                else:
                    made = False  # another process made it meanwhile: theirs stands
                row = self._class_key_row(conn, product)
        except FabtrustError as exc:
            self._refused("class-key.generate", subject, exc)
            raise
        if made:
            self._log("class-key.generate", subject, key_id=_sha256_hex(public), wrap_key=wrap.key_id)
        return bytes(row["public_key"])

    def class_key_private(self, product: str, *, purpose: str) -> bytes:
        """The product's image decryption key, PKCS#8 DER: the device-class secret production seals
        into each device (as the ``image-key`` secret). Each use is logged with its purpose; the key
        itself never is. NotFound before the product's class key exists."""
        subject = f"product:{product}"
        try:
            if not isinstance(purpose, str) or not purpose or len(purpose) > 200:
                raise InvalidInput("say what the class key is needed for (1-200 characters)")
            with self._store.read() as conn:
                _require_product(conn, product)
                row = self._class_key_row(conn, product)
            if row is None:
                raise NotFound(f"product {product} has no class key yet (it is made with its first release)")
            pkcs8 = self._keystore.hpke_open(
                row["wrap_key_uri"], bytes(row["sealed_private"]), _CLASS_KEY_INFO + product.encode()
            )
        except FabtrustError as exc:
            self._refused("class-key.unseal", subject, exc, purpose=str(purpose)[:200])
            raise
        self._log("class-key.unseal", subject, key_id=_sha256_hex(bytes(row["public_key"])), purpose=purpose)
        return pkcs8

    def _class_private_key(self, row: Any, product: str) -> DecryptionKey:
        pkcs8 = self._keystore.hpke_open(
            row["wrap_key_uri"], bytes(row["sealed_private"]), _CLASS_KEY_INFO + product.encode()
        )
        key = serialization.load_der_private_key(pkcs8, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey):
            raise Unavailable(f"the class key of product {product} is of an unexpected type")
        return key

    # -- signers and policies ----------------------------------------------------------------------

    def add_signer(self, name: str, key_type: KeyType = KeyType.P256) -> Signer:
        """A release signer: a new key in the key store, ``release-signer-<name>``."""
        subject = f"signer:{name}"
        try:
            check_name(name, "signer name")
            if key_type not in SIGNER_KEY_TYPES:
                raise InvalidInput("release signers use ecdsa-p256 or ed25519 keys")
            with self._store.read() as conn:
                if conn.execute(select(fw_signers.c.name).where(fw_signers.c.name == name)).first():
                    raise Conflict(f"release signer {name} exists already (names are never reused)")
            info = self._keystore.generate(SIGNER_PREFIX + name, key_type, KeyUsage.SIGN)
            with self._store.write() as conn:
                conn.execute(
                    insert(fw_signers).values(
                        name=name,
                        key_uri=info.uri,
                        key_id=info.key_id,
                        public_key=info.public_key_der,
                        status="active",
                        created_at=self._clock(),
                        revoked_at=None,
                    )
                )
        except IntegrityError:
            exc = Conflict(f"release signer {name} was added meanwhile")
            self._refused("signer.add", subject, exc)
            raise exc from None
        except FabtrustError as exc:
            self._refused("signer.add", subject, exc)
            raise
        self._log("signer.add", subject, key_id=info.key_id, type=key_type.value, key=info.uri)
        return self.signer(name)

    def revoke_signer(self, name: str) -> Signer:
        """From now on the signer's approvals do not count, on releases not yet published too."""
        subject = f"signer:{name}"
        try:
            signer = self.signer(name)
            if signer.status != "active":
                raise Conflict(f"release signer {name} is revoked already")
            with self._store.write() as conn:
                done = conn.execute(
                    update(fw_signers)
                    .where(fw_signers.c.name == name, fw_signers.c.status == "active")
                    .values(status="revoked", revoked_at=self._clock())
                )
                if done.rowcount != 1:
                    raise Conflict(f"release signer {name} was revoked meanwhile")
        except FabtrustError as exc:
            self._refused("signer.revoke", subject, exc)
            raise
        self._log("signer.revoke", subject, key_id=signer.key_id)
        return self.signer(name)

    def signer(self, name: str) -> Signer:
        with self._store.read() as conn:
            row = conn.execute(select(fw_signers).where(fw_signers.c.name == name)).mappings().first()
        if row is None:
            raise NotFound(f"no release signer {name!r}")
        return _signer(row)

    def signers(self) -> list[Signer]:
        with self._store.read() as conn:
            rows = conn.execute(select(fw_signers).order_by(fw_signers.c.name)).mappings().all()
        return [_signer(r) for r in rows]

    def set_policy(self, product: str, threshold: int) -> int:
        """k of n for a product's releases: k distinct active signers must approve (1 <= k <= n)."""
        subject = f"product:{product}"
        try:
            if not isinstance(threshold, int) or isinstance(threshold, bool) or threshold < 1:
                raise InvalidInput("the approval threshold must be at least 1")
            with self._store.write() as conn:
                _require_product(conn, product)
                active = conn.execute(
                    select(func.count()).select_from(fw_signers).where(fw_signers.c.status == "active")
                ).scalar_one()
                if threshold > active:
                    raise PolicyViolation(
                        f"threshold {threshold} is more than the {active} active release signer(s)"
                    )
                exists = conn.execute(
                    select(fw_policies.c.threshold).where(fw_policies.c.product == product)
                ).first()
                values = {"threshold": threshold, "updated_at": self._clock()}
                if exists is None:
                    conn.execute(insert(fw_policies).values(product=product, **values))
                else:
                    conn.execute(update(fw_policies).where(fw_policies.c.product == product).values(**values))
        except FabtrustError as exc:
            self._refused(
                "policy.set", subject, exc, threshold=threshold if isinstance(threshold, int) else None
            )
            raise
        self._log("policy.set", subject, threshold=threshold, signers=active)
        return threshold

    def policy(self, product: str) -> int | None:
        """The product's threshold, or None if it has none (then nothing can be published)."""
        with self._store.read() as conn:
            _require_product(conn, product)
            return _threshold(conn, product)

    # -- releases ----------------------------------------------------------------------------------

    def create(
        self,
        product: str,
        version: str,
        image_body: bytes,
        security_counter: int,
        notes: str = "",
        components: Sequence[sboms.ComponentSpec] = (),
        *,
        sbom: bytes | None = None,
        rollback: bool = False,
    ) -> Release:
        """A draft release: the firmware body (the binary the MCUboot image will wrap), its SBOM
        (built from ``components``, or a CycloneDX 1.6 document given as ``sbom``) and its statement.
        A rollback must be asked for (``rollback=True``) and names the current release."""
        subject = f"product:{product}"
        try:
            check_name(product, "product")
            parsed = ImageVersion.parse(version)
            subject = f"release:{product}-{version_text(parsed)}{'-rollback' if rollback else ''}"
            if not isinstance(image_body, bytes | bytearray) or not image_body:
                raise InvalidInput("a release needs a firmware body")
            body = bytes(image_body)
            if len(body) > MAX_BODY:
                raise InvalidInput(f"the firmware body is larger than {MAX_BODY} bytes")
            if body[:4] == IMAGE_MAGIC.to_bytes(4, "little"):
                raise InvalidInput(
                    "the firmware is an MCUboot image already: give the raw binary, fabtrust builds the image"
                )
            if not isinstance(notes, str) or len(notes) > MAX_NOTES:
                raise InvalidInput(f"release notes must be text of at most {MAX_NOTES} characters")
            if sbom is not None and components:
                raise InvalidInput("give either a component list or an SBOM, not both")
            body_sha256 = _sha256_hex(body)
            with self._store.read() as conn:
                _require_product(conn, product)
                current = _current(conn, product)
            rollback_from = None
            if rollback:
                if current is None:
                    raise PolicyViolation(f"product {product} has no published release to roll back from")
                rollback_from = current[0]
            if sbom is None:
                document = sboms.build_sbom(
                    product=product,
                    version=version_text(parsed),
                    body_sha256=body_sha256,
                    components=components,
                    timestamp=self._clock(),
                )
            else:
                document = bytes(sbom)
            sboms.check_firmware(
                sboms.validate(document),
                product=product,
                version=version_text(parsed),
                body_sha256=body_sha256,
            )
            statement = ReleaseStatement(
                product=product,
                version=parsed,
                security_counter=security_counter,
                body_sha256=body_sha256,
                sbom_sha256=_sha256_hex(document),
                notes=notes,
                rollback=rollback,
                rollback_from=rollback_from,
            )
            release_id = statement.release_id
            check_succession(statement, current)
            with self._store.write() as conn:
                if conn.execute(
                    select(fw_releases.c.release_id).where(fw_releases.c.release_id == release_id)
                ).first():
                    raise Conflict(f"release {release_id} exists already")
                conn.execute(
                    insert(fw_releases).values(
                        release_id=release_id,
                        product=product,
                        version=version_text(parsed),
                        security_counter=security_counter,
                        kind="rollback" if rollback else "release",
                        statement=statement.to_json(),
                        approvals=None,
                        body=body,
                        sbom=document,
                        state=ReleaseState.DRAFT.value,
                        seq=None,
                        image=None,
                        image_sha256=None,
                        created_by=self._actor,
                        created_at=self._clock(),
                        published_by=None,
                        published_at=None,
                    )
                )
        except IntegrityError:
            exc = Conflict(f"release {subject.removeprefix('release:')} was created meanwhile")
            self._refused("release.create", subject, exc)
            raise exc from None
        except FabtrustError as exc:
            self._refused("release.create", subject, exc)
            raise
        self._log(
            "release.create",
            subject,
            product=product,
            version=version_text(parsed),
            security_counter=security_counter,
            body_sha256=body_sha256,
            sbom_sha256=statement.sbom_sha256,
            rollback=rollback,
            rollback_from=rollback_from,
        )
        return self.show(release_id)

    def approve(self, release_id: str, signer: str) -> Release:
        """The signer's signature over the release statement, added to the release's envelope."""
        subject = f"release:{release_id}"
        try:
            with self._store.read() as conn:
                row = _release_row(conn, release_id)
                known = {r["key_id"]: r for r in conn.execute(select(fw_signers)).mappings().all()}
            srow = next((r for r in known.values() if r["name"] == signer), None)
            if row["state"] != ReleaseState.DRAFT.value:
                raise Conflict(f"release {release_id} is {row['state']}; approvals are closed")
            if srow is None:
                raise NotFound(f"no release signer {signer!r}")
            if srow["status"] != "active":
                raise PolicyViolation(f"release signer {signer} is revoked and cannot approve")
            statement = bytes(row["statement"])
            ReleaseStatement.parse(statement)
            old = row["approvals"]
            signatures: tuple[dsse.Signature, ...] = ()
            if old is not None:
                env = dsse.Envelope.parse(old)
                if env.payload_type != PAYLOAD_TYPE or not hmac.compare_digest(env.payload, statement):
                    raise VerificationFailed(
                        f"the approvals of release {release_id} are not over its statement"
                    )
                if any(s.keyid == srow["key_id"] for s in env.signatures):
                    raise Conflict(f"release signer {signer} has approved release {release_id} already")
                signatures = env.signatures
            message = dsse.pae(PAYLOAD_TYPE, statement)
            for s in signatures:  # add to an intact envelope only
                if s.keyid in known:
                    try:
                        verify_signature(known[s.keyid]["public_key"], message, s.sig)
                    except VerificationFailed:
                        raise VerificationFailed(
                            f"an approval of release {release_id} does not verify: the approval envelope "
                            "was altered"
                        ) from None
            sig = self._keystore.sign(srow["key_uri"], message)
            verify_signature(srow["public_key"], message, sig)  # the key store signed with the key we know
            envelope = dsse.Envelope(
                PAYLOAD_TYPE, statement, (*signatures, dsse.Signature(srow["key_id"], sig))
            )
            with self._store.write() as conn:
                done = conn.execute(
                    update(fw_releases)
                    .where(
                        fw_releases.c.release_id == release_id,
                        fw_releases.c.state == ReleaseState.DRAFT.value,
                        fw_releases.c.approvals.is_(None) if old is None else fw_releases.c.approvals == old,
                    )
                    .values(approvals=envelope.to_json())
                )
                if done.rowcount != 1:
                    raise Conflict(f"release {release_id} changed meanwhile; approve again")
        except FabtrustError as exc:
            self._refused("release.approve", subject, exc, signer=str(signer)[:64])
            raise
        release = self.show(release_id)
        self._log(
            "release.approve",
            subject,
            signer=signer,
            key_id=srow["key_id"],
            approvals=release.valid_approvals,
            threshold=release.threshold,
        )
        return release

    def publish_terms(self, release_id: str) -> dict[str, Any]:
        """What the approvers of a release's publication review (a ``firmware.publish`` request on
        ``release:<id>``), and publishing is held to: the exact release statement the signers
        signed."""
        with self._store.read() as conn:
            row = _release_row(conn, release_id)
        if row["state"] == ReleaseState.PUBLISHED.value:
            raise Conflict(f"release {release_id} is published already")
        statement = ReleaseStatement.parse(bytes(row["statement"]))
        return {
            "release_id": release_id,
            "product": statement.product,
            "version": version_text(statement.version),
            "security_counter": statement.security_counter,
            "statement_sha256": _sha256_hex(bytes(row["statement"])),
        }

    def publish(self, release_id: str, approval: ApprovalTicket) -> Release:
        """Check the signers' approvals, the succession and the SBOM; then sign (firmware key) and
        encrypt (class key) the MCUboot image, verify it as a device would, and store it, spending
        ``approval`` (a ``firmware.publish`` request for :meth:`publish_terms`) in the same
        transaction. The signers' DSSE signatures are what devices and auditors verify offline;
        the approval is who in the organisation decided to ship it."""
        subject = f"release:{release_id}"
        try:
            with self._store.read() as conn:
                row = _release_row(conn, release_id)
                if row["state"] != ReleaseState.DRAFT.value:
                    raise Conflict(f"release {release_id} is {row['state']} already")
                raw_statement = bytes(row["statement"])
                statement = ReleaseStatement.parse(raw_statement)
                _check_row(row, statement)
                product = statement.product
                count = self._check_approvals(conn, row, raw_statement)
                current = _current(conn, product)
                current_seq = _max_seq(conn, product)
            terms = self.publish_terms(release_id)
            approval.access.check_ticket(approval, ApprovalAction.FIRMWARE_PUBLISH, subject, terms)
            check_succession(statement, current)
            body = bytes(row["body"])
            if not hmac.compare_digest(_sha256_hex(body), statement.body_sha256):
                raise VerificationFailed("the stored firmware body is not the one the statement names")
            document = bytes(row["sbom"])
            if not hmac.compare_digest(_sha256_hex(document), statement.sbom_sha256):
                raise VerificationFailed("the stored SBOM is not the one the statement names")
            sboms.check_firmware(
                sboms.validate(document),
                product=product,
                version=version_text(statement.version),
                body_sha256=statement.body_sha256,
            )
            firmware = self.firmware_key()
            signing_key = self._image_signing_key(firmware)
            class_public = _encryption_key(self.class_key_public(product))
            image = sign_image(
                body,
                version=statement.version,
                security_counter=statement.security_counter,
                signing_key=signing_key,
                header_size=HEADER_SIZE,
                encrypt_to=class_public,
                embed_public_key=True,
            )
            with self._store.read() as conn:
                class_row = self._class_key_row(conn, product)
            verified = verify_image(
                image,
                trusted_keys=[hashlib.sha256(firmware.public_key_der).digest()],
                decryption_key=self._class_private_key(class_row, product),
            )
            if (
                verified.version != statement.version
                or verified.security_counter != statement.security_counter
                or bytes(verified.body[: len(body)]) != body
            ):
                raise VerificationFailed("the image built does not carry the approved firmware")
            image_sha256 = _sha256_hex(image)
            now = self._clock()
            with self._store.write() as conn:
                again = _release_row(conn, release_id, for_update=True)
                if again["state"] != ReleaseState.DRAFT.value or again["approvals"] != row["approvals"]:
                    raise Conflict(f"release {release_id} changed meanwhile; publish again")
                if _max_seq(conn, product) != current_seq:
                    raise Conflict(f"another release of {product} was published meanwhile; publish again")
                self._check_approvals(conn, again, raw_statement)  # signers or policy changed meanwhile
                request = approval.spend(conn, ApprovalAction.FIRMWARE_PUBLISH, subject, terms)
                conn.execute(
                    update(fw_releases)
                    .where(fw_releases.c.release_id == release_id)
                    .values(
                        state=ReleaseState.PUBLISHED.value,
                        seq=(current_seq or 0) + 1,
                        image=image,
                        image_sha256=image_sha256,
                        published_by=self._actor,
                        published_at=now,
                    )
                )
        except IntegrityError:
            exc = Conflict(f"another release was published meanwhile; publish {release_id} again")
            self._refused("release.publish", subject, exc)
            raise exc from None
        except FabtrustError as exc:
            self._refused("release.publish", subject, exc, request_id=ticket_request_id(approval))
            raise
        self._log(
            "release.publish",
            subject,
            request_id=request.request_id,
            requested_by=request.requested_by,
            approvers=[a.principal_id for a in request.approvals],
            product=product,
            version=version_text(statement.version),
            security_counter=statement.security_counter,
            rollback=statement.rollback,
            approvals=count,
            image_sha256=image_sha256,
            mcuboot_sha256=verified.digest.hex(),
            key_id=firmware.key_id,
            replaces=current[0] if current else None,
        )
        return self.show(release_id)

    def _check_approvals(self, conn: Connection, row: Any, statement: bytes) -> int:
        product = row["product"]
        threshold = _threshold(conn, product)
        if threshold is None:
            raise PolicyViolation(
                f"product {product} has no approval policy: set one with `fabtrust firmware policy set`"
            )
        trusted = {
            r["key_id"]: bytes(r["public_key"])
            for r in conn.execute(select(fw_signers).where(fw_signers.c.status == "active")).mappings()
        }
        return check_approvals(statement, row["approvals"], trusted, threshold, row["release_id"])

    def _image_signing_key(self, firmware: KeyInfo) -> Any:
        """The firmware key as the private-key object ``sign_image`` calls: the key itself where the
        key store keeps keys in this process, else a stand-in signing in the key store (HSM). A P-256
        stand-in signs the image's SHA-256 with ``KeyStore.sign_digest`` (ECDSA over a prehashed
        SHA-256, as MCUboot defines it); an Ed25519 one signs the digest as the message."""
        return ca_private_key(self._keystore, firmware)

    # -- reading -----------------------------------------------------------------------------------

    def show(self, release_id: str) -> Release:
        with self._store.read() as conn:
            row = _release_row(conn, release_id)
            return self._view(conn, row)

    def list(self, product: str | None = None) -> list[Release]:
        query = select(fw_releases).order_by(fw_releases.c.created_at, fw_releases.c.release_id)
        if product is not None:
            query = query.where(fw_releases.c.product == product)
        with self._store.read() as conn:
            return [self._view(conn, row) for row in conn.execute(query).mappings().all()]

    def current(self, product: str) -> Release | None:
        """The product's current (latest published) release."""
        with self._store.read() as conn:
            found = _current(conn, product)
        return None if found is None else self.show(found[0])

    def image(self, release_id: str) -> bytes:
        """The published MCUboot image (signed, encrypted to the product's class key)."""
        with self._store.read() as conn:
            row = _release_row(conn, release_id)
        if row["state"] != ReleaseState.PUBLISHED.value or row["image"] is None:
            raise Conflict(f"release {release_id} is not published: it has no image yet")
        image = bytes(row["image"])
        if not hmac.compare_digest(_sha256_hex(image), row["image_sha256"]):
            raise VerificationFailed(f"the stored image of release {release_id} is damaged")
        return image

    def sbom(self, release_id: str) -> bytes:
        """The release's CycloneDX 1.6 JSON document, checked against its statement."""
        with self._store.read() as conn:
            row = _release_row(conn, release_id)
        document = bytes(row["sbom"])
        statement = ReleaseStatement.parse(bytes(row["statement"]))
        if not hmac.compare_digest(_sha256_hex(document), statement.sbom_sha256):
            raise VerificationFailed(f"the stored SBOM of release {release_id} is not the one approved")
        return document

    def _view(self, conn: Connection, row: Any) -> Release:
        statement = ReleaseStatement.parse(bytes(row["statement"]))
        signers = {r["key_id"]: r for r in conn.execute(select(fw_signers)).mappings().all()}
        approvals, problem = _approvals_view(bytes(row["statement"]), row["approvals"], signers)
        threshold = _threshold(conn, row["product"])
        if row["state"] == ReleaseState.PUBLISHED.value:
            state = ReleaseState.PUBLISHED
        else:
            valid = len({a.key_id for a in approvals if a.status == "valid"})
            ready = problem is None and threshold is not None and valid >= threshold
            state = ReleaseState.APPROVED if ready else ReleaseState.DRAFT
        image = row["image"]
        return Release(
            release_id=row["release_id"],
            statement=statement,
            state=state,
            approvals=approvals,
            threshold=threshold,
            problem=problem,
            image_sha256=row["image_sha256"],
            image_size=len(image) if image is not None else None,
            created_by=row["created_by"],
            created_at=row["created_at"],
            published_by=row["published_by"],
            published_at=row["published_at"],
        )


# ---------------------------------------------------------------------------------------------------
# helpers


def _signer(row: Any) -> Signer:
    return Signer(
        name=row["name"],
        key_id=row["key_id"],
        key_type=key_type_of(load_public_key(row["public_key"])),
        status=row["status"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


def _require_product(conn: Connection, product: str) -> None:
    if conn.execute(select(prod_products.c.name).where(prod_products.c.name == product)).first() is None:
        raise NotFound(f"no product {product!r}")


def _threshold(conn: Connection, product: str) -> int | None:
    row = conn.execute(select(fw_policies.c.threshold).where(fw_policies.c.product == product)).first()
    return None if row is None else int(row[0])


def _release_row(conn: Connection, release_id: str, *, for_update: bool = False) -> Any:
    query = select(fw_releases).where(fw_releases.c.release_id == release_id)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"no release {release_id!r}")
    return row


def _max_seq(conn: Connection, product: str) -> int | None:
    value = conn.execute(select(func.max(fw_releases.c.seq)).where(fw_releases.c.product == product)).scalar()
    return None if value is None else int(value)


def _current(conn: Connection, product: str) -> tuple[str, ReleaseStatement] | None:
    row = conn.execute(
        select(fw_releases.c.release_id, fw_releases.c.statement)
        .where(fw_releases.c.product == product, fw_releases.c.state == ReleaseState.PUBLISHED.value)
        .order_by(fw_releases.c.seq.desc())
        .limit(1)
    ).first()
    return None if row is None else (row[0], ReleaseStatement.parse(bytes(row[1])))


def _check_row(row: Any, statement: ReleaseStatement) -> None:
    """The columns beside the statement must say what it says (they are what queries see)."""
    if (
        row["release_id"] != statement.release_id
        or row["product"] != statement.product
        or row["version"] != version_text(statement.version)
        or row["security_counter"] != statement.security_counter
        or row["kind"] != ("rollback" if statement.rollback else "release")
    ):
        raise VerificationFailed(f"the stored release {row['release_id']} does not match its statement")


def _encryption_key(spki: bytes) -> EncryptionKey:
    key = load_public_key(spki)
    if isinstance(key, ec.EllipticCurvePublicKey | x25519.X25519PublicKey):
        return key
    raise Unavailable("the class key is neither a P-256 nor an X25519 key")


__all__ = [
    "AUDIT_FIRMWARE",
    "FIRMWARE_KEY",
    "PAYLOAD_TYPE",
    "RELEASE_FORMAT",
    "Approval",
    "Release",
    "ReleaseService",
    "ReleaseState",
    "ReleaseStatement",
    "Signer",
    "check_approvals",
    "check_succession",
    "version_text",
]
