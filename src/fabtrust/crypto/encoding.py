"""Base64 for binary fields of JSON documents: standard alphabet, padded, and strict on input."""

from __future__ import annotations

import base64
import binascii

from fabtrust.errors import InvalidInput


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(value: object, what: str) -> bytes:
    """Decode a base64 text field; anything but the one canonical encoding is InvalidInput
    (no whitespace, no foreign characters, no slack padding bits: one value, one encoding)."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} is missing or not a base64 string")
    if not value.isascii():
        raise InvalidInput(f"{what} is not valid base64")
    try:
        data = base64.b64decode(value, validate=True)
    except binascii.Error:
        raise InvalidInput(f"{what} is not valid base64") from None
    if b64(data) != value:
        raise InvalidInput(f"{what} is not canonical base64")
    return data
