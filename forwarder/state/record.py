"""What the alert-state store keeps per identity, and what the pipeline tells it per alert.

One :class:`AlertState` row per (target, app key, identity). Times come in
two kinds:

* *wall* times (``first_seen``, ``seen``, ``sent``, ``due``): Unix seconds
  of this process's clock, for retention, auto-resolve and the API;
* *state* times (``clock``, ``since``, ``queued_at``, ``transitions``): the
  identity's own clock, which advances, at each observation, by the larger of
  the wall time and the event time that passed since the previous one. With a
  source whose clock agrees with ours the two are the same; when a source
  replays a backlog (InfluxDB catching up on missed task runs, Kapacitor
  replaying a batch), its own timestamps say how much time passed, so the
  repeat interval and the flap window mean the same as they would have live.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from forwarder import jsonio
from forwarder.config import StateConfig
from forwarder.model import Identity

OK: Final = "ok"

SuppressReason = Literal["duplicate", "flapping"]
SUPPRESS_REASONS: Final[tuple[SuppressReason, ...]] = ("duplicate", "flapping")

# How many transition times a row keeps at most when flap damping is off (for
# the API); with damping on, ``flap.transitions + 1`` within the window.
KEEP_TRANSITIONS: Final = 10


@dataclass(slots=True)  # not frozen: one per mapped alert on the ingest hot path
class Observation:
    """What the state stage adds to a mapped alert: its status, dedup values and policy.

    ``dedup`` is the values of the policy's ``dedup_on`` keys, encoded as one
    string ("" when the policy lists none), compared for equality only.
    """

    status: str
    dedup: str
    policy: StateConfig


@dataclass(slots=True)
class AlertState:
    """One identity's stored state (a row of the store; see the module docstring for times).

    ``status`` and ``dedup`` are the latest observed; ``queued_status``,
    ``queued_dedup`` and ``queued_at`` what was last queued (None: never).
    ``payload`` is the latest observed alert (JSON, no app key); an
    auto-resolve or a flap release sends it. ``timestamp`` is the newest event
    timestamp seen (the identity clock's reference; an out-of-order event
    does not move it back), so it may be later than the payload's own.
    ``resolve_after``, ``hold`` and ``retention`` are the policy the
    identity was last seen with, for the scheduler, which has no route to ask.
    ``due`` is when the scheduler must look at the row next (None: never).
    """

    target: str
    app_key: str
    identity: str
    status: str
    dedup: str
    payload: bytes
    timestamp: int
    first_seen: float
    seen: float
    clock: float
    since: float
    queued_status: str | None = None
    queued_dedup: str | None = None
    queued_at: float | None = None
    sent: float | None = None
    transitions: list[float] = field(default_factory=list)
    flapping: bool = False
    suppressed: int = 0
    resolve_after: float = 0.0
    hold: float = 0.0
    retention: float = 0.0
    due: float | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        """The row's key: (target, app key, identity)."""
        return (self.target, self.app_key, self.identity)

    def copy(self) -> AlertState:
        """An independent copy (its transitions too): changed without touching a cached row."""
        return AlertState(
            self.target,
            self.app_key,
            self.identity,
            self.status,
            self.dedup,
            self.payload,
            self.timestamp,
            self.first_seen,
            self.seen,
            self.clock,
            self.since,
            self.queued_status,
            self.queued_dedup,
            self.queued_at,
            self.sent,
            list(self.transitions),
            self.flapping,
            self.suppressed,
            self.resolve_after,
            self.hold,
            self.retention,
            self.due,
        )


@dataclass(frozen=True, slots=True)
class AlertView:
    """One identity as ``GET /api/v1/alerts`` and ``forwarder alerts`` show it (no app key)."""

    target: str
    check: str
    host: str
    primary: str
    status: str
    since: float
    first_seen: float
    last_seen: float
    last_sent: float | None
    flapping: bool
    suppressed: int
    transitions: int

    def to_json(self) -> dict[str, Any]:
        """JSON-ready, times as Unix seconds."""
        return {
            "target": self.target,
            "check": self.check,
            "host": self.host,
            "primary": self.primary,
            "status": self.status,
            "since": self.since,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
            "last_sent": self.last_sent,
            "flapping": self.flapping,
            "suppressed": self.suppressed,
            "recent_transitions": self.transitions,
        }


# The attributes BigPanda takes as the primary property when an alert names
# none, in its order (BigPanda's alert API reference).
_PRIMARY_DEFAULTS: Final = ("host", "service", "application", "device")


def view(row: AlertState) -> AlertView:
    """How ``row`` is shown: check, host and primary value read from its latest alert.

    A row kept without its alert (no auto-resolve or flap damping needs it)
    is shown from its identity, which holds the same values. ``since`` is
    converted from the identity's clock to a wall time.
    """
    if not row.payload:
        return _view(row, _from_identity(row.identity))
    try:
        alert = jsonio.loads(row.payload)
    except ValueError:
        alert = {}
    if not isinstance(alert, dict):
        alert = {}
    return _view(row, alert)


def _from_identity(key: str) -> dict[str, Any]:
    """The alert keys an identity key holds (see :class:`forwarder.model.Identity`)."""
    ident = Identity.from_key(key)
    check, parts = ident.check, ident.parts
    alert: dict[str, Any] = {"check": check, **dict(zip(_PRIMARY_DEFAULTS, parts, strict=False))}
    if len(parts) > len(_PRIMARY_DEFAULTS):  # a configured primary property's value
        alert["primary_property"] = "_primary"
        alert["_primary"] = parts[len(_PRIMARY_DEFAULTS)]
    return alert


def _view(row: AlertState, alert: dict[str, Any]) -> AlertView:
    name = alert.get("primary_property")
    if not isinstance(name, str):
        name = next((k for k in _PRIMARY_DEFAULTS if alert.get(k)), "")
    primary = alert.get(name, "") if name else ""
    return AlertView(
        target=row.target,
        check=str(alert.get("check", "")),
        host=str(alert.get("host", "")),
        primary=str(primary),
        status=row.status,
        since=row.seen - (row.clock - row.since),
        first_seen=row.first_seen,
        last_seen=row.seen,
        last_sent=row.sent,
        flapping=row.flapping,
        suppressed=row.suppressed,
        transitions=len(row.transitions),
    )
