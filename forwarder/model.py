"""The plain data the forwarder moves: events, identities, queued alerts, dead letters.

Kapacitor alert-handler bodies, Kapacitor ``httpPost`` rows and InfluxDB 2.x
notification rows all become :class:`Event`, so routing and mapping never need
to know where an alert came from (except through ``source``). Mapping turns an
event into an :class:`Outgoing` alert; the queue hands it back as an
:class:`Entry`, or keeps it as a :class:`DeadLetter`. No I/O here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from forwarder import jsonio

if TYPE_CHECKING:
    from forwarder.state.record import Observation


class Level(enum.StrEnum):
    """Alert levels, as Kapacitor spells them.

    ``UNKNOWN`` stands for any level a source sends that has no Kapacitor
    equivalent (InfluxDB's ``unknown``); the default status map sends it as
    ``critical``, as Kapacitor's and Flux's BigPanda handlers do.
    """

    OK = "OK"
    INFO = "INFO"
    WARNING = "WARNING"
    CRITICAL = "CRITICAL"
    UNKNOWN = "UNKNOWN"


class Source(enum.StrEnum):
    """Which ingest format produced an event."""

    KAPACITOR = "kapacitor"
    HTTPPOST = "httppost"
    INFLUXDB = "influxdb"


@dataclass(slots=True)  # not frozen: frozen __init__ costs ~2 µs an event on the hot path
class Event:
    """One alert state change, independent of the format it arrived in.

    ``time`` is timezone-aware UTC. ``duration`` is in nanoseconds, as Kapacitor
    sends it. ``raw`` is the JSON object the event was parsed from (for alert
    bodies, the whole body; for ``httpPost`` rows, the row as a column map).
    """

    source: Source
    id: str
    message: str
    details: str
    level: Level
    time: datetime
    duration: int = 0
    name: str = ""
    task: str = ""
    group: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    fields: dict[str, Any] = field(default_factory=dict)
    previous_level: Level | None = None
    recoverable: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        """The template context: the event fields under their model names."""
        return {
            "source": self.source.value,
            "id": self.id,
            "message": self.message,
            "details": self.details,
            "level": self.level.value,
            "time": self.time,
            "duration": self.duration,
            "name": self.name,
            "task": self.task,
            "group": self.group,
            "tags": self.tags,
            "fields": self.fields,
            "previous_level": self.previous_level.value if self.previous_level else None,
            "recoverable": self.recoverable,
            "raw": self.raw,
        }


# The separator of an identity's parts in its stored form. A unit separator
# cannot occur in a sensible tag value, and the stored form is what existing
# queue files hold, so it must not change.
_SEP = "\x1f"


@dataclass(frozen=True, slots=True)
class Identity:
    """What makes two alerts states of the same BigPanda alert, for delivery order.

    BigPanda deduplicates on the primary and secondary properties; the keys it
    defaults to (``host``, ``service``, ``application``, ``device``) plus
    ``check`` approximate that well. ``parts`` are those values in order, with
    the configured primary and secondary property values after them.
    :attr:`key` is the stored form, one string, which the queue compares.
    """

    check: str
    parts: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The stored form: ``check`` and the parts, unit-separator joined."""
        return _SEP.join((self.check, *self.parts))

    @classmethod
    def from_key(cls, key: str) -> Identity:
        """The identity a stored key was made from."""
        check, *parts = key.split(_SEP)
        return cls(check, tuple(parts))


def identity_key(alert: Mapping[str, Any]) -> str:
    """The stored identity key of a mapped alert, built directly (hot path).

    Equal to ``Identity(check, parts).key`` for the same alert; building the
    string without the intermediate object saves a per-alert allocation.
    """
    get = alert.get
    key = (
        f"{get('check', '')}{_SEP}{get('host', '')}{_SEP}{get('service', '')}"
        f"{_SEP}{get('application', '')}{_SEP}{get('device', '')}"
    )
    primary = get("primary_property")
    if isinstance(primary, str):
        key += f"{_SEP}{get(primary, '')}"
    secondary = get("secondary_property")
    if isinstance(secondary, str):
        key += f"{_SEP}{get(secondary, '')}"
    return key


@dataclass(slots=True)  # not frozen: built once per alert on the ingest hot path
class Outgoing:
    """A mapped alert ready to be queued for one target and app key.

    ``identity`` is the stored key (:attr:`Identity.key`); ``payload`` the
    alert object encoded as JSON, without ``app_key``. ``state`` is what the
    alert-state store needs to decide whether to queue it (None: queue it
    unconditionally, as a replayed dead letter is).
    """

    target: str
    app_key: str
    identity: str
    payload: bytes
    timestamp: int
    state: Observation | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    """A queued alert as a sender leases it."""

    id: int
    target: str
    app_key: str
    identity: str
    payload: bytes
    timestamp: int
    created: float
    attempts: int

    @property
    def check(self) -> str:
        """The alert's ``check`` (its id), for log fields."""
        return Identity.from_key(self.identity).check


# The columns a backend selects for :meth:`DeadLetter.from_row`, in order.
DEAD_LETTER_COLUMNS: Final = (
    "id, target, reason, status, attempts, created, failed_at, payload, response, last_error"
)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One alert that will not be delivered without an operator's help."""

    id: int
    target: str
    reason: str
    status: int | None
    attempts: int
    created: float
    failed_at: float
    check: str
    alert: dict[str, Any]
    response: str | None
    last_error: str | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> DeadLetter:
        """A dead letter from a stored row in :data:`DEAD_LETTER_COLUMNS` order (any backend).

        A payload that is not a JSON object (it never should be) shows as an
        empty alert rather than failing the whole listing.
        """
        try:
            alert = jsonio.loads(bytes(row[7]))
        except ValueError:
            alert = {}
        if not isinstance(alert, dict):
            alert = {}
        check = alert.get("check")
        return cls(
            id=row[0],
            target=row[1],
            reason=row[2],
            status=row[3],
            attempts=row[4],
            created=row[5],
            failed_at=row[6],
            check=check if isinstance(check, str) else "",
            alert=alert,
            response=row[8],
            last_error=row[9],
        )

    def summary(self, now: float) -> dict[str, Any]:
        """The fields of a listing line, JSON-ready (no payload, no app key)."""
        return {
            "id": self.id,
            "target": self.target,
            "reason": self.reason,
            "status": self.status,
            "attempts": self.attempts,
            "age_seconds": round(max(0.0, now - self.failed_at), 1),
            "check": self.check,
        }

    def detail(self, now: float) -> dict[str, Any]:
        """Everything known about it, JSON-ready (still no app key)."""
        return {
            **self.summary(now),
            "created": self.created,
            "failed_at": self.failed_at,
            "response": self.response,
            "last_error": self.last_error,
            "alert": self.alert,
        }
