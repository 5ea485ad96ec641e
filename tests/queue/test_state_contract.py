"""The alert-state part of the storage contract (invariant 5, AlertStates), on every backend.

Each test goes through the contract's methods only (``put``, ``lease``,
``ack``, ``alerts.list``/``counts``/``tick``) on real stores, with the store's
clock injected, so SQLite and PostgreSQL are held to the same behaviour: an
alert is queued if and only if its identity's stored state says so, the
state survives a restart, and the scheduler's work is done once.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from forwarder import jsonio
from forwarder.config import FlapConfig, StateConfig
from forwarder.model import Outgoing
from forwarder.queue import QueueFull
from forwarder.queue.contract import Queue
from forwarder.state import Observation
from tests.fakes.clock import FakeClock
from tests.queue.conftest import KEY, TARGET, Backend, QueueFactory, lease

HOUR = 3600.0
POLICY = StateConfig(repeat_interval=HOUR, retention=86400.0)
RESOLVE = replace(POLICY, resolve_after=600.0)
FLAP = replace(POLICY, flap=FlapConfig(transitions=2, window=600.0, hold=300.0))


def alert(
    clock: FakeClock,
    check: str,
    status: str = "critical",
    *,
    policy: StateConfig = POLICY,
    target: str = TARGET,
    n: int = 0,
    dedup: str = "",
    ts: int | None = None,
) -> Outgoing:
    """An alert of identity ``check``, stamped with the store's time unless ``ts``.

    ``n`` is a metric value (not deduplicated on).
    """
    ts = int(clock.time()) if ts is None else ts
    body = {"check": check, "host": "web-1", "status": status, "timestamp": ts, "n": n}
    return Outgoing(target, KEY, check, jsonio.dumps(body), ts, Observation(status, dedup, policy))


async def sent(q: Queue, *, target: str = TARGET) -> list[dict[str, object]]:
    """Lease and acknowledge everything queued for ``target``: the alerts BigPanda would get.

    A lease holds one state per identity (invariant 3), so it leases until
    nothing is left, as a sender would.
    """
    out = []
    while entries := (await lease(q, target=target)).entries:
        await q.ack(entries)
        for e in entries:
            body = jsonio.loads(e.payload)
            assert isinstance(body, dict)
            out.append(body)
    return out


# --------------------------------------------------------------------------- deduplication


async def test_a_repeat_is_suppressed_and_counted_until_the_reminder(
    open_queue: QueueFactory, backend: Backend, clock: FakeClock
) -> None:
    """The first alert is queued, repeats within the interval are not, the reminder is."""
    q = await open_queue()
    first = await q.put([alert(clock, "a", n=1)])
    assert (first.queued, dict(first.suppressed)) == (1, {})
    clock.advance(60)
    repeat = await q.put([alert(clock, "a", n=2), alert(clock, "a", n=3)])
    assert repeat.queued == 0
    assert dict(repeat.suppressed) == {(TARGET, "duplicate"): 2}
    assert backend.rows("queue") == 1
    clock.advance(HOUR)
    reminder = await q.put([alert(clock, "a", n=4)])
    assert reminder.queued == 1
    assert [b["n"] for b in await sent(q)] == [1, 4]
    [row] = await q.alerts.list()
    assert (row.check, row.status, row.suppressed) == ("a", "critical", 2)
    assert row.last_sent == clock.time()


async def test_a_status_change_is_queued_at_once(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """critical, critical, ok, ok: the change goes out the moment it arrives."""
    q = await open_queue()
    results = [await q.put([alert(clock, "a", s)]) for s in ["critical", "critical", "ok", "ok"]]
    assert [r.queued for r in results] == [1, 0, 1, 0]
    assert [b["status"] for b in await sent(q)] == ["critical", "ok"]


async def test_results_count_by_target_and_reason_per_put(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """One put's result counts its own suppressed alerts by (target, reason)."""
    q = await open_queue()
    await q.put([alert(clock, "dup"), alert(clock, "dup", target="other")])
    clock.advance(1)
    flapping = [
        alert(clock, "f", s, policy=FLAP) for s in ["critical", "ok", "critical", "ok", "ok"]
    ]
    result = await q.put(
        [alert(clock, "dup"), alert(clock, "dup", target="other"), *flapping, alert(clock, "new")]
    )
    # f: crit (new), ok, crit (2 changes), ok (3 > 2: flapping "true"), then held.
    assert dict(result.suppressed) == {
        (TARGET, "duplicate"): 1,
        ("other", "duplicate"): 1,
        (TARGET, "flapping"): 1,
    }
    assert result.queued == 5
    bodies = await sent(q)
    assert sorted(str(b["check"]) for b in bodies) == ["dup", "f", "f", "f", "f", "new"]
    f = [(b["status"], b.get("flapping")) for b in bodies if b["check"] == "f"]
    assert f == [("critical", None), ("ok", None), ("critical", None), ("ok", "true")]


async def test_items_without_an_observation_are_queued_unconditionally(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """An alert with no state (a replayed dead letter) is queued every time and keeps no row."""
    q = await open_queue()
    plain = replace(alert(clock, "a"), state=None)
    results = [await q.put([plain]), await q.put([plain])]
    assert [r.queued for r in results] == [1, 1]
    assert await q.alerts.list() == []


async def test_concurrent_puts_of_one_repeat_queue_it_once(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """Two requests with the same alert at the same moment: decided one after the other."""
    q = await open_queue()
    results = await asyncio.gather(*(q.put([alert(clock, "a")]) for _ in range(8)))
    assert sorted(r.queued for r in results) == [0] * 7 + [1]
    assert sum(r.suppressed_total for r in results) == 7
    assert len(await sent(q)) == 1


async def test_the_state_survives_a_restart(
    open_queue: QueueFactory, backend: Backend, clock: FakeClock
) -> None:
    """Reopened, the store still knows what was sent: the repeat stays suppressed."""
    q = await open_queue()
    await q.put([alert(clock, "a"), alert(clock, "b", "ok")])
    await q.close()
    clock.advance(60)
    q2 = await open_queue()
    again = await q2.put([alert(clock, "a"), alert(clock, "b", "ok")])
    assert (again.queued, again.suppressed_total) == (0, 2)
    assert backend.rows("queue") == 2
    views = {v.check: v for v in await q2.alerts.list()}
    assert views["a"].suppressed == 1
    assert views["a"].last_seen == clock.time()


async def test_a_refused_put_changes_no_state(open_queue: QueueFactory, clock: FakeClock) -> None:
    """A put refused as QueueFull records nothing: once there is room, its alerts are news."""
    q = await open_queue(max_events=1)
    await q.put([alert(clock, "a")])
    with pytest.raises(QueueFull):
        await q.put([alert(clock, "b")])
    assert [v.check for v in await q.alerts.list()] == ["a"]
    assert dict((await q.alerts.counts()).open) == {TARGET: 1}
    await sent(q)
    retried = await q.put([alert(clock, "b")])
    assert (retried.queued, retried.suppressed_total) == (1, 0)
    assert [b["check"] for b in await sent(q)] == ["b"]


async def test_everything_decided_survives_a_restart(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """Dedup values, the identity clock, transitions and flapping all come back from the store."""
    q = await open_queue()
    ts = int(clock.time())
    await q.put([alert(clock, "d", dedup='["disk 91%"]', ts=ts)])
    await q.put([alert(clock, "f", s, policy=FLAP) for s in ["critical", "ok", "critical"]])
    await q.put([alert(clock, "f", "ok", policy=FLAP)])  # the 3rd change: flapping
    await q.close()
    clock.advance(1)
    q2 = await open_queue()
    assert [v.flapping for v in await q2.alerts.list(status="flapping")] == [True]
    held = await q2.put([alert(clock, "f", "critical", policy=FLAP)])
    assert dict(held.suppressed) == {(TARGET, "flapping"): 1}
    same = await q2.put([alert(clock, "d", dedup='["disk 91%"]', ts=ts + 60)])
    assert dict(same.suppressed) == {(TARGET, "duplicate"): 1}
    # A replayed hour of event time (one wall second): the reminder is due.
    replayed = await q2.put([alert(clock, "d", dedup='["disk 91%"]', ts=ts + 3600)])
    assert replayed.queued == 1
    changed = await q2.put([alert(clock, "d", dedup='["disk full"]', ts=ts + 3601)])
    assert changed.queued == 1


async def test_refused_alerts_keep_no_state(open_queue: QueueFactory, clock: FakeClock) -> None:
    """Alerts given as refused go to the dead letters and are not decided."""
    q = await open_queue()
    result = await q.put([], [(alert(clock, "a"), "no_primary_property")])
    assert (result.queued, result.suppressed_total) == (0, 0)
    assert await q.alerts.list() == []
    assert (await q.put([alert(clock, "a")])).queued == 1


# --------------------------------------------------------------------------- list and counts


async def test_list_filters_and_orders_by_last_seen(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """firing / ok / flapping, per target, newest sighting first, up to ``limit``."""
    q = await open_queue()
    await q.put([alert(clock, "firing-1")])
    clock.advance(1)
    await q.put([alert(clock, "ok-1", "ok")])
    clock.advance(1)
    await q.put([alert(clock, "other-1", "warning", target="other")])
    clock.advance(1)
    await q.put(
        [alert(clock, "flap", s, policy=FLAP) for s in ["critical", "ok", "critical", "ok"]]
    )
    every = await q.alerts.list()
    assert [v.check for v in every] == ["flap", "other-1", "ok-1", "firing-1"]
    assert [v.check for v in await q.alerts.list(status="firing")] == ["other-1", "firing-1"]
    assert [v.check for v in await q.alerts.list(status="ok")] == ["flap", "ok-1"]
    assert [v.check for v in await q.alerts.list(status="flapping")] == ["flap"]
    assert [v.check for v in await q.alerts.list(target="other")] == ["other-1"]
    assert [v.check for v in await q.alerts.list(status="firing", target="other")] == ["other-1"]
    assert [v.check for v in await q.alerts.list(limit=2)] == ["flap", "other-1"]
    flap = every[0]
    assert (flap.target, flap.host, flap.status, flap.flapping) == (TARGET, "web-1", "ok", True)
    assert flap.transitions == 3
    counts = await q.alerts.counts()
    assert dict(counts.open) == {TARGET: 1, "other": 1}
    assert dict(counts.flapping) == {TARGET: 1}


async def test_the_views_never_hold_the_app_key(open_queue: QueueFactory, clock: FakeClock) -> None:
    """What the API and the CLI show comes without the app key."""
    q = await open_queue()
    await q.put([alert(clock, "a")])
    [v] = await q.alerts.list()
    assert KEY not in jsonio.dumps(v.to_json()).decode()


# --------------------------------------------------------------------------- the scheduler


async def test_tick_resolves_a_silent_identity_once(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """Unseen for ``resolve_after``: one ok alert, resolved_by forwarder; never a second one."""
    q = await open_queue()
    await q.put([alert(clock, "a", policy=RESOLVE, n=7)])
    assert [b["status"] for b in await sent(q)] == ["critical"]
    early = await q.alerts.tick()
    assert dict(early.resolved) == {}
    assert early.next_due == clock.time() + 600
    clock.advance(600)
    done = await q.alerts.tick()
    assert dict(done.resolved) == {TARGET: 1}
    [resolved] = await sent(q)
    assert resolved["status"] == "ok"
    assert resolved["resolved_by"] == "forwarder"
    assert resolved["timestamp"] == int(clock.time())
    assert (resolved["check"], resolved["n"]) == ("a", 7)
    [v] = await q.alerts.list()
    assert v.status == "ok"
    assert dict((await q.alerts.counts()).open) == {}
    clock.advance(600)
    again = await q.alerts.tick()
    assert (dict(again.resolved), again.expired) == ({}, 0)
    assert await sent(q) == []


async def test_concurrent_ticks_resolve_each_identity_once(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """Scheduler passes that overlap claim each due row once."""
    q = await open_queue()
    await q.put([alert(clock, f"c{i}", policy=RESOLVE) for i in range(4)])
    assert len(await sent(q)) == 4
    clock.advance(600)
    results = await asyncio.gather(*(q.alerts.tick(limit=2) for _ in range(4)))
    assert sum(sum(r.resolved.values()) for r in results) == 4
    assert sorted(str(b["check"]) for b in await sent(q)) == [f"c{i}" for i in range(4)]


async def test_resolve_timers_continue_after_a_restart(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """A firing identity stored before a restart is resolved by the next process, once."""
    q = await open_queue()
    await q.put([alert(clock, "a", policy=RESOLVE)])
    await q.close()
    clock.advance(601)
    q2 = await open_queue()
    assert dict((await q2.alerts.tick()).resolved) == {TARGET: 1}
    assert [b["status"] for b in await sent(q2)] == ["critical", "ok"]
    await q2.close()
    q3 = await open_queue()
    assert dict((await q3.alerts.tick()).resolved) == {}


async def test_tick_releases_a_flapping_identity_after_the_hold(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """The held status goes out with flapping "false" once it has held for ``hold``."""
    q = await open_queue()
    statuses = ["critical", "ok", "critical", "ok", "critical"]
    for s in statuses:
        await q.put([alert(clock, "f", s, policy=FLAP)])
        clock.advance(1)
    first = await q.alerts.tick()
    assert dict(first.released) == {}
    assert first.next_due == clock.time() - 1 + 300
    clock.advance(300)
    done = await q.alerts.tick()
    assert dict(done.released) == {TARGET: 1}
    bodies = await sent(q)
    assert [b["status"] for b in bodies] == [*statuses[:4], "critical"]
    assert [b.get("flapping") for b in bodies][-2:] == ["true", "false"]
    assert dict((await q.alerts.counts()).flapping) == {}


async def test_tick_expires_resolved_identities_after_retention(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """An ok identity unseen for ``retention`` is deleted; a firing one without resolve stays."""
    q = await open_queue()
    await q.put([alert(clock, "done", "ok"), alert(clock, "open")])
    clock.advance(POLICY.retention)
    result = await q.alerts.tick()
    assert result.expired == 1
    assert [v.check for v in await q.alerts.list()] == ["open"]
    # Expired means forgotten: the same ok again is news.
    assert (await q.put([alert(clock, "done", "ok")])).queued == 1


async def test_tick_stops_at_its_limit_and_says_there_is_more(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """``limit`` rows per pass; ``more`` until every due row is done."""
    q = await open_queue()
    await q.put([alert(clock, f"c{i}", policy=RESOLVE) for i in range(5)])
    assert len(await sent(q)) == 5
    clock.advance(600)
    first = await q.alerts.tick(limit=3)
    assert (sum(first.resolved.values()), first.more) == (3, True)
    second = await q.alerts.tick(limit=3)
    assert (sum(second.resolved.values()), second.more) == (2, False)
    bodies = await sent(q)
    assert sorted(str(b["check"]) for b in bodies) == [f"c{i}" for i in range(5)]
    assert {b["status"] for b in bodies} == {"ok"}


async def test_a_resolve_that_does_not_fit_waits_for_room(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """The scheduler's alerts count against the capacity: a full queue defers, never drops."""
    q = await open_queue(max_events=1)
    await q.put([alert(clock, "a", policy=RESOLVE)])
    clock.advance(600)
    full = await q.alerts.tick()
    assert dict(full.resolved) == {}
    [v] = await q.alerts.list()
    assert v.status == "critical"
    assert [b["status"] for b in await sent(q)] == ["critical"]
    done = await q.alerts.tick()
    assert dict(done.resolved) == {TARGET: 1}
    assert [b["status"] for b in await sent(q)] == ["ok"]
