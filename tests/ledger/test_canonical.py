"""The canonical encoding: one byte string per value, no floats."""

from __future__ import annotations

import math
from types import MappingProxyType

from hypothesis import given, strategies as st
import pytest

from custom_components.peer_energy.core.trust.canonical import (
    INT_MAX,
    INT_MIN,
    CanonicalError,
    FloatNotAllowedError,
    canonical_bytes,
    decode,
    decode_strict,
    digest,
    digest_of,
)

values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=INT_MIN, max_value=INT_MAX) | st.text(),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def test_sorted_keys_and_no_whitespace() -> None:
    assert (
        canonical_bytes({"b": 1, "a": [True, None, "é"]}) == b'{"a":[true,null,"\xc3\xa9"],"b":1}'
    )


def test_key_order_does_not_matter() -> None:
    assert canonical_bytes({"x": 1, "y": 2}) == canonical_bytes({"y": 2, "x": 1})


def test_tuples_and_mapping_proxies_encode_like_lists_and_dicts() -> None:
    value = MappingProxyType({"k": (1, 2), "n": MappingProxyType({"z": 0})})
    assert canonical_bytes(value) == b'{"k":[1,2],"n":{"z":0}}'


@pytest.mark.parametrize(
    "bad",
    [1.0, math.nan, math.inf, {"a": 0.5}, [1, 2.5], {"n": {"deep": -0.0}}],
)
def test_floats_are_refused(bad: object) -> None:
    with pytest.raises(FloatNotAllowedError):
        canonical_bytes(bad)


@pytest.mark.parametrize(
    "bad",
    [
        {1: "int key"},
        {"s": b"bytes"},
        {"s": {1, 2}},
        2**63,
        -(2**63) - 1,
        "\ud800",
        {"\ud800": 1},
        object(),
    ],
)
def test_non_canonical_values_are_refused(bad: object) -> None:
    with pytest.raises(CanonicalError):
        canonical_bytes(bad)


def test_too_deep_nesting_is_refused() -> None:
    value: object = 1
    for _ in range(40):
        value = [value]
    with pytest.raises(CanonicalError, match="deep"):
        canonical_bytes(value)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b'{"a":1.5}', FloatNotAllowedError),
        (b'{"a":1e3}', FloatNotAllowedError),
        (b'{"a":NaN}', FloatNotAllowedError),
        (b'{"a":Infinity}', FloatNotAllowedError),
        (b'{"a":1,"a":2}', CanonicalError),
        (b"\xff\xfe", CanonicalError),
        (b"{not json", CanonicalError),
        (b'{"a":99999999999999999999}', CanonicalError),
        (b'{"a":"\\ud800"}', CanonicalError),
    ],
)
def test_decode_refuses(raw: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode(raw)


def test_decode_strict_requires_canonical_form() -> None:
    assert decode_strict(b'{"a":1,"b":2}') == {"a": 1, "b": 2}
    with pytest.raises(CanonicalError, match="canonical form"):
        decode_strict(b'{"b":2,"a":1}')
    with pytest.raises(CanonicalError, match="canonical form"):
        decode_strict(b'{"a": 1}')


def test_digest_is_sha256() -> None:
    assert digest(b"abc").hex().startswith("ba7816bf")
    assert digest_of({"a": 1}) == digest(b'{"a":1}')


@given(values)
def test_round_trip_is_stable(value: object) -> None:
    encoded = canonical_bytes(value)
    assert decode_strict(encoded) == decode(encoded)
    assert canonical_bytes(decode(encoded)) == encoded


@given(st.dictionaries(st.text(max_size=5), st.integers(INT_MIN, INT_MAX), min_size=2, max_size=6))
def test_insertion_order_never_changes_bytes(value: dict[str, int]) -> None:
    reversed_value = dict(reversed(list(value.items())))
    assert canonical_bytes(value) == canonical_bytes(reversed_value)
