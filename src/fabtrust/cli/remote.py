"""The CLI as a person with an API token, against a fabtrust server: credentials and a small client.

**Credentials**, in this order: ``FABTRUST_SERVER`` with ``FABTRUST_TOKEN`` in the environment;
else the file ``fabtrust login`` wrote, at ``$FABTRUST_CONFIG`` or
``$XDG_CONFIG_HOME/fabtrust/credentials.json`` (``~/.config/...`` by default). None of them: the CLI
works locally on a data home as the holder of its key-store passphrase. Half a configuration is
refused rather than guessed: ``FABTRUST_SERVER`` without ``FABTRUST_TOKEN``, or ``FABTRUST_TOKEN``
without ``FABTRUST_SERVER`` while a login file exists (which person would act?).

The file is JSON (``fabtrust.cli-credentials/v1``), written whole or not at all (a new file beside
it, renamed into place) with mode 0600 in a directory made 0700. A file that other users may read
or write, or that belongs to another user, is refused unread.

**Transport.** ``https`` verifies the server's certificate against the system's trust store, or
against ``--ca-cert`` / ``FABTRUST_CA`` (or the CA saved at login). Plain ``http`` only to a loopback
host: a bearer token must not cross a network in clear. Redirects are not followed and proxy,
netrc and CA settings from the environment are not used (``trust_env=False``): the token goes to
the server named and nowhere else.

**Errors.** A server's error answer (``{"error", "message", "request_id"}``, see
:mod:`fabtrust.api.errors`) becomes the matching :class:`~fabtrust.errors.FabtrustError` with the
server's message and its request id, so the CLI prints one line and exits 2; 401 says the token is
invalid or expired. The token is never printed, logged or part of a ``repr``.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote, urlsplit

import httpx

from fabtrust import __version__
from fabtrust.errors import (
    Conflict,
    FabtrustError,
    InvalidInput,
    NotAuthorised,
    NotFound,
    PayloadTooLarge,
    PolicyViolation,
    RateLimited,
    Unauthenticated,
    Unavailable,
    VerificationFailed,
)

SERVER_ENV: Final = "FABTRUST_SERVER"
TOKEN_ENV: Final = "FABTRUST_TOKEN"  # noqa: S105 (a variable name, not a secret)
CONFIG_ENV: Final = "FABTRUST_CONFIG"
CA_ENV: Final = "FABTRUST_CA"
CREDENTIALS_FORMAT: Final = "fabtrust.cli-credentials/v1"
MAX_CREDENTIALS_FILE: Final = 64 * 1024
TIMEOUT_SECONDS: Final = 30.0

#: What a token may look like before the server judges it: one word of printable ASCII (it goes in
#: an HTTP header). The server's own format is ``ftk_<id>_<secret>``.
_TOKEN_SHAPE = re.compile(r"[\x21-\x7e]{1,512}")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")

#: The families of :mod:`fabtrust.errors` by the code the API answers with.
_ERRORS: Final[Mapping[str, type[FabtrustError]]] = {
    cls.code: cls
    for cls in (
        InvalidInput,
        PayloadTooLarge,
        VerificationFailed,
        PolicyViolation,
        NotFound,
        Conflict,
        NotAuthorised,
        Unauthenticated,
        Unavailable,
    )
}


def _one_line(text: str, limit: int = 300) -> str:
    """Text from elsewhere (a server, a library), safe for one terminal line: no control characters."""
    flat = _UNPRINTABLE.sub("?", " ".join(text.split()))
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


# -- the server's address -----------------------------------------------------------------------------


def loopback(host: str) -> bool:
    """An IP loopback address, or ``localhost``."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_server(url: str) -> str:
    """A server's base URL, normalised (no trailing ``/``): ``https://host[:port][/path]``, or
    ``http://`` to a loopback host only. InvalidInput otherwise."""
    if not isinstance(url, str) or not url or len(url) > 2000 or _UNPRINTABLE.search(url):
        raise InvalidInput("a server URL is one line, like https://fabtrust.example.com")
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port
    except ValueError:
        raise InvalidInput(f"the server URL {_one_line(url)} is malformed") from None
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidInput(f"the server URL {_one_line(url)} is not https://host[:port][/path]")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise InvalidInput("the server URL carries no user, password, query or fragment")
    if parts.scheme == "http" and not loopback(host):
        raise InvalidInput(
            f"refusing plain http to {host}: the token would cross the network in clear; use https "
            "(plain http only to a loopback address)"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def check_token(token: str) -> str:
    """A token's outer shape (one word of printable ASCII); the server decides the rest."""
    if not isinstance(token, str) or not _TOKEN_SHAPE.fullmatch(token):
        raise InvalidInput("the token is malformed (expected one word like ftk_...)")
    return token


# -- credentials ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credentials:
    """A server and the token to show it. ``source`` says where they came from (for messages)."""

    server: str
    token: str = field(repr=False)
    ca_cert: Path | None = None
    source: str = "environment"

    def __post_init__(self) -> None:
        object.__setattr__(self, "server", check_server(self.server))
        check_token(self.token)

    def __repr__(self) -> str:
        return f"Credentials(server={self.server!r}, ca_cert={self.ca_cert!r}, source={self.source!r})"

    def with_ca(self, ca_cert: Path | None) -> Credentials:
        """The same, verifying the server against ``ca_cert`` when one is given."""
        if ca_cert is None:
            return self
        return Credentials(self.server, self.token, ca_cert, self.source)


def credentials_path() -> Path:
    """``$FABTRUST_CONFIG``, else ``$XDG_CONFIG_HOME/fabtrust/credentials.json`` (``~/.config``)."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit)
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "fabtrust" / "credentials.json"


def load_credentials(ca_cert: Path | None = None) -> Credentials | None:
    """The configured credentials (environment, else the login file), or None: work locally.
    ``ca_cert`` (``--ca-cert``/``FABTRUST_CA``) overrides a CA saved at login."""
    server, token = os.environ.get(SERVER_ENV), os.environ.get(TOKEN_ENV)
    if server:
        if not token:
            raise InvalidInput(f"{SERVER_ENV} is set but {TOKEN_ENV} is not: set both, or neither")
        return Credentials(server, token, ca_cert, "environment")
    path = credentials_path()
    if not path.exists() and not path.is_symlink():
        return None
    if token:
        raise InvalidInput(
            f"{TOKEN_ENV} is set without {SERVER_ENV} while you are logged in ({path}): set "
            f"{SERVER_ENV} too, unset {TOKEN_ENV}, or `fabtrust logout`"
        )
    return read_credentials(path).with_ca(ca_cert)


def read_credentials(path: Path) -> Credentials:
    """The login file at ``path``: refused unread unless it is a regular file of this user's that
    nobody else may read or write. Messages name the file, never its contents."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        why = "a symbolic link" if path.is_symlink() else (exc.strerror or type(exc).__name__)
        raise InvalidInput(f"cannot read credentials file {path} ({why})") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise InvalidInput(f"credentials file {path} is not a regular file")
        if hasattr(os, "getuid") and st.st_uid != os.getuid():
            raise NotAuthorised(f"credentials file {path} belongs to another user; refusing to use it")
        if st.st_mode & 0o077:
            raise NotAuthorised(
                f"credentials file {path} is open to other users (mode {stat.S_IMODE(st.st_mode):04o}); "
                f"refusing to use it: run `chmod 600 {path}`, and since others could read the token, "
                "revoke it and log in again"
            )
        raw = fh.read(MAX_CREDENTIALS_FILE + 1)
    damaged = InvalidInput(f"credentials file {path} is damaged; run `fabtrust login` again")
    if len(raw) > MAX_CREDENTIALS_FILE:
        raise damaged
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise damaged from None
    fields = {"format", "server", "token", "ca_cert"}
    if (
        not isinstance(doc, dict)
        or doc.get("format") != CREDENTIALS_FORMAT
        or set(doc) != fields
        or not isinstance(doc["server"], str)
        or not isinstance(doc["token"], str)
        or not isinstance(doc["ca_cert"], str | None)
    ):
        raise damaged
    try:
        ca = Path(doc["ca_cert"]) if doc["ca_cert"] else None
        return Credentials(doc["server"], doc["token"], ca, str(path))
    except InvalidInput:
        raise damaged from None


def save_credentials(path: Path, credentials: Credentials) -> None:
    """Write the login file whole or not at all: mode 0600, its directory made 0700 if new."""
    doc = {
        "format": CREDENTIALS_FORMAT,
        "server": credentials.server,
        "token": credentials.token,
        "ca_cert": str(credentials.ca_cert.resolve()) if credentials.ca_cert else None,
    }
    data = json.dumps(doc, indent=2).encode() + b"\n"
    parent = path.parent
    partial = parent / f".{path.name}.{secrets.token_hex(6)}.partial"
    try:
        if not parent.exists():
            parent.mkdir(mode=0o700, parents=True)
            os.chmod(parent, 0o700)  # whatever the umask
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o600)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(partial, path)
        dir_fd = os.open(parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InvalidInput(
            f"cannot write credentials file {path} ({exc.strerror or type(exc).__name__})"
        ) from None


def remove_credentials(path: Path) -> bool:
    """Remove the login file; False when there was none."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise InvalidInput(
            f"cannot remove credentials file {path} ({exc.strerror or type(exc).__name__})"
        ) from None
    return True


# -- the client -------------------------------------------------------------------------------------


def segment(value: str) -> str:
    """One path segment of a URL, every reserved character escaped (``../`` stays a name)."""
    return quote(value, safe="")


def _tls_context(ca_cert: Path | None) -> ssl.SSLContext:
    try:
        return ssl.create_default_context(cafile=str(ca_cert) if ca_cert else None)
    except (OSError, ssl.SSLError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a PEM CA certificate"
        raise InvalidInput(f"cannot use CA certificate {ca_cert} ({why})") from None


class Server:
    """A fabtrust server, called as the person whose token the credentials hold."""

    def __init__(self, credentials: Credentials, *, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = credentials.server
        self._token = credentials.token
        verify: ssl.SSLContext | bool = (
            _tls_context(credentials.ca_cert) if self.url.startswith("https:") else False
        )
        self._http = httpx.Client(
            base_url=self.url,
            verify=verify,
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            headers={"Accept": "application/json", "User-Agent": f"fabtrust-cli/{__version__}"},
        )

    def __repr__(self) -> str:
        return f"Server({self.url!r})"

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, params: Mapping[str, str | None] | None = None) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        return self._call("GET", path, params=query)

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        return self._call("POST", path, body=body if body is not None else {})

    def delete(self, path: str) -> Any:
        return self._call("DELETE", path)

    def _call(
        self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None
    ) -> Any:
        headers = {"Authorization": f"Bearer {self._token}"}
        try:
            response = self._http.request(method, path, params=params, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise _transport_error(self.url, exc) from None
        rid = _one_line(response.headers.get("X-Request-ID", "-"), 64)
        if response.is_success:
            try:
                return response.json()
            except ValueError:
                raise Unavailable(
                    f"the server at {self.url} answered {method} {path} with something other than "
                    f"JSON (request id {rid})"
                ) from None
        raise _answer_error(self.url, response, rid)


def _transport_error(url: str, exc: httpx.HTTPError) -> FabtrustError:
    text = str(exc)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return VerificationFailed(
            f"the TLS certificate of {url} did not verify; give the CA that issued it with "
            f"--ca-cert or {CA_ENV}"
        )
    if isinstance(exc, httpx.TimeoutException):
        return Unavailable(f"the fabtrust server at {url} did not answer in time")
    reason = _one_line(text, 160) or type(exc).__name__
    return Unavailable(f"cannot reach the fabtrust server at {url} ({reason})")


def _answer_error(url: str, response: httpx.Response, rid: str) -> FabtrustError:
    status = response.status_code
    code, message = "", ""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        said_code, said_message = body.get("error"), body.get("message")
        code = said_code if isinstance(said_code, str) else ""
        message = said_message if isinstance(said_message, str) else ""
        if isinstance(body.get("request_id"), str):
            rid = _one_line(body["request_id"], 64)
    if status == 401:
        return Unauthenticated(
            f"the server refused the token: it is invalid or expired (request id {rid}); "
            "log in again with `fabtrust login`"
        )
    if 300 <= status < 400:
        return Unavailable(f"the server at {url} answered with a redirect ({status}); not followed")
    said = _one_line(message) if message else f"HTTP {status}"
    text = f"{said} (server {status}, request id {rid})"
    if status == 429:
        return RateLimited(text)
    family = _ERRORS.get(code)
    if family is None:
        family = Unavailable if status >= 500 else FabtrustError
    return family(text)
