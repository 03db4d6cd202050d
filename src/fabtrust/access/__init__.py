"""Access control: principals, roles and permissions (deny by default), time-bound role grants,
API tokens and one k-of-n approval mechanism. ``policy`` is pure; ``service`` persists and audits.

See docs/access.md for the model and the permission table.
"""

from __future__ import annotations

from fabtrust.access.policy import (
    ACTION_PERMISSIONS,
    DEFAULT_APPROVAL_POLICIES,
    ROLE_PERMISSIONS,
    ApprovalAction,
    ApprovalPolicy,
    Permission,
    Role,
    permits,
    require,
)
from fabtrust.access.service import (
    AUDIT_ACCESS,
    INVALID_CREDENTIALS,
    AccessService,
    Approval,
    ApprovalRequest,
    ApprovalTicket,
    Caller,
    Grant,
    IssuedToken,
    Principal,
    PrincipalKind,
    RequestStatus,
    Token,
)

__all__ = [
    "ACTION_PERMISSIONS",
    "AUDIT_ACCESS",
    "DEFAULT_APPROVAL_POLICIES",
    "INVALID_CREDENTIALS",
    "ROLE_PERMISSIONS",
    "AccessService",
    "Approval",
    "ApprovalAction",
    "ApprovalPolicy",
    "ApprovalRequest",
    "ApprovalTicket",
    "Caller",
    "Grant",
    "IssuedToken",
    "Permission",
    "Principal",
    "PrincipalKind",
    "RequestStatus",
    "Role",
    "Token",
    "permits",
    "require",
]
