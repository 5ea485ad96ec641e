"""JSON decoding and encoding for the hot path.

Decoding and bulk encoding use orjson (several times faster than the standard
library on alert-sized bodies, and strict: it refuses NaN and Infinity,
invalid UTF-8 and nesting past 1024 levels). Every decoding failure is a
``ValueError`` with a short reason. Integers beyond 64 bits, which orjson
reads as floats, are read exactly (orjson refuses literals beyond float64's
range, about 1.8e308, and so does this module). Attribute values are encoded by
:func:`go_text`, the way Kapacitor (Go's ``encoding/json``) encodes them.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

import orjson

# Bytes → "0" for an ASCII digit, "-" for a minus, " " otherwise: a 20-digit run
# (a literal that may not fit 64 bits; orjson keeps up to 2**64-1 exact), or a
# minus and 19 digits (below -2**63 orjson reads a float), is then a substring
# search, about a third of orjson's own time on an alert body.
_DIGITS: Final = bytes(48 if 48 <= b <= 57 else 45 if b == 45 else 32 for b in range(256))
_LONG_RUN: Final = b"0" * 20
_LONG_NEGATIVE: Final = b"-" + b"0" * 19


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(data: bytes) -> Any:
    """Decode a JSON document from bytes; raise ``ValueError`` saying what is wrong.

    orjson decides what is valid. A document with a run of 20 or more digits
    is then read again by the standard library, which keeps integers of any
    size exact (orjson turns those beyond 64 bits into floats); the run can
    also be a long fraction, which reads the same either way.
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
    shape = data.translate(_DIGITS)
    if _LONG_RUN in shape or _LONG_NEGATIVE in shape:
        try:
            return json.loads(data, parse_constant=_refuse_constant)
        except RecursionError:
            raise ValueError("nested too deeply") from None
        # ValueError (e.g. an integer past Python's 4300-digit limit) propagates.
    return doc


def dumps(obj: Any) -> bytes:
    """Encode compactly to UTF-8 bytes (no spaces, non-ASCII kept as is)."""
    return orjson.dumps(obj)


def dumps_str(obj: Any) -> str:
    """Compact JSON text (for command output).

    Raises ``ValueError`` for values orjson cannot encode (nesting past its
    recursion limit), so a pathological field is a 400, not a crash.
    """
    try:
        return orjson.dumps(obj).decode()
    except orjson.JSONEncodeError as exc:
        raise ValueError(f"cannot encode value as JSON: {exc}") from None


# orjson's own limit for encoding, kept so the same values are refused as before.
MAX_DEPTH: Final = 255


def go_text(value: Any) -> str:
    """Compact JSON text of ``value`` as Go's ``encoding/json`` writes it.

    Kapacitor's BigPanda handler sends each non-string field as
    ``json.Marshal(value)``; this is the same text, so an alert reads the same
    whichever of the two sent it:

    * floats as :func:`go_float` (``1e20`` is ``100000000000000000000``,
      ``100.0`` is ``100``);
    * integers exact, whatever their size;
    * object keys sorted, as Go sorts map keys.

    Strings inside lists and objects are not HTML-escaped (Go writes ``<`` as
    ``\u003c``); a Kapacitor field is never a list or an object. Raises
    ``ValueError`` for NaN, infinities, non-string keys, values that are not
    JSON, and nesting deeper than :data:`MAX_DEPTH`.
    """
    t = type(value)
    if t is float:
        return go_float(value)
    if t is int:
        return str(value)
    if t is str:
        return orjson.dumps(value).decode()
    return _go_text(value, 0)


def _go_text(value: Any, depth: int) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return orjson.dumps(value).decode()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if depth >= MAX_DEPTH:
        raise ValueError(f"cannot encode value as JSON: nested deeper than {MAX_DEPTH} levels")
    parts: list[str] = []
    if isinstance(value, list | tuple):
        for item in value:
            parts.append(_go_text(item, depth + 1))
        return "[" + ",".join(parts) + "]"
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise ValueError(f"cannot encode value as JSON: key {key!r} is not a string")
        for key in sorted(value):
            parts.append(orjson.dumps(key).decode() + ":" + _go_text(value[key], depth + 1))
        return "{" + ",".join(parts) + "}"
    raise ValueError(f"cannot encode value as JSON: {type(value).__name__} is not JSON")


def go_float(x: float) -> str:
    """A float as Go's ``encoding/json`` writes a float64.

    Fixed notation for magnitudes in [1e-6, 1e21) and zero, exponent notation
    otherwise, both with the shortest digits that read back as the same float
    (Python's ``repr`` and Go's ``strconv`` agree on those). The exponent has a
    sign and no leading zero: ``1e+21``, ``1e-7``, ``1.5e-10``.
    """
    if not math.isfinite(x):
        raise ValueError(f"cannot encode value as JSON: {x!r} is not a number JSON allows")
    text = repr(x)
    magnitude = abs(x)
    fixed = magnitude == 0 or 1e-6 <= magnitude < 1e21
    if "e" not in text:  # repr is fixed for 1e-4 <= |x| < 1e16
        return text[:-2] if text.endswith(".0") else text
    mantissa, exp_text = text.split("e")
    exponent = int(exp_text)
    if not fixed:
        return f"{mantissa}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"
    sign = "-" if mantissa.startswith("-") else ""
    digits = mantissa.lstrip("-").replace(".", "")
    point = exponent + 1  # the mantissa has one digit before its point
    if point <= 0:
        return f"{sign}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


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
