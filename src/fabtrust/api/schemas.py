"""Response bodies (pydantic), so the OpenAPI document describes every answer."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
