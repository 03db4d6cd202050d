"""The signed-update repository (TUF), checked by an independent client: python-tuf's own
``tuf.ngclient.Updater`` fetches over real HTTP from the app served by uvicorn on a loopback port.

The attacks are the ones TUF exists to stop (TUF specification 1.5.2): the server is untrusted, so
the tests play it by changing what the store serves (a replayed, frozen, mixed or forged file), and
some play an attacker who also holds a few keys (the online snapshot and timestamp keys, one of two
targets keys, a retired key). Each forgery has a control that the client *accepts* when the forgery
is made with enough keys, so a refusal is the client's rule at work, not a broken forgery.
"""

from __future__ import annotations

import hashlib
import http.client
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from securesystemslib.signer import Signature, SSlibKey
from sqlalchemy import delete, insert, select, update
from tuf.api.exceptions import (
    BadVersionNumberError,
    DownloadLengthMismatchError,
    ExpiredMetadataError,
    LengthOrHashMismatchError,
    UnsignedMetadataError,
)
from tuf.api.metadata import Metadata, MetaFile, Snapshot, TargetFile, Timestamp
from tuf.ngclient import Updater

from fabtrust.api.app import create_app
from fabtrust.crypto.keys import KeyType, KeyUsage
from fabtrust.errors import Conflict, InvalidInput, NotFound, PolicyViolation
from fabtrust.firmware.updates import (
    AUDIT_UPDATES,
    MAX_TARGET_SIZE,
    Expiries,
    KeyStoreSigner,
    RoleKeys,
    UpdateRepository,
    hash_prefixed,
    parse_metadata_name,
    parse_target_path,
    sign_metadata,
    tuf_key,
)
from fabtrust.home import Home
from fabtrust.keystore.base import KeyInfo, KeyStore
from fabtrust.store import tables
from fabtrust.store.tables import tuf_keys, tuf_metadata, tuf_roles, tuf_targets
from fabtrust.tlog.audit import AuditEntry
from tests.fixtures.serving import serving
from tests.fixtures.softhsm import HsmToken

FIRMWARE = b"\x96\xf3\xb8\x3d" + bytes(range(256)) * 40  # stands in for an MCUboot image
RELEASE = {"version": "1.2.0", "security_counter": 3, "product": "sensor", "release_id": "sensor-1.2.0"}


def never() -> str:
    raise AssertionError("asked for a secret")


class MovableClock:
    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Setup:
    home: Home
    clock: MovableClock
    keys: dict[str, list[str]] = field(default_factory=dict)

    @property
    def repo(self) -> UpdateRepository:
        return self.home.updates

    def key(self, label: str, key_type: KeyType = KeyType.ED25519) -> str:
        return self.home.keystore().generate(label, key_type, KeyUsage.SIGN).uri


def make_setup(
    path: Path,
    *,
    clock: MovableClock | None = None,
    targets_keys: int = 1,
    targets_threshold: int = 1,
    database: str | None = None,
    init: bool = True,
) -> Setup:
    clock = clock or MovableClock()
    home = Home.init(path, database=database, passphrase=lambda: "pw", pin=never, actor="tester", clock=clock)
    s = Setup(home, clock)
    s.keys = {
        # root: 2 of 3, one key of each type a role key may have
        "root": [s.key("root-1", KeyType.P256), s.key("root-2"), s.key("root-3", KeyType.P384)],
        "targets": [s.key(f"targets-{i}") for i in range(1, targets_keys + 1)],
        "snapshot": [s.key("snapshot-1", KeyType.P256)],
        "timestamp": [s.key("timestamp-1")],
    }
    if init:
        s.repo.init(
            root=RoleKeys(tuple(s.keys["root"]), 2),
            targets=RoleKeys(tuple(s.keys["targets"]), targets_threshold),
            snapshot=RoleKeys(tuple(s.keys["snapshot"])),
            timestamp=RoleKeys(tuple(s.keys["timestamp"])),
        )
    return s


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    s = make_setup(tmp_path / "home")
    yield s
    s.home.close()


@dataclass
class Device:
    """A device's update client: python-tuf's Updater with a persistent metadata cache, and the root
    it was given at production (bootstrap)."""

    port: int
    root: bytes
    dir: Path

    def updater(self) -> Updater:
        base = f"http://127.0.0.1:{self.port}/updates"
        return Updater(
            str(self.dir / "metadata"),
            f"{base}/metadata/",
            str(self.dir / "targets"),
            f"{base}/targets/",
            bootstrap=self.root,
        )

    def refresh(self) -> Updater:
        updater = self.updater()  # one refresh per Updater: a device waking up to check
        updater.refresh()
        return updater

    def fetch(self, name: str) -> tuple[TargetFile, bytes]:
        updater = self.refresh()
        info = updater.get_targetinfo(name)
        assert info is not None, f"{name} is not listed"
        return info, Path(updater.download_target(info)).read_bytes()

    def trusted(self, role: str) -> Any:
        return Metadata.from_file(str(self.dir / "metadata" / f"{role}.json")).signed


@pytest.fixture
def device(setup: Setup, tmp_path: Path) -> Iterator[Device]:
    with serving(create_app(setup.home)) as port:
        (tmp_path / "device" / "metadata").mkdir(parents=True)
        yield Device(port, setup.repo.trusted_root(), tmp_path / "device")


# -- playing the attacker: what the store serves, and metadata signed with stolen keys -------------


def repo_state(home: Home) -> tuple[tuple[Any, ...], ...]:
    with home.store.read() as conn:
        return tuple(
            tuple(sorted(tuple(row) for row in conn.execute(select(table)).all()))
            for table in (tuf_metadata, tuf_targets, tuf_keys, tuf_roles)
        )


def served(s: Setup, role: str, version: int | None = None) -> bytes:
    return s.repo.metadata("timestamp.json" if version is None else f"{version}.{role}.json")


def serve_instead(s: Setup, role: str, version: int, body: bytes) -> None:
    with s.home.store.write() as conn:
        conn.execute(
            update(tuf_metadata)
            .where(tuf_metadata.c.role == role, tuf_metadata.c.version == version)
            .values(body=body)
        )


def serve_new(s: Setup, md: Metadata[Any]) -> bytes:
    body = md.to_bytes()
    with s.home.store.write() as conn:
        conn.execute(
            insert(tuf_metadata).values(
                role=md.signed.type,
                version=md.signed.version,
                body=body,
                expires_at=md.signed.expires,
                created_at=datetime.now(UTC),
            )
        )
    return body


def signed_by(s: Setup, signed: Any, uris: list[str]) -> Metadata[Any]:
    md: Metadata[Any] = Metadata(signed)
    sign_metadata(md, [KeyStoreSigner.for_key(s.home.keystore(), uri) for uri in uris])
    return md


def meta_file(version: int, body: bytes) -> MetaFile:
    return MetaFile(version, len(body), {"sha256": hashlib.sha256(body).hexdigest()})


def forge_release(s: Setup, *, targets_keys: list[str], evil: bytes = b"evil firmware") -> None:
    """A new targets version listing an evil target, with snapshot and timestamp versions pinning it,
    signed with the given targets keys and the (stolen) online snapshot and timestamp keys."""
    v = s.repo.versions()
    expires = datetime.now(UTC) + timedelta(days=1)
    targets = Metadata.from_bytes(served(s, "targets", v.targets)).signed
    targets.version += 1
    targets.expires = expires
    targets.targets["fw/evil.bin"] = TargetFile.from_data("fw/evil.bin", evil, ["sha256"])
    targets_body = serve_new(s, signed_by(s, targets, targets_keys))
    snapshot = Snapshot(
        v.snapshot + 1, expires=expires, meta={"targets.json": meta_file(v.targets + 1, targets_body)}
    )
    snapshot_body = serve_new(s, signed_by(s, snapshot, s.keys["snapshot"]))
    timestamp = Timestamp(
        v.timestamp + 1, expires=expires, snapshot_meta=meta_file(v.snapshot + 1, snapshot_body)
    )
    serve_new(s, signed_by(s, timestamp, s.keys["timestamp"]))
    with s.home.store.write() as conn:
        digest = hashlib.sha256(evil).hexdigest()
        conn.execute(
            insert(tuf_targets).values(
                name="fw/evil.bin", sha256=digest, length=len(evil), blob=evil, created_at=datetime.now(UTC)
            )
        )


def audit_entries(home: Home) -> list[AuditEntry]:
    return [AuditEntry.parse(body) for body in home.log.entries(0, home.log.size())]


# -- the client fetches what is published ----------------------------------------------------------


def test_a_device_fetches_a_published_release(setup: Setup, device: Device) -> None:
    published = setup.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
    info, data = device.fetch("fw/sensor.bin")
    assert data == FIRMWARE
    assert info.custom == RELEASE
    assert info.length == len(FIRMWARE)
    assert info.hashes == {"sha256": hashlib.sha256(FIRMWARE).hexdigest()} == {"sha256": published.sha256}
    assert device.trusted("root").consistent_snapshot is True
    assert device.trusted("targets").version == 2
    assert device.updater().get_targetinfo("fw/other.bin") is None


def test_served_files_have_their_content_types(setup: Setup, device: Device) -> None:
    published = setup.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
    cases = [
        ("/updates/metadata/1.root.json", "application/json", "immutable"),
        ("/updates/metadata/timestamp.json", "application/json", "no-cache"),
        ("/updates/metadata/2.snapshot.json", "application/json", "immutable"),
        ("/updates/metadata/2.targets.json", "application/json", "immutable"),
        (f"/updates/targets/{published.path}", "application/octet-stream", "immutable"),
    ]
    for path, media_type, cache in cases:
        status, headers, _ = get(device.port, path)
        assert status == 200, path
        assert headers["content-type"] == media_type
        assert cache in headers["cache-control"]
        assert headers["x-content-type-options"] == "nosniff"
    assert get(device.port, f"/updates/targets/{published.path}")[2] == FIRMWARE
    assert published.path == f"fw/{published.sha256}.sensor.bin"


def test_a_second_release_is_seen(setup: Setup, device: Device) -> None:
    setup.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
    assert device.fetch("fw/sensor.bin")[1] == FIRMWARE
    second = FIRMWARE + b"-2"
    release2 = {**RELEASE, "version": "1.3.0", "security_counter": 4, "release_id": "sensor-1.3.0"}
    setup.repo.add_target("fw/sensor.bin", second, release2)
    info, data = device.fetch("fw/sensor.bin")
    assert (data, info.custom) == (second, release2)
    assert device.trusted("targets").version == 3
    assert device.trusted("timestamp").version == 3
    # the first release's blob stays served under its own hash for clients on the older snapshot
    old = hashlib.sha256(FIRMWARE).hexdigest()
    assert setup.repo.target(hash_prefixed("fw/sensor.bin", old)) == FIRMWARE


def test_a_removed_target_is_no_longer_offered(setup: Setup, device: Device) -> None:
    setup.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
    setup.repo.add_target("fw/other.bin", b"other")
    assert device.fetch("fw/sensor.bin")[1] == FIRMWARE
    setup.repo.remove_target("fw/sensor.bin")
    updater = device.refresh()
    assert updater.get_targetinfo("fw/sensor.bin") is None
    assert updater.get_targetinfo("fw/other.bin") is not None
    assert [t.name for t in setup.repo.targets()] == ["fw/other.bin"]


# -- rollback, freeze, mix-and-match ----------------------------------------------------------------


def test_a_replayed_older_timestamp_is_refused(setup: Setup, device: Device) -> None:
    setup.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
    setup.repo.add_target("fw/sensor.bin", FIRMWARE + b"-2", RELEASE)
    device.refresh()
    assert device.trusted("timestamp").version == 3
    # the server replays timestamp v2: validly signed and unexpired, but older than what the device saw
    with setup.home.store.write() as conn:
        conn.execute(
            delete(tuf_metadata).where(tuf_metadata.c.role == "timestamp", tuf_metadata.c.version == 3)
        )
    assert Metadata.from_bytes(served(setup, "timestamp")).signed.version == 2
    with pytest.raises(BadVersionNumberError, match="timestamp version 2 must be >= 3"):
        device.refresh()


def test_a_snapshot_rolled_back_by_the_timestamp_key_holder_is_refused(setup: Setup, device: Device) -> None:
    setup.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
    setup.repo.add_target("fw/sensor.bin", FIRMWARE + b"-2", RELEASE)
    device.refresh()
    v = setup.repo.versions()
    old_snapshot = served(setup, "snapshot", v.snapshot - 1)

    def rolled_back(uris: list[str]) -> Metadata[Any]:
        expires = datetime.now(UTC) + timedelta(hours=1)
        timestamp = Timestamp(
            v.timestamp + 1, expires=expires, snapshot_meta=meta_file(v.snapshot - 1, old_snapshot)
        )
        return signed_by(setup, timestamp, uris)

    serve_new(setup, rolled_back(setup.keys["timestamp"]))
    with pytest.raises(BadVersionNumberError, match="snapshot version must be >= 3"):
        device.refresh()


def test_a_frozen_repository_is_refused_until_the_timestamp_is_refreshed(tmp_path: Path) -> None:
    clock = MovableClock(datetime.now(UTC) - timedelta(days=2))
    frozen = make_setup(tmp_path / "frozen", clock=clock)
    try:
        frozen.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
        with serving(create_app(frozen.home)) as port:
            dev = Device(port, frozen.repo.trusted_root(), tmp_path / "frozen-device")
            with pytest.raises(ExpiredMetadataError, match=r"timestamp\.json is expired"):
                dev.fetch("fw/sensor.bin")
            clock.now = datetime.now(UTC)
            frozen.repo.refresh_timestamp()
            assert dev.fetch("fw/sensor.bin")[1] == FIRMWARE
    finally:
        frozen.home.close()


def test_an_expired_snapshot_behind_a_fresh_timestamp_is_refused(tmp_path: Path) -> None:
    clock = MovableClock(datetime.now(UTC) - timedelta(days=8))
    stale = make_setup(tmp_path / "stale", clock=clock)
    try:
        stale.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
        clock.now = datetime.now(UTC)
        assert stale.repo.refresh_timestamp().snapshot == 2  # the snapshot, 8 days old, is not re-signed
        with serving(create_app(stale.home)) as port:
            dev = Device(port, stale.repo.trusted_root(), tmp_path / "stale-device")
            with pytest.raises(ExpiredMetadataError, match=r"snapshot\.json is expired"):
                dev.fetch("fw/sensor.bin")
            assert stale.repo.refresh("snapshot").snapshot == 3
            assert dev.fetch("fw/sensor.bin")[1] == FIRMWARE
    finally:
        stale.home.close()


def _older_targets(s: Setup) -> None:
    v = s.repo.versions()
    serve_instead(s, "targets", v.targets, served(s, "targets", v.targets - 1))


def _older_snapshot(s: Setup) -> None:
    v = s.repo.versions()
    serve_instead(s, "snapshot", v.snapshot, served(s, "snapshot", v.snapshot - 1))


def _attacker_targets(s: Setup) -> None:
    v = s.repo.versions()
    targets = Metadata.from_bytes(served(s, "targets", v.targets)).signed
    targets.targets["fw/sensor.bin"] = TargetFile.from_data("fw/sensor.bin", b"evil", ["sha256"])
    serve_instead(s, "targets", v.targets, signed_by(s, targets, [s.key("attacker")]).to_bytes())


@pytest.mark.parametrize(
    "mix",
    [
        pytest.param(_older_targets, id="older-targets-under-the-new-version"),
        pytest.param(_older_snapshot, id="older-snapshot-under-the-new-version"),
        pytest.param(_attacker_targets, id="attacker-modified-targets"),
    ],
)
def test_mix_and_match_is_refused(setup: Setup, device: Device, mix: Callable[[Setup], None]) -> None:
    setup.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
    setup.repo.add_target("fw/sensor.bin", FIRMWARE + b"-2", RELEASE)
    mix(setup)
    # the snapshot pins the targets file's length and hash, the timestamp the snapshot's: a file from
    # another version is cut off at the pinned length or fails the hash
    with pytest.raises((LengthOrHashMismatchError, DownloadLengthMismatchError)):
        device.fetch("fw/sensor.bin")


@pytest.mark.parametrize(
    ("tamper", "error"),
    [
        pytest.param(
            lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], LengthOrHashMismatchError, id="bit-flip"
        ),
        pytest.param(lambda b: b + b"x", DownloadLengthMismatchError, id="longer"),
        pytest.param(lambda b: b[:-1], LengthOrHashMismatchError, id="shorter"),
    ],
)
def test_a_tampered_target_is_refused(
    setup: Setup, device: Device, tamper: Callable[[bytes], bytes], error: type[Exception]
) -> None:
    published = setup.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
    with setup.home.store.write() as conn:
        conn.execute(
            update(tuf_targets).where(tuf_targets.c.sha256 == published.sha256).values(blob=tamper(FIRMWARE))
        )
    with pytest.raises(error):
        device.fetch("fw/sensor.bin")
    assert not any((device.dir / "targets").iterdir())  # nothing unverified was written


# -- thresholds and keys ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stolen", "accepted"),
    [
        pytest.param(1, False, id="one-of-two-targets-keys-refused"),
        pytest.param(2, True, id="two-of-two-accepted"),
    ],
)
def test_targets_need_their_threshold(tmp_path: Path, stolen: int, accepted: bool) -> None:
    s = make_setup(tmp_path / "home", targets_keys=2, targets_threshold=2)
    try:
        s.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
        with serving(create_app(s.home)) as port:
            dev = Device(port, s.repo.trusted_root(), tmp_path / "device")
            assert dev.fetch("fw/sensor.bin")[1] == FIRMWARE  # the repository signs with both keys
            # the attacker holds the online snapshot and timestamp keys and `stolen` targets keys
            forge_release(s, targets_keys=s.keys["targets"][:stolen])
            if accepted:
                assert dev.fetch("fw/evil.bin")[1] == b"evil firmware"
            else:
                with pytest.raises(UnsignedMetadataError, match="targets was signed by 1/2 keys"):
                    dev.fetch("fw/evil.bin")
    finally:
        s.home.close()


def test_the_client_follows_key_rotations(setup: Setup, device: Device) -> None:
    setup.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
    assert device.fetch("fw/sensor.bin")[1] == FIRMWARE
    new_root = [setup.key("root-4"), setup.key("root-5", KeyType.P256)]
    assert setup.repo.rotate("root", RoleKeys(tuple(new_root), 2)).root == 2
    new_timestamp = setup.key("timestamp-2")
    assert setup.repo.rotate("timestamp", RoleKeys((new_timestamp,))).as_dict() == {
        "root": 3,
        "targets": 2,
        "snapshot": 2,
        "timestamp": 3,
    }
    new_targets = [setup.key("targets-2"), setup.key("targets-3")]
    setup.repo.rotate("targets", RoleKeys(tuple(new_targets), 2))
    setup.repo.rotate("snapshot", RoleKeys((setup.key("snapshot-2"),)))
    setup.repo.add_target("fw/sensor.bin", FIRMWARE + b"-2", RELEASE)
    # a device that only ever had root v1 walks the chain v1 -> v5
    _, data = device.fetch("fw/sensor.bin")
    assert data == FIRMWARE + b"-2"
    root = device.trusted("root")
    assert root.version == 5
    assert sorted((device.dir / "metadata" / "root_history").iterdir()) == [
        device.dir / "metadata" / "root_history" / f"{v}.root.json" for v in range(1, 6)
    ]
    assert root.roles["root"].threshold == 2
    assert set(root.roles["root"].keyids) == {tuf_key(setup.home.keystore().get(u)).keyid for u in new_root}
    assert root.roles["targets"].threshold == 2
    # a fresh device given root v1 at production gets there too
    fresh = Device(device.port, setup.repo.trusted_root(1), device.dir.parent / "fresh")
    assert fresh.fetch("fw/sensor.bin")[1] == FIRMWARE + b"-2"


@pytest.mark.parametrize(
    ("old_signers", "accepted"),
    [
        pytest.param(1, False, id="one-of-two-old-root-keys-refused"),
        pytest.param(2, True, id="two-of-two-accepted"),
    ],
)
def test_a_new_root_needs_the_old_threshold(
    setup: Setup, device: Device, old_signers: int, accepted: bool
) -> None:
    setup.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
    device.refresh()
    attacker = setup.key("attacker-root")
    root = Metadata.from_bytes(setup.repo.trusted_root(1)).signed
    root.version = 2
    for keyid in list(root.roles["root"].keyids):
        root.revoke_key(keyid, "root")
    root.roles["root"].threshold = 1
    root.add_key(tuf_key(setup.home.keystore().get(attacker)), "root")
    serve_new(setup, signed_by(setup, root, [attacker, *setup.keys["root"][:old_signers]]))
    if accepted:
        device.refresh()
        assert device.trusted("root").version == 2
    else:
        with pytest.raises(UnsignedMetadataError, match="root was signed by 1/2 keys"):
            device.refresh()
        assert device.trusted("root").version == 1


def test_a_retired_timestamp_key_signs_nothing_the_client_accepts(setup: Setup, device: Device) -> None:
    setup.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
    old_key = setup.keys["timestamp"][0]
    setup.repo.rotate("timestamp", RoleKeys((setup.key("timestamp-2"),)))
    device.refresh()
    v = setup.repo.versions()
    timestamp = Metadata.from_bytes(served(setup, "timestamp")).signed
    timestamp.version = v.timestamp + 1
    serve_new(setup, signed_by(setup, timestamp, [old_key]))
    with pytest.raises(UnsignedMetadataError, match="timestamp was signed by 0/1 keys"):
        device.refresh()


# -- the HTTP routes: strict names, no traversal ------------------------------------------------------


def get(port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    """A GET with the path sent exactly as given (no client-side normalisation of '..')."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


SHA = "0" * 64
BAD_PATHS = [
    "/updates/metadata/root.json",
    "/updates/metadata/snapshot.json",
    "/updates/metadata/targets.json",
    "/updates/metadata/0.root.json",
    "/updates/metadata/01.root.json",
    "/updates/metadata/-1.root.json",
    "/updates/metadata/99.root.json",
    "/updates/metadata/1.timestamp.json",
    "/updates/metadata/1.mirrors.json",
    "/updates/metadata/1.root.json.bak",
    "/updates/metadata/1.ROOT.json",
    "/updates/metadata/%31.root.json%00",
    "/updates/metadata/../../home.json",
    "/updates/metadata/..%2f..%2fhome.json",
    "/updates/metadata/%2e%2e%2f%2e%2e%2fhome.json",
    "/updates/metadata/",
    "/updates/metadata/9999999999999999999999.root.json",
    "/updates/targets/fw/sensor.bin",
    f"/updates/targets/fw/{SHA}.sensor.bin",
    f"/updates/targets/{SHA}.fw/sensor.bin",
    "/updates/targets/../../home.json",
    "/updates/targets/..%2f..%2fhome.json",
    "/updates/targets/%2e%2e/%2e%2e/home.json",
    f"/updates/targets/../{SHA}.home.json",
    f"/updates/targets/fw/../{SHA}.home.json",
    f"/updates/targets//etc/{SHA}.passwd",
    f"/updates/targets/fw\\..\\{SHA}.x",
    f"/updates/targets/fw/{SHA}.",
    f"/updates/targets/fw/{SHA}.sensor.bin%00",
    f"/updates/targets/fw/{SHA}.sensor.bin/",
    "/updates/targets/",
    "/updates/",
    "/updates/keystore/keys",
]


def test_bad_names_are_not_found_and_nothing_leaks(setup: Setup, device: Device) -> None:
    published = setup.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
    real = f"/updates/targets/{published.path}"
    upper = f"/updates/targets/fw/{published.sha256.upper()}.sensor.bin"
    for path in [*BAD_PATHS, upper, real + "x", real.replace(".sensor", ".Sensor")]:
        status, headers, body = get(device.port, path)
        assert status in (400, 404), (path, status)
        assert b"fabtrust.home" not in body, path
        assert FIRMWARE[:64] not in body, path
        if status == 404 and headers.get("content-type") == "application/json":
            assert b'"request_id"' in body
    assert get(device.port, real)[0] == 200
    status, _, _ = get(device.port, "/updates/metadata/timestamp.json")
    assert status == 200


# -- the repository's own rules ----------------------------------------------------------------------


def test_init_writes_version_1_with_the_default_expiries(tmp_path: Path) -> None:
    now = datetime(2030, 1, 2, 3, 4, 5, 678, tzinfo=UTC)
    s = make_setup(tmp_path / "home", clock=MovableClock(now))
    try:
        expected = {"root": 365, "targets": 90, "snapshot": 7, "timestamp": 1}
        for role, days in expected.items():
            md = Metadata.from_bytes(
                s.repo.metadata("timestamp.json" if role == "timestamp" else f"1.{role}.json")
            )
            assert md.signed.version == 1
            assert md.signed.expires == now.replace(microsecond=0) + timedelta(days=days), role
        root = Metadata.from_bytes(s.repo.trusted_root()).signed
        assert root.consistent_snapshot is True
        assert {r: (len(root.roles[r].keyids), root.roles[r].threshold) for r in expected} == {
            "root": (3, 2),
            "targets": (1, 1),
            "snapshot": (1, 1),
            "timestamp": (1, 1),
        }
        # a later refresh re-signs the timestamp alone, with an expiry from the new time
        s.clock.now = now + timedelta(hours=20)
        assert s.repo.refresh_timestamp().as_dict() == {
            "root": 1,
            "targets": 1,
            "snapshot": 1,
            "timestamp": 2,
        }
        ts = Metadata.from_bytes(s.repo.metadata("timestamp.json")).signed
        assert ts.expires == (now + timedelta(hours=20, days=1)).replace(microsecond=0)
        assert ts.snapshot_meta.version == 1
    finally:
        s.home.close()


def test_custom_expiries_are_kept(tmp_path: Path) -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    s = make_setup(tmp_path / "home", clock=MovableClock(now), init=False)
    try:
        expiries = Expiries(root=timedelta(days=30), timestamp=timedelta(hours=6))
        s.repo.init(
            root=RoleKeys((s.keys["root"][0],)),
            targets=RoleKeys(tuple(s.keys["targets"])),
            snapshot=RoleKeys(tuple(s.keys["snapshot"])),
            timestamp=RoleKeys(tuple(s.keys["timestamp"])),
            expiries=expiries,
        )
        s.repo.add_target("fw/a.bin", b"a")
        assert Metadata.from_bytes(s.repo.metadata("timestamp.json")).signed.expires == now + timedelta(
            hours=6
        )
        assert Metadata.from_bytes(s.repo.metadata("2.targets.json")).signed.expires == now + timedelta(
            days=90
        )
    finally:
        s.home.close()


def test_the_repository_survives_reopening_the_home(setup: Setup, tmp_path: Path) -> None:
    path = setup.home.path
    setup.home.close()
    with Home.open(path, passphrase=lambda: "pw", pin=never, actor="tester") as home:
        home.updates.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
        home.updates.rotate(
            "timestamp", RoleKeys((home.keystore().generate("ts-2", KeyType.P256, KeyUsage.SIGN).uri,))
        )
        assert home.updates.versions().as_dict() == {"root": 2, "targets": 2, "snapshot": 2, "timestamp": 3}
    # serving needs no key store: a home that cannot open it serves every file
    with Home.open(path, passphrase=never, pin=never) as home, serving(create_app(home)) as port:
        dev = Device(port, home.updates.trusted_root(), tmp_path / "device")
        assert dev.fetch("fw/sensor.bin")[1] == FIRMWARE


def test_publishing_and_rotating_are_audited(setup: Setup) -> None:
    published = setup.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
    new_key = setup.key("timestamp-2")
    setup.repo.rotate("timestamp", RoleKeys((new_key,)))
    setup.repo.remove_target("fw/sensor.bin")
    setup.repo.refresh("targets")
    entries = [e for e in audit_entries(setup.home) if e.type == AUDIT_UPDATES]
    assert [(e.action, e.subject, e.outcome.value) for e in entries] == [
        ("updates.init", "update-repository", "ok"),
        ("updates.target.publish", "update-target:fw/sensor.bin", "ok"),
        ("updates.rotate", "update-role:timestamp", "ok"),
        ("updates.target.remove", "update-target:fw/sensor.bin", "ok"),
        ("updates.refresh", "update-role:targets", "ok"),
    ]
    assert entries[0].details["roles"]["root"]["threshold"] == 2
    assert entries[0].details["expiries"] == {
        "root": 31536000,
        "targets": 7776000,
        "snapshot": 604800,
        "timestamp": 86400,
    }
    assert entries[1].details == {
        "sha256": published.sha256,
        "length": len(FIRMWARE),
        "custom": RELEASE,
        "versions": {"root": 1, "targets": 2, "snapshot": 2, "timestamp": 2},
    }
    keystore = setup.home.keystore()
    assert entries[2].details["old"] == {
        "keyids": [tuf_key(keystore.get(setup.keys["timestamp"][0])).keyid],
        "threshold": 1,
    }
    assert entries[2].details["new"] == {"keyids": [tuf_key(keystore.get(new_key)).keyid], "threshold": 1}
    assert entries[4].details["versions"] == {"root": 2, "targets": 4, "snapshot": 4, "timestamp": 5}


def _custom_with(value: Any) -> dict[str, Any]:
    return {"v": value}


REFUSALS: list[Any] = [
    *[
        pytest.param(
            lambda s, n=name: s.repo.add_target(n, b"x"), InvalidInput, "a target name", id=f"name/{label}"
        )
        for label, name in [
            ("traversal", "../etc/passwd"),
            ("inner-traversal", "fw/../../etc/passwd"),
            ("absolute", "/fw.bin"),
            ("dot-segment", "fw/./a.bin"),
            ("empty-segment", "fw//a.bin"),
            ("trailing-slash", "fw/"),
            ("backslash", "fw\\a.bin"),
            ("nul", "fw\x00.bin"),
            ("newline", "fw\n.bin"),
            ("escape", "fw\x1b[2J.bin"),
            ("space", "fw a.bin"),
            ("percent", "fw%2fa.bin"),
            ("non-ascii", "fw/\u00e9.bin"),
            ("hidden", ".bin"),
            ("empty", ""),
            ("too-long", "a" * 161),
            ("too-deep", "/".join("a" * 9)),
            ("not-a-string", 7),
        ]
    ],
    pytest.param(
        lambda s: s.repo.add_target("fw/a.bin", b""), InvalidInput, "needs content", id="target/empty"
    ),
    pytest.param(
        lambda s: s.repo.add_target("fw/a.bin", "text"), InvalidInput, "must be bytes", id="target/text"
    ),
    pytest.param(
        lambda s: s.repo.add_target("fw/a.bin", bytes(MAX_TARGET_SIZE + 1)),
        InvalidInput,
        f"at most {MAX_TARGET_SIZE} bytes",
        id="target/oversized",
    ),
    pytest.param(
        lambda s: s.repo.add_target("fw/a.bin", b"x", ["v"]), InvalidInput, "JSON object", id="custom/list"
    ),
    pytest.param(
        lambda s: s.repo.add_target("fw/a.bin", b"x", _custom_with(1.5)), InvalidInput, "", id="custom/float"
    ),
    pytest.param(
        lambda s: s.repo.add_target("fw/a.bin", b"x", _custom_with("a" * 9000)),
        InvalidInput,
        "at most 8192 bytes",
        id="custom/too-big",
    ),
    pytest.param(
        lambda s: s.repo.add_target("fw/a.bin", b"x", {1: "a"}), InvalidInput, "", id="custom/int-key"
    ),
    pytest.param(
        lambda s: s.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE),
        Conflict,
        "published already",
        id="target/republished-unchanged",
    ),
    pytest.param(
        lambda s: s.repo.remove_target("fw/none.bin"), NotFound, "no published target", id="remove/unknown"
    ),
    pytest.param(
        lambda s: s.repo.rotate("mirror", RoleKeys((s.key("m"),))),
        InvalidInput,
        "unknown role",
        id="rotate/unknown-role",
    ),
    pytest.param(
        lambda s: s.repo.rotate("targets/bins", RoleKeys((s.key("m"),))),
        InvalidInput,
        "unknown role",
        id="rotate/delegated-role",
    ),
    pytest.param(
        lambda s: s.repo.rotate("timestamp", RoleKeys((s.keys["targets"][0],))),
        PolicyViolation,
        "each role needs its own keys",
        id="rotate/key-of-another-role",
    ),
    pytest.param(
        lambda s: s.repo.rotate("root", RoleKeys((s.keys["snapshot"][0], s.key("r9")), 2)),
        PolicyViolation,
        "snapshot role",
        id="rotate/root-takes-the-snapshot-key",
    ),
    pytest.param(
        lambda s: s.repo.rotate("timestamp", RoleKeys(tuple(s.keys["timestamp"]))),
        InvalidInput,
        "nothing changed",
        id="rotate/unchanged",
    ),
    pytest.param(
        lambda s: s.repo.rotate("timestamp", RoleKeys(("soft:no-such-key",))),
        NotFound,
        "",
        id="rotate/unknown-key",
    ),
    pytest.param(
        lambda s: s.repo.rotate("timestamp", RoleKeys(("pkcs11:token=x;object=y",))),
        InvalidInput,
        "",
        id="rotate/key-of-another-store",
    ),
    pytest.param(
        lambda s: s.repo.rotate(
            "timestamp", RoleKeys((s.home.keystore().generate("x", KeyType.X25519, KeyUsage.AGREE).uri,))
        ),
        InvalidInput,
        "TUF role keys are",
        id="rotate/agreement-key",
    ),
    pytest.param(
        lambda s: s.repo.rotate(
            "timestamp", RoleKeys((s.home.keystore().generate("x", KeyType.MLDSA65, KeyUsage.SIGN).uri,))
        ),
        InvalidInput,
        "TUF role keys are",
        id="rotate/ml-dsa-key",
    ),
    pytest.param(
        lambda s: s.repo.rotate("timestamp", "soft:timestamp-1"),
        InvalidInput,
        "RoleKeys",
        id="rotate/not-role-keys",
    ),
    pytest.param(lambda s: s.repo.refresh("mirror"), InvalidInput, "unknown role", id="refresh/unknown-role"),
    pytest.param(
        lambda s: s.repo.init(
            root=RoleKeys((s.key("r9"),)),
            targets=RoleKeys((s.key("t9"),)),
            snapshot=RoleKeys((s.key("s9"),)),
            timestamp=RoleKeys((s.key("ts9"),)),
        ),
        Conflict,
        "exists already",
        id="init/again",
    ),
]


@pytest.mark.parametrize(("act", "error", "message"), REFUSALS)
def test_refusals_change_nothing_and_are_audited(
    setup: Setup, act: Callable[[Setup], object], error: type[Exception], message: str
) -> None:
    setup.repo.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
    setup.home.keystore()  # keys made inside `act` are not part of the comparison
    before = repo_state(setup.home)
    with pytest.raises(error, match=message or None):
        act(setup)
    assert repo_state(setup.home) == before
    last = audit_entries(setup.home)[-1]
    assert (last.type, last.outcome.value) == (AUDIT_UPDATES, "refused")
    assert "\n" not in last.subject


@pytest.mark.parametrize(
    ("roles", "error", "message"),
    [
        pytest.param(
            {"timestamp": "targets"}, PolicyViolation, "each role needs its own keys", id="key-in-two-roles"
        ),
        pytest.param(
            {"root": "snapshot"}, PolicyViolation, "each role needs its own keys", id="root-key-is-online"
        ),
        pytest.param({"targets": "missing"}, NotFound, "", id="unknown-key"),
    ],
)
def test_init_refusals_change_nothing(
    tmp_path: Path, roles: dict[str, str], error: type[Exception], message: str
) -> None:
    s = make_setup(tmp_path / "home", init=False)
    try:
        keys = {role: tuple(uris) for role, uris in s.keys.items()}
        for role, source in roles.items():
            keys[role] = ("soft:missing",) if source == "missing" else keys[source]
        before = repo_state(s.home)
        with pytest.raises(error, match=message or None):
            s.repo.init(**{role: RoleKeys(uris) for role, uris in keys.items()})
        assert repo_state(s.home) == before == ((), (), (), ())
        with pytest.raises(NotFound, match="not initialised"):
            s.repo.add_target("fw/a.bin", b"a")
        with pytest.raises(NotFound):
            s.repo.metadata("timestamp.json")
    finally:
        s.home.close()


class AliasingKeyStore:
    """The real key store, reachable under a second URI per key too (as PKCS#11 URIs can name one
    key by label or by id): the same key listed twice must be seen as one."""

    def __init__(self, inner: KeyStore) -> None:
        self.inner = inner
        self.scheme = inner.scheme

    def _real(self, uri: str) -> str:
        return uri.removesuffix("-alias")

    def get(self, uri: str) -> KeyInfo:
        return self.inner.get(self._real(uri))

    def sign(self, uri: str, message: bytes) -> bytes:
        return self.inner.sign(self._real(uri), message)


def test_the_same_key_under_two_uris_is_one_key(setup: Setup) -> None:
    aliasing = AliasingKeyStore(setup.home.keystore())
    repo = UpdateRepository(setup.home.store, lambda: aliasing, setup.home.audit, actor="tester")  # type: ignore[arg-type,return-value]
    key = setup.key("timestamp-2")
    before = repo_state(setup.home)
    with pytest.raises(InvalidInput, match="twice"):
        repo.rotate("timestamp", RoleKeys((key, key + "-alias")))
    assert repo_state(setup.home) == before


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda: RoleKeys(("soft:a",), 2), "needs at least 2 keys", id="threshold-above-keys"),
        pytest.param(lambda: RoleKeys(("soft:a",), 0), "at least 1", id="threshold-zero"),
        pytest.param(lambda: RoleKeys(("soft:a",), True), "whole number", id="threshold-bool"),
        pytest.param(lambda: RoleKeys(("soft:a", "soft:a")), "same key twice", id="duplicate-uri"),
        pytest.param(lambda: RoleKeys(()), "at least one key", id="no-keys"),
        pytest.param(lambda: RoleKeys("soft:a"), "list of key-store URIs", id="a-string"),
        pytest.param(lambda: RoleKeys(("",)), "list of key-store URIs", id="empty-uri"),
        pytest.param(lambda: RoleKeys(tuple(f"soft:k{i}" for i in range(17))), "at most 16", id="too-many"),
        pytest.param(lambda: Expiries(timestamp=timedelta(0)), "timestamp expiry", id="expiry-zero"),
        pytest.param(
            lambda: Expiries(snapshot=timedelta(seconds=-5)), "snapshot expiry", id="expiry-negative"
        ),
        pytest.param(lambda: Expiries(root=timedelta(days=3651)), "root expiry", id="expiry-too-long"),
        pytest.param(
            lambda: Expiries(targets=timedelta(minutes=5, microseconds=1)),
            "whole number",
            id="expiry-fraction",
        ),
    ],
)
def test_bad_values_are_refused(make: Callable[[], object], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        make()


@pytest.mark.parametrize(
    ("name", "parsed"),
    [
        ("1.root.json", ("root", 1)),
        ("12.targets.json", ("targets", 12)),
        ("3.snapshot.json", ("snapshot", 3)),
        ("timestamp.json", ("timestamp", None)),
    ],
)
def test_metadata_names(name: str, parsed: tuple[str, int | None]) -> None:
    assert parse_metadata_name(name) == parsed


def test_target_paths() -> None:
    sha = "ab" * 32
    assert parse_target_path(f"{sha}.fw.bin") == ("fw.bin", sha)
    assert parse_target_path(f"a/b/{sha}.fw.bin") == ("a/b/fw.bin", sha)
    assert hash_prefixed("a/b/fw.bin", sha) == f"a/b/{sha}.fw.bin"
    for bad in [
        f"{sha}.",
        f"{sha}fw.bin",
        f"a//{sha}.fw.bin",
        f"../{sha}.fw.bin",
        sha,
        "fw.bin",
        f"{sha[:-1]}.fw.bin",
    ]:
        with pytest.raises(NotFound):
            parse_target_path(bad)


# -- the signer adapter ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key_type", "keytype", "scheme"),
    [
        (KeyType.ED25519, "ed25519", "ed25519"),
        (KeyType.P256, "ecdsa", "ecdsa-sha2-nistp256"),
        (KeyType.P384, "ecdsa", "ecdsa-sha2-nistp384"),
    ],
)
def test_key_store_signatures_verify_as_tuf_signatures(
    setup: Setup, key_type: KeyType, keytype: str, scheme: str
) -> None:
    uri = setup.key(f"adapter-{key_type.value}", key_type)
    signer = KeyStoreSigner.for_key(setup.home.keystore(), uri)
    key = signer.public_key
    assert isinstance(key, SSlibKey)
    assert (key.keytype, key.scheme) == (keytype, scheme)
    signature = signer.sign(b"payload")
    assert signature.keyid == key.keyid
    key.verify_signature(signature, b"payload")  # securesystemslib's own verification
    with pytest.raises(Exception, match=r"Verification failed|signature"):
        key.verify_signature(Signature(key.keyid, signature.signature), b"other payload")
    with pytest.raises(ValueError, match="KeyStoreSigner"):
        KeyStoreSigner.from_priv_key_uri(uri, key)


# -- engines, schema, concurrency, HSM ------------------------------------------------------------


def test_the_migration_matches_the_tables(db_url: str, tmp_path: Path) -> None:
    s = make_setup(tmp_path / "home", database=db_url, init=False)
    try:
        with s.home.store.engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = [d for d in compare_metadata(context, tables.metadata) if "tuf_" in repr(d)]
        assert diff == []
    finally:
        s.home.close()


def test_concurrent_publishers_both_succeed(db_url: str, tmp_path: Path) -> None:
    s = make_setup(tmp_path / "home", database=db_url)
    s.home.close()
    homes = [
        Home.open(tmp_path / "home", database=db_url, passphrase=lambda: "pw", pin=never, actor=f"p{i}")
        for i in (1, 2)
    ]
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def publish(home: Home, n: int) -> None:
        try:
            home.keystore()
            barrier.wait()
            for i in range(3):
                home.updates.add_target(f"fw/p{n}-{i}.bin", f"image {n}-{i}".encode())
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(home, n)) for n, home in enumerate(homes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    try:
        assert errors == []
        repo = homes[0].updates
        assert len(repo.targets()) == 6
        assert repo.versions().as_dict() == {"root": 1, "targets": 7, "snapshot": 7, "timestamp": 7}
        for v in range(2, 8):  # every snapshot version pins the targets version of the same change
            snapshot = Metadata.from_bytes(repo.metadata(f"{v}.snapshot.json")).signed
            assert snapshot.meta["targets.json"].version == v
    finally:
        for home in homes:
            home.close()


@pytest.mark.softhsm
def test_role_keys_in_an_hsm(hsm_token: HsmToken, tmp_path: Path) -> None:
    label, pin = hsm_token
    with Home.init(
        tmp_path / "home", keystore=f"pkcs11:token={label}", passphrase=never, pin=lambda: pin, actor="tester"
    ) as home:
        ks = home.keystore()

        def key(name: str, key_type: KeyType) -> tuple[str, ...]:
            return (ks.generate(name, key_type, KeyUsage.SIGN).uri,)

        home.updates.init(
            root=RoleKeys(key("tuf-root", KeyType.P256)),
            targets=RoleKeys(key("tuf-targets", KeyType.ED25519)),
            snapshot=RoleKeys(key("tuf-snapshot", KeyType.P256)),
            timestamp=RoleKeys(key("tuf-timestamp", KeyType.P384)),
        )
        home.updates.add_target("fw/sensor.bin", FIRMWARE, RELEASE)
        home.updates.rotate("root", RoleKeys(key("tuf-root-2", KeyType.ED25519)))
        with serving(create_app(home)) as port:
            dev = Device(port, home.updates.trusted_root(), tmp_path / "device")
            info, data = dev.fetch("fw/sensor.bin")
            assert (data, info.custom) == (FIRMWARE, RELEASE)
            assert dev.trusted("root").version == 2
