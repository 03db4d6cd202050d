"""Strict base64 for document fields: one value, one encoding; anything else is InvalidInput."""

from __future__ import annotations

import pytest

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
