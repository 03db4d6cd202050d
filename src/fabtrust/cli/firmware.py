"""``fabtrust firmware``: release signers, approval policies, firmware releases and their SBOMs, at
the OEM.

A release is created as a draft from the raw firmware binary (``--image``), approved by k of the n
active release signers (``release approve``, one signer at a time), and published: fabtrust then
builds the MCUboot image, signed by the OEM firmware key and encrypted to the product's class key.
``release show`` tells the state and every approval; ``sbom`` prints the release's CycloneDX 1.6
document and ``release image`` writes the published image.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.table import Table
from rich.text import Text

from fabtrust.access import ApprovalAction
from fabtrust.cli.context import console, gated, open_home
from fabtrust.cli.station import check_output, print_json, read_document, say, write_document
from fabtrust.clock import rfc3339
from fabtrust.crypto.keys import KeyType
from fabtrust.firmware.releases import MAX_BODY, Release, version_text
from fabtrust.firmware.sbom import MAX_SBOM, parse_components

app = typer.Typer(help="Firmware releases: signers, k-of-n approval, SBOMs (OEM).", no_args_is_help=True)
signer_app = typer.Typer(help="Release signers: the people whose approvals count.", no_args_is_help=True)
policy_app = typer.Typer(help="How many signers must approve a product's releases.", no_args_is_help=True)
release_app = typer.Typer(help="Create, approve, publish and inspect releases.", no_args_is_help=True)
app.add_typer(signer_app, name="signer")
app.add_typer(policy_app, name="policy")
app.add_typer(release_app, name="release")

_STATE_STYLE = {"draft": "yellow", "approved": "cyan", "published": "green"}


# -- signers ---------------------------------------------------------------------------------------


@signer_app.command("add")
def signer_add(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="The signer's name: 1-41 of a-z 0-9 -."),
    key_type: str = typer.Option("ecdsa-p256", "--key-type", help="ecdsa-p256 or ed25519."),
) -> None:
    """A release signer: a new key in this home's key store (release-signer-NAME)."""
    kt = KeyType.parse(key_type)
    with open_home(ctx) as home:
        signer = home.releases.add_signer(name, kt)
    say(f"release signer {signer.name}: {signer.key_type.value} key {signer.key_id}")


@signer_app.command("revoke")
def signer_revoke(ctx: typer.Context, name: str = typer.Argument(..., help="The signer.")) -> None:
    """Revoke a signer: its approvals stop counting, on unpublished releases too."""
    with open_home(ctx) as home:
        home.releases.revoke_signer(name)
    say(f"release signer {name} revoked: its approvals no longer count")


@signer_app.command("list")
def signer_list(
    ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="JSON instead of a table.")
) -> None:
    """The release signers of this home."""
    with open_home(ctx) as home:
        signers = home.releases.signers()
    if as_json:
        print_json([s.to_doc() for s in signers])
        return
    table = Table("signer", "status", "key type", "key id", "added")
    for s in signers:
        status = Text(s.status, style="green" if s.status == "active" else "red")
        table.add_row(Text(s.name), status, s.key_type.value, Text(s.key_id), rfc3339(s.created_at))
    console.print(table)


# -- policies --------------------------------------------------------------------------------------


@policy_app.command("set")
def policy_set(
    ctx: typer.Context,
    product: str = typer.Argument(..., help="The product."),
    threshold: int = typer.Option(..., "--threshold", help="k: distinct active signers a release needs."),
) -> None:
    """k of n for a product: a release publishes only with k approvals by active signers."""
    with open_home(ctx) as home:
        home.releases.set_policy(product, threshold)
        active = sum(1 for s in home.releases.signers() if s.status == "active")
    say(f"product {product}: releases need {threshold} of the {active} active release signers")


# -- releases --------------------------------------------------------------------------------------


@release_app.command("create")
def release_create(
    ctx: typer.Context,
    product: str = typer.Argument(..., help="The product."),
    version: str = typer.Argument(..., help="major.minor.revision[+build], e.g. 1.2.3"),
    image: Path = typer.Option(
        ..., "--image", help="The raw firmware binary (fabtrust builds the MCUboot image at publication)."
    ),
    security_counter: int = typer.Option(
        ..., "--security-counter", min=0, help="The image's security counter (SEC_CNT)."
    ),
    notes: str = typer.Option("", "--notes", help="Release notes (part of what signers approve)."),
    components: Path | None = typer.Option(
        None, "--components", help="JSON list of components: name, version, optional purl, license, type."
    ),
    sbom: Path | None = typer.Option(
        None, "--sbom", help="A CycloneDX 1.6 JSON SBOM instead of --components."
    ),
    rollback: bool = typer.Option(
        False, "--rollback", help="Explicitly request a rollback from the current release."
    ),
) -> None:
    """A draft release: the firmware, its SBOM and the statement signers approve."""
    body = read_document(image, "firmware image", MAX_BODY)
    specs = parse_components(read_document(components, "component list", MAX_SBOM)) if components else ()
    document = read_document(sbom, "SBOM", MAX_SBOM) if sbom else None
    with open_home(ctx) as home:
        release = home.releases.create(
            product,
            version,
            body,
            security_counter,
            notes,
            specs,
            sbom=document,
            rollback=rollback,
        )
    kind = "rollback release" if rollback else "release"
    say(f"{kind} {release.release_id} created (draft)")
    say(f"  firmware  {len(body)} bytes, sha256 {release.statement.body_sha256}")
    say(f"  SBOM      CycloneDX 1.6, sha256 {release.sbom_sha256}")
    if release.threshold is None:
        say(f"  approvals none yet; product {product} has no policy (`fabtrust firmware policy set`)")
    else:
        say(f"  approvals none yet; {release.threshold} needed")


@release_app.command("approve")
def release_approve(
    ctx: typer.Context,
    release_id: str = typer.Argument(..., metavar="RELEASE", help="The release."),
    signer: str = typer.Option(..., "--signer", help="The release signer who approves."),
) -> None:
    """Add one signer's approval (a signature over the release statement)."""
    with open_home(ctx) as home:
        release = home.releases.approve(release_id, signer)
    needed = "?" if release.threshold is None else str(release.threshold)
    say(f"release {release_id} approved by {signer}: {release.valid_approvals} of {needed} ({release.state})")


@release_app.command("publish")
def release_publish(
    ctx: typer.Context,
    release_id: str = typer.Argument(..., metavar="RELEASE", help="The release."),
    approval: str | None = typer.Option(
        None, "--approval", help="The approved firmware.publish request (without it: ask for one)."
    ),
) -> None:
    """Check the signers' approvals, succession and SBOM; sign and encrypt the MCUboot image;
    publish. Needs a firmware.publish approval (k release signers besides the requester): without
    --approval, this asks for it and does nothing else."""
    with open_home(ctx) as home:
        ticket = gated(
            home,
            ApprovalAction.FIRMWARE_PUBLISH,
            f"release:{release_id}",
            home.releases.publish_terms(release_id),
            approval,
            again=f"fabtrust firmware release publish {release_id}",
        )
        if ticket is None:
            return
        release = home.releases.publish(release_id, ticket)
    say(f"release {release_id} published")
    say(f"  image     {release.image_size} bytes, sha256 {release.image_sha256}")
    say(f"  approvals {release.valid_approvals} of {release.threshold}")


@release_app.command("list")
def release_list(
    ctx: typer.Context,
    product: str | None = typer.Option(None, "--product", help="Only this product's releases."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
) -> None:
    """The releases of this home, oldest first."""
    with open_home(ctx) as home:
        releases = home.releases.list(product)
    if as_json:
        print_json([r.to_doc() for r in releases])
        return
    table = Table("release", "product", "version", "counter", "state", "approvals", "rollback", "created")
    for r in releases:
        table.add_row(
            Text(r.release_id),
            Text(r.statement.product),
            version_text(r.statement.version),
            str(r.statement.security_counter),
            Text(r.state.value, style=_STATE_STYLE[r.state.value]),
            f"{r.valid_approvals}/{'-' if r.threshold is None else r.threshold}",
            "yes" if r.statement.rollback else "",
            rfc3339(r.created_at),
        )
    console.print(table)


def _show(release: Release) -> None:
    s = release.statement
    table = Table("", "", title=f"release {release.release_id}", show_header=False)
    table.add_row("state", Text(release.state.value, style=_STATE_STYLE[release.state.value]))
    table.add_row("product", Text(s.product))
    table.add_row("version", version_text(s.version))
    table.add_row("security counter", str(s.security_counter))
    if s.rollback:
        table.add_row("rollback from", Text(s.rollback_from or ""))
    table.add_row("firmware sha256", s.body_sha256)
    table.add_row("SBOM sha256", s.sbom_sha256)
    needed = "no policy" if release.threshold is None else f"{release.threshold} needed"
    table.add_row("approvals", f"{release.valid_approvals} valid, {needed}")
    for a in release.approvals:
        style = "green" if a.status == "valid" else "red"
        table.add_row("", Text(f"{a.signer or '?'}  {a.status}  {a.key_id[:16]}", style=style))
    if release.problem:
        table.add_row("problem", Text(release.problem, style="red"))
    if release.image_sha256 and release.published_at:
        table.add_row("image sha256", release.image_sha256)
        table.add_row("image size", f"{release.image_size} bytes")
        table.add_row("published", Text(f"{rfc3339(release.published_at)} by {release.published_by}"))
    table.add_row("created", Text(f"{rfc3339(release.created_at)} by {release.created_by}"))
    if s.notes:
        table.add_row("notes", Text(s.notes))
    console.print(table)


@release_app.command("show")
def release_show(
    ctx: typer.Context,
    release_id: str = typer.Argument(..., metavar="RELEASE", help="The release."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
) -> None:
    """A release: its statement, approvals (with signer names), state and digests."""
    with open_home(ctx) as home:
        release = home.releases.show(release_id)
    if as_json:
        print_json(release.to_doc())
        return
    _show(release)


@release_app.command("image")
def release_image(
    ctx: typer.Context,
    release_id: str = typer.Argument(..., metavar="RELEASE", help="The release."),
    out: Path = typer.Option(..., "--out", help="Write the published MCUboot image here (a new file)."),
) -> None:
    """Write a published release's MCUboot image (signed, encrypted to the class key)."""
    check_output(out)
    with open_home(ctx) as home:
        image = home.releases.image(release_id)
    write_document(out, image)
    say(f"release {release_id}: {len(image)}-byte MCUboot image written to {out}")


@app.command("sbom")
def sbom(
    ctx: typer.Context, release_id: str = typer.Argument(..., metavar="RELEASE", help="The release.")
) -> None:
    """Print the release's CycloneDX 1.6 SBOM (JSON)."""
    with open_home(ctx) as home:
        document = home.releases.sbom(release_id)
    sys.stdout.write(document.decode("utf-8"))
    sys.stdout.flush()
