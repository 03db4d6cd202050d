"""Who is calling, and may they: every route declares one of four guards, deny by default.

- ``requires(permission)``: an authenticated caller whose roles grant ``permission``
  (:mod:`fabtrust.access.policy`). People authenticate with ``Authorization: Bearer ftk_...``
  (an API token); stations and devices with their client certificate, which the mTLS proxy (nginx,
  DESIGN.md "Serving") verified and forwards in ``X-SSL-Client-Cert``, read only from a trusted
  proxy and checked again here against this home's records (issued here, not revoked, valid now,
  the station still active). No credentials: 401; credentials without the permission: 403, logged.
  A granted call that changes something is logged with its caller (the services log the details).
- ``authenticated``: any authenticated caller, whatever its roles (``/access/whoami``, one's own
  tokens); the service behind the route decides the rest (its refusals are logged there).
- ``public``: anyone, rate-limited per client address (health, revocation status, TUF metadata,
  the log checkpoint).
- ``own_authentication``: the route authenticates by a credential of its own protocol (EST's
  one-time enrollment tokens, RFC 7030 3.2.3) and is rate-limited like a public one.

A meta-test walks the app's routes and fails on any route without exactly one guard.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi import Depends, Request

from fabtrust.access.policy import Permission
from fabtrust.access.service import AUDIT_ACCESS, TOKEN_PREFIX, AccessService, Caller
from fabtrust.api.deps import home_of
from fabtrust.api.errors import request_id
from fabtrust.api.limits import RateLimiter
from fabtrust.errors import FabtrustError, NotAuthorised, Unauthenticated
from fabtrust.pki.est import EstService, EstTokens, parse_forwarded_certificate
from fabtrust.tlog.audit import Outcome

log = logging.getLogger("fabtrust.api")

CLIENT_CERT_HEADER = "X-SSL-Client-Cert"
CLIENT_VERIFY_HEADER = "X-SSL-Client-Verify"
REAL_IP_HEADER = "X-Real-IP"

# The meta-test reads it: ("permission", p) | ("authenticated", None) | ("public", None) | ("own", None)
GUARD_ATTRIBUTE = "__fabtrust_guard__"


def access_of(request: Request) -> AccessService:
    access = request.app.state.access
    assert isinstance(access, AccessService)
    return access


def peer(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown"


def from_trusted_proxy(request: Request) -> bool:
    try:
        return ipaddress.ip_address(peer(request)) in request.app.state.trusted_proxies
    except ValueError:
        return False


def client_address(request: Request) -> str:
    """The client's address: the TCP peer, or the address a trusted proxy says it served."""
    if from_trusted_proxy(request):
        forwarded = request.headers.get(REAL_IP_HEADER, "")
        try:
            return str(ipaddress.ip_address(forwarded))
        except ValueError:
            pass
    return peer(request)


def _rate_limit(request: Request) -> None:
    limiter = request.app.state.limiter
    assert isinstance(limiter, RateLimiter)
    limiter.take(client_address(request))


def forwarded_certificate(request: Request) -> x509.Certificate | None:
    """The client certificate the trusted proxy verified, or None without one. From anyone else
    the header is refused (a client could set it itself)."""
    escaped = request.headers.get(CLIENT_CERT_HEADER)
    if not escaped:
        return None
    if not from_trusted_proxy(request):
        # only the proxy may say which certificate a client presented (as EST re-enrollment)
        log.warning(
            "request %s: %s from %s, not a trusted proxy: refused",
            request_id(request),
            CLIENT_CERT_HEADER,
            peer(request),
        )
        raise NotAuthorised("a client-certificate header is accepted from the TLS proxy only")
    if request.headers.get(CLIENT_VERIFY_HEADER) != "SUCCESS":
        raise NotAuthorised("the proxy did not verify the client certificate")
    return parse_forwarded_certificate(escaped)


def certificate_caller(request: Request, certificate: x509.Certificate) -> Caller:
    """The station or device a verified client certificate identifies, checked against this home:
    issued here, not revoked, valid now; a station must still be enrolled and active."""
    home = home_of(request)
    est = EstService(
        home.pki, EstTokens(home.store, home.audit, home.clock, actor=home.actor), home.audit, home.clock
    )
    ca, serial = est.authenticate(certificate)
    _, row = home.pki.certificate(ca.ca_id, serial)
    if row["profile"] == "device-idevid" and row["device_serial"]:
        return Caller.certificate(f"device:{row['device_serial']}")
    if row["profile"] == "station":
        names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        station_id = str(names[0].value) if names else ""
        try:
            station = home.production.station(station_id)
        except FabtrustError:
            raise NotAuthorised("the client certificate names no enrolled station") from None
        if station["status"] != "active" or station["identity_cert"] != certificate.public_bytes(
            Encoding.DER
        ):
            raise NotAuthorised("the station of this client certificate is not active")
        return Caller.certificate(f"station:{station_id}")
    raise NotAuthorised("the client certificate identifies no station or device")


def caller_of(request: Request) -> Caller | None:
    """The authenticated caller of this request (once per request), or None without credentials.
    Credentials that are present but wrong are refused, never ignored."""
    if hasattr(request.state, "caller"):
        cached: Caller | None = request.state.caller
        return cached
    caller: Caller | None = None
    authorization = request.headers.get("authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip().startswith(TOKEN_PREFIX):
            _rate_limit(request)  # failed authentication is what a guesser produces
            raise Unauthenticated("invalid or expired credentials")
        try:
            caller = access_of(request).authenticate(credentials.strip())
        except NotAuthorised:
            _rate_limit(request)
            raise Unauthenticated("invalid or expired credentials") from None
    else:
        certificate: x509.Certificate | None = None
        try:
            certificate = forwarded_certificate(request)
            if certificate is not None:
                caller = certificate_caller(request, certificate)
        except NotAuthorised as exc:
            _certificate_refused(request, certificate, exc)
            raise
    request.state.caller = caller
    return caller


def _certificate_refused(request: Request, certificate: x509.Certificate | None, exc: NotAuthorised) -> None:
    """A client certificate refused (revoked, expired, foreign, a station no longer active, a
    header from a peer that is not the proxy) is a refused ``api.authenticate`` entry, naming the
    certificate by issuer and serial where it could be read."""
    details: dict[str, Any] = {
        "reason": exc.code,
        "message": exc.message,
        "request_id": request_id(request),
        "peer": peer(request),
    }
    actor = "unauthenticated"
    if certificate is not None:
        actor = f"client-certificate:{certificate.serial_number:x}"
        details["issuer"] = certificate.issuer.rfc4514_string()[:200]
    home_of(request).audit.record(
        AUDIT_ACCESS,
        actor,
        "api.authenticate",
        f"api:{request.method} {request.url.path}",
        Outcome.REFUSED,
        details,
    )


def requires(permission: Permission) -> Callable[[Request], Caller]:
    """The guard of a route that needs ``permission``: the caller, or 401/403."""

    def guard(request: Request) -> Caller:
        caller = caller_of(request)
        subject = f"api:{request.method} {request.url.path}"
        if caller is None:
            _rate_limit(request)
            raise Unauthenticated("credentials are needed: a bearer token or a client certificate")
        access_of(request).authorize(caller, permission, subject)  # a refusal is logged there
        if not permission.value.endswith(".read"):
            home_of(request).audit.record(
                AUDIT_ACCESS,
                caller.principal_id,
                "api.call",
                subject,
                Outcome.OK,
                _call_details(request, caller, permission),
            )
        return caller

    setattr(guard, GUARD_ATTRIBUTE, ("permission", permission))
    return guard


def guard(permission: Permission) -> Any:
    """``Depends(requires(permission))``: a route's permission guard as a dependency."""
    return Depends(requires(permission))


def _call_details(request: Request, caller: Caller, permission: Permission) -> dict[str, Any]:
    details: dict[str, Any] = {
        "permission": permission.value,
        "via": caller.via,
        "request_id": request_id(request),
    }
    if caller.token_id is not None:
        details["token_id"] = caller.token_id
    return details


def authenticated(request: Request) -> Caller:
    """The guard of a route any authenticated caller may call: the caller, or 401."""
    caller = caller_of(request)
    if caller is None:
        _rate_limit(request)
        raise Unauthenticated("credentials are needed: a bearer token or a client certificate")
    return caller


def public(request: Request) -> None:
    """The guard of a route anyone may call: rate-limited per client address."""
    _rate_limit(request)


def own_authentication(request: Request) -> None:
    """The guard of a route that authenticates by its own protocol's credential."""
    _rate_limit(request)


setattr(authenticated, GUARD_ATTRIBUTE, ("authenticated", None))
setattr(public, GUARD_ATTRIBUTE, ("public", None))
setattr(own_authentication, GUARD_ATTRIBUTE, ("own", None))
