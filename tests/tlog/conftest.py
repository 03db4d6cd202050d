"""Fixtures of the log tests: a store on each engine and a log signer (origin ``ORIGIN``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from fabtrust.store.engine import Store
from fabtrust.tlog.checkpoint import Ed25519NoteSigner

ORIGIN = "test.fabtrust.local/log"


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url)
    yield s
    s.close()


@pytest.fixture
def signer() -> Ed25519NoteSigner:
    return Ed25519NoteSigner(ORIGIN, ed25519.Ed25519PrivateKey.generate())
