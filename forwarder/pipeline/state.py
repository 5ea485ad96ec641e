"""The state stage: what the alert-state store needs to decide about each mapped alert.

Deduplication, flap damping and auto-resolve are decided by the queue
backend, inside the transaction that would queue the alert (so the decision
and the enqueue are atomic, across replicas too: :mod:`forwarder.state`).
This stage only prepares each alert's :class:`~forwarder.state.Observation`:
its status, the values of its route's ``state.dedup_on`` keys, and the
route's state policy. A route with deduplication, flap damping and
auto-resolve all off keeps no state: its alerts are queued as they are, and
do not appear in ``/api/v1/alerts``.
"""

from __future__ import annotations

from forwarder import jsonio
from forwarder.pipeline.stage import Work
from forwarder.state import Observation


class StateStage:
    """Attaches each item's observation (status, dedup values, policy)."""

    name = "state"

    def __call__(self, work: Work) -> None:
        dumps = jsonio.dumps
        for item, alert, route in zip(work.items, work.alerts, work.item_routes, strict=True):
            policy = route.state
            if not policy.tracked:  # deduplication, flap damping and auto-resolve all off
                continue
            keys = policy.dedup_on
            # Values compared for equality only; JSON keeps "1" and 1 apart.
            dedup = dumps([alert.get(k) for k in keys]).decode() if keys else ""
            status = alert.get("status")
            item.state = Observation(status if isinstance(status, str) else "", dedup, policy)
