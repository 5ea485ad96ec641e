"""Alert state: forward what changed, re-send on a schedule, damp flapping, resolve the silent.

The pipeline's state stage (:mod:`forwarder.pipeline.state`) attaches an
:class:`Observation` to each mapped alert; the queue backend decides with
:func:`observe` inside the transaction that would queue it, and a scheduler
(:mod:`forwarder.state.scheduler`) calls the store's ``tick`` for rows whose
time has come. The storage side is part of the queue contract
(:class:`forwarder.queue.contract.AlertStates`).
"""

from forwarder.state.decide import TickVerdict, Verdict, next_due, observe, tick
from forwarder.state.record import (
    OK,
    SUPPRESS_REASONS,
    AlertState,
    AlertView,
    Observation,
    SuppressReason,
)

__all__ = [
    "OK",
    "SUPPRESS_REASONS",
    "AlertState",
    "AlertView",
    "Observation",
    "SuppressReason",
    "TickVerdict",
    "Verdict",
    "next_due",
    "observe",
    "tick",
]
