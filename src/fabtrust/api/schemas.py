"""Request and response bodies (pydantic), so the OpenAPI document describes every exchange."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictInt

from fabtrust.access.policy import ApprovalAction, Role


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable error family.")
    message: str = Field(description="Safe, human-readable reason.")
    request_id: str = Field(description="Quote this to the operator; the server log has the detail.")


class Health(BaseModel):
    status: str
    database: str
    log_size: int


class LogEntry(BaseModel):
    index: int
    entry: dict[str, object] = Field(
        description="The audit entry; its canonical JSON (RFC 8785) is the leaf."
    )


class LogEntries(BaseModel):
    origin: str
    size: int
    entries: list[LogEntry]


class InclusionProofDoc(BaseModel):
    format: str
    origin: str
    index: int
    size: int
    leaf_hash: str
    hashes: list[str]
    root: str


class ConsistencyProofDoc(BaseModel):
    format: str
    origin: str
    old_size: int
    new_size: int
    old_root: str
    new_root: str
    hashes: list[str]


ERRORS: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorBody, "description": "Malformed or out-of-range request."},
    404: {"model": ErrorBody, "description": "No such object."},
    503: {"model": ErrorBody, "description": "A backend is unavailable."},
}

# What the guards (fabtrust.api.auth) answer before a route runs, with the headers they always send.
_WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "The authentication scheme to use (RFC 9110 11.6.1).",
        "required": True,
        "schema": {"type": "string"},
    }
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds until this client may try again (RFC 6585 4).",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
#: ``public`` and ``own_authentication`` routes: the per-client rate limit.
RATE_LIMITED: dict[int | str, dict[str, object]] = {
    429: {
        "model": ErrorBody,
        "description": "Too many requests (or failed authentications) from this client.",
        "headers": _RETRY_AFTER,
    },
}
#: ``requires`` and ``authenticated`` routes: no or bad credentials, no permission, too many failures.
GUARDED: dict[int | str, dict[str, object]] = {
    401: {
        "model": ErrorBody,
        "description": "No, invalid or expired credentials.",
        "headers": _WWW_AUTHENTICATE,
    },
    403: {
        "model": ErrorBody,
        "description": "The caller's roles do not permit this, or its client certificate is unusable.",
    },
    **RATE_LIMITED,
}
PUBLIC_ERRORS: dict[int | str, dict[str, object]] = {**ERRORS, **RATE_LIMITED}
GUARDED_ERRORS: dict[int | str, dict[str, object]] = {**ERRORS, **GUARDED}


# -- the factory station's line API (/station) ------------------------------------------------------
# Documents (challenges, genuineness responses, provisioning documents, install receipts) are signed
# or canonical bytes: they travel as standard, padded base64 so that they stay byte-exact.

_STRICT = ConfigDict(extra="forbid", strict=True)  # fail closed: unknown fields and wrong types refused
OrderId = Annotated[
    str, Field(max_length=41, description="An order whose package is loaded at this station.")
]


class ChallengeRequest(BaseModel):
    model_config = _STRICT
    order_id: OrderId


class ChallengeDoc(BaseModel):
    challenge: str = Field(
        description="base64 of a fabtrust.device-challenge/v1 document (single use, valid 5 minutes)."
    )


class Answer(BaseModel):
    model_config = _STRICT
    challenge: str = Field(description="base64 of the challenge document, byte-exact as received.")
    response: str = Field(description="base64 of the device's genuineness response to it.")


class ProvisionRequest(BaseModel):
    model_config = _STRICT
    order_id: OrderId
    answers: list[Answer]


class Refused(BaseModel):
    """One device (or receipt) refused; the rest of the batch is unaffected."""

    status: Literal["refused"] = "refused"
    error: str = Field(description="Machine-readable error family.")
    message: str = Field(description="Safe, human-readable reason.")


class ProvisionedDevice(BaseModel):
    status: Literal["provisioned"] = "provisioned"
    chip_uid: str
    device_serial: str
    seq: int = Field(description="The unit's sequence number within the order.")
    provisioning: str = Field(
        description="base64 of the fabtrust.device-provisioning/v1 document for the device agent."
    )


class ProvisionResults(BaseModel):
    results: list[Annotated[ProvisionedDevice | Refused, Field(discriminator="status")]] = Field(
        description="One result per answer, in the order of the answers."
    )


class ReceiptsRequest(BaseModel):
    model_config = _STRICT
    receipts: list[str] = Field(description="base64 of device-signed install receipts.")


class Recorded(BaseModel):
    status: Literal["recorded"] = "recorded"
    chip_uid: str


class ReceiptResults(BaseModel):
    results: list[Annotated[Recorded | Refused, Field(discriminator="status")]] = Field(
        description="One result per receipt, in the order of the receipts."
    )


class OrderStatus(BaseModel):
    order: str
    package: str
    issuing_ca: str
    quota: int = Field(description="Units this station may provision for the order.")
    used: int = Field(description="Units counted against the quota.")
    remaining: int
    issued: int = Field(description="Devices certified and recorded here.")
    programmed: int = Field(description="Devices whose install receipt is recorded.")
    not_before: str
    not_after: str


class StationStatus(BaseModel):
    station_id: str
    orders: list[OrderStatus]


# -- access control (/access) -----------------------------------------------------------------------
# Times are RFC 3339 strings. Request bodies are strict: unknown fields and wrong types are refused.

_ACCESS_IN = ConfigDict(extra="forbid")
PrincipalId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        description="A person (a-z 0-9 . _ -, a letter first), station:<id> or device:<serial>.",
    ),
]
Label = Annotated[str, Field(min_length=1, max_length=128, description="One line, no surrounding spaces.")]
Hex64 = Annotated[str, Field(min_length=64, max_length=64, description="SHA-256, lowercase hex.")]
Hex32 = Annotated[str, Field(min_length=32, max_length=32)]

ACCESS_ERRORS: dict[int | str, dict[str, object]] = {
    **GUARDED_ERRORS,
    409: {"model": ErrorBody, "description": "The object's state forbids it (done already, replayed)."},
    413: {"model": ErrorBody, "description": "The body is larger than 64 KiB."},
    422: {"model": ErrorBody, "description": "A rule refuses it (two-person rule, expired, wrong digest)."},
}


class WhoAmI(BaseModel):
    principal_id: str
    kind: Literal["person", "station", "device"]
    roles: list[str] = Field(description="The roles held now, within the credential's scope.")
    via: Literal["token", "certificate", "local"]
    token_id: str | None = Field(description="The token's id when the caller came with a token.")


class PrincipalDoc(BaseModel):
    principal_id: str
    kind: Literal["person", "station", "device"]
    display_name: str
    created_at: str
    created_by: str
    disabled_at: str | None


class CreatePrincipal(BaseModel):
    model_config = _ACCESS_IN
    principal_id: PrincipalId
    display_name: Label


class GrantDoc(BaseModel):
    grant_id: str
    principal_id: str
    role: str
    not_before: str
    not_after: str
    granted_by: str
    granted_at: str
    approval_id: str | None = Field(description="The role.grant request; null for a bootstrap grant.")
    revoked_at: str | None
    revoked_by: str | None


class GrantRequest(BaseModel):
    model_config = _ACCESS_IN
    principal_id: PrincipalId
    role: Role
    not_before: AwareDatetime
    not_after: AwareDatetime


class RevokeRequest(BaseModel):
    model_config = _ACCESS_IN
    grant_id: Hex32


class TokenDoc(BaseModel):
    """A token as stored: never its secret."""

    token_id: str
    principal_id: str
    roles: list[str]
    label: str
    created_at: str
    created_by: str
    expires_at: str
    revoked_at: str | None


class TokenRequest(BaseModel):
    model_config = _ACCESS_IN
    principal_id: PrincipalId | None = Field(None, description="Default: the caller (its own token).")
    roles: list[Role] = Field(min_length=1, max_length=16, description="The token's scope.")
    label: Label
    ttl_seconds: StrictInt = Field(gt=0, le=366 * 86400, description="At most the home's maximum (90 days).")


class IssuedTokenDoc(BaseModel):
    token: str = Field(description="The bearer token, shown this once: it is never stored or shown again.")
    token_id: str
    expires_at: str


class ApprovalDoc(BaseModel):
    principal_id: str
    digest: str
    approved_at: str


class ApprovalRequestDoc(BaseModel):
    request_id: str
    action: str
    subject: str
    parameters: dict[str, object]
    digest: str = Field(description="SHA-256 of the request statement (RFC 8785 canonical JSON).")
    requested_by: str
    created_at: str
    expires_at: str
    threshold: int = Field(description="Approvers needed, the requester not counted.")
    eligible_role: str
    status: Literal["pending", "executed", "cancelled"]
    executed_at: str | None
    executed_by: str | None
    cancelled_at: str | None
    cancelled_by: str | None
    approvals: list[ApprovalDoc]


class SpendApproval(BaseModel):
    """The body of an act gated by a k-of-n approval: the approved request it spends."""

    model_config = _ACCESS_IN
    approval: Hex32 = Field(description="The approved request to spend, once.")


class ApproveRequest(BaseModel):
    model_config = _ACCESS_IN
    digest: Hex64 = Field(description="The SHA-256 of the statement the approver reviewed.")


class PolicyDoc(BaseModel):
    action: str
    threshold: int
    eligible_role: str
    ttl_seconds: int


class PolicyRequest(BaseModel):
    model_config = _ACCESS_IN
    action: ApprovalAction
    threshold: StrictInt
    eligible_role: Role
    ttl_seconds: StrictInt
