"""Signed updates: a TUF repository kept in a data home's store, built with python-tuf's Metadata API.

The four top-level roles of the TUF specification (v1.0, section 2.1): *root* names the keys and the
threshold of every role; *targets* lists the firmware images with their length, SHA-256 and custom
metadata (version, security counter, product, release); *snapshot* pins the version, length and hash
of the targets metadata; *timestamp* pins those of the snapshot and expires soonest, so that a frozen
repository shows within a day. Consistent snapshots are on (section 6.2): metadata is served as
``<version>.<role>.json`` (``timestamp.json`` alone is unversioned) and targets as
``<sha256>.<name>``; every version and every blob stays available, so a client in the middle of an
update never sees a mix of two repository states.

Keys live in the home's key store and never leave it: :class:`KeyStoreSigner` adapts a key-store key
to securesystemslib's ``Signer``, the interface ``Metadata.sign`` takes (Ed25519, ECDSA P-256 and
P-384; the key store's signature encodings are the ones TUF's ``ed25519`` and ``ecdsa-sha2-nistp*``
schemes verify). Which key-store URI holds each TUF key id is the repository's own record.

Every change builds the new metadata versions, signs them, checks them the way a client will (a new
root: a threshold of the previous root's keys and of its own, client workflow 5.3.4; the other roles:
a threshold of their keys in the root), and stores them with their audit entry in one transaction.
Bad input changes nothing and is logged as a refusal.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NoReturn, cast

from securesystemslib.signer import Key, SecretsHandler, Signature, Signer, SSlibKey
from sqlalchemy import Connection, func, insert, select
from sqlalchemy.exc import IntegrityError
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Role,
    Root,
    Signed,
    Snapshot,
    TargetFile,
    Targets,
    Timestamp,
)
from tuf.api.serialization import DeserializationError

from fabtrust.clock import Clock, system_clock
from fabtrust.crypto.canonical import canonical_json
from fabtrust.crypto.keys import KeyType, KeyUsage, load_public_key
from fabtrust.errors import Conflict, FabtrustError, InvalidInput, NotFound, PolicyViolation, Unavailable
from fabtrust.firmware.releases import ReleaseService, version_text
from fabtrust.keystore.base import KeyInfo, KeyStore
from fabtrust.store.engine import Store
from fabtrust.store.tables import tuf_keys, tuf_metadata, tuf_roles, tuf_targets
from fabtrust.tlog.audit import AuditLog, Outcome

AUDIT_UPDATES = "fabtrust.audit.updates/v1"

#: The top-level roles (TUF 2.1), in the order a client loads them after root.
ROLES: Final = ("root", "targets", "snapshot", "timestamp")
MAX_ROOT_KEYS: Final = 9
#: Key types a TUF role key may have: those whose key-store signatures TUF's schemes verify.
TUF_KEY_TYPES: Final = frozenset({KeyType.ED25519, KeyType.P256, KeyType.P384})

MAX_TARGET_SIZE: Final = 64 * 1024 * 1024
MAX_CUSTOM: Final = 8 * 1024  # canonical JSON bytes of one target's custom metadata
MAX_TARGET_NAME: Final = 160
MAX_ROLE_KEYS: Final = 16
MIN_EXPIRY: Final = timedelta(minutes=1)
MAX_EXPIRY: Final = timedelta(days=3650)
_ATTEMPTS = 3  # a write that lost a race for the next version number is rebuilt this often

# A target name is a path-relative URL (TUF 4.5 "TARGETPATH"): '/'-separated segments of a
# conservative character set, each starting with a letter or digit, so '.', '..', empty segments,
# absolute paths, backslashes, percent escapes, spaces and control characters cannot occur.
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}"
_TARGET_NAME = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT}){{0,7}}")
_METADATA_NAME = re.compile(r"(?:([1-9][0-9]{0,17})\.(root|snapshot|targets)|timestamp)\.json")
_HASH_PREFIXED = re.compile(r"([0-9a-f]{64})\.(.+)", re.DOTALL)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- values ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expiries:
    """How long each new version of a role's metadata stays valid (TUF 4.2 "expires")."""

    root: timedelta = timedelta(days=365)
    targets: timedelta = timedelta(days=90)
    snapshot: timedelta = timedelta(days=7)
    timestamp: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        for role in ROLES:
            value = getattr(self, role)
            if not isinstance(value, timedelta) or not MIN_EXPIRY <= value <= MAX_EXPIRY:
                raise InvalidInput(f"the {role} expiry must be a period from 1 minute to 3650 days")
            if value % timedelta(seconds=1):
                raise InvalidInput(f"the {role} expiry must be a whole number of seconds")

    def of(self, role: str) -> timedelta:
        return cast(timedelta, getattr(self, role))

    def seconds(self) -> dict[str, int]:
        return {role: int(self.of(role).total_seconds()) for role in ROLES}


@dataclass(frozen=True)
class RoleKeys:
    """A role's keys (key-store URIs) and how many of them must sign (TUF 4.3 "threshold")."""

    uris: tuple[str, ...]
    threshold: int = 1

    def __post_init__(self) -> None:
        uris = self.uris
        if isinstance(uris, str) or not isinstance(uris, Iterable):
            raise InvalidInput("a role's keys must be a list of key-store URIs")
        uris = tuple(uris)
        object.__setattr__(self, "uris", uris)
        if not all(isinstance(u, str) and u for u in uris):
            raise InvalidInput("a role's keys must be a list of key-store URIs")
        if not uris:
            raise InvalidInput("a role needs at least one key")
        if len(uris) > MAX_ROLE_KEYS:
            raise InvalidInput(f"a role has at most {MAX_ROLE_KEYS} keys")
        if len(set(uris)) != len(uris):
            raise InvalidInput("a role lists the same key twice")
        threshold = self.threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
            raise InvalidInput("a role's threshold must be a whole number of at least 1")
        if threshold > len(uris):
            raise InvalidInput(f"a threshold of {threshold} needs at least {threshold} keys, not {len(uris)}")


@dataclass(frozen=True)
class Versions:
    """The newest version of each top-level role."""

    root: int
    targets: int
    snapshot: int
    timestamp: int

    def as_dict(self) -> dict[str, int]:
        return {role: int(getattr(self, role)) for role in ROLES}


@dataclass(frozen=True)
class PublishedTarget:
    """A target as the current targets metadata lists it."""

    name: str
    sha256: str
    length: int
    custom: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> str:
        """Where it is served under ``targets/`` (consistent snapshots: hash-prefixed basename)."""
        return hash_prefixed(self.name, self.sha256)


# -- names (pure) ----------------------------------------------------------------------------------


def check_target_name(name: object) -> str:
    """``name`` if it is a safe TUF target path, else InvalidInput (the name is not echoed)."""
    if not isinstance(name, str) or len(name) > MAX_TARGET_NAME or not _TARGET_NAME.fullmatch(name):
        raise InvalidInput(
            f"a target name is 1-{MAX_TARGET_NAME} characters: up to 8 '/'-separated segments of "
            "A-Z a-z 0-9 . _ + - , each starting with a letter or digit"
        )
    return name


def hash_prefixed(name: str, sha256: str) -> str:
    """The consistent-snapshot file name of a target (TUF 6.2): ``dir/<sha256>.<basename>``."""
    dirname, sep, basename = name.rpartition("/")
    return f"{dirname}{sep}{sha256}.{basename}"


def parse_metadata_name(name: str) -> tuple[str, int | None]:
    """(role, version) of a served metadata file name: ``<N>.root.json``, ``<N>.targets.json``,
    ``<N>.snapshot.json`` or ``timestamp.json`` (version None); NotFound for anything else."""
    match = _METADATA_NAME.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise NotFound("no such metadata file")
    if match.group(1) is None:
        return Timestamp.type, None
    return match.group(2), int(match.group(1))


def parse_target_path(path: str) -> tuple[str, str]:
    """(name, sha256) of a served target path ``dir/<sha256>.<basename>``; NotFound otherwise."""
    if not isinstance(path, str) or len(path) > MAX_TARGET_NAME + 65:
        raise NotFound("no such target")
    dirname, sep, basename = path.rpartition("/")
    match = _HASH_PREFIXED.fullmatch(basename)
    if match is None:
        raise NotFound("no such target")
    name = f"{dirname}{sep}{match.group(2)}"
    try:
        check_target_name(name)
    except InvalidInput:
        raise NotFound("no such target") from None
    return name, match.group(1)


def _check_custom(custom: object) -> dict[str, Any]:
    """A target's custom metadata: a JSON object of at most MAX_CUSTOM canonical bytes."""
    if custom is None:
        return {}
    if not isinstance(custom, Mapping):
        raise InvalidInput("a target's custom metadata must be a JSON object")
    raw = canonical_json(dict(custom))  # refuses floats, non-string keys, out-of-range integers
    if len(raw) > MAX_CUSTOM:
        raise InvalidInput(f"a target's custom metadata is at most {MAX_CUSTOM} bytes of JSON")
    doc = json.loads(raw)
    assert isinstance(doc, dict)
    return doc


# -- keys: the key store as a securesystemslib Signer ------------------------------------------------


def tuf_key(info: KeyInfo) -> SSlibKey:
    """The TUF public key (securesystemslib ``SSlibKey``, default key id) of a key-store signing key."""
    if info.usage is not KeyUsage.SIGN or info.key_type not in TUF_KEY_TYPES:
        raise InvalidInput(
            f"key {info.uri} is a {info.key_type.value} {info.usage.value} key; "
            "TUF role keys are ed25519, ecdsa-p256 or ecdsa-p384 signing keys"
        )
    return SSlibKey.from_crypto(load_public_key(info.public_key_der))


class KeyStoreSigner(Signer):
    """A securesystemslib ``Signer`` whose private key stays in a fabtrust key store.

    ``sign`` asks the key store to sign the payload (``KeyStore.sign``: ECDSA as DER over SHA-256 or
    SHA-384, Ed25519 over the message itself, which is what the ``ecdsa-sha2-nistp256/384`` and
    ``ed25519`` schemes verify) and wraps the signature for ``Metadata.sign``.
    """

    def __init__(self, keystore: KeyStore, uri: str, public_key: Key) -> None:
        self._keystore = keystore
        self._uri = uri
        self._public_key = public_key

    @classmethod
    def for_key(cls, keystore: KeyStore, uri: str) -> KeyStoreSigner:
        return cls(keystore, uri, tuf_key(keystore.get(uri)))

    @classmethod
    def from_priv_key_uri(
        cls, priv_key_uri: str, public_key: Key, secrets_handler: SecretsHandler | None = None
    ) -> NoReturn:
        # No global key-store registry to dispatch on (services get their key store explicitly).
        raise ValueError("make a KeyStoreSigner with its key store: KeyStoreSigner(keystore, uri, key)")

    @property
    def public_key(self) -> Key:
        return self._public_key

    @property
    def uri(self) -> str:
        return self._uri

    def sign(self, payload: bytes) -> Signature:
        return Signature(self._public_key.keyid, self._keystore.sign(self._uri, payload).hex())


def sign_metadata(md: Metadata[Any], signers: Iterable[Signer]) -> None:
    """Replace ``md``'s signatures with one from each signer; a key-store refusal comes out as itself."""
    md.signatures.clear()
    for signer in signers:
        try:
            md.sign(signer, append=True)
        except UnsignedMetadataError as exc:  # Metadata.sign wraps whatever the signer raised
            if isinstance(exc.__cause__, FabtrustError):
                raise exc.__cause__ from None
            raise Unavailable("the key store could not sign the update metadata") from exc


# -- the repository ----------------------------------------------------------------------------------


@dataclass
class _Head:
    """The newest version of each role, parsed and as stored, and the repository's configuration."""

    metadata: dict[str, Metadata[Any]]
    raw: dict[str, bytes]
    expiries: Expiries
    uris: dict[str, str]  # TUF key id -> key-store URI

    @property
    def root(self) -> Root:
        return cast(Root, self.metadata[Root.type].signed)

    def copy(self, role: str) -> Any:
        """A fresh, mutable copy of the role's newest signed part."""
        return Metadata.from_bytes(self.raw[role]).signed

    def version(self, role: str) -> int:
        md = self.metadata.get(role)
        return 0 if md is None else int(md.signed.version)

    def versions(self) -> Versions:
        return Versions(*(self.version(role) for role in ROLES))

    def meta_file(self, role: str) -> MetaFile:
        """How the next role up pins this one (TUF 4.4/4.6 METAFILES): version, length and SHA-256."""
        raw = self.raw[role]
        return MetaFile(self.version(role), len(raw), {"sha256": _sha256(raw)})


@dataclass(frozen=True)
class _Staged:
    role: str
    version: int
    body: bytes
    expires: datetime


class UpdateRepository:
    """The TUF repository of one data home.

    ``keystore`` is called only when something is signed, so serving (``metadata``, ``target``) needs
    neither passphrase nor PIN.
    """

    def __init__(
        self,
        store: Store,
        keystore: Callable[[], KeyStore],
        audit: AuditLog,
        *,
        actor: str,
        clock: Clock = system_clock,
        max_target_size: int = MAX_TARGET_SIZE,
    ) -> None:
        self._store, self._keystore, self._audit = store, keystore, audit
        self._actor, self._clock, self._max_target_size = actor, clock, max_target_size

    # -- reading (what /updates serves) ------------------------------------------------------------

    def metadata(self, name: str) -> bytes:
        """A served metadata file by name (see :func:`parse_metadata_name`); NotFound otherwise."""
        role, version = parse_metadata_name(name)
        query = select(tuf_metadata.c.body).where(tuf_metadata.c.role == role)
        if version is None:
            query = query.order_by(tuf_metadata.c.version.desc()).limit(1)
        else:
            query = query.where(tuf_metadata.c.version == version)
        with self._store.read() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound("no such metadata file")
        return bytes(row[0])

    def target(self, path: str) -> bytes:
        """A served target blob by its hash-prefixed path; NotFound otherwise."""
        name, sha256 = parse_target_path(path)
        with self._store.read() as conn:
            row = conn.execute(
                select(tuf_targets.c.blob).where(tuf_targets.c.name == name, tuf_targets.c.sha256 == sha256)
            ).first()
        if row is None:
            raise NotFound("no such target")
        return bytes(row[0])

    def trusted_root(self, version: int = 1) -> bytes:
        """A root version, as served: what a device is given to bootstrap trust (TUF 5.2)."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidInput("a root version is a whole number of at least 1")
        return self.metadata(f"{version}.root.json")

    def versions(self) -> Versions:
        with self._store.read() as conn:
            head = self._load(conn)
        if head is None:
            raise NotFound("the update repository is not initialised")
        return head.versions()

    def targets(self) -> list[PublishedTarget]:
        """The targets the newest targets metadata lists, by name."""
        with self._store.read() as conn:
            head = self._load(conn)
        if head is None:
            raise NotFound("the update repository is not initialised")
        listed = cast(Targets, head.metadata[Targets.type].signed).targets
        return [_published(listed[name]) for name in sorted(listed)]

    # -- changing ----------------------------------------------------------------------------------

    def init(
        self,
        *,
        root: RoleKeys,
        targets: RoleKeys,
        snapshot: RoleKeys,
        timestamp: RoleKeys,
        expiries: Expiries | None = None,
    ) -> Versions:
        """Create version 1 of every role: root signed by its keys (all of them, at least its
        threshold), an empty targets, the snapshot and timestamp pinning them. Conflict if the
        repository exists; a key listed for two roles is a PolicyViolation (each role its own keys)."""
        with self._refusals("updates.init", "update-repository"):
            specs = {
                Root.type: root,
                Targets.type: targets,
                Snapshot.type: snapshot,
                Timestamp.type: timestamp,
            }
            if not all(isinstance(spec, RoleKeys) for spec in specs.values()):
                raise InvalidInput("every role needs its RoleKeys (key-store URIs and a threshold)")
            expiries = Expiries() if expiries is None else expiries
            if not isinstance(expiries, Expiries):
                raise InvalidInput("expiries must be an Expiries")
            resolved = self._resolve(specs, taken={})

            def build(conn: Connection, head: _Head | None, now: datetime) -> tuple[_Head, dict[str, Any]]:
                if head is not None:
                    raise Conflict("the update repository exists already; nothing changed")
                new = _Head({}, {}, expiries, {})
                root_md = Root(expires=now, consistent_snapshot=True)
                for role, keys in resolved.items():
                    root_md.roles[role] = Role([], specs[role].threshold)
                    for uri, key in keys:
                        root_md.add_key(key, role)
                        new.uris[key.keyid] = uri
                conn.execute(
                    insert(tuf_keys),
                    [{"keyid": k, "key_uri": u, "created_at": now} for k, u in new.uris.items()],
                )
                conn.execute(
                    insert(tuf_roles),
                    [
                        {"role": role, "expiry_seconds": s, "updated_at": now}
                        for role, s in expiries.seconds().items()
                    ],
                )
                self._put(new, Root.type, root_md, now, previous=None)
                self._put(new, Targets.type, Targets(expires=now), now)
                self._reissue_from(new, Snapshot.type, now)
                details = {
                    "roles": {
                        role: {"keyids": sorted(k.keyid for _, k in keys), "threshold": specs[role].threshold}
                        for role, keys in resolved.items()
                    },
                    "expiries": expiries.seconds(),
                }
                return new, details

            return self._commit("updates.init", "update-repository", build)

    def init_with_new_keys(
        self, *, root_keys: int = 3, root_threshold: int = 2, key_type: KeyType = KeyType.ED25519
    ) -> Versions:
        """:meth:`init` with new role keys made in the key store: ``root_threshold`` of ``root_keys``
        root keys (``tuf-root-<i>``), one key each for targets, snapshot and timestamp. Refused
        before any key is made if the repository exists or the threshold is out of range."""
        if not 1 <= root_threshold <= root_keys <= MAX_ROOT_KEYS:
            raise InvalidInput(
                f"root threshold must be 1 to the number of root keys (at most {MAX_ROOT_KEYS})"
            )
        with self._store.read() as conn:
            if self._load(conn) is not None:
                raise Conflict("the update repository exists already")
        keystore = self._keystore()

        def keys(role: str, n: int) -> tuple[str, ...]:
            return tuple(
                keystore.generate(f"tuf-{role}-{i}", key_type, KeyUsage.SIGN).uri for i in range(1, n + 1)
            )

        return self.init(
            root=RoleKeys(keys(Root.type, root_keys), root_threshold),
            targets=RoleKeys(keys(Targets.type, 1)),
            snapshot=RoleKeys(keys(Snapshot.type, 1)),
            timestamp=RoleKeys(keys(Timestamp.type, 1)),
        )

    def add_release(self, releases: ReleaseService, release_id: str) -> PublishedTarget:
        """Offer a published firmware release to devices (a draft is refused): target
        ``<product>/<version>.mcuboot`` with the release id, product, version and security counter
        as its custom metadata."""
        release = releases.show(release_id)
        image = releases.image(release_id)  # Conflict unless published; checked against its digest
        statement = release.statement
        version = version_text(statement.version)
        return self.add_target(
            f"{statement.product}/{version}.mcuboot",
            image,
            {
                "release": release.release_id,
                "product": statement.product,
                "version": version,
                "security_counter": statement.security_counter,
            },
        )

    def add_target(self, name: str, data: bytes, custom: Mapping[str, Any] | None = None) -> PublishedTarget:
        """Publish ``data`` as target ``name`` with ``custom`` metadata (a JSON object, e.g. version,
        security counter, product, release id): new targets, snapshot and timestamp versions. A name
        published before gets the new content (its old blob stays for older snapshots)."""
        subject = _target_subject(name)
        with self._refusals("updates.target.publish", subject):
            check_target_name(name)
            if not isinstance(data, bytes):
                raise InvalidInput("a target's content must be bytes")
            if not data:
                raise InvalidInput("a target needs content (it is empty)")
            if len(data) > self._max_target_size:
                raise InvalidInput(
                    f"a target is at most {self._max_target_size} bytes; this one is {len(data)}"
                )
            doc = _check_custom(custom)
            digest = _sha256(data)
            info = TargetFile(len(data), {"sha256": digest}, name, {"custom": doc} if doc else None)

            def build(conn: Connection, head: _Head | None, now: datetime) -> tuple[_Head, dict[str, Any]]:
                head = _initialised(head)
                targets_md = cast(Targets, head.copy(Targets.type))
                if targets_md.targets.get(name) == info:
                    raise Conflict(f"target {name} is published already with this content; nothing changed")
                targets_md.targets[name] = info
                stored = conn.execute(
                    select(tuf_targets.c.length).where(
                        tuf_targets.c.name == name, tuf_targets.c.sha256 == digest
                    )
                ).first()
                if stored is None:
                    conn.execute(
                        insert(tuf_targets).values(
                            name=name, sha256=digest, length=len(data), blob=data, created_at=now
                        )
                    )
                self._put(head, Targets.type, targets_md, now)
                self._reissue_from(head, Snapshot.type, now)
                return head, {"sha256": digest, "length": len(data), "custom": doc}

            self._commit("updates.target.publish", subject, build)
            return PublishedTarget(name, digest, len(data), doc)

    def remove_target(self, name: str) -> Versions:
        """Stop listing target ``name`` (new targets, snapshot, timestamp); its blob stays for the
        snapshots that name it. NotFound if the newest targets metadata does not list it."""
        subject = _target_subject(name)
        with self._refusals("updates.target.remove", subject):
            check_target_name(name)

            def build(conn: Connection, head: _Head | None, now: datetime) -> tuple[_Head, dict[str, Any]]:
                head = _initialised(head)
                targets_md = cast(Targets, head.copy(Targets.type))
                removed = targets_md.targets.pop(name, None)
                if removed is None:
                    raise NotFound(f"no published target {name}")
                self._put(head, Targets.type, targets_md, now)
                self._reissue_from(head, Snapshot.type, now)
                return head, {"sha256": removed.hashes.get("sha256")}

            return self._commit("updates.target.remove", subject, build)

    def refresh(self, role: str = Timestamp.type) -> Versions:
        """Re-sign ``role`` with a fresh expiry, and the roles that pin it (targets -> snapshot ->
        timestamp). Run ``refresh("timestamp")`` more often than the timestamp expires."""
        with self._refusals("updates.refresh", f"update-role:{_role_subject(role)}"):
            _check_role(role)

            def build(conn: Connection, head: _Head | None, now: datetime) -> tuple[_Head, dict[str, Any]]:
                head = _initialised(head)
                if role == Root.type:
                    self._put(head, Root.type, head.copy(Root.type), now, previous=head.root)
                else:
                    self._reissue_from(head, role, now)
                return head, {"role": role}

            return self._commit("updates.refresh", f"update-role:{role}", build)

    def refresh_timestamp(self) -> Versions:
        return self.refresh(Timestamp.type)

    def rotate(self, role: str, keys: RoleKeys) -> Versions:
        """Give ``role`` new keys and threshold: a new root version listing them, signed by a threshold
        of the previous root's keys and of the new root's (client workflow 5.3.4), then, unless the role
        is root, its metadata (and what pins it) re-signed with the new keys."""
        with self._refusals("updates.rotate", f"update-role:{_role_subject(role)}"):
            _check_role(role)
            if not isinstance(keys, RoleKeys):
                raise InvalidInput("the new keys must be RoleKeys (key-store URIs and a threshold)")
            with self._store.read() as conn:
                current = _initialised(self._load(conn))
            taken = {
                keyid: other
                for other, spec in current.root.roles.items()
                if other != role
                for keyid in spec.keyids
            }
            resolved = self._resolve({role: keys}, taken=taken)[role]
            new_keyids = sorted(key.keyid for _, key in resolved)

            def build(conn: Connection, head: _Head | None, now: datetime) -> tuple[_Head, dict[str, Any]]:
                head = _initialised(head)
                previous = head.root
                old = previous.roles[role]
                if sorted(old.keyids) == new_keyids and old.threshold == keys.threshold:
                    raise InvalidInput(
                        f"the {role} role has these keys and this threshold already; nothing changed"
                    )
                for keyid in new_keyids:
                    holder = next(
                        (r for r, spec in previous.roles.items() if r != role and keyid in spec.keyids), None
                    )
                    if holder is not None:
                        raise PolicyViolation(f"a key of the {holder} role cannot also sign for {role}")
                root_md = cast(Root, head.copy(Root.type))
                for keyid in list(root_md.roles[role].keyids):
                    root_md.revoke_key(keyid, role)
                root_md.roles[role].threshold = keys.threshold
                for uri, key in resolved:
                    root_md.add_key(key, role)
                    if key.keyid not in head.uris:
                        conn.execute(insert(tuf_keys).values(keyid=key.keyid, key_uri=uri, created_at=now))
                        head.uris[key.keyid] = uri
                self._put(head, Root.type, root_md, now, previous=previous)
                if role != Root.type:
                    self._reissue_from(head, role, now)
                details = {
                    "role": role,
                    "old": {"keyids": sorted(old.keyids), "threshold": old.threshold},
                    "new": {"keyids": new_keyids, "threshold": keys.threshold},
                }
                return head, details

            return self._commit("updates.rotate", f"update-role:{role}", build)

    # -- internals ---------------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise InvalidInput("the clock must give time zone-aware times")
        return now.astimezone(UTC)

    @contextmanager
    def _refusals(self, action: str, subject: str) -> Iterator[None]:
        """Log a refused request (bad input, conflict, policy) before it reaches the caller."""
        try:
            yield
        except FabtrustError as exc:
            details = {"reason": exc.code, "message": exc.message}
            self._audit.record(AUDIT_UPDATES, self._actor, action, subject, Outcome.REFUSED, details)
            raise

    def _resolve(
        self, specs: Mapping[str, RoleKeys], *, taken: Mapping[str, str]
    ) -> dict[str, list[tuple[str, SSlibKey]]]:
        """Each role's (URI, TUF key) pairs from the key store; the same key twice in a role is
        InvalidInput, a key of another role (``taken``: key id -> role) a PolicyViolation."""
        keystore = self._keystore()
        seen = dict(taken)
        resolved: dict[str, list[tuple[str, SSlibKey]]] = {}
        for role, spec in specs.items():
            pairs: list[tuple[str, SSlibKey]] = []
            for uri in spec.uris:
                key = tuf_key(keystore.get(uri))
                if any(key.keyid == k.keyid for _, k in pairs):
                    raise InvalidInput(f"the {role} role lists key {uri} twice (under two URIs)")
                if key.keyid in seen:
                    raise PolicyViolation(
                        f"key {uri} is a key of the {seen[key.keyid]} role and cannot also sign for {role}: "
                        "each role needs its own keys"
                    )
                seen[key.keyid] = role
                pairs.append((uri, key))
            resolved[role] = pairs
        return resolved

    def _signers(self, head: _Head, keys: Mapping[str, Key], keyids: Iterable[str]) -> list[Signer]:
        keystore = self._keystore()
        signers: list[Signer] = []
        for keyid in dict.fromkeys(keyids):  # ordered, without repeats
            uri = head.uris.get(keyid)
            if uri is None:
                raise Unavailable(f"the key store location of TUF key {keyid[:16]} is not recorded")
            signers.append(KeyStoreSigner(keystore, uri, keys[keyid]))
        return signers

    def _put(
        self, head: _Head, role: str, signed: Signed, now: datetime, *, previous: Root | None = None
    ) -> None:
        """Make ``signed`` the role's next version: version and expiry set, signed by all its keys,
        checked as a client would check it, staged in ``head``."""
        signed.version = head.version(role) + 1
        signed.expires = now + head.expiries.of(role)
        md: Metadata[Any] = Metadata(signed)
        if role == Root.type:
            root = cast(Root, signed)
            keys = {**(previous.keys if previous else {}), **root.keys}
            keyids = [*(previous.roles[Root.type].keyids if previous else []), *root.roles[Root.type].keyids]
            sign_metadata(md, self._signers(head, keys, keyids))
            # client workflow 5.3.4: a threshold of the trusted root's keys and of the new root's own
            verified = root.get_root_verification_result(previous, md.signed_bytes, md.signatures).verified
        else:
            delegation = head.root.roles[role]
            sign_metadata(md, self._signers(head, head.root.keys, delegation.keyids))
            verified = head.root.get_verification_result(role, md.signed_bytes, md.signatures).verified
        if not verified:
            raise Unavailable(f"the key store's signatures on the new {role} metadata do not verify")
        head.metadata[role] = md
        head.raw[role] = md.to_bytes()

    def _reissue_from(self, head: _Head, role: str, now: datetime) -> None:
        """New versions of ``role`` (as it is) and of every role that pins it, in TUF's chain
        targets -> snapshot -> timestamp."""
        chain = [Targets.type, Snapshot.type, Timestamp.type]
        for current in chain[chain.index(role) :]:
            if current == Targets.type and role == Targets.type:
                self._put(head, Targets.type, head.copy(Targets.type), now)
            elif current == Snapshot.type:
                # TUF 4.4: snapshot lists the targets metadata (root is not listed since spec 1.0)
                snapshot = Snapshot(expires=now, meta={"targets.json": head.meta_file(Targets.type)})
                self._put(head, Snapshot.type, snapshot, now)
            elif current == Timestamp.type:
                timestamp = Timestamp(expires=now, snapshot_meta=head.meta_file(Snapshot.type))
                self._put(head, Timestamp.type, timestamp, now)

    def _load(self, conn: Connection) -> _Head | None:
        """The newest version of each role, or None if the repository was never initialised."""
        newest = (
            select(tuf_metadata.c.role, func.max(tuf_metadata.c.version).label("version"))
            .group_by(tuf_metadata.c.role)
            .subquery()
        )
        rows = conn.execute(
            select(tuf_metadata.c.role, tuf_metadata.c.body).join(
                newest, (tuf_metadata.c.role == newest.c.role) & (tuf_metadata.c.version == newest.c.version)
            )
        ).all()
        if not rows:
            return None
        raw = {row.role: bytes(row.body) for row in rows}
        if set(raw) != set(ROLES):
            raise Unavailable("the update repository is incomplete (a role has no metadata)")
        try:
            parsed: dict[str, Metadata[Any]] = {role: Metadata.from_bytes(body) for role, body in raw.items()}
        except DeserializationError as exc:
            raise Unavailable("the update repository's stored metadata is corrupt") from exc
        expiry_rows = conn.execute(select(tuf_roles.c.role, tuf_roles.c.expiry_seconds)).all()
        seconds = {row.role: int(row.expiry_seconds) for row in expiry_rows}
        if set(seconds) != set(ROLES):
            raise Unavailable("the update repository's role expiries are missing")
        expiries = Expiries(**{role: timedelta(seconds=s) for role, s in seconds.items()})
        uris = {row.keyid: row.key_uri for row in conn.execute(select(tuf_keys.c.keyid, tuf_keys.c.key_uri))}
        return _Head(parsed, raw, expiries, uris)

    def _commit(
        self,
        action: str,
        subject: str,
        build: Callable[[Connection, _Head | None, datetime], tuple[_Head, dict[str, Any]]],
    ) -> Versions:
        """Build the change on the newest state and store it with its audit entry, in one write
        transaction. Should two writers still race for the same next version, they collide on the
        primary key and the loser rebuilds on the winner's state."""
        for attempt in range(_ATTEMPTS):
            try:
                with self._store.write() as conn:
                    # One writer at a time (PostgreSQL; SQLite's write transaction is exclusive already):
                    # the role rows are the repository's lock. Before init there are none, and two
                    # racing inits collide on the primary key instead.
                    conn.execute(select(tuf_roles.c.role).with_for_update()).all()
                    head = self._load(conn)
                    before = head.versions() if head is not None else None
                    now = self._now()
                    after, details = build(conn, head, now)
                    staged = [
                        _Staged(
                            role, after.version(role), after.raw[role], after.metadata[role].signed.expires
                        )
                        for role in ROLES
                        if before is None or after.version(role) != getattr(before, role)
                    ]
                    conn.execute(
                        insert(tuf_metadata),
                        [
                            {
                                "role": s.role,
                                "version": s.version,
                                "body": s.body,
                                "expires_at": s.expires,
                                "created_at": now,
                            }
                            for s in staged
                        ],
                    )
                    versions = after.versions()
                    entry = self._audit.entry(
                        AUDIT_UPDATES,
                        self._actor,
                        action,
                        subject,
                        details={**details, "versions": versions.as_dict()},
                    )
                    self._audit.append([entry], conn=conn)
                return versions
            except IntegrityError:
                if attempt == _ATTEMPTS - 1:
                    raise Conflict(
                        "the update repository kept changing underneath this change; retry"
                    ) from None
        raise AssertionError("unreachable")  # pragma: no cover


def _initialised(head: _Head | None) -> _Head:
    if head is None:
        raise NotFound("the update repository is not initialised (run init first)")
    return head


def _check_role(role: object) -> str:
    if not isinstance(role, str) or role not in ROLES:
        raise InvalidInput("unknown role: the roles are root, targets, snapshot and timestamp")
    return role


def _role_subject(role: object) -> str:
    return role if isinstance(role, str) and role in ROLES else "(unknown)"


def _target_subject(name: object) -> str:
    try:
        return f"update-target:{check_target_name(name)}"
    except InvalidInput:
        return f"update-target:(invalid) {ascii(name)[:120]}"


def _published(info: TargetFile) -> PublishedTarget:
    custom = info.unrecognized_fields.get("custom")
    return PublishedTarget(
        info.path, info.hashes["sha256"], info.length, dict(custom) if isinstance(custom, dict) else {}
    )
