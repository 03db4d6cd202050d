"""Error mapping: safe messages and a request id out; the detail to the server log only."""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fabtrust.errors import FabtrustError, RateLimited, Unauthenticated

log = logging.getLogger("fabtrust.api")
REQUEST_ID = "X-Request-ID"


def request_id(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else "-"


def _body(code: str, message: str, request: Request) -> dict[str, str]:
    return {"error": code, "message": message, "request_id": request_id(request)}


def _error(
    code: str, message: str, status: int, request: Request, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    """An error answer carrying its request id in the body and in X-Request-ID.

    The header is set here, not only by the request-id middleware: an unhandled exception is
    answered by Starlette's outermost error middleware, which no user middleware wraps.
    """
    rid = request_id(request)
    return JSONResponse(
        _body(code, message, request), status_code=status, headers={**(headers or {}), REQUEST_ID: rid}
    )


_FASTAPI_VALIDATION_SCHEMAS = ("HTTPValidationError", "ValidationError")


def _document_validation_errors(app: FastAPI) -> None:
    """FastAPI documents a 422 ``HTTPValidationError`` for every route with parameters or a body;
    this app answers a request that fails validation with 400 and the error shape (below), which
    every such route declares. The OpenAPI document drops those 422s (a route's own 422, a rule
    refusing it, stays) and the schemas only they used."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                responses = operation.get("responses", {}) if isinstance(operation, dict) else {}
                if "HTTPValidationError" in json.dumps(responses.get("422", {})):
                    del responses["422"]
        components = schema.get("components", {}).get("schemas", {})
        for name in _FASTAPI_VALIDATION_SCHEMAS:
            if f'/{name}"' not in json.dumps({**schema, "components": {}}):
                components.pop(name, None)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def install(app: FastAPI) -> None:
    _document_validation_errors(app)

    @app.middleware("http")
    async def assign_request_id(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        # Never trust a client-chosen id: it would let a client forge log correlation.
        request.state.request_id = secrets.token_hex(8)
        response = await call_next(request)
        response.headers[REQUEST_ID] = request.state.request_id
        return response

    @app.exception_handler(FabtrustError)
    async def fabtrust_error(request: Request, exc: FabtrustError) -> JSONResponse:
        log.info("request %s refused: %s (%s)", request_id(request), exc.code, exc.message)
        headers: dict[str, str] = {}
        if isinstance(exc, Unauthenticated):
            headers["WWW-Authenticate"] = 'Bearer realm="fabtrust"'  # RFC 9110 11.6.1
        elif isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)  # RFC 6585 4
        return _error(exc.code, exc.message, exc.http_status, request, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = sorted({".".join(str(p) for p in err.get("loc", ())[1:]) or "body" for err in exc.errors()})
        message = "invalid request: " + ", ".join(fields)
        log.info("request %s invalid: %s", request_id(request), message)
        return _error("invalid_input", message, 400, request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(code, str(exc.detail), exc.status_code, request, exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request %s failed", request_id(request))
        return _error("internal", "internal error", 500, request)
