"""Base64 for binary fields of JSON documents: standard alphabet, padded, and strict on input."""

from __future__ import annotations

import binascii

from fabtrust.errors import InvalidInput

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_SIXTETS = {character: value for value, character in enumerate(_ALPHABET)}


def b64(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def unb64(value: object, what: str) -> bytes:
    """Decode a base64 text field; anything but the one canonical encoding is InvalidInput
    (no whitespace, no foreign characters, no slack padding bits: one value, one encoding)."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} is missing or not a base64 string")
    body = value.rstrip("=")
    padding = len(value) - len(body)
    if not value.isascii() or len(value) % 4 or padding > 2:
        raise InvalidInput(f"{what} is not valid base64")
    try:
        # strict: the standard alphabet only, nothing after the padding
        data = binascii.a2b_base64(value, strict_mode=True)
    except binascii.Error:
        raise InvalidInput(f"{what} is not valid base64") from None
    # RFC 4648 3.5: the bits the padding leaves over in the last character must be zero
    if padding and _SIXTETS[body[-1]] & (0x0F if padding == 2 else 0x03):
        raise InvalidInput(f"{what} is not canonical base64")
    return data
