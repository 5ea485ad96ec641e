"""Routing: the first route whose ``match`` holds decides target, app key and mapping."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from forwarder.config import Match, RouteConfig
from forwarder.model import Event
from forwarder.pipeline.stage import Work


def matches(match: Match | None, event: Event) -> bool:
    """Whether every condition of ``match`` holds for ``event`` (no match: always)."""
    if match is None:
        return True
    if match.sources is not None and event.source.value not in match.sources:
        return False
    if match.levels is not None and event.level not in match.levels:
        return False
    if match.tasks is not None and not any(fnmatchcase(event.task, g) for g in match.tasks):
        return False
    return all(event.tags.get(k) == v for k, v in match.tags.items())


def route(routes: Sequence[RouteConfig], event: Event) -> RouteConfig:
    """The first matching route. Config validation guarantees the last one matches all."""
    for r in routes:
        if matches(r.match, event):
            return r
    return routes[-1]


class RouteStage:
    """Picks each event's route: target, app key and mapping."""

    name = "route"

    def __init__(self, routes: Sequence[RouteConfig]) -> None:
        self.routes = tuple(routes)
        # With only the default route there is nothing to decide per event.
        only = self.routes[0] if len(self.routes) == 1 else None
        self._only = only if only is not None and only.match is None else None

    def __call__(self, work: Work) -> None:
        only = self._only
        if only is not None:
            work.routes = [only] * len(work.events)
        else:
            work.routes = [route(self.routes, e) for e in work.events]
