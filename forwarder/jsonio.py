"""JSON decoding and encoding for the hot path.

Decoding and bulk encoding use orjson (several times faster than the standard
library on alert-sized bodies, and strict: it refuses NaN and Infinity,
invalid UTF-8 and nesting past 1024 levels). Every decoding failure is a
``ValueError`` with a short reason. Single attribute values are encoded with
the standard library, whose compact output matches Kapacitor's.
"""

from __future__ import annotations

from typing import Any

import orjson


def loads(data: bytes) -> Any:
    """Decode a JSON document from bytes; raise ``ValueError`` saying what is wrong."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None


def dumps(obj: Any) -> bytes:
    """Encode compactly to UTF-8 bytes (no spaces, non-ASCII kept as is)."""
    return orjson.dumps(obj)


def dumps_str(obj: Any) -> str:
    """Compact JSON text, as Kapacitor's handler encodes a non-string field value.

    Raises ``ValueError`` for values orjson cannot encode (nesting past its
    recursion limit), so a pathological field is a 400, not a crash.
    """
    try:
        return orjson.dumps(obj).decode()
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"cannot encode value as JSON: {exc}") from None


def kind_of(value: Any, *, mapping: str = "an object") -> str:
    """How an error message names a value's type ("a string", "a list", "null", …).

    JSON says "object" where YAML says "mapping", hence ``mapping``.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return mapping
    return type(value).__name__
