"""Approvals for tests of the acts that need one (firmware publish, order approval, quota raise, CA
revocation, root restore): the people are made on demand in the home itself, through real grants
(the administrator asks, the security officer approves), and sign in with real tokens, so every
ticket here went through the same checks as one given over the API."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from weakref import WeakKeyDictionary

from cryptography import x509

from fabtrust.access import ApprovalAction, ApprovalTicket, Caller, Role
from fabtrust.home import Home
from fabtrust.pki.service import ca_revoke_terms, root_restore_terms
from tests.cli.result import Result

YEAR = timedelta(days=365)
MONTH = timedelta(days=30)
ADMIN, OFFICER = "ada", "oscar"

_people: WeakKeyDictionary[Home, dict[str, Caller]] = WeakKeyDictionary()
_SETUP = Caller.local("test-setup")


def _signed_in(home: Home, name: str, role: Role) -> Caller:
    return home.access.authenticate(token_for(home, name, role))


def token_for(home: Home, name: str, role: Role) -> str:
    """A fresh API token for ``name`` scoped to ``role`` (issued locally, by the test set-up)."""
    return home.access.issue_token(_SETUP, name, [role], label="tests", ttl=MONTH).token


def _founders(home: Home) -> dict[str, Caller]:
    """The home's first administrator and security officer: bootstrapped here if it has nobody
    yet, else the ones it has (``fabtrust init`` made them), signed in with a fresh token."""
    people = _people.get(home)
    if people is not None:
        return people
    access = home.access
    if not access.principals():
        admin, officer = access.bootstrap(ADMIN, OFFICER, valid_for=YEAR, token_ttl=MONTH)
        people = {ADMIN: access.authenticate(admin.token), OFFICER: access.authenticate(officer.token)}
    else:
        now = home.clock()
        holders = {(g.principal_id, g.role) for g in access.grants() if g.active_at(now)}
        admin_id = next(p for p, r in sorted(holders) if r is Role.ADMINISTRATOR)
        officer_id = next(p for p, r in sorted(holders) if r is Role.SECURITY_OFFICER)
        people = {
            ADMIN: _signed_in(home, admin_id, Role.ADMINISTRATOR),
            OFFICER: _signed_in(home, officer_id, Role.SECURITY_OFFICER),
        }
    _people[home] = people
    return people


def person(home: Home, name: str, role: Role) -> Caller:
    """``name`` holding ``role`` in ``home`` (created and granted the first time), signed in."""
    founders = _founders(home)
    key = f"{name}/{role.value}"
    people = _people[home]
    if key in people:
        return people[key]
    access, ada, oscar = home.access, founders[ADMIN], founders[OFFICER]
    if name not in {p.principal_id for p in access.principals()}:
        access.create_principal(ada, name, name.title())
    now = home.clock()
    if not any(g.role is role and g.active_at(now) for g in access.grants(name)):
        request = access.request_grant(ada, name, role, now - timedelta(minutes=1), now + YEAR)
        access.approve(oscar, request.request_id, request.digest)
        access.apply_grant(ada, request.request_id)
    people[key] = caller = _signed_in(home, name, role)
    return caller


def approved(
    home: Home,
    action: ApprovalAction,
    subject: str,
    terms: Mapping[str, Any],
    *,
    executor: Caller | None = None,
) -> ApprovalTicket:
    """A ticket for ``action`` on ``subject`` with ``terms``: asked for by one holder of the
    policy's eligible role and approved by as many others as the policy needs."""
    access = home.access
    policy = access.policy(action)
    role = policy.eligible_role
    requester, *approvers = (person(home, f"{role.value}-{i}", role) for i in range(policy.threshold + 1))
    request = access.request(requester, action, subject, terms)
    for approver in approvers:
        access.approve(approver, request.request_id, request.digest)
    return access.ticket(executor or requester, request.request_id)


def publish_ticket(home: Home, release_id: str) -> ApprovalTicket:
    return approved(
        home,
        ApprovalAction.FIRMWARE_PUBLISH,
        f"release:{release_id}",
        home.releases.publish_terms(release_id),
    )


def revoke_ca(home: Home, ca_id: str, reason: str) -> int:
    """Revoke a CA of ``home`` with a ca.revoke approval of that CA and reason."""
    terms = ca_revoke_terms(home.pki.ca(ca_id), reason)
    ticket = approved(home, ApprovalAction.CA_REVOKE, f"ca:{ca_id}", terms)
    return home.pki.revoke(reason=reason, issuing_ca=ca_id, approval=ticket)


def restore_ticket(home: Home, root: x509.Certificate) -> ApprovalTicket:
    """A root.restore approval, in ``home``, to bring back the key of ``root``."""
    return approved(home, ApprovalAction.ROOT_RESTORE, "ca:root", root_restore_terms(root))


_ASKED = re.compile(r"^approval request ([0-9a-f]{32}):", re.MULTILINE)


def request_in(output: str) -> str:
    """The id of the approval request a CLI command asked for (its first output line)."""
    found = _ASKED.search(output)
    assert found is not None, f"no approval request in {output!r}"
    return found.group(1)


def approve_request(home: Home, request_id: str) -> None:
    """As many approvals as the pending request needs, by holders of its eligible role other than
    its requester, each approving the digest of the statement they were shown."""
    access = home.access
    request = access.show_request(request_id)
    role, given, n = request.eligible_role, 0, 1
    while given < request.threshold:
        approver = person(home, f"{role.value}-{n}", role)
        n += 1
        if approver.principal_id != request.requested_by:
            access.approve(approver, request_id, request.digest)
            given += 1


def through_approval(invoke: Callable[..., Result], open_home: Callable[[], Home], *args: object) -> Result:
    """Run a gated CLI command as a team would: once without ``--approval`` (it asks for one),
    the approvers approve, then again with ``--approval``; returns the second run."""
    request_id = request_in(invoke(*args).ok().out)
    with open_home() as home:
        approve_request(home, request_id)
    return invoke(*args, "--approval", request_id)
