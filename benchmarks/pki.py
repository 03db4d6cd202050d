"""Issuance benchmark: device certificates per second through the CA service, beside the raw
``cryptography`` floor and cfssl's sign API in the same run (issue 3).

fabtrust: one ``PkiService.issue`` per certificate on a fresh data home (SQLite in WAL mode with
synchronous=FULL, soft key store opened with a passphrase): CSR parse and self-signature check,
profile and chain policy (validity, revocation, path length, name constraints), duplicate-serial
and cloned-key checks, sign with the issuing CA's key, store the certificate row (one commit) and
append the signed audit entry (its own commit and checkpoint). Durable: every call returns after
its commits.

Floor: the same certificate (same subject, extensions and P-256/SHA-256 signature) with plain
``cryptography``: load + verify the CSR, build, sign with an in-memory key, DER. No policy, no
storage, no log: the crypto a CA cannot avoid.

cfssl: ``cfssl serve`` on loopback with a P-256 CA (``cfssl genkey -initca``), one keep-alive HTTP
client POSTing each CSR to ``/api/v1/cfssl/sign``; also four client threads, and a run with cfssl's
certificate database (SQLite, WAL, ``-db-config``) so that it stores what it signs, as fabtrust does.
cfssl logs nothing durable. Its rows stay empty when cfssl is not installed
(``scripts/bootstrap-bench.sh`` installs the Debian package ``golang-cfssl``).

Keys: every CA here is P-256 (the real root and product CAs would be P-384; P-256 keeps the
comparison with cfssl's CA like for like). Device CSRs (P-256) are made before any timing: key
generation and the CSR signature are the device's cost, not the CA's.
"""

from __future__ import annotations

import cProfile
import http.client
import io
import json
import os
import pstats
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

from _common import console, parser, report, row, summary_ms, timed
from fabtrust.crypto.keys import KeyType, KeyUsage
from fabtrust.home import Home
from fabtrust.pki.issuance import NameRequest
from fabtrust.pki.service import Issued, IssueRequest, PkiService, make_csr

ORG = "Acme"
DOMAIN = "widget.devices.acme.example"
BASE_URL = "http://pki.fabtrust.local"
PASSPHRASE = "bench-keystore-passphrase"  # noqa: S105 (a throwaway key store in a temp dir)
AIM_PER_CORE = 3000.0


@dataclass(frozen=True)
class Device:
    serial: str
    csr_pem: bytes
    request: NameRequest


def make_devices(n: int, offset: int = 0) -> list[Device]:
    """N device CSRs (P-256), as a device would send them: subject and its URI SAN requested."""
    devices = []
    for i in range(offset, offset + n):
        serial = f"SN{i:08d}"
        uri = f"https://{DOMAIN}/devices/{serial}"
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                        x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
                    ]
                )
            )
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]), critical=False)
            .sign(key, hashes.SHA256())
        )
        pem = csr.public_bytes(serialization.Encoding.PEM)
        devices.append(Device(serial, pem, NameRequest({"organizationName": ORG}, uris=(uri,))))
    return devices


# -- fabtrust ----------------------------------------------------------------------------------------


def setup_home(path: Path) -> tuple[Home, str]:
    """A data home with root → product → issuing CA (key in the same home), all P-256."""
    home = Home.init(path, passphrase=lambda: PASSPHRASE, pin=lambda: "", actor="bench")
    pki = home.pki
    pki.init_root(
        attributes={"commonName": "Acme Root CA", "organizationName": ORG},
        custodians=[(f"custodian-{i}", f"custodian-passphrase-{i}") for i in range(3)],
        threshold=2,
        key_type=KeyType.P256,
        base_url=BASE_URL,
        scrypt_n=2**14,
    )
    pki.create_product_ca(
        "widget",
        attributes={"commonName": "Acme Widget CA", "organizationName": ORG},
        device_domain=DOMAIN,
        key_type=KeyType.P256,
    )
    station_key = home.keystore().generate("station-line1-po1", KeyType.P256, KeyUsage.SIGN)
    csr = make_csr(home.keystore(), station_key.uri, {"commonName": "line1 PO1", "organizationName": ORG})
    issuing = pki.sign_issuing_ca(
        "widget",
        csr,
        station="line1",
        order_id="po1",
        not_after=datetime.now(UTC) + timedelta(days=90),
    )
    pki.adopt_bundle(pki.export_bundle(issuing.ca_id), key_uri=station_key.uri)
    return home, issuing.ca_id


def issue_fn(pki: PkiService, ca_id: str) -> Callable[[Device], object]:
    def issue(device: Device) -> object:
        return pki.issue(
            ca_id,
            "device-idevid",
            device.csr_pem,
            device.request,
            device_serial=device.serial,
            order_id="po1",
        )

    return issue


def bench_fabtrust(workdir: Path, devices: list[Device], batch: int = 0) -> dict[str, Any]:
    """One ``issue`` per certificate (batch 0), or ``issue_batch`` of ``batch`` (one group commit)."""
    path = workdir / f"fabtrust-home-{batch}"
    home, ca_id = setup_home(path)
    try:
        pki = home.pki
        issue = issue_fn(pki, ca_id)
        issue(make_devices(1, offset=len(devices))[0])  # warm caches (key store, profiles), not timed

        def issue_many(chunk: list[Device]) -> None:
            wanted = [
                IssueRequest(ca_id, "device-idevid", d.csr_pem, d.request, d.serial, "po1") for d in chunk
            ]
            for result in pki.issue_batch(wanted):
                if not isinstance(result, Issued):
                    raise SystemExit(f"fabtrust refused a certificate: {result}")

        log_before = home.log.size()
        what = f"batches of {batch}" if batch else "one issue() each"
        with console.status(f"fabtrust: issuing {len(devices):,} certificates, {what}"):
            cpu0, t0 = time.process_time(), time.perf_counter()
            if batch:
                samples = timed(issue_many, [devices[i : i + batch] for i in range(0, len(devices), batch)])
            else:
                samples = timed(issue, devices)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        # The figures count only what really happened: every certificate stored, logged, verifiable.
        wanted = {d.serial for d in devices}
        rows = [r for r in pki.certificates(ca_id) if r["device_serial"] in wanted]
        stored, logged = len(rows), home.log.size() - log_before
        issuer = pki.ca(ca_id).certificate
        for r in rows[:: max(1, len(rows) // 50)]:
            x509.load_der_x509_certificate(r["cert_der"]).verify_directly_issued_by(issuer)
        sample = x509.load_der_x509_certificate(rows[0]["cert_der"])
        if stored != len(devices) or logged != len(devices):
            raise SystemExit(f"fabtrust stored {stored} and logged {logged} of {len(devices)} certificates")
        db_bytes = sum(p.stat().st_size for p in path.glob("fabtrust.db*"))
    finally:
        home.close()
    return {
        "batch": batch or 1,
        "certs_per_s": len(devices) / wall,
        "certs_per_cpu_s": len(devices) / cpu,
        "latency": summary_ms(samples),  # per call: one certificate, or one batch
        "stored": stored,
        "audit_entries": logged,
        "db_bytes_per_cert": db_bytes / (len(devices) + 1),
        "sample": cert_facts(sample),
    }


def profile_fabtrust(workdir: Path, devices: list[Device], top: int = 15) -> str:
    """cProfile of the fabtrust row (a separate home, so that the timed run is not slowed)."""
    home, ca_id = setup_home(workdir / "profile-home")
    try:
        issue = issue_fn(home.pki, ca_id)
        issue(make_devices(1, offset=len(devices))[0])
        profiler = cProfile.Profile()
        profiler.enable()
        for device in devices:
            issue(device)
        profiler.disable()
    finally:
        home.close()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return out.getvalue()


# -- the raw floor -----------------------------------------------------------------------------------


def floor_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Floor CA")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def bench_floor(devices: list[Device]) -> dict[str, Any]:
    """What any CA must spend per device certificate: CSR load + verify, build, sign, encode."""
    key, ca = floor_ca()
    aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
        ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    )
    crl = x509.CRLDistributionPoints(
        [
            x509.DistributionPoint(
                [x509.UniformResourceIdentifier(f"{BASE_URL}/pki/crl/x.crl")], None, None, None
            )
        ]
    )
    aia = x509.AuthorityInformationAccess(
        [
            x509.AccessDescription(
                AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(f"{BASE_URL}/pki/ocsp")
            )
        ]
    )
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
    start = datetime.now(UTC).replace(microsecond=0)

    def issue(device: Device) -> bytes:
        csr = x509.load_pem_x509_csr(device.csr_pem)
        if not csr.is_signature_valid:
            raise ValueError("bad CSR")
        public = csr.public_key()
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, device.serial),
            ]
        )
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(ca.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(aki, critical=False)
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(device.request.uris[0])]),
                critical=False,
            )
            .add_extension(crl, critical=False)
            .add_extension(aia, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cert.public_bytes(serialization.Encoding.DER)

    issue(devices[0])
    with console.status(f"floor: {len(devices):,} certificates"):
        cpu0, t0 = time.process_time(), time.perf_counter()
        ders = [issue(d) for d in devices]
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    sample = x509.load_der_x509_certificate(ders[0])
    sample.verify_directly_issued_by(ca)
    return {
        "certs_per_s": len(devices) / wall,
        "certs_per_cpu_s": len(devices) / cpu,
        "sample": cert_facts(sample),
    }


def cert_facts(cert: x509.Certificate) -> dict[str, Any]:
    return {
        "der_bytes": len(cert.public_bytes(serialization.Encoding.DER)),
        "subject": cert.subject.rfc4514_string(),
        "extensions": sorted(e.oid.dotted_string for e in cert.extensions),
        "signature": cert.signature_algorithm_oid.dotted_string,
    }


# -- cfssl -------------------------------------------------------------------------------------------

CFSSL_DB_SCHEMA = """
CREATE TABLE certificates (
  serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, ca_label blob,
  status blob NOT NULL, reason int, expiry timestamp, revoked_at timestamp, pem blob NOT NULL,
  PRIMARY KEY(serial_number, authority_key_identifier));
CREATE TABLE ocsp_responses (
  serial_number blob NOT NULL, authority_key_identifier blob NOT NULL, body blob NOT NULL,
  expiry timestamp, PRIMARY KEY(serial_number, authority_key_identifier),
  FOREIGN KEY(serial_number, authority_key_identifier)
    REFERENCES certificates(serial_number, authority_key_identifier));
"""  # cfssl's certdb/sqlite migration 001 (the schema of the Debian package's cfssl)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (its threads included), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cfssl:
    """``cfssl serve`` on a free loopback port, stopped by its own PID."""

    def __init__(self, workdir: Path, *, database: bool) -> None:
        self.workdir = workdir
        self.port = free_port()
        args = [
            "cfssl",
            "serve",
            "-address",
            "127.0.0.1",
            "-port",
            str(self.port),
            "-ca",
            "ca.pem",
            "-ca-key",
            "ca-key.pem",
            "-config",
            "config.json",
        ]
        if database:
            db = workdir / "cfssl-certs.db"
            db.unlink(missing_ok=True)
            with sqlite3.connect(db) as conn:
                conn.executescript(CFSSL_DB_SCHEMA)
                conn.execute("PRAGMA journal_mode=WAL")  # persistent in the file, as fabtrust's
            data_source = f"file:{db}?_journal_mode=WAL&_synchronous=FULL"
            (workdir / "db-config.json").write_text(
                json.dumps({"driver": "sqlite3", "data_source": data_source})
            )
            args += ["-db-config", "db-config.json"]
        self.log = (workdir / f"cfssl-serve-{self.port}.log").open("wb")
        # a list of arguments, no shell: Popen.pid is the cfssl process itself
        self.proc = subprocess.Popen(args, cwd=workdir, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 15
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"cfssl serve exited with {self.proc.returncode} (see {self.log.name})")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("cfssl serve did not start listening") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, 9)
                self.proc.wait()
        self.log.close()

    def client(self) -> Callable[[Device], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

        def sign(device: Device) -> str:
            body = json.dumps(
                {
                    "certificate_request": device.csr_pem.decode(),
                    "hosts": [f"{device.serial.lower()}.{DOMAIN}"],  # cfssl 1.2 takes no URI SANs
                }
            )
            conn.request("POST", "/api/v1/cfssl/sign", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            doc = json.loads(response.read())
            if response.status != 200 or not doc.get("success"):
                raise RuntimeError(f"cfssl sign failed: {response.status} {doc.get('errors')}")
            return str(doc["result"]["certificate"])

        return sign

    def run(self, devices: list[Device], clients: int) -> dict[str, Any]:
        self.client()(devices[0])  # warm up
        chunks = [devices[i::clients] for i in range(clients)]
        samples: list[list[float]] = [[] for _ in range(clients)]
        pems: list[str] = []

        def worker(k: int) -> None:
            sign = self.client()
            out: list[str] = []
            for device in chunks[k]:
                start = time.perf_counter()
                out.append(sign(device))
                samples[k].append(time.perf_counter() - start)
            pems.extend(out[:1])

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
        server_cpu0, t0 = cpu_seconds(self.proc.pid), time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall, server_cpu = time.perf_counter() - t0, cpu_seconds(self.proc.pid) - server_cpu0
        done = sum(len(s) for s in samples)
        if done != len(devices):
            raise RuntimeError(f"cfssl signed {done} of {len(devices)} (a client thread failed)")
        return {
            "clients": clients,
            "certs_per_s": len(devices) / wall,
            "certs_per_server_cpu_s": len(devices) / server_cpu if server_cpu else None,
            "latency": summary_ms([x for s in samples for x in s]),
            "sample": cert_facts(x509.load_pem_x509_certificate(pems[0].encode())),
        }


def prepare_cfssl(workdir: Path) -> None:
    (workdir / "ca-csr.json").write_text(
        json.dumps({"CN": "Bench Issuing CA", "names": [{"O": ORG}], "key": {"algo": "ecdsa", "size": 256}})
    )
    genkey = subprocess.run(
        ["cfssl", "genkey", "-initca", "ca-csr.json"], cwd=workdir, capture_output=True, check=True
    )
    subprocess.run(
        ["cfssljson", "-bare", "ca"], cwd=workdir, input=genkey.stdout, capture_output=True, check=True
    )
    profile = {
        "expiry": "2160h",
        "usages": ["digital signature", "client auth"],
        "crl_url": f"{BASE_URL}/pki/crl/cfssl.crl",
        "ocsp_url": f"{BASE_URL}/pki/ocsp",
    }
    (workdir / "config.json").write_text(json.dumps({"signing": {"default": profile}}))


def bench_cfssl(workdir: Path, devices: list[Device]) -> dict[str, Any] | None:
    if shutil.which("cfssl") is None or shutil.which("cfssljson") is None:
        console.print("cfssl is not installed (Debian package golang-cfssl): its rows stay empty")
        return None
    cdir = workdir / "cfssl"
    cdir.mkdir()
    result: dict[str, Any] = {}
    try:
        prepare_cfssl(cdir)
        result["version"] = subprocess.run(
            ["cfssl", "version"], capture_output=True, text=True
        ).stdout.split()
        for key, database, clients in (("one", False, 1), ("four", False, 4), ("db_one", True, 1)):
            server = Cfssl(cdir, database=database)
            try:
                label = f"cfssl{' + certdb' if database else ''}, {clients} client(s)"
                with console.status(f"{label}: {len(devices):,} certificates"):
                    result[key] = server.run(devices, clients)
            finally:
                server.stop()
            if database:
                with sqlite3.connect(cdir / "cfssl-certs.db") as conn:
                    stored = conn.execute("SELECT count(*) FROM certificates").fetchone()[0]
                result[key]["stored"] = stored
                if stored < len(devices):
                    raise RuntimeError(f"cfssl stored {stored} of {len(devices)} certificates")
    except (OSError, RuntimeError, subprocess.CalledProcessError, json.JSONDecodeError) as exc:
        console.print(f"cfssl run failed: {exc}; its rows stay empty")
        return None
    return result


# -- main --------------------------------------------------------------------------------------------


def main() -> None:
    p = parser(__doc__ or "")
    p.add_argument("--count", type=int, default=5000, help="Certificates per row.")
    p.add_argument("--batch", type=int, default=500, help="Certificates per issue_batch (group commit) call.")
    p.add_argument("--no-cfssl", action="store_true", help="Skip the cfssl rows.")
    p.add_argument(
        "--profile", type=int, default=0, metavar="N", help="Also print a cProfile of N fabtrust issuances."
    )
    args = p.parse_args()
    if args.count < 1 or args.batch < 1:
        p.error("--count and --batch must be at least 1")
    workdir = Path(tempfile.mkdtemp(prefix="fabtrust-bench-pki-"))
    try:
        with console.status(f"making {args.count:,} device CSRs (P-256)"):
            devices = make_devices(args.count)
        ours = bench_fabtrust(workdir, devices)
        batched = bench_fabtrust(workdir, devices, args.batch)
        floor = bench_floor(devices)
        cfssl = None if args.no_cfssl else bench_cfssl(workdir, devices)
        profile = profile_fabtrust(workdir, make_devices(args.profile, 10**7)) if args.profile else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not ours["sample"]["extensions"] == batched["sample"]["extensions"] == floor["sample"]["extensions"]:
        raise SystemExit("the floor does not build the certificate fabtrust issues (extensions differ)")

    def cf(key: str, field: str) -> float | None:
        return cfssl[key][field] if cfssl else None

    def cf_lat(key: str, q: str) -> float | None:
        return cfssl[key]["latency"][q] if cfssl else None

    rows = [
        row(
            "certificates/s, durable, 1 process",
            "certs/s",
            ours["certs_per_s"],
            floor["certs_per_s"],
            "raw cryptography floor",
            True,
        ),
        row(
            "certificates/s vs cfssl + certdb (durable)",
            "certs/s",
            ours["certs_per_s"],
            cf("db_one", "certs_per_s"),
            "cfssl sign + SQLite certdb, 1 client",
            True,
        ),
        row(
            "certificates/s vs cfssl (stores nothing)",
            "certs/s",
            ours["certs_per_s"],
            cf("one", "certs_per_s"),
            "cfssl sign, 1 client",
            True,
        ),
        row(
            "certificates/s vs cfssl, 4 clients",
            "certs/s",
            ours["certs_per_s"],
            cf("four", "certs_per_s"),
            "cfssl sign, 4 clients",
            True,
        ),
        row(
            f"certificates/s, issue_batch of {args.batch} (group commit) vs floor",
            "certs/s",
            batched["certs_per_s"],
            floor["certs_per_s"],
            "raw cryptography floor",
            True,
        ),
        row(
            f"certificates/s, issue_batch of {args.batch} (group commit)",
            "certs/s",
            batched["certs_per_s"],
            cf("db_one", "certs_per_s"),
            "cfssl sign + SQLite certdb, 1 client",
            True,
        ),
        row(
            "certificates per CPU-second",
            "certs/cpu-s",
            ours["certs_per_cpu_s"],
            cf("db_one", "certs_per_server_cpu_s"),
            "cfssl + certdb server CPU",
            True,
        ),
        row(
            "issue latency p50",
            "ms",
            ours["latency"]["p50_ms"],
            cf_lat("db_one", "p50_ms"),
            "cfssl + certdb, 1 client",
            False,
        ),
        row(
            "issue latency p99",
            "ms",
            ours["latency"]["p99_ms"],
            cf_lat("db_one", "p99_ms"),
            "cfssl + certdb, 1 client",
            False,
        ),
    ]
    overhead_us = (1 / ours["certs_per_s"] - 1 / floor["certs_per_s"]) * 1e6
    batch_overhead_us = (1 / batched["certs_per_s"] - 1 / floor["certs_per_s"]) * 1e6
    aim = {
        "issue": ours["certs_per_s"] >= AIM_PER_CORE,
        "issue_batch": batched["certs_per_s"] >= AIM_PER_CORE,
    }
    console.print(
        f"above the floor per certificate: {overhead_us:,.0f} µs (issue), {batch_overhead_us:,.0f} µs "
        f"(issue_batch of {args.batch}). Aim {AIM_PER_CORE:,.0f}/s per core durable: issue "
        f"{'met' if aim['issue'] else 'NOT met'}, issue_batch {'met' if aim['issue_batch'] else 'NOT met'}"
    )
    if cfssl and cfssl["db_one"]["sample"]["extensions"] != ours["sample"]["extensions"]:
        console.print("note: cfssl's certificates carry other extensions than fabtrust's")
    report(
        "pki",
        rows,
        args.out,
        {
            "count": args.count,
            "cores": os.cpu_count(),
            "keys": "all CAs and device keys P-256, ECDSA with SHA-256",
            "aim_certs_per_s_per_core": AIM_PER_CORE,
            "aim_met": aim,
            "overhead_us_above_floor": {"issue": overhead_us, "issue_batch": batch_overhead_us},
            "notes": [
                "fabtrust: SQLite WAL synchronous=FULL; issue() commits certificate row and audit entry "
                "(signed checkpoint) together, one transaction per certificate; issue_batch one per batch",
                "floor: same subject, extensions and signature; no policy, storage or log",
                "cfssl 1.2 (Debian) copies no URI SAN: it gets a DNS SAN through 'hosts' instead",
                "cfssl + certdb: SQLite WAL, synchronous=FULL; cfssl keeps no audit log",
                "cfssl CPU is the server's alone (the Python client's is not counted); fabtrust's is "
                "the whole process",
                "clients and servers share the machine's cores with each other and other work",
            ],
            "fabtrust": ours,
            "fabtrust_batch": batched,
            "floor": floor,
            "cfssl": cfssl,
        },
    )
    if profile is not None:
        console.print(profile, markup=False, highlight=False)


if __name__ == "__main__":
    main()
