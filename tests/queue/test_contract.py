"""The storage contract (forwarder.queue.contract), run against every backend.

Each test pins one invariant of :class:`forwarder.queue.Queue` or
:class:`forwarder.queue.DeadLetters` through the contract's methods only, so a
new backend joins by adding itself to the ``backend`` fixture, not by
changing a test.
"""

from __future__ import annotations

import asyncio

import pytest

from forwarder import jsonio
from forwarder.queue import Lease, QueueFull, QueueUnavailable
from forwarder.queue.contract import PutResult
from tests.fakes.clock import FakeClock
from tests.queue.conftest import (
    KEY,
    TARGET,
    Backend,
    QueueFactory,
    checks,
    dead_letter_all,
    item,
    lease,
)

# --------------------------------------------------------------------------- commit


async def test_put_is_durable_once_it_returns(open_queue: QueueFactory, backend: Backend) -> None:
    """Once ``put`` completes, another connection to the store sees the alerts."""
    q = await open_queue()
    await q.put([item("a"), item("b")])
    assert backend.rows("queue") == 2
    stats = await q.stats()
    assert (stats.events, stats.targets[TARGET].events) == (2, 2)
    assert stats.bytes == len(item("a").payload) + len(item("b").payload)


async def test_put_after_close_is_unavailable(open_queue: QueueFactory) -> None:
    """A closed queue refuses puts with QueueUnavailable rather than losing them."""
    q = await open_queue()
    await q.close()
    with pytest.raises(QueueUnavailable):
        await q.put([item("late")])


async def test_an_empty_put_commits_nothing(open_queue: QueueFactory, backend: Backend) -> None:
    """A request that mapped to no alerts completes at once."""
    q = await open_queue()
    await q.put([])
    assert backend.rows("queue") == 0


async def test_a_commit_wakes_its_targets_sender(open_queue: QueueFactory) -> None:
    """Committed alerts set the target's new-work event; other targets' stay clear."""
    q = await open_queue()
    mine, other = q.new_work(TARGET), q.new_work("other")
    mine.clear()
    other.clear()
    await q.put([item("a")])
    assert mine.is_set()
    assert not other.is_set()


# --------------------------------------------------------------------------- lease, ack, release


async def test_lease_ack_round_trip(open_queue: QueueFactory, backend: Backend) -> None:
    """Leased alerts come oldest first with their payload; acknowledged ones are gone."""
    q = await open_queue()
    await q.put([item(f"c{i}", ts=1000 + i) for i in range(5)])
    got = await lease(q, limit=3)
    assert checks(got.entries) == ["c0", "c1", "c2"]
    assert got.next_due is None
    assert all(e.app_key == KEY and e.target == TARGET for e in got.entries)
    assert [(e.attempts, e.timestamp) for e in got.entries] == [(0, 1000), (0, 1001), (0, 1002)]
    await q.ack(got.entries)
    assert backend.rows("queue") == 2
    assert (await q.stats()).events == 2
    assert checks((await lease(q)).entries) == ["c3", "c4"]


async def test_a_lease_hides_its_alerts_until_it_expires(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """A leased batch is not leased again; once its deadline passes it comes back."""
    q = await open_queue()
    await q.put([item("a")])
    assert checks((await lease(q, lease_for=120)).entries) == ["a"]
    assert (await lease(q)).entries == []
    clock.advance(121)
    assert checks((await lease(q)).entries) == ["a"]


async def test_a_lease_left_by_a_dead_owner_expires_after_a_restart(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """Alerts leased by a process that died are delivered by the next one (at-least-once)."""
    q = await open_queue()
    await q.put([item("a"), item("b")])
    leased = (await lease(q, lease_for=600)).entries
    await q.close()  # the lease is still in the store, as after kill -9
    clock.advance(601)
    q2 = await open_queue()
    assert checks((await lease(q2)).entries) == ["a", "b"]
    stats = await q2.stats()
    assert (stats.events, stats.bytes) == (2, sum(len(e.payload) for e in leased))


async def test_release_gives_the_lease_back_without_counting_an_attempt(
    open_queue: QueueFactory,
) -> None:
    """Released alerts are leasable again at once and their attempt count is unchanged."""
    q = await open_queue()
    await q.put([item("a")])
    await q.release((await lease(q)).entries)
    again = (await lease(q)).entries
    assert checks(again) == ["a"]
    assert again[0].attempts == 0


async def test_one_batch_holds_one_app_key(open_queue: QueueFactory) -> None:
    """A lease returns alerts of a single app key; the other key's alerts wait for the next one."""
    q = await open_queue()
    await q.put([item("a1", key="A"), item("b1", key="B"), item("a2", key="A")])
    first = (await lease(q)).entries
    assert [(e.app_key, c) for e, c in zip(first, checks(first), strict=True)] == [
        ("A", "a1"),
        ("A", "a2"),
    ]
    assert checks((await lease(q)).entries) == ["b1"]


async def test_lease_is_per_target(open_queue: QueueFactory) -> None:
    """Alerts for another target are never leased by this target's sender."""
    q = await open_queue()
    await q.put([item("x", target="other"), item("a")])
    assert checks((await lease(q)).entries) == ["a"]


# --------------------------------------------------------------------------- retries


async def test_retry_keeps_the_attempt_and_the_error(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """A retried alert counts the attempt and is due again exactly at the given time."""
    q = await open_queue()
    await q.put([item("a")])
    await q.retry_later((await lease(q)).entries, at=clock.time() + 30, error="HTTP 503: busy")
    assert await lease(q) == Lease([], clock.time() + 30)
    clock.advance(30)
    (entry,) = (await lease(q)).entries
    assert entry.attempts == 1


async def test_nothing_due_reports_when_something_will_be(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """With every alert waiting for a retry, lease returns nothing and the earliest due time."""
    q = await open_queue()
    await q.put([item("a"), item("b")])
    entries = (await lease(q)).entries
    await q.retry_later(entries[:1], at=clock.time() + 7, error="e")
    await q.retry_later(entries[1:], at=clock.time() + 3, error="e")
    got = await lease(q)
    assert (got.entries, got.next_due) == ([], clock.time() + 3)


async def test_retry_state_survives_a_restart(open_queue: QueueFactory, clock: FakeClock) -> None:
    """Attempts and the next attempt time are stored, so a restart does not reset the backoff."""
    q = await open_queue()
    await q.put([item("a")])
    await q.retry_later((await lease(q)).entries, at=clock.time() + 50, error="HTTP 502")
    await q.close()
    q2 = await open_queue()
    assert (await lease(q2)).next_due == clock.time() + 50
    clock.advance(50)
    (entry,) = (await lease(q2)).entries
    assert entry.attempts == 1


# --------------------------------------------------------------------------- per-identity order


async def test_a_leased_state_holds_back_newer_states_of_its_identity(
    open_queue: QueueFactory,
) -> None:
    """While an older state is in flight, newer states of that identity are not handed out."""
    q = await open_queue()
    await q.put([item("x1", identity="X")])
    in_flight = (await lease(q)).entries
    await q.put([item("x2", identity="X"), item("y1", identity="Y")])
    assert checks((await lease(q)).entries) == ["y1"]
    await q.ack(in_flight)
    assert checks((await lease(q)).entries) == ["x2"]


async def test_a_held_identity_of_another_app_key_does_not_block(open_queue: QueueFactory) -> None:
    """Identity is per app key: X in flight under key B does not hold back X under key A."""
    q = await open_queue()
    await q.put([item("x-b", identity="X", key="B")])
    await lease(q)
    await q.put([item("x-a", identity="X", key="A")])
    assert checks((await lease(q)).entries) == ["x-a"]


async def test_a_state_waiting_for_retry_holds_back_newer_states(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """While an older state waits for its retry, newer states of that identity wait too."""
    q = await open_queue()
    await q.put([item("x1", identity="X", ts=1)])
    await q.retry_later((await lease(q)).entries, at=clock.time() + 10, error="HTTP 503")
    await q.put([item("x2", identity="X", ts=2), item("y1", identity="Y", ts=2)])
    got = await lease(q)
    assert checks(got.entries) == ["y1"]
    await q.ack(got.entries)
    got = await lease(q)
    assert (got.entries, got.next_due) == ([], clock.time() + 10)
    clock.advance(10)
    entries = (await lease(q)).entries
    assert checks(entries) == ["x1"]
    assert [e.attempts for e in entries] == [1]
    await q.ack(entries)
    assert checks((await lease(q)).entries) == ["x2"]


async def test_a_batch_holds_one_state_per_identity(open_queue: QueueFactory) -> None:
    """Each batch takes only the oldest state of an identity, so a batch sent again after a
    crash can never bring an older state to BigPanda after a newer one was delivered."""
    q = await open_queue()
    await q.put([item(f"x{s}", identity="X", ts=s) for s in range(3)] + [item("y0", identity="Y")])
    for expected in (["x0", "y0"], ["x1"], ["x2"]):
        got = (await lease(q)).entries
        assert sorted(checks(got)) == expected
        await q.ack(got)


async def test_concurrent_leases_never_share_an_alert_or_reorder_an_identity(
    open_queue: QueueFactory,
) -> None:
    """Several senders leasing at once get disjoint batches, one state per identity at a time."""
    q = await open_queue()
    await q.put([item(f"{i}-s{s}", identity=f"I{i}", ts=s) for s in range(3) for i in range(20)])
    batches = await asyncio.gather(*(lease(q, limit=10) for _ in range(8)))
    leased = [e for b in batches for e in b.entries]
    assert len({e.id for e in leased}) == len(leased)
    first_state = {e.identity: e.timestamp for e in sorted(leased, key=lambda e: e.id)}
    assert set(first_state.values()) == {0}  # only the oldest state of each identity moved


# --------------------------------------------------------------------------- capacity


async def test_max_events_refuses_without_evicting(
    open_queue: QueueFactory, backend: Backend
) -> None:
    """At ``max_events`` a put raises QueueFull, every queued alert stays, and an ack makes room."""
    q = await open_queue(max_events=5)
    for i in range(5):
        await q.put([item(f"c{i}")])
    with pytest.raises(QueueFull, match=r"queue\.max_events=5"):
        await q.put([item("overflow")])
    assert backend.rows("queue") == 5
    first = (await lease(q, limit=1)).entries
    assert checks(first) == ["c0"]
    await q.ack(first)
    await q.put([item("after")])
    assert checks((await lease(q)).entries) == ["c1", "c2", "c3", "c4", "after"]


async def test_a_request_that_does_not_fit_is_refused_whole(
    open_queue: QueueFactory, backend: Backend
) -> None:
    """A multi-alert put that would cross the limit queues none of its alerts."""
    q = await open_queue(max_events=4)
    await q.put([item("a"), item("b")])
    with pytest.raises(QueueFull):
        await q.put([item("c"), item("d"), item("e")])
    assert backend.rows("queue") == 2


async def test_max_bytes_refuses_without_evicting(
    open_queue: QueueFactory, backend: Backend
) -> None:
    """At ``max_bytes`` a put raises QueueFull naming the limit; the queued alerts are kept."""
    one = len(item("c0", size=1000).payload)
    q = await open_queue(max_bytes=int(one * 2.5))
    await q.put([item("c0", size=1000)])
    await q.put([item("c1", size=1000)])
    with pytest.raises(QueueFull, match=r"queue\.max_bytes="):
        await q.put([item("c2", size=1000)])
    assert backend.rows("queue") == 2
    assert (await q.stats()).bytes == 2 * one
    await q.ack((await lease(q, limit=1)).entries)
    await q.put([item("c2", size=1000)])
    assert backend.rows("queue") == 2


async def test_concurrent_puts_cannot_overshoot_the_limit(
    open_queue: QueueFactory, backend: Backend
) -> None:
    """Puts waiting for the same commit count against the limit: exactly ``max_events`` get in."""
    q = await open_queue(max_events=10)
    results = await asyncio.gather(
        *(q.put([item(f"c{i}")]) for i in range(25)), return_exceptions=True
    )
    assert sum(isinstance(r, PutResult) for r in results) == 10
    assert sum(isinstance(r, QueueFull) for r in results) == 15
    assert backend.rows("queue") == 10


def test_refusals_suggest_a_retry_after() -> None:
    """QueueFull and QueueUnavailable carry the ``Retry-After`` seconds the ingest answers with."""
    assert QueueFull.retry_after > 0
    assert QueueUnavailable.retry_after > 0


# --------------------------------------------------------------------------- dead letters


async def test_nul_characters_in_identities_and_answers_are_stored(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """JSON can carry U+0000 (an alert id, an upstream answer): such an alert commits, with the
    others of its group, and its retries and dead letters are recorded like any other."""
    q = await open_queue()
    await asyncio.gather(q.put([item("evil", identity="E\x00vil")]), q.put([item("fine")]))
    assert (await q.stats()).events == 2
    entries = sorted((await lease(q)).entries, key=lambda e: e.check)  # "E…vil" before "fine"
    await q.retry_later(entries[:1], at=clock.time(), error="HTTP 503 \x00 echoed")
    await q.dead_letter(
        entries[1:], reason="clientError", status=400, response="a\x00b", error=None
    )
    (dead,) = await q.dead_letters.list()
    assert dead.check == "fine"
    assert (dead.response or "").startswith("a")
    again = (await lease(q)).entries
    assert [(e.check[0], e.attempts) for e in again] == [("E", 1)]


async def test_a_late_dead_letter_of_an_alert_delivered_meanwhile_adds_nothing(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """A sender whose lease expired dead-letters its batch after another sender delivered it:
    nothing is dead-lettered, so a replay cannot send the alert again."""
    q = await open_queue()
    await q.put([item("a")])
    late = (await lease(q, lease_for=5)).entries
    clock.advance(10)
    again = (await lease(q)).entries
    await q.ack(again)
    await q.dead_letter(late, reason="clientError", status=400, response=None, error=None)
    assert await q.dead_letters.list() == []
    assert (await q.stats()).events == 0


async def test_dead_letter_moves_alerts_with_their_reason(
    open_queue: QueueFactory, backend: Backend, clock: FakeClock
) -> None:
    """Dead-lettered alerts leave the queue and are kept with reason, status, answer and times."""
    q = await open_queue()
    await q.put([item("a", ts=11), item("b", ts=12), item("keep")])
    entries = (await lease(q, limit=2)).entries
    clock.advance(5)
    await q.dead_letter(
        entries, reason="clientError", status=400, response='{"error":"bad"}', error="HTTP 400"
    )
    assert (backend.rows("queue"), backend.rows("dead_letters")) == (1, 2)
    assert (await q.stats()).events == 1
    listed = await q.dead_letters.list()
    assert [d.check for d in listed] == ["b", "a"]  # newest first
    d = listed[1]
    assert (d.target, d.reason, d.status, d.attempts) == (TARGET, "clientError", 400, 1)
    assert (d.response, d.last_error) == ('{"error":"bad"}', "HTTP 400")
    assert (d.failed_at, d.created) == (clock.time(), clock.time() - 5)
    assert d.alert["check"] == "a"
    assert d.summary(clock.time() + 3)["age_seconds"] == 3.0


async def test_a_dead_letter_never_shows_the_app_key(open_queue: QueueFactory) -> None:
    """Neither the summary nor the detail of a dead letter contains the app key."""
    q = await open_queue()
    await q.put([item("a", key="very-secret-app-key")])
    await dead_letter_all(q)
    (d,) = await q.dead_letters.list()
    assert "very-secret-app-key" not in jsonio.dumps_str(d.summary(0))
    assert "very-secret-app-key" not in jsonio.dumps_str(d.detail(0))


async def test_list_filters_by_target_and_limit(open_queue: QueueFactory) -> None:
    """Listing can be narrowed to one target and capped; stats count dead letters per target."""
    q = await open_queue()
    await q.put([item(f"a{i}") for i in range(3)])
    await q.put([item("o1", target="other")])
    await dead_letter_all(q)
    await dead_letter_all(q, target="other", reason="authError", status=401)
    assert [d.check for d in await q.dead_letters.list(target=TARGET)] == ["a2", "a1", "a0"]
    assert [d.check for d in await q.dead_letters.list(limit=2)] == ["o1", "a2"]
    stats = await q.stats()
    assert stats.targets["other"].dead_letters == 1
    assert (stats.targets[TARGET].dead_letters, stats.targets[TARGET].events) == (3, 0)


async def test_get_finds_one_dead_letter_by_id(open_queue: QueueFactory) -> None:
    """One dead letter is found by id with its alert; an unknown id gives None."""
    q = await open_queue()
    await q.put([item("a")])
    await dead_letter_all(q)
    (d,) = await q.dead_letters.list()
    got = await q.dead_letters.get(d.id)
    assert got is not None
    assert got.alert["check"] == "a"
    assert await q.dead_letters.get(d.id + 1000) is None


async def test_a_replay_of_thousands_moves_every_one_in_order(open_queue: QueueFactory) -> None:
    """A replay larger than one transaction's share still moves every dead letter, oldest
    first, and the counts agree."""
    q = await open_queue()
    n = 2_345
    await q.put([item(f"m{i:05d}", identity=f"M{i}") for i in range(n)])
    entries = (await lease(q, limit=n)).entries
    await q.dead_letter(entries, reason="clientError", status=400, response=None, error=None)
    assert await q.dead_letters.replay() == n
    assert (await q.stats()).events == n
    assert await q.dead_letters.list() == []
    again = (await lease(q, limit=n)).entries
    assert [e.id for e in again] == sorted(e.id for e in again)
    assert len(again) == n


async def test_replay_requeues_as_new(
    open_queue: QueueFactory, backend: Backend, clock: FakeClock
) -> None:
    """Replay moves dead letters back with no attempts, due now, app key kept, and wakes senders."""
    q = await open_queue()
    await q.put([item("a"), item("b")])
    await dead_letter_all(q)
    clock.advance(100)
    wake = q.new_work(TARGET)
    wake.clear()
    assert await q.dead_letters.replay() == 2
    assert wake.is_set()
    assert backend.rows("dead_letters") == 0
    assert (await q.stats()).events == 2
    entries = (await lease(q)).entries
    assert checks(entries) == ["a", "b"]
    assert all(e.attempts == 0 and e.created == clock.time() and e.app_key == KEY for e in entries)


async def test_replay_by_id_and_by_target(open_queue: QueueFactory) -> None:
    """Replay takes only the listed ids, or only one target's dead letters."""
    q = await open_queue()
    await q.put([item("a"), item("b"), item("c")])
    await q.put([item("o", target="other")])
    await dead_letter_all(q)
    await dead_letter_all(q, target="other", reason="authError", status=401)
    by_check = {d.check: d.id for d in await q.dead_letters.list()}
    assert await q.dead_letters.replay(ids=[by_check["b"]]) == 1
    assert checks((await lease(q)).entries) == ["b"]
    assert await q.dead_letters.replay(ids=[]) == 0
    assert await q.dead_letters.replay(target="other") == 1
    assert sorted(d.check for d in await q.dead_letters.list()) == ["a", "c"]


async def test_purge_by_id_and_by_age(open_queue: QueueFactory, clock: FakeClock) -> None:
    """Purge deletes the given ids, or dead letters that failed longer ago than the given age."""
    q = await open_queue()
    await q.put([item("old1"), item("old2")])
    await dead_letter_all(q)
    clock.advance(8 * 86400)
    await q.put([item("new")])
    await dead_letter_all(q)
    ids = {d.check: d.id for d in await q.dead_letters.list()}
    assert await q.dead_letters.purge(ids=[ids["old1"]]) == 1
    assert await q.dead_letters.purge(older_than=7 * 86400) == 1
    assert [d.check for d in await q.dead_letters.list()] == ["new"]
    with pytest.raises(ValueError, match="ids or older_than"):
        await q.dead_letters.purge()


async def test_an_admin_connection_sees_and_replays_beside_the_owner(
    open_queue: QueueFactory,
) -> None:
    """The CLI's admin connection lists and replays while the daemon holds the store."""
    q = await open_queue()
    await q.put([item("a"), item("b")])
    await dead_letter_all(q)
    admin = await open_queue(admin=True)
    assert sorted(d.check for d in await admin.dead_letters.list()) == ["a", "b"]
    assert await admin.dead_letters.replay() == 2
    entries = (await lease(q)).entries
    assert checks(entries) == ["a", "b"]
    assert (await q.stats()).events == 2
    await q.ack(entries)
    assert (await q.stats()).events == 0


# --------------------------------------------------------------------------- stats


async def test_oldest_age_is_the_age_of_the_first_queued_alert(
    open_queue: QueueFactory, clock: FakeClock
) -> None:
    """``oldest_age`` counts from the oldest alert still queued, and moves on when it is acked."""
    q = await open_queue()
    await q.put([item("first")])
    clock.advance(30)
    await q.put([item("second")])
    clock.advance(10)
    assert (await q.stats()).targets[TARGET].oldest_age == pytest.approx(40)
    entries = (await lease(q)).entries
    await q.ack([e for e in entries if checks([e]) == ["first"]])
    assert (await q.stats()).targets[TARGET].oldest_age == pytest.approx(10)


async def test_stats_of_an_empty_store(open_queue: QueueFactory) -> None:
    """An empty store reports nothing queued and no targets."""
    q = await open_queue()
    stats = await q.stats()
    assert (stats.events, stats.bytes, dict(stats.targets)) == (0, 0, {})


# --------------------------------------------------------------------------- refused at ingest


async def test_refused_alerts_go_straight_to_the_dead_letters_with_the_queued_ones(
    open_queue: QueueFactory, backend: Backend, clock: FakeClock
) -> None:
    """``put(items, refused)`` queues ``items`` and dead-letters ``refused`` with their reason."""
    q = await open_queue()
    await q.put(
        [item("good", ts=10)],
        refused=[(item("nopp", ts=11), "no_primary_property"), (item("bad", ts=12), "bad_status")],
    )
    assert (backend.rows("queue"), backend.rows("dead_letters")) == (1, 2)
    assert checks((await lease(q)).entries) == ["good"]
    listed = await q.dead_letters.list()
    assert [(d.check, d.reason) for d in listed] == [
        ("bad", "bad_status"),
        ("nopp", "no_primary_property"),
    ]
    d = listed[1]
    assert (d.target, d.status, d.attempts, d.response, d.last_error) == (
        TARGET,
        None,
        0,
        None,
        None,
    )
    assert d.created == d.failed_at == clock.time()
    assert d.alert == jsonio.loads(item("nopp", ts=11).payload)
    stats = await q.stats()
    assert (stats.events, stats.targets[TARGET].dead_letters) == (1, 2)


async def test_a_put_of_refused_alerts_only_is_durable(
    open_queue: QueueFactory, backend: Backend
) -> None:
    """A request whose every alert was refused still stores them before the future completes."""
    q = await open_queue()
    mine = q.new_work(TARGET)
    mine.clear()
    await q.put([], refused=[(item("only"), "no_primary_property")])
    assert (backend.rows("queue"), backend.rows("dead_letters")) == (0, 1)
    assert not mine.is_set()  # nothing for the sender
    assert (await q.stats()).events == 0


async def test_refused_alerts_do_not_count_against_capacity(
    open_queue: QueueFactory, backend: Backend
) -> None:
    """At ``max_events`` refused alerts are still kept; a put whose items do not fit stores none."""
    q = await open_queue(max_events=1)
    await q.put([item("a")], refused=[(item("r1"), "bad_status"), (item("r2"), "bad_status")])
    await q.put([], refused=[(item("r3"), "bad_status")])
    assert (backend.rows("queue"), backend.rows("dead_letters")) == (1, 3)
    with pytest.raises(QueueFull):
        await q.put([item("b")], refused=[(item("r4"), "bad_status")])
    assert (backend.rows("queue"), backend.rows("dead_letters")) == (1, 3)


async def test_refused_alerts_replay_like_any_dead_letter(open_queue: QueueFactory) -> None:
    """Once the mapping is fixed, a refused alert is replayed into the queue afresh."""
    q = await open_queue()
    await q.put([], refused=[(item("fixme"), "no_primary_property")])
    assert await q.dead_letters.replay() == 1
    (entry,) = (await lease(q)).entries
    assert (checks([entry]), entry.attempts) == (["fixme"], 0)


async def test_concurrent_puts_with_and_without_refused_all_land(
    open_queue: QueueFactory, backend: Backend
) -> None:
    """Puts with refused alerts share commits with plain ones; every alert lands where it should."""
    q = await open_queue()
    await asyncio.gather(
        *(
            q.put([item(f"q{i}")], refused=[(item(f"r{i}"), "bad_status")] if i % 3 == 0 else [])
            for i in range(60)
        )
    )
    assert (backend.rows("queue"), backend.rows("dead_letters")) == (60, 20)
    assert (await q.stats()).events == 60


# --------------------------------------------------------------------------- sender claims


async def test_a_lone_process_gets_and_gives_back_the_sender_claim(
    open_queue: QueueFactory,
) -> None:
    """With no other process, a claim is granted, held, listed, and released on request."""
    q = await open_queue()
    assert not q.holds_target(TARGET)
    assert await q.claim_target(TARGET)
    assert await q.claim_target(TARGET)  # claiming again keeps it
    assert q.holds_target(TARGET)
    assert q.claimed_targets == frozenset({TARGET})
    await q.release_target(TARGET)
    assert not q.holds_target(TARGET)
    assert q.claimed_targets == frozenset()
