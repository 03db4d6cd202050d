"""``fabtrust demo`` as a user runs it (``make demo`` with fewer devices): it finishes on its own,
checks its own result and reports what it refused; the homes it leaves verify afterwards with the
read-only commands; a directory that is not a demo is never deleted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FABTRUST = [sys.executable, "-m", "fabtrust.cli.main"]


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FABTRUST, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_the_demo_plays_a_production_run_and_checks_itself(tmp_path: Path) -> None:
    home = tmp_path / "demo-home"
    result = run(
        "--home",
        str(home),
        "demo",
        "--fresh",
        "--devices",
        "60",
        "--batch",
        "16",
        "--json",
        "s.json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["devices"] == 60
    assert summary["registered"] == 60
    assert summary["quota"] == {"quota": 60, "used": 60}
    assert all(summary["checks"].values())
    assert summary["refusals"] == {
        "counterfeit chip (unknown vendor)": 2,
        "chip signature does not verify (forged UID)": 1,
        "replayed or foreign challenge response": 1,
        "cloned chip (seen before)": 1,
        "quota exhausted": 1,
    }
    # the firmware release: 2 of 3 release signers approved it; every device booted it
    assert "approved by alice, bob (2 of 3 release signers, 2 needed)" in result.stdout
    assert (summary["release"]["release_id"], summary["release"]["security_counter"]) == ("widget-1.0.0", 1)
    assert summary["release"]["firmware_version"] == "1.0.0+0"
    assert len(summary["release"]["firmware_digest"]) == 64
    assert "self-check" in result.stdout
    assert "FAILED" not in result.stdout
    # the custodians' shares are there, one file each; the station log is readable without a secret
    assert sorted(p.name for p in (home / "oem" / "custody").glob("*.share")) == [
        f"custodian-{i}.share" for i in range(1, 6)
    ]
    checkpoint = run("--home", str(home / "line1"), "log", "checkpoint", cwd=tmp_path)
    assert checkpoint.returncode == 0, checkpoint.stderr
    assert str(summary["logs"]["line1"]["size"]) in checkpoint.stdout
    # again without --fresh: refused, nothing changed
    again = run("--home", str(home), "demo", "--devices", "5", cwd=tmp_path)
    assert again.returncode == 2
    assert "use --fresh" in again.stderr
    assert json.loads((tmp_path / "s.json").read_text()) == summary


def test_the_demo_never_deletes_a_directory_that_is_not_its_own(tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "keep.txt").write_text("keep")
    result = run("--home", str(precious), "demo", "--fresh", "--devices", "5", cwd=tmp_path)
    assert result.returncode == 2
    assert "not a fabtrust demo directory" in result.stderr
    assert (precious / "keep.txt").read_text() == "keep"
