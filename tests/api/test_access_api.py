"""Access control over HTTP: the team flow end to end (a principal created, a grant asked for,
approved with the digest and applied, a token minted and used), and every refusal answered with a
safe JSON error and a request id while the access tables stay as they were."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from fabtrust.access import Caller, Role
from fabtrust.api.app import create_app
from fabtrust.home import Home
from tests.production.line import Clock, never
from tests.team import MONTH, NAMES, access_rows, bearer, team_tokens, token_secret


@dataclass
class Served:
    home: Home
    clock: Clock
    client: TestClient
    tokens: dict[Role, str]

    def call(self, method: str, path: str, role: Role | None, body: Any = None) -> Response:
        headers = bearer(self.tokens[role]) if role is not None else {}
        return self.client.request(method, path, headers=headers, json=body)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    path = tmp_path_factory.mktemp("access-api") / "home"
    with Home.init(path, passphrase=lambda: "pw", pin=never, actor="tester", clock=clock) as home:
        tokens = team_tokens(home)
        with TestClient(create_app(home), raise_server_exceptions=False) as client:
            yield Served(home, clock, client, tokens)


def tables(home: Home) -> dict[str, list[dict[str, Any]]]:
    return access_rows(home.store)


def refused(response: Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message", "request_id"}
    assert body["error"] == code
    assert len(body["request_id"]) == 16
    assert response.headers["x-request-id"] == body["request_id"]
    return body  # type: ignore[no-any-return]


def iso(t: datetime) -> str:
    return t.isoformat()


def ask_grant(s: Served, person: str, role: Role, asker: Role = Role.ADMINISTRATOR) -> dict[str, Any]:
    now = s.clock()
    r = s.call(
        "POST",
        "/access/grants/requests",
        asker,
        {
            "principal_id": person,
            "role": role.value,
            "not_before": iso(now - timedelta(minutes=1)),
            "not_after": iso(now + timedelta(days=30)),
        },
    )
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    assert doc["status"] == "pending"
    assert doc["action"] == "role.grant"
    return doc


def new_person(s: Served, person: str) -> None:
    r = s.call(
        "POST", "/access/principals", Role.ADMINISTRATOR, {"principal_id": person, "display_name": person}
    )
    assert r.status_code == 201, r.text


def test_team_flow(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    s = served
    caplog.set_level(logging.DEBUG)
    new_person(s, "nina")
    assert s.call("GET", "/access/principals/nina", Role.AUDITOR).json()["kind"] == "person"
    asked = ask_grant(s, "nina", Role.AUDITOR)
    rid, digest = asked["request_id"], asked["digest"]
    assert s.call("GET", f"/access/approvals/{rid}", Role.RELEASE_SIGNER).json()["digest"] == digest
    approved = s.call("POST", f"/access/approvals/{rid}/approve", Role.SECURITY_OFFICER, {"digest": digest})
    assert approved.status_code == 200, approved.text
    assert [a["principal_id"] for a in approved.json()["approvals"]] == [NAMES[Role.SECURITY_OFFICER]]
    grant = s.call("POST", f"/access/grants/requests/{rid}/apply", Role.ADMINISTRATOR)
    assert grant.status_code == 200, grant.text
    assert grant.json()["role"] == "auditor"
    assert grant.json()["approval_id"] == rid
    assert s.call("GET", f"/access/approvals/{rid}", Role.ADMINISTRATOR).json()["status"] == "executed"

    # the security officer mints nina's first token; nina then mints her own, no wider
    first = s.call(
        "POST",
        "/access/tokens",
        Role.SECURITY_OFFICER,
        {"principal_id": "nina", "roles": ["auditor"], "label": "first", "ttl_seconds": 3600},
    )
    assert first.status_code == 201, first.text
    assert first.headers["cache-control"] == "no-store"
    nina = first.json()["token"]
    me = s.client.get("/access/whoami", headers=bearer(nina))
    assert me.status_code == 200, me.text
    assert me.json() == {
        "principal_id": "nina",
        "kind": "person",
        "roles": ["auditor"],
        "via": "token",
        "token_id": first.json()["token_id"],
    }
    own = s.client.post(
        "/access/tokens",
        headers=bearer(nina),
        json={"roles": ["auditor"], "label": "laptop", "ttl_seconds": 600},
    )
    assert own.status_code == 201, own.text
    wider = s.client.post(
        "/access/tokens",
        headers=bearer(nina),
        json={"roles": ["administrator"], "label": "x", "ttl_seconds": 600},
    )
    refused(wider, 403, "not_authorised")
    listed = s.client.get("/access/tokens", headers=bearer(nina)).json()
    assert {t["label"] for t in listed} == {"first", "laptop"}
    assert all("token" not in t for t in listed)
    # another's tokens need access.read (nina is an auditor: allowed); a planner is refused
    assert s.client.get("/access/tokens?principal=ada", headers=bearer(nina)).status_code == 200
    refused(s.call("GET", "/access/tokens?principal=nina", Role.PRODUCTION_PLANNER), 403, "not_authorised")

    # the secret never reaches the server log nor the audit log
    secrets_ = [nina, own.json()["token"]]
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    audit = b"".join(s.home.log.entries(0, s.home.log.size())).decode()
    for secret in secrets_:
        assert secret not in logged
        assert secret not in audit
        assert token_secret(secret) not in logged
        assert token_secret(secret) not in audit

    # replay of the applied request: 409, nothing changed
    before = tables(s.home)
    refused(s.call("POST", f"/access/grants/requests/{rid}/apply", Role.ADMINISTRATOR), 409, "conflict")
    assert tables(s.home) == before


@pytest.fixture
def pending(served: Served) -> dict[str, Any]:
    """A fresh role.grant request (for a fresh person) with no approval yet."""
    person = f"p{len(tables(served.home)['acc_principals'])}"
    new_person(served, person)
    return ask_grant(served, person, Role.AUDITOR)


def test_same_person_approving_twice(served: Served, pending: dict[str, Any]) -> None:
    rid, digest = pending["request_id"], pending["digest"]
    ok = served.call("POST", f"/access/approvals/{rid}/approve", Role.SECURITY_OFFICER, {"digest": digest})
    assert ok.status_code == 200, ok.text
    before = tables(served.home)
    again = served.call("POST", f"/access/approvals/{rid}/approve", Role.SECURITY_OFFICER, {"digest": digest})
    refused(again, 409, "conflict")
    assert tables(served.home) == before


def test_requester_cannot_approve_own_request(served: Served) -> None:
    new_person(served, "olga")
    asked = ask_grant(served, "olga", Role.AUDITOR, asker=Role.SECURITY_OFFICER)
    before = tables(served.home)
    own = served.call(
        "POST",
        f"/access/approvals/{asked['request_id']}/approve",
        Role.SECURITY_OFFICER,
        {"digest": asked["digest"]},
    )
    assert "two-person" in refused(own, 422, "policy_violation")["message"]
    assert tables(served.home) == before


@pytest.mark.parametrize(
    ("role", "digest", "status", "code"),
    [
        pytest.param(Role.RELEASE_SIGNER, None, 403, "not_authorised", id="ineligible-approver"),
        pytest.param(Role.AUDITOR, None, 403, "not_authorised", id="no-approve-permission"),
        pytest.param(Role.SECURITY_OFFICER, "0" * 64, 422, "verification_failed", id="wrong-digest"),
        pytest.param(Role.SECURITY_OFFICER, "zz", 400, "invalid_input", id="malformed-digest"),
    ],
)
def test_approval_refused(
    served: Served, pending: dict[str, Any], role: Role, digest: str | None, status: int, code: str
) -> None:
    before = tables(served.home)
    r = served.call(
        "POST",
        f"/access/approvals/{pending['request_id']}/approve",
        role,
        {"digest": digest or pending["digest"]},
    )
    refused(r, status, code)
    assert tables(served.home) == before


def test_expired_request(served: Served, pending: dict[str, Any]) -> None:
    start = served.clock.now
    served.clock.now = start + timedelta(days=3, seconds=1)  # role.grant requests live 3 days
    try:
        before = tables(served.home)
        r = served.call(
            "POST",
            f"/access/approvals/{pending['request_id']}/approve",
            Role.SECURITY_OFFICER,
            {"digest": pending["digest"]},
        )
        assert "expired" in refused(r, 422, "policy_violation")["message"]
        assert tables(served.home) == before
    finally:
        served.clock.now = start


def test_no_token_is_401(served: Served) -> None:
    before = tables(served.home)
    r = served.call("GET", "/access/whoami", None)
    refused(r, 401, "unauthenticated")
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = served.call("POST", "/access/principals", None, {"principal_id": "x", "display_name": "x"})
    refused(r, 401, "unauthenticated")
    refused(
        served.client.get("/access/whoami", headers={"Authorization": "Bearer nope"}), 401, "unauthenticated"
    )
    assert tables(served.home) == before


def test_revoked_token_is_401(served: Served) -> None:
    issued = served.call(
        "POST",
        "/access/tokens",
        Role.SECURITY_OFFICER,
        {"principal_id": NAMES[Role.AUDITOR], "roles": ["auditor"], "label": "short", "ttl_seconds": 600},
    ).json()
    assert served.client.get("/access/whoami", headers=bearer(issued["token"])).status_code == 200
    gone = served.client.delete(f"/access/tokens/{issued['token_id']}", headers=bearer(issued["token"]))
    assert gone.status_code == 200
    assert gone.json()["revoked_at"] is not None
    before = tables(served.home)
    r = served.client.get("/access/whoami", headers=bearer(issued["token"]))
    assert "invalid or expired" in refused(r, 401, "unauthenticated")["message"]
    assert tables(served.home) == before


def test_disabled_principals_token_is_401(served: Served) -> None:
    access = served.home.access
    new_person(served, "dora")
    asked = ask_grant(served, "dora", Role.AUDITOR)
    oscar = access.authenticate(served.tokens[Role.SECURITY_OFFICER])
    access.approve(oscar, asked["request_id"], asked["digest"])
    access.apply_grant(access.authenticate(served.tokens[Role.ADMINISTRATOR]), asked["request_id"])
    dora = access.issue_token(Caller.local("test-setup"), "dora", [Role.AUDITOR], label="t", ttl=MONTH).token
    assert served.client.get("/access/whoami", headers=bearer(dora)).status_code == 200
    off = served.call("POST", "/access/principals/dora/disable", Role.ADMINISTRATOR)
    assert off.status_code == 200
    assert off.json()["disabled_at"] is not None
    before = tables(served.home)
    refused(served.client.get("/access/grants", headers=bearer(dora)), 401, "unauthenticated")
    assert tables(served.home) == before


def test_policy_flow_and_bodies(served: Served) -> None:
    policies = served.call("GET", "/access/policies", Role.AUDITOR).json()
    assert {p["action"] for p in policies} >= {"role.grant", "approval-policy.set"}
    before = tables(served.home)
    unknown = served.call(
        "POST",
        "/access/policies/requests",
        Role.SECURITY_OFFICER,
        {
            "action": "role.grant",
            "threshold": 1,
            "eligible_role": "security-officer",
            "ttl_seconds": 3600,
            "x": 1,
        },
    )
    refused(unknown, 400, "invalid_input")
    big = served.client.post(
        "/access/principals",
        headers={**bearer(served.tokens[Role.ADMINISTRATOR]), "Content-Type": "application/json"},
        content=json.dumps({"principal_id": "big", "display_name": "x" * 70_000}),
    )
    refused(big, 413, "too_large")
    assert tables(served.home) == before
    asked = served.call(
        "POST",
        "/access/policies/requests",
        Role.SECURITY_OFFICER,
        {"action": "quota.raise", "threshold": 1, "eligible_role": "production-planner", "ttl_seconds": 3600},
    )
    assert asked.status_code == 201, asked.text
    assert asked.json()["threshold"] == 2  # approval-policy.set needs two other officers
    # only one other officer exists: applying is refused, and cancelling is the requester's
    early = served.call(
        "POST", f"/access/policies/requests/{asked.json()['request_id']}/apply", Role.SECURITY_OFFICER
    )
    refused(early, 422, "policy_violation")
    done = served.call(
        "POST", f"/access/approvals/{asked.json()['request_id']}/cancel", Role.SECURITY_OFFICER
    )
    assert done.status_code == 200
    assert done.json()["status"] == "cancelled"


def test_openapi_lists_access_routes(served: Served, tmp_path: Path) -> None:
    schema = served.client.get("/openapi.json").json()
    assert "/access/whoami" in schema["paths"]
    post = schema["paths"]["/access/tokens"]["post"]
    assert {"401", "403", "413"} <= set(post["responses"])
    assert "IssuedTokenDoc" in json.dumps(post["responses"]["201"])
