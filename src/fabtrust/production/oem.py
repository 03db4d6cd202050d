"""The OEM side of a production run: products, (placeholder) releases, station enrollment, orders
with quotas and windows, and production packages sealed to one station.

Every act and every refusal is an audit entry. Orders above the approval limit need a second
person (the ad-hoc two-person rule here becomes issue 6's general k-of-n approvals).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import insert, select, update

from fabtrust.clock import Clock, system_clock
from fabtrust.crypto import dsse, hpke
from fabtrust.crypto.canonical import canonical_json, parse_canonical
from fabtrust.crypto.encoding import b64, unb64
from fabtrust.crypto.keys import KeyType, KeyUsage, key_id, spki_der
from fabtrust.errors import (
    Conflict,
    FabtrustError,
    InvalidInput,
    NotFound,
    PolicyViolation,
    VerificationFailed,
)
from fabtrust.keystore.base import KeyInfo, KeyStore
from fabtrust.pki.issuance import NameRequest
from fabtrust.pki.service import ROOT_ID, PkiService, check_name
from fabtrust.production.documents import (
    ISSUING_REQUEST,
    Enrollment,
    OrderTerms,
    Package,
    SealedPackage,
    StationCertificate,
    open_envelope,
    package_info,
    parse_document,
    sha256_hex,
    signed_envelope,
    text,
)
from fabtrust.store.engine import Store
from fabtrust.store.tables import prod_orders, prod_packages, prod_products, prod_releases, prod_stations
from fabtrust.tlog.audit import AuditLog, Outcome

AUDIT_PRODUCTION = "fabtrust.audit.production/v1"
PACKAGE_SIGNER = "production-package-signer"
RELEASE_SIGNER = "production-release-signer"
PLACEHOLDER_RELEASE = "fabtrust.placeholder-release/v1"
DEFAULT_APPROVAL_LIMIT = 10_000
MAX_QUOTA = 10_000_000


@dataclass(frozen=True)
class Order:
    terms: OrderTerms
    status: str
    created_by: str
    approved_by: str | None


class ProductionService:
    """Products, releases, stations, orders and packages at the OEM."""

    def __init__(
        self,
        store: Store,
        keystore: KeyStore,
        audit: AuditLog,
        pki: PkiService,
        *,
        actor: str,
        clock: Clock = system_clock,
        approval_limit: int = DEFAULT_APPROVAL_LIMIT,
    ) -> None:
        self._store, self._keystore, self._audit, self._pki = store, keystore, audit, pki
        self._actor, self._clock, self._approval_limit = actor, clock, approval_limit

    # -- logging -----------------------------------------------------------------------------------

    def _log(self, action: str, subject: str, outcome: Outcome = Outcome.OK, **details: Any) -> None:
        self._audit.record(AUDIT_PRODUCTION, self._actor, action, subject, outcome, details)

    def _refused(self, action: str, subject: str, exc: FabtrustError, **details: Any) -> None:
        self._log(action, subject, Outcome.REFUSED, reason=exc.code, message=exc.message, **details)

    # -- OEM keys ----------------------------------------------------------------------------------

    def _own_key(self, label: str) -> KeyInfo:
        """The OEM's package or release signing key, created on first use."""
        for info in self._keystore.list():
            if info.label == label:
                return info
        info = self._keystore.generate(label, KeyType.P256, KeyUsage.SIGN)
        self._log("key.generate", info.uri, key_id=info.key_id, purpose=label)
        return info

    def package_signer(self) -> KeyInfo:
        return self._own_key(PACKAGE_SIGNER)

    def oem_key_hash(self) -> bytes:
        """SHA-256 of the OEM firmware (release) key's SPKI: what devices burn into OTP."""
        return hashlib.sha256(self._own_key(RELEASE_SIGNER).public_key_der).digest()

    # -- products and releases ---------------------------------------------------------------------

    def create_product(
        self,
        name: str,
        *,
        description: str,
        device_domain: str,
        vendor_roots: Sequence[x509.Certificate],
        organization: str = "fabtrust",
        key_type: KeyType = KeyType.P384,
    ) -> None:
        """A product line: its product CA (signed by the root) and the silicon vendors it accepts."""
        try:
            check_name(name, "product name")
            if not vendor_roots:
                raise InvalidInput("a product needs at least one accepted silicon vendor")
            with self._store.read() as conn:
                if conn.execute(select(prod_products.c.name).where(prod_products.c.name == name)).first():
                    raise Conflict(f"product {name!r} exists already")
            ca = self._pki.create_product_ca(
                name,
                attributes={"commonName": f"{organization} {name} CA"[:64], "organizationName": organization},
                device_domain=device_domain,
                key_type=key_type,
            )
            vendors = canonical_json([b64(c.public_bytes(serialization.Encoding.DER)) for c in vendor_roots])
            with self._store.write() as conn:
                conn.execute(
                    insert(prod_products).values(
                        name=name,
                        product_ca=ca.ca_id,
                        description=description[:255],
                        vendors=vendors,
                        created_at=self._clock(),
                    )
                )
        except FabtrustError as exc:
            self._refused("product.create", f"product:{name}", exc)
            raise
        self._log("product.create", f"product:{name}", product_ca=ca.ca_id, vendors=len(vendor_roots))

    def products(self) -> list[dict[str, Any]]:
        with self._store.read() as conn:
            rows = conn.execute(select(prod_products).order_by(prod_products.c.name)).mappings().all()
        return [
            {
                "name": r["name"],
                "product_ca": r["product_ca"],
                "description": r["description"],
                "vendors": len(parse_canonical(r["vendors"])),
            }
            for r in rows
        ]

    def vendor_roots(self, product: str) -> list[bytes]:
        with self._store.read() as conn:
            row = conn.execute(select(prod_products.c.vendors).where(prod_products.c.name == product)).first()
        if row is None:
            raise NotFound(f"no product {product!r}")
        return [unb64(v, "vendor root") for v in parse_canonical(row[0])]

    def create_release(self, product: str, version: str, image: bytes) -> str:
        """A placeholder firmware release: the image and its digest, signed by the OEM release key.
        (The firmware issue replaces this with MCUboot images and k-of-n approval.)"""
        release_id = f"{product}-{version}"
        try:
            if not re.fullmatch(r"[0-9A-Za-z.+-]{1,40}", version or ""):
                raise InvalidInput("release version must be 1-40 characters of [0-9A-Za-z.+-]")
            if not image:
                raise InvalidInput("a release needs an image")
            signer = self._own_key(RELEASE_SIGNER)
            digest = sha256_hex(image)
            payload = {
                "format": PLACEHOLDER_RELEASE,
                "product": product,
                "version": version,
                "image_sha256": digest,
            }
            envelope = signed_envelope(payload, signer.key_id, lambda m: self._keystore.sign(signer.uri, m))
            with self._store.write() as conn:
                if (
                    conn.execute(select(prod_products.c.name).where(prod_products.c.name == product)).first()
                    is None
                ):
                    raise NotFound(f"no product {product!r}")
                if conn.execute(
                    select(prod_releases.c.release_id).where(prod_releases.c.release_id == release_id)
                ).first():
                    raise Conflict(f"release {release_id!r} exists already")
                conn.execute(
                    insert(prod_releases).values(
                        release_id=release_id,
                        product=product,
                        version=version,
                        image=image,
                        image_sha256=digest,
                        envelope=envelope,
                        created_at=self._clock(),
                    )
                )
        except FabtrustError as exc:
            self._refused("release.create", f"release:{release_id}", exc)
            raise
        self._log("release.create", f"release:{release_id}", image_sha256=digest, key_id=signer.key_id)
        return release_id

    # -- stations ----------------------------------------------------------------------------------

    def certify_station(
        self,
        enrollment: bytes,
        *,
        organization: str = "fabtrust",
        station_domain: str = "stations.fabtrust.local",
    ) -> bytes:
        """Certify an enrolled station's identity key (root-signed ``station`` profile) and record its
        sealing and log keys; returns the ``fabtrust.station-certificate/v1`` document."""
        subject = "station"
        try:
            request = Enrollment.parse(enrollment)
            station_id = check_name(request.station_id, "station id")
            subject = f"station:{station_id}"
            try:
                csr = x509.load_der_x509_csr(request.csr)
            except ValueError:
                raise InvalidInput("station enrollment holds a malformed certificate request") from None
            request.verify(spki_der(csr.public_key()))  # type: ignore[arg-type]
            hpke.seal(request.sealing_key, b"", b"fabtrust sealing key check")  # a key HPKE can seal to
            with self._store.read() as conn:
                if conn.execute(
                    select(prod_stations.c.station_id).where(prod_stations.c.station_id == station_id)
                ).first():
                    raise Conflict(f"station {station_id!r} is enrolled already")
            names = NameRequest(
                {"commonName": station_id, "organizationName": organization},
                dns=(f"{station_id}.{station_domain}",),
            )
            issued = self._pki.issue(ROOT_ID, "station", request.csr, names)
            with self._store.write() as conn:
                conn.execute(
                    insert(prod_stations).values(
                        station_id=station_id,
                        identity_cert=issued.certificate.public_bytes(serialization.Encoding.DER),
                        sealing_key=request.sealing_key,
                        log_vkey=request.log_vkey,
                        status="active",
                        enrolled_at=self._clock(),
                    )
                )
        except FabtrustError as exc:
            self._refused("station.certify", subject, exc)
            raise
        self._log(
            "station.certify", subject, serial=issued.serial, sealing_key_id=key_id(request.sealing_key)
        )
        chain = [issued.certificate.public_bytes(serialization.Encoding.DER)]
        chain.append(self._pki.ca(ROOT_ID).certificate.public_bytes(serialization.Encoding.DER))
        return StationCertificate(station_id, tuple(chain), self.package_signer().public_key_der).to_json()

    def station(self, station_id: str) -> dict[str, Any]:
        with self._store.read() as conn:
            row = (
                conn.execute(select(prod_stations).where(prod_stations.c.station_id == station_id))
                .mappings()
                .first()
            )
        if row is None:
            raise NotFound(f"no enrolled station {station_id!r}")
        return dict(row)

    def stations(self) -> list[dict[str, Any]]:
        with self._store.read() as conn:
            return [
                dict(r)
                for r in conn.execute(select(prod_stations).order_by(prod_stations.c.station_id)).mappings()
            ]

    # -- orders ------------------------------------------------------------------------------------

    def create_order(
        self,
        order_id: str,
        *,
        product: str,
        release_id: str,
        stations: Sequence[str],
        quota: int,
        not_before: datetime,
        not_after: datetime,
    ) -> Order:
        """An order; above the approval limit it waits for a second person's approval."""
        subject = f"order:{order_id}"
        try:
            check_name(order_id, "order id")
            if not 1 <= quota <= MAX_QUOTA:
                raise InvalidInput(f"quota must be between 1 and {MAX_QUOTA}")
            if not_after <= not_before:
                raise InvalidInput("the order's window must end after it starts")
            if not stations or len(set(stations)) != len(stations):
                raise InvalidInput("an order names one or more distinct stations")
            status = "approved" if quota <= self._approval_limit else "awaiting-approval"
            with self._store.write() as conn:
                if conn.execute(
                    select(prod_orders.c.order_id).where(prod_orders.c.order_id == order_id)
                ).first():
                    raise Conflict(f"order {order_id!r} exists already")
                release = (
                    conn.execute(select(prod_releases).where(prod_releases.c.release_id == release_id))
                    .mappings()
                    .first()
                )
                if release is None or release["product"] != product:
                    raise NotFound(f"no release {release_id!r} of product {product!r}")
                for station in stations:
                    row = conn.execute(
                        select(prod_stations.c.status).where(prod_stations.c.station_id == station)
                    ).first()
                    if row is None or row[0] != "active":
                        raise NotFound(f"no active enrolled station {station!r}")
                conn.execute(
                    insert(prod_orders).values(
                        order_id=order_id,
                        product=product,
                        release_id=release_id,
                        stations=canonical_json(list(stations)),
                        quota=quota,
                        not_before=not_before,
                        not_after=not_after,
                        status=status,
                        created_by=self._actor,
                        approved_by=None,
                        created_at=self._clock(),
                    )
                )
        except FabtrustError as exc:
            self._refused("order.create", subject, exc, quota=quota if isinstance(quota, int) else None)
            raise
        self._log(
            "order.create",
            subject,
            product=product,
            release=release_id,
            stations=list(stations),
            quota=quota,
            status=status,
        )
        return self.order(order_id)

    def approve_order(self, order_id: str) -> Order:
        """The second person's approval of an order above the limit (never its creator's)."""
        subject = f"order:{order_id}"
        try:
            order = self.order(order_id)
            if order.status != "awaiting-approval":
                raise Conflict(f"order {order_id} is {order.status}, not awaiting approval")
            if order.created_by == self._actor:
                raise PolicyViolation("an order needs the approval of a second person, not its creator")
            with self._store.write() as conn:
                done = conn.execute(
                    update(prod_orders)
                    .where(prod_orders.c.order_id == order_id, prod_orders.c.status == "awaiting-approval")
                    .values(status="approved", approved_by=self._actor)
                )
                if done.rowcount != 1:
                    raise Conflict(f"order {order_id} was approved meanwhile")
        except FabtrustError as exc:
            self._refused("order.approve", subject, exc)
            raise
        self._log("order.approve", subject, created_by=order.created_by)
        return self.order(order_id)

    def order(self, order_id: str) -> Order:
        with self._store.read() as conn:
            row = (
                conn.execute(select(prod_orders).where(prod_orders.c.order_id == order_id)).mappings().first()
            )
            release = (
                None
                if row is None
                else conn.execute(
                    select(prod_releases).where(prod_releases.c.release_id == row["release_id"])
                )
                .mappings()
                .first()
            )
        if row is None or release is None:
            raise NotFound(f"no order {order_id!r}")
        return Order(_terms(row, release), row["status"], row["created_by"], row["approved_by"])

    def orders(self) -> list[Order]:
        with self._store.read() as conn:
            ids = [
                r[0] for r in conn.execute(select(prod_orders.c.order_id).order_by(prod_orders.c.created_at))
            ]
        return [self.order(i) for i in ids]

    def packages(self, order_id: str | None = None) -> list[dict[str, Any]]:
        query = select(prod_packages).order_by(prod_packages.c.created_at)
        if order_id is not None:
            query = query.where(prod_packages.c.order_id == order_id)
        with self._store.read() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    # -- packages ----------------------------------------------------------------------------------

    def seal_package(
        self, order_id: str, issuing_request: bytes, *, station_quota: int | None = None
    ) -> bytes:
        """Certify the station's order-bound issuing key and seal the order's package to that
        station: returns ``fabtrust.sealed-package/v1``. Only an approved order, inside its window,
        for a station it names; the stations' shares never add up to more than the quota."""
        subject = f"order:{order_id}"
        station_id = "?"
        try:
            order = self.order(order_id)
            doc = self._issuing_request(issuing_request)
            station_id = doc["station_id"]
            if doc["order_id"] != order_id:
                raise PolicyViolation(f"the issuing request is for order {doc['order_id']}, not {order_id}")
            if order.status != "approved":
                raise PolicyViolation(f"order {order_id} is {order.status}; it cannot be sealed")
            if station_id not in order.terms.stations:
                raise PolicyViolation(f"order {order_id} does not name station {station_id}")
            now = self._clock()
            if now > order.terms.not_after:
                raise PolicyViolation(f"order {order_id} has ended")
            share = order.terms.quota if station_quota is None else station_quota
            sealed_before = sum(p["quota"] for p in self.packages(order_id) if p["station_id"] != station_id)
            left = order.terms.quota - sealed_before
            if not 1 <= share <= left:
                raise PolicyViolation(
                    f"station quota {share} exceeds what order {order_id} has left ({left})"
                )
            if any(p["station_id"] == station_id for p in self.packages(order_id)):
                raise Conflict(f"order {order_id} has a package for station {station_id} already")
            issuing = self._pki.sign_issuing_ca(
                order.terms.product,
                unb64(doc["csr"], "csr"),
                station=station_id,
                order_id=order_id,
                not_after=order.terms.not_after,
            )
            with self._store.read() as conn:
                image = conn.execute(
                    select(prod_releases.c.image).where(prod_releases.c.release_id == order.terms.release_id)
                ).scalar_one()
            package = Package(
                package_id=f"pkg-{secrets.token_hex(8)}",
                station_id=station_id,
                order=order.terms,
                station_quota=share,
                issuing_ca=issuing.ca_id,
                ca_bundle=self._pki.export_bundle(issuing.ca_id),
                vendor_anchors=tuple(self.vendor_roots(order.terms.product)),
                secrets={"class-key": secrets.token_bytes(32)},
                image=image,
                oem_key_hash=self.oem_key_hash(),
                issued_at=now,
            )
            signer = self.package_signer()
            envelope = signed_envelope(
                package.to_payload(), signer.key_id, lambda m: self._keystore.sign(signer.uri, m)
            )
            station = self.station(station_id)
            sealed = hpke.seal(station["sealing_key"], envelope, package_info(station_id, package.package_id))
            document = SealedPackage(package.package_id, station_id, sealed).to_json()
            with self._store.write() as conn:
                conn.execute(
                    insert(prod_packages).values(
                        package_id=package.package_id,
                        order_id=order_id,
                        station_id=station_id,
                        issuing_ca=issuing.ca_id,
                        quota=share,
                        sha256=sha256_hex(document),
                        created_at=now,
                    )
                )
        except FabtrustError as exc:
            self._refused("package.seal", subject, exc, station=station_id)
            raise
        self._log(
            "package.seal",
            subject,
            station=station_id,
            package=package.package_id,
            issuing_ca=issuing.ca_id,
            station_quota=share,
            key_id=signer.key_id,
            sha256=sha256_hex(document),
        )
        return document

    def _issuing_request(self, raw: bytes) -> dict[str, Any]:
        """A station's request for its order-bound issuing CA, signed by its identity key."""
        envelope = dsse.Envelope.parse(raw)
        claimed = parse_document(envelope.payload, ISSUING_REQUEST, ("station_id", "order_id", "csr"))
        station = self.station(text(claimed, "station_id", limit=64))
        if station["status"] != "active":
            raise PolicyViolation(f"station {station['station_id']} is not active")
        cert = x509.load_der_x509_certificate(station["identity_cert"])
        try:
            open_envelope(raw, spki_der(cert.public_key()), "issuing request")  # type: ignore[arg-type]
        except VerificationFailed:
            raise VerificationFailed("the issuing request is not signed by the station it names") from None
        return claimed


def _terms(row: Any, release: Any) -> OrderTerms:
    return OrderTerms(
        order_id=row["order_id"],
        product=row["product"],
        release_id=row["release_id"],
        release_version=release["version"],
        image_sha256=release["image_sha256"],
        stations=tuple(parse_canonical(row["stations"])),
        quota=row["quota"],
        not_before=row["not_before"],
        not_after=row["not_after"],
    )
