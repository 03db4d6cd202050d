"""The factory station's line API (``/station``), driven the way line equipment drives it.

Over the wire: a real ``fabtrust serve --station`` process with TLS, over a station home whose keys
are on a SoftHSM2 token (its PIN from the environment, as an operator's), driven over HTTPS by httpx
and, for the challenge, by curl. The OEM and the order are set up in process with the production
run's helpers (tests/production/test_run.py) at the current time, since the server runs on the
system clock. Outcomes asserted: a batch certified in one call with chains to the OEM root (openssl
and cryptography), the image and receipts, the order's counter equal to the devices provisioned;
per-device refusals (replayed answer, counterfeit, forged UID, clone) beside the devices accepted;
whole requests refused with a 4xx JSON error and a request id, spending nothing; concurrent batches
on one station; and no PIN, passphrase or private key in any answer or in the server log.

In process (TestClient, over the production run's fixture at its fixed time): the routes absent
without ``station=True``, a home that is not a station, the order's window closing, and
``serve --station`` refusing a home that cannot serve.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import itertools
import json
import sqlite3
import ssl
import subprocess
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from fabtrust.access import Role
from fabtrust.api.app import create_app
from fabtrust.api.routers.station import MAX_BODY_BYTES, MAX_DEVICES_PER_CALL
from fabtrust.crypto.encoding import b64, unb64
from fabtrust.device.agent import IDENTITY_SLOT, DeviceAgent, ReplayingAgent
from fabtrust.device.element import SecureElement
from fabtrust.device.protocol import Challenge, InstallReceipt, Provisioning
from fabtrust.device.vendor import SiliconVendor
from fabtrust.home import Home
from tests.api.test_api import assert_error
from tests.api.test_serve_tls import self_signed, serving, tool
from tests.cli.result import environment, run_in_process
from tests.fixtures.softhsm import SoftHsm
from tests.production.line import (
    CUSTODIANS,
    Clock,
    enroll,
    found_product,
    make_home,
    never,
    published_image,
    seal_for,
)
from tests.production.test_run import T0, Run, counts
from tests.production.test_run import run as run  # the production-run fixture (explicit re-export)
from tests.team import bearer, team_tokens

pytestmark = pytest.mark.softhsm

ORDER = "po-1"
QUOTA = 80
OEM_PASSPHRASE = "oem-admin-passphrase"  # make_home's passphrase for the OEM's actor
PEM = serialization.Encoding.PEM


@dataclass
class Line:
    """The served station and what the tests need to check its answers."""

    client: httpx.Client
    url: str
    tls_cert: Path
    root: x509.Certificate
    root_pem: Path
    home: Path
    vendor: SiliconVendor
    log: Path
    secrets: tuple[str, ...]
    image: bytes  # the release's published image, as the OEM holds it
    image_key: bytes  # the product's class key (PKCS#8): sealed in the package and to each device only
    auth_header: Path  # "Authorization: Bearer <factory operator's token>", for curl -H @file
    answers: list[bytes] = field(default_factory=list)  # every response body, for the secrets check


@pytest.fixture(scope="module")
def line(tmp_path_factory: pytest.TempPathFactory, softhsm: SoftHsm) -> Iterator[Line]:
    tool("curl")
    d = tmp_path_factory.mktemp("station-api")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    clock = Clock(start)
    vendor = SiliconVendor("Trusted Silicon", now=start - timedelta(days=30))
    label, pin = softhsm.new_token()
    oem = make_home(d / "oem", "oem-admin", clock)
    station = Home.init(
        d / "line1",
        keystore=f"pkcs11:token={label}",
        passphrase=never,
        pin=lambda: pin,
        actor="operator-1",
        clock=clock,
    )
    try:
        release = found_product(oem, vendor)
        enroll(oem, station, "line1")
        oem.production.create_order(
            ORDER,
            product="widget",
            release_id=release,
            stations=["line1"],
            quota=QUOTA,
            not_before=start,
            not_after=start + timedelta(days=7),
        )
        station.station.load(seal_for(oem, station, ORDER, QUOTA))
        root = oem.pki.ca("root").certificate
        published = published_image(oem, release)
        image_key = oem.releases.class_key_private("widget", purpose="station API test: never in an answer")
        operator = team_tokens(station)[Role.FACTORY_OPERATOR]
    finally:
        oem.close()
        station.close()
    (d / "root.pem").write_bytes(root.public_bytes(PEM))
    cert, key = self_signed(d)
    log = d / "server.log"
    secrets = (pin, OEM_PASSPHRASE, operator, *(p for _, p in CUSTODIANS))
    with serving(d / "line1", cert, key, log, {"FABTRUST_PKCS11_PIN": pin}, "--station") as port:
        url = f"https://127.0.0.1:{port}"
        collected: list[bytes] = []
        header_file = d / "auth.header"
        header_file.write_text(f"Authorization: Bearer {operator}\n")

        def keep(response: httpx.Response) -> None:
            collected.append(response.read())

        with httpx.Client(
            base_url=url,
            verify=ssl.create_default_context(cafile=str(cert)),
            timeout=60,
            headers=bearer(operator),
            event_hooks={"response": [keep]},
        ) as client:
            yield Line(
                client,
                url,
                cert,
                root,
                d / "root.pem",
                d / "line1",
                vendor,
                log,
                secrets,
                published,
                image_key,
                header_file,
                collected,
            )
    text = log.read_text()
    assert not [s for s in secrets if s in text]


def operator_client(home: Home) -> TestClient:
    """The station API of ``home`` in process, called with a factory operator's token."""
    token = team_tokens(home)[Role.FACTORY_OPERATOR]
    return TestClient(create_app(home, station=True), raise_server_exceptions=False, headers=bearer(token))


# -- what line equipment does ----------------------------------------------------------------------


def challenge(line: Line) -> bytes:
    r = line.client.post("/station/challenge", json={"order_id": ORDER})
    assert r.status_code == 200, r.text
    return unb64(r.json()["challenge"], "challenge")


def answer(line: Line, chip: SecureElement) -> dict[str, str]:
    """A fresh challenge, answered by the chip's agent: one entry of a provisioning request."""
    c = challenge(line)
    return {"challenge": b64(c), "response": b64(DeviceAgent(chip).answer(c))}


def provision(line: Line, answers: list[dict[str, str]]) -> list[dict[str, Any]]:
    r = line.client.post("/station/provision", json={"order_id": ORDER, "answers": answers})
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    assert len(results) == len(answers)
    return results


def image(line: Line) -> bytes:
    r = line.client.get(f"/station/orders/{ORDER}/image")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    digest = base64.b64encode(hashlib.sha256(r.content).digest()).decode()
    assert r.headers["repr-digest"] == f"sha-256=:{digest}:"
    return r.content


def receipts(line: Line, documents: list[bytes]) -> list[dict[str, Any]]:
    r = line.client.post("/station/receipts", json={"receipts": [b64(d) for d in documents]})
    assert r.status_code == 200, r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results


def counters(line: Line) -> tuple[int, int, int]:
    """The order's (used, issued, programmed) as the station reports them."""
    r = line.client.get(f"/station/orders/{ORDER}")
    assert r.status_code == 200, r.text
    s = r.json()
    assert s["remaining"] == s["quota"] - s["used"]
    return s["used"], s["issued"], s["programmed"]


def stored(line: Line) -> tuple[int, int, int]:
    """From the station's database: (order counter, device rows, highest sequence number)."""
    with contextlib.closing(sqlite3.connect(line.home / "fabtrust.db")) as db:
        (used,) = db.execute("SELECT used FROM st_packages WHERE order_id = ?", (ORDER,)).fetchone()
        devices, highest = db.execute(
            "SELECT count(*), coalesce(max(seq), 0) FROM st_devices WHERE order_id = ?", (ORDER,)
        ).fetchone()
    return int(used), int(devices), int(highest)


def verify_with_openssl(line: Line, chain: list[x509.Certificate], where: Path) -> None:
    leaf, untrusted = where / "leaf.pem", where / "untrusted.pem"
    leaf.write_bytes(chain[0].public_bytes(PEM))
    untrusted.write_bytes(b"".join(c.public_bytes(PEM) for c in chain[1:-1]))
    r = subprocess.run(
        [tool("openssl"), "verify", "-CAfile", str(line.root_pem), "-untrusted", str(untrusted), str(leaf)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == f"{leaf}: OK"


# -- the line's work -------------------------------------------------------------------------------


def test_a_batch_end_to_end_over_https(line: Line, tmp_path: Path) -> None:
    used, issued, programmed = counters(line)
    chips = [line.vendor.make_chip() for _ in range(4)]
    results = provision(line, [answer(line, chip) for chip in chips])
    assert [r["status"] for r in results] == ["provisioned"] * 4
    assert [r["chip_uid"] for r in results] == [c.uid for c in chips]
    assert sorted(r["seq"] for r in results) == list(range(used + 1, used + 5))
    assert counters(line) == (used + 4, issued + 4, programmed)
    firmware = image(line)
    assert firmware == line.image
    documents = []
    for result, chip in zip(results, chips, strict=True):
        doc = Provisioning.parse(unb64(result["provisioning"], "provisioning"))
        assert doc.device_serial == result["device_serial"] == chip.uid
        assert doc.image_digest == hashlib.sha256(firmware).digest()
        chain = [x509.load_der_x509_certificate(c) for c in doc.certificate_chain]
        assert chain[-1] == line.root
        for child, parent in itertools.pairwise(chain):
            child.verify_directly_issued_by(parent)
        leaf = chain[0]
        assert leaf.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)[0].value == chip.uid
        assert leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == (
            f"{ORDER}/{result['seq']}"
        )
        verify_with_openssl(line, chain, tmp_path)
        documents.append(DeviceAgent(chip).install(unb64(result["provisioning"], "p"), firmware))
    recorded = receipts(line, documents)
    assert recorded == [{"status": "recorded", "chip_uid": c.uid} for c in chips]
    assert counters(line) == (used + 4, issued + 4, programmed + 4)
    counter, devices, highest = stored(line)
    assert counter == devices == highest == used + 4
    status = line.client.get("/station/status").json()
    assert status["station_id"] == "line1"
    assert [o["order"] for o in status["orders"]] == [ORDER]
    assert (status["orders"][0]["used"], status["orders"][0]["programmed"]) == (used + 4, programmed + 4)


def test_curl_takes_a_challenge_that_a_device_answers(line: Line) -> None:
    r = subprocess.run(
        [tool("curl"), "--silent", "--show-error", "--fail", "--max-time", "10",
         "--cacert", str(line.tls_cert), "--header", "Content-Type: application/json",
             "--header", f"@{line.auth_header}",
         "--data", json.dumps({"order_id": ORDER}), f"{line.url}/station/challenge"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    line.answers.append(r.stdout.encode())
    raw = unb64(json.loads(r.stdout)["challenge"], "challenge")
    parsed = Challenge.parse(raw)
    assert (parsed.station, parsed.order) == ("line1", ORDER)
    chip = line.vendor.make_chip()
    (result,) = provision(line, [{"challenge": b64(raw), "response": b64(DeviceAgent(chip).answer(raw))}])
    assert (result["status"], result["chip_uid"]) == ("provisioned", chip.uid)


def test_concurrent_batches_share_one_station(line: Line) -> None:
    """Four batches at once through the server's thread pool, on one HSM-backed station."""
    used, issued, _ = counters(line)

    def batch(_: int) -> list[dict[str, Any]]:
        return provision(line, [answer(line, line.vendor.make_chip()) for _ in range(3)])

    with ThreadPoolExecutor(4) as pool:
        results = [r for rs in pool.map(batch, range(4)) for r in rs]
    assert {r["status"] for r in results} == {"provisioned"}
    assert sorted(r["seq"] for r in results) == list(range(used + 1, used + 13))
    assert counters(line)[:2] == (used + 12, issued + 12)
    counter, devices, highest = stored(line)
    assert counter == devices == highest == used + 12


# -- refused devices beside accepted ones ----------------------------------------------------------


def test_a_replayed_answer_is_refused_and_the_rest_provisioned(line: Line) -> None:
    first = answer(line, line.vendor.make_chip())
    assert provision(line, [first])[0]["status"] == "provisioned"
    used, issued, programmed = counters(line)
    genuine = line.vendor.make_chip()
    # the same answer again, and a fresh challenge answered with a recorded response
    fresh = challenge(line)
    recorded = unb64(first["response"], "response")
    replayed = {"challenge": b64(fresh), "response": b64(ReplayingAgent(recorded).answer(fresh))}
    results = provision(line, [first, answer(line, genuine), replayed])
    assert [r["status"] for r in results] == ["refused", "provisioned", "refused"]
    assert results[0]["error"] == "verification_failed"
    assert "used already" in results[0]["message"]
    assert results[2]["error"] == "verification_failed"
    assert results[1]["chip_uid"] == genuine.uid
    assert counters(line) == (used + 1, issued + 1, programmed)


def test_counterfeit_forged_and_cloned_chips_are_refused(line: Line) -> None:
    original = line.vendor.make_chip()
    clone = line.vendor.clone(original)
    assert provision(line, [answer(line, original)])[0]["status"] == "provisioned"
    used, issued, programmed = counters(line)
    counterfeit = SiliconVendor("Other Fab", now=datetime.now(UTC) - timedelta(days=1)).make_chip()
    forged = line.vendor.forge_uid(line.vendor.make_chip())
    genuine = line.vendor.make_chip()
    results = provision(line, [answer(line, c) for c in (counterfeit, genuine, forged, clone)])
    assert [(r["status"], r.get("error")) for r in results] == [
        ("refused", "verification_failed"),
        ("provisioned", None),
        ("refused", "verification_failed"),
        ("refused", "conflict"),
    ]
    assert "accepted silicon vendor" in results[0]["message"]
    assert "provisioned already" in results[3]["message"]
    assert counters(line) == (used + 1, issued + 1, programmed)


# -- whole requests refused, nothing spent ---------------------------------------------------------


def _drop(key: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda body: {k: v for k, v in body.items() if k != key}


def _answer_field(key: str, value: object) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda body: {**body, "answers": [{**body["answers"][0], key: value}]}


BAD_PROVISIONING: list[Any] = [
    pytest.param(
        _answer_field("challenge", "not base64!"), 400, "invalid_input",
        "answers[0].challenge is not valid base64", id="base64/challenge",
    ),
    pytest.param(
        lambda b: _answer_field("response", b["answers"][0]["response"].rstrip("=") + " ")(b),
        400, "invalid_input", "answers[0].response is not", id="base64/response-whitespace",
    ),
    pytest.param(
        _answer_field("response", 12), 400, "invalid_input", "answers.0.response", id="type/response-number",
    ),
    pytest.param(
        lambda b: {**b, "answers": [{"challenge": b["answers"][0]["challenge"]}]}, 400, "invalid_input",
        "invalid request: answers.0.response", id="missing/response",
    ),
    pytest.param(_drop("order_id"), 400, "invalid_input", "invalid request: order_id", id="missing/order"),
    pytest.param(_drop("answers"), 400, "invalid_input", "invalid request: answers", id="missing/answers"),
    pytest.param(lambda b: {**b, "quota": 1}, 400, "invalid_input", "quota", id="unknown-field"),
    pytest.param(
        lambda b: {**b, "answers": []}, 400, "invalid_input", "send 1 to 100 answers", id="no-answers",
    ),
    pytest.param(
        lambda b: {**b, "answers": b["answers"] * (MAX_DEVICES_PER_CALL + 1)}, 400, "invalid_input",
        f"send 1 to {MAX_DEVICES_PER_CALL} answers per request (got {MAX_DEVICES_PER_CALL + 1})",
        id="too-many-answers",
    ),
    pytest.param(
        lambda b: {**b, "order_id": "PO 1"}, 400, "invalid_input", "order id 'PO 1' must be",
        id="order/malformed",
    ),
    pytest.param(
        lambda b: {**b, "order_id": "po-9"}, 404, "not_found", "no package loaded for order po-9",
        id="order/unknown",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("change", "status", "code", "needle"), BAD_PROVISIONING)
def test_a_bad_provisioning_request_is_refused_whole(
    line: Line, change: Callable[[dict[str, Any]], dict[str, Any]], status: int, code: str, needle: str
) -> None:
    good = answer(line, line.vendor.make_chip())
    before, db_before = counters(line), stored(line)
    r = line.client.post("/station/provision", json=change({"order_id": ORDER, "answers": [good]}))
    assert_error(r, status, code, needle)
    assert (counters(line), stored(line)) == (before, db_before)
    # nothing was spent: the challenge in the refused request is still good
    assert provision(line, [good])[0]["status"] == "provisioned"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        pytest.param({}, "invalid request: order_id", id="missing"),
        pytest.param({"order_id": ORDER, "n": 2}, "invalid request: n", id="unknown-field"),
        pytest.param({"order_id": ["po-1"]}, "invalid request: order_id", id="wrong-type"),
        pytest.param({"order_id": "p" * 42}, "invalid request: order_id", id="too-long"),
    ],
)
def test_a_bad_challenge_request(line: Line, body: dict[str, Any], needle: str) -> None:
    before = counters(line)
    assert_error(line.client.post("/station/challenge", json=body), 400, "invalid_input", needle)
    assert counters(line) == before


def test_unknown_orders_are_404(line: Line) -> None:
    assert_error(line.client.post("/station/challenge", json={"order_id": "po-9"}), 404, "not_found", "po-9")
    assert_error(
        line.client.get("/station/orders/po-9"), 404, "not_found", "no package loaded for order po-9"
    )
    assert_error(line.client.get("/station/orders/po-9/image"), 404, "not_found", "po-9")
    assert_error(line.client.get("/station/orders/PO_9"), 400, "invalid_input", "order id 'PO_9'")


def test_an_oversized_body_is_refused_while_it_is_read(line: Line) -> None:
    before = counters(line)
    padding = "A" * MAX_BODY_BYTES
    declared = line.client.post(
        "/station/challenge", content=json.dumps({"order_id": ORDER, "pad": padding}).encode(),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert_error(declared, 413, "too_large", f"larger than {MAX_BODY_BYTES} bytes")

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked, counted as it arrives
        yield b'{"order_id": "po-1", "pad": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 1):
            yield b"A" * 65536
        yield b'"}'

    streamed = line.client.post(
        "/station/provision", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(streamed, 413, "too_large", f"larger than {MAX_BODY_BYTES} bytes")
    assert counters(line) == before


# -- receipts --------------------------------------------------------------------------------------


def test_a_receipt_is_recorded_once(line: Line) -> None:
    chips = [line.vendor.make_chip() for _ in range(2)]
    results = provision(line, [answer(line, c) for c in chips])
    firmware = image(line)
    documents = [
        DeviceAgent(c).install(unb64(r["provisioning"], "p"), firmware)
        for c, r in zip(chips, results, strict=True)
    ]
    used, issued, programmed = counters(line)
    first = receipts(line, [documents[0], documents[0]])
    assert first[0] == {"status": "recorded", "chip_uid": chips[0].uid}
    assert (first[1]["status"], first[1]["error"]) == ("refused", "conflict")
    assert "receipt already" in first[1]["message"]
    again = receipts(line, [documents[0], b"not a receipt", documents[1]])
    assert [r["status"] for r in again] == ["refused", "refused", "recorded"]
    assert [r.get("error") for r in again[:2]] == ["conflict", "invalid_input"]
    assert counters(line) == (used, issued, programmed + 2)


def test_a_receipt_measuring_other_firmware_is_refused(line: Line) -> None:
    """A receipt under the device's own key that reports another boot than the order's release."""
    chip = line.vendor.make_chip()
    (result,) = provision(line, [answer(line, chip)])
    honest = InstallReceipt.parse(DeviceAgent(chip).install(unb64(result["provisioning"], "p"), image(line)))
    lying = dataclasses.replace(honest, security_counter=honest.security_counter + 1)
    lying = dataclasses.replace(lying, signature=chip.sign(IDENTITY_SLOT, lying.signed_payload()))
    used, issued, programmed = counters(line)
    (refused,) = receipts(line, [lying.to_json()])
    assert (refused["status"], refused["error"]) == ("refused", "verification_failed")
    assert "security counter" in refused["message"]
    assert counters(line) == (used, issued, programmed)
    assert receipts(line, [honest.to_json()]) == [{"status": "recorded", "chip_uid": chip.uid}]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        pytest.param({"receipts": ["%%%"]}, "receipts[0] is not valid base64", id="base64"),
        pytest.param({"receipts": []}, "send 1 to 100 receipts", id="none"),
        pytest.param(
            {"receipts": ["AA=="] * 101}, "send 1 to 100 receipts per request (got 101)", id="too-many"
        ),
        pytest.param({"receipt": ["AA=="]}, "invalid request: receipt", id="misspelt"),
        pytest.param({"receipts": "AA=="}, "invalid request: receipts", id="not-a-list"),
    ],
)
def test_a_bad_receipts_request(line: Line, body: dict[str, Any], needle: str) -> None:
    before = counters(line), stored(line)
    assert_error(line.client.post("/station/receipts", json=body), 400, "invalid_input", needle)
    assert (counters(line), stored(line)) == before


# -- last: what the server said and logged ---------------------------------------------------------


def test_no_secret_in_any_answer_or_the_server_log(line: Line) -> None:
    challenge(line)
    log = line.log.read_text()
    assert "POST /station/challenge HTTP/1.1" in log  # the log is the server's, with these requests
    assert "station line API at https://127.0.0.1:" in log
    key_b64 = base64.b64encode(line.image_key)
    for text in (log.encode(), *line.answers):  # bytes: the order's image is binary
        assert b"PRIVATE KEY" not in text
        assert not [s for s in line.secrets if s.encode() in text]
        assert line.image_key not in text
        assert key_b64 not in text


# -- in process: what is served, and when ----------------------------------------------------------

STATION_ROUTES = [
    ("POST", "/station/challenge", {"order_id": ORDER}),
    (
        "POST",
        "/station/provision",
        {"order_id": ORDER, "answers": [{"challenge": "AA==", "response": "AA=="}]},
    ),
    ("POST", "/station/receipts", {"receipts": ["AA=="]}),
    ("GET", "/station/status", None),
    ("GET", f"/station/orders/{ORDER}", None),
    ("GET", f"/station/orders/{ORDER}/image", None),
]


def test_the_station_routes_exist_only_when_asked(run: Run) -> None:
    run.line1.station.load(seal_for(run.oem, run.line1, ORDER, 2))
    with TestClient(create_app(run.line1), raise_server_exceptions=False) as client:
        for method, path, body in STATION_ROUTES:
            assert_error(client.request(method, path, json=body), 404, "not_found", "Not Found")
        assert not [p for p in client.get("/openapi.json").json()["paths"] if p.startswith("/station")]
    with operator_client(run.line1) as client:
        assert client.get(f"/station/orders/{ORDER}").json()["quota"] == 2
        spec = client.get("/openapi.json").json()
    provision = spec["paths"]["/station/provision"]["post"]
    assert provision["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ProvisionRequest"
    }
    assert {"200", "400", "404", "413", "422"} <= set(provision["responses"])
    assert set(spec["components"]["schemas"]["ProvisionedDevice"]["properties"]) == {
        "status", "chip_uid", "device_serial", "seq", "provisioning",
    }  # fmt: skip


def test_a_home_that_is_not_a_station_answers_404(run: Run) -> None:
    with operator_client(run.oem) as client:
        for method, path, body in STATION_ROUTES:
            assert_error(client.request(method, path, json=body), 404, "not_found", "not a station")
        assert client.get("/healthz").status_code == 200


def test_the_window_closing_refuses_whole_requests(run: Run) -> None:
    run.line1.station.load(seal_for(run.oem, run.line1, ORDER, 4))
    chip = run.chip()
    with operator_client(run.line1) as client:
        r = client.post("/station/challenge", json={"order_id": ORDER})
        raw = unb64(r.json()["challenge"], "challenge")
        good = {"challenge": b64(raw), "response": b64(DeviceAgent(chip).answer(raw))}
        run.clock.now = run.window_end + timedelta(seconds=1)
        assert_error(
            client.post("/station/challenge", json={"order_id": ORDER}), 422, "policy_violation", "has ended"
        )
        assert_error(
            client.post("/station/provision", json={"order_id": ORDER, "answers": [good]}),
            422,
            "policy_violation",
            "has ended",
        )
        assert counts(run.line1) == (0, 0, 0)
        run.clock.now = T0 + timedelta(minutes=1)  # back inside the window: the challenge is unspent
        results = client.post("/station/provision", json={"order_id": ORDER, "answers": [good]}).json()
    assert results["results"][0]["status"] == "provisioned"
    assert counts(run.line1) == (1, 1, 1)


def test_serve_station_refuses_a_home_that_cannot_serve(run: Run, tmp_path: Path) -> None:
    line3 = make_home(tmp_path / "line3", "operator-3", run.clock)
    try:
        line3.station.enroll("line3", organization="Acme")  # enrolled, not yet certified
    finally:
        line3.close()
    cases = [
        (run.oem.path, OEM_PASSPHRASE, "--station: this data home is not a station"),
        (tmp_path / "line3", "operator-3-passphrase", "--station: station line3 has no certificate"),
    ]
    for home, passphrase, needle in cases:
        with environment({"FABTRUST_KEYSTORE_PASSPHRASE": passphrase}):
            result = run_in_process(["--home", home, "serve", "--station", "--port", 1], [passphrase])
        result.refused(needle)
