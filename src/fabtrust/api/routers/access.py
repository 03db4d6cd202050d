"""Access control over HTTP under ``/access``: principals, grants, tokens, approvals and approval
policies. The work (and every rule, audit entry and refusal) is in
:class:`fabtrust.access.service.AccessService`; each route reads, validates, authorizes, calls it as
the authenticated caller, and renders.

Guards (:mod:`fabtrust.api.auth`), and the choices made where the brief left one open:

- ``GET /access/whoami``, ``GET/POST /access/tokens`` and ``DELETE /access/tokens/{id}`` are
  ``authenticated``: anyone may see, issue and revoke their *own* tokens; another principal's need
  ``access.token.manage`` (checked by the service for issue and revoke). Listing another
  principal's tokens (``?principal=``) needs ``access.read``, like every other read of the access
  tables (token metadata carries no secret); the check is made here and a refusal is logged.
- ``GET /access/approvals`` and ``/access/approvals/{id}`` need ``approval.request``: held by
  every role that asks for or approves anything, so approvers can review what they approve. The
  auditor (``access.read`` only) reads approvals in the audit log instead.
- ``POST /access/approvals/{id}/cancel`` needs ``approval.request``; the service allows only the
  requester or a security officer.
- Approving needs ``approval.approve``; whether *this* approver is eligible is the service's.

The token secret appears only in the ``POST /access/tokens`` answer (``Cache-Control: no-store``)
and is never logged. Request bodies over :data:`MAX_BODY_BYTES` are refused with 413.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from fabtrust.access.policy import ApprovalPolicy, Permission
from fabtrust.access.service import AccessService, Caller, RequestStatus
from fabtrust.api.auth import access_of, authenticated, guard
from fabtrust.api.bodies import bounded_route
from fabtrust.api.schemas import (
    ACCESS_ERRORS,
    ApprovalRequestDoc,
    ApproveRequest,
    CreatePrincipal,
    GrantDoc,
    GrantRequest,
    IssuedTokenDoc,
    PolicyDoc,
    PolicyRequest,
    PrincipalDoc,
    RevokeRequest,
    TokenDoc,
    TokenRequest,
    WhoAmI,
)
from fabtrust.clock import rfc3339

MAX_BODY_BYTES = 64 * 1024


router = APIRouter(prefix="/access", tags=["access"], route_class=bounded_route(MAX_BODY_BYTES))

PrincipalPath = Annotated[str, Path(max_length=200, description="A principal id.")]
IdPath = Annotated[str, Path(max_length=64, description="An id as the service issued it (hex).")]
Authenticated = Annotated[Caller, Depends(authenticated)]
_NO_STORE = {"Cache-Control": "no-store"}


def _request_doc(access: AccessService, request_id: str) -> ApprovalRequestDoc:
    return ApprovalRequestDoc.model_validate(access.show_request(request_id).to_doc())


def _policy_doc(policy: ApprovalPolicy) -> PolicyDoc:
    return PolicyDoc(
        action=policy.action.value,
        threshold=policy.threshold,
        eligible_role=policy.eligible_role.value,
        ttl_seconds=policy.ttl_seconds,
    )


# -- who am I ---------------------------------------------------------------------------------------


@router.get("/whoami", response_model=WhoAmI, responses=ACCESS_ERRORS)
def whoami(caller: Authenticated) -> WhoAmI:
    """The authenticated caller: principal, kind, the roles held now, and the credential."""
    return WhoAmI(
        principal_id=caller.principal_id,
        kind=caller.kind.value,
        roles=sorted(r.value for r in caller.roles),
        via=caller.via,
        token_id=caller.token_id,
    )


# -- principals -------------------------------------------------------------------------------------


@router.get(
    "/principals",
    dependencies=[guard(Permission.ACCESS_READ)],
    response_model=list[PrincipalDoc],
    responses=ACCESS_ERRORS,
)
def principals(request: Request) -> list[PrincipalDoc]:
    return [PrincipalDoc.model_validate(p.to_doc()) for p in access_of(request).principals()]


@router.get(
    "/principals/{principal_id}",
    dependencies=[guard(Permission.ACCESS_READ)],
    response_model=PrincipalDoc,
    responses=ACCESS_ERRORS,
)
def principal(request: Request, principal_id: PrincipalPath) -> PrincipalDoc:
    return PrincipalDoc.model_validate(access_of(request).principal(principal_id).to_doc())


@router.post("/principals", status_code=201, response_model=PrincipalDoc, responses=ACCESS_ERRORS)
def create_principal(
    request: Request,
    body: CreatePrincipal,
    caller: Annotated[Caller, guard(Permission.ACCESS_PRINCIPAL_MANAGE)],
) -> PrincipalDoc:
    """A person, ``station:<id>`` or ``device:<serial>``; it holds no role until a grant is applied."""
    made = access_of(request).create_principal(caller, body.principal_id, body.display_name)
    return PrincipalDoc.model_validate(made.to_doc())


@router.post("/principals/{principal_id}/disable", response_model=PrincipalDoc, responses=ACCESS_ERRORS)
def disable_principal(
    request: Request,
    principal_id: PrincipalPath,
    caller: Annotated[Caller, guard(Permission.ACCESS_PRINCIPAL_MANAGE)],
) -> PrincipalDoc:
    """At once and for good: the principal authenticates to nothing and holds no role."""
    return PrincipalDoc.model_validate(access_of(request).disable_principal(caller, principal_id).to_doc())


# -- grants -----------------------------------------------------------------------------------------


@router.get(
    "/grants",
    dependencies=[guard(Permission.ACCESS_READ)],
    response_model=list[GrantDoc],
    responses=ACCESS_ERRORS,
)
def grants(
    request: Request,
    principal: str | None = Query(None, max_length=200, description="Only this principal's."),
) -> list[GrantDoc]:
    return [GrantDoc.model_validate(g.to_doc()) for g in access_of(request).grants(principal)]


@router.post("/grants/requests", status_code=201, response_model=ApprovalRequestDoc, responses=ACCESS_ERRORS)
def request_grant(
    request: Request, body: GrantRequest, caller: Annotated[Caller, guard(Permission.ACCESS_GRANT_REQUEST)]
) -> ApprovalRequestDoc:
    """Ask for a role grant (a ``role.grant`` approval request); apply it once approved."""
    asked = access_of(request).request_grant(
        caller, body.principal_id, body.role, body.not_before, body.not_after
    )
    return ApprovalRequestDoc.model_validate(asked.to_doc())


@router.post(
    "/grants/revocations", status_code=201, response_model=ApprovalRequestDoc, responses=ACCESS_ERRORS
)
def request_revoke(
    request: Request, body: RevokeRequest, caller: Annotated[Caller, guard(Permission.ACCESS_GRANT_REQUEST)]
) -> ApprovalRequestDoc:
    """Ask for a grant to be revoked (a ``role.revoke`` approval request)."""
    return ApprovalRequestDoc.model_validate(
        access_of(request).request_revoke(caller, body.grant_id).to_doc()
    )


@router.post("/grants/requests/{request_id}/apply", response_model=GrantDoc, responses=ACCESS_ERRORS)
def apply_grant(
    request: Request, request_id: IdPath, caller: Annotated[Caller, guard(Permission.ACCESS_GRANT_REQUEST)]
) -> GrantDoc:
    """Carry out an approved ``role.grant`` request, once (a replay is 409)."""
    return GrantDoc.model_validate(access_of(request).apply_grant(caller, request_id).to_doc())


@router.post("/grants/revocations/{request_id}/apply", response_model=GrantDoc, responses=ACCESS_ERRORS)
def apply_revoke(
    request: Request, request_id: IdPath, caller: Annotated[Caller, guard(Permission.ACCESS_GRANT_REQUEST)]
) -> GrantDoc:
    """Carry out an approved ``role.revoke`` request, once (a replay is 409)."""
    return GrantDoc.model_validate(access_of(request).apply_revoke(caller, request_id).to_doc())


# -- tokens -----------------------------------------------------------------------------------------


@router.get("/tokens", response_model=list[TokenDoc], responses=ACCESS_ERRORS)
def tokens(
    request: Request,
    caller: Authenticated,
    principal: str | None = Query(
        None, max_length=200, description="Another principal's tokens (needs access.read); default: own."
    ),
) -> list[TokenDoc]:
    access = access_of(request)
    whose = caller.principal_id if principal is None else principal
    if whose != caller.principal_id:
        access.authorize(caller, Permission.ACCESS_READ, f"api:GET {request.url.path}")
    return [TokenDoc.model_validate(t.to_doc()) for t in access.tokens(whose)]


@router.post("/tokens", status_code=201, response_model=IssuedTokenDoc, responses=ACCESS_ERRORS)
def issue_token(
    request: Request, body: TokenRequest, caller: Authenticated, response: Response
) -> IssuedTokenDoc:
    """A token for the caller (default) or, with ``access.token.manage``, for another principal.
    The answer is the only place the secret ever appears."""
    whose = caller.principal_id if body.principal_id is None else body.principal_id
    issued = access_of(request).issue_token(
        caller, whose, body.roles, label=body.label, ttl=timedelta(seconds=body.ttl_seconds)
    )
    response.headers.update(_NO_STORE)
    return IssuedTokenDoc(token=issued.token, token_id=issued.token_id, expires_at=rfc3339(issued.expires_at))


@router.delete("/tokens/{token_id}", response_model=TokenDoc, responses=ACCESS_ERRORS)
def revoke_token(request: Request, token_id: IdPath, caller: Authenticated) -> TokenDoc:
    """Revoke one's own token, or (``access.token.manage``) anyone's."""
    return TokenDoc.model_validate(access_of(request).revoke_token(caller, token_id).to_doc())


# -- approvals --------------------------------------------------------------------------------------


@router.get(
    "/approvals",
    dependencies=[guard(Permission.APPROVAL_REQUEST)],
    response_model=list[ApprovalRequestDoc],
    responses=ACCESS_ERRORS,
)
def approvals(request: Request, status: RequestStatus | None = None) -> list[ApprovalRequestDoc]:
    return [ApprovalRequestDoc.model_validate(r.to_doc()) for r in access_of(request).requests(status)]


@router.get(
    "/approvals/{request_id}",
    dependencies=[guard(Permission.APPROVAL_REQUEST)],
    response_model=ApprovalRequestDoc,
    responses=ACCESS_ERRORS,
)
def approval(request: Request, request_id: IdPath) -> ApprovalRequestDoc:
    """One request with its statement's digest: what an approver reviews before approving."""
    return _request_doc(access_of(request), request_id)


@router.post("/approvals/{request_id}/approve", response_model=ApprovalRequestDoc, responses=ACCESS_ERRORS)
def approve(
    request: Request,
    request_id: IdPath,
    body: ApproveRequest,
    caller: Annotated[Caller, guard(Permission.APPROVAL_APPROVE)],
) -> ApprovalRequestDoc:
    """Approve the request whose statement has the given SHA-256 (the one reviewed)."""
    done = access_of(request).approve(caller, request_id, body.digest)
    return ApprovalRequestDoc.model_validate(done.to_doc())


@router.post("/approvals/{request_id}/cancel", response_model=ApprovalRequestDoc, responses=ACCESS_ERRORS)
def cancel(
    request: Request, request_id: IdPath, caller: Annotated[Caller, guard(Permission.APPROVAL_REQUEST)]
) -> ApprovalRequestDoc:
    """Withdraw a pending request: its requester, or a security officer."""
    return ApprovalRequestDoc.model_validate(access_of(request).cancel(caller, request_id).to_doc())


# -- approval policies ------------------------------------------------------------------------------


@router.get(
    "/policies",
    dependencies=[guard(Permission.ACCESS_READ)],
    response_model=list[PolicyDoc],
    responses=ACCESS_ERRORS,
)
def policies(request: Request) -> list[PolicyDoc]:
    """The approval policy in force for every action."""
    return [_policy_doc(p) for p in access_of(request).policies()]


@router.post(
    "/policies/requests", status_code=201, response_model=ApprovalRequestDoc, responses=ACCESS_ERRORS
)
def request_policy(
    request: Request, body: PolicyRequest, caller: Annotated[Caller, guard(Permission.ACCESS_POLICY_SET)]
) -> ApprovalRequestDoc:
    """Ask for a new approval policy (an ``approval-policy.set`` request)."""
    asked = access_of(request).request_approval_policy(
        caller,
        body.action,
        threshold=body.threshold,
        eligible_role=body.eligible_role,
        ttl_seconds=body.ttl_seconds,
    )
    return ApprovalRequestDoc.model_validate(asked.to_doc())


@router.post("/policies/requests/{request_id}/apply", response_model=PolicyDoc, responses=ACCESS_ERRORS)
def apply_policy(
    request: Request, request_id: IdPath, caller: Annotated[Caller, guard(Permission.ACCESS_POLICY_SET)]
) -> PolicyDoc:
    """Carry out an approved ``approval-policy.set`` request, once (a replay is 409)."""
    return _policy_doc(access_of(request).apply_approval_policy(caller, request_id))
