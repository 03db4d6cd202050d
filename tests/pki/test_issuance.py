"""The pure rules of issuance (``fabtrust.pki.issuance``): subjects, subject alternative names, name
constraints (RFC 5280 4.2.1.10), the chain (4.2.1.9 path length, validity, revocation), validity
clamping, serial numbers (4.1.2.2), CSR loading and what a certificate of each profile contains.

Issuers here are synthetic certificates made with a software key: the rules take certificates and
time as values, so no key store or database is involved."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, ExtensionOID, NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from fabtrust.crypto.keys import KeyType
from fabtrust.errors import FabtrustError, InvalidInput, PolicyViolation, VerificationFailed
from fabtrust.pki import issuance
from fabtrust.pki.issuance import (
    MAX_CSR_BYTES,
    IssuerView,
    NameRequest,
    Urls,
    build_certificate,
    check_chain,
    check_name_constraints,
    csr_key_type,
    load_csr,
    san_entries,
    subject_name,
    validity,
)
from fabtrust.pki.profiles import Profile, Profiles

NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
PROFILES = Profiles.builtin()
DEVICE = PROFILES.get("device-idevid")
STATION = PROFILES.get("station")
ISSUING = PROFILES.get("issuing-ca")
PRODUCT = PROFILES.get("product-ca")
ROOT = PROFILES.get("root-ca")
CA_KEY = ec.generate_private_key(ec.SECP256R1())
URLS = Urls(crl="http://pki.example.com/pki/crl/issuing.crl", ocsp="http://pki.example.com/pki/ocsp")
DEVICE_HOST = "widget.devices.example.com"


def make_ca(
    name: str,
    *,
    path_length: int | None = 0,
    ca: bool | None = True,
    not_before: datetime = NOW - timedelta(days=1),
    not_after: datetime = NOW + timedelta(days=365),
    permitted: Sequence[x509.GeneralName] | None = None,
    excluded: Sequence[x509.GeneralName] | None = None,
) -> x509.Certificate:
    """A synthetic (self-signed) CA certificate; ``ca=None`` leaves out basicConstraints."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(CA_KEY.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(CA_KEY.public_key()), critical=False)
    )
    if ca is not None:
        builder = builder.add_extension(
            x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True
        )
    if permitted is not None or excluded is not None:
        builder = builder.add_extension(
            x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded), critical=True
        )
    return builder.sign(CA_KEY, hashes.SHA256())


def view(name: str, **kwargs: object) -> IssuerView:
    revoked = bool(kwargs.pop("revoked", False))
    return IssuerView(make_ca(name, **kwargs), revoked, name)  # type: ignore[arg-type]


def csr_for(
    key: CertificateIssuerPrivateKeyTypes,
    *,
    subject: x509.Name | None = None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
) -> x509.CertificateSigningRequest:
    builder = x509.CertificateSigningRequestBuilder().subject_name(subject or x509.Name([]))
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    algorithm = (
        None if isinstance(key, ed25519.Ed25519PrivateKey | mldsa.MLDSA65PrivateKey) else hashes.SHA256()
    )
    return builder.sign(key, algorithm)


def pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def der(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.DER)


# -- subject -------------------------------------------------------------------------------------


def test_subject_comes_in_a_fixed_order_whatever_the_request_order() -> None:
    name = subject_name(
        DEVICE, {"commonName": "Widget 42", "serialNumber": "SN-42", "organizationName": "Acme"}
    )
    assert [a.oid for a in name] == [NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME, NameOID.SERIAL_NUMBER]
    assert name.rfc4514_string() == "2.5.4.5=SN-42,CN=Widget 42,O=Acme"
    root = subject_name(ROOT, {"commonName": "Acme Root", "organizationName": "Acme", "countryName": "DE"})
    assert [a.oid for a in root] == [NameOID.COUNTRY_NAME, NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME]


@pytest.mark.parametrize(
    ("attributes", "error", "message"),
    [
        pytest.param(
            {"organizationName": "Acme"}, InvalidInput, "requires subject serialNumber", id="missing-serial"
        ),
        pytest.param(
            {"serialNumber": "SN1", "organizationName": ""},
            InvalidInput,
            "requires subject",
            id="empty-required",
        ),
        pytest.param(
            {"serialNumber": "SN1", "organizationName": "Acme", "countryName": "DE"},
            PolicyViolation,
            "does not allow subject countryName",
            id="not-in-profile",
        ),
        pytest.param(
            {"serialNumber": "SN1", "organizationName": "Acme", "emailAddress": "a@b.c"},
            InvalidInput,
            "unknown subject attributes: emailAddress",
            id="unknown-attribute",
        ),
        pytest.param(
            {"serialNumber": "SN1", "organizationName": "A" * 65},
            InvalidInput,
            "1-64 characters",
            id="too-long",
        ),
        pytest.param(
            {"serialNumber": "SN1", "organizationName": "Acme\nEvil"},
            InvalidInput,
            "control",
            id="control-char",
        ),
        pytest.param(
            {"serialNumber": "SN1", "organizationName": " Acme"}, InvalidInput, "1-64", id="leading-space"
        ),
        pytest.param(
            {"serialNumber": "SN_1", "organizationName": "Acme"},
            InvalidInput,
            "PrintableString",
            id="serial-underscore",
        ),
        pytest.param(
            {"serialNumber": "SN*1", "organizationName": "Acme"},
            InvalidInput,
            "PrintableString",
            id="serial-asterisk",
        ),
        pytest.param(
            {"serialNumber": "SNé1", "organizationName": "Acme"},
            InvalidInput,
            "PrintableString",
            id="serial-non-ascii",
        ),
        pytest.param(
            {"serialNumber": "S" * 65, "organizationName": "Acme"}, InvalidInput, "1-64", id="serial-too-long"
        ),
    ],
)
def test_bad_device_subjects_are_refused(
    attributes: dict[str, str], error: type[FabtrustError], message: str
) -> None:
    with pytest.raises(error) as err:
        subject_name(DEVICE, attributes)
    assert type(err.value) is error
    assert message in err.value.message


_VALUE = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")) | st.sampled_from('#\\"+,;<> ='), min_size=1, max_size=64
).filter(lambda v: v == v.strip())
_PRINTABLE_VALUE = st.text("AZaz09 '()+,-./:=?", min_size=1, max_size=64).filter(lambda v: v == v.strip())


@st.composite
def _subjects(draw: st.DrawFn) -> issuance.Subject:
    values = {
        "countryName": draw(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=2, max_size=2)),
        "organizationName": draw(_VALUE),
        "organizationalUnitName": draw(_VALUE),
        "commonName": draw(_VALUE.filter(lambda v: len(v.encode()) <= 64)),
        "serialNumber": draw(_PRINTABLE_VALUE),
    }
    wanted = draw(st.sets(st.sampled_from(sorted(values)), min_size=1))
    return issuance.check_subject(ANY_SUBJECT, {k: v for k, v in values.items() if k in wanted})


ANY_SUBJECT = ROOT.model_copy(
    update={
        "subject": ROOT.subject.model_copy(
            update={"required": (), "optional": tuple(issuance._ORDER)}  # every attribute fabtrust knows
        )
    }
)


@given(_subjects())
@settings(max_examples=300, deadline=None)
def test_a_subject_is_encoded_and_written_as_cryptography_does(subject: issuance.Subject) -> None:
    name = subject.name()
    assert subject.der() == name.public_bytes()
    assert subject.rfc4514() == name.rfc4514_string()


def test_a_subject_value_with_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(InvalidInput, match="not valid Unicode"):
        subject_name(DEVICE, {"serialNumber": "SN1", "organizationName": "Acme \udc80 Ltd"})


def test_a_common_name_is_at_most_64_bytes_in_utf8_as_cryptography_counts() -> None:
    attributes = {"serialNumber": "SN1", "organizationName": "Acme", "commonName": "ü" * 32}
    assert subject_name(DEVICE, attributes).rfc4514_string().startswith("2.5.4.5=SN1,CN=ü")
    with pytest.raises(InvalidInput, match="commonName must be at most 64 bytes"):
        issuance.check_subject(DEVICE, {**attributes, "commonName": "ü" * 33})


@pytest.mark.parametrize("country", ["de", "DEU", "D1", ""])
def test_country_must_be_two_capital_letters(country: str) -> None:
    with pytest.raises(InvalidInput, match=r"countryName must be|countryName must be 1-2 characters"):
        subject_name(ROOT, {"commonName": "Root", "organizationName": "Acme", "countryName": country})


# -- subject alternative names ---------------------------------------------------------------------

GOOD_URIS = [
    f"https://{DEVICE_HOST}/devices/SN-1",
    f"https://{DEVICE_HOST}:8443/devices/SN-1",
    f"https://{DEVICE_HOST.upper()}/devices/SN-1",
    f"http://{DEVICE_HOST}",
    f"https://{DEVICE_HOST}/",
    f"https://{DEVICE_HOST}/devices/SN%2F1?rev=2#top",
]


@pytest.mark.parametrize("uri", GOOD_URIS)
def test_device_uris_that_every_verifier_reads_alike_are_accepted(uri: str) -> None:
    names = san_entries(DEVICE, NameRequest({"serialNumber": "SN1"}, uris=(uri,)))
    assert names == [x509.UniformResourceIdentifier(uri)]


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        pytest.param("ftp://widget.devices.example.com/x", "http(s) URI with a host", id="ftp"),
        pytest.param("urn:dev:sn:1", "http(s) URI with a host", id="urn-no-host"),
        pytest.param("https:///devices/1", "http(s) URI with a host", id="empty-host"),
        pytest.param("https://widget.devices.example.com/a b", "printable ASCII", id="space"),
        pytest.param("https://wïdget.devices.example.com/x", "printable ASCII", id="non-ascii"),
        pytest.param(f"https://{DEVICE_HOST}/" + "x" * 250, "http(s) URI with a host", id="too-long"),
        pytest.param("https://localhost/x", "not a valid DNS name", id="single-label"),
        pytest.param("https://[2001:db8::1]/x", "not a valid DNS name", id="ip-literal"),
        pytest.param("https://under_score.example.com/x", "not a valid DNS name", id="bad-label"),
        # parsed alike by every verifier: OpenSSL reads the host up to the next ':' or '/'
        pytest.param(f"https://evil.example@{DEVICE_HOST}/x", "no userinfo", id="userinfo"),
        pytest.param(f"https://{DEVICE_HOST}./x", "trailing dot", id="trailing-dot"),
        pytest.param(f"https://{DEVICE_HOST}?sn=1", "right after the host", id="query-after-host"),
        pytest.param(f"https://{DEVICE_HOST}#sn1", "right after the host", id="fragment-after-host"),
        pytest.param(f"https://{DEVICE_HOST}:99999/x", "invalid port", id="port-out-of-range"),
        pytest.param(f"https://{DEVICE_HOST}:https/x", "invalid port", id="port-not-a-number"),
    ],
)
def test_bad_device_uris_are_refused(uri: str, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        san_entries(DEVICE, NameRequest({"serialNumber": "SN1"}, uris=(uri,)))
    assert message in err.value.message


def test_a_device_needs_its_uri() -> None:
    with pytest.raises(InvalidInput, match="device-idevid needs a subject alternative name"):
        san_entries(DEVICE, NameRequest({"serialNumber": "SN1", "organizationName": "Acme"}))


@pytest.mark.parametrize(
    ("profile", "request_", "message"),
    [
        pytest.param(DEVICE, NameRequest({}, ips=("192.0.2.1",)), "does not allow ip", id="device-ip"),
        pytest.param(STATION, NameRequest({}, ips=("192.0.2.1",)), "does not allow ip", id="station-ip"),
    ],
)
def test_san_types_outside_the_profile_are_refused(
    profile: Profile, request_: NameRequest, message: str
) -> None:
    with pytest.raises(PolicyViolation, match=message):
        san_entries(profile, request_)


def test_dns_names_are_normalised() -> None:
    names = san_entries(STATION, NameRequest({}, dns=("Line1.Factory.EXAMPLE.com.",)))
    assert names == [x509.DNSName("line1.factory.example.com")]


@pytest.mark.parametrize(
    "name",
    [
        "-line1.example.com",
        "line1-.example.com",
        "a..example.com",
        "x" * 64 + ".example.com",
        "localhost",
        "*.example.com",
    ],
)
def test_bad_dns_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidInput, match="not a valid DNS name"):
        san_entries(STATION, NameRequest({}, dns=(name,)))


def test_a_station_needs_a_name() -> None:
    with pytest.raises(InvalidInput, match="station needs a subject alternative name"):
        san_entries(STATION, NameRequest({"commonName": "line1", "organizationName": "Acme"}))


# -- name constraints (RFC 5280 4.2.1.10) -----------------------------------------------------------


def uri_nc(*bases: str, excluded: Sequence[str] = ()) -> IssuerView:
    return view(
        "issuing",
        permitted=[x509.UniformResourceIdentifier(b) for b in bases] or None,
        excluded=[x509.UniformResourceIdentifier(b) for b in excluded] or None,
    )


@pytest.mark.parametrize(
    ("base", "uri", "permitted"),
    [
        # "When the constraint does not begin with a period, it specifies a host."
        pytest.param("widget.example.com", "https://widget.example.com/d/1", True, id="host/same"),
        pytest.param(
            "widget.example.com", "https://WIDGET.Example.com/d/1", True, id="host/case-insensitive"
        ),
        pytest.param("widget.example.com", "https://widget.example.com:8443/d", True, id="host/with-port"),
        pytest.param("widget.example.com", "https://a.widget.example.com/d", False, id="host/subdomain"),
        pytest.param("widget.example.com", "https://example.com/d", False, id="host/parent"),
        pytest.param(
            "widget.example.com", "https://evilwidget.example.com/d", False, id="host/suffix-not-label"
        ),
        pytest.param("widget.example.com", "https://widget.example.com.evil.org/d", False, id="host/prefix"),
        # ".example.com" "is satisfied by both host.example.com and my.host.example.com" ...
        pytest.param(".example.com", "https://host.example.com/", True, id="domain/one-label"),
        pytest.param(".example.com", "https://my.host.example.com/", True, id="domain/two-labels"),
        # ... "However, the constraint '.example.com' is not satisfied by 'example.com'."
        pytest.param(".example.com", "https://example.com/", False, id="domain/itself"),
        pytest.param(".example.com", "https://badexample.com/", False, id="domain/suffix-not-label"),
    ],
)
def test_uri_constraints_apply_to_the_host(base: str, uri: str, permitted: bool) -> None:
    chain = [uri_nc(base)]
    request = NameRequest({}, uris=(uri,))
    if permitted:
        check_name_constraints(chain, request)
    else:
        with pytest.raises(PolicyViolation, match="outside the name constraints of issuing"):
            check_name_constraints(chain, request)


def test_excluded_uri_subtrees_refuse() -> None:
    chain = [uri_nc(".example.com", excluded=[".lab.example.com"])]
    check_name_constraints(chain, NameRequest({}, uris=("https://a.prod.example.com/x",)))
    with pytest.raises(PolicyViolation, match=r"URI host a\.lab\.example\.com is excluded"):
        check_name_constraints(chain, NameRequest({}, uris=("https://a.lab.example.com/x",)))


@pytest.mark.parametrize(
    ("base", "name", "permitted"),
    [
        pytest.param("example.com", "example.com", True, id="itself"),
        pytest.param("example.com", "a.b.example.com", True, id="below"),
        pytest.param("example.com", "badexample.com", False, id="suffix-not-label"),
        pytest.param("example.com", "example.org", False, id="other"),
    ],
)
def test_dns_constraints_add_labels_on_the_left(base: str, name: str, permitted: bool) -> None:
    chain = [view("issuing", permitted=[x509.DNSName(base)])]
    request = NameRequest({}, dns=(name,))
    if permitted:
        check_name_constraints(chain, request)
    else:
        with pytest.raises(PolicyViolation, match=r"DNS name \S+ is outside"):
            check_name_constraints(chain, request)


def test_excluded_dns_subtrees_refuse() -> None:
    chain = [view("issuing", excluded=[x509.DNSName("lab.example.com")])]
    with pytest.raises(PolicyViolation, match="is excluded"):
        check_name_constraints(chain, NameRequest({}, dns=("x.lab.example.com",)))


def test_constraints_of_one_name_form_leave_other_forms_alone() -> None:
    # RFC 5280 4.2.1.10: "Restrictions apply only when the specified name form is present."
    check_name_constraints([uri_nc(DEVICE_HOST)], NameRequest({}, dns=("anything.example.org",)))


def test_dns_only_constraints_also_bind_uri_hosts() -> None:
    """fabtrust policy, stricter than RFC 5280: a CA that constrains DNS names only (as fabtrust's
    issuing CAs do) certifies no URI whose host lies outside those DNS subtrees."""
    dns_only = [view("issuing", permitted=[x509.DNSName("example.com")])]
    check_name_constraints(dns_only, NameRequest({}, uris=("https://devices.example.com/d/1",)))
    with pytest.raises(PolicyViolation, match=r"URI host anything\.example\.org is outside"):
        check_name_constraints(dns_only, NameRequest({}, uris=("https://anything.example.org/",)))
    with_uri_subtrees = [
        view(
            "issuing", permitted=[x509.DNSName("example.com"), x509.UniformResourceIdentifier(".example.org")]
        )
    ]
    check_name_constraints(with_uri_subtrees, NameRequest({}, uris=("https://anything.example.org/",)))


def test_every_name_must_be_permitted() -> None:
    request = NameRequest({}, uris=(f"https://{DEVICE_HOST}/d/1", "https://gadget.example.com/d/1"))
    with pytest.raises(PolicyViolation, match=r"gadget\.example\.com is outside"):
        check_name_constraints([uri_nc(DEVICE_HOST)], request)


def test_constraints_of_every_issuer_in_the_chain_apply() -> None:
    chain = [view("issuing"), uri_nc(".devices.example.com")]  # nearest first; the outer one constrains
    check_name_constraints(chain, NameRequest({}, uris=(f"https://{DEVICE_HOST}/d",)))
    outer = [
        view("issuing"),
        IssuerView(make_ca("product", permitted=[x509.UniformResourceIdentifier(".x.org")]), name="product"),
    ]
    with pytest.raises(PolicyViolation, match="name constraints of product"):
        check_name_constraints(outer, NameRequest({}, uris=(f"https://{DEVICE_HOST}/d",)))


# -- the chain -------------------------------------------------------------------------------------


def test_a_good_chain_passes() -> None:
    chain = [view("issuing", path_length=0), view("product", path_length=1), view("root", path_length=2)]
    check_chain(chain, DEVICE, NOW)


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        pytest.param([view("issuing", revoked=True)], "issuer issuing is revoked", id="revoked"),
        pytest.param(
            [view("issuing"), view("product", revoked=True)], "issuer product is revoked", id="revoked-parent"
        ),
        pytest.param(
            [view("issuing", not_after=NOW - timedelta(seconds=1))], "issuing is not valid now", id="expired"
        ),
        pytest.param(
            [view("issuing"), view("product", not_after=NOW - timedelta(days=1))],
            "product is not valid now",
            id="expired-parent",
        ),
        pytest.param(
            [view("issuing", not_before=NOW + timedelta(seconds=1))], "not valid now", id="not-yet-valid"
        ),
        pytest.param([view("issuing", ca=False)], "issuing is not a CA", id="end-entity-as-issuer"),
        pytest.param([view("issuing", ca=None)], "issuing is not a CA", id="no-basic-constraints"),
    ],
)
def test_an_unusable_issuer_is_refused(chain: list[IssuerView], message: str) -> None:
    with pytest.raises(PolicyViolation, match=message):
        check_chain(chain, DEVICE, NOW)


def test_an_issuer_is_needed() -> None:
    with pytest.raises(InvalidInput, match="an issuer is needed"):
        check_chain([], DEVICE, NOW)


def test_the_validity_edges_are_inclusive() -> None:
    check_chain([view("issuing", not_after=NOW)], DEVICE, NOW)
    check_chain([view("issuing", not_before=NOW)], DEVICE, NOW)


@pytest.mark.parametrize(
    ("path_lengths", "profile", "allowed"),
    [
        pytest.param([0], DEVICE, True, id="pathlen0/end-entity"),
        pytest.param([0], ISSUING, False, id="pathlen0/ca-below"),
        pytest.param([1], ISSUING, True, id="pathlen1/ca-below"),
        pytest.param([0, 1, 2], DEVICE, True, id="hierarchy/device"),
        pytest.param([1, 2], ISSUING, True, id="hierarchy/issuing-under-product"),
        pytest.param([0, 1, 2], ISSUING, False, id="hierarchy/ca-under-issuing"),
        pytest.param([1, 1], ISSUING, False, id="grandparent-forbids"),
        pytest.param([None, None], ISSUING, True, id="unconstrained"),
    ],
)
def test_path_length_constraints(path_lengths: list[int | None], profile: Profile, allowed: bool) -> None:
    # RFC 5280 4.2.1.9: pathLenConstraint is the number of non-self-issued intermediate CAs that may
    # follow this certificate in a path; the new certificate counts if it is a CA.
    chain = [view(f"ca{i}", path_length=p) for i, p in enumerate(path_lengths)]
    if allowed:
        check_chain(chain, profile, NOW)
    else:
        with pytest.raises(PolicyViolation, match="pathLenConstraint"):
            check_chain(chain, profile, NOW)


# -- validity --------------------------------------------------------------------------------------


def test_validity_defaults_to_the_profile_and_stops_at_the_issuer() -> None:
    long_lived = make_ca("product", not_after=NOW + timedelta(days=20000))
    assert validity(DEVICE, long_lived, NOW, None) == (NOW, NOW + timedelta(days=DEVICE.max_validity_days))
    short_lived = make_ca("issuing", not_after=NOW + timedelta(days=30))
    assert validity(DEVICE, short_lived, NOW, None) == (NOW, short_lived.not_valid_after_utc)
    assert validity(ROOT, None, NOW, None) == (NOW, NOW + timedelta(days=ROOT.max_validity_days))


def test_validity_is_to_the_second() -> None:
    start, end = validity(
        DEVICE, None, NOW + timedelta(microseconds=999), NOW + timedelta(days=1, microseconds=5)
    )
    assert (start, end) == (NOW, NOW + timedelta(days=1))


@pytest.mark.parametrize(
    ("not_after", "error", "message"),
    [
        pytest.param(NOW + timedelta(days=31), PolicyViolation, "beyond the issuer", id="beyond-issuer"),
        pytest.param(NOW + timedelta(days=401), PolicyViolation, "at most 400 days", id="beyond-profile"),
        pytest.param(NOW, InvalidInput, "later than now", id="now"),
        pytest.param(NOW - timedelta(days=1), InvalidInput, "later than now", id="past"),
    ],
)
def test_requested_validity_outside_the_limits_is_refused(
    not_after: datetime, error: type[FabtrustError], message: str
) -> None:
    issuer = make_ca("product", not_after=NOW + timedelta(days=30))
    with pytest.raises(error, match=message):
        validity(ISSUING, issuer, NOW, not_after)


# -- serial numbers (RFC 5280 4.1.2.2) ---------------------------------------------------------------


def build(
    profile: Profile, request: NameRequest, *, serial: int, issuer: x509.Certificate | None = None
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = build_certificate(
        profile,
        key.public_key(),
        request,
        issuer=issuer,
        serial=serial,
        not_before=NOW,
        not_after=NOW + timedelta(days=30),
        urls=URLS,
    )
    return builder.sign(CA_KEY if issuer is not None else key, hashes.SHA256())


DEVICE_REQUEST = NameRequest(
    {"serialNumber": "SN-1", "organizationName": "Acme"}, uris=(f"https://{DEVICE_HOST}/devices/SN-1",)
)


@pytest.mark.parametrize(
    "serial",
    [
        pytest.param(0, id="zero"),
        pytest.param(-(2**100), id="negative"),
        pytest.param(2**63 - 1, id="63-bits"),
        pytest.param(2**159, id="21-octets"),
    ],
)
def test_bad_serials_are_refused(serial: int) -> None:
    with pytest.raises(InvalidInput, match="serial must be positive, at most 20 octets"):
        build(DEVICE, DEVICE_REQUEST, serial=serial, issuer=make_ca("issuing"))


@pytest.mark.parametrize(
    "serial", [pytest.param(2**63, id="64-bits"), pytest.param(2**159 - 1, id="20-octets")]
)
def test_serials_at_the_limits_are_accepted(serial: int) -> None:
    cert = build(DEVICE, DEVICE_REQUEST, serial=serial, issuer=make_ca("issuing"))
    assert cert.serial_number == serial


def test_random_serials_are_positive_short_and_wide() -> None:
    serials = {x509.random_serial_number() for _ in range(2000)}
    assert len(serials) == 2000
    assert all(0 < s < 2**159 for s in serials)  # DER: at most 20 octets with a positive sign
    assert min(s.bit_length() for s in serials) >= 64


# -- what a certificate of each profile holds -------------------------------------------------------


def ext_oids(cert: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return {e.oid for e in cert.extensions}


def test_device_certificate_contents() -> None:
    issuer = make_ca("issuing")
    cert = build(DEVICE, DEVICE_REQUEST, serial=2**100 + 1, issuer=issuer)
    ext = cert.extensions
    assert cert.subject.rfc4514_string() == "2.5.4.5=SN-1,O=Acme"
    assert cert.issuer == issuer.subject
    assert ext.get_extension_for_class(x509.BasicConstraints).critical
    assert not ext.get_extension_for_class(x509.BasicConstraints).value.ca
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature
    assert not ku.value.key_cert_sign
    assert not ku.value.crl_sign
    assert not ku.value.key_encipherment
    assert list(ext.get_extension_for_class(x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ext.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value == x509.SubjectKeyIdentifier.from_public_key(cert.public_key())
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert (
        aki.key_identifier
        == issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    )
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [f"https://{DEVICE_HOST}/devices/SN-1"]
    crl = ext.get_extension_for_class(x509.CRLDistributionPoints).value
    assert [n.value for n in crl[0].full_name or ()] == [URLS.crl]
    aia = ext.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [(a.access_method, a.access_location.value) for a in aia] == [
        (AuthorityInformationAccessOID.OCSP, URLS.ocsp)
    ]
    assert ExtensionOID.NAME_CONSTRAINTS not in ext_oids(cert)


def test_requested_extensions_and_subject_are_never_copied() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = csr_for(
        key,
        subject=x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, "evil"), x509.NameAttribute(NameOID.SERIAL_NUMBER, "X")]
        ),
        extensions=[
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (x509.SubjectAlternativeName([x509.DNSName("evil.example.org")]), False),
            (
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CODE_SIGNING]),
                False,
            ),
            (x509.KeyUsage(True, False, False, False, False, True, True, False, False), True),
            (x509.OCSPNoCheck(), False),
        ],
    )
    issuer = make_ca("issuing")
    builder = build_certificate(
        DEVICE,
        csr,
        DEVICE_REQUEST,
        issuer=issuer,
        serial=x509.random_serial_number(),
        not_before=NOW,
        not_after=NOW + timedelta(days=1),
        urls=URLS,
    )
    cert = builder.sign(CA_KEY, hashes.SHA256())
    assert cert.public_key() == key.public_key()  # the key is the one thing taken from the request
    assert cert.subject.rfc4514_string() == "2.5.4.5=SN-1,O=Acme"
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.CLIENT_AUTH
    ]
    assert not cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert (
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
            x509.DNSName
        )
        == []
    )
    assert ext_oids(cert) == {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.CRL_DISTRIBUTION_POINTS,
        ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    }


def test_station_certificate_serves_and_connects() -> None:
    request = NameRequest(
        {"commonName": "line1", "organizationName": "Acme"}, dns=("line1.factory.example.com",)
    )
    cert = build(STATION, request, serial=2**80, issuer=make_ca("product"))
    eku = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert eku == [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    ) == ["line1.factory.example.com"]


def test_issuing_ca_carries_critical_name_constraints_and_path_length_zero() -> None:
    request = NameRequest(
        {"commonName": "line1 po1", "organizationName": "Acme"}, permitted_uri_hosts=(DEVICE_HOST,)
    )
    cert = build(ISSUING, request, serial=2**70, issuer=make_ca("product", path_length=1))
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical
    assert (bc.value.ca, bc.value.path_length) == (True, 0)
    nc = cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert nc.critical  # RFC 5280 4.2.1.10: "Conforming CAs MUST mark this extension as critical"
    assert nc.value.permitted_subtrees == [x509.UniformResourceIdentifier(DEVICE_HOST)]
    assert nc.value.excluded_subtrees is None
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign
    assert ku.crl_sign
    assert not ku.digital_signature
    assert ExtensionOID.EXTENDED_KEY_USAGE not in ext_oids(cert)


def test_issuing_ca_without_permitted_names_is_refused() -> None:
    with pytest.raises(InvalidInput, match="needs the names the CA may certify"):
        build(
            ISSUING,
            NameRequest({"commonName": "x", "organizationName": "Acme"}),
            serial=2**70,
            issuer=make_ca("p"),
        )


def test_root_is_self_issued_without_revocation_pointers() -> None:
    cert = build(ROOT, NameRequest({"commonName": "Acme Root", "organizationName": "Acme"}), serial=2**90)
    assert cert.issuer == cert.subject
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.path_length == 2
    assert ext_oids(cert) == {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    }


def test_ca_issuers_url_is_added_when_known() -> None:
    urls = Urls(crl=URLS.crl, ocsp=URLS.ocsp, ca_issuers="http://pki.example.com/pki/ca/issuing.der")
    builder = build_certificate(
        DEVICE,
        ec.generate_private_key(ec.SECP256R1()).public_key(),
        DEVICE_REQUEST,
        issuer=make_ca("issuing"),
        serial=2**70,
        not_before=NOW,
        not_after=NOW + timedelta(days=1),
        urls=urls,
    )
    cert = builder.sign(CA_KEY, hashes.SHA256())
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert [a.access_method for a in aia] == [
        AuthorityInformationAccessOID.OCSP,
        AuthorityInformationAccessOID.CA_ISSUERS,
    ]


# -- CSR loading --------------------------------------------------------------------------------------

P256_CSR = csr_for(ec.generate_private_key(ec.SECP256R1()))


def bad_signature(csr: x509.CertificateSigningRequest) -> bytes:
    raw = bytearray(der(csr))
    raw[-1] ^= 0x01  # the last octet of the signature value
    return bytes(raw)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(pem(P256_CSR), id="pem"),
        pytest.param(der(P256_CSR), id="der"),
        pytest.param(b"\n  \n" + pem(P256_CSR), id="pem-after-blank-lines"),
    ],
)
def test_csrs_load_as_pem_or_der(data: bytes) -> None:
    assert load_csr(data).public_key() == P256_CSR.public_key()


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        pytest.param(b"", InvalidInput, "empty", id="empty"),
        pytest.param(b"\x00" * (MAX_CSR_BYTES + 1), InvalidInput, "larger than 65536 bytes", id="oversized"),
        pytest.param(
            pem(P256_CSR) + b"\n" * (MAX_CSR_BYTES + 1 - len(pem(P256_CSR))),
            InvalidInput,
            "larger than 65536 bytes",
            id="oversized-valid-pem",
        ),
        pytest.param(b"\x30" * MAX_CSR_BYTES, InvalidInput, "malformed", id="64KiB-of-garbage"),
        pytest.param(b"not a request", InvalidInput, "malformed", id="garbage"),
        pytest.param(pem(P256_CSR)[:-60], InvalidInput, "malformed", id="truncated-pem"),
        pytest.param(der(P256_CSR)[:-10], InvalidInput, "malformed", id="truncated-der"),
        pytest.param(
            make_ca("x").public_bytes(serialization.Encoding.PEM),
            InvalidInput,
            "malformed",
            id="a-certificate",
        ),
        pytest.param(
            bad_signature(P256_CSR), VerificationFailed, "signature does not verify", id="bad-signature"
        ),
        pytest.param(
            der(csr_for(rsa.generate_private_key(65537, 2048))), InvalidInput, "not supported", id="rsa-2048"
        ),
        pytest.param(
            der(csr_for(ec.generate_private_key(ec.SECP521R1()))), InvalidInput, "secp521r1", id="p521"
        ),
        pytest.param(
            der(csr_for(ec.generate_private_key(ec.SECP256K1()))), InvalidInput, "secp256k1", id="secp256k1"
        ),
    ],
)
def test_bad_csrs_are_refused(data: bytes, error: type[FabtrustError], message: str) -> None:
    with pytest.raises(error) as err:
        load_csr(data)
    assert type(err.value) is error
    assert message in err.value.message


KEYS: dict[KeyType, CertificateIssuerPrivateKeyTypes] = {
    KeyType.P256: ec.generate_private_key(ec.SECP256R1()),
    KeyType.P384: ec.generate_private_key(ec.SECP384R1()),
    KeyType.ED25519: ed25519.Ed25519PrivateKey.generate(),
    KeyType.MLDSA65: mldsa.MLDSA65PrivateKey.generate(),
}


@pytest.mark.parametrize(
    ("profile", "key_type", "allowed"),
    [
        pytest.param(DEVICE, KeyType.P256, True, id="device/p256"),
        pytest.param(DEVICE, KeyType.P384, True, id="device/p384"),
        pytest.param(DEVICE, KeyType.ED25519, True, id="device/ed25519"),
        pytest.param(DEVICE, KeyType.MLDSA65, True, id="device/ml-dsa-65"),
        pytest.param(STATION, KeyType.ED25519, True, id="station/ed25519"),
        pytest.param(STATION, KeyType.MLDSA65, False, id="station/ml-dsa-65"),
        pytest.param(ISSUING, KeyType.P256, True, id="issuing/p256"),
        pytest.param(ISSUING, KeyType.ED25519, False, id="issuing/ed25519"),
        pytest.param(ISSUING, KeyType.MLDSA65, False, id="issuing/ml-dsa-65"),
    ],
)
def test_key_types_follow_the_profile(profile: Profile, key_type: KeyType, allowed: bool) -> None:
    csr = load_csr(der(csr_for(KEYS[key_type])))
    if allowed:
        assert csr_key_type(csr, profile) is key_type
    else:
        with pytest.raises(PolicyViolation, match=f"does not allow {key_type.value} keys"):
            csr_key_type(csr, profile)


_URIS = [
    "https://widget.example/devices/ABC",
    "http://a.example",
    "http://a.example/",
    "https://a.example/x?y#z",
    "https://a.example//x",
    "https://a.example./x",
    "https://a.example.",
    "https://-a.example/x",
    "https://a..example/x",
    "https://a.example/x y",
    "https://a.example/x\t",
    "https://a.example?x",
    "https://a.example#x",
    "https://a.example:443/x",
    "https://a.example:99999/x",
    "https://u@a.example/x",
    "HTTPS://A.EXAMPLE/x",
    "https://localhost/x",
    "https://a.example/" + "x" * 300,
    "ftp://a.example/x",
    "https://a.example/é",
    "https://" + "a" * 64 + ".example/x",
    "https://[::1]/x",
    "https://a_b.example/x",
]


@pytest.mark.parametrize("uri", _URIS)
def test_the_plain_uri_shortcut_agrees_with_urlsplit(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Device URIs skip urlsplit (issuance._PLAIN_URI); they must get the same host or the same
    refusal as through the general parser."""

    def host() -> str | None:
        issuance._uri_host.cache_clear()
        try:
            return issuance._uri_host(uri)
        except InvalidInput:
            return None

    shortcut = host()
    monkeypatch.setattr(issuance, "_PLAIN_URI", re.compile(r"(?!)"))  # matches nothing
    assert host() == shortcut
    issuance._uri_host.cache_clear()


def test_device_uris_take_the_shortcut() -> None:
    assert issuance._PLAIN_URI.fullmatch("https://widget.devices.acme.example/devices/CHIP-0001")
    assert not issuance._PLAIN_URI.fullmatch("https://user@widget.devices.acme.example/devices/CHIP-0001")
