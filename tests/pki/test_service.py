"""The device PKI service, told as a two-home story: the OEM runs the root ceremony and makes a
product CA; the station makes its order-bound issuing key in its own key store and a CSR for it;
the OEM signs it; the station adopts the bundle with its key and issues device certificates.

Every refusal is a clear error that issues nothing (``pki_certs`` and ``pki_cas`` unchanged, no key
left in a key store) and is an audit entry with outcome ``refused`` and the error code. Time is an
injected clock, so expiry and validity windows are tested exactly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from sqlalchemy import func, select

from fabtrust.access import ApprovalAction
from fabtrust.clock import Clock
from fabtrust.crypto import dsse
from fabtrust.crypto.keys import KeyType, KeyUsage, key_id, spki_der
from fabtrust.errors import (
    Conflict,
    FabtrustError,
    InvalidInput,
    NotFound,
    PolicyViolation,
    VerificationFailed,
)
from fabtrust.home import Home
from fabtrust.pki import custody
from fabtrust.pki.issuance import NameRequest
from fabtrust.pki.service import (
    CEREMONY_TYPE,
    Ceremony,
    IssueRequest,
    ca_revoke_terms,
    fingerprint,
    make_csr,
)
from fabtrust.store.tables import pki_cas, pki_certs
from fabtrust.tlog.audit import AuditEntry
from tests.approvals import approved, restore_ticket, revoke_ca

CA_REVOKE = ApprovalAction.CA_REVOKE

T0 = datetime(2031, 3, 3, 9, 0, 0, tzinfo=UTC)
OEM_PASSPHRASE = "oem-keystore-passphrase"
STATION_PASSPHRASE = "station-keystore-passphrase"
CUSTODIANS = [(f"custodian-{i}", f"custodian-{i}-passphrase") for i in range(1, 6)]
FAST_N = 2**14  # the cheapest scrypt cost custody accepts, to keep the tests quick
DEVICE_DOMAIN = "widget.devices.acme.example"
GADGET_DOMAIN = "gadget.devices.acme.example"
ORDER = "po-1001"
ISSUING_ID = f"issuing-line1-{ORDER}"


class MovableClock:
    """A clock the test moves forward (the audit log wants time not to run backwards)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def never() -> str:
    raise AssertionError("a PIN was asked for")


def open_home(path: Path, passphrase: str, actor: str, clock: Clock) -> Home:
    return Home.open(path, passphrase=lambda: passphrase, pin=never, actor=actor, clock=clock)


@dataclass(frozen=True)
class Story:
    """What the two-home story produced; the homes themselves are in ``dir`` (closed)."""

    dir: Path
    ceremony: Ceremony
    root: x509.Certificate
    product: x509.Certificate
    gadget: x509.Certificate
    issuing: x509.Certificate
    station_key: str
    spare_key: str
    bundle: bytes
    order_end: datetime

    @property
    def oem(self) -> Path:
        return self.dir / "oem"

    @property
    def station(self) -> Path:
        return self.dir / "station"


def build_story(directory: Path, clock: Clock, order_end: datetime) -> Story:
    """OEM and station homes with root, product CAs (widget, gadget) and the station's issuing CA."""
    oem = Home.init(
        directory / "oem", passphrase=lambda: OEM_PASSPHRASE, pin=never, actor="oem-officer", clock=clock
    )
    station = Home.init(
        directory / "station",
        passphrase=lambda: STATION_PASSPHRASE,
        pin=never,
        actor="station-line1",
        clock=clock,
    )
    with oem, station:
        ceremony = oem.pki.init_root(
            attributes={"commonName": "Acme Root CA", "organizationName": "Acme", "countryName": "DE"},
            custodians=CUSTODIANS,
            threshold=3,
            scrypt_n=FAST_N,
        )
        widget = oem.pki.create_product_ca(
            "widget",
            attributes={"commonName": "Acme Widget CA", "organizationName": "Acme"},
            device_domain=DEVICE_DOMAIN,
        )
        gadget = oem.pki.create_product_ca(
            "gadget",
            attributes={"commonName": "Acme Gadget CA", "organizationName": "Acme"},
            device_domain=GADGET_DOMAIN,
            key_type=KeyType.P256,
        )
        key = station.keys.generate(f"issuing-{ORDER}", KeyType.P256, KeyUsage.SIGN, purpose="issuing CA")
        spare = station.keys.generate("spare", KeyType.P256, KeyUsage.SIGN, purpose="test")
        csr = make_csr(
            station.keystore(), key.uri, {"commonName": f"line1 {ORDER}", "organizationName": "Acme"}
        )
        issuing = oem.pki.sign_issuing_ca("widget", csr, station="line1", order_id=ORDER, not_after=order_end)
        bundle = oem.pki.export_bundle(issuing.ca_id)
        station.pki.adopt_bundle(bundle, key_uri=key.uri)
        return Story(
            directory,
            ceremony,
            ceremony.root.certificate,
            widget.certificate,
            gadget.certificate,
            issuing.certificate,
            key.uri,
            spare.uri,
            bundle,
            order_end,
        )


# -- helpers ---------------------------------------------------------------------------------------


def device_csr(
    key_type: KeyType = KeyType.P256, *, mutate: Callable[[bytes], bytes] | None = None
) -> tuple[CertificateIssuerPrivateKeyTypes, bytes]:
    key: CertificateIssuerPrivateKeyTypes
    if key_type is KeyType.P256:
        key = ec.generate_private_key(ec.SECP256R1())
    elif key_type is KeyType.P384:
        key = ec.generate_private_key(ec.SECP384R1())
    elif key_type is KeyType.ED25519:
        key = ed25519.Ed25519PrivateKey.generate()
    else:
        key = mldsa.MLDSA65PrivateKey.generate()
    return key, csr_of(key)


def csr_of(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    algorithm = (
        None if isinstance(key, ed25519.Ed25519PrivateKey | mldsa.MLDSA65PrivateKey) else hashes.SHA256()
    )
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.PEM)


def device_request(serial: str, host: str = DEVICE_DOMAIN) -> NameRequest:
    return NameRequest({"organizationName": "Acme"}, uris=(f"https://{host}/devices/{serial}",))


def count(home: Home, table: Any) -> int:
    with home.store.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def cas(home: Home) -> list[tuple[Any, ...]]:
    with home.store.read() as conn:
        rows = conn.execute(
            select(pki_cas.c.ca_id, pki_cas.c.status, pki_cas.c.key_uri, pki_cas.c.cert_der).order_by(
                pki_cas.c.ca_id
            )
        ).all()
    return [tuple(r) for r in rows]


def certs(home: Home) -> list[tuple[Any, ...]]:
    with home.store.read() as conn:
        rows = conn.execute(
            select(pki_certs.c.ca_id, pki_certs.c.serial, pki_certs.c.status).order_by(pki_certs.c.serial)
        ).all()
    return [tuple(r) for r in rows]


def keys(home: Home) -> list[str]:
    return sorted(k.uri for k in home.keystore().list())


def last_entry(home: Home) -> AuditEntry:
    size = home.log.size()
    return AuditEntry.parse(home.log.entries(size - 1, size)[0])


def entries(home: Home) -> list[AuditEntry]:
    return [AuditEntry.parse(e) for e in home.log.entries(0, home.log.size())]


def assert_refused_and_logged(home: Home, action: str, error: FabtrustError) -> AuditEntry:
    entry = last_entry(home)
    assert entry.action == action
    assert entry.outcome.value == "refused"
    assert entry.details["reason"] == error.code
    assert entry.details["message"] == error.message
    return entry


def trusted(cert: x509.Certificate) -> dict[str, bytes]:
    der = spki_der(cert.public_key())  # type: ignore[arg-type]
    return {key_id(der): der}


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> Story:
    """The story, built once; never changed (copy it)."""
    return build_story(tmp_path_factory.mktemp("story"), MovableClock(T0), T0 + timedelta(days=30))


@dataclass
class Homes:
    oem: Home
    station: Home
    clock: MovableClock


def open_copy(story: Story, target: Path) -> Homes:
    shutil.copytree(story.dir, target)
    clock = MovableClock(T0 + timedelta(hours=1))
    oem = open_home(target / "oem", OEM_PASSPHRASE, "oem-officer", clock)
    station = open_home(target / "station", STATION_PASSPHRASE, "station-line1", clock)
    return Homes(oem, station, clock)


@pytest.fixture(scope="module")
def shared(story: Story, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Homes]:
    """A copy for tests whose only lasting change is a new certificate of their own, or nothing."""
    homes = open_copy(story, tmp_path_factory.mktemp("shared") / "story")
    yield homes
    homes.oem.close()
    homes.station.close()


@pytest.fixture
def homes(story: Story, tmp_path: Path) -> Iterator[Homes]:
    """A fresh copy for a test that changes state (revocation, time)."""
    homes = open_copy(story, tmp_path / "story")
    yield homes
    homes.oem.close()
    homes.station.close()


@pytest.fixture(scope="module")
def other_oem(tmp_path_factory: pytest.TempPathFactory) -> Story:
    """Another OEM's story (another ceremony, another root), for foreign shares and bundles."""
    return build_story(tmp_path_factory.mktemp("other"), MovableClock(T0), T0 + timedelta(days=30))


# -- the hierarchy ---------------------------------------------------------------------------------


def basic_constraints(cert: x509.Certificate) -> tuple[bool, int | None]:
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    return bc.value.ca, bc.value.path_length


def test_root_product_issuing_chain_links_and_limits_path_length(story: Story) -> None:
    story.root.verify_directly_issued_by(story.root)
    story.product.verify_directly_issued_by(story.root)
    story.issuing.verify_directly_issued_by(story.product)
    assert basic_constraints(story.root) == (True, 2)
    assert basic_constraints(story.product) == (True, 1)
    assert basic_constraints(story.issuing) == (True, 0)
    assert story.root.subject.rfc4514_string() == "CN=Acme Root CA,O=Acme,C=DE"
    assert story.issuing.subject.rfc4514_string() == f"CN=line1 {ORDER},O=Acme"


def test_issuing_ca_is_bound_to_the_order_window_and_the_product_devices(story: Story) -> None:
    assert story.issuing.not_valid_before_utc == T0
    assert story.issuing.not_valid_after_utc == story.order_end  # validity inside the order's window
    nc = story.issuing.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical
    assert nc.value.permitted_subtrees == [x509.DNSName(DEVICE_DOMAIN)]


def test_the_issuing_key_stays_in_the_station_key_store(story: Story, shared: Homes) -> None:
    station_key = shared.station.keystore().get(story.station_key)
    assert station_key.public_key_der == spki_der(story.issuing.public_key())  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        shared.oem.keystore().get(story.station_key)
    oem_issuing = shared.oem.pki.ca(ISSUING_ID)
    station_issuing = shared.station.pki.ca(ISSUING_ID)
    assert oem_issuing.key_uri is None  # the OEM records the CA, not its key
    assert station_issuing.key_uri == story.station_key
    assert oem_issuing.certificate == station_issuing.certificate == story.issuing
    assert (station_issuing.order_id, station_issuing.device_domain) == (ORDER, DEVICE_DOMAIN)
    assert [r.ca_id for r in shared.station.pki.chain(ISSUING_ID)] == [ISSUING_ID, "product-widget", "root"]
    # the station holds no key of the OEM's CAs
    assert [r.key_uri for r in shared.station.pki.chain(ISSUING_ID)[1:]] == [None, None]
    assert shared.oem.pki.ca("root").key_uri is not None
    assert shared.oem.pki.ca("product-widget").key_uri is not None


def test_every_ca_act_is_logged(story: Story, shared: Homes) -> None:
    oem_acts = [
        (e.action, e.subject, e.outcome.value)
        for e in entries(shared.oem)
        if e.type == "fabtrust.audit.pki/v1"
    ]
    assert oem_acts[:4] == [
        ("ca.init-root", "root", "ok"),
        ("ca.create-product", "product-widget", "ok"),
        ("ca.create-product", "product-gadget", "ok"),
        ("ca.sign-issuing", ISSUING_ID, "ok"),
    ]
    signed = next(e for e in entries(shared.oem) if e.action == "ca.sign-issuing")
    assert signed.details["issuer_key_id"] == key_id(spki_der(story.product.public_key()))  # type: ignore[arg-type]
    assert signed.details["serial"] == format(story.issuing.serial_number, "x")
    adopted = [e for e in entries(shared.station) if e.action == "ca.adopt"]
    assert [(e.subject, e.details["chain"], e.details["with_key"]) for e in adopted] == [
        (ISSUING_ID, [ISSUING_ID, "product-widget", "root"], True)
    ]


# -- issuance --------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", list(KeyType)[:4], ids=lambda k: k.value)
def test_device_certificates_for_every_allowed_key_type(
    shared: Homes, story: Story, key_type: KeyType
) -> None:
    serial = f"SN-{key_type.value}"
    key, csr = device_csr(key_type)
    before = count(shared.station, pki_certs)
    issued = shared.station.pki.issue(
        ISSUING_ID, "device-idevid", csr, device_request(serial), device_serial=serial, order_id=ORDER
    )
    cert = issued.certificate
    cert.verify_directly_issued_by(story.issuing)
    assert cert.public_key() == key.public_key()
    assert cert.subject.rfc4514_string() == f"2.5.4.5={serial},O=Acme"
    assert cert.not_valid_before_utc == shared.clock.now.replace(microsecond=0)
    assert cert.not_valid_after_utc == story.order_end  # never beyond the issuer
    assert 64 <= cert.serial_number.bit_length() <= 159
    urls = {
        "crl": cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
        .value[0]
        .full_name[0]
        .value,
        "ocsp": cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
        .value[0]
        .access_location.value,
    }
    assert urls == {
        "crl": f"http://pki.fabtrust.local/pki/crl/{ISSUING_ID}.crl",
        "ocsp": "http://pki.fabtrust.local/pki/ocsp",
    }
    # stored ...
    assert count(shared.station, pki_certs) == before + 1
    stored, row = shared.station.pki.certificate(ISSUING_ID, issued.serial)
    assert stored == cert
    assert (row["device_serial"], row["order_id"], row["status"], row["profile"]) == (
        serial,
        ORDER,
        "good",
        "device-idevid",
    )
    assert row["key_id"] == key_id(spki_der(key.public_key()))  # type: ignore[arg-type]
    assert (row["serial"], row["subject"]) == (issued.serial, cert.subject.rfc4514_string())
    assert (row["not_before"], row["not_after"]) == (cert.not_valid_before_utc, cert.not_valid_after_utc)
    # ... and logged
    entry = last_entry(shared.station)
    assert (entry.action, entry.subject, entry.outcome.value) == ("cert.issue", f"device:{serial}", "ok")
    assert entry.details["serial"] == issued.serial
    assert entry.details["key_id"] == key_id(spki_der(story.issuing.public_key()))  # type: ignore[arg-type]
    assert entry.details["order"] == ORDER


def test_serial_numbers_differ(shared: Homes) -> None:
    serials = set()
    for i in range(5):
        _, csr = device_csr()
        issued = shared.station.pki.issue(
            ISSUING_ID, "device-idevid", csr, device_request(f"SN-MANY-{i}"), device_serial=f"SN-MANY-{i}"
        )
        serials.add(issued.certificate.serial_number)
    assert len(serials) == 5


def test_a_station_certificate_with_a_dns_name(shared: Homes) -> None:
    _, csr = device_csr(KeyType.ED25519)
    request = NameRequest(
        {"commonName": "line1", "organizationName": "Acme"}, dns=("line1.factory.acme.example",)
    )
    issued = shared.oem.pki.issue("product-widget", "station", csr, request)
    eku = issued.certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert [u._name for u in eku] == ["clientAuth", "serverAuth"]
    assert last_entry(shared.oem).subject == "ca:product-widget"


def test_requested_extensions_are_not_copied(shared: Homes) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "I am a CA")]))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"https://{GADGET_DOMAIN}/x")]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    cert = shared.station.pki.issue(
        ISSUING_ID, "device-idevid", csr, device_request("SN-EXT"), device_serial="SN-EXT"
    ).certificate
    assert cert.subject.rfc4514_string() == "2.5.4.5=SN-EXT,O=Acme"
    assert basic_constraints(cert) == (False, None)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"https://{DEVICE_DOMAIN}/devices/SN-EXT"
    ]


def bad_signature(pem: bytes) -> bytes:
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01
    return bytes(der)


def foreign_csr(key: CertificateIssuerPrivateKeyTypes, algorithm: hashes.SHA256 | hashes.SHA512) -> bytes:
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.DER)


P256_CSR = device_csr()[1]


@dataclass(frozen=True)
class Refusal:
    csr: bytes = P256_CSR
    profile: str = "device-idevid"
    ca: str = ISSUING_ID
    serial: str | None = "SN-REFUSED"
    request: NameRequest | None = None
    order: str | None = ORDER
    not_after: datetime | None = None


REFUSALS = [
    pytest.param(Refusal(csr=b"garbage"), InvalidInput, "malformed", id="csr/malformed"),
    pytest.param(Refusal(csr=P256_CSR[:-40]), InvalidInput, "malformed", id="csr/truncated-pem"),
    pytest.param(Refusal(csr=b""), InvalidInput, "empty", id="csr/empty"),
    pytest.param(
        Refusal(csr=P256_CSR + b"\n" * (64 * 1024)),
        InvalidInput,
        "larger than 65536 bytes",
        id="csr/oversized",
    ),
    pytest.param(
        Refusal(csr=bad_signature(P256_CSR)), VerificationFailed, "does not verify", id="csr/bad-signature"
    ),
    pytest.param(
        Refusal(csr=foreign_csr(rsa.generate_private_key(65537, 2048), hashes.SHA256())),
        InvalidInput,
        "key algorithm is not supported",
        id="key/rsa",
    ),
    pytest.param(
        Refusal(csr=foreign_csr(ec.generate_private_key(ec.SECP521R1()), hashes.SHA512())),
        InvalidInput,
        "secp521r1",
        id="key/p521",
    ),
    pytest.param(
        Refusal(csr=foreign_csr(ec.generate_private_key(ec.SECP256K1()), hashes.SHA256())),
        InvalidInput,
        "secp256k1",
        id="key/secp256k1",
    ),
    pytest.param(
        Refusal(
            csr=device_csr(KeyType.MLDSA65)[1],
            profile="station",
            serial=None,
            request=NameRequest(
                {"commonName": "line1", "organizationName": "Acme"}, dns=("line1.acme.example",)
            ),
        ),
        PolicyViolation,
        "profile station does not allow ml-dsa-65 keys",
        id="key/ml-dsa-on-station",
    ),
    pytest.param(
        Refusal(request=device_request("SN-REFUSED", GADGET_DOMAIN)),
        PolicyViolation,
        f"URI host {GADGET_DOMAIN} is outside the name constraints of {ISSUING_ID}",
        id="name/other-product",
    ),
    pytest.param(
        Refusal(request=NameRequest({"organizationName": "Acme"}, dns=(f"sn-refused.{GADGET_DOMAIN}",))),
        PolicyViolation,
        f"DNS name sn-refused.{GADGET_DOMAIN} is outside the name constraints of {ISSUING_ID}",
        id="name/dns-of-other-product",
    ),
    pytest.param(
        Refusal(
            request=NameRequest(
                {"organizationName": "Acme"}, uris=(f"https://{GADGET_DOMAIN}@{DEVICE_DOMAIN}/",)
            )
        ),
        InvalidInput,
        "no userinfo",
        id="name/userinfo",
    ),
    pytest.param(Refusal(serial=None), InvalidInput, "needs the device serial", id="serial/missing"),
    pytest.param(
        Refusal(serial="SN_1"), InvalidInput, "a device serial must be", id="serial/not-a-dns-label"
    ),
    pytest.param(Refusal(profile="rsa-server"), NotFound, "no certificate profile", id="profile/unknown"),
    pytest.param(Refusal(profile="issuing-ca"), PolicyViolation, "made by the CA commands", id="profile/ca"),
    pytest.param(Refusal(ca="issuing-line9-po-9"), NotFound, "no CA", id="ca/unknown"),
    pytest.param(
        Refusal(order="po-2002"), PolicyViolation, f"issues for order {ORDER}, not po-2002", id="order/other"
    ),
    pytest.param(
        Refusal(not_after=T0 + timedelta(days=31)),
        PolicyViolation,
        "beyond the issuer",
        id="validity/beyond-issuer",
    ),
]


@pytest.mark.parametrize(("case", "error", "message"), REFUSALS)
def test_bad_requests_issue_nothing_and_are_logged(
    shared: Homes, case: Refusal, error: type[FabtrustError], message: str
) -> None:
    before = certs(shared.station)
    request = case.request or device_request(case.serial or "SN-REFUSED")
    with pytest.raises(error) as err:
        shared.station.pki.issue(
            case.ca,
            case.profile,
            case.csr,
            request,
            device_serial=case.serial,
            order_id=case.order,
            not_after=case.not_after,
        )
    assert type(err.value) is error
    assert message in err.value.message
    assert certs(shared.station) == before
    entry = assert_refused_and_logged(shared.station, "cert.issue", err.value)
    assert entry.subject == (f"device:{case.serial}" if case.serial else f"ca:{case.ca}")


def test_a_device_gets_its_canonical_names_when_none_are_given(shared: Homes) -> None:
    _, csr = device_csr()
    cert = shared.station.pki.issue(
        ISSUING_ID, "device-idevid", csr, NameRequest({"organizationName": "Acme"}), device_serial="SN-NAMES"
    ).certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"https://{DEVICE_DOMAIN}/devices/SN-NAMES"
    ]
    assert san.get_values_for_type(x509.DNSName) == [f"sn-names.{DEVICE_DOMAIN}"]


def test_a_duplicate_device_serial_is_refused(shared: Homes) -> None:
    _, first = device_csr()
    shared.station.pki.issue(
        ISSUING_ID, "device-idevid", first, device_request("SN-DUP"), device_serial="SN-DUP"
    )
    before = certs(shared.station)
    _, second = device_csr()
    with pytest.raises(Conflict, match="device serial SN-DUP has a certificate already") as err:
        shared.station.pki.issue(
            ISSUING_ID, "device-idevid", second, device_request("SN-DUP"), device_serial="SN-DUP"
        )
    assert certs(shared.station) == before
    assert_refused_and_logged(shared.station, "cert.issue", err.value)


def test_a_device_key_certified_twice_is_refused(shared: Homes) -> None:
    _, csr = device_csr()
    shared.station.pki.issue(
        ISSUING_ID, "device-idevid", csr, device_request("SN-KEY-1"), device_serial="SN-KEY-1"
    )
    before = certs(shared.station)
    with pytest.raises(Conflict, match="certified already") as err:
        shared.station.pki.issue(
            ISSUING_ID, "device-idevid", csr, device_request("SN-KEY-2"), device_serial="SN-KEY-2"
        )
    assert certs(shared.station) == before
    assert_refused_and_logged(shared.station, "cert.issue", err.value)


def test_device_identities_come_only_from_an_issuing_ca(shared: Homes) -> None:
    """A product CA holds its key at the OEM but is not order-bound: no device certificate from it
    (it would escape quota and reconciliation)."""
    before = certs(shared.oem)
    with pytest.raises(PolicyViolation, match="issued by issuing-ca only, not by product-ca") as err:
        shared.oem.pki.issue(
            "product-widget",
            "device-idevid",
            P256_CSR,
            device_request("SN-PRODUCT"),
            device_serial="SN-PRODUCT",
        )
    assert certs(shared.oem) == before
    assert_refused_and_logged(shared.oem, "cert.issue", err.value)


def test_a_home_without_the_issuing_key_cannot_issue(shared: Homes) -> None:
    before = certs(shared.oem)
    with pytest.raises(PolicyViolation, match=f"does not hold the key of CA {ISSUING_ID}") as err:
        shared.oem.pki.issue(
            ISSUING_ID, "device-idevid", P256_CSR, device_request("SN-OEM"), device_serial="SN-OEM"
        )
    assert certs(shared.oem) == before
    assert_refused_and_logged(shared.oem, "cert.issue", err.value)


def test_an_expired_issuing_ca_issues_nothing(homes: Homes, story: Story) -> None:
    _, csr = device_csr()
    homes.clock.now = story.order_end - timedelta(seconds=1)
    last_minute = homes.station.pki.issue(
        ISSUING_ID, "device-idevid", csr, device_request("SN-LATE"), device_serial="SN-LATE"
    )
    assert last_minute.certificate.not_valid_after_utc == story.order_end
    homes.clock.now = story.order_end + timedelta(seconds=1)
    before = certs(homes.station)
    _, csr = device_csr()
    with pytest.raises(PolicyViolation, match=f"issuer {ISSUING_ID} is not valid now") as err:
        homes.station.pki.issue(
            ISSUING_ID, "device-idevid", csr, device_request("SN-EXPIRED"), device_serial="SN-EXPIRED"
        )
    assert certs(homes.station) == before
    assert_refused_and_logged(homes.station, "cert.issue", err.value)


@pytest.mark.parametrize("revoked", [ISSUING_ID, "product-widget"])
def test_a_revoked_issuer_in_the_chain_issues_nothing(homes: Homes, revoked: str) -> None:
    assert revoke_ca(homes.station, revoked, "cACompromise") == 1
    before = certs(homes.station)
    with pytest.raises(PolicyViolation, match=f"issuer {revoked} is revoked") as err:
        homes.station.pki.issue(
            ISSUING_ID, "device-idevid", P256_CSR, device_request("SN-R"), device_serial="SN-R"
        )
    assert certs(homes.station) == before
    assert_refused_and_logged(homes.station, "cert.issue", err.value)


# -- signing issuing CAs ---------------------------------------------------------------------------


def station_csr(home: Home, key_type: KeyType = KeyType.P256, label: str = "po-2002") -> bytes:
    info = home.keys.generate(label, key_type, KeyUsage.SIGN, purpose="issuing CA")
    return make_csr(home.keystore(), info.uri, {"commonName": f"line1 {label}", "organizationName": "Acme"})


@pytest.fixture(scope="module")
def po2002_csr(shared: Homes) -> bytes:
    return station_csr(shared.station)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        pytest.param(
            {"not_after": T0 + timedelta(days=6000)}, PolicyViolation, "at most 400 days", id="beyond-profile"
        ),
        pytest.param({"not_after": T0 - timedelta(days=1)}, InvalidInput, "later than now", id="window-over"),
        pytest.param(
            {"csr": b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA"}, InvalidInput, "malformed", id="bad-csr"
        ),
        pytest.param({"product": "sprocket"}, NotFound, "no CA 'product-sprocket'", id="unknown-product"),
        pytest.param({"station": "Line 1"}, InvalidInput, "must be 1-41 characters", id="bad-station-name"),
        pytest.param(
            {"order_id": ORDER}, Conflict, f"CA '{ISSUING_ID}' exists already", id="same-order-again"
        ),
    ],
)
def test_bad_issuing_ca_requests_are_refused_and_logged(
    shared: Homes, po2002_csr: bytes, change: dict[str, Any], error: type[FabtrustError], message: str
) -> None:
    args: dict[str, Any] = {
        "product": "widget",
        "csr": po2002_csr,
        "station": "line1",
        "order_id": "po-2002",
        "not_after": T0 + timedelta(days=60),
        **change,
    }
    before = cas(shared.oem)
    with pytest.raises(error) as err:
        shared.oem.pki.sign_issuing_ca(
            args["product"],
            args["csr"],
            station=args["station"],
            order_id=args["order_id"],
            not_after=args["not_after"],
        )
    assert type(err.value) is error
    assert message in err.value.message
    assert cas(shared.oem) == before
    assert_refused_and_logged(shared.oem, "ca.sign-issuing", err.value)


@pytest.mark.parametrize("key_type", [KeyType.ED25519, KeyType.MLDSA65], ids=lambda k: k.value)
def test_issuing_ca_keys_must_be_ecdsa(shared: Homes, key_type: KeyType) -> None:
    # the station's key store signs CSRs with ECDSA and Ed25519 only: an ML-DSA request is made outside it
    csr = (
        station_csr(shared.station, key_type, "po-ed")
        if key_type is KeyType.ED25519
        else device_csr(key_type)[1]
    )
    before = cas(shared.oem)
    with pytest.raises(PolicyViolation, match=f"does not allow {key_type.value} keys") as err:
        shared.oem.pki.sign_issuing_ca(
            "widget", csr, station="line1", order_id="po-3003", not_after=T0 + timedelta(days=9)
        )
    assert cas(shared.oem) == before
    assert_refused_and_logged(shared.oem, "ca.sign-issuing", err.value)


def test_issuing_ca_beyond_its_product_ca_is_refused(homes: Homes, story: Story) -> None:
    # move to a year before the product CA ends: an order window past that end is refused
    homes.clock.now = story.product.not_valid_after_utc - timedelta(days=200)
    csr = station_csr(homes.station)
    with pytest.raises(PolicyViolation, match="beyond the issuer's"):
        homes.oem.pki.sign_issuing_ca(
            "widget",
            csr,
            station="line1",
            order_id="po-2002",
            not_after=story.product.not_valid_after_utc + timedelta(days=1),
        )
    inside = homes.oem.pki.sign_issuing_ca(
        "widget", csr, station="line1", order_id="po-2002", not_after=story.product.not_valid_after_utc
    )
    assert inside.certificate.not_valid_after_utc == story.product.not_valid_after_utc


def test_revoking_a_ca_spends_an_approval_of_that_ca_and_reason(homes: Homes) -> None:
    home = homes.station
    record = home.pki.ca(ISSUING_ID)
    other = approved(home, CA_REVOKE, f"ca:{ISSUING_ID}", ca_revoke_terms(record, "superseded"))
    before = cas(home)
    with pytest.raises(PolicyViolation, match="other terms") as err:
        home.pki.revoke(
            reason="cACompromise", issuing_ca=ISSUING_ID, approval=other
        )  # not the approved reason
    assert cas(home) == before
    assert home.access.show_request(other.request_id).status.value == "pending"
    assert_refused_and_logged(home, "ca.revoke", err.value)

    ticket = approved(home, CA_REVOKE, f"ca:{ISSUING_ID}", ca_revoke_terms(record, "cACompromise"))
    assert home.pki.revoke(reason="cACompromise", issuing_ca=ISSUING_ID, approval=ticket) == 1
    assert home.pki.ca(ISSUING_ID).status == "revoked"
    done = entries(home)[-1]
    assert (done.action, done.details["request_id"]) == ("ca.revoke", ticket.request_id)
    assert done.details["approvers"] == ["security-officer-1"]
    assert home.access.show_request(ticket.request_id).executed_by == ticket.caller.principal_id
    with pytest.raises(Conflict, match="executed"):
        home.pki.revoke(reason="cACompromise", issuing_ca=ISSUING_ID, approval=ticket)  # replayed


def test_a_revoked_product_ca_signs_no_issuing_ca(homes: Homes) -> None:
    revoke_ca(homes.oem, "product-widget", "cACompromise")
    before = cas(homes.oem)
    with pytest.raises(PolicyViolation, match="issuer product-widget is revoked") as err:
        homes.oem.pki.sign_issuing_ca(
            "widget",
            station_csr(homes.station),
            station="line1",
            order_id="po-2002",
            not_after=T0 + timedelta(days=9),
        )
    assert cas(homes.oem) == before
    assert_refused_and_logged(homes.oem, "ca.sign-issuing", err.value)


# -- product CAs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        pytest.param({"key_type": KeyType.ED25519}, PolicyViolation, "does not allow ed25519", id="key-type"),
        pytest.param(
            {"attributes": {"commonName": "C" * 65, "organizationName": "Acme"}},
            InvalidInput,
            "1-64",
            id="subject",
        ),
        pytest.param({"validity_days": 6000}, PolicyViolation, "at most 5475 days", id="too-long"),
        pytest.param({"device_domain": "not a domain"}, InvalidInput, "not a valid DNS name", id="domain"),
        pytest.param({"name": "widget"}, Conflict, "exists already", id="exists"),
        pytest.param({"name": "Sprocket!"}, InvalidInput, "must be 1-41 characters", id="bad-name"),
    ],
)
def test_bad_product_cas_leave_no_key_behind(
    shared: Homes, change: dict[str, Any], error: type[FabtrustError], message: str
) -> None:
    args: dict[str, Any] = {
        "name": "sprocket",
        "attributes": {"commonName": "Acme Sprocket CA", "organizationName": "Acme"},
        "device_domain": "sprocket.devices.acme.example",
        "key_type": KeyType.P384,
        "validity_days": None,
        **change,
    }
    before = (cas(shared.oem), keys(shared.oem))
    with pytest.raises(error) as err:
        shared.oem.pki.create_product_ca(args.pop("name"), **args)
    assert message in err.value.message
    assert (cas(shared.oem), keys(shared.oem)) == before
    assert_refused_and_logged(shared.oem, "ca.create-product", err.value)


# -- revocation state ------------------------------------------------------------------------------


def issue_some(home: Home, *serials: str, order: str | None = ORDER) -> list[str]:
    out = []
    for serial in serials:
        _, csr = device_csr()
        out.append(
            home.pki.issue(
                ISSUING_ID, "device-idevid", csr, device_request(serial), device_serial=serial, order_id=order
            ).serial
        )
    return out


def test_revoking_by_serial_device_and_order(homes: Homes) -> None:
    pki = homes.station.pki
    a, b, c, d = issue_some(homes.station, "SN-A", "SN-B", "SN-C", "SN-D")
    homes.clock.now += timedelta(minutes=5)
    assert pki.revoke(reason="keyCompromise", ca_id=ISSUING_ID, serial=a.upper()) == 1  # hex, any case
    _, row = pki.certificate(ISSUING_ID, a)
    assert (row["status"], row["revocation_reason"]) == ("revoked", "keyCompromise")
    assert row["revoked_at"].replace(tzinfo=UTC) == homes.clock.now
    assert pki.revoke(reason="keyCompromise", ca_id=ISSUING_ID, serial=a) == 0  # already revoked: no error
    assert pki.revoke(reason="superseded", device_serial="SN-B") == 1
    assert pki.revoke(reason="cessationOfOperation", order_id=ORDER) == 2  # C and D are left
    assert {r["serial"]: r["status"] for r in pki.certificates(ISSUING_ID)} == dict.fromkeys(
        (a, b, c, d), "revoked"
    )
    logged = [(e.subject, e.details["count"]) for e in entries(homes.station) if e.action == "cert.revoke"]
    assert logged == [
        (f"cert:{ISSUING_ID}:{a.upper()}", 1),
        (f"cert:{ISSUING_ID}:{a}", 0),
        ("device:SN-B", 1),
        (f"order:{ORDER}", 2),
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        pytest.param(
            {"reason": "certificateHold", "device_serial": "SN-A"},
            InvalidInput,
            "unknown revocation reason",
            id="hold",
        ),
        pytest.param(
            {"reason": "superseded", "serial": "abc"},
            InvalidInput,
            "revoke one thing",
            id="serial-without-ca",
        ),
        pytest.param(
            {"reason": "superseded", "device_serial": "SN-A", "order_id": ORDER},
            InvalidInput,
            "revoke one thing",
            id="two-things",
        ),
        pytest.param(
            {"reason": "superseded", "device_serial": "SN-NONE"},
            NotFound,
            "no such certificate",
            id="unknown-device",
        ),
        pytest.param(
            {"reason": "superseded", "ca_id": ISSUING_ID, "serial": "123456"},
            NotFound,
            "no such certificate",
            id="unknown-serial",
        ),
        pytest.param(
            {"reason": "cACompromise", "issuing_ca": "root"},
            PolicyViolation,
            "root cannot be revoked",
            id="root",
        ),
        pytest.param(
            {"reason": "cACompromise", "issuing_ca": "issuing-x-y"}, NotFound, "no CA", id="unknown-ca"
        ),
        pytest.param(
            {"reason": "cACompromise", "issuing_ca": ISSUING_ID},
            PolicyViolation,
            "needs an approved ca.revoke request",
            id="ca-without-approval",
        ),
    ],
)
def test_bad_revocations_change_nothing(
    shared: Homes, kwargs: dict[str, Any], error: type[FabtrustError], message: str
) -> None:
    before = (certs(shared.station), cas(shared.station))
    with pytest.raises(error, match=message):
        shared.station.pki.revoke(**kwargs)
    assert (certs(shared.station), cas(shared.station)) == before


# -- CA bundles ------------------------------------------------------------------------------------


def edit_bundle(bundle: bytes, edit: Callable[[dict[str, Any]], object]) -> bytes:
    doc = json.loads(bundle)
    edit(doc)
    return json.dumps(doc).encode()


def test_a_bundle_adopted_without_a_key_records_the_chain(story: Story, tmp_path: Path) -> None:
    with Home.init(
        tmp_path / "auditor",
        passphrase=lambda: "auditor-passphrase",
        pin=never,
        actor="auditor",
        clock=MovableClock(T0 + timedelta(hours=1)),
    ) as auditor:
        record = auditor.pki.adopt_bundle(story.bundle, key_uri=None)
        assert record.ca_id == ISSUING_ID
        assert [(r.ca_id, r.key_uri) for r in auditor.pki.chain(ISSUING_ID)] == [
            (ISSUING_ID, None),
            ("product-widget", None),
            ("root", None),
        ]
        again = auditor.pki.adopt_bundle(story.bundle, key_uri=None)  # idempotent
        assert again == record
        with pytest.raises(PolicyViolation, match="does not hold the key"):
            auditor.pki.issue(
                ISSUING_ID, "device-idevid", P256_CSR, device_request("SN-X"), device_serial="SN-X"
            )


def swap_product_certificate(story: Story) -> Callable[[dict[str, Any]], object]:
    gadget_pem = story.gadget.public_bytes(serialization.Encoding.PEM).decode()
    return lambda doc: doc["cas"][1].update(certificate=gadget_pem)


BUNDLE_REFUSALS = [
    pytest.param(
        lambda s, o: swap_product_certificate(s), None, PolicyViolation, "does not link", id="broken-link"
    ),
    pytest.param(
        lambda s, o: (
            lambda doc: doc["cas"][2].update(ca_id="root-2") or doc["cas"][1].update(parent_id="root-2")
        ),
        None,
        InvalidInput,
        "must end at the root CA 'root'",
        id="root-renamed",
    ),
    pytest.param(lambda s, o: lambda doc: doc["cas"].pop(), None, InvalidInput, "parent", id="root-missing"),
    pytest.param(
        lambda s, o: lambda doc: doc.update(format="fabtrust.ca-bundle/v2"),
        None,
        InvalidInput,
        "not a fabtrust.ca-bundle/v1",
        id="format",
    ),
    pytest.param(
        lambda s, o: lambda doc: doc["cas"][0].update(extra=1),
        None,
        InvalidInput,
        "unknown fields",
        id="unknown-field",
    ),
    pytest.param(
        lambda s, o: lambda doc: doc["cas"][0].update(certificate="junk"),
        None,
        InvalidInput,
        "no valid certificate",
        id="bad-certificate",
    ),
    pytest.param(
        None, "spare", PolicyViolation, "the key does not belong to the CA certificate", id="wrong-key"
    ),
    pytest.param(None, "soft:no-such-key", NotFound, "", id="unknown-key"),
]


@pytest.mark.parametrize(("make_edit", "key", "error", "message"), BUNDLE_REFUSALS)
def test_bad_bundles_are_refused_and_logged(
    shared: Homes, story: Story, make_edit: Any, key: str | None, error: type[FabtrustError], message: str
) -> None:
    bundle = edit_bundle(story.bundle, make_edit(story, None)) if make_edit else story.bundle
    key_uri = story.spare_key if key == "spare" else key
    before = cas(shared.station)
    with pytest.raises(error) as err:
        shared.station.pki.adopt_bundle(bundle, key_uri=key_uri)
    assert message in err.value.message
    assert cas(shared.station) == before
    entry = assert_refused_and_logged(shared.station, "ca.adopt", err.value)
    assert entry.details["bundle_sha256"] == hashlib.sha256(bundle).hexdigest()


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b"\xff"], ids=["empty", "truncated", "list", "not-utf8"])
def test_unparseable_bundles_are_refused_and_logged(shared: Homes, raw: bytes) -> None:
    before = cas(shared.station)
    with pytest.raises(InvalidInput) as err:
        shared.station.pki.adopt_bundle(raw, key_uri=None)
    assert cas(shared.station) == before
    assert_refused_and_logged(shared.station, "ca.adopt", err.value)


def test_a_bundle_from_a_foreign_root_is_refused(shared: Homes, other_oem: Story) -> None:
    before = cas(shared.station)
    with pytest.raises(Conflict, match="CA 'root' exists here with another certificate") as err:
        shared.station.pki.adopt_bundle(other_oem.bundle, key_uri=None)
    assert cas(shared.station) == before
    assert_refused_and_logged(shared.station, "ca.adopt", err.value)


# -- the root ceremony -----------------------------------------------------------------------------


def test_the_transcript_is_signed_by_the_root_and_names_everything_but_the_shares(
    story: Story, shared: Homes
) -> None:
    ceremony = story.ceremony
    envelope = dsse.Envelope.parse(ceremony.transcript)
    payload = dsse.verify(envelope, CEREMONY_TYPE, trusted(story.root))
    doc = json.loads(payload)
    assert doc["format"] == "fabtrust.root-ceremony/v1"
    assert doc["ceremony"] == ceremony.ceremony_id
    assert doc["time"] == "2031-03-03T09:00:00Z"
    assert doc["operator"] == "oem-officer"
    assert doc["root"]["fingerprint"] == fingerprint(story.root)
    assert doc["threshold"] == 3
    shares = {name: json.loads(document) for name, document in ceremony.shares}
    assert [(c["custodian"], c["index"], c["share_fingerprint"]) for c in doc["custodians"]] == [
        (name, share["index"], share["share_fingerprint"]) for name, share in shares.items()
    ]
    assert list(shares) == [name for name, _ in CUSTODIANS]
    assert doc["backup_sha256"] == hashlib.sha256(ceremony.backup).hexdigest()
    # never share contents: not the sealed documents' secrets, nor the opened shares
    text = ceremony.transcript + payload
    for name, document in ceremony.shares[:3]:
        sealed = json.loads(document)
        for secret in (sealed["ciphertext"], sealed["kdf"]["salt"], sealed["kdf"]["check"], sealed["nonce"]):
            assert secret.encode() not in text
        share = custody.open_share(document, dict(CUSTODIANS)[name]).share
        for encoded in (share.data.hex(), base64.b64encode(share.data).decode(), share.data):
            assert (encoded.encode() if isinstance(encoded, str) else encoded) not in text
    # ... and it is logged
    logged = next(e for e in entries(shared.oem) if e.action == "ca.init-root")
    assert logged.details["transcript_sha256"] == hashlib.sha256(payload).hexdigest()
    assert logged.details["fingerprint"] == fingerprint(story.root)
    assert (logged.details["threshold"], logged.details["custodians"]) == (3, 5)


def test_a_tampered_transcript_does_not_verify(story: Story, other_oem: Story) -> None:
    envelope = dsse.Envelope.parse(story.ceremony.transcript)
    forged = dsse.Envelope(
        envelope.payload_type,
        envelope.payload.replace(b'"threshold": 3', b'"threshold": 2'),
        envelope.signatures,
    )
    with pytest.raises(VerificationFailed):
        dsse.verify(forged, CEREMONY_TYPE, trusted(story.root))
    with pytest.raises(VerificationFailed, match="0 valid signature"):
        dsse.verify(envelope, CEREMONY_TYPE, trusted(other_oem.root))


def test_a_second_ceremony_is_refused(shared: Homes) -> None:
    before = (cas(shared.oem), keys(shared.oem))
    with pytest.raises(Conflict, match="a root CA exists already") as err:
        shared.oem.pki.init_root(
            attributes={"commonName": "Root 2", "organizationName": "Acme"},
            custodians=CUSTODIANS,
            threshold=3,
            scrypt_n=FAST_N,
        )
    assert (cas(shared.oem), keys(shared.oem)) == before
    assert_refused_and_logged(shared.oem, "ca.init-root", err.value)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        pytest.param(
            {"attributes": {"commonName": "Root", "organizationName": "Acme", "countryName": "de"}},
            InvalidInput,
            "countryName",
            id="subject",
        ),
        pytest.param(
            {"custodians": [("a", "aaaaaaaa1"), ("b", "short")]},
            InvalidInput,
            "too short",
            id="short-passphrase",
        ),
        pytest.param({"threshold": 6}, InvalidInput, "larger than the number of custodians", id="threshold"),
        pytest.param(
            {"key_type": KeyType.ED25519}, PolicyViolation, "root key must be one of", id="key-type"
        ),
        pytest.param({"validity_days": 10000}, PolicyViolation, "at most 9125 days", id="validity"),
        pytest.param({"base_url": "https://pki.acme.example"}, InvalidInput, "http://host", id="base-url"),
    ],
)
def test_a_refused_ceremony_leaves_no_key(
    tmp_path: Path, change: dict[str, Any], error: type[FabtrustError], message: str
) -> None:
    with Home.init(tmp_path / "h", passphrase=lambda: OEM_PASSPHRASE, pin=never, actor="oem-officer") as home:
        before = keys(home)
        args: dict[str, Any] = {
            "attributes": {"commonName": "Root", "organizationName": "Acme"},
            "custodians": CUSTODIANS,
            "threshold": 3,
            "scrypt_n": FAST_N,
            **change,
        }
        with pytest.raises(error) as err:
            home.pki.init_root(**args)
        assert message in err.value.message
        assert keys(home) == before
        assert cas(home) == []
        assert_refused_and_logged(home, "ca.init-root", err.value)


def opened(story: Story, *numbers: int) -> list[custody.CustodianShare]:
    return [custody.open_share(story.ceremony.shares[n - 1][1], CUSTODIANS[n - 1][1]) for n in numbers]


def test_the_root_is_restored_from_three_shares_and_signs_again(story: Story, tmp_path: Path) -> None:
    clock = MovableClock(T0 + timedelta(days=1))
    with Home.init(
        tmp_path / "dr", passphrase=lambda: OEM_PASSPHRASE, pin=never, actor="dr-officer", clock=clock
    ) as home:
        record = home.pki.restore_root(
            story.ceremony.backup,
            opened(story, 2, 4, 5),
            root_certificate=story.root,
            approval=restore_ticket(home, story.root),
        )
        assert record.certificate == story.root
        assert home.keystore().get(record.key_uri or "").public_key_der == spki_der(story.root.public_key())  # type: ignore[arg-type]
        product = home.pki.create_product_ca(
            "sprocket",
            attributes={"commonName": "Acme Sprocket CA", "organizationName": "Acme"},
            device_domain="sprocket.acme.example",
        )
        product.certificate.verify_directly_issued_by(story.root)
        restored = next(e for e in entries(home) if e.action == "ca.restore-root")
        assert restored.details["custodians"] == ["custodian-2", "custodian-4", "custodian-5"]
        assert restored.details["fingerprint"] == fingerprint(story.root)


def test_a_restore_needs_an_approval_for_that_root_and_imports_nothing_without(
    story: Story, other_oem: Story, tmp_path: Path
) -> None:
    with Home.init(tmp_path / "dr", passphrase=lambda: OEM_PASSPHRASE, pin=never, actor="dr-officer") as home:
        wrong = restore_ticket(home, other_oem.root)  # approved: another OEM's root
        before = keys(home)
        with pytest.raises(PolicyViolation, match="other terms") as err:
            home.pki.restore_root(
                story.ceremony.backup, opened(story, 1, 2, 3), root_certificate=story.root, approval=wrong
            )
        assert keys(home) == before
        assert cas(home) == []
        assert home.access.show_request(wrong.request_id).status.value == "pending"
        entry = assert_refused_and_logged(home, "ca.restore-root", err.value)
        assert entry.details["request_id"] == wrong.request_id


@pytest.mark.parametrize(
    ("shares", "root", "error", "message"),
    [
        pytest.param("two", "own", InvalidInput, "2 of 3 shares given", id="too-few"),
        pytest.param("foreign", "own", InvalidInput, "share from another ceremony", id="other-ceremony"),
        pytest.param(
            "own", "foreign", PolicyViolation, "does not belong to the root certificate", id="other-root-cert"
        ),
        pytest.param("own", None, InvalidInput, "give the root certificate", id="no-root-cert"),
    ],
)
def test_a_refused_restore_changes_nothing(
    story: Story,
    other_oem: Story,
    tmp_path: Path,
    shares: str,
    root: str | None,
    error: type[FabtrustError],
    message: str,
) -> None:
    chosen = {
        "two": opened(story, 1, 2),
        "own": opened(story, 1, 2, 3),
        "foreign": [*opened(story, 1, 2), *opened(other_oem, 3)],
    }[shares]
    cert = {"own": story.root, "foreign": other_oem.root, None: None}[root]
    with Home.init(tmp_path / "dr", passphrase=lambda: OEM_PASSPHRASE, pin=never, actor="dr-officer") as home:
        ticket = restore_ticket(home, story.root)
        before = keys(home)
        with pytest.raises(error) as err:
            home.pki.restore_root(story.ceremony.backup, chosen, root_certificate=cert, approval=ticket)
        assert message in err.value.message
        assert keys(home) == before
        assert cas(home) == []
        assert_refused_and_logged(home, "ca.restore-root", err.value)


def test_only_a_callers_transaction_may_carry_the_issuance_entries(tmp_path: Path) -> None:
    """``audited_by_caller`` leaves the cert.issue entries to the caller's own entries in the same
    transaction; without that transaction nothing would log the certificate, so it is refused."""
    with Home.init(tmp_path / "h", passphrase=lambda: "passphrase-h", pin=lambda: "") as home:
        size = home.log.size()
        request = IssueRequest("issuing-x", "device-idevid", b"csr", NameRequest({}), "sn-1", "po-1")
        with pytest.raises(InvalidInput, match="caller's own transaction"):
            home.pki.issue_batch([request], audited_by_caller=True)
        assert home.log.size() == size
