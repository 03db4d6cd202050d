"""``fabtrust login``, ``logout`` and ``whoami``: who the CLI acts as.

With server credentials (``fabtrust login``, or ``FABTRUST_SERVER`` + ``FABTRUST_TOKEN``) the CLI
acts on the server as the person the token stands for. Without them it works directly on a local
data home as the holder of its key-store passphrase, logged as such (``via: local``). See
:mod:`fabtrust.cli.remote` for where credentials come from and how they are kept.

The token never appears on a command line (shell history, ``ps``): ``login`` reads it from stdin
(``--token-stdin``), from ``FABTRUST_TOKEN``, or from a prompt that does not echo.
"""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path
from typing import Any

import typer

from fabtrust.cli.remote import (
    CA_ENV,
    SERVER_ENV,
    TOKEN_ENV,
    Credentials,
    Server,
    check_server,
    check_token,
    credentials_path,
    load_credentials,
    remove_credentials,
    save_credentials,
)
from fabtrust.cli.station import print_json, say
from fabtrust.errors import InvalidInput, NotAuthorised, VerificationFailed
from fabtrust.home import local_actor

MAX_TOKEN_LINE = 4096


def _read_token(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline(MAX_TOKEN_LINE + 1)
        if len(line) > MAX_TOKEN_LINE:
            raise InvalidInput("--token-stdin: the first line of stdin is too long for a token")
        token = line.strip()
        if not token:
            raise InvalidInput("--token-stdin: no token on stdin")
        return check_token(token)
    token = os.environ.get(TOKEN_ENV, "")
    if token:
        return check_token(token)
    if sys.stdin.isatty():
        return check_token(getpass.getpass("API token: ").strip())
    raise NotAuthorised(f"no token given: use --token-stdin, set {TOKEN_ENV}, or run on a terminal")


def identity(server: Server) -> dict[str, Any]:
    """``GET /access/whoami``, with the token's expiry from the caller's own token list."""
    who = server.get("/access/whoami")
    if not isinstance(who, dict) or not isinstance(who.get("principal_id"), str):
        raise VerificationFailed(f"the server at {server.url} did not say who the token stands for")
    expires_at = None
    mine = server.get("/access/tokens")
    if isinstance(mine, list):
        expires_at = next(
            (
                t.get("expires_at")
                for t in mine
                if isinstance(t, dict) and who.get("token_id") and t.get("token_id") == who.get("token_id")
            ),
            None,
        )
    return {**who, "server": server.url, "expires_at": expires_at}


def _say_identity(who: dict[str, Any]) -> None:
    roles = who.get("roles")
    held = ", ".join(map(str, roles)) if isinstance(roles, list) and roles else "none"
    say(f"{who.get('principal_id')} ({who.get('kind')}) on {who.get('server')}")
    say(f"  roles   {held}")
    say(f"  token   {who.get('token_id')}, expires {who.get('expires_at') or 'unknown'}")


def register(app: typer.Typer) -> None:
    @app.command("login")
    def login(
        server: str = typer.Option(
            ..., "--server", envvar=SERVER_ENV, help="The fabtrust server, https://host[:port]."
        ),
        token_stdin: bool = typer.Option(
            False, "--token-stdin", help=f"Read the API token from stdin (else {TOKEN_ENV}, else a prompt)."
        ),
        ca_cert: Path = typer.Option(
            None,
            "--ca-cert",
            envvar=CA_ENV,
            help="PEM CA certificate that issued the server's TLS certificate (saved with the login).",
        ),
    ) -> None:
        """Check an API token against the server and keep it for the next commands (a file only you
        can read, at $FABTRUST_CONFIG or ~/.config/fabtrust/credentials.json)."""
        url = check_server(server)
        token = _read_token(token_stdin)
        credentials = Credentials(url, token, ca_cert, "login")
        with Server(credentials) as remote:
            who = identity(remote)
        path = credentials_path()
        save_credentials(path, credentials)
        say(f"logged in as {who['principal_id']}; credentials saved to {path}")
        _say_identity(who)
        if os.environ.get(SERVER_ENV) and os.environ.get(TOKEN_ENV):
            say(f"  note: {SERVER_ENV} and {TOKEN_ENV} are set and take precedence over this login")

    @app.command("logout")
    def logout() -> None:
        """Forget the saved credentials (the token stays valid: `fabtrust access token revoke ID`
        ends it)."""
        path = credentials_path()
        if remove_credentials(path):
            say(f"logged out: removed {path}")
        else:
            say(f"not logged in (no credentials at {path})")
        if os.environ.get(SERVER_ENV) or os.environ.get(TOKEN_ENV):
            say(f"  note: {SERVER_ENV}/{TOKEN_ENV} are still set in this environment")

    @app.command("whoami")
    def whoami(
        ca_cert: Path = typer.Option(
            None, "--ca-cert", envvar=CA_ENV, help="PEM CA certificate for the server's TLS certificate."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the JSON document instead."),
    ) -> None:
        """Who the CLI acts as: the person of the configured token on its server, else (no server
        credentials) the key-store holder of a local data home, who holds every role."""
        credentials = load_credentials(ca_cert)
        if credentials is None:
            who: dict[str, Any] = {"principal_id": local_actor(), "via": "local", "roles": "every role"}
            if as_json:
                print_json(who)
            else:
                say(f"{who['principal_id']} (local, every role)")
            return
        with Server(credentials) as remote:
            who = identity(remote)
        if as_json:
            print_json(who)
        else:
            _say_identity(who)
