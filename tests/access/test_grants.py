"""Bootstrap, principals and time-bound grants: a role is held exactly while a grant is active
(not_before <= t < not_after, not revoked, principal not disabled), read through a moved clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fabtrust.access import AUDIT_ACCESS, Caller, Role
from fabtrust.access.service import PrincipalKind, parse_principal_id
from fabtrust.errors import Conflict, InvalidInput, NotAuthorised, NotFound, PolicyViolation
from fabtrust.tlog.audit import Outcome

from .conftest import T0, YEAR, Env, Team


def test_bootstrap_makes_one_administrator_and_one_officer(env: Env) -> None:
    admin, officer = env.access.bootstrap("ada", "oscar", valid_for=YEAR, token_ttl=timedelta(days=7))
    assert [(p.principal_id, p.kind) for p in env.access.principals()] == [
        ("ada", PrincipalKind.PERSON),
        ("oscar", PrincipalKind.PERSON),
    ]
    grants = {g.principal_id: g for g in env.access.grants()}
    assert {pid: (g.role, g.approval_id, g.not_after) for pid, g in grants.items()} == {
        "ada": (Role.ADMINISTRATOR, None, T0 + YEAR),
        "oscar": (Role.SECURITY_OFFICER, None, T0 + YEAR),
    }
    a, o = env.access.authenticate(admin.token), env.access.authenticate(officer.token)
    assert (a.principal_id, a.roles, a.via, a.token_id) == (
        "ada",
        {Role.ADMINISTRATOR},
        "token",
        admin.token_id,
    )
    assert (o.principal_id, o.roles) == ("oscar", {Role.SECURITY_OFFICER})
    assert admin.expires_at == T0 + timedelta(days=7)
    entry = env.last()
    assert (entry.type, entry.actor, entry.action, entry.outcome) == (
        AUDIT_ACCESS,
        "bootstrap",
        "bootstrap",
        Outcome.OK,
    )
    assert [p["token_id"] for p in entry.details["principals"]] == [admin.token_id, officer.token_id]


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (("ada", "ada", YEAR, YEAR / 10), InvalidInput, "two people"),
        (("station:s1", "oscar", YEAR, YEAR / 10), InvalidInput, "are people"),
        (("Ada", "oscar", YEAR, YEAR / 10), InvalidInput, "principal id"),
        (("ada", "oscar", timedelta(days=401), YEAR / 10), InvalidInput, "at most 400 days"),
        (("ada", "oscar", YEAR, timedelta(days=91)), InvalidInput, "at most 90 days"),
        (("ada", "oscar", YEAR, timedelta(0)), InvalidInput, "above zero"),
    ],
    ids=["same-person", "station", "bad-id", "grant-too-long", "token-too-long", "token-zero"],
)
def test_bad_bootstrap_input_is_refused(
    env: Env, args: tuple[str, str, timedelta, timedelta], error: type[Exception], match: str
) -> None:
    admin, officer, valid, ttl = args
    env.refused(
        lambda: env.access.bootstrap(admin, officer, valid_for=valid, token_ttl=ttl),
        error,  # type: ignore[arg-type]
        match,
        "bootstrap",
    )


def test_bootstrap_runs_once(env: Env) -> None:
    env.access.bootstrap("ada", "oscar", valid_for=YEAR, token_ttl=timedelta(days=7))
    env.refused(
        lambda: env.access.bootstrap("eve", "mal", valid_for=YEAR, token_ttl=timedelta(days=7)),
        Conflict,
        "set up already",
        "bootstrap",
    )


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("alice", PrincipalKind.PERSON),
        ("a.b_c-9", PrincipalKind.PERSON),
        ("a" * 64, PrincipalKind.PERSON),
        ("station:line-1", PrincipalKind.STATION),
        ("device:SN-0001.A", PrincipalKind.DEVICE),
    ],
    ids=["plain", "punctuation", "longest", "station", "device"],
)
def test_principal_ids_parse(value: str, kind: PrincipalKind) -> None:
    assert parse_principal_id(value) == (value, kind)


@pytest.mark.parametrize(
    "value",
    ["", "Alice", "9lives", "a" * 65, "alice ", "al ice", "station:", "station:Line", "robot:x", "device:-x",
     "alice\n", None, 7, "ståle"],
    ids=["empty", "upper", "digit-first", "too-long", "trailing-space", "space", "empty-station",
         "upper-station", "other-prefix", "device-dash", "newline", "none", "int", "non-ascii"],
)  # fmt: skip
def test_bad_principal_ids_are_refused(value: object) -> None:
    with pytest.raises(InvalidInput, match="principal id"):
        parse_principal_id(value)


def test_creating_and_disabling_principals(team: Team) -> None:
    env, ada = team.env, team.ada
    station = env.access.create_principal(ada, "station:line-1", "Line 1")
    assert (station.kind, station.created_by, station.disabled_at) == (PrincipalKind.STATION, "ada", None)
    env.refused(
        lambda: env.access.create_principal(ada, "station:line-1", "again"),
        Conflict,
        "exists",
        "principal.create",
    )
    env.refused(
        lambda: env.access.create_principal(ada, "bob", "two\nlines"),
        InvalidInput,
        "label",
        "principal.create",
    )
    env.refused(
        lambda: env.access.create_principal(team.aud, "bob", "Bob"), NotAuthorised, "access.principal.manage",
        "access.principal.manage",
    )  # fmt: skip
    env.clock.advance(timedelta(hours=1))
    assert env.access.roles_of("fay", env.clock.now) == {Role.FACTORY_OPERATOR}
    disabled = env.access.disable_principal(ada, "fay")
    assert disabled.disabled_at == env.clock.now
    assert env.access.roles_of("fay", env.clock.now) == frozenset()
    env.refused(
        lambda: env.access.disable_principal(ada, "fay"), Conflict, "disabled already", "principal.disable"
    )
    env.refused(
        lambda: env.access.disable_principal(ada, "nobody"), NotFound, "no principal", "principal.disable"
    )


def test_a_grant_is_active_from_not_before_until_just_before_not_after(team: Team) -> None:
    env = team.env
    start, end = T0 + timedelta(days=10), T0 + timedelta(days=20)
    env.access.create_principal(team.ada, "carl", "Carl")
    gid = env.person(
        "carl", Role.AUDITOR, requester=team.ada, officer=team.oscar, not_before=start, not_after=end
    )
    at = env.access.roles_of
    assert at("carl", T0) == frozenset()
    assert at("carl", start - timedelta(microseconds=1)) == frozenset()
    assert at("carl", start) == {Role.AUDITOR}
    assert at("carl", end - timedelta(microseconds=1)) == {Role.AUDITOR}
    assert at("carl", end) == frozenset()
    grant = next(g for g in env.access.grants("carl") if g.grant_id == gid)
    assert grant.approval_id is not None
    assert grant.granted_by == "ada"
    assert grant.active_at(start)
    assert not grant.active_at(end)
    # a future grant already lets a token name the role; the token gives it only once active
    token = env.access.issue_token(env.local, "carl", [Role.AUDITOR], label="early", ttl=timedelta(days=30))
    assert env.access.authenticate(token.token).roles == frozenset()
    env.clock.now = start
    assert env.access.authenticate(token.token).roles == {Role.AUDITOR}


def test_a_revoked_grant_and_a_disabled_principal_hold_nothing(team: Team) -> None:
    env = team.env
    gid = next(g.grant_id for g in env.access.grants("sam"))
    env.clock.advance(timedelta(days=1))
    assert env.access.roles_of("sam", env.clock.now) == {Role.RELEASE_SIGNER}
    req = env.access.request_revoke(team.ada, gid)
    env.access.approve(team.olga, req.request_id, req.digest)
    env.clock.advance(timedelta(minutes=1))
    revoked = env.access.apply_revoke(team.ada, req.request_id)
    assert (revoked.revoked_at, revoked.revoked_by) == (env.clock.now, "ada")
    assert env.access.roles_of("sam", env.clock.now) == frozenset()
    # a revoked grant counts for no time at all, earlier times included
    assert env.access.roles_of("sam", env.clock.now - timedelta(minutes=2)) == frozenset()
    entry = env.last()
    assert (entry.action, entry.details["grant_id"], entry.details["request_id"]) == (
        "grant.revoke",
        gid,
        req.request_id,
    )


@pytest.mark.parametrize(
    ("principal", "role", "days", "error", "match"),
    [
        ("pia", "root", 10, InvalidInput, "unknown role"),
        ("pia", Role.STATION, 10, InvalidInput, "cannot hold the role station"),
        ("pia", Role.AUDITOR, 401, InvalidInput, "at most 400 days"),
        ("pia", Role.AUDITOR, 0, InvalidInput, "later than"),
        ("nobody", Role.AUDITOR, 10, NotFound, "no principal"),
    ],
    ids=["unknown-role", "person-as-station", "too-long", "empty-window", "unknown-principal"],
)
def test_bad_grant_requests_are_refused(
    team: Team, principal: str, role: Role, days: int, error: type[Exception], match: str
) -> None:
    env, now = team.env, team.env.clock.now
    env.refused(
        lambda: env.access.request_grant(team.ada, principal, role, now, now + timedelta(days=days)),
        error,  # type: ignore[arg-type]
        match,
        "approval.request",
    )


def test_naive_times_are_refused(team: Team) -> None:
    env = team.env
    naive = T0.replace(tzinfo=None)
    env.refused(
        lambda: env.access.request_grant(team.ada, "pia", Role.AUDITOR, naive, naive + YEAR),
        InvalidInput,
        "time zone-aware",
        "approval.request",
    )
    with pytest.raises(InvalidInput, match="time zone-aware"):
        env.access.roles_of("pia", naive)


def test_a_grant_to_a_disabled_principal_is_refused_when_applied(team: Team) -> None:
    env = team.env
    env.access.create_principal(team.ada, "carl", "Carl")
    req = env.access.request_grant(team.ada, "carl", Role.AUDITOR, env.clock.now, env.clock.now + YEAR)
    env.access.approve(team.oscar, req.request_id, req.digest)
    env.access.disable_principal(team.ada, "carl")
    env.refused(
        lambda: env.access.apply_grant(team.ada, req.request_id), PolicyViolation, "disabled", "grant.create"
    )
    assert env.access.show_request(req.request_id).status == "pending"  # the refusal spent nothing


def test_a_local_caller_holds_every_role_and_is_logged_as_local(env: Env) -> None:
    local = Caller.local("root-holder")
    assert local.roles == set(Role)
    assert local.via == "local"
    assert local.token_id is None
    env.access.create_principal(local, "carl", "Carl")
    entry = env.last()
    assert (entry.actor, entry.action, entry.details["via"]) == ("root-holder", "principal.create", "local")
