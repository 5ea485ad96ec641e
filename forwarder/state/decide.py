"""The state machine of one identity: pure functions, the same for every backend.

A backend calls :func:`observe` for each alert of a put, in order, inside the
transaction that queues it, and :func:`tick` for each row whose ``due`` time
has come; it stores the row each returns and queues what each says to queue,
in that same transaction. Nothing here does I/O or reads a clock.

The three stages, in the order they decide (see the README, "Alert state"):

1. **Flap damping** (``flap.transitions`` > 0). More than ``transitions``
   status changes within ``window`` mark the identity flapping: the alert that
   tipped it is sent with ``flapping: "true"``, later ones are held. Once one
   status has held for ``hold`` (checked at arrival and by the scheduler), the
   latest alert is sent with ``flapping: "false"``; so is a change arriving
   after a status held that long (a lagging scheduler changes nothing).
2. **Deduplication** (``repeat_interval`` > 0). An alert whose status and
   ``dedup_on`` values equal the last queued ones is suppressed until
   ``repeat_interval`` has passed; the first such alert after that is sent as
   a reminder. An ``ok`` is never repeated: BigPanda has resolved the
   incident already, and a reminder of health is noise.
3. **Auto-resolve** (``resolve_after`` > 0, scheduler only). A non-ok
   identity not seen for ``resolve_after`` gets its latest alert sent with
   ``status: ok``, the current timestamp and ``resolved_by: "forwarder"``.

Rows resolved (ok) and unseen for ``retention`` are deleted by the scheduler;
a flapping one only once its held status is released.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from forwarder import jsonio
from forwarder.model import Outgoing
from forwarder.state.record import (
    KEEP_TRANSITIONS,
    OK,
    AlertState,
    Observation,
    SuppressReason,
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one observation does: the row to store, and what to queue or why not."""

    row: AlertState
    queue: Outgoing | None
    suppressed: SuppressReason | None


TickKind = Literal["released", "resolved", "expired"]


@dataclass(frozen=True, slots=True)
class TickVerdict:
    """What the scheduler does with a due row.

    ``row`` is the row to store (None: delete it); ``queue`` the alert to
    queue, if any; ``kind`` what happened (None: nothing was due after all,
    store ``row`` for its new ``due``).
    """

    row: AlertState | None
    queue: Outgoing | None
    kind: TickKind | None


def observe(row: AlertState | None, item: Outgoing, obs: Observation, now: float) -> Verdict:
    """Decide about ``item`` (observed at wall time ``now``) given its identity's ``row``.

    ``row`` is not changed; the verdict's row is a new one.
    """
    policy = obs.policy
    # The latest alert is kept only when the scheduler may have to send it
    # again (an auto-resolve, a flap release): otherwise a row costs a few
    # hundred bytes, not the size of an alert, and the store stays small.
    keep = policy.resolve_after > 0 or policy.flap.transitions > 0
    if row is None:
        new = AlertState(
            item.target,
            item.app_key,
            item.identity,
            obs.status,
            obs.dedup,
            item.payload if keep else b"",
            item.timestamp,
            first_seen=now,
            seen=now,
            clock=now,
            since=now,
        )
        _apply_policy(new, obs)
        return _queued(new, item, obs.dedup, now)
    new = row.copy()
    # The identity's clock: the larger of the wall and the event time passed.
    step = max(now - row.seen, float(item.timestamp - row.timestamp), 0.0)
    t = new.clock = row.clock + step
    new.seen = now
    new.payload = item.payload if keep or row.flapping else b""
    new.timestamp = max(row.timestamp, item.timestamp)
    new.dedup = obs.dedup
    _apply_policy(new, obs)
    changed = obs.status != row.status
    if changed:
        new.status = obs.status
        new.since = t
        new.transitions.append(t)
    flap = policy.flap
    if flap.transitions > 0:
        new.transitions = [x for x in new.transitions if t - x < flap.window][
            -(flap.transitions + 1) :
        ]
        if new.flapping:
            # Held until the status (before this alert) has held for ``hold``: the
            # scheduler releases at that moment, and an alert arriving later (the
            # scheduler lagged, or was down) is judged as if it had.
            if t - row.since < flap.hold:
                return _suppressed(new, "flapping")
            new.flapping = False
            new.transitions = [t] if changed else []
            return _queued(new, _patched(item, {"flapping": "false"}), obs.dedup, now)
        if changed and len(new.transitions) > flap.transitions:
            new.flapping = True
            return _queued(new, _patched(item, {"flapping": "true"}), obs.dedup, now)
    else:
        if new.flapping:  # damping was turned off since: release at once
            new.flapping = False
            new.transitions = []
            return _queued(new, _patched(item, {"flapping": "false"}), obs.dedup, now)
        del new.transitions[:-KEEP_TRANSITIONS]
    if (
        policy.repeat_interval > 0
        and new.queued_at is not None
        and obs.status == new.queued_status
        and obs.dedup == new.queued_dedup
        and (obs.status == OK or t - new.queued_at < policy.repeat_interval)
    ):
        return _suppressed(new, "duplicate")
    return _queued(new, item, obs.dedup, now)


def tick(row: AlertState, now: float) -> TickVerdict:
    """What the scheduler does with ``row`` at wall time ``now``; ``row`` is not changed."""
    t = row.clock + max(now - row.seen, 0.0)
    if not row.payload and (row.flapping or row.resolve_after > 0):
        # Stored under a policy that needed no alert (changed by a reload since):
        # nothing to send until the identity's next alert brings one.
        new = row.copy()
        new.flapping = False
        new.resolve_after = 0.0
        new.due = next_due(new)
        return TickVerdict(new, None, None)
    if row.flapping and t - row.since >= row.hold:
        new = row.copy()
        new.flapping = False
        new.transitions = []
        item = _patched(_outgoing(row, row.timestamp), {"flapping": "false"})
        _mark_queued(new, row.status, row.dedup, t, now)
        return TickVerdict(new, item, "released")
    if row.status != OK and row.resolve_after > 0 and now - row.seen >= row.resolve_after:
        new = row.copy()
        attrs = {"status": OK, "timestamp": int(now), "resolved_by": "forwarder"}
        if row.flapping:
            attrs["flapping"] = "false"
        item = _patched(_outgoing(row, int(now)), attrs)
        new.status = OK
        new.since = t
        new.flapping = False
        new.transitions = []
        _mark_queued(new, OK, row.dedup, t, now)
        return TickVerdict(new, item, "resolved")
    if row.status == OK and not row.flapping and now - row.seen >= row.retention:
        # A flapping row still owes BigPanda its held status: released first.
        return TickVerdict(None, None, "expired")
    new = row.copy()
    new.due = next_due(new)
    return TickVerdict(new, None, None)


def next_due(row: AlertState) -> float | None:
    """The wall time the scheduler must look at ``row`` next, or None."""
    due: float | None = None
    if row.flapping:
        # The hold is in the identity's clock; it runs at wall speed while silent.
        due = row.seen + max(0.0, row.since + row.hold - row.clock)
    if row.status != OK:
        if row.resolve_after > 0:
            at = row.seen + row.resolve_after
            due = at if due is None else min(due, at)
        return due
    if due is not None:  # expiry waits for the release (tick keeps a flapping row)
        return due
    return row.seen + row.retention


def _apply_policy(row: AlertState, obs: Observation) -> None:
    policy = obs.policy
    row.resolve_after = policy.resolve_after
    row.hold = policy.flap.hold
    row.retention = policy.retention


def _mark_queued(row: AlertState, status: str, dedup: str, t: float, now: float) -> None:
    row.queued_status = status
    row.queued_dedup = dedup
    row.queued_at = t
    row.sent = now
    row.due = next_due(row)


def _queued(row: AlertState, item: Outgoing, dedup: str, now: float) -> Verdict:
    _mark_queued(row, row.status, dedup, row.clock, now)
    return Verdict(row, item, None)


def _suppressed(row: AlertState, reason: SuppressReason) -> Verdict:
    row.suppressed += 1
    row.due = next_due(row)
    return Verdict(row, None, reason)


def _outgoing(row: AlertState, timestamp: int) -> Outgoing:
    return Outgoing(row.target, row.app_key, row.identity, row.payload, timestamp)


def _patched(item: Outgoing, attrs: dict[str, Any]) -> Outgoing:
    """``item`` with ``attrs`` set in its alert object (a rare path: flaps and resolves)."""
    alert = jsonio.loads(item.payload)
    if not isinstance(alert, dict):  # never: mapping always makes an object
        alert = {}
    alert.update(attrs)
    # The queued timestamp is the alert's own: a release sends the latest alert,
    # whose timestamp may be older than the row's newest (an out-of-order event).
    ts = alert.get("timestamp")
    if not isinstance(ts, int) or isinstance(ts, bool):
        ts = item.timestamp
    return Outgoing(item.target, item.app_key, item.identity, jsonio.dumps(alert), ts)
