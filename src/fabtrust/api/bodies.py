"""Request bodies read under a limit before FastAPI parses them.

FastAPI would buffer any body whole, and Starlette's own limiter answers a declared oversize in
plain text, outside the API's error shape. A router made with ``route_class=bounded_route(n)``
reads each body itself: 413 (:class:`PayloadTooLarge`, the API's error shape) as soon as the
declared length or the bytes read pass ``n``; the rest is never read.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import Message, Receive

from fabtrust.errors import PayloadTooLarge


async def read_bounded(request: Request, limit: int) -> bytes:
    """The body, refused with 413 once its declared length or the bytes read pass ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"request body is larger than {limit} bytes")
    return bytes(body)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that yields the body already read, then whatever the client sends next
    (the disconnect)."""
    given = False

    async def replay() -> Message:
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def bounded_route(limit: int) -> type[APIRoute]:
    """An ``APIRoute`` class whose requests' bodies are read under ``limit`` bytes."""

    class BoundedBodyRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def bounded(request: Request) -> Response:
                body = await read_bounded(request, limit)
                return await handler(Request(request.scope, _replay(body, request.receive)))

            return bounded

    return BoundedBodyRoute
