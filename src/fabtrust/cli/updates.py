"""``fabtrust updates``: the signed-update repository (TUF) at the OEM.

``init`` makes the role keys in this home's key store and version 1 of every role; ``publish``
puts a published firmware release's image in the repository (new targets, snapshot and timestamp);
``refresh`` re-signs the timestamp (run it at least daily: it expires after one day by default);
``root`` writes a root version for devices to start from; ``status`` lists versions and targets.
``fabtrust serve`` serves the repository under ``/updates/``.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from fabtrust.cli.context import console, open_home
from fabtrust.cli.station import check_output, print_json, say, write_document
from fabtrust.crypto.keys import KeyType
from fabtrust.firmware.updates import ROLES

app = typer.Typer(help="Signed updates: the TUF repository (OEM).", no_args_is_help=True)


@app.command("init")
def init(
    ctx: typer.Context,
    root_keys: int = typer.Option(3, "--root-keys", min=1, max=9, help="How many root keys (n)."),
    root_threshold: int = typer.Option(2, "--root-threshold", min=1, help="How many must sign a root (k)."),
    key_type: str = typer.Option("ed25519", "--key-type", help="ed25519 or ecdsa-p256."),
) -> None:
    """Create the role keys (k-of-n root, one key each for targets, snapshot, timestamp) and
    version 1 of every role."""
    with open_home(ctx) as home:
        versions = home.updates.init_with_new_keys(
            root_keys=root_keys, root_threshold=root_threshold, key_type=KeyType.parse(key_type)
        )
    say(f"update repository created: {versions.as_dict()} (root {root_threshold} of {root_keys})")


@app.command("publish")
def publish(
    ctx: typer.Context, release: str = typer.Argument(..., help="A published firmware release.")
) -> None:
    """Offer a published release's image to devices: target ``<product>/<version>.mcuboot``."""
    with open_home(ctx) as home:
        target = home.updates.add_release(home.releases, release)
    say(f"target {target.name} ({target.length:,} bytes, sha256 {target.sha256[:16]}...) published")


@app.command("refresh")
def refresh(ctx: typer.Context) -> None:
    """Re-sign the timestamp with a fresh expiry (devices refuse an expired one: freeze attacks)."""
    with open_home(ctx) as home:
        versions = home.updates.refresh_timestamp()
    say(f"timestamp version {versions.timestamp}")


@app.command("root")
def root(
    ctx: typer.Context,
    version: int = typer.Option(1, "--version", min=1, help="Which root version."),
    out: Path = typer.Option(..., "--out", help="Write the root metadata here (a new file)."),
) -> None:
    """A root version for devices to start from (they walk to the newest by themselves)."""
    check_output(out)
    with open_home(ctx) as home:
        document = home.updates.trusted_root(version)
    write_document(out, document)
    say(f"root version {version} written to {out}")


@app.command("status")
def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="JSON instead of tables."),
) -> None:
    """Role versions and the targets on offer (no secret needed)."""
    with open_home(ctx) as home:
        versions = home.updates.versions()
        targets = home.updates.targets()
    if as_json:
        print_json(
            {
                "versions": versions.as_dict(),
                "targets": [
                    {"name": t.name, "sha256": t.sha256, "length": t.length, "custom": t.custom}
                    for t in targets
                ],
            }
        )
        return
    table = Table("role", "version", title="update repository")
    for role in ROLES:
        table.add_row(role, str(getattr(versions, role)))
    console.print(table)
    listing = Table("target", "bytes", "sha256", "release", title="targets")
    for t in targets:
        listing.add_row(t.name, f"{t.length:,}", t.sha256[:16], str(t.custom.get("release", "")))
    console.print(listing)
