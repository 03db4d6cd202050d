"""``fabtrust keys``: list and create keys in the data home's key store (every creation logged)."""

from __future__ import annotations

import typer
from rich.table import Table

from fabtrust.cli.context import console, open_home
from fabtrust.crypto.keys import KeyType, KeyUsage
from fabtrust.errors import InvalidInput

app = typer.Typer(help="Keys in the data home's key store.", no_args_is_help=True)


@app.command("list")
def list_keys(ctx: typer.Context) -> None:
    """List keys: URI, type, usage, key id (SHA-256 of the public key)."""
    with open_home(ctx) as home:
        table = Table("uri", "type", "usage", "key id")
        for info in home.keys.list():
            table.add_row(info.uri, info.key_type.value, info.usage.value, info.key_id[:16])
        console.print(table)


@app.command("create")
def create(
    ctx: typer.Context,
    label: str = typer.Argument(..., help="Label: 1-64 of A-Z a-z 0-9 . _ -"),
    key_type: str = typer.Option(
        "ecdsa-p256", "--type", help="ecdsa-p256, ecdsa-p384, ed25519, ml-dsa-65, x25519"
    ),
    usage: str = typer.Option("sign", "--usage", help="sign or agree"),
    purpose: str = typer.Option("operator request", "--purpose", help="Why the key exists (logged)."),
) -> None:
    """Generate a non-exportable key in the key store."""
    kt = KeyType.parse(key_type)
    try:
        ku = KeyUsage(usage)
    except ValueError:
        raise InvalidInput(f"unknown usage {usage!r} (sign or agree)") from None
    with open_home(ctx) as home:
        info = home.keys.generate(label, kt, ku, purpose=purpose)
        console.print(f"{info.uri}  {info.key_type.value}  {info.usage.value}  key id {info.key_id}")
