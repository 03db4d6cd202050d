"""What every command needs: the data home named on the command line, secrets from env or prompt."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from fabtrust.access import ApprovalAction, ApprovalTicket, Caller
from fabtrust.clock import rfc3339
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


def local_caller(home: Home) -> Caller:
    """The CLI on a data home acts as the holder of its key-store secret (logged ``via: local``)."""
    return Caller.local(home.actor)


def gated(
    home: Home,
    action: ApprovalAction,
    subject: str,
    terms: Mapping[str, Any],
    approval: str | None,
    *,
    again: str,
) -> ApprovalTicket | None:
    """For an act that needs a k-of-n approval: with ``--approval`` the ticket to spend; without,
    ask for the approval of exactly ``terms`` and say how to go on (returns None: nothing done)."""
    caller = local_caller(home)
    if approval is not None:
        return home.access.ticket(caller, approval)
    request = home.access.request(caller, action, subject, terms)
    console.print(
        f"approval request {request.request_id}: {request.action.value} on {request.subject}, "
        f"{request.threshold} {request.eligible_role.value}(s) besides the requester must approve "
        f"by {rfc3339(request.expires_at)}"
    )
    console.print(f"  digest    {request.digest}")
    console.print(f"  approvers fabtrust access approve {request.request_id} --digest {request.digest}")
    console.print(f"  then      {again} --approval {request.request_id}")
    return None
