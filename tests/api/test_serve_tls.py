"""``fabtrust serve`` over TLS as a real process, checked from outside with curl and openssl.

The certificate is made at test time (self-signed P-256 for 127.0.0.1 and localhost). A missing curl
or openssl fails the test: these are the outside clients, and their absence is no reason to pass.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from fabtrust.access import Role
from fabtrust.home import Home
from fabtrust.tlog.checkpoint import NoteVerifier, open_checkpoint
from tests.fixtures.serving import free_port, tool
from tests.team import team_tokens, token_secret

PASSPHRASE = "tls-test-passphrase"
FABTRUST = Path(sys.executable).with_name("fabtrust")


@dataclass(frozen=True)
class Server:
    port: int
    cert: Path
    vkey: str
    origin: str
    size: int
    log: Path
    auditor_header: Path  # "Authorization: Bearer <an auditor's token>", for curl -H @file


def _wait_for_tls(port: int, cafile: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    context = ssl.create_default_context(cafile=str(cafile))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"fabtrust serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with (
                socket.create_connection(("127.0.0.1", port), timeout=1) as raw,
                context.wrap_socket(raw, server_hostname="127.0.0.1"),
            ):
                return
        except OSError:
            time.sleep(0.1)
    pytest.fail(f"fabtrust serve did not come up on port {port}: {log.read_text()[-2000:]}")


def self_signed(d: Path) -> tuple[Path, Path]:
    """A one-day self-signed P-256 certificate for 127.0.0.1 and localhost, and its key (openssl)."""
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            tool("openssl"), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@contextmanager
def serving(
    home: Path, cert: Path, key: Path, log: Path, secrets: dict[str, str], *extra: str
) -> Iterator[int]:
    """``fabtrust --home HOME serve`` over TLS as a process (``extra`` arguments appended), its output
    in ``log``, the environment's FABTRUST_* variables replaced by ``secrets``; yields the port once
    TLS answers, and stops the server after."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FABTRUST_")}
    env.update(secrets)
    with log.open("wb") as log_fh:
        proc = subprocess.Popen(
            [str(FABTRUST), "--home", str(home), "serve", "--port", str(port),
             "--tls-cert", str(cert), "--tls-key", str(key), *extra],
            env=env, stdin=subprocess.DEVNULL, stdout=log_fh, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        _wait_for_tls(port, cert, proc, log)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tool("openssl")
    tool("curl")
    d = tmp_path_factory.mktemp("tls")
    home_path = d / "home"
    with Home.init(home_path, passphrase=lambda: PASSPHRASE, pin=lambda: "") as home:
        auditor = team_tokens(home)[Role.AUDITOR]
        vkey, origin, size = home.log_vkey(), home.config.origin, home.log.size()
    (d / "auditor.header").write_text(f"Authorization: Bearer {auditor}\n")
    cert, key = self_signed(d)
    log = d / "server.log"
    with serving(home_path, cert, key, log, {"FABTRUST_KEYSTORE_PASSPHRASE": PASSPHRASE}) as port:
        yield Server(port, cert, vkey, origin, size, log, d / "auditor.header")
    assert PASSPHRASE not in log.read_text()
    assert token_secret(auditor) not in log.read_text()


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("curl"), "--silent", "--show-error", "--max-time", "10", *args],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_curl_fetches_a_checkpoint_that_verifies(server: Server, host: str) -> None:
    r = curl("--cacert", str(server.cert), "--fail", f"https://{host}:{server.port}/log/checkpoint")
    assert r.returncode == 0, r.stderr
    cp = open_checkpoint(r.stdout.encode(), NoteVerifier.parse(server.vkey), server.origin)
    assert cp.size == server.size


def test_healthz_over_tls(server: Server) -> None:
    r = curl("--cacert", str(server.cert), "--fail", "--include", f"https://127.0.0.1:{server.port}/healthz")
    assert r.returncode == 0, r.stderr
    head, _, body = r.stdout.partition("\n\n")  # text mode turned CRLF into LF
    assert head.startswith("HTTP/1.1 200")
    assert "x-request-id:" in head.lower()
    assert body == f'{{"status":"ok","database":"sqlite","log_size":{server.size}}}'


def test_bad_request_over_tls_is_400_with_a_request_id(server: Server) -> None:
    r = curl("--cacert", str(server.cert), "--write-out", "\n%{http_code}",
             "--header", f"@{server.auditor_header}",
             f"https://127.0.0.1:{server.port}/log/proof/inclusion?index=999")  # fmt: skip
    body, _, status = r.stdout.rpartition("\n")
    assert status == "400"
    assert '"error":"invalid_input"' in body
    assert "outside a tree of size" in body


def test_plain_http_is_not_served(server: Server) -> None:
    r = curl(f"http://127.0.0.1:{server.port}/healthz")
    assert r.returncode != 0
    assert '"status"' not in r.stdout


def test_an_unknown_certificate_is_not_trusted(server: Server) -> None:
    r = curl(f"https://127.0.0.1:{server.port}/healthz")  # the system trust store does not know it
    assert r.returncode == 60, (r.returncode, r.stderr)


def test_openssl_s_client_sees_tls_with_the_served_certificate(server: Server) -> None:
    r = subprocess.run(
        [tool("openssl"), "s_client", "-connect", f"127.0.0.1:{server.port}", "-CAfile", str(server.cert),
         "-verify_return_error", "-verify_ip", "127.0.0.1", "-servername", "localhost"],
        input="", capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "Verify return code: 0 (ok)" in r.stdout
    assert "subject=CN=localhost" in r.stdout.replace(" = ", "=")
    assert "TLSv1.3" in r.stdout or "TLSv1.2" in r.stdout


def test_python_ssl_checks_the_certificate_names(server: Server) -> None:
    context = ssl.create_default_context(cafile=str(server.cert))
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cert = tls.getpeercert()
        assert cert is not None
        assert ("IP Address", "127.0.0.1") in cert["subjectAltName"]
        assert ("DNS", "localhost") in cert["subjectAltName"]
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    wrong = ssl.create_default_context(cafile=str(server.cert))
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        wrong.wrap_socket(raw, server_hostname="not-the-server.example")


def test_the_server_says_it_serves_https(server: Server) -> None:
    assert f"on https://127.0.0.1:{server.port}" in server.log.read_text()
