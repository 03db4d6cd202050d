"""API tokens: issue, authenticate, expiry, revocation, scope narrowing, malformed strings, one
uniform error, and the secret nowhere but in the IssuedToken (not in the database file, the audit
log or a repr)."""

from __future__ import annotations

import base64
import hashlib
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from fabtrust.access import INVALID_CREDENTIALS, Caller, IssuedToken, Role
from fabtrust.access.service import PrincipalKind
from fabtrust.errors import Conflict, InvalidInput, NotAuthorised, NotFound, PolicyViolation
from fabtrust.store.tables import acc_tokens

from .conftest import Env, Team

DAY = timedelta(days=1)


def issue(env: Env, principal: str, *roles: Role, ttl: timedelta = DAY) -> IssuedToken:
    return env.access.issue_token(env.local, principal, roles, label="ci", ttl=ttl)


def refused_auth(env: Env, token: object) -> dict[str, object]:
    """``token`` is refused with the one uniform message and logged; returns the entry's details."""
    entry = env.refused(
        lambda: env.access.authenticate(token),
        NotAuthorised,
        "^invalid or expired credentials$",
        "token.authenticate",
    )  # type: ignore[arg-type]
    assert entry.details["message"] == INVALID_CREDENTIALS
    assert entry.actor == "anonymous"
    return dict(entry.details)


def test_issue_and_authenticate(team: Team) -> None:
    env = team.env
    issued = issue(env, "pia", Role.PRODUCTION_PLANNER, ttl=timedelta(days=90))
    assert issued.token.startswith(f"ftk_{issued.token_id}_")
    assert len(issued.token) == 64
    assert issued.expires_at == env.clock.now + timedelta(days=90)
    caller = env.access.authenticate(issued.token)
    assert caller == Caller(
        "pia", PrincipalKind.PERSON, frozenset({Role.PRODUCTION_PLANNER}), "token", issued.token_id
    )
    [row] = [t for t in env.access.tokens("pia") if t.token_id == issued.token_id]
    assert (row.roles, row.label, row.created_by, row.revoked_at) == (
        {Role.PRODUCTION_PLANNER},
        "ci",
        "keystore-holder",
        None,
    )
    entry = env.last()
    assert (entry.action, entry.details["issued_token_id"], entry.details["roles"]) == (
        "token.issue",
        issued.token_id,
        ["production-planner"],
    )


def test_a_token_expires(team: Team) -> None:
    env = team.env
    issued = issue(env, "pia", Role.PRODUCTION_PLANNER)
    env.clock.advance(DAY - timedelta(microseconds=1))
    env.access.authenticate(issued.token)
    env.clock.advance(timedelta(microseconds=1))
    details = refused_auth(env, issued.token)
    assert (details["why"], details["principal_id"]) == ("expired", "pia")


def test_a_revoked_token_and_a_disabled_principal_authenticate_to_nothing(team: Team) -> None:
    env = team.env
    one, two = issue(env, "pia", Role.PRODUCTION_PLANNER), issue(env, "pia", Role.PRODUCTION_PLANNER)
    pia = env.access.authenticate(one.token)
    assert env.access.revoke_token(pia, one.token_id).revoked_at == env.clock.now  # one's own token
    assert refused_auth(env, one.token)["why"] == "revoked"
    env.access.authenticate(two.token)
    env.access.disable_principal(team.ada, "pia")
    assert refused_auth(env, two.token)["why"] == "principal disabled"


def test_scope_narrows_and_follows_the_grants(team: Team) -> None:
    env = team.env
    env.person("pia", Role.AUDITOR, requester=team.ada, officer=team.oscar)
    both = issue(env, "pia", Role.PRODUCTION_PLANNER, Role.AUDITOR)
    only_audit = issue(env, "pia", Role.AUDITOR)
    assert env.access.authenticate(both.token).roles == {Role.PRODUCTION_PLANNER, Role.AUDITOR}
    assert env.access.authenticate(only_audit.token).roles == {Role.AUDITOR}
    gid = next(g.grant_id for g in env.access.grants("pia") if g.role is Role.AUDITOR)
    req = env.access.request_revoke(team.ada, gid)
    env.access.approve(team.oscar, req.request_id, req.digest)
    env.access.apply_revoke(team.ada, req.request_id)
    assert env.access.authenticate(both.token).roles == {Role.PRODUCTION_PLANNER}
    assert env.access.authenticate(only_audit.token).roles == frozenset()  # authenticated, may do nothing


def test_a_scope_beyond_the_grants_is_refused(team: Team) -> None:
    env = team.env
    env.refused(
        lambda: issue(env, "pia", Role.ADMINISTRATOR),
        PolicyViolation,
        "no current or future grant",
        "token.issue",
    )
    env.refused(lambda: issue(env, "pia"), InvalidInput, "at least one role", "token.issue")
    env.refused(
        lambda: issue(env, "pia", Role.PRODUCTION_PLANNER, ttl=timedelta(days=91)),
        InvalidInput,
        "90 days",
        "token.issue",
    )
    env.refused(lambda: issue(env, "ghost", Role.AUDITOR), NotFound, "no principal", "token.issue")


def test_own_tokens_need_no_permission_but_cannot_widen_the_scope(team: Team) -> None:
    env = team.env
    env.person("pia", Role.AUDITOR, requester=team.ada, officer=team.oscar)
    narrow = env.access.authenticate(issue(env, "pia", Role.AUDITOR).token)
    mine = env.access.issue_token(narrow, "pia", [Role.AUDITOR], label="laptop", ttl=DAY)
    assert env.access.authenticate(mine.token).roles == {Role.AUDITOR}
    env.refused(
        lambda: env.access.issue_token(narrow, "pia", [Role.PRODUCTION_PLANNER], label="wider", ttl=DAY),
        NotAuthorised,
        "wider",
        "token.issue",
    )


def test_others_tokens_need_access_token_manage(team: Team) -> None:
    env = team.env
    env.refused(
        lambda: env.access.issue_token(team.ada, "pia", [Role.PRODUCTION_PLANNER], label="x", ttl=DAY),
        NotAuthorised,
        "not permitted: access.token.manage",
        "access.token.manage",
    )
    issued = env.access.issue_token(team.oscar, "pia", [Role.PRODUCTION_PLANNER], label="x", ttl=DAY)
    env.refused(
        lambda: env.access.revoke_token(team.pat, issued.token_id),
        NotAuthorised,
        "access.token.manage",
        "access.token.manage",
    )
    env.access.revoke_token(team.oscar, issued.token_id)
    env.refused(
        lambda: env.access.revoke_token(team.oscar, issued.token_id),
        Conflict,
        "revoked already",
        "token.revoke",
    )
    env.refused(lambda: env.access.revoke_token(team.oscar, "0" * 16), NotFound, "no token", "token.revoke")


def _swap_secret(token: str) -> str:
    head, secret = token[:21], token[21:]
    return head + ("A" if secret[0] != "A" else "B") + secret[1:]


MALFORMED = {
    "empty": "",
    "prefix-only": "ftk_",
    "no-prefix": "0123456789abcdef_" + "A" * 43,
    "wrong-prefix": "ftx_0123456789abcdef_" + "A" * 43,
    "upper-prefix": "FTK_0123456789abcdef_" + "A" * 43,
    "upper-hex-id": "ftk_0123456789ABCDEF_" + "A" * 43,
    "short-id": "ftk_0123456789abcde_" + "A" * 44,
    "short-secret": "ftk_0123456789abcdef_" + "A" * 42,
    "long-secret": "ftk_0123456789abcdef_" + "A" * 44,
    "padded-secret": "ftk_0123456789abcdef_" + "A" * 42 + "=",
    "std-b64-chars": "ftk_0123456789abcdef_" + "+" * 43,
    "non-canonical-b64": "ftk_0123456789abcdef_" + "A" * 42 + "B",
    "space": "ftk_0123456789abcdef_" + "A" * 42 + " ",
    "newline": "ftk_0123456789abcdef_" + "A" * 42 + "\n",
    "non-ascii": "ftk_0123456789abcdef_" + "A" * 42 + "é",
    "bearer-prefix": "Bearer ftk_0123456789abcdef_" + "A" * 43,
    "huge": "ftk_" + "a" * 100_000,
    "none": None,
    "bytes": b"ftk_0123456789abcdef_" + b"A" * 43,
}


@pytest.mark.parametrize("token", list(MALFORMED.values()), ids=list(MALFORMED))
def test_malformed_tokens_get_the_uniform_answer(team: Team, token: object) -> None:
    details = refused_auth(team.env, token)
    assert details["why"] == "malformed"


def test_unknown_wrong_and_stale_tokens_get_the_same_answer(team: Team) -> None:
    env = team.env
    real = issue(env, "pia", Role.PRODUCTION_PLANNER)
    secret_ok = base64.urlsafe_b64encode(b"\x01" * 32).rstrip(b"=").decode()
    cases = {
        "unknown token": f"ftk_{'0' * 16}_{secret_ok}",
        "wrong secret": _swap_secret(real.token),
    }
    subjects = []
    for why, token in cases.items():
        with pytest.raises(NotAuthorised) as err:
            env.access.authenticate(token)
        assert err.value.message == INVALID_CREDENTIALS
        entry = env.last()
        assert entry.details["why"] == why
        subjects.append(entry.subject)
    assert subjects == [f"token:{'0' * 16}", f"token:{real.token_id}"]  # named by id, never by secret


def test_the_secret_is_never_stored_logged_or_shown(team: Team, tmp_path: Path) -> None:
    env = team.env
    issued = issue(env, "pia", Role.PRODUCTION_PLANNER)
    env.access.authenticate(issued.token)
    with pytest.raises(NotAuthorised):
        env.access.authenticate(_swap_secret(issued.token))
    env.access.revoke_token(team.oscar, issued.token_id)
    with pytest.raises(NotAuthorised):
        env.access.authenticate(issued.token)
    secret = issued.token.split("_")[2]
    digest = hashlib.sha256(issued.token.encode()).hexdigest()
    # the database stores the hash of the whole token string
    with env.store.read() as conn:
        stored = conn.execute(
            select(acc_tokens.c.token_hash).where(acc_tokens.c.token_id == issued.token_id)
        ).scalar()
    assert stored == digest
    # no file of the database holds the secret (WAL and shared memory included)
    env.store.close()
    files = list(tmp_path.glob("access.db*"))
    assert files
    assert all(secret.encode() not in f.read_bytes() for f in files)
    assert any(digest.encode() in f.read_bytes() for f in files)
    # the audit log holds neither the secret nor its hash, but names the token id
    log = b"".join(e.to_json() for e in env.entries())
    assert secret.encode() not in log
    assert digest.encode() not in log
    assert issued.token_id.encode() in log
    # nor does the repr
    for shown in (repr(issued), str(issued)):
        assert secret not in shown
        assert issued.token_id in shown


def test_callers_are_validated() -> None:
    with pytest.raises(InvalidInput, match="token id"):
        Caller("pia", PrincipalKind.PERSON, frozenset(), "token", None)
    with pytest.raises(InvalidInput, match="via"):
        Caller("pia", PrincipalKind.PERSON, frozenset(), "magic")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="unknown role"):
        Caller("pia", PrincipalKind.PERSON, frozenset({"root"}), "local")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="stations or devices"):
        Caller.certificate("pia")
    station = Caller.certificate("station:line-1")
    assert (station.kind, station.roles, station.via) == (
        PrincipalKind.STATION,
        {Role.STATION},
        "certificate",
    )
    assert Caller.certificate("device:SN1").roles == {Role.DEVICE}
