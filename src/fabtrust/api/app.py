"""The app factory: one FastAPI app per data home; the caller owns the home's lifetime."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response

from fabtrust import __version__
from fabtrust.api import errors
from fabtrust.api.deps import Metrics
from fabtrust.api.routers import health, log
from fabtrust.home import Home


def create_app(home: Home) -> FastAPI:
    app = FastAPI(
        title="fabtrust",
        version=__version__,
        description="Zero-trust manufacturing of connected devices: PKI, production, firmware, fleet, audit.",
    )
    app.state.home = home
    app.state.metrics = metrics = Metrics()

    @app.middleware("http")
    async def count(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        status = "500"  # an unhandled exception propagates through here and is answered 500 outside
        try:
            response = await call_next(request)
            status = str(response.status_code)
            return response
        finally:
            route = request.scope.get("route")
            metrics.requests.labels(route=getattr(route, "path", "unmatched"), status=status).inc()

    errors.install(app)
    app.include_router(health.router)
    app.include_router(log.router)
    return app
