"""What the end-to-end alert-state tests post, and how they read the fake BigPanda.

The bodies are the real shapes of ``examples/`` (an InfluxDB 2.x notification
row, Kapacitor's alert-handler JSON, an ``httpPost`` row) with the parts a
test varies: the series, the level, the message, a metric value, and the
event time. Moving the event time on by a period per round is how a test
plays an hour of one-minute runs in a few seconds: the store's identity
clock advances by the larger of the wall time and the event time that
passed (:mod:`forwarder.state.record`).
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import aiohttp

from tests.conftest import example
from tests.fakes.bigpanda import FakeBigPanda

# 2026-01-01T00:00:00Z: the first round's event time.
BASE_S = 1_767_225_600
NS = 1_000_000_000


def with_state(config_text: str, state_yaml: str) -> str:
    """``config_text`` (whose last section is ``routes``) with a global ``state`` section."""
    body = textwrap.indent(textwrap.dedent(state_yaml).strip("\n"), "  ")
    return textwrap.dedent(config_text).rstrip("\n") + "\nstate:\n" + body + "\n"


def host_of(series: int) -> str:
    """The ``host`` tag of InfluxDB series number ``series`` (one identity per series)."""
    return f"host-{series:03d}"


def influx_row(
    series: int,
    minute: int,
    *,
    level: str = "crit",
    message: str | None = None,
    usage: float | None = None,
) -> bytes:
    """The InfluxDB notification row of ``series`` on the rule's run of ``minute``.

    Every run's row differs from the previous run's in its times and its
    ``usage_user`` value, as a real rule's do; ``_message`` is the one
    InfluxDB's default template makes unless ``message`` is given.
    """
    doc = json.loads(example("influxdb-notification-crit.json"))
    host = host_of(series)
    at = BASE_S + 60 * minute
    doc["host"] = host
    doc["_level"] = level
    doc["_message"] = message if message is not None else f"High CPU User Usage: {host} is {level}"
    doc["_source_timestamp"] = at * NS
    doc["_status_timestamp"] = at * NS + 416_632_300
    doc["_time"] = datetime.fromtimestamp(at + 1, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    doc["usage_user"] = usage if usage is not None else 90.0 + (series * 7 + minute) % 10 + 0.25
    return json.dumps(doc).encode()


def kapacitor_alert(check: str, level: str, at: int, *, host: str = "web-1") -> bytes:
    """Kapacitor's alert-handler JSON for ``check`` at ``level``, event time ``at`` (Unix s)."""
    ts = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(
        {
            "id": check,
            "message": f"{check} is {level}",
            "details": "",
            "time": ts,
            "duration": 0,
            "level": level,
            "data": {
                "series": [
                    {
                        "name": "cpu",
                        "tags": {"host": host},
                        "columns": ["time", "usage"],
                        "values": [[ts, at % 100]],
                    }
                ]
            },
        }
    ).encode()


def httppost_row(host: str, at: int, *, level: str = "CRITICAL", value: float = 97.1) -> bytes:
    """An ``httpPost`` body (``examples/kapacitor-httppost-row.json``) of one row for ``host``.

    The level is a column, as an alert node's ``.levelField('level')`` writes it.
    """
    doc = json.loads(example("kapacitor-httppost-row.json"))
    series = doc["series"][0]
    series["tags"] = {"host": host, "type": "idle"}
    series["columns"] = ["time", "value", "level"]
    ts = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    series["values"] = [[ts, value, level]]
    return json.dumps(doc).encode()


async def post_json(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, Any]:
    """POST ``body``; the status and the decoded JSON answer."""
    async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
        return r.status, await r.json(content_type=None)


async def post_all(
    session: aiohttp.ClientSession, url: str, bodies: Iterable[bytes]
) -> list[tuple[int, Any]]:
    """POST every body at once (the session's connector bounds the concurrency)."""
    return list(await asyncio.gather(*(post_json(session, url, b) for b in bodies)))


def answered(answers: Iterable[tuple[int, Any]]) -> tuple[int, int]:
    """Totals of ``accepted`` and ``suppressed`` over 200 answers; fails on any other."""
    accepted = suppressed = 0
    for status, doc in answers:
        assert status == 200, (status, doc)
        assert set(doc) == {"accepted", "suppressed"}, doc
        accepted += doc["accepted"]
        suppressed += doc["suppressed"]
    return accepted, suppressed


async def verdict(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, int]:
    """POST one body; its ``(accepted, suppressed)`` (failing on anything but such a 200)."""
    return answered([await post_json(session, url, body)])


def received(fake: FakeBigPanda, **match: Any) -> list[dict[str, Any]]:
    """The alerts the fake accepted whose attributes equal ``match``, in arrival order."""
    return [r.alert for r in fake.received if all(r.alert.get(k) == v for k, v in match.items())]


def at_least(n: int, **match: Any) -> Callable[[FakeBigPanda], bool]:
    """A predicate for :meth:`FakeBigPanda.wait_for`: ``n`` or more alerts match ``match``."""

    def predicate(fake: FakeBigPanda) -> bool:
        return len(received(fake, **match)) >= n

    predicate.__qualname__ = f"at least {n} alerts with {match}"
    return predicate
