"""Canonical JSON (RFC 8785): known answers from the RFC, escaping, refusals, and round trips.

Known answers: RFC 8785 section 3.2.2 (the string and literal members of its example; fabtrust
refuses floats, so the ``numbers`` member is left out) and section 3.2.3 (property sorting by
UTF-16 code units); and two files of the RFC author's reference test data,
cyberphone/json-canonicalization ``testdata/{input,output}/{weird,french}.json`` (commit
77917fbd5d923bca23a9b5eb8851deec918016bf, Apache-2.0), which carry no numbers.
"""

from __future__ import annotations

import datetime
import decimal
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabtrust.crypto.canonical import MAX_DEPTH, canonical_json, parse_canonical
from fabtrust.errors import InvalidInput

MAX_SAFE = 2**53 - 1

# --- known answers -------------------------------------------------------------------------------

# RFC 8785 3.2.3: the input as printed in the RFC (JSON text, escapes and all).
RFC_SORTING_INPUT = r"""{
  "\u20ac": "Euro Sign",
  "\r": "Carriage Return",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "1": "One",
  "\ud83d\ude00": "Emoji: Grinning Face",
  "\u0080": "Control",
  "\u00f6": "Latin Small Letter O With Diaeresis"
}"""
RFC_SORTING_OUTPUT = (
    '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",'
    '"\u20ac":"Euro Sign","\U0001f600":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}'
).encode()

# RFC 8785 3.2.2 example without its "numbers" member.
RFC_PRIMITIVES_INPUT = r"""{
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}"""
RFC_PRIMITIVES_OUTPUT = (
    '{"literals":[null,true,false],"string":"\u20ac$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'.encode()
)

# cyberphone/json-canonicalization testdata (see the module docstring).
WEIRD_INPUT = r"""{
  "\u20ac": "Euro Sign",
  "1": "One",
  "\u0080": "Control\u007f",
  "\ud83d\ude02": "Smiley",
  "\u00f6": "Latin Small Letter O With Diaeresis",
  "\ufb33": "Hebrew Letter Dalet With Dagesh",
  "</script>": "Browser Challenge"
}"""
WEIRD_OUTPUT = (
    '{"1":"One","</script>":"Browser Challenge","\u0080":"Control\u007f",'
    '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\U0001f602":"Smiley",'
    '"\ufb33":"Hebrew Letter Dalet With Dagesh"}'
).encode()
FRENCH_INPUT = """{
  "peach": "This sorting order",
  "p\u00e9ch\u00e9": "is wrong according to French",
  "p\u00eache": "but canonicalization MUST",
  "sin":   "ingnore locale"
}"""
FRENCH_OUTPUT = (
    '{"peach":"This sorting order","p\u00e9ch\u00e9":"is wrong according to French",'
    '"p\u00eache":"but canonicalization MUST","sin":"ingnore locale"}'
).encode()

KNOWN_ANSWERS = [
    pytest.param(RFC_SORTING_INPUT, RFC_SORTING_OUTPUT, id="rfc8785-3.2.3-sorting"),
    pytest.param(RFC_PRIMITIVES_INPUT, RFC_PRIMITIVES_OUTPUT, id="rfc8785-3.2.2-strings-literals"),
    pytest.param(WEIRD_INPUT, WEIRD_OUTPUT, id="cyberphone-weird"),
    pytest.param(FRENCH_INPUT, FRENCH_OUTPUT, id="cyberphone-french"),
]


@pytest.mark.parametrize(("text", "expected"), KNOWN_ANSWERS)
def test_known_answers(text: str, expected: bytes) -> None:
    value = json.loads(text)
    assert canonical_json(value) == expected
    assert parse_canonical(expected) == value


def test_rfc_sorting_is_by_utf16_code_units_not_code_points() -> None:
    # U+1F600 is the surrogate pair D83D DE00, which sorts before U+FB33 in UTF-16 but after it
    # by code point: the RFC's example hinges on this.
    value = json.loads(RFC_SORTING_INPUT)
    by_code_point = sorted(value)
    assert by_code_point.index("\U0001f600") > by_code_point.index("\ufb33")
    out = canonical_json(value).decode()
    assert out.index("\U0001f600") < out.index("\ufb33")


# RFC 8785 3.2.2.2 (ECMAScript JSON.stringify): \b \t \n \f \r, \" and \\ get short escapes, other
# controls below U+0020 get \u00xx in lower case, everything else is written as itself in UTF-8.
SHORT_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}
ESCAPES = [
    *[
        pytest.param(chr(c), SHORT_ESCAPES.get(chr(c), f"\\u{c:04x}"), id=f"control/U+{c:04X}")
        for c in range(0x20)
    ],
    pytest.param('"', '\\"', id="quote"),
    pytest.param("\\", "\\\\", id="backslash"),
    pytest.param("/", "/", id="solidus-unescaped"),
    pytest.param("\u007f", "\u007f", id="delete-unescaped"),
    pytest.param("\u0080", "\u0080", id="c1-control-unescaped"),
    pytest.param("\u00e9", "\u00e9", id="latin-unescaped"),
    pytest.param("\u2028\u2029", "\u2028\u2029", id="line-separators-unescaped"),
    pytest.param("\u20ac", "\u20ac", id="bmp-unescaped"),
    pytest.param("\U0001f600", "\U0001f600", id="astral-unescaped"),
    pytest.param("<script>&'", "<script>&'", id="html-unescaped"),
]


@pytest.mark.parametrize(("char", "escaped"), ESCAPES)
def test_string_escaping(char: str, escaped: str) -> None:
    expected = f'"{escaped}"'.encode()
    assert canonical_json(char) == expected
    assert parse_canonical(expected) == char
    # The same rules apply to member names, with or without non-ASCII names beside them (U+FFFF
    # sorts after every other UTF-16 code unit).
    assert canonical_json({char: 1}) == b"{" + expected + b":1}"
    assert canonical_json({"\uffff": 2, char: 1}) == b"{" + expected + b':1,"\xef\xbf\xbf":2}'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, b"null", id="null"),
        pytest.param(True, b"true", id="true"),
        pytest.param(False, b"false", id="false"),
        pytest.param(0, b"0", id="zero"),
        pytest.param(-1, b"-1", id="minus-one"),
        pytest.param(MAX_SAFE, b"9007199254740991", id="max-safe"),
        pytest.param(-MAX_SAFE, b"-9007199254740991", id="min-safe"),
        pytest.param([], b"[]", id="empty-array"),
        pytest.param({}, b"{}", id="empty-object"),
        pytest.param((1, "a"), b'[1,"a"]', id="tuple-as-array"),
        pytest.param(
            {"b": [True, None], "a": {"d": 1, "c": 2}}, b'{"a":{"c":2,"d":1},"b":[true,null]}', id="nested"
        ),
        pytest.param({"a": 1, "B": 2, "_": 3, "": 4}, b'{"":4,"B":2,"_":3,"a":1}', id="ascii-order"),
    ],
)
def test_values(value: Any, expected: bytes) -> None:
    assert canonical_json(value) == expected


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_nesting_limit() -> None:
    assert canonical_json(nested(MAX_DEPTH)) == b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert parse_canonical(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) == nested(MAX_DEPTH)
    with pytest.raises(InvalidInput, match="nested"):
        canonical_json(nested(MAX_DEPTH + 1))
    with pytest.raises(InvalidInput, match="nested"):
        canonical_json({"\u00e9": nested(MAX_DEPTH)})  # the non-ASCII path counts the same way


class Opaque:
    pass


REFUSED_VALUES = [
    pytest.param(MAX_SAFE + 1, "I-JSON", id="int/above-safe"),
    pytest.param(-MAX_SAFE - 1, "I-JSON", id="int/below-safe"),
    pytest.param(10**400, "I-JSON", id="int/huge"),
    pytest.param([1, 2**53], "I-JSON", id="int/nested-above-safe"),
    pytest.param(1.0, "float", id="float/integral"),
    pytest.param(0.5, "float", id="float/half"),
    pytest.param(-0.0, "float", id="float/negative-zero"),
    pytest.param(float("nan"), "float", id="float/nan"),
    pytest.param(float("inf"), "float", id="float/infinity"),
    pytest.param({"a": [1, {"b": 2.5}]}, "float", id="float/nested"),
    pytest.param({1: "a"}, "member names", id="key/int"),
    pytest.param({None: "a"}, "member names", id="key/none"),
    pytest.param({True: "a"}, "member names", id="key/bool"),
    pytest.param({("a",): "a"}, "member names", id="key/tuple"),
    pytest.param({b"a": "a"}, "member names", id="key/bytes"),
    pytest.param({"a": 1, 2: "b"}, "member names", id="key/mixed"),
    pytest.param("\ud800", "surrogate", id="surrogate/lone-high"),
    pytest.param("a\udc00b", "surrogate", id="surrogate/lone-low"),
    pytest.param(["\udfff"], "surrogate", id="surrogate/in-array"),
    pytest.param({"\ud83d": 1}, "surrogate", id="surrogate/in-name"),
    pytest.param({"\ud800": 1, "\u00e9": 2}, "surrogate", id="surrogate/in-name-beside-non-ascii"),
    pytest.param(b"bytes", "bytes", id="type/bytes"),
    pytest.param({"a": {1, 2}}, "set", id="type/set"),
    pytest.param(decimal.Decimal("1"), "Decimal", id="type/decimal"),
    pytest.param(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), "datetime", id="type/datetime"),
    pytest.param(Opaque(), "Opaque", id="type/object"),
    pytest.param(nested(10_000), "nested", id="depth/10000"),
]


@pytest.mark.parametrize(("value", "fragment"), REFUSED_VALUES)
def test_refused_values(value: Any, fragment: str) -> None:
    with pytest.raises(InvalidInput) as err:
        canonical_json(value)
    assert fragment in err.value.message


# --- parse_canonical: exactly one encoding is accepted --------------------------------------------

REFUSED_DOCUMENTS = [
    pytest.param(b' {"a":1}', "canonical", id="whitespace/leading"),
    pytest.param(b'{"a":1}\n', "canonical", id="whitespace/trailing-newline"),
    pytest.param(b'{"a": 1}', "canonical", id="whitespace/after-colon"),
    pytest.param(b'{"a":1, "b":2}', "canonical", id="whitespace/after-comma"),
    pytest.param(b"[1, 2]", "canonical", id="whitespace/array"),
    pytest.param(b'{\n  "a": 1\n}', "canonical", id="whitespace/pretty"),
    pytest.param(b'{"b":1,"a":2}', "canonical", id="order/reversed"),
    pytest.param(b'{"a":{"d":1,"c":2}}', "canonical", id="order/nested"),
    pytest.param('{"\ufb33":1,"\U0001f600":2}'.encode(), "canonical", id="order/code-point-not-utf16"),
    pytest.param(b'{"a":1,"a":1}', "duplicate", id="duplicate/same-value"),
    pytest.param(b'{"a":1,"a":2}', "duplicate", id="duplicate/other-value"),
    pytest.param(b'{"a":1,"\\u0061":2}', "duplicate", id="duplicate/escaped-name"),
    pytest.param(b'[{"x":{"k":1,"k":1}}]', "duplicate", id="duplicate/nested"),
    pytest.param(b"1.0", "floating", id="float/one-point-zero"),
    pytest.param(b"0.5", "floating", id="float/half"),
    pytest.param(b"1e2", "floating", id="float/exponent"),
    pytest.param(b"[1E-2]", "floating", id="float/nested-exponent"),
    pytest.param(b"NaN", "not JSON", id="float/nan"),
    pytest.param(b"-Infinity", "not JSON", id="float/infinity"),
    pytest.param(b"-0", "canonical", id="int/negative-zero"),
    pytest.param(b"01", "JSON", id="int/leading-zero"),
    pytest.param(b"+1", "JSON", id="int/plus-sign"),
    pytest.param(b"9007199254740992", "I-JSON", id="int/above-safe"),
    pytest.param(b"-9007199254740992", "I-JSON", id="int/below-safe"),
    pytest.param(b"9" * 5000, "too long", id="int/5000-digits"),
    pytest.param(b'"\\u0041"', "canonical", id="escape/ascii-letter"),
    pytest.param(b'"\\/"', "canonical", id="escape/solidus"),
    pytest.param(b'"\\u000A"', "canonical", id="escape/newline-as-u"),
    pytest.param(b'"\\u001F"', "canonical", id="escape/upper-case-hex"),
    pytest.param(b'"\\u007f"', "canonical", id="escape/delete"),
    pytest.param(b'"\\u00e9"', "canonical", id="escape/latin"),
    pytest.param(b'"\\ud83d\\ude00"', "canonical", id="escape/surrogate-pair"),
    pytest.param(b'"\\ud800"', "surrogate", id="escape/lone-surrogate"),
    pytest.param(b'{"\\udc00":1}', "surrogate", id="escape/lone-surrogate-in-name"),
    pytest.param(b'"\x01"', "JSON", id="string/raw-control"),
    pytest.param(b'"\xff"', "UTF-8", id="utf8/invalid-byte"),
    pytest.param(b'"\xc0\xaf"', "UTF-8", id="utf8/overlong"),
    pytest.param(b'"\xed\xa0\x80"', "UTF-8", id="utf8/encoded-surrogate"),
    pytest.param(b'"\xe2\x82"', "UTF-8", id="utf8/truncated"),
    pytest.param(b"\xef\xbb\xbf1", "JSON", id="utf8/bom"),
    pytest.param(b"", "JSON", id="empty"),
    pytest.param(b"1 2", "JSON", id="trailing-value"),
    pytest.param(b'{"a":1', "JSON", id="truncated/object"),
    pytest.param(b'["a"', "JSON", id="truncated/array"),
    pytest.param(b"'a'", "JSON", id="single-quotes"),
    pytest.param(b"[1,]", "JSON", id="trailing-comma"),
    pytest.param(b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested", id="depth/limit-plus-one"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "nested", id="depth/100000"),
    pytest.param(b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "nested", id="depth/objects-50000"),
]


@pytest.mark.parametrize(("data", "fragment"), REFUSED_DOCUMENTS)
def test_parse_refuses(data: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_canonical(data)
    assert fragment in err.value.message


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"null", id="null"),
        pytest.param(b"0", id="zero"),
        pytest.param(b"-9007199254740991", id="min-safe"),
        pytest.param(b'"\\u001f\\b"', id="escapes"),
        pytest.param(b'{"":[],"a":{}}', id="empty-containers"),
        pytest.param('{"\U0001f600":1,"\ufb33":2}'.encode(), id="utf16-order"),
    ],
)
def test_parse_accepts_canonical(data: bytes) -> None:
    assert canonical_json(parse_canonical(data)) == data


# --- properties ------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-MAX_SAFE, max_value=MAX_SAFE)
    | st.text(),  # st.text() draws no surrogates
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(value=json_values)
def test_round_trip(value: Any) -> None:
    data = canonical_json(value)
    assert parse_canonical(data) == value
    assert canonical_json(parse_canonical(data)) == data


@settings(max_examples=200, deadline=None)
@given(value=json_values, seed=st.randoms(use_true_random=False))
def test_member_order_does_not_matter(value: Any, seed: Any) -> None:
    def shuffled(v: Any) -> Any:
        if isinstance(v, dict):
            items = list(v.items())
            seed.shuffle(items)
            return {k: shuffled(x) for k, x in items}
        if isinstance(v, list):
            return [shuffled(x) for x in v]
        return v

    assert canonical_json(shuffled(value)) == canonical_json(value)


@settings(max_examples=200, deadline=None)
@given(value=json_values)
def test_ascii_and_non_ascii_paths_agree(value: Any) -> None:
    # A non-ASCII member name sends the whole value down the careful encoder; the inner value must
    # come out exactly as it does on its own.
    assert canonical_json({"\u00e9": value}) == b'{"\xc3\xa9":' + canonical_json(value) + b"}"
    assert canonical_json([value, {"\u00e9": 0}]) == b"[" + canonical_json(value) + b',{"\xc3\xa9":0}]'
