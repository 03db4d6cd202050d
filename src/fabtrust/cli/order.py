"""``fabtrust order``: production orders at the OEM (product, release, stations, quota, window),
the second person's approval above the limit, and the packages sealed to each station.

Times are RFC 3339 with an offset (``2031-05-04T08:00:00Z``); they are kept in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from fabtrust.access import ApprovalAction
from fabtrust.cli.context import console, gated, open_home
from fabtrust.cli.station import check_output, read_document, say, write_document
from fabtrust.clock import rfc3339
from fabtrust.errors import InvalidInput
from fabtrust.production.documents import SealedPackage
from fabtrust.production.oem import Order

app = typer.Typer(help="Production orders and their sealed packages (OEM).", no_args_is_help=True)


def parse_time(value: str, option: str) -> datetime:
    """An RFC 3339 date-time with an offset (``Z`` or ``+hh:mm``), as UTC."""
    try:
        parsed = datetime.fromisoformat(value) if len(value) <= 40 and "T" in value.upper() else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise InvalidInput(f"{option} wants an RFC 3339 time with an offset, e.g. 2031-05-04T08:00:00Z")
    return parsed.astimezone(UTC)


def _window(order: Order) -> str:
    return f"{rfc3339(order.terms.not_before)} .. {rfc3339(order.terms.not_after)}"


def _print_terms(order: Order) -> None:
    t = order.terms
    say(f"order {t.order_id}: {order.status}")
    say(f"  product   {t.product}, release {t.release_id}")
    say(
        f"  firmware  {t.release_version}, security counter {t.security_counter}, "
        f"image sha256 {t.image_sha256}"
    )
    say(f"  stations  {', '.join(t.stations)}")
    say(f"  quota     {t.quota}")
    say(f"  window    {_window(order)}")


@app.command("create")
def create(
    ctx: typer.Context,
    order_id: str = typer.Argument(..., help="Order id: 1-40 of a-z 0-9 -."),
    product: str = typer.Option(..., "--product"),
    release: str = typer.Option(
        ..., "--release", help="A published release: its id (`firmware release list`) or its version."
    ),
    stations: list[str] = typer.Option(..., "--station", help="A station that may build it (repeat)."),
    quota: int = typer.Option(..., "--quota", min=1, help="Devices to build, all stations together."),
    not_before: str = typer.Option(None, "--not-before", help="Window start, RFC 3339 (default now)."),
    not_after: str = typer.Option(None, "--not-after", help="Window end, RFC 3339."),
    days: int = typer.Option(None, "--days", min=1, max=3650, help="Window end: this many days from now."),
) -> None:
    """An order; above the approval limit it waits for an approval (`order approve`)."""
    if (not_after is None) == (days is None):
        raise InvalidInput("give the window's end: --not-after or --days (one of them)")
    now = datetime.now(UTC).replace(microsecond=0)
    start = parse_time(not_before, "--not-before") if not_before is not None else now
    end = parse_time(not_after, "--not-after") if not_after is not None else now + timedelta(days=days)
    release_id = release if release.startswith(f"{product}-") else f"{product}-{release}"
    with open_home(ctx) as home:
        order = home.production.create_order(
            order_id,
            product=product,
            release_id=release_id,
            stations=stations,
            quota=quota,
            not_before=start,
            not_after=end,
        )
    _print_terms(order)
    if order.status == "awaiting-approval":
        say(f"  the quota is above the approval limit: it needs an approval (`order approve {order_id}`)")


_APPROVAL = typer.Option(
    None,
    "--approval",
    help="The approved request to spend (without it, the approval is asked for and nothing else is done).",
)


@app.command("approve")
def approve(
    ctx: typer.Context, order_id: str = typer.Argument(...), approval: str | None = _APPROVAL
) -> None:
    """Approve an order above the approval limit: asks for an order.approve approval of its terms
    (k production planners besides the requester), then spends it with --approval."""
    with open_home(ctx) as home:
        order = home.production.order(order_id)
        ticket = gated(
            home,
            ApprovalAction.ORDER_APPROVE,
            f"order:{order_id}",
            home.production.approval_terms(order),
            approval,
            again=f"fabtrust order approve {order_id}",
        )
        if ticket is None:
            return
        order = home.production.approve_order(order_id, ticket)
    say(f"order {order_id}: {order.status} by {order.approved_by} (created by {order.created_by})")


@app.command("raise-quota")
def raise_quota(
    ctx: typer.Context,
    order_id: str = typer.Argument(...),
    quota: int = typer.Option(..., "--quota", min=1, help="The order's new quota, all stations together."),
    approval: str | None = _APPROVAL,
) -> None:
    """Raise an approved order's quota: asks for a quota.raise approval (k production planners
    besides the requester), then spends it with --approval. The added units can be sealed to a
    station of the order that has no package yet."""
    with open_home(ctx) as home:
        order = home.production.order(order_id)
        ticket = gated(
            home,
            ApprovalAction.QUOTA_RAISE,
            f"order:{order_id}",
            home.production.approval_terms(order, quota),
            approval,
            again=f"fabtrust order raise-quota {order_id} --quota {quota}",
        )
        if ticket is None:
            return
        order = home.production.raise_quota(order_id, quota, ticket)
    say(f"order {order_id}: quota {order.terms.quota}")


@app.command("seal")
def seal(
    ctx: typer.Context,
    order_id: str = typer.Argument(...),
    request: Path = typer.Option(..., "--request", help="The station's signed issuing request."),
    station_quota: int = typer.Option(
        None, "--station-quota", min=1, help="This station's share (default: the whole quota)."
    ),
    out: Path = typer.Option(..., "--out", help="Write the sealed package here."),
) -> None:
    """Certify the station's issuing key for the order and seal the order's package to it."""
    raw = read_document(request, "issuing request")
    check_output(out)
    with open_home(ctx) as home:
        document = home.production.seal_package(order_id, raw, station_quota=station_quota)
        write_document(out, document, 0o600)
        sealed = SealedPackage.parse(document)
        share = next(
            p["quota"] for p in home.production.packages(order_id) if p["package_id"] == sealed.package_id
        )
    say(f"sealed package {sealed.package_id} of order {order_id} to station {sealed.station_id}")
    say(f"  station quota {share}; written to {out}")


@app.command("list")
def list_orders(ctx: typer.Context) -> None:
    """Every order: product, release, stations, quota, status, window."""
    with open_home(ctx) as home:
        orders = home.production.orders()
    table = Table("order", "product", "release", "stations", "quota", "status", "not before", "not after")
    for o in orders:
        t = o.terms
        table.add_row(
            Text(t.order_id),
            Text(t.product),
            Text(t.release_id),
            Text(", ".join(t.stations)),
            str(t.quota),
            Text(o.status),
            rfc3339(t.not_before),
            rfc3339(t.not_after),
        )
    console.print(table)


@app.command("show")
def show(ctx: typer.Context, order_id: str = typer.Argument(...)) -> None:
    """An order's terms, status and the packages sealed for it."""
    with open_home(ctx) as home:
        order = home.production.order(order_id)
        packages = home.production.packages(order_id)
    _print_terms(order)
    say(f"  created   by {order.created_by}")
    if order.approved_by:
        say(f"  approved  by {order.approved_by}")
    sealed, quota = sum(p["quota"] for p in packages), order.terms.quota
    say(f"  packages  {len(packages)}, {sealed} of {quota} sealed, {quota - sealed} left")
    if packages:
        table = Table("package", "station", "issuing CA", "quota", "sealed at", "sha256")
        for p in packages:
            at = p["created_at"]
            table.add_row(
                Text(p["package_id"]),
                Text(p["station_id"]),
                Text(p["issuing_ca"]),
                str(p["quota"]),
                rfc3339(at.replace(microsecond=0)),
                p["sha256"][:16],
            )
        console.print(table)
