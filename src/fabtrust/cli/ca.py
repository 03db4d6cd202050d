"""``fabtrust ca``: the root ceremony, product and issuing CAs, CA bundles for stations.

Custodian passphrases are never arguments: each comes from ``FABTRUST_CUSTODIAN_PASSPHRASE_<n>``
(n counting custodians from 1, in the order given at the ceremony; at a restore, n is the number of
the custodian whose share it is, so the same variable serves both) or, on a terminal, from a prompt
(asked twice at the ceremony).
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import typer
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from rich.table import Table

from fabtrust.access import ApprovalAction
from fabtrust.cli.context import console, gated, local_caller, open_home
from fabtrust.crypto.keys import KeyType
from fabtrust.errors import Conflict, InvalidInput, NotAuthorised, NotFound
from fabtrust.home import Home
from fabtrust.pki import custody
from fabtrust.pki.revocation import RevocationService
from fabtrust.pki.service import (
    DEFAULT_BASE_URL,
    REASONS,
    ROOT_ID,
    ca_revoke_terms,
    make_csr,
    root_restore_terms,
)

app = typer.Typer(
    help="Certificate authorities: root ceremony, product and issuing CAs.", no_args_is_help=True
)

CUSTODIAN_ENV = "FABTRUST_CUSTODIAN_PASSPHRASE_{}"
MAX_DOC = 1024 * 1024


def _read(path: Path, what: str) -> bytes:
    try:
        if path.stat().st_size > MAX_DOC:
            raise InvalidInput(f"{what} {path} is larger than {MAX_DOC} bytes")
        return path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise InvalidInput(f"{what} {path} is a directory") from None


def _custodian_passphrase(number: int, custodian: str, *, confirm: bool) -> str:
    value = os.environ.get(CUSTODIAN_ENV.format(number))
    if value:
        return value
    if not os.isatty(0):
        raise NotAuthorised(f"no passphrase for custodian {custodian}: set {CUSTODIAN_ENV.format(number)}")
    first = getpass.getpass(f"passphrase of custodian {custodian}: ")
    if confirm and getpass.getpass(f"passphrase of custodian {custodian} (again): ") != first:
        raise InvalidInput(f"the two passphrases of custodian {custodian} differ")
    return first


def _attributes(cn: str, org: str, country: str | None = None, ou: str | None = None) -> dict[str, str]:
    attrs = {"commonName": cn, "organizationName": org}
    if country:
        attrs["countryName"] = country
    if ou:
        attrs["organizationalUnitName"] = ou
    return attrs


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _check_free(paths: Iterable[Path | None]) -> None:
    """Refuse before acting if an output file exists (a refusal must change nothing)."""
    taken = [str(p) for p in paths if p is not None and p.exists()]
    if taken:
        raise Conflict(f"refusing to overwrite {', '.join(taken)}")


def _write_all(files: dict[Path, tuple[bytes, int]]) -> None:
    """Write every file or none: refuse if any exists, then write each atomically."""
    _check_free(files)
    for path, (data, mode) in files.items():
        tmp = path.with_name(f".{path.name}.partial")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)


@app.command("init-root")
def init_root(
    ctx: typer.Context,
    custodians: int = typer.Option(
        5, "--custodians", min=2, max=32, help="How many custodians hold a share."
    ),
    threshold: int = typer.Option(3, "--threshold", min=2, help="Shares needed to restore the root key."),
    names: list[str] = typer.Option(
        None, "--custodian", help="Custodian names, in order (default custodian-N)."
    ),
    cn: str = typer.Option("fabtrust Root CA", "--cn", help="Root subject commonName."),
    org: str = typer.Option("fabtrust", "--org", help="Root subject organizationName."),
    country: str = typer.Option(None, "--country", help="Two-letter country code."),
    key_type: str = typer.Option("ecdsa-p384", "--key-type"),
    validity_days: int = typer.Option(None, "--validity-days", min=1),
    base_url: str = typer.Option(
        DEFAULT_BASE_URL, "--base-url", help="http://host[:port] serving CRLs and OCSP."
    ),
    out: Path = typer.Option(
        Path("ceremony"), "--out", help="Directory for the backup, shares and transcript."
    ),
) -> None:
    """The root key ceremony: root key and certificate, encrypted backup, k-of-n custodian shares."""
    if threshold > custodians:
        raise InvalidInput(f"threshold {threshold} is larger than the {custodians} custodians")
    custodian_names = list(names or [f"custodian-{i}" for i in range(1, custodians + 1)])
    if len(custodian_names) != custodians:
        raise InvalidInput(f"{len(custodian_names)} custodian names for {custodians} custodians")
    if out.exists() and not out.is_dir():
        raise InvalidInput(f"--out {out} is not a directory")
    planned = [out / "root-ca.pem", out / "root-backup.json", out / "ceremony-transcript.dsse.json"]
    planned += [out / f"share-{name}.json" for name in custodian_names]
    _check_free(planned)
    pairs = [
        (name, _custodian_passphrase(i, name, confirm=True)) for i, name in enumerate(custodian_names, 1)
    ]
    with open_home(ctx) as home:
        ceremony = home.pki.init_root(
            attributes=_attributes(cn, org, country),
            custodians=pairs,
            threshold=threshold,
            key_type=KeyType.parse(key_type),
            validity_days=validity_days,
            base_url=base_url,
        )
        files = {
            out / "root-ca.pem": (_pem(ceremony.root.certificate), 0o644),
            out / "root-backup.json": (ceremony.backup, 0o600),
            out / "ceremony-transcript.dsse.json": (ceremony.transcript, 0o644),
        }
        for name, document in ceremony.shares:
            files[out / f"share-{name}.json"] = (document, 0o600)
        out.mkdir(parents=True, exist_ok=True)  # only now: a refused ceremony leaves no directory
        _write_all(files)
        console.print(f"root CA {ceremony.root.certificate.subject.rfc4514_string()}")
        console.print(f"  ceremony     {ceremony.ceremony_id}")
        console.print(f"  key          {ceremony.root.key_uri}")
        console.print(f"  shares       {threshold} of {custodians}: {', '.join(custodian_names)}")
        console.print(f"  written to   {out}/ (hand each share file to its custodian only)")


@app.command("restore-root")
def restore_root(
    ctx: typer.Context,
    backup: Path = typer.Option(..., "--backup", help="root-backup.json from the ceremony."),
    shares: list[Path] = typer.Option(..., "--share", help="A custodian share file (repeat)."),
    root_cert: Path = typer.Option(None, "--root-cert", help="The root certificate (for a home without it)."),
    approval: str | None = typer.Option(
        None, "--approval", help="The approved root.restore request (without it: ask for one)."
    ),
) -> None:
    """Rebuild the root key into this key store from its backup and at least the threshold of
    shares. Needs a root.restore approval (k security officers besides the requester): without
    --approval, this asks for one (no share is opened) and does nothing else."""
    if approval is None:
        with open_home(ctx) as home:
            gated(
                home,
                ApprovalAction.ROOT_RESTORE,
                "ca:root",
                root_restore_terms(_root_for_restore(home, root_cert)),
                None,
                again="fabtrust ca restore-root --backup ... --share ...",
            )
        return
    opened = []
    for path in shares:
        document = _read(path, "share")
        # the variable is numbered as at the ceremony: custodian n holds share index n
        custodian, index, _fp = custody.share_fingerprints(document)
        opened.append(custody.open_share(document, _custodian_passphrase(index, custodian, confirm=False)))
    cert = _load_root_cert(root_cert)
    with open_home(ctx) as home:
        record = home.pki.restore_root(
            _read(backup, "backup"),
            opened,
            root_certificate=cert,
            approval=home.access.ticket(local_caller(home), approval),
        )
        console.print(f"root key restored into {record.key_uri} from {len(opened)} shares")


def _load_root_cert(path: Path | None) -> x509.Certificate | None:
    if path is None:
        return None
    try:
        return x509.load_pem_x509_certificate(_read(path, "root certificate"))
    except ValueError:
        raise InvalidInput(f"{path} is not a PEM certificate") from None


def _root_for_restore(home: Home, path: Path | None) -> x509.Certificate:
    """The root a restore brings back: this home's, else the one given with --root-cert."""
    try:
        return home.pki.ca(ROOT_ID).certificate
    except NotFound:
        cert = _load_root_cert(path)
        if cert is None:
            raise InvalidInput(
                "this data home has no root CA: give the root certificate (--root-cert)"
            ) from None
        return cert


@app.command("create-product-ca")
def create_product_ca(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Product line name (a-z, 0-9, -)."),
    cn: str = typer.Option(..., "--cn"),
    org: str = typer.Option(..., "--org"),
    device_domain: str = typer.Option(..., "--device-domain", help="Host of this product's device URIs."),
    key_type: str = typer.Option("ecdsa-p384", "--key-type"),
    validity_days: int = typer.Option(None, "--validity-days", min=1),
) -> None:
    """A product CA signed by the root; its key in this key store."""
    with open_home(ctx) as home:
        record = home.pki.create_product_ca(
            name,
            attributes=_attributes(cn, org),
            device_domain=device_domain,
            key_type=KeyType.parse(key_type),
            validity_days=validity_days,
        )
        console.print(f"{record.ca_id}  {record.certificate.subject.rfc4514_string()}  key {record.key_uri}")


@app.command("csr")
def csr(
    ctx: typer.Context,
    key: str = typer.Option(..., "--key", help="URI of the key in this key store."),
    cn: str = typer.Option(..., "--cn"),
    org: str = typer.Option(..., "--org"),
    out: Path = typer.Option(None, "--out"),
) -> None:
    """A CSR for a key in this key store (a station asking for its issuing CA)."""
    with open_home(ctx) as home:
        pem = make_csr(home.keystore(), key, _attributes(cn, org))
    if out is None:
        typer.echo(pem.decode(), nl=False)
    else:
        _write_all({out: (pem, 0o644)})


@app.command("sign-issuing-ca")
def sign_issuing_ca(
    ctx: typer.Context,
    product: str = typer.Option(..., "--product"),
    csr_file: Path = typer.Option(..., "--csr"),
    station: str = typer.Option(..., "--station"),
    order: str = typer.Option(..., "--order"),
    not_after: datetime = typer.Option(..., "--not-after", help="End of the order's window (ISO 8601, UTC)."),
    out: Path = typer.Option(None, "--out", help="Write the CA bundle for the station here."),
) -> None:
    """Certify a station's order-bound issuing key (path length 0, name-constrained)."""
    end = not_after if not_after.tzinfo else not_after.replace(tzinfo=datetime.now().astimezone().tzinfo)
    _check_free([out])
    with open_home(ctx) as home:
        record = home.pki.sign_issuing_ca(
            product, _read(csr_file, "CSR"), station=station, order_id=order, not_after=end
        )
        bundle = home.pki.export_bundle(record.ca_id)
    if out is None:
        typer.echo(bundle.decode(), nl=False)
    else:
        _write_all({out: (bundle, 0o644)})
        console.print(f"{record.ca_id}: bundle written to {out}")


@app.command("export-bundle")
def export_bundle(
    ctx: typer.Context, ca_id: str = typer.Argument(...), out: Path = typer.Option(None, "--out")
) -> None:
    """The CA and its issuers as a fabtrust.ca-bundle/v1 document (public data)."""
    with open_home(ctx) as home:
        bundle = home.pki.export_bundle(ca_id)
    if out is None:
        typer.echo(bundle.decode(), nl=False)
    else:
        _write_all({out: (bundle, 0o644)})


@app.command("adopt")
def adopt(
    ctx: typer.Context,
    bundle: Path = typer.Argument(..., help="A CA bundle from the OEM."),
    key: str = typer.Option(None, "--key", help="URI of this home's key the first CA certifies (a station)."),
) -> None:
    """Record CAs issued elsewhere (a station adopting its issuing CA and the chain above it)."""
    with open_home(ctx) as home:
        record = home.pki.adopt_bundle(_read(bundle, "CA bundle"), key_uri=key)
        console.print(f"adopted {record.ca_id}{' with its key' if key else ''}")


@app.command("list")
def list_cas(ctx: typer.Context) -> None:
    """The CAs this home knows."""
    with open_home(ctx) as home:
        table = Table("ca", "kind", "parent", "status", "not after", "key here")
        for r in home.pki.cas():
            table.add_row(
                r.ca_id,
                r.kind,
                r.parent_id or "-",
                r.status,
                r.certificate.not_valid_after_utc.strftime("%Y-%m-%d"),
                "yes" if r.key_uri else "no",
            )
        console.print(table)


@app.command("revoke")
def revoke_ca(
    ctx: typer.Context,
    ca_id: str = typer.Argument(...),
    reason: str = typer.Option(..., "--reason", help=f"RFC 5280 reason: {', '.join(REASONS)}"),
    approval: str | None = typer.Option(
        None, "--approval", help="The approved ca.revoke request (without it: ask for one)."
    ),
) -> None:
    """Revoke a product or issuing CA (it appears on its parent's CRL; it can no longer issue).
    Needs a ca.revoke approval (k security officers besides the requester) of this CA and reason:
    without --approval, this asks for one and does nothing else."""
    with open_home(ctx) as home:
        ticket = gated(
            home,
            ApprovalAction.CA_REVOKE,
            f"ca:{ca_id}",
            ca_revoke_terms(home.pki.ca(ca_id), reason),
            approval,
            again=f"fabtrust ca revoke {ca_id} --reason {reason}",
        )
        if ticket is None:
            return
        home.pki.revoke(reason=reason, issuing_ca=ca_id, approval=ticket)
        console.print(f"revoked {ca_id}")


@app.command("crl")
def crl(
    ctx: typer.Context,
    ca_id: str = typer.Argument(..., help="The CA whose CRL to issue (its key must be in this home)."),
    delta: bool = typer.Option(False, "--delta", help="The delta CRL instead of the full one."),
    pem: bool = typer.Option(False, "--pem", help="PEM instead of DER."),
    out: Path = typer.Option(None, "--out", help="Write the CRL here (default: stdout, PEM)."),
) -> None:
    """The CA's current CRL (RFC 5280), issuing a fresh one when the stored one is stale."""
    with open_home(ctx) as home:
        der = RevocationService(home.pki, home.store, home.clock).crl(ca_id, delta=delta)
    as_pem = out is None or pem
    data = x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM) if as_pem else der
    if out is None:
        typer.echo(data.decode(), nl=False)
    else:
        _write_all({out: (data, 0o644)})
        console.print(f"{'delta ' if delta else ''}CRL of {ca_id} written to {out}")
