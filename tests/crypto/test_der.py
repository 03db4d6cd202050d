"""Fields read straight from DER agree with what cryptography makes of the same bytes."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa, x25519
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from fabtrust.crypto import der
from fabtrust.crypto.keys import spki_der
from fabtrust.errors import InvalidInput

NOW = datetime(2030, 1, 1, tzinfo=UTC)
KEYS: dict[str, Callable[[], ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey]] = {
    "p256": lambda: ec.generate_private_key(ec.SECP256R1()),
    "p384": lambda: ec.generate_private_key(ec.SECP384R1()),
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "rsa2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
}
CANONICAL = {"p256", "p384", "ed25519"}  # the key types canonical_spki knows


def _name(serial: str = "0123456789abcdef") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Silicon, Inc."),
            x509.NameAttribute(NameOID.COMMON_NAME, "birth certificate " * 3),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "lot " * 40),  # multi-octet lengths
            x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
        ]
    )


def _certificate(key: object, subject: x509.Name) -> x509.Certificate:
    issuer = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")]))
        .public_key(key.public_key())  # type: ignore[attr-defined]
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(issuer, hashes.SHA256())
    )


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_certificate_fields_are_cryptographys_subject_and_key(kind: str) -> None:
    key = KEYS[kind]()
    certificate = _certificate(key, _name())
    subject, spki = der.certificate_fields(certificate.public_bytes(serialization.Encoding.DER))
    assert subject == certificate.subject.public_bytes()
    assert spki == spki_der(certificate.public_key())  # type: ignore[arg-type]
    assert der.canonical_spki(spki) == (spki if kind in CANONICAL else None)
    assert der.serial_number(subject) == b"0123456789abcdef"


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_request_fields_are_cryptographys_subject_and_key(kind: str) -> None:
    key = KEYS[kind]()
    algorithm = None if kind == "ed25519" else hashes.SHA256()
    request = x509.CertificateSigningRequestBuilder().subject_name(_name()).sign(key, algorithm)
    subject, spki = der.request_fields(request.public_bytes(serialization.Encoding.DER))
    assert subject == request.subject.public_bytes()
    assert spki == spki_der(request.public_key())  # type: ignore[arg-type]


def test_a_version_1_certificate_has_no_version_field_to_step_over(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.der"
    subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key], check=True
    )
    subprocess.run(
        [
            "openssl",
            "req",
            "-new",
            "-key",
            key,
            "-subj",
            "/O=Acme/serialNumber=42",
            "-out",
            tmp_path / "req.pem",
        ],
        check=True,
    )
    # ``x509 -req`` without extensions signs a version 1 certificate (no [0] version element)
    subprocess.run(
        [
            "openssl",
            "x509",
            "-req",
            "-in",
            tmp_path / "req.pem",
            "-key",
            key,
            "-outform",
            "DER",
            "-out",
            cert,
        ],
        check=True,
        capture_output=True,
    )
    certificate = x509.load_der_x509_certificate(cert.read_bytes())
    assert certificate.version == x509.Version.v1
    subject, spki = der.certificate_fields(cert.read_bytes())
    assert subject == certificate.subject.public_bytes()
    assert spki == spki_der(certificate.public_key())  # type: ignore[arg-type]
    assert der.serial_number(subject) == b"42"


def test_only_cryptographys_own_encoding_of_a_key_counts_as_canonical() -> None:
    p256 = ec.generate_private_key(ec.SECP256R1()).public_key()
    spki = spki_der(p256)
    compressed = p256.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    # the same key with a compressed point: cryptography loads it, and re-encodes it uncompressed
    as_sent = bytes.fromhex("3039301306072a8648ce3d020106082a8648ce3d030107032200") + compressed
    assert spki_der(serialization.load_der_public_key(as_sent)) == spki  # type: ignore[arg-type]
    assert der.canonical_spki(as_sent) is None
    assert der.canonical_spki(spki) == spki
    # the right length but another algorithm: an X25519 key is 44 octets, as an Ed25519 key is
    assert der.canonical_spki(spki_der(x25519.X25519PrivateKey.generate().public_key())) is None
    assert der.canonical_spki(spki[:-1] + b"") is None


_STRING_TYPES = [_ASN1Type.PrintableString, _ASN1Type.UTF8String, _ASN1Type.BMPString, _ASN1Type.IA5String]
_OTHER = [NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME, NameOID.COUNTRY_NAME, NameOID.DN_QUALIFIER]


@st.composite
def _names(draw: st.DrawFn) -> x509.Name:
    """Names of zero to three RDNs of one or two attributes, some of them serialNumbers in
    various string types."""
    rdns = []
    for _ in range(draw(st.integers(0, 3))):
        attributes = []
        for _ in range(draw(st.integers(1, 2))):
            if draw(st.booleans()):
                value = draw(st.text("0123456789abcdefXYZ -", min_size=1, max_size=70))
                kind = draw(st.sampled_from(_STRING_TYPES))
                attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, value, _type=kind))
            else:
                oid = draw(st.sampled_from(_OTHER))
                value = "DE" if oid == NameOID.COUNTRY_NAME else draw(st.text("abc", min_size=1, max_size=3))
                attributes.append(x509.NameAttribute(oid, value))
        rdns.append(x509.RelativeDistinguishedName(list(dict.fromkeys(attributes))))  # no twins
    return x509.Name(rdns)


@given(_names())
@settings(max_examples=300, deadline=None)
def test_serial_number_is_the_one_printable_or_utf8_serial_number_attribute(name: x509.Name) -> None:
    serials = name.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    expected = None
    if len(serials) == 1 and serials[0]._type in (_ASN1Type.PrintableString, _ASN1Type.UTF8String):
        expected = str(serials[0].value).encode("utf-8")
    assert der.serial_number(name.public_bytes()) == expected


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="fail/empty"),
        pytest.param(b"\x30", id="fail/no-length"),
        pytest.param(b"\x30\x80\x00\x00", id="fail/indefinite-length"),
        pytest.param(b"\x30\x85\x00\x00\x00\x00\x01\x00", id="fail/five-length-octets"),
        pytest.param(b"\x30\x05\x31\x03", id="fail/longer-than-data"),
        pytest.param(b"\x31\x00", id="fail/not-a-sequence"),
        pytest.param(b"\x30\x04\x31\x04\x30\x00", id="fail/rdn-overruns-name"),
        pytest.param(b"\x30\x02\x31\x00\x00", id="ok/empty-rdn-then-trailing-octet"),
    ],
)
def test_malformed_der_is_invalid_input_never_an_index_error(data: bytes) -> None:
    for read in (der.certificate_fields, der.request_fields):
        with pytest.raises(InvalidInput):
            read(data)
    if data.startswith(b"\x30\x02\x31\x00"):
        assert der.serial_number(data) is None
    else:
        with pytest.raises(InvalidInput):
            der.serial_number(data)


_VALID = _certificate(KEYS["p256"](), _name()).public_bytes(serialization.Encoding.DER)


@given(st.integers(0, len(_VALID) - 1), st.integers(0, 255), st.integers(1, len(_VALID)))
@settings(max_examples=400, deadline=None)
def test_damaged_der_gives_fields_or_invalid_input(at: int, value: int, keep: int) -> None:
    damaged = (_VALID[:at] + bytes([value]) + _VALID[at + 1 :])[:keep]
    for read in (der.certificate_fields, der.request_fields):
        try:
            subject, _ = read(damaged)
        except InvalidInput:
            continue
        with contextlib.suppress(InvalidInput):
            der.serial_number(subject)
