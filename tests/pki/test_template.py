"""Leaf templates (``fabtrust.pki.template``) against cryptography's ``CertificateBuilder``.

The template frames parts cryptography encodes; the builder is the reference. For every leaf
profile, issuer key type, subject key type and name form, the template's TBSCertificate must be
byte-for-byte the builder's for the same inputs, and the signed certificate must verify under the
issuer and be read back with the same fields by cryptography and by the ``openssl`` CLI."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from fabtrust.crypto.keys import KeyType
from fabtrust.errors import InvalidInput
from fabtrust.pki.issuance import (
    NameRequest,
    Urls,
    build_certificate,
    check_subject,
    san_entries,
    subject_name,
)
from fabtrust.pki.profiles import Profiles
from fabtrust.pki.template import LeafTemplate, subject_key_identifier

PROFILES = Profiles.builtin()
URLS = Urls(crl="http://pki.example.com/pki/crl/po-1.crl", ocsp="http://pki.example.com/pki/ocsp")
NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
ISSUER_KEYS = {
    KeyType.P256: ec.generate_private_key(ec.SECP256R1()),
    KeyType.P384: ec.generate_private_key(ec.SECP384R1()),
    KeyType.ED25519: ed25519.Ed25519PrivateKey.generate(),
}
SUBJECT_KEYS = {
    "p256": ec.generate_private_key(ec.SECP256R1()).public_key(),
    "p384": ec.generate_private_key(ec.SECP384R1()).public_key(),
    "ed25519": ed25519.Ed25519PrivateKey.generate().public_key(),
    "mldsa65": mldsa.MLDSA65PrivateKey.generate().public_key(),
}
_HASH = {KeyType.P256: hashes.SHA256(), KeyType.P384: hashes.SHA384(), KeyType.ED25519: None}


ISSUERS: dict[KeyType, x509.Certificate] = {}


def issuer_cert(key_type: KeyType) -> x509.Certificate:
    """One CA certificate per issuer key type (no AKI: the issuer of a leaf needs only its SKI)."""
    if key_type not in ISSUERS:
        key = ISSUER_KEYS[key_type]
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"Widget PO-1 issuing CA {key_type.value}"),
            ]
        )
        ISSUERS[key_type] = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=1))
            .not_valid_after(NOW + timedelta(days=365 * 40))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, _HASH[key_type])
        )
    return ISSUERS[key_type]


def spki(public: object) -> bytes:
    return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined, no-any-return]


def both(
    profile_name: str,
    key_type: KeyType,
    subject_key: str,
    names: NameRequest,
    *,
    serial: int,
    not_after: datetime,
    urls: Urls = URLS,
) -> tuple[x509.Certificate, x509.Certificate]:
    """The same certificate from the builder (reference) and from the template."""
    profile = PROFILES.get(profile_name)
    issuer = issuer_cert(key_type)
    public = SUBJECT_KEYS[subject_key]
    reference = build_certificate(
        profile, public, names, issuer=issuer, serial=serial, not_before=NOW, not_after=not_after, urls=urls
    ).sign(ISSUER_KEYS[key_type], _HASH[key_type])
    template = LeafTemplate.compile(profile, issuer, key_type, urls)
    tbs = template.tbs(
        serial=serial,
        not_before=NOW,
        not_after=not_after,
        subject=check_subject(profile, names.attributes).der(),
        spki=spki(public),
        sans=san_entries(profile, names),
    )
    return reference, template.sign(tbs, ISSUER_KEYS[key_type])


DEVICE_NAMES = NameRequest(
    {"organizationName": "Acme", "serialNumber": "SN0001"},
    uris=("https://widget.devices.acme.example/devices/SN0001",),
    dns=("sn0001.widget.devices.acme.example",),
)
STATION_NAMES = NameRequest(
    {"organizationName": "Acme", "commonName": "line 1", "organizationalUnitName": "Fabrik Süd"},
    dns=("line1.factory.acme.example",),
    uris=("https://factory.acme.example/stations/line1",),
)
_KEY_NAMES = {"ecdsa-p256": "p256", "ecdsa-p384": "p384", "ed25519": "ed25519", "ml-dsa-65": "mldsa65"}
CASES = [
    (profile_name, names, key_type, _KEY_NAMES[allowed.value])
    for profile_name, names in (("device-idevid", DEVICE_NAMES), ("station", STATION_NAMES))
    for allowed in PROFILES.get(profile_name).key_types
    for key_type in ISSUER_KEYS
]


@pytest.mark.parametrize(("profile_name", "names", "key_type", "subject_key"), CASES)
def test_template_matches_builder_for_every_profile_and_key(
    profile_name: str, names: NameRequest, key_type: KeyType, subject_key: str
) -> None:
    serial = x509.random_serial_number()
    reference, made = both(
        profile_name, key_type, subject_key, names, serial=serial, not_after=NOW + timedelta(days=90)
    )
    assert made.tbs_certificate_bytes == reference.tbs_certificate_bytes
    assert made.signature_algorithm_oid == reference.signature_algorithm_oid
    made.verify_directly_issued_by(issuer_cert(key_type))
    assert made.serial_number == serial
    assert list(made.extensions) == list(reference.extensions)
    assert made.public_key() == SUBJECT_KEYS[subject_key]


def test_every_leaf_profile_is_covered() -> None:
    leaves = {n for n in PROFILES.names() if not PROFILES.get(n).is_ca}
    assert leaves == {case[0] for case in CASES}


_label = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=40)
_printable = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=64)


@settings(max_examples=150, deadline=None)
@given(
    serial=st.integers(min_value=2**63, max_value=2**159 - 1),
    device_serial=_printable,
    organization=st.text(
        st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp")),
        min_size=1,
        max_size=64,
    ),
    hosts=st.lists(_label, min_size=1, max_size=6),
    days=st.integers(min_value=1, max_value=9125),
    path=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/-._~", max_size=200),
    key_type=st.sampled_from(list(ISSUER_KEYS)),
)
def test_template_matches_builder_for_any_names_serials_and_dates(
    serial: int,
    device_serial: str,
    organization: str,
    hosts: list[str],
    days: int,
    path: str,
    key_type: KeyType,
) -> None:
    """Long names (long-form DER lengths), serials with and without the high bit, dates either side
    of 2050 (UTCTime / GeneralizedTime): the template still gives the builder's bytes."""
    domain = ".".join([*hosts, "example"])
    names = NameRequest(
        {"organizationName": organization, "serialNumber": device_serial},
        uris=(f"https://{domain}/{path}",),
        dns=(f"d.{domain}",),
    )
    reference, made = both(
        "device-idevid", key_type, "p256", names, serial=serial, not_after=NOW + timedelta(days=days)
    )
    assert made.tbs_certificate_bytes == reference.tbs_certificate_bytes


def test_template_reads_back_in_openssl(tmp_path: Path) -> None:
    """An outside parser sees the certificate the template made, fields and signature intact."""
    _, made = both(
        "device-idevid",
        KeyType.P256,
        "p256",
        DEVICE_NAMES,
        serial=2**158 + 5,
        not_after=NOW + timedelta(days=90),
    )
    (tmp_path / "leaf.pem").write_bytes(made.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "ca.pem").write_bytes(issuer_cert(KeyType.P256).public_bytes(serialization.Encoding.PEM))
    text = subprocess.run(
        ["openssl", "x509", "-in", tmp_path / "leaf.pem", "-noout", "-text"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "serialNumber=SN0001" in text.replace(" = ", "=")
    assert "DNS:sn0001.widget.devices.acme.example" in text
    assert "URI:https://widget.devices.acme.example/devices/SN0001" in text
    assert "TLS Web Client Authentication" in text
    verify = subprocess.run(
        [
            "openssl",
            "verify",
            "-attime",
            str(int((NOW + timedelta(days=1)).timestamp())),
            "-partial_chain",
            "-CAfile",
            tmp_path / "ca.pem",
            tmp_path / "leaf.pem",
        ],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stdout.strip().endswith("OK")


@pytest.mark.parametrize("subject_key", list(SUBJECT_KEYS))
def test_subject_key_identifier_is_rfc5280_method_1(subject_key: str) -> None:
    public = SUBJECT_KEYS[subject_key]
    assert subject_key_identifier(spki(public)) == x509.SubjectKeyIdentifier.from_public_key(public).digest


def test_ca_profiles_are_not_templated() -> None:
    with pytest.raises(InvalidInput, match="one at a time"):
        LeafTemplate.compile(PROFILES.get("issuing-ca"), issuer_cert(KeyType.P256), KeyType.P256, URLS)


def test_issuer_key_types_that_cannot_sign_certificates_are_refused() -> None:
    with pytest.raises(InvalidInput, match="cannot sign certificates"):
        LeafTemplate.compile(PROFILES.get("device-idevid"), issuer_cert(KeyType.P256), KeyType.MLDSA65, URLS)


@pytest.mark.parametrize("serial", [0, -5, 2**63 - 1, 2**159])
def test_serials_outside_rfc5280_are_refused(serial: int) -> None:
    template = LeafTemplate.compile(
        PROFILES.get("device-idevid"), issuer_cert(KeyType.P256), KeyType.P256, URLS
    )
    with pytest.raises(InvalidInput, match="serial"):
        template.tbs(
            serial=serial,
            not_before=NOW,
            not_after=NOW + timedelta(days=1),
            subject=subject_name(PROFILES.get("device-idevid"), DEVICE_NAMES.attributes).public_bytes(),
            spki=spki(SUBJECT_KEYS["p256"]),
            sans=san_entries(PROFILES.get("device-idevid"), DEVICE_NAMES),
        )


def test_fractional_seconds_are_refused() -> None:
    template = LeafTemplate.compile(
        PROFILES.get("device-idevid"), issuer_cert(KeyType.P256), KeyType.P256, URLS
    )
    with pytest.raises(InvalidInput, match="whole seconds"):
        template.tbs(
            serial=2**100,
            not_before=NOW + timedelta(microseconds=1),
            not_after=NOW + timedelta(days=1),
            subject=subject_name(PROFILES.get("device-idevid"), DEVICE_NAMES.attributes).public_bytes(),
            spki=spki(SUBJECT_KEYS["p256"]),
            sans=san_entries(PROFILES.get("device-idevid"), DEVICE_NAMES),
        )
