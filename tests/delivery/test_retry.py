"""Retry classification and backoff (forwarder.delivery.retry): every status and error kind."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
from aiohttp.client_reqrep import ConnectionKey

from forwarder.delivery.retry import (
    Action,
    Verdict,
    backoff,
    classify_exception,
    classify_status,
    parse_retry_after,
)

SUCCESS = {200, 201, 202, 204}
RETRY = {408: "timeout", 429: "rateLimited"}
PERMANENT = {
    401: "authError",
    403: "authError",
    404: "clientError",
    409: "clientError",
    410: "clientError",
    501: "serverError",
}
# Halved until the refused alerts are alone (issue 10 §2 for 400 and 422).
SPLIT = {413, 400, 422}


def expected_verdict(status: int) -> Verdict:
    """The issue's table, written out independently of the module under test."""
    if status in SUCCESS:
        return Verdict(Action.DONE)
    if status in SPLIT:
        return Verdict(Action.SPLIT, "clientError")
    if status in RETRY:
        return Verdict(Action.RETRY, RETRY[status])
    if status in PERMANENT:
        return Verdict(Action.DEAD_LETTER, PERMANENT[status])
    if 200 <= status < 300:  # 203, 205, 206, ...: the request was accepted
        return Verdict(Action.DONE)
    if 500 <= status < 600:  # every other 5xx is transient
        return Verdict(Action.RETRY, "serverError")
    if 300 <= status < 400:  # never followed; held until the URL is fixed (issue 11)
        return Verdict(Action.HOLD, "redirect")
    # Other 4xx, and 1xx.
    return Verdict(Action.DEAD_LETTER, "clientError")


@pytest.mark.parametrize("status", range(100, 600))
def test_every_status_code_has_the_documented_verdict(status: int) -> None:
    """Each HTTP status from 100 to 599 maps to the action and reason the issue's table gives."""
    assert classify_status(status) == expected_verdict(status)


@pytest.mark.parametrize(
    ("status", "action", "reason"),
    [
        (200, Action.DONE, None),
        (201, Action.DONE, None),
        (202, Action.DONE, None),
        (204, Action.DONE, None),
        (408, Action.RETRY, "timeout"),
        (429, Action.RETRY, "rateLimited"),
        (500, Action.RETRY, "serverError"),
        (502, Action.RETRY, "serverError"),
        (503, Action.RETRY, "serverError"),
        (504, Action.RETRY, "serverError"),
        (507, Action.RETRY, "serverError"),
        (599, Action.RETRY, "serverError"),
        (400, Action.SPLIT, "clientError"),
        (401, Action.DEAD_LETTER, "authError"),
        (403, Action.DEAD_LETTER, "authError"),
        (404, Action.DEAD_LETTER, "clientError"),
        (409, Action.DEAD_LETTER, "clientError"),
        (410, Action.DEAD_LETTER, "clientError"),
        (422, Action.SPLIT, "clientError"),
        (501, Action.DEAD_LETTER, "serverError"),
        (413, Action.SPLIT, "clientError"),
        (301, Action.HOLD, "redirect"),
        (307, Action.HOLD, "redirect"),
        (308, Action.HOLD, "redirect"),
        (418, Action.DEAD_LETTER, "clientError"),
    ],
)
def test_statuses_named_in_the_issue(status: int, action: Action, reason: str | None) -> None:
    """The statuses the issue names explicitly get exactly the issue's action and reason."""
    verdict = classify_status(status)
    assert verdict.action is action
    assert verdict.reason == reason


def _connector_error() -> aiohttp.ClientConnectorError:
    key = ConnectionKey("127.0.0.1", 9, False, True, None, None, None)
    return aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "Connection refused"))


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TimeoutError(), "timeout"),
        (aiohttp.ServerTimeoutError("read timed out"), "timeout"),
        (aiohttp.ConnectionTimeoutError("connect timed out"), "timeout"),
        (aiohttp.SocketTimeoutError("socket read timed out"), "timeout"),
        (aiohttp.ServerDisconnectedError(), "connection"),
        (_connector_error(), "connection"),
        (aiohttp.ClientOSError(104, "Connection reset by peer"), "connection"),
        (aiohttp.ClientConnectionResetError("reset"), "connection"),
        (aiohttp.ClientPayloadError("truncated body"), "connection"),
        (ConnectionResetError(104, "Connection reset by peer"), "connection"),
        (ConnectionRefusedError(111, "Connection refused"), "connection"),
        (OSError(101, "Network is unreachable"), "connection"),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_exceptions_are_retried_with_a_reason(exc: BaseException, reason: str) -> None:
    """Timeouts retry with reason "timeout"; resets, refusals and disconnects with "connection"."""
    assert classify_exception(exc) == Verdict(Action.RETRY, reason)


def test_an_unexpected_exception_is_retried_not_dropped() -> None:
    """An exception nobody anticipated still retries (a bug must not lose alerts)."""
    assert classify_exception(ValueError("boom")).action is Action.RETRY


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("1", 1.0), ("0", 0.0), ("120", 120.0), (" 30 ", 30.0), ("86400", 86400.0)],
)
def test_retry_after_in_seconds(header: str, seconds: float) -> None:
    """A delta-seconds ``Retry-After`` is read as that many seconds."""
    assert parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date() -> None:
    """An HTTP-date ``Retry-After`` is the time left until that date."""
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=90), usegmt=True)
    assert header == "Wed, 01 May 2024 12:01:30 GMT"
    assert parse_retry_after(header, now=now) == pytest.approx(90.0)


def test_retry_after_as_an_obsolete_http_date_format() -> None:
    """The RFC 850 date form that RFC 9110 still requires recipients to accept works too."""
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Wednesday, 01-May-24 12:00:05 GMT", now=now) == pytest.approx(5.0)


def test_retry_after_date_in_the_past_means_now() -> None:
    """A date already past means "retry now", never a negative wait."""
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    header = format_datetime(now - timedelta(minutes=5), usegmt=True)
    assert parse_retry_after(header, now=now) == 0.0


@pytest.mark.parametrize(
    "header", [None, "", "soon", "-1", "1.5", "Thu, 99 Foo 2024", "\u00b2", "\u0663"]
)
def test_unusable_retry_after_is_ignored(header: str | None) -> None:
    """A missing or malformed ``Retry-After`` yields None, so the backoff alone decides."""
    assert parse_retry_after(header) is None


@pytest.mark.parametrize("failures", [0, 1, 2, 3, 4, 5, 8, 12, 63, 64, 1000])
def test_backoff_stays_within_the_full_jitter_bounds(failures: int) -> None:
    """The n-th backoff is uniform in [0, min(max, initial*2^(n-1))] and never overflows."""
    rng = random.Random(failures)
    initial, maximum = 0.05, 30.0
    ceiling = min(maximum, initial * 2 ** max(0, failures - 1))
    samples = [backoff(failures, initial=initial, maximum=maximum, rng=rng) for _ in range(2000)]
    assert all(0.0 <= s <= ceiling for s in samples)
    # Full jitter spreads over the whole range: both ends are reached.
    assert min(samples) < 0.05 * ceiling
    assert max(samples) > 0.95 * ceiling


def test_backoff_ceiling_doubles_until_the_maximum() -> None:
    """The upper bound grows 1x, 2x, 4x ... of ``retry.initial`` and then stays at ``retry.max``."""
    ceilings = []
    for failures in range(1, 10):
        rng = random.Random(7)
        ceilings.append(
            max(backoff(failures, initial=1.0, maximum=60.0, rng=rng) for _ in range(3000))
        )
    for got, want in zip(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60], strict=True):
        assert want * 0.95 < got <= want


def test_backoff_is_reproducible_with_a_seeded_random() -> None:
    """The same seed gives the same delays, so a failing run can be replayed."""
    a = [backoff(n, initial=0.1, maximum=5.0, rng=random.Random(42)) for n in range(1, 20)]
    b = [backoff(n, initial=0.1, maximum=5.0, rng=random.Random(42)) for n in range(1, 20)]
    assert a == b
