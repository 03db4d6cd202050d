"""A production run, told across three data homes: the OEM (root, product, release, orders,
packages, reconciliation) and two factory stations, each with its own store, key store and log.
Devices are the reference secure elements from a simulated silicon vendor.

Outcomes asserted: devices provisioned up to the quota and never beyond, every certificate with
exactly one record, refusals with their reasons (counterfeit, replay, clone, tampered or foreign
package, window, quota), and the OEM's reconciliation: registry, clone and overproduction alerts.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from sqlalchemy import func, select

from fabtrust.crypto.canonical import canonical_json, parse_canonical
from fabtrust.crypto.encoding import b64, unb64
from fabtrust.device.agent import DeviceAgent, ReplayingAgent
from fabtrust.device.element import SecureElement
from fabtrust.device.protocol import Provisioning
from fabtrust.device.vendor import SiliconVendor
from fabtrust.errors import Conflict, InvalidInput, NotFound, PolicyViolation, VerificationFailed
from fabtrust.home import Home
from fabtrust.production.station import Provisioned
from fabtrust.store.tables import pki_certs, st_devices, st_packages
from fabtrust.tlog.audit import AuditEntry
from tests.production.line import (
    Clock,
    enroll,
    found_product,
    make_home,
    never,
    seal_for,
)

T0 = datetime(2031, 5, 4, 8, 0, 0, tzinfo=UTC)


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


def test_an_order_above_the_limit_needs_a_second_person(run: Run, tmp_path: Path) -> None:
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
    with pytest.raises(PolicyViolation, match="second person"):
        production.approve_order("po-big")
    second = Home.open(
        run.oem.path,
        passphrase=lambda: "oem-admin-passphrase",
        pin=never,
        actor="security-officer",
        clock=run.clock,
    )
    try:
        assert second.production.approve_order("po-big").status == "approved"
        with pytest.raises(Conflict):
            second.production.approve_order("po-big")
    finally:
        second.close()
    with pytest.raises(NotFound):
        production.approve_order("po-none")


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
