"""``fabtrust vendor``: a *simulated* silicon vendor, for line tests and demos only.

``vendor create`` writes the vendor's public certificates: the root (what ``product create
--vendor-root`` takes) and the birth CA it signs. The vendor's CA keys are not kept:
:class:`fabtrust.device.vendor.SiliconVendor` generates them in memory and offers no way to persist
them or to rebuild a vendor from stored keys, so no chips can be made from this vendor once the
command has ended. (A persisted test vendor, and ``station provision`` over it, wait for such a
constructor in ``fabtrust.device.vendor``.) No data home is used.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import typer
from cryptography.hazmat.primitives import serialization

from fabtrust.cli.station import check_output, say, write_document
from fabtrust.crypto.keys import KeyType
from fabtrust.device.vendor import SiliconVendor
from fabtrust.errors import InvalidInput

app = typer.Typer(help="A simulated silicon vendor (tests and demos only).", no_args_is_help=True)

ROOT_FILE = "root-ca.pem"
BIRTH_CA_FILE = "birth-ca.pem"


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Vendor name (organizationName; 1-64 printable characters)."),
    out: Path = typer.Option(..., "--out", help="Directory for the vendor's certificates."),
    key_type: str = typer.Option("ecdsa-p256", "--key-type", help="ecdsa-p256 or ed25519"),
) -> None:
    """A simulated vendor's root and birth CA certificates (test only; its keys are not kept)."""
    kt = KeyType.parse(key_type)
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out {out} is not a directory")
    files = [out / ROOT_FILE, out / BIRTH_CA_FILE]
    if out.is_dir():
        for path in files:
            check_output(path)
    vendor = SiliconVendor(name, now=datetime.now(UTC), key_type=kt)
    try:
        out.mkdir(parents=True, exist_ok=True)  # only now: a refusal leaves no directory
    except OSError as exc:
        raise InvalidInput(f"cannot create {out} ({exc.strerror or type(exc).__name__})") from None
    root = vendor.root.public_bytes(serialization.Encoding.PEM)
    write_document(files[0], root)
    write_document(files[1], vendor.birth_ca.public_bytes(serialization.Encoding.PEM))
    der = vendor.root.public_bytes(serialization.Encoding.DER)
    say(f"simulated silicon vendor {name} (test only)")
    say(f"  root      {vendor.root.subject.rfc4514_string()}")
    say(f"  sha256    {hashlib.sha256(der).hexdigest()}")
    say(f"  written   {files[0]} (for `product create --vendor-root`), {files[1]}")
    say("  its CA keys are not kept: no chips can be made from this vendor later")
