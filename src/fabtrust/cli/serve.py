"""``fabtrust serve``: the HTTP API on uvicorn (TLS when given a certificate and key)."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import typer
import uvicorn

from fabtrust.api.app import create_app
from fabtrust.cli.context import err_console, open_home
from fabtrust.errors import InvalidInput, NotFound, PolicyViolation
from fabtrust.home import Home


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        ctx: typer.Context,
        host: str = typer.Option("127.0.0.1", "--host"),
        port: int = typer.Option(8443, "--port", min=1, max=65535),
        tls_cert: Path = typer.Option(None, "--tls-cert", help="PEM certificate chain for HTTPS."),
        tls_key: Path = typer.Option(None, "--tls-key", help="PEM private key for HTTPS."),
        trusted_proxy: list[str] = typer.Option(
            [],
            "--trusted-proxy",
            help="Address of the TLS-terminating proxy (nginx) whose forwarded client certificate "
            "(X-SSL-Client-Cert) is read; repeatable. Default: none, the header is ignored.",
        ),
        station: bool = typer.Option(
            False,
            "--station",
            help="Also serve the factory-station line API (/station/...); the home must be an enrolled "
            "station with its certificate installed. Not authenticated yet: keep it on loopback "
            "(the default host) or behind the nginx mutual-TLS proxy.",
        ),
    ) -> None:
        """Serve the API (/healthz, /metrics, /log/..., /pki/..., EST; /station/... with --station)."""
        if (tls_cert is None) != (tls_key is None):
            raise InvalidInput("--tls-cert and --tls-key go together")
        for address in trusted_proxy:
            try:
                ipaddress.ip_address(address)
            except ValueError:
                raise InvalidInput(f"--trusted-proxy {address!r} is not an IP address") from None
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
        with open_home(ctx) as home:
            if station:
                _check_station(home)
            scheme = "https" if tls_cert else "http"
            err_console.print(f"fabtrust serving {home.config.origin} on {scheme}://{host}:{port}")
            if station:
                err_console.print(
                    f"station line API at {scheme}://{host}:{port}/station (factory operators' tokens)"
                )
            if not tls_cert and not _loopback(host):
                err_console.print(
                    f"warning: plain HTTP on {host}, not loopback: bearer tokens would cross the network "
                    "in clear; serve with --tls-cert/--tls-key or behind the nginx TLS proxy"
                )
            uvicorn.run(
                create_app(home, trusted_proxies=trusted_proxy, station=station),
                host=host,
                port=port,
                ssl_certfile=str(tls_cert) if tls_cert else None,
                ssl_keyfile=str(tls_key) if tls_key else None,
                log_level="info",
                access_log=True,
                # The peer address is what the trusted-proxy rule checks: never let X-Forwarded-For
                # rewrite it (uvicorn would, for peers in its forwarded_allow_ips).
                proxy_headers=False,
            )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def _check_station(home: Home) -> None:
    """Before serving: the home is a station the OEM has certified (else it could load nothing)."""
    try:
        identity = home.station.identity()
    except NotFound as exc:
        raise NotFound(f"--station: {exc.message}") from None
    if identity["identity_cert"] is None:
        raise PolicyViolation(
            f"--station: station {identity['station_id']} has no certificate from the OEM yet; "
            "run `fabtrust station install` first"
        )
