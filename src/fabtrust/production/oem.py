"""The OEM side of a production run: products, station enrollment, orders with quotas and windows
for a published firmware release (:mod:`fabtrust.firmware.releases`), and production packages sealed
to one station, carrying that release's encrypted image and the product's image decryption key.

Every act and every refusal is an audit entry. Approving an order above the approval limit and
raising a quota each spend a k-of-n approval (:class:`fabtrust.access.ApprovalTicket`) bound to the
exact terms the approvers reviewed.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from sqlalchemy import insert, select, update

from fabtrust.access.policy import ApprovalAction
from fabtrust.access.service import ApprovalTicket, ticket_request_id
from fabtrust.clock import Clock, rfc3339, system_clock
from fabtrust.crypto import dsse, hpke
from fabtrust.crypto.canonical import canonical_json, parse_canonical
from fabtrust.crypto.encoding import b64, unb64
from fabtrust.crypto.keys import KeyType, KeyUsage, key_id, spki_der
from fabtrust.device.boot import IMAGE_KEY_SECRET
from fabtrust.errors import (
    Conflict,
    FabtrustError,
    InvalidInput,
    NotFound,
    PolicyViolation,
    Unavailable,
    VerificationFailed,
)
from fabtrust.firmware.image import Image, ImageVersion, verify_image
from fabtrust.firmware.releases import ReleaseService, ReleaseState, version_text
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
from fabtrust.store.tables import prod_orders, prod_packages, prod_products, prod_stations
from fabtrust.tlog.audit import AuditLog, Outcome

AUDIT_PRODUCTION = "fabtrust.audit.production/v1"
PACKAGE_SIGNER = "production-package-signer"
DEFAULT_APPROVAL_LIMIT = 10_000
MAX_QUOTA = 10_000_000


@dataclass(frozen=True)
class Order:
    terms: OrderTerms
    status: str
    created_by: str
    approved_by: str | None


@dataclass(frozen=True)
class ReleaseFirmware:
    """A published release as production needs it: the image as programmed and what a device that
    boots it measures."""

    release_id: str
    product: str
    version: str  # as the release names it (``version_text``)
    security_counter: int
    image: bytes  # the signed MCUboot image, encrypted to the product's class key
    image_sha256: str  # of ``image``
    firmware_digest: str  # the image's SHA256 TLV (header, plaintext body, protected TLVs), hex


def release_firmware(releases: ReleaseService, release_id: str) -> ReleaseFirmware:
    """The published release ``release_id``; NotFound if unknown, PolicyViolation if not published.
    The image is read from the OEM's own store (checked against its digest there) and its SHA256
    TLV read, not verified: :meth:`ProductionService.seal_package` verifies it in full."""
    release = releases.show(release_id)
    if release.state is not ReleaseState.PUBLISHED:
        raise PolicyViolation(
            f"release {release_id} is {release.state.value}, not published: production needs a "
            "published release"
        )
    image = releases.image(release_id)
    try:
        parsed = Image.parse(image)
    except InvalidInput as exc:
        raise VerificationFailed(f"the image of release {release_id} is damaged ({exc.message})") from None
    return ReleaseFirmware(
        release_id=release_id,
        product=release.statement.product,
        version=version_text(release.statement.version),
        security_counter=release.statement.security_counter,
        image=image,
        image_sha256=sha256_hex(image),
        firmware_digest=parsed.sha256.hex(),
    )


class ProductionService:
    """Products, stations, orders and packages at the OEM; firmware releases come from ``releases``."""

    def __init__(
        self,
        store: Store,
        keystore: KeyStore,
        audit: AuditLog,
        pki: PkiService,
        releases: ReleaseService,
        *,
        actor: str,
        clock: Clock = system_clock,
        approval_limit: int = DEFAULT_APPROVAL_LIMIT,
    ) -> None:
        self._store, self._keystore, self._audit, self._pki = store, keystore, audit, pki
        self._releases = releases
        self._actor, self._clock, self._approval_limit = actor, clock, approval_limit

    # -- logging -----------------------------------------------------------------------------------

    def _log(self, action: str, subject: str, outcome: Outcome = Outcome.OK, **details: Any) -> None:
        self._audit.record(AUDIT_PRODUCTION, self._actor, action, subject, outcome, details)

    def _refused(self, action: str, subject: str, exc: FabtrustError, **details: Any) -> None:
        self._log(action, subject, Outcome.REFUSED, reason=exc.code, message=exc.message, **details)

    # -- OEM keys ----------------------------------------------------------------------------------

    def _own_key(self, label: str) -> KeyInfo:
        """The OEM's package signing key, created on first use."""
        for info in self._keystore.list():
            if info.label == label:
                return info
        info = self._keystore.generate(label, KeyType.P256, KeyUsage.SIGN)
        self._log("key.generate", info.uri, key_id=info.key_id, purpose=label)
        return info

    def package_signer(self) -> KeyInfo:
        return self._own_key(PACKAGE_SIGNER)

    def oem_key_hash(self) -> bytes:
        """SHA-256 of the OEM firmware key's SPKI (the key that signs every published image): what
        devices burn into OTP."""
        return self._releases.firmware_key_hash()

    # -- products ----------------------------------------------------------------------------------

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
        """An order for a published release of the product; above the approval limit it waits for
        an approval (:meth:`approve_order`)."""
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
            if not isinstance(release_id, str) or not 0 < len(release_id) <= 96:
                raise InvalidInput("a release id is 1 to 96 characters")
            release = self._releases.show(release_id)  # NotFound if there is none
            if release.statement.product != product:
                raise PolicyViolation(
                    f"release {release_id} is firmware for product {release.statement.product}, not {product}"
                )
            if release.state is not ReleaseState.PUBLISHED:
                raise PolicyViolation(
                    f"release {release_id} is {release.state.value}, not published: an order needs a "
                    "published release"
                )
            with self._store.write() as conn:
                if conn.execute(
                    select(prod_orders.c.order_id).where(prod_orders.c.order_id == order_id)
                ).first():
                    raise Conflict(f"order {order_id!r} exists already")
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
            image_sha256=release.image_sha256,
            stations=list(stations),
            quota=quota,
            status=status,
        )
        return self.order(order_id)

    @staticmethod
    def approval_terms(order: Order, new_quota: int | None = None) -> dict[str, Any]:
        """What the approvers of an act on ``order`` review and the act is held to: the order's
        terms for ``order.approve``; with ``new_quota``, the raise for ``quota.raise``. Refused
        for an act the order's state rules out (so nobody is asked to approve the impossible)."""
        t = order.terms
        if new_quota is None and order.status != "awaiting-approval":
            raise Conflict(f"order {t.order_id} is {order.status}, not awaiting approval")
        if new_quota is not None:
            if order.status != "approved":
                raise PolicyViolation(
                    f"order {t.order_id} is {order.status}: only an approved order's quota rises"
                )
            if isinstance(new_quota, bool) or not isinstance(new_quota, int):
                raise InvalidInput("a quota is an integer")
            if not t.quota < new_quota <= MAX_QUOTA:
                raise InvalidInput(
                    f"the new quota must be above the current {t.quota} and at most {MAX_QUOTA}"
                )
        terms: dict[str, Any] = {
            "order_id": t.order_id,
            "product": t.product,
            "release": t.release_id,
            "stations": list(t.stations),
            "quota": t.quota,
            "not_before": rfc3339(t.not_before),
            "not_after": rfc3339(t.not_after),
        }
        if new_quota is not None:
            terms["new_quota"] = new_quota
        return terms

    def approve_order(self, order_id: str, approval: ApprovalTicket) -> Order:
        """Approve an order above the approval limit by spending an executed-once ``order.approve``
        request (k planners besides the requester) for exactly its terms."""
        subject = f"order:{order_id}"
        try:
            order = self.order(order_id)
            terms = self.approval_terms(order)  # Conflict unless the order awaits its approval
            with self._store.write() as conn:
                request = approval.spend(conn, ApprovalAction.ORDER_APPROVE, subject, terms)
                approvers = ",".join(a.principal_id for a in request.approvals)
                done = conn.execute(
                    update(prod_orders)
                    .where(prod_orders.c.order_id == order_id, prod_orders.c.status == "awaiting-approval")
                    .values(status="approved", approved_by=approvers[:128])
                )
                if done.rowcount != 1:
                    raise Conflict(f"order {order_id} was approved meanwhile")
        except FabtrustError as exc:
            self._refused("order.approve", subject, exc, request_id=ticket_request_id(approval))
            raise
        self._log(
            "order.approve",
            subject,
            created_by=order.created_by,
            request_id=request.request_id,
            requested_by=request.requested_by,
            approvers=[a.principal_id for a in request.approvals],
        )
        return self.order(order_id)

    def raise_quota(self, order_id: str, new_quota: int, approval: ApprovalTicket) -> Order:
        """Raise an approved order's quota by spending a ``quota.raise`` request for exactly this
        raise. The added units can then be sealed to a station of the order that has no package
        yet; a loaded package's station quota never changes."""
        subject = f"order:{order_id}"
        try:
            order = self.order(order_id)
            terms = self.approval_terms(order, new_quota)  # refuses a raise the order rules out
            if self._clock() > order.terms.not_after:
                raise PolicyViolation(f"order {order_id} has ended")
            with self._store.write() as conn:
                request = approval.spend(conn, ApprovalAction.QUOTA_RAISE, subject, terms)
                done = conn.execute(
                    update(prod_orders)
                    .where(
                        prod_orders.c.order_id == order_id,
                        prod_orders.c.status == "approved",
                        prod_orders.c.quota == order.terms.quota,
                    )
                    .values(quota=new_quota)
                )
                if done.rowcount != 1:
                    raise Conflict(f"order {order_id} changed meanwhile")
        except FabtrustError as exc:
            self._refused(
                "order.raise-quota",
                subject,
                exc,
                request_id=ticket_request_id(approval),
                new_quota=new_quota if isinstance(new_quota, int) else None,
            )
            raise
        self._log(
            "order.raise-quota",
            subject,
            quota=order.terms.quota,
            new_quota=new_quota,
            request_id=request.request_id,
            requested_by=request.requested_by,
            approvers=[a.principal_id for a in request.approvals],
        )
        return self.order(order_id)

    def order(self, order_id: str) -> Order:
        with self._store.read() as conn:
            row = (
                conn.execute(select(prod_orders).where(prod_orders.c.order_id == order_id)).mappings().first()
            )
        if row is None:
            raise NotFound(f"no order {order_id!r}")
        firmware = release_firmware(self._releases, row["release_id"])
        return Order(_terms(row, firmware), row["status"], row["created_by"], row["approved_by"])

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
            package_id = f"pkg-{secrets.token_hex(8)}"
            # the release's image as devices will get it, and the key that decrypts it: checked here
            # as a device would boot it, so a package never carries an image its devices refuse
            firmware = release_firmware(self._releases, order.terms.release_id)
            image_key = self._releases.class_key_private(
                order.terms.product, purpose=f"package {package_id} (order {order_id}, station {station_id})"
            )
            oem_key_hash = self.oem_key_hash()
            _check_bootable(firmware, image_key, oem_key_hash)
            issuing = self._pki.sign_issuing_ca(
                order.terms.product,
                unb64(doc["csr"], "csr"),
                station=station_id,
                order_id=order_id,
                not_after=order.terms.not_after,
            )
            package = Package(
                package_id=package_id,
                station_id=station_id,
                order=order.terms,
                station_quota=share,
                issuing_ca=issuing.ca_id,
                ca_bundle=self._pki.export_bundle(issuing.ca_id),
                vendor_anchors=tuple(self.vendor_roots(order.terms.product)),
                secrets={IMAGE_KEY_SECRET: image_key},
                image=firmware.image,
                oem_key_hash=oem_key_hash,
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
            release=order.terms.release_id,
            image_sha256=order.terms.image_sha256,
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


def _terms(row: Any, firmware: ReleaseFirmware) -> OrderTerms:
    return OrderTerms(
        order_id=row["order_id"],
        product=row["product"],
        release_id=row["release_id"],
        release_version=firmware.version,
        image_sha256=firmware.image_sha256,
        firmware_digest=firmware.firmware_digest,
        security_counter=firmware.security_counter,
        stations=tuple(parse_canonical(row["stations"])),
        quota=row["quota"],
        not_before=row["not_before"],
        not_after=row["not_after"],
    )


def _check_bootable(firmware: ReleaseFirmware, image_key: bytes, oem_key_hash: bytes) -> None:
    """Verify the release's image as a device of the product boots it: signed by the OEM firmware
    key, decrypting under the class key to the digest its SHA256 TLV names, with the release's
    version and security counter."""
    try:
        key = serialization.load_der_private_key(image_key, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise Unavailable(f"the class key of product {firmware.product} is not a PKCS#8 key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey):
        raise Unavailable(f"the class key of product {firmware.product} is of an unexpected type")
    try:
        verified = verify_image(firmware.image, trusted_keys=[oem_key_hash], decryption_key=key)
    except FabtrustError as exc:
        raise VerificationFailed(
            f"the image of release {firmware.release_id} does not boot on the product's devices: "
            f"{exc.message}"
        ) from None
    if (
        verified.digest.hex() != firmware.firmware_digest
        or verified.version != ImageVersion.parse(firmware.version)
        or verified.security_counter != firmware.security_counter
    ):
        raise VerificationFailed(
            f"the image of release {firmware.release_id} is not the release its statement describes"
        )
