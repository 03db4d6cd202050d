"""The production run through the CLI, driven in-process through ``main()`` as an operator runs it
across data homes: the OEM (root ceremony, vendor, product, release, station certification, orders,
sealed packages, reconciliation) and two stations (enroll, install, request, load, status, sync).

The flow's five devices are provisioned through the station's service with chips from an in-test
vendor the product accepts (the clone tests need those chips); ``station provision`` is tested on
its own over the vendor ``vendor create`` wrote.

Refusals: exit 2, one line ``error: ...``, and nothing changed (no output file, no package row,
the station's packages unchanged).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fabtrust.device.agent import DeviceAgent
from fabtrust.device.element import SecureElement
from fabtrust.device.vendor import SiliconVendor
from fabtrust.home import Home
from fabtrust.production.station import Provisioned
from fabtrust.tlog.audit import AuditEntry
from tests.approvals import approve_request, request_in, through_approval
from tests.cli.result import Result, environment, run_in_process

PASSPHRASE = "production-cli-keystore-passphrase"
CUSTODIANS = {n: f"production-custodian-{n}-words" for n in range(1, 4)}
SECRETS = (PASSPHRASE, *CUSTODIANS.values())
DOMAIN = "widget.devices.acme.example"
ENV = {
    "FABTRUST_KEYSTORE_PASSPHRASE": PASSPHRASE,
    "COLUMNS": "200",
    **{f"FABTRUST_CUSTODIAN_PASSPHRASE_{n}": p for n, p in CUSTODIANS.items()},
}


def invoke(*args: object) -> Result:
    """``fabtrust ARGS`` in this process, its output captured."""
    return run_in_process(args, SECRETS)


def never() -> str:
    raise AssertionError("a PIN was asked for")


def rows(home: Path, query: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(home / "fabtrust.db")) as db:
        return db.execute(query).fetchall()


def last_entry(home: Path) -> AuditEntry:
    with Home.open(home, passphrase=never, pin=never) as h:
        return AuditEntry.parse(h.log.entries(h.log.size() - 1, h.log.size())[0])


def open_oem(home: Path) -> Home:
    return Home.open(home, passphrase=lambda: PASSPHRASE, pin=never)


def provision(station: Path, order: str, chips: list[SecureElement]) -> list[Provisioned | Exception]:
    """What ``station provision`` would do: challenge, answer, provision, install, complete."""
    with Home.open(station, passphrase=lambda: PASSPHRASE, pin=never) as home:
        answers = []
        for chip in chips:
            challenge = home.station.challenge(order)
            answers.append((challenge, DeviceAgent(chip).answer(challenge)))
        results: list[Provisioned | Exception] = list(home.station.provision(order, answers))
        by_uid = {c.uid: c for c in chips}
        image = home.station.image(order)
        receipts = [
            DeviceAgent(by_uid[r.chip_uid]).install(r.provisioning, image)
            for r in results
            if isinstance(r, Provisioned)
        ]
        assert all(isinstance(o, str) for o in home.station.complete(receipts))
    return results


def table_row(output: str, first: str) -> list[str]:
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] == first:
            return cells
    raise AssertionError(f"no row {first!r} in {output}")


# -- the flow, run once ----------------------------------------------------------------------------


@dataclass
class Flow:
    dir: Path
    vendor: SiliconVendor
    chips: list[SecureElement]
    results: dict[str, Result] = field(default_factory=dict)

    @property
    def oem(self) -> Path:
        return self.dir / "oem"

    @property
    def line1(self) -> Path:
        return self.dir / "line1"

    @property
    def line2(self) -> Path:
        return self.dir / "line2"


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    d = tmp_path_factory.mktemp("cli-production")
    vendor = SiliconVendor("Line Test Silicon", now=datetime.now(UTC) - timedelta(days=1))
    (d / "line-test-root.pem").write_bytes(vendor.root.public_bytes(serialization.Encoding.PEM))
    (d / "firmware.bin").write_bytes(b"\x7fFWIMG widget firmware 1.0.0\n" * 64)
    f = Flow(d, vendor, [vendor.make_chip() for _ in range(5)])
    oem, line1, line2 = ("--home", f.oem), ("--home", f.line1), ("--home", f.line2)
    steps: list[tuple[str, tuple[object, ...]]] = [
        ("init-oem", (*oem, "init")),
        ("init-line1", (*line1, "init")),
        ("init-line2", (*line2, "init")),
        (
            "ceremony",
            (
                *oem,
                "ca",
                "init-root",
                "--custodians",
                3,
                "--threshold",
                2,
                "--org",
                "Acme",
                "--out",
                d / "cer",
            ),
        ),
        ("vendor", ("vendor", "create", "Trusted Silicon", "--out", d / "vendor")),
        (
            "product",
            (
                *oem,
                "product",
                "create",
                "widget",
                "--description",
                "Widget [rev A]",
                "--device-domain",
                DOMAIN,
                "--organization",
                "Acme",
                "--vendor-root",
                d / "vendor" / "root-ca.pem",
                "--vendor-root",
                d / "line-test-root.pem",
            ),
        ),
        *((f"signer-{n}", (*oem, "firmware", "signer", "add", n)) for n in ("alice", "bob", "carol")),
        ("policy", (*oem, "firmware", "policy", "set", "widget", "--threshold", 2)),
        (
            "release",
            (
                *oem,
                "firmware",
                "release",
                "create",
                "widget",
                "1.0.0",
                "--image",
                d / "firmware.bin",
                "--security-counter",
                1,
            ),
        ),
        ("approve-alice", (*oem, "firmware", "release", "approve", "widget-1.0.0", "--signer", "alice")),
        ("approve-bob", (*oem, "firmware", "release", "approve", "widget-1.0.0", "--signer", "bob")),
        ("publish", (*oem, "firmware", "release", "publish", "widget-1.0.0")),
        ("enroll-line1", (*line1, "station", "enroll", "line1", "--out", d / "line1-enroll.json")),
        (
            "certify-line1",
            (*oem, "station", "certify", d / "line1-enroll.json", "--out", d / "line1-cert.json"),
        ),
        ("install-line1", (*line1, "station", "install", d / "line1-cert.json")),
        ("enroll-line2", (*line2, "station", "enroll", "line2", "--out", d / "line2-enroll.json")),
        (
            "certify-line2",
            (*oem, "station", "certify", d / "line2-enroll.json", "--out", d / "line2-cert.json"),
        ),
        ("install-line2", (*line2, "station", "install", d / "line2-cert.json")),
        (
            "order",
            (
                *oem,
                "order",
                "create",
                "po-1",
                "--product",
                "widget",
                "--release",
                "widget-1.0.0",
                "--station",
                "line1",
                "--station",
                "line2",
                "--quota",
                8,
                "--days",
                30,
            ),
        ),
        ("request", (*line1, "station", "request", "po-1", "--out", d / "line1-req.json")),
        (
            "seal",
            (
                *oem,
                "order",
                "seal",
                "po-1",
                "--request",
                d / "line1-req.json",
                "--station-quota",
                5,
                "--out",
                d / "line1-pkg.json",
            ),
        ),
        ("load", (*line1, "station", "load", d / "line1-pkg.json")),
    ]
    with environment(ENV):
        for name, args in steps:
            if name == "publish":  # asks for a firmware.publish approval, then spends it
                f.results[name] = through_approval(invoke, lambda: open_oem(f.oem), *args).ok()
            else:
                f.results[name] = invoke(*args).ok()
        assert all(isinstance(r, Provisioned) for r in provision(f.line1, "po-1", f.chips))
        f.results["status"] = invoke(*line1, "station", "status").ok()
        f.results["status-json"] = invoke(*line1, "station", "status", "--json").ok()
        f.results["sync"] = invoke(*line1, "station", "sync", "--out", d / "export.json").ok()
        shutil.copytree(f.oem, d / "oem-json")  # the same export, reconciled once more as JSON
        f.results["reconcile"] = invoke(*oem, "reconcile", d / "export.json").ok()
        f.results["reconcile-json"] = invoke(
            "--home", d / "oem-json", "reconcile", d / "export.json", "--json"
        ).ok()
        f.results["order-show"] = invoke(*oem, "order", "show", "po-1").ok()
        f.results["order-list"] = invoke(*oem, "order", "list").ok()
        f.results["product-list"] = invoke(*oem, "product", "list").ok()
    return f


@pytest.fixture
def work(flow: Flow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Flow:
    """A copy of the flow's homes and documents for a test that may change them."""
    target = tmp_path / "flow"
    shutil.copytree(flow.dir, target)
    for name in ("FABTRUST_HOME", "FABTRUST_DB"):
        monkeypatch.delenv(name, raising=False)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return Flow(target, flow.vendor, flow.chips, flow.results)


# -- the flow --------------------------------------------------------------------------------------


def test_vendor_product_and_release(flow: Flow) -> None:
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (flow.dir / "vendor").iterdir()}
    # public certificates, and the simulation's state (its birth CA key) readable by the owner only
    assert files == {"root-ca.pem": 0o644, "birth-ca.pem": 0o644, "vendor-state.pem": 0o600}
    root = x509.load_pem_x509_certificate((flow.dir / "vendor" / "root-ca.pem").read_bytes())
    birth = x509.load_pem_x509_certificate((flow.dir / "vendor" / "birth-ca.pem").read_bytes())
    birth.verify_directly_issued_by(root)
    assert "test only" in flow.results["vendor"].out
    product = flow.results["product"].out
    assert "product widget: product CA product-widget, 2 accepted vendor(s)" in product
    assert "O=Trusted Silicon" in product
    assert "O=Line Test Silicon" in product
    assert "release widget-1.0.0 created (draft)" in flow.results["release"].out
    assert "release widget-1.0.0 published" in flow.results["publish"].out
    assert table_row(flow.results["product-list"].out, "widget") == [
        "widget",
        "product-widget",
        "2",
        "Widget [rev A]",  # printed as given, not taken for markup
    ]


def test_enrollment_and_order(flow: Flow) -> None:
    assert "station line1 certified" in flow.results["certify-line1"].out
    assert "station line1: certificate installed" in flow.results["install-line1"].out
    order = flow.results["order"].out
    assert order.startswith("order po-1: approved\n")
    assert "stations  line1, line2" in order
    assert "quota     8" in order
    assert "sealed package pkg-" in flow.results["seal"].out
    assert "station quota 5" in flow.results["seal"].out
    assert stat.S_IMODE((flow.dir / "line1-pkg.json").stat().st_mode) == 0o600
    assert "quota       5 (5 remaining)" in flow.results["load"].out
    show = flow.results["order-show"].out
    assert "release widget-1.0.0" in show
    assert "firmware  1.0.0, security counter 1, image sha256 " in show
    assert "packages  1, 5 of 8 sealed, 3 left" in show
    assert table_row(show, next(c for c in show.split() if c.startswith("pkg-")))[1:4] == [
        "line1",
        "issuing-line1-po-1",
        "5",
    ]
    listed = table_row(flow.results["order-list"].out, "po-1")
    assert listed[1:6] == ["widget", "widget-1.0.0", "line1, line2", "8", "approved"]


def test_station_status_after_five_devices(flow: Flow) -> None:
    row = table_row(flow.results["status"].out, "po-1")
    assert row[3:8] == ["5", "5", "0", "5", "5"]  # quota, used, remaining, issued, programmed
    assert flow.results["status"].out.startswith("station line1 (certificate installed)")
    doc = json.loads(flow.results["status-json"].out)
    assert doc["station_id"] == "line1"
    assert doc["certified"] is True
    (order,) = doc["orders"]
    assert (order["order"], order["quota"], order["used"], order["remaining"]) == ("po-1", 5, 5, 0)
    assert "exported 5 record(s)" in flow.results["sync"].out


def test_reconciliation_registers_the_five(flow: Flow) -> None:
    report = json.loads(flow.results["reconcile-json"].out)
    assert report["format"] == "fabtrust.reconciliation-report/v1"
    assert (report["station_id"], report["records"], report["registered"], report["alerts"]) == (
        "line1",
        5,
        5,
        [],
    )
    assert report["orders"] == {"po-1": {"quota": 5, "records": 5, "registered": 5}}
    table = flow.results["reconcile"].out
    assert table.startswith("reconciled station line1")
    assert table_row(table, "registered") == ["registered", "5"]
    assert table_row(table, "alerts") == ["alerts", "0"]
    assert table_row(table, "po-1") == ["po-1", "5", "5", "5"]
    registered = rows(flow.oem, "SELECT chip_uid, status FROM fleet_devices WHERE order_id = 'po-1'")
    assert sorted(registered) == sorted((c.uid, "manufactured") for c in flow.chips)


def test_no_secret_is_ever_printed(flow: Flow) -> None:
    for result in flow.results.values():
        for secret in SECRETS:
            assert secret not in result.out + result.err


# -- refusals: exit 2, one line, nothing changed ---------------------------------------------------


def seal(work: Flow, request: str, out: str, *quota: object) -> Result:
    """``order seal po-1`` at the OEM, optionally with ``--station-quota``."""
    d = work.dir
    extra = ("--station-quota", *quota) if quota else ()
    return invoke(
        "--home", work.oem, "order", "seal", "po-1", "--request", d / request, *extra, "--out", d / out
    )


def test_a_station_share_above_what_the_order_has_left(work: Flow) -> None:
    d = work.dir
    invoke("--home", work.line2, "station", "request", "po-1", "--out", d / "line2-req.json").ok()
    before = rows(work.oem, "SELECT * FROM prod_packages")
    seal(work, "line2-req.json", "line2-pkg.json", 4).refused(
        "station quota 4 exceeds what order po-1 has left (3)"
    )
    assert not (d / "line2-pkg.json").exists()
    assert rows(work.oem, "SELECT * FROM prod_packages") == before
    entry = last_entry(work.oem)
    assert (entry.action, entry.outcome.value) == ("package.seal", "refused")


def test_a_package_for_another_station(work: Flow) -> None:
    d = work.dir
    invoke("--home", work.line2, "station", "request", "po-1", "--out", d / "line2-req.json").ok()
    seal(work, "line2-req.json", "line2-pkg.json", 3).ok()
    before = rows(work.line1, "SELECT * FROM st_packages")
    invoke("--home", work.line1, "station", "load", d / "line2-pkg.json").refused(
        "sealed to station line2, not line1"
    )
    assert rows(work.line1, "SELECT * FROM st_packages") == before
    assert last_entry(work.line1).outcome.value == "refused"
    loaded = invoke("--home", work.line2, "station", "load", d / "line2-pkg.json").ok()
    assert "quota       3 (3 remaining)" in loaded.out


def test_the_default_share_is_the_whole_quota(work: Flow) -> None:
    d = work.dir
    invoke("--home", work.line2, "station", "request", "po-1", "--out", d / "r.json").ok()
    seal(work, "r.json", "p.json").refused("station quota 8 exceeds what order po-1 has left (3)")
    assert not (d / "p.json").exists()


def test_an_existing_output_file_is_refused_before_acting(work: Flow) -> None:
    d = work.dir
    invoke("--home", work.line2, "station", "request", "po-1", "--out", d / "line2-req.json").ok()
    (d / "taken.json").write_bytes(b"keep me")
    before = rows(work.oem, "SELECT * FROM prod_packages")
    seal(work, "line2-req.json", "taken.json").refused("refusing to overwrite")
    assert (d / "taken.json").read_bytes() == b"keep me"
    assert rows(work.oem, "SELECT * FROM prod_packages") == before
    invoke("--home", work.line1, "station", "sync", "--out", d / "nowhere" / "e.json").refused("no directory")


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("station", "load", "{d}/missing.json"), id="load"),
        pytest.param(("station", "install", "{d}/missing.json"), id="install"),
        pytest.param(("reconcile", "{d}/missing.json"), id="reconcile"),
        pytest.param(
            (
                "firmware",
                "release",
                "create",
                "widget",
                "2.0.0",
                "--image",
                "{d}/missing.bin",
                "--security-counter",
                "1",
            ),
            id="image",
        ),
        pytest.param(
            (
                "product",
                "create",
                "gadget",
                "--description",
                "G",
                "--device-domain",
                "g.example",
                "--vendor-root",
                "{d}/missing.pem",
            ),
            id="vendor-root",
        ),
    ],
)
def test_a_missing_file(work: Flow, args: tuple[str, ...]) -> None:
    home = work.line1 if args[0] == "station" else work.oem
    invoke("--home", home, *(a.format(d=work.dir) for a in args)).refused("not found", "missing")


def test_bad_inputs_are_one_line_errors(work: Flow) -> None:
    d, oem = work.dir, ("--home", work.oem)
    order = (
        *oem,
        "order",
        "create",
        "po-2",
        "--product",
        "widget",
        "--release",
        "1.0.0",
        "--station",
        "line1",
    )
    invoke(*order, "--quota", 5, "--not-after", "next week").refused("--not-after", "RFC 3339")
    invoke(*order, "--quota", 5, "--not-after", "2031-05-04T08:00:00").refused("with an offset")
    invoke(*order, "--quota", 5).refused("--not-after or --days")
    invoke(*order, "--quota", 5, "--station", "line9", "--days", 3).refused(
        "no active enrolled station 'line9'"
    )
    # a release that is not published (one approval of two) cannot be ordered
    invoke(
        *oem,
        "firmware",
        "release",
        "create",
        "widget",
        "1.1.0",
        "--image",
        d / "firmware.bin",
        "--security-counter",
        1,
    ).ok()
    invoke(*oem, "firmware", "release", "approve", "widget-1.1.0", "--signer", "carol").ok()
    draft = (*order[:-4], "--release", "1.1.0", "--station", "line1")
    invoke(*draft, "--quota", 5, "--days", 3).refused("widget-1.1.0 is draft, not published")
    invoke(*order[:-4], "--release", "9.9.9", "--station", "line1", "--quota", 5, "--days", 3).refused(
        "no release 'widget-9.9.9'"
    )
    assert rows(work.oem, "SELECT order_id FROM prod_orders") == [("po-1",)]
    (d / "not-a-cert.pem").write_text("hello\n")
    invoke(
        *oem,
        "product",
        "create",
        "gadget",
        "--description",
        "G",
        "--device-domain",
        "g.example",
        "--vendor-root",
        d / "not-a-cert.pem",
    ).refused("is not a PEM certificate")
    (d / "chip.pem").write_bytes(
        x509.load_der_x509_certificate(work.chips[0].birth_chain[0]).public_bytes(serialization.Encoding.PEM)
    )
    invoke(
        *oem,
        "product",
        "create",
        "gadget",
        "--description",
        "G",
        "--device-domain",
        "g.example",
        "--vendor-root",
        d / "chip.pem",
    ).refused("is not a CA certificate")
    invoke("--home", work.oem, "station", "status").refused("not a station")
    invoke("--home", work.line1, "station", "enroll", "line1", "--out", d / "again.json").refused(
        "enrolled already"
    )
    assert not (d / "again.json").exists()
    invoke("vendor", "create", "Trusted Silicon", "--out", d / "vendor").refused("refusing to overwrite")


def test_a_refused_export_is_exit_2_and_imports_nothing(work: Flow) -> None:
    d = work.dir
    before = rows(work.oem, "SELECT * FROM fleet_devices")
    # the OEM reconciled this export already: a second import claims a log the OEM saw before
    invoke("--home", work.oem, "reconcile", d / "export.json").refused("the OEM last saw")
    (d / "junk.json").write_text('{"format":"something else"}')
    invoke("--home", work.oem, "reconcile", d / "junk.json").refused("station-export/v1")
    assert rows(work.oem, "SELECT * FROM fleet_devices") == before


def test_a_clone_at_a_second_station_is_an_alert_not_a_failure(work: Flow) -> None:
    d = work.dir
    line2 = ("--home", work.line2)
    invoke(*line2, "station", "request", "po-1", "--out", d / "r2.json").ok()
    seal(work, "r2.json", "p2.json", 3).ok()
    invoke(*line2, "station", "load", d / "p2.json").ok()
    clone = work.vendor.clone(work.chips[0])
    assert isinstance(provision(work.line2, "po-1", [clone])[0], Provisioned)  # line2 cannot know
    invoke(*line2, "station", "sync", "--out", d / "e2.json").ok()
    report = invoke("--home", work.oem, "reconcile", d / "e2.json").ok()
    assert table_row(report.out, "alerts") == ["alerts", "1"]
    assert table_row(report.out, "clone") == ["clone", "1"]
    assert "clone: " in report.out
    assert work.chips[0].uid in report.out


def test_an_order_above_the_limit_is_approved_through_an_approval(work: Flow) -> None:
    oem = ("--home", work.oem)
    created = invoke(
        *oem,
        "order",
        "create",
        "po-big",
        "--product",
        "widget",
        "--release",
        "1.0.0",
        "--station",
        "line1",
        "--quota",
        20_000,
        "--not-before",
        "2030-01-01T00:00:00+02:00",
        "--not-after",
        "2099-01-01T00:00:00Z",
    ).ok()
    assert created.out.startswith("order po-big: awaiting-approval\n")
    assert "window    2029-12-31T22:00:00Z .. 2099-01-01T00:00:00Z" in created.out
    asked = invoke(*oem, "order", "approve", "po-big").ok().out
    request_id = request_in(asked)
    assert "1 production-planner(s) besides the requester must approve" in asked
    assert f"fabtrust access approve {request_id} --digest " in asked
    # not approved yet: refused, the order waits, the request stays pending
    invoke(*oem, "order", "approve", "po-big", "--approval", request_id).refused("0 valid approval(s)")
    invoke(*oem, "order", "approve", "po-big", "--approval", "f" * 32).refused("no approval request")
    with open_oem(work.oem) as home:
        assert home.production.order("po-big").status == "awaiting-approval"
        approve_request(home, request_id)
    approved = invoke(*oem, "order", "approve", "po-big", "--approval", request_id).ok()
    assert approved.out.startswith(
        "order po-big: approved by production-planner-1 (created by keystore-holder:"
    )
    invoke(*oem, "order", "approve", "po-big", "--approval", request_id).refused("not awaiting approval")
    with open_oem(work.oem) as home:
        request = home.access.show_request(request_id)
        assert (request.status.value, request.executed_by) == ("executed", request.requested_by)
        assert request.requested_by.startswith("keystore-holder:")


def test_alerts_print_in_red(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from fabtrust.cli import reconcile
    from fabtrust.production.reconcile import Report

    terminal = Console(force_terminal=True, color_system="standard", width=120, record=True)
    monkeypatch.setattr(reconcile, "console", terminal)
    monkeypatch.setattr("fabtrust.cli.station.console", terminal)
    report = Report("line2", 9, records=1, alerts=[{"kind": "clone", "message": "chip [ab] seen at line1"}])
    reconcile.render(report)
    text = terminal.export_text(styles=True, clear=False)
    assert "\x1b[31m" in text  # red
    assert "clone: chip [ab] seen at line1" in terminal.export_text()  # not taken for markup


def test_station_provision_drives_simulated_devices_to_the_quota(work: Flow) -> None:
    """``station provision`` over the vendor ``vendor create`` wrote: genuine chips, provisioned,
    programmed and receipted up to the station's share; the one beyond it refused for the quota."""
    d = work.dir
    assert (d / "vendor" / "vendor-state.pem").stat().st_mode & 0o777 == 0o600
    invoke("--home", work.line2, "station", "request", "po-1", "--out", d / "line2-req.json").ok()
    seal(work, "line2-req.json", "line2-pkg.json", 3).ok()
    invoke("--home", work.line2, "station", "load", d / "line2-pkg.json").ok()
    out = invoke(
        "--home",
        work.line2,
        "station",
        "provision",
        "po-1",
        "--devices",
        4,
        "--vendor-dir",
        d / "vendor",
        "--batch",
        2,
    ).ok()
    assert table_row(out.out, "provisioned")[-1] == "3"
    assert "quota of order po-1 at this station is exhausted" in out.out
    assert "3 used of 3; 0 left" in out.out
    # each device booted the release and its receipt's measurement is recorded
    assert (
        rows(work.line2, "SELECT state, firmware_version, security_counter FROM st_devices")
        == [("programmed", "1.0.0+0", 1)] * 3
    )
    missing = invoke(
        "--home", work.line2, "station", "provision", "po-1", "--devices", 1, "--vendor-dir", d / "nowhere"
    )
    missing.refused("simulated vendor state")
