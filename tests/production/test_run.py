"""A production run, told across three data homes: the OEM (root, product, release, orders,
packages, reconciliation) and two factory stations, each with its own store, key store and log.
Devices are the reference secure elements from a simulated silicon vendor; each boots the order's
published release (signed, encrypted MCUboot image) and reports the measured boot in its receipt.

Outcomes asserted: devices provisioned up to the quota and never beyond, every certificate with
exactly one record, refusals with their reasons (counterfeit, replay, clone, tampered or foreign
package, window, quota), and the OEM's reconciliation: registry, clone and overproduction alerts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from fabtrust.access import ApprovalAction, Role
from fabtrust.crypto.canonical import canonical_json, parse_canonical
from fabtrust.crypto.encoding import b64, unb64
from fabtrust.crypto.keys import key_id
from fabtrust.device.agent import IDENTITY_SLOT, DeviceAgent, ReplayingAgent
from fabtrust.device.boot import IMAGE_KEY_SECRET, SECURITY_COUNTER
from fabtrust.device.element import SecureElement
from fabtrust.device.protocol import InstallReceipt, Provisioning
from fabtrust.device.vendor import SiliconVendor
from fabtrust.errors import Conflict, InvalidInput, NotFound, PolicyViolation, VerificationFailed
from fabtrust.firmware.image import verify_image
from fabtrust.home import Home
from fabtrust.production.station import Provisioned
from fabtrust.store.tables import fw_releases, pki_certs, st_devices, st_packages
from fabtrust.tlog.audit import AuditEntry
from tests.approvals import approved, person, publish_ticket
from tests.production.line import (
    Clock,
    enroll,
    found_product,
    make_home,
    publish,
    published_image,
    seal_for,
)

T0 = datetime(2031, 5, 4, 8, 0, 0, tzinfo=UTC)
DER, SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
ORDER_APPROVE, QUOTA_RAISE = ApprovalAction.ORDER_APPROVE, ApprovalAction.QUOTA_RAISE
PLANNER = Role.PRODUCTION_PLANNER


@dataclass
class Run:
    clock: Clock
    oem: Home
    line1: Home
    line2: Home
    vendor: SiliconVendor
    window_end: datetime

    def chip(self) -> SecureElement:
        return self.vendor.make_chip()


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    clock = Clock(T0)
    oem = make_home(tmp_path / "oem", "oem-admin", clock)
    line1 = make_home(tmp_path / "line1", "operator-1", clock)
    line2 = make_home(tmp_path / "line2", "operator-2", clock)
    vendor = SiliconVendor("Trusted Silicon", now=T0 - timedelta(days=30))
    release = found_product(oem, vendor)
    enroll(oem, line1, "line1")
    enroll(oem, line2, "line2")
    end = T0 + timedelta(days=7)
    oem.production.create_order(
        "po-1",
        product="widget",
        release_id=release,
        stations=["line1", "line2"],
        quota=6,
        not_before=T0,
        not_after=end,
    )
    yield Run(clock, oem, line1, line2, vendor, end)
    for home in (oem, line1, line2):
        home.close()


def provision(station: Home, order_id: str, chips: list[SecureElement]) -> list[Provisioned | Exception]:
    answers = []
    for chip in chips:
        challenge = station.station.challenge(order_id)
        answers.append((challenge, DeviceAgent(chip).answer(challenge)))
    return list(station.station.provision(order_id, answers))


def install(
    station: Home, results: list[Provisioned | Exception], chips: list[SecureElement], order_id: str = "po-1"
) -> None:
    by_uid = {c.uid: c for c in chips}
    image = station.station.image(order_id)
    receipts = [
        DeviceAgent(by_uid[r.chip_uid]).install(r.provisioning, image)
        for r in results
        if isinstance(r, Provisioned)
    ]
    outcome = station.station.complete(receipts)
    assert all(isinstance(o, str) for o in outcome), outcome


def counts(home: Home) -> tuple[int, int, int]:
    with home.store.read() as conn:
        certs = conn.execute(
            select(func.count()).select_from(pki_certs).where(pki_certs.c.profile == "device-idevid")
        ).scalar_one()
        records = conn.execute(select(func.count()).select_from(st_devices)).scalar_one()
        used = conn.execute(select(func.coalesce(func.sum(st_packages.c.used), 0))).scalar_one()
    return certs, records, used


def last_entry(home: Home) -> AuditEntry:
    return AuditEntry.parse(home.log.entries(home.log.size() - 1, home.log.size())[0])


def test_a_production_run_end_to_end(run: Run) -> None:
    run.line1.station.load(seal_for(run.oem, run.line1, "po-1", 4))
    chips = [run.chip() for _ in range(4)]
    results = provision(run.line1, "po-1", chips)
    assert all(isinstance(r, Provisioned) for r in results), results
    install(run.line1, results, chips)
    status = run.line1.station.order_status("po-1")
    assert (status["quota"], status["used"], status["issued"], status["programmed"]) == (4, 4, 4, 4)
    # each device: a chain to the OEM root, its serial and order/sequence in the certificate
    root = run.oem.pki.ca("root").certificate
    for result, chip in zip(results, chips, strict=True):
        assert isinstance(result, Provisioned)
        cert = result.certificate
        assert cert.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value == chip.uid
        assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == f"po-1/{result.seq}"
        chain = [
            x509.load_der_x509_certificate(d)
            for d in Provisioning.parse(result.provisioning).certificate_chain
        ]
        assert chain[0] == cert
        assert chain[-1] == root
        for child, parent in itertools.pairwise(chain):
            child.verify_directly_issued_by(parent)
    assert sorted(r.seq for r in results if isinstance(r, Provisioned)) == [1, 2, 3, 4]
    # the station's log: one entry per device, naming its record and its certificate
    issuing = run.line1.pki.ca(run.line1.station._package("po-1").package.issuing_ca)
    issuer_key_id = key_id(issuing.certificate.public_key().public_bytes(DER, SPKI))
    logged = [e for e in entries_of(run.line1) if e.action in ("device.provision", "cert.issue")]
    assert [e.action for e in logged] == ["device.provision"] * 4
    for entry, result in zip(logged, results, strict=True):
        assert isinstance(result, Provisioned)
        assert entry.subject == f"device:{result.device_serial}"
        assert entry.details["ca"] == issuing.ca_id
        assert entry.details["serial"] == format(result.certificate.serial_number, "x")
        assert entry.details["issuer_key_id"] == issuer_key_id
        assert entry.details["subject_key_id"] == key_id(
            result.certificate.public_key().public_bytes(DER, SPKI)
        )
    # reconciliation registers them all
    report = run.oem.reconciler.reconcile(run.line1.station.export())
    assert (report.records, report.registered, report.alerts) == (4, 4, [])
    devices = run.oem.reconciler.devices("po-1")
    assert sorted(d["chip_uid"] for d in devices) == sorted(c.uid for c in chips)
    assert {d["status"] for d in devices} == {"manufactured"}


def test_the_quota_is_never_exceeded(run: Run) -> None:
    run.line1.station.load(seal_for(run.oem, run.line1, "po-1", 3))
    chips = [run.chip() for _ in range(5)]
    results = provision(run.line1, "po-1", chips)
    assert sum(isinstance(r, Provisioned) for r in results) == 3
    refused = [r for r in results if not isinstance(r, Provisioned)]
    assert all(isinstance(r, PolicyViolation) and "quota" in r.message for r in refused)
    more = provision(run.line1, "po-1", [run.chip()])
    assert isinstance(more[0], PolicyViolation)
    assert counts(run.line1) == (3, 3, 3)


def test_genuineness_refusals(run: Run) -> None:
    run.line1.station.load(seal_for(run.oem, run.line1, "po-1", 6))
    genuine = run.chip()
    counterfeit = SiliconVendor("Other Fab", now=T0 - timedelta(days=1)).make_chip()
    forged = run.vendor.forge_uid(run.chip())
    station = run.line1.station
    # a response recorded for one challenge, replayed for a fresh one
    old_challenge = station.challenge("po-1")
    recorded = DeviceAgent(run.chip()).answer(old_challenge)
    fresh = station.challenge("po-1")
    answers = []
    for chip in (genuine, counterfeit, forged):
        challenge = station.challenge("po-1")
        answers.append((challenge, DeviceAgent(chip).answer(challenge)))
    answers.append((fresh, ReplayingAgent(recorded).answer(fresh)))
    results = station.provision("po-1", answers)
    assert isinstance(results[0], Provisioned)
    assert isinstance(results[1], VerificationFailed)
    assert "accepted silicon vendor" in results[1].message
    assert isinstance(results[2], VerificationFailed)
    assert isinstance(results[3], VerificationFailed)
    assert counts(run.line1) == (1, 1, 1)
    # the challenge is single-use: answering the same one twice is refused
    challenge = station.challenge("po-1")
    again = DeviceAgent(run.chip()).answer(challenge)
    first = station.provision("po-1", [(challenge, again)])
    second = station.provision("po-1", [(challenge, again)])
    assert isinstance(first[0], Provisioned)
    assert isinstance(second[0], VerificationFailed)
    assert "used already" in second[0].message


def test_a_cloned_chip_is_refused_at_one_station_and_flagged_across_two(run: Run) -> None:
    run.line1.station.load(seal_for(run.oem, run.line1, "po-1", 3))
    run.line2.station.load(seal_for(run.oem, run.line2, "po-1", 3))
    original = run.chip()
    clone = run.vendor.clone(original)
    twin = run.vendor.clone(original)
    first = provision(run.line1, "po-1", [original])
    install(run.line1, first, [original])
    again = provision(run.line1, "po-1", [clone])
    assert isinstance(again[0], Conflict)
    assert "provisioned already" in again[0].message
    elsewhere = provision(run.line2, "po-1", [twin])
    assert isinstance(elsewhere[0], Provisioned)  # line2 cannot know what line1 saw
    install(run.line2, elsewhere, [twin])
    assert run.oem.reconciler.reconcile(run.line1.station.export()).registered == 1
    report = run.oem.reconciler.reconcile(run.line2.station.export())
    assert report.registered == 0
    assert [a["kind"] for a in report.alerts] == ["clone"]
    assert report.alerts[0]["chip_uid"] == original.uid
    assert [a["kind"] for a in run.oem.reconciler.alerts()] == ["clone"]


def test_packages_refused_for_another_station_tampering_and_the_window(run: Run) -> None:
    for_line2 = seal_for(run.oem, run.line2, "po-1", 2)
    with pytest.raises(PolicyViolation, match="sealed to station line2, not line1"):
        run.line1.station.load(for_line2)
    # relabelled for line1: it still does not open with line1's key
    doc = parse_canonical(for_line2)
    doc["station_id"] = "line1"
    with pytest.raises(VerificationFailed, match="does not open"):
        run.line1.station.load(canonical_json(doc))
    sealed = seal_for(run.oem, run.line1, "po-1", 2)
    flipped = bytearray(sealed)
    position = sealed.index(b'"sealed":"') + 40
    flipped[position] = ord("A") if flipped[position] != ord("A") else ord("B")
    with pytest.raises(VerificationFailed, match="does not open"):
        run.line1.station.load(bytes(flipped))
    unknown = sealed.replace(b"fabtrust.sealed-package/v1", b"fabtrust.sealed-package/v9")
    with pytest.raises(InvalidInput, match="sealed-package/v1"):
        run.line1.station.load(unknown)
    assert run.line1.station.status() == []
    assert last_entry(run.line1).outcome.value == "refused"
    run.clock.now = run.window_end + timedelta(seconds=1)
    with pytest.raises(PolicyViolation, match="has ended"):
        run.line1.station.load(sealed)
    run.clock.now = T0 + timedelta(hours=1)
    run.line1.station.load(sealed)
    run.clock.now = run.window_end + timedelta(seconds=1)
    with pytest.raises(PolicyViolation, match="has ended"):
        run.line1.station.challenge("po-1")
    assert counts(run.line1) == (0, 0, 0)


def test_an_order_above_the_limit_needs_an_approval_of_its_terms(run: Run) -> None:
    production = run.oem.production
    production._approval_limit = 5
    order = production.create_order(
        "po-big",
        product="widget",
        release_id="widget-1.0.0",
        stations=["line1"],
        quota=50,
        not_before=T0,
        not_after=run.window_end,
    )
    assert order.status == "awaiting-approval"
    with pytest.raises(PolicyViolation, match="cannot be sealed"):
        seal_for(run.oem, run.line1, "po-big")
    terms = production.approval_terms(order)
    subject = "order:po-big"
    access = run.oem.access
    refusals = [
        # approved, but for other terms than the order's (a quota of 49)
        (approved(run.oem, ORDER_APPROVE, subject, {**terms, "quota": 49}), PolicyViolation, "other terms"),
        # approved, but to raise the quota, not to approve the order
        (approved(run.oem, QUOTA_RAISE, subject, {**terms, "new_quota": 60}), PolicyViolation, "quota.raise"),
        # asked for by a planner, approved by nobody
        (
            access.ticket(
                person(run.oem, "production-planner-0", PLANNER),
                access.request(
                    person(run.oem, "production-planner-0", PLANNER), ORDER_APPROVE, subject, terms
                ).request_id,
            ),
            PolicyViolation,
            "0 valid approval",
        ),
    ]
    for ticket, error, match in refusals:
        with pytest.raises(error, match=match):
            production.approve_order("po-big", ticket)
        assert production.order("po-big").status == "awaiting-approval"
        assert access.show_request(ticket.request_id).status.value == "pending"  # not spent
        entry = last_entry(run.oem)
        assert (entry.action, entry.outcome.value) == ("order.approve", "refused")
        assert entry.details["request_id"] == ticket.request_id

    ticket = approved(run.oem, ORDER_APPROVE, subject, terms)
    done = production.approve_order("po-big", ticket)
    assert (done.status, done.approved_by) == ("approved", "production-planner-1")
    assert access.show_request(ticket.request_id).status.value == "executed"
    entry = last_entry(run.oem)
    assert (entry.action, entry.details["request_id"]) == ("order.approve", ticket.request_id)
    assert entry.details["approvers"] == ["production-planner-1"]
    with pytest.raises(Conflict):
        production.approve_order("po-big", ticket)  # replayed
    with pytest.raises(NotFound):
        production.approve_order("po-none", ticket)


def test_a_raised_quota_is_sealed_to_another_station_and_holds(run: Run) -> None:
    production = run.oem.production
    run.line1.station.load(seal_for(run.oem, run.line1, "po-1", 6))
    with pytest.raises(PolicyViolation, match=r"exceeds what order po-1 has left \(0\)"):
        seal_for(run.oem, run.line2, "po-1", 4)
    order = production.order("po-1")
    with pytest.raises(InvalidInput, match="above the current 6"):
        production.raise_quota(
            "po-1", 6, approved(run.oem, QUOTA_RAISE, "order:po-1", production.approval_terms(order, 6))
        )
    assert production.order("po-1").terms.quota == 6
    ticket = approved(run.oem, QUOTA_RAISE, "order:po-1", production.approval_terms(order, 10))
    with pytest.raises(PolicyViolation, match="other terms"):
        production.raise_quota("po-1", 11, ticket)  # not the raise they approved
    assert production.raise_quota("po-1", 10, ticket).terms.quota == 10
    with pytest.raises(InvalidInput, match="above the current 10"):
        production.raise_quota("po-1", 10, ticket)  # replayed: the quota is 10 already
    raised = last_entry(run.oem)
    assert (raised.action, raised.outcome.value) == ("order.raise-quota", "refused")

    run.line2.station.load(seal_for(run.oem, run.line2, "po-1", 4))
    chips = [run.chip() for _ in range(5)]
    results = provision(run.line2, "po-1", chips)
    assert [isinstance(r, Provisioned) for r in results] == [True] * 4 + [False]
    install(run.line2, results, chips)
    report = run.oem.reconciler.reconcile(run.line2.station.export())
    assert report.alerts == []
    assert report.orders["po-1"]["records"] == 4


def test_overproduction_is_flagged_at_reconciliation(run: Run) -> None:
    """A station that ignores its quota (its counter raised behind fabtrust's back) is caught."""
    run.line1.station.load(seal_for(run.oem, run.line1, "po-1", 2))
    with run.line1.store.write() as conn:
        conn.execute(st_packages.update().values(quota=4))
    chips = [run.chip() for _ in range(4)]
    results = provision(run.line1, "po-1", chips)
    install(run.line1, results, chips)
    report = run.oem.reconciler.reconcile(run.line1.station.export())
    assert [a["kind"] for a in report.alerts] == ["overproduction"]
    assert report.orders["po-1"] == {"quota": 2, "records": 4, "registered": 4}


def test_a_rewritten_station_log_is_refused(run: Run) -> None:
    run.line1.station.load(seal_for(run.oem, run.line1, "po-1", 4))
    chips = [run.chip() for _ in range(2)]
    results = provision(run.line1, "po-1", chips)
    install(run.line1, results, chips)
    seen = run.oem.reconciler.reconcile(run.line1.station.export()).log_size
    with pytest.raises(PolicyViolation, match=f"the OEM last saw {seen}"):
        run.oem.reconciler.reconcile(run.line1.station.export(since_size=0))
    report = run.oem.reconciler.reconcile(run.line1.station.export(since_size=seen))
    assert report.already_known == 2
    assert report.registered == 0


def test_a_receipt_is_recorded_once(run: Run) -> None:
    run.line1.station.load(seal_for(run.oem, run.line1, "po-1", 2))
    chip = run.chip()
    result = provision(run.line1, "po-1", [chip])[0]
    assert isinstance(result, Provisioned)
    receipt = DeviceAgent(chip).install(result.provisioning, run.line1.station.image("po-1"))
    first, twice = run.line1.station.complete([receipt, receipt])
    assert first == chip.uid
    assert isinstance(twice, Conflict)
    assert "receipt already" in twice.message
    later = run.line1.station.complete([receipt])[0]
    assert isinstance(later, Conflict)
    with run.line1.store.read() as conn:
        states = conn.execute(select(st_devices.c.state)).scalars().all()
    assert states == ["programmed"]
    entries = [AuditEntry.parse(e) for e in run.line1.log.entries(0, run.line1.log.size())]
    programmed = [e for e in entries if e.action == "device.programmed"]
    assert [e.outcome.value for e in programmed] == ["ok", "refused", "refused"]


def test_a_tampered_or_foreign_enrollment_is_refused(run: Run, tmp_path: Path) -> None:
    line3 = make_home(tmp_path / "line3", "operator-3", run.clock)
    try:
        request = line3.station.enroll("line3", organization="Acme")
        doc = parse_canonical(request)
        doc["log_vkey"] = run.line1.log_vkey()  # the sealing/log keys are bound by the identity key
        with pytest.raises(VerificationFailed):
            run.oem.production.certify_station(canonical_json(doc))
        with pytest.raises(InvalidInput):
            run.oem.production.certify_station(request[:-10])
        # the same request in another station's name: its signature no longer verifies
        with pytest.raises(VerificationFailed):
            run.oem.production.certify_station(
                request.replace(b'"station_id":"line3"', b'"station_id":"line9"')
            )
    finally:
        line3.close()
    assert [s["station_id"] for s in run.oem.production.stations()] == ["line1", "line2"]
    assert last_entry(run.oem).outcome.value == "refused"


def test_an_issuing_request_signed_by_another_station_is_refused(run: Run) -> None:
    forged = parse_canonical(run.line2.station.issuing_request("po-1"))
    payload = parse_canonical(unb64(forged["payload"], "payload"))
    payload["station_id"] = "line1"  # line2 asks in line1's name
    forged["payload"] = b64(canonical_json(payload))
    with pytest.raises(VerificationFailed, match="not signed by the station it names"):
        run.oem.production.seal_package("po-1", canonical_json(forged))
    assert run.oem.production.packages("po-1") == []


def test_tampered_exports_are_refused_or_flagged(run: Run) -> None:
    run.line1.station.load(seal_for(run.oem, run.line1, "po-1", 3))
    chips = [run.chip() for _ in range(2)]
    install(run.line1, provision(run.line1, "po-1", chips), chips)
    export = parse_canonical(run.line1.station.export())
    # a checkpoint not signed by the station's log key: the whole export is refused
    lines = export["checkpoint"].split("\n")
    lines[1] = str(int(lines[1]) + 1)  # the tree size, under the station's signature
    bad_checkpoint = dict(export, checkpoint="\n".join(lines))
    with pytest.raises(VerificationFailed):
        run.oem.reconciler.reconcile(canonical_json(bad_checkpoint))
    # a record whose signature does not verify, and one claimed at another log index: alerts
    records = [dict(r) for r in export["records"]]
    envelope = unb64(records[0]["record"], "record").replace(b'"sig":"', b'"sig":"AAAA', 1)
    records[0]["record"] = b64(envelope)
    records[1]["log_index"] = records[1]["log_index"] - 1
    report = run.oem.reconciler.reconcile(canonical_json(dict(export, records=records)))
    assert [a["kind"] for a in report.alerts] == ["invalid-record", "invalid-record"]
    assert "not signed by the station" in report.alerts[0]["message"]
    assert "not in the station's log" in report.alerts[1]["message"]
    assert report.registered == 0
    assert run.oem.reconciler.devices() == []
    with pytest.raises(InvalidInput, match="not within this station's log"):
        run.line1.station.export(since_size=10**9)


# -- the order's firmware release: programmed, booted, measured, recorded, reconciled ---------------


def test_devices_boot_the_release_and_every_record_carries_the_measurement(run: Run) -> None:
    release = run.oem.releases.show("widget-1.0.0")
    published = published_image(run.oem, "widget-1.0.0")
    run.line1.station.load(seal_for(run.oem, run.line1, "po-1", 3))
    # the package carries the published image as it is, and the image key (no other secret)
    package = run.line1.station._package("po-1").package
    assert run.line1.station.image("po-1") == package.image == published
    assert set(package.secrets) == {IMAGE_KEY_SECRET}
    assert package.oem_key_hash == run.oem.releases.firmware_key_hash() == run.oem.production.oem_key_hash()
    image_key = serialization.load_der_private_key(package.secrets[IMAGE_KEY_SECRET], password=None)
    assert isinstance(image_key, ec.EllipticCurvePrivateKey)
    expected = verify_image(published, trusted_keys=[package.oem_key_hash], decryption_key=image_key)
    terms = package.order
    assert (terms.release_id, terms.release_version, terms.security_counter) == ("widget-1.0.0", "1.0.0", 1)
    assert terms.image_sha256 == release.image_sha256 == hashlib.sha256(published).hexdigest()
    assert terms.firmware_digest == expected.digest.hex()
    chips = [run.chip() for _ in range(3)]
    results = provision(run.line1, "po-1", chips)
    install(run.line1, results, chips)
    # every device booted the release: the security counter advanced, the receipt says what booted
    for chip in chips:
        assert chip.counter(SECURITY_COUNTER) == 1
    with run.line1.store.read() as conn:
        rows = conn.execute(select(st_devices)).mappings().all()
    for row in rows:
        receipt = InstallReceipt.parse(row["receipt"])
        assert (receipt.firmware_digest, receipt.firmware_version, receipt.security_counter) == (
            expected.digest,
            "1.0.0+0",
            1,
        )
        assert (row["firmware_digest"], row["firmware_version"], row["security_counter"]) == (
            expected.digest.hex(),
            "1.0.0+0",
            1,
        )
    programmed = [e for e in entries_of(run.line1) if e.action == "device.programmed"]
    assert {(e.details["firmware_digest"], e.details["security_counter"]) for e in programmed} == {
        (expected.digest.hex(), 1)
    }
    # the export carries each record's receipt and the measurement; the OEM registers them all
    export = parse_canonical(run.line1.station.export())
    assert [r["measured"] for r in export["records"]] == [
        {"firmware_digest": expected.digest.hex(), "firmware_version": "1.0.0+0", "security_counter": 1}
    ] * 3
    report = run.oem.reconciler.reconcile(canonical_json(export))
    assert (report.registered, report.alerts) == (3, [])
    # the package's use of the class key is in the OEM's log, the key itself is not
    unsealed = [e for e in entries_of(run.oem) if e.action == "class-key.unseal"]
    assert [e.details["purpose"].split(" ")[:2] for e in unsealed] == [["package", package.package_id]]
    assert package.secrets[IMAGE_KEY_SECRET].hex() not in str([e.details for e in entries_of(run.oem)])


def test_a_device_given_an_image_that_does_not_boot_sends_no_receipt(run: Run) -> None:
    """A programmer that alters the image (and the unsigned provisioning document to match it): the
    device refuses to boot it, sends no receipt, and stays issued at the station."""
    run.line1.station.load(seal_for(run.oem, run.line1, "po-1", 2))
    chip, good = run.chip(), run.chip()
    results = provision(run.line1, "po-1", [chip, good])
    tampered = bytearray(run.line1.station.image("po-1"))
    tampered[0x200 + 5] ^= 0x01  # a byte of the encrypted body
    altered = dataclasses.replace(
        Provisioning.parse(results[0].provisioning),  # type: ignore[union-attr]
        image_digest=hashlib.sha256(bytes(tampered)).digest(),
    )
    with pytest.raises(VerificationFailed, match="image hash does not match"):
        DeviceAgent(chip).install(altered.to_json(), bytes(tampered))
    assert not DeviceAgent(chip).provisioned
    assert chip.counter(SECURITY_COUNTER) == 0
    install(run.line1, results[1:], [good])
    status = run.line1.station.order_status("po-1")
    assert (status["issued"], status["programmed"]) == (2, 1)
    with run.line1.store.read() as conn:
        states = dict(conn.execute(select(st_devices.c.chip_uid, st_devices.c.state)).all())
    assert states == {chip.uid: "issued", good.uid: "programmed"}
    report = run.oem.reconciler.reconcile(run.line1.station.export())
    assert (report.registered, report.awaiting_receipt, report.alerts) == (1, 1, [])
    assert [d["chip_uid"] for d in run.oem.reconciler.devices()] == [good.uid]


def test_a_receipt_measuring_other_firmware_is_refused_and_flagged(run: Run) -> None:
    """A device (or a forged receipt under its key) reporting another boot than the release: the
    station refuses it; a station that records it anyway is caught at reconciliation."""
    run.line1.station.load(seal_for(run.oem, run.line1, "po-1", 3))
    chips = [run.chip() for _ in range(3)]
    results = provision(run.line1, "po-1", chips)
    image = run.line1.station.image("po-1")
    receipts = [
        InstallReceipt.parse(DeviceAgent(c).install(r.provisioning, image))  # type: ignore[union-attr]
        for c, r in zip(chips, results, strict=True)
    ]
    forged = [
        _resign(chips[0], dataclasses.replace(receipts[0], security_counter=7)),
        _resign(chips[1], dataclasses.replace(receipts[1], firmware_version="1.0.1+0")),
    ]
    outcome = run.line1.station.complete([r.to_json() for r in forged])
    assert all(isinstance(o, VerificationFailed) for o in outcome), outcome
    assert "security counter 7, not the release's 1" in outcome[0].message  # type: ignore[union-attr]
    assert "version 1.0.1+0, not the release's 1.0.0" in outcome[1].message  # type: ignore[union-attr]
    assert run.line1.station.order_status("po-1")["programmed"] == 0
    # a compromised station records them anyway (and the third device's honest receipt)
    with run.line1.store.write() as conn:
        for receipt in [*forged, receipts[2]]:
            conn.execute(
                st_devices.update()
                .where(st_devices.c.chip_uid == receipt.chip_uid)
                .values(
                    receipt=receipt.to_json(),
                    state="programmed",
                    firmware_digest=receipt.firmware_digest.hex(),
                    firmware_version=receipt.firmware_version,
                    security_counter=receipt.security_counter,
                )
            )
    export = parse_canonical(run.line1.station.export())
    # and, for the honest device, a measurement beside the receipt that is not the receipt's
    honest = next(r for r in export["records"] if r["receipt"] == b64(receipts[2].to_json()))
    honest["measured"] = dict(honest["measured"], security_counter=2)
    report = run.oem.reconciler.reconcile(canonical_json(export))
    assert report.registered == 0
    alerts = {a["chip_uid"]: a for a in report.alerts}
    assert {a["kind"] for a in report.alerts} == {"bad-firmware"}
    assert "security counter 7" in alerts[chips[0].uid]["message"]
    assert "version 1.0.1+0" in alerts[chips[1].uid]["message"]
    assert "differs from the device's receipt" in alerts[chips[2].uid]["message"]
    assert run.oem.reconciler.devices() == []


def test_an_order_needs_a_published_release_of_its_product(run: Run) -> None:
    production = run.oem.production
    draft = publish(run.oem, "1.1.0", approvers=("alice",))  # one approval of two: not published
    order = {
        "product": "widget",
        "stations": ["line1"],
        "quota": 1,
        "not_before": T0,
        "not_after": run.window_end,
    }
    with pytest.raises(PolicyViolation, match=r"widget-1\.1\.0 is draft, not published"):
        production.create_order("po-draft", release_id=draft, **order)  # type: ignore[arg-type]
    run.oem.releases.approve(draft, "bob")
    with pytest.raises(PolicyViolation, match=r"widget-1\.1\.0 is approved, not published"):
        production.create_order("po-draft", release_id=draft, **order)  # type: ignore[arg-type]
    with pytest.raises(NotFound, match=r"no release 'widget-9\.9\.9'"):
        production.create_order("po-none", release_id="widget-9.9.9", **order)  # type: ignore[arg-type]
    production.create_product(
        "gadget",
        description="Gadget",
        device_domain="gadget.devices.acme.example",
        vendor_roots=[run.vendor.root],
        organization="Acme",
    )
    with pytest.raises(PolicyViolation, match="firmware for product widget, not gadget"):
        production.create_order(
            "po-gadget",
            release_id="widget-1.0.0",
            **{**order, "product": "gadget"},  # type: ignore[arg-type]
        )
    assert [o.terms.order_id for o in production.orders()] == ["po-1"]
    assert last_entry(run.oem).outcome.value == "refused"
    run.oem.releases.publish(draft, publish_ticket(run.oem, draft))
    assert production.create_order("po-draft", release_id=draft, **order).terms.release_version == "1.1.0"  # type: ignore[arg-type]


def test_a_package_is_not_sealed_with_an_image_its_devices_would_refuse(run: Run) -> None:
    """The OEM's stored image altered (its digest column too): sealing verifies the image as a
    device boots it and refuses."""
    with run.oem.store.write() as conn:
        image = conn.execute(select(fw_releases.c.image)).scalar_one()
        bad = bytearray(image)
        bad[0x200 + 5] ^= 0x01
        conn.execute(
            fw_releases.update().values(image=bytes(bad), image_sha256=hashlib.sha256(bytes(bad)).hexdigest())
        )
    with pytest.raises(VerificationFailed, match="does not boot on the product's devices"):
        seal_for(run.oem, run.line1, "po-1", 2)
    assert run.oem.production.packages("po-1") == []


def _resign(chip: SecureElement, receipt: InstallReceipt) -> InstallReceipt:
    """A receipt signed with the device's own identity key (a device lying about its boot)."""
    return dataclasses.replace(receipt, signature=chip.sign(IDENTITY_SLOT, receipt.signed_payload()))


def entries_of(home: Home) -> list[AuditEntry]:
    return [AuditEntry.parse(e) for e in home.log.entries(0, home.log.size())]
