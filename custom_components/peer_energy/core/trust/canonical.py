"""One canonical byte encoding for everything that is signed or hashed.

Every signature and every hash in Peer Energy is computed over the bytes this module
produces, so two peers holding the same data always hash the same bytes.

The encoding is JSON with:

* object keys sorted by Unicode code point, keys must be ``str``;
* no insignificant whitespace (``,`` and ``:`` separators only);
* UTF-8, non-ASCII characters written as themselves (no ``\\u`` escapes);
* values restricted to ``None``, ``bool``, ``int`` (signed 64-bit range), ``str``,
  lists (tuples encode as lists) and objects;
* no floats at all (money and energy are exact integers), so no NaN or infinity;
* strings must be valid Unicode (lone surrogates are refused).

Bytes are not a JSON type: binary values (keys, hashes, signatures) are carried as
lowercase hex strings.
"""

from __future__ import annotations

from collections.abc import Mapping
import hashlib
import json
from typing import Any

type Canonical = None | bool | int | str | list[Canonical] | dict[str, Canonical]
"""A value the canonical encoding accepts (tuples are accepted and become lists)."""

INT_MIN = -(2**63)
INT_MAX = 2**63 - 1
MAX_DEPTH = 32


class CanonicalError(ValueError):
    """A value cannot be encoded or decoded canonically."""


class FloatNotAllowedError(CanonicalError):
    """A float (or NaN/Infinity) where only integers are allowed."""


def _check(value: object, depth: int) -> None:
    """Raise ``CanonicalError`` if ``value`` is outside the canonical subset.

    Strings, booleans and ``None`` inside a container are passed over without a call
    (most of a message); integers and containers are checked by a call of their own.
    """
    if depth > MAX_DEPTH:
        raise CanonicalError("nesting too deep")
    kind = type(value)
    if kind is int:
        if not INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
            raise CanonicalError("integer outside the signed 64-bit range")
        return
    if kind is str or value is None or kind is bool:
        return  # lone surrogates are caught when the text is encoded to UTF-8
    if kind is float:
        raise FloatNotAllowedError("floats are not allowed; use integers (Wh, W, minor units)")
    items: Any
    if kind is list or kind is tuple:
        items = value
    elif kind is dict or isinstance(value, Mapping):
        for key in value:  # type: ignore[attr-defined]
            if type(key) is not str:
                raise CanonicalError("object keys must be strings")
        items = value.values()  # type: ignore[attr-defined]
    else:
        raise CanonicalError(f"type {kind.__name__} is not canonical")
    if depth == MAX_DEPTH and items:
        raise CanonicalError("nesting too deep")
    for item in items:
        inner = type(item)
        if inner is not str and inner is not bool and item is not None:
            _check(item, depth + 1)


def _as_dict(value: Mapping[str, Any]) -> dict[str, Any]:
    """A mapping other than ``dict`` for ``json`` (``_check`` let only those through)."""
    return dict(value)


def canonical_bytes(value: object) -> bytes:
    """Encode ``value`` canonically; raise ``CanonicalError`` if it is not canonical."""
    _check(value, 0)
    text = json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_as_dict,
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise CanonicalError("string is not valid Unicode (lone surrogate)") from err


def canonical_str_list(items: list[str]) -> bytes:
    """``canonical_bytes`` of a list of strings (every item must be a ``str``), without
    walking it item by item: the same bytes, as a list has no keys to sort. Raises
    ``CanonicalError`` for a string that is not valid Unicode."""
    text = json.dumps(items, separators=(",", ":"), ensure_ascii=False)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise CanonicalError("string is not valid Unicode (lone surrogate)") from err


def _refuse_float(text: str) -> Any:
    raise FloatNotAllowedError(f"float {text!r} is not allowed")


def _refuse_constant(text: str) -> Any:
    raise FloatNotAllowedError(f"constant {text!r} is not allowed")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise CanonicalError("duplicate object key")
    return result


_DECODER = json.JSONDecoder(
    parse_float=_refuse_float, parse_constant=_refuse_constant, object_pairs_hook=_object
)


def decode(data: bytes) -> Canonical:
    """Parse JSON bytes into canonical values.

    Accepts any whitespace, but refuses floats, NaN/Infinity, duplicate keys,
    integers outside 64 bits and invalid UTF-8 with ``CanonicalError``.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CanonicalError("not valid UTF-8") from err
    try:
        value = _DECODER.decode(text)
    except CanonicalError:
        raise
    except RecursionError:
        raise CanonicalError("nesting too deep") from None
    except ValueError as err:
        raise CanonicalError(f"not valid JSON: {err}") from err
    _check(value, 0)  # range and depth
    if "\\u" in text:  # only an escape can make a lone surrogate (the text is valid UTF-8)
        canonical_bytes(value)
    result: Canonical = value
    return result


_TRUSTED_DECODER = json.JSONDecoder(parse_float=_refuse_float, parse_constant=_refuse_constant)


def decode_trusted(data: bytes) -> Any:
    """Fast parse of bytes this home validated with ``decode`` when it stored them.

    Still refuses floats and invalid JSON (``CanonicalError``) but skips the duplicate
    key and range walk: for stored chain entries, any later change to the bytes is
    caught by the hash links and the head signature anyway.
    """
    try:
        return _TRUSTED_DECODER.decode(data.decode("utf-8"))
    except CanonicalError:
        raise
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise CanonicalError(f"not valid JSON: {err}") from err


def decode_strict(data: bytes) -> Canonical:
    """Parse bytes that must already be in canonical form (re-encoding gives the same bytes)."""
    value = decode(data)
    if canonical_bytes(value) != data:
        raise CanonicalError("bytes are not in canonical form")
    return value


def digest(data: bytes) -> bytes:
    """SHA-256 of ``data``: the one hash function of the project."""
    return hashlib.sha256(data).digest()


def digest_of(value: object) -> bytes:
    """SHA-256 of the canonical encoding of ``value``."""
    return digest(canonical_bytes(value))
