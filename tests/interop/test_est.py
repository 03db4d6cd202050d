"""EST (RFC 7030) end to end, the way an outside client drives it: ``openssl`` makes the device key
and CSR, ``curl`` talks HTTPS to nginx, nginx terminates mutual TLS and forwards the verified client
certificate to ``fabtrust serve`` on a loopback port, and ``openssl`` decodes and verifies what
comes back. The token comes from the ``fabtrust est token`` command.

A missing curl, openssl or nginx fails the test: they are the outside world of this test.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fabtrust.home import Home
from fabtrust.pki.est import EstTokens
from fabtrust.pki.issuance import NameRequest
from tests.fixtures.nginx import Nginx, StartNginx
from tests.fixtures.serving import free_port, tool
from tests.pki.test_est import DOMAIN, ISSUING, build_pki

PASSPHRASE = "est-interop-passphrase"
FABTRUST = Path(sys.executable).with_name("fabtrust")
SUBJECT = "/serialNumber=SN-EST-1/O=Acme"


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABTRUST_")}
    env["FABTRUST_KEYSTORE_PASSPHRASE"] = PASSPHRASE
    return env


def sh(script: str) -> subprocess.CompletedProcess[str]:
    """A shell pipeline, as a person would type it (pipefail: any failing stage fails it)."""
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


def q(path: Path | str) -> str:
    return shlex.quote(str(path))


@dataclass(frozen=True)
class Env:
    d: Path
    home: Path
    app_port: int
    nginx: Nginx
    root: Path  # root.pem: the trust anchor for openssl verify
    chain: Path  # the issuing and product CA: untrusted intermediates
    revoked_cert: Path
    revoked_key: Path
    server_log: Path

    def new_token(self) -> str:
        """A token made in-process (the CLI path is tested once, in the main flow)."""
        with Home.open(self.home, passphrase=lambda: PASSPHRASE, pin=lambda: "") as home:
            return (
                EstTokens(home.store, home.audit, actor="interop")
                .create(ISSUING, "device-idevid", "po1", "t", 600)
                .token
            )

    def certificates(self) -> list[dict[str, object]]:
        with Home.open(self.home, passphrase=lambda: PASSPHRASE, pin=lambda: "") as home:
            return [dict(r) for r in home.pki.certificates()]

    def log_entries(self) -> list[dict[str, Any]]:
        with Home.open(self.home, passphrase=lambda: PASSPHRASE, pin=lambda: "") as home:
            return [json.loads(b) for b in home.log.entries(0, home.log.size())]


def _wait_for_http(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"fabtrust serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        r = subprocess.run(
            [tool("curl"), "--silent", "--fail", "--max-time", "2", f"http://127.0.0.1:{port}/healthz"],
            capture_output=True, check=False,
        )  # fmt: skip
        if r.returncode == 0:
            return
        time.sleep(0.1)
    pytest.fail(f"fabtrust serve did not come up on port {port}: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, nginx_proxy: StartNginx) -> Iterator[Env]:
    tool("openssl")
    tool("curl")
    d = tmp_path_factory.mktemp("est-interop")
    home_path = d / "home"
    with Home.init(home_path, passphrase=lambda: PASSPHRASE, pin=lambda: "") as home:
        pki = build_pki(home, other_order=False)
        # a device whose certificate was revoked before it ever re-enrolls
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-EST-REVOKED")]))
            .sign(key, hashes.SHA256())
            .public_bytes(serialization.Encoding.DER)
        )
        revoked = home.pki.issue(
            ISSUING,
            "device-idevid",
            csr,
            NameRequest({"organizationName": "Acme"}, uris=(f"https://{DOMAIN}/devices/SN-EST-REVOKED",)),
            device_serial="SN-EST-REVOKED",
            order_id="po1",
        )
        home.pki.revoke(reason="keyCompromise", ca_id=ISSUING, serial=revoked.serial)
    (d / "root.pem").write_bytes(pki.root.public_bytes(serialization.Encoding.PEM))
    (d / "chain.pem").write_bytes(pki.pem_chain())
    (d / "bundle.pem").write_bytes(pki.bundle())
    (d / "revoked.pem").write_bytes(revoked.certificate.public_bytes(serialization.Encoding.PEM))
    (d / "revoked.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    app_port = free_port()
    log = d / "server.log"
    with log.open("wb") as log_fh:
        proc = subprocess.Popen(
            [str(FABTRUST), "--home", str(home_path), "serve", "--port", str(app_port),
             "--trusted-proxy", "127.0.0.2"],
            env=_env(), stdin=subprocess.DEVNULL, stdout=log_fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for_http(app_port, proc, log)
        nginx = nginx_proxy(upstream_port=app_port, client_ca=d / "bundle.pem")
        yield Env(d, home_path, app_port, nginx, d / "root.pem", d / "chain.pem", d / "revoked.pem",
                  d / "revoked.key", log)  # fmt: skip
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
    assert PASSPHRASE not in log.read_text()


# -- the outside client's steps -----------------------------------------------------------------------


def make_csr(d: Path, name: str, subject: str = SUBJECT, key: Path | None = None) -> tuple[Path, Path]:
    """``openssl req ... -outform DER | base64``: a new P-256 key (or ``key``) and its CSR in base64."""
    key_out = key or d / f"{name}.key"
    key_args = (
        f"-key {q(key)}"
        if key
        else f"-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {q(key_out)}"
    )
    csr_b64 = d / f"{name}.csr.b64"
    r = sh(
        f"{q(tool('openssl'))} req -new {key_args} -subj {q(subject)} -outform DER | base64 > {q(csr_b64)}"
    )
    assert r.returncode == 0, r.stderr
    return key_out, csr_b64


def post(env: Env, operation: str, body: Path, *extra: str, url: str | None = None) -> tuple[int, Path, str]:
    """curl POST of a base64 CSR; returns the status, the body file and the response headers."""
    out = env.d / f"response-{time.monotonic_ns()}"
    r = subprocess.run(
        [tool("curl"), "--silent", "--show-error", "--max-time", "20",
         "--cacert", str(env.nginx.server_cert),
         "-H", "Content-Type: application/pkcs10",
         "--data-binary", f"@{body}",
         "--output", str(out), "--dump-header", "-", "--write-out", "%{http_code}",
         *extra,
         url or env.nginx.url(f"/.well-known/est/{operation}")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    headers, status = r.stdout[:-3], r.stdout[-3:]
    return int(status), out, headers.lower()


def decode(env: Env, response: Path, pem: Path) -> str:
    """``openssl base64 -d | openssl pkcs7 -inform DER -print_certs``: the certificates as PEM."""
    openssl = q(tool("openssl"))
    r = sh(f"{openssl} base64 -d -in {q(response)} | {openssl} pkcs7 -inform DER -print_certs -out {q(pem)}")
    assert r.returncode == 0, r.stderr
    return pem.read_text()


def verify(env: Env, pem: Path) -> None:
    r = subprocess.run(
        [tool("openssl"), "verify", "-CAfile", str(env.root), "-untrusted", str(env.chain),
         "-purpose", "sslclient", str(pem)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{pem}: OK"


def serial_of(pem: Path) -> int:
    return x509.load_pem_x509_certificate(pem.read_bytes()).serial_number


def enroll_device(env: Env, name: str, subject: str) -> tuple[Path, Path]:
    """A device enrolled with a fresh token: its key and certificate files."""
    key, csr = make_csr(env.d, name, subject)
    status, body, _ = post(env, "simpleenroll", csr, "-H", f"Authorization: Bearer {env.new_token()}")
    assert status == 200, body.read_text()
    pem = env.d / f"{name}.pem"
    decode(env, body, pem)
    return key, pem


# -- the tests ----------------------------------------------------------------------------------------


def test_cacerts_through_nginx(env: Env) -> None:
    r = subprocess.run(
        [tool("curl"), "--silent", "--show-error", "--fail", "--cacert", str(env.nginx.server_cert),
         "--output", str(env.d / "cacerts.b64"), env.nginx.url("/.well-known/est/cacerts")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    pem = decode(env, env.d / "cacerts.b64", env.d / "cacerts.pem")
    assert pem.count("BEGIN CERTIFICATE") == 3
    for cn in ("Acme Root CA", "Acme Widget CA", "line1 po1"):
        assert f"CN = {cn}" in pem.replace("CN=", "CN = ")


def test_enroll_reuse_and_reenroll(env: Env) -> None:
    # the operator makes a one-time token; it is printed once, alone on stdout
    made = subprocess.run(
        [str(FABTRUST), "--home", str(env.home), "est", "token", "--ca", ISSUING,
         "--profile", "device-idevid", "--order", "po1", "--label", "interop SN-EST-1", "--ttl", "3600"],
        env=_env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert made.stdout == token + "\n"
    assert len(token) == 43
    assert token not in made.stderr

    # enroll: openssl makes the key and CSR, curl posts it, openssl decodes and verifies
    key, csr = make_csr(env.d, "dev", SUBJECT)
    status, body, headers = post(env, "simpleenroll", csr, "-H", f"Authorization: Bearer {token}")
    assert status == 200, body.read_text()
    assert "content-type: application/pkcs7-mime; smime-type=certs-only" in headers
    dev = env.d / "dev.pem"
    assert decode(env, body, dev).count("BEGIN CERTIFICATE") == 1
    verify(env, dev)
    cert = x509.load_pem_x509_certificate(dev.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == "SN-EST-1"

    # the same token again: 401 with a Bearer challenge, nothing issued
    count = len(env.certificates())
    _, csr2 = make_csr(env.d, "dev-again", "/serialNumber=SN-EST-2/O=Acme")
    status, body, headers = post(env, "simpleenroll", csr2, "-H", f"Authorization: Bearer {token}")
    assert status == 401, body.read_text()
    assert 'www-authenticate: bearer realm="est"' in headers
    assert len(env.certificates()) == count

    # re-enroll through nginx with the current certificate (mutual TLS) and a new key
    _, csr3 = make_csr(env.d, "dev-rekey", SUBJECT)
    status, body, _ = post(env, "simplereenroll", csr3, "--cert", str(dev), "--key", str(key))
    assert status == 200, body.read_text()
    renewed = env.d / "dev-renewed.pem"
    decode(env, body, renewed)
    verify(env, renewed)
    assert serial_of(renewed) != serial_of(dev)
    assert x509.load_pem_x509_certificate(renewed.read_bytes()).subject == cert.subject
    rows = {int(str(r["serial"]), 16): r for r in env.certificates()}
    assert (rows[serial_of(dev)]["status"], rows[serial_of(dev)]["revocation_reason"]) == (
        "revoked",
        "superseded",
    )
    assert rows[serial_of(renewed)]["status"] == "good"
    assert rows[serial_of(renewed)]["device_serial"] == "SN-EST-1"

    # the superseded certificate no longer re-enrolls (nginx lets it through: the app checks its store)
    status, body, _ = post(env, "simplereenroll", csr3, "--cert", str(dev), "--key", str(key))
    assert status == 403, body.read_text()
    assert "revoked" in body.read_text()


def test_reenroll_with_a_revoked_certificate_is_refused(env: Env) -> None:
    count = len(env.certificates())
    _, csr = make_csr(env.d, "revoked-rekey", "/serialNumber=SN-EST-REVOKED/O=Acme")
    status, body, _ = post(
        env, "simplereenroll", csr, "--cert", str(env.revoked_cert), "--key", str(env.revoked_key)
    )
    assert status == 403, body.read_text()
    assert json.loads(body.read_text())["message"] == "the client certificate is revoked"
    assert len(env.certificates()) == count


def test_a_forged_certificate_header_to_the_app_port_is_refused(env: Env) -> None:
    _, good = enroll_device(env, "forge-victim", "/serialNumber=SN-EST-FORGE/O=Acme")
    _, csr = make_csr(env.d, "forger", "/serialNumber=SN-EST-FORGE/O=Acme")
    escaped = urllib.parse.quote(good.read_text(), safe="")
    count = len(env.certificates())
    forged = ("-H", f"X-SSL-Client-Cert: {escaped}", "-H", "X-SSL-Client-Verify: SUCCESS",
              "-H", "X-Forwarded-For: 127.0.0.2", "-H", "X-Real-IP: 127.0.0.2")  # fmt: skip
    # straight to the app: the header is not from the proxy's address, so it is ignored
    url = f"http://127.0.0.1:{env.app_port}/.well-known/est/simplereenroll"
    status, body, _ = post(env, "simplereenroll", csr, *forged, url=url)
    assert status == 403, body.read_text()
    # through nginx without a client certificate: nginx replaces the forged headers
    status, body, _ = post(env, "simplereenroll", csr, *forged)
    assert status == 403, body.read_text()
    assert len(env.certificates()) == count
    refusals = [e for e in env.log_entries() if e["action"] == "est.reenroll" and e["outcome"] == "refused"]
    direct, proxied = refusals[-2:]
    assert direct["actor"] == "est-client@127.0.0.1"  # X-Forwarded-For did not change the peer
    assert direct["details"]["why"] == "client-certificate header from an untrusted peer"
    assert proxied["actor"] == "est-client@127.0.0.2"  # from nginx, which sent no certificate
    assert proxied["details"]["message"] == "re-enrollment needs the current client certificate (mutual TLS)"


def test_a_client_certificate_from_an_unknown_ca_is_stopped_by_nginx(env: Env) -> None:
    key, cert = env.d / "stranger.key", env.d / "stranger.pem"
    r = subprocess.run(
        [tool("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-days", "1", "-subj", "/serialNumber=SN-EST-1/O=Acme", "-keyout", str(key), "-out", str(cert)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    _, csr = make_csr(env.d, "stranger-csr", SUBJECT)
    count = len(env.certificates())
    status, _, _ = post(env, "simplereenroll", csr, "--cert", str(cert), "--key", str(key))
    assert status == 400  # nginx: "The SSL certificate error"
    assert len(env.certificates()) == count


def test_bad_enrollments_over_the_wire(env: Env) -> None:
    token = env.new_token()
    auth = ("-H", f"Authorization: Bearer {token}")
    count = len(env.certificates())
    garbage = env.d / "garbage.b64"
    garbage.write_text("this is not a certificate request\n")
    oversized = env.d / "oversized.b64"
    oversized.write_text(("A" * 76 + "\n") * 1000)  # 77,000 bytes of base64
    _, good = make_csr(env.d, "to-break", "/serialNumber=SN-EST-BAD/O=Acme")
    r = subprocess.run(["base64", "-d", str(good)], capture_output=True, timeout=30, check=True)
    der = bytearray(r.stdout)
    der[-1] ^= 0x01  # the last octet of the ECDSA signature
    bad_sig = env.d / "bad-signature.b64"
    bad_sig.write_bytes(subprocess.run(["base64"], input=bytes(der), capture_output=True, check=True).stdout)
    truncated = env.d / "truncated.b64"
    truncated.write_bytes(
        subprocess.run(["base64"], input=bytes(der[:-30]), capture_output=True, check=True).stdout
    )
    for body, status in ((garbage, 400), (truncated, 400), (bad_sig, 422), (oversized, 413)):
        got, out, _ = post(env, "simpleenroll", body, *auth)
        assert got == status, (body.name, out.read_text())
        assert json.loads(out.read_text())["request_id"]
    assert len(env.certificates()) == count
    # refused before the token was looked at: it still enrolls
    status, out, _ = post(env, "simpleenroll", good, *auth)
    assert status == 200, out.read_text()
    refused = {e["details"].get("reason") for e in env.log_entries()
               if e["action"] == "est.enroll" and e["outcome"] == "refused"}  # fmt: skip
    assert {"invalid_input", "verification_failed", "too_large"} <= refused


def test_no_token_reaches_the_logs(env: Env) -> None:
    token = env.new_token()
    _, csr = make_csr(env.d, "secret", "/serialNumber=SN-EST-SECRET/O=Acme")
    assert post(env, "simpleenroll", csr, "-H", f"Authorization: Bearer {token}")[0] == 200
    assert post(env, "simpleenroll", csr, "-H", f"Authorization: Bearer {token}")[0] == 401
    assert token not in env.server_log.read_text()
    assert token not in json.dumps(env.log_entries())
    assert token not in (env.nginx.workdir / "access.log").read_text()
