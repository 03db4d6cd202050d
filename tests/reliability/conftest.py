"""Shared set-up for the reliability tests: an OEM home and one loaded station home, with the
simulated vendor's state on disk so that station worker processes make chips the product accepts."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from sqlalchemy import select

from fabtrust.device.vendor import SiliconVendor
from fabtrust.home import Home
from fabtrust.store.tables import pki_certs, st_devices, st_packages
from fabtrust.tlog import merkle
from fabtrust.tlog.audit import AuditEntry
from fabtrust.tlog.checkpoint import Checkpoint, open_checkpoint
from fabtrust.tlog.export import verify_export, write_export
from tests.production.line import found_product
from tests.reliability.station_worker import PASSPHRASE_ENV, save_vendor

REPO = Path(__file__).resolve().parents[2]
ORDER = "po-rel"
STATION_ID = "line1"
STATION_PASSPHRASE = "station-passphrase"
FIRMWARE = b"\x7fFWIMG reliability firmware 1.0.0\n" * 64


def never() -> str:
    raise AssertionError("a PIN was asked for")


@dataclass
class Line:
    """An OEM home and one station home with the order's package loaded."""

    oem: Home
    station_path: Path
    vendor_state: Path
    quota: int
    database: str | None

    def open_station(self) -> Home:
        """The station home, opened afresh (as after a restart of the appliance)."""
        return Home.open(
            self.station_path, passphrase=lambda: STATION_PASSPHRASE, pin=never, actor="reliability-test"
        )


def make_line(tmp_path: Path, quota: int, *, database: str | None = None) -> Line:
    """Root ceremony, product accepting the vendor, release, station enrolled, order, package loaded."""
    now = datetime.now(UTC)
    oem = Home.init(tmp_path / "oem", passphrase=lambda: "oem-passphrase", pin=never, actor="oem-admin")
    vendor = SiliconVendor("Trusted Silicon", now=now - timedelta(days=1))
    vendor_state = tmp_path / "vendor.json"
    save_vendor(vendor, vendor_state)
    release = found_product(oem, vendor, firmware=FIRMWARE)
    station_path = tmp_path / "station"
    station = Home.init(
        station_path,
        database=database,
        passphrase=lambda: STATION_PASSPHRASE,
        pin=never,
        actor="operator-1",
    )
    try:
        request = station.station.enroll(STATION_ID, organization="Acme")
        station.station.install_certificate(oem.production.certify_station(request, organization="Acme"))
        oem.production.create_order(
            ORDER,
            product="widget",
            release_id=release,
            stations=[STATION_ID],
            quota=quota,
            not_before=now - timedelta(minutes=1),
            not_after=now + timedelta(days=1),
        )
        sealed = oem.production.seal_package(
            ORDER, station.station.issuing_request(ORDER), station_quota=quota
        )
        station.station.load(sealed)
    finally:
        station.close()
    return Line(oem, station_path, vendor_state, quota, database)


def worker_command(line: Line, *, batch: int, devices: int | None = None, wait_go: bool = False) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "tests.reliability.station_worker",
        str(line.station_path),
        ORDER,
        "--vendor-state",
        str(line.vendor_state),
        "--batch",
        str(batch),
    ]
    if devices is not None:
        cmd += ["--devices", str(devices)]
    if wait_go:
        cmd.append("--wait-go")
    return cmd


def start_worker(
    line: Line, *, batch: int, devices: int | None = None, wait_go: bool = False
) -> subprocess.Popen[str]:
    env = {**os.environ, PASSPHRASE_ENV: STATION_PASSPHRASE}
    return subprocess.Popen(
        worker_command(line, batch=batch, devices=devices, wait_go=wait_go),
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@dataclass(frozen=True)
class Counts:
    records: int
    certs: int
    used: int
    quota: int
    highest_seq: int


def check_invariants(home: Home, quota: int) -> Counts:
    """What must hold in a station store whatever happened to the processes writing it."""
    with home.store.read() as conn:
        package = conn.execute(select(st_packages).where(st_packages.c.order_id == ORDER)).mappings().one()
        devices = conn.execute(
            select(
                st_devices.c.chip_uid, st_devices.c.device_serial, st_devices.c.seq, st_devices.c.log_index
            ).where(st_devices.c.order_id == ORDER)
        ).all()
        certs = conn.execute(
            select(pki_certs.c.device_serial, pki_certs.c.cert_der).where(
                pki_certs.c.profile == "device-idevid"
            )
        ).all()
    assert package["quota"] == quota
    used = package["used"]
    assert 0 <= used <= quota
    assert len(devices) <= quota
    serials = [d.device_serial for d in devices]
    uids = [d.chip_uid for d in devices]
    seqs = [d.seq for d in devices]
    assert len(set(serials)) == len(serials), "duplicate device serials"
    assert len(set(uids)) == len(uids), "duplicate chip UIDs"
    assert len(set(seqs)) == len(seqs), "duplicate sequence numbers"
    assert len({d.log_index for d in devices}) == len(devices), "two records share a log entry"
    highest = max(seqs, default=0)
    assert used == highest, f"counter {used} but highest recorded seq {highest}"
    assert sorted(seqs) == list(range(1, used + 1)), "a reserved unit has no record (a gap in seq)"
    cert_serials = [c.device_serial for c in certs]
    assert None not in cert_serials
    assert len(set(cert_serials)) == len(cert_serials)
    assert sorted(cert_serials) == sorted(serials), "certificates and records do not match one to one"
    seq_of = {d.device_serial: d.seq for d in devices}
    for serial, der in certs:  # each certificate names its order and the record's sequence number
        cn = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        assert cn[0].value == f"{ORDER}/{seq_of[serial]}", (serial, cn)
    return Counts(len(devices), len(certs), used, quota, highest)


def check_log(home: Home, previous: Checkpoint | None) -> Checkpoint:
    """The station's audit log: its latest signed checkpoint verifies, the whole log recomputed from
    its entries matches it, it extends ``previous`` (consistency proof checked against the roots of
    the two signed checkpoints: a log that shrank or was rewritten fails), and each production
    record points at its own ``device.provision`` entry."""
    verifier = home.log_verifier()
    signed = home.log.latest_checkpoint()
    checkpoint = open_checkpoint(signed.note, verifier, home.config.origin)
    entries = list(home.log.iter_entries(checkpoint.size))
    assert len(entries) == checkpoint.size
    export = io.BytesIO()
    write_export(export, home.config.origin, checkpoint.size, entries)
    export.seek(0)
    report = verify_export(export, signed.note, verifier)
    assert report.size == checkpoint.size
    if previous is not None:
        assert checkpoint.size >= previous.size, f"the log shrank: {previous.size} -> {checkpoint.size}"
        proof = home.log.consistency_proof(previous.size, checkpoint.size)
        if previous.size > 0:
            merkle.verify_consistency(
                previous.size, checkpoint.size, proof.hashes, previous.root, checkpoint.root
            )
    with home.store.read() as conn:
        rows = conn.execute(select(st_devices.c.chip_uid, st_devices.c.seq, st_devices.c.log_index)).all()
    for row in rows:
        entry = AuditEntry.parse(entries[row.log_index])
        assert (entry.action, entry.outcome.value) == ("device.provision", "ok"), row
        assert (entry.details["chip_uid"], entry.details["seq"]) == (row.chip_uid, row.seq)
    provisioned = [
        e
        for e in map(AuditEntry.parse, entries)
        if e.action == "device.provision" and e.outcome.value == "ok"
    ]
    assert len(provisioned) == len(rows), "a device.provision entry without its record, or the reverse"
    return checkpoint
