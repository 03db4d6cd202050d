"""Revocation: CRLs (RFC 5280 section 5) and the OCSP responder (RFC 6960), against a real data home
(soft key store, SQLite) with root → product → issuing CA → devices, and over the HTTP API.

Every CRL and OCSP response is read back with pyca/cryptography and its signature checked with the
CA's public key; bad requests get their RFC 6960 error status and change nothing."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fabtrust.api.app import create_app
from fabtrust.crypto.keys import KeyType, KeyUsage
from fabtrust.errors import InvalidInput, NotAuthorised, NotFound
from fabtrust.home import Home
from fabtrust.pki.issuance import NameRequest
from fabtrust.pki.revocation import (
    DELTA_CRL_VALIDITY,
    FULL_CRL_VALIDITY,
    MAX_OCSP_REQUEST,
    OCSP_VALIDITY,
    CertState,
    CrlEntry,
    RevocationService,
    Revoked,
    build_crl,
    crl_entries,
    effective_revocation,
    is_fresh,
    parse_ocsp_request,
)
from fabtrust.pki.service import CaRecord, PkiService, make_csr
from fabtrust.store.tables import pki_cas, pki_crls
from tests.approvals import revoke_ca

PASSPHRASE = "revocation-test-passphrase"
DOMAIN = "widget.devices.acme.example"
T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
SHA1 = hashes.SHA1()  # noqa: S303 (the CertID hash OCSP clients send by default, RFC 6960 4.1.1)


# -- a PKI to revoke from --------------------------------------------------------------------------


@dataclass
class FakeClock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class World:
    """One OEM data home holding root, product CA and (as a station would) issuing CA keys."""

    home: Home
    pki: PkiService
    clock: FakeClock
    root: CaRecord
    product: CaRecord
    counter: Iterator[int] = field(default_factory=itertools.count)

    def issuing(self, order: str | None = None) -> CaRecord:
        """A fresh issuing CA for a new order, its key in this home's key store."""
        order = order or f"po{next(self.counter)}"
        ks = self.home.keystore()
        key = ks.generate(f"station-{order}", KeyType.P256, KeyUsage.SIGN)
        csr = make_csr(ks, key.uri, {"commonName": f"line1 {order}", "organizationName": "Acme"})
        record = self.pki.sign_issuing_ca(
            "widget", csr, station="line1", order_id=order, not_after=self.clock() + timedelta(days=60)
        )
        self.pki.adopt_bundle(self.pki.export_bundle(record.ca_id), key_uri=key.uri)
        return self.pki.ca(record.ca_id)

    def device(self, ca: CaRecord) -> x509.Certificate:
        serial = f"SN{next(self.counter):06d}"
        key = ec.generate_private_key(ec.SECP256R1())
        csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
        issued = self.pki.issue(
            ca.ca_id,
            "device-idevid",
            csr.public_bytes(serialization.Encoding.PEM),
            NameRequest({"organizationName": "Acme"}, uris=(f"https://{DOMAIN}/devices/{serial}",)),
            device_serial=serial,
            order_id=ca.order_id,
        )
        return issued.certificate

    def service(self) -> RevocationService:
        """A revocation service with an empty cache, on the world's clock."""
        return RevocationService(self.pki, self.home.store, self.clock)


def build_world(path: Path, clock: FakeClock) -> World:
    home = Home.init(path, passphrase=lambda: PASSPHRASE, pin=lambda: "", actor="tester", clock=clock)
    pki = home.pki
    ceremony = pki.init_root(
        attributes={"commonName": "Acme Root CA", "organizationName": "Acme"},
        custodians=[("alice", "alice-passphrase-1"), ("bob", "bob-passphrase-22")],
        threshold=2,
        scrypt_n=2**14,
    )
    product = pki.create_product_ca(
        "widget",
        attributes={"commonName": "Acme Widget CA", "organizationName": "Acme"},
        device_domain=DOMAIN,
    )
    return World(home, pki, clock, ceremony.root, product)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    clock = FakeClock(T0)
    w = build_world(tmp_path_factory.mktemp("revocation") / "home", clock)
    try:
        yield w
    finally:
        w.home.close()


# -- helpers -----------------------------------------------------------------------------------------


def load_crl(der: bytes, issuer: CaRecord) -> x509.CertificateRevocationList:
    crl = x509.load_der_x509_crl(der)
    assert crl.is_signature_valid(issuer.certificate.public_key())  # type: ignore[arg-type]
    assert crl.issuer == issuer.certificate.subject
    return crl


def listed(crl: x509.CertificateRevocationList) -> dict[int, x509.ReasonFlags | None]:
    """serial → reasonCode (None when the entry has none)."""
    out: dict[int, x509.ReasonFlags | None] = {}
    for entry in crl:
        try:
            out[entry.serial_number] = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
        except x509.ExtensionNotFound:
            out[entry.serial_number] = None
    return out


def ocsp_request(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    algorithm: hashes.HashAlgorithm | None = None,
    nonce: bytes | None = None,
) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm or SHA1)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def by_serial(issuer: x509.Certificate, serial: int, algorithm: hashes.HashAlgorithm | None = None) -> bytes:
    """A request for a serial the test names, with the issuer's real CertID hashes."""
    algorithm = algorithm or SHA1
    public = issuer.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    point = public.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        _digest(algorithm, issuer.subject.public_bytes()), _digest(algorithm, point), serial, algorithm
    )
    return builder.build().public_bytes(serialization.Encoding.DER)


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    h = hashes.Hash(algorithm)
    h.update(data)
    return h.finalize()


def read_response(der: bytes, issuer: CaRecord) -> ocsp.OCSPResponse:
    """A successful response, its signature checked with the CA key that must have signed it."""
    response = ocsp.load_der_ocsp_response(der)
    assert response.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
    public = issuer.certificate.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert response.signature_hash_algorithm is not None
    public.verify(
        response.signature, response.tbs_response_bytes, ec.ECDSA(response.signature_hash_algorithm)
    )
    assert response.responder_key_hash == x509.SubjectKeyIdentifier.from_public_key(public).digest
    assert response.certificates == []  # signed by the CA itself: nothing to add (RFC 6960 4.2.2.2)
    return response


def status_of(service: RevocationService, cert: x509.Certificate, issuer: CaRecord) -> ocsp.OCSPResponse:
    return read_response(service.respond(ocsp_request(cert, issuer.certificate)), issuer)


def error_status(der: bytes) -> ocsp.OCSPResponseStatus:
    return ocsp.load_der_ocsp_response(der).response_status


def stored_crls(world: World) -> int:
    with world.home.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(pki_crls)).scalar_one())


def crl_number(world: World, ca_id: str) -> int:
    with world.home.store.read() as conn:
        return int(conn.execute(select(pki_cas.c.crl_number).where(pki_cas.c.ca_id == ca_id)).scalar_one())


def ext(
    crl: x509.CertificateRevocationList, kind: type[x509.ExtensionType]
) -> x509.Extension[x509.ExtensionType]:
    return crl.extensions.get_extension_for_class(kind)


# -- pure rules ---------------------------------------------------------------------------------------

AT = datetime(2030, 1, 1, tzinfo=UTC)
LATER = AT + timedelta(hours=1)


@pytest.mark.parametrize(
    ("own", "issuers", "expected"),
    [
        pytest.param(None, [None, None], None, id="good/nothing-revoked"),
        pytest.param(Revoked(AT, "superseded"), [None], Revoked(AT, "superseded"), id="revoked/own"),
        pytest.param(
            None, [Revoked(AT, "keyCompromise")], Revoked(AT, "cACompromise"), id="ca/key-compromise"
        ),
        pytest.param(
            None, [None, Revoked(AT, "cACompromise")], Revoked(AT, "cACompromise"), id="grandparent"
        ),
        pytest.param(
            None,
            [Revoked(AT, "cessationOfOperation")],
            Revoked(AT, "cessationOfOperation"),
            id="ca/cessation",
        ),
        pytest.param(
            Revoked(AT, "superseded"),
            [Revoked(LATER, "keyCompromise")],
            Revoked(AT, "superseded"),
            id="own-earlier-wins",
        ),
        pytest.param(
            Revoked(LATER, "superseded"),
            [Revoked(AT, "keyCompromise")],
            Revoked(AT, "cACompromise"),
            id="ca-earlier-wins",
        ),
    ],
)
def test_effective_revocation(
    own: Revoked | None, issuers: list[Revoked | None], expected: Revoked | None
) -> None:
    assert effective_revocation(own, issuers) == expected


@pytest.mark.parametrize(
    ("this_update", "now", "fresh"),
    [
        pytest.param(AT, AT, True, id="just-signed"),
        pytest.param(AT, AT + timedelta(minutes=44), True, id="over-a-quarter-left"),
        pytest.param(AT, AT + timedelta(minutes=45), False, id="a-quarter-left"),
        pytest.param(AT, AT + timedelta(hours=2), False, id="expired"),
        pytest.param(AT, AT - timedelta(seconds=1), False, id="from-the-future"),
    ],
)
def test_is_fresh_until_a_quarter_of_the_validity_remains(
    this_update: datetime, now: datetime, fresh: bool
) -> None:
    assert is_fresh(this_update, this_update + OCSP_VALIDITY, now) is fresh


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        pytest.param(
            {"base_number": 3, "freshest_url": "http://x/a-delta.crl"}, "Freshest", id="delta-with-freshest"
        ),
        pytest.param({"base_number": 5}, "base CRL number", id="base-not-before"),
        pytest.param({"next_update": AT}, "nextUpdate", id="next-update-not-after"),
    ],
)
def test_build_crl_refuses_what_rfc_5280_forbids(
    world: World, kwargs: dict[str, object], needle: str
) -> None:
    args: dict[str, object] = {"number": 5, "this_update": AT, "next_update": LATER, **kwargs}
    with pytest.raises(InvalidInput, match=needle):
        build_crl(world.product.certificate, [], **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("reason", "encoded"),
    [
        pytest.param("unspecified", None, id="unspecified-omitted"),
        pytest.param("keyCompromise", x509.ReasonFlags.key_compromise, id="keyCompromise"),
        pytest.param("cessationOfOperation", x509.ReasonFlags.cessation_of_operation, id="cessation"),
    ],
)
def test_crl_entries_round_trip(world: World, reason: str, encoded: x509.ReasonFlags | None) -> None:
    entry = CrlEntry(0x1234, Revoked(AT, reason))
    key = ec.generate_private_key(ec.SECP256R1())
    crl = build_crl(world.product.certificate, [entry], number=1, this_update=AT, next_update=LATER).sign(
        key, hashes.SHA256()
    )
    assert listed(crl) == {0x1234: encoded}
    assert crl_entries(crl) == {entry}


# -- CRLs ---------------------------------------------------------------------------------------------


def test_full_crl_lists_revocations_with_reasons(world: World) -> None:
    ca = world.issuing()
    good, compromised, plain = (world.device(ca) for _ in range(3))
    world.pki.revoke(reason="keyCompromise", ca_id=ca.ca_id, serial=format(compromised.serial_number, "x"))
    world.pki.revoke(reason="unspecified", ca_id=ca.ca_id, serial=format(plain.serial_number, "x"))
    before = crl_number(world, ca.ca_id)

    crl = load_crl(world.service().crl(ca.ca_id), ca)

    assert listed(crl) == {
        compromised.serial_number: x509.ReasonFlags.key_compromise,
        plain.serial_number: None,
    }
    assert good.serial_number not in listed(crl)
    number = ext(crl, x509.CRLNumber)
    assert not number.critical
    assert number.value.crl_number == before + 1 == crl_number(world, ca.ca_id)
    aki = ext(crl, x509.AuthorityKeyIdentifier).value
    assert (
        aki.key_identifier
        == ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    )
    freshest = ext(crl, x509.FreshestCRL)
    assert not freshest.critical
    point = freshest.value[0].full_name
    assert point == [
        x509.UniformResourceIdentifier(f"http://pki.fabtrust.local/pki/crl/{ca.ca_id}-delta.crl")
    ]
    with pytest.raises(x509.ExtensionNotFound):
        ext(crl, x509.DeltaCRLIndicator)
    assert crl.last_update_utc == world.clock().replace(microsecond=0)
    assert crl.next_update_utc == crl.last_update_utc + FULL_CRL_VALIDITY
    entry = crl.get_revoked_certificate_by_serial_number(compromised.serial_number)
    assert entry is not None
    assert entry.revocation_date_utc <= crl.last_update_utc


def test_crl_is_reused_until_the_revocation_state_changes(world: World) -> None:
    ca = world.issuing()
    first, second = world.device(ca), world.device(ca)
    service = world.service()
    one = service.crl(ca.ca_id)
    assert service.crl(ca.ca_id) == one  # nothing changed: the stored CRL again
    assert world.service().crl(ca.ca_id) == one  # another service (process) serves the stored one too
    n1 = load_crl(one, ca).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number

    world.pki.revoke(
        reason="superseded",
        device_serial=first.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value,
    )  # type: ignore[arg-type]
    two = load_crl(service.crl(ca.ca_id), ca)

    assert ext(two, x509.CRLNumber).value.crl_number == n1 + 1
    assert listed(two) == {first.serial_number: x509.ReasonFlags.superseded}
    assert second.serial_number not in listed(two)


def test_crl_is_reissued_before_it_expires(world: World) -> None:
    ca = world.issuing()
    service = world.service()
    first = load_crl(service.crl(ca.ca_id), ca)
    world.clock.advance(FULL_CRL_VALIDITY * 3 / 4 - timedelta(seconds=1))
    assert load_crl(service.crl(ca.ca_id), ca).last_update_utc == first.last_update_utc
    world.clock.advance(timedelta(seconds=1))  # a quarter of the validity left: time for a new one
    renewed = load_crl(service.crl(ca.ca_id), ca)
    assert renewed.last_update_utc == first.last_update_utc + FULL_CRL_VALIDITY * 3 / 4
    assert ext(renewed, x509.CRLNumber).value.crl_number > ext(first, x509.CRLNumber).value.crl_number


def test_delta_crl_lists_what_was_revoked_since_its_base(world: World) -> None:
    ca = world.issuing()
    early, late, good = world.device(ca), world.device(ca), world.device(ca)
    service = world.service()
    world.pki.revoke(reason="keyCompromise", ca_id=ca.ca_id, serial=format(early.serial_number, "x"))
    base = load_crl(service.crl(ca.ca_id), ca)
    base_number = ext(base, x509.CRLNumber).value.crl_number
    world.clock.advance(timedelta(minutes=5))
    world.pki.revoke(reason="affiliationChanged", ca_id=ca.ca_id, serial=format(late.serial_number, "x"))

    delta = load_crl(service.crl(ca.ca_id, delta=True), ca)
    full = load_crl(service.crl(ca.ca_id), ca)

    indicator = ext(delta, x509.DeltaCRLIndicator)
    assert indicator.critical  # RFC 5280 5.2.4
    assert indicator.value.crl_number == base_number
    assert listed(delta) == {late.serial_number: x509.ReasonFlags.affiliation_changed}
    with pytest.raises(x509.ExtensionNotFound):
        ext(delta, x509.FreshestCRL)  # 5.2.6: not in delta CRLs
    assert delta.next_update_utc == delta.last_update_utc + DELTA_CRL_VALIDITY
    full_number = ext(full, x509.CRLNumber).value.crl_number
    delta_number = ext(delta, x509.CRLNumber).value.crl_number
    assert base_number < full_number < delta_number  # one numbering sequence (5.2.3)
    # base + delta says what the current full CRL says
    assert listed(full) == {**listed(base), **listed(delta)}
    assert good.serial_number not in listed(full)
    # asked again with nothing changed: the same delta
    assert service.crl(ca.ca_id, delta=True) == delta.public_bytes(serialization.Encoding.DER)


def test_revoking_an_issuing_ca_lists_it_on_the_product_crl_and_revokes_its_devices(world: World) -> None:
    ca = world.issuing()
    devices = [world.device(ca) for _ in range(2)]
    service = world.service()
    assert status_of(service, devices[0], ca).certificate_status is ocsp.OCSPCertStatus.GOOD

    assert revoke_ca(world.home, ca.ca_id, "keyCompromise") == 1

    product_crl = load_crl(service.crl(world.product.ca_id), world.product)
    assert listed(product_crl)[ca.certificate.serial_number] == x509.ReasonFlags.key_compromise
    ca_crl = load_crl(service.crl(ca.ca_id), ca)
    assert listed(ca_crl) == {d.serial_number: x509.ReasonFlags.ca_compromise for d in devices}
    for device in devices:
        response = status_of(service, device, ca)
        assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert response.revocation_reason is x509.ReasonFlags.ca_compromise
    as_product_sees_it = status_of(service, ca.certificate, world.product)
    assert as_product_sees_it.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert as_product_sees_it.revocation_reason is x509.ReasonFlags.key_compromise


@pytest.mark.parametrize(
    ("how", "reason", "flag"),
    [
        pytest.param("serial", "keyCompromise", x509.ReasonFlags.key_compromise, id="by-serial"),
        pytest.param("device", "privilegeWithdrawn", x509.ReasonFlags.privilege_withdrawn, id="by-device"),
        pytest.param("order", "cessationOfOperation", x509.ReasonFlags.cessation_of_operation, id="by-order"),
        pytest.param("order", "unspecified", None, id="by-order/unspecified"),
    ],
)
def test_revocation_shows_in_crl_and_ocsp(
    world: World, how: str, reason: str, flag: x509.ReasonFlags | None
) -> None:
    order = f"recall{next(world.counter)}"
    ca, other = world.issuing(order), world.issuing()  # an issuing CA serves one order
    targets = [world.device(ca), world.device(ca), world.device(ca)]
    bystanders = [(world.device(other), other)]
    if how == "serial":
        bystanders += [(t, ca) for t in targets[1:]]
        targets = targets[:1]
        world.pki.revoke(reason=reason, ca_id=ca.ca_id, serial=format(targets[0].serial_number, "X"))
    elif how == "device":
        bystanders += [(t, ca) for t in targets[1:]]
        targets = targets[:1]
        serial = targets[0].subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value
        world.pki.revoke(reason=reason, device_serial=str(serial))
    else:
        world.pki.revoke(reason=reason, order_id=order)
    world.clock.advance(timedelta(seconds=1))
    service = world.service()

    crl = load_crl(service.crl(ca.ca_id), ca)
    assert listed(crl) == {t.serial_number: flag for t in targets}
    assert listed(load_crl(service.crl(other.ca_id), other)) == {}
    for target in targets:
        response = status_of(service, target, ca)
        assert response.certificate_status is ocsp.OCSPCertStatus.REVOKED
        assert response.revocation_reason is flag
        entry = crl.get_revoked_certificate_by_serial_number(target.serial_number)
        assert entry is not None
        assert response.revocation_time_utc == entry.revocation_date_utc
    for bystander, issuer in bystanders:
        assert status_of(service, bystander, issuer).certificate_status is ocsp.OCSPCertStatus.GOOD


def test_a_ca_without_its_key_here_has_no_crl(world: World) -> None:
    ks = world.home.keystore()
    key = ks.generate(f"elsewhere-{next(world.counter)}", KeyType.P256, KeyUsage.SIGN)
    csr = make_csr(ks, key.uri, {"commonName": "line9 elsewhere", "organizationName": "Acme"})
    record = world.pki.sign_issuing_ca(
        "widget",
        csr,
        station="line9",
        order_id=f"x{next(world.counter)}",
        not_after=world.clock() + timedelta(days=9),
    )
    device = world.device(world.issuing())
    before = stored_crls(world)
    service = world.service()
    with pytest.raises(NotFound, match="does not issue the CRLs"):
        service.crl(record.ca_id)
    # its certificates' status is not this responder's to tell
    request = by_serial(record.certificate, device.serial_number)
    assert error_status(service.respond(request)) is ocsp.OCSPResponseStatus.UNAUTHORIZED
    assert stored_crls(world) == before


# -- OCSP ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "algorithm",
    [pytest.param(SHA1, id="sha1"), pytest.param(hashes.SHA256(), id="sha256")],
)
def test_ocsp_good_revoked_unknown(world: World, algorithm: hashes.HashAlgorithm) -> None:
    ca = world.issuing()
    good, revoked = world.device(ca), world.device(ca)
    other_ca = world.issuing()
    elsewhere = world.device(other_ca)
    world.pki.revoke(reason="keyCompromise", ca_id=ca.ca_id, serial=format(revoked.serial_number, "x"))
    service = world.service()
    now = world.clock().replace(microsecond=0)

    cases = [
        (ocsp_request(good, ca.certificate, algorithm), good.serial_number, ocsp.OCSPCertStatus.GOOD),
        (
            ocsp_request(revoked, ca.certificate, algorithm),
            revoked.serial_number,
            ocsp.OCSPCertStatus.REVOKED,
        ),
        # RFC 6960 2.2: a serial this issuer never issued (it exists under another CA) is unknown
        (
            by_serial(ca.certificate, elsewhere.serial_number, algorithm),
            elsewhere.serial_number,
            ocsp.OCSPCertStatus.UNKNOWN,
        ),
        (by_serial(ca.certificate, 0xDEADBEEF, algorithm), 0xDEADBEEF, ocsp.OCSPCertStatus.UNKNOWN),
    ]
    for request, serial, expected in cases:
        response = read_response(service.respond(request), ca)
        assert response.certificate_status is expected
        assert response.serial_number == serial
        assert response.hash_algorithm.name == algorithm.name
        assert response.this_update_utc == now
        assert response.next_update_utc == now + OCSP_VALIDITY
        if expected is ocsp.OCSPCertStatus.REVOKED:
            assert response.revocation_reason is x509.ReasonFlags.key_compromise
            assert response.revocation_time_utc is not None
            assert response.revocation_time_utc <= now


def test_ocsp_cache_serves_pre_signed_responses_and_notices_revocation(world: World) -> None:
    ca = world.issuing()
    device = world.device(ca)
    service = world.service()
    request = ocsp_request(device, ca.certificate)

    first = service.respond(request)
    assert service.respond(request) == first  # the pre-signed DER, not a new signature
    assert service.cached_responses() == 1

    world.clock.advance(timedelta(seconds=2))
    world.pki.revoke(
        reason="keyCompromise",
        device_serial=str(device.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value),
    )
    after = read_response(service.respond(request), ca)  # the very next answer
    assert after.certificate_status is ocsp.OCSPCertStatus.REVOKED
    assert service.respond(request) == after.public_bytes(serialization.Encoding.DER)


def test_ocsp_cache_refreshes_responses_before_they_expire(world: World) -> None:
    ca = world.issuing()
    device = world.device(ca)
    service = world.service()
    request = ocsp_request(device, ca.certificate)
    first = read_response(service.respond(request), ca)

    world.clock.advance(OCSP_VALIDITY * 3 / 4 - timedelta(seconds=1))
    assert service.respond(request) == first.public_bytes(serialization.Encoding.DER)
    world.clock.advance(timedelta(seconds=1))
    refreshed = read_response(service.respond(request), ca)
    assert refreshed.this_update_utc == first.this_update_utc + OCSP_VALIDITY * 3 / 4
    assert refreshed.next_update_utc == refreshed.this_update_utc + OCSP_VALIDITY
    assert refreshed.certificate_status is ocsp.OCSPCertStatus.GOOD


def test_ocsp_nonce_is_echoed_and_such_answers_are_not_cached(world: World) -> None:
    ca = world.issuing()
    device = world.device(ca)
    service = world.service()
    for nonce in (b"\x01" * 16, b"\x02" * 32, b"\x03"):
        response = read_response(service.respond(ocsp_request(device, ca.certificate, nonce=nonce)), ca)
        assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == nonce
    assert service.cached_responses() == 0
    # RFC 8954 2.1: a nonce longer than 32 octets is answered without one (a pre-signed answer)
    response = read_response(service.respond(ocsp_request(device, ca.certificate, nonce=b"\x04" * 33)), ca)
    with pytest.raises(x509.ExtensionNotFound):
        response.extensions.get_extension_for_class(x509.OCSPNonce)
    assert service.cached_responses() == 1


def test_prewarm_signs_every_good_certificate(world: World) -> None:
    ca = world.issuing()
    devices = [world.device(ca) for _ in range(3)]
    revoked = world.device(ca)
    world.pki.revoke(reason="superseded", ca_id=ca.ca_id, serial=format(revoked.serial_number, "x"))
    service = world.service()

    assert service.prewarm(ca.ca_id) == 3
    assert service.cached_responses() == 3
    assert service.prewarm(ca.ca_id) == 0  # all fresh already
    for device in devices:
        request = ocsp_request(device, ca.certificate)
        assert service.respond(request) == service.respond(request)
        assert status_of(service, device, ca).certificate_status is ocsp.OCSPCertStatus.GOOD
    assert service.cached_responses() == 3  # the prewarmed responses were the ones served
    assert status_of(service, revoked, ca).certificate_status is ocsp.OCSPCertStatus.REVOKED


def _foreign_ca() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Not Our CA")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(AT)
        .not_valid_after(LATER)
        .sign(key, hashes.SHA256())
    )


def _with_critical_extension(world: World) -> bytes:
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    builder = ocsp.OCSPRequestBuilder().add_certificate(
        world.product.certificate, world.root.certificate, SHA1
    )
    return builder.add_extension(unknown, critical=True).build().public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("make", "status"),
    [
        pytest.param(lambda w: b"", ocsp.OCSPResponseStatus.MALFORMED_REQUEST, id="malformed/empty"),
        pytest.param(
            lambda w: b"\x30\x03\x02\x01\x01",
            ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
            id="malformed/not-ocsp",
        ),
        pytest.param(
            lambda w: ocsp_request(w.product.certificate, w.root.certificate)[:-3],
            ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
            id="malformed/truncated",
        ),
        pytest.param(
            lambda w: b"\x30" * (MAX_OCSP_REQUEST + 1),
            ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
            id="malformed/oversized",
        ),
        pytest.param(
            _with_critical_extension,
            ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
            id="malformed/critical-extension",
        ),
        pytest.param(
            lambda w: by_serial(_foreign_ca(), 7),
            ocsp.OCSPResponseStatus.UNAUTHORIZED,
            id="unauthorized/unknown-issuer",
        ),
        pytest.param(
            lambda w: ocsp_request(w.product.certificate, w.root.certificate, hashes.SHA224()),
            ocsp.OCSPResponseStatus.UNAUTHORIZED,
            id="unauthorized/sha224-cert-id",
        ),
    ],
)
def test_bad_ocsp_requests_get_an_error_status_and_change_nothing(
    world: World, make: object, status: ocsp.OCSPResponseStatus
) -> None:
    request = make(world)  # type: ignore[operator]
    service = world.service()
    service.prewarm(world.product.ca_id)
    cached, crls, log_size = service.cached_responses(), stored_crls(world), world.home.log.size()

    assert error_status(service.respond(request)) is status

    assert (service.cached_responses(), stored_crls(world), world.home.log.size()) == (cached, crls, log_size)


def test_parse_ocsp_request_names_the_problem(world: World) -> None:
    with pytest.raises(InvalidInput, match="OCSPRequest"):
        parse_ocsp_request(b"junk")
    with pytest.raises(NotAuthorised, match="hash algorithm"):
        parse_ocsp_request(ocsp_request(world.product.certificate, world.root.certificate, hashes.SHA224()))
    query = parse_ocsp_request(
        ocsp_request(world.product.certificate, world.root.certificate, nonce=b"n" * 20)
    )
    assert (query.hash_name, query.serial, query.nonce) == (
        "sha1",
        world.product.certificate.serial_number,
        b"n" * 20,
    )


def test_status_reports_the_store(world: World) -> None:
    ca = world.issuing()
    device = world.device(ca)
    service = world.service()
    assert service.status(ca.ca_id, device.serial_number).state is CertState.GOOD
    assert service.status(ca.ca_id, 12345).state is CertState.UNKNOWN
    assert service.status(world.product.ca_id, ca.certificate.serial_number).state is CertState.GOOD


# -- over HTTP ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Api:
    world: World
    client: TestClient
    ca: CaRecord
    good: x509.Certificate
    revoked: x509.Certificate


@pytest.fixture(scope="module")
def api(world: World) -> Iterator[Api]:
    ca = world.issuing()
    good, revoked = world.device(ca), world.device(ca)
    world.pki.revoke(reason="keyCompromise", ca_id=ca.ca_id, serial=format(revoked.serial_number, "x"))
    with TestClient(create_app(world.home), raise_server_exceptions=False) as client:
        yield Api(world, client, ca, good, revoked)


def assert_error(response: object, status: int, code: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert response.headers["content-type"] == "application/json"  # type: ignore[attr-defined]
    body = response.json()  # type: ignore[attr-defined]
    assert body["error"] == code
    assert len(body["request_id"]) == 16
    assert "Traceback" not in response.text  # type: ignore[attr-defined]


def test_http_full_and_delta_crl(api: Api) -> None:
    full = api.client.get(f"/pki/crl/{api.ca.ca_id}.crl")
    assert full.status_code == 200
    assert full.headers["content-type"] == "application/pkix-crl"
    crl = load_crl(full.content, api.ca)
    assert listed(crl) == {api.revoked.serial_number: x509.ReasonFlags.key_compromise}
    delta = api.client.get(f"/pki/crl/{api.ca.ca_id}-delta.crl")
    assert delta.status_code == 200
    assert ext(load_crl(delta.content, api.ca), x509.DeltaCRLIndicator).value.crl_number <= (
        ext(crl, x509.CRLNumber).value.crl_number
    )
    assert api.client.get(f"/pki/crl/{api.ca.ca_id}.crl").content == full.content


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/pki/crl/no-such-ca.crl", id="unknown-ca"),
        pytest.param("/pki/crl/no-such-ca-delta.crl", id="unknown-ca/delta"),
        pytest.param("/pki/crl/root.pem", id="not-a-crl-name"),
        pytest.param("/pki/crl/..%2Froot.crl", id="traversal"),
    ],
)
def test_http_crl_not_found(api: Api, path: str) -> None:
    before = stored_crls(api.world)
    assert_error(api.client.get(path), 404, "not_found")
    assert stored_crls(api.world) == before


@pytest.mark.parametrize("method", ["post", "get"])
def test_http_ocsp_good_and_revoked(api: Api, method: str) -> None:
    for cert, expected in ((api.good, ocsp.OCSPCertStatus.GOOD), (api.revoked, ocsp.OCSPCertStatus.REVOKED)):
        request = ocsp_request(cert, api.ca.certificate, nonce=b"\x07" * 16)
        if method == "post":
            r = api.client.post(
                "/pki/ocsp", content=request, headers={"content-type": "application/ocsp-request"}
            )
        else:
            r = api.client.get("/pki/ocsp/" + base64.b64encode(request).decode().replace("/", "%2F"))
        assert r.status_code == 200
        assert r.headers["content-type"] == "application/ocsp-response"
        response = read_response(r.content, api.ca)
        assert response.certificate_status is expected
        assert response.extensions.get_extension_for_class(x509.OCSPNonce).value.nonce == b"\x07" * 16


@pytest.mark.parametrize(
    ("send", "status"),
    [
        pytest.param(
            lambda c: c.post(
                "/pki/ocsp", content=b"junk", headers={"content-type": "application/ocsp-request"}
            ),
            ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
            id="post/malformed",
        ),
        pytest.param(
            lambda c: c.post(
                "/pki/ocsp",
                content=b"\x30" * (MAX_OCSP_REQUEST + 1),
                headers={"content-type": "application/ocsp-request"},
            ),
            ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
            id="post/oversized",
        ),
        pytest.param(
            lambda c: c.get("/pki/ocsp/not*base64"),
            ocsp.OCSPResponseStatus.MALFORMED_REQUEST,
            id="get/not-base64",
        ),
        pytest.param(
            lambda c: c.get("/pki/ocsp/"), ocsp.OCSPResponseStatus.MALFORMED_REQUEST, id="get/empty"
        ),
        pytest.param(
            lambda c: c.post(
                "/pki/ocsp",
                content=by_serial(_foreign_ca(), 7),
                headers={"content-type": "application/ocsp-request"},
            ),
            ocsp.OCSPResponseStatus.UNAUTHORIZED,
            id="post/unknown-issuer",
        ),
    ],
)
def test_http_bad_ocsp_requests_get_an_ocsp_error(
    api: Api, send: object, status: ocsp.OCSPResponseStatus
) -> None:
    crls, log_size = stored_crls(api.world), api.world.home.log.size()
    r = send(api.client)  # type: ignore[operator]
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/ocsp-response"
    assert error_status(r.content) is status
    assert (stored_crls(api.world), api.world.home.log.size()) == (crls, log_size)


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/json", id="json"),
        pytest.param("", id="none"),
        pytest.param("text/plain", id="text"),
    ],
)
def test_http_ocsp_post_with_a_wrong_content_type_is_400(api: Api, content_type: str) -> None:
    request = ocsp_request(api.good, api.ca.certificate)
    headers = {"content-type": content_type} if content_type else {}
    assert_error(api.client.post("/pki/ocsp", content=request, headers=headers), 400, "invalid_input")
