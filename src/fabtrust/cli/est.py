"""``fabtrust est``: enrollment over secure transport (RFC 7030): one-time enrollment tokens.

``fabtrust est token`` prints the token once, alone on stdout (so ``T=$(fabtrust est token ...)``
works); only its SHA-256 is stored. The device presents it as ``Authorization: Bearer <token>``
to ``/.well-known/est/simpleenroll``.
"""

from __future__ import annotations

import sys

import typer

from fabtrust.cli.context import err_console, open_home
from fabtrust.clock import rfc3339
from fabtrust.pki.est import MAX_TTL, MIN_TTL, EstTokens

app = typer.Typer(help="Enrollment over secure transport (RFC 7030).", no_args_is_help=True)


@app.command("token")
def token(
    ctx: typer.Context,
    ca: str = typer.Option(..., "--ca", help="The CA the token enrolls at (its key is in this home)."),
    profile: str = typer.Option("device-idevid", "--profile"),
    order: str = typer.Option(None, "--order", help="Production order (default: the CA's order)."),
    label: str = typer.Option(..., "--label", help="What the token is for (kept, shown in the log)."),
    ttl: int = typer.Option(
        3600,
        "--ttl",
        min=int(MIN_TTL.total_seconds()),
        max=int(MAX_TTL.total_seconds()),
        help="Lifetime in seconds.",
    ),
) -> None:
    """Make a one-time EST enrollment token bound to a CA, profile and order; printed once."""
    with open_home(ctx) as home:
        new = EstTokens(home.store, home.audit, home.clock, actor=home.actor).create(
            ca, profile, order, label, ttl
        )
    sys.stdout.write(new.token + "\n")
    sys.stdout.flush()
    b = new.binding
    err_console.print(
        f"EST token {b.token_id} for {b.profile} at {b.ca_id} (order {b.order_id or '-'}), "
        f"expires {rfc3339(b.expires_at)}; it is shown only now",
        markup=False,
    )
