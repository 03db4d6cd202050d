"""Soft key store: concurrent creation of one label, and a header that asks for too much memory."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from fabtrust.crypto.keys import KeyType, KeyUsage
from fabtrust.errors import Conflict, InvalidInput
from fabtrust.keystore.soft import SoftKeyStore

PASS = "race-test-passphrase"


def _generate(root: str, barrier: object, results: object) -> None:
    store = SoftKeyStore.open(Path(root), PASS)
    barrier.wait()  # type: ignore[attr-defined]
    try:
        info = store.generate("contested", KeyType.P256, KeyUsage.SIGN)
        results.put(("ok", info.key_id))  # type: ignore[attr-defined]
    except Conflict:
        results.put(("conflict", ""))  # type: ignore[attr-defined]


def test_two_processes_generating_one_label_never_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "ks"
    SoftKeyStore.create(root, PASS, scrypt_n=2**14)
    ctx = multiprocessing.get_context("spawn")
    for _round in range(3):
        (root / "keys" / "contested.json").unlink(missing_ok=True)
        barrier, results = ctx.Barrier(4), ctx.Queue()
        procs = [ctx.Process(target=_generate, args=(str(root), barrier, results)) for _ in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        outcomes = [results.get(timeout=5) for _ in procs]
        winners = [key_id for status, key_id in outcomes if status == "ok"]
        assert len(winners) == 1, outcomes
        assert SoftKeyStore.open(root, PASS).get("soft:contested").key_id == winners[0]
        assert not [p for p in (root / "keys").iterdir() if p.name.startswith(".")]


def test_a_header_demanding_gigabytes_of_scrypt_memory_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ks"
    SoftKeyStore.create(root, PASS, scrypt_n=2**14)
    header = json.loads((root / "keystore.json").read_text())
    header["kdf"]["n"], header["kdf"]["r"] = 2**20, 32
    (root / "keystore.json").write_text(json.dumps(header))
    with pytest.raises(InvalidInput, match="outside the accepted range"):
        SoftKeyStore.open(root, PASS)
