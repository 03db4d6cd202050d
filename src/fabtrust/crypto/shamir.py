"""Shamir secret sharing (Shamir 1979, "How to share a secret") over GF(2^8), byte by byte.

The field is GF(2^8) with the AES reduction polynomial x^8 + x^4 + x^3 + x + 1 (0x11B, FIPS 197
4.2); addition is XOR and multiplication uses log/antilog tables over the generator 3 (x + 1),
built once at import. Each secret byte gets its own random polynomial of degree ``threshold - 1``
whose constant term is that byte (the other coefficients come from :mod:`secrets`); share ``i`` is
the polynomial evaluated at x = i, for i = 1..count. Any ``threshold`` shares give the secret back
by Lagrange interpolation at x = 0; fewer reveal nothing about it.

What this layer cannot do: Shamir sharing has no integrity. A wrong, corrupted or substituted
share, or too few shares, interpolate to *some* value without any error. Integrity comes from the
layer above: :mod:`fabtrust.pki.custody` shares an AES-GCM key, so a wrong reconstruction fails
to decrypt the backup, and it checks thresholds, ceremonies and fingerprints before combining.

Side channels: Python cannot be constant-time. Multiplication avoids a branch on zero, but table
lookups are indexed by secret bytes and big-integer XOR and ``bytes.translate`` make no timing
promises. This module is meant for a root-key ceremony on a trusted, offline machine, where the
attacker has no timing oracle; do not use it in a service that splits or combines on request.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from fabtrust.errors import InvalidInput

#: Largest secret accepted, in bytes (a 256-bit key is 32).
MAX_SECRET = 1024
#: Share indexes are the non-zero field elements: at most 255 shares.
MAX_SHARES = 255
_POLY = 0x11B  # x^8 + x^4 + x^3 + x + 1
_GENERATOR = 0x03  # x + 1, a generator of the multiplicative group of GF(2^8) mod 0x11B


def _build_tables() -> tuple[bytes, bytes]:
    exp = bytearray(510)  # doubled so that LOG[a] + LOG[b] never needs reducing mod 255
    log = bytearray(256)  # LOG[0] stays 0; multiplication masks the zero case out
    x = 1
    for i in range(255):
        exp[i] = exp[i + 255] = x
        log[x] = i
        # x * 3 = x * 2 + x; x * 2 is a shift, reduced by the polynomial when bit 8 is set.
        doubled = x << 1
        if doubled & 0x100:
            doubled ^= _POLY
        x = doubled ^ x
    if x != 1 or len(set(exp[:255])) != 255:  # 3 must generate all 255 non-zero elements
        raise AssertionError("GF(256) tables are inconsistent")
    return bytes(exp), bytes(log)


_EXP, _LOG = _build_tables()


def gf_mul(a: int, b: int) -> int:
    """Product of two field elements (0..255)."""
    # The table entry is garbage when a or b is 0 (LOG[0] = 0); the mask zeroes it without a branch.
    return _EXP[_LOG[a] + _LOG[b]] & -(bool(a) & bool(b))


def gf_inv(a: int) -> int:
    """Multiplicative inverse of a non-zero field element."""
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(256)")
    return _EXP[255 - _LOG[a]]


@functools.lru_cache(maxsize=256)
def _mul_table(c: int) -> bytes:
    """Translation table for multiplying every byte of a string by the constant ``c``.

    ``c`` is always public (a share index or a Lagrange coefficient, which depend on indexes only).
    """
    return bytes(gf_mul(c, v) for v in range(256))


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


@dataclass(frozen=True)
class Share:
    """One share: the polynomials evaluated at ``index`` (1..255), one byte per secret byte.

    ``data`` is secret and is left out of the repr so that it cannot reach a log by accident.
    """

    index: int
    data: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.index, int) or isinstance(self.index, bool):
            raise InvalidInput("share index must be an integer")
        if not 1 <= self.index <= MAX_SHARES:
            raise InvalidInput(f"share index {self.index} is outside 1..{MAX_SHARES}")
        if not isinstance(self.data, bytes):
            raise InvalidInput("share data must be bytes")
        if not 1 <= len(self.data) <= MAX_SECRET:
            raise InvalidInput(f"share data must be 1 to {MAX_SECRET} bytes long")


def split(secret: bytes, threshold: int, count: int) -> list[Share]:
    """Split ``secret`` into ``count`` shares, any ``threshold`` of which recover it.

    Requires 2 <= threshold <= count <= 255 and 1 <= len(secret) <= 1024. A threshold of 1 is
    refused: every share would *be* the secret.
    """
    if not isinstance(secret, bytes) or not 1 <= len(secret) <= MAX_SECRET:
        raise InvalidInput(f"the secret must be 1 to {MAX_SECRET} bytes long")
    for name, value in (("threshold", threshold), ("count", count)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidInput(f"{name} must be an integer")
    if threshold < 2:
        raise InvalidInput(
            f"threshold {threshold} refused: a threshold below 2 would hand the whole secret to every holder"
        )
    if count > MAX_SHARES:
        raise InvalidInput(f"at most {MAX_SHARES} shares can be made (asked for {count})")
    if threshold > count:
        raise InvalidInput(f"threshold {threshold} is larger than the number of shares ({count})")
    # Coefficient vectors, constant term first: coeffs[k][j] is the x^k coefficient for byte j.
    coeffs = [secret] + [secrets.token_bytes(len(secret)) for _ in range(threshold - 1)]
    shares = []
    for x in range(1, count + 1):
        table = _mul_table(x)
        y = coeffs[-1]
        for c in reversed(coeffs[:-1]):  # Horner: y = y * x + c
            y = _xor(y.translate(table), c)
        shares.append(Share(x, y))
    return shares


def combine(shares: Sequence[Share]) -> bytes:
    """Interpolate ``shares`` at x = 0 (Lagrange) and return the secret.

    Refuses fewer than 2 shares, duplicate or out-of-range indexes and shares of different lengths.
    It cannot tell a wrong or insufficient set of shares from a good one (see the module docstring):
    the caller must authenticate the result.
    """
    if len(shares) < 2:
        raise InvalidInput(f"at least 2 shares are needed to combine ({len(shares)} given)")
    indexes = []
    for share in shares:
        if not isinstance(share, Share):
            raise InvalidInput("combine takes Share values")
        if not 1 <= share.index <= MAX_SHARES:  # re-checked: Share's checks can be bypassed
            raise InvalidInput(f"share index {share.index} is outside 1..{MAX_SHARES}")
        indexes.append(share.index)
    if len(set(indexes)) != len(indexes):
        dup = sorted({i for i in indexes if indexes.count(i) > 1})
        raise InvalidInput(f"duplicate share index {dup[0]}")
    length = len(shares[0].data)
    if any(len(s.data) != length for s in shares) or not 1 <= length <= MAX_SECRET:
        raise InvalidInput("shares have different lengths")
    secret = bytes(length)
    for share in shares:
        # Lagrange basis at 0: l_i(0) = prod_{j != i} x_j / (x_j - x_i); in GF(2^8), minus is XOR.
        basis = 1
        for other in indexes:
            if other != share.index:
                basis = gf_mul(basis, gf_mul(other, gf_inv(other ^ share.index)))
        secret = _xor(secret, share.data.translate(_mul_table(basis)))
    return secret
