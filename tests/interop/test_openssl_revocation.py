"""Revocation checked from outside: ``fabtrust serve`` as a real process (plain HTTP on loopback, as
RFC 5280/6960 relying parties fetch), asked by ``openssl ocsp`` and ``openssl verify -crl_check``,
and its CRLs and OCSP responses linted with pkilint.

A missing openssl or pkilint fails the test: they are the outside judges, and their absence is no
reason to pass.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

from fabtrust.home import Home
from tests.approvals import revoke_ca
from tests.fixtures.serving import free_port, tool
from tests.pki.test_revocation import PASSPHRASE, FakeClock, build_world

FABTRUST = Path(sys.executable).with_name("fabtrust")
SHA1 = hashes.SHA1()  # noqa: S303 (the CertID hash openssl sends by default, RFC 6960 4.1.1)


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Served:
    url: str
    dir: Path
    home: Path
    log: Path
    issuing_id: str
    doomed_id: str  # an issuing CA revoked as a whole
    product_id: str
    devices: dict[str, Path]  # good, revoked, orphan (its issuing CA revoked), late (revoked later)
    certs: dict[str, x509.Certificate]

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:  # noqa: S310 (loopback http)
            assert r.status == 200
            return bytes(r.read())

    def post_ocsp(self, request: bytes) -> bytes:
        req = urllib.request.Request(  # noqa: S310 (loopback http)
            self.url + "/pki/ocsp", data=request, headers={"Content-Type": "application/ocsp-request"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
            assert r.headers["Content-Type"] == "application/ocsp-response"
            return bytes(r.read())

    def crl_pem(self, *names: str) -> Path:
        """The named CRLs fetched over HTTP, as one PEM file (what ``-CRLfile`` takes)."""
        out = self.dir / ("-".join(n.replace(".crl", "") for n in names) + f"-{time.monotonic_ns()}.pem")
        text = b"".join(
            x509.load_der_x509_crl(self.get(f"/pki/crl/{n}")).public_bytes(serialization.Encoding.PEM)
            for n in names
        )
        out.write_bytes(text)
        return out


def _wait_for_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"fabtrust serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):  # noqa: S310 (loopback http)
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"fabtrust serve did not come up at {url}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tool("openssl")
    d = tmp_path_factory.mktemp("revocation-interop")
    # the PKI is made in-process on the wall clock's time, then served by a separate process
    world = build_world(d / "home", FakeClock(datetime.now(UTC).replace(microsecond=0)))
    ca, doomed = world.issuing(), world.issuing()
    certs = {
        "good": world.device(ca),
        "revoked": world.device(ca),
        "late": world.device(ca),
        "orphan": world.device(doomed),
        "issuing": ca.certificate,
        "doomed": doomed.certificate,
    }
    world.pki.revoke(
        reason="keyCompromise", ca_id=ca.ca_id, serial=format(certs["revoked"].serial_number, "x")
    )
    revoke_ca(world.home, doomed.ca_id, "cessationOfOperation")
    files = {
        "root.pem": pem(world.root.certificate),
        "product.pem": pem(world.product.certificate),
        "issuing.pem": pem(ca.certificate),
        "doomed.pem": pem(doomed.certificate),
        "chain-with-root.pem": pem(ca.certificate)
        + pem(world.product.certificate)
        + pem(world.root.certificate),
        "trust.pem": pem(world.root.certificate) + pem(world.product.certificate),
    }
    for name in ("good", "revoked", "late", "orphan"):
        files[f"{name}.pem"] = pem(certs[name])
    for name, data in files.items():
        (d / name).write_bytes(data)
    product_id, issuing_id, doomed_id = world.product.ca_id, ca.ca_id, doomed.ca_id
    world.home.close()

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABTRUST_")}
    env["FABTRUST_KEYSTORE_PASSPHRASE"] = PASSPHRASE
    log = d / "server.log"
    with log.open("wb") as log_fh:
        proc = subprocess.Popen(
            [str(FABTRUST), "--home", str(d / "home"), "serve", "--port", str(port)],
            env=env, stdin=subprocess.DEVNULL, stdout=log_fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for_http(url, proc, log)
        devices = {name: d / f"{name}.pem" for name in ("good", "revoked", "late", "orphan")}
        yield Served(url, d, d / "home", log, issuing_id, doomed_id, product_id, devices, certs)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
    assert PASSPHRASE not in log.read_text()


def openssl(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("openssl"), *map(str, args)], capture_output=True, text=True, timeout=30, check=False
    )


# -- openssl ocsp ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("issuer", "device", "status", "options"),
    [
        pytest.param("issuing.pem", "good", "good", (), id="good/nonce"),
        pytest.param("issuing.pem", "good", "good", ("-no_nonce",), id="good/pre-signed"),
        pytest.param("issuing.pem", "good", "good", ("-sha256",), id="good/sha256-cert-id"),
        pytest.param("issuing.pem", "revoked", "revoked", (), id="revoked/nonce"),
        pytest.param("issuing.pem", "revoked", "revoked", ("-no_nonce",), id="revoked/pre-signed"),
        pytest.param("doomed.pem", "orphan", "revoked", (), id="revoked/issuing-ca-revoked"),
    ],
)
def test_openssl_ocsp_reports_the_status(
    served: Served, issuer: str, device: str, status: str, options: tuple[str, ...]
) -> None:
    r = openssl(
        "ocsp", *options, "-issuer", served.dir / issuer, "-cert", served.devices[device],
        "-url", f"{served.url}/pki/ocsp", "-CAfile", served.dir / "chain-with-root.pem", "-resp_text",
    )  # fmt: skip
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Response verify OK" in out
    assert f"{served.devices[device]}: {status}" in out
    if "-no_nonce" not in options:
        assert "WARNING: no nonce in response" not in out
    if device == "revoked":
        assert "Reason: keyCompromise" in out
    if device == "orphan":
        assert "Reason: cessationOfOperation" in out


def test_openssl_ocsp_asks_the_product_ca_about_an_issuing_ca(served: Served) -> None:
    chain = served.dir / "product-chain.pem"
    chain.write_bytes((served.dir / "trust.pem").read_bytes())
    for cert, status in (("issuing.pem", "good"), ("doomed.pem", "revoked")):
        r = openssl(
            "ocsp", "-issuer", served.dir / "product.pem", "-cert", served.dir / cert,
            "-url", f"{served.url}/pki/ocsp", "-CAfile", chain,
        )  # fmt: skip
        out = r.stdout + r.stderr
        assert r.returncode == 0, out
        assert "Response verify OK" in out
        assert f"{served.dir / cert}: {status}" in out


# -- openssl verify with CRLs -------------------------------------------------------------------------


def verify(served: Served, device: str, crls: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return openssl(
        "verify", *flags, "-CRLfile", crls, "-CAfile", served.dir / "trust.pem",
        "-untrusted", served.dir / ("doomed.pem" if device == "orphan" else "issuing.pem"),
        served.devices[device],
    )  # fmt: skip


@pytest.mark.parametrize(
    ("device", "check_all", "error"),
    [
        pytest.param("good", False, None, id="good/crl_check"),
        pytest.param("good", True, None, id="good/crl_check_all"),
        pytest.param("revoked", False, "error 23 at 0 depth", id="revoked/crl_check"),
        pytest.param("revoked", True, "error 23 at 0 depth", id="revoked/crl_check_all"),
        pytest.param("orphan", False, "error 23 at 0 depth", id="orphan/its-ca-crl"),
        pytest.param("orphan", True, "error 23 at ", id="orphan/crl_check_all"),
    ],
)
def test_openssl_verify_agrees_with_ocsp(
    served: Served, device: str, check_all: bool, error: str | None
) -> None:
    issuing = served.doomed_id if device == "orphan" else served.issuing_id
    if check_all:
        crls = served.crl_pem(f"{issuing}.crl", f"{served.product_id}.crl", "root.crl")
        r = verify(served, device, crls, "-crl_check_all")
    else:
        crls = served.crl_pem(f"{issuing}.crl")
        r = verify(served, device, crls, "-crl_check")
    out = r.stdout + r.stderr
    if error is None:
        assert r.returncode == 0, out
        assert f"{served.devices[device]}: OK" in out
    else:
        assert r.returncode != 0, out
        assert error in out
        assert "certificate revoked" in out


def test_openssl_applies_a_delta_crl_to_an_older_full_crl(served: Served) -> None:
    """A revocation after a full CRL was fetched reaches a client holding it through the delta CRL
    (RFC 5280 5.2.4), and the full CRL fetched afterwards carries it as well."""
    old_full = served.crl_pem(f"{served.issuing_id}.crl")
    assert verify(served, "late", old_full, "-crl_check").returncode == 0
    with Home.open(served.home, passphrase=lambda: PASSPHRASE, pin=lambda: "", actor="tester") as home:
        serial = format(served.certs["late"].serial_number, "x")
        assert home.pki.revoke(reason="superseded", ca_id=served.issuing_id, serial=serial) == 1
    delta = x509.load_der_x509_crl(served.get(f"/pki/crl/{served.issuing_id}-delta.crl"))
    old = x509.load_pem_x509_crl(old_full.read_bytes())
    old_number = old.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert delta.extensions.get_extension_for_class(x509.DeltaCRLIndicator).value.crl_number <= old_number
    assert delta.get_revoked_certificate_by_serial_number(served.certs["late"].serial_number) is not None
    both = served.dir / "old-full-and-delta.pem"
    both.write_bytes(old_full.read_bytes() + delta.public_bytes(serialization.Encoding.PEM))

    r = verify(served, "late", both, "-crl_check", "-use_deltas")
    assert r.returncode != 0
    assert "error 23 at 0 depth" in r.stdout + r.stderr
    assert verify(served, "late", served.crl_pem(f"{served.issuing_id}.crl"), "-crl_check").returncode != 0


# -- pkilint --------------------------------------------------------------------------------------------


def lint(command: str, path: Path, *args: str) -> None:
    r = subprocess.run(
        [tool(command), "lint", *args, "-s", "WARNING", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert r.returncode == 0, f"{command} {path.name}: {r.stdout}{r.stderr}"


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("{issuing}.crl", id="full"),
        pytest.param("{issuing}-delta.crl", id="delta"),
        pytest.param("{product}.crl", id="product-ca-full"),
    ],
)
def test_pkilint_crl(served: Served, name: str) -> None:
    path = served.dir / name.format(issuing=served.issuing_id, product=served.product_id)
    path.write_bytes(served.get(f"/pki/crl/{path.name}"))
    lint("lint_crl", path, "-t", "CRL", "-p", "PKIX")


@pytest.mark.parametrize(
    ("device", "nonce", "expected"),
    [
        pytest.param("good", b"\x11" * 16, ocsp.OCSPCertStatus.GOOD, id="good/nonce"),
        pytest.param("revoked", None, ocsp.OCSPCertStatus.REVOKED, id="revoked/pre-signed"),
        pytest.param("unknown", None, ocsp.OCSPCertStatus.UNKNOWN, id="unknown"),
    ],
)
def test_pkilint_ocsp_response(served: Served, device: str, nonce: bytes | None, expected: object) -> None:
    issuer = served.certs["issuing"]
    if device == "unknown":
        probe = ocsp.OCSPRequestBuilder().add_certificate(served.certs["good"], issuer, SHA1).build()
        builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
            probe.issuer_name_hash, probe.issuer_key_hash, 0x0BADC0DE, SHA1
        )
    else:
        builder = ocsp.OCSPRequestBuilder().add_certificate(served.certs[device], issuer, SHA1)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    der = served.post_ocsp(builder.build().public_bytes(serialization.Encoding.DER))
    assert ocsp.load_der_ocsp_response(der).certificate_status is expected
    path = served.dir / f"ocsp-{device}.der"
    path.write_bytes(der)
    lint("lint_ocsp_response", path)


def test_bad_input_over_the_wire(served: Served) -> None:
    # not OCSP at all: an HTTP error with a JSON body
    req = urllib.request.Request(  # noqa: S310 (loopback http)
        served.url + "/pki/ocsp", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(req, timeout=10)  # noqa: S310
    assert caught.value.code == 400
    # OCSP, but malformed: an OCSP error status
    der = served.post_ocsp(b"\x30\x82\xff\xff garbage")
    assert ocsp.load_der_ocsp_response(der).response_status is ocsp.OCSPResponseStatus.MALFORMED_REQUEST
