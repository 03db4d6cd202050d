"""Strict base64 for document fields: one value, one encoding; anything else is InvalidInput."""

from __future__ import annotations

import base64
import binascii

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fabtrust.crypto.encoding import b64, unb64
from fabtrust.errors import InvalidInput


@pytest.mark.parametrize("data", [b"", b"\x00", b"fabtrust", bytes(range(256))])
def test_round_trip(data: bytes) -> None:
    assert unb64(b64(data), "field") == data


@pytest.mark.parametrize(
    ("value", "message"),
    [
        pytest.param(None, "not a base64 string", id="not-a-string"),
        pytest.param("éA==", "not valid base64", id="non-ascii"),
        pytest.param("ZmFi\n", "not valid base64", id="whitespace"),
        pytest.param("ZmE", "not valid base64", id="unpadded"),
        pytest.param("ZmF=", "not canonical", id="slack-padding-bits"),
        pytest.param("Zm-_", "not valid base64", id="url-alphabet"),
    ],
)
def test_anything_but_the_canonical_encoding_is_refused(value: object, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        unb64(value, "field")


def _reference(value: str) -> bytes | None:
    """The rule, plainly: decode, then accept only if encoding the bytes again gives ``value``."""
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if base64.b64encode(data).decode("ascii") == value else None


@given(st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=-_ \n\t\x00é", max_size=16))
@example("AB==")
@example("0000=")
@example("0000====")
@example("AA==")
@example("AAB=")
@example("AAA=")
@example("=")
@example("A=A=")
@example("AA==AA==")
@settings(max_examples=5000, deadline=None)
def test_exactly_the_canonical_encodings_decode(value: str) -> None:
    expected = _reference(value)
    if expected is None:
        with pytest.raises(InvalidInput):
            unb64(value, "field")
    else:
        assert unb64(value, "field") == expected


@given(st.binary(max_size=64))
def test_encoding_is_the_standard_padded_one(data: bytes) -> None:
    assert b64(data) == base64.b64encode(data).decode("ascii")
