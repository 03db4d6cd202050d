"""Error mapping: safe messages and a request id out; the detail to the server log only."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from fabtrust.errors import FabtrustError

log = logging.getLogger("fabtrust.api")
REQUEST_ID = "X-Request-ID"


def request_id(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    return rid if isinstance(rid, str) else "-"


def _body(code: str, message: str, request: Request) -> dict[str, str]:
    return {"error": code, "message": message, "request_id": request_id(request)}


def install(app: FastAPI) -> None:
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
        return JSONResponse(_body(exc.code, exc.message, request), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        fields = sorted({".".join(str(p) for p in err.get("loc", ())[1:]) or "body" for err in exc.errors()})
        message = "invalid request: " + ", ".join(fields)
        log.info("request %s invalid: %s", request_id(request), message)
        return JSONResponse(_body("invalid_input", message, request), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(_body(code, str(exc.detail), request), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request %s failed", request_id(request))
        return JSONResponse(_body("internal", "internal error", request), status_code=500)
