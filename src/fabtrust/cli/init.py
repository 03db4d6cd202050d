"""``fabtrust init``: create a data home (database, key store, audit-log key) and its first two
people, an administrator and a security officer, whose API tokens are shown this once."""

from __future__ import annotations

from datetime import timedelta

import typer

from fabtrust.cli.context import PASSPHRASE_ENV, PIN_ENV, console, options
from fabtrust.home import Home, env_secret

BOOTSTRAP_GRANT = timedelta(days=365)
BOOTSTRAP_TOKEN = timedelta(days=30)


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
        admin: str = typer.Option("admin", "--admin", help="Principal id of the first administrator."),
        officer: str = typer.Option(
            "security-officer", "--security-officer", help="Principal id of the first security officer."
        ),
    ) -> None:
        """Create the data home: database (migrated), key store, audit log and its signing key; then
        the first administrator and security officer (grants for a year, tokens for 30 days, shown
        once). Every other principal and role goes through them (``docs/access.md``)."""
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
            admin_token, officer_token = home.access.bootstrap(
                admin, officer, valid_for=BOOTSTRAP_GRANT, token_ttl=BOOTSTRAP_TOKEN
            )
            cp = home.log.latest_checkpoint()
            console.print(f"initialised data home {opts.home}")
            console.print(f"  database   {home.store.dialect}")
            console.print(f"  key store  {home.config.keystore.split(';')[0]}")
            console.print(f"  log origin {home.config.origin}")
            console.print(f"  log key    {home.log_vkey()}")
            console.print(f"  entries    {cp.size}")
            console.print(
                "first people (the tokens are shown this once and stored only hashed; keep them secret):"
            )
            for who, role, issued in (
                (admin, "administrator", admin_token),
                (officer, "security-officer", officer_token),
            ):
                console.print(f"  {who} ({role}), until {issued.expires_at:%Y-%m-%d}", highlight=False)
                console.print(f"    {issued.token}", highlight=False, soft_wrap=True)
