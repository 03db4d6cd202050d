"""``fabtrust demo``: the substrates at work on embedded defaults, checked by the demo itself.

Until the production run exists (it will replace this script's middle), the demo shows the
foundation: a data home with its key store and database, keys of every type created and used
(each use logged), a batch of audit entries integrated under signed checkpoints, and then what an
outside auditor does: verify an inclusion proof, a consistency proof and the whole log offline,
and see a tampered export refused.
"""

from __future__ import annotations

import io
import secrets
import shutil
import time
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from fabtrust.cli.context import console, options
from fabtrust.crypto import hpke
from fabtrust.crypto.keys import KeyType, KeyUsage, verify_signature
from fabtrust.errors import Conflict, FabtrustError, VerificationFailed
from fabtrust.home import Home
from fabtrust.tlog import proofs
from fabtrust.tlog.audit import Outcome
from fabtrust.tlog.export import verify_export, write_export

DEMO_TYPE = "fabtrust.audit.demo/v1"


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        ctx: typer.Context,
        fresh: bool = typer.Option(False, "--fresh", help="Delete the demo home first."),
        entries: int = typer.Option(20_000, "--entries", min=1, max=2_000_000, help="Audit entries to log."),
        batch: int = typer.Option(1000, "--batch", min=1, max=100_000, help="Entries per signed checkpoint."),
    ) -> None:
        """Play the demo in a fresh data home and check its own result."""
        home_path: Path = options(ctx).home
        if fresh and home_path.exists():
            if not (home_path / "home.json").exists() and any(home_path.iterdir()):
                raise Conflict(f"{home_path} is not a fabtrust data home; refusing to delete it")
            shutil.rmtree(home_path)
        # The demo's key-store passphrase lives in this process only: the demo home can be inspected
        # afterwards with read-only commands (log checkpoint, prove, export), which need no secret.
        passphrase = secrets.token_urlsafe(24)
        t0 = time.perf_counter()
        home = Home.init(
            home_path, passphrase=lambda: passphrase, pin=lambda: "", actor="demo:operator", database=None
        )
        with home:
            _run(home, entries, batch, t0)

    return None


def _run(home: Home, n_entries: int, batch: int, t0: float) -> None:
    console.rule("[bold]fabtrust demo: the foundation")
    console.print(f"data home   {home.path}  (SQLite {home.store.engine.url.database})")
    console.print(f"audit log   {home.config.origin}")
    console.print(f"log key     {home.log_vkey()}")
    first = home.log.latest_checkpoint()

    # Keys of every type, created and used through the audited key service.
    keys = Table("key", "type", "usage", "operation", "result", title="keys (soft key store, sealed at rest)")
    message = b"fabtrust demo message"
    for key_type in (KeyType.P256, KeyType.P384, KeyType.ED25519, KeyType.MLDSA65):
        info = home.keys.generate(
            f"demo-{key_type.value}", key_type, KeyUsage.SIGN, purpose="demo signing key"
        )
        signature = home.keys.sign(info.uri, message, purpose="demo signature")
        verify_signature(info.public_key_der, message, signature)
        keys.add_row(info.uri, key_type.value, "sign", f"{len(signature)}-byte signature", "verified")
    for key_type in (KeyType.P256, KeyType.X25519):
        info = home.keys.generate(
            f"demo-seal-{key_type.value}", key_type, KeyUsage.AGREE, purpose="demo sealing key"
        )
        sealed = hpke.seal(info.public_key_der, b"device-class secret", b"fabtrust demo")
        opened = home.keys.hpke_open(info.uri, sealed, b"fabtrust demo", purpose="demo unseal")
        keys.add_row(
            info.uri,
            key_type.value,
            "agree",
            "HPKE seal/open",
            "ok" if opened == b"device-class secret" else "FAILED",
        )
    console.print(keys)

    # A stream of audit entries, integrated in batches, one signed checkpoint per batch.
    audit = home.audit
    started = time.perf_counter()
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task("logging audit entries", total=n_entries)
        done = 0
        while done < n_entries:
            size = min(batch, n_entries - done)
            audit.append(
                [
                    audit.entry(
                        DEMO_TYPE,
                        "demo:line-1",
                        "demo.event",
                        f"unit-{done + i:07d}",
                        Outcome.OK if (done + i) % 97 else Outcome.REFUSED,
                        {"seq": done + i},
                    )
                    for i in range(size)
                ]
            )
            done += size
            progress.update(task, completed=done)
    elapsed = time.perf_counter() - started
    latest = home.log.latest_checkpoint()
    console.print(
        f"logged {n_entries} entries in {elapsed:.2f} s ({n_entries / elapsed:,.0f} entries/s, "
        f"{-(-n_entries // batch)} signed checkpoints)"
    )
    console.rule("latest checkpoint (C2SP signed note)")
    console.print(latest.note.decode(), markup=False, end="", soft_wrap=True)

    # What an auditor does, with public inputs only.
    verifier = home.log_verifier()
    index = secrets.randbelow(latest.size)
    inclusion = home.log.inclusion_proof(index, latest.size)
    proofs.verify_with_checkpoint(
        home.config.origin, inclusion, latest.note, verifier, entry=home.log.entries(index, index + 1)[0]
    )
    consistency = home.log.consistency_proof(first.size, latest.size)
    proofs.verify_with_checkpoint(
        home.config.origin, consistency, latest.note, verifier, old_checkpoint_note=first.note
    )
    export = io.BytesIO()
    write_export(export, home.config.origin, latest.size, home.log.iter_entries(latest.size))
    export_path = home.path / "audit-export.jsonl"
    export_path.write_bytes(export.getvalue())
    (home.path / "audit-checkpoint.txt").write_bytes(latest.note)
    (home.path / "audit-log.vkey").write_text(home.log_vkey() + "\n")
    report = verify_export(io.BytesIO(export.getvalue()), latest.note, verifier)
    tampered = bytearray(export.getvalue())
    at = tampered.index(b'"seq":', len(tampered) // 2) + 6
    tampered[at] = ord("7") if tampered[at] != ord("7") else ord("8")
    try:
        verify_export(io.BytesIO(bytes(tampered)), latest.note, verifier)
        tamper_result = "NOT DETECTED"
    except (VerificationFailed, FabtrustError) as exc:
        tamper_result = f"refused: {exc.message}"

    summary = Table("check", "result", title="auditor's checks (public key and signed checkpoint only)")
    summary.add_row(
        f"inclusion proof, entry {index} in tree {latest.size}", f"ok ({len(inclusion.hashes)} hashes)"
    )
    summary.add_row(
        f"consistency proof, tree {first.size} -> {latest.size}", f"ok ({len(consistency.hashes)} hashes)"
    )
    summary.add_row(
        f"whole-log export, {report.size} entries recomputed", "root matches the signed checkpoint"
    )
    summary.add_row("refused acts in the log", str(report.refusals))
    summary.add_row("export with one flipped digit", tamper_result)
    console.print(summary)
    if tamper_result == "NOT DETECTED":
        raise VerificationFailed("demo self-check failed: a tampered export verified")
    console.print(f"demo finished in {time.perf_counter() - t0:.1f} s. Try, without any secret:")
    console.print(f"  fabtrust --home {home.path} log checkpoint")
    console.print(
        f"  fabtrust log verify {export_path} --checkpoint {home.path / 'audit-checkpoint.txt'} "
        f"--key {home.path / 'audit-log.vkey'}"
    )
