"""The timestamp, duration and size spellings the sources and the config use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from forwarder.timeparse import from_unix_ns, parse_duration, parse_rfc3339, parse_size

# --------------------------------------------------------------------------- RFC 3339


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("1971-01-01T00:00:10Z", datetime(1971, 1, 1, 0, 0, 10, tzinfo=UTC), id="utc"),
        pytest.param("1970-01-01T00:00:00Z", datetime(1970, 1, 1, tzinfo=UTC), id="epoch"),
        pytest.param(
            "2019-09-06T19:16:20.609629338Z",
            datetime(2019, 9, 6, 19, 16, 20, 609629, tzinfo=UTC),
            id="nanoseconds-truncated-to-micro",
        ),
        pytest.param(
            "2019-09-06T19:16:20.5Z",
            datetime(2019, 9, 6, 19, 16, 20, 500000, tzinfo=UTC),
            id="one-fraction-digit",
        ),
        pytest.param(
            "2019-09-06T19:16:20.999999999Z",
            datetime(2019, 9, 6, 19, 16, 20, 999999, tzinfo=UTC),
            id="fraction-never-rounds-up",
        ),
        pytest.param(
            "2019-09-06T21:16:20+02:00",
            datetime(2019, 9, 6, 19, 16, 20, tzinfo=UTC),
            id="positive-offset",
        ),
        pytest.param(
            "2019-09-06T13:46:20.000000001-05:30",
            datetime(2019, 9, 6, 19, 16, 20, tzinfo=UTC),
            id="negative-offset-with-nanos",
        ),
        pytest.param(
            "2019-09-06T19:16:20+00:00", datetime(2019, 9, 6, 19, 16, 20, tzinfo=UTC), id="zero"
        ),
        pytest.param(
            "2019-09-06t19:16:20z", datetime(2019, 9, 6, 19, 16, 20, tzinfo=UTC), id="lowercase"
        ),
        pytest.param(
            "1969-12-31T23:59:59.5Z",
            datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
            id="pre-1970",
        ),
    ],
)
def test_rfc3339_parses_to_aware_utc(text: str, expected: datetime) -> None:
    """RFC3339Nano text becomes the same instant as an aware UTC datetime."""
    parsed = parse_rfc3339(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


def test_rfc3339_offset_is_the_same_instant_as_pythons() -> None:
    """An offset is applied in the right direction (checked against the standard library)."""
    text = "2024-02-29T23:30:00-07:15"
    reference = datetime(2024, 2, 29, 23, 30, tzinfo=timezone(-timedelta(hours=7, minutes=15)))
    assert parse_rfc3339(text) == reference


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("yesterday", id="words"),
        pytest.param("2019-09-06", id="date-only"),
        pytest.param("2019-09-06T19:16:20", id="no-zone"),
        pytest.param("2019-09-06T19:16Z", id="no-seconds"),
        pytest.param("2019-09-06T19:16:20.Z", id="empty-fraction"),
        pytest.param("2019-09-06T19:16:20.1234567890Z", id="ten-fraction-digits"),
        pytest.param("2019-13-01T00:00:00Z", id="month-13"),
        pytest.param("2019-02-30T00:00:00Z", id="february-30"),
        pytest.param("2019-09-06T24:00:00Z", id="hour-24"),
        pytest.param("2019-09-06T19:16:20+0200", id="offset-without-colon"),
        pytest.param("2019-09-06T19:16:20+24:00", id="offset-hour-24"),
        pytest.param("2019-09-06T19:16:20+05:60", id="offset-minute-60"),
        pytest.param(" 2019-09-06T19:16:20Z", id="leading-space"),
        pytest.param("1567797375000000000", id="nanoseconds-as-text"),
    ],
)
def test_rfc3339_rejects_what_is_not_one(text: str) -> None:
    """Anything that is not an RFC 3339 date-time raises ValueError quoting the text."""
    with pytest.raises(ValueError, match="not a") as info:
        parse_rfc3339(text)
    assert repr(text[:64]) in str(info.value)


# --------------------------------------------------------------------------- Unix nanoseconds


@pytest.mark.parametrize(
    ("ns", "expected"),
    [
        pytest.param(0, datetime(1970, 1, 1, tzinfo=UTC), id="epoch"),
        pytest.param(
            1567797375000000000, datetime(2019, 9, 6, 19, 16, 15, tzinfo=UTC), id="influx-sample"
        ),
        pytest.param(
            1567797376416632300,
            datetime(2019, 9, 6, 19, 16, 16, 416632, tzinfo=UTC),
            id="sub-microsecond-truncated",
        ),
        pytest.param(-1, datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), id="minus-1ns"),
        pytest.param(
            -1_500_000_000, datetime(1969, 12, 31, 23, 59, 58, 500000, tzinfo=UTC), id="pre-1970"
        ),
        pytest.param(
            2**63 - 1, datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC), id="int64-max"
        ),
        pytest.param(
            -(2**63), datetime(1677, 9, 21, 0, 12, 43, 145224, tzinfo=UTC), id="int64-min"
        ),
    ],
)
def test_unix_nanoseconds_convert_to_utc(ns: int, expected: datetime) -> None:
    """Any int64 of Unix nanoseconds (InfluxDB's time range) becomes that UTC instant."""
    assert from_unix_ns(ns) == expected


@pytest.mark.parametrize("ns", [2**63, -(2**63) - 1, 10**30], ids=["over", "under", "huge"])
def test_unix_nanoseconds_outside_int64_are_refused(ns: int) -> None:
    """Nanoseconds outside the int64 range raise ValueError naming the value."""
    with pytest.raises(ValueError, match=f"out of range: {ns}"):
        from_unix_ns(ns)


# --------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("250ms", 0.25, id="ms"),
        pytest.param("10s", 10.0, id="s"),
        pytest.param("5m", 300.0, id="m"),
        pytest.param("24h", 86400.0, id="h"),
        pytest.param("7d", 604800.0, id="d"),
        pytest.param("500us", 0.0005, id="us"),
        pytest.param("500µs", 0.0005, id="micro-sign"),
        pytest.param("100ns", 1e-7, id="ns"),
        pytest.param("1.5s", 1.5, id="fraction"),
        pytest.param("1h30m", 5400.0, id="compound"),
        pytest.param("0s", 0.0, id="zero"),
        pytest.param(" 10s ", 10.0, id="surrounding-space"),
    ],
)
def test_duration_with_unit_parses_to_seconds(text: str, seconds: float) -> None:
    """A config duration with a unit becomes seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("10", id="no-unit"),
        pytest.param("10 s", id="space-before-unit"),
        pytest.param("-1s", id="negative"),
        pytest.param("s", id="unit-only"),
        pytest.param("10x", id="unknown-unit"),
        pytest.param("10sec", id="long-unit"),
        pytest.param("1h-30m", id="garbage-between"),
    ],
)
def test_duration_without_a_valid_unit_is_refused(text: str) -> None:
    """A duration without a unit, or with garbage, raises ValueError with an example."""
    with pytest.raises(ValueError, match=r"duration"):
        parse_duration(text)


# --------------------------------------------------------------------------- sizes


@pytest.mark.parametrize(
    ("text", "size"),
    [
        pytest.param("1048576", 1048576, id="bytes"),
        pytest.param("100B", 100, id="B"),
        pytest.param("512KB", 512_000, id="KB"),
        pytest.param("512KiB", 524_288, id="KiB"),
        pytest.param("1MiB", 1_048_576, id="MiB"),
        pytest.param("1MB", 1_000_000, id="MB"),
        pytest.param("2GiB", 2 * 1024**3, id="GiB"),
        pytest.param("1 mib", 1_048_576, id="space-and-lowercase"),
    ],
)
def test_size_parses_to_bytes(text: str, size: int) -> None:
    """A byte size with an optional decimal or binary unit becomes bytes."""
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "1.5MiB", "MiB", "-1", "1 lots", "1TiB"])
def test_size_that_is_not_one_is_refused(text: str) -> None:
    """A size that is not whole bytes with a known unit raises ValueError."""
    with pytest.raises(ValueError, match="not a size"):
        parse_size(text)
