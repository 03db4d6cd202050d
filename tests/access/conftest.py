"""Fixtures for the access tests: a real store (SQLite file; PostgreSQL where a test asks for
``db_url``), a real audit log, a clock the test moves, and helpers that check the three things every
refusal must do: raise the right error, change no table, and leave a ``refused`` audit entry."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from sqlalchemy import func, select

from fabtrust.access import AUDIT_ACCESS, AccessService, Caller, Role
from fabtrust.errors import FabtrustError
from fabtrust.store.engine import Store, sqlite_url
from fabtrust.tlog.audit import AuditEntry, AuditLog, Outcome
from fabtrust.tlog.checkpoint import Ed25519NoteSigner
from fabtrust.tlog.log import MerkleLog
from tests.team import ACCESS_TABLES, access_rows

T0 = datetime(2031, 5, 4, 8, 0, 0, tzinfo=UTC)
ORIGIN = "test.fabtrust.local/access"
YEAR = timedelta(days=365)


class Clock:
    """Stands still until the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@dataclass
class Env:
    store: Store
    log: MerkleLog
    clock: Clock
    access: AccessService
    local: Caller

    def entries(self) -> list[AuditEntry]:
        return [AuditEntry.parse(e) for e in self.log.entries(0, self.log.size())]

    def last(self) -> AuditEntry:
        return AuditEntry.parse(self.log.entries(self.log.size() - 1, self.log.size())[0])

    def rows(self) -> dict[str, list[tuple[object, ...]]]:
        """Every row of every access table."""
        return access_rows(self.store)

    def counts(self) -> dict[str, int]:
        with self.store.read() as conn:
            return {
                t.name: conn.execute(select(func.count()).select_from(t)).scalar_one() for t in ACCESS_TABLES
            }

    def refused(
        self, act: Callable[[], object], error: type[FabtrustError], match: str, action: str
    ) -> AuditEntry:
        """``act`` raises ``error``; no access table changed; exactly one entry was added, a refusal."""
        before, size = self.rows(), self.log.size()
        with pytest.raises(error, match=match):
            act()
        assert self.rows() == before
        assert self.log.size() == size + 1
        entry = self.last()
        assert (entry.type, entry.action, entry.outcome) == (AUDIT_ACCESS, action, Outcome.REFUSED)
        assert entry.details["reason"] == error.code
        return entry

    # -- building a team ---------------------------------------------------------------------------

    def login(self, principal_id: str, *roles: Role, ttl: timedelta = timedelta(days=30)) -> Caller:
        """A token for ``principal_id`` (issued locally), authenticated."""
        scope = roles or tuple(self.access.roles_of(principal_id, self.clock.now))
        issued = self.access.issue_token(self.local, principal_id, scope, label="test", ttl=ttl)
        return self.access.authenticate(issued.token)

    def person(
        self,
        principal_id: str,
        role: Role,
        *,
        requester: Caller,
        officer: Caller,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
    ) -> str:
        """Create ``principal_id`` (if new) and grant it ``role`` through a role.grant approval;
        returns the grant id."""
        if principal_id not in {p.principal_id for p in self.access.principals()}:
            self.access.create_principal(requester, principal_id, principal_id.title())
        start = not_before or self.clock.now
        req = self.access.request_grant(requester, principal_id, role, start, not_after or start + YEAR)
        self.access.approve(officer, req.request_id, req.digest)
        return self.access.apply_grant(requester, req.request_id).grant_id


def make_env(url: str) -> Env:
    store = Store.open(url)
    clock = Clock(T0)
    log = MerkleLog.create(store, ORIGIN, Ed25519NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate()))
    access = AccessService(store, AuditLog(log, clock=clock), clock=clock)
    return Env(store, log, clock, access, Caller.local("keystore-holder"))


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    made = make_env(sqlite_url(tmp_path / "access.db"))
    yield made
    made.store.close()


@dataclass
class Team:
    """Bootstrapped: ada (administrator), oscar (security officer); then through approvals: olga and
    otto (security officers), sam and sue and sid (release signers), pia and pat (planners), fay
    (factory operator), aud (auditor). Each is a token-authenticated caller."""

    env: Env
    ada: Caller
    oscar: Caller
    olga: Caller
    otto: Caller
    sam: Caller
    sue: Caller
    sid: Caller
    pia: Caller
    pat: Caller
    fay: Caller
    aud: Caller


@pytest.fixture
def team(env: Env) -> Team:
    a, o = env.access.bootstrap("ada", "oscar", valid_for=YEAR, token_ttl=timedelta(days=30))
    ada, oscar = env.access.authenticate(a.token), env.access.authenticate(o.token)
    people = {
        "olga": Role.SECURITY_OFFICER,
        "otto": Role.SECURITY_OFFICER,
        "sam": Role.RELEASE_SIGNER,
        "sue": Role.RELEASE_SIGNER,
        "sid": Role.RELEASE_SIGNER,
        "pia": Role.PRODUCTION_PLANNER,
        "pat": Role.PRODUCTION_PLANNER,
        "fay": Role.FACTORY_OPERATOR,
        "aud": Role.AUDITOR,
    }
    for pid, role in people.items():
        env.person(pid, role, requester=ada, officer=oscar)
    callers = {pid: env.login(pid, role) for pid, role in people.items()}
    return Team(env, ada, oscar, **callers)
