"""What every command needs: the data home named on the command line, secrets from env or prompt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer
from rich.console import Console

from fabtrust.home import Home, env_secret

PASSPHRASE_ENV = "FABTRUST_KEYSTORE_PASSPHRASE"  # noqa: S105 (a variable name, not a secret)
PIN_ENV = "FABTRUST_PKCS11_PIN"


@dataclass
class Options:
    home: Path
    db: str | None


def options(ctx: typer.Context) -> Options:
    obj = ctx.find_root().obj
    assert isinstance(obj, Options)
    return obj


def open_home(ctx: typer.Context) -> Home:
    opts = options(ctx)
    return Home.open(
        opts.home,
        database=opts.db,
        passphrase=env_secret(PASSPHRASE_ENV, "key-store passphrase: "),
        pin=env_secret(PIN_ENV, "PKCS#11 user PIN: "),
    )


# soft_wrap: a line longer than the terminal (a verifier key, a key id, a path) is printed whole,
# never broken with a newline a user would copy along; tables still fit the width.
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)
