"""Every API route x every kind of caller: the guard a route declares is the answer it gives.

One app (station routes included) over one home with a team. Each route must declare exactly one
guard; then, per caller:

- ``("permission", p)``: a caller whose roles permit ``p`` is not refused (401/403); one whose roles
  do not is 403 (and exactly one refused audit entry); no credentials or an expired token is 401.
- ``("authenticated", None)``: any valid token passes the guard (the service may still say 403 for
  another's object); no credentials or an expired token is 401.
- ``("public", None)``: never 401/403, whatever credentials come along.
- ``("own", None)``: EST enrollment (RFC 7030 3.2.3) authenticates by its own one-time token or
  client certificate and may answer 401/403 for *that* credential, so only its guard count is
  checked here; tests/pki/test_est.py covers its refusals.

Callers by client certificate (stations, devices) are not in this matrix: no route outside EST
(own authentication) guards a permission a station or device holds yet, so every certificate
caller would only repeat the 403 column; tests/pki/test_est.py covers forwarded certificates
(revoked, unverified, from an untrusted peer).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient

from fabtrust.access import Caller, Role, permits
from fabtrust.access.policy import PERSON_ROLES, Permission
from fabtrust.api.app import create_app
from fabtrust.api.auth import GUARD_ATTRIBUTE, own_authentication
from fabtrust.api.limits import RateLimiter
from fabtrust.api.routers import access, cas, est, firmware, health, log, pki, production, station, updates
from fabtrust.home import Home
from tests.production.line import Clock, never
from tests.team import MONTH, bearer, team_tokens

ROUTERS = (health, log, pki, cas, est, updates, production, firmware, access, station)
ANONYMOUS, EXPIRED_TOKEN, EXPIRED_GRANT = "no credentials", "expired token", "expired grant"
CALLERS = [ANONYMOUS, *sorted(r.value for r in PERSON_ROLES), EXPIRED_TOKEN, EXPIRED_GRANT]
DUMMY = "a" * 32  # a well-formed id for most path parameters (hex, and a person's id too)
Guard = tuple[str, Permission | None]


def guards(route: Any) -> list[Guard]:
    """The guards a route declares: its effective dependencies (those of the route, its handler's
    parameters, and any its router was included with)."""
    return [
        getattr(d.call, GUARD_ATTRIBUTE)
        for d in route.dependant.dependencies
        if hasattr(d.call, GUARD_ATTRIBUTE)
    ]


def api_routes(app: FastAPI | None = None) -> list[Any]:
    """The app's API routes as FastAPI serves them (``RouteContext``: path, methods and the
    dependencies in effect), or, before any app exists, the routers' own routes."""
    if app is None:
        return [r for m in ROUTERS for r in m.router.routes if isinstance(r, APIRoute)]
    return [c for c in iter_route_contexts(app.routes) if isinstance(c.original_route, APIRoute)]


def route_id(route: Any) -> str:
    return f"{'/'.join(sorted(route.methods))} {route.path}"


CASES = [
    pytest.param(route_id(r), caller, id=f"{route_id(r)} | {caller}")
    for r in api_routes()
    if own_authentication not in [d.dependency for d in r.dependencies]  # EST: see the docstring
    for caller in CALLERS
]


@dataclass
class Matrix:
    home: Home
    app: FastAPI
    client: TestClient
    tokens: dict[str, str]
    routes: dict[str, Any]


@pytest.fixture(scope="module")
def matrix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    start = datetime.now(UTC).replace(microsecond=0)
    clock = Clock(start)
    path = tmp_path_factory.mktemp("matrix") / "home"
    with Home.init(path, passphrase=lambda: "pw", pin=never, actor="tester", clock=clock) as home:
        team = team_tokens(home)
        tokens = {r.value: t for r, t in team.items()}
        access_ = home.access
        setup = Caller.local("test-setup")
        # a token that expires in a second
        tokens[EXPIRED_TOKEN] = access_.issue_token(
            setup, "aud", [Role.AUDITOR], label="short", ttl=timedelta(seconds=1)
        ).token
        # a valid token whose only grant ends in 30 seconds
        ada, oscar = (
            access_.authenticate(team[Role.ADMINISTRATOR]),
            access_.authenticate(team[Role.SECURITY_OFFICER]),
        )
        access_.create_principal(ada, "brief", "Brief")
        asked = access_.request_grant(
            ada, "brief", Role.AUDITOR, start - timedelta(minutes=1), start + timedelta(seconds=30)
        )
        access_.approve(oscar, asked.request_id, asked.digest)
        access_.apply_grant(ada, asked.request_id)
        tokens[EXPIRED_GRANT] = access_.issue_token(
            setup, "brief", [Role.AUDITOR], label="t", ttl=MONTH
        ).token
        clock.now = start + timedelta(minutes=1)
        unlimited = RateLimiter(rate=1e9, burst=10**9)
        app = create_app(home, station=True, rate_limit=unlimited)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Matrix(home, app, client, tokens, {route_id(r): r for r in api_routes(app)})


def test_every_route_has_exactly_one_guard(matrix: Matrix) -> None:
    assert set(matrix.routes) == {route_id(r) for r in api_routes()}, "a router is missing from ROUTERS"
    unguarded = {rid: guards(r) for rid, r in matrix.routes.items() if len(guards(r)) != 1}
    assert not unguarded, f"routes without exactly one guard: {unguarded}"
    for route in matrix.routes.values():
        assert len(route.methods) == 1, route_id(route)


def call(matrix: Matrix, route: Any, caller: str) -> Any:
    path = re.sub(r"\{[^}]+\}", DUMMY, route.path)
    headers = {} if caller == ANONYMOUS else bearer(matrix.tokens[caller])
    (method,) = route.methods
    body = None if method in ("GET", "DELETE") else {}
    return matrix.client.request(method, path, headers=headers, json=body)


def refusals(matrix: Matrix, since: int) -> list[dict[str, Any]]:
    entries = [json.loads(b) for b in matrix.home.log.entries(since, matrix.home.log.size())]
    return [e for e in entries if e["outcome"] == "refused"]


@pytest.mark.parametrize(("rid", "caller"), CASES)
def test_guard_answers(matrix: Matrix, rid: str, caller: str) -> None:
    route = matrix.routes[rid]
    ((kind, permission),) = guards(route)
    assert kind != "own"
    size = matrix.home.log.size()
    response = call(matrix, route, caller)
    status = response.status_code
    assert status not in (429, 500), response.text
    without = caller in (ANONYMOUS, EXPIRED_TOKEN)
    if kind == "public":
        assert status not in (401, 403), response.text
        return
    if without:
        assert status == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
        return
    if kind == "authenticated":
        assert status != 401, response.text
    else:
        assert kind == "permission"
        assert permission is not None
        roles = [Role(caller)] if caller in {r.value for r in PERSON_ROLES} else []  # expired grant: none
        if permits(roles, permission):
            assert status not in (401, 403), response.text
        else:
            assert status == 403, response.text
            assert permission.value in response.json()["message"]
    if status == 403:  # a refusal by the guard (or the service behind it) is one refused entry
        (entry,) = refusals(matrix, size)
        assert entry["details"]["reason"] == "not_authorised"
