"""The HTTP API in-process (FastAPI TestClient): every answer checked the way an outside client would,
every bad request answered 400/404 with a safe message and its request id, and nothing changed."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from fabtrust.access import Role
from fabtrust.api.app import create_app
from fabtrust.crypto.canonical import canonical_json
from fabtrust.home import Home
from fabtrust.tlog import merkle, proofs
from fabtrust.tlog.checkpoint import open_checkpoint
from tests.team import bearer, team_tokens

BATCH = 300  # crosses an entry bundle / tile boundary (256)


def never() -> str:
    raise AssertionError("the API asked for a secret")


@dataclass(frozen=True)
class Served:
    home: Home
    client: TestClient
    size: int
    signed_sizes: list[int]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    path = tmp_path_factory.mktemp("api") / "home"
    with Home.init(path, passphrase=lambda: "pw", pin=never, actor="tester") as home:
        audit = home.audit
        audit.append(
            [
                audit.entry("fabtrust.audit.test/v1", "tester", "test.fill", f"item-{i}", details={"n": i})
                for i in range(BATCH)
            ]
        )
        audit.record("fabtrust.audit.test/v1", "tester", "test.one", "last")
        auditor = team_tokens(home)[Role.AUDITOR]
    # the API is read-only: it is served from a home that cannot open its key store
    with Home.open(path, passphrase=never, pin=never) as home:
        app = create_app(home)
        with TestClient(app, raise_server_exceptions=False, headers=bearer(auditor)) as client:
            yield Served(home, client, home.log.size(), home.log.checkpoint_sizes())


def state(s: Served) -> tuple[int, bytes]:
    return s.home.log.size(), s.home.log.latest_checkpoint().note


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def assert_error(response: Response, status: int, code: str, *needles: str) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "message", "request_id"}
    assert body["error"] == code
    assert len(body["request_id"]) == 16
    assert response.headers["x-request-id"] == body["request_id"]
    for needle in needles:
        assert needle in body["message"]
    assert "Traceback" not in response.text
    return body  # type: ignore[no-any-return]


# -- the routes ------------------------------------------------------------------------------------


def test_healthz(served: Served) -> None:
    r = served.client.get("/healthz")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "database": "sqlite", "log_size": served.size}
    assert len(r.headers["x-request-id"]) == 16


def test_metrics_are_prometheus_text(served: Served) -> None:
    served.client.get("/healthz")
    r = served.client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    lines = r.text.splitlines()
    assert "# TYPE fabtrust_log_size gauge" in lines
    assert f"fabtrust_log_size {float(served.size)}" in lines
    assert any(
        line.startswith('fabtrust_http_requests_total{route="/healthz",status="200"} ') for line in lines
    )


def test_checkpoint_is_a_signed_note_for_the_whole_log(served: Served) -> None:
    r = served.client.get("/log/checkpoint")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    cp = open_checkpoint(r.content, served.home.log_verifier(), served.home.config.origin)
    assert cp.size == served.size
    assert r.content == served.home.log.latest_checkpoint().note


@pytest.mark.parametrize(
    ("query", "first", "count"),
    [
        pytest.param("", 0, 100, id="default-page"),
        pytest.param("?start=250&end=262", 250, 12, id="across-a-bundle-boundary"),
        pytest.param("?start=298", 298, None, id="to-the-end"),
        pytest.param("?start=0&end=1", 0, 1, id="first"),
    ],
)
def test_entries_re_canonicalise_to_the_logged_leaves(
    served: Served, query: str, first: int, count: int | None
) -> None:
    count = served.size - first if count is None else count
    r = served.client.get("/log/entries" + query)
    assert r.status_code == 200
    body = r.json()
    assert (body["origin"], body["size"]) == (served.home.config.origin, served.size)
    assert [e["index"] for e in body["entries"]] == list(range(first, first + count))
    logged = served.home.log.entries(first, first + count)
    note = served.client.get("/log/checkpoint").content
    for item, raw in zip(body["entries"], logged, strict=True):
        leaf = canonical_json(item["entry"])
        assert leaf == raw
        proof = served.client.get(f"/log/proof/inclusion?index={item['index']}").json()
        assert proof["leaf_hash"] == b64(merkle.leaf_hash(leaf))
        if item["index"] in (first, first + count - 1):  # a full offline check at both ends of the page
            origin, parsed = proofs.parse_doc(json.dumps(proof).encode())
            proofs.verify_with_checkpoint(origin, parsed, note, served.home.log_verifier(), entry=leaf)


@pytest.mark.parametrize("index", [0, 1, 2, 255, 256, 257, 301])
def test_inclusion_proofs_verify_against_signed_checkpoints(served: Served, index: int) -> None:
    for size in served.signed_sizes:
        if index >= size:
            continue
        r = served.client.get(f"/log/proof/inclusion?index={index}&size={size}")
        assert r.status_code == 200
        origin, proof = proofs.parse_doc(r.content)
        entry = served.home.log.entries(index, index + 1)[0]
        note = served.home.log.checkpoint_at(size).note
        proofs.verify_with_checkpoint(origin, proof, note, served.home.log_verifier(), entry=entry)


def test_consistency_proofs_verify_between_signed_checkpoints(served: Served) -> None:
    verifier = served.home.log_verifier()
    latest = served.home.log.latest_checkpoint().note
    # the fill's checkpoints, then those of the team's bootstrap (tests.team)
    assert served.signed_sizes[:4] == [0, 2, 2 + BATCH, 3 + BATCH]
    assert served.signed_sizes[-1] == served.size
    for old in served.signed_sizes:
        r = served.client.get(f"/log/proof/consistency?old={old}")
        assert r.status_code == 200
        origin, proof = proofs.parse_doc(r.content)
        old_note = served.home.log.checkpoint_at(old).note
        proofs.verify_with_checkpoint(origin, proof, latest, verifier, old_checkpoint_note=old_note)
    r = served.client.get(f"/log/proof/consistency?old=2&new={2 + BATCH}")
    origin, proof = proofs.parse_doc(r.content)
    proofs.verify_with_checkpoint(
        origin,
        proof,
        served.home.log.checkpoint_at(2 + BATCH).note,
        verifier,
        old_checkpoint_note=served.home.log.checkpoint_at(2).note,
    )


# -- bad requests ----------------------------------------------------------------------------------


BAD_REQUESTS = [
    pytest.param(
        "/log/proof/inclusion?index={N}", "outside a tree of size", id="inclusion/index-out-of-range"
    ),
    pytest.param("/log/proof/inclusion?index=0&size={N1}", "outside the log", id="inclusion/size-beyond-log"),
    pytest.param(
        "/log/proof/inclusion?index=5&size=5", "outside a tree of size 5", id="inclusion/index-eq-size"
    ),
    pytest.param("/log/proof/inclusion?index=-1", "index", id="inclusion/negative-index"),
    pytest.param("/log/proof/inclusion?index=0&size=-2", "size", id="inclusion/negative-size"),
    pytest.param("/log/proof/inclusion?index=0&size=0", "size", id="inclusion/size-zero"),
    pytest.param("/log/proof/inclusion?index=one", "index", id="inclusion/non-integer"),
    pytest.param("/log/proof/inclusion?index=1.5", "index", id="inclusion/fraction"),
    pytest.param(f"/log/proof/inclusion?index={2**63}", "index", id="inclusion/huge"),
    pytest.param("/log/proof/inclusion", "index", id="inclusion/missing-index"),
    pytest.param(
        "/log/proof/consistency?old={N1}", "between 0 and the new size", id="consistency/old-beyond-log"
    ),
    pytest.param(
        "/log/proof/consistency?old=10&new=5", "between 0 and the new size 5", id="consistency/old-gt-new"
    ),
    pytest.param("/log/proof/consistency?old=1&new={N1}", "outside the log", id="consistency/new-beyond-log"),
    pytest.param("/log/proof/consistency?old=-1", "old", id="consistency/negative"),
    pytest.param("/log/proof/consistency?old=x", "old", id="consistency/non-integer"),
    pytest.param("/log/entries?start={N}", "outside the log", id="entries/start-beyond-log"),
    pytest.param("/log/entries?start=0&end={N1}", "outside the log", id="entries/end-beyond-log"),
    pytest.param("/log/entries?start=5&end=3", "outside the log", id="entries/end-before-start"),
    pytest.param("/log/entries?start=0&end=1001", "at most 1000 entries", id="entries/too-many"),
    pytest.param("/log/entries?start=-1", "start", id="entries/negative"),
    pytest.param("/log/entries?end=0", "end", id="entries/end-zero"),
    pytest.param("/log/entries?start=a&end=b", "end, start", id="entries/non-integer"),
]


@pytest.mark.parametrize(("url", "message"), BAD_REQUESTS)
def test_bad_requests_are_400_with_a_request_id_and_change_nothing(
    served: Served, url: str, message: str
) -> None:
    before = state(served)
    url = url.replace("{N}", str(served.size)).replace("{N1}", str(served.size + 1))
    assert_error(served.client.get(url), 400, "invalid_input", message)
    assert state(served) == before


def test_unknown_route_is_404_in_the_error_shape(served: Served) -> None:
    assert_error(served.client.get("/log/nothing-here"), 404, "not_found")


def test_wrong_method_is_405_in_the_error_shape(served: Served) -> None:
    r = served.client.post("/log/checkpoint", content=b"x")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers["allow"] == "GET"


def test_request_ids_are_fresh_and_not_taken_from_the_client(served: Served) -> None:
    ids = {
        served.client.get("/healthz", headers={"X-Request-ID": "forged-id"}).headers["x-request-id"]
        for _ in range(5)
    }
    assert len(ids) == 5
    assert "forged-id" not in ids


def test_internal_errors_do_not_leak_their_detail(
    served: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(request: object) -> Home:
        raise RuntimeError("secret-detail")

    monkeypatch.setattr("fabtrust.api.routers.log.home_of", broken)
    with caplog.at_level(logging.ERROR, logger="fabtrust.api"):
        r = served.client.get("/log/checkpoint")
    body = assert_error(r, 500, "internal")
    assert body["message"] == "internal error"
    assert "secret-detail" not in r.text
    assert "RuntimeError" not in r.text
    # the detail goes to the server log, under the same request id
    record = next(rec for rec in caplog.records if body["request_id"] in rec.getMessage())
    assert record.exc_info is not None
    assert "secret-detail" in str(record.exc_info[1])
    metrics = served.client.get("/metrics").text
    assert 'fabtrust_http_requests_total{route="/log/checkpoint",status="500"} 1.0' in metrics


def test_openapi_lists_every_route(served: Served) -> None:
    r = served.client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    core = {
        "/healthz",
        "/metrics",
        "/log/checkpoint",
        "/log/entries",
        "/log/proof/inclusion",
        "/log/proof/consistency",
    }
    assert core <= set(paths)
    assert all(set(paths[p]) == {"get"} for p in core)
    assert "400" in paths["/log/proof/inclusion"]["get"]["responses"]
    # every documented operation is served: with placeholder path parameters it may be refused,
    # but never answered by the router's "Not Found" or "method not allowed"
    for path, ops in paths.items():
        concrete = re.sub(r"\{[^}]+\}", "x", path)
        for method in ops:
            answer = served.client.request(method.upper(), concrete)
            routed = answer.status_code != 405 and not (
                answer.status_code == 404 and answer.json().get("message") == "Not Found"
            )
            assert routed, (method, path, answer.status_code)
