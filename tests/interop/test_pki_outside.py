"""Every certificate profile judged from outside: pkilint lints each certificate and each
issuer/subject pair, and every chain is verified by ``openssl verify`` and by
``cryptography.x509.verification`` (client verifier for devices, server verifier for stations).

The certificates come from the two-home story of ``tests/pki/test_service.py`` on the wall clock
(the outside tools check validity against it): root → product CA → the station's order-bound
issuing CA → devices with P-256, P-384, Ed25519 and ML-DSA-65 keys; station identities with a DNS
name. Where an outside tool cannot judge a certificate, the test asserts exactly what the tool says
and why, so the limitation is recorded and noticed when the tool changes; nothing is skipped.

A missing openssl or pkilint fails the test.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from fabtrust.clock import system_clock
from fabtrust.crypto.keys import KeyType
from fabtrust.errors import PolicyViolation
from fabtrust.home import Home
from fabtrust.pki.issuance import NameRequest
from tests.fixtures.serving import tool
from tests.pki.test_service import (
    DEVICE_DOMAIN,
    GADGET_DOMAIN,
    ISSUING_ID,
    OEM_PASSPHRASE,
    ORDER,
    STATION_PASSPHRASE,
    build_story,
    certs,
    device_csr,
    device_request,
    never,
)

DEVICE_KEYS = [KeyType.P256, KeyType.P384, KeyType.ED25519, KeyType.MLDSA65]
STATION_NAME = f"line1.{DEVICE_DOMAIN}"  # under the issuing CA a station name must lie in its constraints


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60, check=False)


def openssl_version() -> tuple[int, int]:
    out = run(tool("openssl"), "version").stdout
    found = re.match(r"OpenSSL (\d+)\.(\d+)", out)
    assert found, out
    return int(found[1]), int(found[2])


@dataclass(frozen=True)
class Issued:
    dir: Path
    certs: dict[str, x509.Certificate]  # by name: root, product, issuing, device-<key>, station, ...

    def path(self, name: str) -> Path:
        return self.dir / f"{name}.pem"

    def bundle(self, *names: str) -> Path:
        """Several certificates in one PEM file (what ``-untrusted`` takes)."""
        target = self.dir / ("+".join(names) + ".pem")
        target.write_bytes(b"".join(self.path(n).read_bytes() for n in names))
        return target


@pytest.fixture(scope="module")
def issued(tmp_path_factory: pytest.TempPathFactory) -> Issued:
    base = tmp_path_factory.mktemp("outside")
    now = datetime.now(UTC)
    story = build_story(base / "story", system_clock, now + timedelta(days=30))
    found: dict[str, x509.Certificate] = {
        "root": story.root,
        "product": story.product,
        "issuing": story.issuing,
    }
    oem = Home.open(story.oem, passphrase=lambda: OEM_PASSPHRASE, pin=never, actor="oem-officer")
    station = Home.open(
        story.station, passphrase=lambda: STATION_PASSPHRASE, pin=never, actor="station-line1"
    )
    with oem, station:
        for key_type in DEVICE_KEYS:
            serial = f"SN-{key_type.value}"
            _, csr = device_csr(key_type)
            found[f"device-{key_type.value}"] = station.pki.issue(
                ISSUING_ID, "device-idevid", csr, device_request(serial), device_serial=serial, order_id=ORDER
            ).certificate
        station_names = NameRequest(
            {"commonName": "line1", "organizationName": "Acme"},
            dns=(STATION_NAME,),
            uris=("https://factory.acme.example/stations/line1",),
        )
        for key_type in (KeyType.P256, KeyType.ED25519):
            _, csr = device_csr(key_type)
            found[f"station-{key_type.value}"] = oem.pki.issue(
                "product-widget", "station", csr, station_names
            ).certificate
        # a station-profile certificate below the name-constrained issuing CA: a DNS name only
        _, csr = device_csr(KeyType.P256)
        dns_only = NameRequest({"commonName": "tester", "organizationName": "Acme"}, dns=(STATION_NAME,))
        found["station-below-issuing"] = station.pki.issue(ISSUING_ID, "station", csr, dns_only).certificate
        # a device outside the constraints cannot be produced
        before = certs(station)
        _, csr = device_csr()
        with pytest.raises(PolicyViolation, match="outside the name constraints"):
            station.pki.issue(
                ISSUING_ID,
                "device-idevid",
                csr,
                device_request("SN-ROGUE", GADGET_DOMAIN),
                device_serial="SN-ROGUE",
            )
        assert certs(station) == before
    out = base / "pem"
    out.mkdir()
    for name, cert in found.items():
        (out / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Issued(out, found)


ALL_CERTS = [
    "root",
    "product",
    "issuing",
    *(f"device-{k.value}" for k in DEVICE_KEYS),
    "station-ecdsa-p256",
    "station-ed25519",
    "station-below-issuing",
]


# -- pkilint ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_CERTS)
def test_pkilint_finds_nothing_at_warning_or_above(issued: Issued, name: str) -> None:
    result = run(tool("lint_pkix_cert"), "lint", "-s", "WARNING", issued.path(name))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("key_type", DEVICE_KEYS, ids=lambda k: k.value)
def test_pkilint_understands_every_device_key(issued: Issued, key_type: KeyType) -> None:
    """pkilint decodes ML-DSA (FIPS 204) keys too: at the lowest threshold it reports no unsupported
    public-key algorithm and nothing above INFO."""
    result = run(
        tool("lint_pkix_cert"), "lint", "-s", "DEBUG", "-f", "JSON", issued.path(f"device-{key_type.value}")
    )
    findings = [f for r in json.loads(result.stdout)["results"] for f in r["finding_descriptions"]]
    assert "pkix.public_key_algorithm_unsupported" not in {f["code"] for f in findings}
    assert {f["severity"] for f in findings} <= {"INFO", "DEBUG"}, findings


PAIRS = [
    ("root", "product"),
    ("product", "issuing"),
    *(("issuing", f"device-{k.value}") for k in DEVICE_KEYS),
    ("product", "station-ecdsa-p256"),
    ("product", "station-ed25519"),
    ("issuing", "station-below-issuing"),
]


@pytest.mark.parametrize(("issuer", "subject"), PAIRS, ids=[f"{i}/{s}" for i, s in PAIRS])
def test_pkilint_accepts_every_issuer_subject_pair(issued: Issued, issuer: str, subject: str) -> None:
    result = run(
        tool("lint_pkix_signer_signee_cert_chain"),
        "lint",
        "-s",
        "WARNING",
        issued.path(issuer),
        issued.path(subject),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""


# -- openssl verify --------------------------------------------------------------------------------


def openssl_verify(
    issued: Issued, leaf: str, intermediates: Sequence[str], *options: str
) -> subprocess.CompletedProcess[str]:
    return run(
        tool("openssl"),
        "verify",
        "-x509_strict",
        "-CAfile",
        issued.path("root"),
        "-untrusted",
        issued.bundle(*intermediates),
        *options,
        issued.path(leaf),
    )


def test_openssl_verifies_the_ca_chain(issued: Issued) -> None:
    result = openssl_verify(issued, "issuing", ["product"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("issuing.pem: OK")


@pytest.mark.parametrize(
    "key_type", [k for k in DEVICE_KEYS if k is not KeyType.MLDSA65], ids=lambda k: k.value
)
def test_openssl_verifies_devices_for_client_authentication(issued: Issued, key_type: KeyType) -> None:
    name = f"device-{key_type.value}"
    result = openssl_verify(issued, name, ["issuing", "product"], "-purpose", "sslclient")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith(f"{name}.pem: OK")
    # a device is no TLS server: its extended key usage says clientAuth only
    server = openssl_verify(issued, name, ["issuing", "product"], "-purpose", "sslserver")
    assert server.returncode != 0
    assert "unsuitable certificate purpose" in server.stdout + server.stderr


def test_openssl_and_ml_dsa_devices(issued: Issued) -> None:
    """OpenSSL reads ML-DSA keys from 3.5 on. The one here is older: it cannot decode the device's
    public key and so cannot build the path, although the issuer's ECDSA signature is sound (the
    cryptography verifier accepts the same profile below). Once openssl is new enough, it must
    verify the chain like the others."""
    result = openssl_verify(issued, "device-ml-dsa-65", ["issuing", "product"], "-purpose", "sslclient")
    if openssl_version() >= (3, 5):
        assert result.returncode == 0, result.stdout + result.stderr
    else:
        assert result.returncode != 0
        assert "unable to get certs public key" in result.stderr
        assert "decode error" in result.stderr
    issued.certs["device-ml-dsa-65"].verify_directly_issued_by(issued.certs["issuing"])


@pytest.mark.parametrize("name", ["station-ecdsa-p256", "station-ed25519", "station-below-issuing"])
def test_openssl_verifies_stations_as_tls_servers_for_their_name(issued: Issued, name: str) -> None:
    chain = ["issuing", "product"] if name == "station-below-issuing" else ["product"]
    ok = openssl_verify(issued, name, chain, "-purpose", "sslserver", "-verify_hostname", STATION_NAME)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    client = openssl_verify(issued, name, chain, "-purpose", "sslclient")
    assert client.returncode == 0, client.stdout + client.stderr
    wrong = openssl_verify(
        issued, name, chain, "-purpose", "sslserver", "-verify_hostname", "line2.factory.acme.example"
    )
    assert wrong.returncode != 0
    assert "hostname mismatch" in wrong.stdout + wrong.stderr


def test_openssl_needs_the_root_as_trust_anchor(issued: Issued) -> None:
    # without -partial_chain a trusted intermediate is not an anchor: the path must end at our root
    result = run(
        tool("openssl"),
        "verify",
        "-CAfile",
        issued.path("product"),
        "-untrusted",
        issued.path("issuing"),
        issued.path("device-ecdsa-p256"),
    )
    assert result.returncode != 0
    assert "unable to get issuer certificate" in result.stdout + result.stderr


# -- cryptography.x509.verification ----------------------------------------------------------------


def store(issued: Issued) -> Store:
    return Store([issued.certs["root"]])


def test_cryptography_verifies_stations_with_the_server_verifier(issued: Issued) -> None:
    for name, chain in (
        ("station-ecdsa-p256", ["product"]),
        ("station-ed25519", ["product"]),
        ("station-below-issuing", ["issuing", "product"]),  # the whole order-bound chain
    ):
        verifier = PolicyBuilder().store(store(issued)).build_server_verifier(x509.DNSName(STATION_NAME))
        path = verifier.verify(issued.certs[name], [issued.certs[c] for c in chain])
        assert path == [issued.certs[name], *(issued.certs[c] for c in chain), issued.certs["root"]]
        client = PolicyBuilder().store(store(issued)).build_client_verifier()
        assert x509.DNSName(STATION_NAME) in (
            client.verify(issued.certs[name], [issued.certs[c] for c in chain]).subjects or []
        )
        other = (
            PolicyBuilder().store(store(issued)).build_server_verifier(x509.DNSName(f"line2.{DEVICE_DOMAIN}"))
        )
        with pytest.raises(VerificationError):
            other.verify(issued.certs[name], [issued.certs[c] for c in chain])


@pytest.mark.parametrize("key_type", DEVICE_KEYS, ids=lambda k: k.value)
def test_cryptography_verifies_device_chains_under_the_name_constraints(
    issued: Issued, key_type: KeyType
) -> None:
    """The whole order-bound chain, through cryptography's client verifier. Issuing CAs constrain
    DNS names (cryptography implements DNS, IP and RFC 822 constraints and refuses URI ones), and
    every device certificate names the device in DNS form under its product's domain."""
    leaf = issued.certs[f"device-{key_type.value}"]
    verifier = PolicyBuilder().store(store(issued)).build_client_verifier()
    verified = verifier.verify(leaf, [issued.certs["issuing"], issued.certs["product"]])
    assert verified.chain == [leaf, issued.certs["issuing"], issued.certs["product"], issued.certs["root"]]
    names = verified.subjects or []
    dns = [n.value for n in names if isinstance(n, x509.DNSName)]
    assert len(dns) == 1
    assert dns[0].endswith("." + DEVICE_DOMAIN)
    nc = issued.certs["issuing"].extensions.get_extension_for_class(x509.NameConstraints).value
    assert nc.permitted_subtrees == [x509.DNSName(DEVICE_DOMAIN)]
