"""A data home: one party's database, key store and audit log, wired together.

This is the composition root the faces (CLI, API) share: it reads ``home.json``, opens the store
(applying migrations), and opens the key store only when a key is needed, so read-only work
(checkpoints, proofs, exports) needs neither passphrase nor PIN.

Layout::

    <home>/home.json      format fabtrust.home/v1: origin, database, key store, log key (no secrets)
    <home>/fabtrust.db    the SQLite database, unless a PostgreSQL URL is configured
    <home>/keystore/      the soft key store, unless a PKCS#11 token is configured
"""

from __future__ import annotations

import contextlib
import copy
import getpass
import json
import os
import re
import secrets
import shutil
import socket
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fabtrust.access.service import AccessService
from fabtrust.clock import Clock, rfc3339, system_clock
from fabtrust.crypto.keys import KeyType, KeyUsage, load_public_key
from fabtrust.errors import Conflict, FabtrustError, InvalidInput, NotAuthorised, NotFound, Unavailable
from fabtrust.firmware.releases import ReleaseService
from fabtrust.firmware.updates import UpdateRepository
from fabtrust.keystore.base import KeyStore
from fabtrust.keystore.service import KeyEvent, KeyService
from fabtrust.keystore.soft import SoftKeyStore
from fabtrust.pki.service import PkiService
from fabtrust.production.oem import ProductionService
from fabtrust.production.reconcile import Reconciler
from fabtrust.production.station import Station
from fabtrust.store.engine import Store, parse_db_url, sqlite_url
from fabtrust.tlog.audit import AuditLog, Outcome
from fabtrust.tlog.checkpoint import NoteVerifier, verifier_key
from fabtrust.tlog.log import MerkleLog

HOME_FORMAT = "fabtrust.home/v1"
AUDIT_KEY = "fabtrust.audit.key/v1"
AUDIT_HOME = "fabtrust.audit.home/v1"
LOG_KEY_PURPOSE = "audit-log checkpoints"
_PUBLIC_KEY_HEX = re.compile(r"[0-9a-f]{64}")

SecretSource = Callable[[], str]


def default_home() -> Path:
    return Path(os.environ.get("FABTRUST_HOME", "fabtrust-data"))


def local_actor() -> str:
    """Who acts when the CLI works directly on a data home: the holder of its key-store secret."""
    return f"keystore-holder:{getpass.getuser()}@{socket.gethostname()}"


@dataclass(frozen=True)
class HomeConfig:
    origin: str
    database: str | None  # None: SQLite file in the home. Never holds a password.
    keystore: str  # "soft" or a pkcs11: URI naming the token (never a PIN)
    log_key: str  # URI of the Ed25519 key that signs checkpoints
    log_public_key: str  # hex of the raw Ed25519 public key
    created: str

    def to_json(self) -> bytes:
        return json.dumps({"format": HOME_FORMAT, **asdict(self)}, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, raw: bytes, where: Path) -> HomeConfig:
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InvalidInput(f"{where} is corrupt (not valid JSON)") from None
        if not isinstance(doc, dict) or doc.pop("format", None) != HOME_FORMAT:
            raise InvalidInput(f"{where} is not a {HOME_FORMAT} document")
        try:
            config = cls(**doc)
        except TypeError:
            raise InvalidInput(f"{where} has missing or unknown fields") from None
        if not all(isinstance(v, str) for k, v in asdict(config).items() if k != "database"):
            raise InvalidInput(f"{where} has fields of the wrong type")
        if config.database is not None and not isinstance(config.database, str):
            raise InvalidInput(f"{where} has fields of the wrong type")
        if not _PUBLIC_KEY_HEX.fullmatch(config.log_public_key):
            raise InvalidInput(f"{where} has an invalid log_public_key (64 hexadecimal digits expected)")
        return config


class KeyStoreNoteSigner:
    """Signs checkpoints with the log key in a key store (C2SP signed-note, Ed25519)."""

    def __init__(self, name: str, public_key_raw: bytes, uri: str, keystore: Callable[[], KeyStore]) -> None:
        self.name = name
        self.public_key_raw = public_key_raw
        self._uri = uri
        self._keystore = keystore

    def sign(self, message: bytes) -> bytes:
        return self._keystore().sign(self._uri, message)


def _open_keystore(
    home: Path, spec: str, passphrase: SecretSource, pin: SecretSource, *, create: bool
) -> KeyStore:
    if spec == "soft":
        root = home / "keystore"
        if create:
            return SoftKeyStore.create(root, passphrase())
        return SoftKeyStore.open(root, passphrase())
    if spec.startswith("pkcs11:"):
        from fabtrust.keystore.pkcs11 import Pkcs11KeyStore

        return Pkcs11KeyStore.open(spec, pin=pin(), module_path=None)
    raise InvalidInput(f"unknown key store {spec!r} (use 'soft' or a pkcs11: URI)")


def _discard_keystore(ks: KeyStore, log_key_uri: str | None) -> None:
    """Best effort after a failed init: destroy the log key just generated (a token outlives us), close."""
    try:
        if log_key_uri is not None and ks.scheme == "pkcs11":
            ks.destroy(log_key_uri)
    except FabtrustError:
        pass
    finally:
        ks.close()


def env_secret(variable: str, prompt: str) -> SecretSource:
    """A secret from the environment, else a prompt on a terminal, else a clear refusal."""

    def source() -> str:
        value = os.environ.get(variable)
        if value:
            return value
        if os.isatty(0):
            return getpass.getpass(prompt)
        raise NotAuthorised(f"no secret given: set {variable}")

    return source


class Home:
    """An opened data home."""

    def __init__(
        self,
        path: Path,
        config: HomeConfig,
        store: Store,
        *,
        passphrase: SecretSource,
        pin: SecretSource,
        actor: str,
        clock: Clock = system_clock,
        keystore: KeyStore | None = None,
    ) -> None:
        self.path = path
        self.config = config
        self.store = store
        self.actor = actor
        self.clock = clock
        self._passphrase = passphrase
        self._pin = pin
        self._keystore = keystore
        public_raw = bytes.fromhex(config.log_public_key)
        self.log_signer = KeyStoreNoteSigner(config.origin, public_raw, config.log_key, self.keystore)
        self.log = MerkleLog(store, config.origin, self.log_signer, clock=clock)
        self.audit = AuditLog(self.log, clock=clock)
        self._keys: KeyService | None = None
        self._pki: PkiService | None = None
        self._production: ProductionService | None = None
        self._station: Station | None = None
        self._access: AccessService | None = None
        self._updates: UpdateRepository | None = None
        self._owner: Home | None = None  # set on a view made by acting_as

    # -- opening ---------------------------------------------------------------------------------

    @staticmethod
    def _db_url(path: Path, database: str | None) -> str:
        return database or sqlite_url(path / "fabtrust.db")

    @classmethod
    def init(
        cls,
        path: Path,
        *,
        database: str | None = None,
        keystore: str = "soft",
        origin: str | None = None,
        passphrase: SecretSource,
        pin: SecretSource,
        actor: str | None = None,
        clock: Clock = system_clock,
    ) -> Home:
        """Create a data home; Conflict (and nothing changed) if one is there."""
        actor = actor or local_actor()
        if (path / "home.json").exists():
            raise Conflict(f"a data home already exists at {path}; nothing changed")
        if (path / "keystore").exists() or (path / "fabtrust.db").exists():
            raise Conflict(
                f"{path} holds an incomplete data home (an earlier init failed); remove it and retry"
            )
        connect_url = cls._db_url(path, database)
        if database is not None:
            # home.json never holds a password: connect with the URL as given, record it without one
            # (later commands take the password from --db / FABTRUST_DB, or libpq's PGPASSWORD/.pgpass).
            # (URL.set(password=None) would keep the password: None means "unchanged" there.)
            bare = parse_db_url(database)._replace(password=None).difference_update_query(["password"])
            database = bare.render_as_string(hide_password=False)
        home_id = secrets.token_hex(8)
        origin = origin or f"fabtrust.local/audit/{home_id}"
        created_dir = not path.exists()
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        ks: KeyStore | None = None
        store: Store | None = None
        log_key_uri: str | None = None
        try:
            ks = _open_keystore(path, keystore, passphrase, pin, create=True)
            store = Store.open(connect_url, migrate=True)
            label = f"audit-log-{home_id}"
            log_key = ks.generate(label, KeyType.ED25519, KeyUsage.SIGN)
            log_key_uri = log_key.uri
            log_public = load_public_key(log_key.public_key_der)
            if not isinstance(log_public, Ed25519PublicKey):
                raise Unavailable("the key store returned a log key that is not Ed25519")
            public_raw = log_public.public_bytes_raw()
            created_ks = ks
            signer = KeyStoreNoteSigner(origin, public_raw, log_key.uri, lambda: created_ks)
            MerkleLog.create(store, origin, signer, clock=clock)
            config = HomeConfig(origin, database, keystore, log_key.uri, public_raw.hex(), rfc3339(clock()))
            home = cls(
                path, config, store, passphrase=passphrase, pin=pin, actor=actor, clock=clock, keystore=ks
            )
            audit = home.audit
            audit.append(
                [
                    audit.entry(
                        AUDIT_HOME,
                        actor,
                        "home.init",
                        origin,
                        details={"keystore": keystore.split(";")[0], "database": store.dialect},
                    ),
                    audit.entry(
                        AUDIT_KEY,
                        actor,
                        "key.generate",
                        log_key.uri,
                        details={
                            "key_id": log_key.key_id,
                            "type": log_key.key_type.value,
                            "purpose": LOG_KEY_PURPOSE,
                        },
                    ),
                ]
            )
        except BaseException:
            # Bad input changes nothing: undo what this call created (it checked above that neither
            # key store nor database file was there). A log already created in a shared PostgreSQL
            # database stays (the log layer has no delete): an unused log under this call's origin.
            if store is not None:
                store.close()
            if ks is not None:
                _discard_keystore(ks, log_key_uri)
                if keystore == "soft":
                    shutil.rmtree(path / "keystore", ignore_errors=True)
                if database is None:
                    for suffix in ("", "-wal", "-shm", "-journal"):
                        (path / f"fabtrust.db{suffix}").unlink(missing_ok=True)
            if created_dir:
                with contextlib.suppress(OSError):
                    path.rmdir()  # only if empty
            raise
        tmp = path / "home.json.tmp"
        tmp.write_bytes(config.to_json())
        os.replace(tmp, path / "home.json")
        return home

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        passphrase: SecretSource,
        pin: SecretSource,
        database: str | None = None,
        actor: str | None = None,
        clock: Clock = system_clock,
    ) -> Home:
        try:
            raw = (path / "home.json").read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no data home at {path}; run `fabtrust init` first") from None
        config = HomeConfig.from_json(raw, path / "home.json")
        store = Store.open(cls._db_url(path, database or config.database), migrate=True)
        try:
            return cls(
                path, config, store, passphrase=passphrase, pin=pin, actor=actor or local_actor(), clock=clock
            )
        except BaseException:
            store.close()
            raise

    # -- services --------------------------------------------------------------------------------

    def keystore(self) -> KeyStore:
        """The key store, opened on first use (asks for the passphrase or PIN then)."""
        if self._owner is not None:
            return self._owner.keystore()
        if self._keystore is None:
            self._keystore = _open_keystore(
                self.path, self.config.keystore, self._passphrase, self._pin, create=False
            )
        return self._keystore

    @property
    def pki(self) -> PkiService:
        """The device PKI of this home (opens the key store: CA keys sign)."""
        if self._pki is None:
            self._pki = PkiService(
                self.store, self.keystore(), self.audit, actor=self.actor, clock=self.clock
            )
        return self._pki

    @property
    def production(self) -> ProductionService:
        """The OEM's products, stations, orders and packages (for its published firmware releases)."""
        if self._production is None:
            self._production = ProductionService(
                self.store,
                self.keystore(),
                self.audit,
                self.pki,
                self.releases,
                actor=self.actor,
                clock=self.clock,
            )
        return self._production

    @property
    def access(self) -> AccessService:
        """Principals, grants, tokens and approvals of this home (needs no key-store secret)."""
        if self._access is None:
            self._access = AccessService(self.store, self.audit, clock=self.clock)
        return self._access

    @property
    def station(self) -> Station:
        """This home as a factory station (one Station per home and process: it keeps the
        outstanding challenges)."""
        if self._station is None:
            self._station = Station(
                self.store,
                self.keystore(),
                self.audit,
                self.log,
                self.pki,
                actor=self.actor,
                log_vkey=self.log_vkey(),
                clock=self.clock,
            )
        return self._station

    @property
    def updates(self) -> UpdateRepository:
        """The signed-update repository (TUF). Serving it reads the store only; publishing, refreshing
        and rotating open the key store (role keys sign)."""
        if self._updates is None:
            self._updates = UpdateRepository(
                self.store, self.keystore, self.audit, actor=self.actor, clock=self.clock
            )
        return self._updates

    @property
    def reconciler(self) -> Reconciler:
        return Reconciler(self.store, self.audit, self.pki, self.releases, actor=self.actor, clock=self.clock)

    @property
    def releases(self) -> ReleaseService:
        """Firmware releases: signers, k-of-n approval, SBOMs, published images. Reading needs no
        secret; signers, approvals and publication open the key store."""
        return ReleaseService(self.store, self.keystore, self.audit, actor=self.actor, clock=self.clock)

    @property
    def keys(self) -> KeyService:
        if self._keys is None:
            self._keys = KeyService(self.keystore(), self._record_key_event)
        return self._keys

    def _record_key_event(self, event: KeyEvent) -> None:
        details: dict[str, Any] = {"purpose": event.purpose}
        if event.key_id:
            details["key_id"] = event.key_id
        if event.reason:
            details["reason"] = event.reason
        self.audit.record(AUDIT_KEY, self.actor, event.operation, event.uri, Outcome(event.outcome), details)

    def acting_as(self, actor: str) -> Home:
        """This home as ``actor`` (an API caller's principal id): the same store, key store and
        log, with domain services that record ``actor`` on every act. Not to be closed (the home
        it came from owns the store and key store); holds no station (one per process)."""
        view = copy.copy(self)
        view.actor = actor
        view._keys = view._pki = view._production = view._station = view._access = view._updates = None
        view._owner = self._owner or self  # the key store is opened (once) and closed by the owner
        return view

    def log_verifier(self) -> NoteVerifier:
        return NoteVerifier.parse(self.log_vkey())

    def log_vkey(self) -> str:
        return verifier_key(self.config.origin, bytes.fromhex(self.config.log_public_key))

    def close(self) -> None:
        if self._keystore is not None:
            self._keystore.close()
        self.store.close()

    def __enter__(self) -> Home:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
