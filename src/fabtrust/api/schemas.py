"""Request and response bodies (pydantic), so the OpenAPI document describes every exchange."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


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
