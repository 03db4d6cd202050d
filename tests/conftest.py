"""Suite-wide fixtures. Real backends only: SoftHSM2 and PostgreSQL are started by fixtures and a
missing one fails the run (never a skip)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures.softhsm", "tests.fixtures.postgres", "tests.fixtures.nginx"]

REPO = Path(__file__).resolve().parents[1]
VECTORS = REPO.parent / "shared" / "vectors"


@pytest.fixture(scope="session")
def vectors() -> Path:
    """``../shared/vectors`` beside the clone; its absence fails the suite."""
    if not (VECTORS / "README.md").is_file():
        pytest.fail(f"test vectors not found at {VECTORS} (the shared/ folder must sit beside the clone)")
    return VECTORS
