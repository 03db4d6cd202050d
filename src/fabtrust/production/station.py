"""The factory station (provisioning appliance): loads sealed packages, checks that chips are
genuine, issues device identities from its order-bound issuing key, seals the device-class
secrets to each device, signs a production record per device, and never exceeds its quota. It
programs the order's release image as it came in the package (encrypted to the product's class
key: the station decrypts nothing), and records a device as programmed only once the device's
signed install receipt reports the boot of exactly that release (digest, version, security
counter, as the package's order terms name them).

What the station sees: the package is sealed to the station's key, and the device-class secrets in
it (the product's image decryption key) are open inside the station's process while it re-seals
them to each device (HPKE to the device's sealing key). The station is trusted with them as it is
with its order's issuing key; a station that leaked them would expose the product's firmware
plaintext, not the OEM's signing keys (images still need the OEM firmware key's signature to boot).

Why the quota holds: each batch of devices is one transaction in the station's store that reads
and advances the order's counter, stores the certificates (``PkiService.issue_batch`` joins it),
the production records and their audit-log entries (one per device, naming its record and its
certificate: issuer, serial, subject key). A station killed at any point has committed
all of a batch or none of it: no certificate without its record, no unit counted twice. Several
station processes on one order serialise on that transaction (SQLite's write lock, PostgreSQL's
``FOR UPDATE``). A device's certificate and secrets leave the station only after the commit.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import insert, select, update

from fabtrust.clock import Clock, rfc3339, system_clock
from fabtrust.crypto import dsse, hpke
from fabtrust.crypto.canonical import canonical_json
from fabtrust.crypto.encoding import b64
from fabtrust.crypto.keys import KeyType, KeyUsage, key_id, spki_der
from fabtrust.device.protocol import (
    Challenge,
    ExpectedFirmware,
    GenuineChip,
    GenuinenessResponse,
    InstallReceipt,
    Provisioning,
    secrets_info,
    verify_genuineness,
    verify_measurement,
    verify_receipt,
)
from fabtrust.errors import (
    Conflict,
    FabtrustError,
    InvalidInput,
    NotFound,
    PolicyViolation,
    VerificationFailed,
)
from fabtrust.keystore.base import KeyStore
from fabtrust.pki.issuance import NameRequest, VerifiedCsr
from fabtrust.pki.service import Issued, IssueRequest, PkiService, check_name, make_csr
from fabtrust.production.documents import (
    EXPORT,
    ISSUING_REQUEST,
    Enrollment,
    Package,
    ProductionRecord,
    SealedPackage,
    StationCertificate,
    open_envelope,
    package_info,
    sha256_hex,
    signed_envelope,
)
from fabtrust.production.oem import AUDIT_PRODUCTION
from fabtrust.store import dbapi
from fabtrust.store.dbapi import Sql
from fabtrust.store.engine import Store
from fabtrust.store.tables import st_devices, st_identity, st_issuing_keys, st_packages
from fabtrust.tlog.audit import AuditEntry, AuditLog, Outcome
from fabtrust.tlog.log import MerkleLog

CHALLENGE_TTL = timedelta(minutes=5)
MAX_OUTSTANDING_CHALLENGES = 100_000
MAX_BATCH = 1000

# The provisioning transaction's statements, built once (SQLAlchemy then only binds values).
# the statements of every provisioning batch, as SQL text (fabtrust.store.dbapi): the order's quota
# and counter (row-locked on PostgreSQL; SQLite's write lock is held already), chips provisioned
# already, the devices' rows, and the counter moved only if nobody moved it meanwhile
_PACKAGE_COUNTER = Sql.portable(
    "SELECT quota, used FROM st_packages WHERE order_id = :order_id",
    postgresql="SELECT quota, used FROM st_packages WHERE order_id = :order_id FOR UPDATE",
)
_TAKEN_CHIPS = Sql.portable(
    "SELECT chip_uid FROM st_devices WHERE chip_uid IN (SELECT value FROM json_each(:uids))",
    postgresql="SELECT chip_uid FROM st_devices WHERE chip_uid = ANY(:uids)",
)
_INSERT_DEVICES = Sql.portable(
    "INSERT INTO st_devices (chip_uid, order_id, seq, device_serial, log_index, record, receipt, state,"
    " created_at) VALUES (:chip_uid, :order_id, :seq, :device_serial, :log_index, :record, NULL,"
    " 'issued', :created_at)"
)
_ADVANCE_COUNTER = Sql.portable(
    "UPDATE st_packages SET used = :highest WHERE order_id = :order_id AND used = :used AND quota >= :highest"
)


@dataclass(frozen=True)
class Provisioned:
    """A device the station has certified and recorded: what goes to the device."""

    chip_uid: str
    device_serial: str
    seq: int
    certificate: x509.Certificate
    provisioning: bytes  # fabtrust.device-provisioning/v1 for the device agent


@dataclass
class _Loaded:
    package: Package
    issuing_chain: tuple[bytes, ...]
    anchors: tuple[x509.Certificate, ...]
    organization: str


class Station:
    """A station's provisioning service over its own store, key store and audit log."""

    def __init__(
        self,
        store: Store,
        keystore: KeyStore,
        audit: AuditLog,
        log: MerkleLog,
        pki: PkiService,
        *,
        actor: str,
        log_vkey: str,
        clock: Clock = system_clock,
    ) -> None:
        self._store, self._keystore, self._audit, self._log, self._pki = store, keystore, audit, log, pki
        self._actor, self._log_vkey, self._clock = actor, log_vkey, clock
        # issued, unanswered challenges by their exact bytes: an answer must hand back what was
        # issued here, byte for byte, so the known ones need no parsing
        self._challenges: dict[bytes, tuple[Challenge, datetime]] = {}
        self._challenge_lock = threading.Lock()
        self._loaded: dict[str, _Loaded] = {}
        self._identity: dict[str, Any] | None = None

    # -- logging -----------------------------------------------------------------------------------

    def _entry(self, action: str, subject: str, outcome: Outcome = Outcome.OK, **details: Any) -> AuditEntry:
        return self._audit.entry(AUDIT_PRODUCTION, self._actor, action, subject, outcome, details)

    def _log_refusal(self, action: str, subject: str, exc: FabtrustError, **details: Any) -> None:
        self._audit.append(
            [self._entry(action, subject, Outcome.REFUSED, reason=exc.code, message=exc.message, **details)]
        )

    # -- identity and enrollment -------------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        """The station's id, key URIs, certificate and pinned OEM signer (cached once complete)."""
        if self._identity is not None:
            return self._identity
        with self._store.read() as conn:
            row = conn.execute(select(st_identity)).mappings().first()
        if row is None:
            raise NotFound("this data home is not a station; run `fabtrust station enroll` first")
        if row["identity_cert"] is not None:
            self._identity = dict(row)  # enrolled and certified: it does not change any more
        return dict(row)

    @property
    def station_id(self) -> str:
        return str(self.identity()["station_id"])

    def enroll(self, station_id: str, *, organization: str = "fabtrust") -> bytes:
        """Generate the station's identity and sealing keys here (soft or HSM) and make the
        enrollment request the OEM certifies."""
        check_name(station_id, "station id")
        with self._store.read() as conn:
            if conn.execute(select(st_identity.c.station_id)).first() is not None:
                raise Conflict("this station is enrolled already")
        identity = self._keystore.generate(f"station-identity-{station_id}", KeyType.P256, KeyUsage.SIGN)
        sealing = self._keystore.generate(f"station-sealing-{station_id}", KeyType.P256, KeyUsage.AGREE)
        names = {"commonName": station_id, "organizationName": organization}
        der = make_csr(self._keystore, identity.uri, names, serialization.Encoding.DER)
        request = Enrollment.make(
            station_id,
            der,
            sealing.public_key_der,
            self._log_vkey,
            lambda m: self._keystore.sign(identity.uri, m),
        )
        with self._store.write() as conn:
            conn.execute(
                insert(st_identity).values(
                    station_id=station_id,
                    identity_key=identity.uri,
                    sealing_key=sealing.uri,
                    identity_cert=None,
                    oem_signer=None,
                    created_at=self._clock(),
                )
            )
            self._audit.append(
                [
                    self._entry(
                        "station.enroll",
                        f"station:{station_id}",
                        identity_key_id=identity.key_id,
                        sealing_key_id=sealing.key_id,
                    )
                ],
                conn=conn,
            )
        return request.to_json()

    def install_certificate(self, document: bytes) -> None:
        """Install the OEM's certificate for this station and pin the OEM package signer."""
        try:
            answer = StationCertificate.parse(document)
            me = self.identity()
            if answer.station_id != me["station_id"]:
                raise PolicyViolation(
                    f"the certificate is for station {answer.station_id}, not {me['station_id']}"
                )
            if me["identity_cert"] is not None:
                raise Conflict("this station has its certificate already")
            try:
                cert = x509.load_der_x509_certificate(answer.chain[0])
            except ValueError:
                raise InvalidInput("the station certificate is malformed") from None
            if spki_der(cert.public_key()) != self._keystore.get(me["identity_key"]).public_key_der:  # type: ignore[arg-type]
                raise PolicyViolation("the certificate is not for this station's identity key")
            with self._store.write() as conn:
                conn.execute(
                    update(st_identity).values(identity_cert=answer.chain[0], oem_signer=answer.oem_signer)
                )
        except FabtrustError as exc:
            self._log_refusal("station.install-certificate", "station", exc)
            raise
        self._audit.record(
            AUDIT_PRODUCTION,
            self._actor,
            "station.install-certificate",
            f"station:{answer.station_id}",
            Outcome.OK,
            {"serial": format(cert.serial_number, "x"), "oem_signer_key_id": key_id(answer.oem_signer)},
        )

    def issuing_request(self, order_id: str) -> bytes:
        """Generate this order's issuing key here and ask the OEM to certify it (signed request)."""
        check_name(order_id, "order id")
        me = self.identity()
        with self._store.read() as conn:
            row = conn.execute(
                select(st_issuing_keys.c.key_uri).where(st_issuing_keys.c.order_id == order_id)
            ).first()
        if row is None:
            info = self._keystore.generate(
                f"issuing-{me['station_id']}-{order_id}", KeyType.P256, KeyUsage.SIGN
            )
            with self._store.write() as conn:
                conn.execute(
                    insert(st_issuing_keys).values(
                        order_id=order_id, key_uri=info.uri, created_at=self._clock()
                    )
                )
                self._audit.append(
                    [self._entry("issuing-key.generate", f"order:{order_id}", key_id=info.key_id)], conn=conn
                )
            uri = info.uri
        else:
            uri = row[0]
        der = make_csr(
            self._keystore,
            uri,
            {"commonName": f"{me['station_id']} {order_id}"[:64], "organizationName": "fabtrust"},
            serialization.Encoding.DER,
        )
        payload = {
            "format": ISSUING_REQUEST,
            "station_id": me["station_id"],
            "order_id": order_id,
            "csr": b64(der),
        }
        identity = self._keystore.get(me["identity_key"])
        return signed_envelope(payload, identity.key_id, lambda m: self._keystore.sign(identity.uri, m))

    # -- packages ----------------------------------------------------------------------------------

    def load(self, sealed_document: bytes) -> dict[str, Any]:
        """Open and verify a sealed package, adopt its issuing CA with the key made for the order.

        Refused, with the reason: a package for another station, one that does not open (a flipped
        byte, another station's key), one not signed by the pinned OEM signer, an unknown format
        or version, an order whose window has closed."""
        try:
            package = self._open(sealed_document)
            order = package.order
            now = self._clock()
            if now > order.not_after:
                raise PolicyViolation(
                    f"order {order.order_id} has ended (its window closed {rfc3339(order.not_after)})"
                )
            with self._store.read() as conn:
                key = conn.execute(
                    select(st_issuing_keys.c.key_uri).where(st_issuing_keys.c.order_id == order.order_id)
                ).first()
                loaded = conn.execute(
                    select(st_packages.c.package_id).where(st_packages.c.order_id == order.order_id)
                ).first()
            if key is None:
                raise PolicyViolation(f"this station made no issuing key for order {order.order_id}")
            if loaded is not None:
                if loaded[0] == package.package_id:
                    return self.order_status(order.order_id)  # loading the same package again changes nothing
                raise Conflict(f"order {order.order_id} has a package loaded already")
            ca = self._pki.adopt_bundle(package.ca_bundle, key_uri=key[0])
            if ca.ca_id != package.issuing_ca or ca.order_id != order.order_id:
                raise PolicyViolation("the package's CA is not the issuing CA of its order")
            with self._store.write() as conn:
                conn.execute(
                    insert(st_packages).values(
                        order_id=order.order_id,
                        package_id=package.package_id,
                        issuing_ca=package.issuing_ca,
                        quota=package.station_quota,
                        used=0,
                        not_before=order.not_before,
                        not_after=order.not_after,
                        sealed=sealed_document,
                        loaded_at=now,
                    )
                )
                self._audit.append(
                    [
                        self._entry(
                            "package.load",
                            f"order:{order.order_id}",
                            package=package.package_id,
                            quota=package.station_quota,
                            issuing_ca=package.issuing_ca,
                            sha256=sha256_hex(sealed_document),
                        )
                    ],
                    conn=conn,
                )
        except FabtrustError as exc:
            self._log_refusal(
                "package.load",
                "package",
                exc,
                sha256=sha256_hex(sealed_document) if isinstance(sealed_document, bytes) else None,
            )
            raise
        return self.order_status(order.order_id)

    def _open(self, sealed_document: bytes) -> Package:
        if not isinstance(sealed_document, bytes):
            raise InvalidInput("a package is bytes")
        me = self.identity()
        if me["oem_signer"] is None:
            raise PolicyViolation("this station has no OEM certificate installed (no pinned package signer)")
        sealed = SealedPackage.parse(sealed_document)
        if sealed.station_id != me["station_id"]:
            raise PolicyViolation(
                f"the package is sealed to station {sealed.station_id}, not {me['station_id']}"
            )
        info = package_info(sealed.station_id, sealed.package_id)
        try:
            envelope = self._keystore.hpke_open(me["sealing_key"], sealed.sealed, info)
        except VerificationFailed:
            raise VerificationFailed(
                "the package does not open with this station's key (tampered or sealed to another key)"
            ) from None
        try:
            payload = open_envelope(envelope, me["oem_signer"], "production package", limit=dsse.MAX_ENVELOPE)
        except VerificationFailed:
            raise VerificationFailed("the package is not signed by the OEM this station trusts") from None
        package = Package.from_payload(payload)
        if package.package_id != sealed.package_id or package.station_id != sealed.station_id:
            raise VerificationFailed("the sealed package's label does not match its contents")
        return package

    def _package(self, order_id: str) -> _Loaded:
        loaded = self._loaded.get(order_id)
        if loaded is None:
            with self._store.read() as conn:
                row = conn.execute(
                    select(st_packages.c.sealed).where(st_packages.c.order_id == order_id)
                ).first()
            if row is None:
                raise NotFound(f"no package loaded for order {order_id}")
            package = self._open(row[0])
            ca = self._pki.ca(package.issuing_ca)
            chain = tuple(
                c.certificate.public_bytes(serialization.Encoding.DER) for c in self._pki.chain(ca.ca_id)
            )
            org = ca.certificate.subject.get_attributes_for_oid(x509.NameOID.ORGANIZATION_NAME)
            anchors = tuple(x509.load_der_x509_certificate(a) for a in package.vendor_anchors)
            loaded = self._loaded[order_id] = _Loaded(
                package, chain, anchors, str(org[0].value) if org else "fabtrust"
            )
        return loaded

    # -- provisioning ------------------------------------------------------------------------------

    def challenge(self, order_id: str) -> bytes:
        """A fresh, single-use genuineness challenge for a device of this order."""
        loaded = self._package(order_id)
        now = self._clock()
        loaded.package.order.check_window(now)
        challenge = Challenge.new(self.station_id, order_id, now)
        raw = challenge.to_json()
        with self._challenge_lock:
            if len(self._challenges) >= MAX_OUTSTANDING_CHALLENGES:
                self._expire(now)
            if len(self._challenges) >= MAX_OUTSTANDING_CHALLENGES:
                raise PolicyViolation("too many outstanding challenges; answer or let them expire")
            self._challenges[raw] = (challenge, now)
        return raw

    def _expire(self, now: datetime) -> None:
        for raw, (_, issued) in list(self._challenges.items()):
            if now - issued > CHALLENGE_TTL:
                del self._challenges[raw]

    def _take(self, raw: bytes, order_id: str, now: datetime) -> Challenge:
        """The challenge issued here as ``raw``, taken (single use); refused if unknown, used,
        expired or for another order."""
        with self._challenge_lock:
            issued = self._challenges.pop(raw, None) if isinstance(raw, bytes) else None
        if issued is None:
            Challenge.parse(raw)  # a malformed challenge gets its own, precise error
            raise VerificationFailed("the challenge is unknown here, used already or expired (a replay?)")
        challenge, issued_at = issued
        if challenge.order != order_id:
            raise VerificationFailed(f"the challenge was issued for order {challenge.order}, not {order_id}")
        if now - issued_at > CHALLENGE_TTL:
            raise VerificationFailed("the challenge has expired")
        return challenge

    def provision(
        self, order_id: str, answers: Sequence[tuple[bytes, bytes]]
    ) -> list[Provisioned | FabtrustError]:
        """Provision devices of one order: each answer is (challenge, genuineness response).

        Per device: genuineness (vendor chain, fresh challenge, CSR bound to it), duplicate chip,
        quota, certificate, production record and log entry, all committed together for the
        batch; a refused device gets its error and changes nothing but the log of its refusal."""
        if not 1 <= len(answers) <= MAX_BATCH:
            raise InvalidInput(f"provision 1 to {MAX_BATCH} devices at a time")
        now = self._clock()
        try:
            loaded = self._package(order_id)
            loaded.package.order.check_window(now)
        except FabtrustError as exc:
            self._log_refusal("device.provision", f"order:{order_id}", exc, devices=len(answers))
            raise
        package = loaded.package
        results: list[Provisioned | FabtrustError | None] = [None] * len(answers)
        chips = []
        for index, (challenge_raw, response_raw) in enumerate(answers):
            try:
                challenge = self._take(challenge_raw, order_id, now)
                response = GenuinenessResponse.parse(response_raw)
                chips.append((index, verify_genuineness(response, challenge, loaded.anchors, now)))
            except FabtrustError as exc:
                results[index] = exc
        me = self.identity()
        identity = self._keystore.get(me["identity_key"])
        provisioned: list[tuple[int, tuple[GenuineChip, Issued], ProductionRecord]] = []
        with self._store.write() as conn:
            counter = dbapi.execute(conn, _PACKAGE_COUNTER, {"order_id": order_id}).fetchone()
            if counter is None:
                raise NotFound(f"order {order_id} has no package at this station")
            quota, used = counter
            uids = [chip.chip_uid for _, chip in chips]
            taken = (
                {uid for (uid,) in dbapi.execute(conn, _TAKEN_CHIPS, {"uids": dbapi.db_list(conn, uids)})}
                if uids
                else set()
            )
            admitted: list[tuple[int, GenuineChip, int]] = []
            for index, chip in chips:
                if chip.chip_uid in taken:
                    results[index] = Conflict(
                        f"chip {chip.chip_uid} has been provisioned already (a clone, or a second attempt)"
                    )
                elif used + len(admitted) >= quota:
                    results[index] = PolicyViolation(
                        f"the quota of order {order_id} at this station is exhausted ({quota})"
                    )
                else:
                    taken.add(chip.chip_uid)
                    admitted.append((index, chip, used + len(admitted) + 1))
            requests = [
                IssueRequest(
                    package.issuing_ca,
                    "device-idevid",
                    VerifiedCsr(chip.csr, chip.csr_key, chip.csr_spki),  # verify_genuineness checked them
                    NameRequest({"organizationName": loaded.organization, "commonName": f"{order_id}/{seq}"}),
                    device_serial=chip.chip_uid,
                    order_id=order_id,
                )
                for _, chip, seq in admitted
            ]
            # each device's one entry names its certificate too (no separate cert.issue entries)
            issued = self._pki.issue_batch(requests, conn=conn, audited_by_caller=True) if requests else []
            for (index, chip, seq), result in zip(admitted, issued, strict=True):
                if not isinstance(result, Issued):
                    results[index] = result
                    continue
                record = ProductionRecord(
                    station_id=me["station_id"],
                    order_id=order_id,
                    package_id=package.package_id,
                    seq=seq,
                    chip_uid=chip.chip_uid,
                    vendor=chip.vendor,
                    birth_key_id=chip.birth_key_id,
                    device_serial=chip.chip_uid,
                    certificate=result.certificate.public_bytes(serialization.Encoding.DER),
                    image_sha256=package.order.image_sha256,
                    provisioned_at=now,
                )
                provisioned.append((index, (chip, result), record))
            identity_key_id = identity.key_id
            envelopes = [
                signed_envelope(
                    r.to_payload(), identity_key_id, lambda m: self._keystore.sign(identity.uri, m)
                )
                for _, _, r in provisioned
            ]
            entries = [
                self._entry(
                    "device.provision",
                    f"device:{record.device_serial}",
                    order=order_id,
                    seq=record.seq,
                    chip_uid=chip.chip_uid,
                    ca=result.ca_id,
                    serial=result.serial,
                    issuer_key_id=result.issuer_key_id,
                    subject_key_id=result.subject_key_id,
                    record_sha256=sha256_hex(envelope),
                    key_id=identity_key_id,
                )
                for (_, (chip, result), record), envelope in zip(provisioned, envelopes, strict=True)
            ]
            for index, outcome in enumerate(results):
                if isinstance(outcome, FabtrustError):
                    entries.append(
                        self._entry(
                            "device.provision",
                            f"order:{order_id}",
                            Outcome.REFUSED,
                            reason=outcome.code,
                            message=outcome.message,
                            answer=index,
                        )
                    )
            checkpoint = self._audit.append(entries, conn=conn) if entries else None
            first = (checkpoint.checkpoint.size if checkpoint else 0) - len(entries)  # the devices' entries
            if provisioned:
                created_at = dbapi.db_time(conn, now)
                dbapi.execute_many(
                    conn,
                    _INSERT_DEVICES,
                    [
                        {
                            "chip_uid": record.chip_uid,
                            "order_id": order_id,
                            "seq": record.seq,
                            "device_serial": record.device_serial,
                            "log_index": first + position,
                            "record": envelope,
                            "created_at": created_at,
                        }
                        for position, ((_, _, record), envelope) in enumerate(
                            zip(provisioned, envelopes, strict=True)
                        )
                    ],
                )
                highest = max(record.seq for _, _, record in provisioned)
                moved = dbapi.execute(
                    conn, _ADVANCE_COUNTER, {"order_id": order_id, "used": used, "highest": highest}
                )
                if moved.rowcount != 1:
                    raise Conflict("the order's counter moved during the batch; nothing was provisioned")
        # after the commit: the certificates, secrets and image go to the devices
        documents = _provisioning_documents(loaded, provisioned)
        for (index, (chip, result), record), document in zip(provisioned, documents, strict=True):
            results[index] = Provisioned(
                chip.chip_uid, record.device_serial, record.seq, result.certificate, document
            )
        return [r if r is not None else Conflict("not provisioned") for r in results]

    def image(self, order_id: str) -> bytes:
        """The firmware image of a loaded order, programmed into each of its devices beside the
        device's provisioning document (which names its SHA-256)."""
        return self._package(order_id).package.image

    def complete(self, receipts: Sequence[bytes]) -> list[str | FabtrustError]:
        """Record the devices' install receipts (device-signed: certificate, secrets and image in
        place, and the measured boot of the image); returns the chip UIDs recorded or the errors.
        A receipt whose measured boot is not the package's release (digest, version, security
        counter) is refused: the device stays ``issued``."""
        results: list[str | FabtrustError | None] = [None] * len(receipts)
        verified: list[tuple[int, InstallReceipt, bytes]] = []
        with self._store.read() as conn:
            rows = []
            for index, raw in enumerate(receipts):
                try:
                    receipt = InstallReceipt.parse(raw)
                    row = (
                        conn.execute(select(st_devices).where(st_devices.c.chip_uid == receipt.chip_uid))
                        .mappings()
                        .first()
                    )
                    if row is None:
                        raise NotFound(f"no device with chip {receipt.chip_uid} was provisioned here")
                    rows.append((index, receipt, raw, row))
                except FabtrustError as exc:
                    results[index] = exc
        for index, receipt, raw, row in rows:
            try:
                record = ProductionRecord.from_payload(dsse.Envelope.parse(row["record"]).payload)
                cert = x509.load_der_x509_certificate(record.certificate)
                verify_receipt(receipt, cert, bytes.fromhex(record.image_sha256))
                verify_measurement(receipt, expected_firmware(self._package(record.order_id).package))
                verified.append((index, receipt, raw))
            except FabtrustError as exc:
                results[index] = exc
        with self._store.write() as conn:
            # the state changes once: checked and set in this transaction (a receipt given twice,
            # in one call or by two processes, is recorded once and refused after)
            accepted: list[tuple[InstallReceipt, bytes]] = []
            for index, receipt, raw in verified:
                moved = conn.execute(
                    update(st_devices)
                    .where(st_devices.c.chip_uid == receipt.chip_uid, st_devices.c.state == "issued")
                    .values(
                        receipt=raw,
                        state="programmed",
                        firmware_digest=receipt.firmware_digest.hex(),
                        firmware_version=receipt.firmware_version,
                        security_counter=receipt.security_counter,
                    )
                )
                if moved.rowcount == 1:
                    accepted.append((receipt, raw))
                    results[index] = receipt.chip_uid
                else:
                    results[index] = Conflict(f"device {receipt.device_serial} has its receipt already")
            entries = [
                self._entry(
                    "device.programmed",
                    f"device:{r.device_serial}",
                    chip_uid=r.chip_uid,
                    receipt_sha256=sha256_hex(raw),
                    counter=r.counter,
                    firmware_digest=r.firmware_digest.hex(),
                    firmware_version=r.firmware_version,
                    security_counter=r.security_counter,
                )
                for r, raw in accepted
            ]
            entries += [
                self._entry("device.programmed", "device", Outcome.REFUSED, reason=e.code, message=e.message)
                for e in results
                if isinstance(e, FabtrustError)
            ]
            if entries:
                self._audit.append(entries, conn=conn)
        return [r if r is not None else Conflict("not recorded") for r in results]

    # -- status and export -------------------------------------------------------------------------

    def order_status(self, order_id: str) -> dict[str, Any]:
        for status in self.status():
            if status["order"] == order_id:
                return status
        raise NotFound(f"no package loaded for order {order_id}")

    def status(self) -> list[dict[str, Any]]:
        with self._store.read() as conn:
            packages = conn.execute(select(st_packages).order_by(st_packages.c.loaded_at)).mappings().all()
            out = []
            for p in packages:
                states = (
                    conn.execute(select(st_devices.c.state).where(st_devices.c.order_id == p["order_id"]))
                    .scalars()
                    .all()
                )
                out.append(
                    {
                        "order": p["order_id"],
                        "package": p["package_id"],
                        "issuing_ca": p["issuing_ca"],
                        "quota": p["quota"],
                        "used": p["used"],
                        "remaining": p["quota"] - p["used"],
                        "issued": len(states),
                        "programmed": sum(1 for s in states if s == "programmed"),
                        "not_before": rfc3339(p["not_before"]),
                        "not_after": rfc3339(p["not_after"]),
                    }
                )
        return out

    def export(self, since_size: int = 0) -> bytes:
        """``fabtrust.station-export/v1``: every record (with its receipt and the measured boot the
        station recorded from it), the station log's signed checkpoint, an inclusion proof for each
        record's entry and a consistency proof from the log size the OEM saw last (``since_size``; 0
        for the first sync). The record is signed when the device is provisioned, before it boots:
        the measurement is in the device-signed receipt, and beside it for reading."""
        me = self.identity()
        checkpoint = self._log.latest_checkpoint()
        size = checkpoint.checkpoint.size
        if not 0 <= since_size <= size:
            raise InvalidInput(
                f"the OEM's log size {since_size} is not within this station's log (size {size})"
            )
        consistency = (
            [b64(h) for h in self._log.consistency_proof(since_size, size).hashes]
            if 0 < since_size < size
            else []
        )
        with self._store.read() as conn:
            # devices committed after the checkpoint was read are in the next export
            query = select(st_devices).where(st_devices.c.log_index < size).order_by(st_devices.c.log_index)
            rows = conn.execute(query).mappings().all()
        records = []
        for row in rows:
            index = row["log_index"]
            entry = self._log.entries(index, index + 1)[0]
            proof = self._log.inclusion_proof(index, size)
            records.append(
                {
                    "record": b64(row["record"]),
                    "receipt": b64(row["receipt"]) if row["receipt"] is not None else None,
                    "measured": _measured(row),
                    "log_index": index,
                    "entry": b64(entry),
                    "inclusion": [b64(h) for h in proof.hashes],
                }
            )
        doc = {
            "format": EXPORT,
            "station_id": me["station_id"],
            "checkpoint": checkpoint.note.decode(),
            "since_size": since_size,
            "consistency": consistency,
            "records": records,
            "exported_at": rfc3339(self._clock()),
        }
        self._audit.record(
            AUDIT_PRODUCTION,
            self._actor,
            "station.export",
            f"station:{me['station_id']}",
            Outcome.OK,
            {"records": len(records), "log_size": size},
        )
        return canonical_json(doc)


def _provisioning_documents(
    loaded: _Loaded, provisioned: Sequence[tuple[int, tuple[GenuineChip, Issued], ProductionRecord]]
) -> list[bytes]:
    """Each device's provisioning document: its certificate chain, the order's device secrets
    HPKE-sealed to its sealing key, the image digest and the OEM key hash."""
    package = loaded.package
    secrets = canonical_json({k: b64(v) for k, v in sorted(package.secrets.items())})
    image_digest = bytes.fromhex(package.order.image_sha256)
    documents = []
    for _, (chip, _issued), record in provisioned:
        documents.append(
            Provisioning(
                device_serial=record.device_serial,
                certificate_chain=(record.certificate, *loaded.issuing_chain),
                sealed_secrets=hpke.seal_to_key(chip.sealing_public, secrets, secrets_info(chip.chip_uid)),
                image_digest=image_digest,
                oem_key_hash=package.oem_key_hash,
            ).to_json()
        )
    return documents


def expected_firmware(package: Package) -> ExpectedFirmware:
    """What a device of this package must boot: its order's release."""
    order = package.order
    return ExpectedFirmware(
        bytes.fromhex(order.firmware_digest), order.release_version, order.security_counter
    )


def _measured(row: Any) -> dict[str, Any] | None:
    if row["firmware_digest"] is None:
        return None
    return {
        "firmware_digest": row["firmware_digest"],
        "firmware_version": row["firmware_version"],
        "security_counter": row["security_counter"],
    }
