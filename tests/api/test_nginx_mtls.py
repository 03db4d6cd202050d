"""Stations and devices authenticated by their client certificates through a real nginx terminating
mutual TLS in front of the real app (DESIGN.md "Serving"), the way they reach a deployment.

Two data homes are served, each by ``create_app`` on uvicorn (a thread, plain HTTP on a loopback
port, ``proxy_headers`` off as ``fabtrust serve`` has it) behind its own nginx (the ``nginx_proxy``
fixture): the OEM, which certified the stations and knows their identity certificates, and station
line1, which issued a device's IDevID from its order-bound issuing CA. Each nginx verifies client
chains against its home's CA certificates and forwards the verified certificate in
``X-SSL-Client-Cert``; it connects upstream from :data:`PROXY_ADDRESS`, the app's only trusted proxy,
so a client connecting to the app port itself (from 127.0.0.1) is not believed.

The stations are enrolled and certified by the OEM's own code (``certify_station``); their identity
keys are the ones their soft key stores generated at enrollment, written to a 0600 PEM file for the
TLS client. line3 was certified 900 days ago on the test clock, so its 825-day identity certificate
has expired by the real time nginx checks. line1's order-bound issuing CA is certified by the OEM
with its key made in line1's key store (what loading a sealed package adopts); the device's key is
generated here (a simulated secure element never hands out its key, and a TLS stack needs one) and
its IDevID is issued by that CA for the order. Nothing is hard-coded: every key and
certificate is made at test time.

Outcomes asserted (status, exact JSON body): station -> its principal (curl and httpx), device ->
its principal, a revoked station -> 403 from the app, an expired or foreign certificate -> 400 from
nginx with nothing reaching the app, no certificate -> 401, the header sent straight to the app port
-> 403, a station calling what its role allows and what it does not. A missing nginx or curl fails.
"""

from __future__ import annotations

import json
import re
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI

from fabtrust.api.app import create_app
from fabtrust.api.auth import CLIENT_CERT_HEADER, CLIENT_VERIFY_HEADER, REAL_IP_HEADER
from fabtrust.api.deps import Metrics
from fabtrust.crypto.keys import KeyType, KeyUsage
from fabtrust.home import Home
from fabtrust.keystore.soft import SoftKeyStore
from fabtrust.pki.issuance import NameRequest
from fabtrust.pki.service import make_csr
from fabtrust.tlog.audit import AuditEntry
from tests.fixtures.nginx import PROXY_ADDRESS, Nginx, StartNginx
from tests.fixtures.serving import serving, tool
from tests.production.line import CUSTODIANS, DOMAIN, Clock, enroll, make_home
from tests.team import login_refusal

ORDER = "po-1"
DEVICE_SERIAL = "SN-MTLS-0001"
PEM = serialization.Encoding.PEM
REQUEST_ID = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Credential:
    """A client certificate and its private key, as PEM files for curl and the ssl module."""

    certificate: x509.Certificate
    cert: Path
    key: Path

    def forwarded(self) -> dict[str, str]:
        """The headers nginx sends upstream for this certificate ($ssl_client_escaped_cert)."""
        pem = self.certificate.public_bytes(PEM).decode()
        return {CLIENT_CERT_HEADER: quote(pem, safe=""), CLIENT_VERIFY_HEADER: "SUCCESS"}


def write_credential(
    d: Path, name: str, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> Credential:
    cert, key_file = d / f"{name}.pem", d / f"{name}.key"
    cert.write_bytes(certificate.public_bytes(PEM))
    key_file.touch(mode=0o600)
    key_file.write_bytes(
        key.private_bytes(PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Credential(certificate, cert, key_file)


def station_credential(d: Path, oem: Home, station: Home) -> Credential:
    """The station's identity certificate as the OEM recorded it, and the key its key store made."""
    me = station.station.identity()
    certificate = x509.load_der_x509_certificate(oem.production.station(me["station_id"])["identity_cert"])
    store = station.keystore()
    assert isinstance(store, SoftKeyStore)
    key = store.in_process_signing_key(me["identity_key"])
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return write_credential(d, str(me["station_id"]), certificate, key)


def csr_for(key: ec.EllipticCurvePrivateKey, *attributes: x509.NameAttribute[Any]) -> bytes:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(list(attributes)))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def foreign_credential(d: Path, impersonated: x509.Name) -> Credential:
    """A client certificate naming station line1 from a CA of nobody's (in no bundle) that calls
    itself by the name of the OEM root, ``impersonated``: only the signature tells them apart."""
    now = datetime.now(UTC) - timedelta(minutes=5)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = impersonated
    leaf = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "line1"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
                ]
            )
        )
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return write_credential(d, "foreign", leaf, key)


def ca_bundle(home: Home) -> bytes:
    """Every CA certificate this home holds: what its nginx verifies client chains against."""
    return b"".join(ca.certificate.public_bytes(PEM) for ca in home.pki.cas())


@dataclass(frozen=True)
class Backend:
    """One home served by the app behind its nginx."""

    home: Home
    app: FastAPI
    app_port: int
    nginx: Nginx

    def client(self, credential: Credential | None) -> httpx.Client:
        """An HTTPS client of nginx, presenting ``credential`` (or no certificate)."""
        context = ssl.create_default_context(cafile=str(self.nginx.server_cert))
        if credential is not None:
            context.load_cert_chain(str(credential.cert), str(credential.key))
        return httpx.Client(base_url=self.nginx.url(""), verify=context, timeout=20)

    def get(self, path: str, credential: Credential | None) -> httpx.Response:
        with self.client(credential) as client:
            return client.get(path)

    def requests_served(self) -> float:
        """How many requests reached the app (its own per-route counter)."""
        metrics = self.app.state.metrics
        assert isinstance(metrics, Metrics)
        return sum(
            sample.value
            for metric in metrics.requests.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )

    def last_entry(self) -> AuditEntry:
        size = self.home.log.size()
        return AuditEntry.parse(self.home.log.entries(size - 1, size)[0])


@dataclass(frozen=True)
class Plant:
    d: Path
    oem: Backend  # authenticates stations
    line1: Backend  # authenticates the devices it issued
    stations: dict[str, Credential]  # line1, line2: active; line3: expired
    device: Credential
    foreign: Credential


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory, nginx_proxy: StartNginx) -> Iterator[Plant]:
    tool("curl")
    d = tmp_path_factory.mktemp("nginx-mtls")
    now = datetime.now(UTC).replace(microsecond=0)
    clock = Clock(now - timedelta(days=900))
    with ExitStack() as stack:
        homes: dict[str, Home] = {}
        for name, actor in (("oem", "oem-admin"), *((f"line{i}", f"operator-{i}") for i in (1, 2, 3))):
            homes[name] = make_home(d / name, actor, clock)
            stack.callback(homes[name].close)
        oem, line1 = homes["oem"], homes["line1"]
        oem.pki.init_root(
            attributes={"commonName": "Acme Root CA", "organizationName": "Acme"},
            custodians=CUSTODIANS,
            threshold=2,
            scrypt_n=2**14,
        )
        oem.pki.create_product_ca(
            "widget",
            attributes={"commonName": "Acme Widget CA", "organizationName": "Acme"},
            device_domain=DOMAIN,
        )
        enroll(oem, homes["line3"], "line3")  # 900 days ago: its 825-day certificate has expired
        clock.now = now - timedelta(hours=1)
        enroll(oem, line1, "line1")
        enroll(oem, homes["line2"], "line2")
        # line1's issuing CA for the order: its key made in line1's key store, certified by the OEM
        issuing_key = line1.keystore().generate(f"station-line1-{ORDER}", KeyType.P256, KeyUsage.SIGN)
        issuing = oem.pki.sign_issuing_ca(
            "widget",
            make_csr(
                line1.keystore(),
                issuing_key.uri,
                {"commonName": f"line1 {ORDER}", "organizationName": "Acme"},
            ),
            station="line1",
            order_id=ORDER,
            not_after=clock.now + timedelta(days=7),
        )
        line1.pki.adopt_bundle(oem.pki.export_bundle(issuing.ca_id), key_uri=issuing_key.uri)
        device_key = ec.generate_private_key(ec.SECP256R1())
        idevid = line1.pki.issue(
            issuing.ca_id,
            "device-idevid",
            csr_for(device_key, x509.NameAttribute(NameOID.SERIAL_NUMBER, DEVICE_SERIAL)),
            NameRequest({"organizationName": "Acme", "commonName": f"{ORDER}/1"}),
            device_serial=DEVICE_SERIAL,
            order_id=ORDER,
        )
        stations = {f"line{i}": station_credential(d, oem, homes[f"line{i}"]) for i in (1, 2, 3)}
        assert (
            stations["line3"].certificate.not_valid_after_utc
            < now
            < stations["line1"].certificate.not_valid_after_utc
        )
        device = write_credential(d, "device", idevid.certificate, device_key)
        foreign = foreign_credential(d, oem.pki.ca("root").certificate.subject)
        backends: dict[str, Backend] = {}
        for name, home, station in (("oem", oem, False), ("line1", line1, True)):
            (d / f"{name}-bundle.pem").write_bytes(ca_bundle(home))
            app = create_app(home, trusted_proxies=[PROXY_ADDRESS], station=station)
            # configured as `fabtrust serve` runs it: the peer address is never rewritten from X-Forwarded-For
            port = stack.enter_context(serving(app, access_log=False, proxy_headers=False))
            nginx = nginx_proxy(upstream_port=port, client_ca=d / f"{name}-bundle.pem")
            backends[name] = Backend(home, app, port, nginx)
        yield Plant(d, backends["oem"], backends["line1"], stations, device, foreign)


def refused(r: httpx.Response, status: int, error: str, message: str) -> None:
    """The app's refusal: the status, a safe JSON error with the request id, nothing more."""
    assert r.status_code == status, r.text
    body = r.json()
    assert body == {"error": error, "message": message, "request_id": body["request_id"]}
    assert REQUEST_ID.fullmatch(body["request_id"])
    assert r.headers["x-request-id"] == body["request_id"]
    assert "BEGIN CERTIFICATE" not in r.text


def stopped_by_nginx(backend: Backend, credential: Credential, why: str) -> None:
    """nginx answers 400 itself for a client certificate it cannot verify; the app sees nothing."""
    served, size = backend.requests_served(), backend.home.log.size()
    logged = len(backend.nginx.error_log())
    r = backend.get("/access/whoami", credential)
    assert r.status_code == 400, r.text
    assert "The SSL certificate error" in r.text
    assert "x-request-id" not in r.headers  # the app's answers all carry one
    assert backend.requests_served() == served
    assert backend.home.log.size() == size
    assert f"client SSL certificate verify error: {why}" in backend.nginx.error_log()[logged:]


# -- who the proxy lets in ---------------------------------------------------------------------------


def test_a_station_identified_by_its_certificate_with_curl(plant: Plant) -> None:
    line1, nginx = plant.stations["line1"], plant.oem.nginx
    r = subprocess.run(
        [tool("curl"), "--silent", "--show-error", "--max-time", "10", "--cacert", str(nginx.server_cert),
         "--cert", str(line1.cert), "--key", str(line1.key), "--write-out", "\n%{http_code}",
         nginx.url("/access/whoami")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    body, status = r.stdout.rsplit("\n", 1)
    assert status == "200", body
    assert json.loads(body) == {
        "principal_id": "station:line1",
        "kind": "station",
        "roles": ["station"],
        "via": "certificate",
        "token_id": None,
    }


def test_a_station_identified_by_its_certificate_with_httpx(plant: Plant) -> None:
    r = plant.oem.get("/access/whoami", plant.stations["line1"])
    assert r.status_code == 200, r.text
    assert r.json() == {
        "principal_id": "station:line1",
        "kind": "station",
        "roles": ["station"],
        "via": "certificate",
        "token_id": None,
    }


def test_a_device_identified_by_its_idevid(plant: Plant) -> None:
    r = plant.line1.get("/access/whoami", plant.device)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "principal_id": f"device:{DEVICE_SERIAL}",
        "kind": "device",
        "roles": ["device"],
        "via": "certificate",
        "token_id": None,
    }


def test_what_a_station_may_call_and_what_it_may_not(plant: Plant) -> None:
    with plant.oem.client(plant.stations["line1"]) as client:
        own = client.get("/access/tokens")  # any authenticated caller: its own tokens
        assert own.status_code == 200, own.text
        assert own.json() == []
        size = plant.oem.home.log.size()
        r = client.get("/log/entries", params={"start": 0, "end": 1})  # log.read: not a station's
    refused(r, 403, "not_authorised", "not permitted: log.read")
    assert plant.oem.home.log.size() == size + 1  # the refusal, with its caller
    entry = plant.oem.last_entry()
    assert (entry.actor, entry.action, entry.subject, entry.outcome) == (
        "station:line1",
        "log.read",
        "api:GET /log/entries",
        "refused",
    )


def test_a_device_may_not_call_the_station_line_api(plant: Plant) -> None:
    with plant.line1.client(plant.device) as client:
        r = client.post("/station/challenge", json={"order_id": ORDER})
    refused(r, 403, "not_authorised", "not permitted: station.provision")


# -- who it does not ---------------------------------------------------------------------------------


def test_a_revoked_station_is_refused_by_the_app(plant: Plant) -> None:
    line2 = plant.stations["line2"]
    assert plant.oem.get("/access/whoami", line2).status_code == 200
    serial = format(line2.certificate.serial_number, "x")
    assert plant.oem.home.pki.revoke(ca_id="root", serial=serial, reason="keyCompromise") == 1
    served, size = plant.oem.requests_served(), plant.oem.home.log.size()
    r = plant.oem.get("/access/whoami", line2)  # nginx does not check revocation: the app does
    refused(r, 403, "not_authorised", "the client certificate is revoked")
    assert plant.oem.requests_served() == served + 1
    login_refusal(plant.oem.home, size, "revoked")  # refused at the door: that entry, nothing else


def test_an_expired_station_certificate_is_stopped_by_nginx(plant: Plant) -> None:
    # line3 is enrolled and active and this is its identity certificate: only its age stops it
    station = plant.oem.home.production.station("line3")
    assert station["status"] == "active"
    assert station["identity_cert"] == plant.stations["line3"].certificate.public_bytes(
        serialization.Encoding.DER
    )
    stopped_by_nginx(plant.oem, plant.stations["line3"], "(10:certificate has expired)")


def test_a_certificate_from_a_foreign_ca_is_stopped_by_nginx(plant: Plant) -> None:
    stopped_by_nginx(plant.oem, plant.foreign, "(7:certificate signature failure)")


def test_no_client_certificate_is_unauthenticated(plant: Plant) -> None:
    r = plant.oem.get("/access/whoami", None)
    refused(r, 401, "unauthenticated", "credentials are needed: a bearer token or a client certificate")
    assert r.headers["www-authenticate"] == 'Bearer realm="fabtrust"'


def test_the_certificate_header_straight_to_the_app_is_not_believed(plant: Plant) -> None:
    # a local client that reaches the app port itself, forging what nginx would say (and where from)
    forged = {
        **plant.stations["line1"].forwarded(),
        REAL_IP_HEADER: PROXY_ADDRESS,
        "X-Forwarded-For": PROXY_ADDRESS,
    }
    size = plant.oem.home.log.size()
    with httpx.Client(base_url=f"http://127.0.0.1:{plant.oem.app_port}", timeout=20) as client:
        r = client.get("/access/whoami", headers=forged)
        refused(r, 403, "not_authorised", "a client-certificate header is accepted from the TLS proxy only")
        forgery = login_refusal(plant.oem.home, size, "from the TLS proxy only")
        assert forgery["actor"] == "unauthenticated"  # the header was not even read
        size = plant.oem.home.log.size()
        # the same client without the header is a caller with no credentials, nothing more
        refused(
            client.get("/access/whoami"),
            401,
            "unauthenticated",
            "credentials are needed: a bearer token or a client certificate",
        )
    assert plant.oem.home.log.size() == size
    # and through nginx, a client's own copy of the headers is replaced by what nginx verified
    with plant.oem.client(None) as client:
        refused(
            client.get("/access/whoami", headers=forged),
            401,
            "unauthenticated",
            "credentials are needed: a bearer token or a client certificate",
        )
