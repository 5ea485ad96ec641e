"""Retry classification and backoff: one table, one place.

Every delivery outcome (an HTTP status, or an exception from the client) is
turned into a :class:`Verdict`: what to do with the batch and the ``reason``
label for ``forwarder_delivery_failures_total`` (Alertmanager's reason set).
"""

from __future__ import annotations

import asyncio
import enum
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Final

import aiohttp


class Action(enum.Enum):
    """What the sender does with a batch after an attempt."""

    DONE = "done"  # delivered (or deduplicated by BigPanda)
    RETRY = "retry"  # try again after a backoff
    DEAD_LETTER = "dead_letter"  # permanent: move to the dead-letter store
    SPLIT = "split"  # 413, 400, 422: halve the batch and send the halves
    HOLD = "hold"  # 3xx: keep the batch queued and pause the target (a config problem)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The action and the failure reason (``None`` on success)."""

    action: Action
    reason: str | None = None


_DONE = Verdict(Action.DONE)
_REDIRECT = Verdict(Action.HOLD, "redirect")
# BigPanda answers 201 for a new event and 204 for a duplicate it dropped;
# both mean "delivered" (Kapacitor's handler wrongly logs 204 as an error).
# A 400 or 422 refuses the whole batch for what may be one bad alert in it:
# the halves are sent, down to single alerts, so only the refused ones are
# dead-lettered. A 413 is split the same way (one alert still too large is
# dead-lettered as too_large).
_STATUS_TABLE: Final[dict[int, Verdict]] = {
    200: _DONE,
    201: _DONE,
    202: _DONE,
    204: _DONE,
    400: Verdict(Action.SPLIT, "clientError"),
    401: Verdict(Action.DEAD_LETTER, "authError"),
    403: Verdict(Action.DEAD_LETTER, "authError"),
    404: Verdict(Action.DEAD_LETTER, "clientError"),
    408: Verdict(Action.RETRY, "timeout"),
    409: Verdict(Action.DEAD_LETTER, "clientError"),
    410: Verdict(Action.DEAD_LETTER, "clientError"),
    413: Verdict(Action.SPLIT, "clientError"),
    422: Verdict(Action.SPLIT, "clientError"),
    429: Verdict(Action.RETRY, "rateLimited"),
    501: Verdict(Action.DEAD_LETTER, "serverError"),
}


def classify_status(status: int) -> Verdict:
    """The verdict for an HTTP status; statuses not in the table fall into their class."""
    verdict = _STATUS_TABLE.get(status)
    if verdict is not None:
        return verdict
    if 200 <= status < 300:
        return _DONE
    if 500 <= status < 600:
        return Verdict(Action.RETRY, "serverError")
    if 300 <= status < 400:
        # Not followed (the token would go to another URL), and not the
        # batch's fault: a moved endpoint is a config problem an operator
        # must fix, like a refused token. Nothing is dead-lettered for it.
        return _REDIRECT
    # Other 4xx, and 1xx.
    return Verdict(Action.DEAD_LETTER, "clientError")


def classify_exception(exc: BaseException) -> Verdict:
    """Timeouts and connection problems are retried; anything else is a bug, also retried."""
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return Verdict(Action.RETRY, "timeout")
    if isinstance(exc, aiohttp.ClientError | OSError):
        return Verdict(Action.RETRY, "connection")
    return Verdict(Action.RETRY, "connection")


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def backoff(failures: int, *, initial: float, maximum: float, rng: random.Random) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, initial·2^(n-1))].

    Full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter")
    spreads retries of many forwarders hitting one recovering BigPanda.
    """
    ceiling = min(maximum, initial * (2 ** max(0, min(failures - 1, 62))))
    return rng.uniform(0.0, ceiling)
