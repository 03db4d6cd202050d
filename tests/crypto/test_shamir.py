"""Shamir sharing over GF(2^8): field axioms, a hand-computed known answer, recovery from any
threshold-sized subset, nothing from fewer, and refusals of bad parameters."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fabtrust.crypto.shamir import MAX_SECRET, Share, combine, gf_inv, gf_mul, split
from fabtrust.errors import InvalidInput


def slow_mul(a: int, b: int) -> int:
    """Carry-less multiply, then reduce modulo x^8 + x^4 + x^3 + x + 1 (independent of the tables)."""
    product = 0
    for bit in range(8):
        if b >> bit & 1:
            product ^= a << bit
    for bit in range(14, 7, -1):
        if product >> bit & 1:
            product ^= 0x11B << (bit - 8)
    return product


# --- the field ------------------------------------------------------------------------------------


def test_fips197_multiplication_example() -> None:
    # FIPS 197 section 4.2: {57} * {83} = {c1}, and 4.2.1: {57} * {13} = {fe}.
    assert slow_mul(0x57, 0x83) == 0xC1
    assert gf_mul(0x57, 0x83) == 0xC1
    assert gf_mul(0x57, 0x13) == 0xFE


def test_table_multiplication_matches_carryless_multiplication_everywhere() -> None:
    for a in range(256):
        for b in range(256):
            assert gf_mul(a, b) == slow_mul(a, b), (a, b)


def test_every_nonzero_element_has_an_inverse() -> None:
    for a in range(1, 256):
        assert gf_mul(a, gf_inv(a)) == 1, a
    with pytest.raises(ZeroDivisionError):
        gf_inv(0)


def test_identity_zero_and_commutativity() -> None:
    for a in range(256):
        assert gf_mul(a, 1) == a
        assert gf_mul(a, 0) == 0
        assert gf_mul(0, a) == 0
        for b in range(256):
            assert gf_mul(a, b) == gf_mul(b, a)


def test_associativity_and_distributivity_on_samples() -> None:
    rng = random.Random(20250101)
    for _ in range(20000):
        a, b, c = rng.randrange(256), rng.randrange(256), rng.randrange(256)
        assert gf_mul(a, b ^ c) == gf_mul(a, b) ^ gf_mul(a, c)
        assert gf_mul(gf_mul(a, b), c) == gf_mul(a, gf_mul(b, c))


# --- known answer ---------------------------------------------------------------------------------


def test_known_answer_pins_field_and_polynomial() -> None:
    # p(x) = 0x53 + 0xCA * x: the secret byte 0x53 at x = 0, threshold 2. Expected values by hand
    # with the slow multiply: p(1) = 0x53 ^ 0xCA, p(2) = 0x53 ^ 0xCA*2, p(3) = 0x53 ^ 0xCA*3.
    expected = {x: 0x53 ^ slow_mul(0xCA, x) for x in (1, 2, 3)}
    # By hand: 0xCA*2 = 0x194 ^ 0x11B = 0x8F, 0xCA*3 = 0x8F ^ 0xCA = 0x45.
    assert expected == {1: 0x99, 2: 0xDC, 3: 0x16}
    shares = [Share(x, bytes([y])) for x, y in expected.items()]
    for pair in itertools.combinations(shares, 2):
        assert combine(pair) == b"\x53"
    assert combine(shares) == b"\x53"  # three points on a line still interpolate to it

    # Degree 2: p(x) = 0x53 + 0xCA x + 0x07 x^2 at x = 1..4.
    def p(x: int) -> int:
        return 0x53 ^ slow_mul(0xCA, x) ^ slow_mul(0x07, slow_mul(x, x))

    quad = [Share(x, bytes([p(x)])) for x in range(1, 5)]
    for triple in itertools.combinations(quad, 3):
        assert combine(triple) == b"\x53"


def test_split_evaluates_at_one_to_count_with_the_secret_as_constant_term() -> None:
    shares = split(b"\x00\xff\x53", 2, 4)
    assert [s.index for s in shares] == [1, 2, 3, 4]
    # For a line, p(1) ^ p(2) ^ p(3) = c0 ^ c1*(1^2^3) = c0 (since 1 ^ 2 ^ 3 = 0).
    for j, byte in enumerate(b"\x00\xff\x53"):
        assert shares[0].data[j] ^ shares[1].data[j] ^ shares[2].data[j] == byte


# --- recovery -------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    secret=st.binary(min_size=1, max_size=64),
    n=st.integers(min_value=2, max_value=10),
    data=st.data(),
)
def test_any_threshold_subset_recovers_the_secret(secret: bytes, n: int, data: Any) -> None:
    k = data.draw(st.integers(min_value=2, max_value=n), label="k")
    shares = split(secret, k, n)
    assert len(shares) == n
    assert all(len(s.data) == len(secret) for s in shares)
    subset = data.draw(st.permutations(shares), label="order")[: data.draw(st.integers(k, n), label="m")]
    assert combine(subset) == secret


def test_every_subset_of_a_3_of_5_split() -> None:
    secret = bytes(range(32))
    shares = split(secret, 3, 5)
    for m in (3, 4, 5):
        for subset in itertools.combinations(shares, m):
            assert combine(subset) == secret


@settings(max_examples=60, deadline=None)
@given(
    secret=st.binary(min_size=32, max_size=32),
    n=st.integers(min_value=3, max_value=10),
    data=st.data(),
)
def test_fewer_than_threshold_shares_give_another_value(secret: bytes, n: int, data: Any) -> None:
    k = data.draw(st.integers(min_value=3, max_value=n), label="k")
    shares = split(secret, k, n)
    subset = data.draw(st.permutations(shares), label="order")[: k - 1]
    assert combine(subset) != secret  # fails with probability 2**-256


def test_splits_are_fresh() -> None:
    secret = b"\x42" * 32
    assert split(secret, 2, 3) != split(secret, 2, 3)
    # No share equals the secret (probability 2**-256 per share).
    assert all(s.data != secret for s in split(secret, 2, 5))


def test_large_parameters_are_fast_enough() -> None:
    secret = bytes(range(256)) * 4  # 1024 bytes
    shares = split(secret, 255, 255)
    assert combine(shares[::-1]) == secret


def test_share_repr_hides_the_data() -> None:
    share = Share(1, b"\xde\xad\xbe\xef")
    assert "dead" not in repr(share).lower()
    assert "\\xde" not in repr(share)


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "threshold", "count", "match"),
    [
        pytest.param(b"s", 1, 3, "would hand the whole secret", id="fail/threshold-1"),
        pytest.param(b"s", 0, 3, "threshold 0", id="fail/threshold-0"),
        pytest.param(b"s", -2, 3, "threshold -2", id="fail/threshold-negative"),
        pytest.param(b"s", 4, 3, "larger than the number of shares", id="fail/threshold-above-count"),
        pytest.param(b"s", 2, 256, "at most 255", id="fail/count-256"),
        pytest.param(b"", 2, 3, "1 to 1024 bytes", id="fail/secret-empty"),
        pytest.param(b"x" * (MAX_SECRET + 1), 2, 3, "1 to 1024 bytes", id="fail/secret-too-long"),
        pytest.param("text", 2, 3, "1 to 1024 bytes", id="fail/secret-not-bytes"),
        pytest.param(b"s", True, 3, "integer", id="fail/threshold-bool"),
        pytest.param(b"s", 2, 3.0, "integer", id="fail/count-float"),
    ],
)
def test_split_refuses_bad_parameters(secret: Any, threshold: Any, count: Any, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        split(secret, threshold, count)


@pytest.mark.parametrize(
    ("threshold", "count"),
    [pytest.param(2, 2, id="ok/2-of-2"), pytest.param(255, 255, id="ok/255-of-255")],
)
def test_split_accepts_the_edges(threshold: int, count: int) -> None:
    shares = split(b"edge", threshold, count)
    assert combine(shares) == b"edge"


def _bypass(index: int, data: bytes) -> Share:
    """A Share whose constructor checks were bypassed, to test that combine re-checks."""
    share = Share(1, b"\x00")
    object.__setattr__(share, "index", index)
    object.__setattr__(share, "data", data)
    return share


@pytest.mark.parametrize(
    ("shares", "match"),
    [
        pytest.param([], "at least 2 shares", id="fail/none"),
        pytest.param([Share(1, b"a")], "at least 2 shares", id="fail/one"),
        pytest.param([Share(1, b"a"), Share(1, b"b")], "duplicate share index 1", id="fail/duplicate"),
        pytest.param([Share(1, b"ab"), Share(2, b"a")], "different lengths", id="fail/lengths"),
        pytest.param([_bypass(0, b"a"), Share(2, b"a")], "outside 1..255", id="fail/index-0"),
        pytest.param([_bypass(256, b"a"), Share(2, b"a")], "outside 1..255", id="fail/index-256"),
        pytest.param([_bypass(1, b""), _bypass(2, b"")], "different lengths", id="fail/empty-data"),
        pytest.param([Share(1, b"a"), (2, b"a")], "Share values", id="fail/not-a-share"),
    ],
)
def test_combine_refuses_bad_share_sets(shares: Any, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        combine(shares)


@pytest.mark.parametrize(
    ("index", "data", "match"),
    [
        pytest.param(0, b"a", "outside 1..255", id="fail/index-0"),
        pytest.param(256, b"a", "outside 1..255", id="fail/index-256"),
        pytest.param(True, b"a", "integer", id="fail/index-bool"),
        pytest.param(1, b"", "1 to 1024", id="fail/data-empty"),
        pytest.param(1, bytearray(b"a"), "bytes", id="fail/data-bytearray"),
    ],
)
def test_share_refuses_bad_values(index: Any, data: Any, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        Share(index, data)
