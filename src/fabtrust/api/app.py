"""The app factory: one FastAPI app per data home; the caller owns the home's lifetime."""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Collection

from fastapi import FastAPI, Request, Response

from fabtrust import __version__
from fabtrust.api import errors
from fabtrust.api.deps import Metrics
from fabtrust.api.limits import RateLimiter
from fabtrust.api.routers import access, cas, est, firmware, health, log, pki, production, updates
from fabtrust.api.routers import station as station_api
from fabtrust.errors import InvalidInput
from fabtrust.home import Home


def create_app(
    home: Home,
    *,
    trusted_proxies: Collection[str] = (),
    station: bool = False,
    rate_limit: RateLimiter | None = None,
) -> FastAPI:
    """``trusted_proxies``: addresses of TLS-terminating proxies (nginx) whose forwarded client
    certificate and client address headers the app reads (stations and devices by certificate, EST
    re-enrollment, rate limits per client). Default: none, and the headers are ignored.

    ``station``: also serve the factory station's line API (``/station``, for factory operators'
    tokens). Its ``Station`` is made here, which opens the key store: one instance for the app,
    since it keeps the outstanding challenges in memory and the thread pool must not make a
    second. Default: the routes do not exist.

    ``rate_limit``: the limit on routes anyone may call, per client address (default
    :class:`RateLimiter`'s). Every route is guarded (:mod:`fabtrust.api.auth`).
    """
    try:
        proxies = frozenset(ipaddress.ip_address(a) for a in trusted_proxies)
    except ValueError:
        raise InvalidInput("a trusted proxy must be an IP address") from None
    app = FastAPI(
        title="fabtrust",
        version=__version__,
        description="Zero-trust manufacturing of connected devices: PKI, production, firmware, fleet, audit.",
    )
    app.state.home = home
    app.state.trusted_proxies = proxies
    app.state.metrics = metrics = Metrics()
    app.state.access = home.access
    app.state.limiter = rate_limit if rate_limit is not None else RateLimiter()
    if station:
        app.state.station = home.station

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
    app.include_router(pki.router)
    app.include_router(est.router)
    app.include_router(updates.router)
    app.include_router(cas.router)
    app.include_router(production.router)
    app.include_router(firmware.router)
    app.include_router(access.router)
    if station:
        app.include_router(station_api.router)
    return app
