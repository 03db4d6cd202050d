"""Stations and devices as API callers: the client certificate the TLS proxy verified and forwards
(``X-SSL-Client-Cert``, ``X-SSL-Client-Verify``) identifies them, and the app checks it again
against its own home. Over ``/access/whoami`` (any authenticated caller) in process, against the
production run's real station and device certificates.

Refused, with nothing changed: the headers from a peer that is not the trusted proxy, a verdict
other than SUCCESS, a malformed header, a certificate not issued here, a revoked certificate."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from httpx import Response

from fabtrust.api.app import create_app
from fabtrust.home import Home
from fabtrust.production.station import Provisioned
from tests.production.test_run import Run, provision, seal_for
from tests.production.test_run import run as run  # the production-run fixture (explicit re-export)
from tests.team import login_refusal

PROXY = "10.9.8.7"


def forwarded(cert: x509.Certificate | str, verdict: str = "SUCCESS") -> dict[str, str]:
    pem = cert if isinstance(cert, str) else cert.public_bytes(serialization.Encoding.PEM).decode()
    return {"X-SSL-Client-Cert": quote(pem, safe=""), "X-SSL-Client-Verify": verdict}


def whoami(home: Home, headers: dict[str, str], peer: str = PROXY) -> Response:
    app = create_app(home, trusted_proxies=[PROXY])
    with TestClient(app, raise_server_exceptions=False, client=(peer, 40000)) as client:
        return client.get("/access/whoami", headers=headers)


def refused(r: Response, status: int, needle: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "message", "request_id"}
    assert needle in body["message"]


def station_certificate(run: Run, station_id: str) -> x509.Certificate:
    return x509.load_der_x509_certificate(run.oem.production.station(station_id)["identity_cert"])


def test_a_station_certificate_through_the_proxy_is_the_station(run: Run) -> None:
    r = whoami(run.oem, forwarded(station_certificate(run, "line1")))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "principal_id": "station:line1",
        "kind": "station",
        "roles": ["station"],
        "via": "certificate",
        "token_id": None,
    }


def test_a_device_certificate_through_the_proxy_is_the_device_until_revoked(run: Run) -> None:
    run.line1.station.load(seal_for(run.oem, run.line1, "po-1", 2))
    (result,) = provision(run.line1, "po-1", [run.chip()])
    assert isinstance(result, Provisioned)
    r = whoami(run.line1, forwarded(result.certificate))
    assert r.status_code == 200, r.text
    assert (r.json()["principal_id"], r.json()["roles"]) == (f"device:{result.device_serial}", ["device"])

    assert run.line1.pki.revoke(device_serial=result.device_serial, reason="keyCompromise") == 1
    size = run.line1.log.size()
    refused(whoami(run.line1, forwarded(result.certificate)), 403, "revoked")
    entry = login_refusal(run.line1, size, "revoked")  # refused at the door: that entry, nothing else
    assert entry["actor"] == f"client-certificate:{result.certificate.serial_number:x}"


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        pytest.param("untrusted-peer", "from the TLS proxy only", id="header-from-an-untrusted-peer"),
        pytest.param("verdict-failed", "did not verify", id="proxy-verdict-failed"),
        pytest.param("verdict-none", "did not verify", id="proxy-verdict-none-with-a-header"),
        pytest.param("malformed", "malformed", id="malformed-header"),
        pytest.param("foreign", "not issued here", id="certificate-of-another-pki"),
        pytest.param("revoked-station", "revoked", id="revoked-station-certificate"),
    ],
)
def test_unusable_certificate_credentials_are_refused(run: Run, case: str, needle: str) -> None:
    cert = station_certificate(run, "line1")
    headers, peer = forwarded(cert), PROXY
    if case == "untrusted-peer":
        peer = "127.0.0.1"
    elif case == "verdict-failed":
        headers = forwarded(cert, "FAILED:certificate has expired")
    elif case == "verdict-none":
        headers = forwarded(cert, "NONE")
    elif case == "malformed":
        headers = forwarded("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    elif case == "foreign":
        headers = forwarded(run.vendor.root)  # a real certificate, from the silicon vendor's PKI
    elif case == "revoked-station":
        serial = format(cert.serial_number, "x")
        assert run.oem.pki.revoke(ca_id="root", serial=serial, reason="keyCompromise") == 1
    size = run.oem.log.size()
    refused(whoami(run.oem, headers, peer), 403, needle)
    login_refusal(run.oem, size, needle)


def test_a_bearer_token_is_not_replaced_by_a_certificate(run: Run) -> None:
    # credentials that are present but wrong are refused, never passed over for others
    headers = {
        "Authorization": "Bearer ftk_0000000000000000_" + "A" * 43,
        **forwarded(station_certificate(run, "line1")),
    }
    refused(whoami(run.oem, headers), 401, "invalid or expired credentials")
