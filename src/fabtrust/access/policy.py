"""Who may do what: roles, permissions and the approval policies (pure: no store, no I/O).

Deny by default. A caller holds a set of roles; a role grants the permissions listed for it in
:data:`ROLE_PERMISSIONS` and nothing else; a permission not listed for any of the caller's roles is
refused. There is one permission per service operation, named ``<domain>.<object>.<verb>`` or
``<domain>.read``. An unknown role or permission name is an error, never a silent "no".

Some acts need more than a permission: a k-of-n approval (:class:`ApprovalAction`). Each action has
a default policy here (:data:`DEFAULT_APPROVAL_POLICIES`), which the access service lets security
officers change through an approval of its own. *k counts approvers other than the requester*: the
person asking is never one of the k (two-person rule), so a threshold of 1 means two people.

``docs/access.md`` carries the permission table as :func:`permission_table` renders it; a test keeps
the two equal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from fabtrust.errors import InvalidInput, NotAuthorised


class Role(StrEnum):
    # people
    ADMINISTRATOR = "administrator"
    SECURITY_OFFICER = "security-officer"
    RELEASE_SIGNER = "release-signer"
    PRODUCTION_PLANNER = "production-planner"
    FACTORY_OPERATOR = "factory-operator"
    AUDITOR = "auditor"
    # principals authenticated by certificate (the API layer maps a verified certificate to them)
    STATION = "station"
    DEVICE = "device"


#: Roles people hold (through grants); the other two belong to station and device principals.
PERSON_ROLES: Final = frozenset(r for r in Role if r not in (Role.STATION, Role.DEVICE))


class Permission(StrEnum):
    LOG_READ = "log.read"

    PKI_READ = "pki.read"
    PKI_CA_CREATE = "pki.ca.create"  # product CAs, issuing-CA CSRs and signatures, adoption
    PKI_CA_REVOKE = "pki.ca.revoke"
    PKI_ROOT_RESTORE = "pki.root.restore"  # rebuild the root key from custodian shares
    PKI_CERT_ISSUE = "pki.cert.issue"  # a certificate issued by hand, outside production
    PKI_CERT_REVOKE = "pki.cert.revoke"
    PKI_CRL_ISSUE = "pki.crl.issue"  # sign a fresh CRL (`fabtrust ca crl`)
    PKI_EST_TOKEN = "pki.est.token"  # noqa: S105 (a permission name) make a one-time EST enrollment token
    PKI_EST_ENROLL = "pki.est.enroll"  # EST simpleenroll / simplereenroll (RFC 7030 4.2)

    KEYS_READ = "keys.read"  # list the key store's keys (`fabtrust keys list`)
    KEYS_CREATE = "keys.create"  # `fabtrust keys create`

    FIRMWARE_READ = "firmware.read"
    FIRMWARE_SIGNER_MANAGE = "firmware.signer.manage"
    FIRMWARE_POLICY_SET = "firmware.policy.set"
    FIRMWARE_RELEASE_CREATE = "firmware.release.create"
    FIRMWARE_RELEASE_APPROVE = "firmware.release.approve"
    FIRMWARE_RELEASE_PUBLISH = "firmware.release.publish"
    UPDATES_READ = "updates.read"
    UPDATES_MANAGE = "updates.manage"

    PRODUCTION_READ = "production.read"
    PRODUCTION_PRODUCT_MANAGE = "production.product.manage"
    PRODUCTION_VENDOR_MANAGE = "production.vendor.manage"
    PRODUCTION_STATION_CERTIFY = "production.station.certify"
    PRODUCTION_ORDER_CREATE = "production.order.create"
    PRODUCTION_ORDER_APPROVE = "production.order.approve"
    PRODUCTION_ORDER_SEAL = "production.order.seal"
    PRODUCTION_QUOTA_RAISE = "production.quota.raise"
    PRODUCTION_RECONCILE = "production.reconcile"
    PRODUCTION_RECORDS_UPLOAD = "production.records.upload"  # a station uploading its export

    STATION_READ = "station.read"
    STATION_MANAGE = "station.manage"  # enroll, install certificate, request issuing CA, load, sync
    STATION_PROVISION = "station.provision"  # challenge, provision, receipts, image

    ACCESS_READ = "access.read"
    ACCESS_PRINCIPAL_MANAGE = "access.principal.manage"  # create and disable principals
    ACCESS_GRANT_REQUEST = "access.grant.request"  # ask for (and carry out approved) role changes
    ACCESS_TOKEN_MANAGE = "access.token.manage"  # noqa: S105 (a permission name) issue and revoke *other* principals' tokens
    ACCESS_POLICY_SET = "access.policy.set"  # ask for (and carry out approved) approval policies

    APPROVAL_REQUEST = "approval.request"
    APPROVAL_APPROVE = "approval.approve"

    METRICS_READ = "metrics.read"  # the server's Prometheus metrics (GET /metrics)


#: Every ``*.read`` permission: what an auditor holds, and what the operating roles see.
READS: Final = frozenset(p for p in Permission if p.value.endswith(".read"))

_P = Permission

ROLE_PERMISSIONS: Final[Mapping[Role, frozenset[Permission]]] = MappingProxyType(
    {
        # Runs the installation: people, products and vendors, station certification, the update
        # repository; sees everything. May *ask* for role changes but never make one alone (a
        # security officer approves), and stays out of the firmware path entirely: a compromised
        # administrator can neither grant itself roles nor ship firmware.
        Role.ADMINISTRATOR: READS
        | {
            _P.ACCESS_PRINCIPAL_MANAGE,
            _P.ACCESS_GRANT_REQUEST,
            _P.APPROVAL_REQUEST,
            _P.PRODUCTION_PRODUCT_MANAGE,
            _P.PRODUCTION_VENDOR_MANAGE,
            _P.PRODUCTION_STATION_CERTIFY,
            _P.UPDATES_MANAGE,
            _P.PKI_CRL_ISSUE,  # routine: a CRL only restates the revocations already stored
        },
        # Guards keys and trust: access control, the CA hierarchy, key-store keys, release-signer
        # keys and the firmware threshold; approves role changes and CA revocations. Issues no
        # firmware and plans no production.
        Role.SECURITY_OFFICER: READS
        | {
            _P.ACCESS_PRINCIPAL_MANAGE,
            _P.ACCESS_GRANT_REQUEST,
            _P.ACCESS_TOKEN_MANAGE,
            _P.ACCESS_POLICY_SET,
            _P.PKI_CA_CREATE,
            _P.PKI_CA_REVOKE,
            _P.PKI_ROOT_RESTORE,
            _P.PKI_CERT_ISSUE,
            _P.PKI_CERT_REVOKE,
            _P.PKI_CRL_ISSUE,
            _P.PKI_EST_TOKEN,
            _P.KEYS_CREATE,
            _P.FIRMWARE_SIGNER_MANAGE,
            _P.FIRMWARE_POLICY_SET,
            _P.APPROVAL_REQUEST,
            _P.APPROVAL_APPROVE,
        },
        # Release engineering. Publishing is gated by k approvals of *other* signers (the release
        # service's DSSE threshold and the firmware.publish approval), so no signer ships alone.
        Role.RELEASE_SIGNER: frozenset(
            {
                _P.FIRMWARE_READ,
                _P.FIRMWARE_RELEASE_CREATE,
                _P.FIRMWARE_RELEASE_APPROVE,
                _P.FIRMWARE_RELEASE_PUBLISH,
                _P.APPROVAL_REQUEST,
                _P.APPROVAL_APPROVE,
            }
        ),
        # Plans production: orders (picking a published release, hence firmware.read), sealing,
        # reconciliation. Approving an over-quota order and raising a quota need another planner's
        # approval, so the planner who asks cannot do either alone.
        Role.PRODUCTION_PLANNER: frozenset(
            {
                _P.PRODUCTION_READ,
                _P.FIRMWARE_READ,
                _P.PRODUCTION_ORDER_CREATE,
                _P.PRODUCTION_ORDER_APPROVE,
                _P.PRODUCTION_ORDER_SEAL,
                _P.PRODUCTION_QUOTA_RAISE,
                _P.PRODUCTION_RECONCILE,
                _P.APPROVAL_REQUEST,
                _P.APPROVAL_APPROVE,
            }
        ),
        # Runs a station's line: enrolment, packages, provisioning. Nothing at the OEM.
        Role.FACTORY_OPERATOR: frozenset({_P.STATION_READ, _P.STATION_MANAGE, _P.STATION_PROVISION}),
        # Reads everything, changes nothing.
        Role.AUDITOR: READS,
        # A station's certificate uploads its records and fetches updates; provisioning at the
        # station is done by line equipment holding factory-operator tokens, not by the certificate.
        Role.STATION: frozenset({_P.PRODUCTION_RECORDS_UPLOAD, _P.UPDATES_READ}),
        # A device enrolls (EST) and fetches updates.
        Role.DEVICE: frozenset({_P.PKI_EST_ENROLL, _P.UPDATES_READ}),
    }
)


def parse_role(value: object) -> Role:
    """A role by name; InvalidInput for anything else."""
    if isinstance(value, Role):
        return value
    try:
        return Role(value if isinstance(value, str) else "")
    except ValueError:
        raise InvalidInput(f"unknown role {str(value)[:64]!r} (one of: {', '.join(Role)})") from None


def parse_permission(value: object) -> Permission:
    """A permission by name; InvalidInput for anything else (an unknown name is an error, not a no)."""
    if isinstance(value, Permission):
        return value
    try:
        return Permission(value if isinstance(value, str) else "")
    except ValueError:
        raise InvalidInput(f"unknown permission {str(value)[:64]!r}") from None


def permits(roles: Iterable[Role], permission: Permission) -> bool:
    """Does any of ``roles`` grant ``permission``? Deny by default."""
    wanted = parse_permission(permission)
    held = [parse_role(r) for r in roles]  # every name is checked, not only those before a match
    return any(wanted in ROLE_PERMISSIONS[r] for r in held)


def require(roles: Iterable[Role], permission: Permission) -> None:
    """Raise NotAuthorised unless ``roles`` grant ``permission``."""
    if not permits(roles, permission):
        raise NotAuthorised(f"not permitted: {Permission(permission).value}")


# ---------------------------------------------------------------------------------------------------
# approvals


class ApprovalAction(StrEnum):
    FIRMWARE_PUBLISH = "firmware.publish"
    ORDER_APPROVE = "order.approve"  # an order over the quota limit
    CA_REVOKE = "ca.revoke"
    ROOT_RESTORE = "root.restore"
    QUOTA_RAISE = "quota.raise"
    ROLE_GRANT = "role.grant"
    ROLE_REVOKE = "role.revoke"
    APPROVAL_POLICY_SET = "approval-policy.set"


#: The permission of the act each approval gates. Requesting an approval needs it (with
#: ``approval.request``): one may ask only for what one may carry out. Executing needs it too.
ACTION_PERMISSIONS: Final[Mapping[ApprovalAction, Permission]] = MappingProxyType(
    {
        ApprovalAction.FIRMWARE_PUBLISH: Permission.FIRMWARE_RELEASE_PUBLISH,
        ApprovalAction.ORDER_APPROVE: Permission.PRODUCTION_ORDER_APPROVE,
        ApprovalAction.CA_REVOKE: Permission.PKI_CA_REVOKE,
        ApprovalAction.ROOT_RESTORE: Permission.PKI_ROOT_RESTORE,
        ApprovalAction.QUOTA_RAISE: Permission.PRODUCTION_QUOTA_RAISE,
        ApprovalAction.ROLE_GRANT: Permission.ACCESS_GRANT_REQUEST,
        ApprovalAction.ROLE_REVOKE: Permission.ACCESS_GRANT_REQUEST,
        ApprovalAction.APPROVAL_POLICY_SET: Permission.ACCESS_POLICY_SET,
    }
)

MAX_THRESHOLD: Final = 16
MIN_TTL_SECONDS: Final = 60
MAX_TTL_SECONDS: Final = 30 * 86400
_HOUR = 3600
_DAY = 86400


@dataclass(frozen=True)
class ApprovalPolicy:
    """``threshold`` distinct principals other than the requester, each holding an active grant of
    ``eligible_role``, must approve within ``ttl_seconds`` of the request."""

    action: ApprovalAction
    threshold: int
    eligible_role: Role
    ttl_seconds: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", parse_action(self.action))
        object.__setattr__(self, "eligible_role", parse_role(self.eligible_role))
        k = self.threshold
        if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_THRESHOLD:
            raise InvalidInput(f"an approval threshold is an integer from 1 to {MAX_THRESHOLD}")
        ttl = self.ttl_seconds
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not MIN_TTL_SECONDS <= ttl <= MAX_TTL_SECONDS:
            raise InvalidInput(
                f"an approval request lives from {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS} seconds"
            )
        if Permission.APPROVAL_APPROVE not in ROLE_PERMISSIONS[self.eligible_role]:
            raise InvalidInput(f"role {self.eligible_role.value} may not approve (no approval.approve)")


def parse_action(value: object) -> ApprovalAction:
    if isinstance(value, ApprovalAction):
        return value
    try:
        return ApprovalAction(value if isinstance(value, str) else "")
    except ValueError:
        raise InvalidInput(
            f"unknown approval action {str(value)[:64]!r} (one of: {', '.join(ApprovalAction)})"
        ) from None


_A, _R = ApprovalAction, Role

DEFAULT_APPROVAL_POLICIES: Final[Mapping[ApprovalAction, ApprovalPolicy]] = MappingProxyType(
    {
        p.action: p
        for p in (
            # Mirrors the release service's 2-of-n signers: three people ship firmware.
            ApprovalPolicy(_A.FIRMWARE_PUBLISH, 2, _R.RELEASE_SIGNER, 7 * _DAY),
            # A second planner looks at an over-quota order before it can be approved.
            ApprovalPolicy(_A.ORDER_APPROVE, 1, _R.PRODUCTION_PLANNER, 3 * _DAY),
            # Revocation limits damage and must be quick, but a wrong one stops production:
            # two officers (the requester and one more), within a day.
            ApprovalPolicy(_A.CA_REVOKE, 1, _R.SECURITY_OFFICER, _DAY),
            # Rebuilding the root key is the most powerful act there is: three officers.
            ApprovalPolicy(_A.ROOT_RESTORE, 2, _R.SECURITY_OFFICER, _DAY),
            # More devices than ordered is the overproduction the platform exists to stop: a second
            # planner, and soon.
            ApprovalPolicy(_A.QUOTA_RAISE, 1, _R.PRODUCTION_PLANNER, _DAY),
            # Role changes: the requester (administrator or officer) and one officer. Bootstrap
            # leaves exactly one administrator and one officer, who can grow the team this way.
            ApprovalPolicy(_A.ROLE_GRANT, 1, _R.SECURITY_OFFICER, 3 * _DAY),
            ApprovalPolicy(_A.ROLE_REVOKE, 1, _R.SECURITY_OFFICER, _DAY),
            # Weakening a policy is how one would undo every rule above: three officers.
            ApprovalPolicy(_A.APPROVAL_POLICY_SET, 2, _R.SECURITY_OFFICER, 3 * _DAY),
        )
    }
)


# ---------------------------------------------------------------------------------------------------
# the permission table of docs/access.md


def permission_table() -> str:
    """The role x permission table as Markdown (rows: permissions; columns: roles; ``x``: granted)."""
    roles = list(Role)
    lines = [
        "| permission | " + " | ".join(r.value for r in roles) + " |",
        "|---|" + "---|" * len(roles),
    ]
    for permission in Permission:
        cells = ["x" if permission in ROLE_PERMISSIONS[r] else " " for r in roles]
        lines.append(f"| `{permission.value}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def approval_policy_table() -> str:
    """The default approval policies as Markdown."""
    lines = [
        "| action | k (approvers besides the requester) | eligible role | expires after | act permission |",
        "|---|---|---|---|---|",
    ]
    for action, p in DEFAULT_APPROVAL_POLICIES.items():
        ttl = f"{p.ttl_seconds // _DAY} d" if p.ttl_seconds % _DAY == 0 else f"{p.ttl_seconds // _HOUR} h"
        lines.append(
            f"| `{action.value}` | {p.threshold} | {p.eligible_role.value} | {ttl} | "
            f"`{ACTION_PERMISSIONS[action].value}` |"
        )
    return "\n".join(lines) + "\n"


__all__ = [
    "ACTION_PERMISSIONS",
    "DEFAULT_APPROVAL_POLICIES",
    "PERSON_ROLES",
    "READS",
    "ROLE_PERMISSIONS",
    "ApprovalAction",
    "ApprovalPolicy",
    "Permission",
    "Role",
    "approval_policy_table",
    "parse_action",
    "parse_permission",
    "parse_role",
    "permission_table",
    "permits",
    "require",
]
