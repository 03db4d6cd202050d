"""The audit log over HTTP: checkpoint, entries, inclusion and consistency proofs (read-only)."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import PlainTextResponse

from fabtrust.access.policy import Permission
from fabtrust.api.auth import public, requires
from fabtrust.api.deps import home_of
from fabtrust.api.schemas import (
    GUARDED_ERRORS,
    PUBLIC_ERRORS,
    ConsistencyProofDoc,
    InclusionProofDoc,
    LogEntries,
    LogEntry,
)
from fabtrust.errors import InvalidInput
from fabtrust.tlog import proofs
from fabtrust.tlog.log import MAX_ENTRIES_PER_READ

router = APIRouter(prefix="/log", tags=["log"])

_MAX_INDEX = 2**62


@router.get(
    "/checkpoint",
    dependencies=[Depends(public)],
    # Response, not PlainTextResponse: the route class's media type would be documented for the
    # error answers too, which are JSON
    response_class=Response,
    responses={
        **PUBLIC_ERRORS,
        200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "A signed note."},
    },
)
def checkpoint(request: Request) -> PlainTextResponse:
    """The latest signed checkpoint (C2SP tlog-checkpoint signed note)."""
    note = home_of(request).log.latest_checkpoint().note
    return PlainTextResponse(note.decode("utf-8"), media_type="text/plain; charset=utf-8")


@router.get(
    "/entries",
    dependencies=[Depends(requires(Permission.LOG_READ))],
    response_model=LogEntries,
    responses=GUARDED_ERRORS,
)
def entries(
    request: Request,
    start: int = Query(0, ge=0, le=_MAX_INDEX),
    end: int | None = Query(None, ge=1, le=_MAX_INDEX, description="Exclusive; default start+100."),
) -> LogEntries:
    home = home_of(request)
    size = home.log.size()
    end = min(size, start + 100) if end is None else end
    if end - start > MAX_ENTRIES_PER_READ:
        raise InvalidInput(f"at most {MAX_ENTRIES_PER_READ} entries per request")
    bodies = home.log.entries(start, end)
    return LogEntries(
        origin=home.config.origin,
        size=size,
        entries=[LogEntry(index=i, entry=json.loads(b)) for i, b in enumerate(bodies, start)],
    )


@router.get(
    "/proof/inclusion",
    dependencies=[Depends(requires(Permission.LOG_READ))],
    response_model=InclusionProofDoc,
    responses=GUARDED_ERRORS,
)
def inclusion(
    request: Request,
    index: int = Query(..., ge=0, le=_MAX_INDEX),
    size: int | None = Query(None, ge=1, le=_MAX_INDEX, description="Default: the latest checkpoint's size."),
) -> InclusionProofDoc:
    home = home_of(request)
    size = home.log.latest_checkpoint().size if size is None else size
    proof = home.log.inclusion_proof(index, size)
    return InclusionProofDoc.model_validate(proofs.inclusion_doc(home.config.origin, proof))


@router.get(
    "/proof/consistency",
    dependencies=[Depends(requires(Permission.LOG_READ))],
    response_model=ConsistencyProofDoc,
    responses=GUARDED_ERRORS,
)
def consistency(
    request: Request,
    old: int = Query(..., ge=0, le=_MAX_INDEX),
    new: int | None = Query(None, ge=0, le=_MAX_INDEX, description="Default: the latest checkpoint's size."),
) -> ConsistencyProofDoc:
    home = home_of(request)
    new = home.log.latest_checkpoint().size if new is None else new
    proof = home.log.consistency_proof(old, new)
    return ConsistencyProofDoc.model_validate(proofs.consistency_doc(home.config.origin, proof))
