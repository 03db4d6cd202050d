"""The API against its own OpenAPI document, fuzzed by schemathesis over the wire.

A real uvicorn server (in a thread, plain HTTP on a loopback port) serves a data home with a root
and a product CA, the station's line API included. Schemathesis loads ``/openapi.json`` from it and
sends every operation a bounded, derandomized set of generated requests, and every answer must pass
schemathesis' checks: no 5xx, a documented status code, a documented content type, a body that
matches the declared schema, and the declared response headers.

Each operation is called as several callers, so that every answer a client can get is seen:

- ``permitted``: a token of a role the route's guard admits, with valid and with invalid requests
  (schemathesis' positive and negative generation), to reach the route's own validation and work;
- ``anonymous``: no credentials (401 where a guard needs some);
- ``forbidden``: a person whose roles lack the route's permission (403; permission routes only);
- ``bad-token``: a bearer token that is no token (401);
- ``throttled``: no credentials against a rate limit of one request (429 on routes anyone may call,
  and on failed authentication).

The home is no enrolled station, so ``/station`` routes end in their documented 404 after
authorization and validation; provisioning over HTTP is driven in tests/api/test_station_api.py.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, BaseSchema, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fabtrust.access import Role
from fabtrust.access.policy import PERSON_ROLES, ROLE_PERMISSIONS, Permission
from fabtrust.api.app import create_app
from fabtrust.api.auth import GUARD_ATTRIBUTE
from fabtrust.api.limits import RateLimiter
from fabtrust.home import Home
from tests.fixtures.serving import serving
from tests.team import bearer, team_tokens

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# (caller, generation mode, examples per operation): about 40 s for the module on 2 cores
PASSES = [
    ("permitted", GenerationMode.POSITIVE, 12),
    ("permitted", GenerationMode.NEGATIVE, 12),
    ("anonymous", GenerationMode.POSITIVE, 3),
    ("forbidden", GenerationMode.POSITIVE, 3),
    ("bad-token", GenerationMode.POSITIVE, 3),
    ("throttled", GenerationMode.POSITIVE, 3),
]
# The role a permitted call is made as: the first here whose permissions include the route's
# permission (routes open to anyone, or to any authenticated caller, get the first).
ROLE_PREFERENCE = (
    Role.ADMINISTRATOR,
    Role.SECURITY_OFFICER,
    Role.FACTORY_OPERATOR,
    Role.RELEASE_SIGNER,
    Role.PRODUCTION_PLANNER,
    Role.AUDITOR,
)
assert set(ROLE_PREFERENCE) == PERSON_ROLES
GENEROUS = RateLimiter(rate=1e6, burst=1_000_000)  # the fuzzer's request rate must not turn into 429s
NOT_A_TOKEN = "ftk_0000000000000000_" + "A" * 43

# EST bodies are base64 text (RFC 7030 4.2.1): sent as the text they are
schemathesis.serializer.alias("application/pkcs10", "text/plain")


def never() -> str:
    raise AssertionError("asked for a secret")


Guard = tuple[str, Permission | None]
Operation = APIOperation[Any, Any, Any, Any]


def route_guards(app: FastAPI) -> dict[tuple[str, str], Guard]:
    """(METHOD, path as in the document) -> the guard the route declares."""
    guards: dict[tuple[str, str], Guard] = {}
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute):
            continue
        declared = [getattr(d.call, GUARD_ATTRIBUTE) for d in route.dependant.dependencies]
        (guard,) = [g for g in declared if g is not None] or [("none", None)]
        assert route.path is not None
        assert route.methods is not None
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # "{p:path}" is "{p}" in the document
        for method in route.methods:
            guards[(method, path)] = guard
    return guards


@dataclass
class Served:
    url: str
    app: FastAPI
    tokens: dict[Role, str]
    guards: dict[tuple[str, str], Guard]
    statuses: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # (caller, operation, status)

    def headers_for(self, operation: Operation, caller: str) -> dict[str, str] | None:
        """The credentials ``caller`` sends to ``operation``; None: no such caller for it."""
        _, permission = self.guards[(operation.method.upper(), operation.path)]
        if caller == "permitted":
            if permission is None:
                return bearer(self.tokens[ROLE_PREFERENCE[0]])
            return bearer(self.tokens[next(r for r in ROLE_PREFERENCE if permission in ROLE_PERMISSIONS[r])])
        if caller == "forbidden":
            lacking = [r for r in ROLE_PREFERENCE if permission not in ROLE_PERMISSIONS[r]]
            return bearer(self.tokens[lacking[0]]) if permission is not None and lacking else None
        if caller == "bad-token":
            return bearer(NOT_A_TOKEN)
        return {}  # anonymous, throttled


def make_home(path: Path) -> Home:
    """A data home with a root and a product CA, so that the PKI and EST routes have CAs to serve."""
    home = Home.init(path, passphrase=lambda: "fuzz-passphrase", pin=never, actor="tester")
    home.pki.init_root(
        attributes={"commonName": "Fuzz Root CA", "organizationName": "Fuzz"},
        custodians=[("alice", "alice-passphrase-1"), ("bob", "bob-passphrase-22")],
        threshold=2,
        scrypt_n=2**14,
    )
    home.pki.create_product_ca(
        "widget",
        attributes={"commonName": "Fuzz Widget CA", "organizationName": "Fuzz"},
        device_domain="devices.fuzz.example",
    )
    return home


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with make_home(tmp_path_factory.mktemp("openapi-fuzz") / "home") as home:
        tokens = team_tokens(home)
        app = create_app(home, station=True, rate_limit=GENEROUS)
        with serving(app, lifespan="off") as port:
            yield Served(f"http://127.0.0.1:{port}", app, tokens, route_guards(app))


@pytest.fixture(scope="module")
def api_schema(served: Served) -> BaseSchema:
    """The OpenAPI document as the running server serves it."""
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json", timeout=10)


def fuzz(operation: Operation, mode: GenerationMode, examples: int, headers: dict[str, str]) -> Counter[int]:
    """``examples`` generated requests to one operation, each answer checked; the statuses seen."""
    seen: Counter[int] = Counter()

    @settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the failure names its request
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode))
    def run(case: Case[Operation]) -> None:
        response = case.call_and_validate(headers=headers, checks=CHECKS, timeout=30)
        seen[response.status_code] += 1

    run()
    return seen


# schemathesis' own pytest loader (``schemathesis.pytest.from_fixture``) reaches into a private
# attribute pytest 9.2 no longer has, so the operations are walked here, each its own Hypothesis test.
@pytest.mark.parametrize(("caller", "mode", "examples"), PASSES, ids=[f"{c}-{m}" for c, m, _ in PASSES])
def test_every_answer_conforms_to_the_openapi_document(
    api_schema: BaseSchema, served: Served, caller: str, mode: GenerationMode, examples: int
) -> None:
    api_schema.config.update(base_url=served.url)
    served.app.state.limiter = RateLimiter(rate=1e-3, burst=1) if caller == "throttled" else GENEROUS
    failures: list[str] = []
    operations = 0
    try:
        for result in api_schema.get_all_operations():
            if isinstance(result, Err):  # an operation schemathesis cannot read is a defect too
                failures.append(f"unreadable operation: {result.err()}")
                continue
            operation = result.ok()
            operations += 1
            headers = served.headers_for(operation, caller)
            if headers is None:
                continue
            try:
                seen = fuzz(operation, mode, examples, headers)
            except Unsatisfiable:
                # nothing in this operation's request can be made invalid (no parameters or body,
                # or only unconstrained strings): there is no negative request to send
                if mode is GenerationMode.POSITIVE:
                    raise
                continue
            except (Exception, FailureGroup) as exc:  # every operation is tried, all failures reported
                failures.append(f"{operation.label}:\n{exc}")
                continue
            for status, n in seen.items():
                served.statuses[(caller, operation.label, status)] += n
    finally:
        served.app.state.limiter = GENEROUS
    assert operations >= 40, f"only {operations} operations in the served document"
    assert not failures, f"{len(failures)} of {operations} operations failed:\n\n" + "\n\n".join(failures)
    # the callers are who they should be: the permitted get work done, the others are refused
    answered = {(op, status) for (c, op, status) in served.statuses if c == caller}
    if caller == "permitted" and mode is GenerationMode.POSITIVE:
        assert len({op for op, status in answered if status < 300}) >= 10, sorted(answered)
    expected = {"anonymous": 401, "forbidden": 403, "bad-token": 401, "throttled": 429}.get(caller)
    assert expected is None or any(status == expected for _, status in answered), sorted(answered)
