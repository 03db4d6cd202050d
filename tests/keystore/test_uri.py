"""RFC 7512 PKCS#11 URIs: parsing, percent-encoding, formatting, and refusals (fail closed)."""

from __future__ import annotations

import pytest

from fabtrust.errors import InvalidInput
from fabtrust.keystore.uri import Pkcs11Uri, key_uri, parse_pkcs11_uri

# Canonical spellings: parse then format gives the same string back.
ROUND_TRIPS = [
    pytest.param("pkcs11:", id="ok/empty"),
    pytest.param("pkcs11:token=fabtrust;object=root-ca;type=private", id="ok/key"),
    pytest.param("pkcs11:object=my-pubkey;type=public", id="ok/rfc-example-public"),
    pytest.param(
        "pkcs11:token=The%20Software%20PKCS%2311%20Softtoken;object=my-certificate;type=cert;"
        "id=%69%95%3E%5C%F4%BD%EC%91",
        id="ok/rfc-example-cert",
    ),
    pytest.param("pkcs11:object=a&b=c:d@e", id="ok/path-reserved-allowed"),
    pytest.param("pkcs11:object=a%3Bb%3Fc%2Fd", id="ok/path-delimiters-encoded"),
    pytest.param("pkcs11:object=cl%C3%A9", id="ok/utf8"),
    pytest.param("pkcs11:token=t;id=", id="ok/empty-id"),
    pytest.param(
        "pkcs11:token=t?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/pin?x|y",
        id="ok/query",
    ),
    pytest.param("pkcs11:?pin-source=file:/a%26b", id="ok/query-ampersand-encoded"),
]


@pytest.mark.parametrize("uri", ROUND_TRIPS)
def test_round_trip(uri: str) -> None:
    parsed = parse_pkcs11_uri(uri)
    assert parsed.format() == uri
    assert parse_pkcs11_uri(parsed.format()) == parsed


PARSED = [
    pytest.param(
        "pkcs11:token=tok;object=my%20key;type=private",
        Pkcs11Uri(token="tok", object="my key", type="private"),
        id="ok/percent-space",
    ),
    pytest.param("pkcs11:object=cl%c3%a9", Pkcs11Uri(object="clé"), id="ok/lowercase-hex"),
    pytest.param("pkcs11:id=%00%FF%10", Pkcs11Uri(id=b"\x00\xff\x10"), id="ok/id-bytes"),
    pytest.param("pkcs11:id=ab", Pkcs11Uri(id=b"ab"), id="ok/id-unencoded"),
    pytest.param("PKCS11:token=x", Pkcs11Uri(token="x"), id="ok/scheme-case"),
    pytest.param("pkcs11:token=", Pkcs11Uri(token=""), id="ok/empty-value"),
    pytest.param("pkcs11:object=a=b", Pkcs11Uri(object="a=b"), id="ok/equals-in-value"),
    pytest.param(
        "pkcs11:object=k?module-path=/opt/lib%20x.so&pin-source=file:/run/pin",
        Pkcs11Uri(object="k", module_path="/opt/lib x.so", pin_source="file:/run/pin"),
        id="ok/query-attrs",
    ),
]


@pytest.mark.parametrize(("uri", "expected"), PARSED)
def test_parse(uri: str, expected: Pkcs11Uri) -> None:
    assert parse_pkcs11_uri(uri) == expected


INVALID = [
    pytest.param("https://example.com/key", "pkcs11:", id="fail/scheme/other"),
    pytest.param("token=x", "pkcs11:", id="fail/scheme/missing"),
    pytest.param("pkcs11:serial=42", "'serial' is not supported", id="fail/attr/standard-unsupported"),
    pytest.param("pkcs11:x-vendor=1", "'x-vendor' is not supported", id="fail/attr/vendor"),
    pytest.param("pkcs11:bogus=1", "not supported", id="fail/attr/unknown"),
    pytest.param("pkcs11:token=t?module-name=softhsm2", "not supported", id="fail/attr/unknown-query"),
    pytest.param("pkcs11:token=t?object=k", "not supported", id="fail/attr/path-attr-in-query"),
    pytest.param("pkcs11:token=a;token=b", "more than once", id="fail/duplicate/path"),
    pytest.param("pkcs11:object=a;type=private;object=a", "more than once", id="fail/duplicate/path-same"),
    pytest.param("pkcs11:?pin-source=/a&pin-source=/b", "more than once", id="fail/duplicate/query"),
    pytest.param("pkcs11:token", "name=value", id="fail/syntax/no-equals"),
    pytest.param("pkcs11:=x", "name=value", id="fail/syntax/empty-name"),
    pytest.param("pkcs11:token=a;", "name=value", id="fail/syntax/trailing-separator"),
    pytest.param("pkcs11:type=secret", "type must be", id="fail/type/unknown"),
    pytest.param("pkcs11:type=", "type must be", id="fail/type/empty"),
    pytest.param("pkcs11:object=a%2", "percent-encoding", id="fail/pct/truncated"),
    pytest.param("pkcs11:object=a%zz", "percent-encoding", id="fail/pct/bad-hex"),
    pytest.param("pkcs11:object=a b", "percent-encoded", id="fail/char/space"),
    pytest.param("pkcs11:object=a/b", "percent-encoded", id="fail/char/slash-in-path"),
    pytest.param("pkcs11:object=a|b", "percent-encoded", id="fail/char/pipe-in-path"),
    pytest.param("pkcs11:?pin-source=/a;b", "percent-encoded", id="fail/char/semicolon-in-query"),
    pytest.param("pkcs11:object=%FF", "UTF-8", id="fail/utf8/invalid"),
    pytest.param("pkcs11:?pin-source=/a&pin-value=1234", "both", id="fail/pin/both"),
    pytest.param("pkcs11:?module-path=libsofthsm2.so", "absolute", id="fail/module-path/relative"),
    pytest.param("pkcs11:object=" + "a" * 5000, "longer than", id="fail/too-long"),
]


@pytest.mark.parametrize(("uri", "fragment"), INVALID)
def test_invalid(uri: str, fragment: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_pkcs11_uri(uri)
    assert fragment in err.value.message


def test_pin_value_is_parsed_but_never_formatted_or_shown() -> None:
    parsed = parse_pkcs11_uri("pkcs11:token=t;object=k?pin-value=s3cr%21t")
    assert parsed.pin_value == "s3cr!t"
    assert parsed.format() == "pkcs11:token=t;object=k"
    assert "s3cr" not in repr(parsed)


def test_refusal_does_not_echo_pin_value() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_pkcs11_uri("pkcs11:token=t?pin-value=top secret")
    assert "top" not in err.value.message
    assert "secret" not in err.value.message


@pytest.mark.parametrize(
    ("token", "label", "expected"),
    [
        pytest.param(
            "fabtrust", "root-ca", "pkcs11:token=fabtrust;object=root-ca;type=private", id="ok/plain"
        ),
        pytest.param(
            "OEM HSM #1",
            "k.1",
            "pkcs11:token=OEM%20HSM%20%231;object=k.1;type=private",
            id="ok/encoded-token",
        ),
    ],
)
def test_key_uri(token: str, label: str, expected: str) -> None:
    assert key_uri(token, label) == expected
    assert parse_pkcs11_uri(expected) == Pkcs11Uri(token=token, object=label, type="private")


def test_constructor_validates() -> None:
    with pytest.raises(InvalidInput):
        Pkcs11Uri(type="secret")
    with pytest.raises(InvalidInput):
        Pkcs11Uri(module_path="relative.so")
    with pytest.raises(InvalidInput):
        Pkcs11Uri(pin_source="/p", pin_value="1")
