"""The storage contract: what the ingest, the sender and the admin tools need of a queue.

Any backend (SQLite today; PostgreSQL for several replicas) implements
:class:`Queue` and :class:`DeadLetters` and keeps these invariants, which the
contract suite in ``tests/queue/test_contract.py`` proves for each:

1. **Acknowledged only once committed.** The future :meth:`Queue.put` returns
   completes only after the alerts are durable, and so are the alerts it was
   given as refused, in the dead-letter store; on failure none of either is
   stored.
2. **Leases expire.** A leased batch that is neither acknowledged, retried,
   released nor dead-lettered becomes available again once its lease deadline
   passes, whoever held it (a process killed with ``kill -9`` included).
3. **Per-identity order.** For one (target, app key, identity), a newer state
   is never handed out while an older one is leased or waiting for its retry.
   The store enforces this itself, so several senders, in one process or in
   several, may share it.
4. **Bounded capacity.** :meth:`Queue.put` refuses with :class:`QueueFull`
   rather than grow past ``queue.max_events`` or ``queue.max_bytes``; nothing
   queued is ever evicted to make room. Alerts refused at ingest do not count
   against these bounds.
5. **Alert state is atomic with the queue.** An alert given to
   :meth:`Queue.put` with an :class:`~forwarder.state.Observation` is decided
   by :func:`forwarder.state.observe` against its identity's stored row, and
   the row's update commits in the same transaction as the enqueue: an alert
   is queued if and only if the state says so, and two puts of one identity
   (from one process or several) are decided one after the other, never
   both against the same old row. The scheduler's work
   (:meth:`AlertStates.tick`) is atomic the same way and claims each due
   row once, across replicas.
6. **Dead letters are kept.** An alert leaves the queue only by delivery or by
   moving to the dead-letter store, with its reason, in one transaction; dead
   letters can be listed, replayed (back into the queue, afresh) and purged.

Start-up does not assume sole ownership of the store: recovery from a crash
is lease expiry, not a special case.

**One sender per target.** Rate limits and ``max_in_flight`` are the
deployment's, so at most one process sends for a target at a time: it holds
the store's *claim* on the target (:meth:`Queue.claim_target`). A store with a
single owner (SQLite's lock file) grants every claim to that owner; a shared
one grants each to one live replica and frees it when that replica dies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from forwarder.model import DeadLetter, Entry, Outgoing
from forwarder.state.record import AlertView, SuppressReason


@dataclass(frozen=True, slots=True)
class TargetStats:
    """What the store holds for one target."""

    events: int
    oldest_age: float
    dead_letters: int


@dataclass(frozen=True, slots=True)
class QueueStats:
    """The whole store at one moment, for metrics."""

    events: int
    bytes: int
    targets: Mapping[str, TargetStats] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Lease:
    """A leased batch, or, when nothing was due, when something next becomes due."""

    entries: list[Entry]
    next_due: float | None = None


@dataclass(frozen=True, slots=True)
class PutResult:
    """What a committed put did: how many alerts it queued and suppressed.

    ``suppressed`` counts by (target, reason). Alerts given as refused are in
    neither count (they are dead letters).
    """

    queued: int = 0
    suppressed: Mapping[tuple[str, SuppressReason], int] = field(default_factory=dict)

    @property
    def suppressed_total(self) -> int:
        """Every suppressed alert, whatever its target and reason."""
        return sum(self.suppressed.values())


NOTHING_PUT: Final = PutResult()


@dataclass(frozen=True, slots=True)
class TickResult:
    """What one scheduler pass did, per target, and when the next row falls due.

    ``more`` says the pass stopped at its limit with due rows left; ``sent``
    names each alert the pass queued, as (``released`` or ``resolved``,
    target, identity key), for the log.
    """

    released: Mapping[str, int] = field(default_factory=dict)
    resolved: Mapping[str, int] = field(default_factory=dict)
    expired: int = 0
    next_due: float | None = None
    more: bool = False
    sent: Sequence[tuple[str, str, str]] = ()


@dataclass(frozen=True, slots=True)
class AlertCounts:
    """Identities per target in a non-ok status, and flapping (for gauges)."""

    open: Mapping[str, int] = field(default_factory=dict)
    flapping: Mapping[str, int] = field(default_factory=dict)


AlertFilter = Literal["firing", "ok", "flapping"]


class AlertStates(Protocol):
    """The alert-state store: one row per identity (see :mod:`forwarder.state`)."""

    async def list(
        self, *, status: AlertFilter | None = None, target: str | None = None, limit: int = 100
    ) -> list[AlertView]:
        """Identities, most recently seen first; ``firing`` is any status but ``ok``."""
        ...

    async def counts(self) -> AlertCounts:
        """Open and flapping identities per target, cheaply at any size (every scrape)."""
        ...

    async def tick(self, *, limit: int = 1000) -> TickResult:
        """Do what is due, by the queue's clock: flap releases, auto-resolves, expiry.

        Claims up to ``limit`` rows whose ``due`` time has come, applies
        :func:`forwarder.state.tick` to each and stores the result and queues
        what it says, in one transaction per pass; a row is claimed by one
        caller only, across replicas. Alerts it queues count against the
        capacity: when they do not fit, their rows stay due for the next pass.
        """
        ...


class DeadLetters(Protocol):
    """The dead-letter store: alerts that will not be delivered without an operator."""

    async def list(self, *, target: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Newest first, optionally for one target."""
        ...

    async def get(self, dl_id: int) -> DeadLetter | None:
        """One dead letter by id, or None."""
        ...

    async def replay(self, *, ids: Sequence[int] | None = None, target: str | None = None) -> int:
        """Move dead letters back into the queue (all of them, or ``ids``, or one target's).

        A replayed alert starts afresh: no attempts, due now, its age counted
        from the replay. Returns how many moved.
        """
        ...

    async def purge(
        self, *, ids: Sequence[int] | None = None, older_than: float | None = None
    ) -> int:
        """Delete dead letters by id, or those that failed over ``older_than`` seconds ago."""
        ...


class Queue(Protocol):
    """The durable queue, with its dead-letter store at :attr:`dead_letters`."""

    @property
    def is_open(self) -> bool:
        """Whether it is open for work."""
        ...

    @property
    def last_error(self) -> str | None:
        """Why the last commit failed, until one succeeds (for readiness)."""
        ...

    @property
    def dead_letters(self) -> DeadLetters:
        """The dead-letter store of this queue."""
        ...

    @property
    def alerts(self) -> AlertStates:
        """The alert-state store of this queue."""
        ...

    @property
    def description(self) -> str:
        """Where the queue lives, for logs (never a password)."""
        ...

    async def open(self) -> None:
        """Connect, create or check the schema, and get ready for work."""
        ...

    async def close(self) -> None:
        """Commit what is pending, then release every resource."""
        ...

    def put(
        self, items: Sequence[Outgoing], refused: Sequence[tuple[Outgoing, str]] = ()
    ) -> Awaitable[PutResult]:
        """Commit ``items`` to the queue and each ``refused`` alert to the dead letters, at once.

        An item with a ``state`` observation is queued only if its identity's
        state says so (invariant 5); the result counts what was queued and
        what suppressed. Items are decided in order, puts in commit order.

        ``refused`` holds alerts the ingest already knows BigPanda cannot
        accept (no primary property, an invalid status, ...), each with its
        reason. They go straight to the dead-letter store with that reason, no
        status, no response, no attempts and ``created`` = ``failed_at`` =
        now, in the same transaction as ``items``: the future completes once
        both are durable, and on failure neither is stored (invariant 1).
        Refused alerts do not count against the capacity (invariant 4), but
        a put whose ``items`` do not fit is refused whole. A put with neither
        completes at once.

        Fails with :class:`~forwarder.queue.errors.QueueFull` or
        :class:`~forwarder.queue.errors.QueueUnavailable`.
        """
        ...

    def new_work(self, target: str) -> asyncio.Event:
        """An event set whenever alerts for ``target`` may have become available."""
        ...

    async def lease(self, target: str, *, limit: int, lease_for: float) -> Lease:
        """Lease up to ``limit`` due alerts of one target and one app key, oldest first.

        Keeps invariant 3: an identity with an older state leased or waiting
        for a retry is skipped, older and newer states alike.
        """
        ...

    async def peek(self, target: str) -> tuple[int, float | None]:
        """How many due, unleased alerts ``target`` has (capped), and the oldest's ``created``."""
        ...

    async def ack(self, entries: Sequence[Entry]) -> None:
        """Delivered: remove them."""
        ...

    async def retry_later(self, entries: Sequence[Entry], *, at: float, error: str) -> None:
        """A retryable failure: count the attempt, end the lease, due again at ``at``."""
        ...

    async def release(self, entries: Sequence[Entry]) -> None:
        """Give leases back unattempted."""
        ...

    async def dead_letter(
        self,
        entries: Sequence[Entry],
        *,
        reason: str,
        status: int | None,
        response: str | None,
        error: str | None,
    ) -> None:
        """Move them to the dead-letter store with ``reason``, in one transaction."""
        ...

    async def stats(self) -> QueueStats:
        """Depth, bytes, oldest age and dead letters, cheaply at any size (every scrape)."""
        ...

    async def claim_target(self, target: str) -> bool:
        """Become (or stay) the one process sending for ``target``; False if another live one is."""
        ...

    def holds_target(self, target: str) -> bool:
        """Whether this process holds the claim on ``target`` (no I/O)."""
        ...

    async def release_target(self, target: str) -> None:
        """Give the claim on ``target`` up, so another process may send for it."""
        ...

    @property
    def claimed_targets(self) -> frozenset[str]:
        """The targets this process sends for now (for a metrics gauge)."""
        ...
