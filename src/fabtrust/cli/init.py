"""``fabtrust init``: create a data home (database, key store, audit-log key)."""

from __future__ import annotations

import typer

from fabtrust.cli.context import PASSPHRASE_ENV, PIN_ENV, console, options
from fabtrust.home import Home, env_secret


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(
        ctx: typer.Context,
        keystore: str = typer.Option(
            "soft", "--keystore", help="'soft' (encrypted files in the home) or a pkcs11: URI naming a token."
        ),
        origin: str = typer.Option(
            None, "--origin", help="Checkpoint origin of the audit log (default: generated)."
        ),
    ) -> None:
        """Create the data home: database (migrated), key store, audit log and its signing key."""
        opts = options(ctx)
        home = Home.init(
            opts.home,
            database=opts.db,
            keystore=keystore,
            origin=origin,
            passphrase=env_secret(PASSPHRASE_ENV, "new key-store passphrase: "),
            pin=env_secret(PIN_ENV, "PKCS#11 user PIN: "),
        )
        with home:
            cp = home.log.latest_checkpoint()
            console.print(f"initialised data home {opts.home}")
            console.print(f"  database   {home.store.dialect}")
            console.print(f"  key store  {home.config.keystore.split(';')[0]}")
            console.print(f"  log origin {home.config.origin}")
            console.print(f"  log key    {home.log_vkey()}")
            console.print(f"  entries    {cp.size}")
