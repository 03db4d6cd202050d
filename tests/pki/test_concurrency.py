"""Two station processes on one PostgreSQL database race to certify the same device serial:
exactly one certificate is issued, the other request is refused as a duplicate, and both acts are
in the audit log (the unique index and issue_batch's retry, not luck, decide)."""

from __future__ import annotations

import datetime
import multiprocessing
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from fabtrust.crypto.keys import KeyType, KeyUsage
from fabtrust.home import Home
from fabtrust.pki.issuance import NameRequest
from fabtrust.pki.service import IssueRequest, make_csr
from fabtrust.store.tables import pki_certs
from fabtrust.tlog.audit import AuditEntry

PASS = "concurrency-test-passphrase"
SERIAL = "SN-RACE"


def _csr() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.DER)
    )


def _issue(home_path: str, db: str, ca_id: str, csr: bytes, barrier: Any, results: Any) -> None:
    with Home.open(Path(home_path), database=db, passphrase=lambda: PASS, pin=lambda: "") as home:
        pki = home.pki
        pki.chain(ca_id)  # warm up before the start line
        barrier.wait()
        outcome = pki.issue_batch(
            [
                IssueRequest(
                    ca_id, "device-idevid", csr, NameRequest({"organizationName": "Acme"}), SERIAL, "po-1"
                )
            ]
        )[0]
        results.put(type(outcome).__name__)


def test_one_device_serial_one_certificate_under_a_race(tmp_path: Path, pg_url: str) -> None:
    home_path = tmp_path / "station"
    with Home.init(home_path, database=pg_url, passphrase=lambda: PASS, pin=lambda: "") as home:
        pki = home.pki
        pki.init_root(
            attributes={"commonName": "Root", "organizationName": "Acme"},
            custodians=[("a", "passphrase-a"), ("b", "passphrase-b")],
            threshold=2,
            scrypt_n=2**14,
        )
        pki.create_product_ca(
            "widget",
            attributes={"commonName": "Widget", "organizationName": "Acme"},
            device_domain="widget.devices.acme.example",
        )
        key = home.keystore().generate("issuing", KeyType.P256, KeyUsage.SIGN)
        issuing = pki.sign_issuing_ca(
            "widget",
            make_csr(home.keystore(), key.uri, {"commonName": "line1", "organizationName": "Acme"}),
            station="line1",
            order_id="po-1",
            not_after=datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=30),
        )
        pki.adopt_bundle(pki.export_bundle(issuing.ca_id), key_uri=key.uri)
        log_before = home.log.size()
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_issue, args=(str(home_path), pg_url, issuing.ca_id, _csr(), barrier, results))
        for _ in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    outcomes = sorted(results.get(timeout=10) for _ in procs)
    assert outcomes == ["Conflict", "Issued"]
    with Home.open(home_path, database=pg_url, passphrase=lambda: PASS, pin=lambda: "") as home:
        with home.store.read() as conn:
            count = conn.execute(
                select(func.count()).select_from(pki_certs).where(pki_certs.c.device_serial == SERIAL)
            ).scalar_one()
        assert count == 1
        entries = [AuditEntry.parse(b) for b in home.log.entries(log_before, home.log.size())]
        issues = sorted(e.outcome.value for e in entries if e.action == "cert.issue")
        assert issues == ["ok", "refused"]
