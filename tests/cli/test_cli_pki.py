"""``fabtrust ca`` and ``fabtrust cert`` driven in-process through ``main()``: the whole two-home
flow an operator runs (root ceremony 3-of-5, product CA, the station's key and CSR, the signed
issuing CA, adoption, device certificates, show, revoke), then every refusal: exit 2, one line
``error: ...``, and nothing written (no file in ``--out``, no key, pki tables unchanged; a refusal
the service sees is an audit entry with outcome ``refused``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import shutil
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from fabtrust.crypto import dsse
from fabtrust.crypto.keys import key_id, spki_der
from fabtrust.home import Home
from fabtrust.pki.service import CEREMONY_TYPE
from fabtrust.tlog.audit import AuditEntry
from tests.approvals import approve_request, request_in, through_approval
from tests.cli.result import Result, environment, run_in_process

PASSPHRASE = "keystore-passphrase-for-cli"
CUSTODIAN_PASSPHRASES = {n: f"custodian-{n}-secret-words" for n in range(1, 6)}
SECRETS = (PASSPHRASE, *CUSTODIAN_PASSPHRASES.values())
DOMAIN = "widget.devices.acme.example"
ORDER = "po-1001"
ISSUING = f"issuing-line1-{ORDER}"
STATION_KEY = f"soft:issuing-{ORDER}"


def invoke(*args: object) -> Result:
    """``fabtrust ARGS`` in this process, its output captured."""
    return run_in_process(args, SECRETS)


ENV = {
    "FABTRUST_KEYSTORE_PASSPHRASE": PASSPHRASE,
    "COLUMNS": "200",
    **{f"FABTRUST_CUSTODIAN_PASSPHRASE_{n}": p for n, p in CUSTODIAN_PASSPHRASES.items()},
}


def never() -> str:
    raise AssertionError("a secret was asked for")


def pki_state(home: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    with contextlib.closing(sqlite3.connect(home / "fabtrust.db")) as db:
        cas = db.execute("SELECT ca_id, status, key_uri, cert_der FROM pki_cas ORDER BY ca_id").fetchall()
        certs = db.execute("SELECT ca_id, serial, status FROM pki_certs ORDER BY serial").fetchall()
    return cas, certs


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes, the databases aside (their pki tables and audit
    log are compared by content)."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith("fabtrust.db")
    }


def key_files(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "keystore").rglob("*") if p.is_file())


def audit(home: Path) -> list[AuditEntry]:
    with Home.open(home, passphrase=never, pin=never) as h:
        return [AuditEntry.parse(e) for e in h.log.entries(0, h.log.size())]


def csr_pem(key: Any = None, algorithm: hashes.SHA256 | hashes.SHA512 | None = None) -> bytes:
    """A PEM CSR; by default for a new P-256 key. Ed25519 keys take no hash algorithm."""
    if key is None:
        key, algorithm = ec.generate_private_key(ec.SECP256R1()), hashes.SHA256()
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, algorithm)
    return csr.public_bytes(serialization.Encoding.PEM)


# -- the flow, run once ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Flow:
    dir: Path  # oem/, station/, other/ (another OEM), ceremony/, other-ceremony/ and the documents
    results: dict[str, Result]
    device_serial_hex: str

    @property
    def oem(self) -> Path:
        return self.dir / "oem"

    @property
    def station(self) -> Path:
        return self.dir / "station"


def window_end() -> str:
    return (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%d")


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    d = tmp_path_factory.mktemp("cli-pki")
    results: dict[str, Result] = {}
    root_names = ("--cn", "Acme Root CA", "--org", "Acme", "--country", "DE")
    product_names = ("--cn", "Acme Widget CA", "--org", "Acme", "--device-domain", DOMAIN)
    csr_names = ("--cn", f"line1 {ORDER}", "--org", "Acme")
    window: tuple[object, ...] = (
        "--csr",
        d / "po.csr",
        "--station",
        "line1",
        "--order",
        ORDER,
        "--not-after",
        window_end(),
    )
    window += ("--out", d / "bundle.json")
    device: tuple[object, ...] = (
        "--csr",
        d / "device.csr",
        "--device-serial",
        "SN-1",
        "--org",
        "Acme",
        "--order",
        ORDER,
    )
    device += ("--uri", f"https://{DOMAIN}/devices/SN-1", "--out", d / "device.pem")
    steps: list[tuple[str, list[object]]] = [
        ("init-oem", ["--home", d / "oem", "init"]),
        ("init-station", ["--home", d / "station", "init"]),
        ("init-other", ["--home", d / "other", "init"]),
        ("init-blank", ["--home", d / "blank", "init"]),
        ("ceremony", ["--home", d / "oem", "ca", "init-root", *root_names, "--out", d / "ceremony"]),
        ("other-ceremony", ["--home", d / "other", "ca", "init-root", "--out", d / "other-ceremony"]),
        ("product", ["--home", d / "oem", "ca", "create-product-ca", "widget", *product_names]),
        (
            "station-key",
            ["--home", d / "station", "keys", "create", f"issuing-{ORDER}", "--purpose", "issuing CA"],
        ),
        ("spare-key", ["--home", d / "station", "keys", "create", "spare"]),
        (
            "csr",
            ["--home", d / "station", "ca", "csr", "--key", STATION_KEY, *csr_names, "--out", d / "po.csr"],
        ),
        ("sign", ["--home", d / "oem", "ca", "sign-issuing-ca", "--product", "widget", *window]),
        ("adopt", ["--home", d / "station", "ca", "adopt", d / "bundle.json", "--key", STATION_KEY]),
        (
            "other-bundle",
            ["--home", d / "other", "ca", "export-bundle", "root", "--out", d / "other-bundle.json"],
        ),
        ("issue", ["--home", d / "station", "cert", "issue", "--ca", ISSUING, *device]),
    ]
    (d / "device.csr").write_bytes(csr_pem())
    with environment(ENV):
        for name, args in steps:
            results[name] = invoke(*args).ok()
        cert = x509.load_pem_x509_certificate((d / "device.pem").read_bytes())
        results["list-station"] = invoke("--home", d / "station", "ca", "list").ok()
        results["show"] = invoke(
            "--home",
            d / "station",
            "cert",
            "show",
            "--ca",
            ISSUING,
            "--serial",
            format(cert.serial_number, "x"),
        ).ok()
        # the blank home's officers approve restoring the ceremony's root (tests spend it or not)
        asked = invoke(*restore(*SHARE[:3], approval=False)(d)).ok()
        request_id = request_in(asked.out)
        with Home.open(d / "blank", passphrase=lambda: PASSPHRASE, pin=never) as blank:
            approve_request(blank, request_id)
        (d / RESTORE_APPROVAL).write_text(request_id)
    return Flow(d, results, format(cert.serial_number, "x"))


@pytest.fixture
def work(flow: Flow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Flow:
    """A copy of the flow's homes and documents for a test that may change them."""
    target = tmp_path / "flow"
    shutil.copytree(flow.dir, target)
    for name in ("FABTRUST_HOME", "FABTRUST_DB"):
        monkeypatch.delenv(name, raising=False)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return Flow(target, flow.results, flow.device_serial_hex)


# -- the flow --------------------------------------------------------------------------------------


def test_the_ceremony_writes_backup_shares_and_a_signed_transcript(flow: Flow) -> None:
    out = flow.dir / "ceremony"
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert files == {
        "root-ca.pem": 0o644,
        "root-backup.json": 0o600,
        "ceremony-transcript.dsse.json": 0o644,
        **{f"share-custodian-{n}.json": 0o600 for n in range(1, 6)},
    }
    assert "shares       3 of 5: custodian-1, custodian-2" in flow.results["ceremony"].out
    root = x509.load_pem_x509_certificate((out / "root-ca.pem").read_bytes())
    assert root.subject.rfc4514_string() == "CN=Acme Root CA,O=Acme,C=DE"
    spki = spki_der(root.public_key())  # type: ignore[arg-type]
    raw = (out / "ceremony-transcript.dsse.json").read_bytes()
    payload = dsse.verify(dsse.Envelope.parse(raw), CEREMONY_TYPE, {key_id(spki): spki})
    transcript = json.loads(payload)
    assert transcript["root"]["fingerprint"] == key_id(spki)
    assert [c["custodian"] for c in transcript["custodians"]] == [f"custodian-{n}" for n in range(1, 6)]
    for n in range(1, 6):
        share = json.loads((out / f"share-custodian-{n}.json").read_bytes())
        assert transcript["custodians"][n - 1]["share_fingerprint"] == share["share_fingerprint"]
        assert share["ciphertext"].encode() not in raw + payload
    logged = next(e for e in audit(flow.oem) if e.action == "ca.init-root")
    assert logged.details["transcript_sha256"] == hashlib.sha256(payload).hexdigest()


def test_the_station_holds_its_issuing_key_and_the_chain(flow: Flow) -> None:
    assert flow.results["adopt"].out.strip() == f"adopted {ISSUING} with its key"
    table = flow.results["list-station"].out
    rows = {
        line.split("│")[1].strip(): [c.strip() for c in line.split("│")[1:-1]]
        for line in table.splitlines()
        if "│" in line
    }
    assert rows[ISSUING][1:4] == ["issuing-ca", "product-widget", "active"]
    assert rows[ISSUING][-1] == "yes"
    assert rows["product-widget"][-1] == "no"
    assert rows["root"][-1] == "no"
    bundle = json.loads((flow.dir / "bundle.json").read_bytes())
    assert [e["ca_id"] for e in bundle["cas"]] == [ISSUING, "product-widget", "root"]


def test_the_device_certificate_and_show(flow: Flow) -> None:
    device = x509.load_pem_x509_certificate((flow.dir / "device.pem").read_bytes())
    issuing = x509.load_pem_x509_certificate(
        json.loads((flow.dir / "bundle.json").read_bytes())["cas"][0]["certificate"].encode()
    )
    device.verify_directly_issued_by(issuing)
    assert device.subject.rfc4514_string() == "2.5.4.5=SN-1,O=Acme"
    assert (
        flow.results["issue"].out.strip()
        == f"issued {flow.device_serial_hex} by {ISSUING} to {flow.dir / 'device.pem'}"
    )
    show = flow.results["show"].out
    assert f"serial   {flow.device_serial_hex}  (device-idevid, issued by {ISSUING})" in show
    assert "status   good" in show
    assert show.rstrip().endswith("-----END CERTIFICATE-----")


def test_cert_revoke_then_show(work: Flow) -> None:
    station = work.station
    invoke(
        "--home",
        station,
        "cert",
        "revoke",
        "--ca",
        ISSUING,
        "--serial",
        work.device_serial_hex,
        "--reason",
        "keyCompromise",
    ).ok()
    show = invoke("--home", station, "cert", "show", "--ca", ISSUING, "--serial", work.device_serial_hex).ok()
    assert "status   revoked (keyCompromise)" in show.out
    again = invoke("--home", station, "cert", "revoke", "--device", "SN-1", "--reason", "superseded").ok()
    assert again.out.strip() == "revoked 0 certificate(s)"


def test_a_revoked_issuing_ca_issues_no_more(work: Flow) -> None:
    station = work.station
    revoked = through_approval(
        invoke,
        lambda: Home.open(station, passphrase=lambda: PASSPHRASE, pin=never),
        *("--home", station, "ca", "revoke", ISSUING, "--reason", "cessationOfOperation"),
    )
    assert revoked.ok().out.strip() == f"revoked {ISSUING}"
    (work.dir / "x.csr").write_bytes(csr_pem())
    before = pki_state(station)
    invoke(*issue(serial="SN-2")(work.dir)).refused(f"issuer {ISSUING} is revoked")
    assert pki_state(station) == before
    last = audit(station)[-1]
    assert (last.action, last.outcome.value, last.details["reason"]) == (
        "cert.issue",
        "refused",
        "policy_violation",
    )


def test_restore_root_from_three_shares_with_the_ceremony_passphrases(work: Flow) -> None:
    # custodians 2, 4 and 5 come with the variables numbered as at the ceremony
    restored = invoke(*restore(SHARE[1], SHARE[3], SHARE[4])(work.dir)).ok()
    assert "from 3 shares" in restored.out
    names = ("--cn", "Sprocket CA", "--org", "Acme", "--device-domain", "sprocket.devices.acme.example")
    invoke(*cmd("blank", "ca", "create-product-ca", "sprocket", *names)(work.dir)).ok()
    cas, _ = pki_state(work.dir / "blank")
    assert [row[0] for row in cas] == ["product-sprocket", "root"]
    root = x509.load_pem_x509_certificate((work.dir / "ceremony" / "root-ca.pem").read_bytes())
    product = x509.load_der_x509_certificate(cas[0][3])
    product.verify_directly_issued_by(root)


# -- refusals --------------------------------------------------------------------------------------

Args = Callable[[Path], list[object]]


class P(str):
    """An argument that names a file in the flow directory."""

    __slots__ = ()


def cmd(home: str, *args: object) -> Args:
    """``fabtrust --home <home> ARGS`` with ``P`` arguments resolved in the flow directory."""
    return lambda d: ["--home", d / home, *(d / a if isinstance(a, P) else a for a in args)]


SHARE = [P(f"ceremony/share-custodian-{n}.json") for n in range(1, 6)]
RESTORE_APPROVAL = "restore-approval.txt"
BACKUP = ("--backup", P("ceremony/root-backup.json"), "--root-cert", P("ceremony/root-ca.pem"))


def restore(*shares: P, approval: bool = True) -> Args:
    """``ca restore-root`` on the blank home; with the root.restore approval the flow prepared."""
    args = cmd("blank", "ca", "restore-root", *BACKUP, *(a for s in shares for a in ("--share", s)))
    if not approval:
        return args
    return lambda d: [*args(d), "--approval", (d / RESTORE_APPROVAL).read_text()]


def issue(*extra: object, serial: str = "SN-9", host: str = DOMAIN) -> Args:
    uri = f"https://{host}/devices/{serial}"
    device = ("--device-serial", serial, "--org", "Acme", "--uri", uri)
    return cmd("station", "cert", "issue", "--ca", ISSUING, "--csr", P("x.csr"), *device, *extra)


def sign(*extra: object, csr: str = "po.csr", not_after: str = "", order: str = "po-2002") -> Args:
    window = ("--not-after", not_after or window_end(), "--station", "line1", "--order", order)
    return cmd("oem", "ca", "sign-issuing-ca", "--csr", P(csr), *window, *(extra or ("--product", "widget")))


def init_root(home: str = "blank", *extra: object) -> Args:
    return cmd(home, "ca", "init-root", "--out", P("new-ceremony"), *extra)


def product(*args: object) -> Args:
    return cmd("oem", "ca", "create-product-ca", *args)


def tamper_share(d: Path) -> None:
    path = d / "ceremony" / "share-custodian-3.json"
    doc = json.loads(path.read_bytes())
    data = bytearray(base64.b64decode(doc["ciphertext"]))
    data[0] ^= 1
    doc["ciphertext"] = base64.b64encode(bytes(data)).decode()
    path.write_text(json.dumps(doc))


def write(name: str, data: Callable[[], bytes]) -> Callable[[Path], None]:
    def prepare(d: Path) -> None:
        (d / name).write_bytes(data())

    return prepare


def truncate_bundle(d: Path) -> None:
    (d / "broken.json").write_bytes((d / "bundle.json").read_bytes()[:-20])


def bad_signature_csr() -> bytes:
    der = bytearray(x509.load_pem_x509_csr(csr_pem()).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 1
    return bytes(der)


def ed25519_csr() -> bytes:
    return csr_pem(ed25519.Ed25519PrivateKey.generate(), None)


def rsa_csr() -> bytes:
    return csr_pem(rsa.generate_private_key(65537, 2048), hashes.SHA256())


def p521_csr() -> bytes:
    return csr_pem(ec.generate_private_key(ec.SECP521R1()), hashes.SHA512())


@dataclass(frozen=True)
class Case:
    args: Args
    needle: str
    home: str  # the home whose pki tables, key files and audit are checked
    logged: tuple[str, str] | None = None  # (action, reason) of the refusal's audit entry
    prepare: Callable[[Path], None] | None = None
    env: dict[str, str | None] | None = None


def case(
    case_id: str, args: Args, needle: str, home: str, logged: tuple[str, str] | None = None, **kw: Any
) -> Any:
    return pytest.param(Case(args, needle, home, logged, **kw), id=case_id)


NO_PASSPHRASE_4 = {"FABTRUST_CUSTODIAN_PASSPHRASE_4": None}
SHORT_PASSPHRASE_2 = {"FABTRUST_CUSTODIAN_PASSPHRASE_2": "short"}
WRONG_PASSPHRASE_3 = {"FABTRUST_CUSTODIAN_PASSPHRASE_3": "not-the-right-one"}
OTHER_SHARE = P("other-ceremony/share-custodian-3.json")

CASES = [
    # the root ceremony (nothing may appear in --out, not even the directory)
    case(
        "init-root/threshold-above-custodians", init_root("blank", "--threshold", "6"), "threshold 6", "blank"
    ),
    case("init-root/threshold-1", init_root("blank", "--threshold", "1"), "--threshold", "blank"),
    case("init-root/missing-passphrase", init_root(), "PASSPHRASE_4", "blank", env=NO_PASSPHRASE_4),
    case(
        "init-root/short-passphrase",
        init_root(),
        "too short",
        "blank",
        ("ca.init-root", "invalid_input"),
        env=SHORT_PASSPHRASE_2,
    ),
    case(
        "init-root/bad-subject",
        init_root("blank", "--country", "de"),
        "countryName",
        "blank",
        ("ca.init-root", "invalid_input"),
    ),
    case("init-root/key-type", init_root("blank", "--key-type", "rsa-4096"), "unknown key type", "blank"),
    case(
        "init-root/second-ceremony",
        init_root("oem"),
        "a root CA exists already",
        "oem",
        ("ca.init-root", "conflict"),
    ),
    case(
        "init-root/adopted-root",
        init_root("station"),
        "exists already",
        "station",
        ("ca.init-root", "conflict"),
    ),
    case(
        "init-root/files-exist", cmd("blank", "ca", "init-root", "--out", P("ceremony")), "overwrite", "blank"
    ),
    case(
        "init-root/out-is-a-file",
        cmd("blank", "ca", "init-root", "--out", P("po.csr")),
        "not a directory",
        "blank",
    ),
    # restoring the root
    case(
        "restore/too-few-shares",
        restore(SHARE[0], SHARE[1]),
        "2 of 3 shares given",
        "blank",
        ("ca.restore-root", "invalid_input"),
    ),
    case(
        "restore/share-of-another-ceremony",
        restore(SHARE[0], SHARE[1], OTHER_SHARE),
        "share from another ceremony",
        "blank",
        ("ca.restore-root", "invalid_input"),
    ),
    case(
        "restore/tampered-share", restore(*SHARE[:3]), "altered or is corrupt", "blank", prepare=tamper_share
    ),
    case(
        "restore/wrong-passphrase", restore(*SHARE[:3]), "wrong passphrase", "blank", env=WRONG_PASSPHRASE_3
    ),
    case("restore/missing-share-file", restore(SHARE[0], P("ceremony/nope.json")), "not found", "blank"),
    case(
        "restore/no-root-certificate",
        cmd(
            "blank",
            "ca",
            "restore-root",
            "--backup",
            P("ceremony/root-backup.json"),
            *(a for s in SHARE[:3] for a in ("--share", s)),
            "--approval",
            "0" * 32,
        ),
        "give the root certificate",
        "blank",
        ("ca.restore-root", "invalid_input"),
    ),
    # product CAs (no key may be left behind)
    case(
        "product/bad-domain",
        product("sprocket", "--cn", "S", "--org", "Acme", "--device-domain", "not a domain"),
        "not a valid DNS name",
        "oem",
        ("ca.create-product", "invalid_input"),
    ),
    case(
        "product/exists",
        product("widget", "--cn", "W", "--org", "Acme", "--device-domain", DOMAIN),
        "exists already",
        "oem",
        ("ca.create-product", "conflict"),
    ),
    case(
        "product/bad-subject",
        product("sprocket", "--cn", "S" * 70, "--org", "Acme", "--device-domain", "s.acme.example"),
        "1-64 characters",
        "oem",
        ("ca.create-product", "invalid_input"),
    ),
    case(
        "product/no-root-key-here",
        cmd(
            "station",
            "ca",
            "create-product-ca",
            "x",
            "--cn",
            "S",
            "--org",
            "A",
            "--device-domain",
            "s.acme.example",
        ),
        "does not hold the key of CA root",
        "station",
        ("ca.create-product", "policy_violation"),
    ),
    # CSRs and issuing CAs
    case(
        "csr/unknown-key",
        cmd("station", "ca", "csr", "--key", "soft:nope", "--cn", "x", "--org", "A"),
        "key file for 'nope' not found",
        "station",
    ),
    case(
        "csr/out-exists",
        cmd("station", "ca", "csr", "--key", STATION_KEY, "--cn", "x", "--org", "A", "--out", P("po.csr")),
        "refusing to overwrite",
        "station",
    ),
    case(
        "sign/out-exists",
        sign("--product", "widget", "--out", P("bundle.json")),
        "refusing to overwrite",
        "oem",
    ),
    case("sign/csr-missing", sign(csr="missing.csr"), "not found", "oem"),
    case(
        "sign/csr-malformed",
        sign(csr="x.csr"),
        "malformed",
        "oem",
        ("ca.sign-issuing", "invalid_input"),
        prepare=write("x.csr", lambda: b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"),
    ),
    case(
        "sign/csr-oversized",
        sign(csr="x.csr"),
        "larger than 65536 bytes",
        "oem",
        ("ca.sign-issuing", "invalid_input"),
        prepare=write("x.csr", lambda: b"0" * (64 * 1024 + 1)),
    ),
    case(
        "sign/ed25519-key",
        sign(csr="x.csr"),
        "does not allow ed25519 keys",
        "oem",
        ("ca.sign-issuing", "policy_violation"),
        prepare=write("x.csr", ed25519_csr),
    ),
    case(
        "sign/window-too-long",
        sign(not_after="2099-01-01"),
        "at most 400 days",
        "oem",
        ("ca.sign-issuing", "policy_violation"),
    ),
    case(
        "sign/window-over",
        sign(not_after="2020-01-01"),
        "later than now",
        "oem",
        ("ca.sign-issuing", "invalid_input"),
    ),
    case(
        "sign/unknown-product",
        sign("--product", "sprocket"),
        "no CA 'product-sprocket'",
        "oem",
        ("ca.sign-issuing", "not_found"),
    ),
    case(
        "sign/same-order-again", sign(order=ORDER), "exists already", "oem", ("ca.sign-issuing", "conflict")
    ),
    # adopting bundles
    case(
        "adopt/wrong-key",
        cmd("station", "ca", "adopt", P("bundle.json"), "--key", "soft:spare"),
        "the key does not belong",
        "station",
        ("ca.adopt", "policy_violation"),
    ),
    case(
        "adopt/foreign-root",
        cmd("station", "ca", "adopt", P("other-bundle.json")),
        "exists here with another certificate",
        "station",
        ("ca.adopt", "conflict"),
    ),
    case(
        "adopt/truncated",
        cmd("station", "ca", "adopt", P("broken.json")),
        "not valid JSON",
        "station",
        ("ca.adopt", "invalid_input"),
        prepare=truncate_bundle,
    ),
    # device certificates
    case(
        "issue/bad-signature",
        issue(),
        "does not verify",
        "station",
        ("cert.issue", "verification_failed"),
        prepare=write("x.csr", bad_signature_csr),
    ),
    case(
        "issue/rsa-key",
        issue(),
        "not supported",
        "station",
        ("cert.issue", "invalid_input"),
        prepare=write("x.csr", rsa_csr),
    ),
    case(
        "issue/p521-key",
        issue(),
        "secp521r1",
        "station",
        ("cert.issue", "invalid_input"),
        prepare=write("x.csr", p521_csr),
    ),
    case(
        "issue/truncated-csr",
        issue(),
        "malformed",
        "station",
        ("cert.issue", "invalid_input"),
        prepare=write("x.csr", lambda: csr_pem()[:-50]),
    ),
    case(
        "issue/oversized-csr",
        issue(),
        "larger than 65536 bytes",
        "station",
        ("cert.issue", "invalid_input"),
        prepare=write("x.csr", lambda: csr_pem() + b"\n" * 65536),
    ),
    case(
        "issue/duplicate-serial",
        issue(serial="SN-1"),
        "SN-1 has a certificate already",
        "station",
        ("cert.issue", "conflict"),
        prepare=write("x.csr", csr_pem),
    ),
    case(
        "issue/outside-name-constraints",
        issue(host="gadget.devices.acme.example"),
        "outside the name constraints",
        "station",
        ("cert.issue", "policy_violation"),
        prepare=write("x.csr", csr_pem),
    ),
    case(
        "issue/out-exists",
        issue("--out", P("device.pem")),
        "overwrite",
        "station",
        prepare=write("x.csr", csr_pem),
    ),
    case(
        "issue/unknown-profile",
        cmd("station", "cert", "issue", "--ca", ISSUING, "--csr", P("device.csr"), "--profile", "rsa-server"),
        "no certificate profile",
        "station",
        ("cert.issue", "not_found"),
    ),
    # show and revoke
    case(
        "show/unknown-serial",
        cmd("station", "cert", "show", "--ca", ISSUING, "--serial", "abcdef"),
        "no certificate",
        "station",
    ),
    case(
        "revoke/hold",
        cmd("station", "cert", "revoke", "--device", "SN-1", "--reason", "certificateHold"),
        "unknown revocation reason",
        "station",
    ),
    case(
        "revoke/serial-without-ca",
        cmd("station", "cert", "revoke", "--serial", "abc", "--reason", "superseded"),
        "revoke one thing",
        "station",
    ),
    case(
        "revoke/root",
        cmd("oem", "ca", "revoke", "root", "--reason", "cACompromise"),
        "root cannot be revoked",
        "oem",
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_refusals_are_one_line_and_change_nothing(
    work: Flow, monkeypatch: pytest.MonkeyPatch, case: Case
) -> None:
    d = work.dir
    if case.prepare is not None:
        case.prepare(d)
    for name, value in (case.env or {}).items():
        if value is None:
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setattr("fabtrust.cli.ca.os.isatty", lambda fd: False)  # no prompt to fall back on
    home = d / case.home
    files_before = files(d)
    state_before = pki_state(home)
    keys_before = key_files(home)
    entries_before = len(audit(home))
    invoke(*case.args(d)).refused(case.needle)
    assert pki_state(home) == state_before
    assert key_files(home) == keys_before
    assert files(d) == files_before  # nothing written: no certificate, bundle, share, CSR or key
    assert not (d / "new-ceremony").exists()  # a refused ceremony leaves not even its --out directory
    logged = audit(home)[entries_before:]
    if case.logged is None:  # refused by the command itself, before the service saw a request
        assert logged == []
    else:
        assert [(e.action, e.outcome.value, e.details["reason"]) for e in logged] == [
            (*case.logged[:1], "refused", case.logged[1])
        ]


def test_ca_crl_writes_a_crl_signed_by_the_ca(work: Flow) -> None:
    out = work.dir / "issuing.crl"
    invoke("--home", work.station, "ca", "crl", ISSUING, "--out", out).ok()
    crl = x509.load_der_x509_crl(out.read_bytes())
    issuing = x509.load_pem_x509_certificate(
        json.loads((work.dir / "bundle.json").read_bytes())["cas"][0]["certificate"].encode()
    )
    assert crl.is_signature_valid(issuing.public_key())  # type: ignore[arg-type]
    assert crl.issuer == issuing.subject
    pem = invoke("--home", work.station, "ca", "crl", ISSUING, "--delta").ok().out
    assert x509.load_pem_x509_crl(pem.encode()).extensions.get_extension_for_class(x509.DeltaCRLIndicator)
    invoke("--home", work.station, "ca", "crl", "no-such-ca").refused("no CA 'no-such-ca'")
