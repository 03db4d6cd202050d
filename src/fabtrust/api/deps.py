"""Per-app state the routers reach through the request (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request
from prometheus_client import CollectorRegistry, Counter, Gauge

from fabtrust.access.service import Caller
from fabtrust.home import Home


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "fabtrust_http_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.log_size = Gauge("fabtrust_log_size", "Entries in the audit log", registry=self.registry)


def home_of(request: Request) -> Home:
    home = request.app.state.home
    assert isinstance(home, Home)
    return home


def metrics_of(request: Request) -> Metrics:
    metrics = request.app.state.metrics
    assert isinstance(metrics, Metrics)
    return metrics


def acting_home(request: Request, caller: Caller | None = None) -> Home:
    """The app's home acting as the request's caller (the principal its guard authenticated): the
    domain services record that principal on every act. Reads may omit ``caller``."""
    if caller is None:
        caller = request.state.caller
    assert isinstance(caller, Caller)
    return home_of(request).acting_as(caller.principal_id)
