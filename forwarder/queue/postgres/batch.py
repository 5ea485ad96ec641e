"""One group commit's worth of puts, and its arguments for ``forwarder.put_batch``.

The server-side function takes column arrays (one element per alert, plus
the index of the put each belongs to) rather than rows, so a commit of any
size is one statement with 18 parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from forwarder.model import Outgoing
from forwarder.queue.putting import Pending


def pg_text(text: str) -> str:
    """``text`` as a PostgreSQL text value can hold it: NUL (which JSON can carry as
    ``\\u0000``, in an alert id or an upstream answer) becomes U+FFFD.

    PostgreSQL refuses NUL in text, and one such value would fail the whole
    group commit it is in. The replacement is the same every time, so the
    states of one identity still compare equal.
    """
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def alert_columns(alerts: Sequence[Outgoing]) -> list[list[Any]]:
    """``alerts`` as the column arrays the server-side functions take, in this order:
    target, app key, identity (NUL-safe, :func:`pg_text`), payload, timestamp."""
    return [
        [o.target for o in alerts],
        [o.app_key for o in alerts],
        [pg_text(o.identity) for o in alerts],
        [o.payload for o in alerts],
        [o.timestamp for o in alerts],
    ]


def put_args(batch: Sequence[Pending], now: float, max_events: int, max_bytes: int) -> list[Any]:
    """The 18 arguments of ``forwarder.put_batch`` for one group commit: arrays, one row each."""
    items = [i for p in batch for i in p.items]
    put = [n for n, p in enumerate(batch, 1) for _ in p.items]
    events = [len(p.items) for p in batch]
    sizes = [p.size for p in batch]
    refused = [o for p in batch for o, _ in p.refused]
    reasons = [why for p in batch for _, why in p.refused]
    dput = [n for n, p in enumerate(batch, 1) for _ in p.refused]
    return [*alert_columns(items), put, events, sizes, *alert_columns(refused), reasons, dput,
            now, max_events, max_bytes]  # fmt: skip


async def no_reset(_conn: Any) -> None:
    """Return pooled connections as they are: no reset round trip per call.

    Pooled connections never change session state: no SET, no LISTEN, no
    session advisory lock (those live on the replica's own session), and
    every transaction ends before the connection goes back.
    """
