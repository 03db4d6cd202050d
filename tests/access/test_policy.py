"""The pure policy: the full role x permission matrix against a table written out here by hand (not
computed from policy.py), deny by default, strict names, and sane default approval policies."""

from __future__ import annotations

import pytest

from fabtrust.access.policy import (
    ACTION_PERMISSIONS,
    DEFAULT_APPROVAL_POLICIES,
    ROLE_PERMISSIONS,
    ApprovalAction,
    ApprovalPolicy,
    Permission,
    Role,
    parse_permission,
    parse_role,
    permits,
    require,
)
from fabtrust.errors import InvalidInput, NotAuthorised

# Columns: administrator, security-officer, release-signer, production-planner, factory-operator,
# auditor, station, device. "x" granted, "." not.
COLUMNS = (
    "administrator",
    "security-officer",
    "release-signer",
    "production-planner",
    "factory-operator",
    "auditor",
    "station",
    "device",
)
EXPECTED = {
    #                              adm sec rel pla fac aud sta dev
    "log.read":                   "x   x   .   .   .   x   .   .",
    "pki.read":                   "x   x   .   .   .   x   .   .",
    "pki.ca.create":              ".   x   .   .   .   .   .   .",
    "pki.ca.revoke":              ".   x   .   .   .   .   .   .",
    "pki.root.restore":           ".   x   .   .   .   .   .   .",
    "pki.cert.issue":             ".   x   .   .   .   .   .   .",
    "pki.cert.revoke":            ".   x   .   .   .   .   .   .",
    "pki.crl.issue":              "x   x   .   .   .   .   .   .",
    "pki.est.token":              ".   x   .   .   .   .   .   .",
    "pki.est.enroll":             ".   .   .   .   .   .   .   x",
    "keys.read":                  "x   x   .   .   .   x   .   .",
    "keys.create":                ".   x   .   .   .   .   .   .",
    "firmware.read":              "x   x   x   x   .   x   .   .",
    "firmware.signer.manage":     ".   x   .   .   .   .   .   .",
    "firmware.policy.set":        ".   x   .   .   .   .   .   .",
    "firmware.release.create":    ".   .   x   .   .   .   .   .",
    "firmware.release.approve":   ".   .   x   .   .   .   .   .",
    "firmware.release.publish":   ".   .   x   .   .   .   .   .",
    "updates.read":               "x   x   .   .   .   x   x   x",
    "updates.manage":             "x   .   .   .   .   .   .   .",
    "production.read":            "x   x   .   x   .   x   .   .",
    "production.product.manage":  "x   .   .   .   .   .   .   .",
    "production.vendor.manage":   "x   .   .   .   .   .   .   .",
    "production.station.certify": "x   .   .   .   .   .   .   .",
    "production.order.create":    ".   .   .   x   .   .   .   .",
    "production.order.approve":   ".   .   .   x   .   .   .   .",
    "production.order.seal":      ".   .   .   x   .   .   .   .",
    "production.quota.raise":     ".   .   .   x   .   .   .   .",
    "production.reconcile":       ".   .   .   x   .   .   .   .",
    "production.records.upload":  ".   .   .   .   .   .   x   .",
    "station.read":               "x   x   .   .   x   x   .   .",
    "station.manage":             ".   .   .   .   x   .   .   .",
    "station.provision":          ".   .   .   .   x   .   .   .",
    "access.read":                "x   x   .   .   .   x   .   .",
    "access.principal.manage":    "x   x   .   .   .   .   .   .",
    "access.grant.request":       "x   x   .   .   .   .   .   .",
    "access.token.manage":        ".   x   .   .   .   .   .   .",
    "access.policy.set":          ".   x   .   .   .   .   .   .",
    "approval.request":           "x   x   x   x   .   .   .   .",
    "approval.approve":           ".   x   x   x   .   .   .   .",
    "metrics.read":               "x   x   .   .   .   x   .   .",
}  # fmt: skip
GRANTED = {
    (role, permission): cells.split()[i] == "x"
    for permission, cells in EXPECTED.items()
    for i, role in enumerate(COLUMNS)
}


def test_the_expected_table_names_every_permission_and_role() -> None:
    assert set(EXPECTED) == {p.value for p in Permission}
    assert set(COLUMNS) == {r.value for r in Role}
    assert all(len(cells.split()) == len(COLUMNS) for cells in EXPECTED.values())


@pytest.mark.parametrize(
    ("role", "permission"),
    sorted(GRANTED),
    ids=[f"{r}/{p}" for r, p in sorted(GRANTED)],
)
def test_the_matrix_is_the_expected_one(role: str, permission: str) -> None:
    assert permits([Role(role)], Permission(permission)) is GRANTED[(role, permission)]


@pytest.mark.parametrize("permission", [p.value for p in Permission])
def test_no_roles_permit_nothing(permission: str) -> None:
    assert permits([], Permission(permission)) is False
    with pytest.raises(NotAuthorised, match=f"not permitted: {permission}"):
        require([], Permission(permission))


def test_the_auditor_only_reads() -> None:
    held = ROLE_PERMISSIONS[Role.AUDITOR]
    assert held == {p for p in Permission if p.value.endswith(".read")}
    assert all(p.value.endswith(".read") for p in held)


def test_roles_combine_as_a_union() -> None:
    both = [Role.AUDITOR, Role.FACTORY_OPERATOR]
    assert permits(both, Permission.STATION_PROVISION)
    assert permits(both, Permission.LOG_READ)
    assert not permits(both, Permission.PRODUCTION_ORDER_CREATE)
    require(both, Permission.STATION_MANAGE)  # no raise


def test_the_administrator_cannot_grant_roles_or_touch_firmware_alone() -> None:
    admin = [Role.ADMINISTRATOR]
    assert not permits(admin, Permission.APPROVAL_APPROVE)
    assert not permits(admin, Permission.ACCESS_POLICY_SET)
    for p in (Permission.FIRMWARE_RELEASE_APPROVE, Permission.FIRMWARE_RELEASE_PUBLISH):
        assert not permits(admin, p)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: permits([Role.ADMINISTRATOR], "log.write"), "unknown permission"),  # type: ignore[arg-type]
        (lambda: permits(["root"], Permission.LOG_READ), "unknown role"),  # type: ignore[list-item]
        (lambda: permits([Role.AUDITOR, "root"], Permission.LOG_READ), "unknown role"),  # type: ignore[list-item]
        (lambda: require([Role.ADMINISTRATOR], ""), "unknown permission"),  # type: ignore[arg-type]
        (lambda: parse_role(None), "unknown role"),
        (lambda: parse_permission(3), "unknown permission"),
        (lambda: parse_role("Administrator"), "unknown role"),
    ],
    ids=["unknown-permission", "unknown-role", "unknown-role-after-a-match", "empty-permission",
         "none-role", "int-permission", "case-matters"],
)  # fmt: skip
def test_unknown_names_are_errors_not_denials(call: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        call()  # type: ignore[operator]


def test_permission_names_follow_the_scheme() -> None:
    for p in Permission:
        parts = p.value.split(".")
        assert 2 <= len(parts) <= 3, p
        assert all(parts), p


def test_default_approval_policies_cover_every_action_with_eligible_approvers() -> None:
    assert set(DEFAULT_APPROVAL_POLICIES) == set(ApprovalAction) == set(ACTION_PERMISSIONS)
    for action, pol in DEFAULT_APPROVAL_POLICIES.items():
        assert pol.action is action
        assert permits([pol.eligible_role], Permission.APPROVAL_APPROVE)
        # somebody may ask for it: a role holding approval.request and the act's permission
        assert any(
            permits([r], Permission.APPROVAL_REQUEST) and permits([r], ACTION_PERMISSIONS[action])
            for r in Role
        ), action
    expected = {
        "firmware.publish": (2, "release-signer"),
        "order.approve": (1, "production-planner"),
        "ca.revoke": (1, "security-officer"),
        "root.restore": (2, "security-officer"),
        "quota.raise": (1, "production-planner"),
        "role.grant": (1, "security-officer"),
        "role.revoke": (1, "security-officer"),
        "approval-policy.set": (2, "security-officer"),
    }
    got = {a.value: (p.threshold, p.eligible_role.value) for a, p in DEFAULT_APPROVAL_POLICIES.items()}
    assert got == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0}, "threshold"),
        ({"threshold": 17}, "threshold"),
        ({"threshold": True}, "threshold"),
        ({"ttl_seconds": 59}, "lives from"),
        ({"ttl_seconds": 31 * 86400}, "lives from"),
        ({"eligible_role": Role.AUDITOR}, "may not approve"),
        ({"eligible_role": "station"}, "may not approve"),
        ({"eligible_role": "boss"}, "unknown role"),
        ({"action": "order.delete"}, "unknown approval action"),
    ],
    ids=["k-0", "k-17", "k-bool", "ttl-short", "ttl-long", "auditor", "station", "unknown-role",
         "unknown-action"],
)  # fmt: skip
def test_approval_policies_are_validated(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "action": ApprovalAction.CA_REVOKE,
        "threshold": 1,
        "eligible_role": Role.SECURITY_OFFICER,
        "ttl_seconds": 3600,
    }
    args.update(kwargs)
    with pytest.raises(InvalidInput, match=message):
        ApprovalPolicy(**args)  # type: ignore[arg-type]
