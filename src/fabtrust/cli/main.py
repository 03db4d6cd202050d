"""``fabtrust``: the command-line entry point.

Errors: a fabtrust error prints one line, ``error: <safe message>``, on stderr and exits 2
(DESIGN.md, rules of the house). Usage errors exit 2 as well (Click's convention).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import typer

from fabtrust import __version__
from fabtrust.cli import (
    access,
    ca,
    cert,
    demo,
    est,
    firmware,
    init,
    keys,
    log,
    login,
    order,
    product,
    reconcile,
    serve,
    station,
    updates,
    vendor,
)
from fabtrust.cli.context import Options, err_console
from fabtrust.errors import FabtrustError
from fabtrust.home import default_home

app = typer.Typer(
    name="fabtrust",
    help="fabtrust: zero-trust manufacturing of connected devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fabtrust {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    home: Path = typer.Option(
        None,
        "--home",
        envvar="FABTRUST_HOME",
        help="Data home (default ./fabtrust-data).",
        show_default=False,
    ),
    db: str = typer.Option(
        None,
        "--db",
        envvar="FABTRUST_DB",
        help="Database URL (postgresql+psycopg://...); default SQLite in the home.",
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    ctx.obj = Options(home or default_home(), db)


init.register(app)
app.add_typer(keys.app, name="keys")
app.add_typer(log.app, name="log")
app.add_typer(est.app, name="est")
app.add_typer(ca.app, name="ca")
app.add_typer(cert.app, name="cert")
app.add_typer(vendor.app, name="vendor")
app.add_typer(product.app, name="product")
app.add_typer(station.app, name="station")
app.add_typer(order.app, name="order")
app.add_typer(firmware.app, name="firmware")
app.add_typer(updates.app, name="updates")
reconcile.register(app)
serve.register(app)
demo.register(app)
login.register(app)
app.add_typer(access.app, name="access")


def _fail(message: str, code: int) -> NoReturn:
    one_line = " ".join(message.split())
    err_console.print(f"error: {one_line}", markup=False, soft_wrap=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    # standalone_mode=False: usage errors come back to us instead of being printed as a multi-line
    # panel, so they get the same one-line "error: ..." as every other failure (DESIGN.md).
    try:
        code = app(args=argv, prog_name="fabtrust", standalone_mode=False)
    except FabtrustError as exc:
        _fail(exc.message, exc.exit_code)
    except typer.TyperException as exc:  # Click's exceptions (Typer vendors Click): usage errors
        ctx = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
            typer.echo(ctx.get_help(), err=True)  # a bare command group: its help, as Click does
            sys.exit(exc.exit_code)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
        _fail(exc.format_message() + hint, exc.exit_code)
    except typer.Abort:
        _fail("aborted", 1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
