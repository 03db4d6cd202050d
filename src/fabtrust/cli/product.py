"""``fabtrust product``: product lines (a product CA under the root, the silicon vendors they
accept), at the OEM. Their firmware releases are ``fabtrust firmware release``."""

from __future__ import annotations

import hashlib
from pathlib import Path

import typer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rich.table import Table
from rich.text import Text

from fabtrust.cli.context import console, open_home
from fabtrust.cli.station import read_document, say
from fabtrust.crypto.keys import KeyType
from fabtrust.errors import InvalidInput

app = typer.Typer(help="Product lines (OEM); their releases: `fabtrust firmware`.", no_args_is_help=True)

MAX_CERTIFICATE_FILE = 64 * 1024


def load_vendor_root(path: Path) -> x509.Certificate:
    """One PEM CA certificate per file: a silicon vendor's root, the anchor for its chips."""
    data = read_document(path, "vendor root", MAX_CERTIFICATE_FILE)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise InvalidInput(f"vendor root {path} is not a PEM certificate") from None
    if len(certs) != 1:
        raise InvalidInput(f"vendor root {path} holds {len(certs)} certificates; give one per --vendor-root")
    cert = certs[0]
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    except ValueError:
        raise InvalidInput(f"vendor root {path} has malformed extensions") from None
    if not is_ca:
        raise InvalidInput(f"vendor root {path} is not a CA certificate")
    return cert


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Product name: 1-40 of a-z 0-9 -."),
    description: str = typer.Option(..., "--description", help="What the product is (255 characters)."),
    device_domain: str = typer.Option(..., "--device-domain", help="Host of this product's device URIs."),
    vendor_roots: list[Path] = typer.Option(
        ..., "--vendor-root", help="A silicon vendor's root certificate, PEM (repeat for each vendor)."
    ),
    organization: str = typer.Option("fabtrust", "--organization", help="organizationName of the CA."),
    key_type: str = typer.Option("ecdsa-p384", "--key-type", help="Key type of the product CA."),
) -> None:
    """A product line: its product CA (signed by the root) and the silicon vendors it accepts."""
    kt = KeyType.parse(key_type)
    roots = [load_vendor_root(p) for p in vendor_roots]
    with open_home(ctx) as home:
        home.production.create_product(
            name,
            description=description,
            device_domain=device_domain,
            vendor_roots=roots,
            organization=organization,
            key_type=kt,
        )
        product = next(p for p in home.production.products() if p["name"] == name)
    say(f"product {name}: product CA {product['product_ca']}, {len(roots)} accepted vendor(s)")
    for cert in roots:
        say(f"  vendor root  {cert.subject.rfc4514_string()}  sha256 {fingerprint(cert)}")


@app.command("list")
def list_products(ctx: typer.Context) -> None:
    """The product lines of this home."""
    with open_home(ctx) as home:
        products = home.production.products()
    table = Table("product", "product CA", "vendors", "description")
    for p in products:
        table.add_row(Text(p["name"]), Text(p["product_ca"]), str(p["vendors"]), Text(p["description"]))
    console.print(table)
