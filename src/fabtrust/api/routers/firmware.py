"""Firmware releases over HTTP under ``/firmware``: reading releases, and publishing one, which
spends a ``firmware.publish`` approval (k release signers besides the requester) of the exact
release statement. The rules, audit entries and refusals are
:class:`fabtrust.firmware.releases.ReleaseService`'s; each route authorizes, acts as the caller and
renders.

Creating a release (a firmware upload with its SBOM) and the signers' own signatures over the
release statement (made with signer keys in the OEM's key store) stay with the CLI
(``fabtrust firmware release create|approve``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, Field

from fabtrust.access.policy import ApprovalAction, Permission
from fabtrust.access.service import Caller
from fabtrust.api.auth import access_of, guard
from fabtrust.api.bodies import bounded_route
from fabtrust.api.deps import acting_home
from fabtrust.api.schemas import ACCESS_ERRORS, ApprovalRequestDoc, SpendApproval

MAX_BODY_BYTES = 16 * 1024

router = APIRouter(prefix="/firmware", tags=["firmware"], route_class=bounded_route(MAX_BODY_BYTES))

ReleasePath = Annotated[str, Path(max_length=96, description="A release id (<product>-<version>).")]


class SignerApproval(BaseModel):
    signer: str | None
    key_id: str
    status: str


class ReleaseDoc(BaseModel):
    release_id: str
    state: str = Field(description="draft, approved (enough signers) or published.")
    statement: dict[str, Any] = Field(description="The release statement the signers signed.")
    approvals: list[SignerApproval]
    valid_approvals: int
    threshold: int | None
    problem: str | None
    sbom_sha256: str
    image_sha256: str | None
    image_size: int | None
    created_by: str
    created_at: str
    published_by: str | None
    published_at: str | None


@router.get(
    "/releases",
    dependencies=[guard(Permission.FIRMWARE_READ)],
    response_model=list[ReleaseDoc],
    responses=ACCESS_ERRORS,
)
def releases(
    request: Request, product: str | None = Query(None, max_length=41, description="Only this product's.")
) -> list[ReleaseDoc]:
    return [ReleaseDoc.model_validate(r.to_doc()) for r in acting_home(request).releases.list(product)]


@router.get(
    "/releases/{release_id}",
    dependencies=[guard(Permission.FIRMWARE_READ)],
    response_model=ReleaseDoc,
    responses=ACCESS_ERRORS,
)
def release(request: Request, release_id: ReleasePath) -> ReleaseDoc:
    return ReleaseDoc.model_validate(acting_home(request).releases.show(release_id).to_doc())


@router.post(
    "/releases/{release_id}/publication",
    status_code=201,
    response_model=ApprovalRequestDoc,
    responses=ACCESS_ERRORS,
)
def ask_publication(
    request: Request,
    release_id: ReleasePath,
    caller: Annotated[Caller, guard(Permission.FIRMWARE_RELEASE_PUBLISH)],
) -> ApprovalRequestDoc:
    """Ask for the ``firmware.publish`` approval of this release's statement."""
    terms = acting_home(request, caller).releases.publish_terms(release_id)
    asked = access_of(request).request(
        caller, ApprovalAction.FIRMWARE_PUBLISH, f"release:{release_id}", terms
    )
    return ApprovalRequestDoc.model_validate(asked.to_doc())


@router.post("/releases/{release_id}/publish", response_model=ReleaseDoc, responses=ACCESS_ERRORS)
def publish(
    request: Request,
    release_id: ReleasePath,
    body: SpendApproval,
    caller: Annotated[Caller, guard(Permission.FIRMWARE_RELEASE_PUBLISH)],
) -> ReleaseDoc:
    """Publish: the signers' approvals, succession and SBOM are checked, the MCUboot image is signed
    and encrypted, and the approved request is spent, once."""
    ticket = access_of(request).ticket(caller, body.approval)
    done = acting_home(request, caller).releases.publish(release_id, ticket)
    return ReleaseDoc.model_validate(done.to_doc())
