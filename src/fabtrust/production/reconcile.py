"""Reconciliation at the OEM: a station's export is checked against what the OEM ordered and
certified, and good devices enter the registry as ``manufactured``.

For one export: the station is enrolled and active; its checkpoint is signed by its log key and
consistent with the last one the OEM kept (a reset or rewritten log shows here); every record is
signed by the station's identity key, included in the station's log at that checkpoint (its entry
names the record's hash), belongs to an order and package the OEM sealed to that station, and
carries a certificate issued by that package's issuing CA for the record's device. Then, across
all stations: the same chip UID, device serial or device key seen twice is a clone alert; more
records for an order and station than the package's quota is an overproduction alert. A device
whose install receipt is missing or does not verify is registered only once it does. A receipt
whose measured boot (firmware digest, version, security counter) is not the order's published
release is a ``bad-firmware`` alert, and that device is not registered; so is an export whose
measurement beside the receipt differs from the receipt's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, insert, select, update

from fabtrust.clock import Clock, system_clock
from fabtrust.crypto.canonical import parse_canonical
from fabtrust.crypto.encoding import unb64
from fabtrust.crypto.keys import key_id, spki_der
from fabtrust.device.protocol import ExpectedFirmware, InstallReceipt, verify_measurement, verify_receipt
from fabtrust.errors import FabtrustError, InvalidInput, NotFound, PolicyViolation, VerificationFailed
from fabtrust.firmware.releases import ReleaseService
from fabtrust.pki.service import PkiService
from fabtrust.production.documents import (
    EXPORT,
    MAX_DOCUMENT,
    ProductionRecord,
    integer,
    open_envelope,
    sha256_hex,
    text,
)
from fabtrust.production.oem import AUDIT_PRODUCTION, release_firmware
from fabtrust.store.engine import Store
from fabtrust.store.tables import (
    fleet_devices,
    prod_orders,
    prod_packages,
    prod_stations,
    rec_alerts,
    rec_checkpoints,
    rec_records,
)
from fabtrust.tlog import merkle
from fabtrust.tlog.audit import AuditEntry, AuditLog, Outcome
from fabtrust.tlog.checkpoint import NoteVerifier, open_checkpoint

MAX_RECORDS = 1_000_000


@dataclass
class Report:
    """What one reconciliation found."""

    station_id: str
    log_size: int
    records: int = 0
    registered: int = 0
    already_known: int = 0
    awaiting_receipt: int = 0
    alerts: list[dict[str, Any]] = field(default_factory=list)
    orders: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        return {
            "format": "fabtrust.reconciliation-report/v1",
            "station_id": self.station_id,
            "log_size": self.log_size,
            "records": self.records,
            "registered": self.registered,
            "already_known": self.already_known,
            "awaiting_receipt": self.awaiting_receipt,
            "alerts": self.alerts,
            "orders": self.orders,
        }


@dataclass(frozen=True)
class _Checked:
    record: ProductionRecord
    envelope: bytes
    receipt: bytes | None
    measured: dict[str, Any] | None
    certificate: x509.Certificate
    key_id: str


class Reconciler:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        pki: PkiService,
        releases: ReleaseService,
        *,
        actor: str,
        clock: Clock = system_clock,
    ) -> None:
        self._store, self._audit, self._pki, self._actor, self._clock = store, audit, pki, actor, clock
        self._releases = releases
        self._expected: dict[str, ExpectedFirmware] = {}  # per order, for one reconciliation

    def reconcile(self, export: bytes) -> Report:
        """Import one station export. A malformed export, a bad checkpoint or an inconsistent log
        is refused as a whole (nothing imported); bad records inside a good export are alerts."""
        try:
            return self._reconcile(export)
        except FabtrustError as exc:
            self._audit.record(
                AUDIT_PRODUCTION,
                self._actor,
                "reconcile",
                "station-export",
                Outcome.REFUSED,
                {
                    "reason": exc.code,
                    "message": exc.message,
                    "sha256": sha256_hex(export) if isinstance(export, bytes) else None,
                },
            )
            raise

    def _reconcile(self, export: bytes) -> Report:
        self._expected = {}
        if not isinstance(export, bytes) or len(export) > MAX_DOCUMENT:
            raise InvalidInput(f"a station export is bytes of at most {MAX_DOCUMENT}")
        doc = parse_canonical(export)
        fields = {"format", "station_id", "checkpoint", "since_size", "consistency", "records", "exported_at"}
        if not isinstance(doc, dict) or doc.get("format") != EXPORT or set(doc) != fields:
            raise InvalidInput(f"not a {EXPORT} document")
        station_id = text(doc, "station_id", limit=64)
        with self._store.read() as conn:
            station = (
                conn.execute(select(prod_stations).where(prod_stations.c.station_id == station_id))
                .mappings()
                .first()
            )
            known = (
                conn.execute(select(rec_checkpoints).where(rec_checkpoints.c.station_id == station_id))
                .mappings()
                .first()
            )
        if station is None:
            raise NotFound(f"station {station_id} is not enrolled here")
        if station["status"] != "active":
            raise PolicyViolation(f"station {station_id} is not active")
        # the station's log: signed checkpoint, consistent with what the OEM kept
        note = text(doc, "checkpoint", limit=4096).encode()
        checkpoint = open_checkpoint(note, NoteVerifier.parse(station["log_vkey"]))
        since = integer(doc, "since_size")
        old_size, old_root = (known["size"], known["root"]) if known else (0, b"")
        if since != old_size:
            raise PolicyViolation(
                f"the export proves consistency from log size {since}; the OEM last saw {old_size}"
            )
        if checkpoint.size < old_size:
            raise VerificationFailed(
                f"station {station_id}'s log shrank from {old_size} to {checkpoint.size} (reset or rewritten)"
            )
        if old_size > 0:
            hashes = [unb64(h, "consistency hash") for h in _list(doc, "consistency", 64)]
            try:
                merkle.verify_consistency(old_size, checkpoint.size, hashes, old_root, checkpoint.root)
            except VerificationFailed:
                raise VerificationFailed(
                    f"station {station_id}'s log is not consistent with its last checkpoint (rewritten)"
                ) from None
        identity = x509.load_der_x509_certificate(station["identity_cert"])
        identity_spki = spki_der(identity.public_key())  # type: ignore[arg-type]
        report = Report(station_id, checkpoint.size)
        checked: list[_Checked] = []
        for item in _list(doc, "records", MAX_RECORDS):
            report.records += 1
            try:
                checked.append(
                    self._check_record(item, station_id, identity_spki, checkpoint.size, checkpoint.root)
                )
            except FabtrustError as exc:
                report.alerts.append(
                    {"kind": "invalid-record", "station_id": station_id, "message": exc.message}
                )
        self._register(checked, report, station_id)
        with self._store.write() as conn:
            values = {
                "size": checkpoint.size,
                "root": checkpoint.root,
                "note": note,
                "updated_at": self._clock(),
            }
            if known is None:
                conn.execute(insert(rec_checkpoints).values(station_id=station_id, **values))
            else:
                conn.execute(
                    update(rec_checkpoints).where(rec_checkpoints.c.station_id == station_id).values(**values)
                )
        return report

    def _check_record(
        self, item: object, station_id: str, identity_spki: bytes, size: int, root: bytes
    ) -> _Checked:
        if not isinstance(item, dict) or set(item) != {
            "record",
            "receipt",
            "measured",
            "log_index",
            "entry",
            "inclusion",
        }:
            raise InvalidInput("a record item is malformed")
        envelope = unb64(item["record"], "record")
        try:
            payload = open_envelope(envelope, identity_spki, "production record")
        except VerificationFailed:
            raise VerificationFailed("a production record is not signed by the station's key") from None
        record = ProductionRecord.from_payload(payload)
        if record.station_id != station_id:
            raise PolicyViolation(
                f"record of device {record.device_serial} names station {record.station_id}"
            )
        # the record is in the station's log: its entry is included at the checkpoint and names it
        entry_bytes = unb64(item["entry"], "entry")
        index = integer(item, "log_index")
        proof = [unb64(h, "inclusion hash") for h in _list(item, "inclusion", 64)]
        try:
            merkle.verify_inclusion(merkle.leaf_hash(entry_bytes), index, size, proof, root)
        except VerificationFailed:
            raise VerificationFailed(
                f"the record of device {record.device_serial} is not in the station's log"
            ) from None
        entry = AuditEntry.parse(entry_bytes)
        if (
            entry.action != "device.provision"
            or entry.outcome is not Outcome.OK
            or entry.details.get("record_sha256") != sha256_hex(envelope)
        ):
            raise VerificationFailed(
                f"the log entry at {index} is not the record of device {record.device_serial}"
            )
        # the certificate: issued by the package's issuing CA for this device
        with self._store.read() as conn:
            package = (
                conn.execute(
                    select(prod_packages).where(
                        prod_packages.c.order_id == record.order_id, prod_packages.c.station_id == station_id
                    )
                )
                .mappings()
                .first()
            )
        if package is None or package["package_id"] != record.package_id:
            raise PolicyViolation(
                f"record of device {record.device_serial}: package {record.package_id} of order "
                f"{record.order_id} was not sealed to {station_id}"
            )
        try:
            cert = x509.load_der_x509_certificate(record.certificate)
            cert.verify_directly_issued_by(self._pki.ca_cached(package["issuing_ca"]).certificate)
        except (ValueError, TypeError, InvalidSignature):
            raise VerificationFailed(
                f"the certificate of device {record.device_serial} is not from the order's issuing CA"
            ) from None
        serials = cert.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)
        if not serials or serials[0].value != record.device_serial:
            raise VerificationFailed(f"the certificate does not name device {record.device_serial}")
        receipt = item["receipt"]
        receipt_bytes = None if receipt is None else unb64(receipt, "receipt")
        measured = item["measured"]
        if measured is not None and not isinstance(measured, dict):
            raise InvalidInput(f"the measurement of device {record.device_serial} is malformed")
        return _Checked(
            record,
            envelope,
            receipt_bytes,
            measured,
            cert,
            key_id(spki_der(cert.public_key())),  # type: ignore[arg-type]
        )

    def _register(self, checked: Sequence[_Checked], report: Report, station_id: str) -> None:
        now = self._clock()
        entries: list[AuditEntry] = []
        with self._store.write() as conn:
            for c in checked:
                r = c.record
                seen = (
                    conn.execute(
                        select(rec_records).where(
                            rec_records.c.station_id == station_id,
                            rec_records.c.order_id == r.order_id,
                            rec_records.c.seq == r.seq,
                        )
                    )
                    .mappings()
                    .first()
                )
                if seen is not None and seen["record"] == c.envelope:
                    report.already_known += 1
                    if seen["verdict"] == "awaiting-receipt":
                        verdict = self._verdict(conn, c, report)
                        if verdict != "awaiting-receipt":
                            conn.execute(
                                update(rec_records)
                                .where(
                                    rec_records.c.station_id == station_id,
                                    rec_records.c.order_id == r.order_id,
                                    rec_records.c.seq == r.seq,
                                )
                                .values(verdict=verdict)
                            )
                            entries.append(self._entry(c, verdict))
                    continue
                if seen is not None:
                    message = f"station {station_id} signed two different records for {r.order_id}/{r.seq}"
                    self._alert(conn, report, "conflicting-record", c, message)
                    entries.append(self._entry(c, "conflicting-record"))
                    continue
                verdict = self._verdict(conn, c, report)
                conn.execute(
                    insert(rec_records).values(
                        station_id=station_id,
                        order_id=r.order_id,
                        seq=r.seq,
                        chip_uid=r.chip_uid,
                        device_serial=r.device_serial,
                        verdict=verdict,
                        record=c.envelope,
                        imported_at=now,
                    )
                )
                entries.append(self._entry(c, verdict))
            # overproduction: more records for an order at this station than its package allows
            for order_id in sorted({c.record.order_id for c in checked}):
                quota = conn.execute(
                    select(prod_packages.c.quota).where(
                        prod_packages.c.order_id == order_id, prod_packages.c.station_id == station_id
                    )
                ).scalar_one()
                count = conn.execute(
                    select(func.count())
                    .select_from(rec_records)
                    .where(rec_records.c.order_id == order_id, rec_records.c.station_id == station_id)
                ).scalar_one()
                registered = conn.execute(
                    select(func.count())
                    .select_from(fleet_devices)
                    .where(fleet_devices.c.order_id == order_id, fleet_devices.c.station_id == station_id)
                ).scalar_one()
                report.orders[order_id] = {"quota": quota, "records": count, "registered": registered}
                if count > quota:
                    message = (
                        f"station {station_id} recorded {count} devices for order {order_id}, quota {quota}"
                    )
                    conn.execute(
                        insert(rec_alerts).values(
                            kind="overproduction",
                            station_id=station_id,
                            order_id=order_id,
                            message=message,
                            created_at=now,
                        )
                    )
                    report.alerts.append(
                        {
                            "kind": "overproduction",
                            "station_id": station_id,
                            "order_id": order_id,
                            "message": message,
                        }
                    )
            for alert in report.alerts:
                if alert["kind"] == "invalid-record":
                    conn.execute(
                        insert(rec_alerts).values(
                            kind="invalid-record",
                            station_id=station_id,
                            message=alert["message"][:512],
                            created_at=now,
                        )
                    )
            summary = self._audit.entry(
                AUDIT_PRODUCTION,
                self._actor,
                "reconcile",
                f"station:{station_id}",
                Outcome.OK,
                {
                    "records": report.records,
                    "registered": report.registered,
                    "alerts": len(report.alerts),
                    "log_size": report.log_size,
                },
            )
            self._audit.append([*entries, summary], conn=conn)

    def _verdict(self, conn: Any, c: _Checked, report: Report) -> str:
        r = c.record
        clash = conn.execute(
            select(fleet_devices.c.device_serial, fleet_devices.c.station_id).where(
                (fleet_devices.c.chip_uid == r.chip_uid)
                | (fleet_devices.c.device_serial == r.device_serial)
                | (fleet_devices.c.key_id == c.key_id)
            )
        ).first()
        earlier = conn.execute(
            select(rec_records.c.station_id).where(
                rec_records.c.chip_uid == r.chip_uid, rec_records.c.verdict != "clone"
            )
        ).first()
        if clash is not None or (earlier is not None and earlier[0] != r.station_id):
            where = clash[1] if clash is not None else earlier[0]
            self._alert(
                conn,
                report,
                "clone",
                c,
                f"chip {r.chip_uid} (device {r.device_serial}) was provisioned at {where} already",
            )
            return "clone"
        if c.receipt is None:
            report.awaiting_receipt += 1
            return "awaiting-receipt"
        try:
            receipt = InstallReceipt.parse(c.receipt)
            verify_receipt(receipt, c.certificate, bytes.fromhex(r.image_sha256))
        except FabtrustError as exc:
            self._alert(conn, report, "bad-receipt", c, f"device {r.device_serial}: {exc.message}")
            return "bad-receipt"
        try:
            verify_measurement(receipt, self._expected_firmware(conn, r.order_id))
            if c.measured != _measurement(receipt):
                raise VerificationFailed("the station's measurement differs from the device's receipt")
        except FabtrustError as exc:
            self._alert(conn, report, "bad-firmware", c, f"device {r.device_serial}: {exc.message}")
            return "bad-firmware"
        conn.execute(
            insert(fleet_devices).values(
                device_serial=r.device_serial,
                chip_uid=r.chip_uid,
                key_id=c.key_id,
                order_id=r.order_id,
                station_id=r.station_id,
                cert_der=c.certificate.public_bytes(serialization.Encoding.DER),
                status="manufactured",
                registered_at=self._clock(),
            )
        )
        report.registered += 1
        return "registered"

    def _expected_firmware(self, conn: Any, order_id: str) -> ExpectedFirmware:
        """The published release of the order, as a device booting it measures it."""
        expected = self._expected.get(order_id)
        if expected is None:
            release_id = conn.execute(
                select(prod_orders.c.release_id).where(prod_orders.c.order_id == order_id)
            ).scalar_one()
            firmware = release_firmware(self._releases, release_id)
            expected = self._expected[order_id] = ExpectedFirmware(
                bytes.fromhex(firmware.firmware_digest), firmware.version, firmware.security_counter
            )
        return expected

    def _alert(self, conn: Any, report: Report, kind: str, c: _Checked, message: str) -> None:
        r = c.record
        conn.execute(
            insert(rec_alerts).values(
                kind=kind,
                station_id=r.station_id,
                order_id=r.order_id,
                chip_uid=r.chip_uid,
                device_serial=r.device_serial,
                message=message[:512],
                created_at=self._clock(),
            )
        )
        report.alerts.append(
            {
                "kind": kind,
                "station_id": r.station_id,
                "order_id": r.order_id,
                "chip_uid": r.chip_uid,
                "device_serial": r.device_serial,
                "message": message,
            }
        )

    def _entry(self, c: _Checked, verdict: str) -> AuditEntry:
        r = c.record
        outcome = Outcome.OK if verdict in ("registered", "awaiting-receipt") else Outcome.REFUSED
        return self._audit.entry(
            AUDIT_PRODUCTION,
            self._actor,
            "device.register",
            f"device:{r.device_serial}",
            outcome,
            {
                "verdict": verdict,
                "order": r.order_id,
                "station": r.station_id,
                "seq": r.seq,
                "chip_uid": r.chip_uid,
                "key_id": c.key_id,
            },
        )

    def devices(self, order_id: str | None = None) -> list[dict[str, Any]]:
        query = select(fleet_devices).order_by(fleet_devices.c.order_id, fleet_devices.c.device_serial)
        if order_id is not None:
            query = query.where(fleet_devices.c.order_id == order_id)
        with self._store.read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def alerts(self) -> list[dict[str, Any]]:
        with self._store.read() as conn:
            return [
                dict(r) for r in conn.execute(select(rec_alerts).order_by(rec_alerts.c.alert_id)).mappings()
            ]


def _list(doc: Any, name: str, limit: int) -> list[Any]:
    value = doc.get(name)
    if not isinstance(value, list) or len(value) > limit:
        raise InvalidInput(f"{name} must be a list of at most {limit} items")
    return value


def _measurement(receipt: InstallReceipt) -> dict[str, Any]:
    """The measured boot as the station export carries it beside the receipt."""
    return {
        "firmware_digest": receipt.firmware_digest.hex(),
        "firmware_version": receipt.firmware_version,
        "security_counter": receipt.security_counter,
    }
