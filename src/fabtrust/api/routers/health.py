"""Liveness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from fabtrust.api.deps import home_of, metrics_of
from fabtrust.api.schemas import ERRORS, Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, responses=ERRORS)
def healthz(request: Request) -> Health:
    home = home_of(request)
    home.store.ping()
    return Health(status="ok", database=home.store.dialect, log_size=home.log.size())


@router.get("/metrics", response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request) -> Response:
    m = metrics_of(request)
    m.log_size.set(home_of(request).log.size())
    return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)
