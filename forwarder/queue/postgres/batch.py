"""One group commit's worth of puts, and its arguments for ``forwarder.put_batch``.

The server-side function takes column arrays (one element per alert, plus
the index of the put each belongs to) rather than rows, so a commit of any
size is one statement with 18 parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from forwarder.queue.putting import Pending


def pg_text(text: str) -> str:
    """``text`` as a PostgreSQL text value can hold it: NUL (which JSON can carry as
    ``\\u0000``, in an alert id or an upstream answer) becomes U+FFFD.

    PostgreSQL refuses NUL in text, and one such value would fail the whole
    group commit it is in. The replacement is the same every time, so the
    states of one identity still compare equal.
    """
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def put_args(batch: Sequence[Pending], now: float, max_events: int, max_bytes: int) -> list[Any]:
    """The 18 arguments of ``forwarder.put_batch`` for one group commit: arrays, one row each."""
    t: list[str] = []
    k: list[str] = []
    ident: list[str] = []
    pay: list[bytes] = []
    ts: list[int] = []
    put: list[int] = []
    events: list[int] = []
    sizes: list[int] = []
    dt: list[str] = []
    dk: list[str] = []
    di: list[str] = []
    dp: list[bytes] = []
    dts: list[int] = []
    dr: list[str] = []
    dput: list[int] = []
    for n, p in enumerate(batch, 1):
        for i in p.items:
            t.append(i.target)
            k.append(i.app_key)
            ident.append(pg_text(i.identity))
            pay.append(i.payload)
            ts.append(i.timestamp)
            put.append(n)
        events.append(len(p.items))
        sizes.append(p.size)
        for o, why in p.refused:
            dt.append(o.target)
            dk.append(o.app_key)
            di.append(pg_text(o.identity))
            dp.append(o.payload)
            dts.append(o.timestamp)
            dr.append(why)
            dput.append(n)
    return [t, k, ident, pay, ts, put, events, sizes, dt, dk, di, dp, dts, dr, dput,
            now, max_events, max_bytes]  # fmt: skip


async def no_reset(_conn: Any) -> None:
    """Return pooled connections as they are: no reset round trip per call.

    Pooled connections never change session state: no SET, no LISTEN, no
    session advisory lock (those live on the replica's own session), and
    every transaction ends before the connection goes back.
    """
