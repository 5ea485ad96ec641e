"""The one error type the parsers raise for bad input."""

from __future__ import annotations

from typing import Literal

RejectReason = Literal[
    "bad_json",
    "bad_shape",
    "too_large",
    "unauthorized",
    "queue_full",
    "queue_unavailable",
    "template_error",
]


class IngestError(Exception):
    """Input the forwarder refuses; answered with ``status`` and ``{"error": message}``.

    ``reason`` is the label of ``forwarder_events_rejected_total``; ``headers``
    go out with the answer (``Retry-After`` on a 503, ``WWW-Authenticate`` on a 401).
    """

    def __init__(
        self,
        message: str,
        *,
        reason: RejectReason = "bad_shape",
        status: int = 400,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason: RejectReason = reason
        self.status = status
        self.headers = headers
