"""``fabtrust cert``: issue end-entity certificates from CSRs, show and revoke them."""

from __future__ import annotations

from pathlib import Path

import typer
from cryptography.hazmat.primitives import serialization

from fabtrust.cli.ca import _check_free, _read, _write_all
from fabtrust.cli.context import console, open_home
from fabtrust.pki.issuance import NameRequest
from fabtrust.pki.service import REASONS

app = typer.Typer(help="End-entity certificates.", no_args_is_help=True)


@app.command("issue")
def issue(
    ctx: typer.Context,
    ca: str = typer.Option(..., "--ca", help="Issuing CA id (its key must be in this home)."),
    profile: str = typer.Option("device-idevid", "--profile"),
    csr_file: Path = typer.Option(..., "--csr", help="PKCS#10 request, PEM or DER (at most 64 KiB)."),
    device_serial: str = typer.Option(None, "--device-serial"),
    cn: str = typer.Option(None, "--cn"),
    org: str = typer.Option(None, "--org"),
    uris: list[str] = typer.Option(None, "--uri", help="URI subject alternative name (repeat)."),
    dns: list[str] = typer.Option(None, "--dns", help="DNS subject alternative name (repeat)."),
    order: str = typer.Option(None, "--order"),
    out: Path = typer.Option(None, "--out"),
) -> None:
    """Issue a certificate from a CSR under a profile; nothing from the CSR but its key is used."""
    attributes = {k: v for k, v in (("commonName", cn), ("organizationName", org)) if v}
    request = NameRequest(attributes, uris=tuple(uris or ()), dns=tuple(dns or ()))
    _check_free([out])  # before issuing: a refusal must leave no certificate behind
    with open_home(ctx) as home:
        issued = home.pki.issue(
            ca, profile, _read(csr_file, "CSR"), request, device_serial=device_serial, order_id=order
        )
    pem = issued.certificate.public_bytes(serialization.Encoding.PEM)
    if out is None:
        typer.echo(pem.decode(), nl=False)
    else:
        _write_all({out: (pem, 0o644)})
        console.print(f"issued {issued.serial} by {issued.ca_id} to {out}")


@app.command("show")
def show(
    ctx: typer.Context,
    ca: str = typer.Option(..., "--ca"),
    serial: str = typer.Option(..., "--serial", help="Hexadecimal serial number."),
) -> None:
    """A certificate's status and PEM."""
    with open_home(ctx) as home:
        cert, row = home.pki.certificate(ca, serial)
    console.print(f"serial   {row['serial']}  ({row['profile']}, issued by {row['ca_id']})")
    console.print(f"subject  {row['subject']}")
    console.print(f"valid    {row['not_before']:%Y-%m-%d} .. {row['not_after']:%Y-%m-%d}")
    status = row["status"] if row["status"] == "good" else f"revoked ({row['revocation_reason']})"
    console.print(f"status   {status}")
    typer.echo(cert.public_bytes(serialization.Encoding.PEM).decode(), nl=False)


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    reason: str = typer.Option(..., "--reason", help=f"RFC 5280 reason: {', '.join(REASONS)}"),
    ca: str = typer.Option(None, "--ca"),
    serial: str = typer.Option(None, "--serial"),
    device: str = typer.Option(None, "--device", help="Device serial."),
    order: str = typer.Option(None, "--order", help="Every certificate of a production order."),
) -> None:
    """Revoke by serial (with --ca), device serial or production order."""
    with open_home(ctx) as home:
        count = home.pki.revoke(reason=reason, ca_id=ca, serial=serial, device_serial=device, order_id=order)
    console.print(f"revoked {count} certificate(s)")
