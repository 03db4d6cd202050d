"""The certificate authorities over HTTP under ``/pki/cas``: listing them, and revoking a product or
issuing CA, which spends a ``ca.revoke`` approval (k security officers besides the requester) of
that CA and reason. The rules, audit entries and refusals are
:class:`fabtrust.pki.service.PkiService`'s. CRLs and OCSP are served by the ``pki`` router.

Restoring the root stays with the CLI (``fabtrust ca restore-root``): the custodians bring their
shares and passphrases to the ceremony in person, never over the network; its approval is asked
for there and given here under ``/access/approvals``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from fabtrust.access.policy import ApprovalAction, Permission
from fabtrust.access.service import Caller
from fabtrust.api.auth import access_of, guard
from fabtrust.api.bodies import bounded_route
from fabtrust.api.deps import acting_home
from fabtrust.api.schemas import ACCESS_ERRORS, ApprovalRequestDoc, Hex32
from fabtrust.pki.service import REASONS, CaRecord, ca_revoke_terms, fingerprint

MAX_BODY_BYTES = 16 * 1024

router = APIRouter(prefix="/pki/cas", tags=["pki"], route_class=bounded_route(MAX_BODY_BYTES))

CaPath = Annotated[str, Path(max_length=96, description="A CA id (root, product-<name>, issuing-...).")]
Reason = Annotated[
    str, Field(max_length=32, pattern="^(" + "|".join(REASONS) + ")$", description="RFC 5280 5.3.1 reason.")
]


class CaDoc(BaseModel):
    ca_id: str
    kind: str
    parent_id: str | None
    status: str
    subject: str
    not_after: str
    fingerprint: str = Field(description="SHA-256 of the certificate (DER), hex.")
    key_here: bool = Field(description="Whether this home holds the CA's key.")


class Revocation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Reason


class ApprovedRevocation(Revocation):
    approval: Hex32 = Field(description="The approved ca.revoke request to spend.")


def _ca_doc(record: CaRecord) -> CaDoc:
    cert = record.certificate
    return CaDoc(
        ca_id=record.ca_id,
        kind=record.kind,
        parent_id=record.parent_id,
        status=record.status,
        subject=cert.subject.rfc4514_string(),
        not_after=cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ"),
        fingerprint=fingerprint(cert),
        key_here=record.key_uri is not None,
    )


@router.get(
    "", dependencies=[guard(Permission.PKI_READ)], response_model=list[CaDoc], responses=ACCESS_ERRORS
)
def cas(request: Request) -> list[CaDoc]:
    return [_ca_doc(r) for r in acting_home(request).pki.cas()]


@router.get(
    "/{ca_id}", dependencies=[guard(Permission.PKI_READ)], response_model=CaDoc, responses=ACCESS_ERRORS
)
def ca(request: Request, ca_id: CaPath) -> CaDoc:
    return _ca_doc(acting_home(request).pki.ca(ca_id))


@router.post(
    "/{ca_id}/revocation", status_code=201, response_model=ApprovalRequestDoc, responses=ACCESS_ERRORS
)
def ask_revocation(
    request: Request,
    ca_id: CaPath,
    body: Revocation,
    caller: Annotated[Caller, guard(Permission.PKI_CA_REVOKE)],
) -> ApprovalRequestDoc:
    """Ask for the ``ca.revoke`` approval of revoking this CA for ``reason``."""
    terms = ca_revoke_terms(acting_home(request, caller).pki.ca(ca_id), body.reason)
    asked = access_of(request).request(caller, ApprovalAction.CA_REVOKE, f"ca:{ca_id}", terms)
    return ApprovalRequestDoc.model_validate(asked.to_doc())


@router.post("/{ca_id}/revoke", response_model=CaDoc, responses=ACCESS_ERRORS)
def revoke(
    request: Request,
    ca_id: CaPath,
    body: ApprovedRevocation,
    caller: Annotated[Caller, guard(Permission.PKI_CA_REVOKE)],
) -> CaDoc:
    """Revoke the CA by spending the approved ``ca.revoke`` request, once: it appears on its
    parent's CRL and issues nothing more."""
    pki = acting_home(request, caller).pki
    pki.revoke(
        reason=body.reason, issuing_ca=ca_id, approval=access_of(request).ticket(caller, body.approval)
    )
    return _ca_doc(pki.ca(ca_id))
