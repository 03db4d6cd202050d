"""``fabtrust reconcile``: the OEM imports a station's export (``fabtrust station sync``).

A refused export (malformed, unknown station, bad checkpoint, a rewritten log) is exit 2 with the
reason, and nothing is imported. Alerts inside a good export (clones, overproduction, invalid
records) are findings, not failures: they print in red and the exit status is 0.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from fabtrust.cli.context import console, open_home
from fabtrust.cli.station import print_json, read_document, say
from fabtrust.production.documents import MAX_DOCUMENT
from fabtrust.production.reconcile import Report

MAX_LISTED_ALERTS = 50


def render(report: Report) -> None:
    say(f"reconciled station {report.station_id} (log size {report.log_size})")
    summary = Table("", "count", show_header=False)
    summary.add_row("records", str(report.records))
    summary.add_row("registered", str(report.registered))
    summary.add_row("already known", str(report.already_known))
    summary.add_row("awaiting receipt", str(report.awaiting_receipt))
    summary.add_row(
        Text("alerts", style="red" if report.alerts else ""),
        Text(str(len(report.alerts)), style="red" if report.alerts else ""),
    )
    console.print(summary)
    if report.alerts:
        kinds = Table("alert", "count", style="red", header_style="bold red")
        for kind, count in sorted(Counter(str(a.get("kind")) for a in report.alerts).items()):
            kinds.add_row(Text(kind), str(count))
        console.print(kinds)
        for alert in report.alerts[:MAX_LISTED_ALERTS]:
            console.print(Text(f"  {alert.get('kind')}: {alert.get('message', '')}", style="red"))
        if len(report.alerts) > MAX_LISTED_ALERTS:
            console.print(Text(f"  ... and {len(report.alerts) - MAX_LISTED_ALERTS} more", style="red"))
    if report.orders:
        orders = Table("order", "quota", "records", "registered")
        for order_id, counts in sorted(report.orders.items()):
            over = counts.get("records", 0) > counts.get("quota", 0)
            orders.add_row(
                Text(order_id),
                str(counts.get("quota", "-")),
                Text(str(counts.get("records", "-")), style="red" if over else ""),
                str(counts.get("registered", "-")),
            )
        console.print(orders)


def register(app: typer.Typer) -> None:
    @app.command("reconcile")
    def reconcile(
        ctx: typer.Context,
        export: Path = typer.Argument(..., help="A station export (fabtrust station sync)."),
        as_json: bool = typer.Option(False, "--json", help="The report as JSON."),
    ) -> None:
        """OEM: verify a station's export, register its devices, flag clones and overproduction."""
        raw = read_document(export, "station export", MAX_DOCUMENT)
        with open_home(ctx) as home:
            report = home.reconciler.reconcile(raw)
        if as_json:
            print_json(report.to_doc())
        else:
            render(report)
