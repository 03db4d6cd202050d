"""docs/access.md carries the permission table and the default approval policies exactly as
policy.py says them, so the documentation cannot drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from fabtrust.access.policy import (
    DEFAULT_APPROVAL_POLICIES,
    Permission,
    Role,
    approval_policy_table,
    permission_table,
    permits,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "access.md"
FIX = "regenerate it from fabtrust.access.policy.permission_table() / approval_policy_table()"


def _section(name: str) -> str:
    text = DOC.read_text()
    found = re.search(rf"<!-- {name}:begin -->\n(.*?)<!-- {name}:end -->", text, re.S)
    assert found, f"docs/access.md lost its {name} markers"
    return found[1]


def test_the_permission_table_is_the_generated_one() -> None:
    assert _section("permission-table") == permission_table(), FIX


def test_the_permission_table_says_what_permits_says() -> None:
    """Read the table back as data, independently of the renderer."""
    lines = _section("permission-table").strip().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header[0] == "permission"
    roles = [Role(h) for h in header[1:]]
    assert set(roles) == set(Role)
    seen = set()
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        permission = Permission(cells[0].strip("`"))
        seen.add(permission)
        for role, cell in zip(roles, cells[1:], strict=True):
            assert cell in ("x", "")
            assert (cell == "x") == permits([role], permission), (role, permission)
    assert seen == set(Permission)


def test_the_approval_policy_table_is_the_generated_one() -> None:
    section = _section("approval-policies")
    assert section == approval_policy_table(), FIX
    for action, pol in DEFAULT_APPROVAL_POLICIES.items():
        assert f"| `{action.value}` | {pol.threshold} | {pol.eligible_role.value} |" in section
