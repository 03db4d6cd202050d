"""The fast path of canonical_json (C encoder) must agree byte for byte with the careful path."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from fabtrust.crypto import canonical

_ints = st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
_scalars = st.none() | st.booleans() | _ints | st.text()
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=30,
)


def _careful(value: Any) -> bytes:
    out: list[str] = []
    canonical._write(value, out)
    return "".join(out).encode("utf-8", "surrogatepass")


@settings(max_examples=400, deadline=None)
@given(_values)
def test_fast_and_careful_paths_agree(value: Any) -> None:
    try:
        fast = canonical.canonical_json(value)
    except canonical.InvalidInput:
        # only lone surrogates may be refused here, and the careful path must refuse them too
        try:
            _careful(value).decode("utf-8")
        except UnicodeDecodeError:
            return
        raise
    assert fast == _careful(value)
    assert canonical.parse_canonical(fast) == value or isinstance(value, tuple)
