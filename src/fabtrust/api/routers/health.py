"""Liveness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fabtrust.access.policy import Permission
from fabtrust.api.auth import public, requires
from fabtrust.api.deps import home_of, metrics_of
from fabtrust.api.schemas import GUARDED, PUBLIC_ERRORS, Health

router = APIRouter(tags=["health"])


@router.get("/healthz", dependencies=[Depends(public)], response_model=Health, responses=PUBLIC_ERRORS)
def healthz(request: Request) -> Health:
    home = home_of(request)
    home.store.ping()
    return Health(status="ok", database=home.store.dialect, log_size=home.log.size())


@router.get(
    "/metrics",
    dependencies=[Depends(requires(Permission.METRICS_READ))],
    response_class=Response,
    responses={**GUARDED, 200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
def metrics(request: Request) -> Response:
    m = metrics_of(request)
    m.log_size.set(home_of(request).log.size())
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
