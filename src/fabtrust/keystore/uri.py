"""PKCS#11 URIs (RFC 7512): parsing and formatting, failing closed.

Only the attributes fabtrust uses are accepted; any other attribute, standard (``serial``,
``slot-id``, ...) or vendor-specific (``x-...``), is refused rather than silently ignored, so a URI
never selects more broadly than its author meant. An attribute may appear at most once.

Path attributes: ``token`` (CKA token label), ``object`` (CKA_LABEL), ``type`` (object class),
``id`` (CKA_ID, raw bytes). Query attributes: ``module-path``, ``pin-source``, ``pin-value``.
:meth:`Pkcs11Uri.format` never writes ``pin-value``: a PIN does not belong in a string that may be
logged or shown.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

from fabtrust.errors import InvalidInput

SCHEME = "pkcs11"
MAX_URI_LENGTH = 4096

# RFC 7512 section 2.3 (ABNF): the characters a value may carry without percent-encoding.
#   pk11-res-avail       = ":" / "[" / "]" / "@" / "!" / "$" / "'" / "(" / ")" / "*" / "+" / "," / "="
#   pk11-path-res-avail  = pk11-res-avail / "&"
#   pk11-query-res-avail = pk11-res-avail / "/" / "?" / "|"
#   pk11-pchar / pk11-qchar = unreserved / ...-res-avail / pct-encoded
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_RES_AVAIL = frozenset(":[]@!$'()*+,=")
_PATH_CHARS = _UNRESERVED | _RES_AVAIL | {"&"}
_QUERY_CHARS = _UNRESERVED | _RES_AVAIL | {"/", "?", "|"}
_HEX = frozenset(string.hexdigits)

#: RFC 7512 section 2.3, ``pk11-type``.
OBJECT_TYPES = frozenset({"public", "private", "cert", "secret-key", "data"})

_PATH_ATTRS = ("token", "object", "type", "id")  # also the order format() writes them in
_QUERY_ATTRS = ("module-path", "pin-source", "pin-value")


@dataclass(frozen=True)
class Pkcs11Uri:
    """A parsed ``pkcs11:`` URI. ``None`` means the attribute is absent (matches anything)."""

    token: str | None = None
    object: str | None = None
    id: bytes | None = None
    type: str | None = None
    module_path: str | None = None
    pin_source: str | None = None
    pin_value: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.type is not None and self.type not in OBJECT_TYPES:
            raise InvalidInput(f"PKCS#11 URI type must be one of {', '.join(sorted(OBJECT_TYPES))}")
        if self.module_path is not None and not self.module_path.startswith("/"):
            raise InvalidInput("PKCS#11 URI module-path must be an absolute path")
        if self.pin_source is not None and self.pin_value is not None:
            # RFC 7512 section 2.3: a URI with both SHOULD be refused.
            raise InvalidInput("PKCS#11 URI must not carry both pin-source and pin-value")

    def format(self) -> str:
        """The URI as a string. ``pin-value`` is never written; everything else round-trips."""
        path: list[str] = []
        if self.token is not None:
            path.append("token=" + _encode(self.token.encode(), _PATH_CHARS))
        if self.object is not None:
            path.append("object=" + _encode(self.object.encode(), _PATH_CHARS))
        if self.type is not None:
            path.append("type=" + self.type)
        if self.id is not None:
            # RFC 7512 section 2.3 recommends percent-encoding every byte of an id.
            path.append("id=" + "".join(f"%{b:02X}" for b in self.id))
        query: list[str] = []
        if self.module_path is not None:
            query.append("module-path=" + _encode(self.module_path.encode(), _QUERY_CHARS))
        if self.pin_source is not None:
            query.append("pin-source=" + _encode(self.pin_source.encode(), _QUERY_CHARS))
        uri = f"{SCHEME}:" + ";".join(path)
        return uri + ("?" + "&".join(query) if query else "")


def key_uri(token_label: str, object_label: str) -> str:
    """The canonical URI of a key pair: ``pkcs11:token=<t>;object=<label>;type=private``."""
    return Pkcs11Uri(token=token_label, object=object_label, type="private").format()


def parse_pkcs11_uri(uri: str) -> Pkcs11Uri:
    """Parse an RFC 7512 URI. Unknown or repeated attributes and stray characters are InvalidInput."""
    if len(uri) > MAX_URI_LENGTH:
        raise InvalidInput(f"PKCS#11 URI is longer than {MAX_URI_LENGTH} characters")
    scheme, colon, rest = uri.partition(":")
    if not colon or scheme.lower() != SCHEME:
        raise InvalidInput("not a PKCS#11 URI (must start with 'pkcs11:')")
    # "?" may appear unencoded inside query values, never in the path: the first one ends the path.
    path, _, query = rest.partition("?")
    values: dict[str, bytes] = {}
    if path:
        _parse_component(path, ";", _PATH_ATTRS, _PATH_CHARS, values)
    if query:
        _parse_component(query, "&", _QUERY_ATTRS, _QUERY_CHARS, values)

    raw_id = values.get("id")
    return Pkcs11Uri(
        token=_text(values, "token"),
        object=_text(values, "object"),
        id=raw_id,
        type=_text(values, "type"),
        module_path=_text(values, "module-path"),
        pin_source=_text(values, "pin-source"),
        pin_value=_text(values, "pin-value"),
    )


def _parse_component(
    component: str,
    separator: str,
    known: tuple[str, ...],
    allowed: frozenset[str],
    values: dict[str, bytes],
) -> None:
    for item in component.split(separator):
        name, eq, value = item.partition("=")
        if not eq or not name:
            raise InvalidInput("PKCS#11 URI attributes must have the form name=value")
        if name not in known:
            raise InvalidInput(f"PKCS#11 URI attribute {name[:40]!r} is not supported")
        if name in values:
            raise InvalidInput(f"PKCS#11 URI attribute {name!r} appears more than once")
        values[name] = _decode(name, value, allowed)


def _decode(name: str, value: str, allowed: frozenset[str]) -> bytes:
    """Check the characters of ``value`` against the RFC 7512 grammar, then percent-decode it."""
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "%":
            pair = value[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise InvalidInput(f"PKCS#11 URI attribute {name!r} has an invalid percent-encoding")
            i += 3
            continue
        if ch not in allowed:
            # Never echo the value: it may be a PIN.
            raise InvalidInput(f"PKCS#11 URI attribute {name!r} has a character that must be percent-encoded")
        i += 1
    return unquote_to_bytes(value)


def _text(values: dict[str, bytes], name: str) -> str | None:
    raw = values.get(name)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"PKCS#11 URI attribute {name!r} is not valid UTF-8") from None


def _encode(raw: bytes, allowed: frozenset[str]) -> str:
    return "".join(chr(b) if b < 0x80 and chr(b) in allowed else f"%{b:02X}" for b in raw)
