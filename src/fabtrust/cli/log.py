"""``fabtrust log``: the audit log — checkpoints, entries, proofs, exports and offline verification.

``verify`` and ``verify-proof`` need no data home: they take the auditor's inputs (an export or a
proof document, a signed checkpoint and the log's verifier key) and trust nothing else.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from fabtrust.cli.context import console, open_home
from fabtrust.errors import InvalidInput, NotFound
from fabtrust.tlog import proofs
from fabtrust.tlog.checkpoint import NoteVerifier
from fabtrust.tlog.export import verify_export, write_export

app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)

MAX_INPUT = 1024 * 1024


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _open_input(path: Path, what: str) -> BinaryIO:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise NotFound(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise InvalidInput(f"{what} {path} is a directory, not a file") from None
    except OSError as exc:
        raise InvalidInput(f"{what} {path} cannot be read ({_os_reason(exc)})") from None


def _read(path: Path, what: str, limit: int = MAX_INPUT) -> bytes:
    with _open_input(path, what) as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise InvalidInput(f"{what} {path} cannot be read ({_os_reason(exc)})") from None
    if len(data) > limit:
        raise InvalidInput(f"{what} {path} is larger than {limit} bytes")
    return data


@contextmanager
def _open_output(path: Path) -> Iterator[BinaryIO]:
    """Write a file whole or not at all: into a temporary beside it, renamed into place on success."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        fh = partial.open("wb")
    except OSError as exc:
        raise InvalidInput(f"cannot write {path} ({_os_reason(exc)})") from None
    try:
        with fh:
            yield fh
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InvalidInput(f"cannot write {path} ({_os_reason(exc)})") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def _verifier(key: str) -> NoteVerifier:
    """A verifier key given inline (name+hash+key) or as a file holding one."""
    path = Path(key)
    try:
        is_file = path.is_file()
    except OSError:  # e.g. a long inline key: "File name too long"
        is_file = False
    text = _read(path, "verifier key file").decode("utf-8", "replace").strip() if is_file else key.strip()
    return NoteVerifier.parse(text)


def _emit(doc: dict[str, object], out: Path | None) -> None:
    text = json.dumps(doc, indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        with _open_output(out) as fh:
            fh.write(text.encode())
        console.print(f"wrote {out}")


@app.command("checkpoint")
def checkpoint(
    ctx: typer.Context, size: int = typer.Option(None, "--size", help="A past checkpoint.")
) -> None:
    """Print the latest signed checkpoint (C2SP signed note), or the one signed at --size."""
    with open_home(ctx) as home:
        cp = home.log.latest_checkpoint() if size is None else home.log.checkpoint_at(size)
        sys.stdout.write(cp.note.decode("utf-8"))


@app.command("key")
def key(ctx: typer.Context) -> None:
    """Print the log's verifier key (give it to auditors)."""
    with open_home(ctx) as home:
        sys.stdout.write(home.log_vkey() + "\n")


@app.command("entries")
def entries(
    ctx: typer.Context,
    start: int = typer.Option(0, "--start"),
    end: int = typer.Option(None, "--end", help="Exclusive; default start+20 (at most 1000)."),
) -> None:
    """Show audit entries [start, end)."""
    with open_home(ctx) as home:
        end = min(home.log.size(), start + 20) if end is None else end
        table = Table("index", "time", "actor", "action", "subject", "outcome")
        for i, body in enumerate(home.log.entries(start, end), start):
            doc = json.loads(body)
            table.add_row(str(i), doc["time"], doc["actor"], doc["action"], doc["subject"], doc["outcome"])
        console.print(table)


@app.command("export")
def export(
    ctx: typer.Context,
    out: Path = typer.Argument(..., help="Export file (JSON Lines)."),
    checkpoint_out: Path = typer.Option(None, "--checkpoint-out", help="Also write the matching checkpoint."),
) -> None:
    """Export the log up to its latest checkpoint, for offline verification."""
    with open_home(ctx) as home:
        cp = home.log.latest_checkpoint()
        with (
            _open_output(out) as fh,
            Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            ) as progress,
        ):
            task = progress.add_task("exporting", total=cp.size)

            def counted() -> object:
                for n, body in enumerate(home.log.iter_entries(cp.size), 1):
                    if n % 1000 == 0:
                        progress.update(task, completed=n)
                    yield body

            write_export(fh, home.config.origin, cp.size, counted())  # type: ignore[arg-type]
        if checkpoint_out is not None:
            with _open_output(checkpoint_out) as cp_fh:
                cp_fh.write(cp.note)
        console.print(f"exported {cp.size} entries of {home.config.origin} to {out}")


@app.command("verify")
def verify(
    export_file: Path = typer.Argument(..., help="A log export (fabtrust log export)."),
    checkpoint_file: Path = typer.Option(..., "--checkpoint", help="Signed checkpoint to verify against."),
    key: str = typer.Option(..., "--key", help="The log's verifier key, or a file holding it."),
) -> None:
    """Offline: recompute the whole log from an export and check it against a signed checkpoint."""
    verifier = _verifier(key)
    note = _read(checkpoint_file, "checkpoint")
    with _open_input(export_file, "export") as fh:
        report = verify_export(fh, note, verifier)
    console.print(
        f"OK: {report.size} entries of {report.origin} verified; root at checkpoint size "
        f"{report.checkpoint_size} matches the signed checkpoint"
    )
    for entry_type, count in sorted(report.types.items()):
        console.print(f"  {entry_type}: {count}")
    console.print(f"  refused or failed acts: {report.refusals}")


@app.command("prove")
def prove(
    ctx: typer.Context,
    index: int = typer.Option(..., "--index", help="Entry index."),
    size: int = typer.Option(None, "--size", help="Tree size (default: the latest checkpoint)."),
    out: Path = typer.Option(None, "--out", help="Write the proof document here (default stdout)."),
) -> None:
    """Inclusion proof for an entry; verified against the tree's root before it is printed."""
    with open_home(ctx) as home:
        size = home.log.latest_checkpoint().size if size is None else size
        proof = home.log.inclusion_proof(index, size)
        proof.verify()
        _emit(proofs.inclusion_doc(home.config.origin, proof), out)


@app.command("consistency")
def consistency(
    ctx: typer.Context,
    old: int = typer.Option(..., "--old", help="Older tree size."),
    new: int = typer.Option(None, "--new", help="Newer tree size (default: the latest checkpoint)."),
    out: Path = typer.Option(None, "--out"),
) -> None:
    """Consistency proof between two tree sizes (the old tree is a prefix of the new)."""
    with open_home(ctx) as home:
        new = home.log.latest_checkpoint().size if new is None else new
        proof = home.log.consistency_proof(old, new)
        proof.verify()
        _emit(proofs.consistency_doc(home.config.origin, proof), out)


@app.command("verify-proof")
def verify_proof(
    proof_file: Path = typer.Argument(..., help="Proof document (fabtrust log prove / consistency)."),
    checkpoint_file: Path = typer.Option(..., "--checkpoint", help="Signed checkpoint of the proof's tree."),
    key: str = typer.Option(..., "--key", help="The log's verifier key, or a file holding it."),
    entry: Path = typer.Option(None, "--entry", help="Inclusion: the entry's exact bytes."),
    old_checkpoint: Path = typer.Option(
        None, "--old-checkpoint", help="Consistency: the older signed checkpoint."
    ),
) -> None:
    """Offline: verify a proof document and tie it to a signed checkpoint."""
    origin, proof = proofs.parse_doc(_read(proof_file, "proof"))
    proofs.verify_with_checkpoint(
        origin,
        proof,
        _read(checkpoint_file, "checkpoint"),
        _verifier(key),
        entry=_read(entry, "entry") if entry is not None else None,
        old_checkpoint_note=_read(old_checkpoint, "old checkpoint") if old_checkpoint is not None else None,
    )
    console.print(f"OK: {type(proof).__name__} verified against the signed checkpoint of {origin}")
