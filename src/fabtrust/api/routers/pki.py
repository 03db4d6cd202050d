"""Revocation over HTTP: CRLs (RFC 5280, DER per RFC 2585) and the OCSP responder (RFC 6960 A.1).

OCSP clients get OCSP answers: a malformed, oversized or unanswerable request is an OCSP error
status (malformedRequest, unauthorized) with HTTP 200. Only what is not an OCSP exchange at all (a
wrong content type) gets an HTTP error.

The routes are async so that the per-app ``RevocationService`` (and its cache) is created once on
the event loop; signing and database work then run in the thread pool.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re

from cryptography.x509.ocsp import OCSPResponseStatus
from fastapi import APIRouter, Depends, Request, Response
from starlette.concurrency import run_in_threadpool

from fabtrust.api.auth import public
from fabtrust.api.deps import home_of
from fabtrust.api.schemas import PUBLIC_ERRORS
from fabtrust.errors import FabtrustError, InvalidInput, NotFound
from fabtrust.pki.revocation import (
    CRL_MEDIA_TYPE,
    MAX_OCSP_REQUEST,
    OCSP_REQUEST_MEDIA_TYPE,
    OCSP_RESPONSE_MEDIA_TYPE,
    RevocationService,
    ocsp_error,
)

router = APIRouter(prefix="/pki", tags=["pki"])
log = logging.getLogger("fabtrust.api")

_CRL_NAME = re.compile(r"([a-z0-9][a-z0-9-]{0,63})\.crl")
_DELTA_SUFFIX = "-delta"
_MAX_GET_PATH = (MAX_OCSP_REQUEST + 2) // 3 * 4  # the base64 of the largest request taken


def revocation_of(request: Request) -> RevocationService:
    """The app's revocation service, created on first use (it opens the key store: CA keys sign).

    Called on the event loop only (async routes), so two requests cannot create two services.
    """
    service = getattr(request.app.state, "revocation", None)
    if service is None:
        home = home_of(request)
        service = RevocationService(home.pki, home.store, home.clock)
        request.app.state.revocation = service
    assert isinstance(service, RevocationService)
    return service


def _ocsp_response(der: bytes) -> Response:
    return Response(der, media_type=OCSP_RESPONSE_MEDIA_TYPE, headers={"Cache-Control": "no-store"})


def _malformed(why: str) -> Response:
    log.info("OCSP request refused as malformed: %s", why)
    return _ocsp_response(ocsp_error(OCSPResponseStatus.MALFORMED_REQUEST))


async def _answer(request: Request, der: bytes) -> Response:
    try:
        service = revocation_of(request)
    except FabtrustError as exc:  # e.g. the key store cannot be opened: the responder cannot sign
        log.error("OCSP responder unavailable: %s", exc.message)
        return _ocsp_response(ocsp_error(OCSPResponseStatus.INTERNAL_ERROR))
    return _ocsp_response(await run_in_threadpool(service.respond, der))


@router.get("/crl/{name}", dependencies=[Depends(public)], response_class=Response, responses=PUBLIC_ERRORS)
async def crl(request: Request, name: str) -> Response:
    """The CA's current CRL, DER: ``<ca-id>.crl`` (full) or ``<ca-id>-delta.crl`` (delta).

    A name that is a CA id is that CA's full CRL, so a CA named ``x-delta`` keeps its full CRL.
    """
    match = _CRL_NAME.fullmatch(name)
    if match is None:
        raise NotFound("no such CRL (expected /pki/crl/<ca-id>.crl or /pki/crl/<ca-id>-delta.crl)")
    service = revocation_of(request)
    ca_id, delta = match.group(1), False
    if ca_id.endswith(_DELTA_SUFFIX) and not await run_in_threadpool(service.has_ca, ca_id):
        ca_id, delta = ca_id[: -len(_DELTA_SUFFIX)], True
    der = await run_in_threadpool(lambda: service.crl(ca_id, delta=delta))
    return Response(der, media_type=CRL_MEDIA_TYPE)


@router.post("/ocsp", dependencies=[Depends(public)], response_class=Response, responses=PUBLIC_ERRORS)
async def ocsp_post(request: Request) -> Response:
    """RFC 6960 A.1.1: a DER OCSPRequest as the body, an OCSPResponse back."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != OCSP_REQUEST_MEDIA_TYPE:
        raise InvalidInput(f"OCSP requests are sent as {OCSP_REQUEST_MEDIA_TYPE} (RFC 6960 A.1)")
    body = await _read_limited(request, MAX_OCSP_REQUEST)
    if body is None:  # oversized: refused without reading it all
        return _malformed(f"larger than {MAX_OCSP_REQUEST} bytes")
    return await _answer(request, body)


@router.get(
    "/ocsp/{encoded:path}", dependencies=[Depends(public)], response_class=Response, responses=PUBLIC_ERRORS
)
async def ocsp_get(request: Request, encoded: str) -> Response:
    """RFC 6960 A.1.1: the base64 of the DER OCSPRequest, URL-encoded, as the last path segment(s)."""
    if len(encoded) > _MAX_GET_PATH:
        return _malformed(f"larger than {MAX_OCSP_REQUEST} bytes")
    der = _decode_get(encoded)
    if der is None:
        return _malformed("the GET path is not base64")
    return await _answer(request, der)


def _decode_get(encoded: str) -> bytes | None:
    text = encoded.strip()
    if "-" in text or "_" in text:  # some clients use the URL-safe alphabet
        text = text.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None once it exceeds ``limit`` bytes (the rest is not read)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)
