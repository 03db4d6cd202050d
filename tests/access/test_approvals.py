"""The k-of-n approval mechanism: the statement and its digest, threshold counting, and every
refusal (same approver twice, the requester, an ineligible approver, an expired, executed or
cancelled request, a wrong digest, a wrong action or subject at execution, a grant revoked after
approving, a replay), each leaving every access table as it was and logging a refusal."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from fabtrust.access import ApprovalAction, Role
from fabtrust.access.service import REQUEST_FORMAT, ApprovalRequest, ApprovalTicket, RequestStatus
from fabtrust.crypto.canonical import canonical_json
from fabtrust.errors import (
    Conflict,
    InvalidInput,
    NotAuthorised,
    NotFound,
    PolicyViolation,
    VerificationFailed,
)
from fabtrust.store.engine import sqlite_url
from fabtrust.store.tables import acc_approval_requests
from fabtrust.tlog.audit import Outcome

from .conftest import Team, make_env

CA = ApprovalAction.CA_REVOKE
SUBJECT = "ca:product-widget"
PARAMS = {"reason": "keyCompromise"}


def ca_revoke(team: Team) -> ApprovalRequest:
    """oscar asks to revoke a CA (policy: 1 security officer besides the requester, 1 day)."""
    return team.env.access.request(team.oscar, CA, SUBJECT, PARAMS)


def test_the_request_statement_and_its_digest(team: Team) -> None:
    env = team.env
    req = ca_revoke(team)
    assert (req.status, req.threshold, req.eligible_role, req.requested_by) == (
        RequestStatus.PENDING,
        1,
        Role.SECURITY_OFFICER,
        "oscar",
    )
    assert req.expires_at == env.clock.now + timedelta(days=1)
    assert json.loads(req.statement) == {
        "format": REQUEST_FORMAT,
        "action": "ca.revoke",
        "subject": SUBJECT,
        "parameters": PARAMS,
        "requested_by": "oscar",
        "created_at": "2031-05-04T08:00:00Z",
        "expires_at": "2031-05-05T08:00:00Z",
        "threshold": 1,
        "eligible_role": "security-officer",
    }
    assert req.statement == canonical_json(json.loads(req.statement))
    assert req.digest == hashlib.sha256(req.statement).hexdigest()
    entry = env.last()
    assert (entry.actor, entry.action, entry.subject, entry.details["digest"]) == (
        "oscar",
        "approval.request",
        SUBJECT,
        req.digest,
    )


def test_one_approval_then_one_execution(team: Team) -> None:
    env = team.env
    req = ca_revoke(team)
    approved = env.access.approve(team.olga, req.request_id, req.digest)
    assert [(a.principal_id, a.digest) for a in approved.approvals] == [("olga", req.digest)]
    done = env.access.execute(team.otto, req.request_id, action=CA, subject=SUBJECT)
    assert (done.status, done.executed_by, done.executed_at, dict(done.parameters)) == (
        RequestStatus.EXECUTED,
        "otto",
        env.clock.now,
        PARAMS,
    )
    entry = env.last()
    assert (entry.action, entry.outcome, entry.details["approvals"]) == ("approval.execute", Outcome.OK, 1)


def test_the_threshold_counts_distinct_eligible_approvers(team: Team) -> None:
    env = team.env
    req = env.access.request(team.oscar, ApprovalAction.ROOT_RESTORE, "ca:root", {})
    assert req.threshold == 2
    env.access.approve(team.olga, req.request_id, req.digest)
    env.refused(
        lambda: env.access.execute(
            team.oscar, req.request_id, action=ApprovalAction.ROOT_RESTORE, subject="ca:root"
        ),
        PolicyViolation,
        "has 1 valid approval.*2 needed",
        "approval.execute",
    )
    env.access.approve(team.otto, req.request_id, req.digest)
    done = env.access.execute(
        team.oscar, req.request_id, action=ApprovalAction.ROOT_RESTORE, subject="ca:root"
    )
    assert done.status is RequestStatus.EXECUTED
    assert len(done.approvals) == 2


def test_firmware_publication_takes_two_other_release_signers(team: Team) -> None:
    env, fw = team.env, ApprovalAction.FIRMWARE_PUBLISH
    req = env.access.request(team.sam, fw, "release:widget-1.0.0", {"image_sha256": "ab" * 32})
    env.refused(
        lambda: env.access.approve(team.sam, req.request_id, req.digest),
        PolicyViolation,
        "two-person",
        "approval.approve",
    )
    env.access.approve(team.sue, req.request_id, req.digest)
    env.access.approve(team.sid, req.request_id, req.digest)
    assert (
        env.access.execute(team.sam, req.request_id, action=fw, subject="release:widget-1.0.0").status
        == "executed"
    )


def test_approving_twice_is_refused(team: Team) -> None:
    env = team.env
    req = env.access.request(team.oscar, ApprovalAction.ROOT_RESTORE, "ca:root", {})
    env.access.approve(team.olga, req.request_id, req.digest)
    env.refused(
        lambda: env.access.approve(team.olga, req.request_id, req.digest),
        Conflict,
        "approved request .* already",
        "approval.approve",
    )


def test_the_requester_cannot_approve(team: Team) -> None:
    env = team.env
    req = ca_revoke(team)
    env.refused(
        lambda: env.access.approve(team.oscar, req.request_id, req.digest),
        PolicyViolation,
        "own request",
        "approval.approve",
    )


@pytest.mark.parametrize(
    ("who", "error", "match"),
    [
        ("sam", NotAuthorised, "needs an active security-officer grant"),  # may approve, not this
        ("pia", NotAuthorised, "needs an active security-officer grant"),
        ("aud", NotAuthorised, "not permitted: approval.approve"),  # may approve nothing
        ("ada", NotAuthorised, "not permitted: approval.approve"),
    ],
    ids=["release-signer", "planner", "auditor", "administrator"],
)
def test_an_ineligible_approver_is_refused(team: Team, who: str, error: type[Exception], match: str) -> None:
    env = team.env
    req = ca_revoke(team)
    caller = getattr(team, who)
    env.refused(
        lambda: env.access.approve(caller, req.request_id, req.digest), error, match, "approval.approve"
    )  # type: ignore[arg-type]


def test_the_token_scope_must_hold_the_eligible_role(team: Team) -> None:
    env = team.env
    env.person("olga", Role.AUDITOR, requester=team.ada, officer=team.oscar)
    audit_only = env.login("olga", Role.AUDITOR)
    req = ca_revoke(team)
    env.refused(
        lambda: env.access.approve(audit_only, req.request_id, req.digest),
        NotAuthorised,
        "approval.approve",
        "approval.approve",
    )


def test_a_local_caller_cannot_approve(team: Team) -> None:
    env = team.env
    req = ca_revoke(team)
    env.refused(
        lambda: env.access.approve(env.local, req.request_id, req.digest),
        NotAuthorised,
        "not locally",
        "approval.approve",
    )


@pytest.mark.parametrize(
    "digest",
    ["0" * 64, "flip"],
    ids=["other-digest", "one-digit-changed"],
)
def test_a_wrong_digest_is_refused(team: Team, digest: str) -> None:
    env = team.env
    req = ca_revoke(team)
    seen = req.digest[:-1] + ("0" if req.digest[-1] != "0" else "1") if digest == "flip" else digest
    env.refused(
        lambda: env.access.approve(team.olga, req.request_id, seen),
        VerificationFailed,
        "not the one reviewed",
        "approval.approve",
    )


@pytest.mark.parametrize(
    ("request_id", "digest", "error", "match"),
    [
        ("nope", "0" * 64, InvalidInput, "request id is malformed"),
        ("0" * 32, "0" * 64, NotFound, "no approval request"),
        (None, "XYZ", InvalidInput, "digest is malformed"),
    ],
    ids=["malformed-id", "unknown-id", "malformed-digest"],
)
def test_bad_approval_input_is_refused(
    team: Team, request_id: str | None, digest: str, error: type[Exception], match: str
) -> None:
    env = team.env
    rid = request_id or ca_revoke(team).request_id
    env.refused(lambda: env.access.approve(team.olga, rid, digest), error, match, "approval.approve")  # type: ignore[arg-type]


def test_an_expired_request_can_be_neither_approved_nor_executed(team: Team) -> None:
    env = team.env
    req = ca_revoke(team)
    env.access.approve(team.olga, req.request_id, req.digest)
    env.clock.now = req.expires_at
    env.refused(
        lambda: env.access.approve(team.otto, req.request_id, req.digest),
        PolicyViolation,
        "expired",
        "approval.approve",
    )
    env.refused(
        lambda: env.access.execute(team.oscar, req.request_id, action=CA, subject=SUBJECT),
        PolicyViolation,
        "expired",
        "approval.execute",
    )


def test_a_replayed_execution_is_a_conflict(team: Team) -> None:
    env = team.env
    req = ca_revoke(team)
    env.access.approve(team.olga, req.request_id, req.digest)
    env.access.execute(team.oscar, req.request_id, action=CA, subject=SUBJECT)
    env.refused(
        lambda: env.access.execute(team.oscar, req.request_id, action=CA, subject=SUBJECT),
        Conflict,
        "is executed",
        "approval.execute",
    )
    env.refused(
        lambda: env.access.approve(team.otto, req.request_id, req.digest),
        Conflict,
        "is executed",
        "approval.approve",
    )


@pytest.mark.parametrize(
    ("action", "subject", "error", "match"),
    [
        (
            ApprovalAction.ROOT_RESTORE,
            SUBJECT,
            PolicyViolation,
            "is for ca.revoke on ca:product-widget, not root.restore",
        ),
        (CA, "ca:product-gadget", PolicyViolation, "not ca.revoke on ca:product-gadget"),
        (CA, "bad subject", InvalidInput, "subject"),
        ("ca.delete", SUBJECT, InvalidInput, "unknown approval action"),
    ],
    ids=["other-action", "other-subject", "malformed-subject", "unknown-action"],
)
def test_execution_must_be_for_the_approved_action_and_subject(
    team: Team, action: ApprovalAction, subject: str, error: type[Exception], match: str
) -> None:
    env = team.env
    req = ca_revoke(team)
    env.access.approve(team.olga, req.request_id, req.digest)
    env.refused(
        lambda: env.access.execute(team.oscar, req.request_id, action=action, subject=subject),
        error,  # type: ignore[arg-type]
        match,
        "approval.execute",
    )
    assert env.access.execute(team.oscar, req.request_id, action=CA, subject=SUBJECT).status == "executed"


def test_executing_needs_the_acts_permission(team: Team) -> None:
    env = team.env
    req = ca_revoke(team)
    env.access.approve(team.olga, req.request_id, req.digest)
    env.refused(
        lambda: env.access.execute(team.ada, req.request_id, action=CA, subject=SUBJECT),
        NotAuthorised,
        "not permitted: pki.ca.revoke",
        "pki.ca.revoke",
    )


@pytest.mark.parametrize(
    ("who", "action", "subject", "params", "error", "match", "logged"),
    [
        ("pia", CA, SUBJECT, {}, NotAuthorised, "not permitted: pki.ca.revoke", "pki.ca.revoke"),
        ("fay", CA, SUBJECT, {}, NotAuthorised, "not permitted: approval.request", "approval.request"),
        ("aud", ApprovalAction.ORDER_APPROVE, "order:o-1", {}, NotAuthorised, "approval.request",
         "approval.request"),
        ("oscar", "ca.delete", SUBJECT, {}, InvalidInput, "unknown approval action", "approval.request"),
        ("oscar", CA, "no-colon", {}, InvalidInput, "subject", "approval.request"),
        ("oscar", CA, SUBJECT, ["list"], InvalidInput, "JSON object", "approval.request"),
        ("oscar", CA, SUBJECT, {"f": 1.5}, InvalidInput, "type float", "approval.request"),
        ("oscar", CA, SUBJECT, {"big": "x" * 20_000}, InvalidInput, "at most 16384", "approval.request"),
    ],
    ids=["planner-no-act-permission", "operator-no-request", "auditor", "unknown-action", "bad-subject",
         "list-parameters", "float-parameter", "oversized"],
)  # fmt: skip
def test_bad_requests_are_refused(
    team: Team,
    who: str,
    action: str,
    subject: str,
    params: object,
    error: type[Exception],
    match: str,
    logged: str,
) -> None:
    env = team.env
    caller = getattr(team, who)
    env.refused(lambda: env.access.request(caller, action, subject, params), error, match, logged)  # type: ignore[arg-type]


def test_a_grant_revoked_after_approving_stops_counting(team: Team) -> None:
    env = team.env
    req = ca_revoke(team)
    env.access.approve(team.olga, req.request_id, req.digest)
    olga_grant = next(g.grant_id for g in env.access.grants("olga"))
    revoke = env.access.request_revoke(team.ada, olga_grant)
    env.access.approve(team.otto, revoke.request_id, revoke.digest)
    env.access.apply_revoke(team.ada, revoke.request_id)
    env.refused(
        lambda: env.access.execute(team.oscar, req.request_id, action=CA, subject=SUBJECT),
        PolicyViolation,
        "has 0 valid approval",
        "approval.execute",
    )
    env.access.approve(team.otto, req.request_id, req.digest)
    assert env.access.execute(team.oscar, req.request_id, action=CA, subject=SUBJECT).status == "executed"


def test_a_lapsed_grant_stops_counting(team: Team) -> None:
    env = team.env
    now = env.clock.now
    env.access.create_principal(team.ada, "carl", "Carl")
    env.person(
        "carl",
        Role.SECURITY_OFFICER,
        requester=team.ada,
        officer=team.oscar,
        not_after=now + timedelta(hours=2),
    )
    carl = env.login("carl", Role.SECURITY_OFFICER)
    req = ca_revoke(team)
    env.access.approve(carl, req.request_id, req.digest)
    env.clock.advance(timedelta(hours=2))  # carl's grant ends; the request (1 day) does not
    env.refused(
        lambda: env.access.execute(team.oscar, req.request_id, action=CA, subject=SUBJECT),
        PolicyViolation,
        "has 0 valid",
        "approval.execute",
    )


def test_a_disabled_approver_stops_counting(team: Team) -> None:
    env = team.env
    req = ca_revoke(team)
    env.access.approve(team.olga, req.request_id, req.digest)
    env.access.disable_principal(team.ada, "olga")
    env.refused(
        lambda: env.access.execute(team.oscar, req.request_id, action=CA, subject=SUBJECT),
        PolicyViolation,
        "has 0 valid",
        "approval.execute",
    )


def test_cancel(team: Team) -> None:
    env = team.env
    req = ca_revoke(team)
    env.refused(
        lambda: env.access.cancel(team.pia, req.request_id),
        NotAuthorised,
        "requester or a security officer",
        "approval.cancel",
    )
    cancelled = env.access.cancel(team.oscar, req.request_id)
    assert (cancelled.status, cancelled.cancelled_by) == (RequestStatus.CANCELLED, "oscar")
    env.refused(
        lambda: env.access.cancel(team.oscar, req.request_id), Conflict, "is cancelled", "approval.cancel"
    )
    env.refused(
        lambda: env.access.approve(team.olga, req.request_id, req.digest),
        Conflict,
        "is cancelled",
        "approval.approve",
    )
    env.refused(
        lambda: env.access.execute(team.oscar, req.request_id, action=CA, subject=SUBJECT),
        Conflict,
        "is cancelled",
        "approval.execute",
    )
    # a security officer may cancel another's request; the requester may cancel their own
    order = env.access.request(team.pia, ApprovalAction.ORDER_APPROVE, "order:o-1", {"quota": 5000})
    assert env.access.cancel(team.olga, order.request_id).cancelled_by == "olga"
    other = env.access.request(team.pia, ApprovalAction.ORDER_APPROVE, "order:o-2", {"quota": 5000})
    env.refused(
        lambda: env.access.cancel(team.pat, other.request_id), NotAuthorised, "requester", "approval.cancel"
    )
    assert env.access.cancel(team.pia, other.request_id).status == "cancelled"


def test_an_altered_request_is_refused(team: Team) -> None:
    env = team.env
    req = ca_revoke(team)
    with env.store.write() as conn:
        conn.execute(
            update(acc_approval_requests)
            .where(acc_approval_requests.c.request_id == req.request_id)
            .values(parameters=canonical_json({"reason": "superseded"}))
        )
    env.refused(
        lambda: env.access.approve(team.olga, req.request_id, req.digest),
        VerificationFailed,
        "altered",
        "approval.approve",
    )


def test_approval_policies_change_only_through_approval(team: Team) -> None:
    env = team.env
    before = ca_revoke(team)  # made under the old policy: keeps it
    change = env.access.request_approval_policy(
        team.oscar,
        ApprovalAction.CA_REVOKE,
        threshold=2,
        eligible_role=Role.SECURITY_OFFICER,
        ttl_seconds=7200,
    )
    assert (change.action, change.threshold, change.subject) == (
        "approval-policy.set",
        2,
        "approval-policy:ca.revoke",
    )
    env.refused(
        lambda: env.access.request_approval_policy(
            team.ada, CA, threshold=1, eligible_role=Role.SECURITY_OFFICER, ttl_seconds=3600
        ),
        NotAuthorised,
        "access.policy.set",
        "access.policy.set",
    )
    env.refused(
        lambda: env.access.request_approval_policy(
            team.oscar, CA, threshold=1, eligible_role=Role.AUDITOR, ttl_seconds=3600
        ),
        InvalidInput,
        "may not approve",
        "approval.request",
    )
    env.access.approve(team.olga, change.request_id, change.digest)
    env.refused(
        lambda: env.access.apply_approval_policy(team.oscar, change.request_id),
        PolicyViolation,
        "1 valid",
        "approval-policy.set",
    )
    env.access.approve(team.otto, change.request_id, change.digest)
    new = env.access.apply_approval_policy(team.oscar, change.request_id)
    assert (new.threshold, new.ttl_seconds) == (2, 7200)
    assert env.access.policy(CA) == new
    assert {p.action: p for p in env.access.policies()}[CA] == new
    entry = env.last()
    assert (entry.action, entry.details["previous"]["threshold"]) == ("approval-policy.set", 1)
    after = ca_revoke(team)
    assert (before.threshold, after.threshold, after.expires_at - after.created_at) == (
        1,
        2,
        timedelta(hours=2),
    )
    env.access.approve(team.olga, before.request_id, before.digest)
    assert env.access.execute(team.oscar, before.request_id, action=CA, subject=SUBJECT).status == "executed"


def test_apply_refuses_a_request_for_another_action(team: Team) -> None:
    env = team.env
    req = ca_revoke(team)
    env.access.approve(team.olga, req.request_id, req.digest)
    env.refused(
        lambda: env.access.apply_grant(team.oscar, req.request_id),
        PolicyViolation,
        "is for ca.revoke",
        "grant.create",
    )
    env.refused(
        lambda: env.access.apply_revoke(team.oscar, req.request_id),
        PolicyViolation,
        "is for ca.revoke",
        "grant.revoke",
    )


def test_a_role_grant_needs_its_approval_and_is_applied_once(team: Team) -> None:
    env = team.env
    env.access.create_principal(team.ada, "carl", "Carl")
    now = env.clock.now
    req = env.access.request_grant(team.ada, "carl", Role.RELEASE_SIGNER, now, now + timedelta(days=30))
    assert (req.subject, dict(req.parameters)) == (
        "principal:carl",
        {"principal_id": "carl", "role": "release-signer", "not_before": "2031-05-04T08:00:00Z",
         "not_after": "2031-06-03T08:00:00Z"},
    )  # fmt: skip
    env.refused(
        lambda: env.access.apply_grant(team.ada, req.request_id), PolicyViolation, "0 valid", "grant.create"
    )
    env.refused(
        lambda: env.access.approve(team.sam, req.request_id, req.digest),
        NotAuthorised,
        "security-officer",
        "approval.approve",
    )
    env.access.approve(team.oscar, req.request_id, req.digest)
    grant = env.access.apply_grant(team.ada, req.request_id)
    assert (grant.role, grant.approval_id, grant.principal_id) == (
        Role.RELEASE_SIGNER,
        req.request_id,
        "carl",
    )
    assert env.access.roles_of("carl", now) == {Role.RELEASE_SIGNER}
    env.refused(
        lambda: env.access.apply_grant(team.ada, req.request_id), Conflict, "is executed", "grant.create"
    )
    entry = env.last()
    assert entry.outcome is Outcome.REFUSED
    ok = [e for e in env.entries() if e.action == "grant.create" and e.outcome is Outcome.OK][-1]
    assert (ok.subject, ok.details["grant_id"], ok.details["request_id"]) == (
        "principal:carl",
        grant.grant_id,
        req.request_id,
    )


def test_reads_return_frozen_views(team: Team) -> None:
    env = team.env
    req = ca_revoke(team)
    [listed] = env.access.requests(RequestStatus.PENDING)
    assert listed == env.access.show_request(req.request_id)
    with pytest.raises(AttributeError):
        listed.status = RequestStatus.EXECUTED  # type: ignore[misc]
    with pytest.raises(TypeError):
        listed.parameters["reason"] = "x"  # type: ignore[index]
    assert len(env.access.policies()) == len(ApprovalAction)
    assert env.access.requests(RequestStatus.EXECUTED) == [
        r for r in env.access.requests() if r.status == "executed"
    ]


# -- spending a ticket inside the act's own transaction ------------------------------------------


def test_a_ticket_is_spent_with_the_act_and_stays_pending_when_the_act_rolls_back(team: Team) -> None:
    env = team.env
    req = ca_revoke(team)
    env.access.approve(team.olga, req.request_id, req.digest)
    ticket = env.access.ticket(team.oscar, req.request_id)

    class ActFailed(Exception):
        pass

    def act_failing_after_the_spend() -> None:
        with env.store.write() as conn:
            assert ticket.spend(conn, CA, SUBJECT, PARAMS).status == "executed"
            raise ActFailed  # its transaction, and the spend with it, roll back

    before = env.rows()
    with pytest.raises(ActFailed):
        act_failing_after_the_spend()
    assert env.rows() == before
    assert env.access.show_request(req.request_id).status == "pending"

    env.access.check_ticket(ticket, CA, SUBJECT, PARAMS)  # still good; checking changes nothing
    assert env.rows() == before
    with env.store.write() as conn:
        assert ticket.spend(conn, CA, SUBJECT, PARAMS).executed_by == "oscar"
    with pytest.raises(Conflict, match="is executed"), env.store.write() as conn:
        ticket.spend(conn, CA, SUBJECT, PARAMS)  # replayed


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("other-terms", PolicyViolation, "approved other terms"),
        ("other-action", PolicyViolation, "not root.restore"),
        ("no-permission", NotAuthorised, "not permitted: pki.ca.revoke"),
        ("malformed-id", InvalidInput, "approval request id"),
        ("unknown-id", NotFound, "approval request"),
        ("other-home", InvalidInput, "another data home"),
        ("not-a-ticket", InvalidInput, "needs an approval"),
    ],
)
def test_a_bad_ticket_is_refused_and_changes_nothing(
    team: Team, tmp_path: Path, case: str, error: type[Exception], match: str
) -> None:
    env = team.env
    req = ca_revoke(team)
    env.access.approve(team.olga, req.request_id, req.digest)
    ticket: Any = env.access.ticket(team.oscar, req.request_id)
    action, params = CA, PARAMS
    if case == "other-terms":
        params = {"reason": "superseded"}
    elif case == "other-action":
        action = ApprovalAction.ROOT_RESTORE
    elif case == "no-permission":
        ticket = env.access.ticket(team.ada, req.request_id)
    elif case == "malformed-id":
        ticket = env.access.ticket(team.oscar, "not hex")
    elif case == "unknown-id":
        ticket = env.access.ticket(team.oscar, "0" * 32)
    elif case == "other-home":
        other = make_env(sqlite_url(tmp_path / "other.db"))
        ticket = ApprovalTicket(other.access, team.oscar, req.request_id)
    elif case == "not-a-ticket":
        ticket = req.request_id
    before = env.rows()
    with pytest.raises(error, match=match):
        env.access.check_ticket(ticket, action, SUBJECT, params)
    with pytest.raises(error, match=match), env.store.write() as conn:
        env.access.spend(conn, ticket, action, SUBJECT, params)
    assert env.rows() == before
    assert env.access.show_request(req.request_id).status == "pending"
