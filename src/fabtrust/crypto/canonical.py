"""Canonical JSON (RFC 8785, JCS) for signed and logged documents.

fabtrust documents never carry floating-point numbers, so this implements JCS for the value types
they do carry and refuses the rest (fail closed): strings, booleans, null, integers within the
I-JSON safe range (RFC 7493 2.2, |n| <= 2**53 - 1), arrays and objects with string keys, nested
at most ``MAX_DEPTH`` deep. Object members are sorted by the UTF-16 code units of their names
(RFC 8785 3.2.3); strings are escaped as RFC 8785 3.2.2.2 prescribes, which is what
``json.dumps(ensure_ascii=False)`` emits.
"""

from __future__ import annotations

import json
from typing import Any

from fabtrust.errors import InvalidInput

_MAX_SAFE_INT = 2**53 - 1
#: Deepest nesting of arrays and objects accepted (a bound on recursion, far above any document's).
MAX_DEPTH = 100
_encode_str = json.encoder.py_encode_basestring  # RFC 8785 3.2.2.2 escaping, no ASCII folding


def _utf16_key(name: str) -> bytes:
    return name.encode("utf-16-be")


def _write(value: Any, out: list[str], depth: int = 0) -> None:
    """Append the encoding of ``value``; ``depth`` counts the arrays and objects around it."""
    if isinstance(value, dict | list | tuple) and depth >= MAX_DEPTH:
        raise InvalidInput(f"value is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, str):
        out.append(_encode_str(value))
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif value is None:
        out.append("null")
    elif isinstance(value, int):
        if not -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT:
            raise InvalidInput("integer outside the I-JSON range cannot be canonicalised")
        out.append(str(value))
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key in sorted(value, key=_check_key_utf16):
            if not first:
                out.append(",")
            first = False
            out.append(_encode_str(key))
            out.append(":")
            _write(value[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _write(item, out, depth + 1)
        out.append("]")
    else:
        raise InvalidInput(f"cannot canonicalise a value of type {type(value).__name__}")


def _check_key_utf16(key: object) -> bytes:
    if not isinstance(key, str):
        raise InvalidInput("object member names must be strings")
    try:
        return _utf16_key(key)
    except UnicodeEncodeError:
        raise InvalidInput("member name contains a lone surrogate") from None


def _plain(value: Any, depth: int = 0) -> bool:
    """True if the C encoder's output is already canonical for ``value``: only strings, booleans,
    null, safe integers, arrays and objects whose member names are ASCII (for ASCII, code-point
    order is UTF-16 order), nested less than MAX_DEPTH deep. Anything else (subclasses of the
    built-in types too) goes the careful way, which also reports errors. Exact type checks: this
    runs on every document signed or parsed."""
    kind = type(value)
    if kind is str or value is None or kind is bool:
        return True
    if kind is int:
        return bool(-_MAX_SAFE_INT <= value <= _MAX_SAFE_INT)
    if depth >= MAX_DEPTH:
        return False
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                return False
            if type(item) is not str and not _plain(item, depth + 1):
                return False
        return True
    if kind is list or kind is tuple:
        return all(type(item) is str or _plain(item, depth + 1) for item in value)
    return False


_fast = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False).encode


def canonical_json(value: Any) -> bytes:
    """The RFC 8785 canonical UTF-8 encoding of ``value``."""
    if _plain(value):
        try:
            return _fast(value).encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput("string contains a lone surrogate") from None
    out: list[str] = []
    _write(value, out)
    try:
        return "".join(out).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("string contains a lone surrogate") from None


def _no_floats(text: str) -> Any:
    raise InvalidInput("floating-point numbers are not allowed")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidInput(f"duplicate member {key!r}")
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise InvalidInput(f"{name} is not JSON")


def parse_canonical(data: bytes) -> Any:
    """Parse bytes that must already be canonical JSON; anything else is InvalidInput.

    Refuses invalid UTF-8, duplicate members, floats, NaN/Infinity and any encoding that differs
    from the canonical one (whitespace, member order, escapes).
    """
    try:
        text = data.decode("utf-8")
        value = json.loads(
            text, parse_float=_no_floats, object_pairs_hook=_no_duplicates, parse_constant=_no_constants
        )
    except UnicodeDecodeError:
        raise InvalidInput("document is not valid UTF-8") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"document is not valid JSON ({exc.msg} at offset {exc.pos})") from None
    except ValueError:  # an integer literal beyond Python's int-conversion digit limit
        raise InvalidInput("document has an integer literal that is too long") from None
    except RecursionError:
        raise InvalidInput(f"document is nested more than {MAX_DEPTH} levels deep") from None
    if canonical_json(value) != data:
        raise InvalidInput("document is not in canonical form (RFC 8785)")
    return value
