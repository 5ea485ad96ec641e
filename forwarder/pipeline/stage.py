"""The stage contract: what every step between parsing and the queue looks like.

A request's events travel through the stages as one :class:`Work`; each
stage reads what the ones before it wrote and adds its own part (the route
stage fills :attr:`Work.routes`, the map stage :attr:`Work.items` and
:attr:`Work.refused`). Stages are
compiled once per config; a stage a config does not need is simply not in the
list, so the hot path pays nothing for it (Alertmanager's ``MultiStage``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from forwarder.config import RouteConfig
from forwarder.model import Event, Outgoing

StageReason = Literal["bad_shape", "template_error"]


class StageError(Exception):
    """A stage refuses the request (a template failed, a value cannot be encoded).

    ``reason`` is the label of ``forwarder_events_rejected_total``.
    """

    def __init__(self, message: str, *, reason: StageReason = "bad_shape") -> None:
        super().__init__(message)
        self.message = message
        self.reason: StageReason = reason


@dataclass(frozen=True, slots=True)
class Refused:
    """A mapped alert BigPanda would refuse, kept out of the queue.

    It goes straight to the dead-letter store with ``reason`` (the label of
    ``forwarder_alerts_refused_total``: ``no_primary_property``,
    ``invalid_status`` or ``no_app_key``), so one bad alert does not get a
    whole batch refused and can be replayed once the mapping is fixed.
    ``hint`` names the route and says how to fix the mapping; it holds no
    secret.
    """

    item: Outgoing
    reason: str
    hint: str


@dataclass(slots=True)  # not frozen: built once per request on the ingest hot path
class Work:
    """One request's events and what the stages made of them so far.

    ``items`` are the alerts to queue; ``refused`` the ones BigPanda would
    refuse (never also in ``items``). ``alerts`` and ``item_routes`` are, for
    each item, its alert object and its route (for the state stage).
    """

    events: list[Event]
    routes: list[RouteConfig] = field(default_factory=list)
    items: list[Outgoing] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    item_routes: list[RouteConfig] = field(default_factory=list)
    truncations: int = 0
    refused: list[Refused] = field(default_factory=list)


class Stage(Protocol):
    """One step of the pipeline."""

    @property
    def name(self) -> str:
        """A short name, for logs and errors."""
        ...

    def __call__(self, work: Work) -> None:
        """Do this stage's part of ``work``; raise :class:`StageError` to refuse it."""
        ...
