"""``fabtrust station``: a factory station's side of a production run, and the OEM's certification
of a station.

Station side (run in the station's data home): ``enroll`` (identity and sealing keys made here),
``install`` (the OEM's certificate; pins the OEM package signer), ``request`` (an order-bound issuing
key and the signed request for its CA), ``load`` (a sealed package), ``status`` and ``sync`` (the
export the OEM reconciles). OEM side (run in the OEM's data home): ``certify``.

Documents travel as files. An output file is never overwritten, and it is checked before anything
is done, so a refusal changes nothing. The file helpers here serve the production commands
(``product``, ``order``, ``reconcile``) too.

There is no ``station provision``: driving simulated chips needs a silicon vendor whose CA keys
outlive one command, and :class:`fabtrust.device.vendor.SiliconVendor` can be neither persisted nor
rebuilt from stored keys (see ``fabtrust vendor``).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.table import Table
from rich.text import Text

from fabtrust.cli.context import console, open_home
from fabtrust.cli.log import _read
from fabtrust.crypto.keys import key_id
from fabtrust.errors import Conflict, FabtrustError, InvalidInput
from fabtrust.production.documents import MAX_DOCUMENT, MAX_SMALL_DOCUMENT, StationCertificate

app = typer.Typer(help="A factory station: enrollment, packages, status and sync.", no_args_is_help=True)


# -- files (shared by the production commands) ------------------------------------------------------


def read_document(path: Path, what: str, limit: int = MAX_SMALL_DOCUMENT) -> bytes:
    """A document file, whole: missing, a directory, unreadable or above ``limit`` is refused."""
    return _read(path, what, limit)


def check_output(path: Path) -> None:
    """Before acting: the output is a new file in an existing, writable directory."""
    if path.exists() or path.is_symlink():
        raise Conflict(f"refusing to overwrite {path}")
    parent = path.parent
    if not parent.is_dir():
        raise InvalidInput(f"cannot write {path} (no directory {parent})")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InvalidInput(f"cannot write {path} (permission denied)")


def write_document(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write a new file whole or not at all (a temporary beside it, renamed into place)."""
    check_output(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InvalidInput(f"cannot write {path} ({exc.strerror or type(exc).__name__})") from None


def say(line: str) -> None:
    """A line of plain text: names, paths and subjects are printed as given, never as markup."""
    console.print(line, markup=False)


def print_json(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


# -- station side -----------------------------------------------------------------------------------


@app.command("enroll")
def enroll(
    ctx: typer.Context,
    station_id: str = typer.Argument(..., help="This station's id: 1-40 of a-z 0-9 -."),
    out: Path = typer.Option(..., "--out", help="Write the enrollment request (for the OEM) here."),
    organization: str = typer.Option("fabtrust", "--organization", help="organizationName in the CSR."),
) -> None:
    """Make this home a station: identity and sealing keys in its key store, a signed request."""
    check_output(out)
    with open_home(ctx) as home:
        document = home.station.enroll(station_id, organization=organization)
        write_document(out, document)
    say(f"station {station_id} enrolled: identity and sealing keys made in this key store")
    say(f"  request written to {out}; the OEM certifies it with `fabtrust station certify`")


@app.command("install")
def install(
    ctx: typer.Context,
    certificate: Path = typer.Argument(..., help="The station certificate document from the OEM."),
) -> None:
    """Install the OEM's certificate for this station and pin the OEM's package signer."""
    raw = read_document(certificate, "station certificate")
    with open_home(ctx) as home:
        home.station.install_certificate(raw)
    answer = StationCertificate.parse(raw)
    say(f"station {answer.station_id}: certificate installed")
    say(f"  OEM package signer pinned: key id {key_id(answer.oem_signer)}")


@app.command("request")
def request(
    ctx: typer.Context,
    order: str = typer.Argument(..., help="The production order."),
    out: Path = typer.Option(..., "--out", help="Write the signed issuing request (for the OEM) here."),
) -> None:
    """Make this order's issuing key here (once) and the signed request for its CA."""
    check_output(out)
    with open_home(ctx) as home:
        document = home.station.issuing_request(order)
        write_document(out, document)
    say(f"issuing request for order {order} written to {out}")
    say("  the OEM seals the order's package with `fabtrust order seal`")


@app.command("load")
def load(
    ctx: typer.Context,
    package: Path = typer.Argument(..., help="The sealed production package from the OEM."),
) -> None:
    """Open, verify and load a sealed package (for this station only; inside the order's window)."""
    raw = read_document(package, "package", MAX_DOCUMENT)
    with open_home(ctx) as home:
        status = home.station.load(raw)
    say(f"loaded package {status['package']} for order {status['order']}")
    say(f"  issuing CA  {status['issuing_ca']}")
    say(f"  quota       {status['quota']} ({status['remaining']} remaining)")
    say(f"  window      {status['not_before']} .. {status['not_after']}")


@app.command("provision")
def provision(
    ctx: typer.Context,
    order: str = typer.Argument(..., help="The order whose package is loaded here."),
    devices: int = typer.Option(
        ..., "--devices", min=1, max=1_000_000, help="Simulated devices to provision."
    ),
    vendor_dir: Path = typer.Option(..., "--vendor-dir", help="What `fabtrust vendor create` wrote."),
    batch: int = typer.Option(
        50, "--batch", min=1, max=1000, help="Devices per provisioning call (one commit)."
    ),
) -> None:
    """Provision simulated devices end to end (line test): challenge, genuineness, certificate,
    record, secrets, image, boot, install receipt; refusals counted by reason."""
    from collections import Counter

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    from fabtrust.device.agent import DeviceAgent
    from fabtrust.device.vendor import SiliconVendor
    from fabtrust.production.station import Provisioned

    vendor = SiliconVendor.load_state(
        read_document(vendor_dir / "vendor-state.pem", "simulated vendor state")
    )
    refused: Counter[str] = Counter()
    done = 0
    with open_home(ctx) as home:
        station = home.station
        station.order_status(order)  # a clear error before any work if no package is loaded
        image = station.image(order)  # one image for every device of the order
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(f"provisioning {order}", total=devices)
            while done + sum(refused.values()) < devices:
                n = min(batch, devices - done - sum(refused.values()))
                chips = {}
                answers = []
                for _ in range(n):
                    chip = vendor.make_chip()
                    chips[chip.uid] = chip
                    challenge = station.challenge(order)
                    answers.append((challenge, DeviceAgent(chip).answer(challenge)))
                receipts = []
                for result in station.provision(order, answers):
                    if isinstance(result, Provisioned):
                        agent = DeviceAgent(chips[result.chip_uid])
                        try:
                            receipts.append(agent.install(result.provisioning, image))
                        except FabtrustError as exc:  # the device did not boot the image: no receipt
                            refused[f"device: {exc.message}"] += 1
                            continue
                        done += 1
                    else:
                        refused[result.message] += 1
                for outcome in station.complete(receipts):
                    if not isinstance(outcome, str):
                        refused[f"receipt: {outcome.message}"] += 1
                progress.update(task, completed=done + sum(refused.values()))
        status = station.order_status(order)
    table = Table("", "", title=f"station provision {order}")
    table.add_row("provisioned", str(done))
    for reason, count in sorted(refused.items()):
        table.add_row(Text(f"refused: {reason}", style="red"), str(count))
    table.add_row("quota", f"{status['used']} used of {status['quota']}; {status['remaining']} left")
    console.print(table)


@app.command("status")
def status(
    ctx: typer.Context,
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
) -> None:
    """This station's packages: quota, used, remaining, devices issued and programmed."""
    with open_home(ctx) as home:
        identity = home.station.identity()
        orders = home.station.status()
    certified = identity["identity_cert"] is not None
    if as_json:
        print_json({"station_id": identity["station_id"], "certified": certified, "orders": orders})
        return
    state = "certificate installed" if certified else "awaiting its certificate from the OEM"
    say(f"station {identity['station_id']} ({state})")
    table = Table(
        "order", "package", "issuing CA", "quota", "used", "remaining", "issued", "programmed", "not after"
    )
    for s in orders:
        table.add_row(
            *(
                Text(str(s[k]))
                for k in (
                    "order",
                    "package",
                    "issuing_ca",
                    "quota",
                    "used",
                    "remaining",
                    "issued",
                    "programmed",
                    "not_after",
                )
            )
        )
    console.print(table)


@app.command("sync")
def sync(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="Write the station export (for the OEM) here."),
    since: int = typer.Option(
        0, "--since", min=0, help="The log size the OEM saw at the last sync (0 for the first)."
    ),
) -> None:
    """Export every production record, the signed log checkpoint and the proofs the OEM checks."""
    check_output(out)
    with open_home(ctx) as home:
        document = home.station.export(since_size=since)
        write_document(out, document)
    doc = json.loads(document)
    lines = doc["checkpoint"].splitlines()  # C2SP checkpoint: origin, tree size, root hash, ...
    size = lines[1] if len(lines) > 1 else "?"
    say(f"exported {len(doc['records'])} record(s) to {out}")
    say(f"  log size {size}, consistency from {since}; the OEM runs `fabtrust reconcile` on it")


# -- OEM side ---------------------------------------------------------------------------------------


@app.command("certify")
def certify(
    ctx: typer.Context,
    enrollment: Path = typer.Argument(..., help="A station's enrollment request."),
    out: Path = typer.Option(..., "--out", help="Write the station certificate document here."),
    organization: str = typer.Option("fabtrust", "--organization", help="organizationName certified."),
    station_domain: str = typer.Option(
        "stations.fabtrust.local", "--station-domain", help="The station's DNS name is <id>.<domain>."
    ),
) -> None:
    """OEM: certify an enrolled station (root-signed) and record its sealing and log keys."""
    raw = read_document(enrollment, "enrollment")
    check_output(out)
    with open_home(ctx) as home:
        document = home.production.certify_station(
            raw, organization=organization, station_domain=station_domain
        )
        write_document(out, document)
    answer = StationCertificate.parse(document)
    say(f"station {answer.station_id} certified; certificate document written to {out}")
    say("  the station installs it with `fabtrust station install`")
