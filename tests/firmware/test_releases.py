"""Firmware releases at the OEM: k-of-n approval in one DSSE envelope, succession and rollback rules,
SBOM checks, and the published image (signed by the firmware key devices trust, encrypted to the
product's class key) checked with fabtrust's verifier and with MCUboot's imgtool.

Every refusal is checked three ways: the error and its message, nothing changed (``list`` and
``show`` give the same documents before and after), and an audit entry with outcome ``refused``.
Keys are generated at test time in a soft key store.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import inspect, select, update

from fabtrust.crypto import dsse
from fabtrust.crypto.canonical import canonical_json
from fabtrust.crypto.encoding import b64
from fabtrust.crypto.keys import KeyType, load_public_key
from fabtrust.device.vendor import SiliconVendor
from fabtrust.errors import (
    Conflict,
    FabtrustError,
    InvalidInput,
    NotFound,
    PolicyViolation,
    VerificationFailed,
)
from fabtrust.firmware.image import Image, ImageVersion, TlvType, decrypt_image, key_hash, verify_image
from fabtrust.firmware.releases import (
    AUDIT_FIRMWARE,
    RELEASE_FORMAT,
    Release,
    ReleaseService,
    ReleaseState,
    ReleaseStatement,
    check_succession,
)
from fabtrust.firmware.sbom import ComponentSpec, build_sbom
from fabtrust.home import Home
from fabtrust.store.tables import fw_class_keys, fw_policies, fw_releases, fw_signers, metadata
from fabtrust.tlog.audit import AuditEntry, Outcome
from tests.approvals import publish_ticket

T0 = datetime(2031, 5, 4, 8, 0, 0, tzinfo=UTC)
BODY_1 = b"\x00\x10\x00\x20firmware 1.0.0 " * 300
BODY_2 = b"\x00\x10\x00\x20firmware 2.0.0 " * 310
COMPONENTS = (
    ComponentSpec(
        "zephyr", "3.7.0", purl="pkg:github/zephyrproject-rtos/zephyr@v3.7.0", license="Apache-2.0"
    ),
    ComponentSpec("mbedtls", "3.6.0", purl="pkg:github/Mbed-TLS/mbedtls@v3.6.0", license="Apache-2.0"),
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)  # every act at its own time: listings have one order
        return self.now


@dataclass
class Oem:
    home: Home
    releases: ReleaseService

    def entries(self) -> list[AuditEntry]:
        log = self.home.log
        return [AuditEntry.parse(e) for e in log.entries(0, log.size())]

    def last(self) -> AuditEntry:
        log = self.home.log
        return AuditEntry.parse(log.entries(log.size() - 1, log.size())[0])

    def snapshot(self) -> list[dict[str, Any]]:
        return [r.to_doc() for r in self.releases.list()]

    def refused(
        self, act: Callable[[], object], error: type[FabtrustError], match: str, action: str
    ) -> AuditEntry:
        """``act`` fails with ``error``; nothing changed; the refusal is the last audit entry."""
        before, signers = self.snapshot(), [s.to_doc() for s in self.releases.signers()]
        with pytest.raises(error, match=match):
            act()
        assert self.snapshot() == before
        assert [s.to_doc() for s in self.releases.signers()] == signers
        entry = self.last()
        assert (entry.type, entry.action, entry.outcome) == (AUDIT_FIRMWARE, action, Outcome.REFUSED)
        assert entry.details["reason"] == error.code
        return entry

    def release(self, version: str, counter: int, body: bytes, **kw: Any) -> str:
        return self.releases.create(
            "widget", version, body, counter, f"notes for {version}", COMPONENTS, **kw
        ).release_id

    def approve(self, release_id: str, *signers: str) -> None:
        for signer in signers:
            self.releases.approve(release_id, signer)

    def publish(self, release_id: str) -> Release:
        """Publish with a firmware.publish approval of its exact terms (release signers' k-of-n)."""
        return self.releases.publish(release_id, publish_ticket(self.home, release_id))


def make_oem(path: Path, database: str | None = None) -> Oem:
    clock = Clock(T0)
    home = Home.init(
        path,
        database=database,
        passphrase=lambda: "oem-passphrase",
        pin=_never,
        actor="oem-admin",
        clock=clock,
    )
    vendor = SiliconVendor("Trusted Silicon", now=T0 - timedelta(days=30))
    home.pki.init_root(
        attributes={"commonName": "Acme Root CA", "organizationName": "Acme"},
        custodians=[("custodian-1", "custodian-1-words"), ("custodian-2", "custodian-2-words")],
        threshold=2,
        scrypt_n=2**14,
    )
    home.production.create_product(
        "widget", description="Widget", device_domain="widget.example", vendor_roots=[vendor.root]
    )
    service = home.releases
    for name in ("alice", "bob", "carol"):
        service.add_signer(name)
    service.set_policy("widget", 2)
    return Oem(home, service)


@pytest.fixture
def oem(tmp_path: Path) -> Iterator[Oem]:
    made = make_oem(tmp_path / "oem")
    yield made
    made.home.close()


@pytest.fixture
def oem_on(tmp_path: Path, db_url: str) -> Iterator[Oem]:
    """The OEM home on SQLite, then on a real PostgreSQL database."""
    made = make_oem(tmp_path / "oem", None if db_url.startswith("sqlite") else db_url)
    yield made
    made.home.close()


def _never() -> str:
    raise AssertionError("a PIN was asked for")


def class_key(oem: Oem) -> ec.EllipticCurvePrivateKey:
    der = oem.releases.class_key_private("widget", purpose="test: decrypt the published image")
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def firmware_public(oem: Oem) -> ec.EllipticCurvePublicKey:
    key = load_public_key(oem.releases.firmware_key().public_key_der)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def published(oem: Oem, version: str, counter: int, body: bytes) -> str:
    release_id = oem.release(version, counter, body)
    oem.approve(release_id, "alice", "bob")
    oem.publish(release_id)
    return release_id


# -- the happy path ---------------------------------------------------------------------------------


def test_two_of_three_approve_and_the_release_is_published(oem: Oem) -> None:
    svc = oem.releases
    release = svc.create("widget", "1.0.0", BODY_1, 3, "first release", COMPONENTS)
    assert (release.release_id, release.state, release.approvals) == ("widget-1.0.0", ReleaseState.DRAFT, ())
    assert release.threshold == 2
    assert release.statement.to_payload() == {
        "format": RELEASE_FORMAT,
        "product": "widget",
        "version": "1.0.0",
        "security_counter": 3,
        "body_sha256": release.statement.body_sha256,
        "sbom_sha256": release.sbom_sha256,
        "notes": "first release",
        "rollback": False,
        "rollback_from": None,
    }

    one = svc.approve("widget-1.0.0", "alice")
    assert (one.state, one.valid_approvals) == (ReleaseState.DRAFT, 1)
    two = svc.approve("widget-1.0.0", "carol")
    assert (two.state, two.valid_approvals) == (ReleaseState.APPROVED, 2)
    assert [(a.signer, a.status) for a in two.approvals] == [("alice", "valid"), ("carol", "valid")]

    done = oem.publish("widget-1.0.0")
    assert done.state == ReleaseState.PUBLISHED
    assert done.image_sha256 is not None
    assert done.image_size == len(svc.image("widget-1.0.0"))
    assert svc.current("widget") == done

    # one envelope holds both signatures over the canonical statement
    with oem.home.store.read() as conn:
        raw = conn.execute(select(fw_releases.c.approvals)).scalar_one()
    envelope = dsse.Envelope.parse(raw)
    assert envelope.payload == done.statement.to_json() == canonical_json(done.statement.to_payload())
    assert len(envelope.signatures) == 2

    actions = [(e.action, e.subject, e.outcome) for e in oem.entries() if e.type == AUDIT_FIRMWARE]
    assert ("release.create", "release:widget-1.0.0", Outcome.OK) in actions
    assert actions.count(("release.approve", "release:widget-1.0.0", Outcome.OK)) == 2
    assert ("release.publish", "release:widget-1.0.0", Outcome.OK) in actions
    assert ("class-key.generate", "product:widget", Outcome.OK) in actions


def test_the_published_image_verifies_under_the_firmware_key_devices_trust(oem: Oem) -> None:
    published(oem, "1.0.0", 3, BODY_1)
    image = oem.releases.image("widget-1.0.0")
    fw = firmware_public(oem)
    # the key devices burn: production hashes the key with the same label
    assert oem.releases.firmware_key_hash() == oem.home.production.oem_key_hash() == key_hash(fw)

    parsed = Image.parse(image)
    assert parsed.header.encrypted
    assert parsed.wrapped_key is not None
    assert parsed.wrapped_key.scheme == TlvType.ENC_EC256  # ECIES-P256
    assert [s.key_type for s in parsed.signatures] == [TlvType.PUBKEY]  # MCUBOOT_HW_KEY: full key
    for trusted in (fw, key_hash(fw)):  # the key, or only its hash as a device holds it
        verified = verify_image(image, trusted_keys=[trusted], decryption_key=class_key(oem))
        assert verified.version == ImageVersion(1, 0, 0)
        assert verified.security_counter == 3
        assert bytes(verified.body).rstrip(b"\x00") == BODY_1.rstrip(b"\x00")
        assert bytes(verified.body[: len(BODY_1)]) == BODY_1
    with pytest.raises(VerificationFailed, match="encrypted"):
        verify_image(image, trusted_keys=[fw])  # the body is ciphertext without the class key
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(VerificationFailed):
        verify_image(image, trusted_keys=[fw], decryption_key=other)


def test_imgtool_accepts_the_decrypted_published_image(oem: Oem, tmp_path: Path) -> None:
    imgtool = shutil.which("imgtool", path=str(Path(sys.executable).parent))
    if imgtool is None:
        pytest.fail("imgtool is not installed in the venv (a dev dependency: pip install -e '.[dev]')")
    published(oem, "1.2.3+4", 9, BODY_1)
    image = oem.releases.image("widget-1.2.3+4")
    public_pem = tmp_path / "firmware-key.pem"
    public_pem.write_bytes(
        firmware_public(oem).public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    decrypted = tmp_path / "decrypted.bin"
    decrypted.write_bytes(decrypt_image(image, class_key(oem)))
    result = subprocess.run(
        [imgtool, "verify", "-k", str(public_pem), str(decrypted)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Image was correctly validated" in result.stdout
    assert "Image version: 1.2.3+4" in result.stdout
    info = json.loads(
        subprocess.run(
            [imgtool, "dumpinfo", "-f", "json", str(decrypted)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    )
    assert [(t["type_name"], bytes.fromhex(t["data"])) for t in info["tlv_area"]["tlvs_prot"]] == [
        ("SEC_CNT", (9).to_bytes(4, "little"))
    ]


def test_the_sbom_describes_the_released_firmware(oem: Oem) -> None:
    release = oem.releases.create("widget", "1.0.0", BODY_1, 3, "", COMPONENTS)
    doc = json.loads(oem.releases.sbom(release.release_id))
    assert (doc["bomFormat"], doc["specVersion"]) == ("CycloneDX", "1.6")
    firmware = doc["metadata"]["component"]
    assert (firmware["type"], firmware["name"], firmware["version"]) == ("firmware", "widget", "1.0.0")
    assert firmware["hashes"] == [{"alg": "SHA-256", "content": release.statement.body_sha256}]
    assert sorted(c["name"] for c in doc["components"]) == ["mbedtls", "zephyr"]
    assert doc["serialNumber"].startswith("urn:uuid:")


def test_the_class_key_leaves_only_through_an_audited_call_and_never_enters_the_log(oem: Oem) -> None:
    with pytest.raises(NotFound, match="no class key"):
        oem.releases.class_key_private("widget", purpose="too early")
    published(oem, "1.0.0", 3, BODY_1)
    der = oem.releases.class_key_private("widget", purpose="production package for po-1")
    entry = oem.last()
    assert (entry.action, entry.outcome, entry.details["purpose"]) == (
        "class-key.unseal",
        Outcome.OK,
        "production package for po-1",
    )
    log_bytes = b"".join(oem.home.log.entries(0, oem.home.log.size()))
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    scalar = key.private_numbers().private_value.to_bytes(32, "big")
    for secret in (der, scalar):
        assert secret not in log_bytes
        assert b64(secret).encode() not in log_bytes
        assert secret.hex().encode() not in log_bytes
    # at rest it is sealed to a key-store key, never stored in the clear
    with oem.home.store.read() as conn:
        sealed = conn.execute(select(fw_class_keys.c.sealed_private)).scalar_one()
    assert scalar not in sealed
    assert der not in sealed


def test_the_schema_has_the_release_tables(oem: Oem) -> None:
    names = set(inspect(oem.home.store.engine).get_table_names())
    for table in (fw_signers, fw_policies, fw_class_keys, fw_releases):
        assert table.name in names
        migrated = {c["name"] for c in inspect(oem.home.store.engine).get_columns(table.name)}
        assert migrated == {c.name for c in metadata.tables[table.name].columns}


# -- approvals --------------------------------------------------------------------------------------


def test_publishing_below_the_threshold_is_refused(oem: Oem) -> None:
    release_id = oem.release("1.0.0", 1, BODY_1)
    oem.refused(
        lambda: oem.publish(release_id),
        PolicyViolation,
        "has no approvals; 2 needed",
        "release.publish",
    )
    oem.approve(release_id, "alice")
    oem.refused(
        lambda: oem.publish(release_id),
        PolicyViolation,
        r"1 approval\(s\) by active release signers, 2 needed",
        "release.publish",
    )
    assert oem.releases.show(release_id).state == ReleaseState.DRAFT


def test_the_same_signer_twice_is_refused(oem: Oem) -> None:
    release_id = oem.release("1.0.0", 1, BODY_1)
    oem.approve(release_id, "alice")
    entry = oem.refused(
        lambda: oem.releases.approve(release_id, "alice"),
        Conflict,
        "alice has approved release widget-1.0.0 already",
        "release.approve",
    )
    assert entry.details["signer"] == "alice"
    assert oem.releases.show(release_id).valid_approvals == 1


def test_unknown_and_revoked_signers_cannot_approve(oem: Oem) -> None:
    release_id = oem.release("1.0.0", 1, BODY_1)
    oem.refused(lambda: oem.releases.approve(release_id, "mallory"), NotFound, "mallory", "release.approve")
    oem.releases.revoke_signer("carol")
    oem.refused(
        lambda: oem.releases.approve(release_id, "carol"), PolicyViolation, "revoked", "release.approve"
    )
    oem.refused(
        lambda: oem.releases.approve("widget-9.9.9", "alice"), NotFound, "no release", "release.approve"
    )


def test_a_revoked_signers_approval_stops_counting(oem: Oem) -> None:
    release_id = oem.release("1.0.0", 1, BODY_1)
    oem.approve(release_id, "alice", "bob")
    assert oem.releases.show(release_id).state == ReleaseState.APPROVED
    oem.releases.revoke_signer("bob")
    shown = oem.releases.show(release_id)
    assert shown.state == ReleaseState.DRAFT
    assert [(a.signer, a.status) for a in shown.approvals] == [("alice", "valid"), ("bob", "revoked")]
    oem.refused(
        lambda: oem.publish(release_id),
        PolicyViolation,
        r"1 approval\(s\) by active release signers, 2 needed",
        "release.publish",
    )
    oem.approve(release_id, "carol")  # a third signer makes up for it
    assert oem.publish(release_id).state == ReleaseState.PUBLISHED


def test_signers_and_policies_are_checked(oem: Oem) -> None:
    svc = oem.releases
    oem.refused(lambda: svc.add_signer("alice"), Conflict, "exists already", "signer.add")
    oem.refused(lambda: svc.add_signer("Not A Name"), InvalidInput, "signer name", "signer.add")
    oem.refused(
        lambda: svc.add_signer("dave", KeyType.P384), InvalidInput, "ecdsa-p256 or ed25519", "signer.add"
    )
    oem.refused(lambda: svc.set_policy("widget", 0), InvalidInput, "at least 1", "policy.set")
    oem.refused(lambda: svc.set_policy("widget", 4), PolicyViolation, "more than the 3 active", "policy.set")
    oem.refused(lambda: svc.set_policy("gadget", 1), NotFound, "no product", "policy.set")
    svc.revoke_signer("carol")
    oem.refused(lambda: svc.revoke_signer("carol"), Conflict, "revoked already", "signer.revoke")
    oem.refused(lambda: svc.set_policy("widget", 3), PolicyViolation, "more than the 2 active", "policy.set")
    assert svc.policy("widget") == 2
    dave = svc.add_signer("dave", KeyType.ED25519)
    assert (dave.key_type, dave.status) == (KeyType.ED25519, "active")
    assert [(s.name, s.status) for s in svc.signers()] == [
        ("alice", "active"),
        ("bob", "active"),
        ("carol", "revoked"),
        ("dave", "active"),
    ]
    assert svc.set_policy("widget", 3) == 3


def test_an_ed25519_signer_approves_like_any_other(oem: Oem) -> None:
    oem.releases.add_signer("dave", KeyType.ED25519)
    release_id = oem.release("1.0.0", 1, BODY_1)
    oem.approve(release_id, "dave", "alice")
    assert oem.publish(release_id).valid_approvals == 2


def test_without_a_policy_nothing_is_published(oem: Oem) -> None:
    oem.home.production.create_product(
        "gadget",
        description="Gadget",
        device_domain="gadget.example",
        vendor_roots=[SiliconVendor("Other Silicon", now=T0).root],
    )
    release = oem.releases.create("gadget", "1.0.0", BODY_1, 1, "", ())
    assert release.threshold is None
    oem.approve(release.release_id, "alice", "bob", "carol")
    assert oem.releases.show(release.release_id).state == ReleaseState.DRAFT
    oem.refused(
        lambda: oem.publish(release.release_id),
        PolicyViolation,
        "no approval policy",
        "release.publish",
    )


def test_a_published_release_is_closed(oem: Oem) -> None:
    release_id = oem.release("1.0.0", 1, BODY_1)
    oem.approve(release_id, "alice", "bob")
    spare = publish_ticket(oem.home, release_id)  # a second approval, given while it was a draft
    oem.publish(release_id)
    oem.refused(lambda: oem.releases.approve(release_id, "carol"), Conflict, "published", "release.approve")
    oem.refused(
        lambda: oem.releases.publish(release_id, spare), Conflict, "published already", "release.publish"
    )
    assert oem.home.access.show_request(spare.request_id).status.value == "pending"
    with pytest.raises(Conflict, match="published already"):  # nobody is asked to approve it again
        oem.releases.publish_terms(release_id)


def _tamper(oem: Oem, release_id: str, change: Callable[[bytes], bytes]) -> None:
    with oem.home.store.write() as conn:
        raw = conn.execute(
            select(fw_releases.c.approvals).where(fw_releases.c.release_id == release_id)
        ).scalar_one()
        conn.execute(
            update(fw_releases).where(fw_releases.c.release_id == release_id).values(approvals=change(raw))
        )


def _flip_signature_byte(raw: bytes) -> bytes:
    doc = json.loads(raw)
    envelope = dsse.Envelope.parse(raw)
    sig = bytearray(envelope.signatures[1].sig)
    sig[len(sig) // 2] ^= 0x01
    doc["signatures"][1]["sig"] = b64(bytes(sig))
    return json.dumps(doc).encode()


def _flip_payload_byte(raw: bytes) -> bytes:
    envelope = dsse.Envelope.parse(raw)
    payload = envelope.payload.replace(b'"security_counter":3', b'"security_counter":2')
    assert payload != envelope.payload
    return dsse.Envelope(envelope.payload_type, payload, envelope.signatures).to_json()


def _truncate(raw: bytes) -> bytes:
    return raw[:-1]


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        (_flip_signature_byte, VerificationFailed, "does not verify: the approval envelope was altered"),
        (_flip_payload_byte, VerificationFailed, "not over its statement"),
        (_truncate, InvalidInput, "signed envelope is not valid JSON"),
    ],
    ids=["signature", "payload", "truncated"],
)
def test_a_tampered_approval_envelope_is_refused(
    oem: Oem, change: Callable[[bytes], bytes], error: type[FabtrustError], match: str
) -> None:
    release_id = oem.release("1.0.0", 3, BODY_1)
    oem.approve(release_id, "alice", "bob")
    _tamper(oem, release_id, change)
    shown = oem.releases.show(release_id)
    assert shown.state == ReleaseState.DRAFT
    assert shown.problem is not None
    oem.refused(lambda: oem.publish(release_id), error, match, "release.publish")
    oem.refused(lambda: oem.releases.approve(release_id, "carol"), error, match, "release.approve")
    with pytest.raises(Conflict, match="not published"):
        oem.releases.image(release_id)


# -- succession and rollback -------------------------------------------------------------------------


def test_a_counter_below_the_current_release_is_refused(oem: Oem) -> None:
    lower = oem.release("2.1.0", 4, BODY_2)  # drafted before 2.0.0 (counter 5) is published
    oem.approve(lower, "alice", "bob")
    published(oem, "2.0.0", 5, BODY_1)
    oem.refused(
        lambda: oem.publish(lower),
        PolicyViolation,
        "security counter 4 is below 5, the current release widget-2.0.0's",
        "release.publish",
    )
    # and a new draft below it is refused at once
    oem.refused(lambda: oem.release("2.2.0", 4, BODY_2), PolicyViolation, "below 5", "release.create")


def test_a_rollback_without_an_explicit_request_is_refused(oem: Oem) -> None:
    older = oem.release("1.5.0", 5, BODY_2)
    oem.approve(older, "alice", "bob")
    published(oem, "2.0.0", 5, BODY_1)
    oem.refused(
        lambda: oem.publish(older),
        PolicyViolation,
        r"version 1.5.0 is not higher than 2.0.0.*--rollback",
        "release.publish",
    )
    oem.refused(lambda: oem.release("2.0.0", 5, BODY_2), PolicyViolation, "not higher", "release.create")
    oem.refused(lambda: oem.release("1.9.0", 6, BODY_2), PolicyViolation, "not higher", "release.create")


def test_an_explicit_rollback_with_its_own_approvals_publishes(oem: Oem) -> None:
    first = published(oem, "1.0.0", 3, BODY_1)
    second = published(oem, "2.0.0", 5, BODY_2)
    rollback = oem.release("1.0.0", 3, BODY_1, rollback=True)
    assert rollback == "widget-1.0.0-rollback" != first
    statement = oem.releases.show(rollback).statement
    assert (statement.rollback, statement.rollback_from) == (True, second)
    # the approvals of the original 1.0.0 release do not carry over: a new statement, new approvals
    oem.refused(lambda: oem.publish(rollback), PolicyViolation, "has no approvals", "release.publish")
    oem.approve(rollback, "bob", "carol")
    done = oem.publish(rollback)
    assert done.state == ReleaseState.PUBLISHED
    assert oem.releases.current("widget") == done
    verified = verify_image(
        oem.releases.image(rollback), trusted_keys=[firmware_public(oem)], decryption_key=class_key(oem)
    )
    assert (verified.version, verified.security_counter) == (ImageVersion(1, 0, 0), 3)
    entry = next(e for e in reversed(oem.entries()) if e.action == "release.publish")
    assert (entry.details["rollback"], entry.details["replaces"]) == (True, second)
    # the next normal release follows the rollback
    assert published(oem, "2.0.1", 5, BODY_2) == "widget-2.0.1"


def test_a_rollback_is_refused_once_the_current_release_has_changed(oem: Oem) -> None:
    published(oem, "2.0.0", 5, BODY_1)
    rollback = oem.release("1.0.0", 3, BODY_1, rollback=True)
    oem.approve(rollback, "alice", "bob")
    published(oem, "2.1.0", 5, BODY_2)
    oem.refused(
        lambda: oem.publish(rollback),
        PolicyViolation,
        "requested from release widget-2.0.0, but the current release is widget-2.1.0",
        "release.publish",
    )


def test_rollback_requests_must_roll_back(oem: Oem) -> None:
    oem.refused(
        lambda: oem.release("1.0.0", 1, BODY_1, rollback=True),
        PolicyViolation,
        "no published release to roll back from",
        "release.create",
    )
    published(oem, "1.0.0", 3, BODY_1)
    oem.refused(
        lambda: oem.release("2.0.0", 4, BODY_2, rollback=True),
        PolicyViolation,
        "marked as a rollback but is newer",
        "release.create",
    )


V = ImageVersion.parse


def _st(version: str, counter: int, rollback_from: str | None = None) -> ReleaseStatement:
    return ReleaseStatement(
        "widget", V(version), counter, "a" * 64, "b" * 64, "", rollback_from is not None, rollback_from
    )


@pytest.mark.parametrize(
    ("statement", "current", "error"),
    [
        (_st("1.0.0", 0), None, None),
        (_st("1.0.1", 3), ("widget-1.0.0", _st("1.0.0", 3)), None),
        (_st("1.0.0+1", 4), ("widget-1.0.0", _st("1.0.0", 3)), None),
        (_st("1.0.0", 3), ("widget-1.0.0", _st("1.0.0", 3)), "not higher"),
        (_st("2.0.0", 2), ("widget-1.0.0", _st("1.0.0", 3)), "below 3"),
        (_st("0.9.0", 3, "widget-1.0.0"), ("widget-1.0.0", _st("1.0.0", 3)), None),
        (_st("1.1.0", 2, "widget-1.0.0"), ("widget-1.0.0", _st("1.0.0", 3)), None),
        (_st("1.1.0", 3, "widget-1.0.0"), ("widget-1.0.0", _st("1.0.0", 3)), "newer"),
        (_st("0.9.0", 3, "widget-0.5.0"), ("widget-1.0.0", _st("1.0.0", 3)), "current release is"),
        (_st("0.9.0", 3, "widget-1.0.0"), None, "nothing to roll back"),
    ],
    ids=[
        "ok/first",
        "ok/newer-same-counter",
        "ok/newer-build",
        "fail/same-version",
        "fail/counter-below",
        "ok/rollback-version",
        "ok/rollback-counter",
        "fail/rollback-not-older",
        "fail/rollback-from-stale",
        "fail/rollback-from-nothing",
    ],
)
def test_succession_rules(
    statement: ReleaseStatement, current: tuple[str, ReleaseStatement] | None, error: str | None
) -> None:
    if error is None:
        check_succession(statement, current)
    else:
        with pytest.raises(PolicyViolation, match=error):
            check_succession(statement, current)


def test_the_statement_is_strict_canonical_json() -> None:
    statement = _st("1.2.3+4", 7)
    assert ReleaseStatement.parse(statement.to_json()) == statement
    doc = statement.to_payload()
    for bad in (
        {**doc, "extra": 1},
        {k: v for k, v in doc.items() if k != "notes"},
        {**doc, "format": "fabtrust.firmware-release/v2"},
        {**doc, "version": "1.2.3.4"},
        {**doc, "version": "01.2.3"},
        {**doc, "rollback": True},
        {**doc, "security_counter": -1},
        {**doc, "body_sha256": "A" * 64},
    ):
        with pytest.raises(InvalidInput):
            ReleaseStatement.parse(canonical_json(bad))
    with pytest.raises(InvalidInput, match="canonical"):
        ReleaseStatement.parse(json.dumps(doc, indent=1).encode())


# -- SBOM and bad input -----------------------------------------------------------------------------


def test_an_sbom_that_fails_validation_is_refused_and_nothing_is_created(oem: Oem) -> None:
    good = json.loads(
        build_sbom(
            product="widget",
            version="1.0.0",
            body_sha256=hashlib.sha256(BODY_1).hexdigest(),
            components=COMPONENTS,
            timestamp=T0,
        )
    )
    cases = [
        ({**good, "specVersion": "1.5"}, "specVersion is '1.5'"),
        ({**good, "serialNumber": "not-a-urn"}, "at /serialNumber"),
        (
            {**good, "metadata": {**good["metadata"], "component": {"type": "firmware"}}},
            "'name' is a required",
        ),
        (
            {
                **good,
                "components": [
                    {"type": "library", "name": "x", "hashes": [{"alg": "SHA-256", "content": "zz"}]}
                ],
            },
            "/components/0/hashes/0/content",
        ),
        (
            {
                **good,
                "metadata": {
                    **good["metadata"],
                    "component": {**good["metadata"]["component"], "version": "9.9.9"},
                },
            },
            "describes version '9.9.9'",
        ),
    ]
    for doc, match in cases:
        oem.refused(
            lambda doc=doc: oem.releases.create(
                "widget", "1.0.0", BODY_1, 1, "", sbom=json.dumps(doc).encode()
            ),
            InvalidInput,
            match,
            "release.create",
        )
    assert oem.releases.list() == []
    # the good one, given as a document, is taken as it is
    release = oem.releases.create("widget", "1.0.0", BODY_1, 1, "", sbom=json.dumps(good).encode())
    assert json.loads(oem.releases.sbom(release.release_id)) == good


def test_a_stored_sbom_that_changed_is_refused_at_publication(oem: Oem) -> None:
    release_id = oem.release("1.0.0", 1, BODY_1)
    oem.approve(release_id, "alice", "bob")
    with oem.home.store.write() as conn:
        raw = conn.execute(select(fw_releases.c.sbom)).scalar_one()
        doc = json.loads(raw)
        doc["specVersion"] = "1.4"
        conn.execute(update(fw_releases).values(sbom=json.dumps(doc).encode()))
    oem.refused(
        lambda: oem.publish(release_id),
        VerificationFailed,
        "stored SBOM is not the one the statement names",
        "release.publish",
    )
    with pytest.raises(VerificationFailed, match="not the one approved"):
        oem.releases.sbom(release_id)


def test_bad_release_input_is_refused(oem: Oem) -> None:
    mcuboot = (0x96F3B83D).to_bytes(4, "little") + b"\x00" * 60
    cases = [
        (lambda: oem.releases.create("widget", "1.0", b"", 1), InvalidInput, "needs a firmware body"),
        (lambda: oem.releases.create("widget", "one", BODY_1, 1), InvalidInput, "version must look like"),
        (lambda: oem.releases.create("widget", "256.0.0", BODY_1, 1), InvalidInput, "major"),
        (lambda: oem.releases.create("widget", "1.0", BODY_1, -1), InvalidInput, "security counter"),
        (lambda: oem.releases.create("widget", "1.0", BODY_1, 2**32), InvalidInput, "security counter"),
        (lambda: oem.releases.create("widget", "1.0", mcuboot, 1), InvalidInput, "MCUboot image already"),
        (lambda: oem.releases.create("widget", "1.0", BODY_1, 1, "n" * 5000), InvalidInput, "notes"),
        (lambda: oem.releases.create("gadget", "1.0", BODY_1, 1), NotFound, "no product"),
        (
            lambda: oem.releases.create("widget", "1.0", BODY_1, 1, "", COMPONENTS, sbom=b"{}"),
            InvalidInput,
            "not both",
        ),
        (
            lambda: oem.releases.create("widget", "1.0", BODY_1, 1, sbom=b"[1,"),
            InvalidInput,
            "not valid JSON",
        ),
    ]
    for act, error, match in cases:
        oem.refused(act, error, match, "release.create")
    assert oem.releases.list() == []
    oem.release("1.0.0", 1, BODY_1)
    oem.refused(
        lambda: oem.release("1.0", 1, BODY_1), Conflict, "widget-1.0.0 exists already", "release.create"
    )
    with pytest.raises(NotFound):
        oem.releases.show("widget-7.0.0")


def test_listing_and_state(oem: Oem) -> None:
    a = published(oem, "1.0.0", 1, BODY_1)
    b = oem.release("1.1.0", 1, BODY_2)
    oem.approve(b, "carol", "alice")
    c = oem.release("1.2.0", 2, BODY_2)
    states = {r.release_id: r.state for r in oem.releases.list()}
    assert states == {a: ReleaseState.PUBLISHED, b: ReleaseState.APPROVED, c: ReleaseState.DRAFT}
    assert [r.release_id for r in oem.releases.list("widget")] == [a, b, c]
    assert oem.releases.list("gadget") == []
    with pytest.raises(Conflict, match="not published"):
        oem.releases.image(c)


# -- both engines ----------------------------------------------------------------------------------


def test_the_flow_on_both_engines(oem_on: Oem) -> None:
    oem = oem_on
    first = published(oem, "1.0.0", 3, BODY_1)
    second = oem.release("1.1.0", 3, BODY_2)
    oem.approve(second, "alice", "bob")
    _tamper(oem, second, _flip_signature_byte)
    oem.refused(lambda: oem.publish(second), VerificationFailed, "altered", "release.publish")
    rollback = oem.release("0.9.0", 2, BODY_2, rollback=True)
    oem.approve(rollback, "carol", "alice")
    assert oem.publish(rollback).state == ReleaseState.PUBLISHED
    assert [r.release_id for r in oem.releases.list() if r.state == ReleaseState.PUBLISHED] == [
        first,
        rollback,
    ]
    verified = verify_image(
        oem.releases.image(rollback),
        trusted_keys=[key_hash(firmware_public(oem))],
        decryption_key=class_key(oem),
    )
    assert verified.security_counter == 2


def test_concurrent_approvals_are_never_lost(oem_on: Oem) -> None:
    """Approvals racing for the one envelope: each lands, or is refused as a conflict and lands on a
    retry; none overwrites another."""
    oem = oem_on
    for name in ("dave", "erin", "frank"):
        oem.releases.add_signer(name)
    release_id = oem.release("1.0.0", 1, BODY_1)
    names = ["alice", "bob", "carol", "dave", "erin", "frank"]
    barrier = threading.Barrier(len(names))
    outcomes: dict[str, str] = {}
    conflicts: list[str] = []

    def approve(name: str) -> None:
        service = ReleaseService(oem.home.store, oem.home.keystore(), oem.home.audit, actor=f"signer-{name}")
        barrier.wait()
        for _ in range(20):
            try:
                service.approve(release_id, name)
            except Conflict as exc:
                conflicts.append(exc.message)
                outcomes[name] = "retried"
                continue
            outcomes.setdefault(name, "first try")
            return

    threads = [threading.Thread(target=approve, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(outcomes) == set(names)
    assert all("changed meanwhile; approve again" in m for m in conflicts)
    shown = oem.releases.show(release_id)
    assert sorted(a.signer or "" for a in shown.approvals) == names
    assert shown.valid_approvals == len(names)


def test_the_reference_device_boots_published_releases_and_refuses_a_rollback_update(oem: Oem) -> None:
    """The production contract: burn the firmware key hash, seal the class key as the ``image-key``
    device-class secret, program the image; the boot manager verifies and decrypts it."""
    from fabtrust.device.agent import OEM_KEY_HASH_OTP, SECRETS_OBJECT
    from fabtrust.device.boot import IMAGE_KEY_SECRET, PRIMARY_REGION, BootManager, UpdateStatus

    published(oem, "2.0.0", 5, BODY_2)
    rollback = oem.release("1.0.0", 3, BODY_1, rollback=True)
    oem.approve(rollback, "alice", "bob")
    oem.publish(rollback)

    chip = SiliconVendor("Trusted Silicon", now=T0).make_chip()
    chip.burn(OEM_KEY_HASH_OTP, oem.home.production.oem_key_hash())
    image_key = oem.releases.class_key_private("widget", purpose="test device")
    chip.store_sealed(SECRETS_OBJECT, canonical_json({IMAGE_KEY_SECRET: b64(image_key)}))
    chip.flash_write(PRIMARY_REGION, oem.releases.image("widget-2.0.0"))
    boot = BootManager(chip)
    booted = boot.boot()
    assert (booted.version, booted.security_counter, booted.encrypted) == (ImageVersion(2, 0, 0), 5, True)
    # the published rollback lowers the counter: a device that ran counter 5 refuses it
    boot.stage(oem.releases.image(rollback))
    again = boot.boot()
    assert again.update == UpdateStatus.REFUSED
    assert again.update_refusal is not None
    assert "rollback" in again.update_refusal.reason
    assert again.version == ImageVersion(2, 0, 0)


# -- the firmware key in an HSM ------------------------------------------------------------------------


@pytest.mark.softhsm
def test_an_oem_home_on_softhsm2_signs_the_published_image_in_the_token(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """The firmware key never leaves the token: the image's SHA-256 is signed there (prehashed ECDSA
    through ``KeyStore.sign_digest``), and the image verifies under the key devices trust."""
    from fabtrust.keystore.pkcs11 import Pkcs11KeyStore
    from tests.fixtures.softhsm import HsmToken

    token: HsmToken = request.getfixturevalue("hsm_token")
    home = Home.init(
        tmp_path / "oem-hsm",
        keystore=f"pkcs11:token={token.label}",
        passphrase=_never,
        pin=lambda: token.pin,
        actor="oem-admin",
        clock=Clock(T0),
    )
    try:
        vendor = SiliconVendor("Trusted Silicon", now=T0 - timedelta(days=30))
        home.pki.init_root(
            attributes={"commonName": "Acme Root CA", "organizationName": "Acme"},
            custodians=[("custodian-1", "custodian-1-words"), ("custodian-2", "custodian-2-words")],
            threshold=2,
            scrypt_n=2**14,
        )
        home.production.create_product(
            "widget", description="Widget", device_domain="widget.example", vendor_roots=[vendor.root]
        )
        for name in ("alice", "bob"):
            home.releases.add_signer(name)
        home.releases.set_policy("widget", 2)
        oem = Oem(home, home.releases)

        store = home.keystore()
        assert isinstance(store, Pkcs11KeyStore)
        assert not hasattr(store, "in_process_signing_key")  # no private key object to sign with
        firmware = oem.releases.firmware_key()
        assert firmware.uri.startswith(f"pkcs11:token={token.label};")
        assert firmware.key_type is KeyType.P256

        published(oem, "1.0.0", 3, BODY_1)
        entry = oem.last()
        assert (entry.action, entry.outcome) == ("release.publish", Outcome.OK)
        assert entry.details["key_id"] == firmware.key_id
        image = oem.releases.image("widget-1.0.0")
        parsed = Image.parse(image)
        assert [(s.key_type, s.signature_type) for s in parsed.signatures] == [
            (TlvType.PUBKEY, TlvType.ECDSA_SIG)
        ]
        fw = firmware_public(oem)
        for trusted in (fw, key_hash(fw)):
            verified = verify_image(image, trusted_keys=[trusted], decryption_key=class_key(oem))
            assert (verified.version, verified.security_counter) == (ImageVersion(1, 0, 0), 3)
            assert bytes(verified.body[: len(BODY_1)]) == BODY_1
        with pytest.raises(VerificationFailed):
            verify_image(
                image,
                trusted_keys=[ec.generate_private_key(ec.SECP256R1()).public_key()],
                decryption_key=class_key(oem),
            )
    finally:
        home.close()
