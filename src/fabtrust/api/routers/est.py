"""EST (RFC 7030) under ``/.well-known/est``: cacerts, simpleenroll, simplereenroll.

Each operation is served at ``/.well-known/est/<operation>`` (the default label) and at
``/.well-known/est/<label>/<operation>`` (RFC 7030 3.2.2), where the label is a CA id. The work is
in :class:`fabtrust.pki.est.EstService`; this module reads the transport values and renders.

- Request bodies over 64 KiB are refused (413) while they are read, before anything parses them.
- ``simpleenroll`` authenticates with ``Authorization: Bearer <token>``; a missing, unknown, spent,
  expired or foreign token is 401 with a ``WWW-Authenticate: Bearer`` challenge.
- ``simplereenroll`` authenticates with the client certificate of the TLS connection. TLS ends at
  the proxy (nginx, DESIGN.md "Serving"), which forwards the certificate it verified in
  ``X-SSL-Client-Cert`` (URL-escaped PEM) and its verdict in ``X-SSL-Client-Verify``. Those headers
  are read only when the TCP peer is a trusted proxy (``create_app(trusted_proxies=...)``); from
  anyone else they are ignored and the refusal logged. Missing or unusable credentials are 403.
- Successful answers are ``application/pkcs7-mime; smime-type=certs-only`` in base64; refusals
  use the API's JSON error shape with a request id.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from fabtrust.api.auth import (
    CLIENT_CERT_HEADER,
    CLIENT_VERIFY_HEADER,
    from_trusted_proxy,
    own_authentication,
    peer,
    public,
)
from fabtrust.api.deps import home_of
from fabtrust.api.errors import REQUEST_ID, request_id
from fabtrust.api.schemas import PUBLIC_ERRORS, ErrorBody
from fabtrust.errors import FabtrustError, NotAuthorised, PayloadTooLarge
from fabtrust.pki.est import (
    CERTS_ONLY_TYPE,
    MAX_BODY_BYTES,
    NO_CLIENT_CERT,
    EnrollRequest,
    EstService,
    EstTokens,
    EstUnauthorised,
    encode_certs_only,
    parse_forwarded_certificate,
)

router = APIRouter(prefix="/.well-known/est", tags=["est"])
log = logging.getLogger("fabtrust.api")

_CERTS_ONLY: dict[int | str, dict[str, Any]] = {
    **PUBLIC_ERRORS,
    200: {"content": {CERTS_ONLY_TYPE: {}}, "description": "base64 PKCS#7 certs-only"},
}
_ENROLL_ERRORS: dict[int | str, dict[str, Any]] = {
    **_CERTS_ONLY,
    401: {"model": ErrorBody, "description": "simpleenroll: no valid one-time token."},
    403: {"model": ErrorBody, "description": "simplereenroll: no usable client certificate."},
    409: {"model": ErrorBody, "description": "The device serial or key is certified already."},
    413: {"model": ErrorBody, "description": "The body is larger than 64 KiB."},
    415: {"model": ErrorBody, "description": "Not application/pkcs10 in base64."},
    422: {
        "model": ErrorBody,
        "description": "The request's signature does not verify, or policy refuses it.",
    },
}
_ENROLL_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/pkcs10": {"schema": {"type": "string", "description": "base64 PKCS#10"}}},
    }
}


def _service(request: Request) -> EstService:
    home = home_of(request)
    tokens = EstTokens(home.store, home.audit, home.clock, actor=home.actor)
    return EstService(home.pki, tokens, home.audit, home.clock)


def _certs_only(body: bytes) -> Response:
    return Response(body, media_type=CERTS_ONLY_TYPE, headers={"Content-Transfer-Encoding": "base64"})


def _unauthorised(request: Request, exc: EstUnauthorised) -> JSONResponse:
    """401 needs a challenge (RFC 9110 11.6.1), which the app-wide error handler does not add."""
    rid = request_id(request)
    log.info("request %s refused: %s (%s)", rid, exc.code, exc.message)
    return JSONResponse(
        {"error": exc.code, "message": exc.message, "request_id": rid},
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="est"', REQUEST_ID: rid},
    )


async def _read_body(request: Request, service: EstService, action: str) -> bytes:
    """The body, refused with 413 as soon as it passes the limit (Content-Length or bytes read)."""
    length = request.headers.get("content-length")
    too_large = length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES)
    chunks: list[bytes] = []
    size = 0
    if not too_large:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                too_large = True
                break
            chunks.append(chunk)
    if too_large:
        error = PayloadTooLarge(f"request body is larger than {MAX_BODY_BYTES} bytes")
        await run_in_threadpool(
            service.refused, action, f"est:{action.removeprefix('est.')}", error, peer=peer(request)
        )
        raise error
    return b"".join(chunks)


def _enroll_request(request: Request, body: bytes, label: str | None) -> EnrollRequest:
    return EnrollRequest(
        body,
        request.headers.get("content-type"),
        request.headers.get("content-transfer-encoding"),
        label,
        peer(request),
    )


# -- cacerts (RFC 7030 4.1) ------------------------------------------------------------------------


@router.get("/cacerts", dependencies=[Depends(public)], response_class=Response, responses=_CERTS_ONLY)
def cacerts(request: Request) -> Response:
    """The default CA's certificate and its issuers up to the root."""
    service = _service(request)
    return _certs_only(encode_certs_only(service.cacerts(None)))


@router.get(
    "/{label}/cacerts", dependencies=[Depends(public)], response_class=Response, responses=_CERTS_ONLY
)
def cacerts_labelled(request: Request, label: str) -> Response:
    """The named CA's certificate and its issuers up to the root."""
    service = _service(request)
    return _certs_only(encode_certs_only(service.cacerts(label)))


# -- simpleenroll (RFC 7030 4.2.1) -----------------------------------------------------------------


async def _enroll(request: Request, label: str | None) -> Response:
    service = _service(request)
    body = await _read_body(request, service, "est.enroll")
    try:
        issued = await run_in_threadpool(
            service.enroll, _enroll_request(request, body, label), request.headers.get("authorization")
        )
    except EstUnauthorised as exc:
        return _unauthorised(request, exc)
    return _certs_only(encode_certs_only([issued.certificate]))


@router.post(
    "/simpleenroll",
    dependencies=[Depends(own_authentication)],
    response_class=Response,
    responses=_ENROLL_ERRORS,
    openapi_extra=_ENROLL_BODY,
)
async def simpleenroll(request: Request) -> Response:
    """Enroll with a one-time token: base64 PKCS#10 in, the new certificate out."""
    return await _enroll(request, None)


@router.post(
    "/{label}/simpleenroll",
    dependencies=[Depends(own_authentication)],
    response_class=Response,
    responses=_ENROLL_ERRORS,
    openapi_extra=_ENROLL_BODY,
)
async def simpleenroll_labelled(request: Request, label: str) -> Response:
    """Enroll at the named CA (the token must be bound to it)."""
    return await _enroll(request, label)


# -- simplereenroll (RFC 7030 4.2.2) ---------------------------------------------------------------


async def _reenroll(request: Request, label: str | None) -> Response:
    service = _service(request)
    body = await _read_body(request, service, "est.reenroll")
    escaped = request.headers.get(CLIENT_CERT_HEADER)
    verdict = request.headers.get(CLIENT_VERIFY_HEADER)
    certificate = None
    refusal: FabtrustError | None = None
    why = ""
    if not from_trusted_proxy(request):
        if escaped is not None or verdict is not None:
            refusal, why = NotAuthorised(NO_CLIENT_CERT), "client-certificate header from an untrusted peer"
    elif escaped is not None and verdict == "SUCCESS":
        try:
            certificate = parse_forwarded_certificate(escaped)
        except FabtrustError as exc:
            refusal, why = exc, "forwarded certificate unusable"
    elif escaped is not None or (verdict is not None and verdict != "NONE"):
        refusal, why = (
            NotAuthorised("the proxy did not verify the client certificate"),
            f"proxy verdict {verdict}",
        )
    if refusal is not None:
        await run_in_threadpool(
            service.refused, "est.reenroll", "est:reenroll", refusal, peer=peer(request), why=why
        )
        raise refusal
    issued = await run_in_threadpool(service.reenroll, _enroll_request(request, body, label), certificate)
    return _certs_only(encode_certs_only([issued.certificate]))


@router.post(
    "/simplereenroll",
    dependencies=[Depends(own_authentication)],
    response_class=Response,
    responses=_ENROLL_ERRORS,
    openapi_extra=_ENROLL_BODY,
)
async def simplereenroll(request: Request) -> Response:
    """Re-enroll with the current client certificate (mutual TLS at the proxy)."""
    return await _reenroll(request, None)


@router.post(
    "/{label}/simplereenroll",
    dependencies=[Depends(own_authentication)],
    response_class=Response,
    responses=_ENROLL_ERRORS,
    openapi_extra=_ENROLL_BODY,
)
async def simplereenroll_labelled(request: Request, label: str) -> Response:
    """Re-enroll at the named CA (the one that issued the current certificate)."""
    return await _reenroll(request, label)
