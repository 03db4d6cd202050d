"""The command line with a PKCS#11 key store (SoftHSM2 tokens from the session fixture).

The PIN comes from FABTRUST_PKCS11_PIN, like an operator's; it must never be echoed. Subprocesses get
SOFTHSM2_CONF through the environment so they see the fixture's tokens.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from fabtrust.home import Home
from fabtrust.tlog.audit import AuditEntry
from fabtrust.tlog.checkpoint import NoteVerifier, open_checkpoint
from tests.cli.result import Result
from tests.cli.test_cli import FABTRUST, SECRET_ENV, Cli, never, snapshot
from tests.cli.test_cli import cli as cli  # the in-process runner fixture (explicit re-export)
from tests.fixtures.softhsm import HsmToken, SoftHsm

pytestmark = pytest.mark.softhsm


def read_only(path: Path) -> Home:
    return Home.open(path, passphrase=never, pin=never)


def test_pkcs11_home_through_the_cli(
    cli: Cli, tmp_path: Path, hsm_token: HsmToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    label, pin = hsm_token
    home = tmp_path / "h"
    monkeypatch.delenv("FABTRUST_KEYSTORE_PASSPHRASE")
    monkeypatch.setenv("FABTRUST_PKCS11_PIN", pin)
    monkeypatch.setattr("fabtrust.home.os.isatty", lambda fd: False)

    init = cli("--home", home, "init", "--keystore", f"pkcs11:token={label}").ok()
    assert f"key store  pkcs11:token={label}" in init.out
    assert not (home / "keystore").exists()
    created = cli("--home", home, "keys", "create", "line-ca", "--type", "ecdsa-p384").ok()
    assert created.out.startswith(f"pkcs11:token={label};object=line-ca;type=private  ecdsa-p384  sign")
    listed = cli("--home", home, "keys", "list").ok().out
    assert "line-ca" in listed
    assert "audit-log-" in listed
    checkpoint = cli("--home", home, "log", "checkpoint").ok().out.encode()
    vkey = cli("--home", home, "log", "key").ok().out.strip()
    assert open_checkpoint(checkpoint, NoteVerifier.parse(vkey)).size == 4  # init's 3, the key
    for run in (init, created):
        assert pin not in run.out + run.err

    # a type this backend does not implement: refused, logged, nothing created
    cli("--home", home, "keys", "create", "pq", "--type", "ml-dsa-65").refused()
    with read_only(home) as h:
        entry = AuditEntry.parse(h.log.entries(4, 5)[0])
        assert (entry.action, entry.outcome.value) == ("key.generate", "refused")
        size, note = h.log.size(), h.log.latest_checkpoint().note

    before = snapshot(home)
    monkeypatch.setenv("FABTRUST_PKCS11_PIN", "0000-wrong")
    wrong = cli("--home", home, "keys", "create", "other").refused("wrong PIN")
    assert "0000-wrong" not in wrong.out + wrong.err
    monkeypatch.delenv("FABTRUST_PKCS11_PIN")
    cli("--home", home, "keys", "list").refused("FABTRUST_PKCS11_PIN")
    assert snapshot(home) == before
    with read_only(home) as h:
        assert (h.log.size(), h.log.latest_checkpoint().note) == (size, note)


def test_pkcs11_init_refusals_write_nothing(
    cli: Cli, tmp_path: Path, hsm_token: HsmToken, monkeypatch: pytest.MonkeyPatch
) -> None:
    label, pin = hsm_token
    home = tmp_path / "h"
    monkeypatch.setenv("FABTRUST_PKCS11_PIN", "1111-wrong")
    cli("--home", home, "init", "--keystore", f"pkcs11:token={label}").refused("wrong PIN")
    assert not home.exists()
    monkeypatch.setenv("FABTRUST_PKCS11_PIN", pin)
    cli("--home", home, "init", "--keystore", "pkcs11:token=no-such-token").refused(
        "no PKCS#11 token labelled"
    )
    assert not home.exists()
    cli("--home", home, "init", "--keystore", f"pkcs11:token={label};bogus=1").refused()
    assert not home.exists()


def test_pkcs11_home_in_a_subprocess(tmp_path: Path, softhsm: SoftHsm, hsm_token: HsmToken) -> None:
    label, pin = hsm_token
    env = {k: v for k, v in os.environ.items() if k not in SECRET_ENV}
    env.update(FABTRUST_PKCS11_PIN=pin, SOFTHSM2_CONF=str(softhsm.conf_path), COLUMNS="200")
    home = tmp_path / "h"

    def run(*args: str) -> Result:
        proc = subprocess.run(
            [str(FABTRUST), "--home", str(home), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr, secrets=(pin,))

    run("init", "--keystore", f"pkcs11:token={label}").ok()
    run("keys", "create", "station", "--type", "ed25519").ok()
    with read_only(home) as h:
        cp = h.log.latest_checkpoint()
        assert (
            open_checkpoint(cp.note, h.log_verifier()).size == 4
        )  # init's 3 (log key, log, people), the key
        assert AuditEntry.parse(h.log.entries(3, 4)[0]).subject.endswith("object=station;type=private")
