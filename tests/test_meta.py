"""Cheap meta-tests: every module imports on its own, and imports follow DESIGN.md's direction
(faces -> domains -> substrate; ``device`` only uses ``crypto`` and ``errors``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "fabtrust"

SUBSTRATE_ORDER = ["tlog", "keystore", "store", "crypto", "errors", "clock"]
DOMAIN_ORDER = [
    "production",
    "fleet",
    "trace",
    "firmware",
    "pki",
    "access",
]  # each may use those to its right
FACES = {"cli", "api", "web"}

# What each part may import from fabtrust (besides itself). Substrate parts are listed explicitly so
# that a new dependency between them is a decision, not an accident.
ALLOWED: dict[str, set[str]] = {
    "clock": set(),
    "errors": set(),
    "crypto": {"errors"},
    "store": {"errors"},
    "keystore": {"crypto", "errors", "clock"},
    "tlog": {"store", "crypto", "errors", "clock"},
    "device": {"crypto", "errors"},
}
SUBSTRATE = set(SUBSTRATE_ORDER)
for i, domain in enumerate(DOMAIN_ORDER):
    ALLOWED[domain] = set(DOMAIN_ORDER[i + 1 :]) | SUBSTRATE
# the device's wire formats (challenge, response, provisioning, receipt) are what a station speaks;
# faces also drive the simulated silicon vendor and devices (demo, line-equipment tests)
ALLOWED["production"] |= {"device"}
ALLOWED["home"] = SUBSTRATE | set(DOMAIN_ORDER)
for face in FACES:
    ALLOWED[face] = (
        SUBSTRATE | set(DOMAIN_ORDER) | {"home", "device"} | ({"api", "web"} if face == "cli" else set())
    )
ALLOWED["__init__"] = set()
# Single modules a part may import from a part it may not otherwise use: the device reads the
# firmware image format (a pure wire format over bytes), not the rest of ``firmware``.
ALLOWED_MODULES: dict[str, set[str]] = {"device": {"fabtrust.firmware.image"}}


def _modules() -> list[str]:
    names = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        if "migrations" in parts and parts[-1] != "migrations":
            continue  # Alembic scripts run inside Alembic, not as imports
        names.append(".".join(parts))
    return names


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    skip = {"fabtrust.store.migrations.env"}  # needs Alembic's runtime context
    mods = [m for m in _modules() if m not in skip]
    result = subprocess.run([sys.executable, "-c", code, *mods], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_dependency_direction(path: Path) -> None:
    rel = path.relative_to(SRC)
    part = rel.parts[0].removesuffix(".py") if len(rel.parts) == 1 else rel.parts[0]
    if part == "__init__":
        part = "__init__"
    assert part in ALLOWED, f"{rel}: part {part!r} is not in DESIGN.md's layout; add it to the rule"
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module]
        for target in targets:
            if not target.startswith("fabtrust.") and target != "fabtrust":
                continue
            used = _part(target)
            if used in (part, "__init__") or target in ALLOWED_MODULES.get(part, set()):
                continue
            assert used in ALLOWED[part], f"{rel} imports {target}: {part} may not depend on {used}"


def test_the_device_loads_nothing_it_may_not_use() -> None:
    """The rule above checks each import; this checks what importing the device really loads (a
    package's ``__init__`` included), so that ``fabtrust.firmware`` cannot drag its domain in."""
    code = "import sys, fabtrust.device.agent, fabtrust.device.boot, fabtrust.device.vendor\n" + (
        "print('\\n'.join(m for m in sys.modules if m.startswith('fabtrust.')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    allowed = {f"fabtrust.{p}" for p in ALLOWED["device"] | {"device"}} | ALLOWED_MODULES["device"]
    loaded = set(result.stdout.split())
    strays = {m for m in loaded if not any(m == a or m.startswith(a + ".") for a in allowed)}
    assert strays <= {"fabtrust.firmware"}, f"the device loads {sorted(strays)}"
    assert "fabtrust.firmware.image" in loaded


def test_the_package_is_typed() -> None:
    assert (SRC / "py.typed").is_file()
