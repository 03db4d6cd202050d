"""Principals, time-bound role grants, API tokens and k-of-n approvals, persisted and audited.

**Callers.** Every operation takes the acting :class:`Caller`: a principal with the roles it holds
*now*, and how it came (``token``, ``certificate``, ``local``). :meth:`AccessService.authenticate`
turns an API token into a caller; the API layer makes certificate callers with
:meth:`Caller.certificate` once it has verified the certificate; :meth:`Caller.local` is the holder
of a data home's key-store passphrase working directly on it, who holds every role (they hold every
key, so no rule here could stop them) and is logged as ``via: local``. A local caller cannot
*approve*: approvals count people with grants, and the key-store holder is not a quorum.

**Grants** give a principal a role from ``not_before`` until ``not_after`` (both required, at most
``max_grant`` apart). A role is held at time *t* while a grant is active (``not_before <= t <
not_after``, not revoked) and the principal is not disabled. Grants are made and revoked only
through approvals (``role.grant``, ``role.revoke``), except the two of :meth:`bootstrap`.
Disabling a principal (``access.principal.manage``) is immediate: the emergency brake.

**Tokens** are ``ftk_<token_id>_<secret>`` (16 hex digits, then 43 characters of URL-safe base64
of 32 random bytes). Only the SHA-256 of the whole string is stored; the string is shown once, in
the :class:`IssuedToken`. A token's roles are its scope: a subset of the roles its principal holds
or will hold when it is issued; at each use the caller's roles are the scope intersected with the
roles held then. Any principal may issue and revoke its own tokens (never wider than the token it
came with); another's need ``access.token.manage``. Every failure to authenticate is the same
``NotAuthorised("invalid or expired credentials")``; the audit entry names the token id when the
string has one, never the secret. Successful authentications are not logged (they are not acts;
the act the caller then does is).

**Approvals.** :meth:`AccessService.request` records what is asked (action, subject, parameters)
with the policy's threshold and eligible role of that moment, and the SHA-256 (``digest``) of the
request statement (canonical JSON, RFC 8785)::

    {"format": "fabtrust.approval-request/v1", "action": ..., "subject": ..., "parameters": {...},
     "requested_by": ..., "created_at": ..., "expires_at": ..., "threshold": k,
     "eligible_role": ...}

Asking needs ``approval.request`` and the permission of the act itself (one asks only for what one
may carry out). An approver names the digest they reviewed; the requester never approves their own
request, nobody approves twice, and only principals with an active grant of the eligible role (and
that role in their token's scope) may. :meth:`execute` is done once, by a caller holding the act's
permission, about to do exactly that action on that subject: at that moment at least k approvers
must *still* hold the eligible role. It is one conditional ``UPDATE ... WHERE status = 'pending'``
checked by its row count, so two executions race to one winner on SQLite and PostgreSQL. The
caller acts after ``execute`` returns; if its act then fails, the request is spent (fail closed).

Every act and every refusal is one audit entry (``fabtrust.audit.access/v1``); a refusal changes
nothing else. Secrets and token hashes never enter the log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Final, Literal

from sqlalchemy import ColumnElement, Connection, and_, delete, func, insert, select, update

from fabtrust.access.policy import (
    ACTION_PERMISSIONS,
    DEFAULT_APPROVAL_POLICIES,
    PERSON_ROLES,
    ApprovalAction,
    ApprovalPolicy,
    Permission,
    Role,
    parse_action,
    parse_role,
    require,
)
from fabtrust.clock import Clock, parse_rfc3339, rfc3339, system_clock
from fabtrust.crypto.canonical import canonical_json, parse_canonical
from fabtrust.errors import (
    Conflict,
    FabtrustError,
    InvalidInput,
    NotAuthorised,
    NotFound,
    PolicyViolation,
    VerificationFailed,
)
from fabtrust.store.engine import Store
from fabtrust.store.tables import (
    acc_approval_policies,
    acc_approval_requests,
    acc_approvals,
    acc_grants,
    acc_principals,
    acc_tokens,
)
from fabtrust.tlog.audit import AuditLog, Outcome

AUDIT_ACCESS: Final = "fabtrust.audit.access/v1"
REQUEST_FORMAT: Final = "fabtrust.approval-request/v1"
TOKEN_PREFIX: Final = "ftk_"  # noqa: S105 (the token format, not a secret)
#: The one message of every failed authentication: no oracle for which part was wrong.
INVALID_CREDENTIALS: Final = "invalid or expired credentials"
DEFAULT_MAX_GRANT: Final = timedelta(days=400)
DEFAULT_MAX_TOKEN_TTL: Final = timedelta(days=90)
MAX_PARAMETERS: Final = 16 * 1024
BOOTSTRAP_ACTOR: Final = "bootstrap"

_TOKEN_RE = re.compile(r"ftk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_TOKEN_ID_RE = re.compile(r"ftk_([0-9a-f]{16})_")
_TOKEN_LENGTH = 4 + 16 + 1 + 43
_HEX16 = re.compile(r"[0-9a-f]{16}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PERSON_ID = re.compile(r"[a-z][a-z0-9._-]{0,63}")
_STATION_ID = re.compile(r"station:[a-z0-9][a-z0-9-]{0,63}")
_DEVICE_ID = re.compile(r"device:[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ACTOR = re.compile(r"[\x21-\x7e]{1,128}")
_SUBJECT = re.compile(r"[a-z][a-z0-9-]{0,31}:[\x21-\x7e]{1,200}")
_LABEL = re.compile(r"[^\x00-\x1f\x7f]{1,128}")


class PrincipalKind(StrEnum):
    PERSON = "person"
    STATION = "station"
    DEVICE = "device"


#: The roles each kind of principal may hold.
KIND_ROLES: Final[Mapping[PrincipalKind, frozenset[Role]]] = MappingProxyType(
    {
        PrincipalKind.PERSON: PERSON_ROLES,
        PrincipalKind.STATION: frozenset({Role.STATION}),
        PrincipalKind.DEVICE: frozenset({Role.DEVICE}),
    }
)

Via = Literal["token", "certificate", "local"]
_VIAS: Final = ("token", "certificate", "local")


# ---------------------------------------------------------------------------------------------------
# parsing (pure)


def parse_principal_id(value: object) -> tuple[str, PrincipalKind]:
    """A principal id and its kind: a person ``[a-z][a-z0-9._-]{0,63}``, ``station:<station id>``
    or ``device:<serial>``. InvalidInput otherwise."""
    if isinstance(value, str):
        if _PERSON_ID.fullmatch(value):
            return value, PrincipalKind.PERSON
        if _STATION_ID.fullmatch(value):
            return value, PrincipalKind.STATION
        if _DEVICE_ID.fullmatch(value):
            return value, PrincipalKind.DEVICE
    raise InvalidInput(
        "a principal id is 1-64 of a-z 0-9 . _ - starting with a letter (people), "
        "station:<station id> or device:<serial>"
    )


def _aware(name: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{name} must be a time zone-aware time")
    return value.astimezone(UTC)


def _duration(name: str, value: object, limit: timedelta) -> timedelta:
    if not isinstance(value, timedelta) or not timedelta(0) < value <= limit:
        raise InvalidInput(f"{name} must be a duration above zero and at most {limit.days} days")
    return value


def _check_subject(value: object) -> str:
    if not isinstance(value, str) or not _SUBJECT.fullmatch(value):
        raise InvalidInput(
            "an approval subject is <kind>:<id> (printable ASCII, no spaces, 1-200 characters)"
        )
    return value


def _check_label(value: object) -> str:
    if not isinstance(value, str) or not _LABEL.fullmatch(value) or value != value.strip():
        raise InvalidInput("a label is 1-128 characters on one line, without surrounding spaces")
    return value


def _check_id(name: str, value: object, pattern: re.Pattern[str]) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidInput(f"{name} is malformed")
    return value


def _safe(prefix: str, value: object) -> str:
    """An audit subject naming ``value`` when it is printable, a placeholder when it is not."""
    if isinstance(value, str) and re.fullmatch(r"[\x21-\x7e]{1,200}", value):
        return f"{prefix}:{value}"
    return f"{prefix}:-"


def _audit_text(value: object) -> str:
    """``value`` as an audit subject when it is one line of at most 255 printable characters."""
    if isinstance(value, str) and re.fullmatch(r"[^\x00-\x1f\x7f]{1,255}", value) and value.strip():
        return value
    return "-"


def _parse_roles(values: Iterable[object]) -> frozenset[Role]:
    if isinstance(values, str | bytes):
        raise InvalidInput("roles must be a list of role names")
    return frozenset(parse_role(v) for v in values)


def _sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def request_statement(
    *,
    action: ApprovalAction,
    subject: str,
    parameters: Mapping[str, Any],
    requested_by: str,
    created_at: datetime,
    expires_at: datetime,
    threshold: int,
    eligible_role: Role,
) -> bytes:
    """The canonical JSON (RFC 8785) of a ``fabtrust.approval-request/v1`` statement: what an
    approver reviews, and whose SHA-256 they name."""
    return canonical_json(
        {
            "format": REQUEST_FORMAT,
            "action": ApprovalAction(action).value,
            "subject": subject,
            "parameters": dict(parameters),
            "requested_by": requested_by,
            "created_at": rfc3339(created_at),
            "expires_at": rfc3339(expires_at),
            "threshold": threshold,
            "eligible_role": Role(eligible_role).value,
        }
    )


# ---------------------------------------------------------------------------------------------------
# values


@dataclass(frozen=True)
class Caller:
    """Who is acting, with the roles they hold now and how they came."""

    principal_id: str
    kind: PrincipalKind
    roles: frozenset[Role]
    via: Via
    token_id: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.principal_id, str) or not _ACTOR.fullmatch(self.principal_id):
            raise InvalidInput("a caller's id is 1-128 printable characters without spaces")
        try:
            object.__setattr__(self, "kind", PrincipalKind(self.kind))
        except ValueError:
            raise InvalidInput(f"a caller is one of: {', '.join(PrincipalKind)}") from None
        object.__setattr__(self, "roles", _parse_roles(self.roles))
        if self.via not in _VIAS:
            raise InvalidInput(f"a caller comes via one of {', '.join(_VIAS)}")
        if (self.via == "token") != (self.token_id is not None):
            raise InvalidInput("a caller names a token id when, and only when, it came with a token")
        if self.token_id is not None:
            _check_id("token id", self.token_id, _HEX16)

    @classmethod
    def local(cls, actor: str) -> Caller:
        """The holder of the data home's key-store passphrase, working directly on it (CLI). They
        hold every key, so they get every role; their acts are logged with ``via: local``."""
        return cls(actor, PrincipalKind.PERSON, frozenset(Role), "local")

    @classmethod
    def certificate(cls, principal_id: str) -> Caller:
        """A station (``station:<id>``) or device (``device:<serial>``) whose client certificate the
        API layer has verified (chain, revocation, lifecycle): it holds its kind's one role."""
        pid, kind = parse_principal_id(principal_id)
        if kind is PrincipalKind.PERSON:
            raise InvalidInput("certificate callers are stations or devices")
        return cls(pid, kind, KIND_ROLES[kind], "certificate")

    @property
    def audit_details(self) -> dict[str, Any]:
        details: dict[str, Any] = {"via": self.via}
        if self.token_id is not None:
            details["token_id"] = self.token_id
        return details


@dataclass(frozen=True)
class IssuedToken:
    """A new API token: ``token`` is shown this once and never stored."""

    token: str = field(repr=False)
    token_id: str
    expires_at: datetime

    def __repr__(self) -> str:
        return f"IssuedToken(token_id={self.token_id!r}, expires_at={rfc3339(self.expires_at)!r})"


@dataclass(frozen=True)
class Principal:
    principal_id: str
    kind: PrincipalKind
    display_name: str
    created_at: datetime
    created_by: str
    disabled_at: datetime | None

    def to_doc(self) -> dict[str, Any]:
        return {
            "principal_id": self.principal_id,
            "kind": self.kind.value,
            "display_name": self.display_name,
            "created_at": rfc3339(self.created_at),
            "created_by": self.created_by,
            "disabled_at": _opt_time(self.disabled_at),
        }


@dataclass(frozen=True)
class Grant:
    grant_id: str
    principal_id: str
    role: Role
    not_before: datetime
    not_after: datetime
    granted_by: str
    granted_at: datetime
    approval_id: str | None  # None: a bootstrap grant
    revoked_at: datetime | None
    revoked_by: str | None

    def active_at(self, at: datetime) -> bool:
        """The grant alone (the principal may be disabled: see ``AccessService.roles_of``)."""
        return self.revoked_at is None and self.not_before <= at < self.not_after

    def to_doc(self) -> dict[str, Any]:
        return {
            "grant_id": self.grant_id,
            "principal_id": self.principal_id,
            "role": self.role.value,
            "not_before": rfc3339(self.not_before),
            "not_after": rfc3339(self.not_after),
            "granted_by": self.granted_by,
            "granted_at": rfc3339(self.granted_at),
            "approval_id": self.approval_id,
            "revoked_at": _opt_time(self.revoked_at),
            "revoked_by": self.revoked_by,
        }


@dataclass(frozen=True)
class Token:
    """A token as stored: its scope and lifetime, never its secret or hash."""

    token_id: str
    principal_id: str
    roles: frozenset[Role]
    label: str
    created_at: datetime
    created_by: str
    expires_at: datetime
    revoked_at: datetime | None

    def to_doc(self) -> dict[str, Any]:
        return {
            "token_id": self.token_id,
            "principal_id": self.principal_id,
            "roles": sorted(r.value for r in self.roles),
            "label": self.label,
            "created_at": rfc3339(self.created_at),
            "created_by": self.created_by,
            "expires_at": rfc3339(self.expires_at),
            "revoked_at": _opt_time(self.revoked_at),
        }


@dataclass(frozen=True)
class Approval:
    principal_id: str
    digest: str
    approved_at: datetime


class RequestStatus(StrEnum):
    PENDING = "pending"
    EXECUTED = "executed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class ApprovalRequest:
    request_id: str
    action: ApprovalAction
    subject: str
    parameters: Mapping[str, Any]
    digest: str
    requested_by: str
    created_at: datetime
    expires_at: datetime
    threshold: int
    eligible_role: Role
    status: RequestStatus
    executed_at: datetime | None
    executed_by: str | None
    cancelled_at: datetime | None
    cancelled_by: str | None
    approvals: tuple[Approval, ...]

    @property
    def statement(self) -> bytes:
        """The request statement an approver reviews; its SHA-256 is ``digest``."""
        return request_statement(
            action=self.action,
            subject=self.subject,
            parameters=self.parameters,
            requested_by=self.requested_by,
            created_at=self.created_at,
            expires_at=self.expires_at,
            threshold=self.threshold,
            eligible_role=self.eligible_role,
        )

    def to_doc(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "action": self.action.value,
            "subject": self.subject,
            "parameters": dict(self.parameters),
            "digest": self.digest,
            "requested_by": self.requested_by,
            "created_at": rfc3339(self.created_at),
            "expires_at": rfc3339(self.expires_at),
            "threshold": self.threshold,
            "eligible_role": self.eligible_role.value,
            "status": self.status.value,
            "executed_at": _opt_time(self.executed_at),
            "executed_by": self.executed_by,
            "cancelled_at": _opt_time(self.cancelled_at),
            "cancelled_by": self.cancelled_by,
            "approvals": [
                {"principal_id": a.principal_id, "digest": a.digest, "approved_at": rfc3339(a.approved_at)}
                for a in self.approvals
            ],
        }


@dataclass(frozen=True)
class ApprovalTicket:
    """What a caller presents to carry out an act gated by an approval: the approved request's id,
    and the access service that spends it (:meth:`AccessService.spend`) inside the act's own write
    transaction, so the request is consumed if and only if the act commits."""

    access: AccessService
    caller: Caller
    request_id: str

    def spend(
        self, conn: Connection, action: ApprovalAction, subject: str, parameters: Mapping[str, Any]
    ) -> ApprovalRequest:
        return self.access.spend(conn, self, action, subject, parameters)


def _opt_time(value: datetime | None) -> str | None:
    return None if value is None else rfc3339(value)


class _BadCredentials(Exception):
    """Internal: why a token was refused (logged, never shown)."""

    def __init__(self, why: str, principal_id: str | None = None) -> None:
        super().__init__(why)
        self.why, self.principal_id = why, principal_id


# ---------------------------------------------------------------------------------------------------
# the service


class AccessService:
    """Principals, grants, tokens and approvals of one data home."""

    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        *,
        clock: Clock = system_clock,
        max_grant: timedelta = DEFAULT_MAX_GRANT,
        max_token_ttl: timedelta = DEFAULT_MAX_TOKEN_TTL,
    ) -> None:
        if not isinstance(max_grant, timedelta) or max_grant <= timedelta(0):
            raise InvalidInput("the longest grant must be a positive duration")
        if not isinstance(max_token_ttl, timedelta) or max_token_ttl <= timedelta(0):
            raise InvalidInput("the longest token lifetime must be a positive duration")
        self._store, self._audit, self._clock = store, audit, clock
        self._max_grant, self._max_token_ttl = max_grant, max_token_ttl

    # -- logging -----------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return _aware("the clock", self._clock())

    def _log_in(
        self, conn: Connection, caller: Caller | str, action: str, subject: str, **details: Any
    ) -> None:
        """An act's entry, inside the act's own write transaction: both commit or neither."""
        actor, extra = (
            (caller, {}) if isinstance(caller, str) else (caller.principal_id, caller.audit_details)
        )
        entry = self._audit.entry(AUDIT_ACCESS, actor, action, subject, Outcome.OK, {**extra, **details})
        self._audit.append([entry], conn=conn)

    def _refused(
        self, caller: Caller | str, action: str, subject: str, exc: FabtrustError, **details: Any
    ) -> None:
        actor, extra = (
            (caller, {}) if isinstance(caller, str) else (caller.principal_id, caller.audit_details)
        )
        self._audit.record(
            AUDIT_ACCESS,
            actor,
            action,
            subject,
            Outcome.REFUSED,
            {**extra, "reason": exc.code, "message": exc.message, **details},
        )

    # -- authorisation -----------------------------------------------------------------------------

    def authorize(self, caller: Caller, permission: Permission, subject: str) -> None:
        """Raise NotAuthorised (naming the permission) unless the caller's roles grant it; a refusal
        is logged here (actor, the permission as action, subject). Allowed acts are logged by the
        service that does them."""
        if not isinstance(caller, Caller):
            raise InvalidInput("authorize needs a Caller")
        subject = _audit_text(subject)
        try:
            require(caller.roles, permission)
        except NotAuthorised as exc:
            self._refused(caller, Permission(permission).value, subject, exc)
            raise

    # -- bootstrap ---------------------------------------------------------------------------------

    def bootstrap(
        self, admin_id: str, officer_id: str, *, valid_for: timedelta, token_ttl: timedelta
    ) -> tuple[IssuedToken, IssuedToken]:
        """The first two people of an empty home: an administrator and a security officer, each
        with a grant (no approval: there is nobody to approve yet, logged as bootstrap) and one
        token scoped to that role. Conflict once any principal exists."""
        subject = "access:bootstrap"
        try:
            admin, admin_kind = parse_principal_id(admin_id)
            officer, officer_kind = parse_principal_id(officer_id)
            if admin_kind is not PrincipalKind.PERSON or officer_kind is not PrincipalKind.PERSON:
                raise InvalidInput("the bootstrap administrator and security officer are people")
            if admin == officer:
                raise InvalidInput("the administrator and the security officer must be two people")
            valid_for = _duration("a bootstrap grant's validity", valid_for, self._max_grant)
            token_ttl = _duration("a bootstrap token's lifetime", token_ttl, self._max_token_ttl)
            now = self._now()
            with self._store.write() as conn:
                if (
                    self._store.dialect == "postgresql"
                ):  # two bootstraps race to one (SQLite: BEGIN IMMEDIATE)
                    conn.exec_driver_sql("LOCK TABLE acc_principals IN SHARE ROW EXCLUSIVE MODE")
                if conn.execute(select(func.count()).select_from(acc_principals)).scalar_one():
                    raise Conflict("access control is set up already: bootstrap runs only on an empty home")
                issued, logged = [], []
                for pid, role in ((admin, Role.ADMINISTRATOR), (officer, Role.SECURITY_OFFICER)):
                    conn.execute(
                        insert(acc_principals).values(
                            principal_id=pid,
                            kind=PrincipalKind.PERSON.value,
                            display_name=pid,
                            created_at=now,
                            created_by=BOOTSTRAP_ACTOR,
                            disabled_at=None,
                        )
                    )
                    grant_id = secrets.token_hex(16)
                    conn.execute(
                        insert(acc_grants).values(
                            grant_id=grant_id,
                            principal_id=pid,
                            role=role.value,
                            not_before=now,
                            not_after=now + valid_for,
                            granted_by=BOOTSTRAP_ACTOR,
                            granted_at=now,
                            approval_id=None,
                            revoked_at=None,
                            revoked_by=None,
                        )
                    )
                    token = self._insert_token(
                        conn,
                        pid,
                        frozenset({role}),
                        f"bootstrap {role.value}",
                        BOOTSTRAP_ACTOR,
                        now,
                        token_ttl,
                    )
                    issued.append(token)
                    logged.append(
                        {
                            "principal_id": pid,
                            "role": role.value,
                            "grant_id": grant_id,
                            "token_id": token.token_id,
                        }
                    )
                self._log_in(
                    conn,
                    BOOTSTRAP_ACTOR,
                    "bootstrap",
                    subject,
                    principals=logged,
                    not_after=rfc3339(now + valid_for),
                    token_expires_at=rfc3339(now + token_ttl),
                )
        except FabtrustError as exc:
            self._refused(BOOTSTRAP_ACTOR, "bootstrap", subject, exc)
            raise
        return issued[0], issued[1]

    # -- principals --------------------------------------------------------------------------------

    def create_principal(self, caller: Caller, principal_id: str, display_name: str) -> Principal:
        """A person (plain id), a station (``station:<id>``) or a device (``device:<serial>``)."""
        subject = _safe("principal", principal_id)
        self.authorize(caller, Permission.ACCESS_PRINCIPAL_MANAGE, subject)
        try:
            pid, kind = parse_principal_id(principal_id)
            name = _check_label(display_name)
            now = self._now()
            with self._store.write() as conn:
                if _principal_row(conn, pid, missing_ok=True) is not None:
                    raise Conflict(f"principal {pid} exists already")
                conn.execute(
                    insert(acc_principals).values(
                        principal_id=pid,
                        kind=kind.value,
                        display_name=name,
                        created_at=now,
                        created_by=caller.principal_id,
                        disabled_at=None,
                    )
                )
                self._log_in(conn, caller, "principal.create", subject, kind=kind.value, display_name=name)
                return _principal(_principal_row(conn, pid))
        except FabtrustError as exc:
            self._refused(caller, "principal.create", subject, exc)
            raise

    def disable_principal(self, caller: Caller, principal_id: str) -> Principal:
        """At once and for good: a disabled principal authenticates to nothing and holds no role
        (its grants and tokens stay, for the record). The emergency brake: one person suffices."""
        subject = _safe("principal", principal_id)
        self.authorize(caller, Permission.ACCESS_PRINCIPAL_MANAGE, subject)
        try:
            pid, _ = parse_principal_id(principal_id)
            now = self._now()
            with self._store.write() as conn:
                _principal_row(conn, pid)
                done = conn.execute(
                    update(acc_principals)
                    .where(acc_principals.c.principal_id == pid, acc_principals.c.disabled_at.is_(None))
                    .values(disabled_at=now)
                )
                if done.rowcount != 1:
                    raise Conflict(f"principal {pid} is disabled already")
                self._log_in(conn, caller, "principal.disable", subject)
                return _principal(_principal_row(conn, pid))
        except FabtrustError as exc:
            self._refused(caller, "principal.disable", subject, exc)
            raise

    def roles_of(self, principal_id: str, at: datetime) -> frozenset[Role]:
        """The roles whose grant is active at ``at``; none if the principal is disabled or unknown."""
        pid, _ = parse_principal_id(principal_id)
        when = _aware("at", at)
        with self._store.read() as conn:
            return _roles_of(conn, pid, when)

    # -- tokens ------------------------------------------------------------------------------------

    def issue_token(
        self, caller: Caller, principal_id: str, roles: Iterable[Role], *, label: str, ttl: timedelta
    ) -> IssuedToken:
        """A token for ``principal_id`` scoped to ``roles`` (each held or to be held by a grant),
        expiring after ``ttl`` (at most the configured maximum, 90 days by default)."""
        subject = _safe("principal", principal_id)
        own = caller.via != "local" and caller.principal_id == principal_id
        if not own:
            self.authorize(caller, Permission.ACCESS_TOKEN_MANAGE, subject)
        try:
            pid, _ = parse_principal_id(principal_id)
            scope = _parse_roles(roles)
            if not scope:
                raise InvalidInput("a token's scope names at least one role")
            name = _check_label(label)
            lifetime = _duration("a token's lifetime", ttl, self._max_token_ttl)
            if own and not scope <= caller.roles:
                raise NotAuthorised("a token cannot be wider than the credentials it is issued with")
            now = self._now()
            with self._store.write() as conn:
                row = _principal_row(conn, pid)
                if row["disabled_at"] is not None:
                    raise PolicyViolation(f"principal {pid} is disabled")
                holdable = _holdable_roles(conn, pid, now)
                beyond = scope - holdable
                if beyond:
                    raise PolicyViolation(
                        f"principal {pid} has no current or future grant of {', '.join(sorted(beyond))}"
                    )
                issued = self._insert_token(conn, pid, scope, name, caller.principal_id, now, lifetime)
                self._log_in(
                    conn,
                    caller,
                    "token.issue",
                    subject,
                    issued_token_id=issued.token_id,
                    roles=sorted(r.value for r in scope),
                    label=name,
                    expires_at=rfc3339(issued.expires_at),
                )
        except FabtrustError as exc:
            self._refused(caller, "token.issue", subject, exc)
            raise
        return issued

    def _insert_token(
        self,
        conn: Connection,
        principal_id: str,
        scope: frozenset[Role],
        label: str,
        created_by: str,
        now: datetime,
        ttl: timedelta,
    ) -> IssuedToken:
        token_id = secrets.token_hex(8)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode("ascii")
        token = f"{TOKEN_PREFIX}{token_id}_{secret}"
        conn.execute(
            insert(acc_tokens).values(
                token_id=token_id,
                principal_id=principal_id,
                token_hash=_sha256_hex(token.encode("ascii")),
                roles=canonical_json(sorted(r.value for r in scope)),
                label=label,
                created_at=now,
                created_by=created_by,
                expires_at=now + ttl,
                revoked_at=None,
            )
        )
        return IssuedToken(token=token, token_id=token_id, expires_at=now + ttl)

    def revoke_token(self, caller: Caller, token_id: str) -> Token:
        """Revoke one's own token, or (``access.token.manage``) anyone's."""
        subject = _safe("token", token_id)
        with self._store.read() as conn:
            found = (
                conn.execute(
                    select(acc_tokens.c.principal_id).where(acc_tokens.c.token_id == token_id)
                ).first()
                if isinstance(token_id, str)
                else None
            )
        if found is None or caller.via == "local" or found[0] != caller.principal_id:
            self.authorize(caller, Permission.ACCESS_TOKEN_MANAGE, subject)
        try:
            tid = _check_id("token id", token_id, _HEX16)
            now = self._now()
            with self._store.write() as conn:
                if (
                    conn.execute(select(acc_tokens.c.token_id).where(acc_tokens.c.token_id == tid)).first()
                    is None
                ):
                    raise NotFound(f"no token {tid}")
                done = conn.execute(
                    update(acc_tokens)
                    .where(acc_tokens.c.token_id == tid, acc_tokens.c.revoked_at.is_(None))
                    .values(revoked_at=now)
                )
                if done.rowcount != 1:
                    raise Conflict(f"token {tid} is revoked already")
                self._log_in(conn, caller, "token.revoke", subject)
                row = conn.execute(select(acc_tokens).where(acc_tokens.c.token_id == tid)).mappings().one()
                return _token(row)
        except FabtrustError as exc:
            self._refused(caller, "token.revoke", subject, exc)
            raise

    def authenticate(self, token: str) -> Caller:
        """The caller a token stands for, with its scope intersected with the roles held now.
        Any failure: ``NotAuthorised("invalid or expired credentials")``, logged with the token id
        when the string has one."""
        token_id: str | None = None
        try:
            if not isinstance(token, str) or len(token) != _TOKEN_LENGTH:
                raise _BadCredentials("malformed")
            head = _TOKEN_ID_RE.match(token)
            token_id = head[1] if head else None
            parsed = _TOKEN_RE.fullmatch(token)
            if parsed is None:
                raise _BadCredentials("malformed")
            secret = parsed[2]
            if (
                base64.urlsafe_b64encode(base64.urlsafe_b64decode(secret + "=")).rstrip(b"=")
                != secret.encode()
            ):
                raise _BadCredentials("malformed")  # non-canonical base64 (stray low bits)
            now = self._now()
            with self._store.read() as conn:
                row = (
                    conn.execute(select(acc_tokens).where(acc_tokens.c.token_id == token_id))
                    .mappings()
                    .first()
                )
                if row is None:
                    raise _BadCredentials("unknown token")
                pid = row["principal_id"]
                if not hmac.compare_digest(_sha256_hex(token.encode("ascii")), row["token_hash"]):
                    raise _BadCredentials("wrong secret", pid)
                if row["revoked_at"] is not None:
                    raise _BadCredentials("revoked", pid)
                if now >= row["expires_at"]:
                    raise _BadCredentials("expired", pid)
                principal = _principal_row(conn, pid)
                if principal["disabled_at"] is not None:
                    raise _BadCredentials("principal disabled", pid)
                try:
                    scope = _parse_roles(parse_canonical(bytes(row["roles"])))
                except InvalidInput:
                    raise _BadCredentials("damaged scope", pid) from None
                roles = scope & _roles_of(conn, pid, now)
            return Caller(pid, PrincipalKind(principal["kind"]), roles, "token", token_id)
        except _BadCredentials as bad:
            exc = NotAuthorised(INVALID_CREDENTIALS)
            details: dict[str, Any] = {"why": bad.why}
            if bad.principal_id is not None:
                details["principal_id"] = bad.principal_id
            subject = f"token:{token_id}" if token_id else "token:-"
            self._refused("anonymous", "token.authenticate", subject, exc, **details)
            raise exc from None

    # -- approvals ---------------------------------------------------------------------------------

    def policy(self, action: ApprovalAction) -> ApprovalPolicy:
        """The approval policy in force for ``action`` (stored, else the default)."""
        act = parse_action(action)
        with self._store.read() as conn:
            return _policy(conn, act)

    def request(
        self, caller: Caller, action: ApprovalAction, subject: str, parameters: Mapping[str, Any]
    ) -> ApprovalRequest:
        """Ask for approval of ``action`` on ``subject`` with ``parameters`` (a JSON object, at most
        16 KiB canonical). Needs ``approval.request`` and the permission of the act itself."""
        return self._request(caller, action, subject, parameters, None)

    def _request(
        self,
        caller: Caller,
        action: object,
        subject: object,
        parameters: object,
        check: Callable[[Connection, datetime], None] | None,
    ) -> ApprovalRequest:
        safe_subject = _audit_text(subject)
        try:
            act = parse_action(action)
        except InvalidInput as exc:
            self._refused(caller, "approval.request", safe_subject, exc)
            raise
        self.authorize(caller, Permission.APPROVAL_REQUEST, safe_subject)
        self.authorize(caller, ACTION_PERMISSIONS[act], safe_subject)
        try:
            subj = _check_subject(subject)
            if not isinstance(parameters, Mapping) or not all(isinstance(k, str) for k in parameters):
                raise InvalidInput("approval parameters must be a JSON object")
            params = dict(parameters)
            raw = canonical_json(params)
            if len(raw) > MAX_PARAMETERS:
                raise InvalidInput(
                    f"approval parameters are at most {MAX_PARAMETERS} bytes of canonical JSON"
                )
            now = self._now()
            with self._store.write() as conn:
                if check is not None:
                    check(conn, now)
                pol = _policy(conn, act)
                expires = now + timedelta(seconds=pol.ttl_seconds)
                statement = request_statement(
                    action=act,
                    subject=subj,
                    parameters=params,
                    requested_by=caller.principal_id,
                    created_at=now,
                    expires_at=expires,
                    threshold=pol.threshold,
                    eligible_role=pol.eligible_role,
                )
                request_id = secrets.token_hex(16)
                digest = _sha256_hex(statement)
                conn.execute(
                    insert(acc_approval_requests).values(
                        request_id=request_id,
                        action=act.value,
                        subject=subj,
                        parameters=raw,
                        digest=digest,
                        requested_by=caller.principal_id,
                        created_at=now,
                        expires_at=expires,
                        threshold=pol.threshold,
                        eligible_role=pol.eligible_role.value,
                        status=RequestStatus.PENDING.value,
                    )
                )
                self._log_in(
                    conn,
                    caller,
                    "approval.request",
                    subj,
                    request_id=request_id,
                    approval_action=act.value,
                    digest=digest,
                    threshold=pol.threshold,
                    eligible_role=pol.eligible_role.value,
                    expires_at=rfc3339(expires),
                )
                return _request_view(conn, _request_row(conn, request_id))
        except FabtrustError as exc:
            self._refused(caller, "approval.request", safe_subject, exc, approval_action=act.value)
            raise

    def approve(self, caller: Caller, request_id: str, digest: str) -> ApprovalRequest:
        """Approve the request whose statement has SHA-256 ``digest`` (what the approver reviewed)."""
        subject = _safe("approval", request_id)
        if caller.via == "local":
            exc = NotAuthorised("approvals are given by authenticated principals, not locally")
            self._refused(caller, "approval.approve", subject, exc)
            raise exc
        self.authorize(caller, Permission.APPROVAL_APPROVE, subject)
        try:
            rid = _check_id("approval request id", request_id, _HEX32)
            seen = _check_id("digest", digest, _HEX64)
            now = self._now()
            with self._store.write() as conn:
                row = _request_row(conn, rid, for_update=True)
                _check_integrity(row)
                _check_open(row, now)
                if not hmac.compare_digest(seen, row["digest"]):
                    raise VerificationFailed(
                        f"approval request {rid} is not the one reviewed (digest differs): review it again"
                    )
                if caller.principal_id == row["requested_by"]:
                    raise PolicyViolation("the requester cannot approve their own request (two-person rule)")
                role = Role(row["eligible_role"])
                if role not in caller.roles or role not in _roles_of(conn, caller.principal_id, now):
                    raise NotAuthorised(
                        f"approving a {row['action']} request needs an active {role.value} grant"
                    )
                already = conn.execute(
                    select(acc_approvals.c.principal_id).where(
                        acc_approvals.c.request_id == rid, acc_approvals.c.principal_id == caller.principal_id
                    )
                ).first()
                if already is not None:
                    raise Conflict(f"{caller.principal_id} has approved request {rid} already")
                conn.execute(
                    insert(acc_approvals).values(
                        request_id=rid, principal_id=caller.principal_id, digest=seen, approved_at=now
                    )
                )
                count = _count_approvals(conn, row, now)
                self._log_in(
                    conn,
                    caller,
                    "approval.approve",
                    subject,
                    approval_action=row["action"],
                    approval_subject=row["subject"],
                    digest=seen,
                    approvals=count,
                    threshold=row["threshold"],
                )
                return _request_view(conn, _request_row(conn, rid))
        except FabtrustError as exc:
            self._refused(caller, "approval.approve", subject, exc)
            raise

    def execute(
        self, caller: Caller, request_id: str, *, action: ApprovalAction, subject: str
    ) -> ApprovalRequest:
        """Spend an approved request, once, just before doing ``action`` on ``subject``: returns the
        request with the parameters to act on. Refused unless the caller holds the act's
        permission, the request is pending, unexpired, for that action and subject, and at least k
        of its approvers still hold the eligible role. A replay is a Conflict."""
        audit_subject = _safe("approval", request_id)
        try:
            act = parse_action(action)
        except InvalidInput as exc:
            self._refused(caller, "approval.execute", audit_subject, exc)
            raise
        self.authorize(caller, ACTION_PERMISSIONS[act], audit_subject)
        try:
            rid = _check_id("approval request id", request_id, _HEX32)
            subj = _check_subject(subject)
            now = self._now()
            with self._store.write() as conn:
                row, count = _execute_in(conn, caller, rid, act, subj, now)
                self._log_in(
                    conn,
                    caller,
                    "approval.execute",
                    audit_subject,
                    approval_action=act.value,
                    approval_subject=subj,
                    approvals=count,
                    threshold=row["threshold"],
                )
                return _request_view(conn, _request_row(conn, rid))
        except FabtrustError as exc:
            self._refused(caller, "approval.execute", audit_subject, exc, approval_action=act.value)
            raise

    def ticket(self, caller: Caller, request_id: str) -> ApprovalTicket:
        """A ticket for ``caller`` to carry out the act that request ``request_id`` approves."""
        return ApprovalTicket(self, caller, request_id)

    def spend(
        self,
        conn: Connection,
        ticket: ApprovalTicket,
        action: ApprovalAction,
        subject: str,
        parameters: Mapping[str, Any],
    ) -> ApprovalRequest:
        """Execute ``ticket``'s request inside the caller's open write transaction ``conn``, for
        the act a domain service is about to do: ``action`` on ``subject`` with exactly
        ``parameters`` (what the approvers reviewed; a request for other terms is refused). The
        ``approval.execute`` entry joins the transaction: if the act rolls back, the request stays
        pending and nothing is logged as executed. Raises without logging: the act's refusal entry,
        written by the domain service after its rollback, names the request."""
        caller, act, rid, subj = self._ticket_terms(ticket, action, subject)
        row, count = _execute_in(conn, caller, rid, act, subj, self._now())
        _check_terms(row, subj, parameters)
        self._log_in(
            conn,
            caller,
            "approval.execute",
            f"approval:{rid}",
            approval_action=act.value,
            approval_subject=subj,
            approvals=count,
            threshold=row["threshold"],
        )
        return _request_view(conn, _request_row(conn, rid))

    def check_ticket(
        self, ticket: ApprovalTicket, action: ApprovalAction, subject: str, parameters: Mapping[str, Any]
    ) -> None:
        """Raise what :meth:`spend` would raise now, changing nothing: for an act with side effects
        outside the store (a key imported into the key store) to refuse before making them."""
        _, act, rid, subj = self._ticket_terms(ticket, action, subject)
        with self._store.read() as conn:
            row, _ = _ready(conn, rid, act, subj, self._now())
            _check_terms(row, subj, parameters)

    def _ticket_terms(
        self, ticket: ApprovalTicket, action: ApprovalAction, subject: str
    ) -> tuple[Caller, ApprovalAction, str, str]:
        if not isinstance(ticket, ApprovalTicket):
            raise InvalidInput("this act needs an approval: name an approved request")
        if ticket.access is not self:
            raise InvalidInput("the approval ticket belongs to another data home")
        act = parse_action(action)
        require(ticket.caller.roles, ACTION_PERMISSIONS[act])
        rid = _check_id("approval request id", ticket.request_id, _HEX32)
        return ticket.caller, act, rid, _check_subject(subject)

    def cancel(self, caller: Caller, request_id: str) -> ApprovalRequest:
        """Withdraw a pending request: its requester, or a security officer."""
        subject = _safe("approval", request_id)
        try:
            rid = _check_id("approval request id", request_id, _HEX32)
            now = self._now()
            with self._store.write() as conn:
                row = _request_row(conn, rid, for_update=True)
                if caller.principal_id != row["requested_by"] and Role.SECURITY_OFFICER not in caller.roles:
                    raise NotAuthorised("only the requester or a security officer may cancel a request")
                done = conn.execute(
                    update(acc_approval_requests)
                    .where(
                        acc_approval_requests.c.request_id == rid,
                        acc_approval_requests.c.status == RequestStatus.PENDING.value,
                    )
                    .values(
                        status=RequestStatus.CANCELLED.value,
                        cancelled_at=now,
                        cancelled_by=caller.principal_id,
                    )
                )
                if done.rowcount != 1:
                    raise Conflict(
                        f"approval request {rid} is {row['status']}: it can no longer be cancelled"
                    )
                self._log_in(
                    conn,
                    caller,
                    "approval.cancel",
                    subject,
                    approval_action=row["action"],
                    approval_subject=row["subject"],
                )
                return _request_view(conn, _request_row(conn, rid))
        except FabtrustError as exc:
            self._refused(caller, "approval.cancel", subject, exc)
            raise

    # -- role changes, through approvals -----------------------------------------------------------

    def request_grant(
        self, caller: Caller, principal_id: str, role: Role, not_before: datetime, not_after: datetime
    ) -> ApprovalRequest:
        """Ask for ``role`` to be granted to ``principal_id`` from ``not_before`` until ``not_after``
        (a ``role.grant`` request)."""
        try:
            pid, kind = parse_principal_id(principal_id)
            r = parse_role(role)
            start, end = _aware("not_before", not_before), _aware("not_after", not_after)
            if r not in KIND_ROLES[kind]:
                raise InvalidInput(f"a {kind.value} cannot hold the role {r.value}")
            self._check_span(start, end)
        except InvalidInput as exc:
            self._refused(caller, "approval.request", _safe("principal", principal_id), exc)
            raise

        def check(conn: Connection, now: datetime) -> None:
            if _principal_row(conn, pid)["disabled_at"] is not None:
                raise PolicyViolation(f"principal {pid} is disabled")
            if end <= now:
                raise PolicyViolation("the grant would have ended already")

        parameters = {
            "principal_id": pid,
            "role": r.value,
            "not_before": rfc3339(start),
            "not_after": rfc3339(end),
        }
        return self._request(caller, ApprovalAction.ROLE_GRANT, f"principal:{pid}", parameters, check)

    def _check_span(self, start: datetime, end: datetime) -> None:
        if end <= start:
            raise InvalidInput("a grant's not_after must be later than its not_before")
        if end - start > self._max_grant:
            raise InvalidInput(f"a grant lasts at most {self._max_grant.days} days")

    def apply_grant(self, caller: Caller, request_id: str) -> Grant:
        """Execute an approved ``role.grant`` request: the grant, naming the request."""
        action = ApprovalAction.ROLE_GRANT
        subject = _safe("approval", request_id)
        self.authorize(caller, ACTION_PERMISSIONS[action], subject)
        try:
            rid = _check_id("approval request id", request_id, _HEX32)
            now = self._now()
            with self._store.write() as conn:
                stored = _request_row(conn, rid)
                row, count = _execute_in(conn, caller, rid, action, stored["subject"], now)
                params = _parameters(row)
                pid, role = params["principal_id"], parse_role(params["role"])
                start = parse_rfc3339(params["not_before"])
                end = parse_rfc3339(params["not_after"])
                if _principal_row(conn, pid)["disabled_at"] is not None:
                    raise PolicyViolation(f"principal {pid} is disabled")
                if end <= now:
                    raise PolicyViolation("the approved grant has ended already")
                self._check_span(start, end)
                grant_id = secrets.token_hex(16)
                conn.execute(
                    insert(acc_grants).values(
                        grant_id=grant_id,
                        principal_id=pid,
                        role=role.value,
                        not_before=start,
                        not_after=end,
                        granted_by=caller.principal_id,
                        granted_at=now,
                        approval_id=rid,
                        revoked_at=None,
                        revoked_by=None,
                    )
                )
                self._log_in(
                    conn,
                    caller,
                    "grant.create",
                    f"principal:{pid}",
                    grant_id=grant_id,
                    role=role.value,
                    not_before=params["not_before"],
                    not_after=params["not_after"],
                    request_id=rid,
                    approvals=count,
                )
                return _grant(_grant_row(conn, grant_id))
        except FabtrustError as exc:
            self._refused(caller, "grant.create", subject, exc)
            raise

    def request_revoke(self, caller: Caller, grant_id: str) -> ApprovalRequest:
        """Ask for a grant to be revoked (a ``role.revoke`` request)."""
        try:
            gid = _check_id("grant id", grant_id, _HEX32)
        except InvalidInput as exc:
            self._refused(caller, "approval.request", _safe("grant", grant_id), exc)
            raise
        found: dict[str, Any] = {}

        def check(conn: Connection, now: datetime) -> None:
            row = _grant_row(conn, gid)
            if row["revoked_at"] is not None:
                raise Conflict(f"grant {gid} is revoked already")
            if row["not_after"] <= now:
                raise Conflict(f"grant {gid} has ended already")
            found.update(principal_id=row["principal_id"], role=row["role"])

        with self._store.read() as conn:
            row = _grant_row(conn, gid, missing_ok=True)
        if row is None:
            missing = NotFound(f"no grant {gid}")
            self._refused(caller, "approval.request", f"grant:{gid}", missing)
            raise missing
        parameters = {"grant_id": gid, "principal_id": row["principal_id"], "role": row["role"]}
        return self._request(caller, ApprovalAction.ROLE_REVOKE, f"grant:{gid}", parameters, check)

    def apply_revoke(self, caller: Caller, request_id: str) -> Grant:
        """Execute an approved ``role.revoke`` request."""
        action = ApprovalAction.ROLE_REVOKE
        subject = _safe("approval", request_id)
        self.authorize(caller, ACTION_PERMISSIONS[action], subject)
        try:
            rid = _check_id("approval request id", request_id, _HEX32)
            now = self._now()
            with self._store.write() as conn:
                stored = _request_row(conn, rid)
                row, count = _execute_in(conn, caller, rid, action, stored["subject"], now)
                gid = _parameters(row)["grant_id"]
                done = conn.execute(
                    update(acc_grants)
                    .where(acc_grants.c.grant_id == gid, acc_grants.c.revoked_at.is_(None))
                    .values(revoked_at=now, revoked_by=caller.principal_id)
                )
                if done.rowcount != 1:
                    raise Conflict(f"grant {gid} is revoked already")
                grant = _grant(_grant_row(conn, gid))
                self._log_in(
                    conn,
                    caller,
                    "grant.revoke",
                    f"principal:{grant.principal_id}",
                    grant_id=gid,
                    role=grant.role.value,
                    request_id=rid,
                    approvals=count,
                )
                return grant
        except FabtrustError as exc:
            self._refused(caller, "grant.revoke", subject, exc)
            raise

    def request_approval_policy(
        self, caller: Caller, action: ApprovalAction, *, threshold: int, eligible_role: Role, ttl_seconds: int
    ) -> ApprovalRequest:
        """Ask for a new approval policy for ``action`` (an ``approval-policy.set`` request)."""
        try:
            wanted = ApprovalPolicy(parse_action(action), threshold, parse_role(eligible_role), ttl_seconds)
        except InvalidInput as exc:
            self._refused(caller, "approval.request", _safe("approval-policy", action), exc)
            raise
        parameters = {
            "action": wanted.action.value,
            "threshold": wanted.threshold,
            "eligible_role": wanted.eligible_role.value,
            "ttl_seconds": wanted.ttl_seconds,
        }
        return self._request(
            caller,
            ApprovalAction.APPROVAL_POLICY_SET,
            f"approval-policy:{wanted.action.value}",
            parameters,
            None,
        )

    def apply_approval_policy(self, caller: Caller, request_id: str) -> ApprovalPolicy:
        """Execute an approved ``approval-policy.set`` request. Requests made before keep the
        threshold and eligible role they were made with."""
        action = ApprovalAction.APPROVAL_POLICY_SET
        subject = _safe("approval", request_id)
        self.authorize(caller, ACTION_PERMISSIONS[action], subject)
        try:
            rid = _check_id("approval request id", request_id, _HEX32)
            now = self._now()
            with self._store.write() as conn:
                stored = _request_row(conn, rid)
                row, count = _execute_in(conn, caller, rid, action, stored["subject"], now)
                p = _parameters(row)
                new = ApprovalPolicy(
                    parse_action(p["action"]),
                    p["threshold"],
                    parse_role(p["eligible_role"]),
                    p["ttl_seconds"],
                )
                old = _policy(conn, new.action)
                conn.execute(
                    delete(acc_approval_policies).where(acc_approval_policies.c.action == new.action.value)
                )
                conn.execute(
                    insert(acc_approval_policies).values(
                        action=new.action.value,
                        threshold=new.threshold,
                        eligible_role=new.eligible_role.value,
                        ttl_seconds=new.ttl_seconds,
                        updated_at=now,
                        approval_id=rid,
                    )
                )
                self._log_in(
                    conn,
                    caller,
                    "approval-policy.set",
                    f"approval-policy:{new.action.value}",
                    threshold=new.threshold,
                    eligible_role=new.eligible_role.value,
                    ttl_seconds=new.ttl_seconds,
                    previous={
                        "threshold": old.threshold,
                        "eligible_role": old.eligible_role.value,
                        "ttl_seconds": old.ttl_seconds,
                    },
                    request_id=rid,
                    approvals=count,
                )
                return new
        except FabtrustError as exc:
            self._refused(caller, "approval-policy.set", subject, exc)
            raise

    # -- reading (the face checks access.read first) -----------------------------------------------

    def principals(self) -> list[Principal]:
        with self._store.read() as conn:
            rows = conn.execute(select(acc_principals).order_by(acc_principals.c.principal_id)).mappings()
            return [_principal(r) for r in rows]

    def principal(self, principal_id: str) -> Principal:
        pid, _ = parse_principal_id(principal_id)
        with self._store.read() as conn:
            return _principal(_principal_row(conn, pid))

    def grants(self, principal_id: str | None = None) -> list[Grant]:
        query = select(acc_grants).order_by(acc_grants.c.granted_at, acc_grants.c.grant_id)
        if principal_id is not None:
            query = query.where(acc_grants.c.principal_id == parse_principal_id(principal_id)[0])
        with self._store.read() as conn:
            return [_grant(r) for r in conn.execute(query).mappings()]

    def tokens(self, principal_id: str | None = None) -> list[Token]:
        query = select(acc_tokens).order_by(acc_tokens.c.created_at, acc_tokens.c.token_id)
        if principal_id is not None:
            query = query.where(acc_tokens.c.principal_id == parse_principal_id(principal_id)[0])
        with self._store.read() as conn:
            return [_token(r) for r in conn.execute(query).mappings()]

    def requests(self, status: RequestStatus | None = None) -> list[ApprovalRequest]:
        query = select(acc_approval_requests).order_by(
            acc_approval_requests.c.created_at, acc_approval_requests.c.request_id
        )
        if status is not None:
            query = query.where(acc_approval_requests.c.status == RequestStatus(status).value)
        with self._store.read() as conn:
            return [_request_view(conn, r) for r in conn.execute(query).mappings().all()]

    def show_request(self, request_id: str) -> ApprovalRequest:
        rid = _check_id("approval request id", request_id, _HEX32)
        with self._store.read() as conn:
            return _request_view(conn, _request_row(conn, rid))

    def policies(self) -> list[ApprovalPolicy]:
        """The policy in force for every action."""
        with self._store.read() as conn:
            return [_policy(conn, a) for a in ApprovalAction]


# ---------------------------------------------------------------------------------------------------
# helpers over a connection


def _active_grant(now: datetime) -> ColumnElement[bool]:
    return and_(
        acc_grants.c.revoked_at.is_(None),
        acc_grants.c.not_before <= now,
        acc_grants.c.not_after > now,
        acc_principals.c.disabled_at.is_(None),
    )


def _roles_of(conn: Connection, principal_id: str, now: datetime) -> frozenset[Role]:
    rows = conn.execute(
        select(acc_grants.c.role)
        .join(acc_principals, acc_principals.c.principal_id == acc_grants.c.principal_id)
        .where(acc_grants.c.principal_id == principal_id, _active_grant(now))
    ).scalars()
    return frozenset(Role(r) for r in rows)


def _holdable_roles(conn: Connection, principal_id: str, now: datetime) -> frozenset[Role]:
    """Roles held now or by a grant still to come (what a token's scope may name)."""
    rows = conn.execute(
        select(acc_grants.c.role).where(
            acc_grants.c.principal_id == principal_id,
            acc_grants.c.revoked_at.is_(None),
            acc_grants.c.not_after > now,
        )
    ).scalars()
    return frozenset(Role(r) for r in rows)


def _principal_row(conn: Connection, principal_id: str, *, missing_ok: bool = False) -> Any:
    row = (
        conn.execute(select(acc_principals).where(acc_principals.c.principal_id == principal_id))
        .mappings()
        .first()
    )
    if row is None and not missing_ok:
        raise NotFound(f"no principal {principal_id}")
    return row


def _grant_row(conn: Connection, grant_id: str, *, missing_ok: bool = False) -> Any:
    row = conn.execute(select(acc_grants).where(acc_grants.c.grant_id == grant_id)).mappings().first()
    if row is None and not missing_ok:
        raise NotFound(f"no grant {grant_id}")
    return row


def _request_row(conn: Connection, request_id: str, *, for_update: bool = False) -> Any:
    query = select(acc_approval_requests).where(acc_approval_requests.c.request_id == request_id)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).mappings().first()
    if row is None:
        raise NotFound(f"no approval request {request_id}")
    return row


def _policy(conn: Connection, action: ApprovalAction) -> ApprovalPolicy:
    row = (
        conn.execute(select(acc_approval_policies).where(acc_approval_policies.c.action == action.value))
        .mappings()
        .first()
    )
    if row is None:
        return DEFAULT_APPROVAL_POLICIES[action]
    return ApprovalPolicy(action, int(row["threshold"]), Role(row["eligible_role"]), int(row["ttl_seconds"]))


def _parameters(row: Any) -> dict[str, Any]:
    doc = parse_canonical(bytes(row["parameters"]))
    if not isinstance(doc, dict):
        raise VerificationFailed(f"approval request {row['request_id']} has damaged parameters")
    return doc


def _check_integrity(row: Any) -> None:
    """The stored columns must still hash to the stored digest (nobody edited the request)."""
    statement = request_statement(
        action=ApprovalAction(row["action"]),
        subject=row["subject"],
        parameters=_parameters(row),
        requested_by=row["requested_by"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        threshold=int(row["threshold"]),
        eligible_role=Role(row["eligible_role"]),
    )
    if not hmac.compare_digest(_sha256_hex(statement), row["digest"]):
        raise VerificationFailed(f"approval request {row['request_id']} was altered after it was made")


def _check_open(row: Any, now: datetime) -> None:
    if row["status"] != RequestStatus.PENDING.value:
        raise Conflict(f"approval request {row['request_id']} is {row['status']}")
    if now >= row["expires_at"]:
        raise PolicyViolation(f"approval request {row['request_id']} expired at {rfc3339(row['expires_at'])}")


def _count_approvals(conn: Connection, row: Any, now: datetime) -> int:
    """Distinct approvers of exactly this request statement, other than the requester, who hold the
    eligible role *now* (an approver whose grant has since lapsed or been revoked does not count)."""
    active = (
        select(acc_grants.c.principal_id)
        .join(acc_principals, acc_principals.c.principal_id == acc_grants.c.principal_id)
        .where(acc_grants.c.role == row["eligible_role"], _active_grant(now))
    )
    return int(
        conn.execute(
            select(func.count(func.distinct(acc_approvals.c.principal_id))).where(
                acc_approvals.c.request_id == row["request_id"],
                acc_approvals.c.digest == row["digest"],
                acc_approvals.c.principal_id != row["requested_by"],
                acc_approvals.c.principal_id.in_(active),
            )
        ).scalar_one()
    )


def _execute_in(
    conn: Connection, caller: Caller, request_id: str, action: ApprovalAction, subject: str, now: datetime
) -> tuple[Any, int]:
    row, count = _ready(conn, request_id, action, subject, now, for_update=True)
    done = conn.execute(
        update(acc_approval_requests)
        .where(
            acc_approval_requests.c.request_id == request_id,
            acc_approval_requests.c.status == RequestStatus.PENDING.value,
        )
        .values(status=RequestStatus.EXECUTED.value, executed_at=now, executed_by=caller.principal_id)
    )
    if done.rowcount != 1:
        raise Conflict(f"approval request {request_id} was executed meanwhile")
    return row, count


def _ready(
    conn: Connection,
    request_id: str,
    action: ApprovalAction,
    subject: str,
    now: datetime,
    *,
    for_update: bool = False,
) -> tuple[Any, int]:
    """The request row and its valid approvals, if it may be executed now for ``action`` on
    ``subject``; raises the reason otherwise. Changes nothing."""
    row = _request_row(conn, request_id, for_update=for_update)
    if row["action"] != action.value or row["subject"] != subject:
        raise PolicyViolation(
            f"approval request {request_id} is for {row['action']} on {row['subject']}, "
            f"not {action.value} on {subject}"
        )
    _check_integrity(row)
    _check_open(row, now)
    count = _count_approvals(conn, row, now)
    if count < row["threshold"]:
        raise PolicyViolation(
            f"approval request {request_id} has {count} valid approval(s) by {row['eligible_role']}s; "
            f"{row['threshold']} needed"
        )
    return row, count


def ticket_request_id(ticket: object) -> str | None:
    """The request id a refused gated act names in its audit entry (the ticket may be malformed
    or missing itself: then None)."""
    rid = getattr(ticket, "request_id", None)
    return rid[:64] if isinstance(rid, str) else None


def _check_terms(row: Any, subject: str, parameters: Mapping[str, Any]) -> None:
    if canonical_json(_parameters(row)) != canonical_json(dict(parameters)):
        raise PolicyViolation(
            f"approval request {row['request_id']} approved other terms for {subject} than this "
            "act's (they changed since): request a new approval"
        )


def _principal(row: Any) -> Principal:
    return Principal(
        principal_id=row["principal_id"],
        kind=PrincipalKind(row["kind"]),
        display_name=row["display_name"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        disabled_at=row["disabled_at"],
    )


def _grant(row: Any) -> Grant:
    return Grant(
        grant_id=row["grant_id"],
        principal_id=row["principal_id"],
        role=Role(row["role"]),
        not_before=row["not_before"],
        not_after=row["not_after"],
        granted_by=row["granted_by"],
        granted_at=row["granted_at"],
        approval_id=row["approval_id"],
        revoked_at=row["revoked_at"],
        revoked_by=row["revoked_by"],
    )


def _token(row: Any) -> Token:
    return Token(
        token_id=row["token_id"],
        principal_id=row["principal_id"],
        roles=_parse_roles(parse_canonical(bytes(row["roles"]))),
        label=row["label"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
    )


def _request_view(conn: Connection, row: Any) -> ApprovalRequest:
    approvals = tuple(
        Approval(r["principal_id"], r["digest"], r["approved_at"])
        for r in conn.execute(
            select(acc_approvals)
            .where(acc_approvals.c.request_id == row["request_id"])
            .order_by(acc_approvals.c.approved_at, acc_approvals.c.principal_id)
        ).mappings()
    )
    return ApprovalRequest(
        request_id=row["request_id"],
        action=ApprovalAction(row["action"]),
        subject=row["subject"],
        parameters=MappingProxyType(_parameters(row)),
        digest=row["digest"],
        requested_by=row["requested_by"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        threshold=int(row["threshold"]),
        eligible_role=Role(row["eligible_role"]),
        status=RequestStatus(row["status"]),
        executed_at=row["executed_at"],
        executed_by=row["executed_by"],
        cancelled_at=row["cancelled_at"],
        cancelled_by=row["cancelled_by"],
        approvals=approvals,
    )


__all__ = [
    "AUDIT_ACCESS",
    "DEFAULT_MAX_GRANT",
    "DEFAULT_MAX_TOKEN_TTL",
    "INVALID_CREDENTIALS",
    "KIND_ROLES",
    "REQUEST_FORMAT",
    "AccessService",
    "Approval",
    "ApprovalRequest",
    "ApprovalTicket",
    "Caller",
    "Grant",
    "IssuedToken",
    "Principal",
    "PrincipalKind",
    "RequestStatus",
    "Token",
    "parse_principal_id",
    "request_statement",
    "ticket_request_id",
]
