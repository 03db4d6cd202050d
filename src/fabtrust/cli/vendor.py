"""``fabtrust vendor``: a *simulated* silicon vendor, for line tests and demos only.

``vendor create`` writes the vendor's public certificates: the root (what ``product create
--vendor-root`` takes) and the birth CA it signs, and ``vendor-state.pem``: the birth CA's key in
clear (mode 0600), so that ``station provision --vendor-dir`` can make chips of this vendor for a
line test. That file is the simulation's, never a real vendor's (whose birth CA stays in its HSM).
The vendor's root key is not kept. No data home is used.
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
STATE_FILE = "vendor-state.pem"  # test only: the birth CA key in clear, for `station provision`


@app.command("create")
def create(
    name: str = typer.Argument(..., help="Vendor name (organizationName; 1-64 printable characters)."),
    out: Path = typer.Option(..., "--out", help="Directory for the vendor's certificates."),
    key_type: str = typer.Option("ecdsa-p256", "--key-type", help="ecdsa-p256 or ed25519"),
) -> None:
    """A simulated vendor: its root and birth CA certificates, and (test only) its state."""
    kt = KeyType.parse(key_type)
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out {out} is not a directory")
    files = [out / ROOT_FILE, out / BIRTH_CA_FILE, out / STATE_FILE]
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
    write_document(files[2], vendor.export_state(), mode=0o600)
    der = vendor.root.public_bytes(serialization.Encoding.DER)
    say(f"simulated silicon vendor {name} (test only)")
    say(f"  root      {vendor.root.subject.rfc4514_string()}")
    say(f"  sha256    {hashlib.sha256(der).hexdigest()}")
    say(f"  written   {files[0]} (for `product create --vendor-root`), {files[1]}")
    say(f"  {files[2]}: its birth CA key in clear (0600, TEST ONLY), for `station provision`")
