"""Alert state end to end: ``forwarder run`` as a subprocess, a fake BigPanda, SQLite.

What a user of a noisy source sees at BigPanda (issue 13's "Done when"):

- an InfluxDB rule posting the same ``crit`` for 100 series every minute for
  an hour becomes 100 alerts plus the reminders ``repeat_interval`` implies;
  a ``warn`` goes out at once, changing metric values do not, and with
  ``dedup_on: [description]`` a changed ``_message`` does;
- an ``httpPost`` series that goes silent gets exactly one ``ok`` after
  ``resolve_after``;
- an identity flapping 20 times in a minute reaches BigPanda a bounded number
  of times, the last being the last state posted, ``flapping: "false"``;
- the deduplication state and the resolve timers survive SIGTERM and
  ``kill -9``.

An hour of one-minute runs is played in seconds by moving the event times on
by 60 s per round: the store's identity clock advances by the larger of the
wall and the event time passed (:mod:`forwarder.state.record`). Waits poll
the fake or the daemon with a deadline; nothing sleeps to pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp

from tests.conftest import Daemon
from tests.fakes.bigpanda import FakeBigPanda
from tests.reliability.conftest import daemon_config
from tests.state.daemon_support import (
    BASE_S,
    answered,
    at_least,
    host_of,
    httppost_row,
    influx_row,
    kapacitor_alert,
    post_all,
    post_json,
    received,
    verdict,
    with_state,
)

DaemonFactory = Callable[[str], Daemon]

SERIES = 100
ROUNDS = 60  # one an event-time minute: an hour of a one-minute InfluxDB rule
REPEAT_MINUTES = 15
WARN_SERIES = 7
WARN_FROM = 20  # the round from which WARN_SERIES is ``warn`` (and stays so)
CHECK = "High CPU User Usage"  # the sample row's _check_name: the alert's ``check``


async def running(daemon_factory: DaemonFactory, fake: FakeBigPanda, state: str) -> Daemon:
    """A ready daemon sending to ``fake`` with the global ``state`` section ``state``."""
    daemon = daemon_factory(with_state(daemon_config(fake.alerts_url), state))
    daemon.start()
    await daemon.wait_ready()
    return daemon


def session() -> aiohttp.ClientSession:
    """A client with a few connections, as a notification endpoint posting rows would have."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=10), timeout=aiohttp.ClientTimeout(total=30)
    )


def reminder_minutes(first: int, last: int) -> list[int]:
    """The minutes in ``first..last`` at which an unchanged status is queued.

    The first alert, then the first repeat at or after ``repeat_interval`` since the
    last queued one (a repeat is suppressed while less than the interval has passed).
    """
    minutes = [first]
    for m in range(first + 1, last + 1):
        if m - minutes[-1] >= REPEAT_MINUTES:
            minutes.append(m)
    return minutes


async def test_influxdb_storm_becomes_first_alerts_plus_reminders(
    daemon_factory: DaemonFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """100 series, 60 one-minute runs: 100 alerts, the reminders, and a warn at once."""
    daemon = await running(daemon_factory, fake_bigpanda, f"repeat_interval: {REPEAT_MINUTES}m")
    url = f"{daemon.url}/influxdb"
    accepted = suppressed = 0
    async with session() as s:
        for minute in range(ROUNDS):
            bodies = [
                influx_row(
                    series,
                    minute,
                    level="warn" if series == WARN_SERIES and minute >= WARN_FROM else "crit",
                )
                for series in range(SERIES)
            ]
            queued, held = answered(await post_all(s, url, bodies))
            accepted += queued
            suppressed += held
            if minute == WARN_FROM:
                # "At once": the warn is at BigPanda before the rule's next run.
                await fake_bigpanda.wait_for(
                    at_least(1, host=host_of(WARN_SERIES), status="warning"), timeout=20
                )
    crit_minutes = reminder_minutes(0, ROUNDS - 1)  # [0, 15, 30, 45]
    warn_crit = reminder_minutes(0, WARN_FROM - 1)  # [0, 15]
    warn_warn = reminder_minutes(WARN_FROM, ROUNDS - 1)  # [20, 35, 50]
    expected = (SERIES - 1) * len(crit_minutes) + len(warn_crit) + len(warn_warn)
    assert (accepted, suppressed) == (expected, SERIES * ROUNDS - expected)
    await fake_bigpanda.wait_for(at_least(expected, check=CHECK), timeout=60)
    async with session() as s, s.get(f"{daemon.url}/metrics") as resp:
        metrics = await resp.text()
    [line] = [
        ln
        for ln in metrics.splitlines()
        if ln.startswith("forwarder_alerts_suppressed_total{") and 'reason="duplicate"' in ln
    ]
    assert 'target="bigpanda"' in line
    assert float(line.rsplit(" ", 1)[1]) == SERIES * ROUNDS - expected

    for series in range(SERIES):
        got = received(fake_bigpanda, host=host_of(series))
        # Each delivery is the row of the minute it was queued, with that run's values:
        # a reminder carries the current usage_user, the repeats in between did not pass.
        minutes = [(a["timestamp"] - BASE_S) // 60 for a in got]
        if series == WARN_SERIES:
            assert minutes == warn_crit + warn_warn, minutes
            assert [a["status"] for a in got] == ["critical"] * 2 + ["warning"] * 3
        else:
            assert minutes == crit_minutes, (series, minutes)
            assert {a["status"] for a in got} == {"critical"}
        for a, m in zip(got, minutes, strict=True):
            # Fields become string attributes (as Kapacitor writes them).
            assert float(a["usage_user"]) == 90.0 + (series * 7 + m) % 10 + 0.25
    assert len(fake_bigpanda.received) == expected, "no duplicate deliveries either"


async def test_dedup_on_description_lets_a_changed_message_through(
    daemon_factory: DaemonFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """With ``dedup_on: [description]`` a new ``_message`` goes out at once, a new value not."""
    daemon = await running(
        daemon_factory, fake_bigpanda, "repeat_interval: 1h\ndedup_on: [description]"
    )
    url = f"{daemon.url}/influxdb"
    async with session() as s:
        first = await post_all(s, url, [influx_row(i, 0) for i in range(3)])
        assert answered(first) == (3, 0)
        # The next run: new times and usage_user values, the same status and message.
        again = await post_all(s, url, [influx_row(i, 1, usage=42.0) for i in range(3)])
        assert answered(again) == (0, 3)
        changed = "High CPU User Usage: host-001 is crit (92% for 10 min)"
        assert await verdict(s, url, influx_row(1, 2, message=changed)) == (1, 0)
        await fake_bigpanda.wait_for(at_least(1, description=changed), timeout=20)
        others = await post_all(s, url, [influx_row(i, 3) for i in (0, 2)])
        assert answered(others) == (0, 2)
        # Back to the old message is a change too.
        assert await verdict(s, url, influx_row(1, 4)) == (1, 0)
    await fake_bigpanda.wait_for(at_least(5, check=CHECK), timeout=20)
    got = [(a["host"], a["description"]) for a in received(fake_bigpanda, check=CHECK)]
    assert sorted(got[:3]) == [
        (host_of(i), f"High CPU User Usage: {host_of(i)} is crit") for i in range(3)
    ]
    assert got[3:] == [
        (host_of(1), changed),
        (host_of(1), "High CPU User Usage: host-001 is crit"),
    ]


async def test_a_silent_httppost_series_gets_one_ok_after_resolve_after(
    daemon_factory: DaemonFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """A series that stops reporting is resolved once, with ``resolved_by: forwarder``."""
    daemon = await running(daemon_factory, fake_bigpanda, "resolve_after: 3s")
    url = f"{daemon.url}/kapacitor/disk_used"
    now = int(time.time())
    async with session() as s:
        # Two periods of the task (the second a repeat), then nothing.
        assert await verdict(s, url, httppost_row("silent-1", now)) == (1, 0)
        assert await verdict(s, url, httppost_row("silent-1", now + 1)) == (0, 1)
        await fake_bigpanda.wait_for(at_least(1, host="silent-1", status="ok"), timeout=30)
        # A second series resolved later proves the scheduler passed the first one
        # again since its ok, without sleeping for it.
        assert await verdict(s, url, httppost_row("silent-2", now + 3)) == (1, 0)
        await fake_bigpanda.wait_for(at_least(1, host="silent-2", status="ok"), timeout=30)
    first = received(fake_bigpanda, host="silent-1")
    assert [a["status"] for a in first] == ["critical", "ok"]
    ok = first[1]
    assert ok["resolved_by"] == "forwarder"
    assert ok["check"] == first[0]["check"]
    assert ok["timestamp"] >= now + 3  # the current time, not the last row's (now + 1)
    assert ok["timestamp"] <= int(time.time())
    assert [a["status"] for a in received(fake_bigpanda, host="silent-2")] == ["critical", "ok"]


async def test_a_flapping_identity_reaches_bigpanda_a_bounded_number_of_times(
    daemon_factory: DaemonFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """crit/ok 20 times in a minute with ``transitions: 4``: 7 deliveries, the last one final."""
    daemon = await running(
        daemon_factory, fake_bigpanda, "flap:\n  transitions: 4\n  window: 10m\n  hold: 5s"
    )
    # The hold (5 s) is longer than the 3 s each status lasts, so nothing is released
    # while the flapping goes on; the scheduler sends the last status 5 s after it.
    url = f"{daemon.url}/kapacitor/flappy"
    levels = ["CRITICAL" if k % 2 == 0 else "OK" for k in range(20)]
    answers = []
    async with session() as s:
        for k, level in enumerate(levels):  # one every 3 s of event time: 20 in a minute
            answers.append(
                await post_json(s, url, kapacitor_alert("flappy", level, BASE_S + 3 * k))
            )
    # Sent: the first, four changes, the fifth change marked flapping; then held.
    assert [d["accepted"] for _, d in answers] == [1] * 6 + [0] * 14
    assert answered(answers) == (6, 14)
    await fake_bigpanda.wait_for(at_least(1, check="flappy", flapping="false"), timeout=30)
    got = received(fake_bigpanda, check="flappy")
    assert [(a["status"], a.get("flapping")) for a in got] == [
        ("critical", None),
        ("ok", None),
        ("critical", None),
        ("ok", None),
        ("critical", None),
        ("ok", "true"),
        ("ok", "false"),  # the last state posted, released after the hold
    ]
    assert got[-1]["timestamp"] == BASE_S + 3 * 19


async def test_dedup_state_survives_sigterm_and_kill_9(
    daemon_factory: DaemonFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """A repeat after a restart, graceful or not, is still suppressed; a change still passes."""
    daemon = await running(daemon_factory, fake_bigpanda, "repeat_interval: 1h")
    url = f"{daemon.url}/kapacitor/restart"
    async with session() as s:
        assert await verdict(s, url, kapacitor_alert("kept", "CRITICAL", BASE_S)) == (1, 0)
        assert await verdict(s, url, kapacitor_alert("kept", "CRITICAL", BASE_S + 60)) == (0, 1)
    await fake_bigpanda.wait_for(at_least(1, check="kept"), timeout=20)

    assert daemon.terminate() == 0
    daemon.start()
    await daemon.wait_ready()
    async with session() as s:
        assert await verdict(s, url, kapacitor_alert("kept", "CRITICAL", BASE_S + 120)) == (0, 1)
        # Answered, then killed before it may even have been sent.
        assert await verdict(s, url, kapacitor_alert("kept2", "CRITICAL", BASE_S)) == (1, 0)

    daemon.kill()
    daemon.start()
    await daemon.wait_ready()
    async with session() as s:
        assert await verdict(s, url, kapacitor_alert("kept", "CRITICAL", BASE_S + 180)) == (0, 1)
        assert await verdict(s, url, kapacitor_alert("kept2", "CRITICAL", BASE_S + 60)) == (0, 1)
        assert await verdict(s, url, kapacitor_alert("kept", "WARNING", BASE_S + 240)) == (1, 0)
    await fake_bigpanda.wait_for(at_least(1, check="kept", status="warning"), timeout=20)
    await fake_bigpanda.wait_for(at_least(1, check="kept2"), timeout=20)
    assert [a["status"] for a in received(fake_bigpanda, check="kept")] == ["critical", "warning"]
    assert len(received(fake_bigpanda, check="kept2")) == 1


async def test_resolve_timer_survives_kill_9(
    daemon_factory: DaemonFactory, fake_bigpanda: FakeBigPanda
) -> None:
    """An identity answered just before ``kill -9`` is still resolved after the restart."""
    daemon = await running(daemon_factory, fake_bigpanda, "resolve_after: 2s")
    async with session() as s:
        body = httppost_row("killed-1", int(time.time()))
        assert await verdict(s, f"{daemon.url}/kapacitor/t", body) == (1, 0)
    daemon.kill()
    daemon.start()
    await daemon.wait_ready()
    await fake_bigpanda.wait_for(at_least(1, host="killed-1", status="ok"), timeout=30)
    ok = received(fake_bigpanda, host="killed-1", status="ok")
    assert len(ok) == 1
    assert ok[0]["resolved_by"] == "forwarder"
