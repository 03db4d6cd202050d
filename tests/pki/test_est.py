"""EST (RFC 7030): the codec, one-time tokens, and the router in-process (FastAPI TestClient).

The end-to-end path with curl, openssl and nginx is tests/interop/test_est.py. Here every refusal is
checked for its status, for "no certificate issued" and for its audit entry.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy import select

from fabtrust.api.app import create_app
from fabtrust.crypto.keys import KeyType, KeyUsage
from fabtrust.errors import InvalidInput, NotAuthorised, NotFound, PolicyViolation
from fabtrust.home import Home
from fabtrust.pki import est
from fabtrust.pki.est import EstService, EstTokens, EstUnauthorised, PayloadTooLarge, UnsupportedMediaType
from fabtrust.pki.issuance import NameRequest
from fabtrust.pki.service import make_csr
from fabtrust.store.tables import pki_certs, pki_est_tokens

PROXY = "127.0.0.2"
DOMAIN = "widget.devices.acme.example"
ISSUING = "issuing-line1-po1"
OTHER = "issuing-line1-po2"  # signed by the OEM, its key elsewhere: a CA of this home, not an EST CA


def never() -> str:
    raise AssertionError("asked for a secret")


# -- a PKI to enroll against ------------------------------------------------------------------------


@dataclass(frozen=True)
class Pki:
    root: x509.Certificate
    product: x509.Certificate
    issuing: x509.Certificate
    issuing_id: str

    def pem_chain(self) -> bytes:
        """The issuing and product CA (the untrusted intermediates for openssl verify)."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (self.issuing, self.product))

    def bundle(self) -> bytes:
        """Every CA certificate, root included (nginx's ssl_client_certificate)."""
        return self.pem_chain() + self.root.public_bytes(serialization.Encoding.PEM)


def build_pki(home: Home, *, other_order: bool = True) -> Pki:
    """Root -> product CA (device domain) -> issuing CA for order po1 with its key in this home."""
    pki = home.pki
    ceremony = pki.init_root(
        attributes={"commonName": "Acme Root CA", "organizationName": "Acme"},
        custodians=[("c1", "passphrase-one"), ("c2", "passphrase-two")],
        threshold=2,
        scrypt_n=2**14,
    )
    product = pki.create_product_ca(
        "widget",
        attributes={"commonName": "Acme Widget CA", "organizationName": "Acme"},
        device_domain=DOMAIN,
    )
    window_end = datetime.now(UTC) + timedelta(days=30)
    key = home.keystore().generate("station-line1-po1", KeyType.P256, KeyUsage.SIGN)
    csr = make_csr(home.keystore(), key.uri, {"commonName": "line1 po1", "organizationName": "Acme"})
    issuing = pki.sign_issuing_ca("widget", csr, station="line1", order_id="po1", not_after=window_end)
    pki.adopt_bundle(pki.export_bundle(issuing.ca_id), key_uri=key.uri)
    if other_order:
        other_key = home.keystore().generate("station-line1-po2", KeyType.P256, KeyUsage.SIGN)
        other_csr = make_csr(
            home.keystore(), other_key.uri, {"commonName": "line1 po2", "organizationName": "Acme"}
        )
        pki.sign_issuing_ca("widget", other_csr, station="line1", order_id="po2", not_after=window_end)
    return Pki(ceremony.root.certificate, product.certificate, issuing.certificate, issuing.ca_id)


def device_csr(
    serial: str | None = "SN-1",
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    org: str = "Acme",
    extra: tuple[x509.NameAttribute, ...] = (),
) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = key or ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.SERIAL_NUMBER, serial)] if serial else []
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), *extra]
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs)).sign(key, hashes.SHA256())
    return key, csr.public_bytes(serialization.Encoding.DER)


def _attr(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute[str]:
    return x509.NameAttribute(oid, value, _validate=False)


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = (
        bytes([n])
        if n < 0x80
        else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8)
    )
    return bytes([tag]) + length + content


def _not_printable_csr() -> bytes:
    """A correctly signed CSR whose serialNumber PrintableString holds "_" (X.680 41.4 forbids it).
    cryptography refuses to make one, so the signed request is assembled here."""
    key, der = device_csr("SN-NOT-PRINTABLE")
    tbs = x509.load_der_x509_csr(der).tbs_certrequest_bytes.replace(b"SN-NOT", b"SN_NOT")
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    ecdsa_with_sha256 = bytes.fromhex("300a06082a8648ce3d040302")
    return _der(0x30, tbs + ecdsa_with_sha256 + _der(0x03, b"\x00" + signature))


def b64(der: bytes) -> bytes:
    return base64.encodebytes(der)  # 76-character lines, as `base64` and `openssl base64` write


# -- the codec ----------------------------------------------------------------------------------------


def test_decode_accepts_base64_with_line_breaks_and_parameters() -> None:
    _, der = device_csr()
    assert est.decode_csr_body(b64(der), "application/pkcs10") == der
    assert (
        est.decode_csr_body(b64(der).replace(b"\n", b"\r\n"), "Application/PKCS10; name=req.p10", "base64")
        == der
    )
    assert est.decode_csr_body(base64.b64encode(der), "application/pkcs10", " BASE64 ") == der


@pytest.mark.parametrize(
    ("body", "content_type", "cte", "error", "needle"),
    [
        (b"MIIB", None, None, UnsupportedMediaType, "application/pkcs10"),
        (b"MIIB", "application/json", None, UnsupportedMediaType, "application/pkcs10"),
        (b"MIIB", "application/pkcs10", "binary", UnsupportedMediaType, "base64"),
        (b"", "application/pkcs10", None, InvalidInput, "empty"),
        (b" \n ", "application/pkcs10", None, InvalidInput, "empty"),
        (b"MIIB!!==", "application/pkcs10", None, InvalidInput, "base64"),
        (b"MIIBx", "application/pkcs10", None, InvalidInput, "base64"),
        (b"MI=B", "application/pkcs10", None, InvalidInput, "base64"),
        (
            base64.b64encode(b"-----BEGIN CERTIFICATE REQUEST-----"),
            "application/pkcs10",
            None,
            InvalidInput,
            "DER",
        ),
        (b"A" * (64 * 1024 + 4), "application/pkcs10", None, PayloadTooLarge, "65536"),
    ],
    ids=[
        "fail/no-content-type",
        "fail/json",
        "fail/cte-binary",
        "fail/empty",
        "fail/whitespace",
        "fail/alphabet",
        "fail/length",
        "fail/padding-inside",
        "fail/pem-inside",
        "fail/oversized",
    ],
)
def test_decode_refuses(
    body: bytes, content_type: str | None, cte: str | None, error: type, needle: str
) -> None:
    with pytest.raises(error, match=needle):
        est.decode_csr_body(body, content_type, cte)


def test_certs_only_round_trip_in_64_character_lines(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "t")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    body = est.encode_certs_only([cert, cert])
    assert all(len(line) <= 64 for line in body.splitlines())
    assert est.decode_certs_only(body) == [cert, cert]  # (a SET OF: DER sorts it; equal ones stay)
    with pytest.raises(InvalidInput):
        est.encode_certs_only([])
    with pytest.raises(InvalidInput):
        est.decode_certs_only(b"not base64 ***")


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer " + "a" * 43, True),
        ("bearer   " + "A_-9" * 11, True),
        (None, False),
        ("", False),
        ("Basic " + "a" * 43, False),
        ("Bearer", False),
        ("Bearer short", False),
        ("Bearer " + "a" * 43 + " extra", False),
        ("Bearer " + "a" * 129, False),
    ],
    ids=["ok", "ok/case-and-spaces", "fail/none", "fail/empty", "fail/basic", "fail/no-token", "fail/short",
         "fail/two-words", "fail/long"],
)  # fmt: skip
def test_bearer_token(header: str | None, ok: bool) -> None:
    if ok:
        assert header is not None
        assert est.bearer_token(header) == header.split()[-1]
    else:
        with pytest.raises(EstUnauthorised):
            est.bearer_token(header)


def test_subject_attributes_fail_closed() -> None:
    name = x509.Name(
        [x509.NameAttribute(NameOID.SERIAL_NUMBER, "S"), x509.NameAttribute(NameOID.COMMON_NAME, "c")]
    )
    assert est.subject_attributes(name) == {"serialNumber": "S", "commonName": "c"}
    with pytest.raises(InvalidInput, match="unsupported attribute"):
        est.subject_attributes(x509.Name([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b.example")]))
    with pytest.raises(InvalidInput, match="repeats"):
        est.subject_attributes(
            x509.Name(
                [x509.NameAttribute(NameOID.COMMON_NAME, "a"), x509.NameAttribute(NameOID.COMMON_NAME, "b")]
            )
        )
    multi = x509.RelativeDistinguishedName(
        [x509.NameAttribute(NameOID.COMMON_NAME, "a"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "b")]
    )
    with pytest.raises(InvalidInput, match="multi-valued"):
        est.subject_attributes(x509.Name([multi]))


def test_forwarded_certificate_and_device_uri(tmp_path: Path) -> None:
    assert est.device_uri("d.example", "SN 1/2") == "https://d.example/devices/SN%201%2F2"
    with pytest.raises(NotAuthorised, match="malformed"):
        est.parse_forwarded_certificate(
            quote("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
        )
    with pytest.raises(NotAuthorised, match="too large"):
        est.parse_forwarded_certificate("A" * (16 * 1024 + 1))
    with pytest.raises(NotFound):
        est.check_label("../etc")


# -- a served home -----------------------------------------------------------------------------------


@dataclass
class Served:
    home: Home
    pki: Pki
    proxy: TestClient  # requests arrive from the trusted proxy's address
    direct: TestClient  # requests from anyone else
    tokens: EstTokens

    def token(self, ca: str = ISSUING, order: str | None = "po1") -> str:
        return self.tokens.create(ca, "device-idevid", order, "unit test", 3600).token

    def certs(self) -> int:
        return len(list(self.home.pki.certificates()))

    def entries_since(self, size: int) -> list[dict[str, Any]]:
        return [json.loads(b) for b in self.home.log.entries(size, self.home.log.size())]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    path = tmp_path_factory.mktemp("est") / "home"
    with Home.init(path, passphrase=lambda: "est-test-pw", pin=never, actor="tester") as home:
        pki = build_pki(home)
        app = create_app(home, trusted_proxies=[PROXY])
        tokens = EstTokens(home.store, home.audit, home.clock, actor="tester")
        with (
            TestClient(app, raise_server_exceptions=False, client=(PROXY, 40000)) as proxy,
            TestClient(app, raise_server_exceptions=False, client=("127.0.0.1", 40001)) as direct,
        ):
            yield Served(home, pki, proxy, direct, tokens)


def enroll(
    client: TestClient, token: str | None, body: bytes, *, label: str | None = None, **headers: str
) -> Response:
    path = f"/.well-known/est/{label}/simpleenroll" if label else "/.well-known/est/simpleenroll"
    h = {"Content-Type": "application/pkcs10", **headers}
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    return client.post(path, content=body, headers=h)


def reenroll(client: TestClient, cert: x509.Certificate | None, body: bytes, *, label: str | None = None,
             verdict: str = "SUCCESS") -> Response:  # fmt: skip
    path = f"/.well-known/est/{label}/simplereenroll" if label else "/.well-known/est/simplereenroll"
    h = {"Content-Type": "application/pkcs10"}
    if cert is not None:
        h["X-SSL-Client-Cert"] = quote(cert.public_bytes(serialization.Encoding.PEM).decode(), safe="")
        h["X-SSL-Client-Verify"] = verdict
    return client.post(path, content=body, headers=h)


def issued(response: Response) -> x509.Certificate:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pkcs7-mime; smime-type=certs-only"
    assert response.headers["content-transfer-encoding"] == "base64"
    (cert,) = est.decode_certs_only(response.content)
    return cert


def assert_refused(s: Served, response: Response, status: int, code: str, before: tuple[int, int],
                   action: str, reason: str | None = None) -> None:  # fmt: skip
    """The status and safe message; nothing issued; the refusal in the audit log."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert len(body["request_id"]) == 16
    assert "Traceback" not in response.text
    certs, size = before
    assert s.certs() == certs, "a refused request issued a certificate"
    refusals = [e for e in s.entries_since(size) if e["outcome"] == "refused" and e["action"] == action]
    assert refusals, f"no refused {action} entry logged"
    if reason is not None:
        assert any(e["details"].get("reason") == reason for e in refusals), refusals


def before(s: Served) -> tuple[int, int]:
    return s.certs(), s.home.log.size()


# -- cacerts --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/.well-known/est/cacerts", f"/.well-known/est/{ISSUING}/cacerts"])
def test_cacerts_is_the_chain_to_the_root(served: Served, path: str) -> None:
    r = served.direct.get(path)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/pkcs7-mime; smime-type=certs-only"
    certs = est.decode_certs_only(r.content)  # a SET OF in PKCS#7: the order is not kept
    assert sorted(certs, key=lambda c: c.serial_number) == sorted(
        [served.pki.issuing, served.pki.product, served.pki.root], key=lambda c: c.serial_number
    )


@pytest.mark.parametrize("label", ["no-such-ca", "UPPER", "a" * 65])
def test_cacerts_of_an_unknown_label_is_404(served: Served, label: str) -> None:
    r = served.direct.get(f"/.well-known/est/{label}/cacerts")
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"


# -- simpleenroll ---------------------------------------------------------------------------------------


def test_enroll_issues_a_device_certificate_and_spends_the_token(served: Served) -> None:
    token = served.token()
    size = served.home.log.size()
    key, der = device_csr("SN-ENROLL-1")
    cert = issued(enroll(served.direct, token, b64(der)))
    assert cert.public_key() == key.public_key()
    assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "SN-ENROLL-1"
    assert cert.issuer == served.pki.issuing.subject
    cert.verify_directly_issued_by(served.pki.issuing)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        f"https://{DOMAIN}/devices/SN-ENROLL-1"
    ]
    _, row = served.home.pki.certificate(ISSUING, format(cert.serial_number, "x"))
    assert (row["device_serial"], row["order_id"], row["status"]) == ("SN-ENROLL-1", "po1", "good")
    actions = [(e["action"], e["outcome"]) for e in served.entries_since(size)]
    assert ("est.token-redeem", "ok") in actions
    assert ("cert.issue", "ok") in actions
    assert ("est.enroll", "ok") in actions
    # one-time: the same token again is 401 with a challenge, and nothing is issued
    mark = before(served)
    r = enroll(served.direct, token, b64(device_csr("SN-ENROLL-2")[1]))
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert "unknown, spent, expired" in r.json()["message"]
    assert_refused(served, r, 401, "unauthorised", mark, "est.token-redeem", "spent")


def test_enroll_at_the_tokens_ca_label(served: Served) -> None:
    issued(enroll(served.direct, served.token(), b64(device_csr("SN-LABEL-1")[1]), label=ISSUING))


def test_a_foreign_token_is_refused_and_not_spent(served: Served) -> None:
    token = served.token()
    mark = before(served)
    r = enroll(served.direct, token, b64(device_csr("SN-FOREIGN")[1]), label=OTHER)
    assert_refused(served, r, 401, "unauthorised", mark, "est.token-redeem", "foreign")
    issued(enroll(served.direct, token, b64(device_csr("SN-FOREIGN")[1]), label=ISSUING))


def test_an_unknown_token_is_refused(served: Served) -> None:
    mark = before(served)
    r = enroll(served.direct, "x" * 43, b64(device_csr("SN-UNKNOWN")[1]))
    assert_refused(served, r, 401, "unauthorised", mark, "est.token-redeem", "unknown")


@pytest.mark.parametrize(
    ("authorization", "reason"),
    [(None, None), ("Basic dXNlcjpwYXNz", None), ("Bearer not-a-token", None)],
    ids=["fail/none", "fail/basic", "fail/malformed"],
)
def test_enroll_without_a_usable_token_is_401(
    served: Served, authorization: str | None, reason: str | None
) -> None:
    mark = before(served)
    headers = {"Content-Type": "application/pkcs10"}
    if authorization:
        headers["Authorization"] = authorization
    r = served.direct.post(
        "/.well-known/est/simpleenroll", content=b64(device_csr("SN-NOAUTH")[1]), headers=headers
    )
    assert r.headers["www-authenticate"] == 'Bearer realm="est"'
    assert_refused(served, r, 401, "unauthorised", mark, "est.enroll")


def _bad_signature() -> bytes:
    der = bytearray(device_csr("SN-BADSIG")[1])
    der[-1] ^= 0x01  # the last octet of the ECDSA signature's s
    return b64(bytes(der))


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"this is not base64 at all!", "application/pkcs10", 400, "invalid_input"),
        (b64(device_csr("SN-TRUNC")[1][:-20]), "application/pkcs10", 400, "invalid_input"),
        (b64(b"\x30\x03\x02\x01\x00"), "application/pkcs10", 400, "invalid_input"),
        (_bad_signature(), "application/pkcs10", 422, "verification_failed"),
        (b"A" * (64 * 1024 + 1), "application/pkcs10", 413, "too_large"),
        (b64(device_csr("SN-CT")[1]), "application/octet-stream", 415, "unsupported_media_type"),
    ],
    ids=["fail/malformed", "fail/truncated", "fail/not-a-csr", "fail/bad-signature", "fail/oversized",
         "fail/content-type"],
)  # fmt: skip
def test_bad_requests_are_refused_before_the_token_is_spent(
    served: Served, body: bytes, content_type: str, status: int, code: str
) -> None:
    token = served.token()
    mark = before(served)
    r = enroll(served.direct, token, body, **{"Content-Type": content_type})
    assert_refused(served, r, status, code, mark, "est.enroll", code)
    # syntax and signature are checked before the token: it still works
    issued(enroll(served.direct, token, b64(device_csr(f"SN-AFTER-{secrets.token_hex(4)}")[1])))


def test_oversized_by_content_length_is_413_before_reading(served: Served) -> None:
    mark = before(served)
    r = served.direct.post(
        "/.well-known/est/simpleenroll",
        content=b"A" * (200 * 1024),
        headers={"Content-Type": "application/pkcs10", "Authorization": "Bearer " + "y" * 43},
    )
    assert_refused(served, r, 413, "too_large", mark, "est.enroll", "too_large")


@pytest.mark.parametrize(
    ("csr", "status", "code", "spent"),
    [
        (lambda: device_csr("SN-EMAIL", extra=(_attr(NameOID.EMAIL_ADDRESS, "a@b.example"),))[1], 400,
         "invalid_input", False),
        (lambda: _not_printable_csr(), 400, "invalid_input", False),
        (lambda: device_csr(None)[1], 400, "invalid_input", True),
        (lambda: device_csr("SN-OU", extra=(_attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "line"),))[1], 422,
         "policy_violation", True),
        (lambda: device_csr("SN-CN", extra=(_attr(NameOID.COMMON_NAME, "x" * 65),))[1], 400,
         "invalid_input", True),
    ],
    ids=["fail/unknown-attribute", "fail/subject-encoding", "fail/no-serial", "fail/profile-subject",
         "fail/long-cn"],
)  # fmt: skip
@pytest.mark.filterwarnings("ignore:Attribute's length must be:UserWarning")
def test_refusals_after_the_token_spend_it(
    served: Served, csr: Any, status: int, code: str, spent: bool
) -> None:
    """Syntax is checked before the token (not spent); a refused issuance spends it (one attempt)."""
    token = served.token()
    mark = before(served)
    r = enroll(served.direct, token, b64(csr()))
    assert_refused(served, r, status, code, mark, "est.enroll", code)
    retry = enroll(served.direct, token, b64(device_csr(f"SN-RETRY-{secrets.token_hex(4)}")[1]))
    assert retry.status_code == (401 if spent else 200), retry.text


def test_a_duplicate_device_serial_is_409_and_spends_the_token(served: Served) -> None:
    issued(enroll(served.direct, served.token(), b64(device_csr("SN-DUP")[1])))
    token = served.token()
    mark = before(served)
    r = enroll(served.direct, token, b64(device_csr("SN-DUP")[1]))
    assert_refused(served, r, 409, "conflict", mark, "est.enroll", "conflict")
    assert enroll(served.direct, token, b64(device_csr("SN-DUP-2")[1])).status_code == 401


def test_a_cloned_key_is_409(served: Served) -> None:
    key, der = device_csr("SN-CLONE-A")
    issued(enroll(served.direct, served.token(), b64(der)))
    mark = before(served)
    r = enroll(served.direct, served.token(), b64(device_csr("SN-CLONE-B", key=key)[1]))
    assert_refused(served, r, 409, "conflict", mark, "est.enroll", "conflict")


# -- simplereenroll -------------------------------------------------------------------------------------


def _enrolled(served: Served, serial: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, bytes]:
    key, der = device_csr(serial)
    return key, issued(enroll(served.direct, served.token(), b64(der))), der


def _status(served: Served, cert: x509.Certificate) -> tuple[str, str | None, str | None]:
    _, row = served.home.pki.certificate(ISSUING, format(cert.serial_number, "x"))
    return row["status"], row["revocation_reason"], row["device_serial"]


def test_reenroll_with_a_new_key_supersedes_the_old_certificate(served: Served) -> None:
    _, old, _ = _enrolled(served, "SN-RE-1")
    size = served.home.log.size()
    new_key, der = device_csr("SN-RE-1")
    new = issued(reenroll(served.proxy, old, b64(der)))
    assert new.public_key() == new_key.public_key()
    assert new.subject == old.subject
    assert new.serial_number != old.serial_number
    assert new.extensions.get_extension_for_class(x509.SubjectAlternativeName) == (
        old.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    )
    assert _status(served, old) == ("revoked", "superseded", None)
    assert _status(served, new) == ("good", None, "SN-RE-1")
    actions = [(e["action"], e["outcome"]) for e in served.entries_since(size)]
    assert {("cert.revoke", "ok"), ("cert.issue", "ok"), ("est.reenroll", "ok")} <= set(actions)
    # the superseded certificate is revoked: it cannot re-enroll again
    mark = before(served)
    r = reenroll(served.proxy, old, b64(device_csr("SN-RE-1")[1]))
    assert_refused(served, r, 403, "not_authorised", mark, "est.reenroll", "not_authorised")
    assert "revoked" in r.json()["message"]


def test_reenroll_with_the_same_key_renews(served: Served) -> None:
    key, old, der = _enrolled(served, "SN-RENEW")
    first = issued(reenroll(served.proxy, old, b64(der), label=ISSUING))
    second = issued(reenroll(served.proxy, first, b64(device_csr("SN-RENEW", key=key)[1])))
    assert second.public_key() == key.public_key()
    assert _status(served, first)[:2] == ("revoked", "superseded")
    assert _status(served, second)[0] == "good"


def test_reenroll_with_a_key_certified_elsewhere_is_409(served: Served) -> None:
    other_key, _, _ = _enrolled(served, "SN-RE-OTHER")
    _, old, _ = _enrolled(served, "SN-RE-CLONE")
    mark = before(served)
    r = reenroll(served.proxy, old, b64(device_csr("SN-RE-CLONE", key=other_key)[1]))
    assert_refused(served, r, 409, "conflict", mark, "est.reenroll", "conflict")
    assert _status(served, old)[0] == "good", "a refused re-enrollment must leave the old certificate good"


def test_reenroll_must_keep_the_subject(served: Served) -> None:
    _, old, _ = _enrolled(served, "SN-RE-SUBJ")
    for der in (device_csr("SN-RE-OTHER-SERIAL")[1], device_csr("SN-RE-SUBJ", org="Evil")[1]):
        mark = before(served)
        r = reenroll(served.proxy, old, b64(der))
        assert_refused(served, r, 422, "policy_violation", mark, "est.reenroll", "policy_violation")
    assert _status(served, old)[0] == "good"


def test_reenroll_with_a_revoked_certificate_is_refused(served: Served) -> None:
    _, old, der = _enrolled(served, "SN-RE-REVOKED")
    served.home.pki.revoke(reason="keyCompromise", ca_id=ISSUING, serial=format(old.serial_number, "x"))
    mark = before(served)
    r = reenroll(served.proxy, old, b64(der))
    assert_refused(served, r, 403, "not_authorised", mark, "est.reenroll", "not_authorised")
    assert "revoked" in r.json()["message"]


def _self_made(issuer_name: x509.Name, serial: int, subject: x509.Name) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_reenroll_with_an_unknown_or_forged_certificate_is_refused(served: Served) -> None:
    _, old, der = _enrolled(served, "SN-RE-FORGED")
    # same issuer name, serial and subject as a good certificate, but not signed by the CA
    forged = _self_made(old.issuer, old.serial_number, old.subject)
    elsewhere = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Elsewhere CA")])
    foreign = _self_made(elsewhere, 12345678901234567890, old.subject)
    for cert in (forged, foreign):
        mark = before(served)
        r = reenroll(served.proxy, cert, b64(der))
        assert_refused(served, r, 403, "not_authorised", mark, "est.reenroll", "not_authorised")
        assert "not issued here" in r.json()["message"]
    assert _status(served, old)[0] == "good"


def test_reenroll_of_a_certificate_of_another_profile_is_refused(served: Served) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([_attr(NameOID.ORGANIZATION_NAME, "Acme"), _attr(NameOID.COMMON_NAME, "station 7")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    station = served.home.pki.issue(
        ISSUING,
        "station",
        csr.public_bytes(serialization.Encoding.DER),
        NameRequest({"organizationName": "Acme", "commonName": "station 7"}, dns=(f"station7.{DOMAIN}",)),
    ).certificate
    mark = before(served)
    r = reenroll(served.proxy, station, b64(csr.public_bytes(serialization.Encoding.DER)))
    assert_refused(served, r, 422, "policy_violation", mark, "est.reenroll", "policy_violation")
    assert "device-idevid" in r.json()["message"]


def test_the_client_certificate_header_is_read_only_from_the_trusted_proxy(served: Served) -> None:
    _, old, der = _enrolled(served, "SN-RE-PEER")
    mark = before(served)
    r = reenroll(served.direct, old, b64(der))
    assert_refused(served, r, 403, "not_authorised", mark, "est.reenroll", "not_authorised")
    logged = [e for e in served.entries_since(mark[1]) if e["action"] == "est.reenroll"]
    assert logged[-1]["details"]["why"] == "client-certificate header from an untrusted peer"
    assert logged[-1]["actor"] == "est-client@127.0.0.1"
    assert _status(served, old)[0] == "good"


@pytest.mark.parametrize("verdict", ["FAILED:certificate has expired", "NONE", ""])
def test_reenroll_needs_the_proxys_success_verdict(served: Served, verdict: str) -> None:
    _, old, der = _enrolled(served, f"SN-RE-VERDICT-{len(verdict)}")
    mark = before(served)
    r = reenroll(served.proxy, old, b64(der), verdict=verdict)
    assert_refused(served, r, 403, "not_authorised", mark, "est.reenroll", "not_authorised")


def test_reenroll_without_a_certificate_is_403(served: Served) -> None:
    mark = before(served)
    r = reenroll(served.proxy, None, b64(device_csr("SN-RE-NONE")[1]))
    assert_refused(served, r, 403, "not_authorised", mark, "est.reenroll", "not_authorised")
    assert "client certificate" in r.json()["message"]


def test_reenroll_at_another_label_is_refused(served: Served) -> None:
    _, old, der = _enrolled(served, "SN-RE-LABEL")
    mark = before(served)
    r = reenroll(served.proxy, old, b64(der), label=OTHER)
    assert_refused(served, r, 403, "not_authorised", mark, "est.reenroll", "not_authorised")


def test_reenroll_bad_body_is_refused(served: Served) -> None:
    _, old, _ = _enrolled(served, "SN-RE-BODY")
    for body, status in ((b"%%%", 400), (b"A" * (64 * 1024 + 1), 413), (_bad_signature(), 422)):
        mark = before(served)
        r = reenroll(served.proxy, old, body)
        assert r.status_code == status, r.text
        assert served.certs() == mark[0]
    assert _status(served, old)[0] == "good"


def test_tokens_and_hashes_never_reach_the_log_or_answers(served: Served) -> None:
    token = served.token()
    issued(enroll(served.direct, token, b64(device_csr("SN-SECRET")[1])))
    r = enroll(served.direct, token, b64(device_csr("SN-SECRET-2")[1]))
    assert token not in r.text
    everything = b"".join(served.home.log.entries(0, served.home.log.size()))
    assert token.encode() not in everything
    assert est.token_hash(token).encode() not in everything  # only the 16-digit id
    assert est.token_hash(token)[:16].encode() in everything


# -- tokens ---------------------------------------------------------------------------------------------


def test_a_token_is_stored_as_its_hash_only(served: Served) -> None:
    new = served.tokens.create(ISSUING, "device-idevid", None, "stored hashed", 600)
    assert new.binding.order_id == "po1"  # the CA's order by default
    assert new.token not in repr(new)
    with served.home.store.read() as conn:
        rows = conn.execute(select(pki_est_tokens)).mappings().all()
    assert any(r["token_hash"] == est.token_hash(new.token) for r in rows)
    assert all(new.token not in str(dict(r)) for r in rows)


@pytest.mark.parametrize(
    ("args", "error", "needle"),
    [
        ((ISSUING, "station", None, "x", 600), PolicyViolation, "device-idevid"),
        ((ISSUING, "no-such-profile", None, "x", 600), PolicyViolation, "device-idevid"),
        (("no-such-ca", "device-idevid", None, "x", 600), NotFound, "no CA"),
        (("root", "device-idevid", None, "x", 600), PolicyViolation, "cannot issue"),
        ((OTHER, "device-idevid", None, "x", 600), PolicyViolation, "cannot issue"),
        ((ISSUING, "device-idevid", "po2", "x", 600), PolicyViolation, "order po1"),
        ((ISSUING, "device-idevid", "po 1", "x", 600), InvalidInput, "order id"),
        ((ISSUING, "device-idevid", None, "", 600), InvalidInput, "label"),
        ((ISSUING, "device-idevid", None, "a\nb", 600), InvalidInput, "label"),
        ((ISSUING, "device-idevid", None, "x", 59), InvalidInput, "lifetime"),
        ((ISSUING, "device-idevid", None, "x", 31 * 86400), InvalidInput, "lifetime"),
    ],
    ids=["fail/ca-profile", "fail/unknown-profile", "fail/unknown-ca", "fail/root", "fail/no-key-here",
         "fail/other-order", "fail/bad-order", "fail/empty-label", "fail/control-label", "fail/short-ttl",
         "fail/long-ttl"],
)  # fmt: skip
def test_token_creation_refusals_are_logged(
    served: Served, args: tuple[Any, ...], error: type, needle: str
) -> None:
    mark = before(served)
    with served.home.store.read() as conn:
        count = len(conn.execute(select(pki_est_tokens.c.token_hash)).all())
    with pytest.raises(error, match=needle):
        served.tokens.create(*args)
    with served.home.store.read() as conn:
        assert len(conn.execute(select(pki_est_tokens.c.token_hash)).all()) == count
    entries = served.entries_since(mark[1])
    assert [(e["action"], e["outcome"]) for e in entries] == [("est.token-create", "refused")]


def test_an_expired_token_is_refused(served: Served) -> None:
    token = served.token()
    later = EstTokens(
        served.home.store, served.home.audit, lambda: datetime.now(UTC) + timedelta(hours=2), actor="tester"
    )
    mark = before(served)
    with pytest.raises(EstUnauthorised):
        later.redeem(token)
    entries = served.entries_since(mark[1])
    assert entries[-1]["details"]["reason"] == "expired"


def test_redeem_is_atomic_under_concurrency(served: Served) -> None:
    token = served.token()
    wins: list[str] = []
    losses: list[str] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            wins.append(served.tokens.redeem(token).ca_id)
        except EstUnauthorised:
            losses.append("refused")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (len(wins), len(losses)) == (1, 7)


@pytest.mark.postgres
def test_redeem_is_atomic_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    with Home.init(
        tmp_path / "home", database=pg_url, passphrase=lambda: "pw-pg", pin=never, actor="t"
    ) as home:
        build_pki(home, other_order=False)
        tokens = EstTokens(home.store, home.audit, actor="t")
        token = tokens.create(ISSUING, "device-idevid", "po1", "pg", 600).token
        results: list[str] = []
        barrier = threading.Barrier(6)

        def attempt() -> None:
            barrier.wait()
            try:
                results.append(tokens.redeem(token).ca_id)
            except EstUnauthorised:
                results.append("refused")

        threads = [threading.Thread(target=attempt) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [ISSUING] + ["refused"] * 5


# -- the default label ---------------------------------------------------------------------------------


def test_the_default_label_needs_a_single_est_ca(tmp_path: Path) -> None:
    with Home.init(tmp_path / "home", passphrase=lambda: "pw-default", pin=never, actor="tester") as home:
        build_pki(home, other_order=False)
        service = EstService(home.pki, EstTokens(home.store, home.audit, actor="t"), home.audit)
        assert service.default_ca().ca_id == ISSUING
        key = home.keystore().generate("station-line2-po3", KeyType.P256, KeyUsage.SIGN)
        csr = make_csr(home.keystore(), key.uri, {"commonName": "line2 po3", "organizationName": "Acme"})
        second = home.pki.sign_issuing_ca(
            "widget", csr, station="line2", order_id="po3", not_after=datetime.now(UTC) + timedelta(days=3)
        )
        home.pki.adopt_bundle(home.pki.export_bundle(second.ca_id), key_uri=key.uri)
        with pytest.raises(NotFound, match="name it"):
            service.default_ca()
        with TestClient(create_app(home), raise_server_exceptions=False) as client:
            assert client.get("/.well-known/est/cacerts").status_code == 404
            assert client.get(f"/.well-known/est/{second.ca_id}/cacerts").status_code == 200


def test_create_app_refuses_a_trusted_proxy_that_is_not_an_address(served: Served) -> None:
    with pytest.raises(InvalidInput, match="IP address"):
        create_app(served.home, trusted_proxies=["proxy.example"])
    assert create_app(served.home).state.trusted_proxies == frozenset()


def test_certificates_table_is_consistent(served: Served) -> None:
    """One good certificate per device serial; superseded ones keep their subject."""
    with served.home.store.read() as conn:
        rows = conn.execute(select(pki_certs)).mappings().all()
    serials = [r["device_serial"] for r in rows if r["device_serial"]]
    assert len(serials) == len(set(serials))
    assert all(r["status"] == "revoked" for r in rows if r["revocation_reason"] == "superseded")
