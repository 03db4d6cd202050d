"""``fabtrust``: the command-line entry point.

Errors: a fabtrust error prints one line, ``error: <safe message>``, on stderr and exits 2
(DESIGN.md, rules of the house). Usage errors exit 2 as well (Click's convention).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from fabtrust import __version__
from fabtrust.cli import demo, init, keys, log, serve
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
serve.register(app)
demo.register(app)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, prog_name="fabtrust")
    except FabtrustError as exc:
        err_console.print(f"error: {exc.message}", markup=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
