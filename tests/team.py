"""A team of people for tests that go through the API: the bootstrap administrator and security
officer, and one person for each other role, each granted through a real role.grant approval and
holding an API token scoped to that role."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from fabtrust.access import Caller, Role
from fabtrust.access.policy import PERSON_ROLES
from fabtrust.home import Home
from fabtrust.store.engine import Store
from fabtrust.store.tables import (
    acc_approval_policies,
    acc_approval_requests,
    acc_approvals,
    acc_grants,
    acc_principals,
    acc_tokens,
)
from tests.approvals import person, token_for

#: The access domain's tables, for tests that check a refusal changed none of them.
ACCESS_TABLES = (
    acc_principals,
    acc_grants,
    acc_tokens,
    acc_approval_requests,
    acc_approvals,
    acc_approval_policies,
)


def access_rows(store: Store) -> dict[str, list[dict[str, Any]]]:
    """Every row of every access table, in an order of their own (for before/after comparisons)."""
    with store.read() as conn:
        return {
            t.name: sorted(map(dict, conn.execute(select(t)).mappings()), key=repr) for t in ACCESS_TABLES
        }


YEAR = timedelta(days=365)
MONTH = timedelta(days=30)
NAMES = {
    Role.ADMINISTRATOR: "ada",
    Role.SECURITY_OFFICER: "oscar",
    Role.RELEASE_SIGNER: "sam",
    Role.PRODUCTION_PLANNER: "pia",
    Role.FACTORY_OPERATOR: "fay",
    Role.AUDITOR: "aud",
}


def team_tokens(home: Home) -> dict[Role, str]:
    """Bootstrap ``home``'s people and return a token per person role. A home whose people were
    set up already (by :mod:`tests.approvals`, for a gated act) gets the same names, and fresh
    tokens."""
    access = home.access
    if access.principals():
        for role in PERSON_ROLES:
            person(home, NAMES[role], role)
        return {role: token_for(home, NAMES[role], role) for role in PERSON_ROLES}
    admin, officer = access.bootstrap(
        NAMES[Role.ADMINISTRATOR], NAMES[Role.SECURITY_OFFICER], valid_for=YEAR, token_ttl=MONTH
    )
    ada, oscar = access.authenticate(admin.token), access.authenticate(officer.token)
    tokens = {Role.ADMINISTRATOR: admin.token, Role.SECURITY_OFFICER: officer.token}
    now = home.clock()
    for role in sorted(PERSON_ROLES - set(tokens)):
        name = NAMES[role]
        access.create_principal(ada, name, name.title())
        request = access.request_grant(ada, name, role, now - timedelta(minutes=1), now + YEAR)
        access.approve(oscar, request.request_id, request.digest)
        access.apply_grant(ada, request.request_id)
        issued = access.issue_token(Caller.local("test-setup"), name, [role], label="tests", ttl=MONTH)
        tokens[role] = issued.token
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token_secret(token: str) -> str:
    """The secret part of ``ftk_<token id>_<secret>`` (the secret's base64url may hold "_" too)."""
    prefix, token_id, secret = token.split("_", 2)
    assert (prefix, len(token_id), len(secret)) == ("ftk", 16, 43)
    return secret


def login_refusal(home: Home, since: int, needle: str) -> dict[str, Any]:
    """The one audit entry written since log size ``since``: a refused ``api.authenticate`` (a
    client certificate or its header refused at the door) whose message holds ``needle``."""
    (entry,) = [json.loads(b) for b in home.log.entries(since, home.log.size())]
    assert (entry["action"], entry["outcome"]) == ("api.authenticate", "refused"), entry
    assert needle in entry["details"]["message"], entry
    return dict(entry)
