"""Signed updates over HTTP: the home's TUF repository, read-only, in the layout a TUF client expects
with consistent snapshots (TUF 6.2)::

    /updates/metadata/<N>.root.json        every root version (clients walk them to rotate keys)
    /updates/metadata/timestamp.json       the newest timestamp
    /updates/metadata/<N>.snapshot.json    every snapshot version
    /updates/metadata/<N>.targets.json     every targets version
    /updates/targets/[dir/]<sha256>.<name> every target blob, by content hash

Names are matched strictly (``fabtrust.firmware.updates.parse_metadata_name`` and
``parse_target_path``); anything else is 404, so no path reaches a file system. Versioned files never
change and may be cached for good; ``timestamp.json`` must be fetched afresh.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from fabtrust.api.auth import public
from fabtrust.api.deps import home_of
from fabtrust.api.schemas import PUBLIC_ERRORS

router = APIRouter(prefix="/updates", tags=["updates"])

METADATA_MEDIA_TYPE = "application/json"
TARGET_MEDIA_TYPE = "application/octet-stream"
_IMMUTABLE = "public, max-age=31536000, immutable"


def _headers(cache: str) -> dict[str, str]:
    return {"Cache-Control": cache, "X-Content-Type-Options": "nosniff"}


@router.get(
    "/metadata/{name}", dependencies=[Depends(public)], response_class=Response, responses=PUBLIC_ERRORS
)
def metadata(request: Request, name: str) -> Response:
    """A TUF metadata file: ``<N>.root.json``, ``timestamp.json``, ``<N>.snapshot.json`` or
    ``<N>.targets.json``."""
    body = home_of(request).updates.metadata(name)
    cache = "no-cache" if name == "timestamp.json" else _IMMUTABLE
    return Response(body, media_type=METADATA_MEDIA_TYPE, headers=_headers(cache))


@router.get(
    "/targets/{path:path}", dependencies=[Depends(public)], response_class=Response, responses=PUBLIC_ERRORS
)
def target(request: Request, path: str) -> Response:
    """A target blob by its hash-prefixed name (``[dir/]<sha256>.<name>``)."""
    body = home_of(request).updates.target(path)
    return Response(body, media_type=TARGET_MEDIA_TYPE, headers=_headers(_IMMUTABLE))
