"""Races, on SQLite and on a real PostgreSQL server, between two service instances with their own
engines (two API replicas on one database): an approved request executed twice at once runs once;
two bootstraps at once make one set of principals."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from fabtrust.access import AccessService, ApprovalAction, Caller, Role
from fabtrust.errors import Conflict
from fabtrust.store.engine import Store
from fabtrust.tlog.audit import AuditEntry, AuditLog, Outcome
from fabtrust.tlog.checkpoint import Ed25519NoteSigner
from fabtrust.tlog.log import MerkleLog

from .conftest import ORIGIN, T0, YEAR, Clock

ROUNDS = 4


@pytest.fixture
def replicas(db_url: str) -> Iterator[tuple[AccessService, AccessService, MerkleLog]]:
    signer = Ed25519NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate())
    clock = Clock(T0)
    first = Store.open(db_url)
    log = MerkleLog.create(first, ORIGIN, signer)
    second = Store.open(db_url)
    other_log = MerkleLog(second, ORIGIN, signer)
    yield (
        AccessService(first, AuditLog(log, clock=clock), clock=clock),
        AccessService(second, AuditLog(other_log, clock=clock), clock=clock),
        log,
    )
    first.close()
    second.close()


def race(calls: list[Callable[[], object]]) -> tuple[list[object], list[BaseException]]:
    barrier = threading.Barrier(len(calls))
    results: list[object] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(call: Callable[[], object]) -> None:
        barrier.wait()
        try:
            got = call()
        except BaseException as exc:
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(got)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return results, errors


def test_an_approved_request_executes_once(replicas: tuple[AccessService, AccessService, MerkleLog]) -> None:
    a, b, log = replicas
    admin, officer = a.bootstrap("ada", "oscar", valid_for=YEAR, token_ttl=timedelta(days=1))
    ada, oscar = a.authenticate(admin.token), a.authenticate(officer.token)
    local = Caller.local("keystore-holder")
    a.create_principal(ada, "olga", "Olga")
    grant = a.request_grant(ada, "olga", Role.SECURITY_OFFICER, T0, T0 + YEAR)
    a.approve(oscar, grant.request_id, grant.digest)
    a.apply_grant(ada, grant.request_id)
    olga = a.authenticate(
        a.issue_token(local, "olga", [Role.SECURITY_OFFICER], label="t", ttl=timedelta(days=1)).token
    )
    for n in range(ROUNDS):
        subject = f"ca:product-{n}"
        req = a.request(oscar, ApprovalAction.CA_REVOKE, subject, {"reason": "keyCompromise"})
        a.approve(olga, req.request_id, req.digest)

        def execute(service: AccessService, rid: str = req.request_id, subj: str = subject) -> object:
            return service.execute(oscar, rid, action=ApprovalAction.CA_REVOKE, subject=subj)

        results, errors = race([lambda: execute(a), lambda: execute(b)])
        assert len(results) == 1, errors
        assert len(errors) == 1, errors
        assert isinstance(errors[0], Conflict), errors
        assert b.show_request(req.request_id).status == "executed"
    entries = [e for e in (log.entries(0, log.size())) if b'"approval.execute"' in e]
    ok = [e for e in entries if b'"outcome":"ok"' in e]
    refused = [e for e in entries if b'"outcome":"refused"' in e]
    assert (len(ok), len(refused)) == (ROUNDS, ROUNDS)


def test_two_bootstraps_make_one_set_of_principals(
    replicas: tuple[AccessService, AccessService, MerkleLog],
) -> None:
    a, b, log = replicas
    results, errors = race(
        [
            lambda: a.bootstrap("ada", "oscar", valid_for=YEAR, token_ttl=timedelta(days=1)),
            lambda: b.bootstrap("eve", "mal", valid_for=YEAR, token_ttl=timedelta(days=1)),
        ]
    )
    assert len(results) == 1
    assert len(errors) == 1
    assert isinstance(errors[0], Conflict), errors
    assert len(a.principals()) == 2
    assert len(a.grants()) == 2
    outcomes = sorted(
        AuditEntry.parse(e).outcome.value
        for e in log.entries(0, log.size())
        if AuditEntry.parse(e).action == "bootstrap"
    )
    assert outcomes == [Outcome.OK.value, Outcome.REFUSED.value]  # the loser's refusal is logged
