"""Parsing of the timestamp and duration spellings the sources and config use."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

# RFC 3339 with up to nanosecond precision, as Go's time.RFC3339Nano prints it.
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|z|[+-]\d{2}:\d{2})$"
)


_FAST_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z\Z")


def parse_rfc3339(value: str) -> datetime:
    """Parse an RFC 3339 timestamp (nanoseconds allowed, truncated to µs).

    Raises ``ValueError`` with a short reason when the text is not one.
    """
    if _FAST_UTC.match(value):
        # The shape Kapacitor always sends; fromisoformat is ten times faster.
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass  # e.g. month 13: let the full parser say what is wrong
    m = _RFC3339.match(value)
    if m is None:
        raise ValueError(f"not an RFC 3339 timestamp: {value[:64]!r}")
    year, month, day, hour, minute, second, frac, zone = m.groups()
    micro = int((frac or "0").ljust(6, "0")[:6])
    try:
        ts = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, UTC
        )
    except ValueError as exc:
        raise ValueError(f"not a valid date/time: {value[:64]!r} ({exc})") from None
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:  # RFC 3339: time-hour 00-23, time-minute 00-59
            raise ValueError(f"not a valid UTC offset: {value[:64]!r}")
        offset = timedelta(hours=hours, minutes=minutes)
        try:
            ts = ts - sign * offset
        except OverflowError:  # 9999-12-31T23:59:59-23:59, 0001-01-01T00:00:00+23:59
            raise ValueError(f"out of range: {value[:64]!r}") from None
    return ts


# Unix nanoseconds as an int64 (InfluxDB's time range: years 1677 to 2262).
_MIN_NS = -(2**63)
_MAX_NS = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_unix_ns(value: int) -> datetime:
    """Convert Unix nanoseconds (pre-1970 too) to an aware UTC datetime."""
    if not _MIN_NS <= value <= _MAX_NS:
        raise ValueError(f"timestamp out of range: {value}")
    seconds, nanos = divmod(value, 1_000_000_000)
    return _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)


_DURATION_UNIT = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
# Every unit, for error messages: "ns, us, µs, ms, s, m, h, d".
DURATION_UNITS = ", ".join(_DURATION_UNIT)
# Longest units first in the alternation, so "ms" is not read as "m" then "s".
_UNIT_RE = "|".join(sorted(_DURATION_UNIT, key=len, reverse=True))
_DURATION = re.compile(rf"^(\d+(?:\.\d+)?)({_UNIT_RE})$")


def parse_duration(value: str) -> float:
    """Parse a config duration such as ``250ms``, ``10s``, ``5m`` or ``24h`` into seconds.

    Compound forms (``1h30m``) are accepted as well, because people write them.
    """
    text = value.strip()
    if not text:
        raise ValueError(f"empty duration (units: {DURATION_UNITS})")
    total = 0.0
    for part in re.findall(rf"\d+(?:\.\d+)?(?:{_UNIT_RE})|.+?", text):
        m = _DURATION.match(part)
        if m is None:
            raise ValueError(
                f"not a duration: {value!r} (units: {DURATION_UNITS}; e.g. 250ms, 10s, 1h30m, 7d)"
            )
        total += float(m.group(1)) * _DURATION_UNIT[m.group(2)]
    return total


_SIZE = re.compile(r"^(\d+)\s*(B|KB|KiB|MB|MiB|GB|GiB)?$", re.IGNORECASE)
_SIZE_UNIT = {
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def parse_size(value: str) -> int:
    """Parse a byte size such as ``1MiB``, ``512KB`` or ``1048576``."""
    m = _SIZE.match(value.strip())
    if m is None:
        raise ValueError(f"not a size: {value!r} (write e.g. 1048576, 512KiB, 1MiB, 2GiB)")
    return int(m.group(1)) * _SIZE_UNIT[(m.group(2) or "b").lower()]
