"""The alert-state machine (forwarder.state.decide): what is queued, held or resolved, and when.

Pure functions, so every test drives one identity through :func:`observe` and
:func:`tick` with explicit wall times and event timestamps, and reads what
would reach BigPanda from the verdicts. Times are seconds after ``T0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forwarder import jsonio
from forwarder.config import FlapConfig, StateConfig
from forwarder.model import Outgoing
from forwarder.state import (
    OK,
    AlertState,
    Observation,
    SuppressReason,
    TickVerdict,
    Verdict,
    next_due,
    observe,
    tick,
)

T0 = 1_700_000_000.0
TS0 = 1_699_999_990  # the first event's own timestamp: a little behind the wall
HOUR = 3600.0
CRIT = "critical"
WARN = "warning"

# Deduplication with a one-hour repeat; retention one day; everything else off.
PLAIN = StateConfig(repeat_interval=HOUR, retention=86400.0)
FLAP = replace(PLAIN, flap=FlapConfig(transitions=4, window=600.0, hold=300.0))
RESOLVE = replace(PLAIN, resolve_after=600.0)


def alert(status: str, ts: int, policy: StateConfig, dedup: str = "", **attrs: Any) -> Outgoing:
    """A mapped alert of the one identity these tests follow, with its observation."""
    body = {"check": "cpu", "host": "web-1", "status": status, "timestamp": ts, **attrs}
    return Outgoing(
        "bigpanda",
        "key-1",
        "cpu\x1fweb-1",
        jsonio.dumps(body),
        ts,
        Observation(status, dedup, policy),
    )


@dataclass
class Sent:
    """One alert that would reach BigPanda."""

    status: str
    body: dict[str, Any]
    timestamp: int


@dataclass
class Identity:
    """One identity's stored row, fed alerts and ticks as a backend would feed them."""

    policy: StateConfig = PLAIN
    row: AlertState | None = None
    sent: list[Sent] = field(default_factory=list)
    suppressed: list[SuppressReason] = field(default_factory=list)

    def post(
        self,
        status: str,
        at: float,
        *,
        ts: int | None = None,
        dedup: str = "",
        policy: StateConfig | None = None,
        **attrs: Any,
    ) -> Verdict:
        """Observe one alert at wall time ``T0 + at`` (event time ``TS0 + at`` unless given)."""
        item = alert(
            status, TS0 + int(at) if ts is None else ts, policy or self.policy, dedup, **attrs
        )
        verdict = observe(self.row, item, item.state or Observation("", "", PLAIN), T0 + at)
        self.row = verdict.row
        if verdict.queue is not None:
            assert verdict.suppressed is None
            self._record(verdict.queue)
        else:
            assert verdict.suppressed is not None
            self.suppressed.append(verdict.suppressed)
        return verdict

    def tick(self, at: float) -> TickVerdict:
        """Run the scheduler on the row at wall time ``T0 + at``."""
        assert self.row is not None
        verdict = tick(self.row, T0 + at)
        self.row = verdict.row
        if verdict.queue is not None:
            self._record(verdict.queue)
        return verdict

    def _record(self, item: Outgoing) -> None:
        body = jsonio.loads(item.payload)
        assert isinstance(body, dict)
        assert body["timestamp"] == item.timestamp  # the queue's timestamp is the alert's
        self.sent.append(Sent(body["status"], body, item.timestamp))

    @property
    def statuses(self) -> list[str]:
        return [s.status for s in self.sent]

    @property
    def stored(self) -> AlertState:
        assert self.row is not None
        return self.row


# --------------------------------------------------------------------------- deduplication


def test_the_first_alert_of_an_identity_is_queued_as_it_is() -> None:
    """A new identity's first alert goes out unchanged and creates its row."""
    ident = Identity()
    item = alert(CRIT, TS0, PLAIN)
    assert item.state is not None
    verdict = observe(None, item, item.state, T0)
    assert verdict.queue is item
    assert verdict.suppressed is None
    row = verdict.row
    assert row.key == ("bigpanda", "key-1", "cpu\x1fweb-1")
    assert (row.status, row.queued_status, row.queued_dedup) == (CRIT, CRIT, "")
    assert (row.first_seen, row.seen, row.sent) == (T0, T0, T0)
    assert (row.suppressed, row.flapping, row.transitions) == (0, False, [])
    assert row.payload == b""  # no auto-resolve or flap release could need it
    assert row.retention == PLAIN.retention
    ident.post(OK, 0)
    assert ident.statuses == [OK]  # a first ok is news too


def test_a_repeat_within_repeat_interval_is_suppressed_as_a_duplicate() -> None:
    """The same status again and again within the hour: one alert, the rest counted."""
    ident = Identity()
    for minute in range(60):
        ident.post(CRIT, minute * 60, usage_user=50 + minute)
    assert ident.statuses == [CRIT]
    assert ident.suppressed == ["duplicate"] * 59
    row = ident.stored
    assert row.suppressed == 59
    assert row.seen == T0 + 59 * 60
    assert row.sent == T0
    # Deduplication alone never sends a stored alert: the row keeps none (small rows).
    assert row.payload == b""


def test_a_row_keeps_the_latest_alert_when_the_scheduler_may_send_it() -> None:
    """With auto-resolve or flap damping the row holds the latest alert, which they send."""
    for policy in (RESOLVE, FLAP):
        ident = Identity(policy)
        for minute in range(3):
            ident.post(CRIT, minute * 60, usage_user=50 + minute)
        latest = jsonio.loads(ident.stored.payload)
        assert isinstance(latest, dict)
        assert latest["usage_user"] == 52


def test_after_repeat_interval_the_latest_alert_is_sent_as_a_reminder() -> None:
    """The first repeat after the hour goes out with its current values; the hour restarts."""
    ident = Identity()
    ident.post(CRIT, 0, usage_user=10)
    ident.post(CRIT, HOUR - 1, usage_user=20)
    ident.post(CRIT, HOUR, usage_user=30)
    ident.post(CRIT, HOUR + 60, usage_user=40)
    ident.post(CRIT, 2 * HOUR - 1, usage_user=50)
    ident.post(CRIT, 2 * HOUR, usage_user=60)
    assert [s.body["usage_user"] for s in ident.sent] == [10, 30, 60]
    assert ident.sent[1].timestamp == TS0 + int(HOUR)
    assert ident.suppressed == ["duplicate"] * 3
    assert ident.stored.sent == T0 + 2 * HOUR


def test_a_status_change_is_queued_at_once() -> None:
    """critical → warning → critical → ok within seconds: every change goes out."""
    ident = Identity()
    for at, status in enumerate([CRIT, CRIT, WARN, WARN, CRIT, OK, OK]):
        ident.post(status, at)
    assert ident.statuses == [CRIT, WARN, CRIT, OK]
    assert ident.suppressed == ["duplicate"] * 3
    assert ident.stored.since == T0 + 5  # the ok's arrival, on a clock that ran with the wall


def test_dedup_on_values_count_metric_values_do_not() -> None:
    """A changed ``dedup_on`` value is news; a changed metric field is not."""
    ident = Identity(replace(PLAIN, dedup_on=("description",)))
    ident.post(CRIT, 0, dedup='["disk 91%"]', usage=91)
    ident.post(CRIT, 60, dedup='["disk 91%"]', usage=92)  # only the metric moved
    ident.post(CRIT, 120, dedup='["disk full"]', usage=93)  # the description changed
    ident.post(CRIT, 180, dedup='["disk full"]', usage=99)
    assert [s.body["usage"] for s in ident.sent] == [91, 93]
    assert ident.suppressed == ["duplicate", "duplicate"]
    assert ident.stored.queued_dedup == '["disk full"]'


def test_repeat_interval_zero_deduplicates_nothing() -> None:
    """``repeat_interval: 0``: every alert is queued, repeats and oks too."""
    ident = Identity(replace(PLAIN, repeat_interval=0.0))
    for at, status in enumerate([CRIT, CRIT, CRIT, OK, OK]):
        ident.post(status, at)
    assert ident.statuses == [CRIT, CRIT, CRIT, OK, OK]
    assert ident.suppressed == []


def test_an_ok_is_never_repeated_as_a_reminder() -> None:
    """BigPanda resolved the incident already: a day of oks after the first sends nothing."""
    ident = Identity()
    ident.post(CRIT, 0)
    ident.post(OK, 60)
    for hour in range(1, 25):
        ident.post(OK, hour * HOUR)
    assert ident.statuses == [CRIT, OK]
    assert ident.suppressed == ["duplicate"] * 24


def test_observe_does_not_change_the_row_it_is_given() -> None:
    """The verdict's row is a new one: a backend's cached row stays as it was until it stores."""
    ident = Identity(FLAP)
    ident.post(CRIT, 0)
    ident.post(OK, 1)
    before = ident.stored
    snapshot = before.copy()
    after = observe(before, alert(CRIT, TS0 + 2, FLAP), Observation(CRIT, "", FLAP), T0 + 2).row
    assert before == snapshot
    assert after.transitions is not before.transitions
    assert len(after.transitions) == 2


def test_the_row_takes_the_latest_policy() -> None:
    """The scheduler has no route to ask, so the row keeps the last seen resolve/hold/retention."""
    ident = Identity()
    ident.post(CRIT, 0)
    assert (ident.stored.resolve_after, ident.stored.due) == (0.0, None)
    ident.post(CRIT, 1, policy=RESOLVE)
    assert ident.stored.resolve_after == 600.0
    assert ident.stored.due == T0 + 1 + 600.0


# --------------------------------------------------------------------------- the identity clock


def test_event_time_that_runs_faster_than_the_wall_drives_the_repeat_interval() -> None:
    """A backlog of one-minute runs replayed in seconds: reminders follow the event time."""
    ident = Identity()
    for run in range(121):  # two hours of runs, arriving 10 ms apart
        ident.post(CRIT, run * 0.01, ts=TS0 + run * 60)
    assert [s.timestamp - TS0 for s in ident.sent] == [0, 3600, 7200]
    assert ident.stored.clock == pytest.approx(T0 + 7200)
    assert ident.stored.seen == pytest.approx(T0 + 1.2)


def test_wall_time_counts_when_event_time_stands_still() -> None:
    """A source repeating one timestamp (a stuck clock) still gets reminders by the wall."""
    ident = Identity()
    for minute in range(61):
        ident.post(CRIT, minute * 60, ts=TS0)
    assert len(ident.sent) == 2


def test_event_time_going_backwards_does_not_rewind_the_clock() -> None:
    """An old event is not a reason to forget time that passed, nor to count it twice."""
    ident = Identity()
    ident.post(CRIT, 0, ts=TS0)
    ident.post(CRIT, 1, ts=TS0 + 3000)  # clock: +3000
    ident.post(CRIT, 2, ts=TS0)  # an old event: +1 (the wall), not -3000
    assert ident.stored.clock == pytest.approx(T0 + 3001)
    # Back to the newest time: only what passed since the newest counts.
    ident.post(CRIT, 3, ts=TS0 + 3598)
    assert ident.stored.clock == pytest.approx(T0 + 3599)
    assert ident.statuses == [CRIT]
    ident.post(CRIT, 4, ts=TS0 + 3599)
    assert ident.statuses == [CRIT, CRIT]


def test_wall_time_going_backwards_does_not_rewind_the_clock() -> None:
    """A wall clock stepped back (NTP) leaves the identity clock where it was."""
    ident = Identity()
    ident.post(CRIT, 100, ts=TS0)
    ident.post(CRIT, 50, ts=TS0)
    assert ident.stored.clock == T0 + 100
    assert ident.stored.seen == T0 + 50


def test_event_time_drives_the_flap_window() -> None:
    """Changes whose own timestamps are 200 s apart are not flapping, however fast they arrive."""
    ident = Identity(FLAP)
    for n in range(12):
        ident.post(CRIT if n % 2 == 0 else OK, n * 0.1, ts=TS0 + n * 200)
    assert ident.suppressed == []
    assert len(ident.sent) == 12
    assert not ident.stored.flapping
    # The same changes with the wall's spacing (1 s) would be flapping.
    fast = Identity(FLAP)
    for n in range(12):
        fast.post(CRIT if n % 2 == 0 else OK, n, ts=TS0)
    assert fast.stored.flapping


# --------------------------------------------------------------------------- flap damping


def _flap(ident: Identity, changes: int, *, every: float = 10.0, start: float = 0.0) -> float:
    """Post crit, ok, crit, ... with ``changes`` status changes; return the last post's time."""
    at = start
    for n in range(changes + 1):
        at = start + n * every
        ident.post(CRIT if n % 2 == 0 else OK, at)
    return at


def test_more_than_transitions_changes_in_the_window_mark_the_identity_flapping() -> None:
    """Four changes go out as usual; the fifth is sent once with flapping "true", then held."""
    ident = Identity(FLAP)
    last = _flap(ident, 8)
    assert ident.statuses == [CRIT, OK, CRIT, OK, CRIT, OK]
    assert [s.body.get("flapping") for s in ident.sent] == [None] * 5 + ["true"]
    assert ident.suppressed == ["flapping"] * 3
    row = ident.stored
    assert row.flapping
    assert row.status == CRIT  # the latest observed, held
    assert row.queued_status == OK
    assert row.due == T0 + last + 300.0  # the hold, from the last change


def test_changes_spread_wider_than_the_window_do_not_flap() -> None:
    """Eight changes, each 200 s apart: never more than four within ten minutes."""
    ident = Identity(FLAP)
    _flap(ident, 8, every=200.0)
    assert len(ident.sent) == 9
    assert not ident.stored.flapping


def test_repeats_while_flapping_are_held_and_counted_as_flapping() -> None:
    """Repeats of the held status within the hold are counted under "flapping"."""
    ident = Identity(FLAP)
    last = _flap(ident, 5)
    assert ident.stored.flapping
    ident.post(OK, last + 100)
    ident.post(OK, last + 299)
    assert ident.suppressed[-2:] == ["flapping", "flapping"]
    assert ident.stored.suppressed == 2


def test_a_flapping_identity_is_released_on_arrival_after_the_hold() -> None:
    """The status held for ``hold``: the next alert goes out with flapping "false"."""
    ident = Identity(FLAP)
    last = _flap(ident, 6)  # flapping at the 5th change, the 6th (crit) held
    assert ident.statuses[-1] == OK
    ident.post(CRIT, last + 300, usage=1)
    assert ident.statuses[-1] == CRIT
    assert ident.sent[-1].body["flapping"] == "false"
    assert ident.sent[-1].body["usage"] == 1  # the arriving alert, current values
    row = ident.stored
    assert (row.flapping, row.transitions, row.queued_status) == (False, [], CRIT)
    # Then plain deduplication again.
    ident.post(CRIT, last + 360)
    assert ident.suppressed[-1] == "duplicate"


def test_a_flapping_identity_is_released_by_the_scheduler_after_the_hold() -> None:
    """No further alert: the tick at the due time sends the held status with flapping "false"."""
    ident = Identity(FLAP)
    last = _flap(ident, 6)
    due = ident.stored.due
    assert due == T0 + last + 300
    early = ident.tick(last + 299)
    assert (early.kind, early.queue) == (None, None)
    assert ident.stored.flapping
    released = ident.tick(last + 300)
    assert released.kind == "released"
    assert ident.statuses[-1] == CRIT
    assert ident.sent[-1].body["flapping"] == "false"
    assert ident.sent[-1].timestamp == TS0 + int(last)  # the held alert's own timestamp
    row = ident.stored
    assert (row.flapping, row.queued_status, row.sent) == (False, CRIT, T0 + last + 300)
    again = ident.tick(last + 400)
    assert (again.kind, again.queue) == (None, None)
    # The release counts as sent for deduplication.
    ident.post(CRIT, last + 500)
    assert ident.suppressed[-1] == "duplicate"
    assert len(ident.sent) == 7


def test_a_release_sends_the_held_alert_with_its_own_timestamp() -> None:
    """The held alert arrived out of order (an older timestamp): it is queued as it was stamped."""
    ident = Identity(FLAP)
    last = _flap(ident, 5)
    ident.post(CRIT, last + 1, ts=TS0 + int(last) - 30)  # held, and older than the newest
    assert ident.stored.timestamp == TS0 + int(last)  # the clock's reference does not go back
    ident.tick(ident.stored.due - T0 if ident.stored.due else 0)
    assert ident.sent[-1].body["flapping"] == "false"
    assert ident.sent[-1].timestamp == TS0 + int(last) - 30  # Identity._record checks the body


def test_a_change_after_the_held_status_outlasted_the_hold_is_sent_at_once() -> None:
    """Flapping ended when one status held for ``hold``, whether or not the scheduler ran yet.

    The next change is news: it goes out at once, with flapping "false", not
    held for another ``hold``.
    """
    ident = Identity(FLAP)
    last = _flap(ident, 6)  # crit held since ``last``
    ident.post(OK, last + 1000)
    assert len(ident.sent) == 7
    assert ident.statuses[-1] == OK
    assert ident.sent[-1].body["flapping"] == "false"
    assert not ident.stored.flapping
    assert ident.stored.transitions == [pytest.approx(T0 + last + 1000)]


def test_flapping_is_released_at_once_when_damping_is_turned_off() -> None:
    """A route whose flap damping was removed (a reload) sends the held state on the next alert."""
    ident = Identity(FLAP)
    last = _flap(ident, 6)
    ident.post(CRIT, last + 1, policy=PLAIN)
    assert ident.sent[-1].status == CRIT
    assert ident.sent[-1].body["flapping"] == "false"
    assert not ident.stored.flapping


def test_twenty_alternations_in_a_minute_reach_bigpanda_a_bounded_number_of_times() -> None:
    """The issue's flapping case: bounded alerts, and the last one sent is the last one posted."""
    ident = Identity(FLAP)
    statuses = [CRIT if n % 2 == 0 else OK for n in range(40)]  # 20 crit/ok pairs
    for n, status in enumerate(statuses):
        ident.post(status, n * 1.5)
    while (due := ident.stored.due) is not None and due < T0 + 86400:
        ident.tick(due - T0)
        if ident.statuses[-1] == statuses[-1]:
            break
    assert len(ident.sent) <= FLAP.flap.transitions + 3
    assert ident.statuses[-1] == statuses[-1]
    assert [s.body.get("flapping") for s in ident.sent][-2:] == ["true", "false"]
    assert not ident.stored.flapping


# --------------------------------------------------------------------------- auto-resolve


def test_a_silent_firing_identity_is_resolved_once_after_resolve_after() -> None:
    """Not seen for ``resolve_after``: its last alert is sent as ok, stamped now, once."""
    ident = Identity(RESOLVE)
    ident.post(CRIT, 0, usage=97, description="cpu high")
    ident.post(CRIT, 60, usage=98, description="cpu high")
    assert ident.stored.due == T0 + 60 + 600
    early = ident.tick(659)
    assert (early.kind, early.queue, early.row is not None) == (None, None, True)
    resolved = ident.tick(660.5)
    assert resolved.kind == "resolved"
    sent = ident.sent[-1]
    assert sent.status == OK
    assert sent.timestamp == int(T0 + 660.5)
    assert sent.body == {
        "check": "cpu",
        "host": "web-1",
        "status": OK,
        "timestamp": int(T0 + 660.5),
        "usage": 98,
        "description": "cpu high",
        "resolved_by": "forwarder",
    }
    row = ident.stored
    assert (row.status, row.queued_status, row.sent) == (OK, OK, T0 + 660.5)
    assert row.seen == T0 + 60  # resolving is not seeing
    assert row.due == T0 + 60 + RESOLVE.retention
    second = ident.tick(700)
    assert (second.kind, second.queue) == (None, None)
    assert len(ident.sent) == 2


def test_after_an_auto_resolve_a_late_ok_is_a_duplicate_and_a_new_problem_is_sent() -> None:
    """BigPanda has the ok already; the same problem firing again is a change."""
    ident = Identity(RESOLVE)
    ident.post(CRIT, 0)
    ident.tick(600)
    ident.post(OK, 700)
    assert ident.suppressed == ["duplicate"]
    ident.post(CRIT, 800)
    assert ident.statuses == [CRIT, OK, CRIT]
    assert "resolved_by" not in ident.sent[-1].body


def test_an_ok_identity_is_never_auto_resolved() -> None:
    """Only firing identities are resolved; an ok one just waits for its retention."""
    ident = Identity(RESOLVE)
    ident.post(CRIT, 0)
    ident.post(OK, 10)
    assert ident.stored.due == T0 + 10 + RESOLVE.retention
    assert ident.tick(5000).kind is None
    assert ident.statuses == [CRIT, OK]


def test_a_flapping_identity_that_goes_silent_is_resolved_with_flapping_false() -> None:
    """Auto-resolve ends the flapping too, in the one alert it sends."""
    policy = replace(FLAP, resolve_after=120.0, flap=replace(FLAP.flap, hold=3600.0))
    ident = Identity(policy)
    last = _flap(ident, 6)
    assert ident.stored.due == T0 + last + 120
    verdict = ident.tick(last + 120)
    assert verdict.kind == "resolved"
    assert ident.sent[-1].body["flapping"] == "false"
    assert ident.sent[-1].status == OK
    assert not ident.stored.flapping


# --------------------------------------------------------------------------- retention, next_due


def test_an_ok_row_expires_after_retention() -> None:
    """Resolved and unseen for ``retention``: the row is deleted, nothing sent."""
    ident = Identity()
    ident.post(OK, 0)
    assert ident.stored.due == T0 + PLAIN.retention
    assert ident.tick(PLAIN.retention - 1).kind is None
    expired = ident.tick(PLAIN.retention)
    assert (expired.kind, expired.row, expired.queue) == ("expired", None, None)
    assert len(ident.sent) == 1


def test_a_firing_row_without_resolve_after_never_expires() -> None:
    """No one resolves it and it may fire again: its row stays, with nothing due."""
    ident = Identity()
    ident.post(CRIT, 0)
    assert ident.stored.due is None
    verdict = ident.tick(10 * 365 * 86400.0)
    assert (verdict.kind, verdict.queue) == (None, None)
    assert verdict.row is not None
    assert verdict.row.status == CRIT


def test_an_auto_resolved_row_expires_after_retention_from_its_last_sighting() -> None:
    """Auto-resolve, then retention counted from when the source last sent it."""
    ident = Identity(RESOLVE)
    ident.post(CRIT, 0)
    ident.tick(600)
    assert ident.tick(RESOLVE.retention - 1).kind is None
    assert ident.tick(RESOLVE.retention).kind == "expired"


def test_a_flapping_row_is_not_expired_before_its_held_state_is_sent() -> None:
    """Even with a hold longer than the retention, the held ok reaches BigPanda before deletion."""
    policy = replace(FLAP, retention=600.0, flap=replace(FLAP.flap, hold=3600.0))
    ident = Identity(policy)
    ident.post(OK, 0)
    last = _flap(ident, 5, start=10)  # the 5th change (crit) flaps, the 6th (ok) is held
    assert ident.statuses[-1] == CRIT
    assert ident.stored.status == OK
    for _ in range(5):
        due = ident.stored.due
        assert due is not None
        verdict = ident.tick(due - T0)
        if verdict.kind == "expired":
            break
    assert ident.statuses[-1] == OK
    assert ident.sent[-1].body["flapping"] == "false"
    assert ident.sent[-1].timestamp == TS0 + int(last)
    assert ident.row is None


@pytest.mark.parametrize(
    ("policy", "status", "flapping", "expected"),
    [
        pytest.param(PLAIN, CRIT, False, None, id="firing-no-resolve"),
        pytest.param(RESOLVE, CRIT, False, 100.0 + 600.0, id="firing-resolve"),
        pytest.param(PLAIN, OK, False, 100.0 + 86400.0, id="ok-retention"),
        pytest.param(PLAIN, CRIT, True, 100.0 + 250.0, id="flapping-hold"),
        pytest.param(RESOLVE, CRIT, True, 100.0 + 250.0, id="flapping-before-resolve"),
        pytest.param(
            replace(RESOLVE, resolve_after=60.0), CRIT, True, 100.0 + 60.0, id="resolve-first"
        ),
        pytest.param(PLAIN, OK, True, 100.0 + 250.0, id="flapping-ok"),
        pytest.param(
            replace(PLAIN, retention=60.0), OK, True, 100.0 + 250.0, id="flapping-ok-outlasts"
        ),
    ],
)
def test_next_due(policy: StateConfig, status: str, flapping: bool, expected: float | None) -> None:
    """When the scheduler must look at a row: the first of release, resolve and expiry."""
    row = AlertState(
        "t",
        "k",
        "i",
        status,
        "",
        b"{}",
        0,
        first_seen=0.0,
        seen=100.0,
        clock=1000.0,  # the identity clock ran 900 s ahead of the wall
        since=950.0,  # held for 50 s of it: 250 s of the 300 s hold left
        flapping=flapping,
        resolve_after=policy.resolve_after,
        hold=300.0,
        retention=policy.retention,
    )
    assert next_due(row) == expected


# --------------------------------------------------------------------------- properties

POLICIES = st.sampled_from(
    [
        PLAIN,
        FLAP,
        RESOLVE,
        replace(FLAP, resolve_after=120.0),
        replace(FLAP, repeat_interval=0.0),
        replace(PLAIN, flap=FlapConfig(transitions=1, window=60.0, hold=30.0)),
        replace(PLAIN, retention=60.0, flap=FlapConfig(transitions=2, window=600.0, hold=900.0)),
    ]
)
POSTS = st.lists(
    st.tuples(
        st.sampled_from([CRIT, WARN, OK]),
        st.floats(min_value=0.0, max_value=400.0),  # wall seconds since the previous post
        st.integers(min_value=-300, max_value=400),  # event seconds since the previous post
    ),
    min_size=1,
    max_size=60,
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(policy=POLICIES, posts=POSTS)
def test_the_latest_state_always_reaches_bigpanda(
    policy: StateConfig, posts: list[tuple[str, float, int]]
) -> None:
    """Any sequence, any timing: the clock never runs back, an identity that is not
    flapping has sent its latest status, an ok is never repeated, and once the
    scheduler has done what is due the last alert sent is the row's status."""
    ident = Identity(policy)
    at, ts, clock = 0.0, TS0, 0.0
    for status, wall, event in posts:
        at += wall
        ts += event
        ident.post(status, at, ts=ts)
        row = ident.stored
        assert row.clock >= clock
        assert row.since <= row.clock
        clock = row.clock
        if not row.flapping:
            assert row.queued_status == row.status == ident.statuses[-1]
    if policy.repeat_interval > 0:
        for before, after in zip(ident.sent, ident.sent[1:], strict=False):
            assert not (before.status == after.status == OK) or "flapping" in after.body
    for _ in range(5):
        row = ident.stored
        if row.due is None or not (row.flapping or row.status != OK):
            break
        ident.tick(row.due - T0)
    row = ident.stored
    assert not row.flapping
    assert row.queued_status == row.status == ident.statuses[-1]
    if policy.resolve_after > 0:
        assert row.status == OK
